"""A neuron model of the plugin's own, in one module: the adaptive LIF neuron.

A LIF membrane with an adaptation current ``w`` that grows with the potential
and jumps at every spike, so a neuron firing steadily slows down
(spike-frequency adaptation). Per step, with ``vr = v_reset`` (0 for soft
reset):

- charge: ``h = v + (x - (v - vr) - w) / tau`` and
  ``w' = w + (a (v - vr) - w) / tau_w``;
- fire: ``s = H(h - v_threshold)``;
- reset: ``v`` hard or soft as usual, ``w'' = w' + b s``.

This module is all it takes: the description :data:`ADAPTIVE_LIF` (math
written once with the ``ops`` namespace of :mod:`snn.expr`), the module class
:class:`AdaptiveLIFNode` users put in their networks, and the hook that
registers the model. snn derives the backward pass symbolically, and every
backend that generates its kernels (torch, Triton, CuPy, the compiled CPU
backend) runs the model fused, with no change to those packages.

Example:
    >>> import torch
    >>> from snn_example_plugin.neuron import AdaptiveLIFNode
    >>> node = AdaptiveLIFNode(b=0.5, step_mode="m")
    >>> node(torch.full((10, 1), 1.6)).flatten()  # each spike delays the next
    tensor([0., 1., 0., 0., 1., 0., 0., 0., 1., 0.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

import snn
from snn.models import (
    THRESHOLD_AND_RESET,
    HyperParameter,
    ModelParameters,
    NeuronModel,
    State,
    StateValues,
)
from snn.neuron import BaseNode
from snn.registry import NeuronModelRegistrar

__all__ = ["ADAPTIVE_LIF", "AdaptiveLIFNode", "snn_register_neuron_models"]


def _charge(
    x: Any, u: StateValues, p: ModelParameters, ops: Any
) -> dict[str, Any]:
    vr = p.reset_potential
    v = u.v + (x - (u.v - vr) - u.w) / p.tau
    w = u.w + (p.a * (u.v - vr) - u.w) / p.tau_w
    return {"v": v, "w": w}


def _reset(
    h: StateValues, s: Any, p: ModelParameters, ops: Any
) -> dict[str, Any]:
    return {"v": p.reset(h.v, s), "w": h.w + p.b * s}


#: The adaptive LIF model, registered as ``"adaptive_lif"``.
ADAPTIVE_LIF = NeuronModel(
    name="adaptive_lif",
    states=(
        State("v", "v_reset", "membrane potential"),
        State("w", 0.0, "adaptation current"),
    ),
    hyperparameters=(
        HyperParameter("tau", 2.0, "time_constant", "membrane time constant"),
        HyperParameter("tau_w", 4.0, "time_constant", "time constant of w"),
        HyperParameter("a", 0.2, "real", "coupling of w to the potential"),
        HyperParameter("b", 0.3, "real", "jump of w at each spike"),
        *THRESHOLD_AND_RESET,
    ),
    charge=_charge,
    reset=_reset,
    description="LIF with an adaptation current (example plugin)",
    examples=({"v_reset": None, "a": -0.1}, {"b": 0.0, "tau_w": 2.5}),
)


class AdaptiveLIFNode(BaseNode):
    """The adaptive LIF neuron (:data:`ADAPTIVE_LIF`), memories ``v`` and ``w``.

    Training saves the charged potentials ``h`` only: every coefficient of the
    derived backward pass is a constant or reads ``h`` and the spike
    (``snn.models.kernel_plan``).

    Args:
        tau: membrane time constant (> 1).
        tau_w: adaptation time constant (> 1).
        a: subthreshold coupling.
        b: spike-triggered jump of ``w``.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
            backend, store_v_seq: as :class:`snn.neuron.BaseNode`.

    Raises:
        TypeError, ValueError: a hyper-parameter of the wrong type or range
            (named in the message).
    """

    model: ClassVar[NeuronModel | None] = ADAPTIVE_LIF

    def __init__(
        self,
        tau: float = 2.0,
        tau_w: float = 4.0,
        a: float = 0.2,
        b: float = 0.3,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], Any] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        given = {"tau": tau, "tau_w": tau_w, "a": a, "b": b}
        checked = {
            h.name: h.check(given[h.name])
            for h in ADAPTIVE_LIF.hyperparameters
            if h.name in given
        }
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset,
            step_mode, "torch", store_v_seq,
        )
        for name, value in checked.items():
            setattr(self, name, value)
        self.register_model_states()
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return super().extra_repr() + (
            f", tau={self.tau}, tau_w={self.tau_w}, a={self.a}, b={self.b}"
        )


@snn.hookimpl
def snn_register_neuron_models(register: NeuronModelRegistrar) -> None:
    """Register ``adaptive_lif`` (with its module class, for ``snn bench``)."""
    register(ADAPTIVE_LIF, node=AdaptiveLIFNode)
