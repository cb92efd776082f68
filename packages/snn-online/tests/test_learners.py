"""The ottt / sltt / fptt learners, through snn.functional and directly (reference 4.1-4.3)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn import functional, layer
from snn.neuron import LIFNode
from snn.surrogate import Sigmoid
from snn_online import OTTTLIFNode, OTTTSequential, SLTTLIFNode
from snn_online.learners import FPTTLearner, OTTTLearner, SLTTLearner


def _set(linear: nn.Linear, weight: list[list[float]], bias: float | list[float] = 0.0) -> nn.Linear:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype).expand_as(linear.bias))
    return linear


def _sigmoid_grad(z: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    s = torch.sigmoid(alpha * z)
    return alpha * s * (1 - s)


# ---------------------------------------------------------------------------------------------
# FPTT
# ---------------------------------------------------------------------------------------------


def _fptt_setup() -> tuple[nn.Module, nn.Linear, LIFNode, torch.optim.Optimizer]:
    linear = _set(layer.Linear(2, 1), [[0.5, -0.25]], 0.1)
    lif = LIFNode(v_reset=None, surrogate_function=Sigmoid())
    model = nn.Sequential(linear, lif)
    return model, linear, lif, torch.optim.SGD(model.parameters(), lr=0.1)


FPTT_X = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]], [[2.0, 0.5]]])
FPTT_TARGET = torch.tensor([[[1.0]], [[0.0]], [[1.0]]])


def test_fptt_reproduces_the_reference_golden_values() -> None:
    model, linear, lif, optimizer = _fptt_setup()
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    w_ra_list = w_ra
    result = functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, 0.5, w_ra)
    assert result is None
    assert w_ra is w_ra_list and len(w_ra) == 2
    torch.testing.assert_close(linear.weight.detach(), torch.tensor([[0.7094856, -0.1806542]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(linear.bias.detach(), torch.tensor([0.2107339]), rtol=0, atol=1e-6)
    torch.testing.assert_close(w_ra[0], torch.tensor([[-1.0627576, 0.4069071]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(w_ra[1], torch.tensor([-0.3821191]), rtol=0, atol=1e-6)
    torch.testing.assert_close(lif.v, torch.tensor([[0.9836350]]), rtol=0, atol=1e-6)
    assert not lif.v.requires_grad
    assert linear.weight.grad is None and linear.bias.grad is None


def _manual_fptt(alpha: float, lr: float = 0.1) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """FPTT written out by hand for the setup above: Linear(2, 1) -> LIF (tau 2, soft reset,
    Sigmoid(4)), mse loss, SGD. Per step: a forward and an SGD step on loss + alpha/2 sum of
    mean((p - w_ra - g / (2 alpha))^2); then, but for the last step, a second forward (one step
    on from the new state, which is then restored) whose gradient g updates
    w_ra = (w_ra + p) / 2 - g / (2 alpha). Returns the parameters, w_ra and the last potential."""
    weight = torch.tensor([[0.5, -0.25]], requires_grad=True)
    bias = torch.tensor([0.1], requires_grad=True)
    params = [weight, bias]
    w_ra = [p.detach().clone() for p in params]
    g = [torch.zeros_like(p) for p in params]
    v = torch.zeros(1, 1)

    def step(v: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = v + (x @ weight.T + bias - v) / 2.0
        smooth = torch.sigmoid(4.0 * (h - 1.0))
        spike = smooth + ((h >= 1.0).to(h.dtype) - smooth).detach()
        return spike, (h - spike).detach()

    steps = FPTT_X.shape[0]
    for t in range(steps):
        spike, v_next = step(v, FPTT_X[t])
        regulariser = alpha / 2.0 * sum(((p - w - gi / (2.0 * alpha)) ** 2).mean() for p, w, gi in zip(params, w_ra, g))
        grads = torch.autograd.grad(F.mse_loss(spike, FPTT_TARGET[t]) + regulariser, params)
        with torch.no_grad():
            for p, gp in zip(params, grads):
                p -= lr * gp
        v = v_next
        if t < steps - 1:
            spike_again, _ = step(v, FPTT_X[t])
            g = [gp.detach() for gp in torch.autograd.grad(F.mse_loss(spike_again, FPTT_TARGET[t]), params)]
            with torch.no_grad():
                w_ra = [(w + p) / 2.0 - gi / (2.0 * alpha) for w, p, gi in zip(w_ra, params, g)]
    return [p.detach() for p in params], w_ra, v


class _SGDZeroingInPlace(torch.optim.SGD):
    """Zeroes gradients in place (``set_to_none=False``), as some training loops do."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=False)


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, _SGDZeroingInPlace])
@pytest.mark.parametrize("alpha", [0.2, 0.5, 2.0])
def test_fptt_matches_a_hand_written_computation(alpha: float, optimizer_class: type[torch.optim.SGD]) -> None:
    """Beyond alpha = 0.5, where 2 alpha = 1 hides a product written for a quotient; with an
    optimizer that zeroes gradients in place, the previous step's gradient must be a copy."""
    model, linear, lif, _ = _fptt_setup()
    optimizer = optimizer_class(model.parameters(), lr=0.1)
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, alpha, w_ra)
    params, expected_w_ra, v = _manual_fptt(alpha)
    for got, want in zip([linear.weight, linear.bias, *w_ra], [*params, *expected_w_ra]):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lif.v, v, rtol=1e-5, atol=1e-6)


