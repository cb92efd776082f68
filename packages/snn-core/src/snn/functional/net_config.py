"""Network configuration: reset, step mode, backend and detaching of whole networks.

These functions walk a network and act on every submodule that supports the operation
(:class:`snn.base.MemoryModule` and :class:`snn.base.StepModule` subclasses, and duck-typed
modules with the same attributes). A duck-typed module is still handled, with a warning on the
``snn`` logger.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from snn.base import STEP_MODES, MemoryModule, StepModule

__all__ = [
    "collect_reset_modules",
    "detach_net",
    "invalidate_reset_cache",
    "reset_collected_modules",
    "reset_net",
    "set_backend",
    "set_step_mode",
]

logger = logging.getLogger("snn")

#: ``net -> (weakref(module), ...)``: the resettable modules of each network seen by
#: :func:`reset_net`. Weak keys, so an entry disappears with its network. Stale by design
#: after a structural change of the network: call :func:`invalidate_reset_cache`.
_RESET_MODULE_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[weakref.ref[nn.Module], ...]] = (
    weakref.WeakKeyDictionary()
)

_KEEP_CONTAINERS: tuple[type, ...] | None = None


def _require_module(net: Any, function: str) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise TypeError(f"{function}: net: expected a torch.nn.Module, got {type(net).__name__}")
    return net


# ---------------------------------------------------------------------------------------------
# reset
# ---------------------------------------------------------------------------------------------


def collect_reset_modules(net: nn.Module) -> tuple[nn.Module, ...]:
    """The modules :func:`reset_net` resets, in ``net.modules()`` order (``net`` first).

    A module is resettable when it has a *callable* attribute ``reset``. The walk is not
    cached: each call returns a new tuple.

    Args:
        net: the network.

    Returns:
        The resettable modules (each shared module once).

    Raises:
        TypeError: ``net`` is not a :class:`torch.nn.Module`.
    """
    _require_module(net, "collect_reset_modules")
    return tuple(m for m in net.modules() if callable(getattr(m, "reset", None)))


def reset_collected_modules(modules: tuple[nn.Module, ...]) -> None:
    """Call ``reset()`` of each module, in order.

    A module that is not an :class:`snn.base.MemoryModule` is reset too, with a warning on the
    ``snn`` logger. An exception raised by a ``reset()`` propagates; later modules stay as
    they are.

    Args:
        modules: what :func:`collect_reset_modules` returned (any iterable of modules).
    """
    for module in modules:
        if not isinstance(module, MemoryModule):
            logger.warning("Trying to call `reset()` of %s, which is not snn.base.MemoryModule", module)
        module.reset()


def _cacheable(net: nn.Module) -> bool:
    cls = type(net)
    return cls.__eq__ is object.__eq__ and cls.__hash__ is object.__hash__


def _cached_modules(net: nn.Module) -> tuple[nn.Module, ...] | None:
    refs = _RESET_MODULE_CACHE.get(net)
    if refs is None:
        return None
    modules = tuple(ref() for ref in refs)
    if any(m is None for m in modules):
        _RESET_MODULE_CACHE.pop(net, None)
        return None
    return modules  # type: ignore[return-value]


def reset_net(net: nn.Module) -> None:
    """Reset every stateful module of ``net`` to its reset values (call after each batch).

    The resettable modules (see :func:`collect_reset_modules`) are collected once per network
    and cached with weak references. The cache is *not* refreshed when the network's structure
    changes (e.g. ``net[0] = new_layer``): call :func:`invalidate_reset_cache` after such a
    change. Networks that override ``__eq__`` or ``__hash__`` bypass the cache.

    Parameters are never touched; only memories (membrane potentials, traces ...) change.

    Args:
        net: the network.

    Raises:
        TypeError: ``net`` is not a :class:`torch.nn.Module`.
    """
    _require_module(net, "reset_net")
    if not _cacheable(net) or torch.compiler.is_compiling():
        # inside torch.compile the walk is traced once per graph; reading the global cache
        # there would make the graph guard on (and recompile for) every other network's entry
        reset_collected_modules(collect_reset_modules(net))
        return
    modules = _cached_modules(net)
    if modules is None:
        modules = collect_reset_modules(net)
        _RESET_MODULE_CACHE[net] = tuple(weakref.ref(m) for m in modules)
    reset_collected_modules(modules)


def invalidate_reset_cache(net: nn.Module) -> None:
    """Forget the cached resettable modules of ``net`` (no error when there is no entry).

    Args:
        net: the network whose structure changed.
    """
    try:
        if isinstance(net, nn.Module) and _cacheable(net):
            _RESET_MODULE_CACHE.pop(net, None)
    except TypeError:  # unhashable or not weak-referenceable: never cached
        pass


# ---------------------------------------------------------------------------------------------
# step mode
# ---------------------------------------------------------------------------------------------


def _keep_containers() -> tuple[type, ...]:
    """Containers whose children keep their own step mode (imported on first use)."""
    global _KEEP_CONTAINERS
    if _KEEP_CONTAINERS is None:
        from snn.layer import (
            ElementWiseRecurrentContainer,
            LinearRecurrentContainer,
            MultiStepContainer,
            SeqToANNContainer,
            StepModeContainer,
            TLastMultiStepContainer,
            TLastSeqToANNContainer,
        )

        _KEEP_CONTAINERS = (
            MultiStepContainer,
            SeqToANNContainer,
            TLastMultiStepContainer,
            TLastSeqToANNContainer,
            StepModeContainer,
            ElementWiseRecurrentContainer,
            LinearRecurrentContainer,
        )
    return _KEEP_CONTAINERS


def _step_mode_targets(net: nn.Module) -> Iterator[nn.Module]:
    """Depth-first in ``children()`` order from ``net``, not entering keep-containers."""
    keep = _keep_containers()
    seen: set[int] = set()
    stack = [net]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        is_keep = isinstance(module, keep)
        if hasattr(module, "step_mode"):
            fixed = is_keep and isinstance(module, StepModule) and len(module.supported_step_mode()) == 1
            if not fixed:  # containers with a fixed mode (e.g. MultiStepContainer, always 'm') keep it
                yield module
        if not is_keep:
            stack.extend(reversed(list(module.children())))


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    """Set ``step_mode`` on ``net`` and every submodule that has one.

    The children of step-mode-preserving containers (:class:`snn.layer.MultiStepContainer`,
    :class:`~snn.layer.SeqToANNContainer`, :class:`~snn.layer.TLastMultiStepContainer`,
    :class:`~snn.layer.TLastSeqToANNContainer`, :class:`~snn.layer.StepModeContainer`,
    :class:`~snn.layer.ElementWiseRecurrentContainer`, :class:`~snn.layer.LinearRecurrentContainer`)
    keep their mode; the container itself is set, unless its mode is fixed (the multi-step
    containers are always ``'m'``). Every target is checked before any is changed, so a failure
    leaves the network as it was.

    Args:
        net: the network.
        step_mode: ``'s'`` (inputs ``[N, *]``) or ``'m'`` (inputs ``[T, N, *]``).

    Raises:
        TypeError: ``net`` is not a module or ``step_mode`` not a string.
        ValueError: ``step_mode`` is not ``'s'``/``'m'``, or a module does not support it.
    """
    _require_module(net, "set_step_mode")
    if not isinstance(step_mode, str):
        raise TypeError(f"set_step_mode: step_mode: expected 's' or 'm', got {type(step_mode).__name__}")
    if step_mode not in STEP_MODES:
        raise ValueError(f"set_step_mode: step_mode: expected one of {STEP_MODES}, got {step_mode!r}")
    targets = list(_step_mode_targets(net))
    for module in targets:
        if isinstance(module, StepModule) and step_mode not in module.supported_step_mode():
            raise ValueError(
                f"set_step_mode: step_mode: {type(module).__name__} supports only "
                f"{module.supported_step_mode()}, got {step_mode!r}; nothing was changed"
            )
    for module in targets:
        if not isinstance(module, StepModule):
            logger.warning("Trying to set the step mode for %s, which is not snn.base.StepModule", module)
        module.step_mode = step_mode


# ---------------------------------------------------------------------------------------------
# backend
# ---------------------------------------------------------------------------------------------


def _accepts_backend(module: nn.Module, backend: str) -> bool:
    if backend == "auto":
        return isinstance(module, MemoryModule) and module.neuron_kind is not None
    return backend in getattr(module, "supported_backends", ())


def set_backend(net: nn.Module, backend: str, instance: type | tuple[type, ...] | None = None) -> None:
    """Run every stateful module of ``net`` (optionally only those of type ``instance``) on ``backend``.

    ``backend`` is a backend name registered by a plugin (``"torch"``, ``"triton"``,
    ``"cupy"`` ...) or ``"auto"`` (the fastest available backend per input). A module that
    cannot serve a known backend (wrong neuron kind or step mode; call :func:`set_step_mode`
    first) keeps its backend and a warning is logged on the ``snn`` logger. Everything is
    checked before any module changes.

    Args:
        net: the network.
        backend: the backend name, or ``"auto"``.
        instance: a class or tuple of classes; only modules that are instances are changed
            (default: every module).

    Raises:
        TypeError: bad argument types.
        snn.errors.BackendNotFoundError: no installed plugin provides ``backend`` (lists the
            known backends and the install command).
        snn.errors.BackendUnavailableError: the backend is installed but cannot run here and
            some module would use it.
    """
    _require_module(net, "set_backend")
    if not isinstance(backend, str):
        raise TypeError(f"set_backend: backend: expected a string, got {type(backend).__name__}")
    if instance is None:
        instance = (nn.Module,)
    elif isinstance(instance, type):
        instance = (instance,)
    elif not (isinstance(instance, tuple) and all(isinstance(c, type) for c in instance)):
        raise TypeError(
            f"set_backend: instance: expected a class, a tuple of classes or None, got {instance!r}"
        )

    info = None
    if backend != "auto":
        from snn.plugins import get_registry

        info = get_registry().backend(backend)  # BackendNotFoundError for unknown names

    plan: list[tuple[nn.Module, bool]] = []
    for module in net.modules():
        if isinstance(module, instance) and hasattr(module, "backend"):
            plan.append((module, _accepts_backend(module, backend)))
    if info is not None and any(accepted for _, accepted in plan):
        info.raise_if_unavailable()

    for module, accepted in plan:
        if not isinstance(module, MemoryModule):
            logger.warning("Trying to set the backend for %s, which is not snn.base.MemoryModule", module)
        if accepted:
            module.backend = backend
        else:
            logger.warning(
                "%s does not support backend=%s; it will continue using backend=%s",
                module,
                backend,
                module.backend,
            )


# ---------------------------------------------------------------------------------------------
# detach
# ---------------------------------------------------------------------------------------------


def detach_net(net: nn.Module) -> None:
    """Cut the memories (states) of every stateful module from the autograd graph.

    Used for truncated BPTT: the next steps start from the current state values without
    backpropagating into earlier steps. Parameters are not touched. Memory tensors are
    detached in place where possible.

    Args:
        net: the network.

    Raises:
        TypeError: ``net`` is not a :class:`torch.nn.Module`.
    """
    _require_module(net, "detach_net")
    for module in net.modules():
        if callable(getattr(module, "detach", None)):
            if not isinstance(module, MemoryModule):
                logger.warning("Trying to call `detach()` of %s, which is not snn.base.MemoryModule", module)
            module.detach()
