"""A model description compiled to a kernel plan, its backward pass derived (:mod:`snn.models`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from snn.expr import (
    SYMBOLIC_OPS,
    Expr,
    diff,
    float32_literal,
    nodes,
    operations,
    replace_nodes,
    simplify,
    var,
    variables,
)
from snn.models._description import (
    INPUT,
    SPIKE,
    SURROGATE_INPUT,
    KernelPlan,
    ModelParameters,
    NeuronConfig,
    NeuronModel,
    StateValues,
)

__all__ = ["kernel_plan", "constant_beyond_float32"]


def _state_var(prefix: str, name: str) -> Expr:
    return var(f"{prefix}_{name}")


def _symbolic_forward(model: NeuronModel, config: NeuronConfig) -> tuple[tuple[Expr, ...], tuple[Expr, ...]]:
    """``(charge, reset)`` expressions of every state, simplified."""
    names = model.state_names
    p = ModelParameters(config.hyper, {k: _state_var("p", k) for k in model.learnables})
    u = StateValues({n: _state_var("u", n) for n in names})
    h = StateValues({n: _state_var("h", n) for n in names})
    spike = var(SPIKE)
    try:  # the model's own functions: name the model when they fail (an operation snn.expr lacks)
        charged = _as_state_mapping(model, "charge", model.charge(var(INPUT), u, p, SYMBOLIC_OPS))
        changed = (
            {model.fire: p.reset(h[model.fire], spike, getattr(p, model.threshold))} if model.reset is None
            else _reset_changes(model, model.reset(h, spike, p, SYMBOLIC_OPS))
        )
    except (AttributeError, TypeError, ValueError, ArithmeticError) as exc:
        if str(exc).startswith(f"{model.name}:"):
            raise
        kind = ValueError if isinstance(exc, (ValueError, ArithmeticError)) else TypeError
        raise kind(f"{model.name}: its description does not build an expression: {type(exc).__name__}: {exc}") from exc
    if model.reset is not None:
        unknown = set(changed) - set(names)
        if unknown:
            raise ValueError(f"{model.name}: reset returned values for unknown states {sorted(unknown)}")
    finite = {SPIKE}
    charge = tuple(simplify(_as_expr(model, "charge", charged[n]), finite) for n in names)
    reset = tuple(simplify(_as_expr(model, "reset", changed.get(n, h[n])), finite) for n in names)
    return charge, reset


def _as_state_mapping(model: NeuronModel, what: str, values: Any) -> Mapping[str, Any]:
    if not isinstance(values, Mapping):
        if len(model.states) == 1:
            return {model.fire: values}
        raise TypeError(f"{model.name}: {what} must return a mapping state -> value, got {type(values).__name__}")
    missing = set(model.state_names) - set(values)
    extra = set(values) - set(model.state_names)
    if missing or extra:
        raise ValueError(f"{model.name}: {what} must return every state {model.state_names}, got {tuple(values)}")
    return values


def _reset_changes(model: NeuronModel, values: Any) -> dict[str, Any]:
    """What a model's ``reset`` returned, as a dict (it names the states that change)."""
    if not isinstance(values, Mapping):
        raise TypeError(
            f"{model.name}: reset must return a mapping state -> value of the states that change after a "
            f"spike (e.g. {{{model.fire!r}: p.reset(h.{model.fire}, s)}}), got {type(values).__name__}"
        )
    return dict(values)


