"""A tiny expression language: one source of truth for surrogate derivatives and neuron updates.

Each surrogate writes its derivative once, as a Python function of an input ``x`` and a math
namespace ``ops`` (see :class:`snn.surrogate.SurrogateFunctionBase.derivative`); each neuron
model writes its per-step update once the same way (see :mod:`snn.models`). Evaluated with
:data:`TORCH_OPS` on tensors it is plain torch math; evaluated with :data:`SYMBOLIC_OPS` on
:func:`var` it yields an :class:`Expr` tree that kernel backends render to source with
:func:`render` (dialects ``"triton"``, ``"cuda"``, ``"c"`` and ``"c64"``) or, like the torch
backend, compile to tensor operations. The kernels therefore cannot drift from the torch math.

Trees can be differentiated (:func:`diff`, following the rules autograd applies to the same
torch operations), simplified exactly (:func:`simplify`), rewritten (:func:`substitute`),
inspected (:func:`variables`, :func:`operations`) and evaluated (:func:`evaluate`).

Numbers placed in source are checked finite and printed so that they round-trip exactly
(float32 values in hexadecimal for CUDA, ``repr`` of the float32 value for Triton). No user
string ever reaches the source: variable names come from the backend, numbers are floats.

Supported operations: ``+ - * /``, unary ``-``, ``**`` with a numeric exponent, comparisons
``< <= > >=``, ``&`` on comparisons, and ``ops.exp, log, abs, sqrt, sigmoid, cos, sin, relu,
where, minimum, maximum``; the constant ``ops.pi``.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch

__all__ = [
    "Expr",
    "var",
    "num",
    "TorchOps",
    "SymbolicOps",
    "FloatOps",
    "TORCH_OPS",
    "torch_ops",
    "SYMBOLIC_OPS",
    "FLOAT_OPS",
    "render",
    "float32_literal",
    "diff",
    "simplify",
    "substitute",
    "replace_nodes",
    "nodes",
    "variables",
    "operations",
    "evaluate",
]

Operand = Union["Expr", float, int]

_FUNCTIONS = ("exp", "log", "abs", "sqrt", "sigmoid", "cos", "sin", "relu", "minimum", "maximum")


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
    def __lt__(self, o: Operand) -> Expr: return self._bin("<", o)
    def __le__(self, o: Operand) -> Expr: return self._bin("<=", o)
    def __gt__(self, o: Operand) -> Expr: return self._bin(">", o)
    def __ge__(self, o: Operand) -> Expr: return self._bin(">=", o)
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
    """A variable node (the surrogate input, a neuron state, a parameter...).

    Raises:
        ValueError: ``name`` is not a Python identifier.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected a Python identifier, got {name!r}")
    return Expr("var", (), name)


def num(value: float) -> Expr:
    """A number node (finite).

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is not finite.
    """
    return _wrap(value)


def _tensor_or_float(name: str, torch_function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A unary function of :class:`TorchOps`: torch on a tensor, :class:`FloatOps` (IEEE) on a
    number (a parameter-only argument such as ``ops.sqrt(alpha)``)."""

    def function(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return torch_function(a)
        return getattr(FloatOps, name)(float(a))

    function.__name__ = function.__qualname__ = name
    return staticmethod(function)


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
            return FloatOps.minimum(float(a), float(b)) if not isinstance(a, torch.Tensor) else torch.clamp(a, max=b)
        if not isinstance(a, torch.Tensor):
            return torch.clamp(b, max=a)
        return torch.minimum(a, b)

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        if not isinstance(b, torch.Tensor):
            return FloatOps.maximum(float(a), float(b)) if not isinstance(a, torch.Tensor) else torch.clamp(a, min=b)
        if not isinstance(a, torch.Tensor):
            return torch.clamp(b, min=a)
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
            return lambda *args: Expr(name, tuple(_wrap(a) for a in args))
        raise AttributeError(f"expression language has no function {name!r}; available: {_FUNCTIONS}")

    @staticmethod
    def where(cond: Expr, a: Operand, b: Operand) -> Expr:
        return Expr("where", (_wrap(cond), _wrap(a), _wrap(b)))


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
    def cos(a: float) -> float: return math.cos(a)
    @staticmethod
    def sin(a: float) -> float: return math.sin(a)
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


_DIALECTS = ("triton", "cuda", "c", "c64")


def float32_literal(value: float, dialect: str) -> str:
    """``value`` rounded to the dialect's precision and printed exactly.

    ``"triton"``, ``"cuda"`` and ``"c"`` compute in float32 (``repr`` of the float32 value for
    Triton, a hexadecimal ``f`` literal for C and CUDA); ``"c64"`` computes in double and prints a
    hexadecimal double literal.

    Raises:
        ValueError: the value is not finite (also after rounding), or an unknown dialect.
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"dialect: expected one of {_DIALECTS}, got {dialect!r}")
    number = float(value)
    if dialect == "c64":
        rounded = number
    else:
        rounded = struct.unpack("f", struct.pack("f", number))[0] if math.isfinite(number) else number
    if not math.isfinite(rounded):
        raise ValueError(f"value: expected a finite float32 number for kernel source, got {value!r}")
    negative_zero = rounded == 0 and math.copysign(1.0, rounded) < 0  # x / -0.0 is -inf, as in torch
    if dialect in ("cuda", "c"):
        return f"({rounded.hex()}f)" if rounded != 0 else "(-0.0f)" if negative_zero else "0.0f"
    if dialect == "c64":
        return f"({rounded.hex()})" if rounded != 0 else "(-0.0)" if negative_zero else "0.0"
    return repr(rounded)


