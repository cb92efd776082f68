"""snn.functional.to_functional_forward: explicit-state forward, under torch.func transforms too.

References: the stateful forward of the same module (same arithmetic: bit-identical), a plain
PyTorch loop of the LIF equations, and torch.autograd on the stateful forward for gradients.
Under torch.func transforms the neurons run their autograd dynamics instead of the fused torch
kernel; the kernel computes the LIF charge with torch.lerp (a different rounding), so those
comparisons use a float32 tolerance.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import snn.functional as F
from snn import base, layer, neuron
from snn.functional import to_functional_forward

# the fused kernel and the autograd dynamics round the LIF charge differently (lerp vs a sum)
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _net(step_mode: str = "s") -> nn.Sequential:
    net = nn.Sequential(
        layer.Linear(4, 6),
        neuron.LIFNode(tau=2.0),
        layer.Linear(6, 3),
        neuron.IFNode(v_threshold=0.8, v_reset=None),
    )
    F.set_step_mode(net, step_mode)
    return net


def _random_states(net: nn.Module, shapes: list[tuple[int, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.rand(shape) for shape in shapes)


class Counter(base.MemoryModule):
    """Counts steps and returns the input and the count (two outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_memory("count", 0.0)

    def single_step_forward(self, x: torch.Tensor, *, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        self.count = self.count + 1.0
        return x * scale, torch.as_tensor(self.count)


class InPlace(base.MemoryModule):
    """Updates its state in place (which explicit states cannot allow)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_memory("v", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.v, torch.Tensor):
            self.v.add_(x)
        else:
            self.v = x.clone()
        return self.v


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_equals_the_stateful_forward_and_leaves_module_and_states_alone(step_mode: str) -> None:
    net = _net(step_mode)
    x = torch.randn(5, 4) * 2 if step_mode == "s" else torch.randn(7, 5, 4) * 2
    states = _random_states(net, [(5, 6), (5, 3)])
    saved = tuple(s.clone() for s in states)
    f = to_functional_forward(net)
    (y,), new_states = f((x,), states)

    assert base.extract_memories(net) == [0.0, 0.0]  # the module's own memories are untouched
    for s, before in zip(states, saved):
        assert torch.equal(s, before)
    base.load_memories(net, list(states))
    expected = net(x)
    assert torch.equal(y, expected)
    assert len(new_states) == 2
    for new, memory in zip(new_states, base.extract_memories(net)):
        assert torch.equal(new, memory)
    assert y.sum() > 0  # some spikes: the comparison is not of two zero tensors


def test_matches_a_plain_loop_of_the_lif_equations() -> None:
    lif = neuron.LIFNode(tau=3.0, v_threshold=1.0, v_reset=0.0)
    f = to_functional_forward(lif)
    x_seq = torch.rand(20, 8) * 1.5
    v = torch.rand(8)
    v_ref = v.clone().double()
    for t in range(20):
        (spike,), (v,) = f((x_seq[t],), (v,))
        h = v_ref + (x_seq[t].double() - v_ref) / 3.0
        s_ref = (h >= 1.0).double()
        v_ref = h * (1 - s_ref)
        assert torch.equal(spike.double(), s_ref)
        torch.testing.assert_close(v.double(), v_ref, rtol=1e-6, atol=1e-6)


def test_fresh_states_are_numbers_and_kwargs_and_several_outputs_pass_through() -> None:
    counter = Counter()
    f = to_functional_forward(counter)
    states = tuple(base.extract_memories(counter))
    assert states == (0.0,)
    (y, count), (new_count,) = f((torch.ones(2),), states, scale=3.0)
    assert torch.equal(y, torch.full((2,), 3.0))
    assert float(count) == 1.0 and new_count == 1.0
    assert counter.count == 0.0


def test_fn_replaces_the_forward() -> None:
    net = _net()
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return net(x) * 2.0

    f = to_functional_forward(net, fn=forward)
    (y,), _ = f((torch.ones(2, 4),), (torch.zeros(2, 6), torch.zeros(2, 3)))
    F.reset_net(net)
    base.load_memories(net, [torch.zeros(2, 6), torch.zeros(2, 3)])
    assert torch.equal(y, net(torch.ones(2, 4)) * 2.0)
    assert calls == [torch.Size([2, 4])]


def test_grad_over_states_matches_autograd_on_the_stateful_forward() -> None:
    net = _net()
    x = torch.randn(5, 4) * 2
    v1, v2 = torch.rand(5, 6), torch.rand(5, 3)
    f = to_functional_forward(net)

    def loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        (y,), (na, nb) = f((x,), (a, b))
        return (y * torch.arange(3.0)).sum() + (na**2).sum() + nb.sum()

    g1, g2 = grad(loss, argnums=(0, 1))(v1, v2)

    a, b = v1.clone().requires_grad_(), v2.clone().requires_grad_()
    base.load_memories(net, [a, b])
    y = net(x)
    na, nb = base.extract_memories(net)
    ((y * torch.arange(3.0)).sum() + (na**2).sum() + nb.sum()).backward()
    torch.testing.assert_close(g1, a.grad, **TOL)
    torch.testing.assert_close(g2, b.grad, **TOL)
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0


def test_grad_over_parameters_with_functional_call() -> None:
    net = _net("m")
    x_seq = torch.randn(6, 5, 4) * 2
    states = (torch.zeros(5, 6), torch.zeros(5, 3))
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        f = to_functional_forward(net, lambda x: functional_call(net, params, (x,)))
        (y,), (v1, _) = f((x_seq,), states)
        return y.sum() + v1.sum()

    grads = grad(loss)(params)

    F.reset_net(net)
    base.load_memories(net, list(states))
    y = net(x_seq)
    (y.sum() + base.extract_memories(net)[0].sum()).backward()
    assert sorted(grads) == sorted(k for k, _ in net.named_parameters())
    for name, p in net.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, **TOL)
    assert grads["0.weight"].abs().sum() > 0


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_vmap_over_a_batch_of_states_equals_one_call_per_state(step_mode: str) -> None:
    net = _net(step_mode)
    x = torch.randn(5, 4) * 2 if step_mode == "s" else torch.randn(4, 5, 4) * 2
    batch = (torch.rand(7, 5, 6) * 1.5, torch.rand(7, 5, 3))
    f = to_functional_forward(net)
    (ys,), (n1, n2) = vmap(lambda a, b: f((x,), (a, b)))(*batch)
    assert ys.shape[0] == 7 and n1.shape == (7, 5, 6)
    for i in range(7):
        (y,), (m1, m2) = f((x,), (batch[0][i], batch[1][i]))
        torch.testing.assert_close(ys[i], y, **TOL)
        torch.testing.assert_close(n1[i], m1, **TOL)
        torch.testing.assert_close(n2[i], m2, **TOL)
    assert not torch.equal(ys[0], ys[1])  # the states matter


def test_transforms_leave_the_neurons_on_their_kernels_afterwards() -> None:
    net = _net()
    f = to_functional_forward(net)
    vmap(lambda a, b: f((torch.ones(2, 4),), (a, b)))(torch.zeros(3, 2, 6), torch.zeros(3, 2, 3))
    assert "single_step_forward" not in net[1].__dict__
    assert "multi_step_forward" not in net[1].__dict__


def test_wrong_arguments_are_named() -> None:
    net = _net()
    f = to_functional_forward(net)
    with pytest.raises(ValueError, match="expected 2 states.*got 1"):
        f((torch.ones(2, 4),), (torch.zeros(2, 6),))
    with pytest.raises(TypeError, match="inputs: expected a tuple"):
        f(torch.ones(2, 4), (0.0, 0.0))
    with pytest.raises(TypeError, match="states: expected a tuple"):
        f((torch.ones(2, 4),), torch.zeros(2, 6))
    with pytest.raises(TypeError, match="module: expected a torch.nn.Module"):
        to_functional_forward(lambda x: x)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="fn: expected a callable"):
        to_functional_forward(net, fn=3)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_a_module_that_writes_its_state_in_place_is_reported() -> None:
    f = to_functional_forward(InPlace())
    with pytest.raises(RuntimeError, match="state 0 was modified in place"):
        f((torch.ones(3),), (torch.zeros(3),))


def test_functional_forward_leaves_the_recorded_v_seq_alone() -> None:
    from snn import neuron
    from snn.functional import to_functional_forward

    lif = neuron.LIFNode(store_v_seq=True)
    f = to_functional_forward(lif)
    (spike,), (v,) = f((torch.tensor([[1.5, 0.5]]),), (torch.tensor([[1.0, 0.0]]),))
    assert spike.tolist() == [[1.0, 0.0]] and v.tolist() == [[0.0, 0.25]]
    assert lif.v_seq is None  # was [[0.0, 0.25]]: the module is documented as left unchanged
    lif(torch.tensor([[0.4, 0.4]]))
    recorded = lif.v_seq.clone()
    f((torch.tensor([[1.5, 0.5]]),), (torch.tensor([[1.0, 0.0]]),))
    assert torch.equal(lif.v_seq, recorded)


def test_functional_forward_names_a_state_of_the_wrong_kind() -> None:
    import numpy as np

    from snn import layer, neuron
    from snn.functional import to_functional_forward

    net = torch.nn.Sequential(layer.Linear(2, 2), neuron.LIFNode())
    f = to_functional_forward(net)
    with pytest.raises(TypeError, match=r"states\[0\] \(memory 1\.v\): expected a real number or a tensor, got str"):
        f((torch.ones(1, 2),), ("0.5",))
    with pytest.raises(TypeError, match=r"states\[0\] \(memory 1\.v\): expected a real number or a tensor, got NoneType"):
        f((torch.ones(1, 2),), (None,))
    _, (from_numpy,) = f((torch.ones(1, 2),), (np.float32(0.25),))
    _, (from_float,) = f((torch.ones(1, 2),), (0.25,))
    assert torch.equal(from_numpy, from_float)
