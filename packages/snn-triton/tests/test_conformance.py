"""The shared conformance suite (:class:`snn.testing.BackendConformance`) for ``"triton"``.

Under the interpreter the sizes stay small (the suite's defaults: ``[5, 3, 7]`` and an odd
``[3, 1031]`` that crosses a 1024-neuron block boundary); every kind, reset mode,
``detach_reset``, ``decay_input``, claimed surrogate and dtype is compared with the torch
backend.
"""

from __future__ import annotations

from snn.testing import BackendConformance


class TestTritonConformance(BackendConformance):
    """CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``); the CUDA run of the
    same suite is ``test_gpu.py::TestTritonConformanceOnCuda``."""

    backend = "triton"
    devices = ("cpu",)
