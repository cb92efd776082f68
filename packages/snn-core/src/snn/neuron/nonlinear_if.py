"""Nonlinear integrate-and-fire neurons: quadratic (QIF) and exponential (EIF); models and modules.

Both relax towards the resting potential ``v_rest`` below threshold and are pushed upwards by a
nonlinear term near the critical voltage. With ``h`` the charged potential:

- QIF: ``h = v + (x + a0 (v - v_rest) (v - v_c)) / tau``;
- EIF: ``h = v + (x + v_rest - v + delta_T exp((v - theta_rh) / delta_T)) / tau``;

then ``s = H(h - v_threshold)`` (``H(0) = 1``) and the hard (``v = s v_reset + (1 - s) h``) or
soft (``v = h - s v_threshold``) reset. The potential starts (and returns on reset) at
``v_rest``, where SpikingJelly starts it at ``v_reset`` (see the migration guide).

Example:
    >>> import torch
    >>> from snn import neuron
    >>> qif = neuron.QIFNode(tau=2.0, step_mode="m")
    >>> qif(torch.full((4, 1), 1.0)).flatten()
    tensor([0., 0., 1., 0.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from snn.models import HyperParameter, ModelParameters, NeuronModel, State, StateValues
from snn.neuron._model_helpers import check_hyperparameters
from snn.neuron.base import BaseNode

__all__ = ["QIF_MODEL", "EIF_MODEL", "QIFNode", "EIFNode"]

_TAU = HyperParameter("tau", 2.0, "time_constant", "membrane time constant (> 1)")
_V_REST = HyperParameter("v_rest", 0.0, "real", "resting potential (the initial potential)")
_V_THRESHOLD = HyperParameter("v_threshold", 1.0, "real", "firing threshold")
_V_RESET = HyperParameter("v_reset", -0.1, "optional_real", "potential after a spike (None: soft reset)")
_LIVELY = ({"v_reset": None}, {"v_reset": -0.3, "v_rest": -0.2, "v_threshold": 0.7, "tau": 3.0})


def _qif_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": u.v + (x + p.a0 * (u.v - p.v_rest) * (u.v - p.v_c)) / p.tau}


def _eif_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": u.v + (x + p.v_rest - u.v + p.delta_T * ops.exp((u.v - p.theta_rh) / p.delta_T)) / p.tau}


#: Quadratic integrate-and-fire: ``h = v + (x + a0 (v - v_rest) (v - v_c)) / tau``.
QIF_MODEL = NeuronModel(
    name="qif",
    states=(State("v", "v_rest", "membrane potential"),),
    hyperparameters=(
        _TAU,
        HyperParameter("v_c", 0.8, "real", "critical voltage"),
        HyperParameter("a0", 1.0, "positive", "quadratic coefficient (> 0)"),
        _V_THRESHOLD,
        _V_REST,
        _V_RESET,
    ),
    charge=_qif_charge,
    description="quadratic integrate-and-fire: h = v + (x + a0 (v - v_rest) (v - v_c)) / tau",
    examples=(*_LIVELY, {"a0": 0.5, "v_c": 0.5, "v_reset": None}),
)

#: Exponential integrate-and-fire: ``h = v + (x + v_rest - v + delta_T exp((v - theta_rh) / delta_T)) / tau``.
EIF_MODEL = NeuronModel(
    name="eif",
    states=(State("v", "v_rest", "membrane potential"),),
    hyperparameters=(
        _TAU,
        HyperParameter("delta_T", 1.0, "positive", "sharpness of the exponential (> 0)"),
        HyperParameter("theta_rh", 0.8, "real", "rheobase threshold"),
        _V_THRESHOLD,
        _V_REST,
        _V_RESET,
    ),
    charge=_eif_charge,
    description="exponential integrate-and-fire: h = v + (x + v_rest - v + dT exp((v - theta_rh) / dT)) / tau",
    examples=(*_LIVELY, {"delta_T": 0.5, "theta_rh": 0.6, "v_reset": None}),
)


def _check_reset_order(v_threshold: float, v_rest: float, v_reset: float | None) -> None:
    """With a hard reset, ``v_reset < v_threshold`` and ``v_reset <= v_rest``; raises ``ValueError``."""
    if v_reset is None:
        return
    if not v_reset < v_threshold:
        raise ValueError(f"v_reset: expected a reset potential below v_threshold={v_threshold!r}, got {v_reset!r}")
    if not v_reset <= v_rest:
        raise ValueError(f"v_reset: expected a reset potential at most v_rest={v_rest!r}, got {v_reset!r}")


class QIFNode(BaseNode):
    """Quadratic integrate-and-fire neuron (model :data:`QIF_MODEL`).

    ``h = v + (x + a0 (v - v_rest) (v - v_c)) / tau``: below ``v_c`` the potential relaxes
    towards ``v_rest``, above it grows quadratically; then the neuron fires at ``v_threshold``
    and resets. The potential starts at ``v_rest``.

    Training saves the charged potentials ``h`` (``[T, N]``: the spike, the surrogate and the
    hard reset read them) and the initial potential (``[N]``): the charge's derivative
    ``1 + a0 (2 v - v_rest - v_c) / tau`` reads the previous potential, which the backward pass
    recomputes from ``h`` and the spike of the step before. The input is not saved (its
    coefficient ``1 / tau`` is a constant).

    Args:
        tau: membrane time constant, a real number ``> 1``.
        v_c: critical voltage.
        a0: quadratic coefficient, ``> 0``.
        v_threshold: firing threshold.
        v_rest: resting potential, the initial potential.
        v_reset: potential after a spike (``None``: soft reset, the threshold is subtracted);
            with a hard reset, below ``v_threshold`` and at most ``v_rest``.
        surrogate_function, detach_reset, step_mode, store_v_seq: as :class:`BaseNode`.
        backend: kernel backend name (keyword only; SpikingJelly's QIF has none).

    Memories:
        v: the membrane potential (initially ``v_rest``).

    Raises:
        TypeError: a hyper-parameter that is not a real number (``bool`` included), a flag
            that is not a bool, a bad surrogate.
        ValueError: ``tau <= 1``, ``a0 <= 0``, a non-finite number, a hard reset at or above
            the threshold or above ``v_rest``.
    """

    model: ClassVar[NeuronModel | None] = QIF_MODEL

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: float | None = -0.1,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        backend: str = "torch",
    ) -> None:
        hyper = check_hyperparameters(QIF_MODEL, tau=tau, v_c=v_c, a0=a0, v_rest=v_rest)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)
        _check_reset_order(self.v_threshold, hyper["v_rest"], self.v_reset)  # type: ignore[arg-type]  # checked floats at construction
        self.tau, self.v_c, self.a0, self.v_rest = hyper["tau"], hyper["v_c"], hyper["a0"], hyper["v_rest"]
        self.register_model_states()
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}"


class EIFNode(BaseNode):
    """Exponential integrate-and-fire neuron (model :data:`EIF_MODEL`).

    ``h = v + (x + v_rest - v + delta_T exp((v - theta_rh) / delta_T)) / tau``: a leaky
    integrator towards ``v_rest`` with an exponential upswing past the rheobase ``theta_rh``
    (LIF as ``delta_T -> 0``); then the neuron fires at ``v_threshold`` and resets. The
    potential starts at ``v_rest``.

    Training saves the charged potentials ``h`` (``[T, N]``) and the initial potential
    (``[N]``): the charge's derivative ``1 + (exp((v - theta_rh) / delta_T) - 1) / tau`` reads the
    previous potential, recomputed in backward from ``h`` and the spike of the step before. The
    input is not saved (its coefficient ``1 / tau`` is a constant).

    Args:
        tau: membrane time constant, a real number ``> 1``.
        delta_T: sharpness of the exponential, ``> 0``.
        theta_rh: rheobase threshold.
        v_threshold: firing threshold.
        v_rest: resting potential, the initial potential.
        v_reset: potential after a spike (``None``: soft reset); with a hard reset, below
            ``v_threshold`` and at most ``v_rest``.
        surrogate_function, detach_reset, step_mode, store_v_seq: as :class:`BaseNode`.
        backend: kernel backend name (keyword only; SpikingJelly's EIF has none).

    Memories:
        v: the membrane potential (initially ``v_rest``).

    Raises:
        TypeError: a hyper-parameter that is not a real number (``bool`` included), a flag
            that is not a bool, a bad surrogate.
        ValueError: ``tau <= 1``, ``delta_T <= 0``, a non-finite number, a hard reset at or
            above the threshold or above ``v_rest``.
    """

    model: ClassVar[NeuronModel | None] = EIF_MODEL

    def __init__(
        self,
        tau: float = 2.0,
        delta_T: float = 1.0,
        theta_rh: float = 0.8,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: float | None = -0.1,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        backend: str = "torch",
    ) -> None:
        hyper = check_hyperparameters(EIF_MODEL, tau=tau, delta_T=delta_T, theta_rh=theta_rh, v_rest=v_rest)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)
        _check_reset_order(self.v_threshold, hyper["v_rest"], self.v_reset)  # type: ignore[arg-type]  # checked floats at construction
        self.tau, self.delta_T, self.theta_rh = hyper["tau"], hyper["delta_T"], hyper["theta_rh"]
        self.v_rest = hyper["v_rest"]
        self.register_model_states()
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", tau={self.tau}, delta_T={self.delta_T}, theta_rh={self.theta_rh}, v_rest={self.v_rest}"
        )
