"""Integrate-and-fire, leaky integrate-and-fire and parametric LIF: models and modules.

Each neuron's math is written once, as a :class:`~snn.models.NeuronModel`, beside the module
class that runs it. With ``vr = v_reset`` (0 for soft reset), the charge of the membrane
potential is:

- IF: ``h = v + x``;
- LIF with ``decay_input``: ``h = v + (x - (v - vr)) / tau``; without it:
  ``h = v - (v - vr) / tau + x``;
- PLIF: the same with ``/ tau`` replaced by ``* sigmoid(w)``;

each operation rounded on its own, in SpikingJelly's order (a division by ``tau`` and a product
with ``1 / tau`` round differently), so that potentials at the threshold fire as there;

then ``s = H(h - v_threshold)`` (``H(0) = 1``) and the hard (``v = s vr + (1 - s) h``) or soft
(``v = h - s v_threshold``) reset. Training saves only the charged potentials (plus PLIF's
initial potential, whose reset value the gradient of ``w`` reads); see
:func:`snn.models.kernel_plan`.

Example:
    >>> import torch
    >>> from snn import neuron
    >>> lif = neuron.LIFNode(tau=2.0, step_mode="m")
    >>> lif(torch.full((4, 1), 1.5)).flatten()
    tensor([0., 1., 0., 1.])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from snn.models import THRESHOLD_AND_RESET, HyperParameter, ModelParameters, NeuronModel, State, StateValues
from snn.neuron.base import BaseNode, backend_and_store_v_seq, check_flag, check_time_constant

__all__ = ["IF_MODEL", "LIF_MODEL", "PLIF_MODEL", "IFNode", "LIFNode", "ParametricLIFNode"]

_DECAY_INPUT = HyperParameter("decay_input", True, "flag", "whether the input is scaled by the decay too")
_LIVELY = ({"v_reset": None}, {"v_reset": -0.3, "v_threshold": 0.7})


def _if_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": u.v + x}


def _leaky_charge(v: Any, x: Any, decay: Callable[[Any], Any], p: ModelParameters) -> Any:
    """``decay(d)`` scales a difference ``d`` by the leak, rounded as SpikingJelly rounds it."""
    vr = p.reset_potential
    if p.decay_input:
        return v + decay(x - (v - vr))
    return v - decay(v - vr) + x


def _lif_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    # divided by tau, not multiplied by 1 / tau: the two round differently unless tau is a power of two
    return {"v": _leaky_charge(u.v, x, lambda d: d / p.tau, p)}


def _plif_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": _leaky_charge(u.v, x, lambda d: d * ops.sigmoid(p.w), p)}


#: Integrate-and-fire: ``h = v + x``.
IF_MODEL = NeuronModel(
    name="if",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=THRESHOLD_AND_RESET,
    charge=_if_charge,
    description="integrate-and-fire: h = v + x",
    examples=_LIVELY,
)

#: Leaky integrate-and-fire with time constant ``tau``.
LIF_MODEL = NeuronModel(
    name="lif",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=(
        HyperParameter("tau", 2.0, "time_constant", "membrane time constant (> 1)"),
        _DECAY_INPUT,
        *THRESHOLD_AND_RESET,
    ),
    charge=_lif_charge,
    description="leaky integrate-and-fire: h = v + (x - (v - vr)) / tau",
    examples=(*_LIVELY, {"decay_input": False}, {"decay_input": False, "v_reset": None, "tau": 3.0}),
)

#: LIF with a learnable decay ``sigmoid(w)``.
PLIF_MODEL = NeuronModel(
    name="plif",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=(_DECAY_INPUT, *THRESHOLD_AND_RESET),
    learnables=("w",),
    charge=_plif_charge,
    description="parametric LIF: LIF with 1 / tau = sigmoid(w) learnable",
    examples=(*_LIVELY, {"decay_input": False}, {"decay_input": False, "v_reset": None}),
)


class IFNode(BaseNode):
    """Integrate-and-fire neuron: ``h = v + x`` (model :data:`IF_MODEL`).

    Args:
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq: as :class:`BaseNode`.
    """

    model: ClassVar[NeuronModel | None] = IF_MODEL


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron with membrane time constant ``tau`` (model :data:`LIF_MODEL`).

    With ``vr = v_reset`` (0 for soft reset):
    ``h = v + (x - (v - vr)) / tau`` when ``decay_input``, else ``h = v - (v - vr) / tau + x``.

    Args:
        tau: membrane time constant, a real number ``> 1``.
        decay_input: whether the input is divided by ``tau`` too.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq: as :class:`BaseNode`.

    Raises:
        TypeError: ``tau`` is not a real number or ``decay_input`` not a bool.
        ValueError: ``tau <= 1``.
    """

    model: ClassVar[NeuronModel | None] = LIF_MODEL

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        tau = check_time_constant("tau", tau)
        decay_input = check_flag("decay_input", decay_input, integers=True)
        backend, store_v_seq = backend_and_store_v_seq(backend, store_v_seq)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)
        self.tau = tau
        self.decay_input = decay_input
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}"


class ParametricLIFNode(BaseNode):
    """LIF neuron with a learnable time constant: ``1 / tau = sigmoid(w)`` (model :data:`PLIF_MODEL`).

    ``w`` is a 0-dim :class:`torch.nn.Parameter` initialised to ``-ln(init_tau - 1)`` so that
    ``sigmoid(w) = 1 / init_tau``; the charge is LIF's with ``1 / tau`` replaced by ``sigmoid(w)``.

    Args:
        init_tau: initial time constant, a real number ``> 1``.
        decay_input: whether the input is scaled by ``sigmoid(w)`` too.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq: as :class:`BaseNode`.

    Raises:
        TypeError: ``init_tau`` is not a real number or ``decay_input`` not a bool.
        ValueError: ``init_tau <= 1``, or so close to 1 (or so large) that ``sigmoid(w)`` rounds
            to 1 (or 0).
    """

    model: ClassVar[NeuronModel | None] = PLIF_MODEL

    def __init__(
        self,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        init_tau = check_time_constant("init_tau", init_tau)
        decay_input = check_flag("decay_input", decay_input, integers=True)
        backend, store_v_seq = backend_and_store_v_seq(backend, store_v_seq)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)
        self.decay_input = decay_input
        w = torch.as_tensor(-math.log(init_tau - 1.0))
        if not 0.0 < float(torch.sigmoid(w)) < 1.0:
            raise ValueError(
                f"init_tau: expected a time constant whose decay 1/init_tau is representable strictly "
                f"between 0 and 1 in {w.dtype}, got {init_tau!r}"
            )
        self.w = nn.Parameter(w)
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        with torch.no_grad():
            tau = 1.0 / self.w.sigmoid()
        return super().extra_repr() + f", tau={tau}"
