"""ReplaceforGrad, GradwithTrace, SpikeTraceOp and OTTTSequential (reference 7.5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn_online import GradwithTrace, OTTTSequential, ReplaceforGrad, SpikeTraceOp


def _linear(weight: list[list[float]], bias: bool = False) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias:
            layer.bias.zero_()
    return layer


def test_replace_for_grad_shows_second_value_and_sends_gradient_to_both() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    x_r = torch.tensor([3.0, -4.0], requires_grad=True)
    out = ReplaceforGrad.apply(x, x_r)
    assert torch.equal(out, torch.tensor([3.0, -4.0]))
    (out * torch.tensor([5.0, 7.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([5.0, 7.0]))
    assert torch.equal(x_r.grad, torch.tensor([5.0, 7.0]))


def test_replace_for_grad_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match="x_r"):
        ReplaceforGrad.apply(torch.zeros(2, requires_grad=True), torch.zeros(3))


def test_grad_with_trace_uses_spikes_for_values_and_traces_for_gradients() -> None:
    linear = _linear([[2.0, -1.0]])
    spike = torch.tensor([[1.0, 0.0]], requires_grad=True)
    trace = torch.tensor([[0.25, 0.75]], requires_grad=True)
    out = GradwithTrace(linear)([spike, trace])
    assert torch.equal(out, torch.tensor([[2.0]]))
    out.sum().backward()
    assert torch.equal(linear.weight.grad, torch.tensor([[0.25, 0.75]]))
    assert torch.equal(spike.grad, torch.tensor([[2.0, -1.0]]))
    assert torch.equal(trace.grad, torch.tensor([[2.0, -1.0]]))


def test_grad_with_trace_matches_an_explicit_outer_product_on_a_batch() -> None:
    linear = _linear([[0.3, -0.2, 0.5], [1.0, 0.1, -0.7]], bias=True)
    spike = (torch.rand(4, 3) > 0.5).float()
    trace = torch.rand(4, 3)
    upstream = torch.randn(4, 2)
    out = GradwithTrace(linear)([spike, trace])
    torch.testing.assert_close(out, spike @ linear.weight.detach().T + linear.bias.detach())
    (out * upstream).sum().backward()
    torch.testing.assert_close(linear.weight.grad, upstream.T @ trace)
    torch.testing.assert_close(linear.bias.grad, upstream.sum(0))


def test_spike_trace_op_applies_module_to_both_without_trace_gradient() -> None:
    pool = nn.AvgPool1d(2)
    spike = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]], requires_grad=True)
    trace = torch.tensor([[[0.5, 0.25, 1.0, 1.5]]], requires_grad=True)
    spike_out, trace_out = SpikeTraceOp(pool)([spike, trace])
    assert torch.equal(spike_out, torch.tensor([[[0.5, 1.0]]]))
    assert torch.equal(trace_out, torch.tensor([[[0.375, 1.25]]]))
    assert spike_out.requires_grad and not trace_out.requires_grad


def test_ottt_sequential_keeps_the_public_trace_gradient_behavior() -> None:
    linear = _linear([[2.0, -1.0]])
    net = OTTTSequential(nn.Identity(), linear)
    spike = torch.tensor([[1.0, 0.0]], requires_grad=True)
    trace = torch.tensor([[0.25, 0.75]])
    out = net([spike, trace])
    assert torch.equal(out, linear(spike).detach())
    out.sum().backward()
    assert torch.equal(linear.weight.grad, trace)


def test_ottt_sequential_passes_plain_tensors_through_children() -> None:
    linear = _linear([[1.0, 2.0]], bias=True)
    net = OTTTSequential(linear, nn.ReLU())
    assert torch.equal(net(torch.tensor([[1.0, -1.0]])), torch.tensor([[0.0]]))


@pytest.mark.parametrize("wrapper", [GradwithTrace, SpikeTraceOp])
def test_wrappers_reject_inputs_that_are_not_pairs(wrapper: type[nn.Module]) -> None:
    module = wrapper(nn.Linear(2, 1))
    with pytest.raises(TypeError, match=r"\[spike, trace\]"):
        module(torch.zeros(1, 2))
    with pytest.raises(TypeError, match="length 3"):
        module([torch.zeros(1, 2)] * 3)


@pytest.mark.parametrize("wrapper", [GradwithTrace, SpikeTraceOp])
def test_wrappers_reject_non_modules(wrapper: type[nn.Module]) -> None:
    with pytest.raises(TypeError, match="module"):
        wrapper(lambda x: x)


def test_ottt_sequential_routes_pairs_through_parameter_free_layers_and_neurons() -> None:
    from snn.neuron import LIFNode
    from snn_online import OTTTLIFNode

    readout = LIFNode(tau=2.0, v_threshold=10.0)
    net = OTTTSequential(OTTTLIFNode(v_threshold=0.5), nn.Flatten(), readout)
    x = torch.tensor([[0.6, 0.2]])
    net(x)
    out = net(x)
    # OTTT spikes [1, 0] then [1, 0] (trace [1.5, 0]); the read-out integrates spikes, not traces:
    # v = 0.5 after step 1, then 0.5 + (1 - 0.5) / 2 = 0.75.
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(readout.v, torch.tensor([[0.75, 0.0]]))


class _SubclassedLinear(nn.Linear):
    """Not the exact type: always takes the generic (SpikingJelly) path."""


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_fast_path_matches_the_generic_path(shape: tuple[int, ...], bias: bool) -> None:
    from snn import layer

    fast = layer.Linear(3, 2, bias=bias).double()
    generic = _SubclassedLinear(3, 2, bias=bias).double()
    generic.load_state_dict(fast.state_dict())
    spike = (torch.rand(shape, dtype=torch.float64) > 0.5).double()
    trace = torch.rand(shape, dtype=torch.float64)
    upstream = torch.randn(*shape[:-1], 2, dtype=torch.float64)
    results = []
    for module in (fast, generic):
        s = spike.clone().requires_grad_()
        a = trace.clone().requires_grad_()
        out = GradwithTrace(module)([s, a])
        (out * upstream).sum().backward()
        results.append([out.detach(), s.grad, a.grad] + [p.grad for p in module.parameters()])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


def test_linear_with_hooks_takes_the_generic_path() -> None:
    linear = nn.Linear(2, 1)
    calls = []
    linear.register_forward_hook(lambda module, args, out: calls.append(out.requires_grad))
    GradwithTrace(linear)([torch.ones(1, 2, requires_grad=True), torch.ones(1, 2)])
    assert calls == [False, True]  # value under no_grad, then the gradient path


def test_a_trace_of_another_shape_is_named_against_the_spikes() -> None:
    from snn_online import GradwithTrace

    with pytest.raises(ValueError, match=r"trace of a \[spike, trace\] pair to have the spikes' shape \(1, 2\), got \(3, 2\)"):
        GradwithTrace(torch.nn.Linear(2, 2))([torch.rand(1, 2), torch.rand(3, 2)])
