"""The shared conformance suite (:class:`snn.testing.BackendConformance`) for ``"triton"``.

Every registered model the backend serves (so every model added later, automatically) is run
through Triton's CPU interpreter at the suite's small sizes (``[5, 3, 7]`` and an odd
``[3, 1031]`` that crosses a 1024-neuron block boundary) and compared with a float64 autograd
loop of the model's description: every reset variant, ``detach_reset``, the model's example
settings, every claimed surrogate, every dtype and the layouts. The same suite runs on the
synthetic test models (two states with a learnable reset, input gains, saved input). The
CUDA runs are in ``test_gpu.py``.
"""

from __future__ import annotations

from snn_triton_test_helpers import SYNTHETIC_MODELS, SYNTHETIC_PLUGIN

from snn.testing import BackendConformance


class TestTritonConformance(BackendConformance):
    """CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``)."""

    backend = "triton"
    devices = ("cpu",)


class TestSyntheticModelsConformance(BackendConformance):
    """The synthetic models of snn_triton_test_helpers, registered by the suite itself.

    They exercise the generator's structure (several states, learnable resets, inputs the
    backward pass reads), so three surrogates suffice here: Sigmoid, ATan (a division) and
    PiecewiseQuadratic (abs and maximum). Every claimed surrogate meets every registered model
    in the class above and the two-state model in test_kernels.py.
    """

    backend = "triton"
    devices = ("cpu",)
    surrogates = ("Sigmoid", "ATan", "PiecewiseQuadratic")
    models = tuple(SYNTHETIC_MODELS)
    plugin = SYNTHETIC_PLUGIN
    plugin_name = "snn_triton_tests"
