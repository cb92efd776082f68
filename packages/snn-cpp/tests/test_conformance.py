"""The generic conformance suite (:class:`snn.testing.BackendConformance`) for the ``"cpp"`` backend.

It covers every registered model the backend serves (so models added later are covered without
a change here), each model's examples, every reset and ``detach_reset``, every closed-form
surrogate, float32 and float64, ``T = 1``, non-contiguous inputs, inference, gradients through
the states only, against a float64 autograd loop of the model descriptions. A second suite runs
the same checks on a two-state model with two learnable parameters defined below (a reset that
depends on a learnable parameter, an input gain the backward pass reads, the previous
states read by the backward pass) and on a one-state model with ``relu``, ``exp``, ``sqrt`` and
``abs`` in its charge.
"""

from __future__ import annotations

import types

from snn_cpp_test_helpers import RELU_MODEL, TWO_STATE_MODEL

import snn
from snn.testing import BackendConformance


class TestCppConformance(BackendConformance):
    """Every registered model on the compiled kernels."""

    backend = "cpp"


@snn.hookimpl
def _register_test_models(register):
    register(TWO_STATE_MODEL)
    register(RELU_MODEL)


class TestCppTestModels(BackendConformance):
    """Models only this test file knows: the generator must serve them without a change."""

    backend = "cpp"
    models = (TWO_STATE_MODEL.name, RELU_MODEL.name)
    plugin = types.SimpleNamespace(snn_register_neuron_models=_register_test_models)
    plugin_name = "cpp-test-models"
