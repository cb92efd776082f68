"""The math namespaces expressions are written against: tensors, trees and floats (:mod:`snn.expr`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from snn.expr._tree import _BOOLEAN_OPS, _FUNCTIONS, Expr, Operand, _refuse_truth_values, _wrap

__all__ = ["TorchOps", "SymbolicOps", "FloatOps", "TORCH_OPS", "SYMBOLIC_OPS", "FLOAT_OPS", "torch_ops"]


def _tensor_or_float(name: str, torch_function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A unary function of :class:`TorchOps`: torch on a tensor, :class:`FloatOps` (IEEE) on a
    number (a parameter-only argument such as ``ops.sqrt(alpha)``)."""

    def function(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return torch_function(a)
        return getattr(FloatOps, name)(float(a))

    function.__name__ = function.__qualname__ = name
    return staticmethod(function)


def _clamp(t: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    """``torch.clamp(t, low, high)`` with a number bound beyond ``t``'s range rounded to it as a
    tensor of ``t``'s dtype rounds it (``1e39`` is ``inf`` in float32; ``clamp`` refuses it)."""
    bound = float(high if low is None else low)
    if t.is_floating_point() and math.isfinite(bound) and abs(bound) > torch.finfo(t.dtype).max:
        limit = torch.tensor(bound, dtype=t.dtype, device=t.device)
        return torch.minimum(t, limit) if low is None else torch.maximum(t, limit)
    return torch.clamp(t, min=low, max=high)


class TorchOps:
    """The math namespace on tensors: the torch evaluation of an expression or derivative.

    Arguments that are plain numbers (functions of the hyper-parameters alone) are computed as
    Python floats, in double precision with IEEE results. ``dtype``: the dtype of the constant
    branches of ``where(cond, 0.3, 1.0)``, which have no tensor to take one from (``None``:
    torch's default dtype); :func:`torch_ops` gives the namespace for a dtype.
    """

    pi = math.pi

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        self.dtype = dtype

    exp = _tensor_or_float("exp", torch.exp)
    log = _tensor_or_float("log", torch.log)
    abs = _tensor_or_float("abs", torch.abs)
    sqrt = _tensor_or_float("sqrt", torch.sqrt)
    sigmoid = _tensor_or_float("sigmoid", torch.sigmoid)
    cos = _tensor_or_float("cos", torch.cos)
    sin = _tensor_or_float("sin", torch.sin)
    relu = _tensor_or_float("relu", torch.relu)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        if not isinstance(cond, torch.Tensor):  # a condition on the hyper-parameters alone
            return a if cond else b
        like = next((t for t in (a, b) if isinstance(t, torch.Tensor)), None)
        dtype = like.dtype if like is not None else self.dtype or torch.get_default_dtype()
        a = a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=dtype, device=cond.device)
        b = b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=dtype, device=cond.device)
        return torch.where(cond, a, b)

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        if not isinstance(b, torch.Tensor):
            return FloatOps.minimum(float(a), float(b)) if not isinstance(a, torch.Tensor) else _clamp(a, None, b)
        if not isinstance(a, torch.Tensor):
            return _clamp(b, None, a)
        return torch.minimum(a, b)

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        if not isinstance(b, torch.Tensor):
            return FloatOps.maximum(float(a), float(b)) if not isinstance(a, torch.Tensor) else _clamp(a, b, None)
        if not isinstance(a, torch.Tensor):
            return _clamp(b, a, None)
        return torch.maximum(a, b)

    @staticmethod
    def divide(a: Any, b: Any) -> Any:
        """``a / b``; two numbers divide as IEEE does (``1 / 0`` is inf, not an exception)."""
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return a / b
        return FloatOps.divide(float(a), float(b))

    @staticmethod
    def power(a: Any, exponent: float) -> Any:
        """``a ** exponent``; a number base follows IEEE ``pow`` (:meth:`FloatOps.power`)."""
        if isinstance(a, torch.Tensor):
            return a**exponent
        return FloatOps.power(float(a), exponent)


_TORCH_OPS_BY_DTYPE: dict[torch.dtype, TorchOps] = {}


