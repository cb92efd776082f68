"""snn.functional network configuration: reset_net (and its cache), set_step_mode, set_backend, detach_net."""

from __future__ import annotations

import gc
import logging
import re
import types
import warnings

import pytest
import torch
from torch import nn

import snn
from snn import functional, neuron
from snn.base import MemoryModule, StepModule
from snn.errors import BackendNotFoundError, BackendUnavailableError
from snn.functional import net_config
from snn.registry import BackendRegistrar


class Accumulator(MemoryModule):
    """y[t] = y[t-1] + x[t]; counts its resets."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.register_memory("total", 0.0)
        self.resets = 0

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x
        return self.total

    def reset(self) -> None:
        self.resets += 1
        super().reset()


class DuckResettable(nn.Module):
    """Not a MemoryModule, but has a callable reset()."""

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


class FakeLIF(neuron.LIFNode):
    """A LIF neuron (only its backend handling is used here)."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__(step_mode=step_mode)


# ---------------------------------------------------------------------------------------------
# reset_net
# ---------------------------------------------------------------------------------------------


def test_reset_net_resets_memories_and_keeps_parameters() -> None:
    net = nn.Sequential(nn.Linear(2, 2), Accumulator(), nn.Linear(2, 2), Accumulator())
    params = [p.detach().clone() for p in net.parameters()]
    for _ in range(3):
        net(torch.ones(1, 2))
    assert not torch.equal(torch.as_tensor(net[1].total), torch.zeros(1, 2))
    functional.reset_net(net)
    assert net[1].total == 0.0 and net[3].total == 0.0
    for before, after in zip(params, net.parameters()):
        assert torch.equal(before, after)


def test_collect_reset_modules_order_and_non_callable_reset_ignored() -> None:
    odd = nn.Identity()
    odd.reset = 1  # a non-callable attribute named reset
    inner = Accumulator()
    net = nn.Sequential(Accumulator(), nn.Sequential(odd, inner), DuckResettable())
    collected = net_config.collect_reset_modules(net)
    assert collected == (net[0], inner, net[2])
    again = net_config.collect_reset_modules(net)
    assert again == collected and again is not collected  # stateless, new tuple each call


def test_reset_net_caches_weakrefs_and_reuses_the_same_tuple() -> None:
    net = nn.Sequential(Accumulator(), nn.ReLU(), Accumulator())
    functional.reset_net(net)
    assert net in net_config._RESET_MODULE_CACHE
    entry = net_config._RESET_MODULE_CACHE[net]
    assert [ref() for ref in entry] == [net[0], net[2]]
    functional.reset_net(net)
    assert net_config._RESET_MODULE_CACHE[net] is entry
    assert net[0].resets == 2 and net[2].resets == 2


def test_reset_net_cache_is_stale_until_invalidated() -> None:
    net = nn.Sequential(Accumulator(), Accumulator())
    functional.reset_net(net)
    old = net[1]
    new = Accumulator()
    net[1] = new
    functional.reset_net(net)
    assert old.resets == 2 and new.resets == 0  # stale by design
    net_config.invalidate_reset_cache(net)
    assert net not in net_config._RESET_MODULE_CACHE
    functional.reset_net(net)
    assert new.resets == 1 and old.resets == 2
    assert [ref() for ref in net_config._RESET_MODULE_CACHE[net]] == [net[0], new]


def test_reset_net_recollects_when_a_cached_module_died() -> None:
    net = nn.Sequential(Accumulator(), Accumulator())
    functional.reset_net(net)
    del net[1]
    gc.collect()
    functional.reset_net(net)
    assert [ref() for ref in net_config._RESET_MODULE_CACHE[net]] == [net[0]]


def test_invalidate_reset_cache_ignores_unknown_and_unhashable_nets() -> None:
    net_config.invalidate_reset_cache(nn.Linear(1, 1))

    class Unhashable(nn.Module):
        __hash__ = None  # type: ignore[assignment]  # an unhashable module on purpose

    net_config.invalidate_reset_cache(Unhashable())
    net_config.invalidate_reset_cache(object())  # not a module: nothing to do


