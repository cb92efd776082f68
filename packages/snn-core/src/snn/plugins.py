"""The plugin manager's lifecycle: built lazily, cached, rebuildable.

Nothing happens at ``import snn``. The first call that needs the registry (a neuron's first
forward, ``snn doctor``, ``set_backend`` ...) builds it, in this order:

1. blocked names from ``SNN_DISABLED_PLUGINS`` (comma separated entry names);
2. entry points of group ``snn``, unless ``SNN_DISABLE_PLUGIN_AUTOLOAD=1``: first-party
   distributions (snn-triton, snn-cupy, snn-online) first, then third parties sorted by
   distribution name, so the outcome never depends on the order of ``sys.path``; a second entry
   point with a name already loaded is recorded as a clash;
3. the in-tree plugins (``torch`` backend, built-in strategies and losses);
4. pluggy's ``check_pending()``: a plugin implementing an unknown hook is dropped.

Then every hook is called once per plugin, with a registrar bound to that plugin: in-tree
plugins first, then entry points, then temporary plugins, so built-in names always win. Any failure
(import error, invalid hook, a hook that raises, a name already taken) is recorded as a
:class:`~snn.registry.PluginFailure`, logged once on logger ``snn``, and does not affect the
other plugins. :func:`reset` throws everything away (tests, or after installing a plugin).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pluggy

from snn import hookspecs
from snn.registry import (
    BackendRegistrar,
    LearnerRegistrar,
    LossRegistrar,
    PluginFailure,
    Provenance,
    Registry,
    StrategyRegistrar,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FIRST_PARTY_DISTRIBUTIONS",
    "IN_TREE_PLUGINS",
    "get_registry",
    "get_plugin_manager",
    "reset",
    "temporary_plugin",
]

logger = logging.getLogger("snn")

#: Entry-point group scanned for third-party plugins.
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

#: In-tree plugins: name -> module. They are essential and cannot be disabled.
IN_TREE_PLUGINS: dict[str, str] = {
    "torch": "snn.backends.torch",
    "strategies": "snn.strategies",
    "losses": "snn.losses",
}

_HOOKS: tuple[tuple[str, type], ...] = (
    ("snn_register_backends", BackendRegistrar),
    ("snn_register_forward_strategies", StrategyRegistrar),
    ("snn_register_losses", LossRegistrar),
    ("snn_register_online_learners", LearnerRegistrar),
)

_lock = threading.RLock()
_state: tuple[pluggy.PluginManager, Registry] | None = None
_extra_plugins: list[tuple[str, Any]] = []


def get_registry() -> Registry:
    """The registry, building the plugin manager on first use (thread safe)."""
    state = _state
    if state is None:
        state = _build_once()
    return state[1]


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy manager, building it on first use (thread safe)."""
    state = _state
    if state is None:
        state = _build_once()
    return state[0]


def reset() -> None:
    """Forget the manager and the registry; the next use rebuilds both (re-reading the switches)."""
    global _state
    with _lock:
        _state = None


@contextmanager
def temporary_plugin(plugin: Any, name: str | None = None) -> Iterator[Registry]:
    """Register ``plugin`` (a module or object with ``@snn.hookimpl`` functions) for a while.

    The registry is rebuilt with the plugin added after the in-tree ones, yielded, and rebuilt
    without it on exit, even when the body raises.

    Args:
        plugin: the plugin object.
        name: its plugin name (default: the object's ``__name__`` or class name).
    """
    plugin_name = name or getattr(plugin, "__name__", type(plugin).__name__)
    with _lock:
        _extra_plugins.append((plugin_name, plugin))
        reset()
    try:
        yield get_registry()
    finally:
        with _lock:
            _extra_plugins[:] = [(n, p) for n, p in _extra_plugins if p is not plugin]
            reset()


def _build_once() -> tuple[pluggy.PluginManager, Registry]:
    global _state
    with _lock:
        if _state is None:
            _state = _build()
        return _state


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _record(registry: Registry, failure: PluginFailure) -> None:
    registry.failures.append(failure)
    logger.warning("snn: %s", failure.describe())


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _build() -> tuple[pluggy.PluginManager, Registry]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    provenance: dict[str, Provenance] = {}

    blocked = {n.strip() for n in os.environ.get("SNN_DISABLED_PLUGINS", "").split(",") if n.strip()}
    for name in sorted(blocked):
        if name in IN_TREE_PLUGINS:
            logger.warning("snn: in-tree plugin %r is essential and cannot be disabled", name)
            continue
        manager.set_blocked(name)

    if not _env_flag("SNN_DISABLE_PLUGIN_AUTOLOAD"):
        _load_entry_points(manager, registry, provenance)

    core_version = _distribution_version("snn-core")
    for name, module_name in IN_TREE_PLUGINS.items():
        manager.register(importlib.import_module(module_name), name=name)
        provenance[name] = Provenance(name, "snn-core", core_version)
    for name, plugin in _extra_plugins:
        if manager.is_blocked(name):
            continue
        try:
            manager.register(plugin, name=name)
        except Exception as exc:
            _record(registry, PluginFailure(name, None, None, "validate", _describe_error(exc)))
            continue
        provenance[name] = Provenance(name, None, None)

    _check_pending(manager, registry, provenance)
    registry.plugins.update(provenance)
    _call_hooks(manager, registry, provenance)
    return manager, registry


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