def torch_ops(dtype: torch.dtype | None) -> TorchOps:
    """The :class:`TorchOps` namespace whose constant ``where`` branches have ``dtype``
    (``None``: :data:`TORCH_OPS`, torch's default dtype)."""
    if dtype is None:
        return TORCH_OPS
    found = _TORCH_OPS_BY_DTYPE.get(dtype)
    if found is None:
        found = _TORCH_OPS_BY_DTYPE.setdefault(dtype, TorchOps(dtype))
    return found


class SymbolicOps:
    """The math namespace on :class:`Expr`: builds the tree that backends render."""

    pi = math.pi

    def __getattr__(self, name: str) -> Any:
        if name in _FUNCTIONS:
            def function(*args: Operand) -> Expr:
                wrapped = tuple(_wrap(a) for a in args)
                _refuse_truth_values(f"ops.{name}", *wrapped)
                return Expr(name, wrapped)

            return function
        raise AttributeError(f"expression language has no function {name!r}; available: {_FUNCTIONS}")

    @staticmethod
    def where(cond: Expr, a: Operand, b: Operand) -> Expr:
        """``a`` where ``cond`` holds, else ``b``.

        Raises:
            TypeError: ``cond`` is not a truth value (a comparison, or ``&`` of comparisons):
                backends disagree on what a number as a condition means (torch refuses it, C
                and Triton read non-zero as true).
        """
        if not isinstance(cond, Expr) or cond.op not in _BOOLEAN_OPS:
            shown = f"an expression of operation {cond.op!r}" if isinstance(cond, Expr) else f"{type(cond).__name__} {cond!r}"
            raise TypeError(
                f"ops.where: cond: expected a comparison (<, <=, >, >=) or an & of comparisons, got {shown}"
            )
        branches = (_wrap(a), _wrap(b))
        _refuse_truth_values("ops.where", *branches)
        return Expr("where", (cond, *branches))


class FloatOps:
    """The math namespace on Python floats (folding numbers, parameter-only sub-expressions)."""

    pi = math.pi

    @staticmethod
    def exp(a: float) -> float:
        try:
            return math.exp(a)
        except OverflowError:
            return math.inf
    @staticmethod
    def log(a: float) -> float: return math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)
    @staticmethod
    def abs(a: float) -> float: return abs(a)
    @staticmethod
    def sqrt(a: float) -> float: return math.sqrt(a) if a >= 0 else math.nan
    @staticmethod
    def sigmoid(a: float) -> float: return 1.0 / (1.0 + math.exp(-a)) if a > -700 or a != a else 0.0
    @staticmethod
    def cos(a: float) -> float: return math.nan if math.isinf(a) else math.cos(a)
    @staticmethod
    def sin(a: float) -> float: return math.nan if math.isinf(a) else math.sin(a)
    @staticmethod
    def relu(a: float) -> float: return a if (a > 0 or a != a) else 0.0
    @staticmethod
    def where(c: bool, a: float, b: float) -> float: return a if c else b
    @staticmethod
    def minimum(a: float, b: float) -> float: return math.nan if a != a or b != b else min(a, b)
    @staticmethod
    def maximum(a: float, b: float) -> float: return math.nan if a != a or b != b else max(a, b)

    @staticmethod
    def divide(a: float, b: float) -> float:
        """``a / b`` as IEEE arithmetic gives it: ``+-inf`` for a non-zero number over zero, NaN
        for ``0 / 0`` (where Python raises ``ZeroDivisionError``)."""
        try:
            return a / b
        except ZeroDivisionError:
            if a != a or a == 0:
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)

    @staticmethod
    def power(a: float, exponent: float) -> float:
        """``a ** exponent`` as IEEE ``pow`` gives it: ``+-inf`` for zero to a negative power and
        on overflow, NaN for a negative base and a fractional exponent (Python raises or returns a
        complex number)."""
        odd = float(exponent).is_integer() and int(exponent) % 2 == 1
        try:
            result = a ** exponent
        except (ZeroDivisionError, OverflowError):
            return math.copysign(math.inf, a) if odd else math.inf
        return math.nan if isinstance(result, complex) else result


#: Evaluate derivatives on tensors.
TORCH_OPS = TorchOps()
#: Evaluate expressions on Python floats.
FLOAT_OPS = FloatOps()
#: Build expression trees.
SYMBOLIC_OPS = SymbolicOps()