def test_reset_net_with_nothing_resettable_caches_empty_tuple() -> None:
    net = nn.Sequential(nn.Linear(1, 1))
    functional.reset_net(net)
    assert net_config._RESET_MODULE_CACHE[net] == ()


def test_reset_net_cache_entry_released_with_network() -> None:
    net = nn.Sequential(Accumulator())
    functional.reset_net(net)
    size = len(net_config._RESET_MODULE_CACHE)
    del net
    gc.collect()
    assert len(net_config._RESET_MODULE_CACHE) == size - 1


def test_reset_net_bypasses_cache_for_modules_with_custom_eq_or_hash() -> None:
    class Hashable(nn.Sequential):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Hashable)

        def __hash__(self) -> int:
            return 7

    net = Hashable(Accumulator())
    functional.reset_net(net)
    functional.reset_net(net)
    assert net[0].resets == 2
    assert all(key is not net for key in net_config._RESET_MODULE_CACHE.keys())


def test_reset_net_warns_for_non_memory_module(caplog: pytest.LogCaptureFixture) -> None:
    duck = DuckResettable()
    with caplog.at_level(logging.WARNING, logger="snn"):
        functional.reset_net(nn.Sequential(duck))
    assert duck.resets == 1
    records = [r for r in caplog.records if r.name == "snn"]
    assert any("not snn.base.MemoryModule" in r.getMessage() and "reset()" in r.getMessage() for r in records)


def test_reset_net_propagates_reset_errors_and_stops() -> None:
    class Boom(MemoryModule):
        def reset(self) -> None:
            raise RuntimeError("boom")

    after = Accumulator()
    with pytest.raises(RuntimeError, match="boom"):
        functional.reset_net(nn.Sequential(Boom(), after))
    assert after.resets == 0


def test_reset_collected_modules_after_invalidate() -> None:
    net = nn.Sequential(Accumulator())
    functional.reset_net(net)
    net_config.invalidate_reset_cache(net)
    net_config.reset_collected_modules(net_config.collect_reset_modules(net))
    assert net[0].resets == 2


def test_reset_net_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got list"):
        functional.reset_net([Accumulator()])


# ---------------------------------------------------------------------------------------------
# detach_net
# ---------------------------------------------------------------------------------------------


def test_detach_net_cuts_states_in_place_and_keeps_parameters() -> None:
    lin = nn.Linear(2, 2)
    acc = Accumulator()
    net = nn.Sequential(lin, acc)
    net(torch.ones(1, 2))
    state = acc.total
    assert state.grad_fn is not None
    functional.detach_net(net)
    assert acc.total is state and state.grad_fn is None and not state.requires_grad
    assert lin.weight.requires_grad
    # The next step no longer backpropagates into the first one.
    y = net(torch.ones(1, 2))
    y.sum().backward()
    assert lin.weight.grad is not None


