"""Large outputs (:mod:`snn.backends.memory`): the buffer cache (reuse after release, the limit,
turning it off), huge pages, and the torch backend's kernels writing every element of reused,
dirty buffers."""

from __future__ import annotations

import gc

import pytest
import torch

from snn.backends import memory
from snn.backends.torch import multi_step as torch_multi_step
from snn.testing.buffers import check_kernel_on_reused_buffers

LARGE = (memory.LARGE_BYTES // 4 // 64 + 1, 64)  # float32 elements just above the threshold


@pytest.fixture(autouse=True)
def _empty_cache():
    memory.empty_cache()
    yield
    memory.empty_cache()


def test_small_outputs_are_plain_tensors():
    out = memory.empty_like(torch.ones(3, 5))
    assert out.shape == (3, 5) and out.dtype == torch.float32 and out.is_contiguous()
    assert out.untyped_storage().resizable()


@pytest.mark.skipif(not memory._use_cache, reason="the buffer cache is off here")
def test_released_buffers_are_reused():
    like = torch.empty(LARGE)
    first = memory.empty_like(like)
    assert first.shape == LARGE and first.is_contiguous() and not first.untyped_storage().resizable()
    first.fill_(3.0)
    pointer = first.data_ptr()
    view = first[1:]  # a view keeps the buffer leased
    del first
    gc.collect()
    assert memory.cached_bytes() == 0
    del view
    assert memory.cached_bytes() == LARGE[0] * LARGE[1] * 4
    second = memory.empty_like(like.double()[:, :32])  # another dtype, same number of bytes
    assert second.data_ptr() == pointer and second.dtype == torch.float64
    assert memory.cached_bytes() == 0
    other = memory.empty_like(torch.empty(LARGE[0] + 1, LARGE[1]))  # another size: a new buffer
    assert other.data_ptr() != pointer


@pytest.mark.skipif(not memory._use_cache, reason="the buffer cache is off here")
def test_cache_limit(monkeypatch):
    size = LARGE[0] * LARGE[1] * 4
    monkeypatch.setattr(memory, "CACHE_LIMIT_BYTES", 2 * size)
    tensors = [memory.empty_like(torch.empty(LARGE)) for _ in range(4)]
    del tensors
    assert memory.cached_bytes() == 2 * size
    memory.empty_cache()
    assert memory.cached_bytes() == 0


def test_cache_off(monkeypatch):
    monkeypatch.setattr(memory, "_use_cache", False)
    out = memory.empty_like(torch.empty(LARGE))
    assert out.untyped_storage().resizable() and out.shape == LARGE
    del out
    assert memory.cached_bytes() == 0


def test_env_turns_huge_pages_off(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda *args: calls.append(args) or 0)
    monkeypatch.setattr(memory, "_use_cache", False)
    out = memory.empty(LARGE, torch.float32, torch.device("cpu"))
    assert len(calls) == 1  # large: advised (the advice covers the 2 MiB pages inside it)
    start, length, advice = calls[0]
    assert start % memory._HUGE_PAGE == 0 and length % memory._HUGE_PAGE == 0 and advice == 14
    assert out.data_ptr() <= start and start + length <= out.data_ptr() + out.numel() * 4
    memory.empty((3, 5), torch.float32, torch.device("cpu"))
    assert len(calls) == 1  # small: not advised
    monkeypatch.setenv(memory.HUGE_PAGES_ENV, "0")
    assert not memory._huge_pages_wanted()
    monkeypatch.delenv(memory.HUGE_PAGES_ENV)
    monkeypatch.setenv("SNN_CPP_HUGE_PAGES", "0")  # the older name
    assert not memory._huge_pages_wanted()


def test_torch_backend_writes_every_element_of_reused_buffers():
    check_kernel_on_reused_buffers(torch_multi_step)