#: Distributions of the snn project itself: their entry points load (and register) before any
#: third-party plugin, so a third party can never take their names by sitting earlier on sys.path.
FIRST_PARTY_DISTRIBUTIONS = ("snn-triton", "snn-cupy", "snn-online")


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return getattr(dist, "name", None), getattr(dist, "version", None)


def _entry_point_order(entry_point: importlib.metadata.EntryPoint) -> tuple[int, str, str]:
    """First-party distributions first, then third parties by distribution and entry name."""
    dist_name = (_distribution_of(entry_point)[0] or "").lower().replace("_", "-")
    return (0 if dist_name in FIRST_PARTY_DISTRIBUTIONS else 1, dist_name, entry_point.name)


def _load_entry_points(
    manager: pluggy.PluginManager, registry: Registry, provenance: dict[str, Provenance]
) -> None:
    """Import and register every entry point of group ``snn`` in a sys.path-independent order."""
    found = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=_entry_point_order)
    for entry_point in found:
        name = entry_point.name
        if manager.is_blocked(name):
            continue
        dist_name, dist_version = _distribution_of(entry_point)
        if name in IN_TREE_PLUGINS:
            _record(registry, PluginFailure(
                name, dist_name, dist_version, "clash",
                "entry-point name is reserved for an in-tree plugin", name, name,
            ))
            continue
        holder = provenance.get(name)
        if holder is not None or manager.has_plugin(name):
            owner = holder.distribution if holder is not None else None
            _record(registry, PluginFailure(
                name, dist_name, dist_version, "clash",
                f"entry-point name {name!r} is already used by distribution {owner or '?'}; "
                "this one was not loaded",
                name, owner or name,
            ))
            continue
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=name)
        except Exception as exc:
            _record(registry, PluginFailure(name, dist_name, dist_version, "import", _describe_error(exc)))
            continue
        provenance[name] = Provenance(name, dist_name, dist_version)


def _check_pending(
    manager: pluggy.PluginManager, registry: Registry, provenance: dict[str, Provenance]
) -> None:
    while True:
        try:
            manager.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = manager.get_name(exc.plugin) or "?"
            manager.unregister(exc.plugin)
            origin = provenance.pop(name, Provenance(name))
            _record(registry, PluginFailure(
                name, origin.distribution, origin.version, "validate", _describe_error(exc)
            ))


def _call_hooks(
    manager: pluggy.PluginManager, registry: Registry, provenance: dict[str, Provenance]
) -> None:
    """Call each hook implementation separately, with a registrar bound to its plugin.

    In-tree plugins are called first, then entry-point plugins in load order (first-party
    distributions, then third parties sorted by distribution name), then plugins added with
    :func:`temporary_plugin`: a name is owned by whoever registers it first, so a clash is
    recorded against the later plugin whatever the order of sys.path.
    """
    # provenance holds entry-point plugins in load order, then in-tree, then temporary ones
    load_order = {name: index for index, name in enumerate(provenance)}

    def rank(impl: Any) -> tuple[int, int]:
        if impl.plugin_name in IN_TREE_PLUGINS:
            return (0, 0)
        return (1, load_order.get(impl.plugin_name, len(load_order)))

    for hook_name, registrar_type in _HOOKS:
        caller = getattr(manager.hook, hook_name)
        for impl in sorted(caller.get_hookimpls(), key=rank):
            origin = provenance.get(impl.plugin_name, Provenance(impl.plugin_name))
            registrar = registrar_type(registry, origin)
            kwargs = {"register": registrar}
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                clash = getattr(exc, "first_plugin", None)
                _record(registry, PluginFailure(
                    impl.plugin_name, origin.distribution, origin.version,
                    "clash" if clash else "hook",
                    f"{hook_name}: {_describe_error(exc)}",
                    getattr(exc, "name", None) if clash else None,
                    clash,
                ))
