"""A check for CPU kernels whose outputs come from the buffer cache of :mod:`snn.backends.memory`.

Large outputs reuse the memory of released ones, which still holds their old values, so a
kernel must write every element of every output. :func:`check_kernel_on_reused_buffers` runs a
kernel on buffers filled with NaN and with 7, and again on fresh memory, and compares.

Example:
    >>> from snn.backends.torch import multi_step
    >>> from snn.testing.buffers import check_kernel_on_reused_buffers
    >>> check_kernel_on_reused_buffers(multi_step)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from snn import surrogate
from snn.backends import memory
from snn.plugins import get_registry

__all__ = ["check_kernel_on_reused_buffers"]


def check_kernel_on_reused_buffers(multi_step: Callable[..., Any]) -> None:
    """Assert that ``multi_step`` gives the same results on dirty reused output buffers as on
    fresh memory.

    The configuration is PLIF with soft reset (a learnable parameter, state sequences stored),
    ``T = 2`` and ``N`` just above :data:`snn.backends.memory.LARGE_BYTES` / 8, so that every
    ``[T, N]`` float32 output comes from the cache. Spikes and state sequences must be equal,
    gradients of the input and of the learnable parameter equal within float32 rounding.

    Args:
        multi_step: a CPU kernel with the contract's ``multi_step`` signature.

    Raises:
        AssertionError: a result differs.
    """
    config = get_registry().model("plif").config(surrogate.Sigmoid().spec, False, v_reset=None)
    gen = torch.Generator().manual_seed(0)
    steps, n = 2, memory.LARGE_BYTES // 4 // 2 + 7
    x = torch.rand(steps, n, generator=gen) * 1.5
    w = torch.tensor(0.3)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        spikes, _, seqs = multi_step(xs, (torch.zeros(n),), config, learnables=(ws,), store_state_seqs=True)
        (spikes.sum() + seqs[0].sum()).backward()
        assert xs.grad is not None and ws.grad is not None
        return spikes.detach(), seqs[0].detach(), xs.grad, ws.grad

    for fill in (float("nan"), 7.0):
        memory.empty_cache()
        dirty = [memory.empty_like(x).fill_(fill) for _ in range(4)]
        del dirty  # their buffers go back to the cache, still holding ``fill``
        got = run()
        memory.empty_cache()
        want = run()
        assert torch.equal(got[0], want[0]), f"spikes differ on buffers filled with {fill}"
        assert torch.equal(got[1], want[1]), f"state sequences differ on buffers filled with {fill}"
        torch.testing.assert_close(got[2], want[2], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-6)
    memory.empty_cache()
