"""A tiny expression language: one source of truth for surrogate derivatives.

Each surrogate writes its derivative once, as a Python function of an input ``x`` and a math
namespace ``ops`` (see :class:`snn.surrogate.SurrogateFunctionBase.derivative`). Evaluated
with :data:`TORCH_OPS` on a tensor it is the torch backward; evaluated with
:data:`SYMBOLIC_OPS` on :func:`var` it yields an :class:`Expr` tree that kernel backends
render to source with :func:`render` (dialects ``"triton"`` and ``"cuda"``). The rendered
source therefore cannot drift from the torch math.

Numbers placed in source are checked finite and printed so that they round-trip exactly
(float32 values in hexadecimal for CUDA, ``repr`` of the float32 value for Triton). No user
string ever reaches the source: variable names come from the backend, numbers are floats.

Supported operations: ``+ - * /``, unary ``-``, ``**`` with a numeric exponent, comparisons
``< <= > >=``, ``&`` on comparisons, and ``ops.exp, log, abs, sqrt, sigmoid, cos, where,
minimum, maximum``; the constant ``ops.pi``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Union

import torch

__all__ = ["Expr", "var", "TorchOps", "SymbolicOps", "TORCH_OPS", "SYMBOLIC_OPS", "render", "float32_literal"]

Operand = Union["Expr", float, int]

_FUNCTIONS = ("exp", "log", "abs", "sqrt", "sigmoid", "cos", "minimum", "maximum")


def _wrap(value: Operand) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expression operand: expected an Expr or a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expression operand: numbers must be finite, got {number!r}")
    return Expr("num", (), number)


@dataclass(frozen=True)
class Expr:
    """A node of the expression tree.

    Attributes:
        op: ``"num"``, ``"var"``, ``"neg"``, a binary operator (``"+" "-" "*" "/"``), a
            comparison (``"<" "<=" ">" ">="``), ``"and"``, ``"where"``, ``"pow"`` or a
            function name of :data:`_FUNCTIONS`.
        args: child nodes.
        value: the number (``"num"``), the variable name (``"var"``) or the exponent (``"pow"``).
    """

    op: str
    args: tuple[Expr, ...] = ()
    value: Any = None

    def _bin(self, op: str, other: Operand, reverse: bool = False) -> Expr:
        a, b = (_wrap(other), self) if reverse else (self, _wrap(other))
        return Expr(op, (a, b))

    def __add__(self, o: Operand) -> Expr: return self._bin("+", o)
    def __radd__(self, o: Operand) -> Expr: return self._bin("+", o, True)
    def __sub__(self, o: Operand) -> Expr: return self._bin("-", o)
    def __rsub__(self, o: Operand) -> Expr: return self._bin("-", o, True)
    def __mul__(self, o: Operand) -> Expr: return self._bin("*", o)
    def __rmul__(self, o: Operand) -> Expr: return self._bin("*", o, True)
    def __truediv__(self, o: Operand) -> Expr: return self._bin("/", o)
    def __rtruediv__(self, o: Operand) -> Expr: return self._bin("/", o, True)
    def __lt__(self, o: Operand) -> Expr: return self._bin("<", o)  # type: ignore[override]
    def __le__(self, o: Operand) -> Expr: return self._bin("<=", o)  # type: ignore[override]
    def __gt__(self, o: Operand) -> Expr: return self._bin(">", o)  # type: ignore[override]
    def __ge__(self, o: Operand) -> Expr: return self._bin(">=", o)  # type: ignore[override]
    def __and__(self, o: Expr) -> Expr: return Expr("and", (self, _wrap(o)))
    def __neg__(self) -> Expr: return Expr("neg", (self,))

    def __pow__(self, exponent: float) -> Expr:
        if isinstance(exponent, Expr):
            raise TypeError("expression power: the exponent must be a number, not an expression")
        return Expr("pow", (self,), float(_wrap(exponent).value))

    def __bool__(self) -> bool:
        raise TypeError("an expression has no truth value: use ops.where(condition, a, b)")

    __hash__ = object.__hash__


def var(name: str = "x") -> Expr:
    """A variable node (the surrogate input)."""
    return Expr("var", (), name)


class TorchOps:
    """The math namespace on tensors: the torch evaluation of a derivative."""

    pi = math.pi

    @staticmethod
    def exp(a: torch.Tensor) -> torch.Tensor: return torch.exp(a)
    @staticmethod
    def log(a: torch.Tensor) -> torch.Tensor: return torch.log(a)
    @staticmethod
    def abs(a: torch.Tensor) -> torch.Tensor: return torch.abs(a)
    @staticmethod
    def sqrt(a: torch.Tensor) -> torch.Tensor: return torch.sqrt(a)
    @staticmethod
    def sigmoid(a: torch.Tensor) -> torch.Tensor: return torch.sigmoid(a)
    @staticmethod
    def cos(a: torch.Tensor) -> torch.Tensor: return torch.cos(a)

    @staticmethod
    def where(cond: torch.Tensor, a: Any, b: Any) -> torch.Tensor:
        like = next((t for t in (a, b) if isinstance(t, torch.Tensor)), None)
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        a = a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=dtype, device=cond.device)
        b = b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=dtype, device=cond.device)
        return torch.where(cond, a, b)

    @staticmethod
    def minimum(a: Any, b: Any) -> torch.Tensor:
        if not isinstance(b, torch.Tensor):
            return torch.clamp(a, max=b)
        if not isinstance(a, torch.Tensor):
            return torch.clamp(b, max=a)
        return torch.minimum(a, b)

    @staticmethod
    def maximum(a: Any, b: Any) -> torch.Tensor:
        if not isinstance(b, torch.Tensor):
            return torch.clamp(a, min=b)
        if not isinstance(a, torch.Tensor):
            return torch.clamp(b, min=a)
        return torch.maximum(a, b)


class SymbolicOps:
    """The math namespace on :class:`Expr`: builds the tree that backends render."""

    pi = math.pi

    def __getattr__(self, name: str) -> Any:
        if name in _FUNCTIONS:
            return lambda *args: Expr(name, tuple(_wrap(a) for a in args))
        raise AttributeError(f"expression language has no function {name!r}; available: {_FUNCTIONS}")

    @staticmethod
    def where(cond: Expr, a: Operand, b: Operand) -> Expr:
        return Expr("where", (_wrap(cond), _wrap(a), _wrap(b)))


#: Evaluate derivatives on tensors.
TORCH_OPS = TorchOps()
#: Build expression trees.
SYMBOLIC_OPS = SymbolicOps()


def float32_literal(value: float, dialect: str) -> str:
    """``value`` rounded to float32 and printed exactly for ``dialect`` (``"triton"``/``"cuda"``).

    Raises:
        ValueError: the value is not finite (also after rounding to float32).
    """
    number = float(value)
    rounded = struct.unpack("f", struct.pack("f", number))[0] if math.isfinite(number) else number
    if not math.isfinite(rounded):
        raise ValueError(f"value: expected a finite float32 number for kernel source, got {value!r}")
    if dialect == "cuda":
        return f"({rounded.hex()}f)" if rounded != 0 else "0.0f"
    if dialect == "triton":
        return repr(rounded)
    raise ValueError(f"dialect: expected 'triton' or 'cuda', got {dialect!r}")


_TRITON_FUNCS = {f: f"tl.{f}" for f in _FUNCTIONS}
_CUDA_FUNCS = {
    "exp": "expf", "log": "logf", "abs": "fabsf", "sqrt": "sqrtf", "cos": "cosf",
    "minimum": "fminf", "maximum": "fmaxf",
}


def render(expr: Expr, dialect: str, variables: dict[str, str] | None = None) -> str:
    """Render ``expr`` as a source expression in ``dialect``.

    Args:
        expr: the tree.
        dialect: ``"triton"`` (``tl.*`` calls inside a ``@triton.jit`` function) or
            ``"cuda"`` (float32 CUDA C).
        variables: variable name -> identifier to print (default: the name itself). Only the
            backend chooses identifiers.

    Returns:
        A fully parenthesised expression string.
    """
    names = variables or {}

    def go(e: Expr) -> str:
        op = e.op
        if op == "num":
            return float32_literal(e.value, dialect)
        if op == "var":
            ident = names.get(e.value, e.value)
            if not str(ident).isidentifier():
                raise ValueError(f"variables: expected identifiers, got {ident!r}")
            return str(ident)
        if op == "neg":
            return f"(-{go(e.args[0])})"
        if op in {"+", "-", "*", "/", "<", "<=", ">", ">="}:
            return f"({go(e.args[0])} {op} {go(e.args[1])})"
        if op == "and":
            joiner = "&" if dialect == "triton" else "&&"
            return f"({go(e.args[0])} {joiner} {go(e.args[1])})"
        if op == "where":
            c, a, b = (go(x) for x in e.args)
            return f"tl.where({c}, {a}, {b})" if dialect == "triton" else f"({c} ? {a} : {b})"
        if op == "pow":
            base = go(e.args[0])
            exponent = e.value
            if float(exponent).is_integer() and 0 < abs(exponent) <= 4:
                product = " * ".join([base] * int(abs(exponent)))
                return f"({product})" if exponent > 0 else f"(1.0 / ({product}))" if dialect == "triton" else f"(1.0f / ({product}))"
            lit = float32_literal(exponent, dialect)
            return f"tl.exp({lit} * tl.log({base}))" if dialect == "triton" else f"expf({lit} * logf({base}))"
        if op == "sigmoid" and dialect == "cuda":
            return f"(1.0f / (1.0f + expf(-{go(e.args[0])})))"
        table = _TRITON_FUNCS if dialect == "triton" else _CUDA_FUNCS
        if op in table:
            return f"{table[op]}({', '.join(go(a) for a in e.args)})"
        raise ValueError(f"expression: cannot render operation {op!r} in dialect {dialect!r}")

    if dialect not in {"triton", "cuda"}:
        raise ValueError(f"dialect: expected 'triton' or 'cuda', got {dialect!r}")
    return go(expr)
