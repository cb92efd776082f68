"""A surrogate gradient of the plugin's own: the multi-Gaussian surrogate.

From Yin, Corradi and Bohté (2021). A surrogate class of another package needs
no hook and no registration: subclass
:class:`snn.surrogate.SurrogateFunctionBase` and write the derivative once with
the ``ops`` namespace of :mod:`snn.expr`.
Its :attr:`~snn.surrogate.SurrogateFunctionBase.spec` then carries the class,
and every backend that generates its kernels (torch, Triton, CuPy, the compiled
CPU backend) serves it when it renders the operations of the derivative
(``snn.registry.BackendInfo.serves_surrogate``): the neuron runs the fused
kernel, not an autograd loop. Backends with hand-written kernels serve only the
built-in surrogates they name.

Example:
    >>> import torch
    >>> from snn import neuron
    >>> from snn.plugins import get_registry
    >>> from snn_example_plugin.surrogate import MultiGaussian
    >>> lif = neuron.LIFNode(surrogate_function=MultiGaussian(), step_mode="m")
    >>> spec = lif.neuron_config().surrogate
    >>> spec.cls is MultiGaussian
    True
    >>> get_registry().backend("torch").serves_surrogate(spec)
    True
    >>> x = torch.tensor([[2.5], [0.5], [1.75]], requires_grad=True)
    >>> spikes = lif(x)  # the torch backend's fused kernel, this derivative
    >>> spikes.flatten()
    tensor([1., 0., 1.], grad_fn=<ViewBackward0>)
    >>> spikes.sum().backward()
    >>> x.grad.flatten()
    tensor([0.2239, 0.3352, 0.4391])
"""

from __future__ import annotations

import math
from typing import Any

import torch

from snn.surrogate import SurrogateFunctionBase

__all__ = ["MultiGaussian"]

#: Lower bounds of the parameters: ``(bound, strict)``.
_BOUNDS = {"sigma": (0.0, True), "h": (0.0, False), "s": (0.0, True)}


def _density(ops: Any, x: Any, mean: float, std: float) -> Any:
    """``N(x; mean, std)``, the normal density, written with ``ops``."""
    centred = x if mean == 0.0 else x - mean
    scale = math.sqrt(2.0 * math.pi) * std
    return ops.exp(-(centred * centred) / (2.0 * std * std)) / scale


def _cdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``Φ((x - mean) / std)``, the normal distribution function."""
    z = (x - mean) / (std * math.sqrt(2.0))
    erf: torch.Tensor = torch.special.erf(z)
    return 0.5 * (1.0 + erf)


class MultiGaussian(SurrogateFunctionBase):
    """Multi-Gaussian surrogate: a Gaussian bump with two wider negative lobes.

    ``g(x) = (1 + h)·N(x; 0, σ) − h·N(x; σ, sσ) − h·N(x; −σ, sσ)``
    with ``N`` the normal density, and the primitive
    ``f(x) = (1 + h)·Φ(x/σ) − h·Φ((x − σ)/(sσ)) − h·Φ((x + σ)/(sσ))``
    with ``Φ`` the normal distribution function (``f' = g``). Defaults from
    the paper: ``σ = 0.5``, ``h = 0.15``, ``s = 6``.

    Args:
        sigma: width of the central Gaussian, ``> 0`` (default 0.5).
        h: weight of the side lobes, ``>= 0`` (default 0.15).
        s: width of the side lobes relative to ``sigma``, ``> 0`` (default 6).
        spiking: spiking mode (Heaviside forward) or primitive mode.

    Raises:
        TypeError: a parameter that is not a real number.
        ValueError: ``sigma <= 0``, ``h < 0`` or ``s <= 0`` (or not finite).
    """

    param_names = ("sigma", "h", "s")

    def __init__(
        self,
        sigma: float = 0.5,
        h: float = 0.15,
        s: float = 6.0,
        spiking: bool = True,
    ) -> None:
        super().__init__(spiking, sigma=sigma, h=h, s=s)

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, float | int]:
        owner = cls.__name__
        checked: dict[str, float | int] = {}
        for name, (bound, strict) in _BOUNDS.items():
            value = params[name]
            real = isinstance(value, (int, float))
            if isinstance(value, bool) or not real:
                kind = type(value).__name__
                raise TypeError(
                    f"{owner}: {name}: expected a real number, "
                    f"got {kind} {value!r}"
                )
            number = float(value)
            low = number <= bound if strict else number < bound
            if not math.isfinite(number) or low:
                relation = ">" if strict else ">="
                raise ValueError(
                    f"{owner}: {name}: expected a finite number "
                    f"{relation} {bound:g}, got {value!r}"
                )
            checked[name] = number
        return checked

    @staticmethod
    def derivative(
        x: Any,
        ops: Any,
        sigma: float = 0.5,
        h: float = 0.15,
        s: float = 6.0,
    ) -> Any:
        sigma, h, s = float(sigma), float(h), float(s)
        wide = s * sigma
        return (
            (1.0 + h) * _density(ops, x, 0.0, sigma)
            - h * _density(ops, x, sigma, wide)
            - h * _density(ops, x, -sigma, wide)
        )

    @staticmethod
    def primitive(
        x: torch.Tensor,
        sigma: float = 0.5,
        h: float = 0.15,
        s: float = 6.0,
    ) -> torch.Tensor:
        sigma, h, s = float(sigma), float(h), float(s)
        wide = s * sigma
        return (
            (1.0 + h) * _cdf(x, 0.0, sigma)
            - h * _cdf(x, sigma, wide)
            - h * _cdf(x, -sigma, wide)
        )
