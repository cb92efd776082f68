"""Straight-through surrogates: the gradient passes (within a window) unchanged.

:class:`PoissonPass` and :class:`MultiLevelSpikeCount` do not fire with the Heaviside step, so
neuron kernels cannot use them (``has_closed_form_derivative = False``); they run through the
module's own autograd function.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from snn.surrogate._base import Number, SurrogateFunctionBase, _functorch_active, check_integer, check_real

__all__ = ["DeterministicPass", "PoissonPass", "MultiLevelSpikeCount"]


class DeterministicPass(SurrogateFunctionBase):
    """Straight-through estimator: Heaviside forward, ``g(x) = 1``; identity primitive.

    Args:
        spiking: spiking mode (Heaviside forward) or identity.
    """

    param_names = ()

    def __init__(self, spiking: bool = True) -> None:
        super().__init__(spiking)

    @staticmethod
    def derivative(x: Any, ops: Any) -> Any:
        return 1.0

    @staticmethod
    def primitive(x: torch.Tensor) -> torch.Tensor:
        return x


class PoissonPass(SurrogateFunctionBase):
    """Stochastic firing: forward ``bernoulli(x)``, straight-through gradient ``g(x) = 1``.

    The spikes keep ``x``'s floating dtype (the reference converts to float32). ``x`` is a
    firing probability: values outside ``[0, 1]`` (or NaN) raise :class:`ValueError` naming
    their range, where the reference stops inside ``torch.bernoulli`` (on a GPU, with a
    device-side assert). A neuron passes its surrogate ``v - v_threshold``, which is not a
    probability: use this surrogate on inputs that are.

    Args:
        spiking: spiking mode (Bernoulli samples; ``x`` must lie in ``[0, 1]``) or identity.
    """

    param_names = ()
    has_closed_form_derivative = False

    def __init__(self, spiking: bool = True) -> None:
        super().__init__(spiking)

    @staticmethod
    def spike(x: torch.Tensor) -> torch.Tensor:
        # the check reads two numbers back (a device sync on a GPU); under torch.func transforms
        # (vmap) values cannot be read, and torch.bernoulli checks the range itself
        if x.numel() and not _functorch_active():
            low, high = (float(v) for v in torch.aminmax(x.detach()))
            if math.isnan(low) or math.isnan(high):
                raise ValueError("PoissonPass: x: expected firing probabilities in [0, 1], got NaN")
            if not (low >= 0.0 and high <= 1.0):
                raise ValueError(
                    f"PoissonPass: x: expected firing probabilities in [0, 1], got values from {low} to {high}"
                    " (a neuron's surrogate receives v - v_threshold, which is not a probability)"
                )
        return torch.bernoulli(x)

    @staticmethod
    def derivative(x: Any, ops: Any) -> Any:
        return 1.0

    @staticmethod
    def primitive(x: torch.Tensor) -> torch.Tensor:
        return x


def _window_end(owner: str, name: str, value: Any) -> float:
    """An end of the gradient window: a real number, infinities included (an open window)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isinf(value):
        return float(value)
    return check_real(owner, name, value)


class MultiLevelSpikeCount(SurrogateFunctionBase):
    """Multi-level spikes: forward ``round(clamp(x, 0, max_spike_count))``.

    The backward is a rectangular straight-through estimator: ``g(x) = 1`` for
    ``grad_min <= x <= grad_max`` (both ends included), else 0; the window defaults to
    ``[0, max_spike_count]``, as in the reference's ``quantize.multi_level_spike_count``. The
    primitive is ``clamp(x, 0, max_spike_count)``. Rounding is half-to-even (``torch.round``).

    The argument order ``(max_spike_count, spiking, grad_window)`` is the reference's. The
    window is stored as the parameters ``grad_min`` and ``grad_max``.

    Args:
        max_spike_count: the largest spike count, an integer ``>= 1``.
        spiking: spiking mode (rounded counts) or the clamped primitive.
        grad_window: ``(grad_min, grad_max)`` with ``grad_min <= grad_max`` (infinite ends
            allowed: an open window), or ``None``.

    Raises:
        TypeError: ``max_spike_count`` is not an integer, or ``grad_window`` is not a pair.
        ValueError: ``max_spike_count < 1`` or ``grad_min > grad_max``.
    """

    param_names = ("max_spike_count", "grad_min", "grad_max")
    has_closed_form_derivative = False

    def __init__(
        self,
        max_spike_count: int,
        spiking: bool = True,
        grad_window: tuple[float, float] | None = None,
    ) -> None:
        name = type(self).__name__
        count = check_integer(name, "max_spike_count", max_spike_count, lower=1)
        if grad_window is None:
            grad_min, grad_max = 0.0, float(count)
        else:
            if not isinstance(grad_window, (tuple, list)) or len(grad_window) != 2:
                raise TypeError(f"{name}: grad_window: expected a pair (grad_min, grad_max) or None, got {grad_window!r}")
            grad_min, grad_max = grad_window
        super().__init__(spiking, max_spike_count=count, grad_min=grad_min, grad_max=grad_max)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        name = cls.__name__
        checked: dict[str, Number] = {
            "max_spike_count": check_integer(name, "max_spike_count", params["max_spike_count"], lower=1),
            "grad_min": _window_end(name, "grad_min", params["grad_min"]),
            "grad_max": _window_end(name, "grad_max", params["grad_max"]),
        }
        if checked["grad_min"] > checked["grad_max"]:
            raise ValueError(
                f"{name}: grad_window: expected grad_min <= grad_max, got ({checked['grad_min']}, {checked['grad_max']})"
            )
        return checked

    @staticmethod
    def spike(x: torch.Tensor, max_spike_count: Number, grad_min: Number, grad_max: Number) -> torch.Tensor:
        return torch.round(torch.clamp(x, 0.0, float(max_spike_count)))

    @staticmethod
    def derivative(x: Any, ops: Any, max_spike_count: Number, grad_min: Number, grad_max: Number) -> Any:
        return ops.where((x >= grad_min) & (x <= grad_max), 1.0, 0.0)

    @staticmethod
    def primitive(x: torch.Tensor, max_spike_count: Number, grad_min: Number, grad_max: Number) -> torch.Tensor:
        return torch.clamp(x, 0.0, float(max_spike_count))
