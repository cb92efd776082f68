"""The plugin's own surrogate, MultiGaussian: its math, and snn's conformance suite on every backend.

The suite runs the ``surrogates`` group of :class:`snn.testing.BackendConformance` with
``extra_surrogates = (MultiGaussian,)`` once per installed backend: a generating backend whose
operations render the derivative (torch here; Triton, CuPy and the compiled CPU backend where
installed) must match the float64 autograd reference; a backend that does not serve it (the
example backend's hand-written kernel) skips with the reason.
"""

from __future__ import annotations

import importlib.metadata
import math

import pytest
import torch

import snn_example_plugin.plugin as example_plugin
from snn import neuron
from snn.errors import UnsupportedOperationError
from snn.plugins import get_registry, reset, temporary_plugin
from snn.surrogate import Sigmoid, derivative_expression, derivative_function
from snn.testing import BackendConformance
from snn_example_plugin.surrogate import MultiGaussian


def _installed() -> bool:
    return any(ep.name == "example" for ep in importlib.metadata.entry_points(group="snn"))


def _normal_density(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2.0 * math.pi))


def test_derivative_is_the_written_out_formula_and_the_primitives_slope() -> None:
    x = torch.linspace(-4.0, 4.0, 161, dtype=torch.float64)
    for sigma, h, s in ((0.5, 0.15, 6.0), (1.0, 0.3, 2.0), (0.2, 0.0, 1.0)):
        sg = MultiGaussian(sigma, h, s)
        formula = (1 + h) * _normal_density(x, 0.0, sigma) - h * _normal_density(x, sigma, s * sigma) \
            - h * _normal_density(x, -sigma, s * sigma)
        torch.testing.assert_close(sg.grad(x), formula, rtol=1e-12, atol=1e-12)
        # the primitive's slope, by central differences in float64 (step 1e-5: error ~1e-10 here)
        primitive = MultiGaussian(sigma, h, s, spiking=False)
        step = 1e-5
        slope = (primitive(x + step) - primitive(x - step)) / (2 * step)
        torch.testing.assert_close(slope, formula, rtol=0, atol=1e-8)
        # what kernels receive evaluates to the same numbers
        torch.testing.assert_close(derivative_function(sg.spec)(x), formula, rtol=1e-12, atol=1e-12)


def test_the_spec_carries_the_class_and_a_generating_backend_serves_it() -> None:
    spec = MultiGaussian(sigma=0.4).spec
    assert spec.cls is MultiGaussian and spec.params == (("sigma", 0.4), ("h", 0.15), ("s", 6.0))
    from snn.expr import operations

    assert operations(derivative_expression(spec)) <= {"+", "-", "*", "/", "neg", "exp"}
    torch_backend = get_registry().backend("torch")
    assert torch_backend.serves_surrogate(spec)
    assert "MultiGaussian" not in torch_backend.claimed_surrogates()  # only snn.surrogate's are listed by name


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="MultiGaussian: sigma: expected a finite number > 0, got 0.0"):
        MultiGaussian(sigma=0.0)
    with pytest.raises(ValueError, match="MultiGaussian: h: expected a finite number >= 0, got -0.1"):
        MultiGaussian(h=-0.1)
    with pytest.raises(TypeError, match="MultiGaussian: s: expected a real number, got str"):
        MultiGaussian(s="6")  # type: ignore[arg-type]  # a wrong type on purpose
    sg = MultiGaussian()
    with pytest.raises(ValueError, match="sigma"):
        sg.sigma = float("nan")
    assert sg.sigma == 0.5


def test_a_neuron_with_it_runs_the_fused_torch_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch backend's multi-step kernel runs (not the autograd loop), with this derivative."""
    import snn.backends.torch as torch_backend

    calls = []
    real = torch_backend.multi_step

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[2])
        return real(*args, **kwargs)  # type: ignore[arg-type]  # forwarded unchanged

    monkeypatch.setattr(torch_backend, "multi_step", counting)
    reset()  # a fresh registry imports the (patched) kernel
    try:
        x = (torch.rand(6, 5, dtype=torch.float64) * 2).requires_grad_()
        lif = neuron.LIFNode(surrogate_function=MultiGaussian(), step_mode="m")
        spikes = lif(x)
        (spikes * torch.arange(1.0, 7.0, dtype=torch.float64).view(6, 1)).sum().backward()
    finally:
        reset()
    (config,) = calls
    assert config.surrogate.cls is MultiGaussian
    # against the plain loop of the LIF equations with the same surrogate derivative
    g = derivative_function(MultiGaussian().spec)
    x2 = x.detach().clone().requires_grad_()
    v, out = torch.zeros(5, dtype=torch.float64), []
    for t in range(6):
        h = v + (x2[t] - v) / 2.0
        s = _SurrogateSpike.apply(h - 1.0, g)
        v = h * (1.0 - s)
        out.append(s)
    loop = torch.stack(out)
    (loop * torch.arange(1.0, 7.0, dtype=torch.float64).view(6, 1)).sum().backward()
    assert torch.equal(spikes.detach(), loop.detach())
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)


class _SurrogateSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, z: torch.Tensor, g: object) -> torch.Tensor:
        ctx.save_for_backward(z)  # type: ignore[attr-defined]  # ctx is torch's FunctionCtx
        ctx.g = g  # type: ignore[attr-defined]  # as above
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (z,) = ctx.saved_tensors  # type: ignore[attr-defined]  # as above
        return grad * ctx.g(z), None  # type: ignore[attr-defined]  # as above


def test_a_hand_written_backend_refuses_it_naming_the_ones_that_serve_it() -> None:
    context = temporary_plugin(example_plugin, name="example") if not _installed() else _Installed()
    with context:
        x = torch.rand(3, 4)
        with pytest.raises(UnsupportedOperationError, match="surrogate 'MultiGaussian'") as caught:
            neuron.LIFNode(surrogate_function=MultiGaussian(), step_mode="m", backend="example")
        assert "torch" in caught.value.alternatives and "example" not in caught.value.alternatives
        lif = neuron.LIFNode(surrogate_function=MultiGaussian(), step_mode="m", backend="torch")
        lif.backend = "auto"  # auto never picks a backend lacking the surrogate
        assert torch.equal(lif(x), neuron.LIFNode(surrogate_function=MultiGaussian(), step_mode="m")(x))
        served = neuron.LIFNode(surrogate_function=Sigmoid(), step_mode="m", backend="example")
        assert torch.equal(served(x), neuron.LIFNode(step_mode="m")(x))  # a surrogate it names is served


class _Installed:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _backends() -> list[str]:
    names = set(get_registry().backends)
    if not _installed():
        names.add("example")
    return sorted(names)


def _conformance_class(backend: str) -> type:
    """The suite's surrogates group on ``backend``, with MultiGaussian."""

    class Suite(BackendConformance):
        # the built-in surrogates are each backend's own suite's job
        surrogates = ("Sigmoid",)
        extra_surrogates = (MultiGaussian,)
        # the example's hand-written backend implements LIF alone;
        # generating backends run both
        models = ("lif", "adaptive_lif")[: 1 if backend == "example" else 2]
        plugin = None if _installed() else example_plugin
        plugin_name = "example"
        # only the surrogate group here: the rest is each backend's own suite
        test_dynamics = None
        test_dtypes = None
        test_modes = None
        test_layouts = None

    Suite.backend = backend
    Suite.__name__ = Suite.__qualname__ = f"TestMultiGaussianOn_{backend}"
    return Suite


for _backend in _backends():
    globals()[f"TestMultiGaussianOn_{_backend}"] = _conformance_class(_backend)
