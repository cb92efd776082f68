"""Surrogate-gradient functions.

A spiking neuron fires with the Heaviside step ``H(x)`` (``H(0) = 1``), whose derivative is
zero almost everywhere; a surrogate keeps ``H`` in the forward pass and uses a smooth
``g(x)`` in the backward pass. Every class of the reference is here, with the same names,
defaults and math (see each class). Each class writes ``g`` once, in its ``derivative``
static method, against the namespace of :mod:`snn.expr`:

- the torch backward evaluates it on tensors (:func:`derivative_function`);
- kernel backends render it to Triton / CUDA source (:func:`derivative_expression` and
  :func:`snn.expr.render`), so every backend computes the same gradient.

Example:
    >>> import torch
    >>> from snn import surrogate
    >>> sg = surrogate.ATan(alpha=2.0)
    >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> sg(x)
    tensor([0., 1., 1.], grad_fn=<_SpikeWithSurrogateGradientBackward>)
    >>> surrogate.derivative_function(sg.spec)(x.detach())
    tensor([0.2884, 1.0000, 0.2884])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

from snn.expr import SYMBOLIC_OPS, Expr, var
from snn.models import SurrogateSpec
from snn.surrogate._base import SurrogateFunctionBase, heaviside, torch_derivative
from snn.surrogate._piecewise import (
    FakeNumericalGradient,
    LeakyKReLU,
    LogTailedReLU,
    PiecewiseExp,
    PiecewiseLeakyReLU,
    PiecewiseQuadratic,
    Rect,
)
from snn.surrogate._smooth import (
    S2NN,
    ATan,
    Erf,
    NonzeroSignLogAbs,
    QPseudoSpike,
    Sigmoid,
    SoftSign,
    SquarewaveFourierSeries,
    SuperSpike,
)
from snn.surrogate._straight_through import DeterministicPass, MultiLevelSpikeCount, PoissonPass

__all__ = [
    "SurrogateFunctionBase",
    "heaviside",
    "Sigmoid",
    "ATan",
    "PiecewiseQuadratic",
    "PiecewiseExp",
    "SoftSign",
    "SuperSpike",
    "Erf",
    "NonzeroSignLogAbs",
    "PiecewiseLeakyReLU",
    "SquarewaveFourierSeries",
    "S2NN",
    "QPseudoSpike",
    "LeakyKReLU",
    "FakeNumericalGradient",
    "LogTailedReLU",
    "Rect",
    "DeterministicPass",
    "PoissonPass",
    "MultiLevelSpikeCount",
    "SURROGATES",
    "CLOSED_FORM_SURROGATES",
    "derivative_function",
    "derivative_expression",
    "surrogate_class",
]

_CLASSES: tuple[type[SurrogateFunctionBase], ...] = (
    Sigmoid,
    ATan,
    PiecewiseQuadratic,
    PiecewiseExp,
    SoftSign,
    SuperSpike,
    Erf,
    NonzeroSignLogAbs,
    PiecewiseLeakyReLU,
    SquarewaveFourierSeries,
    S2NN,
    QPseudoSpike,
    LeakyKReLU,
    FakeNumericalGradient,
    LogTailedReLU,
    Rect,
    DeterministicPass,
    PoissonPass,
    MultiLevelSpikeCount,
)

#: Class name -> class, for every surrogate of this module.
SURROGATES: dict[str, type[SurrogateFunctionBase]] = {cls.__name__: cls for cls in _CLASSES}

#: Names of the surrogates that fire with the Heaviside step and have a closed-form ``g(x)``:
#: the ones a neuron kernel can implement.
CLOSED_FORM_SURROGATES: tuple[str, ...] = tuple(
    cls.__name__ for cls in _CLASSES if cls.has_closed_form_derivative
)


def surrogate_class(spec: SurrogateSpec) -> type[SurrogateFunctionBase]:
    """The class ``spec`` describes: ``spec.cls``, or the :mod:`snn.surrogate` class of its name.

    Raises:
        TypeError: ``spec`` is not a SurrogateSpec, or ``spec.cls`` is not a
            :class:`SurrogateFunctionBase` subclass.
        ValueError: an unknown name.
    """
    if not isinstance(spec, SurrogateSpec):
        raise TypeError(f"spec: expected a snn.kernels.SurrogateSpec, got {type(spec).__name__}")
    if spec.cls is not None:
        if not (isinstance(spec.cls, type) and issubclass(spec.cls, SurrogateFunctionBase)):
            raise TypeError(f"spec.cls: expected an snn.surrogate.SurrogateFunctionBase subclass, got {spec.cls!r}")
        return spec.cls
    cls = SURROGATES.get(spec.name)
    if cls is None:
        raise ValueError(f"spec.name: unknown surrogate {spec.name!r}; known: {', '.join(sorted(SURROGATES))}")
    return cls


def _resolve(spec: SurrogateSpec) -> tuple[type[SurrogateFunctionBase], dict[str, float]]:
    """The class of ``spec`` and its checked parameters.

    Raises:
        TypeError: ``spec`` is not a SurrogateSpec, or a parameter has the wrong type.
        ValueError: unknown name, a surrogate without closed-form derivative, wrong parameter
            names or out-of-range values.
    """
    cls = surrogate_class(spec)
    if not cls.has_closed_form_derivative:
        raise ValueError(
            f"spec.name: surrogate {spec.name!r} has no closed-form derivative usable by kernels "
            f"(it does not fire with the Heaviside step); supported: {', '.join(CLOSED_FORM_SURROGATES)}"
        )
    names = tuple(name for name, _ in spec.params)
    if sorted(names) != sorted(cls.param_names) or len(set(names)) != len(names):
        raise ValueError(
            f"spec.params: surrogate {spec.name!r} takes parameters {cls.param_names}, got {names}"
        )
    cls._check_params(dict(spec.params))
    return cls, {name: float(value) for name, value in spec.params}


@lru_cache(maxsize=1024)
def derivative_function(spec: SurrogateSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    """The surrogate gradient ``g`` of ``spec`` as a torch function (cached per spec).

    Args:
        spec: a :class:`~snn.kernels.SurrogateSpec` of a closed-form surrogate, e.g.
            ``Sigmoid().spec``.

    Returns:
        ``g(x)`` for a floating tensor ``x`` of any shape: same shape, dtype and device
        (constant gradients are broadcast; float16 / bfloat16 are evaluated in float32).

    Raises:
        TypeError: ``spec`` is not a SurrogateSpec or a parameter has the wrong type.
        ValueError: unknown surrogate, one without closed-form derivative (``PoissonPass``,
            ``MultiLevelSpikeCount``), wrong parameter names or values.
    """
    cls, params = _resolve(spec)
    return torch_derivative(cls, tuple((name, params[name]) for name in cls.param_names))  # type: ignore[arg-type]  # mypy checks a class against Hashable through its unbound __hash__


def derivative_expression(spec: SurrogateSpec, variable: str = "x") -> Expr:
    """The surrogate gradient ``g`` of ``spec`` as an expression tree for kernel code.

    Render it with :func:`snn.expr.render` (``"triton"`` or ``"cuda"``).

    Args:
        spec: a :class:`~snn.kernels.SurrogateSpec` of a closed-form surrogate.
        variable: the name of the input variable in the tree (a Python identifier).

    Returns:
        An :class:`snn.expr.Expr`; constant gradients are a number node.

    Raises:
        TypeError: as :func:`derivative_function`.
        ValueError: as :func:`derivative_function`, or ``variable`` is not an identifier.
    """
    if not isinstance(variable, str) or not variable.isidentifier():
        raise ValueError(f"variable: expected a Python identifier, got {variable!r}")
    cls, params = _resolve(spec)
    g = cls.derivative(var(variable), SYMBOLIC_OPS, **params)
    if isinstance(g, Expr):
        return g
    number = float(g)
    if not math.isfinite(number):
        raise ValueError(f"spec: surrogate {spec.name!r} gives a non-finite constant derivative {number!r}")
    return Expr("num", (), number)
