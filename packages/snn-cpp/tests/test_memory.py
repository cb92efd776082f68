"""snn-cpp's kernels write every element of the reused, dirty buffers of the shared output
cache (:mod:`snn.backends.memory`, tested in snn-core); ``snn_cpp.memory`` keeps its names."""

from __future__ import annotations

import pytest
import torch

from snn import surrogate
from snn.backends import memory
from snn.backends.torch import multi_step as torch_multi_step
from snn.plugins import get_registry
from snn_cpp import memory as cpp_memory
from snn_cpp.kernel import multi_step


@pytest.fixture(autouse=True)
def _empty_cache():
    memory.empty_cache()
    yield
    memory.empty_cache()


def test_old_module_names_are_the_shared_objects():
    assert cpp_memory.empty_like is memory.empty_like and cpp_memory.empty_cache is memory.empty_cache
    assert cpp_memory.LARGE_BYTES == memory.LARGE_BYTES


@pytest.mark.usefixtures("cpp_ready")
def test_kernels_write_every_element_of_reused_buffers():
    config = get_registry().model("plif").config(surrogate.Sigmoid().spec, False, v_reset=None)
    gen = torch.Generator().manual_seed(0)
    steps, n = 2, memory.LARGE_BYTES // 4 // 2 + 7
    x = torch.rand(steps, n, generator=gen) * 1.5
    w = torch.tensor(0.3)
    for fill in (float("nan"), 7.0):  # dirty the cache, then compute again on those buffers
        dirty = [memory.empty_like(x).fill_(fill) for _ in range(4)]
        del dirty
        xs = [x.clone().requires_grad_() for _ in range(2)]
        ws = [w.clone().requires_grad_() for _ in range(2)]
        got = multi_step(xs[0], (torch.zeros(n),), config, learnables=(ws[0],), store_state_seqs=True)
        memory.empty_cache()  # the reference on fresh memory
        want = torch_multi_step(xs[1], (torch.zeros(n),), config, learnables=(ws[1],), store_state_seqs=True)
        assert torch.equal(got[0], want[0])
        torch.testing.assert_close(got[2][0], want[2][0])
        for out in (got, want):
            (out[0].sum() + out[2][0].sum()).backward()
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ws[0].grad, ws[1].grad, rtol=1e-4, atol=1e-3)
