"""A model description evaluated on tensors with torch autograd: the reference (:mod:`snn.models`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from snn.models._description import ModelParameters, NeuronConfig, NeuronModel, StateValues
from snn.models._plan import _as_state_mapping, _reset_changes

__all__ = ["evaluate_charge", "evaluate_reset", "autograd_step"]


def evaluate_charge(
    model: NeuronModel,
    hyper: Mapping[str, Any],
    x: torch.Tensor,
    states: Mapping[str, torch.Tensor],
    learnables: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The charged value of every state, evaluated with torch (autograd records it).

    ``hyper`` may hold tensors (a tensor threshold, say): the model's functions run unchanged.
    """
    from snn.expr import torch_ops

    p = ModelParameters(hyper, learnables)
    ops = torch_ops(x.dtype if x.is_floating_point() else None)
    return dict(_as_state_mapping(model, "charge", model.charge(x, StateValues(states), p, ops)))


def evaluate_reset(
    model: NeuronModel,
    hyper: Mapping[str, Any],
    detach_reset: bool,
    charged: Mapping[str, torch.Tensor],
    spike: torch.Tensor,
    learnables: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Every state after the spike, evaluated with torch; the spike is detached in the resets of
    :attr:`NeuronModel.detached` when ``detach_reset``."""
    from snn.expr import torch_ops

    p = ModelParameters(hyper, learnables)
    h = StateValues(charged)
    ops = torch_ops(spike.dtype if spike.is_floating_point() else None)
    detached = set(model.detached) if detach_reset else set()
    out = dict(charged)
    if model.reset is None:
        s = spike.detach() if model.fire in detached else spike
        out[model.fire] = p.reset(charged[model.fire], s, getattr(p, model.threshold))
        return out
    plain = _reset_changes(model, model.reset(h, spike, p, ops))
    cut_names = detached & set(plain)
    if cut_names:
        cut = _reset_changes(model, model.reset(h, spike.detach(), p, ops))
        for name in cut_names:
            plain[name] = cut[name]
    out.update(plain)
    return out


def autograd_step(
    config: NeuronConfig,
    x: torch.Tensor,
    states: Mapping[str, torch.Tensor],
    learnables: Mapping[str, torch.Tensor],
    fire: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step of ``config``'s model with torch autograd: the reference semantics.

    Charges every state, fires with ``fire(h_fire - threshold)`` (a surrogate function, or any
    callable returning the spikes) and resets (see :func:`evaluate_reset`).

    Args:
        config: the configuration.
        x: the input of one step, a floating tensor ``[*]``.
        states: state name -> tensor ``[*]`` (the previous post-reset values).
        learnables: learnable parameter name -> one-element tensor.
        fire: the spike function.

    Returns:
        ``(spike, new states)``.
    """
    model = config.model
    hyper = config.hyper
    charged = evaluate_charge(model, hyper, x, states, learnables)
    spike = fire(charged[model.fire] - hyper[model.threshold])
    return spike, evaluate_reset(model, hyper, config.detach_reset, charged, spike, learnables)
