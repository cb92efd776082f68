"""Every kernel source the backend can generate compiles with NVRTC (no GPU needed).

The matrix is every neuron kind x reset mode (hard at 0, hard at -0.3, soft) x ``detach_reset``
x ``decay_input`` x dtype x claimed surrogate. Distinct sources are compiled once (a source that
does not depend on a parameter, e.g. the forward kernels on the surrogate, is shared) and many
sources go into one NVRTC program (each source's helpers are include-guarded). To stay within
a few minutes on two CPU cores:

- the whole matrix is compiled to PTX with ``-G`` (front end and code generation, no optimiser);
- every source that differs other than by its surrogate, and every surrogate in one
  configuration per dtype, are compiled with full optimisation;
- a few sources go all the way to a cubin (ptxas) for real architectures.

``SNN_CUPY_FULL_COMPILE=1`` also compiles the whole matrix with full optimisation.
Every entry point must appear in the PTX and NVRTC must print no warning.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterable

import pytest
import torch

from snn.kernels import NeuronConfig
from snn.surrogate import SURROGATES
from snn_cupy.nvrtc import compile_source
from snn_cupy.plugin import claimed_surrogates
from snn_cupy.sources import backward_kernel_source, forward_kernel_source
from snn_cupy.templates import KernelSource

RESETS: dict[str, float | None] = {"hard": 0.0, "hardneg": -0.3, "soft": None}
DTYPES = {"f32": torch.float32, "f16": torch.float16}
KINDS = ("if", "lif", "plif")
GROUPS = [(kind, tag) for kind in KINDS for tag in DTYPES]
CHUNK = 120  # sources per NVRTC program


def _configs(kind: str, surrogates: Iterable[str]) -> list[NeuronConfig]:
    configs = []
    for reset, detach, decay_input, surrogate in itertools.product(
        RESETS, (False, True), (False, True) if kind != "if" else (False,), surrogates
    ):
        configs.append(NeuronConfig(
            kind, 1.0, RESETS[reset], detach, decay_input, 2.0 if kind == "lif" else None,
            SURROGATES[surrogate]().spec,
        ))
    return configs


def _sources(kind: str, tag: str, surrogates: Iterable[str]) -> dict[str, KernelSource]:
    """Distinct sources (forward training, forward inference, backward) of a group."""
    dtype = DTYPES[tag]
    found: dict[str, KernelSource] = {}
    for config in _configs(kind, surrogates):
        for source in (
            forward_kernel_source(config, dtype, True),
            forward_kernel_source(config, dtype, False),
            backward_kernel_source(config, dtype),
        ):
            found[source.name] = source
    return found


def _compile_all(sources: dict[str, KernelSource], *, arch: str = "compute_75", options: tuple[str, ...] = ()) -> None:
    items = list(sources.values())
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        result = compile_source("".join(s.source for s in chunk), f"chunk{start}.cu", arch=arch, options=options)
        assert result.log.strip() == "", f"NVRTC warnings:\n{result.log[:3000]}"
        entries = set(re.findall(r"\.entry\s+(\w+)\s*\(", result.ptx))
        for source in chunk:
            for entry, _ in source.entries:
                assert entry in entries, f"{entry} missing from the PTX of {source.name}"
        if arch.startswith("sm_"):
            assert result.cubin is not None and len(result.cubin) > 0


@pytest.mark.parametrize(("kind", "tag"), GROUPS, ids=[f"{k}-{t}" for k, t in GROUPS])
def test_every_source_compiles_unoptimised(nvrtc: object, kind: str, tag: str) -> None:
    """The whole matrix, every claimed surrogate included, through NVRTC with ``-G``."""
    sources = _sources(kind, tag, claimed_surrogates())
    expected_backward = len(_configs(kind, claimed_surrogates()))
    assert sum("_bwd_" in name for name in sources) == expected_backward  # one distinct source each
    _compile_all(sources, options=("-G",))


@pytest.mark.parametrize(("kind", "tag"), GROUPS, ids=[f"{k}-{t}" for k, t in GROUPS])
def test_every_configuration_compiles_optimised(nvrtc: object, kind: str, tag: str) -> None:
    """Every kind x reset x detach_reset x decay_input x dtype, fully optimised (one surrogate)."""
    _compile_all(_sources(kind, tag, ("Sigmoid",)))


@pytest.mark.parametrize("tag", DTYPES)
def test_every_surrogate_compiles_optimised(nvrtc: object, tag: str) -> None:
    """Every claimed surrogate in a PLIF backward kernel (the largest), fully optimised."""
    dtype = DTYPES[tag]
    sources = {}
    for surrogate in claimed_surrogates():
        config = NeuronConfig("plif", 1.0, -0.3, False, True, None, SURROGATES[surrogate]().spec)
        source = backward_kernel_source(config, dtype)
        sources[source.name] = source
    assert len(sources) == len(claimed_surrogates())
    _compile_all(sources)


@pytest.mark.parametrize("arch", ["sm_75", "sm_80", "sm_90"])
def test_cubin_for_real_architectures(nvrtc: object, arch: str) -> None:
    """ptxas accepts the kernels (registers, inline PTX, shared memory) on real architectures."""
    sources = {}
    for kind, tag in (("plif", "f16"), ("lif", "f32")):
        config = _configs(kind, ("ATan",))[1]
        for source in (forward_kernel_source(config, DTYPES[tag], True), backward_kernel_source(config, DTYPES[tag])):
            sources[source.name] = source
    _compile_all(sources, arch=arch)


@pytest.mark.skipif(os.environ.get("SNN_CUPY_FULL_COMPILE") != "1",
                    reason="set SNN_CUPY_FULL_COMPILE=1 to compile the whole matrix optimised (minutes)")
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "tag"), GROUPS, ids=[f"{k}-{t}" for k, t in GROUPS])
def test_whole_matrix_compiles_optimised(nvrtc: object, kind: str, tag: str) -> None:
    started = time.perf_counter()
    _compile_all(_sources(kind, tag, claimed_surrogates()))
    print(f"{kind}-{tag}: {time.perf_counter() - started:.1f} s")


def test_nvrtc_reports_errors(nvrtc: object) -> None:
    from snn_cupy.nvrtc import NvrtcCompileError

    with pytest.raises(NvrtcCompileError, match="undefined"):
        compile_source('extern "C" __global__ void broken() { undefined_name(); }')
    with pytest.raises(ValueError, match="arch"):
        compile_source("", arch="x86")


def test_ctypes_fallback_compiles(nvrtc: object) -> None:
    """The ctypes loader (used when CuPy is absent) finds and drives NVRTC too."""
    from snn_cupy.nvrtc import NvrtcNotFoundError, _candidate_paths, _CtypesBackend

    backend = None
    for path in _candidate_paths():
        try:
            backend = _CtypesBackend(path)
            break
        except OSError:
            continue
    if backend is None:
        pytest.skip("NVRTC is only reachable through CuPy here")
    config = _configs("plif", ("Sigmoid",))[0]
    source = backward_kernel_source(config, torch.float16)
    result = backend.compile(source.source, "plif.cu", ["--gpu-architecture=compute_75"], False)
    assert all(f".entry {entry}(" in result.ptx for entry, _ in source.entries)
    assert backend.version() >= (11, 0)
    assert issubclass(NvrtcNotFoundError, RuntimeError)
