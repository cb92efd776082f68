"""Fixtures of the snn-cupy tests: NVRTC, and the host emulation of the generated kernels.

The host emulation (:mod:`snn_cupy.host`) compiles the generated CUDA C verbatim with the system
C++ compiler and runs each block's threads as real threads; tests that need it skip when there
is no C++ compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
import torch

from snn_cupy.host import HostExecutor, find_compiler
from snn_cupy.runtime import Int32
from snn_cupy.templates import KernelSource

CPU = torch.device("cpu")


class HostKernels:
    """An executor with small blocks (several blocks and real barriers even for tiny sizes)."""

    def __init__(self, executor: HostExecutor, library: Any) -> None:
        self.executor = executor
        self.library = library

    @property
    def block_size(self) -> int:
        return self.executor.block_size

    def launch(self, source: KernelSource, vec: int, units: int, pointers: Iterable[Any], steps: int) -> None:
        """Run the ``vec`` entry of ``source`` over ``units`` threads with these pointer arguments."""
        function = self.executor.function(source, vec, CPU)
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
def build_host(host_compiler: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., HostKernels]:
    """``build(sources, extra="")``: compile kernel sources (and extra C++) for the CPU."""
    executor = HostExecutor(host_compiler, str(tmp_path_factory.mktemp("host_kernels")), block_size=4)

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