_TRITON_FUNCS = {f: f"tl.{f}" for f in _FUNCTIONS if f not in ("relu",)}
_C32_FUNCS = {
    "exp": "expf", "log": "logf", "abs": "fabsf", "sqrt": "sqrtf", "cos": "cosf", "sin": "sinf",
    "minimum": "fminf", "maximum": "fmaxf",
}
_C64_FUNCS = {
    "exp": "exp", "log": "log", "abs": "fabs", "sqrt": "sqrt", "cos": "cos", "sin": "sin",
    "minimum": "fmin", "maximum": "fmax",
}


def render(expr: Expr, dialect: str, variables: dict[str, str] | None = None) -> str:
    """Render ``expr`` as a source expression in ``dialect``.

    Args:
        expr: the tree.
        dialect: ``"triton"`` (``tl.*`` calls inside a ``@triton.jit`` function), ``"cuda"``
            (float32 CUDA C), ``"c"`` (float32 C99) or ``"c64"`` (double C99).
        variables: variable name -> identifier to print (default: the name itself). Only the
            backend chooses identifiers.

    Returns:
        A fully parenthesised expression string. ``relu(a)`` renders as ``a < 0 ? 0 : a`` (a NaN
        stays NaN, as ``torch.relu`` keeps it). ``a ** n`` follows ``torch.pow``: ``a ** 0`` is 1,
        and an integer ``n`` keeps the sign of a negative ``a`` (small ``|n|`` as a product,
        larger even ones as ``exp(n log|a|)``, larger odd ones as ``a`` times such an even power,
        so that ``-0.0`` and infinities keep their sign too); ``a ** 0.5`` and ``a ** -0.5``
        render with ``sqrt``, as torch computes them; other non-integer ``n`` as
        ``exp(n log a)`` (NaN for a negative ``a``), with ``(-inf) ** n`` taken as
        ``inf ** n``. ``minimum`` and ``maximum``
        render as the dialect's ``fmin``/``fmax`` (``tl.minimum``/``tl.maximum``), which return
        the other operand where one is NaN: a backend that must propagate NaN as torch does
        rewrites them first (each shipped backend does).

    Raises:
        ValueError: an unknown dialect, a non-identifier variable, a non-finite number, or an
            operation the dialect cannot render.
    """
    names = variables or {}
    c_like = dialect != "triton"
    one = {"triton": "1.0", "cuda": "1.0f", "c": "1.0f", "c64": "1.0"}.get(dialect, "1.0")
    zero = {"triton": "0.0", "cuda": "0.0f", "c": "0.0f", "c64": "0.0"}.get(dialect, "0.0")

    exp_f, log_f, abs_f, sqrt_f = {
        "triton": ("tl.exp", "tl.log", "tl.abs", "tl.sqrt"), "c64": ("exp", "log", "fabs", "sqrt")
    }.get(dialect, ("expf", "logf", "fabsf", "sqrtf"))

    def power(base: str, exponent: float) -> str:
        # torch.pow semantics: x ** 0 is 1 (NaN included); a negative base with an integer
        # exponent keeps its sign, where exp(n log x) would be NaN.
        if exponent == 0:
            return one
        if abs(exponent) == 0.5:  # torch.pow takes sqrt here: NaN at -inf, and -0.0 stays -0.0
            root = f"{sqrt_f}({base})"
            return root if exponent > 0 else f"({one} / {root})"
        if not exponent.is_integer():
            # -inf to a non-integer power is +inf (positive) or +0 (negative), as for +inf, where
            # log(-inf) is NaN: -inf, the one negative x with x + x == x, is taken as +inf
            negative_inf = f"(({base} + {base}) == {base}) {'&&' if c_like else '&'} ({base} < {zero})"
            magnitude = f"({negative_inf} ? (-{base}) : {base})" if c_like else f"tl.where({negative_inf}, -{base}, {base})"
            return f"{exp_f}({float32_literal(exponent, dialect)} * {log_f}({magnitude}))"
        if abs(exponent) <= 4:
            product = " * ".join([base] * int(abs(exponent)))
            return f"({product})" if exponent > 0 else f"({one} / ({product}))"
        if int(exponent) % 2 == 0:
            return f"{exp_f}({float32_literal(exponent, dialect)} * {log_f}({abs_f}({base})))"
        # odd: the base times an even power keeps its sign, -0.0 and infinities included
        even = f"{exp_f}({float32_literal(abs(exponent) - 1.0, dialect)} * {log_f}({abs_f}({base})))"
        return f"({base} * {even})" if exponent > 0 else f"({one} / ({base} * {even}))"

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
            joiner = "&&" if c_like else "&"
            return f"({go(e.args[0])} {joiner} {go(e.args[1])})"
        if op == "where":
            c, a, b = (go(x) for x in e.args)
            return f"({c} ? {a} : {b})" if c_like else f"tl.where({c}, {a}, {b})"
        if op == "relu":
            a = go(e.args[0])
            return f"(({a} < {zero}) ? {zero} : {a})" if c_like else f"tl.where({a} < {zero}, {zero}, {a})"
        if op == "pow":
            return power(go(e.args[0]), float(e.value))
        if op == "sigmoid" and c_like:
            return f"({one} / ({one} + {exp_f}(-{go(e.args[0])})))"
        table = _TRITON_FUNCS if dialect == "triton" else _C64_FUNCS if dialect == "c64" else _C32_FUNCS
        if op in table:
            return f"{table[op]}({', '.join(go(a) for a in e.args)})"
        raise ValueError(f"expression: cannot render operation {op!r} in dialect {dialect!r}")

    if dialect not in _DIALECTS:
        raise ValueError(f"dialect: expected one of {_DIALECTS}, got {dialect!r}")
    return go(expr)


