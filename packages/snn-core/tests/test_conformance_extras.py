"""BackendConformance.extra_surrogates: surrogate classes of other packages in the conformance suite.

A class defined here stands in for a third party's: a SurrogateFunctionBase subclass whose
derivative is written with snn.expr. A generating backend serves it by its spec; the suite runs
it there, notices a backend that ignores it, and skips with the reason where it is not served.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest
import torch

import snn
from snn import plugins
from snn.backends.torch import OPERATIONS, multi_step as torch_multi_step
from snn.registry import BackendRegistrar
from snn.surrogate import Sigmoid, SurrogateFunctionBase
from snn.testing.conformance import BackendConformance, ConformanceCase


class SoftStep(SurrogateFunctionBase):
    """``g(x) = α / (2 (1 + α|x|)²)``: a third-party-style surrogate (not in snn.surrogate)."""

    param_names = ("alpha",)

    def __init__(self, alpha: float = 3.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: float = 3.0) -> Any:
        d = 1.0 + alpha * ops.abs(x)
        return alpha / (2.0 * d * d)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: float = 3.0) -> torch.Tensor:
        return 0.5 + 0.5 * alpha * x / (1.0 + alpha * x.abs())


def ignores_third_party_surrogates(x_seq: torch.Tensor, states: Any, config: Any, **options: Any) -> Any:
    """A wrong generating backend: runs every class that is not snn.surrogate's as Sigmoid."""
    if config.surrogate.cls is not None:
        config = dataclasses.replace(config, surrogate=Sigmoid().spec)
    return torch_multi_step(x_seq, states, config, **options)


def _generating_plugin(name: str, target: str) -> types.SimpleNamespace:
    @snn.hookimpl
    def snn_register_backends(register: BackendRegistrar) -> None:
        register(
            name, {"multi_step": f"{__name__}:{target}"}, devices=("cpu",), dtypes=(torch.float32, torch.float64),
            operations=OPERATIONS, probe=lambda: None,
        )

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


def _suite(**attributes: Any) -> BackendConformance:
    attributes.setdefault("surrogates", ("Sigmoid",))
    attributes.setdefault("models", ("lif", "plif"))
    return type("Suite", (BackendConformance,), attributes)()


def test_extra_surrogates_run_on_a_generating_backend_and_pass() -> None:
    suite = _suite(backend="torch", extra_surrogates=(SoftStep,))
    cases = suite.conformance_cases("surrogates")
    extra = [c for c in cases if c.surrogate == "SoftStep"]
    # hard and soft reset, and doubled parameters, for each model
    assert {(c.model, c.reset, c.surrogate_scale) for c in extra} == {
        (m, r, k) for m in ("lif", "plif") for r, k in (("hard", 1), ("soft", 1), ("hard", 2))
    }
    assert all(c.skip is None for c in cases)
    for case in cases:
        suite.check_case(case)
    config = suite.config_for(extra[0], snn.plugins.get_registry())
    assert config.surrogate.cls is SoftStep and config.surrogate.name == "SoftStep"


def test_the_suite_notices_a_backend_that_ignores_a_third_party_surrogate(temporary_plugin: Any) -> None:
    temporary_plugin(_generating_plugin("sigmoid-only", "ignores_third_party_surrogates"), name="sigmoid-only")
    suite = _suite(backend="sigmoid-only", extra_surrogates=(SoftStep,))
    failed, passed = [], []
    for case in suite.conformance_cases("surrogates"):
        try:
            suite.check_case(case)
        except AssertionError as exc:
            failed.append((case, str(exc)))
        else:
            passed.append(case)
    assert {c.surrogate for c, _ in failed} == {"SoftStep"}
    assert {c.surrogate for c in passed} == {"Sigmoid"}
    assert all("gradient" in message for _, message in failed)


