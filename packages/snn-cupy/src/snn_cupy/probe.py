"""Can the cupy backend run here? One probe that tells the reasons apart.

:func:`probe` returns ``None`` when kernels can be compiled and launched, or a sentence saying
why not. It distinguishes:

- CuPy is not installed (the install command);
- CuPy is installed but there is no CUDA device (no NVIDIA driver, none visible, or PyTorch
  cannot use CUDA);
- CuPy is broken here: it fails to import, the driver is too old for its CUDA runtime, or it
  cannot compile and load a kernel (NVRTC missing, or a driver older than NVRTC). These raise
  :class:`CupyProbeError` with the original exception chained, so that
  :class:`snn.errors.BackendUnavailableError` carries it as ``__cause__``.

Nothing is imported at module import time; the probe runs once per registry build.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from typing import Any

from snn.errors import BackendProbeError

__all__ = ["INSTALL_HINT", "CupyProbeError", "probe"]

#: How to install the CUDA 12 build of CuPy alongside this distribution.
INSTALL_HINT = 'pip install "snn-cupy[cuda12]"'

_NO_DEVICE = 100  # cudaErrorNoDevice
_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver

_SMOKE_SOURCE = r"""
extern "C" __global__ void snn_cupy_probe(float* out, const unsigned short* half_in) {
    float value;
    asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(half_in[0]));
    out[0] = value + 1.0f;
}
"""


class CupyProbeError(BackendProbeError):
    """CuPy is installed but broken here; the message is the reason, the cause is chained."""


def _cupy_installed() -> bool:
    """Whether a ``cupy`` package can be found (without importing it)."""
    try:
        return importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        return False


def _import_cupy() -> Any:
    import cupy

    return cupy


def _torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _driver_library_loads() -> bool:
    names = ("nvcuda.dll",) if sys.platform.startswith("win") else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _visible_devices_note() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f" (CUDA_VISIBLE_DEVICES={value!r})" if value is not None else ""


def _device_count(cupy: Any) -> int | str:
    """The number of CUDA devices, or the reason there is none."""
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status == _NO_DEVICE:
            return "cupy is installed but no CUDA device is visible" + _visible_devices_note()
        if status == _INSUFFICIENT_DRIVER and not _driver_library_loads():
            return "cupy is installed but there is no CUDA device: no NVIDIA driver is installed (libcuda cannot be loaded)"
        if status == _INSUFFICIENT_DRIVER:
            raise CupyProbeError(
                f"the NVIDIA driver is too old for CuPy's CUDA runtime ({exc}); update the driver or "
                'install the CuPy build that matches it (pip install "snn-cupy[cuda12]" for CUDA 12 drivers)'
            ) from exc
        raise CupyProbeError(f"CuPy cannot query the CUDA devices: {type(exc).__name__}: {exc}") from exc


def _smoke_test(cupy: Any) -> None:
    """Compile, load and run a tiny kernel with NVRTC (also checks half conversion)."""
    module = cupy.RawModule(code=_SMOKE_SOURCE, backend="nvrtc")
    kernel = module.get_function("snn_cupy_probe")
    out = cupy.zeros((1,), dtype=cupy.float32)
    half_in = cupy.full((1,), 0x3C00, dtype=cupy.uint16)  # float16 1.0
    kernel((1,), (1,), (out, half_in))
    value = float(out.get()[0])
    if value != 2.0:
        raise RuntimeError(f"the probe kernel computed {value!r} instead of 2.0")


def _nvrtc_version(cupy: Any) -> str:
    try:
        from cupy_backends.cuda.libs import nvrtc

        major, minor = nvrtc.getVersion()
        return f"{major}.{minor}"
    except Exception:
        return "unknown"


def probe() -> str | None:
    """``None`` when the cupy kernels can run here, else the reason.

    Returns:
        ``None``; ``'cupy is not installed: pip install "snn-cupy[cuda12]"'``; or a sentence
        saying that there is no CUDA device (and why, when known).

    Raises:
        CupyProbeError: CuPy is installed but fails to import, the driver is too old, or NVRTC
            cannot compile and load a kernel. The original error is the ``__cause__``.
    """
    if not _cupy_installed():
        return f"cupy is not installed: {INSTALL_HINT}"
    try:
        cupy = _import_cupy()
    except Exception as exc:
        raise CupyProbeError(
            f"cupy is installed but fails to import ({type(exc).__name__}: {exc}); install the build "
            'that matches your CUDA driver: pip install "snn-cupy[cuda12]" or "snn-cupy[cuda13]"'
        ) from exc
    count = _device_count(cupy)
    if isinstance(count, str):
        return count
    if count == 0:
        return "cupy is installed but no CUDA device is visible" + _visible_devices_note()
    if not _torch_cuda_available():
        import torch

        return (
            f"cupy sees {count} CUDA device(s) but PyTorch {torch.__version__} cannot use CUDA "
            "(a CPU-only build?); the kernels take CUDA tensors"
        )
    try:
        _smoke_test(cupy)
    except Exception as exc:
        raise CupyProbeError(
            f"CuPy cannot compile and run a kernel with NVRTC {_nvrtc_version(cupy)} "
            f"(NVRTC missing, or a driver older than NVRTC): {type(exc).__name__}: {exc}"
        ) from exc
    return None
