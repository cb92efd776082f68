"""GPU checks at realistic sizes (``@pytest.mark.gpu``; run by ``nox -s gpu`` on a GPU machine).

They run the shared conformance suite on CUDA, compare the compiled kernels with the torch
backend on the same device for every registered model (and the synthetic two-state model), check
that every claimed surrogate's generated kernel compiles for the device, that ``T`` is a runtime
argument (no recompilation per sequence length), that learnable gradients are bitwise
reproducible, and that Inductor compiles a layer around the kernel without graph breaks.
Skipped without CUDA or under the interpreter.
"""

from __future__ import annotations

import pytest
import torch
from snn_triton_test_helpers import SYNTHETIC_MODELS, SYNTHETIC_PLUGIN, all_model_names

from snn.plugins import get_registry
from snn.surrogate import SURROGATES, Sigmoid
from snn.testing import BackendConformance
from snn_triton import codegen
from snn_triton.multistep import multi_step
from snn_triton.runtime import interpreter_enabled

ON_GPU = torch.cuda.is_available() and not interpreter_enabled()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device and compiled kernels (TRITON_INTERPRET unset)"),
]
#: The tests that use the synthetic models register them (not the conformance classes, which do it themselves).
with_synthetic_models = pytest.mark.usefixtures("synthetic_models")

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


class TestTritonConformanceOnCuda(BackendConformance):
    """The shared suite on the real device (compiled kernels)."""

    backend = "triton"
    devices = ("cuda",)


class TestSyntheticModelsConformanceOnCuda(BackendConformance):
    """The synthetic models of the tests (two states, input gains, saved input) on CUDA."""

    backend = "triton"
    devices = ("cuda",)
    models = tuple(SYNTHETIC_MODELS)
    plugin = SYNTHETIC_PLUGIN
    plugin_name = "snn_triton_tests"


def model_named(name):
    return SYNTHETIC_MODELS.get(name) or get_registry().model(name)


def run_both(config, x, states, learnables):
    """Spikes, last states and gradients (input, states, learnables) of the triton and torch kernels."""
    reference = get_registry().kernel("torch", "multi_step")
    results = []
    for kernel in (multi_step, reference):
        leaves = [t.detach().clone().requires_grad_() for t in (x, *states, *learnables)]
        m = len(states)
        spikes, last, seqs = kernel(leaves[0], tuple(leaves[1 : 1 + m]), config,
                                    learnables=tuple(leaves[1 + m :]), store_state_seqs=True)
        gen = torch.Generator(device=x.device).manual_seed(0)
        weight = torch.rand(spikes.shape, generator=gen, device=x.device, dtype=spikes.dtype)
        loss = (spikes * weight).float().sum() + sum(v.float().sum() for v in last)
        loss = loss + 0.5 * sum(v.float().sum() for v in seqs)
        grads = torch.autograd.grad(loss, leaves)
        results.append((spikes, last, grads))
    return results


def assert_agree(dtype, got, want, n_learnables):
    """Spike trains equal (allowing a 1e-5 fraction of neurons with a rounding-edge crossing);
    states and gradients close on the neurons whose trains agree."""
    spikes, last, grads = got
    spikes_ref, last_ref, grads_ref = want
    steps = spikes.shape[0]
    agree = (spikes.reshape(steps, -1) == spikes_ref.reshape(steps, -1)).all(0)
    assert (~agree).float().mean().item() <= 1e-5, f"{int((~agree).sum())} neurons fire differently"
    tol = TOLERANCE[dtype]
    for a, b in zip(last, last_ref):
        torch.testing.assert_close(a.reshape(-1)[agree].float(), b.reshape(-1)[agree].float(), rtol=tol, atol=tol)
    gx, gx_ref = grads[0].reshape(steps, -1), grads_ref[0].reshape(steps, -1)
    torch.testing.assert_close(gx[:, agree].float(), gx_ref[:, agree].float(), rtol=tol, atol=tol)
    for a, b in zip(grads[1 : len(grads) - n_learnables], grads_ref[1 : len(grads) - n_learnables]):
        torch.testing.assert_close(a.reshape(-1)[agree].float(), b.reshape(-1)[agree].float(), rtol=tol, atol=tol)
    if n_learnables and bool(agree.all()):
        for a, b in zip(grads[-n_learnables:], grads_ref[-n_learnables:]):
            torch.testing.assert_close(a.float(), b.float(), rtol=tol * 10, atol=tol * 10)


