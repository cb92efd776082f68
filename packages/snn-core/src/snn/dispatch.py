"""Which kernel runs a neuron layer: the one room for backend choice.

A neuron (:class:`snn.neuron.BaseNode`) names a backend (``"torch"``, a plugin's, or
``"auto"``) and hands each call to :meth:`KernelDispatch.kernel`, which returns the kernel for
its configuration, kernel mode and input. The choice is made once per configuration and input kind and
cached, so a forward pass costs one dictionary lookup; the cache follows the registry (a new
plugin manager after :func:`snn.plugins.reset` starts afresh).

Rules:

- an explicit backend is honoured or fails with a typed error
  (:class:`~snn.errors.UnsupportedOperationError` naming the backends that would serve the
  call); it never falls back silently;
- ``"auto"`` picks the available backend with the highest priority that serves the kernel mode,
  model, surrogate, device (natively, never an interpreter) and dtype, and whose generated
  source can hold the layer's constants (:meth:`snn.registry.Registry.auto_backend`);
- in step mode ``'s'`` a backend without a ``"single_step"`` kernel runs the torch single-step
  kernel (kernel backends are built for whole sequences);
- a plugin backend's kernel (any but ``"torch"``) comes wrapped so that its result is checked
  against the kernel contract (:func:`snn.kernels.check_kernel_result`) before the neuron
  stores any of it: a plugin's bug fails at the call that caused it.

Vocabulary: a neuron's *step mode* is ``'s'`` or ``'m'`` (what users set); the *kernel mode* is
``"single_step"`` or ``"multi_step"`` (the key a backend registers a kernel under).
:data:`KERNEL_MODE` maps the first to the second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from snn.kernels import check_kernel_result
from snn.registry import KERNEL_MODES

__all__ = ["MODES", "KERNEL_MODE", "KernelDispatch", "supported_backends", "check_backend"]

#: Step mode -> kernel mode.
KERNEL_MODE = {"s": "single_step", "m": "multi_step"}
#: The kernel modes (the same tuple as :data:`snn.registry.KERNEL_MODES`).
MODES = KERNEL_MODES

_CACHE_LIMIT = 64


class KernelDispatch:
    """The per-neuron cache of kernel choices.

    Not shared between neurons and not pickled (a copy starts with an empty cache).
    """

    __slots__ = ("_cache", "_registry")

    def __init__(self) -> None:
        self._registry: Any = None
        self._cache: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def kernel(self, backend: str, mode: str, config: Any, x: torch.Tensor) -> Callable[..., Any]:
        """The kernel that runs ``config`` in kernel mode ``mode`` on inputs like ``x``.

        Args:
            backend: the neuron's backend name, or ``"auto"``.
            mode: the kernel mode, ``"single_step"`` or ``"multi_step"``.
            config: the layer's :class:`~snn.models.NeuronConfig`.
            x: the input (its device type and dtype matter).

        Raises:
            snn.errors.BackendNotFoundError: unknown backend.
            snn.errors.BackendUnavailableError: the backend cannot run here.
            snn.errors.UnsupportedOperationError: the backend cannot serve this device, dtype,
                model or surrogate.
        """
        from snn.plugins import get_registry

        registry = get_registry()
        if registry is not self._registry:
            self._registry = registry
            self._cache = {}
        key = (backend, mode, config, x.device.type, x.dtype)
        found = self._cache.get(key)
        if found is not None:
            return found
        if backend == "auto":
            name = registry.auto_backend(config, mode, x.device.type, x.dtype)
        elif mode == "single_step" and not registry.backend(backend).serves_mode(mode):
            name = "torch"
        else:
            name = backend
        if name != "torch" or backend != "auto":
            registry.check_kernel_inputs(name, x.device.type, x.dtype, config)
        found = registry.kernel(name, mode)
        if name != "torch":
            found = _checked(name, mode, found)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found


def _checked(backend: str, mode: str, kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` with its result checked by :func:`snn.kernels.check_kernel_result`."""

    def checked_kernel(x: torch.Tensor, states: Any, config: Any, **kwargs: Any) -> Any:
        result = kernel(x, states, config, **kwargs)
        return check_kernel_result(
            backend, mode, result, x, len(states), bool(kwargs.get("store_state_seqs", False))
        )

    checked_kernel.__wrapped__ = kernel  # type: ignore[attr-defined]  # for introspection, as functools.wraps sets it
    return checked_kernel


def supported_backends(model: Any, step_mode: str) -> tuple[str, ...]:
    """Installed backends that serve ``model`` (a NeuronModel or NeuronConfig) in ``step_mode``
    (``'s'``: those with a single-step kernel for it; ``'m'``: a multi-step one), torch first.

    A neuron switched to step mode ``'s'`` while on a multi-step-only backend keeps that backend;
    its single steps run the torch single-step kernel.
    """
    from snn.plugins import get_registry

    return get_registry().backends_serving(model, KERNEL_MODE[step_mode])


def check_backend(name: Any, model: Any, step_mode: str, owner: str) -> None:
    """Check that backend ``name`` can run ``model`` in ``step_mode``, and import its kernels;
    ``"auto"`` always can (it chooses per input, at the first forward).

    Raises:
        TypeError: ``name`` is not a string.
        snn.errors.BackendNotFoundError: no plugin provides ``name``.
        snn.errors.UnsupportedOperationError: the backend does not serve the model in this mode.
        snn.errors.BackendUnavailableError: the backend cannot run here.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a string, got {type(name).__name__}")
    if name == "auto":
        return
    from snn.errors import UnsupportedOperationError
    from snn.plugins import get_registry

    registry = get_registry()
    info = registry.backend(name)
    supported = supported_backends(model, step_mode)
    if name not in supported:
        mode = KERNEL_MODE[step_mode]
        model_name = getattr(getattr(model, "model", model), "name", "?")
        spec = getattr(model, "surrogate", None)
        with_surrogate = "" if spec is None else f", surrogate {spec.name!r}"
        raise UnsupportedOperationError(
            name, f"{owner} (model {model_name!r}{with_surrogate}) in step mode {step_mode!r} ({mode})", supported
        )
    info.raise_if_unavailable()
    for kernel_mode in info.kernels:
        # imported now, not at the first forward: an import there cannot be traced by
        # torch.compile(fullgraph=True), and a kernel that fails to import is named here
        registry.kernel(name, kernel_mode)