def test_fptt_learner_returns_task_loss_and_outputs() -> None:
    model, _, _, optimizer = _fptt_setup()
    learner = FPTTLearner()
    w_ra = learner.init_state(model, optimizer)
    losses: list[torch.Tensor] = []

    def loss_fn(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(y, target)
        losses.append(loss.detach().clone())
        return loss

    loss, y_seq = learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, loss_fn, state=w_ra, alpha=0.5)
    # loss_fn runs twice per step except the last: first forwards are calls 0, 2, 4.
    assert len(losses) == 5
    torch.testing.assert_close(loss, losses[0] + losses[2] + losses[4])
    assert y_seq.shape == (3, 1, 1) and not y_seq.requires_grad
    for value in losses:  # the user's loss tensors were not changed in place
        assert value.dim() == 0


def test_fptt_running_average_starts_from_independent_parameter_snapshots() -> None:
    model, linear, _, optimizer = _fptt_setup()
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    params = list(model.parameters())
    assert [tuple(w.shape) for w in w_ra] == [tuple(p.shape) for p in params]
    before = [w.clone() for w in w_ra]
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
    for w, b, p in zip(w_ra, before, params):
        assert torch.equal(w, b)
        assert w.data_ptr() != p.data_ptr()
        assert not w.requires_grad
    assert torch.equal(w_ra[0], torch.tensor([[0.5, -0.25]]))


def test_fptt_restores_the_advanced_state_between_forwards() -> None:
    # The second forward of a step starts from the state the first one left and advances it;
    # the next step must start from the state after the first forward, not the second.
    model, _, lif, optimizer = _fptt_setup()
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    before: list[Any] = []
    after: list[torch.Tensor] = []
    original_forward = lif.single_step_forward

    def recording_forward(x: torch.Tensor) -> Any:
        v = lif.v
        before.append(v.detach().clone() if isinstance(v, torch.Tensor) else v)
        out = original_forward(x)
        after.append(lif.v.detach().clone())
        return out

    lif.single_step_forward = recording_forward  # type: ignore[method-assign]  # a recording stand-in on purpose
    functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, 0.5, w_ra)
    # forwards: step 0 (first), step 0 (second), step 1 (first), step 1 (second), step 2 (first)
    assert len(before) == 5
    torch.testing.assert_close(before[1], after[0])  # the second forward starts from the advanced state
    torch.testing.assert_close(before[2], after[0])  # ... and is undone before the next step
    torch.testing.assert_close(before[4], after[2])
    assert not torch.equal(after[1], after[0]) and not torch.equal(after[3], after[2])
    torch.testing.assert_close(lif.v, after[4])


def test_fptt_keeps_one_potential_per_step_in_v_seq() -> None:
    # the discarded second forward of each step must not leave its potentials in v_seq either
    torch.manual_seed(0)
    x_seq, target_seq = torch.rand(4, 5, 3) * 3, torch.rand(4, 5, 2)
    lif = LIFNode(store_v_seq=True)
    model = nn.Sequential(nn.Linear(3, 2), lif)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    recorded: list[torch.Tensor] = []
    original_forward = lif.single_step_forward

    def recording_forward(x: torch.Tensor) -> Any:
        out = original_forward(x)
        recorded.append(lif.v.detach().clone())
        return out

    lif.single_step_forward = recording_forward  # type: ignore[method-assign]  # a recording stand-in on purpose
    functional.fptt_online_training(model, optimizer, x_seq, target_seq, F.mse_loss, 0.5, w_ra)
    assert lif.v_seq is not None and lif.v_seq.shape == (4, 5, 2)
    # the first forward of each step: recorded[0], [2], [4], [6]
    torch.testing.assert_close(lif.v_seq, torch.stack(recorded[0::2]))


