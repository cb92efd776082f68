"""Network configuration: reset, step mode, backend and detaching of whole networks.

These functions walk a network and act on every submodule that supports the operation
(:class:`snn.base.MemoryModule` and :class:`snn.base.StepModule` subclasses, and duck-typed
modules with the same attributes). A duck-typed module is still handled, with a warning on the
``snn`` logger.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, cast

import torch
from torch import nn

from snn.base import STEP_MODES, MemoryModule, StepModule
from snn.errors import StepModeWarning

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
        cast(Any, module).reset()  # duck-typed, as the reference (after the warning)


def _cacheable(net: nn.Module) -> bool:
    cls = type(net)
    return cls.__eq__ is object.__eq__ and cls.__hash__ is object.__hash__


def _cached_modules(net: nn.Module) -> tuple[nn.Module, ...] | None:
    refs = _RESET_MODULE_CACHE.get(net)
    if refs is None:
        return None
    modules = tuple(module for ref in refs if (module := ref()) is not None)
    if len(modules) != len(refs):  # a module was garbage-collected
        _RESET_MODULE_CACHE.pop(net, None)
        return None
    return modules


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


#: Plain torch layers that read dimension 0 as the batch (and dimension 1 as the channels where
#: they have channels): given ``[T, N, ...]`` they fail deep inside torch or, worse, compute
#: something else. Layers that accept any leading dimensions (``Linear``, element-wise
#: activations, ``LayerNorm``, ``Dropout``, ``Embedding``) are not listed; ``Flatten``,
#: ``Unflatten`` and the soft-max layers only when their dimension counts from the front.
_BATCH_LAYOUT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.FractionalMaxPool2d, nn.FractionalMaxPool3d,
    nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.Fold, nn.Unfold,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.FeatureAlphaDropout, nn.Softmax2d,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.Flatten, nn.Unflatten, nn.Softmax, nn.LogSoftmax, nn.Softmin,
)


def _misreads_time(module: nn.Module) -> bool:
    """Whether a plain (step-mode-unaware) ``module`` misreads a ``[T, N, ...]`` input."""
    if hasattr(module, "step_mode") or not isinstance(module, _BATCH_LAYOUT_LAYERS):
        return False
    # dimensions counted from the end, or from 2 on (past [T, N]), mean the same in both modes
    if isinstance(module, nn.Flatten):
        start, end = module.start_dim, module.end_dim
        if start < 0:
            return end >= 0
        # merging T or N into the features misreads; merging T with N (0, 1) is deliberate
        return start < 2 and (end < 0 or end >= 2)
    if isinstance(module, nn.Unflatten):
        return isinstance(module.dim, int) and 0 <= module.dim < 2
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        return module.dim is None or 0 <= module.dim < 2
    return True


def _replacement(module: nn.Module) -> str:
    """What to use instead of ``module`` in a multi-step network."""
    import snn.layer

    cls = type(module)
    wrapper = getattr(snn.layer, cls.__name__, None)
    if cls.__module__.startswith("torch.nn") and isinstance(wrapper, type) and issubclass(wrapper, cls):
        return f"use snn.layer.{cls.__name__} (or wrap it in snn.layer.SeqToANNContainer)"
    return "wrap it in snn.layer.SeqToANNContainer"


def _warn_plain_modules(net: nn.Module) -> None:
    """Warn about the plain torch modules of ``net`` that will see ``[T, N, ...]`` input.

    Those are the modules reached from ``net`` without passing a step-mode-preserving container
    (whose children see one step, or ``[T * N, ...]``), as :func:`_step_mode_targets` walks.
    """
    keep = _keep_containers()
    names = {id(m): name for name, m in net.named_modules(remove_duplicate=False)}
    seen: set[int] = set()
    found: list[str] = []
    stack = [net]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if _misreads_time(module):
            where = names.get(id(module)) or "the network itself"
            found.append(f"'{where}' (torch.nn.{type(module).__name__}): {_replacement(module)}")
        if not isinstance(module, keep):
            stack.extend(reversed(list(module.children())))
    if found:
        warnings.warn(
            "set_step_mode: in step mode 'm' these plain torch modules will see [T, N, ...] input "
            "and read T as the batch (and N as the channels): " + "; ".join(found),
            StepModeWarning,
            stacklevel=3,
        )


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    """Set ``step_mode`` on ``net`` and every submodule that has one.

    The children of step-mode-preserving containers (:class:`snn.layer.MultiStepContainer`,
    :class:`~snn.layer.SeqToANNContainer`, :class:`~snn.layer.TLastMultiStepContainer`,
    :class:`~snn.layer.TLastSeqToANNContainer`, :class:`~snn.layer.StepModeContainer`,
    :class:`~snn.layer.ElementWiseRecurrentContainer`, :class:`~snn.layer.LinearRecurrentContainer`)
    keep their mode; the container itself is set, unless its mode is fixed (the multi-step
    containers are always ``'m'``). Every target is checked before any is changed, so a failure
    leaves the network as it was.

    In step mode ``'m'``, plain torch modules outside such containers receive ``[T, N, ...]``
    sequences. Those that read dimension 0 as the batch (``nn.Flatten``, ``nn.Conv2d``,
    ``nn.BatchNorm1d``, pooling layers ...) would fail deep inside torch or compute something
    else: each one is named in a :class:`~snn.errors.StepModeWarning`, with the
    :mod:`snn.layer` replacement or :class:`~snn.layer.SeqToANNContainer` to use. Layers that
    accept any leading dimensions (``nn.Linear``, activations) are fine as they are.

    Args:
        net: the network.
        step_mode: ``'s'`` (inputs ``[N, *]``) or ``'m'`` (inputs ``[T, N, *]``).

    Raises:
        TypeError: ``net`` is not a module or ``step_mode`` not a string.
        ValueError: ``step_mode`` is not ``'s'``/``'m'``, or a module does not support it.

    Warns:
        snn.errors.StepModeWarning: step mode ``'m'`` and plain torch modules that will
            misread ``[T, N, ...]`` input (see above).
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
        cast(Any, module).step_mode = step_mode  # duck-typed, as the reference (after the warning)
    if step_mode == "m":
        _warn_plain_modules(net)


# ---------------------------------------------------------------------------------------------
# backend
# ---------------------------------------------------------------------------------------------


def _accepts_backend(module: nn.Module, backend: str) -> bool:
    if backend == "auto":
        from snn.neuron import BaseNode

        return isinstance(module, BaseNode) and type(module).model is not None
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
            cast(Any, module).backend = backend  # duck-typed, as the reference (after the warning)
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
            cast(Any, module).detach()  # duck-typed, as the reference (after the warning)
