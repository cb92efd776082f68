"""Expression trees: the nodes, their constructors, and walks over them (:mod:`snn.expr`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Expr", "Operand", "var", "num", "nodes", "variables", "operations", "substitute", "replace_nodes"]

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
        if op in ("+", "-", "/") and a.op in _BOOLEAN_OPS and b.op in _BOOLEAN_OPS:
            raise TypeError(
                f"expression: {op!r} of two truth values (comparisons): the backends disagree on its value "
                "(torch: a logical or, C: 0, 1 or 2, Triton: wraps to 0 or 1); count with numbers, e.g. "
                "ops.where(a > 0, 1.0, 0.0) + ops.where(b > 0, 1.0, 0.0)"
            )
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
    def __neg__(self) -> Expr:
        if self.op in _BOOLEAN_OPS:
            raise TypeError(
                "expression: '-' of a truth value (a comparison): torch refuses it and Triton negates a 1-bit "
                "integer; write ops.where(cond, -1.0, 0.0)"
            )
        return Expr("neg", (self,))

    def __pow__(self, exponent: float) -> Expr:
        if isinstance(exponent, Expr):
            raise TypeError("expression power: the exponent must be a number, not an expression")
        return Expr("pow", (self,), float(_wrap(exponent).value))

    def __bool__(self) -> bool:
        raise TypeError("an expression has no truth value: use ops.where(condition, a, b)")

    def __eq__(self, other: object) -> bool:
        """Structural equality of two trees. With a number it raises ``TypeError``: ``v == 0``
        would be a Python bool (a constant in the model's math), not an element-wise test."""
        if isinstance(other, Expr):
            return (self.op, self.value, self.args) == (other.op, other.value, other.args)
        if isinstance(other, numbers.Number) or type(other).__module__.startswith("torch"):  # a tensor too
            raise TypeError(
                "expression ==/!= number: expressions compare element-wise with <, <=, > and >= only "
                "(== would give a Python bool, a constant); write ops.where((a >= b) & (a <= b), 1.0, 0.0)"
            )
        return NotImplemented

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
