"""GPU tests: the conformance suite on CUDA, plus what only a device can show.

Everything here carries ``@pytest.mark.gpu`` and skips with the probe's reason where the backend
cannot run (no CuPy, no device, no NVRTC).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import snn.plugins
from snn import neuron, surrogate
from snn.models import NeuronConfig, NeuronModel, kernel_plan
from snn.testing import BackendConformance

pytestmark = pytest.mark.gpu


class TestCupyConformance(BackendConformance):
    """Every served model x resets x detach_reset x examples, claimed surrogate and dtype; odd sizes."""

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


def _kernels() -> tuple[Any, Any]:
    registry = snn.plugins.get_registry()
    return registry.kernel("cupy", "multi_step"), registry.kernel("torch", "multi_step")


def _inputs(config: NeuronConfig, x: torch.Tensor, learnable: float = 0.3) -> tuple[Any, Any]:
    model = config.model
    initial = model.initial_values(config.hyper)
    states = tuple(torch.full(x.shape[1:], initial[name], device=x.device, dtype=x.dtype) for name in model.state_names)
    learnables = tuple(torch.tensor(learnable, device=x.device) for _ in model.learnables)
    return states, learnables


def _grads(kernel: Any, x: torch.Tensor, states: Any, config: NeuronConfig, learnables: Any) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    states = tuple(s.detach().clone().requires_grad_(True) for s in states)
    learnables = tuple(p.detach().clone().requires_grad_(True) for p in learnables)
    spikes, last, seqs = kernel(x, states, config, learnables=learnables, store_state_seqs=True)
    gen = torch.Generator(device=x.device).manual_seed(0)
    loss = (spikes * torch.randn(spikes.shape, generator=gen, device=x.device, dtype=x.dtype)).sum()
    loss = loss + sum((v.float() ** 2).sum() for v in seqs) + sum(v.float().sum() for v in last)
    grads = torch.autograd.grad(loss, (x, *states, *learnables))
    return [spikes.detach(), *(v.detach() for v in last), *(v.detach() for v in seqs), *grads]


def test_misaligned_half_input_and_large_odd_size(cuda: torch.device, models: Any) -> None:
    """A float16 view starting at an odd element (no 32-bit access possible), N = 4096, and odd N,
    for every registered model, against the torch backend on the same device."""
    cupy_kernel, torch_kernel = _kernels()
    for model in models.registered():
        config = model.config(surrogate.ATan().spec)
        flat = torch.randn(7 * 4096 + 1, device=cuda, dtype=torch.float16) * 0.9 + 0.45
        misaligned = flat[1:].view(7, 4096)  # contiguous, data pointer 2-byte aligned only
        assert misaligned.is_contiguous() and misaligned.data_ptr() % 4 == 2
        for x in (misaligned, flat[: 7 * 4095].view(7, 4095)):
            states, learnables = _inputs(config, x)
            got = _grads(cupy_kernel, x, states, config, learnables)
            want = _grads(torch_kernel, x, states, config, learnables)
            assert torch.equal(got[0], want[0]), model.name
            for a, b in zip(got[1:], want[1:]):
                torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-2)


def test_every_model_matches_the_host_emulation(cuda: torch.device, models: Any, model: NeuronModel) -> None:
    """Real CUDA arithmetic against the same source run on the CPU (synthetic models included):
    float32, every variant; ``expf`` and friends may differ by an ulp between the two."""
    from snn_cupy.host import multi_step as host_kernel

    cupy_kernel, _ = _kernels()
    for config in models.configs(model, surrogate.Sigmoid().spec):
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(9, 257, generator=gen) * 0.9 + 0.45
        states, learnables = _inputs(config, x)
        want = _grads(host_kernel, x, states, config, learnables)
        got = _grads(cupy_kernel, x.to(cuda), tuple(s.to(cuda) for s in states), config,
                     tuple(p.to(cuda) for p in learnables))
        assert torch.equal(got[0].cpu(), want[0])
        for a, b in zip(got[1:], want[1:]):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)


def test_runs_on_the_current_torch_stream(cuda: torch.device) -> None:
    cupy_kernel, torch_kernel = _kernels()
    config = neuron.LIFNode(step_mode="m").neuron_config()
    x = torch.randn(16, 1 << 16, device=cuda) + 0.5
    v0 = (torch.zeros(1 << 16, device=cuda),)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        spikes, _, _ = cupy_kernel(x, v0, config)
        total = spikes.sum()  # ordered after the kernel on the same stream
    torch.cuda.current_stream().wait_stream(stream)
    want, _, _ = torch_kernel(x, v0, config)
    assert total.item() == want.sum().item()


def test_training_saves_only_what_the_plan_names(cuda: torch.device, models: Any, model: NeuronModel) -> None:
    """Saved for backward: the plan's charged states (float32 [T, N]), its initial states, the
    input only when the plan saves it, and one float32 number per learnable parameter."""
    cupy_kernel, _ = _kernels()
    config = model.config(surrogate.Sigmoid().spec)
    plan = kernel_plan(config)
    steps, n = 9, 1000
    x = torch.randn(steps, n, device=cuda, requires_grad=True)
    states, learnables = _inputs(config, x.detach())
    learnables = tuple(p.requires_grad_(True) for p in learnables)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cupy_kernel(x, states, config, learnables=learnables)
    large = [t for t in saved if t.numel() == steps * n]
    assert len(large) == len(plan.saved_states) + plan.save_input
    assert sum(t.dtype == torch.float32 for t in large) >= len(plan.saved_states)
    states_saved = [t for t in saved if t.numel() == n]
    assert len(states_saved) == len(plan.initial_states_needed)
    assert sum(t.numel() for t in saved if t.numel() not in (n, steps * n)) == len(model.learnables)


def test_inference_saves_nothing(cuda: torch.device) -> None:
    cupy_kernel, _ = _kernels()
    config = neuron.LIFNode(step_mode="m").neuron_config()
    x = torch.randn(4, 100, device=cuda)
    spikes, (v_last,), v_seq = cupy_kernel(x, (torch.zeros(100, device=cuda),), config)
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

    cupy_kernel, _ = _kernels()
    config = neuron.IFNode(step_mode="m").neuron_config()
    x = torch.randn(3, 10, device=cuda, requires_grad=True)
    cupy_kernel(x, (torch.zeros(10, device=cuda),), config)[0].sum().backward()
    count = len(runtime._functions)
    for _ in range(3):
        cupy_kernel(x, (torch.zeros(10, device=cuda),), config)[0].sum().backward()
    assert len(runtime._functions) == count
