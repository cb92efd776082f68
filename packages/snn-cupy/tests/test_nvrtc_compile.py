"""Every kernel source the backend can generate compiles with NVRTC (no GPU needed).

The matrix, per model (every model of snn's registry, so models added later are covered, plus
the synthetic models of ``conftest.py``): its variants (defaults, examples, hard reset at 0 and
-0.3, soft reset) x ``detach_reset`` x dtype x every surrogate the backend claims x role
(training forward, inference forward, backward). That is hundreds of sources per model;
compiling each for three architectures would take many minutes on two cores, so the tests
compile a subset that is complete by construction:

- a source is its *skeleton* (the text with every float literal replaced by a placeholder, the
  kernel names' hashes dropped and the surrogate-derivative function cut out) plus its float
  literals and that function. Every literal is a checked-finite float32 literal (``(0x...f)``,
  ``0.0f``, ``1.0f``), so literals cannot change whether a source compiles; the surrogate
  function is a self-contained ``__device__ float f(const float x)`` called with a float, so it
  compiles in one kernel iff it compiles in every kernel;
- per model, one source per distinct skeleton is compiled; every claimed surrogate's function
  is compiled once, in a backward kernel (:func:`test_every_surrogate_compiles`); each test
  asserts that every source of its matrix has a compiled skeleton and a compiled surrogate
  function.

Each compiled source is built fully optimised for ``sm_80`` (cubin: the NVRTC front end,
optimiser and ptxas, as a runtime compilation on an A100 does) and without optimisation (``-G``)
for ``sm_75`` and ``sm_90`` (front end, each architecture's code generation and ptxas), in
parallel NVRTC programs. ``SNN_CUPY_FULL_COMPILE=1`` compiles every source of the matrix,
optimised, for the three architectures (long). NVRTC must print no warning and every entry point
must be in the PTX.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import pytest
import torch

from snn.models import NeuronModel
from snn.surrogate import SURROGATES
from snn_cupy.nvrtc import compile_source
from snn_cupy.runtime import COMPILE_OPTIONS
from snn_cupy.sources import backward_kernel_source, forward_kernel_source
from snn_cupy.templates import KernelSource

DTYPES = (torch.float32, torch.float16)
CHUNK = 8  # sources per NVRTC program (each source's helpers are include-guarded)
#: (architecture, NVRTC options) every compiled source is built for: the runtime's own options
#: (snn_cupy.runtime.COMPILE_OPTIONS), with device debug code (-G) on two of them.
BUILDS = (("sm_80", COMPILE_OPTIONS), ("sm_75", (*COMPILE_OPTIONS, "-G")), ("sm_90", (*COMPILE_OPTIONS, "-G")))

_HEX_LITERAL = re.compile(r"\(-?0x[0-9a-f]\.[0-9a-f]+p[+-]\d+f\)")
_DECIMAL_LITERAL = re.compile(r"\b\d+\.\d+f\b")
_KERNEL_NAME = re.compile(r"\b(snn_(?:fwd_train|fwd_infer|bwd)_f(?:32|16))_[0-9a-f]{16}")
_SURROGATE_BLOCK = re.compile(r"#ifndef SNN_SURROGATE_[0-9A-F]{16}\n.*?#endif\n", re.S)
_SURROGATE_NAME = re.compile(r"\bsnn_surrogate_[0-9a-f]{16}\b")


def skeleton(text: str) -> str:
    """``text`` without its surrogate function, float literals and name hashes."""
    text = _SURROGATE_BLOCK.sub("", text)
    text = _SURROGATE_NAME.sub("SURROGATE", text)
    text = _KERNEL_NAME.sub(r"\1", text)
    text = _HEX_LITERAL.sub("LITERAL", text)
    return _DECIMAL_LITERAL.sub("LITERAL", text)


def surrogate_block(text: str) -> str | None:
    """The surrogate function of a backward source (``None`` for a forward source)."""
    found = _SURROGATE_BLOCK.findall(text)
    assert len(found) <= 1
    return found[0] if found else None


def claimed_surrogates() -> tuple[str, ...]:
    from snn.plugins import get_registry

    return get_registry().backend("cupy").claimed_surrogates()


def matrix(model: NeuronModel, models: Any) -> dict[str, KernelSource]:
    """Every distinct source of the model's matrix (see the module docstring)."""
    found: dict[str, KernelSource] = {}
    for name in claimed_surrogates():
        for config in models.configs(model, SURROGATES[name]().spec):
            for dtype in DTYPES:
                for source in (
                    forward_kernel_source(config, dtype, True),
                    forward_kernel_source(config, dtype, False),
                    backward_kernel_source(config, dtype),
                ):
                    found[source.name] = source
    return found


def one_per_skeleton(sources: dict[str, KernelSource]) -> list[KernelSource]:
    """The first source of every distinct skeleton."""
    chosen: dict[str, KernelSource] = {}
    for source in sources.values():
        chosen.setdefault(skeleton(source.source), source)
    return list(chosen.values())


