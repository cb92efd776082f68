"""Shared fixtures of the snn-core tests."""

from __future__ import annotations

import pytest
import torch

from snn import neuron
from snn.testing.plugins import fresh_plugin_manager, temporary_plugin  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def _deterministic_seed() -> None:
    """Every test starts from the same global RNG state."""
    torch.manual_seed(0)


@pytest.fixture
def cuba_lif_class() -> type:
    """The current-based LIF neuron the NIR mapping uses for ``CubaLIF`` nodes."""
    return neuron.CUBALIFNode