# ---------------------------------------------------------------------------------------------
# calculus and rewriting
# ---------------------------------------------------------------------------------------------

#: Operations whose value is a truth value (their derivative is zero everywhere).
_BOOLEAN_OPS = frozenset({"<", "<=", ">", ">=", "and"})


def _is_num(e: Expr | None, value: float | None = None) -> bool:
    return e is not None and e.op == "num" and (value is None or e.value == value)


def nodes(expr: Expr) -> Iterator[Expr]:
    """Every distinct node of ``expr`` once (a shared subtree is visited once), in no set order."""
    seen: set[int] = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(e.args)


def variables(expr: Expr) -> frozenset[str]:
    """The names of the variables in ``expr``.

    The answer is kept on every node it visits (expressions are immutable), so that asking
    for each node of a tree in turn, as the compilers do, costs time linear in its size.
    """
    known = expr.__dict__.get("_variables")
    if known is not None:
        return known
    stack: list[tuple[Expr, bool]] = [(expr, False)]
    while stack:
        e, children_known = stack.pop()
        if "_variables" in e.__dict__:
            continue
        if not children_known:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if "_variables" not in a.__dict__)
            continue
        if e.op == "var":
            found: frozenset[str] = frozenset((e.value,))
        else:
            found = frozenset().union(*(a.__dict__["_variables"] for a in e.args))
        object.__setattr__(e, "_variables", found)  # a cache, not a field: equality ignores it
    return expr.__dict__["_variables"]


def operations(expr: Expr) -> frozenset[str]:
    """The operations ``expr`` uses (``"num"`` and ``"var"`` excluded), e.g. ``{"+", "exp"}``."""
    return frozenset(e.op for e in nodes(expr) if e.op not in ("num", "var"))


