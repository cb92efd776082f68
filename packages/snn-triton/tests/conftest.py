"""Test set-up of snn-triton: choose compiled kernels or Triton's CPU interpreter.

Decision (made here, before anything imports Triton, which reads the variable when kernels
are decorated):

- ``TRITON_INTERPRET`` set by the caller: honoured as it is (tox's ``triton`` environment sets
  it to 1);
- otherwise, no CUDA device: ``TRITON_INTERPRET=1``, so every non-GPU test runs on the CPU
  interpreter at small sizes;
- otherwise (a GPU machine): the kernels are compiled for the device.

When the backend still cannot run (Triton missing, or ``TRITON_INTERPRET=0`` without CUDA),
every test that needs it skips with the probe's reason (fixture ``triton_ready``; the
conformance suite skips by itself). ``@pytest.mark.gpu`` tests skip without a CUDA device or
under the interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# shared helpers (snn_triton_test_helpers.py) are imported by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    # The interpreter computes with numpy, which warns about IEEE results the kernels rely on:
    # both branches of tl.where are evaluated (a guarded 1/x, e.g. FakeNumericalGradient's
    # derivative at x = 0, or masked-off lanes loaded as 0), exp overflows to inf in a sigmoid
    # far from the threshold, and inf * 0 is NaN in the non-finite tests.
    for message in ("divide by zero encountered", "overflow encountered", "invalid value encountered"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:RuntimeWarning:triton.runtime.interpreter")


@pytest.fixture(scope="session", autouse=True)
def _fresh_registry():
    """Rebuild the plugin registry once, so the backend registers under this environment."""
    from snn import plugins

    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def synthetic_models():
    """The registry with the synthetic test models (snn_triton_test_helpers) registered too, for
    one test (rebuilding the registry costs milliseconds; a conformance class that registers
    the same plugin itself must not use this fixture)."""
    from snn_triton_test_helpers import SYNTHETIC_PLUGIN

    from snn import plugins

    with plugins.temporary_plugin(SYNTHETIC_PLUGIN, name="snn_triton_tests") as registry:
        yield registry


@pytest.fixture
def triton_ready() -> None:
    """Skip the test with the probe's reason when the Triton kernels cannot run here."""
    from snn_triton.runtime import probe

    reason = probe()
    if reason is not None:
        pytest.skip(f"triton backend unavailable: {reason}")


def gpu_available() -> bool:
    """A CUDA device for compiled kernels (not the interpreter)."""
    from snn_triton.runtime import interpreter_enabled

    return torch.cuda.is_available() and not interpreter_enabled()
