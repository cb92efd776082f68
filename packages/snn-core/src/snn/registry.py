"""The registry: what plugins registered, and fast lookups of it.

Plugins never touch this data directly; each hook of :mod:`snn.hookspecs` receives a
*registrar* bound to the plugin, which validates the arguments, records provenance (plugin
name, distribution and version) and refuses names that are already taken. After the plugin
manager has been built (see :mod:`snn.plugins`), lookups are plain dictionary reads; kernels
are imported on first use and cached, so a forward pass costs at most one dict lookup.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from snn.errors import (
    BackendNotFoundError,
    BackendProbeError,
    BackendUnavailableError,
    DuplicateRegistrationError,
    OnlineLearnerNotFoundError,
    RegistryEntryNotFoundError,
    UnsupportedOperationError,
)

__all__ = [
    "KERNEL_KINDS",
    "KERNEL_MODES",
    "Provenance",
    "PluginFailure",
    "BackendInfo",
    "RegisteredItem",
    "Registry",
    "BackendRegistrar",
    "StrategyRegistrar",
    "LossRegistrar",
    "LearnerRegistrar",
]

logger = logging.getLogger("snn")

#: Neuron kinds a kernel may serve.
KERNEL_KINDS = ("if", "lif", "plif")
#: Kernel modes; ``"single_step"`` serves step mode ``'s'``, ``"multi_step"`` serves ``'m'``.
KERNEL_MODES = ("single_step", "multi_step")


@dataclass(frozen=True)
class Provenance:
    """Where a registered thing comes from.

    Attributes:
        plugin: the plugin name (entry-point name, or the in-tree plugin's name).
        distribution: the distribution that installed it (``None`` when unknown).
        version: that distribution's version (``None`` when unknown).
    """

    plugin: str
    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to import, whose hook raised, or that registered a taken name.

    Attributes:
        plugin: the plugin name.
        distribution: the distribution name, when known.
        version: the distribution version, when known.
        stage: ``"import"``, ``"validate"``, ``"hook"`` or ``"clash"``.
        error: the error text (type and message).
        clash_name: for a clash, the name that was already taken.
        clash_with: for a clash, the plugin that holds the name.
    """

    plugin: str
    distribution: str | None
    version: str | None
    stage: str
    error: str
    clash_name: str | None = None
    clash_with: str | None = None

    def describe(self) -> str:
        """One line for error messages and ``snn doctor``."""
        where = self.plugin
        if self.distribution:
            where += f" ({self.distribution} {self.version or '?'})"
        if self.stage == "clash":
            return (
                f"plugin {where} registered {self.clash_name!r}, already taken by plugin "
                f"{self.clash_with!r}: {self.error}"
            )
        return f"plugin {where} failed at {self.stage}: {self.error}"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise TypeError(f"name: expected a non-empty string without surrounding spaces, got {name!r}")
    return name


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class BackendInfo:
    """A registered neuron-kernel backend (see :func:`snn.hookspecs.snn_register_backends`).

    Attributes:
        name: backend name.
        kernels: ``(kind, mode) -> "module:attribute"``.
        devices: device types served natively.
        emulated_devices: device types served only through an interpreter (tests only).
        dtypes: storage dtypes served.
        surrogates: surrogate class names the kernels implement.
        probe: returns ``None`` or the reason the backend cannot run here; it may also raise
            :class:`~snn.errors.BackendProbeError` (message = reason, cause chained).
        auto_priority: preference of ``backend="auto"`` (larger wins).
        description: one line.
        provenance: where it comes from.
    """

    name: str
    kernels: Mapping[tuple[str, str], str]
    devices: frozenset[str]
    emulated_devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    surrogates: frozenset[str]
    probe: Callable[[], str | None]
    auto_priority: int
    description: str
    provenance: Provenance
    _probe_result: list[tuple[str | None, BaseException | None]] = field(
        default_factory=list, compare=False, repr=False
    )

    def unavailable_reason(self) -> str | None:
        """The probe's reason this backend cannot run here, or ``None``; probed once."""
        if not self._probe_result:
            try:
                result: tuple[str | None, BaseException | None] = (self.probe(), None)
            except BackendProbeError as exc:  # the designated way to report a broken runtime
                result = (str(exc), exc.__cause__ or exc)
            except Exception as exc:  # a probe must not break the caller
                result = (f"its probe raised {type(exc).__name__}: {exc}", exc)
            self._probe_result.append(result)
        return self._probe_result[0][0]

    def raise_if_unavailable(self) -> None:
        """Raise :class:`BackendUnavailableError` (cause chained) when the probe failed."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(self.name, reason) from self._probe_result[0][1]

    def serves(self, kind: str, mode: str) -> bool:
        """Whether a kernel for ``(kind, mode)`` is registered."""
        return (kind, mode) in self.kernels

    def serves_device(self, device_type: str) -> bool:
        """Whether tensors of this device type can be handed to the kernels."""
        return device_type in self.devices or device_type in self.emulated_devices


@dataclass(frozen=True)
class RegisteredItem:
    """A registered strategy, loss or learner.

    Attributes:
        name: the registered name.
        implementation: the callable or object.
        metadata: extra keyword arguments given to the registrar.
        provenance: where it comes from.
    """

    name: str
    implementation: Any
    metadata: Mapping[str, Any]
    provenance: Provenance

    @property
    def description(self) -> str:
        """The ``description`` metadata, or the first docstring line of the implementation."""
        text = self.metadata.get("description")
        if text:
            return str(text)
        doc = getattr(self.implementation, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """All registered backends, strategies, losses and learners, plus plugin failures.

    Built by :mod:`snn.plugins`; read with :func:`snn.plugins.get_registry`.
    """

    def __init__(self) -> None:
        self.backends: dict[str, BackendInfo] = {}
        self.strategies: dict[str, RegisteredItem] = {}
        self.losses: dict[str, RegisteredItem] = {}
        self.learners: dict[str, RegisteredItem] = {}
        self.plugins: dict[str, Provenance] = {}
        self.failures: list[PluginFailure] = []
        self._kernels: dict[tuple[str, str, str], Callable[..., Any]] = {}
        self._auto: dict[tuple[Any, ...], str] = {}
        self._lock = threading.Lock()

    # -- failures ----------------------------------------------------------------------------

    def failure_hint(self) -> str:
        """A sentence listing recorded plugin failures, or ``""`` when there are none."""
        if not self.failures:
            return ""
        return "recorded plugin failures: " + "; ".join(f.describe() for f in self.failures)

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

    def backends_serving(self, kind: str, mode: str) -> tuple[str, ...]:
        """Names of the backends with a kernel for ``(kind, mode)``, torch first."""
        names = [n for n, b in self.backends.items() if b.serves(kind, mode)]
        return tuple(sorted(names, key=lambda n: (n != "torch", n)))

    def kernel(self, backend: str, kind: str, mode: str) -> Callable[..., Any]:
        """The kernel callable of ``backend`` for ``(kind, mode)``, imported once and cached.

        Raises:
            BackendNotFoundError: unknown backend.
            UnsupportedOperationError: the backend has no such kernel.
            BackendUnavailableError: the backend cannot run here.
        """
        key = (backend, kind, mode)
        found = self._kernels.get(key)
        if found is not None:
            return found
        info = self.backend(backend)
        if not info.serves(kind, mode):
            raise UnsupportedOperationError(
                backend, f"neuron kind {kind!r} in mode {mode!r}", self.backends_serving(kind, mode)
            )
        info.raise_if_unavailable()
        try:
            loaded = _import_target(info.kernels[(kind, mode)])
        except Exception as exc:
            raise BackendUnavailableError(
                backend, f"its kernel {info.kernels[(kind, mode)]!r} failed to import: {exc}"
            ) from exc
        with self._lock:
            self._kernels[key] = loaded
        return loaded

    def check_kernel_inputs(
        self, backend: str, device_type: str, dtype: torch.dtype, surrogate: str | None
    ) -> None:
        """Raise :class:`UnsupportedOperationError` if ``backend`` cannot serve the input."""
        info = self.backend(backend)
        if not info.serves_device(device_type):
            others = [n for n, b in self.backends.items() if b.serves_device(device_type)]
            raise UnsupportedOperationError(backend, f"tensors on device {device_type!r}", others)
        if dtype not in info.dtypes:
            others = [n for n, b in self.backends.items() if dtype in b.dtypes]
            raise UnsupportedOperationError(backend, f"dtype {dtype}", others)
        if surrogate is not None and surrogate not in info.surrogates:
            others = [n for n, b in self.backends.items() if surrogate in b.surrogates]
            raise UnsupportedOperationError(backend, f"surrogate {surrogate!r}", others)

    def auto_backend(
        self, kind: str, mode: str, device_type: str, dtype: torch.dtype, surrogate: str | None
    ) -> str:
        """The backend ``"auto"`` picks for this configuration; decided once and logged once.

        The highest ``auto_priority`` among available backends that serve the kind, mode,
        device natively (never an interpreter), dtype and surrogate; torch when none does.
        """
        key = (kind, mode, device_type, dtype, surrogate)
        chosen = self._auto.get(key)
        if chosen is not None:
            return chosen
        candidates = []
        for name, info in self.backends.items():
            if not info.serves(kind, mode) or device_type not in info.devices:
                continue
            if dtype not in info.dtypes or (surrogate is not None and surrogate not in info.surrogates):
                continue
            if info.unavailable_reason() is not None:
                continue
            candidates.append((info.auto_priority, name == "torch", name))
        chosen = max(candidates)[2] if candidates else "torch"
        with self._lock:
            self._auto[key] = chosen
        logger.info(
            "backend='auto' chose %r for %s/%s on %s, %s, surrogate %s",
            chosen, kind, mode, device_type, dtype, surrogate,
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


class _Registrar:
    """Base of the registrars handed to hooks: bound to one plugin and one table."""

    what = "entry"

    def __init__(self, registry: Registry, provenance: Provenance) -> None:
        self._registry = registry
        self._provenance = provenance

    def _table(self) -> dict[str, Any]:
        raise NotImplementedError

    def _claim(self, name: object) -> str:
        checked = _check_name(name)
        existing = self._table().get(checked)
        if existing is not None:
            raise DuplicateRegistrationError(
                self.what, checked, existing.provenance.plugin, self._provenance.plugin
            )
        return checked


class BackendRegistrar(_Registrar):
    """``register(name, kernels, *, devices, dtypes, surrogates, probe, ...)``.

    See :func:`snn.hookspecs.snn_register_backends` for the meaning of each argument.
    """

    what = "backend"

    def _table(self) -> dict[str, Any]:
        return self._registry.backends

    def __call__(
        self,
        name: str,
        kernels: Mapping[tuple[str, str], str],
        *,
        devices: Iterable[str],
        dtypes: Iterable[torch.dtype],
        surrogates: Iterable[str],
        probe: Callable[[], str | None],
        emulated_devices: Iterable[str] = (),
        auto_priority: int = 0,
        description: str = "",
    ) -> None:
        checked = self._claim(name)
        if not isinstance(kernels, Mapping) or not kernels:
            raise TypeError(f"kernels: expected a non-empty mapping, got {kernels!r}")
        for key, target in kernels.items():
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] in KERNEL_KINDS and key[1] in KERNEL_MODES):
                raise ValueError(
                    f"kernels: expected keys (kind, mode) with kind in {KERNEL_KINDS} and mode in "
                    f"{KERNEL_MODES}, got {key!r}"
                )
            if not isinstance(target, str) or target.count(":") != 1:
                raise ValueError(f"kernels[{key!r}]: expected a 'module:attribute' string, got {target!r}")
        dtype_set = frozenset(dtypes)
        if not all(isinstance(d, torch.dtype) for d in dtype_set):
            raise TypeError(f"dtypes: expected torch.dtype values, got {sorted(map(str, dtype_set))}")
        if not callable(probe):
            raise TypeError(f"probe: expected a callable returning None or a reason, got {probe!r}")
        self._registry.backends[checked] = BackendInfo(
            name=checked,
            kernels=dict(kernels),
            devices=frozenset(devices),
            emulated_devices=frozenset(emulated_devices),
            dtypes=dtype_set,
            surrogates=frozenset(surrogates),
            probe=probe,
            auto_priority=int(auto_priority),
            description=description,
            provenance=self._provenance,
        )


class _ItemRegistrar(_Registrar):
    table_name = ""

    def _table(self) -> dict[str, Any]:
        return getattr(self._registry, self.table_name)

    def __call__(self, name: str, implementation: Any, **metadata: Any) -> None:
        checked = self._claim(name)
        self._validate(implementation)
        self._table()[checked] = RegisteredItem(checked, implementation, dict(metadata), self._provenance)

    def _validate(self, implementation: Any) -> None:
        if not callable(implementation):
            raise TypeError(f"implementation of {self.what}: expected a callable, got {implementation!r}")


class StrategyRegistrar(_ItemRegistrar):
    """``register(name, strategy, **metadata)``; see :func:`snn.hookspecs.snn_register_forward_strategies`."""

    what = "forward strategy"
    table_name = "strategies"


class LossRegistrar(_ItemRegistrar):
    """``register(name, loss, **metadata)``; see :func:`snn.hookspecs.snn_register_losses`."""

    what = "loss"
    table_name = "losses"


class LearnerRegistrar(_ItemRegistrar):
    """``register(name, learner, **metadata)``; see :func:`snn.hookspecs.snn_register_online_learners`."""

    what = "online learner"
    table_name = "learners"

    def _validate(self, implementation: Any) -> None:
        from snn.learning import OnlineLearner

        if not isinstance(implementation, OnlineLearner):
            raise TypeError(
                f"implementation of online learner: expected an snn.learning.OnlineLearner instance, "
                f"got {type(implementation).__name__}"
            )
