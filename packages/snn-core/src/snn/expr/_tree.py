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
        _refuse_truth_values(op, a, b)
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

    def __and__(self, o: Expr) -> Expr:
        other = _wrap(o)
        if self.op not in _BOOLEAN_OPS or other.op not in _BOOLEAN_OPS:
            raise TypeError(
                "expression '&': expected two truth values (comparisons, or & of comparisons), got operations "
                f"{self.op!r} and {other.op!r}"
            )
        return Expr("and", (self, other))

    def __neg__(self) -> Expr:
        _refuse_truth_values("-", self)
        return Expr("neg", (self,))

    def __pow__(self, exponent: float) -> Expr:
        if isinstance(exponent, Expr):
            raise TypeError("expression power: the exponent must be a number, not an expression")
        _refuse_truth_values("**", self)
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


def _refuse_truth_values(op: str, *operands: Expr) -> None:
    """Raise ``TypeError`` when an operand of ``op`` (arithmetic, a comparison, a function, a
    selection's branch) is a truth value. A truth value is a condition, never a number: torch
    computes ``bool * 0.1`` in its default dtype and refuses ``1 - bool``, C counts ``2`` for
    ``(a > 0) + (b > 0)`` where torch gives a logical or and Triton's 1-bit integers wrap to 0,
    and Triton's ``exp`` refuses a 1-bit integer, so no meaning holds on every backend."""
    if any(e.op in _BOOLEAN_OPS for e in operands):
        raise TypeError(
            f"expression {op!r}: an operand is a truth value (a comparison); truth values are conditions of "
            "ops.where only: write ops.where(cond, 1.0, 0.0) for its 0 or 1 (e.g. ops.where(x > 0.3, 0.25, 0.0) "
            "instead of (x > 0.3) * 0.25)"
        )


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
