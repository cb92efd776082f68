"""GPU checks at realistic sizes (``@pytest.mark.gpu``; run by ``nox -s gpu`` on a GPU machine).

They compare the compiled kernels with the torch backend on the same device, check that every
claimed surrogate's generated derivative compiles for the device, that ``T`` is a runtime
argument (no recompilation per sequence length), that PLIF's ``w`` gradient is bitwise
reproducible, and that Inductor compiles a layer around the kernels without graph breaks.
Skipped without CUDA or under the interpreter.
"""

from __future__ import annotations

import pytest
import torch

from snn.kernels import NeuronConfig
from snn.surrogate import SURROGATES, Sigmoid
from snn.testing import BackendConformance
from snn_triton import triton_kernels
from snn_triton.multistep import if_multi_step, lif_multi_step, plif_multi_step
from snn_triton.plugin import claimed_surrogates
from snn_triton.runtime import interpreter_enabled

ON_GPU = torch.cuda.is_available() and not interpreter_enabled()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device and compiled kernels (TRITON_INTERPRET unset)"),
]

KERNELS = {"if": if_multi_step, "lif": lif_multi_step, "plif": plif_multi_step}
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


class TestTritonConformanceOnCuda(BackendConformance):
    """The shared suite on the real device (compiled kernels)."""

    backend = "triton"
    devices = ("cuda",)


def reference(kind):
    from snn.plugins import get_registry

    return get_registry().kernel("torch", kind, "multi_step")


def config(kind, surrogate=None, v_reset=0.0):
    return NeuronConfig(kind, 1.0, v_reset, False, True, 2.0 if kind == "lif" else None, (surrogate or Sigmoid()).spec)


def run_both(kind, cfg, x, v0, w):
    """Spikes, v_last and gradients (x, v0, w) of the triton and torch kernels for one input."""
    results = []
    for kernel in (KERNELS[kind], reference(kind)):
        leaves = [t.detach().clone().requires_grad_() for t in (x, v0) + ((w,) if w is not None else ())]
        spikes, v_last, v_seq = kernel(leaves[0], leaves[1], cfg, w=leaves[2] if w is not None else None,
                                       store_v_seq=True)
        gen = torch.Generator(device=x.device).manual_seed(0)
        weight = torch.rand(spikes.shape, generator=gen, device=x.device, dtype=spikes.dtype)
        loss = (spikes * weight).float().sum() + v_last.float().sum() + 0.5 * v_seq.float().sum()
        grads = torch.autograd.grad(loss, leaves)
        results.append((spikes, v_last, grads))
    return results


