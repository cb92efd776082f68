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
