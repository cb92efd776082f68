"""Hooks are called through pluggy's relay: tracing and monitoring see every call, failures stay isolated.

The expected calls are computed independently of snn.plugins: from pluggy's own list of hook
implementations (``manager.hook.<name>.get_hookimpls()``), one call per implementation.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import torch

import snn
from snn import plugins
from snn.registry import LossRegistrar, PluginFailure, Registry, StrategyRegistrar

HOOKS = (
    "snn_register_neuron_models",
    "snn_register_backends",
    "snn_register_forward_strategies",
    "snn_register_losses",
    "snn_register_online_learners",
)


class Recorder:
    """``add_hookcall_monitoring`` callbacks that keep what each call received."""

    def __init__(self) -> None:
        self.before: list[tuple[str, list[str], Any]] = []
        self.after: list[tuple[str, list[str], BaseException | None]] = []

    def setup(self, manager: Any) -> None:
        manager.add_hookcall_monitoring(self.on_before, self.on_after)

    def on_before(self, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.before.append((hook_name, [impl.plugin_name for impl in impls], kwargs.get("register")))

    def on_after(self, outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.after.append((hook_name, [impl.plugin_name for impl in impls], outcome.exception))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    remove = plugins.add_manager_setup(recorder.setup)
    try:
        yield recorder
    finally:
        remove()
        plugins.reset()


def _implementations(manager: Any) -> list[tuple[str, str]]:
    """``(hook, plugin)`` for every registered implementation, as pluggy lists them."""
    return [(hook, impl.plugin_name) for hook in HOOKS for impl in getattr(manager.hook, hook).get_hookimpls()]


def _namespace(**hooks: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{name: snn.hookimpl(fn) for name, fn in hooks.items()})


def test_monitoring_sees_one_call_per_implementation_with_its_own_registrar(recorder: Recorder) -> None:
    registry = plugins.get_registry()
    manager = plugins.get_plugin_manager()
    expected = _implementations(manager)
    assert {"neurons", "torch", "strategies", "losses"} <= {plugin for _, plugin in expected}
    calls = [(hook, names) for hook, names, _ in recorder.before]
    assert all(len(names) == 1 for _, names in calls), calls  # one implementation per call
    assert sorted((hook, names[0]) for hook, names in calls) == sorted(expected)
    assert len(recorder.after) == len(recorder.before)
    for hook, (plugin,), register in recorder.before:
        assert register is not None and register._provenance.plugin == plugin, (hook, plugin, register)
        assert register._registry is registry
    # in-tree plugins are called before any other plugin of the same hook
    for hook in HOOKS:
        order = [names[0] for h, names, _ in recorder.before if h == hook]
        in_tree = [i for i, name in enumerate(order) if name in plugins.IN_TREE_PLUGINS]
        assert in_tree == list(range(len(in_tree))), (hook, order)


def test_tracing_writes_every_call_with_the_plugin_it_serves(recorder: Recorder) -> None:
    lines: list[str] = []

    def trace(manager: Any) -> None:
        manager.trace.root.setwriter(lines.append)
        manager.enable_tracing()

    remove = plugins.add_manager_setup(trace)
    try:
        plugins.get_registry()
        expected = _implementations(plugins.get_plugin_manager())
    finally:
        remove()
    text = "".join(lines)
    for hook, plugin in expected:
        assert f"register: {_registrar_name(hook)}(plugin={plugin!r})" in text, (hook, plugin, text)
    assert text.count("[hook]") == 2 * len(expected)  # a start and a finish line per call


def _registrar_name(hook: str) -> str:
    return {
        "snn_register_neuron_models": "NeuronModelRegistrar",
        "snn_register_backends": "BackendRegistrar",
        "snn_register_forward_strategies": "StrategyRegistrar",
        "snn_register_losses": "LossRegistrar",
        "snn_register_online_learners": "LearnerRegistrar",
    }[hook]


def test_a_raising_plugin_is_isolated_recorded_and_seen_by_monitoring(recorder: Recorder, temporary_plugin: Any) -> None:
    def good_losses(register: LossRegistrar) -> None:
        register("before_the_raiser", lambda y_seq, target: y_seq.sum())

    def raising_losses(register: LossRegistrar) -> None:
        register("registered_then_raised", lambda y_seq, target: y_seq.sum())
        raise RuntimeError("accelerator missing")

    def raising_strategies(register: StrategyRegistrar) -> None:
        raise ValueError("no strategies today")

    def late_losses(register: LossRegistrar) -> None:
        register("after_the_raiser", lambda y_seq, target: y_seq.mean())

    temporary_plugin(_namespace(snn_register_losses=good_losses), name="early")
    temporary_plugin(
        _namespace(snn_register_losses=raising_losses, snn_register_forward_strategies=raising_strategies),
        name="raiser",
    )
    registry: Registry = temporary_plugin(_namespace(snn_register_losses=late_losses), name="late")
    # every other plugin, before and after the raising one, registered its names
    assert {"before_the_raiser", "after_the_raiser", "tet"} <= set(registry.losses)
    assert "loop" in registry.strategies
    # what the raising hook registered before raising is withdrawn: a hook provides all or nothing
    assert "registered_then_raised" not in registry.losses
    failures = [f for f in registry.failures if f.plugin == "raiser"]
    assert failures == [
        PluginFailure("raiser", None, None, "hook", "snn_register_forward_strategies: ValueError: no strategies today"),
        PluginFailure(
            "raiser", None, None, "hook",
            "snn_register_losses: RuntimeError: accelerator missing "
            "(withdrawn: what it registered before, ['registered_then_raised'])",
        ),
    ]
    assert [f.plugin for f in registry.failures] == ["raiser", "raiser"]
    raised = {(hook, names[0]): type(exc) for hook, names, exc in recorder.after if exc is not None}
    assert raised == {
        ("snn_register_forward_strategies", "raiser"): ValueError,
        ("snn_register_losses", "raiser"): RuntimeError,
    }


def test_a_hook_that_returns_its_entries_is_recorded(temporary_plugin: Any) -> None:
    # a hook registers through its registrar; returned entries would otherwise vanish silently
    def returning_losses(register: LossRegistrar) -> Any:
        register("registered_then_returned", lambda y_seq, target: y_seq.sum())
        return [("returned_loss", lambda y_seq, target: y_seq.sum())]

    registry: Registry = temporary_plugin(_namespace(snn_register_losses=returning_losses), name="returner")
    assert "returned_loss" not in registry.losses and "registered_then_returned" not in registry.losses
    [failure] = [f for f in registry.failures if f.plugin == "returner"]
    assert failure.stage == "hook"
    assert failure.error.startswith(
        "snn_register_losses: TypeError: the hook returned [('returned_loss', <function"
    )
    assert "a hook registers by calling register(...) and returns None" in failure.error
    assert failure.error.endswith("(withdrawn: what it registered before, ['registered_then_returned'])")


def test_a_clash_is_recorded_against_the_later_plugin_as_before(temporary_plugin: Any) -> None:
    def take_loop(register: StrategyRegistrar) -> None:
        register("loop", lambda module, x_seq: x_seq)

    registry = temporary_plugin(_namespace(snn_register_forward_strategies=take_loop), name="usurper")
    (failure,) = registry.failures
    assert (failure.plugin, failure.stage, failure.clash_name, failure.clash_with) == ("usurper", "clash", "loop", "strategies")
    assert failure.error.startswith("snn_register_forward_strategies: DuplicateRegistrationError: ")
    assert registry.strategy("loop").provenance.plugin == "strategies"


def test_unhashable_plugin_objects_are_called_too(temporary_plugin: Any) -> None:
    """pluggy's subset callers need hashable plugins: a namespace and an unhashable instance still work."""

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]  # the point of this class: instances cannot be hashed

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Unhashable)

        @snn.hookimpl
        def snn_register_losses(self, register: LossRegistrar) -> None:
            register("from_a_method", lambda y_seq, target: y_seq.sum())

    def from_namespace(register: LossRegistrar) -> None:
        register("from_a_namespace", lambda y_seq, target: y_seq.sum())

    temporary_plugin(_namespace(snn_register_losses=from_namespace), name="namespace")
    registry = temporary_plugin(Unhashable(), name="instance")
    assert registry.loss("from_a_namespace").provenance.plugin == "namespace"
    assert registry.loss("from_a_method").provenance.plugin == "instance"
    assert registry.failures == []