def test_detach_net_warns_for_duck_typed_modules(caplog: pytest.LogCaptureFixture) -> None:
    class Duck(nn.Module):
        detached = False

        def detach(self) -> None:
            self.detached = True

    duck = Duck()
    with caplog.at_level(logging.WARNING, logger="snn"):
        functional.detach_net(nn.Sequential(duck))
    assert duck.detached
    assert any("detach()" in r.getMessage() and "not snn.base.MemoryModule" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# set_step_mode
# ---------------------------------------------------------------------------------------------


class StepLayer(nn.Module, StepModule):
    def __init__(self, step_mode: str = "s") -> None:
        super().__init__()
        self.step_mode = step_mode


class SingleOnly(nn.Module, StepModule):
    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s",)

    def __init__(self) -> None:
        super().__init__()
        self.step_mode = "s"


def test_set_step_mode_sets_every_step_module() -> None:
    net = nn.Sequential(StepLayer(), nn.Sequential(Accumulator(), nn.ReLU()), StepLayer())
    functional.set_step_mode(net, "m")
    assert [net[0].step_mode, net[1][0].step_mode, net[2].step_mode] == ["m", "m", "m"]
    functional.set_step_mode(net, "s")
    assert net[1][0].step_mode == "s"


def test_set_step_mode_does_not_descend_into_containers() -> None:
    from snn.layer import (
        ElementWiseRecurrentContainer,
        LinearRecurrentContainer,
        MultiStepContainer,
        SeqToANNContainer,
        StepModeContainer,
        TLastMultiStepContainer,
        TLastSeqToANNContainer,
    )

    inner = {name: StepLayer() for name in ("msc", "s2a", "tlm", "tls", "smc", "ewr", "lrc")}
    nested = StepModeContainer(False, "s", StepModeContainer(False, "s", inner["smc"]))
    net = nn.Sequential(
        MultiStepContainer(inner["msc"]),
        SeqToANNContainer(inner["s2a"]),
        TLastMultiStepContainer(inner["tlm"]),
        TLastSeqToANNContainer(inner["tls"]),
        nested,
        ElementWiseRecurrentContainer(inner["ewr"], torch.add),
        LinearRecurrentContainer(inner["lrc"], 2, 2),
        StepLayer(),
    )
    functional.set_step_mode(net, "m")
    assert all(layer.step_mode == "s" for layer in inner.values())
    assert nested.step_mode == "m" and nested[0].step_mode == "s"
    assert net[5].step_mode == "m" and net[6].step_mode == "m" and net[7].step_mode == "m"
    # Multi-step containers have a fixed mode: setting 's' leaves them (and their children) alone.
    functional.set_step_mode(net, "s")
    assert net[0].step_mode == "m" and net[1].step_mode == "m"
    assert nested.step_mode == "s" and net[7].step_mode == "s"


def test_set_step_mode_keeps_wrapped_layers_working() -> None:
    from snn.layer import SeqToANNContainer

    class FixedRankLinear(nn.Linear, StepModule):
        """Rejects sequences when in 's' and single steps when in 'm' (like fixed-rank wrappers)."""

        def __init__(self) -> None:
            super().__init__(3, 2)
            self.step_mode = "s"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            expected = 2 if self.step_mode == "s" else 3
            if x.dim() != expected:
                raise ValueError(f"expected {expected} dims, got {x.dim()}")
            return super().forward(x)

    net = nn.Sequential(SeqToANNContainer(FixedRankLinear()), Accumulator())
    functional.set_step_mode(net, "m")
    x_seq = torch.randn(4, 5, 3)
    y = net(x_seq)
    expected = torch.cumsum(net[0][0](x_seq.flatten(0, 1)).unflatten(0, (4, 5)), dim=0)
    torch.testing.assert_close(y, expected)


def test_set_step_mode_warns_for_duck_typed_modules(caplog: pytest.LogCaptureFixture) -> None:
    duck = nn.Identity()
    duck.step_mode = "s"
    with caplog.at_level(logging.WARNING, logger="snn"):
        functional.set_step_mode(nn.Sequential(duck), "m")
    assert duck.step_mode == "m"
    assert any("not snn.base.StepModule" in r.getMessage() for r in caplog.records)


def test_set_step_mode_names_plain_torch_modules_that_misread_sequences() -> None:
    """A plain nn.Flatten between layer.Conv2d and layer.Linear: a StepModeWarning up front
    instead of torch's 'mat1 and mat2 shapes cannot be multiplied' at the first forward."""
    from snn import layer, neuron
    from snn.errors import StepModeWarning

    net = nn.Sequential(
        layer.Conv2d(1, 2, 3, padding=1), neuron.LIFNode(),
        nn.Flatten(),
        layer.Linear(2 * 4 * 4, 3), neuron.LIFNode(),
        nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)),
    )
    with pytest.warns(StepModeWarning) as caught:
        functional.set_step_mode(net, "m")
    (warning,) = caught
    message = str(warning.message)
    assert "'2' (torch.nn.Flatten): use snn.layer.Flatten (or wrap it in snn.layer.SeqToANNContainer)" in message
    assert "'5.1' (torch.nn.BatchNorm1d): use snn.layer.BatchNorm1d" in message
    assert "ReLU" not in message and "Linear" not in message and "Conv2d" not in message
    assert warning.filename == __file__  # points at the caller's line
    x_seq = torch.rand(4, 3, 1, 4, 4)
    with pytest.raises(RuntimeError):  # what the warning prevents
        net(x_seq)
    # the advice works: with the replacements the network runs and warns no more
    net[2] = layer.Flatten()
    net[5][1] = layer.BatchNorm1d(3)
    functional.reset_net(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepModeWarning)
        functional.set_step_mode(net, "m")
    assert net(x_seq).shape == (4, 3, 3)


