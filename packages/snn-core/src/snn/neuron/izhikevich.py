"""The Izhikevich neuron: a quadratic integrate-and-fire potential with an adaptation current.

Two states: the membrane potential ``v`` and the adaptation current ``w``. With ``h`` the
charged potential and ``s`` the spike, one step is

- ``h = v + (x + a0 (v - v_rest) (v - v_c) - w) / tau``;
- ``s = H(h - v_threshold)`` (``H(0) = 1``);
- ``v = s v_reset + (1 - s) h`` (hard reset) or ``v = h - s v_threshold`` (soft reset);
- ``w = w + (a (h - v_rest) - w) / tau_w + b s``: the current follows the charged potential
  (subthreshold coupling ``a``) and jumps by ``b`` at every spike.

``detach_reset`` cuts the spike's gradient in the reset of ``v`` only (as in SpikingJelly): the
jump ``b s`` of ``w`` keeps its surrogate gradient. ``v`` starts at ``v_rest`` and ``w`` at
``w_rest``.

Example:
    >>> import torch
    >>> from snn import neuron
    >>> izh = neuron.IzhikevichNode(a=0.5, b=0.4, step_mode="m")
    >>> izh(torch.full((6, 1), 1.0)).flatten()
    tensor([0., 0., 1., 0., 0., 0.])
    >>> izh.w
    tensor([0.3106])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from snn.models import HyperParameter, ModelParameters, NeuronModel, State, StateValues
from snn.neuron._model_helpers import check_hyperparameters
from snn.neuron.base import BaseNode

__all__ = ["IZHIKEVICH_MODEL", "IzhikevichNode"]


def _izhikevich_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    h = u.v + (x + p.a0 * (u.v - p.v_rest) * (u.v - p.v_c) - u.w) / p.tau
    return {"v": h, "w": u.w + (p.a * (h - p.v_rest) - u.w) / p.tau_w}


def _izhikevich_reset(h: StateValues, s: Any, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": p.reset(h.v, s), "w": h.w + p.b * s}


#: Izhikevich: a QIF potential ``v`` with an adaptation current ``w``.
IZHIKEVICH_MODEL = NeuronModel(
    name="izhikevich",
    states=(
        State("v", "v_rest", "membrane potential"),
        State("w", "w_rest", "adaptation current"),
    ),
    hyperparameters=(
        HyperParameter("tau", 2.0, "time_constant", "membrane time constant (> 1)"),
        HyperParameter("v_c", 0.8, "real", "critical voltage"),
        HyperParameter("a0", 1.0, "positive", "quadratic coefficient (> 0)"),
        HyperParameter("v_threshold", 1.0, "real", "firing threshold"),
        HyperParameter("v_reset", 0.0, "optional_real", "potential after a spike (None: soft reset)"),
        HyperParameter("v_rest", -0.1, "real", "resting potential (the initial potential)"),
        HyperParameter("w_rest", 0.0, "real", "initial adaptation current"),
        HyperParameter("tau_w", 2.0, "positive", "time constant of the adaptation current (> 0)"),
        HyperParameter("a", 0.0, "real", "subthreshold coupling of the current to the potential"),
        HyperParameter("b", 0.0, "real", "jump of the current at each spike"),
    ),
    charge=_izhikevich_charge,
    reset=_izhikevich_reset,
    description="Izhikevich: QIF potential v with adaptation current w += (a (h - v_rest) - w) / tau_w + b s",
    examples=(
        {"a": 0.3, "b": 0.2},
        {"a": 0.3, "b": 0.2, "v_reset": None},
        {"a": -0.2, "b": 0.5, "w_rest": 0.1, "tau_w": 3.0, "v_reset": -0.2, "v_threshold": 0.8},
    ),
)


class IzhikevichNode(BaseNode):
    """Izhikevich neuron: a quadratic potential ``v`` with an adaptation current ``w``
    (model :data:`IZHIKEVICH_MODEL`).

    ``h = v + (x + a0 (v - v_rest) (v - v_c) - w) / tau``; after the spike and the reset of
    ``v``, ``w = w + (a (h - v_rest) - w) / tau_w + b s``. ``v`` starts at ``v_rest`` and ``w``
    at ``w_rest``.

    Training saves the charged potentials ``h`` (``[T, N]``) and the initial potential
    (``[N]``); nothing of ``w``, whose updates are linear (constant coefficients ``-1 / tau``,
    ``1 - 1 / tau_w``, ``a / tau_w`` and ``b``), and not the input (coefficient ``1 / tau``). The
    quadratic term's derivative reads the previous potential, recomputed in backward from ``h``
    and the spike of the step before.

    Args:
        tau: membrane time constant, a real number ``> 1``.
        v_c: critical voltage.
        a0: quadratic coefficient, ``> 0``.
        v_threshold: firing threshold.
        v_reset: potential after a spike (``None``: soft reset).
        v_rest: resting potential, the initial potential.
        w_rest: the initial adaptation current.
        tau_w: time constant of the adaptation current, ``> 0``.
        a: subthreshold coupling of the current to the potential.
        b: jump of the current at each spike.
        surrogate_function, detach_reset, step_mode: as :class:`BaseNode` (``detach_reset``
            applies to the reset of ``v``).
        store_v_seq: keep the post-reset potentials ``v`` in ``self.v_seq`` (as :class:`BaseNode`).
        backend: kernel backend name (keyword only; SpikingJelly's Izhikevich has none).

    Memories:
        v: the membrane potential (initially ``v_rest``).
        w: the adaptation current (initially ``w_rest``).

    Raises:
        TypeError: a hyper-parameter that is not a real number (``bool`` included), a flag
            that is not a bool, a bad surrogate.
        ValueError: ``tau <= 1``, ``a0 <= 0``, ``tau_w <= 0``, a non-finite number.
    """

    model: ClassVar[NeuronModel | None] = IZHIKEVICH_MODEL

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        v_rest: float = -0.1,
        w_rest: float = 0.0,
        tau_w: float = 2.0,
        a: float = 0.0,
        b: float = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        backend: str = "torch",
    ) -> None:
        hyper = check_hyperparameters(
            IZHIKEVICH_MODEL, tau=tau, v_c=v_c, a0=a0, v_rest=v_rest, w_rest=w_rest, tau_w=tau_w, a=a, b=b
        )
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)
        self.tau, self.v_c, self.a0 = hyper["tau"], hyper["v_c"], hyper["a0"]
        self.v_rest, self.w_rest, self.tau_w = hyper["v_rest"], hyper["w_rest"], hyper["tau_w"]
        self.a, self.b = hyper["a"], hyper["b"]
        self.register_model_states()
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}, w_rest={self.w_rest}, "
            f"tau_w={self.tau_w}, a={self.a}, b={self.b}"
        )
