"""A CPU emulation of the generated kernels, for tests on machines without a GPU.

The CUDA C of :mod:`snn_cupy.templates` is compiled *verbatim* by the system C++ compiler: a
short shim maps the CUDA keywords to C++, runs every block's threads as real threads (so
``__syncthreads`` is a real barrier and ``__shared__`` memory is shared by the block), and swaps
only the two PTX float16 conversions of the preamble for ``_Float16`` casts. Kernel arithmetic,
indexing, memory layouts and the parameter-gradient reduction therefore run on the CPU as
written, for any neuron model whose plan the generator renders.

:class:`HostExecutor` plugs into :func:`snn_cupy.kernels.run_multi_step`; :func:`multi_step` is
the backend's kernel on CPU tensors; :class:`HostPlugin` registers it as a backend
(``"cupy_host"``, CPU tensors, an *emulated* device that ``backend="auto"`` never picks) so
that :class:`snn.testing.BackendConformance` can check the exact kernel sources against the
torch reference without a GPU. Nothing here is used by the ``"cupy"`` backend itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

import snn
from snn.kernels import KernelResult, NeuronConfig
from snn.registry import BackendRegistrar
from snn_cupy.runtime import Int32
from snn_cupy.templates import KernelSource

__all__ = [
    "HOST_SHIM",
    "HostCompileError",
    "HostExecutor",
    "HostPlugin",
    "find_compiler",
    "host_executor",
    "probe",
    "multi_step",
]

HOST_SHIM = r"""
#define SNN_CUPY_PREAMBLE
#include <math.h>
#include <string.h>
#include <pthread.h>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
struct snn_dim3 { unsigned int x, y, z; };
static thread_local snn_dim3 blockIdx, blockDim, threadIdx;
static pthread_barrier_t snn_host_barrier;
static inline void __syncthreads() { pthread_barrier_wait(&snn_host_barrier); }
static inline float snn_h2f(const unsigned short bits) {
    _Float16 h; memcpy(&h, &bits, 2); return (float)h;
}
static inline unsigned short snn_f2h(const float value) {
    _Float16 h = (_Float16)value; unsigned short bits; memcpy(&bits, &h, 2); return bits;
}
template <typename... P, typename... A>
static void snn_host_launch(void (*kernel)(P...), unsigned int grid, unsigned int block, A... args) {
    for (unsigned int b = 0; b < grid; ++b) {
        pthread_barrier_init(&snn_host_barrier, nullptr, block);
        std::vector<std::thread> threads;
        for (unsigned int t = 0; t < block; ++t) {
            threads.emplace_back([=]() {
                blockIdx = {b, 0, 0}; blockDim = {block, 1, 1}; threadIdx = {t, 0, 0};
                kernel(static_cast<P>(args)...);
            });
        }
        for (auto& thread : threads) thread.join();
        pthread_barrier_destroy(&snn_host_barrier);
    }
}
"""

#: Sources per compiler process below which a batch is not split.
_SOURCES_PER_JOB = 24


class HostCompileError(RuntimeError):
    """The C++ compiler rejected the emulated kernels (the message holds its output)."""


def find_compiler() -> str | None:
    """The C++ compiler to use: ``$CXX``, ``g++`` or ``clang++``; ``None`` when there is none."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def _wrapper(entry: str, pointers: int) -> str:
    params = ", ".join(f"void* a{i}" for i in range(pointers))
    args = ", ".join(f"a{i}" for i in range(pointers))
    return (
        f'extern "C" void host_{entry}(unsigned int grid, unsigned int block, {params}, '
        f"long long n, int steps) {{\n    snn_host_launch({entry}, grid, block, {args}, n, steps);\n}}\n"
    )


