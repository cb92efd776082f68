"""Test set-up of snn-cpp.

Kernels are compiled into the user's cache (``$SNN_CPP_CACHE_DIR``, default
``~/.cache/snn-cpp``) like at run time, so a second run of the suite only loads them; the tests
of the cache itself point ``SNN_CPP_CACHE_DIR`` at a temporary directory. Without a C compiler
every test that needs one skips with the probe's reason (fixture ``cpp_ready``; the conformance
suite skips by itself), and the tests of the unavailable backend still run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# shared helpers (snn_cpp_test_helpers.py) are imported by name
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config: pytest.Config) -> None:
    # warnings raised from snn_cpp are errors, as for the other snn packages
    config.addinivalue_line("filterwarnings", "error:::snn_cpp(\\..*)?$")


@pytest.fixture(scope="session", autouse=True)
def _fresh_registry():
    """Rebuild the plugin registry once, so the backend registers under this environment."""
    from snn import plugins

    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture(autouse=True)
def _deterministic_seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cpp_ready() -> None:
    """Skip the test with the probe's reason when kernels cannot be compiled here."""
    from snn_cpp.build import probe

    reason = probe()
    if reason is not None:
        pytest.skip(f"cpp backend unavailable: {reason}")
