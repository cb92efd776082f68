"""Fixtures of the snn-cupy tests: NVRTC, and a host emulation of the generated kernels.

The host emulation compiles the generated CUDA C *verbatim* with the system C++ compiler: a
small shim maps the CUDA keywords to C++, runs every block's threads as real threads (so
``__syncthreads`` is a real barrier and ``__shared__`` memory is shared), and replaces only the
two PTX-assembly float16 conversions of the preamble by ``_Float16`` casts. The kernels'
arithmetic, indexing, layouts and reductions therefore run on the CPU exactly as written.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import torch

from snn_cupy.templates import KernelSource

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

_FORWARD_POINTERS = 7
_BACKWARD_POINTERS = 9


def _wrapper(entry: str, pointers: int) -> str:
    params = ", ".join(f"void* a{i}" for i in range(pointers))
    args = ", ".join(f"a{i}" for i in range(pointers))
    return (
        f'extern "C" void host_{entry}(unsigned int grid, unsigned int block, {params}, long long n, int steps) {{\n'
        f"    snn_host_launch({entry}, grid, block, {args}, n, steps);\n}}\n"
    )


class HostKernels:
    """Generated kernels compiled for the CPU; launch an entry on torch CPU tensors."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library

    def launch(self, entry: str, block: int, units: int, args: Iterable[Any], steps: int) -> None:
        """Run ``entry`` over ``units`` threads in blocks of ``block`` (a power of two).

        Args:
            entry: the kernel entry-point name.
            block: threads per block.
            units: threads needed (neurons or neuron pairs).
            args: the pointer arguments: contiguous CPU tensors or ``None`` (null).
            steps: ``T``.
        """
        function = getattr(self._library, f"host_{entry}")
        pointers = [ctypes.c_void_p(a.data_ptr() if isinstance(a, torch.Tensor) else 0) for a in args]
        grid = (units + block - 1) // block
        function(ctypes.c_uint(grid), ctypes.c_uint(block), *pointers, ctypes.c_longlong(units), ctypes.c_int(steps))

    def function(self, name: str) -> Callable[..., Any]:
        """An extra ``extern "C"`` function of the library."""
        return getattr(self._library, name)


@pytest.fixture(scope="session")
def host_compiler() -> str:
    """The system C++ compiler (the host-emulation tests skip without one)."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++ or clang++) found for the host emulation of the kernels")
    return compiler


@pytest.fixture(scope="session")
def build_host(host_compiler: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., HostKernels]:
    """``build(sources, extra="")``: compile kernel sources (and extra C++) into a CPU library."""
    directory = tmp_path_factory.mktemp("host_kernels")

    def build(sources: Iterable[KernelSource], extra: str = "") -> HostKernels:
        parts = [HOST_SHIM]
        wrappers = []
        for source in sources:
            parts.append(source.source)
            pointers = _BACKWARD_POINTERS if "_bwd_" in source.name else _FORWARD_POINTERS
            wrappers += [_wrapper(entry, pointers) for entry, _ in source.entries]
        text = "".join(parts) + "".join(wrappers) + extra
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        cpp = directory / f"kernels_{digest}.cpp"
        library = directory / f"kernels_{digest}.so"
        if not library.exists():
            cpp.write_text(text)
            command = [
                host_compiler, "-std=c++17", "-O1", "-ffp-contract=off", "-fno-fast-math", "-shared",
                "-fPIC", "-pthread", "-w", str(cpp), "-o", str(library),
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise AssertionError(f"host compilation failed:\n{result.stderr[-4000:]}")
        return HostKernels(ctypes.CDLL(str(library)))

    return build


@pytest.fixture(scope="session")
def nvrtc() -> Any:
    """A loadable NVRTC (the compile tests skip with the reason when there is none)."""
    from snn_cupy.nvrtc import NvrtcNotFoundError, find_nvrtc

    try:
        return find_nvrtc()
    except NvrtcNotFoundError as exc:
        pytest.skip(f"NVRTC cannot be loaded, kernel sources not compiled: {exc}")


def repo_root() -> Path:
    """The repository root (for subprocess tests)."""
    return Path(__file__).resolve().parents[3]
