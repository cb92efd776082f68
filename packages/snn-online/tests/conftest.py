"""Shared fixtures of the snn-online tests."""

from __future__ import annotations

import pytest
import torch

from snn.testing.plugins import fresh_plugin_manager  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _deterministic_seed() -> None:
    """Every test starts from the same global RNG state."""
    torch.manual_seed(0)
