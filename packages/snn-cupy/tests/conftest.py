"""Fixtures of the snn-cupy tests: NVRTC, the host emulation, and the models under test.

The host emulation (:mod:`snn_cupy.host`) compiles the generated CUDA C verbatim with the system
C++ compiler and runs each block's threads as real threads; tests that need it skip when there
is no C++ compiler.

Models under test: every model in snn's registry (the built-in ones and any a plugin adds, so
new models are covered without a change here) plus the synthetic models below, which exercise
the generator beyond the built-ins:

- ``test_cuba2``: a current-based LIF with two states (synaptic current ``c`` charged first,
  the potential ``v`` reading the charged ``c``), a learnable ``w`` (decay ``sigmoid(w)``) and a
  reset of ``c`` that depends on ``w`` and on the (never detached) spike; fires on ``v``, the
  second state;
- ``test_opsmix``: one state whose charge uses every operation the backend renders (``minimum``,
  ``maximum``, ``relu``, ``where`` with ``&``, ``abs``, ``sqrt``, ``log``, ``sin``, ``cos``, an
  odd power above 4) and is not affine in the input, so training saves ``x``;
- ``test_recover``: the input enters scaled by ``exp(-|v| g)`` (``g`` learnable), so the backward
  pass reads ``x`` (saved) and the rebuilt previous potential.

A test that takes an argument ``model`` runs once per model (ids: the model names); the
fixture ``models`` gives the helpers below (test modules cannot import this file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from snn.models import THRESHOLD_AND_RESET, HyperParameter, NeuronConfig, NeuronModel, State
from snn_cupy.host import HostExecutor, find_compiler
from snn_cupy.runtime import Int32
from snn_cupy.templates import KernelSource

CPU = torch.device("cpu")


def _cuba_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    c = u.c * p.decay_c + x
    return {"c": c, "v": u.v + (c - (u.v - p.reset_potential)) * ops.sigmoid(p.w)}


def _cuba_reset(h: Any, s: Any, p: Any, ops: Any) -> dict[str, Any]:
    return {"v": p.reset(h.v, s), "c": h.c - s * (p.jump * ops.sigmoid(p.w))}


def _opsmix_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    clamped = ops.maximum(ops.minimum(u.v, 1.5), -1.5)  # keeps the odd power bounded
    a = 0.5 * ops.minimum(u.v, 1.25) + ops.maximum(x, -1.5) * 0.5 + (clamped * 0.8) ** 5
    b = ops.where((u.v > 0.0) & (x < 2.5), ops.sqrt(ops.abs(u.v) + 1.0), ops.cos(u.v)) * 0.1
    return {"v": a + b + 0.05 * ops.sin(x) + 0.01 * ops.log(1.0 + x * x) + ops.relu(x - 0.75) * p.k}


def _recover_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    return {"v": u.v * 0.8 + x * ops.exp(-ops.abs(u.v) * p.g)}


SYNTHETIC_MODELS: tuple[NeuronModel, ...] = (
    NeuronModel(
        name="test_cuba2",
        states=(State("c", 0.0, "synaptic current"), State("v", "v_reset", "membrane potential")),
        hyperparameters=(
            HyperParameter("decay_c", 0.6, "real", "decay of the current"),
            HyperParameter("jump", 0.25, "real", "current removed by a spike, times sigmoid(w)"),
            *THRESHOLD_AND_RESET,
        ),
        learnables=("w",),
        charge=_cuba_charge,
        reset=_cuba_reset,
        fire="v",
        examples=({"v_reset": None}, {"v_reset": -0.3, "decay_c": 0.9, "jump": -0.5, "v_threshold": 0.7}),
    ),
    NeuronModel(
        name="test_opsmix",
        states=(State("v", "v_reset"),),
        hyperparameters=THRESHOLD_AND_RESET,
        learnables=("k",),
        charge=_opsmix_charge,
        examples=({"v_reset": None, "v_threshold": 0.8},),
    ),
    NeuronModel(
        name="test_recover",
        states=(State("v", "v_reset"),),
        hyperparameters=THRESHOLD_AND_RESET,
        learnables=("g",),
        charge=_recover_charge,
        examples=({"v_reset": None},),
    ),
)

#: Values of the learnable parameters the tests use (PLIF's ``w``: a decay of 0.426).
LEARNABLE_VALUES = {"w": 0.3, "k": 0.7, "g": 0.4}


def registered_models() -> list[NeuronModel]:
    """The models of snn's registry (built-in and plugins'), in registration order."""
    from snn.plugins import get_registry

    registry = get_registry()
    return [registry.model(name) for name in registry.models]


def all_models() -> list[NeuronModel]:
    """The registered models and the synthetic ones."""
    return [*registered_models(), *SYNTHETIC_MODELS]


def model_variants(model: NeuronModel) -> list[dict[str, Any]]:
    """Hyper-parameter settings to test: the defaults, the model's examples and, for models with
    a ``v_reset``, hard reset at 0 and at -0.3 and soft reset (duplicates removed)."""
    settings: list[dict[str, Any]] = [{}, *(dict(e) for e in model.examples)]
    if "v_reset" in model.hyperparameter_names:
        settings += [{"v_reset": 0.0}, {"v_reset": -0.3}, {"v_reset": None}]
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for setting in settings:
        key = tuple(sorted({**model.defaults(), **setting}.items(), key=lambda kv: kv[0]))
        unique.setdefault(key, setting)
    return list(unique.values())


def model_configs(model: NeuronModel, surrogate: Any) -> list[NeuronConfig]:
    """Every variant of :func:`model_variants` with and without ``detach_reset``."""
    return [model.config(surrogate, detach_reset=d, **v) for v in model_variants(model) for d in (False, True)]


def learnable_values(model: NeuronModel, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The learnable parameters of ``model`` for the tests (0-dim tensors)."""
    return tuple(torch.tensor(LEARNABLE_VALUES[name], dtype=dtype) for name in model.learnables)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model" in metafunc.fixturenames:
        models = all_models()
        metafunc.parametrize("model", models, ids=[m.name for m in models])


