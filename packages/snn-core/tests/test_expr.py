"""snn.expr: the expression language that carries surrogate derivatives to kernel sources."""

from __future__ import annotations

import math

import pytest
import torch

from snn.expr import SYMBOLIC_OPS, TORCH_OPS, float32_literal, render, var


def _derivative(x, ops, alpha=2.0):
    s = ops.sigmoid(alpha * x)
    inner = ops.where(ops.abs(x) < 0.5, 1.0 - ops.abs(x), ops.exp(-x * x))
    return alpha * s * (1 - s) + inner / (1 + ops.cos(x) ** 2) + ops.minimum(1.0 / ops.abs(x), 0.3)


class _TritonShim:
    """Evaluates rendered Triton expressions with torch (tl.* -> torch)."""

    exp, log, abs, sqrt, sigmoid, cos = torch.exp, torch.log, torch.abs, torch.sqrt, torch.sigmoid, torch.cos
    sqrt_rn = staticmethod(torch.sqrt)

    @staticmethod
    def div_rn(a, b):
        return torch.as_tensor(a) / b

    @staticmethod
    def where(c, a, b):
        return torch.where(c, torch.as_tensor(a), torch.as_tensor(b))

    @staticmethod
    def minimum(a, b):
        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))

    @staticmethod
    def maximum(a, b):
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))


def test_rendered_triton_matches_torch_evaluation() -> None:
    x = torch.linspace(-2, 2, 41, dtype=torch.float32)
    expected = _derivative(x, TORCH_OPS)
    source = render(_derivative(var(), SYMBOLIC_OPS), "triton")
    got = eval(source, {"tl": _TritonShim, "x": x})
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 3.0, -3.0, 4.0, 5.0, -5.0, 6.0, 7.0, -8.0, 2.5, -2.5, 0.5])
def test_rendered_powers_follow_torch_pow(exponent: float) -> None:
    """Negative bases with integer exponents keep their sign, and x ** 0 is 1 (NaN included):
    exp(n log x) alone would give NaN for every negative x."""
    x = torch.tensor([-2.5, -1.0, -0.5, -0.0, 0.0, 0.5, 1.5, 3.0, -math.inf, math.inf, math.nan], dtype=torch.float64)
    expected = torch.pow(x, exponent)
    got = torch.as_tensor(eval(render(var() ** exponent, "triton"), {"tl": _TritonShim, "x": x}), dtype=x.dtype)
    torch.testing.assert_close(got.expand_as(x), expected, rtol=1e-12, atol=0.0, equal_nan=True)
    # signs of zeros and infinities too (assert_close compares -0.0 and 0.0 equal)
    finite_or_inf = ~torch.isnan(expected)
    assert torch.equal(torch.signbit(got.expand_as(x))[finite_or_inf], torch.signbit(expected)[finite_or_inf])


def test_derivative_of_a_zeroth_power_is_zero() -> None:
    from snn.expr import diff, evaluate

    assert diff(var() ** 0.0, "x") is None  # no dependence on x (not 0 * x ** -1, NaN at 0)
    derivative = diff(var() ** 0.0 + var() ** 5.0, "x")
    assert derivative is not None
    assert evaluate(derivative, {"x": torch.tensor([0.0, -1.0])}).tolist() == [0.0, 5.0]


def test_rendered_cuda_uses_exact_float_literals() -> None:
    source = render(_derivative(var(), SYMBOLIC_OPS, alpha=0.1), "cuda", {"x": "over_th"})
    assert "over_th" in source and "expf" in source and "fminf" in source
    literal = float32_literal(0.1, "cuda")
    assert literal in source
    value = float.fromhex(literal.strip("()").rstrip("f"))
    assert value == torch.tensor(0.1, dtype=torch.float32).item()


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1e39])
def test_non_finite_numbers_never_reach_source(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        render(var() * bad, "cuda")


def test_variable_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="identifiers"):
        render(var() + 1.0, "cuda", {"x": "x); system(\"rm"})


def test_expressions_have_no_truth_value() -> None:
    with pytest.raises(TypeError, match="where"):
        bool(var() < 1.0)


def test_unknown_function_and_dialect() -> None:
    with pytest.raises(AttributeError, match="no function 'tanh'"):
        SYMBOLIC_OPS.tanh(var())
    with pytest.raises(ValueError, match="dialect"):
        render(var(), "opencl")


