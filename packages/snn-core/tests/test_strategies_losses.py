"""The in-tree forward strategies and losses, against plain loops and direct formulas."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from snn import functional
from snn.base import MemoryModule, extract_memories
from snn.layer import MultiStepContainer
from snn.losses import rate_cross_entropy, rate_mse
from snn.neuron import LIFNode
from snn.plugins import get_registry
from snn.strategies import checkpointed_strategy, loop_strategy

STRATEGIES = ("loop", "t_last", "chunked", "seq_to_ann", "t_last_seq_to_ann", "checkpointed")


class Accumulator(MemoryModule):
    def __init__(self) -> None:
        super().__init__()
        self.register_memory("total", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x
        return self.total


def strategy(name: str) -> Any:
    return get_registry().strategy(name).implementation


def lif_net(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 8), LIFNode(tau=2.0), nn.Linear(8, 6), LIFNode(tau=1.5, v_reset=None))
    with torch.no_grad():
        net[2].weight.mul_(4.0)  # strong enough that the second layer spikes too
    return net.to(dtype)


def plain_lif_loop(net: nn.Sequential, x_seq: torch.Tensor) -> torch.Tensor:
    """LIF dynamics written out (hard reset 0 for layer 1, soft reset for layer 3; sigmoid surrogate forward = Heaviside)."""
    v1 = torch.zeros(())
    v2 = torch.zeros(())
    out = []
    for x in x_seq:
        h1 = v1 + (net[0](x) - v1) / 2.0
        s1 = (h1 >= 1.0).to(x.dtype)
        v1 = (1 - s1) * h1
        h2 = v2 + (net[2](s1) - v2) / 1.5
        s2 = (h2 >= 1.0).to(x.dtype)
        v2 = h2 - s2
        out.append(s2)
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------


def test_builtin_strategies_and_losses_are_registered_with_provenance() -> None:
    registry = get_registry()
    for name in STRATEGIES:
        item = registry.strategy(name)
        assert item.provenance.plugin == "strategies" and item.provenance.distribution == "snn-core"
        assert item.description
    for name in ("tet", "spike_similar", "ce_rate", "mse_count"):
        item = registry.loss(name)
        assert item.provenance.plugin == "losses"
    assert {n for n, i in registry.losses.items() if i.metadata.get("signature") == "sequence_classification"} >= {
        "tet", "ce_rate", "mse_count"
    }
    assert registry.loss("tet").implementation is functional.temporal_efficient_training_cross_entropy
    assert registry.loss("spike_similar").implementation is functional.spike_similar_loss


# ---------------------------------------------------------------------------------------------
# simple strategies
# ---------------------------------------------------------------------------------------------


def test_loop_and_t_last_match_running_sums() -> None:
    x_seq = torch.randn(6, 2, 3)
    expected = torch.cumsum(x_seq, dim=0)
    torch.testing.assert_close(strategy("loop")(Accumulator(), x_seq), expected)
    t_last = strategy("t_last")(Accumulator(), x_seq.permute(1, 2, 0))
    torch.testing.assert_close(t_last, expected.permute(1, 2, 0))


def test_loop_with_lif_matches_written_out_dynamics() -> None:
    net = lif_net()
    x_seq = torch.randn(9, 4, 5, dtype=torch.float64) * 2
    torch.testing.assert_close(strategy("loop")(net, x_seq), plain_lif_loop(net, x_seq))


def test_chunked_matches_unsplit_multi_step_call() -> None:
    x_seq = torch.randn(7, 3, 4)
    whole = LIFNode(step_mode="m")(x_seq)
    sizes: list[int] = []

    class Recording(LIFNode):
        def multi_step_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            sizes.append(x.shape[0])
            return super().multi_step_forward(x, *args, **kwargs)

    chunked = strategy("chunked")(Recording(step_mode="m"), x_seq, split_size=3)
    assert sizes == [3, 3, 1]
    torch.testing.assert_close(chunked, whole)
    with pytest.raises(TypeError, match="split_size"):
        strategy("chunked")(LIFNode(step_mode="m"), x_seq)


def test_seq_to_ann_strategies_match_per_step_application() -> None:
    lin = nn.Linear(4, 2)
    x_seq = torch.randn(5, 3, 4)
    expected = torch.stack([lin(x) for x in x_seq])
    torch.testing.assert_close(strategy("seq_to_ann")(lin, x_seq), expected)
    t_last = strategy("t_last_seq_to_ann")(nn.Tanh(), x_seq.permute(1, 2, 0))
    torch.testing.assert_close(t_last, torch.tanh(x_seq).permute(1, 2, 0))


def test_strategies_reject_unknown_options() -> None:
    with pytest.raises(TypeError, match=r"forward strategy 'loop' takes no options, got unknown \['k'\]"):
        strategy("loop")(Accumulator(), torch.zeros(2, 1), k=2)
    with pytest.raises(TypeError, match=r"'checkpointed' takes only the options \['k'\], got unknown \['split_size'\]"):
        strategy("checkpointed")(Accumulator(), torch.zeros(2, 1), split_size=2)
    with pytest.raises(TypeError, match=r"'chunked' takes only the options \['split_size'\], got unknown \['k'\]"):
        strategy("chunked")(Accumulator(), torch.zeros(2, 1), split_size=1, k=2)


# ---------------------------------------------------------------------------------------------
# checkpointed
# ---------------------------------------------------------------------------------------------


def _run(name: str, net: nn.Module, x_seq: torch.Tensor, **options: Any) -> Any:
    functional.reset_net(net)
    x = x_seq.clone().requires_grad_()
    y = strategy(name)(net, x, **options)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    # Loss through the outputs and the final membrane potentials.
    loss = (y * weights).sum() + sum((m * m).sum() for m in extract_memories(net) if isinstance(m, torch.Tensor))
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, [x, *params])
    return y.detach(), grads, [m.detach().clone() for m in extract_memories(net)]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 12, 20])
def test_checkpointed_gradients_equal_loop_with_lif(k: int) -> None:
    net = lif_net()
    x_seq = torch.randn(12, 4, 5, dtype=torch.float64) * 2
    y_loop, g_loop, m_loop = _run("loop", net, x_seq)
    y_ckpt, g_ckpt, m_ckpt = _run("checkpointed", net, x_seq, k=k)
    assert torch.equal(y_ckpt, y_loop)
    assert 0 < y_loop.mean() < 1  # the network spikes, so the surrogate path is exercised
    for a, b in zip(g_ckpt, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # After backward (which recomputed segments) the memories hold the final state again.
    for a, b in zip(m_ckpt, m_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpointed_propagates_gradient_into_the_incoming_state() -> None:
    net = lif_net()
    warmup = torch.randn(3, 4, 5, dtype=torch.float64)
    x_seq = torch.randn(8, 4, 5, dtype=torch.float64)

    def run(name: str, **options: Any) -> Any:
        functional.reset_net(net)
        w = warmup.clone().requires_grad_()
        loop_strategy(net, w)  # leaves graph-connected states behind
        y = strategy(name)(net, x_seq, **options)
        (grad,) = torch.autograd.grad((y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum(), w)
        return grad

    expected = run("loop")
    torch.testing.assert_close(run("checkpointed", k=3), expected, rtol=1e-12, atol=1e-12)


def test_checkpointed_replays_dropout_identically() -> None:
    net = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), LIFNode()).double()
    x_seq = torch.randn(10, 3, 5, dtype=torch.float64) * 3
    torch.manual_seed(7)
    y_loop, g_loop, _ = _run("loop", net, x_seq)
    torch.manual_seed(7)
    y_ckpt, g_ckpt, _ = _run("checkpointed", net, x_seq, k=4)
    assert torch.equal(y_ckpt, y_loop)
    for a, b in zip(g_ckpt, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _saved_bytes(name: str, net: nn.Module, x_seq: torch.Tensor, **options: Any) -> int:
    """Bytes autograd saves for backward, excluding views of the input and of the parameters."""
    functional.reset_net(net)
    excluded = {x_seq.untyped_storage().data_ptr()} | {p.untyped_storage().data_ptr() for p in net.parameters()}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.untyped_storage().data_ptr() not in excluded:
            total += t.numel() * t.element_size()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        strategy(name)(net, x_seq, **options)
    return total


def test_checkpointed_saved_memory_is_order_T_over_k() -> None:
    net = lif_net(torch.float32)
    steps, batch = 24, 4
    x_seq = torch.randn(steps, batch, 5, requires_grad=True)
    state_bytes = batch * (8 + 6) * 4  # both LIF layers' potentials, float32
    loop_bytes = _saved_bytes("loop", net, x_seq)
    assert loop_bytes >= steps * state_bytes
    previous = loop_bytes
    for k in (1, 2, 3, 4, 6, 12, 24):
        saved = _saved_bytes("checkpointed", net, x_seq, k=k)
        assert saved <= math.ceil(steps / k) * state_bytes, (k, saved)
        assert saved < previous, (k, saved, previous)
        previous = saved


def test_checkpointed_without_grad_equals_loop_and_container_integration() -> None:
    net = lif_net()
    x_seq = torch.randn(9, 2, 5, dtype=torch.float64) * 2
    functional.reset_net(net)
    expected = loop_strategy(net, x_seq)
    functional.reset_net(net)
    with torch.no_grad():
        torch.testing.assert_close(checkpointed_strategy(net, x_seq, k=4), expected)
    container = MultiStepContainer(*lif_net(), strategy="checkpointed", k=2)
    torch.testing.assert_close(container(x_seq), expected)


def test_checkpointed_validation() -> None:
    with pytest.raises(ValueError, match="k: expected an int >= 1, got 0"):
        checkpointed_strategy(Accumulator(), torch.zeros(3, 1), k=0)
    with pytest.raises(TypeError, match="k: expected a positive int, got 1.5"):
        checkpointed_strategy(Accumulator(), torch.zeros(3, 1), k=1.5)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match="T >= 1"):
        checkpointed_strategy(Accumulator(), torch.zeros(0, 1))


def test_checkpointed_default_k_is_sqrt_T() -> None:
    net = lif_net(torch.float32)
    x_seq = torch.randn(16, 2, 5, requires_grad=True)
    assert _saved_bytes("checkpointed", net, x_seq) == _saved_bytes("checkpointed", net, x_seq, k=4)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


def test_ce_rate_matches_cross_entropy_of_time_mean() -> None:
    y_seq = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 2, 1, 2])
    mean = sum(y_seq[t] for t in range(5)) / 5
    expected = -torch.stack([torch.log_softmax(mean[i], 0)[target[i]] for i in range(4)]).mean()
    loss = get_registry().loss("ce_rate").implementation(y_seq, target)
    torch.testing.assert_close(loss, expected)
    assert torch.autograd.gradcheck(lambda y: rate_cross_entropy(y, target), (y_seq,))


def test_mse_count_matches_rate_against_one_hot() -> None:
    y_seq = (torch.rand(6, 3, 4) > 0.5).float()
    target = torch.tensor([3, 0, 1])
    rate = y_seq.sum(0) / 6
    one_hot = torch.zeros(3, 4)
    one_hot[torch.arange(3), target] = 1
    expected = ((rate - one_hot) ** 2).mean()
    torch.testing.assert_close(get_registry().loss("mse_count").implementation(y_seq, target), expected)
    torch.testing.assert_close(F.mse_loss(rate, one_hot), rate_mse(y_seq, target))


@pytest.mark.parametrize("loss", [rate_cross_entropy, rate_mse])
def test_rate_losses_validate(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    with pytest.raises(ValueError, match=r"y_seq: expected a 3-D tensor \[T, N, C\]"):
        loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="target: expected integer class indices"):
        loss(torch.randn(2, 4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"target: expected shape \[4\]"):
        loss(torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long))


def _container_run(strategy: str, **options: Any) -> dict[str, Any]:
    """A container with a recording neuron, a BatchNorm and a monitor: everything observable."""
    from snn import monitor

    torch.manual_seed(3)
    linear, bn = nn.Linear(3, 4).double(), nn.BatchNorm1d(4).double()
    node = LIFNode(store_v_seq=True)
    net = MultiStepContainer(linear, bn, node, strategy=strategy, **options)
    outputs = monitor.OutputMonitor(net, LIFNode)
    inputs = monitor.InputMonitor(net, nn.Linear)
    x = (torch.rand(7, 2, 3, dtype=torch.float64) * 3).requires_grad_()
    y = net(x)
    after_forward = {
        "records": len(outputs.records),
        "v_seq": node.v_seq.detach().clone(),
        "memories": [m.detach().clone() for m in extract_memories(net)],
        "running_mean": bn.running_mean.clone(),
    }
    (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    assert len(outputs.records) == after_forward["records"]
    assert len(inputs.records) == after_forward["records"]
    assert torch.equal(node.v_seq, after_forward["v_seq"])
    assert torch.equal(bn.running_mean, after_forward["running_mean"])
    for a, b in zip(extract_memories(net), after_forward["memories"]):
        assert torch.equal(a, b)
    return {
        "y": y.detach(),
        "x_grad": x.grad,
        "weight_grad": linear.weight.grad,
        "records": torch.stack([r for r in outputs.records]),
        "v_seq": node.v_seq.detach(),
        "running_mean": bn.running_mean,
        "num_batches": bn.num_batches_tracked,
    }


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_checkpointed_recomputation_leaves_no_trace_and_matches_loop(k: int) -> None:
    loop = _container_run("loop")
    ckpt = _container_run("checkpointed", k=k)
    assert loop["records"].shape[0] == 7 and loop["v_seq"].shape[0] == 7
    for name in ("y", "records", "v_seq", "running_mean", "num_batches"):
        assert torch.equal(ckpt[name], loop[name]), name
    for name in ("x_grad", "weight_grad"):
        torch.testing.assert_close(ckpt[name], loop[name], rtol=1e-12, atol=1e-12)


def test_checkpointed_recomputation_runs_other_forward_hooks_and_first_forward_records() -> None:
    from snn import monitor

    node = LIFNode(store_v_seq=True)
    net = MultiStepContainer(nn.Linear(3, 3), node, strategy="checkpointed", k=2)
    calls: list[int] = []
    node.register_forward_hook(lambda *_: calls.append(1))
    mon = monitor.OutputMonitor(net, LIFNode)
    net(torch.rand(6, 2, 3, requires_grad=True) * 3).sum().backward()
    assert len(mon.records) == 6 and node.v_seq is not None and node.v_seq.shape[0] == 6
    assert len(calls) > 6  # the recomputation ran the plain hook again, only monitors paused


class _StepCounter(nn.Module):
    """Counts its calls in a buffer it replaces (not updates in place) at every call."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count = self.count + 1
        return x