def test_fptt_errors_name_the_problem() -> None:
    model, _, _, optimizer = _fptt_setup()
    learner = FPTTLearner()
    w_ra = learner.init_state(model, optimizer)
    with pytest.raises(ValueError, match="one tensor per optimizer parameter"):
        functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, 0.5, [])
    with pytest.raises(ValueError, match=r"w_ra\[0\].*\(1, 2\).*\(2, 1\)"):
        functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, 0.5,
                                        [torch.zeros(2, 1), w_ra[1]])
    with pytest.raises(ValueError, match="target_seq.*at least 3"):
        functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET[:2], F.mse_loss, 0.5, w_ra)
    before = [p.detach().clone() for p in model.parameters()]
    for target in (None, 3.0):
        with pytest.raises(TypeError, match="target_seq: expected a sequence or tensor with one target per step"):
            functional.fptt_online_training(model, optimizer, FPTT_X, target, F.mse_loss, 0.5, w_ra)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(TypeError, match="w_ra"):
        learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, state=tuple(w_ra), alpha=0.5)
    with pytest.raises(TypeError, match="w_ra"):
        learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, alpha=0.5)
    for alpha in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, state=w_ra, alpha=alpha)
    with pytest.raises(TypeError, match="alpha"):
        learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, state=w_ra, alpha=True)
    with pytest.raises(TypeError, match="online"):
        learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, state=w_ra, online=True)
    with pytest.raises(TypeError, match="scalar"):
        learner.train_sequence(model, optimizer, FPTT_X, FPTT_TARGET,
                               lambda y, t: (y - t) ** 2 + torch.zeros(3), state=w_ra, alpha=0.5)
    # nothing above changed the weights or the running average
    assert torch.equal(w_ra[0], torch.tensor([[0.5, -0.25]]))


def test_fptt_parameter_without_gradient_is_named() -> None:
    model, _, _, _ = _fptt_setup()
    unused = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([*model.parameters(), unused], lr=0.1)
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    before = [w.clone() for w in w_ra]
    with pytest.raises(RuntimeError, match=r"parameter 2 \(shape \(3,\)\)"):
        functional.fptt_online_training(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, 0.5, w_ra)
    # every gradient is checked before a running average changes; the gradients are cleared
    assert all(torch.equal(a, b) for a, b in zip(w_ra, before))
    assert all(p.grad is None for p in model.parameters())


def test_fptt_names_a_target_without_a_time_dimension() -> None:
    model, _, _, optimizer = _fptt_setup()
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    with pytest.raises(TypeError, match="target_seq: expected one target per step of x_seq .* got a 0-dim tensor"):
        functional.fptt_online_training(model, optimizer, FPTT_X, torch.tensor(1.0), F.mse_loss, 0.5, w_ra)


# ---------------------------------------------------------------------------------------------
# OTTT
# ---------------------------------------------------------------------------------------------


