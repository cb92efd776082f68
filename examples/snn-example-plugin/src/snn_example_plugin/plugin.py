"""The hook implementations snn calls when it builds its plugin manager.

Each hook receives a *registrar* and calls it once per thing it provides; it returns nothing.
Nothing heavy is imported here: the kernel is named as a ``"module:attribute"`` string that snn
imports the first time a neuron runs on this backend.
"""

from __future__ import annotations

from typing import Any

import torch

import snn
from snn_example_plugin.losses import hinge_rate

__all__ = ["BACKEND_NAME", "SURROGATES", "probe", "snn_register_backends", "snn_register_losses"]

#: The backend name users pass to ``set_backend`` / ``backend=``.
BACKEND_NAME = "example"

#: Surrogate classes (of :mod:`snn.surrogate`) the kernel claims; the conformance suite checks each.
SURROGATES = ("Sigmoid", "ATan")


def probe() -> str | None:
    """The example backend runs wherever torch runs: ``None`` (no reason it cannot)."""
    return None


@snn.hookimpl
def snn_register_backends(register: Any) -> None:
    """Register the ``example`` backend: a multi-step LIF kernel written in plain PyTorch."""
    register(
        BACKEND_NAME,
        {("lif", "multi_step"): "snn_example_plugin.kernels:lif_multi_step"},
        devices=("cpu", "cuda"),
        dtypes=(torch.float32, torch.float64),
        surrogates=SURROGATES,
        probe=probe,
        auto_priority=-10,  # a teaching example: backend="auto" should never prefer it
        description="example plugin: multi-step LIF as a plain PyTorch loop (slow, for reading)",
    )


@snn.hookimpl
def snn_register_losses(register: Any) -> None:
    """Register the ``hinge_rate`` loss (usable by ``snn train --loss hinge_rate``)."""
    register(
        "hinge_rate",
        hinge_rate,
        signature="sequence_classification",
        description="multi-class hinge loss on the firing rates (margin 0.5)",
    )
