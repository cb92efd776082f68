"""Memory for the CPU kernels' large outputs: huge pages, and a cache of released buffers.

Every multi-step kernel call (the torch backend's and snn-cpp's) writes fresh ``[T, N]``
outputs: spikes, saved charged values, the input gradient. Fresh memory costs: the operating
system zeroes each page when the process first touches it, and on a virtual machine the first
touch can also fault on the host. Measured on the project's 2-core VM for a 256 MiB tensor:
about 100 ms with 4 KiB pages, 16 ms (and stalls of up to 240 ms) with transparent huge pages,
against 25 to 40 ms for the LIF forward kernel of snn-cpp itself. So large CPU outputs
(:data:`LARGE_BYTES` and up):

- are backed by transparent huge pages where Linux allows (``madvise(MADV_HUGEPAGE)``);
- come from a cache of buffers that earlier outputs of the same size released: when an output's
  storage is freed, its buffer returns here instead of to the operating system, and the next
  output of that size reuses it without faulting (the way PyTorch's CUDA allocator caches device
  memory). At most :data:`CACHE_LIMIT_BYTES` of released buffers are kept;
  :func:`empty_cache` releases them all.

``SNN_BUFFER_CACHE=0`` turns the cache off, ``SNN_HUGE_PAGES=0`` the huge pages (read at
import; the older names ``SNN_CPP_BUFFER_CACHE`` and ``SNN_CPP_HUGE_PAGES`` work too). Tensors
from the cache are ordinary CPU tensors whose storage cannot be resized.

Example:
    >>> import torch
    >>> from snn.backends.memory import empty
    >>> empty((16, 1024), torch.float32, torch.device("cpu")).shape
    torch.Size([16, 1024])
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import platform
import sys
import threading
from collections import OrderedDict
from typing import Any

import torch

__all__ = [
    "LARGE_BYTES",
    "CACHE_LIMIT_BYTES",
    "BUFFER_CACHE_ENV",
    "HUGE_PAGES_ENV",
    "empty",
    "empty_like",
    "empty_cache",
    "cached_bytes",
]

#: Outputs of at least this many bytes use huge pages and the buffer cache.
LARGE_BYTES = 8 << 20
#: The most bytes of released buffers the cache keeps (the oldest go first).
CACHE_LIMIT_BYTES = 4 << 30
#: Set to 0 to allocate every output afresh.
BUFFER_CACHE_ENV = "SNN_BUFFER_CACHE"
#: Set to 0 to allocate outputs without asking for huge pages.
HUGE_PAGES_ENV = "SNN_HUGE_PAGES"
#: The names snn-cpp read first, still honoured.
_OLDER_NAMES = {BUFFER_CACHE_ENV: "SNN_CPP_BUFFER_CACHE", HUGE_PAGES_ENV: "SNN_CPP_HUGE_PAGES"}

_HUGE_PAGE = 2 << 20
#: Architectures whose MADV_HUGEPAGE is the generic 14.
_GENERIC_MADVISE = ("x86_64", "aarch64", "ppc64le", "s390x", "riscv64")


def _enabled(variable: str) -> bool:
    return all(os.environ.get(name, "1").strip() != "0" for name in (variable, _OLDER_NAMES[variable]))


def _huge_pages_wanted() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in _GENERIC_MADVISE and _enabled(HUGE_PAGES_ENV)


def _libc_madvise() -> Any:
    """The C library's ``madvise`` (huge pages for torch-allocated tensors), or ``None``."""
    if not _huge_pages_wanted():
        return None
    try:
        advise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    advise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    advise.restype = ctypes.c_int
    return advise


_madvise = _libc_madvise()
_use_cache = _enabled(BUFFER_CACHE_ENV) and hasattr(mmap, "MAP_PRIVATE")


class _Cache:
    """Released buffers by size (oldest first), with the total of their sizes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free: OrderedDict[int, list[mmap.mmap]] = OrderedDict()
        self.total = 0
        self.lease_types: dict[int, Any] = {}

    def lease_type(self, size: int) -> Any:
        """A ctypes array type of ``size`` bytes whose instances return their buffer when freed
        (an instance's ``_buffer`` attribute holds the buffer)."""
        found = self.lease_types.get(size)
        if found is None:
            cache = self

            class Lease(ctypes.c_char * size):  # type: ignore[misc]  # a base class computed at run time
                def __del__(self) -> None:
                    cache.give_back(self._buffer)

            found = self.lease_types[size] = Lease
        return found

    def take(self, size: int) -> mmap.mmap | None:
        with self.lock:
            buffers = self.free.get(size)
            if not buffers:
                return None
            buffer = buffers.pop()
            if not buffers:
                del self.free[size]
            self.total -= size
            return buffer

    def give_back(self, buffer: mmap.mmap) -> None:
        size = len(buffer)
        released = []
        with self.lock:
            self.free.setdefault(size, []).append(buffer)
            self.free.move_to_end(size)
            self.total += size
            while self.total > CACHE_LIMIT_BYTES and self.free:
                oldest, buffers = next(iter(self.free.items()))
                released.append(buffers.pop(0))
                self.total -= oldest
                if not buffers:
                    del self.free[oldest]
        for old in released:  # unmapped outside the lock (dropping the last reference unmaps)
            del old

    def clear(self) -> None:
        with self.lock:
            self.free.clear()
            self.total = 0


_cache = _Cache()


def _reset_after_fork() -> None:
    global _cache
    _cache = _Cache()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _new_buffer(size: int) -> mmap.mmap:
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if _huge_pages_wanted() and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # advisory: a refusal changes nothing
            pass
    return buffer


def _advise_huge_pages(tensor: torch.Tensor, size: int) -> None:
    if _madvise is None:
        return
    start = -(-tensor.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
    end = (tensor.data_ptr() + size) // _HUGE_PAGE * _HUGE_PAGE
    if end > start:
        _madvise(start, end - start, 14)  # MADV_HUGEPAGE; advisory


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A new contiguous tensor, uninitialised (the kernels write every element); on CPU, large
    ones from the buffer cache and on huge pages.

    Args:
        shape: the tensor's shape.
        dtype: its dtype.
        device: its device (other devices than the CPU get ``torch.empty``).
    """
    size = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or size < LARGE_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    if not _use_cache:
        out = torch.empty(shape, dtype=dtype, device=device)
        _advise_huge_pages(out, size)
        return out
    buffer = _cache.take(size) or _new_buffer(size)
    lease = _cache.lease_type(size).from_buffer(buffer)
    lease._buffer = buffer
    return torch.frombuffer(lease, dtype=dtype).view(shape)


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """:func:`empty` with ``x``'s shape, dtype and device."""
    return empty(tuple(x.shape), x.dtype, x.device)


def empty_cache() -> None:
    """Return every released buffer the cache keeps to the operating system."""
    _cache.clear()


def cached_bytes() -> int:
    """Bytes of released buffers the cache keeps now."""
    return _cache.total
