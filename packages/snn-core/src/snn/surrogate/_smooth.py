"""Surrogates with a smooth (everywhere differentiable) gradient.

Notation: ``g(x)`` is the surrogate gradient (:meth:`derivative`), ``f(x)`` the primitive used
when ``spiking=False`` (``f' = g``), ``σ`` the logistic sigmoid.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from snn.surrogate._base import Number, SurrogateFunctionBase, check_integer, check_positive

__all__ = [
    "Sigmoid",
    "ATan",
    "SoftSign",
    "SuperSpike",
    "Erf",
    "NonzeroSignLogAbs",
    "SquarewaveFourierSeries",
    "S2NN",
    "QPseudoSpike",
]


def _positive(cls: type[SurrogateFunctionBase], params: dict[str, Any]) -> dict[str, Number]:
    """Every parameter of ``cls`` checked ``> 0``: it scales the gradient (or its steepness), so
    a negative value would flip the gradient's sign and 0 would make it vanish."""
    return {name: check_positive(cls.__name__, name, params[name]) for name in cls.param_names}


class Sigmoid(SurrogateFunctionBase):
    """Sigmoid surrogate: ``g(x) = α·σ(αx)·(1 − σ(αx))``, ``f(x) = σ(αx)``.

    Args:
        alpha: steepness, ``> 0`` (default 4.0; a negative one would flip the gradient's sign).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 4.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 4.0) -> Any:
        s = ops.sigmoid(alpha * x)
        return alpha * s * (1.0 - s)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 4.0) -> torch.Tensor:
        return torch.sigmoid(alpha * x)


class ATan(SurrogateFunctionBase):
    """Arc-tangent surrogate: ``g(x) = (α/2) / (1 + (π/2·α·x)²)``, ``f(x) = atan(π/2·α·x)/π + 1/2``.

    Args:
        alpha: steepness, ``> 0`` (default 2.0; a negative one would flip the gradient's sign).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 2.0) -> Any:
        scaled = (ops.pi / 2.0 * alpha) * x
        return (alpha / 2.0) / (1.0 + scaled * scaled)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 2.0) -> torch.Tensor:
        return torch.atan((math.pi / 2.0 * alpha) * x) / math.pi + 0.5


class SoftSign(SurrogateFunctionBase):
    """Soft-sign surrogate: ``g(x) = 1 / (2α·(1/α + |x|)²)``, ``f(x) = (softsign(αx) + 1) / 2``.

    Args:
        alpha: steepness, ``> 0`` (default 2.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {"alpha": check_positive(cls.__name__, "alpha", params["alpha"])}

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 2.0) -> Any:
        d = 1.0 / alpha + ops.abs(x)
        return (0.5 / alpha) / (d * d)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 2.0) -> torch.Tensor:
        return (F.softsign(alpha * x) + 1.0) / 2.0


class SuperSpike(SurrogateFunctionBase):
    """SuperSpike surrogate: ``g(x) = α / (|x| + 1)²`` (spiking mode only; no primitive).

    Args:
        alpha: scale, ``> 0`` (default 1.0).
        spiking: spiking mode; ``False`` makes ``forward`` raise, as in the reference.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 1.0) -> Any:
        d = ops.abs(x) + 1.0
        return alpha / (d * d)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 1.0) -> torch.Tensor:
        raise NotImplementedError(
            "SuperSpike has no primitive function (the reference defines none); use spiking=True"
        )


class Erf(SurrogateFunctionBase):
    """Gaussian-error surrogate: ``g(x) = α/√π·exp(−(αx)²)``, ``f(x) = erfc(−αx)/2``.

    Args:
        alpha: steepness, ``> 0`` (default 2.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 2.0) -> Any:
        scaled = alpha * x
        return (alpha / ops.pi**0.5) * ops.exp(-(scaled * scaled))

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 2.0) -> torch.Tensor:
        return torch.special.erfc(-alpha * x) / 2.0


class NonzeroSignLogAbs(SurrogateFunctionBase):
    """``g(x) = 1 / (1/α + |x|)``, ``f(x) = sign(x)·ln(α·|x| + 1)`` with ``sign(0) = +1``.

    Args:
        alpha: scale, ``> 0`` (default 1.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {"alpha": check_positive(cls.__name__, "alpha", params["alpha"])}

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 1.0) -> Any:
        return 1.0 / (1.0 / alpha + ops.abs(x))

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 1.0) -> torch.Tensor:
        sign = 2.0 * (x >= 0).to(x.dtype) - 1.0
        return sign * torch.log1p(alpha * sign * x)


