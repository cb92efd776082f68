"""Tests of SynapseFilter, VotingLayer, Delay, WSConv2d and WSLinear against computations written here."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn import functional, layer

# =============================================================================================
# SynapseFilter
# =============================================================================================


def _synapse_recurrence(x_seq: torch.Tensor, tau: float) -> torch.Tensor:
    """i[t] = i[t-1] - (1 - x[t]) * i[t-1] / tau + x[t], i[-1] = 0, one element at a time in float64."""
    out = torch.empty_like(x_seq, dtype=torch.float64)
    flat_x = x_seq.double().reshape(x_seq.shape[0], -1)
    flat_out = out.view(x_seq.shape[0], -1)
    for n in range(flat_x.shape[1]):
        current = 0.0
        for t in range(flat_x.shape[0]):
            x = flat_x[t, n].item()
            current = current - (1.0 - x) * current / tau + x
            flat_out[t, n] = current
    return out


def test_synapse_filter_golden_values() -> None:
    # tau = 2: a spike adds 1, silence halves the current
    synapse = layer.SynapseFilter(tau=2.0, step_mode="m")
    out = synapse(torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0]])).flatten()
    assert out.tolist() == [1.0, 0.5, 0.25, 1.25, 2.25]
    assert synapse.out_i.tolist() == [2.25]


@pytest.mark.parametrize("learnable", [False, True])
def test_synapse_filter_equals_its_recurrence_in_both_step_modes(learnable: bool) -> None:
    tau = 3.0
    x_seq = (torch.rand(9, 4, 5) > 0.6).float() * torch.rand(9, 4, 5).add(0.5)  # spikes and currents
    expected = _synapse_recurrence(x_seq, tau)
    multi = layer.SynapseFilter(tau=tau, learnable=learnable, step_mode="m")
    single = layer.SynapseFilter(tau=tau, learnable=learnable)
    # float32 against the float64 recurrence: a few roundings per step, currents below ~10
    sequence = multi(x_seq)
    torch.testing.assert_close(sequence.double(), expected, rtol=1e-5, atol=1e-5)
    stepped = torch.stack([single(x) for x in x_seq])
    # the same arithmetic in the same order: bit-identical between the step modes
    assert torch.equal(stepped, sequence)
    assert torch.equal(multi.out_i, sequence[-1])


def test_synapse_filter_continues_across_calls_and_resets() -> None:
    x_seq = torch.rand(6, 3)
    expected = _synapse_recurrence(x_seq, 5.0)
    synapse = layer.SynapseFilter(tau=5.0, step_mode="m")
    got = torch.cat([synapse(x_seq[:2]), synapse(x_seq[2:])])
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
    functional.reset_net(nn.Sequential(synapse))
    assert synapse.out_i == 0.0
    synapse(torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"SynapseFilter: the state out_i has steps of shape \[4\] .*\[5\].*reset_net"):
        synapse(torch.rand(2, 5))


def test_synapse_filter_learnable_gradients_match_finite_differences() -> None:
    synapse = layer.SynapseFilter(tau=2.5, learnable=True, step_mode="m").double()
    assert synapse.decay().item() == pytest.approx(1 / 2.5)
    x_seq = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)

    def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        synapse.reset()
        with torch.no_grad():
            synapse.w.copy_(w)
        return synapse(x)

    assert torch.autograd.gradcheck(lambda x: run(x, synapse.w.detach().clone()), (x_seq,))
    synapse.reset()
    out = synapse(x_seq)
    (grad_w,) = torch.autograd.grad(out.sum(), synapse.w)
    w0 = synapse.w.detach().clone()
    eps = 1e-6
    numeric = (run(x_seq.detach(), w0 + eps).sum() - run(x_seq.detach(), w0 - eps).sum()) / (2 * eps)
    assert grad_w.item() == pytest.approx(numeric.item(), rel=1e-6)


def test_synapse_filter_arguments() -> None:
    assert repr(layer.SynapseFilter(tau=4.0)) == "SynapseFilter(tau=4.0, learnable=False, step_mode=s)"
    learnable = layer.SynapseFilter(tau=4.0, learnable=True)
    assert learnable.w.item() == pytest.approx(-math.log(3.0))
    assert "tau=4.0" in repr(learnable)
    with pytest.raises(ValueError, match=r"tau: expected a finite time constant > 1, got 1.0"):
        layer.SynapseFilter(tau=1.0)
    with pytest.raises(TypeError, match="tau: expected a real number > 1, got str"):
        layer.SynapseFilter(tau="2")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match=r"learnable: expected a bool \(or the integer 0 or 1, a NumPy bool, a one-element boolean tensor\), got int 2"):
        layer.SynapseFilter(learnable=2)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    # SpikingJelly tests the flag's truth: 0 and 1 work as False and True
    assert layer.SynapseFilter(learnable=1).learnable is True and layer.SynapseFilter(learnable=0).learnable is False
    assert layer.WSLinear(2, 2, gain=0).gain is None and layer.WSConv2d(2, 2, 3, gain=1).gain is not None
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        layer.SynapseFilter()(torch.ones(2, dtype=torch.int64))


# =============================================================================================
# VotingLayer
# =============================================================================================


@pytest.mark.parametrize("step_mode, shape", [("s", (4, 30)), ("m", (3, 4, 30)), ("s", (2, 3, 5, 30))])
def test_voting_layer_equals_average_pooling(step_mode: str, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    voting = layer.VotingLayer(voting_size=3, step_mode=step_mode)
    out = voting(x)
    assert out.shape == (*shape[:-1], 10)
    pool = nn.AvgPool1d(kernel_size=3, stride=3)
    expected = pool(x.reshape(-1, 1, 30)).reshape(*shape[:-1], 10)
    assert torch.equal(out, expected)  # the same pooling kernel on the same values
    grouped = x.reshape(*shape[:-1], 10, 3).double().mean(-1)
    torch.testing.assert_close(out.double(), grouped, rtol=1e-6, atol=1e-7)


def test_voting_layer_errors() -> None:
    with pytest.raises(ValueError, match=r"x: expected shape \[..., C \* voting_size\] \(voting_size = 4\), got \[2, 10\]"):
        layer.VotingLayer(4)(torch.rand(2, 10))
    with pytest.raises(ValueError, match="voting_size: expected an int >= 1, got 0"):
        layer.VotingLayer(0)
    with pytest.raises(TypeError, match="voting_size: expected an int >= 1, got float"):
        layer.VotingLayer(2.0)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    assert repr(layer.VotingLayer(5, step_mode="m")) == "VotingLayer(voting_size=5, step_mode=m)"


# =============================================================================================
# Delay
# =============================================================================================


def _delayed(x_seq: torch.Tensor, d: int) -> torch.Tensor:
    """y[t] = x[t - d], zeros for t < d."""
    y = torch.zeros_like(x_seq)
    for t in range(d, x_seq.shape[0]):
        y[t] = x_seq[t - d]
    return y


@pytest.mark.parametrize("d", [0, 1, 3, 8])
def test_delay_equals_the_shifted_sequence_in_both_modes(d: int) -> None:
    x_seq = torch.rand(6, 2, 3)
    expected = _delayed(x_seq, d)
    assert torch.equal(layer.Delay(d, step_mode="m")(x_seq), expected)
    single = layer.Delay(d)
    assert torch.equal(torch.stack([single(x) for x in x_seq]), expected)
    chunked = layer.Delay(d, step_mode="m")
    assert torch.equal(torch.cat([chunked(x_seq[:1]), chunked(x_seq[1:4]), chunked(x_seq[4:])]), expected)
    assert len(chunked.queue) == min(d, 6)
    assert torch.equal(functional.delay(x_seq, d), expected)


def test_delay_never_changes_a_saved_queue() -> None:
    """Single steps build a new queue: an explicit-state call leaves the caller's state alone, a
    rewind replays the same output, and the checkpointed strategy recomputes what it saved."""
    from snn import neuron
    from snn.base import extract_memories, load_memories

    f = functional.to_functional_forward(layer.Delay(2))
    empty: list[torch.Tensor] = []
    for value in (1.0, 2.0, 3.0):
        (y,), (queue,) = f((torch.tensor([value]),), (empty,))
        assert empty == [] and torch.equal(y, torch.zeros(1)) and [q.item() for q in queue] == [value]
    delay = layer.Delay(1)
    delay(torch.tensor([1.0]))
    saved = extract_memories(delay)
    first = delay(torch.tensor([2.0]))
    load_memories(delay, saved)
    assert torch.equal(delay(torch.tensor([2.0])), first) and first.item() == 1.0

    torch.manual_seed(0)
    x = torch.rand(6, 2, 3, requires_grad=True)
    modules = (nn.Linear(3, 4), layer.Delay(1), neuron.LIFNode())
    plain = layer.MultiStepContainer(*copy.deepcopy(modules))
    checkpointed = layer.MultiStepContainer(*copy.deepcopy(modules), strategy="checkpointed", k=2)
    (want,) = torch.autograd.grad(plain(x).sum(), x)
    (got,) = torch.autograd.grad(checkpointed(x).sum(), x)
    torch.testing.assert_close(got, want)


def test_delay_gradient_and_reset() -> None:
    x = torch.rand(5, 2)
    x[3:] = 0
    x.requires_grad_(True)
    delay = layer.Delay(delay_steps=1, step_mode="m")
    y = delay(x)
    y.sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [[1.0, 1.0]] * 4 + [[0.0, 0.0]]  # the last step has not come out yet
    functional.reset_net(delay)
    assert delay.queue == []
    delay(torch.rand(3, 2))
    with pytest.raises(ValueError, match=r"Delay: the state queue has steps of shape \[2\] .*\[4\].*reset_net"):
        delay(torch.rand(3, 4))


def test_delay_arguments_and_copies() -> None:
    with pytest.raises(ValueError, match="delay_steps: expected an int >= 0, got -1"):
        layer.Delay(-1)
    with pytest.raises(TypeError, match="delay_steps: expected an int >= 0, got float"):
        layer.Delay(1.0)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    delay = layer.Delay(2)
    with pytest.raises(AttributeError):
        delay.delay_steps = 3  # type: ignore[misc]  # a wrong type on purpose: the error is under test
    delay(torch.rand(3, requires_grad=True) * 2)  # a queued tensor with an autograd graph
    for clone in (copy.deepcopy(delay), pickle.loads(pickle.dumps(delay))):
        assert len(clone.queue) == 1 and not clone.queue[0].requires_grad
    assert repr(delay) == "Delay(delay_steps=2, step_mode=s)"


# =============================================================================================
# Weight standardisation
# =============================================================================================


def _standardized(weight: torch.Tensor, gain: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Per output unit, in float64: (w - mean) / sqrt(unbiased var * fan_in + eps) * gain."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    fan_in = w.shape[1]
    mean = w.sum(1, keepdim=True) / fan_in
    var = ((w - mean) ** 2).sum(1, keepdim=True) / (fan_in - 1)
    out = (w - mean) / torch.sqrt(var * fan_in + eps)
    if gain is not None:
        out = out * gain.detach().double().reshape(-1, 1)
    return out.reshape(weight.shape)


@pytest.mark.parametrize("gain", [True, False])
def test_ws_conv2d_equals_conv_with_the_standardized_weight(gain: bool) -> None:
    conv = layer.WSConv2d(3, 4, kernel_size=3, padding=1, gain=gain, eps=1e-4)
    if gain:
        with torch.no_grad():
            conv.gain.copy_(torch.rand(4, 1, 1, 1) + 0.5)
    weight = _standardized(conv.weight, conv.gain, 1e-4)
    # standardised: zero mean, norm^2 = (fan_in - 1) * var / (var * fan_in + eps) per unit (times gain)
    torch.testing.assert_close(conv.get_weight().double(), weight, rtol=1e-5, atol=1e-6)
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    expected = F.conv2d(x, weight, conv.bias.detach().double(), padding=1)
    # float32 convolution against float64: 27 products per output
    torch.testing.assert_close(conv(x.float()).double(), expected, rtol=1e-4, atol=1e-5)
    conv.step_mode = "m"
    x_seq = torch.rand(4, 2, 3, 6, 6)
    functional_step = [conv._conv_forward(x_seq[t], conv.get_weight(), conv.bias) for t in range(4)]
    torch.testing.assert_close(conv(x_seq), torch.stack(functional_step), rtol=1e-5, atol=1e-6)
    assert ("gain" in dict(conv.named_parameters())) == gain


def test_ws_conv2d_honours_padding_mode_and_checks_arguments() -> None:
    conv = layer.WSConv2d(1, 2, kernel_size=3, padding=1, padding_mode="circular", bias=False)
    x = torch.rand(1, 1, 5, 5)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.get_weight())
    torch.testing.assert_close(conv(x), expected)
    with pytest.raises(ValueError, match="fan_in = 1"):
        layer.WSConv2d(1, 2, kernel_size=1)
    with pytest.raises(ValueError, match="eps: expected a finite number >= 0, got -1"):
        layer.WSConv2d(2, 2, 3, eps=-1)
    with pytest.raises(TypeError, match="gain: expected a bool"):
        layer.WSConv2d(2, 2, 3, gain=None)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match=r"expected x with shape \[T, N, C, H, W\]"):
        layer.WSConv2d(2, 2, 3, step_mode="m")(torch.rand(2, 2, 5, 5))


def test_ws_linear_equals_linear_with_the_standardized_weight() -> None:
    linear = layer.WSLinear(6, 3, step_mode="m")
    with torch.no_grad():
        linear.gain.copy_(torch.tensor([[0.5], [1.0], [2.0]]))
    weight = _standardized(linear.weight, linear.gain, 1e-4)
    x_seq = torch.rand(4, 2, 6, dtype=torch.float64)
    expected = x_seq @ weight.T + linear.bias.detach().double()
    torch.testing.assert_close(linear(x_seq.float()).double(), expected, rtol=1e-5, atol=1e-6)
    linear.step_mode = "s"
    torch.testing.assert_close(linear(x_seq[0].float()).double(), expected[0], rtol=1e-5, atol=1e-6)
    # gradients reach the raw weight and the gain
    linear(x_seq[0].float()).sum().backward()
    assert linear.weight.grad is not None and linear.gain.grad is not None
    assert layer.WSLinear(4, 2, gain=False).gain is None
    with pytest.raises(ValueError, match="fan_in = 1"):
        layer.WSLinear(1, 2)
    assert repr(layer.WSLinear(4, 2)) == (
        "WSLinear(in_features=4, out_features=2, bias=True, step_mode=s, gain=True, eps=0.0001)"
    )


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_delay_queue_is_cut_by_detach_net_and_converted_by_to(step_mode: str) -> None:
    """The queue is a list memory: ``detach_net`` cuts its tensors (truncated BPTT over windows
    needs it) and ``.to()`` / ``.double()`` convert them."""
    delay = layer.Delay(2, step_mode=step_mode)
    w = nn.Parameter(torch.ones(4))
    outputs = []
    for _ in range(2):
        x = torch.arange(12.0).view(3, 4) * w
        y = delay(x) if step_mode == "m" else torch.stack([delay(x[t]) for t in range(3)])
        y.sum().backward()  # the second window reads the first window's queue
        functional.detach_net(delay)
        assert all(not item.requires_grad for item in delay.queue)
        outputs.append(y.detach())
    assert torch.equal(outputs[1][:2], torch.arange(12.0).view(3, 4)[1:])  # the carried steps
    delay.double()
    assert all(item.dtype == torch.float64 for item in delay.queue)
    out = delay(torch.zeros(3, 4, dtype=torch.float64)) if step_mode == "m" else delay(torch.zeros(4, dtype=torch.float64))
    assert out.dtype == torch.float64
