"""KLIF: a LIF neuron whose charged potential is scaled by a learnable ``k`` and rectified.

From "KLIF: An optimized spiking neuron unit for tuning surrogate gradient slope and membrane
potential" (Jiang and Zhang, 2023, arXiv:2302.09238). With ``vr = v_reset`` (0 for soft reset):

- ``c = v + (x - (v - vr)) / tau`` (``decay_input``) or ``c = v - (v - vr) / tau + x``;
- ``h = relu(k c)`` and ``s = H(h - v_threshold)`` (``H(0) = 1``);
- reset of ``h`` (hard ``s vr + (1 - s) h``, soft ``h - s v_threshold``), or with
  ``scale_reset`` of ``h / k`` (hard ``s vr + (1 - s) h / k``, soft ``(h - s v_threshold) / k``).

``k`` is a 0-dim :class:`torch.nn.Parameter` starting at 1; it scales the surrogate gradient's
slope seen by the potential.

Example:
    >>> import torch
    >>> from snn import neuron
    >>> klif = neuron.KLIFNode(step_mode="m")
    >>> x_seq = torch.full((4, 1), 1.5, requires_grad=True)
    >>> klif(x_seq).flatten()
    tensor([0., 1., 0., 1.], grad_fn=<ViewBackward0>)
    >>> list(klif.state_dict())
    ['k']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from snn.models import THRESHOLD_AND_RESET, HyperParameter, ModelParameters, NeuronModel, State, StateValues
from snn.neuron._model_helpers import check_hyperparameters
from snn.neuron.base import BaseNode

__all__ = ["KLIF_MODEL", "KLIFNode"]


def _klif_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    vr = p.reset_potential
    charged = u.v + (x - (u.v - vr)) / p.tau if p.decay_input else u.v - (u.v - vr) / p.tau + x
    return {"v": ops.relu(p.k * charged)}


def _klif_reset(h: StateValues, s: Any, p: ModelParameters, ops: Any) -> dict[str, Any]:
    if p.scale_reset:
        return {"v": p.reset(h.v / p.k, s, p.v_threshold / p.k)}
    return {"v": p.reset(h.v, s)}


#: KLIF: ``h = relu(k c)`` with ``c`` the LIF charge and ``k`` learnable.
KLIF_MODEL = NeuronModel(
    name="klif",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=(
        HyperParameter("scale_reset", False, "flag", "reset h / k instead of h"),
        HyperParameter("tau", 2.0, "time_constant", "membrane time constant (> 1)"),
        HyperParameter("decay_input", True, "flag", "whether the input is divided by tau too"),
        *THRESHOLD_AND_RESET,
    ),
    learnables=("k",),
    charge=_klif_charge,
    reset=_klif_reset,
    description="KLIF: h = relu(k c), c the LIF charge, k learnable; optional reset of h / k",
    examples=(
        {"v_reset": None},
        {"scale_reset": True},
        {"scale_reset": True, "v_reset": None, "decay_input": False},
        {"decay_input": False, "v_reset": -0.3, "v_threshold": 0.7, "tau": 3.0},
    ),
)


class KLIFNode(BaseNode):
    """KLIF neuron: LIF charge ``c``, then ``h = relu(k c)`` with a learnable ``k``
    (model :data:`KLIF_MODEL`).

    With ``vr = v_reset`` (0 for soft reset), ``c = v + (x - (v - vr)) / tau`` when
    ``decay_input``, else ``c = v - (v - vr) / tau + x``. The reset acts on ``h``, or on
    ``h / k`` with ``scale_reset`` (hard: ``s vr + (1 - s) h / k``; soft:
    ``(h - s v_threshold) / k``). ``k`` is a 0-dim :class:`torch.nn.Parameter` initialised to 1.

    Training saves the charged potentials ``h`` (``[T, N]``) only: the gradient of ``k``,
    ``[h > 0] c`` with ``c`` the value before the rectifier, is ``[h > 0] h / k`` (where
    ``h > 0``, ``h = k c``), and the other coefficients read ``h`` and constants.

    Args:
        scale_reset: reset ``h / k`` instead of ``h``.
        tau: membrane time constant, a real number ``> 1``.
        decay_input: whether the input is divided by ``tau`` too.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq: as :class:`BaseNode`.
        backend: kernel backend name (keyword only; SpikingJelly's KLIF has none).

    Memories:
        v: the membrane potential (initially ``v_reset``, 0 for soft reset).

    Raises:
        TypeError: ``tau``, ``v_threshold`` or ``v_reset`` not a real number (``bool``
            included), ``scale_reset``, ``decay_input`` or ``detach_reset`` not a bool, a bad
            surrogate.
        ValueError: ``tau <= 1``, a non-finite number.
    """

    model: ClassVar[NeuronModel | None] = KLIF_MODEL

    def __init__(
        self,
        scale_reset: bool = False,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        backend: str = "torch",
    ) -> None:
        hyper = check_hyperparameters(KLIF_MODEL, scale_reset=scale_reset, tau=tau, decay_input=decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)
        self.scale_reset, self.tau, self.decay_input = hyper["scale_reset"], hyper["tau"], hyper["decay_input"]
        self.k = nn.Parameter(torch.as_tensor(1.0))
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", tau={self.tau}, decay_input={self.decay_input}, scale_reset={self.scale_reset}"
        )
