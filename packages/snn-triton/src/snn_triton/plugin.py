"""The ``"triton"`` backend plugin (entry point ``triton = "snn_triton.plugin"``, group ``snn``).

Importing this module does not import Triton: the kernel (:mod:`snn_triton.multistep`) is
imported on first use, and :func:`snn_triton.runtime.probe` checks that Triton is installed
and that a CUDA device (or ``TRITON_INTERPRET=1``) is there.

The backend generates its kernels from the neuron models' expressions: it registers the
:mod:`snn.expr` operations it renders (:data:`OPERATIONS`) instead of a list of models, and so
serves, in multi-step mode, every registered model and every closed-form surrogate (built-in
or a third party's) whose kernel plan uses only those operations. Storage dtypes are float32,
float16 and bfloat16 on CUDA. With ``TRITON_INTERPRET=1`` at registration time it also accepts
CPU tensors, through Triton's interpreter (tests only; ``backend="auto"`` never picks it
there). Single-step calls run the torch backend's single-step kernel (see
:mod:`snn.dispatch`).
"""

from __future__ import annotations

import torch

import snn
from snn.registry import BackendRegistrar
from snn_triton.runtime import interpreter_enabled, probe

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
BACKEND_NAME = "triton"

#: ``mode -> "module:attribute"``: one multi-step kernel serves every model.
KERNELS: dict[str, str] = {"multi_step": "snn_triton.multistep:multi_step"}

#: Storage dtypes served (arithmetic is float32).
DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: Device types served natively.
DEVICES = ("cuda",)

#: The :mod:`snn.expr` operations the kernel generator (:mod:`snn_triton.codegen`) renders: all
#: of them.
OPERATIONS = (
    "+", "-", "*", "/", "neg", "pow", "<", "<=", ">", ">=", "and", "where",
    "exp", "log", "abs", "sqrt", "sigmoid", "cos", "sin", "relu", "minimum", "maximum",
)

#: Preference of ``backend="auto"`` (the torch backend has 0).
AUTO_PRIORITY = 10


@snn.hookimpl
def snn_register_backends(register: BackendRegistrar) -> None:
    """Register the ``"triton"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    register(
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        emulated_devices=("cpu",) if interpreter_enabled() else (),
        dtypes=DTYPES,
        operations=OPERATIONS,
        probe=probe,
        auto_priority=AUTO_PRIORITY,
        description="fused Triton kernels generated per neuron model: one launch per sequence and pass",
    )