def test_a_backend_that_does_not_serve_it_gets_skip_cases_with_the_reason(temporary_plugin: Any) -> None:
    @snn.hookimpl
    def snn_register_backends(register: BackendRegistrar) -> None:
        register(
            "no-abs", {"multi_step": "snn.backends.torch:multi_step"}, devices=("cpu",), dtypes=(torch.float32,),
            operations=tuple(op for op in OPERATIONS if op != "abs"), probe=lambda: None,
        )

    temporary_plugin(types.SimpleNamespace(snn_register_backends=snn_register_backends), name="no-abs")
    suite = _suite(backend="no-abs", extra_surrogates=(SoftStep,), models=("lif",))
    cases = suite.conformance_cases("surrogates")
    skipped = [c for c in cases if c.skip is not None]
    assert [c.surrogate for c in skipped] == ["SoftStep"]
    assert "does not serve surrogate SoftStep" in skipped[0].skip and "'abs'" in skipped[0].skip
    assert {c.surrogate for c in cases if c.skip is None} == {"Sigmoid"}
    with pytest.raises(pytest.skip.Exception, match="does not serve surrogate SoftStep"):
        suite.check_case(skipped[0])


def test_extra_surrogates_are_checked() -> None:
    with pytest.raises(TypeError, match="extra_surrogates: expected snn.surrogate.SurrogateFunctionBase subclasses"):
        _suite(backend="torch", extra_surrogates=(SoftStep(),)).conformance_cases("surrogates")

    class Sigmoid(SoftStep):  # a third party's class named like a built-in one
        pass

    with pytest.raises(ValueError, match=r"class name 'Sigmoid' is already taken \(by snn.surrogate\)"):
        _suite(backend="torch", extra_surrogates=(Sigmoid,)).conformance_cases("surrogates")
    with pytest.raises(ValueError, match=r"already taken \(by another extra surrogate\)"):
        _suite(backend="torch", extra_surrogates=(SoftStep, SoftStep)).conformance_cases("surrogates")


def test_without_extras_nothing_changes() -> None:
    suite = _suite(backend="torch")
    assert {c.surrogate for c in suite.conformance_cases("surrogates")} == {"Sigmoid"}
    assert ConformanceCase("lif").surrogate == "Sigmoid"


@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        ({"surrogates": ("Sigmiod",)}, r"Suite.surrogates: backend 'torch' does not serve \['Sigmiod'\]"),
        ({"dtypes": (torch.complex64,)}, r"Suite.dtypes: backend 'torch' does not serve \['torch.complex64'\]"),
        ({"devices": ("tpu",)}, r"Suite.devices: backend 'torch' does not serve \['tpu'\]"),
    ],
)
def test_naming_what_the_backend_does_not_serve_is_an_error(attributes: dict[str, Any], match: str) -> None:
    """A suite that names a surrogate, dtype or device asks for its tests: they must not vanish."""
    with pytest.raises(ValueError, match=match):
        _suite(backend="torch", **attributes).conformance_cases("dynamics")


@pytest.mark.parametrize(("name", "value"), [("size", 3), ("size", (5, 0)), ("large_size", [3, 1031]), ("size", ())])
def test_sizes_must_be_tuples_of_positive_integers(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"Suite.{name}: expected a tuple \(T, \*\) of positive integers, got "):
        _suite(backend="torch", **{name: value}).conformance_cases("dynamics")


def test_naming_a_model_a_hand_written_backend_lacks_is_an_error() -> None:
    @snn.hookimpl
    def snn_register_backends(register: BackendRegistrar) -> None:
        register(
            "handwritten", {"multi_step": "snn.backends.torch:multi_step"}, devices=("cpu",),
            dtypes=(torch.float32,), models=("lif",), surrogates=("Sigmoid",), probe=lambda: None,
        )

    plugin = types.SimpleNamespace(snn_register_backends=snn_register_backends)
    with plugins.temporary_plugin(plugin, name="conformance-hand-written"):
        with pytest.raises(ValueError, match=r"Suite.models: backend 'handwritten' does not serve \['plif'\]"):
            _suite(backend="handwritten").conformance_cases("dynamics")
