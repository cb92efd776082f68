"""GPU tests: the conformance suite against the torch backend, plus what only a device can show.

Everything here carries ``@pytest.mark.gpu`` and skips with the probe's reason where the backend
cannot run (no CuPy, no device, no NVRTC).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import snn.plugins
from snn import neuron, surrogate
from snn.kernels import NeuronConfig
from snn.testing import BackendConformance

pytestmark = pytest.mark.gpu


class TestCupyConformance(BackendConformance):
    """Every kind, reset, detach_reset, decay_input, claimed surrogate and dtype; odd sizes."""

    backend = "cupy"


class TestCupyConformanceHalfPairs(BackendConformance):
    """float16 with even neuron counts: the two-neurons-per-thread kernels."""

    backend = "cupy"
    dtypes = (torch.float16,)
    size = (5, 4, 6)
    large_size = (3, 2050)


@pytest.fixture
def cuda() -> torch.device:
    reason = snn.plugins.get_registry().backend("cupy").unavailable_reason()
    if reason is not None:
        pytest.skip(f"backend 'cupy' unavailable: {reason}")
    return torch.device("cuda")


def _kernels(kind: str) -> tuple[Any, Any]:
    registry = snn.plugins.get_registry()
    return registry.kernel("cupy", kind, "multi_step"), registry.kernel("torch", kind, "multi_step")


def _config(kind: str, v_reset: float | None = 0.0) -> NeuronConfig:
    return NeuronConfig(kind, 1.0, v_reset, False, True, 2.0 if kind == "lif" else None, surrogate.ATan().spec)


def _grads(kernel: Any, x: torch.Tensor, v0: torch.Tensor, config: NeuronConfig,
           w: torch.Tensor | None) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, v0)]
    w_leaf = w.detach().clone().requires_grad_(True) if w is not None else None
    spikes, v_last, v_seq = kernel(leaves[0], leaves[1], config, w=w_leaf, store_v_seq=True)
    gen = torch.Generator(device=x.device).manual_seed(0)
    loss = (spikes * torch.randn(spikes.shape, generator=gen, device=x.device, dtype=x.dtype)).sum()
    loss = loss + (v_seq.float() ** 2).sum() + v_last.float().sum()
    inputs = leaves + ([w_leaf] if w_leaf is not None else [])
    return [spikes.detach(), v_last.detach(), v_seq.detach(), *torch.autograd.grad(loss, inputs)]


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_misaligned_half_input_and_large_odd_size(cuda: torch.device, kind: str) -> None:
    """A float16 view starting at an odd element (no 32-bit access possible) and N odd."""
    cupy_kernel, torch_kernel = _kernels(kind)
    base = torch.randn(7, 4097, device=cuda, dtype=torch.float16) * 0.9 + 0.45
    x = base[:, 1:]  # contiguous rows of 4096, but the data pointer is 2-byte aligned only
    v0 = torch.zeros(4096, device=cuda, dtype=torch.float16)
    w = torch.tensor(0.3, device=cuda) if kind == "plif" else None
    got = _grads(cupy_kernel, x, v0, _config(kind), w)
    want = _grads(torch_kernel, x, v0, _config(kind), w)
    assert torch.equal(got[0], want[0])
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-2)


def test_runs_on_the_current_torch_stream(cuda: torch.device) -> None:
    cupy_kernel, torch_kernel = _kernels("lif")
    x = torch.randn(16, 1 << 16, device=cuda) + 0.5
    v0 = torch.zeros(1 << 16, device=cuda)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        spikes, v_last, _ = cupy_kernel(x, v0, _config("lif"))
        total = spikes.sum()  # ordered after the kernel on the same stream
    torch.cuda.current_stream().wait_stream(stream)
    want, _, _ = torch_kernel(x, v0, _config("lif"))
    assert total.item() == want.sum().item()


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_training_saves_only_h(cuda: torch.device, kind: str) -> None:
    """Saved for backward: h_seq [T, N] (plus v0 [N] and the 0-dim decay for PLIF)."""
    cupy_kernel, _ = _kernels(kind)
    steps, n = 9, 1000
    x = torch.randn(steps, n, device=cuda, requires_grad=True)
    v0 = torch.zeros(n, device=cuda)
    w = torch.tensor(0.1, device=cuda, requires_grad=True) if kind == "plif" else None
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cupy_kernel(x, v0, _config(kind), w=w)
    large = [t for t in saved if t.numel() == steps * n]
    assert len(large) == 1 and large[0].dtype == x.dtype
    small = sum(t.numel() for t in saved if t.numel() != steps * n)
    assert small <= (n + 2 if kind == "plif" else 0)


def test_inference_saves_nothing(cuda: torch.device) -> None:
    cupy_kernel, _ = _kernels("lif")
    x = torch.randn(4, 100, device=cuda)
    spikes, v_last, v_seq = cupy_kernel(x, torch.zeros(100, device=cuda), _config("lif"))
    assert spikes.grad_fn is None and v_last.grad_fn is None and v_seq is None


def test_neuron_module_on_cupy_matches_torch(cuda: torch.device) -> None:
    torch.manual_seed(0)
    x = (torch.randn(8, 4, 33, device=cuda) + 0.5).requires_grad_(True)
    results = []
    for backend in ("torch", "cupy"):
        node = neuron.ParametricLIFNode(step_mode="m", surrogate_function=surrogate.Erf(), backend=backend).to(cuda)
        xi = x.detach().clone().requires_grad_(True)
        out = node(xi)
        (out.sum() + node.v.sum()).backward()
        results.append((out.detach(), xi.grad, node.w.grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[1][2], results[0][2], rtol=1e-5, atol=1e-5)


def test_compiled_once_per_configuration(cuda: torch.device) -> None:
    from snn_cupy import runtime

    cupy_kernel, _ = _kernels("if")
    x = torch.randn(3, 10, device=cuda, requires_grad=True)
    cupy_kernel(x, torch.zeros(10, device=cuda), _config("if"))[0].sum().backward()
    count = len(runtime._functions)
    for _ in range(3):
        cupy_kernel(x, torch.zeros(10, device=cuda), _config("if"))[0].sum().backward()
    assert len(runtime._functions) == count
