"""The ``hinge_rate`` loss: a multi-class hinge loss on firing rates."""

from __future__ import annotations

import torch

__all__ = ["hinge_rate"]


def hinge_rate(y_seq: torch.Tensor, target: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Multi-class hinge loss of the time-averaged outputs.

    With ``r = mean_t y_seq[t]`` (the firing rates) the loss is the mean over samples ``n`` and
    wrong classes ``j != target[n]`` of ``max(0, margin - (r[n, target[n]] - r[n, j]))``: the
    true class should fire at a rate at least ``margin`` above every other class.

    Args:
        y_seq: ``[T, N, C]`` floating outputs (spikes or scores).
        target: ``[N]`` integer class indices in ``[0, C)``.
        margin: the required rate gap, ``> 0``.

    Returns:
        0-dim tensor in the dtype of ``y_seq``.

    Raises:
        TypeError: ``y_seq`` is not a floating tensor or ``target`` not an integer tensor.
        ValueError: shapes other than ``[T, N, C]`` and ``[N]`` with ``C >= 2``, a class index
            out of range, or ``margin <= 0``.
    """
    if not isinstance(y_seq, torch.Tensor) or not y_seq.is_floating_point():
        raise TypeError(f"y_seq: expected a floating tensor [T, N, C], got {type(y_seq).__name__}"
                        + (f" of dtype {y_seq.dtype}" if isinstance(y_seq, torch.Tensor) else ""))
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target: expected an integer tensor [N] of class indices, got {getattr(target, 'dtype', type(target).__name__)}")
    if y_seq.dim() != 3 or y_seq.shape[0] < 1 or y_seq.shape[2] < 2:
        raise ValueError(f"y_seq: expected shape [T, N, C] with T >= 1 and C >= 2, got {tuple(y_seq.shape)}")
    if tuple(target.shape) != (y_seq.shape[1],):
        raise ValueError(f"target: expected shape [{y_seq.shape[1]}] (N of y_seq), got {tuple(target.shape)}")
    classes = y_seq.shape[2]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ValueError(f"target: expected class indices in [0, {classes}), got values in [{int(target.min())}, {int(target.max())}]")
    if not margin > 0:
        raise ValueError(f"margin: expected a number > 0, got {margin!r}")
    rates = y_seq.mean(dim=0)
    true_rate = rates.gather(1, target.long().unsqueeze(1))
    violations = (margin - (true_rate - rates)).clamp_min(0.0)
    wrong = torch.ones_like(rates, dtype=torch.bool).scatter_(1, target.long().unsqueeze(1), False)
    return (violations * wrong).sum() / (rates.shape[0] * (classes - 1))
