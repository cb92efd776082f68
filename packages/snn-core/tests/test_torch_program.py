"""The torch backend's expression compiler: shared sub-expressions, masks, affine chains.

Every program is checked against the plain torch evaluation of the same expressions
(:data:`snn.expr.TORCH_OPS`) or, for re-associated arithmetic, a float64 evaluation.
"""

from __future__ import annotations

import math

import pytest
import torch

from snn.backends.torch_lowering import lower, split_scalar_factor
from snn.backends.torch_program import compile_program
from snn.expr import SYMBOLIC_OPS, TORCH_OPS, Expr, evaluate, num, var

where = SYMBOLIC_OPS.where


def _values(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    special = [0.0, -0.0, 0.5, -0.5, 1.0, math.inf, -math.inf, math.nan]
    return torch.cat([torch.randn(300, dtype=dtype) * 2, torch.tensor(special, dtype=dtype)])


def _run(program, inputs, scalars=()):
    bound = program.bind(tuple(inputs[0].shape), inputs[0].dtype, inputs[0].device)
    return bound(inputs, program.scalar_values(scalars), (None,) * len(program.results))


def _ops(program) -> list[str]:
    return [ins.op for ins in program.instructions]


def test_equal_subexpressions_are_computed_once():
    u, x = var("u"), var("x")
    # two separately built copies of exp(u - 0.8), as a model's derivative often has
    first, second = Expr("exp", (u - 0.8,)), Expr("exp", (u - 0.8,))
    outputs = [first + x, second * x]
    program = compile_program(outputs, ["u", "x"])
    assert _ops(program).count("exp") == 1
    uu, xx = _values(), torch.randn(308)
    got = _run(program, (uu, xx))
    for g, e in zip(got, outputs):
        torch.testing.assert_close(g, evaluate(e, {"u": uu, "x": xx}, TORCH_OPS), equal_nan=True, rtol=0, atol=0)


def test_negative_and_positive_zero_stay_apart():
    u = var("u")
    lowered = lower([u * num(0.0), u * num(-0.0)])
    assert lowered[0] is not lowered[1]
    uu = torch.tensor([1.0, -1.0])
    got = _run(compile_program([u * num(0.0), u * num(-0.0)], ["u"]), (uu,))
    assert torch.equal(torch.signbit(got[0]), torch.tensor([False, True]))
    assert torch.equal(torch.signbit(got[1]), torch.tensor([True, False]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selections_between_constants_use_masks_and_match_where(dtype):
    h, z = var("h"), var("z")
    exprs = [
        where(h > 0.0, 0.5, 0.0),
        where(h >= 1.0, 0.0, 2.0),
        where(Expr("abs", (z,)) < 0.5, 1.0, 0.0),
        where((h > -1.0) & (z <= 0.25), 3.0, 0.0),
    ]
    program = compile_program(exprs, ["h", "z"])
    assert not any(program.slot_is_bool), "no bool tensors for selections of constants"
    assert "where" not in _ops(program)
    hh, zz = _values(dtype), _values(dtype).flip(0)
    got = _run(program, (hh, zz))
    for g, e in zip(got, exprs):
        want = evaluate(e, {"h": hh, "z": zz}, TORCH_OPS)
        assert torch.equal(g, want), e  # NaN compares false in both; no NaN is produced


def test_selection_of_a_tensor_keeps_where_semantics():
    h = var("h")
    e = where(h > 0.0, h * 3.0, 0.0)
    program = compile_program([e], ["h"])
    assert "where" in _ops(program)
    hh = _values()
    got = _run(program, (hh,))[0]
    assert torch.equal(got, evaluate(e, {"h": hh}, TORCH_OPS))  # -inf and NaN give 0, not NaN


def test_parameter_selections_stay_scalars():
    h, k = var("h"), var("p_k")
    e = where(k > 0.0, h, h * 2.0)
    program = compile_program([e], ["h"], ["p_k"])
    hh = _values()
    for value in (1.5, -1.5):
        got = _run(program, (hh,), (value,))[0]
        want = evaluate(e, {"h": hh, "p_k": torch.tensor(value)}, TORCH_OPS)
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_mask_times_parameter_splits_into_mask_and_factor():
    h, k = var("h"), var("p_k")
    (lowered,) = lower([where(h > 0.0, k * 0.5, 0.0)], ["p_k"])
    tensor, factor = split_scalar_factor(lowered, ["p_k"])
    assert tensor is not None and tensor.op == "mask>"
    assert factor is not None and evaluate(factor, {"p_k": 3.0}) == 1.5
    where_part, where_factor = split_scalar_factor(where(h > 0.0, h * k, 0.0), ["p_k"])
    assert where_part is not None and where_part.op == "where" and where_factor is k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_chains_become_one_operation(dtype):
    u, x = var("u"), var("x")
    chain = ((u - 0.8) + u) / 2.0 + 1.0
    exact = compile_program([chain], ["u"])
    assert len(exact.instructions) > 1
    uu = torch.randn(400, dtype=dtype) * 3
    assert torch.equal(_run(exact, (uu,))[0], evaluate(chain, {"u": uu}, TORCH_OPS))
    collapsed = compile_program([chain], ["u"], affine=True)
    assert _ops(collapsed) == ["affine"] and collapsed.instructions[0].value == pytest.approx((1.0, 0.6))
    reference = ((uu.double() - 0.8) + uu.double()) / 2.0 + 1.0
    tolerance = {"rtol": 1e-6, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(_run(collapsed, (uu,))[0].double(), reference, **tolerance)
    # an affine term inside a sum of different tensors still fuses into one add
    mixed = compile_program([x + (u * 3.0 - 1.0) * 2.0 - 2.0 * u], ["u", "x"], affine=True)
    got = _run(mixed, (uu, uu.flip(0)))[0]
    torch.testing.assert_close(got.double(), uu.flip(0).double() + 4.0 * uu.double() - 2.0, **tolerance)
    # infinities keep their sign through the collapsed chain
    inf = torch.tensor([math.inf, -math.inf], dtype=dtype)
    assert torch.equal(_run(collapsed, (inf,))[0], inf)


def test_scaled_products_round_like_the_expression():
    s = var("s")
    sig = Expr("sigmoid", (s * 4.0,))
    e = (sig * 4.0) * (1.0 - sig)
    program = compile_program([e], ["s"])
    assert "scaledmul" in _ops(program)
    ss = _values()
    want = evaluate(e, {"s": ss}, TORCH_OPS)
    torch.testing.assert_close(_run(program, (ss,))[0], want, rtol=0, atol=0, equal_nan=True)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logistic_derivative_is_one_operation_in_backward_programs(dtype):
    """``c t (1 - t)`` (the Sigmoid surrogate's derivative) is one ``sigmoid_backward`` in the
    backward's programs: bit-equal to the expression when ``c`` is a power of two, within
    rounding otherwise; ``NaN`` and infinities as the expression gives them."""
    s = var("s")
    sig = Expr("sigmoid", (s * 4.0,))
    ss = _values(dtype)
    for c in (4.0, 0.3):
        e = (sig * c) * (1.0 - sig)
        program = compile_program([e], ["s"], affine=True)
        assert _ops(program) == ["affine", "sigmoid", "tmt"]
        got = _run(program, (ss,))[0]
        want = evaluate(e, {"s": ss}, TORCH_OPS)
        if c == 4.0:
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
        else:
            reference = evaluate(e, {"s": ss.double()}, TORCH_OPS)
            tolerance = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 1e-15}
            torch.testing.assert_close(got.double(), reference, equal_nan=True, **tolerance)
    # the forward's programs keep the expression's own rounding
    assert "tmt" not in _ops(compile_program([(sig * 0.3) * (1.0 - sig)], ["s"]))
    # t (1 - t') of two different tensors is no logistic derivative
    t2 = Expr("sigmoid", (s * 2.0,))
    assert "tmt" not in _ops(compile_program([(sig * 0.3) * (1.0 - t2)], ["s"], affine=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exponential_of_an_affine_is_one_exp2_in_backward_programs(dtype):
    """``exp(alpha u + beta)`` (EIF's coefficient) is ``exp2`` of the affine scaled by ``log2(e)``
    in backward programs, in the same two operations, within the documented rounding of a
    float64 evaluation; the forward's programs keep ``torch.exp``."""
    u = var("u")
    e = Expr("exp", ((u - 0.8) / 1.5,))
    program = compile_program([e], ["u"], affine=True)
    assert _ops(program) == ["affine", "exp2"]
    assert program.instructions[0].value == pytest.approx((1.0 / (1.5 * math.log(2.0)), -0.8 / (1.5 * math.log(2.0))))
    uu = torch.cat([torch.linspace(-14.0, 16.0, 3001, dtype=dtype), torch.tensor([math.inf, -math.inf, math.nan], dtype=dtype)])
    got = _run(program, (uu,))[0]
    reference = torch.exp((uu.double() - 0.8) / 1.5)
    # float32: the scaled argument y (|y| < 16 here) carries alpha's rounding (|y| 2^-24) and up
    # to two roundings of the affine (2^-20: add(alpha=) is fused where the CPU has an FMA, not
    # everywhere), each scaled by ln 2 in the result, plus exp2's own 2^-23: below 1.5e-6 on
    # any CPU (4.4e-7 measured on an FMA machine, 7.3e-7 with the affine unfused)
    tolerance = {"rtol": 1.5e-6, "atol": 0.0} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 0.0}
    torch.testing.assert_close(got.double(), reference, equal_nan=True, **tolerance)
    assert "exp2" not in _ops(compile_program([e], ["u"]))
    # an exponential of a plain tensor stays exp: scaling it would add a pass
    assert _ops(compile_program([Expr("exp", (u,))], ["u"], affine=True)) == ["exp"]


def test_lerp_result_never_overwrites_its_operand():
    """``a + (b - a) w`` with ``w >= 0.5`` runs in two steps that read ``a`` twice: its result
    must not take ``a``'s buffer (it did when ``a`` was a scratch value used last there).
    Backward programs only: a forward program rounds every operation as the expression does."""
    u, x, k = var("u"), var("x"), var("k")
    v = Expr("exp", (u,))
    e = (v + (x - v) * k) * 2.0 + u
    assert "lerp" not in _ops(compile_program([e], ["u", "x"], ["k"]))
    program = compile_program([e], ["u", "x"], ["k"], affine=True)
    assert "lerp" in _ops(program)
    uu, xx = torch.randn(64), torch.randn(64)
    want = evaluate(e, {"u": uu, "x": xx, "k": 0.7}, TORCH_OPS)
    torch.testing.assert_close(_run(program, (uu, xx), (0.7,))[0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("given", [True, False])
def test_outputs_hold_intermediates_until_written(given):
    """An output's buffer (never an input's) holds intermediates until the output is written, so
    a chain needs no scratch memory; outputs that other outputs read keep their values."""
    u, x, s = var("u"), var("x"), var("s")
    h = u + (x + (u - 0.8) * (u + 0.1)) / 2.0  # QIF's charge: a chain of four operations
    v = (1.0 - s) * h  # a hard reset to 0
    program = compile_program([h, v, h * 3.0], ["u", "x", "s"])
    assert not program.slot_is_bool, _ops(program)
    uu, xx, ss = torch.randn(64), torch.randn(64), (torch.rand(64) > 0.5).float()
    outs = [torch.full((64,), math.nan) for _ in range(3)] if given else [None] * 3
    bound = program.bind((64,), torch.float32, torch.device("cpu"))
    got = bound((uu, xx, ss), program.scalar_values(()), outs)
    env = {"u": uu, "x": xx, "s": ss}
    for g, e in zip(got, (h, v, h * 3.0)):  # addcmul rounds x + p q in its own way
        torch.testing.assert_close(g, evaluate(e, env, TORCH_OPS), rtol=1e-6, atol=1e-6)
    assert not any(torch.isnan(g).any() for g in got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_of_a_fused_sum_folds_into_its_terms(dtype):
    """``alpha (c s + q h) + beta`` (a derivative read at a reset state) is one affine of ``s`` and
    one ``addcmul`` in a backward program, within rounding of the expression."""
    s, q, h = var("s"), var("q"), var("h")
    e = ((s * -0.1 + q * h) - 0.6) / 0.5
    program = compile_program([e], ["s", "q", "h"], affine=True)
    assert _ops(program) == ["affine", "addcmul"]
    shared = compile_program([e, s * -0.1 + q * h], ["s", "q", "h"], affine=True)  # the sum is an output: kept
    assert _ops(shared) == ["affine", "addcmul", "affine"]
    ss, qq, hh = (torch.rand(300) > 0.5).to(dtype), torch.randn(300, dtype=dtype), _values(dtype)[:300]
    want = ((ss.double() * -0.1 + qq.double() * hh.double()) - 0.6) / 0.5
    tolerance = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-13, "atol": 1e-13}
    torch.testing.assert_close(_run(program, (ss, qq, hh))[0].double(), want, equal_nan=True, **tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_division_by_a_power_of_two_fuses_into_the_sum_bit_for_bit(dtype):
    """``u + e / 2^k`` (a model's ``v + (...) / tau`` with ``tau = 2``) is one ``torch.add`` with
    ``alpha = 2^-k``, equal bit for bit to the expression (``e / 2^k`` is exact for normal
    numbers, so one rounding of the sum is the expression's); other divisors stay divisions."""
    u, x = var("u"), var("x")
    uu, xx = _values(dtype), _values(dtype).flip(0)
    for divisor in (2.0, 0.5, -4.0, 1024.0):
        # a sum (axpy), and a sum that is a lerp (lerp for weights below 1/2, else sub + axpy)
        for e, last in ((u + (x * u) / divisor, "axpy"), (u + (x - u) / divisor, None)):
            program = compile_program([e], ["u", "x"])
            assert "/" not in _ops(program) and len(_ops(program)) <= 2, (divisor, _ops(program))
            if last is not None:
                assert _ops(program)[-1] == last
            want = evaluate(e, {"u": uu, "x": xx}, TORCH_OPS)
            torch.testing.assert_close(_run(program, (uu, xx))[0], want, rtol=0, atol=0, equal_nan=True)
    for divisor in (3.0, 0.0, 2.0**-1030, 2.0**1023):  # inexact, zero, infinite or subnormal reciprocals
        e = u + x / divisor
        assert "/" in _ops(compile_program([e], ["u", "x"])), divisor


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selections_between_a_tensor_and_its_bound_are_clamps(dtype):
    """``where(t > c, t, c)`` and its kin (any comparison, either side, either branch order)
    compile to a clamp, without a ``bool`` mask or ``torch.where``, and give ``torch.where``'s
    values, NaN and infinities included (zeros up to their sign)."""
    u = var("u")
    uu = torch.cat([_values(dtype), torch.tensor([0.25, -0.25], dtype=dtype)])
    compare = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    for c in (0.0, 0.25, -1.5):
        bound = num(c)
        for op, cmp in compare.items():
            for cond in (cmp(u, bound), cmp(bound, u)):
                for e in (where(cond, u, bound), where(cond, bound, u)):
                    program = compile_program([e], ["u"])
                    assert not {"where", "<", "<=", ">", ">="} & set(_ops(program)), _ops(program)
                    got = _run(program, (uu,))[0]
                    want = evaluate(e, {"u": uu}, TORCH_OPS)
                    assert torch.equal(torch.isnan(got), torch.isnan(want)), (c, op, e)
                    finite = ~torch.isnan(want)
                    assert torch.equal(got[finite], want[finite]), (c, op, e)
    # a selection between a tensor and some other number keeps torch.where
    assert "where" in _ops(compile_program([where(u > num(0.0), u, num(1.0))], ["u"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scaled_factor_of_a_product_folds_into_addcmul(dtype):
    """In backward programs ``b + (alpha t) q`` (``alpha t`` an affine without offset, such as
    the ``0 - h`` of a reset to zero) is one ``addcmul`` with value ``alpha``; forward programs
    keep their own rounding."""
    s, h, q = var("s"), var("h"), var("q")
    e = (1.0 - s) + (0.0 - h) * q
    program = compile_program([e], ["s", "h", "q"], affine=True)
    assert _ops(program) == ["affine", "addcmul"]
    ss, hh, qq = (torch.rand(308, dtype=dtype) > 0.5).to(dtype), _values(dtype), torch.randn(308, dtype=dtype)
    got = _run(program, (ss, hh, qq))[0]
    want = evaluate(e, {"s": ss.double(), "h": hh.double(), "q": qq.double()}, TORCH_OPS)
    torch.testing.assert_close(got.double(), want, equal_nan=True, rtol=1e-6, atol=1e-7)
    e2 = s + (h * 3.0) * q  # another factor: within rounding
    program2 = compile_program([e2], ["s", "h", "q"], affine=True)
    assert _ops(program2) == ["addcmul"]
    want2 = evaluate(e2, {"s": ss.double(), "h": hh.double(), "q": qq.double()}, TORCH_OPS)
    torch.testing.assert_close(_run(program2, (ss, hh, qq))[0].double(), want2, equal_nan=True, rtol=1e-6, atol=1e-6)
    # the forward rounds each product and sum apart, as the expression does
    assert "addcmul" not in _ops(compile_program([e2], ["s", "h", "q"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_of_a_product_is_one_addcmul_in_backward_programs(dtype):
    """``alpha (p q) + beta`` with ``p q`` a product of tensors used once is one ``addcmul`` on
    a number base in backward programs, within rounding of the expression; the forward keeps
    the product and the sum apart."""
    p, q = var("p"), var("q")
    e = 0.5 - (p * q) * 0.25
    program = compile_program([e], ["p", "q"], affine=True)
    assert _ops(program) == ["addcmul"]
    pp, qq = _values(dtype), torch.randn(308, dtype=dtype)
    want = evaluate(e, {"p": pp.double(), "q": qq.double()}, TORCH_OPS)
    tolerance = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 1e-15}
    torch.testing.assert_close(_run(program, (pp, qq))[0].double(), want, equal_nan=True, **tolerance)
    assert len(_ops(compile_program([e], ["p", "q"]))) == 3
    # a product that is used twice stays computed once
    shared = compile_program([(p * q) * 2.0 + 1.0, (p * q) * q], ["p", "q"], affine=True)
    assert _ops(shared) == ["*", "affine", "*"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_programs_round_as_the_expression(dtype):
    """``torch.addcmul`` and ``torch.add(alpha=)`` round product and sum once (a fused
    multiply-add), so forward programs fuse a product into a sum only where the product is
    exact: a 0/1 factor (a spike variable, ``1 - s``, a mask) or a power of two. Every output is
    bit-equal to the plain torch evaluation (QIF's ``x + u (u - 0.8)``, CUBA-LIF's
    ``v 0.75 + c``, a hard reset)."""
    u, x, c, s = var("u"), var("x"), var("c"), var("s")
    g = torch.Generator().manual_seed(0)
    values = {n: torch.randn(4096, generator=g, dtype=dtype) * 2 for n in ("u", "x", "c")}
    values["s"] = (torch.rand(4096, generator=g, dtype=dtype) > 0.5).to(dtype)
    cases = [
        (x + u * (u - 0.8), False),
        (u * 0.75 + c, False),
        (x - (u * c) * 0.3, False),
        (x - u * c, False),
        (s * -0.1 + (1.0 - s) * u, True),  # hard reset: 0/1 factors
        (u + s * 0.2, True),
        (u + x * 0.25, True),  # a power of two
    ]
    for e, fused in cases:
        program = compile_program([e], ["u", "x", "c", "s"], binary_vars=["s"])
        assert (("addcmul" in _ops(program)) or ("axpy" in _ops(program))) == fused, (e, _ops(program))
        want = evaluate(e, values, TORCH_OPS)
        assert torch.equal(_run(program, tuple(values[n] for n in ("u", "x", "c", "s")))[0], want), e
    # without the spike declared binary its product is rounded apart too
    assert "addcmul" not in _ops(compile_program([s * -0.1 + (1.0 - s) * u], ["u", "s"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_resets_keep_the_potential_in_one_pass_bit_for_bit(dtype):
    """``(1 - s) h`` with a 0/1 spike ``s`` is one ``keep`` (``tanh_backward(h, s)``, ``h (1 - s s)``),
    and a hard reset ``s c + (1 - s) h`` is ``keep`` then ``add(alpha=c)``: two passes instead
    of three, with the plain evaluation's value for every input, infinities, NaN and signed
    zeros included (``0 * inf`` is NaN where the neuron fires)."""
    s, h = var("s"), var("h")
    hh = _values(dtype)
    hh = torch.cat([hh, hh])
    ss = torch.cat([torch.zeros(hh.numel() // 2, dtype=dtype), torch.ones(hh.numel() // 2, dtype=dtype)])
    env = {"h": hh, "s": ss}
    cases = [
        (s * -0.1 + (1.0 - s) * h, ["h", "s"], ["keep", "axpy"]),
        (h * (1.0 - s) + s * 0.3, ["h", "s"], ["keep", "axpy"]),
        ((1.0 - s) * h, ["h", "s"], ["keep"]),
        (s * var("c") + (1.0 - s) * h, ["c", "h", "s"], ["keep", "addcmul"]),
    ]
    for expr, names, ops in cases:
        program = compile_program([expr], names, binary_vars=("s",))
        assert _ops(program) == ops, expr
        inputs = {**env, "c": torch.full_like(hh, 0.25)}
        got = _run(program, tuple(inputs[n] for n in program.tensor_vars))[0]
        want = evaluate(expr, inputs, TORCH_OPS)
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        finite = ~torch.isnan(want)
        assert torch.equal(got[finite], want[finite])
        assert torch.equal(torch.signbit(got[finite]), torch.signbit(want[finite]))


def test_keep_needs_a_binary_factor_used_once():
    """``1 - t`` of a tensor that is not 0/1 stays a subtraction and a product; a ``1 - s``
    that two products share is computed once and stays shared."""
    s, h, g = var("s"), var("h"), var("g")
    plain = compile_program([(1.0 - h) * g], ["g", "h"], binary_vars=("s",))
    assert "keep" not in _ops(plain)
    complement = 1.0 - s
    shared = compile_program([complement * h + complement * g], ["g", "h", "s"], binary_vars=("s",))
    assert "keep" not in _ops(shared)
    ss = (torch.rand(308) > 0.5).to(torch.float32)
    hh, gg = _values(), torch.randn(308)
    for program, expr in ((plain, (1.0 - h) * g), (shared, complement * h + complement * g)):
        inputs = {"s": ss, "h": hh, "g": gg}
        got = _run(program, tuple(inputs[n] for n in program.tensor_vars))[0]
        torch.testing.assert_close(got, evaluate(expr, inputs, TORCH_OPS), equal_nan=True, rtol=0, atol=0)


def test_numbers_become_0_dim_tensors_on_cpu_only(monkeypatch):
    """On CPU a number operand is a 0-dim tensor of the compute dtype made when the program is
    bound (a Python number is converted on every call); on another device it stays a number, as a
    device tensor per binding would be a host-to-device copy. The whole kernel, forward and
    backward, runs on the ``meta`` device that way."""
    from snn.backends.torch_kernels import run_sequence
    from snn.neuron import EIFNode

    u = var("u")
    program = compile_program([(u - 0.8) * 3.0], ["u"])
    made: list[torch.device] = []
    tensor = torch.tensor

    def recording_tensor(*args, **kwargs):
        made.append(torch.device(kwargs.get("device", "cpu")))
        return tensor(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", recording_tensor)
    run = program.bind((5,), torch.float32, torch.device("cpu"))
    assert made == [torch.device("cpu")] * 2
    uu = _values()[:5]
    assert torch.equal(run((uu,), (), (None,))[0], (uu - 0.8) * 3.0)
    made.clear()
    program.bind((5,), torch.float32, torch.device("meta"))
    assert made == []
    monkeypatch.setattr(torch, "tensor", tensor)
    config = EIFNode(step_mode="m").neuron_config()
    x = torch.empty(4, 8, device="meta", requires_grad=True)
    spikes, _, _ = run_sequence(config, x, [torch.empty(8, device="meta")], [], False)
    spikes.backward(torch.empty(4, 8, device="meta"))
    assert spikes.shape == x.grad.shape == (4, 8)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("k", [1.0, -1.0])
def test_conditions_joining_parameter_and_tensor_comparisons(k, affine):
    """``where((k > 0) & (x > 0.1), a, b)``: the parameter's comparison is decided once per call
    (a program cannot ``&`` a number with a tensor)."""
    x, kv = var("x"), var("k")
    xs = _values()
    for expression in (
        where((kv > 0.0) & (x > 0.1), 1.0, 0.5),
        where((x > 0.1) & (kv > 0.0), 1.0, 0.0),
        where((x > 0.1) & ((kv > 0.0) & (x < 2.0)), x, 0.25),
        where((kv > 0.0) & (x > 0.1), x, 0.0) * 2.0,
    ):
        (got,) = _run(compile_program([expression], ["x"], ["k"], affine=affine), (xs,), (k,))
        want = evaluate(expression, {"x": xs, "k": torch.tensor(k)})
        torch.testing.assert_close(got, want.expand_as(got), equal_nan=True, rtol=0, atol=0)
