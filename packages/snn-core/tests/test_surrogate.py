"""Tests of snn.surrogate: forward/backward contract, golden values, kernel-facing helpers."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch

from snn import expr, surrogate
from snn.kernels import SurrogateSpec
from snn.surrogate import SURROGATES, SurrogateFunctionBase

CONTRACT_POINTS = (-0.75, -0.25, 0.25, 0.75)

# Classes whose primitive exists, with their reference defaults and non-default parameters.
WITH_PRIMITIVE: dict[str, tuple[dict, dict]] = {
    "Sigmoid": ({"alpha": 4.0}, {"alpha": 2.5}),
    "ATan": ({"alpha": 2.0}, {"alpha": 3.5}),
    "PiecewiseQuadratic": ({"alpha": 1.0}, {"alpha": 0.5}),
    "PiecewiseExp": ({"alpha": 1.0}, {"alpha": 3.0}),
    "SoftSign": ({"alpha": 2.0}, {"alpha": 0.7}),
    "Erf": ({"alpha": 2.0}, {"alpha": 1.3}),
    "NonzeroSignLogAbs": ({"alpha": 1.0}, {"alpha": 2.5}),
    "PiecewiseLeakyReLU": ({"w": 1.0, "c": 0.01}, {"w": 0.6, "c": 0.2}),
    "SquarewaveFourierSeries": ({"n": 2, "T_period": 8}, {"n": 5, "T_period": 6.0}),
    "S2NN": ({"alpha": 4.0, "beta": 1.0}, {"alpha": 2.0, "beta": 0.5}),
    "QPseudoSpike": ({"alpha": 2.0}, {"alpha": 3.5}),
    "LeakyKReLU": ({"leak": 0.0, "k": 1.0}, {"leak": 0.1, "k": 2.0}),
    "LogTailedReLU": ({"alpha": 0.0}, {"alpha": 0.25}),
    "Rect": ({"alpha": 1.0}, {"alpha": 0.8}),
    "DeterministicPass": ({}, {}),
}
WITHOUT_PRIMITIVE = {"SuperSpike": {"alpha": 1.0}, "FakeNumericalGradient": {"alpha": 0.3}}

# Kinks / jumps of g for the parameters above: finite differences avoid their neighbourhood.
KINKS: dict[str, list[float]] = {
    "PiecewiseQuadratic": [-2.0, -1.0, 0.0, 1.0, 2.0],
    "PiecewiseExp": [0.0],
    "PiecewiseLeakyReLU": [-1.0, -0.6, 0.6, 1.0],
    "S2NN": [0.0],
    "LeakyKReLU": [0.0],
    "LogTailedReLU": [0.0, 1.0],
    "Rect": [-0.625, -0.5, 0.5, 0.625],
    "NonzeroSignLogAbs": [0.0],
    "SoftSign": [0.0],
    "QPseudoSpike": [0.0],
}

ALL_PARAMS: dict[str, dict] = {
    **{name: pair[1] for name, pair in WITH_PRIMITIVE.items()},
    "SuperSpike": {"alpha": 1.5},
    "FakeNumericalGradient": {"alpha": 0.3},
}


def random_points(name: str, count: int = 24, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, generator=generator, dtype=torch.float64) * 4.0 - 2.0
    keep = torch.ones_like(x, dtype=torch.bool)
    for kink in KINKS.get(name, []):
        keep &= (x - kink).abs() > 1e-3
    return torch.cat([torch.tensor(CONTRACT_POINTS, dtype=torch.float64), x[keep]])


def central_difference(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    with torch.no_grad():
        return (f(x + h) - f(x - h)) / (2 * h)


def spiking_grad(module: SurrogateFunctionBase, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = module(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), grad


def triton_shim_eval(source: str, x: torch.Tensor) -> torch.Tensor:
    """Evaluate a rendered Triton expression with ``tl`` replaced by a small torch namespace."""

    def as_tensor(value):
        return value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=x.dtype)

    class TL:
        exp = staticmethod(torch.exp)
        log = staticmethod(torch.log)
        abs = staticmethod(torch.abs)
        sqrt = staticmethod(torch.sqrt)
        sqrt_rn = staticmethod(torch.sqrt)
        sigmoid = staticmethod(torch.sigmoid)
        cos = staticmethod(torch.cos)

        @staticmethod
        def div_rn(a, b):
            return as_tensor(a) / b

        @staticmethod
        def where(cond, a, b):
            return torch.where(cond, as_tensor(a), as_tensor(b))

        @staticmethod
        def minimum(a, b):
            return torch.minimum(as_tensor(a), as_tensor(b))

        @staticmethod
        def maximum(a, b):
            return torch.maximum(as_tensor(a), as_tensor(b))

    value = eval(source, {"__builtins__": {}}, {"tl": TL, "x": x})  # our own rendered source, no builtins
    return torch.broadcast_to(as_tensor(value), x.shape)


# --------------------------------------------------------------------------------------------
# registry of classes


def test_every_reference_class_is_exported():
    expected = {
        "Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "SuperSpike", "Erf",
        "NonzeroSignLogAbs", "PiecewiseLeakyReLU", "SquarewaveFourierSeries", "S2NN", "QPseudoSpike",
        "LeakyKReLU", "FakeNumericalGradient", "LogTailedReLU", "Rect", "DeterministicPass",
        "PoissonPass", "MultiLevelSpikeCount",
    }
    assert set(SURROGATES) == expected
    assert all(getattr(surrogate, name) is cls for name, cls in SURROGATES.items())
    assert set(surrogate.CLOSED_FORM_SURROGATES) == expected - {"PoissonPass", "MultiLevelSpikeCount"}
    assert len(surrogate.CLOSED_FORM_SURROGATES) == 17
    for name in surrogate.__all__:
        assert hasattr(surrogate, name)


@pytest.mark.parametrize(
    ("name", "defaults"),
    [
        ("Sigmoid", {"alpha": 4.0}), ("ATan", {"alpha": 2.0}), ("PiecewiseQuadratic", {"alpha": 1.0}),
        ("PiecewiseExp", {"alpha": 1.0}), ("SoftSign", {"alpha": 2.0}), ("SuperSpike", {"alpha": 1.0}),
        ("Erf", {"alpha": 2.0}), ("NonzeroSignLogAbs", {"alpha": 1.0}),
        ("PiecewiseLeakyReLU", {"w": 1.0, "c": 0.01}), ("SquarewaveFourierSeries", {"n": 2, "T_period": 8.0}),
        ("S2NN", {"alpha": 4.0, "beta": 1.0}), ("QPseudoSpike", {"alpha": 2.0}),
        ("LeakyKReLU", {"leak": 0.0, "k": 1.0}), ("FakeNumericalGradient", {"alpha": 0.3}),
        ("LogTailedReLU", {"alpha": 0.0}), ("Rect", {"alpha": 1.0}), ("DeterministicPass", {}),
        ("PoissonPass", {}),
    ],
)
def test_reference_defaults(name, defaults):
    module = SURROGATES[name]()
    assert module.param_names == tuple(defaults)
    assert module.params == defaults
    assert module.spiking is True
    assert list(module.parameters()) == [] and list(module.buffers()) == []
    assert module.spec == SurrogateSpec(name, tuple((k, float(v)) for k, v in defaults.items()))
    assert "spiking=True" in repr(module)
    for key, value in defaults.items():
        assert f"{key}={value!r}" in repr(module)


# --------------------------------------------------------------------------------------------
# the finite-difference contract


@pytest.mark.parametrize("use_defaults", [True, False], ids=["defaults", "custom"])
@pytest.mark.parametrize("name", sorted(WITH_PRIMITIVE))
def test_spiking_forward_and_backward_match_primitive(name, use_defaults):
    params = WITH_PRIMITIVE[name][0 if use_defaults else 1]
    module = SURROGATES[name](**params)
    x = random_points(name)
    y, grad = spiking_grad(module, x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, (x >= 0).to(torch.float64), rtol=0, atol=0)

    primitive_module = SURROGATES[name](**params, spiking=False)
    expected = central_difference(primitive_module, x)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(WITH_PRIMITIVE))
def test_primitive_autograd_equals_surrogate_gradient(name):
    params = WITH_PRIMITIVE[name][1]
    # x = 0 included: every primitive is written so that autograd gives g(0) there.
    x = torch.cat([random_points(name, seed=1), torch.zeros(1, dtype=torch.float64)]).requires_grad_(True)
    y = SURROGATES[name](**params, spiking=False)(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    # S2NN's primitive is beta * ln(|x + 1| + 1e-5): its slope differs from g by ~1e-5 relative.
    tolerance = 1e-4 if name == "S2NN" else 1e-9
    torch.testing.assert_close(grad, SURROGATES[name](**params).grad(x.detach()), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", sorted(WITHOUT_PRIMITIVE))
def test_classes_without_primitive_raise(name):
    module = SURROGATES[name](spiking=False)
    with pytest.raises(NotImplementedError, match=name):
        module(torch.zeros(3))


# --------------------------------------------------------------------------------------------
# golden values from the reference


def test_deterministic_and_poisson_pass_golden():
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y, grad = spiking_grad(surrogate.DeterministicPass(), x)
    assert y.tolist() == [1.0, 1.0] and grad.tolist() == [1.0, 1.0]
    y, grad = spiking_grad(surrogate.PoissonPass(), x)
    assert y.tolist() == [0.0, 1.0] and grad.tolist() == [1.0, 1.0]
    assert y.dtype == torch.float64
    for cls in (surrogate.DeterministicPass, surrogate.PoissonPass):
        x2 = torch.tensor([-0.3, 0.4], requires_grad=True)
        out = cls(spiking=False)(x2)
        assert torch.equal(out, x2.detach())


def test_poisson_pass_is_bernoulli():
    torch.manual_seed(0)
    p = torch.full((20000,), 0.3, dtype=torch.float64)
    spikes = surrogate.PoissonPass()(p)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert abs(spikes.mean().item() - 0.3) < 0.02


def test_poisson_pass_names_inputs_that_are_not_probabilities():
    from snn import neuron

    poisson = surrogate.PoissonPass()
    for x, shown in (
        (torch.tensor([0.5, 1.5]), "from 0.5 to 1.5"),
        (torch.tensor([-0.25, 0.5]), "from -0.25 to 0.5"),
    ):
        with pytest.raises(ValueError, match=rf"PoissonPass: x: expected firing probabilities in \[0, 1\], got values {shown}"):
            poisson(x)
    with pytest.raises(ValueError, match=r"PoissonPass: x: expected firing probabilities in \[0, 1\], got NaN$"):
        poisson(torch.tensor([0.5, float("nan")]))
    # under torch.func.vmap the values cannot be read back: the check steps aside
    assert torch.func.vmap(poisson, randomness="different")(torch.rand(4, 3)).shape == (4, 3)
    with pytest.raises(ValueError, match="receives v - v_threshold, which is not a probability"):
        neuron.LIFNode(surrogate_function=poisson)(torch.full((2, 3), 10.0))  # v - 1 = 4
    assert poisson(torch.empty(0)).shape == (0,)
    assert poisson(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]


def test_super_spike_golden():
    x = torch.linspace(-2.0, 2.0, 17, dtype=torch.float64)
    _, grad = spiking_grad(surrogate.SuperSpike(1.5), x)
    torch.testing.assert_close(grad, 1.5 / (1.0 + x.abs()) ** 2)


def test_fake_numerical_gradient_golden():
    x = torch.tensor([-4.0, -2.0, -0.5, 0.0, 0.1, 3.0, 10.0], dtype=torch.float64)
    y, grad = spiking_grad(surrogate.FakeNumericalGradient(0.3), x)
    expected = torch.tensor([0.25, 0.3, 0.3, 0.3, 0.3, 0.3, 0.1], dtype=torch.float64)
    torch.testing.assert_close(grad, expected)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_log_tailed_relu_golden():
    alpha = 0.25
    x = torch.tensor([-0.5, 0.5, 1.0, 2.0, 4.0, -1.0], dtype=torch.float64)
    _, grad = spiking_grad(surrogate.LogTailedReLU(alpha), x)
    assert grad.tolist() == [alpha, 1.0, 1.0, 0.5, 0.25, alpha]


def test_piecewise_leaky_relu_uses_half_width_slope():
    module = surrogate.PiecewiseLeakyReLU(w=0.5, c=0.05)
    x = torch.tensor([-0.7, -0.2, 0.0, 0.3, 0.9], dtype=torch.float64)
    assert module.grad(x).tolist() == [0.05, 1.0, 1.0, 1.0, 0.05]


def test_multi_level_spike_count():
    module = surrogate.MultiLevelSpikeCount(3)
    assert module.params == {"max_spike_count": 3, "grad_min": 0.0, "grad_max": 3.0}
    x = torch.tensor([-1.0, 0.0, 0.4, 0.6, 1.5, 2.5, 3.0, 3.2, 7.0], dtype=torch.float64)
    y, grad = spiking_grad(module, x)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0]  # round half to even
    assert grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    windowed = surrogate.MultiLevelSpikeCount(3, grad_window=(0.5, 2.0))
    _, grad = spiking_grad(windowed, x)
    assert grad.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    primitive = surrogate.MultiLevelSpikeCount(3, spiking=False)
    xg = x.clone().requires_grad_(True)
    out = primitive(xg)
    assert out.tolist() == [0.0, 0.0, 0.4, 0.6, 1.5, 2.5, 3.0, 3.0, 3.0]
    out.sum().backward()
    assert xg.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="max_spike_count"):
        surrogate.MultiLevelSpikeCount(2.5)
    with pytest.raises(ValueError, match="max_spike_count"):
        surrogate.MultiLevelSpikeCount(0)
    with pytest.raises(ValueError, match="grad_min <= grad_max"):
        surrogate.MultiLevelSpikeCount(3, grad_window=(2.0, 1.0))
    with pytest.raises(TypeError, match="grad_window"):
        surrogate.MultiLevelSpikeCount(3, grad_window=1.0)


# --------------------------------------------------------------------------------------------
# heaviside and dtypes


def test_heaviside_fires_at_zero():
    x = torch.tensor([-1e-30, -0.0, 0.0, 1e-30, float("nan")], dtype=torch.float64)
    assert surrogate.heaviside(x).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    for name, params in ALL_PARAMS.items():
        y = SURROGATES[name](**params)(torch.zeros(4, dtype=torch.float32))
        assert y.tolist() == [1.0] * 4, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", sorted(ALL_PARAMS))
def test_reduced_precision_inputs(name, dtype):
    params = ALL_PARAMS[name]
    x64 = random_points(name, count=12)
    x = x64.to(dtype)
    y, grad = spiking_grad(SURROGATES[name](**params), x)
    assert y.dtype == dtype and grad.dtype == dtype
    assert torch.equal(y, (x >= 0).to(dtype))
    reference = SURROGATES[name](**params).grad(x.to(torch.float64))
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(grad.to(torch.float64), reference, rtol=tolerance, atol=tolerance)
    if name in WITH_PRIMITIVE:
        out = SURROGATES[name](**params, spiking=False)(x)
        assert out.dtype == dtype and out.shape == x.shape


def test_rejects_non_floating_input():
    with pytest.raises(TypeError, match="floating-point"):
        surrogate.Sigmoid()(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        surrogate.Sigmoid()([0.5])


def test_shapes_and_no_input_mutation():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    y = surrogate.ATan()(x)
    y.backward(torch.ones_like(y))
    assert y.shape == x.shape and torch.equal(x.detach(), before)
    torch.testing.assert_close(x.grad, surrogate.ATan().grad(before))


def test_upstream_gradient_is_multiplied():
    x = torch.tensor([-0.4, 0.1, 0.8], dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([2.0, -3.0, 0.5], dtype=torch.float64)
    surrogate.Sigmoid(alpha=3.0)(x).backward(upstream)
    s = torch.sigmoid(3.0 * x.detach())
    torch.testing.assert_close(x.grad, upstream * 3.0 * s * (1 - s))


# --------------------------------------------------------------------------------------------
# kernel-facing helpers


@pytest.mark.parametrize("name", sorted(ALL_PARAMS))
def test_derivative_function_equals_autograd(name):
    module = SURROGATES[name](**ALL_PARAMS[name])
    x = random_points(name, seed=3)
    _, grad = spiking_grad(module, x)
    g = surrogate.derivative_function(module.spec)
    torch.testing.assert_close(g(x), grad, rtol=1e-12, atol=1e-12)
    assert surrogate.derivative_function(module.spec) is g  # cached per spec


@pytest.mark.parametrize("name", surrogate.CLOSED_FORM_SURROGATES)
@pytest.mark.parametrize("which", ["defaults", "custom"])
def test_rendered_triton_expression_matches_torch(name, which):
    module = SURROGATES[name](**ALL_PARAMS[name]) if which == "custom" else SURROGATES[name]()
    tree = surrogate.derivative_expression(module.spec)
    assert isinstance(tree, expr.Expr)
    triton_source = expr.render(tree, "triton")
    cuda_source = expr.render(tree, "cuda")
    assert "torch" not in triton_source and "tl." not in cuda_source
    x = random_points(name, count=64, seed=4)
    shim = triton_shim_eval(triton_source, x)
    # the rendered constants are float32-rounded: compare to float32 accuracy
    torch.testing.assert_close(shim, surrogate.derivative_function(module.spec)(x), rtol=1e-5, atol=1e-6)


def test_derivative_expression_variable_name():
    tree = surrogate.derivative_expression(surrogate.Sigmoid().spec, variable="h")
    source = expr.render(tree, "triton")
    assert "h" in source and "x" not in source.replace("exp", "")
    with pytest.raises(ValueError, match="variable"):
        surrogate.derivative_expression(surrogate.Sigmoid().spec, variable="1-x")


def test_constant_derivative_expression():
    tree = surrogate.derivative_expression(surrogate.DeterministicPass().spec)
    assert tree == expr.Expr("num", (), 1.0)
    zero = surrogate.derivative_expression(surrogate.SquarewaveFourierSeries(n=1).spec)
    assert expr.render(zero, "cuda") == "0.0f"
    g = surrogate.derivative_function(surrogate.DeterministicPass().spec)
    out = g(torch.zeros(2, 3, dtype=torch.float16))
    assert out.shape == (2, 3) and out.dtype == torch.float16 and bool((out == 1).all())


@pytest.mark.parametrize(
    ("spec", "error", "pattern"),
    [
        (SurrogateSpec("Nope", ()), ValueError, "unknown surrogate 'Nope'"),
        (surrogate.PoissonPass().spec, ValueError, "no closed-form derivative"),
        (surrogate.MultiLevelSpikeCount(2).spec, ValueError, "no closed-form derivative"),
        (SurrogateSpec("Sigmoid", (("beta", 1.0),)), ValueError, "takes parameters"),
        (SurrogateSpec("Sigmoid", ()), ValueError, "takes parameters"),
        (SurrogateSpec("SoftSign", (("alpha", -1.0),)), ValueError, "alpha"),
        (SurrogateSpec("Sigmoid", (("alpha", float("nan")),)), ValueError, "finite"),
        ("Sigmoid", TypeError, "SurrogateSpec"),
    ],
)
def test_bad_specs(spec, error, pattern):
    with pytest.raises(error, match=pattern):
        surrogate.derivative_function(spec)
    with pytest.raises(error, match=pattern):
        surrogate.derivative_expression(spec)


def test_spec_hashable_and_equal_for_equal_params():
    a, b, c = surrogate.Sigmoid(alpha=4), surrogate.Sigmoid(alpha=4.0), surrogate.Sigmoid(alpha=5.0)
    assert a.spec == b.spec and hash(a.spec) == hash(b.spec)
    assert a.spec != c.spec
    assert len({a.spec, b.spec, c.spec}) == 2
    assert surrogate.ATan(2.0).spec != surrogate.Erf(2.0).spec
    assert surrogate.PiecewiseLeakyReLU(0.5, 0.1).spec == SurrogateSpec("PiecewiseLeakyReLU", (("w", 0.5), ("c", 0.1)))
    assert a.spec.kwargs == {"alpha": 4.0}


def test_spec_follows_attribute_changes():
    module = surrogate.ATan()
    x = torch.tensor([0.3], dtype=torch.float64)
    _, before = spiking_grad(module, x)  # builds the module's cached backward
    torch.testing.assert_close(before, surrogate.ATan(2.0).grad(x))
    module.alpha = 3.0
    assert module.spec == SurrogateSpec("ATan", (("alpha", 3.0),))
    _, grad = spiking_grad(module, x)
    torch.testing.assert_close(grad, surrogate.ATan(3.0).grad(x))


# --------------------------------------------------------------------------------------------
# parameters and modes


@pytest.mark.parametrize(
    ("factory", "error", "pattern"),
    [
        (lambda: surrogate.SoftSign(alpha=0.0), ValueError, "alpha"),
        (lambda: surrogate.SoftSign(alpha=-2.0), ValueError, "alpha"),
        (lambda: surrogate.PiecewiseLeakyReLU(w=0.0), ValueError, "w"),
        (lambda: surrogate.PiecewiseLeakyReLU(w=1.0, c=float("inf")), ValueError, "c"),
        (lambda: surrogate.QPseudoSpike(alpha=1.0), ValueError, "alpha"),
        (lambda: surrogate.QPseudoSpike(alpha=0.5), ValueError, "alpha"),
        (lambda: surrogate.Sigmoid(alpha=float("nan")), ValueError, "finite"),
        (lambda: surrogate.ATan(alpha=float("inf")), ValueError, "finite"),
        (lambda: surrogate.Sigmoid(alpha="4"), TypeError, "alpha"),
        (lambda: surrogate.Sigmoid(alpha=True), TypeError, "alpha"),
        (lambda: surrogate.Sigmoid(alpha=torch.tensor(4.0)), TypeError, "alpha"),
        (lambda: surrogate.Rect(alpha=0.0), ValueError, "alpha"),
        (lambda: surrogate.PiecewiseQuadratic(alpha=-1.0), ValueError, "alpha"),
        (lambda: surrogate.NonzeroSignLogAbs(alpha=0.0), ValueError, "alpha"),
        (lambda: surrogate.SquarewaveFourierSeries(n=2.5), TypeError, "n"),
        (lambda: surrogate.SquarewaveFourierSeries(n=0), ValueError, "n"),
        (lambda: surrogate.Sigmoid(alpha=10**400), ValueError, "Sigmoid: alpha: expected a finite number"),
        (lambda: surrogate.SquarewaveFourierSeries(T_period=0.0), ValueError, "T_period"),
        (lambda: surrogate.Sigmoid(spiking="yes"), TypeError, "spiking"),
        # a negative (or zero) scale would flip (or kill) the gradient silently
        (lambda: surrogate.ATan(alpha=-1), ValueError, r"ATan: alpha: expected a number > 0, got -1"),
        (lambda: surrogate.Sigmoid(alpha=0.0), ValueError, r"Sigmoid: alpha: expected a number > 0"),
        (lambda: surrogate.Erf(alpha=-2.0), ValueError, r"Erf: alpha: expected a number > 0"),
        (lambda: surrogate.SuperSpike(alpha=-1.0), ValueError, r"SuperSpike: alpha: expected a number > 0"),
        (lambda: surrogate.S2NN(beta=-1.0), ValueError, r"S2NN: beta: expected a number > 0"),
        (lambda: surrogate.FakeNumericalGradient(alpha=-0.3), ValueError, r"FakeNumericalGradient: alpha"),
        (lambda: surrogate.LogTailedReLU(alpha=-0.1), ValueError, r"LogTailedReLU: alpha: expected a number >= 0"),
        (lambda: surrogate.LeakyKReLU(leak=-0.1), ValueError, r"LeakyKReLU: leak: expected a number >= 0"),
        (lambda: surrogate.LeakyKReLU(k=0.0), ValueError, r"LeakyKReLU: k: expected a number > 0"),
        (lambda: surrogate.PiecewiseLeakyReLU(c=-0.01), ValueError, r"PiecewiseLeakyReLU: c: expected a number >= 0"),
    ],
)
def test_parameter_validation(factory, error, pattern):
    with pytest.raises(error, match=pattern):
        factory()


def test_negative_alpha_is_refused_on_assignment_too():
    module = surrogate.ATan()
    with pytest.raises(ValueError, match="ATan: alpha: expected a number > 0, got -1.0"):
        module.alpha = -1.0
    assert module.alpha == 2.0


# MultiLevelSpikeCount's parameters are a count and a window: its g is 0 or 1 for any of them.
@pytest.mark.parametrize("name", sorted(set(surrogate.SURROGATES) - {"MultiLevelSpikeCount"}))
def test_no_accepted_parameters_flip_the_gradient_sign(name):
    """Each parameter negated (or set to -1 when it is 0): refused, or the gradient stays >= 0.

    The surrogate gradient stands in for dH/dx >= 0; a negative value trains against the loss.
    """
    cls = surrogate.SURROGATES[name]
    defaults = cls().params
    x = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64)
    for param, default in defaults.items():
        if param == "n":
            continue  # SquarewaveFourierSeries' number of terms: an integer >= 1, checked above
        for value in (-default if default else -1.0, 0.0):
            try:
                module = cls(**{**defaults, param: value})
            except ValueError:
                continue
            grad = module.grad(x)
            assert bool((grad >= 0).all()), f"{name}({param}={value}) accepted with a negative gradient"


def test_assignment_is_validated():
    module = surrogate.SoftSign()
    with pytest.raises(ValueError, match="alpha"):
        module.alpha = -1.0
    assert module.alpha == 2.0
    module.alpha = 3
    assert module.alpha == 3.0 and isinstance(module.alpha, float)


def test_keyword_and_positional_arguments():
    assert surrogate.PiecewiseLeakyReLU(0.5, 0.2, False).params == {"w": 0.5, "c": 0.2}
    assert surrogate.PiecewiseLeakyReLU(0.5, 0.2, False).spiking is False
    assert surrogate.LeakyKReLU(k=2.0).params == {"leak": 0.0, "k": 2.0}
    assert surrogate.S2NN(beta=0.5, alpha=1.0).params == {"alpha": 1.0, "beta": 0.5}
    assert surrogate.SquarewaveFourierSeries(3).n == 3 and isinstance(surrogate.SquarewaveFourierSeries(3).n, int)
    assert surrogate.MultiLevelSpikeCount(4, False).spiking is False


def test_set_spiking_mode():
    module = surrogate.Sigmoid(alpha=2.0)
    x = torch.tensor([-0.5, 0.5], dtype=torch.float64)
    assert module(x).tolist() == [0.0, 1.0]
    module.set_spiking_mode(False)
    assert module.spiking is False
    torch.testing.assert_close(module(x), torch.sigmoid(2.0 * x))
    assert "spiking=False" in repr(module)
    module.set_spiking_mode(True)
    assert module(x).tolist() == [0.0, 1.0]
    with pytest.raises(TypeError, match="spiking"):
        module.set_spiking_mode(2)


def test_grad_helper_and_pickle():
    module = surrogate.Erf(alpha=1.5)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    torch.testing.assert_close(module.grad(x), 1.5 / math.sqrt(math.pi) * torch.exp(-((1.5 * x) ** 2)))
    module(x.clone().requires_grad_(True))  # populate the cached spiking functions first
    for clone in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert clone.spec == module.spec and clone.spiking == module.spiking
        _, grad = spiking_grad(clone, x)
        torch.testing.assert_close(grad, module.grad(x))


def test_torch_func_transforms():
    module = surrogate.ATan(alpha=1.5)
    x = torch.randn(3, 5, dtype=torch.float64)
    per_row = torch.func.vmap(torch.func.grad(lambda row: module(row).sum()))(x)
    torch.testing.assert_close(per_row, module.grad(x))


def test_second_order_gradient_through_primitive_free_path():
    # create_graph through the spiking backward: g is built from differentiable torch ops.
    x = torch.tensor([0.2, -0.3], dtype=torch.float64, requires_grad=True)
    y = surrogate.Sigmoid(alpha=2.0)(x)
    (grad,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x)
    s = torch.sigmoid(2.0 * x.detach())
    torch.testing.assert_close(second, 4.0 * s * (1 - s) * (1 - 2 * s))


# --------------------------------------------------------------------------------------------
# the reference library itself, when installed (comparison only)


@pytest.mark.parametrize("spiking", [True, False], ids=["spiking", "primitive"])
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_matches_reference_library(name, spiking):
    reference = pytest.importorskip("spikingjelly.activation_based.surrogate")
    if name in WITHOUT_PRIMITIVE and not spiking:
        pytest.skip("no primitive in either library")
    args = (3,) if name == "MultiLevelSpikeCount" else ()
    theirs = getattr(reference, name)(*args) if name == "FakeNumericalGradient" else getattr(reference, name)(*args, spiking=spiking)
    ours = SURROGATES[name](*args, spiking=spiking)
    generator = torch.Generator().manual_seed(5)
    x = torch.cat([
        torch.rand(64, generator=generator, dtype=torch.float64) * 6.0 - 3.0,
        torch.tensor([0.0, 1.0, -1.0, 0.5, -0.5, 2.5, 3.0], dtype=torch.float64),
    ])
    if name == "PoissonPass" and spiking:
        x = x.clamp(0.0, 1.0).round()  # deterministic Bernoulli draws
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = theirs(a), ours(b)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(yb, ya.to(yb.dtype), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)


def test_squarewave_fourier_series_with_many_terms_runs_in_a_kernel() -> None:
    """The derivative's terms are summed pairwise: a neuron kernel compiles for large ``n``
    (a left-to-right sum of 600 terms exceeded Python's recursion limit), and its gradient is
    the series summed in float64."""
    from snn import neuron

    n, period = 700, 8.0
    node = neuron.LIFNode(surrogate_function=surrogate.SquarewaveFourierSeries(n=n, T_period=period), step_mode="m")
    x = torch.tensor([[0.3, 2.5], [1.4, 0.2]], dtype=torch.float64, requires_grad=True)
    node(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # the first step's surrogate gradient on the potential (h = x / 2, v_threshold 1), through
    # one step: d spike_0 / d x_0 = g(h_0 - 1) / 2 plus what later steps add; compare g itself
    h = torch.tensor([0.15, 1.25], dtype=torch.float64)
    omega = 2.0 * math.pi / period
    reference = sum(torch.cos((2 * i - 1) * omega * (h - 1.0)) for i in range(1, n)) * (4.0 / period)
    sf = surrogate.SquarewaveFourierSeries(n=n, T_period=period)
    v = (h - 1.0).clone().requires_grad_(True)
    sf(v).sum().backward()
    torch.testing.assert_close(v.grad, reference)


def test_grad_refuses_integer_tensors() -> None:
    """An integer x would truncate g(x) (Sigmoid's g(0) = 1.0, g(1) = 0.07 read as [1, 0])."""
    with pytest.raises(TypeError, match="Sigmoid: x: expected a floating-point tensor, got torch.int64 tensor"):
        surrogate.Sigmoid().grad(torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="PiecewiseLeakyReLU: x: expected a floating-point tensor"):
        surrogate.derivative_function(surrogate.PiecewiseLeakyReLU().spec)(torch.tensor([0, 5]))


def test_spiking_assignment_is_checked() -> None:
    s = surrogate.Sigmoid()
    with pytest.raises(TypeError, match=r"Sigmoid: spiking: expected a bool \(or the integer 0 or 1, a NumPy bool, a one-element boolean tensor\), got str 'no'"):
        s.spiking = "no"  # type: ignore[assignment]  # the wrong type on purpose
    assert s.spiking is True
    assert surrogate.Sigmoid(spiking=0).spiking is False  # 0 and 1 as in SpikingJelly
    s.spiking = False
    x = torch.tensor([0.3])
    assert torch.equal(s(x), torch.sigmoid(4.0 * x))


class _RootGaussian(SurrogateFunctionBase):
    """``g(x) = sqrt(alpha) exp(-x^2)``: a factor of the parameter alone, through ``ops``."""

    param_names = ("alpha",)

    def __init__(self, alpha: float = 4.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def derivative(x, ops, alpha=4.0):
        return ops.sqrt(alpha) * ops.exp(-(x * x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parameter_only_functions_evaluate_on_the_torch_path(dtype: torch.dtype) -> None:
    x = torch.tensor([-1.0, 0.0, 0.5], dtype=dtype, requires_grad=True)
    _RootGaussian(alpha=4.0)(x).sum().backward()
    torch.testing.assert_close(x.grad, 2.0 * torch.exp(-(x.detach() ** 2)))


def test_evaluate_keeps_where_constants_in_the_inputs_precision() -> None:
    x = expr.var("x")
    e = expr.SYMBOLIC_OPS.where(x < 0.0, 0.1, 0.2) * x
    value = expr.evaluate(e, {"x": torch.tensor([-1.0], dtype=torch.float64)})
    assert value.dtype == torch.float64 and value.item() == -0.1
    half = expr.evaluate(e, {"x": torch.tensor([-1.0], dtype=torch.float16)})
    assert half.dtype == torch.float16


def test_float_ops_propagate_nan_as_torch() -> None:
    ops = expr.FLOAT_OPS
    assert math.isnan(ops.sigmoid(math.nan))
    assert math.isnan(ops.minimum(1.0, math.nan)) and math.isnan(ops.minimum(math.nan, 1.0))
    assert math.isnan(ops.maximum(1.0, math.nan)) and math.isnan(ops.maximum(math.nan, 1.0))
    assert expr.TORCH_OPS.sqrt(4.0) == 2.0 and expr.TORCH_OPS.divide(1.0, 0.0) == math.inf


def test_log_tailed_relu_gradient_at_nan_is_one_as_in_the_reference() -> None:
    # alpha for x <= 0, 1/x for x > 1, 1 otherwise: NaN is neither of the first two
    x = torch.tensor([math.nan, -0.5, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(surrogate.LogTailedReLU(0.25)(x).sum(), x)
    assert grad.tolist() == [1.0, 0.25, 1.0, 0.5]


def test_multi_level_spike_count_takes_an_open_gradient_window() -> None:
    counts = surrogate.MultiLevelSpikeCount(2, grad_window=(-math.inf, math.inf))
    x = torch.tensor([-1.0, 0.4, 5.0], requires_grad=True)
    y = counts(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert y.tolist() == [0.0, 0.0, 2.0] and grad.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="MultiLevelSpikeCount: grad_min: expected a finite number, got nan"):
        surrogate.MultiLevelSpikeCount(2, grad_window=(math.nan, 1.0))
