"""OTTTLIFNode and SLTTLIFNode (reference 7.5)."""

from __future__ import annotations

import pytest
import torch

from snn import functional
from snn.neuron import LIFNode
from snn_online import OTTTLIFNode, SLTTLIFNode

INPUTS = (0.4, 0.8, 0.2, 0.9)


def _plain_lif_spikes(inputs: tuple[float, ...], tau: float, v_th: float, v_reset: float) -> list[float]:
    """Hard-reset LIF without input decay, written out: h = v - (v - v_reset)/tau + x."""
    v, spikes = v_reset, []
    for x in inputs:
        h = v - (v - v_reset) / tau + x
        s = 1.0 if h >= v_th else 0.0
        v = s * v_reset + (1.0 - s) * h
        spikes.append(s)
    return spikes


def test_online_lif_nodes_share_spike_dynamics_and_reset_state() -> None:
    kwargs = dict(tau=2.0, decay_input=False, v_threshold=0.5, v_reset=0.0)
    ottt, sltt = OTTTLIFNode(**kwargs), SLTTLIFNode(**kwargs)
    expected = _plain_lif_spikes(INPUTS, 2.0, 0.5, 0.0)
    assert expected == [0.0, 1.0, 0.0, 1.0]
    trace = 0.0
    for x, want in zip(INPUTS, expected):
        spike, node_trace = ottt(torch.tensor([x]))
        sltt_spike = sltt(torch.tensor([x]))
        assert isinstance(sltt_spike, torch.Tensor)
        assert spike.item() == want and sltt_spike.item() == want
        trace = 0.5 * trace + want
        assert node_trace.item() == pytest.approx(trace)
        assert not node_trace.requires_grad
    functional.reset_net(ottt)
    functional.reset_net(sltt)
    assert ottt.v == 0.0 and sltt.v == 0.0
    assert ottt.trace is None


def test_defaults_follow_the_reference() -> None:
    ottt, sltt = OTTTLIFNode(), SLTTLIFNode()
    assert (ottt.tau, ottt.decay_input, ottt.v_threshold, ottt.v_reset, ottt.detach_reset) == (2.0, False, 1.0, None, True)
    assert (sltt.tau, sltt.decay_input, sltt.v_threshold, sltt.v_reset, sltt.detach_reset) == (2.0, True, 1.0, 0.0, True)
    assert isinstance(ottt, LIFNode) and isinstance(sltt, LIFNode)
    assert ottt.step_mode == "s" and sltt.step_mode == "s"
    assert ottt.surrogate_function is not sltt.surrogate_function
    assert ottt.supported_backends == ("torch",) and sltt.supported_backends == ("torch",)


@pytest.mark.parametrize("cls", [OTTTLIFNode, SLTTLIFNode])
def test_multi_step_mode_is_refused(cls: type[LIFNode]) -> None:
    with pytest.raises(ValueError, match="single-step"):
        cls(step_mode="m")
    node = cls()
    with pytest.raises(ValueError, match="single-step"):
        node.step_mode = "m"
    with pytest.raises(ValueError, match=r"supports only \('s',\)"):
        functional.set_step_mode(torch.nn.Sequential(node), "m")
    assert node.step_mode == "s"
    with pytest.raises(ValueError, match="single-step"):
        node.multi_step_forward(torch.zeros(3, 1))


@pytest.mark.parametrize("cls", [OTTTLIFNode, SLTTLIFNode])
def test_no_gradient_flows_through_time_in_training(cls: type[LIFNode]) -> None:
    x1 = torch.tensor([0.6], requires_grad=True)
    x2 = torch.tensor([0.7], requires_grad=True)

    def second_spike(node: LIFNode) -> torch.Tensor:
        node(x1)
        out = node(x2)
        return out[0] if isinstance(out, list) else out

    online = cls()
    second_spike(online).sum().backward()
    assert x1.grad is None or torch.equal(x1.grad, torch.zeros(1))
    assert x2.grad is not None and x2.grad.item() > 0

    # The same dynamics without the detach (a plain LIFNode with the same settings) does
    # propagate through time, so the check above can fail.
    x1.grad = None
    x2.grad = None
    plain = LIFNode(tau=online.tau, decay_input=online.decay_input, v_threshold=online.v_threshold,
                    v_reset=online.v_reset, detach_reset=online.detach_reset)
    second_spike(plain).sum().backward()
    assert x1.grad is not None and x1.grad.abs().item() > 0


def test_ottt_gradient_of_one_step_is_the_surrogate_derivative() -> None:
    node = OTTTLIFNode()  # decay_input=False, soft reset, Sigmoid(alpha=4)
    node(torch.tensor([0.6]))  # v = 0.6 after the first step (no spike)
    x = torch.tensor([0.7], requires_grad=True)
    spike, _ = node(x)
    spike.sum().backward()
    h = 0.6 * 0.5 + 0.7
    sig = torch.sigmoid(torch.tensor(4.0 * (h - 1.0)))
    torch.testing.assert_close(x.grad, (4.0 * sig * (1 - sig)).reshape(1))


def test_eval_mode_returns_spikes_and_keeps_the_trace() -> None:
    node = OTTTLIFNode(v_threshold=0.5)
    node(torch.tensor([0.6, 0.1]))
    trace = node.trace.clone()
    node.eval()
    out = node(torch.tensor([0.6, 0.1]))
    assert isinstance(out, torch.Tensor)
    assert torch.equal(node.trace, trace)
    reference = LIFNode(decay_input=False, v_threshold=0.5, v_reset=None, detach_reset=True)
    reference(torch.tensor([0.6, 0.1]))
    reference.eval()
    assert torch.equal(out, reference(torch.tensor([0.6, 0.1])))


def test_a_new_batch_size_needs_a_reset_and_then_starts_a_fresh_trace() -> None:
    node = OTTTLIFNode(v_threshold=0.5)
    node(torch.ones(2, 3))
    with pytest.raises(ValueError, match="reset_net"):
        node(torch.ones(4, 3))
    functional.reset_net(node)
    spike, trace = node(torch.ones(4, 3))
    assert trace.shape == (4, 3)
    torch.testing.assert_close(trace, spike)
