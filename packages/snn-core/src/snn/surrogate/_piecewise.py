"""Surrogates whose gradient is defined piece by piece (kinks or jumps at the piece borders).

Notation: ``g(x)`` is the surrogate gradient (:meth:`derivative`), ``f(x)`` the primitive used
when ``spiking=False`` (``f' = g`` away from the borders).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from snn.surrogate._base import Number, SurrogateFunctionBase, check_nonnegative, check_positive

__all__ = [
    "PiecewiseQuadratic",
    "PiecewiseExp",
    "PiecewiseLeakyReLU",
    "LeakyKReLU",
    "FakeNumericalGradient",
    "LogTailedReLU",
    "Rect",
]


def _positive_alpha(cls: type[SurrogateFunctionBase], params: dict[str, Any]) -> dict[str, Number]:
    return {"alpha": check_positive(cls.__name__, "alpha", params["alpha"])}


class PiecewiseQuadratic(SurrogateFunctionBase):
    """Triangle-shaped gradient of half-width ``1/α``.

    ``g(x) = α − α²·|x|`` for ``|x| <= 1/α``, else 0;
    ``f(x) = 0`` (``x < −1/α``), ``−α²/2·x²·sign(x) + αx + 1/2`` (``|x| <= 1/α``), 1 (``x > 1/α``).

    Args:
        alpha: ``> 0`` (default 1.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive_alpha(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 1.0) -> Any:
        return ops.maximum(alpha - (alpha * alpha) * ops.abs(x), 0.0)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 1.0) -> torch.Tensor:
        inner = -(alpha * alpha / 2.0) * x * x.abs() + alpha * x + 0.5
        return torch.where(x > 1.0 / alpha, torch.ones_like(x), torch.where(x < -1.0 / alpha, torch.zeros_like(x), inner))


class PiecewiseExp(SurrogateFunctionBase):
    """Laplace-shaped gradient: ``g(x) = α/2·exp(−α·|x|)``.

    ``f(x) = exp(αx)/2`` for ``x < 0``, ``1 − exp(−αx)/2`` for ``x >= 0``.

    Args:
        alpha: ``> 0`` (default 1.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive_alpha(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 1.0) -> Any:
        return (alpha / 2.0) * ops.exp(-alpha * ops.abs(x))

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 1.0) -> torch.Tensor:
        # sign-split instead of abs(): autograd then gives g(0) = alpha/2 at x = 0.
        negative = x < 0
        half_tail = torch.exp(torch.where(negative, alpha * x, -alpha * x)) / 2.0
        return torch.where(negative, half_tail, 1.0 - half_tail)


class PiecewiseLeakyReLU(SurrogateFunctionBase):
    """Linear ramp of half-width ``w`` with leaky tails of slope ``c``.

    ``g(x) = 1/(2w)`` for ``|x| < w``, else ``c`` (the reference's torch backward; its CuPy
    snippet uses ``1/w``, a bug every snn backend avoids);
    ``f(x) = c·x + c·w`` (``x < −w``), ``x/(2w) + 1/2`` (``|x| <= w``), ``c·x − c·w + 1`` (``x > w``).

    Args:
        w: half-width of the ramp, ``> 0`` (default 1.0).
        c: slope outside the ramp, ``>= 0`` (default 0.01).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("w", "c")

    def __init__(self, w: float = 1.0, c: float = 0.01, spiking: bool = True) -> None:
        super().__init__(spiking, w=w, c=c)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {
            "w": check_positive(cls.__name__, "w", params["w"]),
            "c": check_nonnegative(cls.__name__, "c", params["c"]),
        }

    @staticmethod
    def derivative(x: Any, ops: Any, w: Number = 1.0, c: Number = 0.01) -> Any:
        return ops.where(ops.abs(x) < w, 1.0 / (2.0 * w), c)

    @staticmethod
    def primitive(x: torch.Tensor, w: Number = 1.0, c: Number = 0.01) -> torch.Tensor:
        ramp = x / (2.0 * w) + 0.5
        return torch.where(x < -w, c * x + c * w, torch.where(x > w, c * x + (1.0 - c * w), ramp))


class LeakyKReLU(SurrogateFunctionBase):
    """Two-slope linear surrogate: ``g(x) = k`` for ``x >= 0``, ``leak`` otherwise; ``f(x) = g(x)·x``.

    Args:
        leak: slope for ``x < 0``, ``>= 0`` (default 0.0).
        k: slope for ``x >= 0``, ``> 0`` (default 1.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("leak", "k")

    def __init__(self, leak: float = 0.0, k: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, leak=leak, k=k)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {
            "leak": check_nonnegative(cls.__name__, "leak", params["leak"]),
            "k": check_positive(cls.__name__, "k", params["k"]),
        }

    @staticmethod
    def derivative(x: Any, ops: Any, leak: Number = 0.0, k: Number = 1.0) -> Any:
        return ops.where(x >= 0.0, k, leak)

    @staticmethod
    def primitive(x: torch.Tensor, leak: Number = 0.0, k: Number = 1.0) -> torch.Tensor:
        return torch.where(x >= 0, k * x, leak * x)


class FakeNumericalGradient(SurrogateFunctionBase):
    """Clipped "numerical" gradient ``g(x) = min(1/|x|, α)`` (``g(0) = α``); spiking mode only.

    Args:
        alpha: the clip value, ``> 0`` (default 0.3).
        spiking: spiking mode; ``False`` makes ``forward`` raise (no primitive exists).
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 0.3, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive_alpha(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 0.3) -> Any:
        # 1/|0| = inf and min(inf, alpha) = alpha, in torch, Triton and CUDA alike.
        return ops.minimum(1.0 / ops.abs(x), alpha)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 0.3) -> torch.Tensor:
        raise NotImplementedError(
            "FakeNumericalGradient has no primitive function: it works in spiking mode only"
        )


class LogTailedReLU(SurrogateFunctionBase):
    """ReLU with a logarithmic tail: ``g(x) = α`` (``x <= 0``), 1 (``0 < x <= 1``), ``1/x`` (``x > 1``).

    ``f(x) = ln(x) + 1`` for ``x > 1``, else ``leaky_relu(x, α)``.

    Args:
        alpha: slope for ``x <= 0``, ``>= 0`` (default 0.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 0.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {"alpha": check_nonnegative(cls.__name__, "alpha", params["alpha"])}

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 0.0) -> Any:
        # NaN falls in neither x <= 0 nor x > 1: its gradient is 1, as the reference's is
        return ops.where(x > 1.0, 1.0 / ops.maximum(x, 1.0), ops.where(x <= 0.0, alpha, 1.0))

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 0.0) -> torch.Tensor:
        return torch.where(x > 1.0, torch.log(torch.clamp_min(x, 1.0)) + 1.0, F.leaky_relu(x, alpha))


class Rect(SurrogateFunctionBase):
    """Rectangular gradient: ``g(x) = α`` for ``|x| < 0.5/α``, else 0; ``f(x) = clamp(αx + 0.5, 0, 1)``.

    Args:
        alpha: height of the window (its width is ``1/α``), ``> 0`` (default 1.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive_alpha(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 1.0) -> Any:
        return ops.where(ops.abs(x) < 0.5 / alpha, alpha, 0.0)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 1.0) -> torch.Tensor:
        return torch.clamp(alpha * x + 0.5, min=0.0, max=1.0)