def _compile_chunk(chunk: list[KernelSource], arch: str, options: tuple[str, ...]) -> None:
    result = compile_source("".join(s.source for s in chunk), f"{chunk[0].name}.cu", arch=arch, options=options)
    assert result.log.strip() == "", f"NVRTC warnings ({arch}):\n{result.log[:3000]}"
    entries = set(re.findall(r"\.entry\s+(\w+)\s*\(", result.ptx))
    for source in chunk:
        for entry, _ in source.entries:
            assert entry in entries, f"{entry} missing from the PTX of {source.name} ({arch})"
    assert result.cubin is not None and len(result.cubin) > 0


def compile_all(sources: list[KernelSource], builds: tuple[tuple[str, tuple[str, ...]], ...] = BUILDS) -> None:
    """Compile ``sources`` for every build, several NVRTC programs at a time (NVRTC is thread-safe)."""
    jobs = [(sources[k : k + CHUNK], arch, options) for arch, options in builds for k in range(0, len(sources), CHUNK)]
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        for future in [pool.submit(_compile_chunk, *job) for job in jobs]:
            future.result()


@lru_cache(maxsize=1)
def surrogate_sources() -> dict[str, KernelSource]:
    """Per claimed surrogate (default parameters), a float16 PLIF backward kernel using it."""
    from snn.neuron import PLIF_MODEL

    return {
        name: backward_kernel_source(PLIF_MODEL.config(SURROGATES[name]().spec, v_reset=-0.3), torch.float16)
        for name in claimed_surrogates()
    }


def test_every_surrogate_compiles(nvrtc: object) -> None:
    """Every claimed surrogate's derivative function, in a backward kernel, for every build."""
    sources = surrogate_sources()
    blocks = {surrogate_block(s.source) for s in sources.values()}
    assert None not in blocks and len(blocks) == len(claimed_surrogates()) >= 15
    compile_all(list(sources.values()))


def test_every_source_compiles(nvrtc: object, model: NeuronModel, models: Any) -> None:
    """The model's whole matrix, through a subset complete by construction (module docstring)."""
    started = time.perf_counter()
    sources = matrix(model, models)
    chosen = one_per_skeleton(sources)
    skeletons = {skeleton(s.source) for s in chosen}
    surrogates = {surrogate_block(s.source) for s in surrogate_sources().values()} | {None}
    for source in sources.values():
        assert skeleton(source.source) in skeletons
        assert surrogate_block(source.source) in surrogates, f"{source.name}: a surrogate function not compiled"
    compile_all(chosen)
    print(f"{model.name}: {len(sources)} sources, {len(chosen)} skeletons compiled x {len(BUILDS)} builds, "
          f"{time.perf_counter() - started:.1f} s")


def test_skeleton_keeps_everything_but_literals_and_the_surrogate() -> None:
    """Two sources share a skeleton exactly when they differ in float literals, name hashes or
    the surrogate function; anything else (an operator, an identifier) tells them apart."""
    from snn import surrogate
    from snn.neuron import LIF_MODEL

    a = LIF_MODEL.config(surrogate.Sigmoid().spec, tau=2.0, v_reset=-0.3)
    b = LIF_MODEL.config(surrogate.ATan().spec, tau=3.0, v_reset=-0.7)
    c = LIF_MODEL.config(surrogate.Sigmoid().spec, tau=2.0, v_reset=None)
    sa, sb, sc = (backward_kernel_source(x, torch.float32).source for x in (a, b, c))
    assert sa != sb and skeleton(sa) == skeleton(sb)
    assert skeleton(sa) != skeleton(sc)
    assert surrogate_block(sa) != surrogate_block(sb)
    assert surrogate_block(forward_kernel_source(a, torch.float32, True).source) is None
    assert "LITERAL" in skeleton(sa) and "p+0f" not in skeleton(sa) and "SURROGATE" in skeleton(sa)


@pytest.mark.skipif(os.environ.get("SNN_CUPY_FULL_COMPILE") != "1",
                    reason="set SNN_CUPY_FULL_COMPILE=1 to compile the whole matrix optimised (long)")
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_75", "sm_80", "sm_90"])
def test_whole_matrix_compiles_optimised(nvrtc: object, model: NeuronModel, models: Any, arch: str) -> None:
    compile_all(list(matrix(model, models).values()), ((arch, ()),))


def test_nvrtc_reports_errors(nvrtc: object) -> None:
    from snn_cupy.nvrtc import NvrtcCompileError

    with pytest.raises(NvrtcCompileError, match="undefined"):
        compile_source('extern "C" __global__ void broken() { undefined_name(); }')
    with pytest.raises(ValueError, match="arch"):
        compile_source("", arch="x86")


def test_ctypes_fallback_compiles(nvrtc: object) -> None:
    """The ctypes loader (used when CuPy is absent) finds and drives NVRTC too."""
    from snn import surrogate
    from snn.neuron import PLIF_MODEL
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
    source = backward_kernel_source(PLIF_MODEL.config(surrogate.Sigmoid().spec), torch.float16)
    result = backend.compile(source.source, "plif.cu", ["--gpu-architecture=compute_75"], False)
    assert all(f".entry {entry}(" in result.ptx for entry, _ in source.entries)
    assert backend.version() >= (11, 0)
    assert issubclass(NvrtcNotFoundError, RuntimeError)
