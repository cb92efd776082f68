"""From a kernel plan's expressions to CUDA C expressions.

Three steps, each exact (the kernel computes what the torch backend computes, NaN and
infinities included):

- **identifiers**: the plan's variables (``u_<state>``, ``h_<state>``, ``x``, ``s``,
  ``p_<parameter>``) become fixed C identifiers chosen here (``u0``, ``h0``, ``xin``, ``spk``,
  ``p0``), so no name a model defines ever reaches the compiler;
- **rewrites** of the operations whose C spelling would change the value:
  ``minimum``/``maximum`` render as ``fminf``/``fmaxf``, which return the other operand when
  one is NaN, where ``torch.minimum``/``torch.clamp`` return NaN; they become selections that
  propagate NaN (``a ** n`` needs no rewrite: :func:`snn.expr.render` follows ``torch.pow``);
- **hoisting**: sub-expressions of the learnable parameters alone (PLIF's ``sigmoid(w)``) are
  computed once per thread before the time loop (:class:`Constants`).

Rendering itself is :func:`snn.expr.render` in dialect ``"cuda"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from snn.expr import Expr, render, replace_nodes, var, variables
from snn.models import INPUT, SPIKE, SURROGATE_INPUT, KernelPlan

__all__ = [
    "plan_identifiers",
    "exact_for_c",
    "inline_charges",
    "Constants",
    "render_c",
    "used_variables",
    "read_learnables",
]


def plan_identifiers(plan: KernelPlan) -> dict[str, str]:
    """The C identifier of every plan variable: ``u<i>``, ``h<i>``, ``p<k>``, ``xin``, ``spk``, ``z``."""
    names = {INPUT: "xin", SPIKE: "spk", SURROGATE_INPUT: "z"}
    for i, state in enumerate(plan.states):
        names[f"u_{state}"] = f"u{i}"
        names[f"h_{state}"] = f"h{i}"
    for k, parameter in enumerate(plan.learnables):
        names[f"p_{parameter}"] = f"p{k}"
    return names


def _nan_propagating_extremum(op: str, a: Expr, b: Expr) -> Expr:
    """``minimum(a, b)`` / ``maximum(a, b)`` as torch computes them, NaN included.

    ``a`` when it wins or ties, ``b`` when it wins, else (an operand is NaN) ``a + b``, NaN.
    """
    if op == "minimum":
        return Expr("where", (a <= b, a, Expr("where", (b < a, b, a + b))))
    return Expr("where", (a >= b, a, Expr("where", (b > a, b, a + b))))


def exact_for_c(expr: Expr) -> Expr:
    """``expr`` with ``minimum`` and ``maximum`` rewritten to propagate NaN (see the module
    docstring); shared sub-trees stay shared."""
    memo: dict[int, Expr] = {}

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        args = tuple(go(a) for a in e.args)
        if e.op in ("minimum", "maximum"):
            out = _nan_propagating_extremum(e.op, args[0], args[1])
        elif all(a is b for a, b in zip(args, e.args)):
            out = e
        else:
            out = Expr(e.op, args, e.value)
        memo[id(e)] = out
        return out

    return go(expr)


def inline_charges(expr: Expr, plan: KernelPlan, available: Iterable[int]) -> Expr:
    """``expr`` reading the charged states ``h_j`` (``j`` in ``available``) where it contains
    their charge expressions as sub-trees (a later state's charge built from an earlier one's).

    The kernel has ``h_j`` in a register, computed by the same float32 operations, so this is
    exact and saves recomputing it.
    """
    mapping = {id(plan.charge[j]): var(f"h_{plan.states[j]}") for j in available}
    mapping.pop(id(expr), None)  # never replace an expression by its own name
    return replace_nodes(expr, mapping) if mapping else expr


class Constants:
    """Sub-expressions of the learnable parameters alone, hoisted out of the time loop.

    :meth:`lift` replaces every maximal parameter-only sub-tree (not a bare variable or number)
    by a variable ``k<n>``; :meth:`declarations` are the C statements computing them, after the
    parameters ``p<k>`` are read. Equal sub-trees share one constant.

    Args:
        plan: the kernel plan.
        names: plan variable -> C identifier (:func:`plan_identifiers`).
    """

    def __init__(self, plan: KernelPlan, names: Mapping[str, str]) -> None:
        self._parameters = frozenset(f"p_{k}" for k in plan.learnables)
        self._names = dict(names)
        self._by_text: dict[str, str] = {}
        self._definitions: list[tuple[str, str, Expr]] = []

    def lift(self, expr: Expr) -> Expr:
        """``expr`` with its parameter-only sub-trees replaced by constants."""
        if not self._parameters:
            return expr
        memo: dict[int, Expr] = {}

        def go(e: Expr) -> Expr:
            found = memo.get(id(e))
            if found is not None:
                return found
            if e.op in ("num", "var"):
                out = e
            else:
                used = variables(e)
                if used and used <= self._parameters:
                    out = var(self._constant(e))
                else:
                    args = tuple(go(a) for a in e.args)
                    out = e if all(a is b for a, b in zip(args, e.args)) else Expr(e.op, args, e.value)
            memo[id(e)] = out
            return out

        return go(expr)

    def _constant(self, e: Expr) -> str:
        text = render(e, "cuda", self._names)
        name = self._by_text.get(text)
        if name is None:
            name = f"k{len(self._definitions)}"
            self._by_text[text] = name
            self._definitions.append((name, text, e))
        return name

    def declarations(self, indent: str) -> list[str]:
        """``const float k<n> = ...;`` for every constant, in order."""
        return [f"{indent}const float {name} = {text};" for name, text, _ in self._definitions]

    def parameters_used(self) -> frozenset[str]:
        """The parameter variables (``p_<name>``) the constants read."""
        found: set[str] = set()
        for _, _, e in self._definitions:
            found |= variables(e)
        return frozenset(found)


def render_c(expr: Expr, names: Mapping[str, str]) -> str:
    """``expr`` as a float32 CUDA C expression with the kernel's identifiers."""
    return render(expr, "cuda", dict(names))


def used_variables(exprs: Iterable[Expr | None]) -> frozenset[str]:
    """The plan variables (and hoisted constants) the expressions read."""
    found: set[str] = set()
    for e in exprs:
        if e is not None:
            found |= variables(e)
    return frozenset(found)



def read_learnables(plan: KernelPlan, used: frozenset[str], code: Any) -> None:
    """Emit ``const float p<k> = learn<k>[0];`` for every learnable parameter in ``used``."""
    for k, parameter in enumerate(plan.learnables):
        if f"p_{parameter}" in used:
            code(f"const float p{k} = learn{k}[0];")