def _as_expr(model: NeuronModel, what: str, value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Expr("num", (), float(value))
    raise TypeError(f"{model.name}: {what} must build expressions with the ops namespace, got {type(value).__name__}")


def _additive_terms(expr: Expr, sign: float = 1.0) -> list[tuple[float, Expr]]:
    """``expr`` as a signed sum of terms (through ``+``, ``-`` and negation)."""
    if expr.op == "+":
        return _additive_terms(expr.args[0], sign) + _additive_terms(expr.args[1], sign)
    if expr.op == "-":
        return _additive_terms(expr.args[0], sign) + _additive_terms(expr.args[1], -sign)
    if expr.op == "neg":
        return _additive_terms(expr.args[0], -sign)
    return [(sign, expr)]


def _vanishes_with_derivative(g: Expr) -> bool:
    """Whether ``g' = 0`` wherever ``g = 0`` (``sigmoid`` and ``exp`` of anything, times a
    number): positive in exact arithmetic, they reach 0 only by underflow, and their derivative
    (``g (1 - g)``, ``g``, times the inner derivative) then does too."""
    if g.op in ("sigmoid", "exp"):
        return True
    if g.op == "*":
        a, b = g.args
        return (a.op == "num" and _vanishes_with_derivative(b)) or (b.op == "num" and _vanishes_with_derivative(a))
    return False


def _scaled_parameter_derivative(charge: Expr, param: str, h_name: str, under_relu: bool = False) -> Expr | None:
    """``d charge / d param`` without the input, when ``charge = A + B g(param)`` (or ``relu`` of it).

    If exactly one additive term of ``charge`` depends on ``param`` and it is ``B * g`` with
    ``g`` a function of ``param`` alone and ``B`` free of it, then ``B = (h - A) / g`` and the
    derivative ``B g'`` is ``(h - A) g' / g``, which reads the charged value ``h`` instead of
    the input ``x`` inside ``B`` (PLIF: ``(h - v) (1 - k)``). ``None`` when the shape differs.

    Where ``g`` is 0 (a KLIF ``k`` of 0, a PLIF ``sigmoid(w)`` that underflows) ``B`` cannot be
    read from ``h``: the factor ``g' / g`` is then taken as 0, which is the derivative when ``g'``
    vanishes with ``g`` (:func:`_vanishes_with_derivative`), or when the charge is ``relu(B g)``
    alone (``under_relu`` without an ``A``: ``relu'(0) = 0``). In ``relu(A + B g)`` at ``g = 0``
    the derivative is ``relu'(A) B g'``, which needs ``B``: for other ``g`` the rule does not
    apply (``None``) and the input is saved.
    """
    if charge.op == "relu":
        # relu(A + B g): where h > 0, h is the inner value, so the rule above applies there;
        # elsewhere the gradient is 0 (autograd's relu passes it where the result is > 0)
        inner = _scaled_parameter_derivative(charge.args[0], param, h_name, under_relu=True)
        if inner is None:
            return None
        if all(param in variables(t) for _, t in _additive_terms(charge.args[0])):
            # relu(B g): the derivative h g' / g is already 0 where the rectifier is off (h = 0)
            # and NaN where h is (autograd's relu passes a gradient at a NaN result too)
            return inner
        return simplify(Expr("where", (var(h_name) > 0.0, inner, Expr("num", (), 0.0))))
    terms = _additive_terms(charge)
    dependent = [(sign, t) for sign, t in terms if param in variables(t)]
    if len(dependent) != 1:
        return None
    sign, term = dependent[0]
    if term.op != "*":
        return None
    a, b = term.args
    for factor, scale in ((a, b), (b, a)):
        if variables(scale) <= {param} and param not in variables(factor):
            g_prime = diff(scale, param)
            if g_prime is None:
                return None
            rest: Expr | None = None
            for other_sign, other in terms:
                if other is term:
                    continue
                signed = other if other_sign > 0 else -other
                rest = signed if rest is None else rest + signed
            if not (_vanishes_with_derivative(scale) or (under_relu and rest is None)):
                return None
            h_minus_rest = var(h_name) if rest is None else var(h_name) - rest
            # d/dp = sign F g' and F g = sign (h - rest), so d/dp = (h - rest) g' / g either way
            ratio = Expr("where", (Expr("abs", (scale,)) > 0.0, g_prime / scale, Expr("num", (), 0.0)))
            return simplify(h_minus_rest * ratio)
    return None


@lru_cache(maxsize=512)
def kernel_plan(config: NeuronConfig) -> KernelPlan:
    """The :class:`KernelPlan` of ``config`` (cached per configuration).

    Raises:
        TypeError, ValueError: the model's functions return something that is not an expression
            of the states, or the surrogate has no closed-form derivative.
    """
    from snn.surrogate import derivative_expression

    model = config.model
    names = model.state_names
    n = len(names)
    charge, reset = _symbolic_forward(model, config)
    detached = set(model.detached) if config.detach_reset else set()
    h_names = [f"h_{name}" for name in names]
    u_names = [f"u_{name}" for name in names]
    p_names = [f"p_{name}" for name in model.learnables]
    reset_h = tuple(tuple(diff(reset[i], h_names[j]) for j in range(n)) for i in range(n))
    reset_s = tuple(None if names[i] in detached else diff(reset[i], SPIKE) for i in range(n))
    reset_p = tuple(tuple(diff(reset[i], pn) for pn in p_names) for i in range(n))
    # derivatives of a charge may read the charged value itself (relu, exp at the root)
    as_h = [{id(charge[j]): var(h_names[j])} for j in range(n)]

    def charge_diff(j: int, name: str) -> Expr | None:
        d = diff(charge[j], name)
        return None if d is None else replace_nodes(d, as_h[j])

    charge_u = tuple(tuple(charge_diff(j, u_names[i]) for i in range(n)) for j in range(n))
    charge_x = tuple(charge_diff(j, INPUT) for j in range(n))
    charge_p_list = [[charge_diff(j, pn) for pn in p_names] for j in range(n)]
    for j in range(n):
        for k, pn in enumerate(p_names):
            d = charge_p_list[j][k]
            if d is not None and INPUT in variables(d):
                rewritten = _scaled_parameter_derivative(charge[j], pn, h_names[j])
                if rewritten is not None:
                    charge_p_list[j][k] = rewritten
    charge_p = tuple(tuple(row) for row in charge_p_list)
    surrogate = derivative_expression(config.surrogate, SURROGATE_INPUT)
    fire_index = names.index(model.fire)
    threshold = float(config.hyper[model.threshold])

    # what the backward pass reads, and so what training keeps
    def used(exprs: Iterable[Expr | None]) -> set[str]:
        found: set[str] = set()
        for e in exprs:
            if e is not None:
                found |= variables(e)
        return found

    reset_terms = [e for row in reset_h for e in row] + list(reset_s) + [e for row in reset_p for e in row]
    charge_terms = [e for row in charge_u for e in row] + list(charge_x) + [e for row in charge_p for e in row]
    needed = used(reset_terms) | used(charge_terms) | {h_names[fire_index]}  # s and sg read h_fire
    # x is saved where a coefficient reads it. Recovering it from h, (h - c0) / c1 for a charge
    # affine in x, fails where c1 is 0 (a learnable input gain k = 0, a gain x (1 + 0.1 v) at
    # v = -10: NaN) and loses precision where c1 x is small against c0; and a coefficient that
    # reads x at all is one whose c1 reads a state or a learnable
    save_input = INPUT in needed
    needs_u = {i for i in range(n) if u_names[i] in needed}
    # a previous state u_i is the reset of the step before: it reads the h its reset reads
    for i in needs_u:
        needed |= variables(reset[i])
    saved = tuple(j for j in range(n) if h_names[j] in needed)
    ops: set[str] = set()
    for e in (*charge, *reset, surrogate, *reset_terms, *charge_terms):
        if e is not None:
            ops |= operations(e)
    ops |= {">=", "-"}  # the firing comparison and z = h - threshold
    return KernelPlan(
        model=model,
        config=config,
        states=names,
        learnables=model.learnables,
        fire_index=fire_index,
        threshold=threshold,
        charge=charge,
        reset=reset,
        surrogate=surrogate,
        reset_h=reset_h,
        reset_s=reset_s,
        reset_p=reset_p,
        charge_u=charge_u,
        charge_x=charge_x,
        charge_p=charge_p,
        saved_states=saved,
        save_input=save_input,
        initial_states_needed=tuple(sorted(needs_u)),
        operations=frozenset(ops),
    )


def constant_beyond_float32(config: NeuronConfig) -> str | None:
    """What of ``config`` a float32 kernel source cannot hold as a literal, or ``None``.

    A backend that writes the hyper-parameters and surrogate parameters into float32 source (every
    input dtype but float64) needs each finite value, and each constant its plan derives from them
    (``1 / (2 alpha)`` of ``Rect(alpha=1e-40)``), to be a finite float32 number.

    Returns:
        ``"name=value"`` of a parameter beyond float32's range, or ``"the constant <value> that its
        kernel derives from the layer's parameters (<name=value, ...>)"``, or ``None`` when all fit.
    """
    surrogate = config.surrogate
    named = [*config.hyperparameters, *((f"{surrogate.name}.{name}", value) for name, value in surrogate.params)]
    for name, value in named:
        if isinstance(value, float) and math.isfinite(value) and not _fits_float32(value):
            return f"{name}={value!r}"
    for number in sorted(_plan_numbers(config), key=abs, reverse=True):
        if not _fits_float32(number):
            given = ", ".join(f"{name}={value!r}" for name, value in named if isinstance(value, float))
            return f"the constant {number!r} that its kernel derives from the layer's parameters ({given})"
    return None


def _fits_float32(value: float) -> bool:
    """Whether ``value`` has a float32 literal (the renderers' own rule)."""
    try:
        float32_literal(value, "c")
    except (ValueError, OverflowError):
        return False
    return True


@lru_cache(maxsize=1024)
def _plan_numbers(config: NeuronConfig) -> frozenset[float]:
    """Every number of ``config``'s kernel plan (forward, surrogate and backward coefficients,
    threshold): the hyper-parameters folded into constants such as ``1 / (2 alpha)``."""
    plan = kernel_plan(config)
    rows = (*plan.reset_h, *plan.reset_p, *plan.charge_u, *plan.charge_p)
    expressions = [
        *plan.charge, *plan.reset, plan.surrogate, *plan.reset_s, *plan.charge_x,
        *(e for row in rows for e in row),
    ]
    found = {node.value for e in expressions if e is not None for node in nodes(e) if node.op == "num"}
    return frozenset({*found, float(plan.threshold)})