def test_trace_switch_logs_pluggy_trace_at_debug(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SNN_TRACE_PLUGINS", "1")
    plugins.reset()
    try:
        with caplog.at_level(logging.DEBUG, logger="snn"):
            plugins.get_registry()
    finally:
        plugins.reset()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "pluggy" in r.getMessage()]
    assert any("snn_register_backends [hook]" in m for m in messages), messages
    assert any("register: BackendRegistrar(plugin='torch')" in m for m in messages), messages
    monkeypatch.delenv("SNN_TRACE_PLUGINS")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="snn"):
        plugins.get_registry()
    plugins.reset()
    assert not [r for r in caplog.records if "pluggy" in r.getMessage()]


def test_add_manager_setup_resets_removes_and_propagates() -> None:
    seen: list[object] = []
    plugins.get_registry()
    remove = plugins.add_manager_setup(seen.append)
    try:
        manager = plugins.get_plugin_manager()  # rebuilt with the setup
        assert seen == [manager]
    finally:
        remove()
    plugins.reset()
    plugins.get_registry()
    assert seen == [manager]  # removed: not called for the new manager

    def broken(manager: object) -> None:
        raise RuntimeError("setup failed")

    remove = plugins.add_manager_setup(broken)
    try:
        with pytest.raises(RuntimeError, match="setup failed"):
            plugins.get_registry()
        with pytest.raises(RuntimeError, match="setup failed"):  # nothing was cached
            plugins.get_registry()
    finally:
        remove()
        plugins.reset()
    assert "torch" in plugins.get_registry().backends
    with pytest.raises(TypeError, match="setup: expected a callable"):
        plugins.add_manager_setup("enable_tracing")  # type: ignore[arg-type]  # a wrong type on purpose