def test_float_ops_follow_ieee_where_python_raises() -> None:
    """Parameter-only factors are evaluated on Python floats once per call: a zero or a huge
    parameter gives the IEEE value (inf, NaN), as a tensor would, instead of an exception."""
    from snn.expr import FLOAT_OPS, evaluate, var

    k = var("k")
    assert evaluate(1.0 / k, {"k": 0.0}, FLOAT_OPS) == math.inf
    assert evaluate(-1.0 / k, {"k": 0.0}, FLOAT_OPS) == -math.inf
    assert evaluate(1.0 / k, {"k": -0.0}, FLOAT_OPS) == -math.inf
    assert math.isnan(evaluate(k / k, {"k": 0.0}, FLOAT_OPS))
    assert evaluate(SYMBOLIC_OPS.exp(k), {"k": 1000.0}, FLOAT_OPS) == math.inf
    for base, exponent in ((0.0, -1), (-0.0, -1), (-0.0, -2), (10.0, 400), (-10.0, 401), (-8.0, 0.5)):
        want = float(torch.tensor(base, dtype=torch.float64) ** exponent)
        got = evaluate(k ** exponent, {"k": base}, FLOAT_OPS)
        assert (math.isnan(got) and math.isnan(want)) or got == want, (base, exponent, got, want)


def test_negative_zero_keeps_its_sign_in_every_dialect() -> None:
    assert float32_literal(-0.0, "triton") == "-0.0"
    assert float32_literal(-0.0, "cuda") == float32_literal(-0.0, "c") == "(-0.0f)"
    assert float32_literal(-0.0, "c64") == "(-0.0)"
    assert float32_literal(0.0, "cuda") == "0.0f" and float32_literal(0.0, "c64") == "0.0"


def test_simplify_folds_zeroth_and_first_powers() -> None:
    from snn.expr import simplify

    x = var()
    assert simplify(x**0.0).op == "num" and simplify(x**0.0).value == 1.0
    assert simplify(x**1.0) is x


def test_variables_of_every_node_of_a_deep_tree() -> None:
    # a chain deeper than Python's recursion limit, sharing one subtree, asked root first and
    # then link by link (the answers kept on the nodes must be each node's own)
    from snn.expr import variables

    shared = var("a") * var("b")
    chain = [var("x")]
    for i in range(5000):
        chain.append(chain[-1] + (shared if i == 2500 else 1.0))
    assert variables(chain[-1]) == {"x", "a", "b"}
    for k, link in enumerate(chain):
        assert variables(link) == ({"x", "a", "b"} if k > 2500 else {"x"})
    assert variables(shared) == {"a", "b"}
    assert variables(shared + 2.0) == {"a", "b"}


def test_symbolic_where_takes_truth_values_only() -> None:
    from snn.expr import SYMBOLIC_OPS

    u = var("u")
    assert SYMBOLIC_OPS.where((u > 0) & (u < 1), u, 0.0).op == "where"
    for cond, shown in ((u, "operation 'var'"), (u * 2.0, "operation '\\*'"), (1.0, "float 1.0")):
        with pytest.raises(TypeError, match=rf"ops.where: cond: expected a comparison .* got .*{shown}"):
            SYMBOLIC_OPS.where(cond, u, 0.0)


def test_equality_with_a_number_is_refused_not_a_constant() -> None:
    """``v == 0`` used as a number in a model's charge was ``False`` (a constant 0 in the math)."""
    v = var("v")
    assert v == var("v") and v != var("w") and (v + 1) == (v + 1)
    from fractions import Fraction

    comparisons = (lambda: v == 0.0, lambda: v != 1, lambda: 0.0 == v, lambda: 1.0 * (v == 0.0),
                   lambda: v == Fraction(0), lambda: v == torch.tensor(0.0))
    for compare in comparisons:
        with pytest.raises(TypeError, match="expressions compare element-wise with <, <=, > and >= only"):
            compare()
    assert (v == "v") is False  # other objects: not equal, as before


def _ulps(got: torch.Tensor, want64: torch.Tensor) -> torch.Tensor:
    """|got - want| in units of the float32 spacing at ``want`` (float64 reference)."""
    want32 = want64.to(torch.float32)
    spacing = (torch.nextafter(want32.abs(), torch.tensor(math.inf)) - want32.abs()).to(torch.float64)
    return (got.to(torch.float64) - want64).abs() / spacing