def test_set_step_mode_is_quiet_where_plain_modules_are_fine() -> None:
    from snn import layer, neuron
    from snn.errors import StepModeWarning

    fine = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2)),  # sees [T * N, ...]
        layer.MultiStepContainer(nn.Flatten(), nn.Linear(32, 8)),                  # sees one step
        neuron.LIFNode(),
        nn.Flatten(start_dim=-1),  # counts from the end: the same in both modes
        nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.1), nn.LayerNorm(4), nn.Softmax(dim=-1),
        # written for [T, N, ...]: dimensions from 2 on, or T merged with N
        nn.Unflatten(2, (2, 2)), nn.Flatten(2), nn.Softmax(dim=2), nn.LogSoftmax(dim=2),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepModeWarning)
        functional.set_step_mode(fine, "m")
        assert fine(torch.rand(3, 2, 1, 4, 4)).shape == (3, 2, 4)
        functional.set_step_mode(nn.Sequential(nn.Flatten(0, 1), neuron.LIFNode()), "m")  # T and N merged
        # single-step mode: plain modules get [N, ...], as they expect
        functional.set_step_mode(nn.Sequential(nn.Flatten(), nn.Conv1d(1, 1, 1), neuron.LIFNode()), "s")


@pytest.mark.parametrize(
    ("module", "replacement"),
    [
        (nn.Conv1d(1, 1, 1), "use snn.layer.Conv1d"),
        (nn.MaxPool2d(2), "use snn.layer.MaxPool2d"),
        (nn.AdaptiveAvgPool2d(1), "use snn.layer.AdaptiveAvgPool2d"),
        (nn.GroupNorm(1, 2), "use snn.layer.GroupNorm"),
        (nn.Upsample(scale_factor=2), "use snn.layer.Upsample"),
        (nn.Flatten(1, 2), "use snn.layer.Flatten"),
        (nn.Softmax(dim=None), "wrap it in snn.layer.SeqToANNContainer"),
        (nn.Dropout2d(0.1), "wrap it in snn.layer.SeqToANNContainer"),
        (nn.AdaptiveMaxPool2d(1), "wrap it in snn.layer.SeqToANNContainer"),
        (nn.Softmax(dim=1), "wrap it in snn.layer.SeqToANNContainer"),
        (nn.Unflatten(1, (2, 2)), "wrap it in snn.layer.SeqToANNContainer"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, nn.Module) else "",
)
def test_set_step_mode_replacement_advice(module: nn.Module, replacement: str) -> None:
    from snn.errors import StepModeWarning

    with pytest.warns(StepModeWarning, match=rf"'0' \(torch\.nn\.{type(module).__name__}\): {re.escape(replacement)}") as caught:
        functional.set_step_mode(nn.Sequential(module), "m")
    assert "use wrap" not in str(caught[0].message)


def test_set_step_mode_validates_before_changing_anything() -> None:
    first = StepLayer()
    net = nn.Sequential(first, SingleOnly())
    with pytest.raises(ValueError, match=r"SingleOnly supports only \('s',\), got 'm'"):
        functional.set_step_mode(net, "m")
    assert first.step_mode == "s"
    with pytest.raises(ValueError, match=r"step_mode: expected one of \('s', 'm'\), got 'x'"):
        functional.set_step_mode(net, "x")
    with pytest.raises(TypeError, match="step_mode"):
        functional.set_step_mode(net, None)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="net"):
        functional.set_step_mode("net", "m")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# ---------------------------------------------------------------------------------------------
