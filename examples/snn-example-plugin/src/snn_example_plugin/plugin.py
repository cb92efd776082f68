"""The hook implementations snn calls when it builds its plugin manager.

The neuron-model hook lives beside its model in
:mod:`snn_example_plugin.neuron` and is re-exported here, so the one entry
point registers everything.

Each hook receives a *registrar* and calls it once per thing it provides; it
returns nothing. Nothing heavy is imported here: the kernel is named as a
``"module:attribute"`` string that snn imports the first time a neuron runs on
this backend.
"""

from __future__ import annotations

import torch

import snn
from snn.registry import BackendRegistrar, LossRegistrar
from snn_example_plugin.losses import hinge_rate
from snn_example_plugin.neuron import snn_register_neuron_models

__all__ = [
    "BACKEND_NAME",
    "SURROGATES",
    "probe",
    "snn_register_backends",
    "snn_register_losses",
    "snn_register_neuron_models",
]

#: The backend name users pass to ``set_backend`` / ``backend=``.
BACKEND_NAME = "example"

#: Surrogate classes (of :mod:`snn.surrogate`) the kernel claims; the
#: conformance suite checks each.
SURROGATES = ("Sigmoid", "ATan")


def probe() -> str | None:
    """The example backend runs wherever torch runs: ``None``, no reason."""
    return None


@snn.hookimpl
def snn_register_backends(register: BackendRegistrar) -> None:
    """Register the ``example`` backend: multi-step LIF in plain PyTorch."""
    register(
        BACKEND_NAME,
        {"multi_step": "snn_example_plugin.kernels:lif_multi_step"},
        models=("lif",),  # a hand-written kernel names the models it serves
        devices=("cpu", "cuda"),
        dtypes=(torch.float32, torch.float64),
        surrogates=SURROGATES,
        probe=probe,
        # a teaching example: backend="auto" should never prefer it
        auto_priority=-10,
        description="example plugin: multi-step LIF as a plain PyTorch loop "
        "(slow, for reading)",
    )


@snn.hookimpl
def snn_register_losses(register: LossRegistrar) -> None:
    """Register the ``hinge_rate`` loss (``snn train --loss hinge_rate``)."""
    register(
        "hinge_rate",
        hinge_rate,
        signature="sequence_classification",
        description="multi-class hinge loss on the firing rates (margin 0.5)",
    )
