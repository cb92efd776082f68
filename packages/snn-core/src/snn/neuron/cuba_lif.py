"""CUBA-LIF: a current-based LIF neuron (a synaptic current ``c`` feeds the potential ``v``).

One step, with ``h`` the charged potential and ``s`` the spike:

- ``c = c c_decay + x`` (the synaptic current integrates the input);
- ``h = v v_decay + c`` and ``s = H(h - v_threshold)`` (``H(0) = 1``);
- ``v = s v_reset + (1 - s) h`` (hard reset) or ``v = h - s v_threshold`` (soft reset); the
  current is not reset.

Both states start at 0, where the dynamics rest (SpikingJelly starts ``v`` at ``v_reset``;
see the migration guide).

Example:
    >>> import torch
    >>> from snn import neuron
    >>> cuba = neuron.CUBALIFNode(step_mode="m")
    >>> cuba(torch.full((4, 1), 0.2)).flatten()
    tensor([0., 0., 1., 0.])
    >>> cuba.c
    tensor([0.3750])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from snn.models import HyperParameter, ModelParameters, NeuronModel, State, StateValues
from snn.neuron._model_helpers import check_hyperparameters
from snn.neuron.base import BaseNode
from snn.surrogate import Rect

__all__ = ["CUBALIF_MODEL", "CUBALIFNode"]


def _cuba_lif_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    current = u.c * p.c_decay + x
    return {"v": u.v * p.v_decay + current, "c": current}


#: CUBA-LIF: ``c = c c_decay + x``, ``h = v v_decay + c``.
CUBALIF_MODEL = NeuronModel(
    name="cubalif",
    states=(State("v", 0.0, "membrane potential"), State("c", 0.0, "synaptic current")),
    hyperparameters=(
        HyperParameter("c_decay", 0.5, "real", "decay factor of the synaptic current per step"),
        HyperParameter("v_decay", 0.75, "real", "decay factor of the membrane potential per step"),
        HyperParameter("v_threshold", 0.5, "real", "firing threshold"),
        HyperParameter("v_reset", 0.0, "optional_real", "potential after a spike (None: soft reset)"),
    ),
    charge=_cuba_lif_charge,
    description="current-based LIF: c = c c_decay + x, h = v v_decay + c",
    examples=({"v_reset": None}, {"c_decay": 0.8, "v_decay": 0.9, "v_reset": -0.2, "v_threshold": 1.0}),
)


class CUBALIFNode(BaseNode):
    """Current-based LIF neuron: ``c = c c_decay + x``, ``h = v v_decay + c`` (model
    :data:`CUBALIF_MODEL`).

    The synaptic current ``c`` integrates the input and feeds the potential; only ``v`` is
    reset after a spike. Both start at 0. The default surrogate is a new
    ``snn.surrogate.Rect(alpha=1.0)``, as in SpikingJelly.

    Training saves only the charged potentials ``h`` (``[T, N]``): both updates are linear with
    constant coefficients, so the backward pass reads ``h`` alone (spike, surrogate, hard reset),
    and neither the input, nor the current, nor an initial state.

    Args:
        c_decay: decay factor of the synaptic current per step.
        v_decay: decay factor of the membrane potential per step.
        v_threshold: firing threshold.
        v_reset: potential after a spike (``None``: soft reset).
        surrogate_function: the surrogate gradient; ``None`` gives ``Rect()``.
        detach_reset, step_mode, store_v_seq: as :class:`BaseNode` (keyword only: SpikingJelly's
            CUBA-LIF takes none of them).
        backend: kernel backend name (keyword only).

    Memories:
        v: the membrane potential (initially 0).
        c: the synaptic current (initially 0).

    Raises:
        TypeError: a hyper-parameter that is not a real number (``bool`` included), a flag
            that is not a bool, a bad surrogate.
        ValueError: a non-finite number.
    """

    model: ClassVar[NeuronModel | None] = CUBALIF_MODEL

    def __init__(
        self,
        c_decay: float = 0.5,
        v_decay: float = 0.75,
        v_threshold: float = 0.5,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        hyper = check_hyperparameters(CUBALIF_MODEL, c_decay=c_decay, v_decay=v_decay)
        surrogate = Rect() if surrogate_function is None else surrogate_function
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, step_mode, "torch", store_v_seq)
        self.c_decay, self.v_decay = hyper["c_decay"], hyper["v_decay"]
        self.register_model_states()
        if backend != "torch":
            self.backend = backend

    def extra_repr(self) -> str:
        return super().extra_repr() + f", c_decay={self.c_decay}, v_decay={self.v_decay}"
