"""Expression rewrites before the torch backend compiles them (:mod:`snn.backends.torch_program`).

:func:`fuse_sum` picks the fused torch operation for a sum (``addcmul``, ``add(alpha=)``, ``lerp``).
:func:`lower` shares structurally equal sub-expressions, turns selections between constants into
0/1 masks in the compute dtype, and (for a backward pass's coefficients) collapses chains of
arithmetic with numbers into one ``affine`` node; :func:`split_scalar_factor` splits a product
into its tensor part and a factor of parameters and numbers, which the backward folds into the
operation that consumes the tensor.

Example:
    >>> from snn.expr import var
    >>> from snn.backends.torch_lowering import lower
    >>> u = var("u")
    >>> lower([((u - 0.8) + u) / 2.0 + 1.0], affine=True)[0].op
    'affine'
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from snn.expr import Expr, nodes, variables

__all__ = [
    "FLIPPED", "MASK_OF", "fuse_sum", "is_power_of_two", "keep_products", "lower", "number_times_tensor",
    "split_scalar_factor",
]

_LOG2_E = 1.0 / math.log(2.0)  # exp(y) = exp2(y log2(e))

#: A comparison with its operands swapped (``c < t`` is ``t > c``).
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}

#: A comparison written as 0/1 in the compute dtype instead of a bool mask (op ``"mask<"`` etc.).
MASK_OF = {op: "mask" + op for op in ("<", "<=", ">", ">=")}


def lower(outputs: Sequence[Expr], scalar_vars: Iterable[str] = (), affine: bool = False) -> list[Expr]:
    """``outputs`` rewritten for compilation; the values are unchanged (up to rounding with
    ``affine``).

    - Structurally equal sub-expressions become one node, so a program computes them once (the
      derivative of a model often repeats a sub-expression of its update).
    - ``where(cond, c, 0)`` with ``c`` a number or a parameter-only expression becomes
      ``mask(cond) * c``, ``where(cond, 0, c)`` becomes ``(1 - mask(cond)) * c`` and
      ``where(cond, 1, 0)`` becomes ``mask(cond)``, where ``mask`` is the comparison written
      as 0/1 (op ``"mask<"`` etc.; ``and`` of comparisons is the product of their masks). The
      values match ``torch.where``'s up to the sign of a zero: numbers are finite, and a
      comparison involving NaN is false in both. Selections of tensors stay ``where``.
    - ``where(p & c, a, b)`` with ``p`` parameter-only comparisons and ``c`` tensor ones becomes
      ``where(p, where(c, a, b), b)``: the parameters' condition is decided once per call.
    - ``t / c`` with ``c = +-2^k`` a number whose reciprocal is a normal float becomes
      ``t * (1 / c)``: the same value bit for bit (both round the same real number), and a
      product with a number fuses into a consuming sum (``u + e / 2`` is one ``torch.add`` with
      ``alpha = 0.5``, the expression's value whether or not the addition is fused, as
      ``e / 2`` is exact unless ``e`` is subnormal), which a division does not.
    - A selection between a tensor ``t`` and the number ``c`` it is compared with becomes a
      clamp: ``where(t > c, t, c)`` (or ``>=``) the op ``atleast`` (``clamp(t, min=c)`` with
      NaN replaced by ``c``), ``where(t < c, t, c)`` the op ``atmost``, ``where(t > c, c, t)``
      ``minimum(t, c)`` and ``where(t < c, c, t)`` ``maximum(t, c)`` (NaN stays NaN, as the
      selection gives it). The same values up to the sign of a zero, in one or two cheap passes
      instead of a ``bool`` comparison and ``torch.where`` (KLIF's ``where(h > 0, h, 0)``).
    - With ``affine``, a chain of ``+ - * /`` with numbers around one tensor node ``t`` (such as
      ``((u - 0.8) + u) / 2 + 1``) becomes one node ``affine(t)`` with value ``(alpha, beta)``,
      ``alpha t + beta``, computed in one operation. This re-associates the arithmetic, so it is
      meant for the coefficients of a backward pass, not for the dynamics whose spikes must
      match a reference exactly.
    - With ``affine``, ``exp(alpha t + beta)`` becomes ``exp2(alpha' t + beta')`` with both
      numbers scaled by ``log2(e)``: the same pass count, and on x86 CPUs ``torch.exp`` calls
      MKL's vector exp where ``torch.exp2`` runs PyTorch's own vectorized code (on an AMD EPYC
      with AVX2, 2 threads, ``[4, 2^18]`` float32: exp 1141 us, exp2 616 us). The scaled
      argument's rounding grows with its size: ``exp2(x log2(e))`` with one rounding of the
      product was within 5.2e-7 of ``exp(x)`` (relative) for ``|x| <= 10`` and 3.9e-6 near
      float32's overflow, against 6.3e-8 for ``exp``; the affine's own roundings add up to
      ``ln(2) 2^-24 |y|`` each for the scaled argument ``y``. This, too, is for the
      coefficients of a backward pass only.
    """
    scalar_set = frozenset(scalar_vars)
    table: dict[tuple[Any, ...], Expr] = {}
    memo: dict[int, Expr] = {}

    def node(op: str, args: tuple[Expr, ...], value: Any = None) -> Expr:
        # a float key keeps -0.0 apart from 0.0 (they compare equal)
        value_key = (value, math.copysign(1.0, value)) if isinstance(value, float) else value
        key = (op, tuple(id(a) for a in args), value_key)
        found = table.get(key)
        if found is None:
            found = table[key] = Expr(op, args, value)
        return found

    def is_scalar(e: Expr) -> bool:
        return e.op == "num" or variables(e) <= scalar_set

    def mask(cond: Expr) -> Expr | None:
        if cond.op in MASK_OF:
            return node(MASK_OF[cond.op], cond.args)
        if cond.op == "and":
            p, q = (mask(a) for a in cond.args)
            return node("*", (p, q)) if p is not None and q is not None else None
        return None

    def is_number(e: Expr, value: float) -> bool:
        return e.op == "num" and e.value == value and math.copysign(1.0, e.value) == math.copysign(1.0, value)

    def form(e: Expr) -> tuple[Expr | None, float, float] | None:
        """``e`` as ``(t, alpha, beta)``: ``alpha t + beta`` (``t`` None for a number)."""
        if e.op == "num":
            return None, 0.0, float(e.value)
        if e.op == "affine":
            return e.args[0], *e.value
        if is_scalar(e):
            return None
        return e, 1.0, 0.0

    def combine(op: str, args: tuple[Expr, ...]) -> Expr | None:
        forms = [form(a) for a in args]
        if any(f is None for f in forms):
            return None
        if op == "neg":
            t, alpha, beta = forms[0]  # type: ignore[misc]  # checked above
            return node("affine", (t,), (-alpha, -beta)) if t is not None else None
        (ta, aa, ba), (tb, ab, bb) = forms  # type: ignore[misc]  # checked above
        if op in ("+", "-"):
            if ta is not None and tb is not None and ta is not tb:
                return None
            t = ta if ta is not None else tb
            sign = 1.0 if op == "+" else -1.0
            return node("affine", (t,), (aa + sign * ab, ba + sign * bb)) if t is not None else None
        if op == "*" and (ta is None) != (tb is None):
            t, alpha, beta, c = (tb, ab, bb, ba) if ta is None else (ta, aa, ba, bb)
            assert t is not None
            return node("affine", (t,), (alpha * c, beta * c))
        if op == "/" and ta is not None and tb is None and bb != 0.0:
            return node("affine", (ta,), (aa / bb, ba / bb))
        return None

    def clamp(cond: Expr, a: Expr, b: Expr) -> Expr | None:
        """``where(t > c, t, c)`` and the like, with ``c`` a number, as clamps (see above)."""
        if cond.op not in FLIPPED or len(cond.args) != 2:
            return None
        t, c, op = cond.args[0], cond.args[1], cond.op
        if t.op == "num":
            t, c, op = c, t, FLIPPED[op]
        if c.op != "num" or is_scalar(t):
            return None
        number = node("num", (), float(c.value))
        above = op in (">", ">=")  # the condition holds above c
        if a is t and is_number(b, float(c.value)):  # t where the condition holds, else c (NaN too)
            return node("atleast" if above else "atmost", (t, number))
        if b is t and is_number(a, float(c.value)):  # c where the condition holds, else t (NaN too)
            return node("minimum" if above else "maximum", (t, number))
        return None

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        args = tuple(go(a) for a in e.args)
        out: Expr | None = None
        if affine and e.op in ("+", "-", "*", "/", "neg"):
            out = combine(e.op, args)
        if out is None and e.op == "/" and not is_scalar(args[0]) and (inverse := _exact_reciprocal(args[1])) is not None:
            # t / 2^k is t * 2^-k exactly (both round the same real number), and the product
            # fuses into a consuming sum as one torch.add(a, t, alpha=2^-k)
            out = node("*", (args[0], node("num", (), inverse)))
        if out is None and affine and e.op == "exp" and args[0].op == "affine":
            (t,), (alpha, beta) = args[0].args, args[0].value
            out = node("exp2", (node("affine", (t,), (alpha * _LOG2_E, beta * _LOG2_E)),))
        if out is None and e.op == "where" and not is_scalar(args[0]):
            out = clamp(*args)
        if out is None and e.op == "where" and not is_scalar(args[0]):  # parameter-only selections stay floats
            cond, a, b = args
            m = mask(cond)
            if m is not None and is_number(b, 0.0) and is_scalar(a):
                out = m if is_number(a, 1.0) else node("*", (m, a))
            elif m is not None and is_number(a, 0.0) and is_scalar(b):
                out = node("*", (node("-", (node("num", (), 1.0), m)), b))
        if out is None:
            out = node(e.op, args, e.value)
        memo[id(e)] = out
        return out

    def plain(e: Expr) -> Expr:  # an affine node of alpha 1 and beta 0 is its tensor
        if e.op == "affine" and e.value == (1.0, 0.0):
            return e.args[0]
        return e

    return [plain(go(e)) for e in _split_conditions(outputs, is_scalar)]


def _split_conditions(outputs: Sequence[Expr], is_scalar: Callable[[Expr], bool]) -> list[Expr]:
    """``outputs`` with every ``where(p & c, a, b)`` whose condition joins parameter-only
    comparisons ``p`` with tensor ones ``c`` as ``where(p, where(c, a, b), b)``: the same value,
    with the parameter-only condition decided once per call (a program cannot ``&`` a number
    with a tensor)."""
    memo: dict[int, Expr] = {}

    def parts(cond: Expr) -> list[Expr]:
        return [p for a in cond.args for p in parts(a)] if cond.op == "and" else [cond]

    def joined(terms: list[Expr]) -> Expr:
        out = terms[0]
        for term in terms[1:]:
            out = Expr("and", (out, term))
        return out

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        args = tuple(go(a) for a in e.args)
        out = e if all(a is b for a, b in zip(args, e.args)) else Expr(e.op, args, e.value)
        if e.op == "where" and args[0].op == "and" and not is_scalar(args[0]):
            terms = parts(args[0])
            fixed = [t for t in terms if is_scalar(t)]
            if fixed:
                varying = [t for t in terms if not is_scalar(t)]
                inner = Expr("where", (joined(varying), args[1], args[2]))
                out = Expr("where", (joined(fixed), inner, args[2]))
        memo[id(e)] = out
        return out

    return [go(e) for e in outputs]


def _complement_of(e: Expr, binary: Callable[[Expr], bool], scalarish: Callable[[Expr], bool]) -> Expr | None:
    """``b`` when ``e`` is ``1 - b`` (or ``affine(b)`` of value ``(-1, 1)``) with ``b`` a 0/1 tensor."""
    if e.op == "-" and e.args[0].op == "num" and e.args[0].value == 1.0:
        b = e.args[1]
    elif e.op == "affine" and e.value == (-1.0, 1.0):
        b = e.args[0]
    else:
        return None
    return b if binary(b) and not scalarish(b) else None


def keep_products(outputs: Sequence[Expr], binary: Callable[[Expr], bool], scalarish: Callable[[Expr], bool]) -> list[Expr]:
    """``outputs`` with every product ``(1 - b) t`` as the node ``keep(t, b)``.

    ``b`` is a tensor of 0/1 values (``binary``: a spike, a mask), ``t`` a tensor, and the
    ``1 - b`` node is used by this product only. ``keep(t, b)`` is computed in one pass as
    ``torch.ops.aten.tanh_backward(t, b)``, ``t (1 - b b)``: for ``b`` of 0 or 1, ``b b = b``
    and ``1 - b`` are exact, so it is ``(1 - b) t`` bit for bit, special values included
    (``t`` where ``b = 0``, ``0 t`` (NaN for an infinite ``t``) where ``b = 1``). A hard reset
    ``s c + (1 - s) h`` then costs two passes (``keep``, then ``add(alpha=c)``) instead of three
    (``s c``, ``1 - s``, ``addcmul``), and ``(1 - s) h`` one instead of two.
    """
    # references to each node from its distinct parents (a root holding the outputs: an output
    # counts as used by the caller)
    uses = Counter(id(child) for e in nodes(Expr("outputs", tuple(outputs))) for child in e.args)
    memo: dict[int, Expr] = {}

    def go(e: Expr) -> Expr:
        found = memo.get(id(e))
        if found is not None:
            return found
        out: Expr | None = None
        if e.op == "*":
            for complement, t in (e.args, e.args[::-1]):
                b = _complement_of(complement, binary, scalarish)
                if b is not None and uses.get(id(complement), 0) == 1 and not scalarish(t):
                    out = Expr("keep", (go(t), go(b)))
                    break
        if out is None:
            args = tuple(go(a) for a in e.args)
            out = e if all(a is b for a, b in zip(args, e.args)) else Expr(e.op, args, e.value)
        memo[id(e)] = out
        return out

    return [go(e) for e in outputs]


def split_scalar_factor(expr: Expr, scalar_vars: Iterable[str]) -> tuple[Expr | None, Expr | None]:
    """``expr`` as ``tensor_part * scalar_part`` when its top level is such a product.

    Returns ``(tensor_part, scalar_part)``: ``(expr, None)`` when there is no scalar factor,
    ``(None, expr)`` when ``expr`` depends on scalars and numbers only.
    """
    names = frozenset(scalar_vars)
    if variables(expr) <= names:
        return None, expr
    if expr.op == "*":
        a, b = expr.args
        for t, c in ((a, b), (b, a)):
            if variables(c) <= names and not variables(t) <= names:
                return t, c
    if expr.op == "affine" and expr.value[1] == 0.0:  # alpha t
        return expr.args[0], Expr("num", (), expr.value[0])
    if expr.op == "where" and _is_zero(expr.args[2]):  # where(c, t * f, 0) = where(c, t, 0) * f
        inner, factor = split_scalar_factor(expr.args[1], names)
        if inner is not None and factor is not None:
            return Expr("where", (expr.args[0], inner, expr.args[2])), factor
    if expr.op == "neg":
        inner, factor = split_scalar_factor(expr.args[0], names)
        if inner is not None:
            return inner, (-factor if factor is not None else Expr("num", (), -1.0))
    return expr, None


def _exact_reciprocal(e: Expr) -> float | None:
    """``1 / c`` when ``e`` is a number ``c = +-2^k`` whose reciprocal is a normal float, else ``None``."""
    if e.op != "num":
        return None
    c = float(e.value)
    if not is_power_of_two(c):
        return None
    inverse = 1.0 / c
    if not math.isfinite(inverse) or abs(inverse) < sys.float_info.min:
        return None
    return inverse


def _is_zero(e: Expr) -> bool:
    return e.op == "num" and e.value == 0.0


def fuse_sum(
    op: str,
    a: Expr,
    b: Expr,
    fusable: Callable[[Expr], bool],
    scalarish: Callable[[Expr], bool],
    exact: Callable[[Expr, Expr], bool] | None = None,
) -> tuple[str, tuple[Expr, ...], Any, tuple[int, ...]] | None:
    """A fused form of ``a + b`` / ``a - b``: ``(op, operands, value, absorbed node ids)``.

    With ``exact`` (``exact(p, q)``: the product ``p q`` is exact) a product is fused only where
    it is exact, so every operation is rounded as the expression rounds it.
    """
    candidates = ((a, b),) if op == "-" else ((a, b), (b, a))
    for base, term in candidates:
        if scalarish(base) or not fusable(term):
            continue
        if exact is not None and term.op == "*" and not exact(*term.args):
            continue  # torch.lerp, addcmul, add(alpha=) would round the product and the sum once
        if term.op == "affine" and term.value[1] == 0.0 and not scalarish(term.args[0]):
            scale = Expr("num", (), term.value[0])
            return ("axpy" if op == "+" else "axmy"), (base, term.args[0], scale), None, (id(term),)
        if term.op == "*":
            p, q = term.args
            lerp = _lerp(op, base, term, fusable, scalarish)
            if lerp is not None:
                return lerp
            for scale, t in ((p, q), (q, p)):
                if scalarish(scale) and not scalarish(t):
                    return ("axpy" if op == "+" else "axmy"), (base, t, scale), None, (id(term),)
            for negated, other in ((p, q), (q, p)):
                if negated.op == "neg" and fusable(negated) and not scalarish(other) and not scalarish(negated.args[0]):
                    return "addcmul", (base, negated.args[0], other), (-1.0 if op == "+" else 1.0), (id(term), id(negated))
            for scaled, other in ((p, q), (q, p)):  # (alpha t) q with alpha t an affine of no offset
                if (scaled.op == "affine" and scaled.value[1] == 0.0 and fusable(scaled) and not scalarish(other)
                        and not scalarish(scaled.args[0])):
                    alpha = float(scaled.value[0])
                    return "addcmul", (base, scaled.args[0], other), (alpha if op == "+" else -alpha), (id(term), id(scaled))
            if not scalarish(p) and not scalarish(q):
                return "addcmul", (base, p, q), (1.0 if op == "+" else -1.0), (id(term),)
        if (term.op == "neg" and fusable(term) and term.args[0].op == "*" and fusable(term.args[0])
                and (exact is None or exact(*term.args[0].args))):
            p, q = term.args[0].args
            if not scalarish(p) and not scalarish(q):
                return "addcmul", (base, p, q), (-1.0 if op == "+" else 1.0), (id(term), id(term.args[0]))
    return None


def _lerp(
    op: str, base: Expr, term: Expr, fusable: Callable[[Expr], bool], scalarish: Callable[[Expr], bool]
) -> tuple[str, tuple[Expr, ...], Any, tuple[int, ...]] | None:
    """``base + (y - base) * w`` (``term`` the product, ``w`` a scalar) as ``lerp(base, y, w)``."""
    if op != "+":
        return None
    for scale, t in (term.args, term.args[::-1]):
        if (scalarish(scale) and not scalarish(t) and t.op == "-" and fusable(t) and _same(t.args[1], base)
                and not scalarish(t.args[0])):
            return "lerp", (base, t.args[0], scale), None, (id(term), id(t))
    return None


def is_power_of_two(c: float) -> bool:
    """``c = +-2^k`` (a product with it is exact, overflow and subnormals aside)."""
    return math.isfinite(c) and c != 0.0 and math.frexp(c)[0] in (0.5, -0.5)


def number_times_tensor(e: Expr, scalarish: Callable[[Expr], bool]) -> tuple[Expr, float] | None:
    """``e`` as ``(t, c)`` when it is ``c * t`` (or ``affine`` without offset) with ``c`` a number."""
    if e.op == "affine" and e.value[1] == 0.0:
        return e.args[0], float(e.value[0])
    if e.op == "*":
        for c, t in (e.args, e.args[::-1]):
            if c.op == "num" and not scalarish(t):
                return t, float(c.value)
    return None


def _same(a: Expr, b: Expr) -> bool:
    """The same node, or the same variable."""
    return a is b or (a.op == "var" and b.op == "var" and a.value == b.value)
