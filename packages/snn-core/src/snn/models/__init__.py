"""Neuron models as data: one description per neuron, rendered by every backend.

A :class:`NeuronModel` says everything a kernel needs to run a neuron layer, once:

- its **state variables** (``v`` for LIF; ``v`` and ``w`` for Izhikevich) and their initial
  values;
- its **hyper-parameters** (numbers and flags fixed per layer, validated by
  :class:`HyperParameter`) and its **learnable parameters** (one-element tensors such as PLIF's
  ``w``, passed to kernels at run time);
- the **charge**: the per-step update of every state from the previous (post-reset) states and
  the input ``x``, written with the math namespace of :mod:`snn.expr`;
- the **firing** state and the threshold hyper-parameter: ``s = H(h - threshold)``, ``H(0) = 1``;
- the **reset** of every state after the spike (by default the firing state's hard or soft
  reset, :meth:`ModelParameters.reset`); the spike is detached in the resets of the states named
  in ``detached_in_reset`` when the layer has ``detach_reset``.

From a description and a layer's :class:`NeuronConfig`, :func:`kernel_plan` derives a
:class:`KernelPlan`: the forward expressions with the hyper-parameters folded in, the surrogate
derivative, and the backward pass, derived symbolically (:func:`snn.expr.diff`) instead of
written by hand per model. The plan also says what training must save, the minimum the backward
pass needs (see :class:`KernelPlan`). Backends render the plan to Triton, CUDA or C source or
compile it to tensor operations; :func:`autograd_step` evaluates the same description with torch
autograd (the reference that the conformance suite checks every backend against).

A plugin adds a model through the ``snn_register_neuron_models`` hook; code-generating backends
then serve it without a change (see :meth:`snn.registry.BackendInfo.serves_model`).

Example (a LIF model, as :mod:`snn.neuron` writes it)::

    def lif_charge(x, u, p, ops):
        return {"v": u.v + (x - (u.v - p.reset_potential)) / p.tau}

    LIF = NeuronModel(
        name="my_lif",
        states=(State("v", initial="v_reset"),),
        hyperparameters=(HyperParameter("tau", 2.0, "time_constant"), *THRESHOLD_AND_RESET),
        charge=lif_charge,
    )

The names live in three modules, imported here: ``_description`` (the description classes),
``_plan`` (:func:`kernel_plan`) and ``_evaluate`` (the autograd reference).
"""

from __future__ import annotations

from snn.models import _description

# the names re-exported "as" themselves are not in __all__ but importable from here (backends and
# tests use the plan's variable names)
from snn.models._description import (
    HYPERPARAMETER_KINDS as HYPERPARAMETER_KINDS,
    INPUT as INPUT,
    SPIKE as SPIKE,
    SURROGATE_INPUT as SURROGATE_INPUT,
    ChargeFunction as ChargeFunction,
    HyperParameter,
    KernelPlan,
    ModelParameters,
    NeuronConfig,
    NeuronModel,
    ResetFunction as ResetFunction,
    State,
    StateValues,
    SurrogateSpec,
    check_flag as check_flag,
    check_hyperparameter,
)
from snn.models._evaluate import autograd_step, evaluate_charge, evaluate_reset
from snn.models._plan import constant_beyond_float32, kernel_plan

#: The threshold and reset hyper-parameters most spiking models share: ``v_threshold`` (a real
#: number, default 1.0) and ``v_reset`` (a real number or ``None`` for a soft reset, default 0.0).
THRESHOLD_AND_RESET = _description.THRESHOLD_AND_RESET

__all__ = [
    "SurrogateSpec",
    "HyperParameter",
    "State",
    "NeuronModel",
    "NeuronConfig",
    "ModelParameters",
    "StateValues",
    "KernelPlan",
    "THRESHOLD_AND_RESET",
    "kernel_plan",
    "constant_beyond_float32",
    "autograd_step",
    "evaluate_charge",
    "evaluate_reset",
    "check_hyperparameter",
]
