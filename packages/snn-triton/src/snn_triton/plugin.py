"""The ``"triton"`` backend plugin (entry point ``triton = "snn_triton.plugin"``, group ``snn``).

Importing this module does not import Triton: the kernels (:mod:`snn_triton.multistep`) are
imported on first use, and :func:`snn_triton.runtime.probe` checks that Triton is installed
and that a CUDA device (or ``TRITON_INTERPRET=1``) is there.

The backend serves multi-step IF, LIF and PLIF on CUDA in float32, float16 and bfloat16, for
every surrogate of :data:`snn.surrogate.CLOSED_FORM_SURROGATES` (their derivatives are
generated from the one expression each surrogate defines). With ``TRITON_INTERPRET=1`` at
registration time it also accepts CPU tensors, through Triton's interpreter (tests only;
``backend="auto"`` never picks it there).
"""

from __future__ import annotations

import torch

import snn
from snn_triton.runtime import interpreter_enabled, probe

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
BACKEND_NAME = "triton"

#: ``(kind, mode) -> "module:attribute"`` of every kernel.
KERNELS: dict[tuple[str, str], str] = {
    (kind, "multi_step"): f"snn_triton.multistep:{kind}_multi_step" for kind in ("if", "lif", "plif")
}

#: Storage dtypes served (arithmetic is float32).
DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: Device types served natively.
DEVICES = ("cuda",)

#: Preference of ``backend="auto"`` (the torch backend has 0).
AUTO_PRIORITY = 10

#: Closed-form surrogates this backend does not claim (none: every one renders and passes
#: the conformance suite).
EXCLUDED_SURROGATES: frozenset[str] = frozenset()


def claimed_surrogates() -> tuple[str, ...]:
    """The surrogate class names the kernels implement, in :mod:`snn.surrogate`'s order."""
    from snn.surrogate import CLOSED_FORM_SURROGATES

    return tuple(name for name in CLOSED_FORM_SURROGATES if name not in EXCLUDED_SURROGATES)


@snn.hookimpl
def snn_register_backends(register: object) -> None:
    """Register the ``"triton"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    register(  # type: ignore[operator]
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        emulated_devices=("cpu",) if interpreter_enabled() else (),
        dtypes=DTYPES,
        surrogates=claimed_surrogates(),
        probe=probe,
        auto_priority=AUTO_PRIORITY,
        description="fused Triton kernels: multi-step IF/LIF/PLIF, one launch per sequence and pass",
    )
