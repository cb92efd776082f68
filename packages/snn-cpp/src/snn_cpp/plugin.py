"""The ``"cpp"`` backend plugin (entry point ``cpp = "snn_cpp.plugin"``, group ``snn``).

Importing this module compiles nothing: the probe (:func:`snn_cpp.build.probe`) looks for a C
compiler and builds a small test library once (cached on disk), and each configuration's
kernels are generated and compiled on first use.

The backend generates its kernels from the models' expressions (:mod:`snn_cpp.codegen`), so it
serves every registered model whose kernel plan uses only the operations below (all of
:mod:`snn.expr`'s), and every closed-form surrogate, on the CPU in float32 and float64.
"""

from __future__ import annotations

import torch

import snn
from snn_cpp.build import probe
from snn_cpp.kernel import BACKEND_NAME

__all__ = ["BACKEND_NAME", "KERNELS", "DTYPES", "DEVICES", "OPERATIONS", "AUTO_PRIORITY", "snn_register_backends"]

#: ``mode -> "module:attribute"`` of every kernel.
KERNELS: dict[str, str] = {"multi_step": "snn_cpp.kernel:multi_step"}

#: Storage dtypes served (computed in the same precision).
DTYPES = (torch.float32, torch.float64)

#: Device types served.
DEVICES = ("cpu",)

#: The :mod:`snn.expr` operations the code generator renders (all of them).
OPERATIONS = (
    "+", "-", "*", "/", "neg", "pow", "<", "<=", ">", ">=", "and", "where",
    "exp", "log", "abs", "sqrt", "sigmoid", "cos", "sin", "relu", "minimum", "maximum",
)

#: Preference of ``backend="auto"`` (the torch backend has 0; measured faster on CPU).
AUTO_PRIORITY = 5


@snn.hookimpl
def snn_register_backends(register: object) -> None:
    """Register the ``"cpp"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    register(  # type: ignore[operator]
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        dtypes=DTYPES,
        operations=OPERATIONS,
        probe=probe,
        auto_priority=AUTO_PRIORITY,
        description="compiled C kernels for the CPU: every model, one fused loop per sequence and pass",
    )
