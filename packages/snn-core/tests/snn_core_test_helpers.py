"""Helpers shared by snn-core test files (imported by name; conftest.py puts this folder on the path)."""

from __future__ import annotations

import torch
from torch import nn

import snn.functional as F

__all__ = ["run_sequence"]


def run_sequence(net: nn.Module, x_seq: torch.Tensor, step_mode: str) -> torch.Tensor:
    """``net``'s outputs ``[T, *]`` over ``x_seq`` ``[T, *]`` from reset states, without
    gradients: one call in step mode ``'m'``, one call per step in ``'s'``."""
    F.reset_net(net)
    with torch.no_grad():
        if step_mode == "m":
            return net(x_seq)
        return torch.stack([net(x) for x in x_seq])