class SquarewaveFourierSeries(SurrogateFunctionBase):
    """Square wave approximated by ``n − 1`` Fourier terms, ``ω = 2π/T``.

    ``g(x) = 4/T·Σ_{i=1}^{n−1} cos((2i−1)ωx)``,
    ``f(x) = 1/2 + 2/π·Σ_{i=1}^{n−1} sin((2i−1)ωx)/(2i−1)``.

    The terms of ``g`` are summed pairwise (SpikingJelly sums them in order; the two can differ
    in the last bits for ``n >= 4``), so that kernels of any ``n`` compile.

    Args:
        n: number of terms plus one, an integer ``>= 1`` (default 2; ``n = 1`` gives ``g = 0``).
        T_period: period of the square wave, ``> 0`` (default 8).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("n", "T_period")

    def __init__(self, n: int = 2, T_period: float = 8, spiking: bool = True) -> None:
        super().__init__(spiking, n=n, T_period=T_period)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {
            "n": check_integer(cls.__name__, "n", params["n"], lower=1),
            "T_period": check_positive(cls.__name__, "T_period", params["T_period"]),
        }

    @staticmethod
    def derivative(x: Any, ops: Any, n: Number = 2, T_period: Number = 8.0) -> Any:
        omega = 2.0 * ops.pi / T_period
        terms = [ops.cos(((2 * i - 1) * omega) * x) for i in range(1, int(n))]
        if not terms:
            return 0.0
        # summed pairwise: an expression of depth log2(n), not n (kernels compile it recursively)
        while len(terms) > 1:
            paired = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
            if len(terms) % 2:
                paired.append(terms[-1])
            terms = paired
        return (4.0 / T_period) * terms[0]

    @staticmethod
    def primitive(x: torch.Tensor, n: Number = 2, T_period: Number = 8.0) -> torch.Tensor:
        omega = 2.0 * math.pi / T_period
        total = torch.zeros_like(x)
        for i in range(1, int(n)):
            c = 2.0 * i - 1.0
            total = total + torch.sin((c * omega) * x) / c
        return 0.5 + (2.0 / math.pi) * total


class S2NN(SurrogateFunctionBase):
    """S2NN surrogate: sigmoid-shaped left of 0, logarithmic right of it.

    ``g(x) = α·σ(αx)·(1 − σ(αx))`` for ``x < 0``, ``β / (x + 1)`` for ``x >= 0``;
    ``f(x) = σ(αx)`` for ``x < 0``, ``β·ln(|x + 1| + 1e−5) + 1/2`` otherwise.

    Args:
        alpha: steepness of the left part, ``> 0`` (default 4.0).
        beta: scale of the right part, ``> 0`` (default 1.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha", "beta")

    def __init__(self, alpha: float = 4.0, beta: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha, beta=beta)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return _positive(cls, params)

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 4.0, beta: Number = 1.0) -> Any:
        s = ops.sigmoid(alpha * x)
        # maximum() keeps the unused right branch finite for x <= -1.
        return ops.where(x < 0.0, alpha * s * (1.0 - s), beta / ops.maximum(x + 1.0, 1.0))

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 4.0, beta: Number = 1.0) -> torch.Tensor:
        return torch.where(x < 0.0, torch.sigmoid(alpha * x), beta * torch.log((x + 1.0).abs() + 1e-5) + 0.5)


class QPseudoSpike(SurrogateFunctionBase):
    """q-PseudoSpike surrogate with tail factor ``α > 1``.

    ``g(x) = (1 + 2|x|/(α−1))^(−α)``,
    ``f(x) = H(x) − sign(x)·½·(1 + 2|x|/(α−1))^(1−α)`` with ``sign(0) = +1``.

    Args:
        alpha: tail factor, ``> 1`` (default 2.0).
        spiking: spiking mode (Heaviside forward) or primitive mode.
    """

    param_names = ("alpha",)

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        return {"alpha": check_positive(cls.__name__, "alpha", params["alpha"], lower=1.0)}

    @staticmethod
    def derivative(x: Any, ops: Any, alpha: Number = 2.0) -> Any:
        return (1.0 + (2.0 / (alpha - 1.0)) * ops.abs(x)) ** (-alpha)

    @staticmethod
    def primitive(x: torch.Tensor, alpha: Number = 2.0) -> torch.Tensor:
        step = (x >= 0).to(x.dtype)
        sign = 2.0 * step - 1.0
        # sign * x instead of abs(x): autograd then gives g(0) = 1 at x = 0.
        return step - sign * 0.5 * (1.0 + (2.0 / (alpha - 1.0)) * (sign * x)) ** (1.0 - alpha)