def test_kernels_still_run_after_the_relay_change() -> None:
    """The registry built through the relay serves neurons as before."""
    plugins.reset()
    x = torch.rand(4, 3) * 2
    spikes = snn.neuron.LIFNode(step_mode="m")(x)
    v, expected = torch.zeros(3), []
    for x_t in x:  # the LIF equations, written out (tau 2, hard reset to 0, threshold 1)
        h = v + (x_t - v) / 2.0
        s = (h >= 1.0).to(h.dtype)
        v = h * (1.0 - s)
        expected.append(s)
    assert torch.equal(spikes, torch.stack(expected))


def _model_with_charge(name: str, charge: Any, **extra: Any) -> Any:
    from snn.models import THRESHOLD_AND_RESET, NeuronModel, State

    return NeuronModel(name=name, states=(State("v", "v_reset"),), hyperparameters=THRESHOLD_AND_RESET, charge=charge, **extra)


@pytest.mark.parametrize(
    ("charge", "error"),
    [
        (lambda x, u, p, ops: {"v": u.v + ops.tanh(x)}, "AttributeError: expression language has no function 'tanh'"),
        (lambda x, u, p, ops: {"v": u.q + x}, "AttributeError: the model has no state 'q'"),
        (lambda x, u, p, ops: {"v": u.v + x * p.gain}, "AttributeError: the model has no parameter 'gain'"),
        (lambda x, u, p, ops: {"v": u.v + torch.tanh(x)}, "TypeError"),
    ],
    ids=["unknown-function", "unknown-state", "unknown-parameter", "torch-call"],
)
def test_a_model_that_cannot_build_a_kernel_is_refused_at_registration(
    temporary_plugin: Any, charge: Any, error: str
) -> None:
    """The failure names the plugin and the model, and the model is not registered (so doctor
    and backend listings never meet it)."""
    from snn import doctor

    def models(register: Any) -> None:
        register(_model_with_charge("broken", charge))

    registry: Registry = temporary_plugin(_namespace(snn_register_neuron_models=models), name="broken-models")
    assert "broken" not in registry.models
    (failure,) = [f for f in registry.failures if f.plugin == "broken-models"]
    assert failure.stage == "hook"
    assert "model 'broken': its description does not build a kernel with its default hyper-parameters" in failure.error
    assert error in failure.error
    report = doctor.collect()
    assert "broken" not in [row["name"] for row in report["neurons"]]


def test_a_neuron_class_of_a_model_that_cannot_build_names_the_model() -> None:
    # used directly, without registering (or after registration refused it)
    from snn.neuron import BaseNode

    class TanhNode(BaseNode):
        model = _model_with_charge("tanh_lif", lambda x, u, p, ops: {"v": u.v + ops.tanh(x)})

    for make in (lambda: TanhNode(step_mode="m").supported_backends, lambda: TanhNode(step_mode="m")(torch.ones(2, 3))):
        with pytest.raises(TypeError, match="tanh_lif: its description does not build an expression: AttributeError: "
                                            "expression language has no function 'tanh'"):
            make()


def test_a_model_whose_example_cannot_build_is_refused(temporary_plugin: Any) -> None:
    def models(register: Any) -> None:
        register(_model_with_charge("badexample", lambda x, u, p, ops: {"v": u.v + x}, examples=({"v_threshold": "high"},)))

    registry: Registry = temporary_plugin(_namespace(snn_register_neuron_models=models), name="example-models")
    assert "badexample" not in registry.models
    (failure,) = [f for f in registry.failures if f.plugin == "example-models"]
    assert "with its example {'v_threshold': 'high'}" in failure.error


def test_asking_for_the_registry_inside_a_hook_is_a_recorded_failure(temporary_plugin: Any) -> None:
    calls = []

    def losses(register: LossRegistrar) -> None:
        calls.append(1)
        plugins.get_registry()

    registry: Registry = temporary_plugin(_namespace(snn_register_losses=losses), name="reentrant")
    assert calls == [1]  # the registry was built once, not recursively
    (failure,) = [f for f in registry.failures if f.plugin == "reentrant"]
    assert "RuntimeError: the snn registry is being built" in failure.error
    assert "tet" in registry.losses  # the other plugins are unaffected


def test_a_model_without_a_description_shows_none_in_doctor(temporary_plugin: Any) -> None:
    from snn import doctor

    def models(register: Any) -> None:
        register(_model_with_charge("plain", lambda x, u, p, ops: {"v": u.v + x}))

    temporary_plugin(_namespace(snn_register_neuron_models=models), name="plain-models")
    (row,) = [r for r in doctor.collect()["neurons"] if r["name"] == "plain"]
    assert row["description"] == ""  # not the NeuronModel class docstring