def substitute(expr: Expr, mapping: Mapping[str, Operand]) -> Expr:
    """``expr`` with every variable named in ``mapping`` replaced by its expression or number.

    Shared subtrees stay shared (the result is a DAG like the input).
    """
    replaced = {name: _wrap(value) for name, value in mapping.items()}
    memo: dict[int, Expr] = {}

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        if e.op == "var":
            out = replaced.get(e.value, e)
        elif not e.args:
            out = e
        else:
            args = tuple(go(a) for a in e.args)
            out = e if all(a is b for a, b in zip(args, e.args)) else Expr(e.op, args, e.value)
        memo[id(e)] = out
        return out

    return go(expr)


def replace_nodes(expr: Expr, mapping: Mapping[int, Expr]) -> Expr:
    """``expr`` with every node whose ``id`` is a key of ``mapping`` replaced by its value.

    Used to let a derivative read a value a kernel already has (a charged state) instead of
    recomputing the sub-expression that defines it.
    """
    memo: dict[int, Expr] = {}

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        out = mapping.get(id(e))
        if out is None:
            if e.args:
                args = tuple(go(a) for a in e.args)
                out = e if all(a is b for a, b in zip(args, e.args)) else Expr(e.op, args, e.value)
            else:
                out = e
        memo[id(e)] = out
        return out

    return go(expr)


def _fold(op: str, values: tuple[float, ...], exponent: Any) -> float | None:
    """The value of ``op`` on numbers (in double precision), or ``None`` when it is not a finite
    float (or ``op`` has no number value, like a comparison)."""
    if op in _BOOLEAN_OPS or op == "where":
        return None
    node = Expr(op, tuple(Expr("num", (), v) for v in values), exponent)
    try:
        result = evaluate(node, {}, FLOAT_OPS)
    except (ArithmeticError, ValueError, TypeError):
        return None
    if isinstance(result, complex) or not isinstance(result, float) or not math.isfinite(result):
        return None
    return result


def simplify(expr: Expr, finite: frozenset[str] | set[str] = frozenset()) -> Expr:
    """An equivalent, smaller tree: numbers folded and neutral elements dropped.

    Every rewrite gives the same value for every input, NaN and infinities included, except
    for the sign of a zero: ``a + 0``, ``a - 0``, ``a * 1``, ``a / 1``, ``a ** 1`` become ``a``;
    ``a ** 0`` becomes 1; ``0 - a`` and ``a * -1`` become ``-a``; ``--a`` becomes ``a``;
    operations on numbers are folded (in double precision). ``a * 0`` becomes 0 only when ``a``
    cannot be NaN or infinite: a number, or a variable named in ``finite`` (e.g. a spike, which
    is 0 or 1), or a product/sum of those. IEEE arithmetic gives ``-0 + 0 = +0``, ``0 - 0 = +0``
    and ``-2 * 0 = -0``, where the rewritten trees give ``-0``, ``-0`` and ``+0``: a state can
    hold ``-0`` where a plain loop holds ``+0`` (equal values; comparisons, spikes and
    gradients do not see the sign, a division by that zero would). Keeping the operations
    instead would cost every backend an extra pass where a reset potential or a
    hyper-parameter is 0.

    Args:
        expr: the tree.
        finite: names of variables known to be finite.
    """
    finite_names = frozenset(finite)
    memo: dict[int, Expr] = {}
    finite_memo: dict[int, bool] = {}

    def is_finite(e: Expr) -> bool:
        """Whether ``e`` is surely finite: numbers, finite variables, truth values, and
        negations, selections and sums/products of at most one such non-number with numbers."""
        found = finite_memo.get(id(e))
        if found is None:
            if e.op == "num" or e.op in _BOOLEAN_OPS:
                found = True
            elif e.op == "var":
                found = e.value in finite_names
            elif e.op == "neg":
                found = is_finite(e.args[0])
            elif e.op == "where":
                found = is_finite(e.args[1]) and is_finite(e.args[2])
            elif e.op in ("+", "-", "*"):
                found = all(is_finite(a) for a in e.args) and sum(a.op != "num" for a in e.args) <= 1
            else:
                found = False
            finite_memo[id(e)] = found
        return found

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        out = e
        if e.args:
            args = tuple(go(a) for a in e.args)
            if all(a.op == "num" for a in args):
                folded = _fold(e.op, tuple(a.value for a in args), e.value)
                if folded is not None:
                    out = Expr("num", (), folded)
                    memo[id(e)] = out
                    return out
            rewritten = _rewrite(e.op, args, e.value, is_finite)
            if rewritten is not None:
                out = rewritten
            elif not all(a is b for a, b in zip(args, e.args)):
                out = Expr(e.op, args, e.value)
        memo[id(e)] = out
        return out

    return go(expr)


