"""Small helpers shared by the neuron modules written around a :class:`~snn.models.NeuronModel`."""

from __future__ import annotations

from typing import Any

from snn.models import NeuronModel

__all__ = ["check_hyperparameters"]


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
