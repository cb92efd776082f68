"""The ``"cupy"`` backend plugin (entry point ``cupy = "snn_cupy.plugin"``, group ``snn``).

Importing this module imports neither CuPy nor the kernels: the kernels
(:mod:`snn_cupy.kernels`) are imported on first use, and :func:`snn_cupy.probe.probe` tells
whether CuPy is installed, whether a CUDA device is there and whether NVRTC can compile.

The backend serves multi-step IF, LIF and PLIF on CUDA tensors in float32 and float16, for
every surrogate of :data:`snn.surrogate.CLOSED_FORM_SURROGATES`: each backward kernel inlines
the surrogate derivative rendered from the one expression the surrogate defines.
"""

from __future__ import annotations

import torch

import snn
from snn_cupy.probe import probe

__all__ = [
    "BACKEND_NAME",
    "KERNELS",
    "DTYPES",
    "DEVICES",
    "AUTO_PRIORITY",
    "EXCLUDED_SURROGATES",
    "claimed_surrogates",
    "snn_register_backends",
]

#: The registered backend name.
BACKEND_NAME = "cupy"

#: ``(kind, mode) -> "module:attribute"`` of every kernel.
KERNELS: dict[tuple[str, str], str] = {
    (kind, "multi_step"): f"snn_cupy.kernels:{kind}_multi_step" for kind in ("if", "lif", "plif")
}

#: Storage dtypes served (arithmetic is float32).
DTYPES = (torch.float32, torch.float16)

#: Device types served.
DEVICES = ("cuda",)

#: Preference of ``backend="auto"`` (torch has 0, Triton 10).
AUTO_PRIORITY = 5

#: Closed-form surrogates this backend does not claim (none: every one renders to CUDA C).
EXCLUDED_SURROGATES: frozenset[str] = frozenset()


def claimed_surrogates() -> tuple[str, ...]:
    """The surrogate class names the kernels implement, in :mod:`snn.surrogate`'s order."""
    from snn.surrogate import CLOSED_FORM_SURROGATES

    return tuple(name for name in CLOSED_FORM_SURROGATES if name not in EXCLUDED_SURROGATES)


@snn.hookimpl
def snn_register_backends(register: object) -> None:
    """Register the ``"cupy"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    register(  # type: ignore[operator]
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        dtypes=DTYPES,
        surrogates=claimed_surrogates(),
        probe=probe,
        auto_priority=AUTO_PRIORITY,
        description="CUDA C kernels compiled by NVRTC through CuPy: multi-step IF/LIF/PLIF, float32/float16",
    )
