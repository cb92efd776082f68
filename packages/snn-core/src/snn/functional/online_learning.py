"""Online-learning pipelines (FPTT, OTTT), dispatched to learners registered by plugins.

The learning rules live in plugins (the ``snn-online`` distribution registers ``fptt``,
``ottt`` and ``sltt``; install it with ``pip install "snn-core[online]"``, or from a checkout
of the repository with ``pip install -e packages/snn-online``). These functions
check their arguments and call the registered :class:`snn.learning.OnlineLearner`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from snn.learning import OnlineLearner
from snn.models import check_flag

__all__ = [
    "fptt_online_training",
    "fptt_online_training_init_w_ra",
    "ottt_online_training",
]


def _learner(name: str) -> OnlineLearner:
    """The learner registered as ``name`` (raises OnlineLearnerNotFoundError if none)."""
    from snn.plugins import get_registry

    return get_registry().learner(name).implementation


def _check_optimizer(fn: str, optimizer: Any) -> None:
    """Accept a :class:`torch.optim.Optimizer` or any object used like one (``param_groups``,
    ``step()``, ``zero_grad()``: a wrapper that clips or averages), as SpikingJelly and the
    learners do."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return
    groups = getattr(optimizer, "param_groups", None)
    if not (
        isinstance(groups, (list, tuple)) and all(isinstance(g, dict) and "params" in g for g in groups)
        and callable(getattr(optimizer, "step", None)) and callable(getattr(optimizer, "zero_grad", None))
    ):
        raise TypeError(
            f"{fn}: optimizer: expected a torch.optim.Optimizer (or an object with param_groups, step() and "
            f"zero_grad()), got {type(optimizer).__name__}"
        )


def _check_common(fn: str, model: Any, optimizer: Any, x_seq: Any, f_loss_t: Any, time_dims: int) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_optimizer(fn, optimizer)
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{fn}: x_seq: expected a torch.Tensor, got {type(x_seq).__name__}")
    layout = "[T, *]" if time_dims == 1 else "[B, T, *]"
    if x_seq.dim() < time_dims:
        raise ValueError(f"{fn}: x_seq: expected a tensor {layout}, got shape {tuple(x_seq.shape)}")
    if x_seq.shape[time_dims - 1] == 0:
        # nothing to learn from: SpikingJelly's FPTT silently returns, its OTTT fails in stack
        raise ValueError(
            f"{fn}: x_seq: expected a tensor {layout} with at least one time step (T >= 1 on "
            f"dimension {time_dims - 1}), got shape {tuple(x_seq.shape)}"
        )
    if not callable(f_loss_t):
        raise TypeError(
            f"{fn}: f_loss_t: expected a callable f_loss_t(y_t, target_t) -> loss, got {f_loss_t!r}"
        )