def _rewrite(op: str, args: tuple[Expr, ...], value: Any, is_finite: Callable[[Expr], bool]) -> Expr | None:
    """One exact local rewrite of ``op(args)`` (children already simplified), or ``None``."""
    if op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    if op in ("+", "-", "*", "/"):
        a, b = args
        if op == "+":
            if _is_num(b, 0.0):
                return a
            if _is_num(a, 0.0):
                return b
            if b.op == "neg":  # a + (-b) is a - b, exactly
                return Expr("-", (a, b.args[0]))
        elif op == "-":
            if _is_num(b, 0.0):
                return a
            if _is_num(a, 0.0):
                return Expr("neg", (b,))
        elif op == "*":
            for x, y in ((a, b), (b, a)):
                if _is_num(x, 1.0):
                    return y
                if _is_num(x, -1.0):
                    return Expr("neg", (y,))
                if _is_num(x, 0.0) and is_finite(y):
                    return Expr("num", (), 0.0)
        elif op == "/" and _is_num(b, 1.0):
            return a
    if op == "pow":
        if value == 0.0:  # torch.pow(x, 0) is 1 for every x, NaN included
            return Expr("num", (), 1.0)
        if value == 1.0:
            return args[0]
    return None


def diff(expr: Expr, name: str) -> Expr | None:
    """The derivative of ``expr`` with respect to variable ``name``, or ``None`` where it is zero.

    Follows what autograd computes for the same torch operations, so that a kernel built from
    the derivative matches autograd through the torch evaluation: a term that does not depend on
    ``name`` contributes nothing (not ``0 * term``, which would turn a NaN into a NaN gradient
    where autograd has none); ``a / b`` gives ``da / b - a db / (b b)``; ``relu(a)`` passes the
    gradient where ``a > 0``; ``maximum(a, c)`` with a number ``c`` (``clamp``) where ``a >= c``;
    comparisons have no gradient; ``where(c, a, b)`` routes it. The result is simplified.

    Raises:
        ValueError: an operation without a derivative rule.
    """
    memo: dict[int, Expr | None] = {}

    def add(a: Expr | None, b: Expr | None) -> Expr | None:
        if a is None:
            return b
        if b is None:
            return a
        return a + b

    def mul(a: Expr | None, b: Expr) -> Expr | None:
        return None if a is None else a * b

    def go(e: Expr) -> Expr | None:
        if id(e) in memo:
            return memo[id(e)]
        op = e.op
        out: Expr | None
        if op == "num" or op in _BOOLEAN_OPS:
            out = None
        elif op == "var":
            out = Expr("num", (), 1.0) if e.value == name else None
        else:
            d = [go(a) for a in e.args]
            a = e.args[0]
            if op == "neg":
                out = None if d[0] is None else -d[0]
            elif op == "+":
                out = add(d[0], d[1])
            elif op == "-":
                out = d[0] if d[1] is None else (-d[1] if d[0] is None else d[0] - d[1])
            elif op == "*":
                b = e.args[1]
                out = add(mul(d[0], b), None if d[1] is None else a * d[1])
            elif op == "/":
                b = e.args[1]
                out = add(None if d[0] is None else d[0] / b, None if d[1] is None else -(a * d[1]) / (b * b))
            elif op == "pow":
                n = float(e.value)
                # x ** 0 is the constant 1 (torch.pow), whose derivative is 0 even at x = 0.
                out = None if n == 0.0 else mul(d[0], n * a ** (n - 1.0)) if n != 1.0 else d[0]
            elif op == "exp":
                out = mul(d[0], e)
            elif op == "log":
                out = None if d[0] is None else d[0] / a
            elif op == "sqrt":
                out = None if d[0] is None else d[0] / (2.0 * e)
            elif op == "sigmoid":
                out = mul(d[0], e * (1.0 - e))
            elif op == "cos":
                out = None if d[0] is None else -(d[0] * Expr("sin", (a,)))
            elif op == "sin":
                out = mul(d[0], Expr("cos", (a,)))
            elif op == "abs":
                sign = Expr("where", (a < 0.0, _wrap(-1.0), Expr("where", (a > 0.0, _wrap(1.0), _wrap(0.0)))))
                out = mul(d[0], sign)
            elif op == "relu":
                # relu(a) > 0 exactly where a > 0 (NaN included): testing the node itself lets a
                # kernel read its saved value instead of recomputing a
                out = None if d[0] is None else Expr("where", (e > 0.0, d[0], _wrap(0.0)))
            elif op == "where":
                da, db = d[1], d[2]
                out = None if da is None and db is None else Expr(
                    "where", (e.args[0], da if da is not None else _wrap(0.0), db if db is not None else _wrap(0.0))
                )
            elif op in ("minimum", "maximum"):
                out = _diff_extremum(op, e.args, d)
            else:
                raise ValueError(f"expression: no derivative rule for operation {op!r}")
        memo[id(e)] = out
        return out

    result = go(expr)
    return None if result is None else simplify(result)


