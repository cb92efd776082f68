"""Executors: where generated kernels are compiled and launched.

An *executor* turns a :class:`~snn_cupy.templates.KernelSource` into a callable entry point and
launches it over a number of threads. :data:`CUPY` is the real one (CUDA, through CuPy);
:mod:`snn_cupy.host` provides a CPU emulation used by the tests.

With CuPy, modules are compiled by :class:`cupy.RawModule` (NVRTC) once per source and device and kept for
the life of the process; launches pass the raw data pointers of torch tensors (``None`` becomes a
null pointer) and run on ``torch.cuda.current_stream()``, so they are ordered with the
surrounding PyTorch work without any synchronisation.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import torch

from snn_cupy._codegen import BLOCK_SIZE
from snn_cupy.templates import KernelSource

__all__ = [
    "COMPILE_OPTIONS",
    "Int32",
    "Executor",
    "CupyExecutor",
    "CUPY",
    "kernel_function",
    "launch",
    "clear_cache",
]

#: NVRTC options. No fast math: divisions and transcendental functions stay IEEE-accurate, and
#: no contraction of ``a * b + c`` into one fused multiply-add, so every operation rounds as the
#: plan's expression (and the torch backend, and the host emulation) rounds it. The kernels are
#: bound by memory traffic, so the separate multiply costs nothing measurable. C++17: the sources
#: spell every float exactly as a hexadecimal literal (``0x1.8p+0f``), which C++14 lacks. One
#: difference remains that no option here can undo: CuPy adds ``-ftz=true`` to every compile, so
#: float32 values below 2**-126 (denormals) flush to zero, where torch on the CPU keeps them.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17", "--fmad=false")

_lock = threading.Lock()
_functions: dict[tuple[str, int], dict[str, Any]] = {}
_streams: dict[tuple[int, int], Any] = {}


class Int32(int):
    """A kernel argument passed as a 32-bit ``int`` (plain Python ints are passed as 64-bit)."""


_runtime_checked: list[bool] = []


def _cupy() -> Any:
    """The ``cupy`` module, after the registered backend's probe found it usable (once per
    process).

    Raises:
        snn.errors.BackendUnavailableError: CuPy or a CUDA device is missing (the probe's reason,
            e.g. the install command), for a caller that reached the kernels without choosing
            the backend through a neuron, which checks this first.
    """
    if not _runtime_checked:
        from snn.plugins import get_registry

        get_registry().backend("cupy").raise_if_unavailable()  # the probe, run and worded once
        _runtime_checked.append(True)
    import cupy

    return cupy


def kernel_function(source: KernelSource, vec: int, device_index: int) -> Any:
    """The compiled entry point of ``source`` for ``vec`` neurons per thread on a device.

    The whole module is compiled (and every entry loaded) on first use, then cached.

    Args:
        source: the kernel source.
        vec: neurons per thread (1, or 2 for the float16 pair layout).
        device_index: the CUDA device.

    Returns:
        A :class:`cupy.RawKernel`.
    """
    key = (source.name, device_index)
    functions = _functions.get(key)
    if functions is None:
        cupy = _cupy()
        with _lock:
            functions = _functions.get(key)
            if functions is None:
                with cupy.cuda.Device(device_index):
                    module = cupy.RawModule(code=source.source, options=COMPILE_OPTIONS, backend="nvrtc")
                    functions = {entry: module.get_function(entry) for entry, _ in source.entries}
                    for function in functions.values():
                        function.compile()
                _functions[key] = functions
    return functions[source.entry(vec)]


def _stream(device: torch.device) -> Any:
    torch_stream = torch.cuda.current_stream(device)
    key = (device.index or 0, torch_stream.cuda_stream)
    found = _streams.get(key)
    if found is None:
        cupy = _cupy()
        from_external = getattr(cupy.cuda.Stream, "from_external", None)
        if from_external is not None:
            found = from_external(torch_stream)
        else:  # CuPy 13
            found = cupy.cuda.ExternalStream(torch_stream.cuda_stream, device.index or 0)
        if len(_streams) > 64:
            _streams.clear()
        _streams[key] = found
    return found


def launch(function: Any, units: int, args: tuple[Any, ...], device: torch.device) -> None:
    """Launch ``function`` over ``units`` threads on the current torch stream of ``device``.

    Args:
        function: from :func:`kernel_function`.
        units: threads needed (neurons, or neuron pairs); blocks of :data:`BLOCK_SIZE`.
        args: kernel arguments: tensors (passed by data pointer), ``None`` (a null pointer),
            :class:`Int32` (32-bit integers) and Python ints (64-bit integers).
        device: the CUDA device of the tensors.
    """
    if units <= 0:
        return
    cupy = _cupy()
    import numpy

    packed = tuple(
        a.data_ptr() if isinstance(a, torch.Tensor)
        else 0 if a is None
        else numpy.int32(a) if isinstance(a, Int32)
        else a
        for a in args
    )
    blocks = (units + BLOCK_SIZE - 1) // BLOCK_SIZE
    with cupy.cuda.Device(device.index or 0), _stream(device):
        function((blocks,), (BLOCK_SIZE,), packed)


def clear_cache() -> None:
    """Forget compiled modules and stream wrappers (tests)."""
    with _lock:
        _functions.clear()
        _streams.clear()


class Executor(Protocol):
    """Compiles and launches generated kernels on one kind of device.

    Attributes:
        backend: the registered backend name its kernels serve (for argument checks and errors).
        device_type: the torch device type of the tensors it takes (``"cuda"``, ``"cpu"``).
        block_size: threads per block (a power of two, at most :data:`BLOCK_SIZE`).
    """

    backend: str
    device_type: str
    block_size: int

    def function(self, source: KernelSource, vec: int, device: torch.device) -> Any:
        """The entry point of ``source`` for ``vec`` neurons per thread, compiled once."""
        ...

    def launch(self, function: Any, units: int, args: tuple[Any, ...], device: torch.device) -> None:
        """Run ``function`` over ``units`` threads (see :func:`launch` for ``args``)."""
        ...


class CupyExecutor:
    """The CUDA executor: :func:`kernel_function` and :func:`launch`."""

    backend = "cupy"
    device_type = "cuda"
    block_size = BLOCK_SIZE

    def function(self, source: KernelSource, vec: int, device: torch.device) -> Any:
        return kernel_function(source, vec, device.index or 0)

    def launch(self, function: Any, units: int, args: tuple[Any, ...], device: torch.device) -> None:
        launch(function, units, args, device)


#: The executor of the ``"cupy"`` backend.
CUPY = CupyExecutor()