def fptt_online_training_init_w_ra(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The running average FPTT starts from: a snapshot of every parameter of ``optimizer``.

    Args:
        optimizer: the optimizer of the model trained with :func:`fptt_online_training`.

    Returns:
        One detached copy per parameter, in ``optimizer.param_groups`` order (independent
        storage: later optimizer steps do not move it).

    Raises:
        TypeError: ``optimizer`` is neither a :class:`torch.optim.Optimizer` nor an object with
            ``param_groups``, ``step()`` and ``zero_grad()``.
        snn.errors.OnlineLearnerNotFoundError: no plugin provides the ``fptt`` learner.
    """
    _check_optimizer("fptt_online_training_init_w_ra", optimizer)
    return _learner("fptt").init_state(None, optimizer)


def fptt_online_training(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_seq: torch.Tensor,
    target_seq: Any,
    f_loss_t: Callable[[Any, Any], torch.Tensor],
    alpha: float,
    w_ra: list[torch.Tensor],
) -> None:
    """Train ``model`` on one sequence with FPTT (Forward Propagation Through Time).

    At every step the weights are updated with the instantaneous loss plus a dynamic
    regulariser pulling them towards the running average ``w_ra`` (Kag & Saligrama, ICML 2021;
    Yin et al., 2023). No gradient flows through time.

    Args:
        model: a single-step network.
        optimizer: the optimizer of ``model``'s parameters.
        x_seq: ``[T, *]`` inputs, time first, ``T >= 1``.
        target_seq: per-step targets, ``target_seq[t]`` for step ``t``.
        f_loss_t: ``f_loss_t(y_t, target_t) -> 0-dim tensor``.
        alpha: the regulariser strength, ``> 0``.
        w_ra: the running average from :func:`fptt_online_training_init_w_ra`; updated in place
            (its entries are replaced).

    Raises:
        TypeError, ValueError: bad arguments; ``ValueError`` for ``T == 0`` (the reference
            silently does nothing).
        snn.errors.OnlineLearnerNotFoundError: no plugin provides the ``fptt`` learner.
    """
    fn = "fptt_online_training"
    _check_common(fn, model, optimizer, x_seq, f_loss_t, time_dims=1)
    if isinstance(alpha, torch.Tensor) and alpha.numel() == 1 and not alpha.is_complex() and alpha.dtype != torch.bool:
        alpha = alpha.item()  # the reference takes a tensor too; the regulariser needs its value only
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{fn}: alpha: expected a positive real number, got {alpha!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{fn}: alpha: expected a finite number > 0, got {alpha!r}")
    if not isinstance(w_ra, list):
        raise TypeError(
            f"{fn}: w_ra: expected the list returned by fptt_online_training_init_w_ra, "
            f"got {type(w_ra).__name__}"
        )
    _learner("fptt").train_sequence(model, optimizer, x_seq, target_seq, f_loss_t, state=w_ra, alpha=alpha)


def ottt_online_training(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_seq: torch.Tensor,
    target_seq: torch.Tensor,
    f_loss_t: Callable[[Any, Any], torch.Tensor],
    online: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``model`` on a batch of sequences with OTTT / SLTT (online training through time).

    The gradient locality comes from the model (OTTT or SLTT neurons, ``OTTTSequential``); the
    loop backpropagates the loss of every step, detaches the network's states after each step
    and steps the optimizer after every step (``online=True``) or once at the end.

    Args:
        model: a single-step network.
        optimizer: the optimizer of ``model``'s parameters.
        x_seq: ``[B, T, *]`` inputs, **batch first**, ``T >= 1``.
        target_seq: ``[B, T', *]`` targets, batch first, ``T' >= T`` (step ``t`` reads ``target_seq[:, t]``).
        f_loss_t: ``f_loss_t(y_t, target_t) -> 0-dim tensor``.
        online: update the weights at every step (True) or once per sequence (False); 0, 1,
            a NumPy bool and a one-element boolean tensor are taken as that bool.

    Returns:
        ``(batch_loss, y_all)``: the 0-dim sum of the per-step losses and the detached outputs
        ``[B, T, *]``.

    Raises:
        TypeError, ValueError: bad arguments; ``ValueError`` for ``T == 0`` (the reference fails
            in ``torch.stack``).
        snn.errors.OnlineLearnerNotFoundError: no plugin provides the ``ottt`` learner.
    """
    fn = "ottt_online_training"
    _check_common(fn, model, optimizer, x_seq, f_loss_t, time_dims=2)
    if not isinstance(target_seq, torch.Tensor):
        raise TypeError(
            f"{fn}: target_seq: expected a torch.Tensor [B, T, *], got {type(target_seq).__name__}"
        )
    if target_seq.dim() < 2 or target_seq.shape[0] != x_seq.shape[0] or target_seq.shape[1] < x_seq.shape[1]:
        raise ValueError(
            f"{fn}: target_seq: expected leading dims [B, T'] with B = {x_seq.shape[0]} and T' >= "
            f"T = {x_seq.shape[1]} like x_seq (step t reads target_seq[:, t]), got shape {tuple(target_seq.shape)}"
        )
    try:
        online = check_flag("online", online, integers=True)
    except TypeError as exc:
        raise TypeError(f"{fn}: {exc}") from None
    loss, y_all = _learner("ottt").train_sequence(model, optimizer, x_seq, target_seq, f_loss_t, online=online)
    if y_all is None:
        raise TypeError(f"{fn}: the learner registered as 'ottt' returned no outputs (y_all is None)")
    return loss, y_all
