"""Calculus on expression trees: simplification, differentiation, evaluation (:mod:`snn.expr`)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch

from snn.expr._ops import FLOAT_OPS, torch_ops
from snn.expr._tree import _BOOLEAN_OPS, Expr, _is_num, _wrap, variables

__all__ = ["simplify", "diff", "evaluate"]

#: Bounds at most this large cannot round to infinity in float32 (its largest value is
#: ``(2 - 2**-23) * 2**127``; each rounding moves a value by at most half an ulp).
_FLOAT32_SAFE = 2.0**127


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
    cannot be NaN or infinite in float32 or float64: when a bound on ``|a|`` below float32's
    largest value follows from its numbers, the variables named in ``finite`` (each at most 1 in
    magnitude, e.g. a spike, 0 or 1) and truth values, through negations, selections, sums and
    products (``(s * 1e30 * 1e30) * 0`` stays: the product overflows to infinity in float32).
    IEEE arithmetic gives ``-0 + 0 = +0``, ``0 - 0 = +0`` and ``-2 * 0 = -0``, where the rewritten trees give ``-0``, ``-0`` and ``+0``: a state can
    hold ``-0`` where a plain loop holds ``+0`` (equal values; comparisons, spikes and
    gradients do not see the sign, a division by that zero would). Keeping the operations
    instead would cost every backend an extra pass where a reset potential or a
    hyper-parameter is 0.

    Args:
        expr: the tree.
        finite: names of variables whose values lie in ``[-1, 1]`` (spikes, masks).
    """
    finite_names = frozenset(finite)
    memo: dict[int, Expr] = {}
    bound_memo: dict[int, float] = {}

    def bound(e: Expr) -> float:
        """An upper bound on ``|e|`` for every input (``inf`` where none is known): numbers,
        truth values (1) and the ``finite`` variables (1), through negations, selections, sums,
        differences and products."""
        found = bound_memo.get(id(e))
        if found is None:
            if e.op == "num":
                found = abs(float(e.value)) if math.isfinite(float(e.value)) else math.inf
            elif e.op in _BOOLEAN_OPS:
                found = 1.0
            elif e.op == "var":
                found = 1.0 if e.value in finite_names else math.inf
            elif e.op == "neg":
                found = bound(e.args[0])
            elif e.op == "where":
                found = max(bound(e.args[1]), bound(e.args[2]))
            elif e.op in ("+", "-"):
                found = bound(e.args[0]) + bound(e.args[1])
            elif e.op == "*":
                found = bound(e.args[0]) * bound(e.args[1])
                if math.isnan(found):  # 0 times an unbounded operand: unbounded (inf * 0 is NaN)
                    found = math.inf
            else:
                found = math.inf
            bound_memo[id(e)] = found
        return found

    def is_finite(e: Expr) -> bool:
        """Whether ``e`` is surely finite when evaluated in float32 (and so in float64): its
        bound is below float32's largest value with room for the rounding of every step."""
        return bound(e) <= _FLOAT32_SAFE

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
    """One exact local rewrite of ``op(args)`` (children already simplified), or ``None``.

    A comparison is a truth value until arithmetic makes it a number (``(x > 0) * 1.0``
    evaluates to 0.0 / 1.0, ``x > 0`` to a bool; the operators refuse such trees, but one built
    node by node can hold them): a rewrite that would leave a comparison where a number was is
    not made.
    """
    if op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    if op in ("+", "-", "*", "/"):
        a, b = args
        if a.op in _BOOLEAN_OPS or b.op in _BOOLEAN_OPS:
            if op == "*" and ((_is_num(a, 0.0) and is_finite(b)) or (_is_num(b, 0.0) and is_finite(a))):
                return Expr("num", (), 0.0)
            return None
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
        if value == 1.0 and args[0].op not in _BOOLEAN_OPS:
            return args[0]
    return None


def diff(expr: Expr, name: str) -> Expr | None:
    """The derivative of ``expr`` with respect to variable ``name``, or ``None`` where it is zero.

    Follows what autograd computes for the same torch operations, so that a kernel built from
    the derivative matches autograd through the torch evaluation: a term that does not depend on
    ``name`` contributes nothing (not ``0 * term``, which would turn a NaN into a NaN gradient
    where autograd has none); ``a / b`` gives ``da / b - db (a / b) / b``; ``relu(a)`` passes the
    gradient where ``a > 0``; ``maximum(a, c)`` with a number ``c`` (``clamp``) where ``a >= c``;
    comparisons have no gradient; ``where(c, a, b)`` routes it. The result is simplified.

    Two differences from autograd remain, both where values are not finite. The derivative is
    a product built from the leaves up, where autograd masks from the root down: where a
    branch that ``where`` or ``relu`` masks out has an infinite derivative (``sqrt(relu(x))``
    at ``x <= 0``) the product is NaN where autograd gives 0 (and ``where(x > 0, sqrt(x), 0)``
    the other way round). And at a NaN operand ``relu`` passes no gradient, and
    ``minimum`` / ``maximum`` of two expressions split it, where autograd passes it whole.

    Raises:
        TypeError: ``expr`` is not an :class:`Expr`, or ``name`` is not a variable's name (a
            ``str``; pass ``"x"``, not the expression ``var("x")``).
        ValueError: an operation without a derivative rule.
    """
    if not isinstance(expr, Expr):
        raise TypeError(f"diff: expr: expected an Expr, got {type(expr).__name__}")
    if not isinstance(name, str):
        hint = f" (the variable's name is {name.value!r})" if isinstance(name, Expr) and name.op == "var" else ""
        raise TypeError(f"diff: name: expected the name of a variable (a str), got {type(name).__name__}{hint}")
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
                # d (a / b) / db as autograd computes it, (a / b) / b: a / (b b) overflows or
                # underflows where |b| is beyond about 1e19 or below 1e-19 in float32
                out = add(None if d[0] is None else d[0] / b, None if d[1] is None else -(d[1] * (e / b)))
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
    # clamp (a bound without variables, which torch evaluates as a number): the gradient passes
    # where the bound holds
    if not variables(b) or not variables(a):
        t, dt, c = (a, da, b) if not variables(b) else (b, db, a)
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