def _diff_extremum(op: str, args: tuple[Expr, ...], d: list[Expr | None]) -> Expr | None:
    """``d minimum(a, b)`` / ``d maximum(a, b)`` as torch computes it (clamp with a number)."""
    a, b = args
    da, db = d
    zero = _wrap(0.0)
    if b.op == "num" or a.op == "num":  # clamp: the gradient passes where the bound holds
        t, dt, c = (a, da, b) if b.op == "num" else (b, db, a)
        if dt is None:
            return None
        keep = (t <= c) if op == "minimum" else (t >= c)
        return Expr("where", (keep, dt, zero))
    if da is None and db is None:
        return None
    da_, db_ = da if da is not None else zero, db if db is not None else zero
    first = (a < b) if op == "minimum" else (a > b)
    second = (b < a) if op == "minimum" else (b > a)
    return Expr("where", (first, da_, Expr("where", (second, db_, 0.5 * (da_ + db_)))))


def evaluate(expr: Expr, env: Mapping[str, Any], ops: Any = None) -> Any:
    """The value of ``expr`` with variables from ``env``, computed with ``ops`` (default torch).

    Shared subtrees are evaluated once.

    Args:
        expr: the tree.
        env: variable name -> value (tensors or numbers).
        ops: the math namespace (default: :func:`torch_ops` of the promoted dtype of the floating
            tensors in ``env``, so that constants of ``where`` have the inputs' precision).

    Raises:
        KeyError: a variable of ``expr`` is missing from ``env``.
    """
    if ops is None:
        dtype = None
        for value in env.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                dtype = value.dtype if dtype is None else torch.promote_types(dtype, value.dtype)
        math_ops = torch_ops(dtype)
    else:
        math_ops = ops
    # a namespace may define IEEE division and power (FloatOps: Python raises where IEEE does not)
    divide = getattr(math_ops, "divide", operator.truediv)
    power = getattr(math_ops, "power", operator.pow)
    memo: dict[int, Any] = {}

    def go(e: Expr) -> Any:
        if id(e) in memo:
            return memo[id(e)]
        op = e.op
        if op == "num":
            out = e.value
        elif op == "var":
            if e.value not in env:
                raise KeyError(f"expression: no value for variable {e.value!r}")
            out = env[e.value]
        else:
            args = [go(a) for a in e.args]
            if op == "neg":
                out = -args[0]
            elif op == "+":
                out = args[0] + args[1]
            elif op == "-":
                out = args[0] - args[1]
            elif op == "*":
                out = args[0] * args[1]
            elif op == "/":
                out = divide(args[0], args[1])
            elif op == "<":
                out = args[0] < args[1]
            elif op == "<=":
                out = args[0] <= args[1]
            elif op == ">":
                out = args[0] > args[1]
            elif op == ">=":
                out = args[0] >= args[1]
            elif op == "and":
                out = args[0] & args[1]
            elif op == "pow":
                out = power(args[0], e.value)
            elif op == "where":
                out = math_ops.where(*args)
            else:
                out = getattr(math_ops, op)(*args)
        memo[id(e)] = out
        return out

    return go(expr)