def inputs(config, shape, seed, dtype=torch.float32):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = (torch.rand(shape, generator=gen, device="cuda") * 1.2).to(dtype)
    states = tuple(
        (torch.rand(shape[1:], generator=gen, device="cuda") * 0.5).to(dtype) for _ in config.model.states
    )
    learnables = tuple(torch.tensor(0.3, device="cuda") for _ in config.model.learnables)
    return x, states, learnables


@with_synthetic_models
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", all_model_names())
def test_realistic_size_matches_torch(name, dtype):
    config = model_named(name).config(Sigmoid().spec)
    x, states, learnables = inputs(config, (32, 64, 16384), seed=1, dtype=dtype)
    got, want = run_both(config, x, states, learnables)
    assert_agree(dtype, got, want, len(learnables))


@with_synthetic_models
@pytest.mark.parametrize("name", all_model_names())
def test_odd_size_non_contiguous(name):
    config = model_named(name).config(Sigmoid().spec, v_reset=None)
    x, states, learnables = inputs(config, (9, 2 * (2**20 + 7)), seed=2)
    x = x[:, ::2]
    assert not x.is_contiguous()
    states = tuple(s[::2] for s in states)
    got, want = run_both(config, x, states, learnables)
    assert_agree(torch.float32, got, want, len(learnables))


@with_synthetic_models
@pytest.mark.parametrize("surrogate", get_registry().backend("triton").claimed_surrogates())
@pytest.mark.parametrize("name", ["lif", "twostate"])
def test_every_surrogate_compiles_and_matches(name, surrogate):
    config = model_named(name).config(SURROGATES[surrogate]().spec)
    x, states, learnables = inputs(config, (6, 4099), seed=3)
    got, want = run_both(config, x, states, learnables)
    assert_agree(torch.float32, got, want, len(learnables))


def compiled_variants(function) -> int:
    try:
        return sum(len(cache[0]) for cache in function.device_caches.values())
    except (AttributeError, TypeError, IndexError):
        pytest.skip("this Triton version keeps its kernel cache elsewhere")


def test_sequence_length_is_a_runtime_argument():
    config = model_named("lif").config(Sigmoid().spec)

    def run(steps):
        x = torch.rand((steps, 1000), device="cuda", requires_grad=True)
        spikes, _, _ = multi_step(x, (torch.zeros(1000, device="cuda"),), config)
        spikes.sum().backward()

    for steps in (5, 6):
        run(steps)
    variant = codegen.BackwardVariant(True, (False,), (False,), True, False)
    forward = codegen.forward_kernel(config, "float32", True, False)[0]
    backward = codegen.backward_kernel(config, "float32", variant)[0]
    before = compiled_variants(forward), compiled_variants(backward)
    for steps in (1, 16, 33, 128):
        run(steps)
    assert (compiled_variants(forward), compiled_variants(backward)) == before


@with_synthetic_models
@pytest.mark.parametrize("name", ["plif", "twostate"])
def test_learnable_gradients_are_bitwise_reproducible(name):
    config = model_named(name).config(Sigmoid().spec)
    x, states, learnables = inputs(config, (16, 2**20 + 3), seed=4)
    grads = []
    for _ in range(3):
        params = tuple(p.clone().requires_grad_() for p in learnables)
        spikes, last, _ = multi_step(x, states, config, learnables=params)
        grads.append(torch.autograd.grad(spikes.sum() + sum(v.sum() for v in last), params))
    assert all(torch.equal(a, b) for a, b in zip(grads[0], grads[1]))
    assert all(torch.equal(a, b) for a, b in zip(grads[1], grads[2]))


def test_inductor_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    config = model_named("lif").config(Sigmoid().spec)
    linear = torch.nn.Linear(256, 512, device="cuda")

    def net(data):
        currents = linear(data)
        spikes, _, _ = multi_step(currents, (torch.zeros_like(currents[0]),), config)
        return spikes.mean()

    data = torch.rand((16, 32, 256), device="cuda")
    compiled = torch.compile(net, fullgraph=True)
    got = compiled(data)
    (got_grad,) = torch.autograd.grad(got, linear.weight)
    want = net(data)
    (want_grad,) = torch.autograd.grad(want, linear.weight)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def test_auto_prefers_a_kernel_backend_on_cuda():
    registry = get_registry()
    assert registry.backend("triton").unavailable_reason() is None
    config = registry.model("lif").config(Sigmoid().spec)
    assert registry.auto_backend(config, "multi_step", "cuda", torch.float32) != "torch"
