"""The registry's tables and their lookups (kernels imported once, ``backend="auto"`` decided once)."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

from snn.errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    OnlineLearnerNotFoundError,
    RegistryEntryNotFoundError,
    UnsupportedOperationError,
)
from snn.registry._entries import (
    BackendInfo,
    PluginFailure,
    Provenance,
    RegisteredItem,
    float32_overflow,
    plan_operations,
)

__all__ = ["Registry"]

logger = logging.getLogger("snn")


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """All registered backends, strategies, losses and learners, plus plugin failures.

    Built by :mod:`snn.plugins`; read with :func:`snn.plugins.get_registry`.
    """

    def __init__(self) -> None:
        self.backends: dict[str, BackendInfo] = {}
        self.models: dict[str, RegisteredItem] = {}
        self.strategies: dict[str, RegisteredItem] = {}
        self.losses: dict[str, RegisteredItem] = {}
        self.learners: dict[str, RegisteredItem] = {}
        self.plugins: dict[str, Provenance] = {}
        self.failures: list[PluginFailure] = []
        #: Why installed plugins may be missing: the switches set when it was built
        #: (``SNN_DISABLED_PLUGINS``, ``SNN_DISABLE_PLUGIN_AUTOLOAD``), as sentences.
        self.switches: list[str] = []
        self._kernels: dict[tuple[str, str], Callable[..., Any]] = {}
        self._auto: dict[tuple[Any, ...], str] = {}
        self._lock = threading.Lock()

    # -- failures ----------------------------------------------------------------------------

    def failure_hint(self) -> str:
        """Sentences listing recorded plugin failures and the switches that keep installed
        plugins out, or ``""`` when there are none."""
        parts = list(self.switches)
        if self.failures:
            parts.append("recorded plugin failures: " + "; ".join(f.describe() for f in self.failures))
        return ". ".join(parts)

    # -- neuron models -----------------------------------------------------------------------

    def model(self, name: str) -> Any:
        """The registered :class:`~snn.models.NeuronModel` called ``name``.

        Raises:
            RegistryEntryNotFoundError: no plugin registered it (lists the known names).
        """
        return self._lookup(self.models, "neuron model", name).implementation

    # -- backends ----------------------------------------------------------------------------

    def backend(self, name: str) -> BackendInfo:
        """The backend called ``name``.

        Raises:
            BackendNotFoundError: no plugin registered it (lists the known names, the install
                command and recorded plugin failures).
        """
        try:
            return self.backends[name]
        except KeyError:
            raise BackendNotFoundError(name, self.backends, self.failure_hint()) from None
        except TypeError:
            raise TypeError(f"backend: expected a string, got {name!r}") from None

    def backends_serving(self, model: Any, mode: str) -> tuple[str, ...]:
        """Names of the backends that run ``model`` (a NeuronModel or NeuronConfig) in kernel mode
        ``mode``, torch first."""
        names = [n for n, b in self.backends.items() if b.serves_model(model, mode)]
        return tuple(sorted(names, key=lambda n: (n != "torch", n)))

    def kernel(self, backend: str, mode: str) -> Callable[..., Any]:
        """The kernel callable of ``backend`` for the kernel mode ``mode``, imported once and cached.

        Raises:
            BackendNotFoundError: unknown backend.
            UnsupportedOperationError: the backend has no kernel for this kernel mode.
            BackendUnavailableError: the backend cannot run here.
        """
        key = (backend, mode)
        found = self._kernels.get(key)
        if found is not None:
            return found
        info = self.backend(backend)
        if not info.serves_mode(mode):
            others = [n for n, b in self.backends.items() if b.serves_mode(mode)]
            raise UnsupportedOperationError(backend, f"kernel mode {mode!r}", others)
        info.raise_if_unavailable()
        try:
            loaded = _import_target(info.kernels[mode])
        except Exception as exc:
            raise BackendUnavailableError(
                backend, f"its kernel {info.kernels[mode]!r} failed to import: {exc}"
            ) from exc
        with self._lock:
            self._kernels[key] = loaded
        return loaded

    def check_kernel_inputs(self, backend: str, device_type: str, dtype: torch.dtype, config: Any) -> None:
        """Raise :class:`UnsupportedOperationError` if ``backend`` cannot serve the input.

        Args:
            backend: the backend name.
            device_type: the input's device type.
            dtype: the input's dtype.
            config: the layer's :class:`~snn.models.NeuronConfig` (its model and surrogate are
                checked), or ``None`` to check only the device and dtype.
        """
        info = self.backend(backend)

        def serves_layer(b: BackendInfo) -> bool:  # the backends worth suggesting run the layer's model too
            return config is None or (b.serves_surrogate(config.surrogate) and b.serves_config(config))

        if not info.serves_device(device_type):
            others = [n for n, b in self.backends.items() if b.serves_device(device_type) and serves_layer(b)]
            raise UnsupportedOperationError(backend, f"tensors on device {device_type!r}", others)
        if dtype not in info.dtypes:
            others = [
                n for n, b in self.backends.items() if dtype in b.dtypes and b.serves_device(device_type) and serves_layer(b)
            ]
            raise UnsupportedOperationError(backend, f"dtype {dtype}", others)
        if config is None:
            return
        if not info.serves_surrogate(config.surrogate):
            others = [n for n, b in self.backends.items() if b.serves_surrogate(config.surrogate)]
            raise UnsupportedOperationError(backend, f"surrogate {config.surrogate.name!r}", others)
        if not info.serves_config(config):
            others = [n for n, b in self.backends.items() if b.serves_config(config)]
            what = f"neuron model {config.model.name!r}"
            if not info.generates and info.models is not None and config.model.name in info.models:
                what += " (another model than the one registered under that name, which it implements)"
            if info.generates:
                missing = sorted(plan_operations(config) - (info.operations or frozenset()))
                what += f" (its kernel uses operations {missing} that this backend does not render)"
            raise UnsupportedOperationError(backend, what, others)
        beyond = float32_overflow(info, config, dtype)
        if beyond is not None:
            others = [
                n for n, b in self.backends.items()
                if dtype in b.dtypes and b.serves_config(config) and float32_overflow(b, config, dtype) is None
            ]
            raise UnsupportedOperationError(
                backend, f"{beyond} with {dtype} inputs: its kernels compute in float32, which cannot hold the value", others
            )

    def auto_backend(self, config: Any, mode: str, device_type: str, dtype: torch.dtype) -> str:
        """The backend ``"auto"`` picks for this configuration and kernel mode; decided and logged once.

        The highest ``auto_priority`` among available backends that serve the kernel mode, model,
        surrogate, device natively (never an interpreter) and dtype, and whose kernels can hold
        the layer's constants (a finite value beyond float32's range needs float64 arithmetic);
        torch when none does.
        """
        key = (config, mode, device_type, dtype)
        chosen = self._auto.get(key)
        if chosen is not None:
            return chosen
        candidates = []
        for name, info in self.backends.items():
            if not info.serves_mode(mode) or device_type not in info.devices or dtype not in info.dtypes:
                continue
            if not info.serves_surrogate(config.surrogate) or not info.serves_config(config):
                continue
            if float32_overflow(info, config, dtype) is not None:
                continue
            if info.unavailable_reason() is not None:
                continue
            candidates.append((info.auto_priority, name == "torch", name))
        chosen = max(candidates)[2] if candidates else "torch"
        with self._lock:
            self._auto[key] = chosen
        logger.info(
            "backend='auto' chose %r for %s/%s on %s, %s, surrogate %s",
            chosen, config.model.name, mode, device_type, dtype, config.surrogate.name,
        )
        return chosen

    # -- other tables ------------------------------------------------------------------------

    def strategy(self, name: str) -> RegisteredItem:
        """The forward strategy called ``name`` (lists known names when missing)."""
        return self._lookup(self.strategies, "forward strategy", name)

    def loss(self, name: str) -> RegisteredItem:
        """The loss called ``name`` (lists known names when missing)."""
        return self._lookup(self.losses, "loss", name)

    def learner(self, name: str) -> RegisteredItem:
        """The online learner called ``name``.

        Raises:
            OnlineLearnerNotFoundError: with ``pip install "snn-core[online]"`` in the message.
        """
        try:
            return self.learners[name]
        except (KeyError, TypeError):
            raise OnlineLearnerNotFoundError(str(name), self.learners, self.failure_hint()) from None

    def _lookup(self, table: dict[str, RegisteredItem], what: str, name: str) -> RegisteredItem:
        try:
            return table[name]
        except (KeyError, TypeError):
            raise RegistryEntryNotFoundError(what, str(name), table, self.failure_hint()) from None