@pytest.mark.parametrize("exponent", [4.0, 5.0, 6.0, 7.0, 12.0, -3.0, -5.0, -11.0])
def test_rendered_triton_integer_powers_are_products_within_a_few_ulp(exponent: float) -> None:
    """Triton (no pow in its interpreter) renders integer powers up to 64 by repeated squaring:
    a few float32 roundings, where exp(n log|a|) lost up to about 135 units in the last place."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(20000, generator=g, dtype=torch.float64) * 6.0 - 3.0).to(torch.float32)
    x = x[x.abs() > 1e-2]
    source = render(var() ** exponent, "triton")
    assert "tl.exp" not in source and "tl.log" not in source
    got = eval(source, {"tl": _TritonShim, "x": x})
    assert got.dtype == torch.float32
    want = torch.pow(x.to(torch.float64), exponent)
    assert float(_ulps(got, want).max()) <= 8.0


def _compile_c_power(tmp_path, exponent: float, dialect: str):
    """A shared library ``power(n, x, out)`` computing ``x ** exponent`` as rendered in ``dialect``."""
    import ctypes
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the rendered C")
    real = "double" if dialect == "c64" else "float"
    body = render(var() ** exponent, dialect)
    source = tmp_path / "power.c"
    source.write_text(
        "#include <math.h>\n#include <stdint.h>\n"
        f"void power(int64_t n, const {real} *xs, {real} *out) {{\n"
        f"    for (int64_t i = 0; i < n; ++i) {{ const {real} x = xs[i]; out[i] = {body}; }}\n}}\n"
    )
    library = tmp_path / "power.so"
    subprocess.run([compiler, "-O1", "-ffp-contract=off", "-fPIC", "-shared", str(source), "-o", str(library), "-lm"],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(library)).power, body


@pytest.mark.parametrize("dialect", ["c", "c64"])
@pytest.mark.parametrize("exponent", [4.0, 5.0, -3.0, -11.0, 2.5, -1.5, 31.0])
def test_rendered_c_powers_match_torch_pow(tmp_path, dialect: str, exponent: float) -> None:
    """The C dialects render exponents torch does not compute as products with C's pow: within
    an ulp of torch.pow, the same at zeros, infinities, NaN and negative bases, and no tiny
    result lost (a reciprocal of a product gave 0 where the power is subnormal)."""
    import ctypes

    dtype = torch.float64 if dialect == "c64" else torch.float32
    power, body = _compile_c_power(tmp_path, exponent, dialect)
    assert ("pow(" if dialect == "c64" else "powf(") in body
    g = torch.Generator().manual_seed(5)
    specials = [0.0, -0.0, math.inf, -math.inf, math.nan, -1.0, 1.0, -2.5, 7.2e12, -7.2e12, 1e-30, -3.16e-4]
    x = torch.cat([torch.tensor(specials, dtype=dtype), torch.rand(4000, generator=g, dtype=dtype) * 8.0 - 4.0])
    out = torch.empty_like(x)
    pointer = ctypes.POINTER(ctypes.c_double if dialect == "c64" else ctypes.c_float)
    power(ctypes.c_int64(x.numel()), ctypes.cast(x.data_ptr(), pointer), ctypes.cast(out.data_ptr(), pointer))
    want = torch.pow(x, exponent)
    assert torch.equal(out.isnan(), want.isnan())
    finite = want.isfinite()
    assert torch.equal(out[~finite & ~want.isnan()], want[~finite & ~want.isnan()])
    assert torch.equal(torch.signbit(out)[~want.isnan()], torch.signbit(want)[~want.isnan()])
    smallest_subnormal = math.ulp(0.0) if dialect == "c64" else 2.0**-149
    torch.testing.assert_close(out[finite], want[finite], rtol=4 * torch.finfo(dtype).eps, atol=2 * smallest_subnormal)
    assert torch.equal(out[finite] == 0, want[finite] == 0)


def test_derivative_of_a_quotient_by_tiny_or_huge_divisors_stays_finite() -> None:
    """d(x / y) / dy is computed as autograd does, ((x / y) / y): x / (y y) overflowed to inf
    (or underflowed to 0) in float32 where the derivative itself is an ordinary number."""
    from snn.expr import diff, evaluate

    x, y = var("x"), var("y")
    derivative = diff(x / y, "y")
    assert derivative is not None
    xs = torch.tensor([1e-30, 0.0, 1e20, 3.0], dtype=torch.float32, requires_grad=True)
    ys = torch.tensor([1e-25, 1e-25, 1e20, -2.0], dtype=torch.float32, requires_grad=True)
    (want,) = torch.autograd.grad((xs / ys).sum(), ys)
    got = evaluate(derivative, {"x": xs.detach(), "y": ys.detach()})
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0.0)


def test_simplify_keeps_comparisons_that_arithmetic_made_numbers() -> None:
    """``(x > 0) * 1.0`` is a number, ``x > 0`` a truth value: simplifying a tree built by hand
    (the operators refuse truth values in arithmetic) must not turn the one into the other."""
    from snn.expr import Expr, evaluate, num, simplify

    x = var("x")
    positive = Expr(">", (x, num(0.0)))
    values = {"x": torch.tensor([-1.0, 2.0])}
    for expression, expected in [
        (Expr("*", (positive, num(1.0))), [0.0, 1.0]),
        (Expr("/", (positive, num(1.0))), [0.0, 1.0]),
        (Expr("+", (positive, num(0.0))), [0.0, 1.0]),
    ]:
        simplified = simplify(expression)
        assert simplified.op not in (">", "<", ">=", "<=", "and"), expression
        assert evaluate(simplified, values).tolist() == expected
    assert simplify(Expr("*", (positive, num(0.0)))).op == "num"


def test_times_zero_folds_only_what_cannot_overflow_in_float32() -> None:
    """``a * 0`` is 0 only where ``a`` is finite: a spike times huge numbers overflows to
    infinity in float32, and infinity times 0 is NaN, as the plain evaluation gives."""
    from snn.expr import evaluate, simplify

    s = var("s")
    spikes = {"s": torch.tensor([0.0, 1.0])}
    kept = [(s * 1e30 * 1e30) * 0.0, 0.0 * (s * 3e38 + s * 3e38), (s + 1e39) * 0.0]
    for expression in kept:
        simplified = simplify(expression, finite={"s"})
        assert simplified.op != "num", expression
        got, want = evaluate(simplified, spikes), evaluate(expression, spikes)
        assert torch.equal(got.isnan(), want.isnan()) and bool(want.isnan().any()), expression
    for expression in [(s * 2.0 + s) * 0.0, 0.0 * -(s * 1e30), SYMBOLIC_OPS.where(s > 0.5, 1e20, 0.0) * 0.0]:
        simplified = simplify(expression, finite={"s"})
        assert simplified.op == "num" and simplified.value == 0.0, expression
        assert evaluate(expression, spikes).tolist() == [0.0, 0.0]
    assert simplify(var("v") * 0.0).op != "num"  # a potential can be infinite


def test_derivative_of_a_minimum_with_a_constant_expression_clamps() -> None:
    """A bound without variables (``sqrt(4.0)``) is a number to torch, which clamps: at a tie
    the gradient passes whole, as for a literal bound."""
    from snn.expr import diff, evaluate

    x = var("x")
    derivative = diff(SYMBOLIC_OPS.minimum(x, SYMBOLIC_OPS.sqrt(_constant(4.0))), "x")
    assert derivative is not None
    assert evaluate(derivative, {"x": torch.tensor([2.0, 1.0, 3.0])}).tolist() == [1.0, 1.0, 0.0]


def _constant(value: float):
    from snn.expr import Expr

    return Expr("num", (), value)


def test_truth_values_are_conditions_only() -> None:
    """A comparison is a condition of ``ops.where`` (joined with ``&``), never a number: torch
    computes ``bool * 0.1`` in its default dtype and refuses ``1 - bool``, C counts 2 for
    ``(x > 0) + (y > 0)`` where torch gives a logical or and Triton's 1-bit integers wrap to 0,
    and Triton's ``exp`` refuses a 1-bit integer."""
    x, y = var("x"), var("y")
    ops = SYMBOLIC_OPS
    for build in (
        lambda: (x > 0.0) + (y > 0.0),
        lambda: (x > 0.0) * 0.25,
        lambda: 0.25 * (x > 0.0),
        lambda: 1.0 - (x > 0.0),
        lambda: x / (y > 0.0),
        lambda: (x > 0.0) ** 2,
        lambda: -(x > 0.0),
        lambda: ((x > 0.0) & (y > 0.0)) * x,
        lambda: (x > 0.0) < 1.0,
        lambda: ops.exp(x > 0.0),
        lambda: ops.minimum(x > 0.0, 0.5),
        lambda: ops.where(x > 0.0, y > 0.0, 0.5),
        lambda: (x > 0.0) & y,
        lambda: x & (y > 0.0),
    ):
        with pytest.raises(TypeError, match="truth value"):
            build()
    # what is allowed: conditions, joined with &, and their 0/1 value through where
    expression = ops.where((x > 0.0) & (y < 1.0), 0.25, 0.0) + x
    assert expression.op == "+"


