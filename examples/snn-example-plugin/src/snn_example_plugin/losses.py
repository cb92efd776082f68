"""The ``hinge_rate`` loss: a multi-class hinge loss on firing rates."""

from __future__ import annotations

import torch

__all__ = ["hinge_rate"]


def hinge_rate(
    y_seq: torch.Tensor, target: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """Multi-class hinge loss of the time-averaged outputs.

    With ``r = mean_t y_seq[t]`` (the firing rates) the loss is the mean over
    samples ``n`` and wrong classes ``j != target[n]`` of
    ``max(0, margin - (r[n, target[n]] - r[n, j]))``: the true class should
    fire at a rate at least ``margin`` above every other class.

    Args:
        y_seq: ``[T, N, C]`` floating outputs (spikes or scores).
        target: ``[N]`` integer class indices in ``[0, C)``.
        margin: the required rate gap, ``> 0``.

    Returns:
        0-dim tensor in the dtype of ``y_seq``.

    Raises:
        TypeError: ``y_seq`` is not a floating tensor or ``target`` not an
            integer tensor.
        ValueError: shapes other than ``[T, N, C]`` and ``[N]`` with
            ``C >= 2``, a class index out of range, or ``margin <= 0``.
    """
    if not isinstance(y_seq, torch.Tensor) or not y_seq.is_floating_point():
        what = type(y_seq).__name__
        if isinstance(y_seq, torch.Tensor):
            what += f" of dtype {y_seq.dtype}"
        raise TypeError(
            f"y_seq: expected a floating tensor [T, N, C], got {what}"
        )
    if (
        not isinstance(target, torch.Tensor)
        or target.is_floating_point()
        or target.dtype == torch.bool
    ):
        what = getattr(target, "dtype", type(target).__name__)
        raise TypeError(
            "target: expected an integer tensor [N] of class indices, "
            f"got {what}"
        )
    if y_seq.dim() != 3 or y_seq.shape[0] < 1 or y_seq.shape[2] < 2:
        raise ValueError(
            "y_seq: expected shape [T, N, C] with T >= 1 and C >= 2, "
            f"got {tuple(y_seq.shape)}"
        )
    if tuple(target.shape) != (y_seq.shape[1],):
        raise ValueError(
            f"target: expected shape [{y_seq.shape[1]}] (N of y_seq), "
            f"got {tuple(target.shape)}"
        )
    classes = y_seq.shape[2]
    if target.numel():
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"target: expected class indices in [0, {classes}), "
                f"got values in [{low}, {high}]"
            )
    if not margin > 0:
        raise ValueError(f"margin: expected a number > 0, got {margin!r}")
    rates = y_seq.mean(dim=0)
    index = target.long().unsqueeze(1)
    true_rate = rates.gather(1, index)
    violations = (margin - (true_rate - rates)).clamp_min(0.0)
    wrong = torch.ones_like(rates, dtype=torch.bool).scatter_(1, index, False)
    return (violations * wrong).sum() / (rates.shape[0] * (classes - 1))