# set_backend
# ---------------------------------------------------------------------------------------------


def _backend_plugin(name: str, reason: str | None = None) -> types.SimpleNamespace:
    @snn.hookimpl
    def snn_register_backends(register: BackendRegistrar) -> None:
        register(
            name,
            {"multi_step": "math:sqrt"},  # never imported by these tests
            models=("lif",),
            devices=("cpu",),
            dtypes=(torch.float32,),
            surrogates=("Sigmoid",),
            probe=lambda: reason,
        )

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


def test_set_backend_unknown_name_raises_and_lists_known() -> None:
    net = nn.Sequential(FakeLIF())
    with pytest.raises(BackendNotFoundError, match="'torch'") as info:
        functional.set_backend(net, "warp-drive")
    assert "warp-drive" in str(info.value)
    assert net[0].backend == "torch"


def test_set_backend_known_but_unsupported_keeps_backend_and_warns(
    temporary_plugin, caplog: pytest.LogCaptureFixture
) -> None:
    temporary_plugin(_backend_plugin("fastlif"), name="fastlif")
    node = FakeLIF(step_mode="s")  # 'fastlif' serves only multi-step
    plain = Accumulator(step_mode="m")  # no neuron kind: torch only
    net = nn.Sequential(node, plain)
    with caplog.at_level(logging.WARNING, logger="snn"):
        functional.set_backend(net, "fastlif")
    assert node.backend == "torch" and plain.backend == "torch"
    messages = [r.getMessage() for r in caplog.records if r.name == "snn"]
    assert any(
        m.endswith("does not support backend=fastlif; it will continue using backend=torch") for m in messages
    )
    functional.set_step_mode(net, "m")
    functional.set_backend(net, "fastlif")
    assert node.backend == "fastlif" and plain.backend == "torch"
    functional.set_backend(net, "torch")
    assert node.backend == "torch"


def test_set_backend_unavailable_raises_before_changing(temporary_plugin) -> None:
    temporary_plugin(_backend_plugin("nodevice", reason="no such device here"), name="nodevice")
    first, second = FakeLIF("m"), FakeLIF("m")
    with pytest.raises(BackendUnavailableError, match="no such device here"):
        functional.set_backend(nn.Sequential(first, second), "nodevice")
    assert first.backend == "torch" and second.backend == "torch"


def test_set_backend_instance_filter_and_auto() -> None:
    class Other(FakeLIF):
        pass

    a, b = FakeLIF("m"), Other("m")
    net = nn.Sequential(a, b, Accumulator())
    functional.set_backend(net, "auto", instance=Other)
    assert a.backend == "torch" and b.backend == "auto"
    functional.set_backend(net, "auto", instance=(FakeLIF,))
    assert a.backend == "auto" and net[2].backend == "torch"
    with pytest.raises(TypeError, match="instance"):
        functional.set_backend(net, "torch", instance="FakeLIF")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="backend: expected a string"):
        functional.set_backend(net, 3)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_set_backend_warns_for_duck_typed_modules(caplog: pytest.LogCaptureFixture) -> None:
    class Duck(nn.Module):
        backend = "torch"
        supported_backends = ("torch",)

    duck = Duck()
    with caplog.at_level(logging.WARNING, logger="snn"):
        functional.set_backend(nn.Sequential(duck), "torch")
    assert any("Trying to set the backend for" in r.getMessage() for r in caplog.records)
