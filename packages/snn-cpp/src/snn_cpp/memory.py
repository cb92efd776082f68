"""The buffer cache and huge pages of large outputs, now :mod:`snn.backends.memory`.

snn-core's torch backend shares them with this backend; this module keeps the names it had
here (``snn_cpp.memory.empty_cache()`` and the rest are the same objects).
"""

from __future__ import annotations

from snn.backends.memory import CACHE_LIMIT_BYTES, LARGE_BYTES, cached_bytes, empty_cache, empty_like

__all__ = ["CACHE_LIMIT_BYTES", "LARGE_BYTES", "cached_bytes", "empty_cache", "empty_like"]
