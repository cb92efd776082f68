"""Shared fixtures of the snn-core tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from snn import neuron, plugins
from snn.testing.plugins import fresh_plugin_manager, temporary_plugin  # noqa: F401  (fixtures)

# shared helpers (snn_core_test_helpers.py) are imported by name
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _deterministic_seed() -> None:
    """Every test starts from the same global RNG state."""
    torch.manual_seed(0)


@pytest.fixture
def in_tree_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the in-tree plugins: hermetic against whatever else is installed (snn-cpp, for
    instance, rightly wins ``backend="auto"`` on CPU when it is)."""
    monkeypatch.setenv("SNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    yield
    monkeypatch.delenv("SNN_DISABLE_PLUGIN_AUTOLOAD")
    plugins.reset()


@pytest.fixture
def cuba_lif_class() -> type:
    """The current-based LIF neuron the NIR mapping uses for ``CubaLIF`` nodes."""
    return neuron.CUBALIFNode


@pytest.fixture
def interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt during the test, even where pytest was started
    with SIGINT ignored (a shell's background job), which the launcher keeps ignoring by design."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