def test_number_functions_of_infinities_and_bounds_beyond_the_dtype() -> None:
    from snn.expr import FLOAT_OPS, evaluate

    x = var("x")
    assert math.isnan(evaluate(SYMBOLIC_OPS.sin(1.0 / (x * 0.0)), {"x": 1.0}, FLOAT_OPS))
    assert math.isnan(evaluate(SYMBOLIC_OPS.cos(SYMBOLIC_OPS.exp(x)), {"x": 1000.0}, FLOAT_OPS))
    values = {"x": torch.tensor([1.0, -1.0, float("nan")])}
    lowest = evaluate(SYMBOLIC_OPS.minimum(x, 1e39), values)  # 1e39 is +inf in float32
    highest = evaluate(SYMBOLIC_OPS.maximum(x, -1e39), values)
    for got in (lowest, highest):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, values["x"], equal_nan=True)
    assert evaluate(SYMBOLIC_OPS.minimum(x, -1e39), values)[:2].tolist() == [-math.inf, -math.inf]


_UNARY_TORCH = {
    "exp": torch.exp, "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt, "sigmoid": torch.sigmoid,
    "cos": torch.cos, "sin": torch.sin, "relu": torch.relu,
}


@pytest.mark.parametrize("name", sorted(_UNARY_TORCH))
def test_derivative_of_every_function_matches_autograd(name: str) -> None:
    """Every one-argument function's rule, through the chain rule (``f(x * x + 0.5 x)``), against
    float64 autograd of the torch function, at interior points and at the kinks of ``abs`` and
    ``relu`` (0, where autograd gives 0)."""
    from snn.expr import diff, evaluate

    x = var("x")
    inner = x * x + 0.5 * x
    derivative = diff(getattr(SYMBOLIC_OPS, name)(inner), "x")
    assert derivative is not None
    points = torch.cat([torch.linspace(0.1, 3.0, 17), torch.tensor([-0.5, 0.0, -1.7, -0.25])]).double()
    if name in ("log", "sqrt"):
        points = points[points * points + 0.5 * points > 0]  # their domain
    leaf = points.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(_UNARY_TORCH[name](leaf * leaf + 0.5 * leaf).sum(), leaf)
    got = evaluate(derivative, {"x": points})
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["minimum", "maximum"])
def test_derivative_of_an_extremum_matches_autograd_at_ties_and_bounds(name: str) -> None:
    """Of two expressions: autograd splits the gradient at a tie (``x = 1`` below). With a
    number (a clamp): the gradient passes whole where the bound holds, at the bound included."""
    from snn.expr import diff, evaluate

    x = var("x")
    function = getattr(SYMBOLIC_OPS, name)
    points = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    leaf = points.clone().requires_grad_(True)
    pair = getattr(torch, name)(leaf, 2.0 * leaf - 1.0)
    (want_pair,) = torch.autograd.grad(pair.sum(), leaf)
    bound = {"min": 0.5} if name == "maximum" else {"max": 0.5}
    (want_clamp,) = torch.autograd.grad(torch.clamp(leaf, **bound).sum(), leaf)
    pair_derivative, clamp_derivative = diff(function(x, 2.0 * x - 1.0), "x"), diff(function(x, 0.5), "x")
    assert pair_derivative is not None and clamp_derivative is not None
    assert evaluate(pair_derivative, {"x": points}).tolist() == want_pair.tolist()
    assert want_pair[2] == 1.5  # the tie: half of each side's derivative (1 and 2)
    assert evaluate(clamp_derivative, {"x": points}).tolist() == want_clamp.tolist()
    assert want_clamp[1] == 1.0  # at the bound


def test_times_zero_keeps_a_selection_of_an_unbounded_branch() -> None:
    """``where(x > 0, x, 0) * 0`` is NaN at ``x = inf``: a selection is bounded by its larger
    branch, not its smaller one."""
    from snn.expr import evaluate, simplify

    x = var("x")
    expression = SYMBOLIC_OPS.where(x > 0.0, x, 0.0) * 0.0
    simplified = simplify(expression)
    assert simplified.op != "num"
    values = {"x": torch.tensor([math.inf, 1.0])}
    assert evaluate(simplified, values).isnan().tolist() == evaluate(expression, values).isnan().tolist() == [True, False]


def test_derivative_takes_a_variable_name_not_an_expression() -> None:
    from snn.expr import diff

    x = var("x")
    assert diff(x * x, "x") is not None
    # the expression var("x") in place of its name once returned None ("the derivative is zero")
    with pytest.raises(TypeError, match=r"name: expected the name of a variable \(a str\), got Expr \(the variable's name is 'x'\)"):
        diff(x * x, x)  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(TypeError, match="expr: expected an Expr, got float"):
        diff(2.0, "x")  # type: ignore[arg-type]  # the mistake under test
