"""The ``"cupy"`` backend plugin (entry point ``cupy = "snn_cupy.plugin"``, group ``snn``).

Importing this module imports neither CuPy nor the kernels: the kernel
(:mod:`snn_cupy.kernels`) is imported on first use, and :func:`snn_cupy.probe.probe` tells
whether CuPy is installed, whether a CUDA device is there and whether NVRTC can compile.

The backend generates its kernels from the neuron models' expressions: one multi-step kernel
serves every registered model (built-in or a plugin's) and every closed-form surrogate whose
kernel plan uses only the :data:`OPERATIONS` it renders (all of :mod:`snn.expr`'s), on CUDA
tensors in float32 and float16. Single-step mode runs on torch (:mod:`snn.dispatch`).
"""

from __future__ import annotations

import torch

import snn
from snn.registry import BackendRegistrar
from snn_cupy.probe import probe

__all__ = [
    "BACKEND_NAME",
    "KERNELS",
    "DTYPES",
    "DEVICES",
    "OPERATIONS",
    "AUTO_PRIORITY",
    "snn_register_backends",
]

#: The registered backend name.
BACKEND_NAME = "cupy"

#: ``mode -> "module:attribute"`` of every kernel: one for all models.
KERNELS: dict[str, str] = {"multi_step": "snn_cupy.kernels:multi_step"}

#: Storage dtypes served (arithmetic is float32).
DTYPES = (torch.float32, torch.float16)

#: Device types served.
DEVICES = ("cuda",)

#: The :mod:`snn.expr` operations the generated CUDA C renders (all of them; ``minimum`` and
#: ``maximum`` as NaN-propagating selections, see :mod:`snn_cupy._lowering`).
OPERATIONS = (
    "+", "-", "*", "/", "neg", "pow", "<", "<=", ">", ">=", "and", "where",
    "exp", "log", "abs", "sqrt", "sigmoid", "cos", "sin", "relu", "minimum", "maximum",
)

#: Preference of ``backend="auto"`` (torch has 0, Triton 10).
AUTO_PRIORITY = 5


@snn.hookimpl
def snn_register_backends(register: BackendRegistrar) -> None:
    """Register the ``"cupy"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    register(
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        dtypes=DTYPES,
        operations=OPERATIONS,
        probe=probe,
        auto_priority=AUTO_PRIORITY,
        description="CUDA C kernels generated per model and compiled by NVRTC through CuPy, float32/float16",
    )