class HostExecutor:
    """Compiles kernel sources into shared libraries and launches them on CPU tensors.

    Args:
        compiler: the C++ compiler (default :func:`find_compiler`).
        directory: where libraries are written (default: a fresh temporary directory).
        block_size: emulated threads per block (a power of two, at most 256).
    """

    backend = "cupy_host"
    device_type = "cpu"

    def __init__(self, compiler: str | None = None, directory: str | None = None, block_size: int = 8) -> None:
        found = compiler or find_compiler()
        if found is None:
            raise HostCompileError("no C++ compiler found (set CXX, or install g++ or clang++)")
        if block_size < 1 or block_size > 256 or block_size & (block_size - 1):
            raise ValueError(f"block_size: expected a power of two in [1, 256], got {block_size!r}")
        self.compiler = found
        self.directory = directory or tempfile.mkdtemp(prefix="snn_cupy_host_")
        self.block_size = block_size
        self._functions: dict[str, Any] = {}
        self._libraries: list[ctypes.CDLL] = []
        self._lock = threading.Lock()

    def prepare(self, sources: Iterable[KernelSource], extra: str = "") -> ctypes.CDLL | None:
        """Compile every source not compiled yet (plus ``extra`` C++) into shared libraries.

        Many sources are split into groups compiled in parallel (one compiler process per CPU).

        Returns:
            The library holding ``extra`` (the first new one), or ``None`` when there was
            nothing to compile.
        """
        with self._lock:
            pending = list({s.name: s for s in sources if s.entries[0][0] not in self._functions}.values())
            if not pending and not extra:
                return None
            jobs = max(1, min(os.cpu_count() or 1, len(pending) // _SOURCES_PER_JOB))
            groups = [pending[k::jobs] for k in range(jobs)]
            codes = [self._code(group, extra if k == 0 else "") for k, group in enumerate(groups)]
            if len(codes) == 1:
                libraries = [self._compile(codes[0])]
            else:
                with ThreadPoolExecutor(len(codes)) as pool:
                    libraries = list(pool.map(self._compile, codes))
            for group, library in zip(groups, libraries):
                for source in group:
                    for entry, _ in source.entries:
                        self._functions[entry] = getattr(library, f"host_{entry}")
            self._libraries += libraries
            return libraries[0]

    @staticmethod
    def _code(sources: list[KernelSource], extra: str) -> str:
        """The C++ of one library: the shim, the sources, a host wrapper per entry, ``extra``."""
        text = [HOST_SHIM]
        wrappers = []
        for source in sources:
            text.append(source.source)
            wrappers += [_wrapper(entry, len(source.params)) for entry, _ in source.entries]
        return "".join(text) + "".join(wrappers) + extra

    def _compile(self, code: str) -> ctypes.CDLL:
        digest = hashlib.sha256(code.encode()).hexdigest()[:20]
        cpp = os.path.join(self.directory, f"kernels_{digest}.cpp")
        library = os.path.join(self.directory, f"kernels_{digest}.so")
        if not os.path.exists(library):
            with open(cpp, "w", encoding="utf-8") as handle:
                handle.write(code)
            command = [
                self.compiler, "-std=c++17", "-O0", "-ffp-contract=off", "-fno-fast-math", "-shared",
                "-fPIC", "-pthread", "-w", cpp, "-o", library,
            ]
            partial = f"{library}.{os.getpid()}.{threading.get_ident()}.tmp"
            command[-1] = partial
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise HostCompileError(f"{' '.join(command[:2])} failed:\n{result.stderr[-4000:]}")
            os.replace(partial, library)  # whole libraries only, also with concurrent builds
        return ctypes.CDLL(library)

    def function(self, source: KernelSource, vec: int, device: torch.device) -> Any:
        """The emulated entry point of ``source`` for ``vec`` neurons per thread."""
        entry = source.entry(vec)
        found = self._functions.get(entry)
        if found is None:
            self.prepare([source])
            found = self._functions[entry]
        return found

    def launch(self, function: Any, units: int, args: tuple[Any, ...], device: torch.device) -> None:
        """Run ``function`` over ``units`` emulated threads (arguments as :func:`snn_cupy.runtime.launch`)."""
        if units <= 0:
            return
        *pointers, n, steps = args
        converted = []
        for value in pointers:
            if value is None:
                converted.append(ctypes.c_void_p(0))
            elif isinstance(value, torch.Tensor):
                if value.device.type != "cpu" or not value.is_contiguous():
                    raise ValueError("host kernels take contiguous CPU tensors")
                converted.append(ctypes.c_void_p(value.data_ptr()))
            else:
                raise TypeError(f"host kernel argument: expected a tensor or None, got {type(value).__name__}")
        if not isinstance(steps, Int32):
            raise TypeError("host kernel argument steps: expected snn_cupy.runtime.Int32")
        grid = (units + self.block_size - 1) // self.block_size
        function(ctypes.c_uint(grid), ctypes.c_uint(self.block_size), *converted,
                 ctypes.c_longlong(int(n)), ctypes.c_int(int(steps)))


_executor: HostExecutor | None = None
_executor_lock = threading.Lock()


def host_executor() -> HostExecutor:
    """The shared :class:`HostExecutor` of this process (created on first use).

    Raises:
        HostCompileError: there is no C++ compiler.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = HostExecutor()
        return _executor


def probe() -> str | None:
    """``None`` when a C++ compiler with ``_Float16`` is available, else the reason."""
    compiler = find_compiler()
    if compiler is None:
        return "no C++ compiler (g++ or clang++) for the host emulation of the cupy kernels"
    try:
        host_executor().prepare([], extra='extern "C" float snn_host_probe(float x) { return (float)(_Float16)x; }\n')
    except (HostCompileError, OSError) as exc:
        return f"the C++ compiler {compiler} cannot build the host emulation: {exc}"
    return None


def multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """:func:`snn_cupy.kernels.multi_step` on CPU tensors, through the emulation."""
    from snn_cupy.kernels import run_multi_step

    return run_multi_step(x_seq, states, config, learnables, store_state_seqs, executor=host_executor())


class HostPlugin:
    """A plugin object registering the emulation as backend ``"cupy_host"`` (tests only).

    Use with :func:`snn.plugins.temporary_plugin` or ``BackendConformance.plugin``. The device
    ``"cpu"`` is registered as *emulated*: ``backend="auto"`` never picks it.
    """

    name = "cupy_host"

    @snn.hookimpl
    def snn_register_backends(self, register: BackendRegistrar) -> None:
        """Register ``"cupy_host"`` with the dtypes and operations of the ``"cupy"`` backend."""
        from snn_cupy.plugin import DTYPES, OPERATIONS

        register(
            self.name,
            {"multi_step": "snn_cupy.host:multi_step"},
            devices=(),
            emulated_devices=("cpu",),
            dtypes=DTYPES,
            operations=OPERATIONS,
            probe=probe,
            auto_priority=0,
            description="the cupy kernels' CUDA C compiled for the CPU (tests only)",
        )