def assert_agree(kind, dtype, got, want):
    """Spike trains equal (allowing a 1e-5 fraction of neurons with a rounding-edge crossing);
    potentials and gradients close on the neurons whose trains agree."""
    spikes, v_last, grads = got
    spikes_ref, v_last_ref, grads_ref = want
    agree = (spikes.reshape(spikes.shape[0], -1) == spikes_ref.reshape(spikes.shape[0], -1)).all(0)
    assert (~agree).float().mean().item() <= 1e-5, f"{int((~agree).sum())} neurons fire differently"
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(v_last.reshape(-1)[agree].float(), v_last_ref.reshape(-1)[agree].float(),
                               rtol=tol, atol=tol)
    gx, gx_ref = grads[0].reshape(grads[0].shape[0], -1), grads_ref[0].reshape(grads[0].shape[0], -1)
    torch.testing.assert_close(gx[:, agree].float(), gx_ref[:, agree].float(), rtol=tol, atol=tol)
    if kind == "plif" and bool(agree.all()):
        torch.testing.assert_close(grads[2].float(), grads_ref[2].float(), rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_realistic_size_matches_torch(kind, dtype):
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = (torch.rand((32, 64, 16384), generator=gen, device="cuda") * 1.2).to(dtype)
    v0 = torch.zeros((64, 16384), device="cuda", dtype=dtype)
    w = torch.tensor(0.3, device="cuda") if kind == "plif" else None
    got, want = run_both(kind, config(kind), x, v0, w)
    assert_agree(kind, dtype, got, want)


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_odd_size_non_contiguous(kind):
    gen = torch.Generator(device="cuda").manual_seed(2)
    base = torch.rand((9, 2 * (2**20 + 7)), generator=gen, device="cuda") * 1.3
    x = base[:, ::2]
    assert not x.is_contiguous()
    v0 = torch.rand(2**20 + 7, generator=gen, device="cuda") * 0.5
    w = torch.tensor(-0.4, device="cuda") if kind == "plif" else None
    got, want = run_both(kind, config(kind, v_reset=None), x, v0, w)
    assert_agree(kind, torch.float32, got, want)


@pytest.mark.parametrize("name", claimed_surrogates())
def test_every_surrogate_compiles_and_matches(name):
    gen = torch.Generator(device="cuda").manual_seed(3)
    x = torch.rand((6, 4099), generator=gen, device="cuda") * 1.5
    v0 = torch.zeros(4099, device="cuda")
    got, want = run_both("lif", config("lif", SURROGATES[name]()), x, v0, None)
    assert_agree("lif", torch.float32, got, want)


def compiled_variants(function) -> int:
    try:
        return sum(len(cache[0]) for cache in function.device_caches.values())
    except (AttributeError, TypeError, IndexError):
        pytest.skip("this Triton version keeps its kernel cache elsewhere")


def test_sequence_length_is_a_runtime_argument():
    cfg = config("lif")
    for steps in (5, 6):
        x = torch.rand((steps, 1000), device="cuda", requires_grad=True)
        spikes, _, _ = lif_multi_step(x, torch.zeros(1000, device="cuda"), cfg)
        spikes.sum().backward()
    forward, backward = compiled_variants(triton_kernels.forward_kernel), compiled_variants(triton_kernels.backward_kernel)
    for steps in (1, 16, 33, 128):
        x = torch.rand((steps, 1000), device="cuda", requires_grad=True)
        spikes, _, _ = lif_multi_step(x, torch.zeros(1000, device="cuda"), cfg)
        spikes.sum().backward()
    assert compiled_variants(triton_kernels.forward_kernel) == forward
    assert compiled_variants(triton_kernels.backward_kernel) == backward


def test_plif_w_gradient_is_bitwise_reproducible():
    gen = torch.Generator(device="cuda").manual_seed(4)
    x = torch.rand((16, 2**20 + 3), generator=gen, device="cuda") * 1.4
    v0 = torch.zeros(2**20 + 3, device="cuda")
    grads = []
    for _ in range(3):
        w = torch.tensor(0.1, device="cuda", requires_grad=True)
        spikes, v_last, _ = plif_multi_step(x, v0, config("plif"), w=w)
        grads.append(torch.autograd.grad(spikes.sum() + v_last.sum(), w)[0])
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[1], grads[2])


def test_inductor_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    cfg = config("lif")
    linear = torch.nn.Linear(256, 512, device="cuda")

    def net(inputs):
        currents = linear(inputs)
        spikes, _, _ = lif_multi_step(currents, torch.zeros_like(currents[0]), cfg)
        return spikes.mean()

    inputs = torch.rand((16, 32, 256), device="cuda")
    compiled = torch.compile(net, fullgraph=True)
    got = compiled(inputs)
    (got_grad,) = torch.autograd.grad(got, linear.weight)
    want = net(inputs)
    (want_grad,) = torch.autograd.grad(want, linear.weight)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def test_auto_prefers_a_kernel_backend_on_cuda():
    from snn.plugins import get_registry

    registry = get_registry()
    assert registry.backend("triton").unavailable_reason() is None
    assert registry.auto_backend("lif", "multi_step", "cuda", torch.float32, "Sigmoid") != "torch"
