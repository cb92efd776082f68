"""Expression trees printed as kernel source: Triton, CUDA C and C (:mod:`snn.expr`)."""

from __future__ import annotations

import math
import struct

from snn.expr._tree import _FUNCTIONS, Expr

__all__ = ["render", "float32_literal"]

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


#: Integer powers up to this magnitude render for Triton as products (repeated squaring); larger
#: ones as ``exp(n log|a|)`` (Triton's interpreter has no ``pow``).
_TRITON_PRODUCT_POWERS = 64
# Triton's sqrt and ``/`` are approximate on NVIDIA GPUs; sqrt_rn and div_rn round correctly
_TRITON_FUNCS = {f: f"tl.{f}" for f in _FUNCTIONS if f not in ("relu",)} | {"sqrt": "tl.sqrt_rn"}
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
        A fully parenthesised expression string. In Triton, divisions and square roots are
        the correctly rounded ``tl.div_rn`` and ``tl.sqrt_rn`` (``/`` and ``tl.sqrt`` are
        approximate on NVIDIA GPUs), as C's and CUDA's ``/`` and ``sqrtf`` are. ``relu(a)`` renders as ``a < 0 ? 0 : a`` (a NaN
        stays NaN, as ``torch.relu`` keeps it). ``a ** n`` follows ``torch.pow``: ``a ** 0`` is 1 (NaN
        included); ``n`` of 1, 2, 3, -1 and -2 render as the products and reciprocals torch
        computes, ``a ** 0.5`` and ``a ** -0.5`` with ``sqrt``. Other exponents render as C's
        ``pow`` / ``powf`` in the C and CUDA dialects, which gives torch's values at zeros,
        infinities, NaN and negative bases. Triton's interpreter has no ``pow``: there an
        integer ``n`` up to 64 in magnitude is a product by repeated squaring (a few units in
        the last place; a negative ``n`` as the reciprocal, so a result below the smallest
        normal number of the dtype can come out as zero), a larger even one
        ``exp(n log|a|)`` and an odd one ``a`` times such an even power (so that signs, ``-0.0``
        and infinities come out as torch's), and a non-integer ``n`` ``exp(n log a)`` (NaN for
        a negative ``a``, ``(-inf) ** n`` taken as ``inf ** n``); these lose up to about 150
        units in the last place in float32. ``minimum`` and ``maximum``
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
        "triton": ("tl.exp", "tl.log", "tl.abs", "tl.sqrt_rn"), "c64": ("exp", "log", "fabs", "sqrt")
    }.get(dialect, ("expf", "logf", "fabsf", "sqrtf"))

    def quotient(a: str, b: str) -> str:
        # Triton's ``/`` is approximate on NVIDIA GPUs; C's and CUDA's round correctly
        return f"tl.div_rn({a}, {b})" if dialect == "triton" else f"({a} / {b})"

    pow_f = {"triton": None, "c64": "pow"}.get(dialect, "powf")

    def integer_power(base: str, n: int) -> str:
        # repeated squaring: about log2(n) roundings, where exp(n log|a|) loses over 100 ulp in
        # float32; signs, -0.0 and infinities come out of the products as torch.pow gives them
        if n == 1:
            return base
        if n % 2:
            return f"({base} * {integer_power(base, n - 1)})"
        half = integer_power(base, n // 2)
        return f"({half} * {half})"

    def power(base: str, exponent: float) -> str:
        # torch.pow semantics: x ** 0 is 1 (NaN included); a negative base with an integer
        # exponent keeps its sign, where exp(n log x) would be NaN.
        if exponent == 0:
            return one
        if abs(exponent) == 0.5:  # torch.pow takes sqrt here: NaN at -inf, and -0.0 stays -0.0
            root = f"{sqrt_f}({base})"
            return root if exponent > 0 else quotient(one, root)
        if exponent in (1.0, 2.0, 3.0, -1.0, -2.0):  # torch.pow's own products and reciprocals
            product = " * ".join([base] * int(abs(exponent)))
            return f"({product})" if exponent > 0 else quotient(one, f"({product})")
        if pow_f is not None:
            # C's pow follows torch.pow (a C pow underneath) at zeros, infinities, NaN and
            # negative bases, within an ulp
            return f"{pow_f}({base}, {float32_literal(exponent, dialect)})"
        if exponent.is_integer() and abs(exponent) <= _TRITON_PRODUCT_POWERS:
            product = integer_power(base, int(abs(exponent)))
            return product if exponent > 0 else quotient(one, product)
        if not exponent.is_integer():
            # -inf to a non-integer power is +inf (positive) or +0 (negative), as for +inf, where
            # log(-inf) is NaN: -inf, the one negative x with x + x == x, is taken as +inf
            negative_inf = f"(({base} + {base}) == {base}) & ({base} < {zero})"
            magnitude = f"tl.where({negative_inf}, -{base}, {base})"
            return f"{exp_f}({float32_literal(exponent, dialect)} * {log_f}({magnitude}))"
        if int(exponent) % 2 == 0:
            return f"{exp_f}({float32_literal(exponent, dialect)} * {log_f}({abs_f}({base})))"
        # odd: the base times an even power keeps its sign, -0.0 and infinities included
        even = f"{exp_f}({float32_literal(abs(exponent) - 1.0, dialect)} * {log_f}({abs_f}({base})))"
        return f"({base} * {even})" if exponent > 0 else quotient(one, f"({base} * {even})")

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
        if op == "/":
            return quotient(go(e.args[0]), go(e.args[1]))
        if op in {"+", "-", "*", "<", "<=", ">", ">="}:
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
