"""The plugin manager's lifecycle: built lazily, cached, rebuildable.

Nothing happens at ``import snn``. The first call that needs the registry (a neuron's first
forward, ``snn doctor``, ``set_backend`` ...) builds it, in this order:

1. blocked names from ``SNN_DISABLED_PLUGINS`` (comma separated entry names);
2. entry points of group ``snn``, unless ``SNN_DISABLE_PLUGIN_AUTOLOAD=1``, in the *plugin
   order* below; a second entry point with a name already loaded is recorded as a clash;
3. the in-tree plugins (built-in neuron models, ``torch`` backend, strategies and losses);
4. pluggy's ``check_pending()``: a plugin implementing an unknown hook is dropped;
5. the set-up functions of :func:`add_manager_setup` (pluggy tracing or monitoring), and
   ``SNN_TRACE_PLUGINS=1`` (pluggy's trace, logged on logger ``snn`` at DEBUG level).

Then every hook is called once per plugin (neuron models first, then backends, strategies,
losses and learners) through pluggy's hook relay, so its tracing and monitoring see every call:
each call goes to a subset caller holding that plugin's implementation only
(:meth:`pluggy.PluginManager.subset_hook_caller`) and passes a registrar bound to that plugin.
Any failure (import error, invalid hook, a hook that raises, a name already taken) is recorded
as a :class:`~snn.registry.PluginFailure`, logged once on logger ``snn``, and does not affect
the other plugins. :func:`reset` throws everything away (tests, or after installing a plugin).

Plugin order (the order of entry-point loading and of hook calls; the first registration of a
name owns it, later ones are recorded as clashes): the in-tree plugins; then the *sibling*
distributions; then every other distribution; then plugins added with
:func:`temporary_plugin`. Within a group, distributions are sorted by name, then entry names,
so the outcome never depends on the order of ``sys.path``. A sibling is a distribution that
snn-core's own metadata requires at exactly snn-core's version (the distributions behind its
extras: ``Requires-Dist: snn-triton==0.1.0; extra == "triton"``) and that requires snn-core at
that same version in return. Only a release of snn-core can make a distribution a sibling, so
a third party can never take a sibling's names, wherever it is installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import os
import re
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pluggy

from snn import hookspecs
from snn.registry import (
    BackendRegistrar,
    LearnerRegistrar,
    LossRegistrar,
    NeuronModelRegistrar,
    PluginFailure,
    Provenance,
    Registry,
    StrategyRegistrar,
)

__all__ = [
    "CORE_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "IN_TREE_PLUGINS",
    "add_manager_setup",
    "get_registry",
    "get_plugin_manager",
    "reset",
    "sibling_distributions",
    "temporary_plugin",
]

logger = logging.getLogger("snn")

#: Entry-point group scanned for third-party plugins.
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

#: The distribution of this package; its metadata decides which distributions are siblings.
CORE_DISTRIBUTION = "snn-core"

#: In-tree plugins: name -> module. They are essential and cannot be disabled.
IN_TREE_PLUGINS: dict[str, str] = {
    "neurons": "snn.neuron",
    "torch": "snn.backends.torch",
    "strategies": "snn.strategies",
    "losses": "snn.losses",
}

_REGISTRARS = BackendRegistrar | LearnerRegistrar | LossRegistrar | NeuronModelRegistrar | StrategyRegistrar

_HOOKS: tuple[tuple[str, type[_REGISTRARS]], ...] = (
    ("snn_register_neuron_models", NeuronModelRegistrar),
    ("snn_register_backends", BackendRegistrar),
    ("snn_register_forward_strategies", StrategyRegistrar),
    ("snn_register_losses", LossRegistrar),
    ("snn_register_online_learners", LearnerRegistrar),
)

_lock = threading.RLock()
_state: tuple[pluggy.PluginManager, Registry] | None = None
_building = False
_extra_plugins: list[tuple[str, Any]] = []
_setups: list[Callable[[pluggy.PluginManager], object]] = []


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


def add_manager_setup(setup: Callable[[pluggy.PluginManager], object]) -> Callable[[], None]:
    """Run ``setup(manager)`` on every plugin manager built from now on.

    ``setup`` runs once the plugins are registered and before any hook is called: the place for
    pluggy's ``manager.enable_tracing()`` or ``manager.add_hookcall_monitoring(before, after)``,
    which then see every hook call snn makes (one call per plugin and hook). The current manager
    is thrown away (as :func:`reset`), so the next use builds one with ``setup``. An exception
    raised by ``setup`` propagates to that use and nothing is cached.

    Args:
        setup: called with the :class:`pluggy.PluginManager`; its return value is ignored.

    Returns:
        A function that removes ``setup`` for the managers built after it is called.

    Raises:
        TypeError: ``setup`` is not callable.

    Example:
        >>> from snn import plugins
        >>> calls = []
        >>> def monitor(manager):
        ...     manager.add_hookcall_monitoring(
        ...         lambda hook, impls, kwargs: calls.append((hook, impls[0].plugin_name)),
        ...         lambda outcome, hook, impls, kwargs: None)
        >>> remove = plugins.add_manager_setup(monitor)
        >>> _ = plugins.get_registry()
        >>> ("snn_register_backends", "torch") in calls
        True
        >>> remove(); plugins.reset()
    """
    if not callable(setup):
        raise TypeError(f"setup: expected a callable taking the plugin manager, got {setup!r}")
    with _lock:
        _setups.append(setup)
        reset()

    def remove() -> None:
        with _lock:
            if setup in _setups:
                _setups.remove(setup)

    return remove


@contextmanager
def temporary_plugin(plugin: Any, name: str | None = None) -> Iterator[Registry]:
    """Register ``plugin`` (a module or object with ``@snn.hookimpl`` functions) for a while.

    The registry is rebuilt with the plugin added after the in-tree ones, yielded, and rebuilt
    without it on exit, even when the body raises.

    Args:
        plugin: the plugin object.
        name: its plugin name (default: the object's ``__name__`` or class name).
    """
    plugin_name: str = name or str(getattr(plugin, "__name__", type(plugin).__name__))
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
    global _state, _building
    with _lock:
        if _state is None:
            if _building:  # the lock is reentrant: only this thread, from inside a hook, gets here
                raise RuntimeError(
                    "the snn registry is being built: a plugin hook (or code it calls) asked for it "
                    "(get_registry, a neuron's forward, set_backend ...); hooks register through "
                    "their registrar only"
                )
            _building = True
            try:
                _state = _build()
            finally:
                _building = False
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
    # load order: entry points (plugin order), then in-tree and temporary plugins
    provenance: dict[str, Provenance] = {}

    blocked = {n.strip() for n in os.environ.get("SNN_DISABLED_PLUGINS", "").split(",") if n.strip()}
    essential = sorted(blocked & set(IN_TREE_PLUGINS))
    disabled = sorted(blocked - set(IN_TREE_PLUGINS))
    for name in essential:
        logger.warning("snn: in-tree plugin %r is essential and cannot be disabled", name)
    for name in disabled:
        manager.set_blocked(name)
    if essential:
        registry.switches.append(
            f"in-tree plugins cannot be disabled: {', '.join(map(repr, essential))} named in SNN_DISABLED_PLUGINS "
            "stay loaded"
        )

    if not _env_flag("SNN_DISABLE_PLUGIN_AUTOLOAD"):
        _load_entry_points(manager, registry, provenance)
    else:
        registry.switches.append("installed plugins are not loaded: SNN_DISABLE_PLUGIN_AUTOLOAD is set")
    if disabled:
        registry.switches.append(f"plugins disabled by SNN_DISABLED_PLUGINS: {', '.join(map(repr, disabled))}")

    core_version = _distribution_version(CORE_DISTRIBUTION)
    for name, module_name in IN_TREE_PLUGINS.items():
        manager.register(importlib.import_module(module_name), name=name)
        provenance[name] = Provenance(name, CORE_DISTRIBUTION, core_version)
    for name, plugin in _extra_plugins:
        if manager.is_blocked(name):
            continue
        try:
            manager.register(_hashable(plugin), name=name)
        except Exception as exc:
            _record(registry, PluginFailure(name, None, None, "validate", _describe_error(exc)))
            continue
        provenance[name] = Provenance(name, None, None)

    _check_pending(manager, registry, provenance)
    registry.plugins.update(provenance)
    if _env_flag("SNN_TRACE_PLUGINS"):
        manager.trace.root.setwriter(lambda text: logger.debug("snn: pluggy: %s", text.rstrip()))
        manager.enable_tracing()
    for setup in list(_setups):
        setup(manager)
    _call_hooks(manager, registry, provenance)
    return manager, registry


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- plugin order ---------------------------------------------------------------------------

# "name==version", "name[extra] (==version)", with an optional "; marker": exactly one pin
_PINNED = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
    r"\(?\s*==\s*(?P<version>[^\s;,()=]+)\s*\)?\s*(?:;.*)?$"
)


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Snn_Triton`` -> ``snn-triton``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(requirements: Iterable[str] | None) -> dict[str, str]:
    """Normalised name -> version of the requirements pinned with a single ``==``."""
    pins = {}
    for requirement in requirements or ():
        match = _PINNED.match(requirement)
        if match:
            pins[_normalize(match.group("name"))] = match.group("version")
    return pins


def sibling_distributions() -> frozenset[str]:
    """Normalised names of the distributions snn-core's metadata pins to its own version.

    These are the candidates for *siblings* (see the module docstring); a candidate is a sibling
    when it also pins snn-core to the same version. Read from the installed metadata: empty when
    snn-core is not installed (a bare source checkout), so that every plugin counts as a third
    party then.
    """
    try:
        core = importlib.metadata.distribution(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return frozenset()
    version = core.version
    return frozenset(name for name, pinned in _pins(core.requires).items() if pinned == version)


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return getattr(dist, "name", None), getattr(dist, "version", None)


def _is_sibling(entry_point: importlib.metadata.EntryPoint, siblings: frozenset[str], core_version: str | None) -> bool:
    dist = getattr(entry_point, "dist", None)
    name = getattr(dist, "name", None)
    if dist is None or name is None or core_version is None or _normalize(name) not in siblings:
        return False
    return _pins(dist.requires).get(CORE_DISTRIBUTION) == core_version


def _entry_point_order(entry_points: Iterable[importlib.metadata.EntryPoint]) -> list[importlib.metadata.EntryPoint]:
    """Siblings first, then the other distributions; each by distribution name, then entry name."""
    siblings = sibling_distributions()
    core_version = _distribution_version(CORE_DISTRIBUTION)

    def key(entry_point: importlib.metadata.EntryPoint) -> tuple[int, str, str]:
        dist_name = _normalize(_distribution_of(entry_point)[0] or "")
        return (0 if _is_sibling(entry_point, siblings, core_version) else 1, dist_name, entry_point.name)

    return sorted(entry_points, key=key)


def _load_entry_points(
    manager: pluggy.PluginManager, registry: Registry, provenance: dict[str, Provenance]
) -> None:
    """Import and register every entry point of group ``snn`` in plugin order."""
    for entry_point in _entry_point_order(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)):
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
                name, name,  # the plugin holding the name is the one of that name
            ))
            continue
        try:
            plugin = entry_point.load()
        except (Exception, SystemExit) as exc:  # a plugin's import must not end the process either
            _record(registry, PluginFailure(name, dist_name, dist_version, "import", _describe_error(exc)))
            continue
        own = getattr(plugin, "__name__", None) if isinstance(plugin, types.ModuleType) else None
        if own in IN_TREE_PLUGINS.values():
            _record(registry, PluginFailure(
                name, dist_name, dist_version, "validate",
                f"entry point {entry_point.value!r} names snn's own plugin module {own!r}, which snn registers itself",
            ))
            continue
        registered = _hashable(plugin)
        try:
            manager.register(registered, name=name)
        except Exception as exc:  # pluggy refuses it (e.g. one object under two entry-point names)
            message = _describe_error(exc)
            if "already registered" in message:
                holding = manager.get_name(registered) or "?"
                message = f"the object {entry_point.value!r} is already registered as plugin {holding!r}"
            _record(registry, PluginFailure(name, dist_name, dist_version, "validate", message))
            continue
        if not manager.get_hookcallers(registered):
            manager.unregister(registered)
            _record(registry, PluginFailure(
                name, dist_name, dist_version, "validate",
                f"entry point {entry_point.value!r} implements no snn hook (mark each hook "
                "function with @snn.hookimpl and name it after a spec of snn.hookspecs)",
            ))
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


# -- hook calls ---------------------------------------------------------------------------------


class _HashablePlugin:
    """A stand-in for a plugin object that cannot be hashed (a ``types.SimpleNamespace`` ...).

    pluggy's subset hook callers keep plugins in sets. This stand-in, registered in place of
    such an object, holds the object's functions and methods as its own attributes (bound as
    ``getattr`` binds them), so pluggy finds the same hook implementations on it.
    """

    def __init__(self, plugin: object) -> None:
        self.plugin = plugin
        for attr in dir(plugin):
            if attr.startswith("__"):
                continue
            static = inspect.getattr_static(plugin, attr, None)
            if inspect.isroutine(static) or isinstance(static, (staticmethod, classmethod)):
                setattr(self, attr, getattr(plugin, attr))

    def __repr__(self) -> str:
        return f"<snn plugin {self.plugin!r}>"


def _hashable(plugin: object) -> object:
    try:
        hash(plugin)
    except TypeError:
        return _HashablePlugin(plugin)
    return plugin


def _shown(value: Any) -> str:
    """``repr(value)``, cut to one short line for a failure message."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _call_hooks(
    manager: pluggy.PluginManager, registry: Registry, provenance: dict[str, Provenance]
) -> None:
    """Call each hook once per plugin, in plugin order, through pluggy's hook relay.

    In-tree plugins first, then entry-point plugins in load order, then plugins added with
    :func:`temporary_plugin`: a name is owned by whoever registers it first, so a clash is
    recorded against the later plugin. Each call goes through a subset caller holding one
    plugin's implementation (so tracing and monitoring see it, and one plugin raising stops
    nothing else) and passes a registrar bound to that plugin.
    """
    in_tree = [name for name in IN_TREE_PLUGINS if name in provenance]
    loaded = [name for name in provenance if name not in IN_TREE_PLUGINS]  # entry points, then temporary
    order = {name: index for index, name in enumerate([*in_tree, *loaded])}
    plugins = {name: plugin for name, plugin in manager.list_name_plugin() if plugin is not None}

    for hook_name, registrar_type in _HOOKS:
        caller: pluggy.HookCaller = getattr(manager.hook, hook_name)
        implementations = sorted(caller.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, len(order)))
        for impl in implementations:
            origin = provenance.get(impl.plugin_name, Provenance(impl.plugin_name))
            others = [plugin for name, plugin in plugins.items() if name != impl.plugin_name]
            one_plugin = manager.subset_hook_caller(hook_name, remove_plugins=others)
            registrar = registrar_type(registry, origin)
            try:
                returned = one_plugin(register=registrar)  # pluggy lists the results that are not None
                if returned:
                    raise TypeError(
                        f"the hook returned {_shown(returned[0])}; a hook registers by calling "
                        "register(...) and returns None"
                    )
            except (Exception, SystemExit) as exc:  # a hook must not end the process either
                clash = getattr(exc, "first_plugin", None)
                withdrawn = registrar.withdraw()
                note = f" (withdrawn: what it registered before, {withdrawn})" if withdrawn else ""
                _record(registry, PluginFailure(
                    impl.plugin_name, origin.distribution, origin.version,
                    "clash" if clash else "hook",
                    f"{hook_name}: {_describe_error(exc)}{note}",
                    getattr(exc, "name", None) if clash else None,
                    clash,
                ))
