"""pytest fixtures for testing snn plugins.

Enable them in a ``conftest.py`` (or a test module) with::

    pytest_plugins = ["snn.testing.plugins"]

Fixtures:

- ``fresh_plugin_manager``: the plugin manager is rebuilt before the test (re-reading the
  ``SNN_DISABLE_PLUGIN_AUTOLOAD`` / ``SNN_DISABLED_PLUGINS`` switches and the installed entry
  points) and thrown away after it; yields the new :class:`snn.registry.Registry`.
- ``temporary_plugin``: a factory ``temporary_plugin(plugin, name=None) -> Registry`` that
  registers a plugin object (a module, class instance or namespace with ``@snn.hookimpl``
  functions) for the rest of the test, and always unregisters it afterwards.

Example::

    import types
    import snn
    from snn.registry import LossRegistrar

    @snn.hookimpl
    def snn_register_losses(register: LossRegistrar) -> None:
        register("zero", lambda y_seq, target: y_seq.sum() * 0)

    def test_zero_loss(temporary_plugin):
        plugin = types.SimpleNamespace(snn_register_losses=snn_register_losses)
        registry = temporary_plugin(plugin, name="zero")
        assert registry.loss("zero").provenance.plugin == "zero"
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from snn import plugins
from snn.registry import Registry
from snn.testing import _import_pytest

if TYPE_CHECKING:
    import pytest
else:
    pytest = _import_pytest("snn.testing.plugins (the fixtures fresh_plugin_manager and temporary_plugin)")

__all__ = ["fresh_plugin_manager", "temporary_plugin"]


@pytest.fixture
def fresh_plugin_manager() -> Iterator[Registry]:
    """A freshly built registry; the manager is reset before and after the test.

    Set environment switches *before* this fixture runs (e.g. in another fixture with
    ``monkeypatch.setenv``), or call :func:`snn.plugins.reset` after changing them.
    """
    plugins.reset()
    try:
        yield plugins.get_registry()
    finally:
        plugins.reset()


@pytest.fixture
def temporary_plugin() -> Iterator[Callable[..., Registry]]:
    """Factory registering plugin objects until the end of the test (always undone).

    Call it as ``temporary_plugin(plugin, name=None)``; it returns the rebuilt registry, which
    holds every plugin registered so far in this test.
    """
    with contextlib.ExitStack() as stack:

        def register(plugin: Any, name: str | None = None) -> Registry:
            if plugin is None:
                raise TypeError(
                    "temporary_plugin: plugin: expected a module or object with @snn.hookimpl "
                    "functions, got None"
                )
            return stack.enter_context(plugins.temporary_plugin(plugin, name=name))

        yield register