@pytest.mark.parametrize("strategy", ["loop", "checkpointed"])
def test_checkpointed_recomputation_restores_a_replaced_buffer(strategy: str) -> None:
    counter = _StepCounter()
    net = MultiStepContainer(counter, nn.Linear(3, 3), LIFNode(), strategy=strategy, **({"k": 2} if strategy == "checkpointed" else {}))
    net(torch.rand(6, 2, 3, requires_grad=True) * 3).sum().backward()
    assert int(counter.count) == 6  # 12 when the recomputation's replacement survived
    assert counter.count is counter._buffers["count"]


def test_container_refuses_unknown_strategy_options_at_construction() -> None:
    with pytest.raises(TypeError, match=r"forward strategy 'checkpointed' takes only the options \['k'\], got unknown \['kk'\]"):
        MultiStepContainer(nn.Linear(2, 2), strategy="checkpointed", kk=3)
    with pytest.raises(TypeError, match=r"forward strategy 'loop' takes no options, got unknown \['k'\]"):
        MultiStepContainer(nn.Linear(2, 2), strategy="loop", k=3)
    assert MultiStepContainer(nn.Linear(2, 2), strategy="checkpointed", k=3).strategy_options == {"k": 3}


def test_check_strategy_options_reads_a_third_party_signature() -> None:
    from snn.strategies import check_strategy_options

    def mine(module: Any, x_seq: torch.Tensor, *, depth: int, scale: float = 1.0) -> Any:
        return x_seq

    def open_ended(module: Any, x_seq: torch.Tensor, **options: Any) -> Any:
        return x_seq

    check_strategy_options("mine", mine, {"depth": 2})
    with pytest.raises(TypeError, match=r"'mine' takes only the options \['depth', 'scale'\], got unknown \['deep'\]"):
        check_strategy_options("mine", mine, {"deep": 2})
    with pytest.raises(TypeError, match=r"'mine' requires the options \['depth'\]"):
        check_strategy_options("mine", mine, {"scale": 2.0})
    check_strategy_options("open", open_ended, {"anything": 1})  # checks its options when called
