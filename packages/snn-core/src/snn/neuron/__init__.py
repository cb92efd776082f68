"""Spiking neurons: modules around neuron models (:mod:`snn.models`).

Every neuron keeps its states as memories (``v``, and e.g. ``w`` for Izhikevich) and runs one
step at a time (``step_mode='s'``, input ``[N, *]``) or a whole sequence (``step_mode='m'``,
input ``[T, N, *]``). A step charges the states, fires where the firing state reaches the
threshold (``s = H(h - v_threshold)``, ``H(0) = 1``, the surrogate gradient in backward) and
resets. The math of each neuron is a :class:`~snn.models.NeuronModel` written beside its class;
kernel backends (torch, Triton, CuPy, and any plugin's) run it through :mod:`snn.dispatch`.

This package is also the in-tree plugin ``neurons``: its hook registers the built-in models.

Example:
    >>> import torch
    >>> from snn import neuron
    >>> lif = neuron.LIFNode(tau=2.0, step_mode="m")
    >>> lif(torch.full((4, 1), 1.5)).flatten()
    tensor([0., 1., 0., 1.])
"""

from __future__ import annotations

import snn
from snn.neuron.base import BaseNode
from snn.neuron.cuba_lif import CUBALIF_MODEL, CUBALIFNode
from snn.neuron.integrate_and_fire import IF_MODEL, LIF_MODEL, PLIF_MODEL, IFNode, LIFNode, ParametricLIFNode
from snn.neuron.izhikevich import IZHIKEVICH_MODEL, IzhikevichNode
from snn.neuron.klif import KLIF_MODEL, KLIFNode
from snn.neuron.nonlinear_if import EIF_MODEL, QIF_MODEL, EIFNode, QIFNode
from snn.registry import NeuronModelRegistrar

__all__ = [
    "BaseNode",
    "IFNode",
    "LIFNode",
    "ParametricLIFNode",
    "QIFNode",
    "EIFNode",
    "IzhikevichNode",
    "KLIFNode",
    "CUBALIFNode",
    "BUILTIN_MODELS",
    "node_class",
    "snn_register_neuron_models",
]

#: The models of this package, registered by the in-tree plugin ``neurons``.
BUILTIN_MODELS = (IF_MODEL, LIF_MODEL, PLIF_MODEL, QIF_MODEL, EIF_MODEL, IZHIKEVICH_MODEL, KLIF_MODEL, CUBALIF_MODEL)


@snn.hookimpl
def snn_register_neuron_models(register: NeuronModelRegistrar) -> None:
    """Register the built-in neuron models (see :func:`snn.hookspecs.snn_register_neuron_models`)."""
    for model in BUILTIN_MODELS:
        register(model)


def node_class(model_name: str) -> type[BaseNode] | None:
    """The module class that runs the registered model ``model_name``, or ``None``.

    The registry's ``node`` metadata (a class, given by the plugin that registered the model) wins;
    otherwise the :class:`BaseNode` subclass that defines ``model`` for it (subclasses that only
    inherit it, such as online-learning variants, are not chosen).
    """
    from snn.plugins import get_registry

    registry = get_registry()
    item = registry.models.get(model_name)
    if item is None:
        return None
    node = item.metadata.get("node")
    if isinstance(node, type) and issubclass(node, BaseNode):
        return node
    stack = list(BaseNode.__subclasses__())
    while stack:
        cls = stack.pop(0)
        if cls.__dict__.get("model") is item.implementation:
            return cls
        stack.extend(cls.__subclasses__())
    return None
