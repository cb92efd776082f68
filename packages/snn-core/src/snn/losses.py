"""Built-in losses (an in-tree plugin).

- ``tet``: :func:`snn.functional.temporal_efficient_training_cross_entropy`
  (signature ``sequence_classification``);
- ``spike_similar``: :func:`snn.functional.spike_similar_loss` (``loss(spikes, labels, ...)``);
- ``ce_rate``: :func:`rate_cross_entropy` (``sequence_classification``);
- ``mse_count``: :func:`rate_mse` (``sequence_classification``).

A ``sequence_classification`` loss is called as ``loss(y_seq, target)`` with ``y_seq`` of shape
``[T, N, C]`` and integer class indices ``target`` of shape ``[N]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

import snn
from snn.functional.loss import spike_similar_loss, temporal_efficient_training_cross_entropy
from snn.registry import LossRegistrar

__all__ = ["rate_cross_entropy", "rate_mse", "snn_register_losses"]


def _check_sequence_classification(fn: str, y_seq: Any, target: Any) -> None:
    if not isinstance(y_seq, torch.Tensor):
        raise TypeError(f"{fn}: y_seq: expected a torch.Tensor [T, N, C], got {type(y_seq).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{fn}: target: expected a torch.Tensor [N] of class indices, got {type(target).__name__}"
        )
    if y_seq.dim() != 3 or y_seq.shape[0] == 0:
        raise ValueError(
            f"{fn}: y_seq: expected a 3-D tensor [T, N, C] with T >= 1, got shape {tuple(y_seq.shape)}"
        )
    if not y_seq.is_floating_point():
        raise TypeError(f"{fn}: y_seq: expected a floating dtype, got {y_seq.dtype}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target: expected integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != (y_seq.shape[1],):
        raise ValueError(
            f"{fn}: target: expected shape [{y_seq.shape[1]}] (N of y_seq), got {tuple(target.shape)}"
        )


def rate_cross_entropy(y_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the time-averaged outputs (rate coding): ``CE(mean_t y_seq[t], target)``.

    Args:
        y_seq: ``[T, N, C]`` floating outputs (spikes or logits).
        target: ``[N]`` integer class indices.

    Returns:
        0-dim tensor in the dtype of ``y_seq``.

    Raises:
        TypeError: non-tensors, non-floating ``y_seq`` or non-integer ``target``.
        ValueError: shapes other than ``[T, N, C]`` / ``[N]``.
    """
    _check_sequence_classification("ce_rate", y_seq, target)
    return F.cross_entropy(y_seq.mean(dim=0), target.long())


def rate_mse(y_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the firing rate and the one-hot target.

    ``MSE(mean_t y_seq[t], one_hot(target, C))``: the neuron of the true class should fire at
    every step, the others never.

    Args:
        y_seq: ``[T, N, C]`` floating outputs (spikes).
        target: ``[N]`` integer class indices in ``[0, C)``.

    Returns:
        0-dim tensor in the dtype of ``y_seq``.

    Raises:
        TypeError: non-tensors, non-floating ``y_seq`` or non-integer ``target``.
        ValueError: shapes other than ``[T, N, C]`` / ``[N]``.
    """
    _check_sequence_classification("mse_count", y_seq, target)
    rate = y_seq.mean(dim=0)
    return F.mse_loss(rate, F.one_hot(target.long(), rate.shape[-1]).to(rate.dtype))


@snn.hookimpl
def snn_register_losses(register: LossRegistrar) -> None:
    """Register the built-in losses."""
    register(
        "tet",
        temporal_efficient_training_cross_entropy,
        signature="sequence_classification",
        description="TET: cross-entropy at every time step, averaged over time",
    )
    register(
        "spike_similar",
        spike_similar_loss,
        signature="spike_similarity",
        description="similarity of spike patterns follows similarity of labels",
    )
    register(
        "ce_rate",
        rate_cross_entropy,
        signature="sequence_classification",
        description="cross-entropy of the time-mean output",
    )
    register(
        "mse_count",
        rate_mse,
        signature="sequence_classification",
        description="MSE between firing rate and one-hot target",
    )