@pytest.fixture(scope="session")
def models() -> SimpleNamespace:
    """The model helpers of this file: ``all``, ``registered``, ``synthetic``, ``variants``,
    ``configs``, ``learnables``."""
    return SimpleNamespace(
        all=all_models,
        registered=registered_models,
        synthetic=SYNTHETIC_MODELS,
        variants=model_variants,
        configs=model_configs,
        learnables=learnable_values,
    )


class HostKernels:
    """An executor with small blocks (several blocks and real barriers even for tiny sizes)."""

    def __init__(self, executor: HostExecutor, library: Any) -> None:
        self.executor = executor
        self.library = library

    @property
    def block_size(self) -> int:
        return self.executor.block_size

    def launch(self, source: KernelSource, vec: int, units: int, args: dict[str, Any], steps: int) -> None:
        """Run the ``vec`` entry of ``source`` over ``units`` threads with pointer arguments by name."""
        function = self.executor.function(source, vec, CPU)
        pointers = tuple(args.get(name) for name in source.params)
        self.executor.launch(function, units, (*pointers, units, Int32(steps)), CPU)

    def function(self, name: str) -> Callable[..., Any]:
        """An extra ``extern "C"`` function compiled with the sources."""
        return getattr(self.library, name)


@pytest.fixture(scope="session")
def host_compiler() -> str:
    """The system C++ compiler (the host-emulation tests skip without one)."""
    compiler = find_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler (g++ or clang++) found for the host emulation of the kernels")
    return compiler


@pytest.fixture(scope="session")
def host_executor(host_compiler: str, tmp_path_factory: pytest.TempPathFactory) -> HostExecutor:
    """A host executor with blocks of 4 threads (several blocks and barriers even for tiny sizes)."""
    return HostExecutor(host_compiler, str(tmp_path_factory.mktemp("host_kernels")), block_size=4)


@pytest.fixture(scope="session")
def build_host(host_executor: HostExecutor) -> Callable[..., HostKernels]:
    """``build(sources, extra="")``: compile kernel sources (and extra C++) for the CPU."""
    executor = host_executor

    def build(sources: Iterable[KernelSource], extra: str = "") -> HostKernels:
        return HostKernels(executor, executor.prepare(sources, extra))

    return build


@pytest.fixture(scope="session")
def nvrtc() -> Any:
    """A loadable NVRTC (the compile tests skip with the reason when there is none)."""
    from snn_cupy.nvrtc import NvrtcNotFoundError, find_nvrtc

    try:
        return find_nvrtc()
    except NvrtcNotFoundError as exc:
        pytest.skip(f"NVRTC cannot be loaded, kernel sources not compiled: {exc}")
