"""Small helpers shared by the neuron modules written around a :class:`~snn.models.NeuronModel`."""

from __future__ import annotations

from typing import Any

from snn.models import NeuronModel
from snn.neuron.base import BaseNode

__all__ = ["check_hyperparameters", "start_states_at_initial_values"]


def check_hyperparameters(model: NeuronModel, **values: Any) -> dict[str, Any]:
    """``values`` checked against ``model``'s hyper-parameter kinds and normalised.

    Args:
        model: the model whose :class:`~snn.models.HyperParameter` declarations apply.
        **values: hyper-parameter name -> the value a constructor received.

    Returns:
        name -> checked value (real numbers as ``float``).

    Raises:
        TypeError: a value of the wrong type (the message names the argument).
        ValueError: a value out of range (the message names the argument).
        KeyError: a name that is not a hyper-parameter of ``model`` (a programming error).
    """
    declared = {h.name: h for h in model.hyperparameters}
    return {name: declared[name].check(value) for name, value in values.items()}


def start_states_at_initial_values(node: BaseNode) -> None:
    """Give every state of ``node``'s model its initial value, now and after every reset
    (:meth:`BaseNode.register_model_states`; models whose states rest elsewhere than the reset
    potential, or that have a second state, call this at the end of their constructor)."""
    node.register_model_states()