def test_ottt_reproduces_the_reference_golden_values() -> None:
    first = _set(layer.Linear(2, 2), [[1.0, 0.5], [-0.5, 1.5]])
    second = _set(layer.Linear(2, 1), [[0.7, 0.3]])
    model = OTTTSequential(first, OTTTLIFNode(), second)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.tensor([[[1.0, 0.5], [0.8, 1.2], [1.5, 1.5]]])
    target = torch.tensor([[[1.0], [0.0], [1.0]]])
    batch_loss, y_all = functional.ottt_online_training(model, optimizer, x, target, F.mse_loss, True)
    assert batch_loss.dim() == 0 and not batch_loss.requires_grad
    torch.testing.assert_close(batch_loss, torch.tensor(1.7852957), rtol=0, atol=1e-6)
    assert y_all.shape == (1, 3, 1) and not y_all.requires_grad
    torch.testing.assert_close(y_all.flatten(), torch.tensor([0.7, 1.12, 0.336]), rtol=0, atol=1e-6)
    torch.testing.assert_close(first.weight.detach(), torch.tensor([[0.9930760, 0.4560843], [-0.5135688, 1.4746075]]),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(second.weight.detach(), torch.tensor([[0.6564, 0.2752]]), rtol=0, atol=1e-6)


def _manual_ottt(weights: list[torch.Tensor], x: torch.Tensor, target: torch.Tensor, lr: float, online: bool,
                 tau: float = 2.0, v_threshold: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """OTTT written out by hand for Linear -> OTTT LIF (soft reset) -> Linear, mse loss, SGD."""
    decay = 1.0 - 1.0 / tau
    w1, b1, w2, b2 = (w.clone() for w in weights)
    batch, steps, _ = x.shape
    v = torch.zeros(batch, w1.shape[0], dtype=x.dtype)
    trace = torch.zeros_like(v)
    total = torch.zeros((), dtype=x.dtype)
    grads = [torch.zeros_like(w) for w in (w1, b1, w2, b2)]
    ys = []
    for t in range(steps):
        u = decay * v + x[:, t] @ w1.T + b1
        s = (u >= v_threshold).to(x.dtype)
        v = u - s * v_threshold
        trace = decay * trace + s
        y = s @ w2.T + b2
        ys.append(y)
        total = total + ((y - target[:, t]) ** 2).mean()
        delta = 2 * (y - target[:, t]) / y.numel()
        g_u = (delta @ w2) * _sigmoid_grad(u - v_threshold)
        step = [g_u.T @ x[:, t], g_u.sum(0), delta.T @ trace, delta.sum(0)]
        if online:
            w1, b1, w2, b2 = (w - lr * g for w, g in zip((w1, b1, w2, b2), step))
        else:
            grads = [a + g for a, g in zip(grads, step)]
    if not online:
        w1, b1, w2, b2 = (w - lr * g for w, g in zip((w1, b1, w2, b2), grads))
    return [w1, b1, w2, b2], total, torch.stack(ys, dim=1)


@pytest.mark.parametrize(("tau", "v_threshold"), [(2.0, 1.0), (4.0, 0.5)])
@pytest.mark.parametrize("online", [True, False])
def test_ottt_matches_a_hand_written_computation(online: bool, tau: float, v_threshold: float) -> None:
    """At tau = 2 the decay 1 - 1/tau equals 1/tau: tau = 4 tells them apart."""
    model = OTTTSequential(layer.Linear(3, 5), OTTTLIFNode(tau=tau, v_threshold=v_threshold), layer.Linear(5, 2)).double()
    with torch.no_grad():
        model[0].weight.mul_(4.0)  # enough drive that neurons fire
    weights = [p.detach().clone() for p in model.parameters()]
    x = torch.rand(4, 6, 3, dtype=torch.float64)
    target = torch.rand(4, 6, 2, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for p in model.parameters():  # gradients left over from before: the learner starts from zero
        p.grad = torch.ones_like(p)
    batch_loss, y_all = functional.ottt_online_training(model, optimizer, x, target, F.mse_loss, online)
    expected_weights, expected_loss, expected_y = _manual_ottt(weights, x, target, 0.05, online, tau, v_threshold)
    torch.testing.assert_close(batch_loss, expected_loss)
    torch.testing.assert_close(y_all, expected_y)
    for p, expected in zip(model.parameters(), expected_weights):
        torch.testing.assert_close(p.detach(), expected)
    assert 0 < y_all.abs().sum()


def test_ottt_documented_example_trains_for_many_steps() -> None:
    model = OTTTSequential(layer.Linear(8, 16), OTTTLIFNode(), layer.Linear(16, 4), LIFNode())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        x = torch.rand(5, 20, 8) * 3
        target = torch.rand(5, 20, 4)
        batch_loss, y_all = functional.ottt_online_training(model, optimizer, x, target, F.mse_loss, True)
        assert torch.isfinite(batch_loss) and y_all.shape == (5, 20, 4)
        functional.reset_net(model)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_ottt_unwraps_a_trailing_spike_trace_pair() -> None:
    model = OTTTSequential(layer.Linear(3, 4), OTTTLIFNode(v_threshold=0.1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def loss_fn(y: Any, target: torch.Tensor) -> torch.Tensor:
        seen.append(y)
        return F.mse_loss(y, target)

    _, y_all = OTTTLearner().train_sequence(model, optimizer, torch.rand(2, 3, 3), torch.rand(2, 3, 4), loss_fn)
    assert all(isinstance(y, torch.Tensor) for y in seen)
    assert y_all.shape == (2, 3, 4) and set(y_all.unique().tolist()) <= {0.0, 1.0}


def test_sltt_matches_a_hand_written_computation() -> None:
    model = nn.Sequential(layer.Linear(3, 5), SLTTLIFNode(), layer.Linear(5, 2)).double()
    with torch.no_grad():
        model[0].weight.mul_(6.0)
    w1, b1, w2, b2 = (p.detach().clone() for p in model.parameters())
    x = torch.rand(4, 5, 3, dtype=torch.float64)
    target = torch.rand(4, 5, 2, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    batch_loss, _ = SLTTLearner().train_sequence(model, optimizer, x, target, F.mse_loss, online=True)

    v = torch.zeros(4, 5, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for t in range(5):
        h = v + (x[:, t] @ w1.T + b1 - v) / 2.0
        s = (h >= 1.0).to(torch.float64)
        v = (1 - s) * h
        y = s @ w2.T + b2
        total = total + ((y - target[:, t]) ** 2).mean()
        delta = 2 * (y - target[:, t]) / y.numel()
        g_i = (delta @ w2) * _sigmoid_grad(h - 1.0) / 2.0
        w1, b1, w2, b2 = w1 - 0.05 * g_i.T @ x[:, t], b1 - 0.05 * g_i.sum(0), w2 - 0.05 * delta.T @ s, b2 - 0.05 * delta.sum(0)
    torch.testing.assert_close(batch_loss, total)
    for p, expected in zip(model.parameters(), (w1, b1, w2, b2)):
        torch.testing.assert_close(p.detach(), expected)


def test_ottt_errors_name_the_problem() -> None:
    model = OTTTSequential(layer.Linear(2, 2), OTTTLIFNode(), layer.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    learner = OTTTLearner()
    x, target = torch.rand(2, 3, 2), torch.rand(2, 3, 1)
    with pytest.raises(TypeError, match=r"online: expected a bool \(or the integer 0 or 1, a NumPy bool, a one-element boolean tensor\), got int 2"):
        learner.train_sequence(model, optimizer, x, target, F.mse_loss, online=2)
    with pytest.raises(TypeError, match="online"):
        functional.ottt_online_training(model, optimizer, x, target, F.mse_loss, "yes")
    with pytest.raises(ValueError, match="target_seq.*at least 3"):
        learner.train_sequence(model, optimizer, x, target[:, :2], F.mse_loss)
    with pytest.raises(ValueError, match="x_seq.*at least one time step"):
        learner.train_sequence(model, optimizer, x[:, :0], target, F.mse_loss)
    with pytest.raises(ValueError, match="x_seq.*\\[N, T, \\*\\]"):
        learner.train_sequence(model, optimizer, torch.rand(3), target, F.mse_loss)
    with pytest.raises(TypeError, match="target_seq"):
        learner.train_sequence(model, optimizer, x, [[0.0]], F.mse_loss)
    with pytest.raises(TypeError, match="alpha"):
        learner.train_sequence(model, optimizer, x, target, F.mse_loss, alpha=0.5)
    with pytest.raises(TypeError, match="optimizer"):
        learner.train_sequence(model, object(), x, target, F.mse_loss)
    with pytest.raises(TypeError, match="f_loss_t"):
        learner.train_sequence(model, optimizer, x, target, "mse")


def test_fptt_learner_takes_a_one_element_tensor_alpha() -> None:
    model, _, _, optimizer = _fptt_setup()
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    loss, _ = FPTTLearner().train_sequence(model, optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, state=w_ra, alpha=torch.tensor(0.5))
    assert torch.isfinite(loss)


class _DictOutput(nn.Module):
    """The FPTT setup's network with its output in a dict (reference 4.2: FPTT only hands
    ``y`` to ``f_loss_t``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _fptt_setup()[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.inner(x)}


def test_fptt_trains_models_whose_outputs_are_not_one_tensor_shape() -> None:
    """A dict output, or one whose shape changes from step to step, trains as the tensor does
    (the outputs used to be stacked, which raised after the first optimizer step); the learner
    then returns no output sequence."""
    wrapped = _DictOutput()
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    functional.fptt_online_training(
        wrapped, optimizer, FPTT_X, FPTT_TARGET, lambda y, t: F.mse_loss(y["out"], t), 0.5, w_ra
    )
    model, linear, _, plain_optimizer = _fptt_setup()
    plain_w_ra = functional.fptt_online_training_init_w_ra(plain_optimizer)
    functional.fptt_online_training(model, plain_optimizer, FPTT_X, FPTT_TARGET, F.mse_loss, 0.5, plain_w_ra)
    torch.testing.assert_close(wrapped.inner[0].weight, linear.weight, rtol=0, atol=0)

    class Alternating(nn.Module):
        """Outputs whose width changes from step to step (a selection by a mask)."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.linear(x)[..., : 1 + (self.calls // 2) % 2]  # first forwards: calls 1, 3, 5

    alternating = Alternating()
    optimizer = torch.optim.SGD(alternating.parameters(), lr=0.1)
    learner = FPTTLearner()
    loss, y_seq = learner.train_sequence(
        alternating, optimizer, FPTT_X, FPTT_TARGET, lambda y, t: (y**2).mean(),
        state=learner.init_state(alternating, optimizer), alpha=0.5,
    )
    assert y_seq is None and torch.isfinite(loss)
