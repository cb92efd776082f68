"""Test helpers for snn and for plugin authors.

- :class:`BackendConformance`: a test-class base that checks a backend's kernels against the
  torch reference, and :class:`ConformanceCase`, one of its cases, for driving checks by hand
  (from :mod:`snn.testing.conformance`).
- :func:`snn.testing.buffers.check_kernel_on_reused_buffers`: a CPU kernel's outputs drawn
  from the buffer cache of :mod:`snn.backends.memory` hold no stale values.
- pytest fixtures in :mod:`snn.testing.plugins`: ``fresh_plugin_manager`` and
  ``temporary_plugin``. Enable them in a ``conftest.py`` with::

      pytest_plugins = ["snn.testing.plugins"]

Everything is imported on first access, so ``import snn.testing`` needs neither pytest nor a
built plugin manager. The helpers themselves need pytest (and the property tests of snn need
hypothesis): install them with the ``test`` extra, ``pip install "snn-core[test]"`` (from a
checkout of the snn repository: ``pip install -e "packages/snn-core[test]"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BackendConformance", "ConformanceCase", "fresh_plugin_manager", "temporary_plugin"]

_LAZY = {
    "BackendConformance": "snn.testing.conformance",
    "ConformanceCase": "snn.testing.conformance",
    "fresh_plugin_manager": "snn.testing.plugins",
    "temporary_plugin": "snn.testing.plugins",
}

if TYPE_CHECKING:
    from snn.testing.conformance import BackendConformance, ConformanceCase
    from snn.testing.plugins import fresh_plugin_manager, temporary_plugin


#: How to get what the helpers need, for the error raised when pytest is missing.
_TEST_EXTRA_HINT = (
    'pip install "snn-core[test]" (from a checkout of the snn repository, at its root: '
    'pip install -e "packages/snn-core[test]")'
)


def _import_pytest(user: str) -> Any:
    """``import pytest``, or a :class:`ModuleNotFoundError` that says how to install it.

    Args:
        user: what needs pytest, for the message (e.g. ``"snn.testing.plugins"``).

    Raises:
        ModuleNotFoundError: pytest is not installed; the message names the ``test`` extra.
    """
    try:
        return importlib.import_module("pytest")
    except ModuleNotFoundError as exc:
        if exc.name != "pytest":
            raise
        raise ModuleNotFoundError(
            f"{user} needs pytest, which is not installed: {_TEST_EXTRA_HINT}", name="pytest"
        ) from exc


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'snn.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
