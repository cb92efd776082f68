"""Weight-standardised convolution and linear layers (step-mode aware).

Weight standardisation (Qiao et al., 2019; used for normaliser-free networks, Brock et al.,
2021) re-parametrises each output unit's weights ``W_o`` (its row of a linear layer, its
``[C_in / groups, kH, kW]`` kernel in a convolution) as

``W_o' = gain_o * (W_o - mean(W_o)) / sqrt(var(W_o) * fan_in + eps)``

with the unbiased variance over the ``fan_in`` weights of the unit, so every unit's weights have
zero mean and a norm close to 1 whatever the stored parameters are. The standardised weight is
computed once per forward call (once per sequence in step mode ``'m'``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snn.functional.forward import seq_to_ann_forward
from snn.layer.wrappers import Conv2d, Linear
from snn.neuron.base import check_flag

__all__ = ["WSConv2d", "WSLinear", "standardize_weight"]


def standardize_weight(weight: torch.Tensor, gain: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Standardise each output unit's weights (dimension 0 indexes the units).

    Args:
        weight: ``[C_out, *]`` weights, floating.
        gain: a learnable scale broadcastable to ``weight`` (``[C_out, 1, ...]``), or ``None``.
        eps: added to ``var * fan_in`` under the square root.

    Returns:
        ``(weight - mean) / sqrt(var * fan_in + eps) * gain``, shaped like ``weight``; mean and
        unbiased variance are taken per unit over ``fan_in = weight[0].numel()`` values.
    """
    dims = tuple(range(1, weight.dim()))
    fan_in = weight[0].numel()
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True)
    standardized = (weight - mean) / (var * fan_in + eps) ** 0.5
    return standardized * gain if gain is not None else standardized


def _check_options(gain: Any, eps: Any, fan_in: int) -> float:
    gain = check_flag("gain", gain, integers=True)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps: expected a real number >= 0, got {type(eps).__name__} {eps!r}")
    number = float(eps)
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    if fan_in < 2:
        raise ValueError(
            f"weight standardisation needs at least 2 weights per output unit (the variance of one "
            f"value is undefined), got fan_in = {fan_in}"
        )
    return number


class WSConv2d(Conv2d):
    """:class:`snn.layer.Conv2d` with standardised weights (see :mod:`snn.layer.weight_standardization`).

    Input ``[N, C, H, W]`` in step mode ``'s'``, ``[T, N, C, H, W]`` in step mode ``'m'``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode: as :class:`torch.nn.Conv2d` (``padding_mode`` is honoured).
        step_mode: ``'s'`` or ``'m'``.
        gain: add a learnable scale per output channel, a parameter ``[C_out, 1, 1, 1]`` of ones.
        eps: a small number ``>= 0`` added under the square root.
        device, dtype: factory keywords of the parameters.

    Raises:
        TypeError: ``gain`` is not a bool (or 0 or 1) or ``eps`` not a real number.
        ValueError: ``eps`` is negative, or a kernel holds fewer than 2 weights
            (``in_channels / groups * kH * kW < 2``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        step_mode: str = "s",
        gain: bool = True,
        eps: float = 1e-4,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
            step_mode, device=device, dtype=dtype,
        )
        self.eps = _check_options(gain, eps, self.weight[0].numel())
        if gain:
            self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1, device=device, dtype=dtype))
        else:
            self.register_parameter("gain", None)

    def get_weight(self) -> torch.Tensor:
        """The standardised weight ``[C_out, C_in / groups, kH, kW]``."""
        return standardize_weight(self.weight, self.gain, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` with the standardised weight (computed once per call)."""
        weight = self.get_weight()
        if self._step_mode == "s":
            return self._conv_forward(x, weight, self.bias)
        self.check_multi_step_input(x)
        return seq_to_ann_forward(x, lambda flat: self._conv_forward(flat, weight, self.bias))  # type: ignore[return-value]  # one tensor out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gain={self.gain is not None}, eps={self.eps}"


class WSLinear(Linear):
    """:class:`snn.layer.Linear` with standardised weights (see :mod:`snn.layer.weight_standardization`).

    Input ``[N, *, in_features]`` in step mode ``'s'``, ``[T, N, *, in_features]`` in ``'m'``.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear`.
        step_mode: ``'s'`` or ``'m'``.
        gain: add a learnable scale per output feature, a parameter ``[out_features, 1]`` of ones.
        eps: a small number ``>= 0`` added under the square root.
        device, dtype: factory keywords of the parameters.

    Raises:
        TypeError: ``gain`` is not a bool (or 0 or 1) or ``eps`` not a real number.
        ValueError: ``eps`` is negative or ``in_features < 2``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        step_mode: str = "s",
        gain: bool = True,
        eps: float = 1e-4,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, step_mode, device=device, dtype=dtype)
        self.eps = _check_options(gain, eps, self.in_features)
        if gain:
            self.gain = nn.Parameter(torch.ones(self.out_features, 1, device=device, dtype=dtype))
        else:
            self.register_parameter("gain", None)

    def get_weight(self) -> torch.Tensor:
        """The standardised weight ``[out_features, in_features]``."""
        return standardize_weight(self.weight, self.gain, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W'.T + b`` with the standardised weight ``W'`` (any leading dimensions)."""
        if self._step_mode == "m":
            self.check_multi_step_input(x)
        return F.linear(x, self.get_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gain={self.gain is not None}, eps={self.eps}"
