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
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from snn.models import NeuronModel

__all__ = [
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
    "NeuronModelRegistrar",
]

logger = logging.getLogger("snn")

#: The kernel modes, the keys of a backend's kernels: ``"single_step"`` runs neurons in step mode
#: ``'s'``, ``"multi_step"`` in step mode ``'m'`` (:data:`snn.dispatch.KERNEL_MODE` maps one to the
#: other). Users see step modes only; kernel modes are the backend author's word.
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

    A backend either *generates* its kernels from the models' expressions (``operations`` is
    the set of :mod:`snn.expr` operations it renders; it serves every model and surrogate whose
    kernel plan uses only those) or has *hand-written* kernels (``models`` and ``surrogates``
    name what they implement).

    Attributes:
        name: backend name.
        kernels: ``kernel mode -> "module:attribute"`` (keys of :data:`KERNEL_MODES`).
        devices: device types served natively.
        emulated_devices: device types served only through an interpreter (tests only).
        dtypes: storage dtypes served.
        models: names of the models served, or ``None`` for a generating backend.
        served_models: the registered :class:`~snn.models.NeuronModel` objects those names had
            when the backend was registered (a hand-written kernel implements one model's math:
            another model that takes the name, or that is not registered, is not served).
        operations: the operations a generating backend renders, or ``None``.
        surrogates: surrogate class names served, or ``None``: every closed-form surrogate whose
            derivative uses only ``operations``.
        probe: returns ``None`` or the reason the backend cannot run here; it may also raise
            :class:`~snn.errors.BackendProbeError` (message = reason, cause chained).
        auto_priority: preference of ``backend="auto"`` (larger wins).
        description: one line.
        provenance: where it comes from.
    """

    name: str
    kernels: Mapping[str, str]
    devices: frozenset[str]
    emulated_devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    models: frozenset[str] | None
    operations: frozenset[str] | None
    surrogates: frozenset[str] | None
    probe: Callable[[], str | None]
    auto_priority: int
    description: str
    provenance: Provenance
    served_models: frozenset[Any] = field(default=frozenset(), compare=False, repr=False)
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

    @property
    def generates(self) -> bool:
        """Whether the kernels are generated from the models' expressions."""
        return self.operations is not None

    def serves_mode(self, mode: str) -> bool:
        """Whether a kernel for the kernel mode ``mode`` is registered."""
        return mode in self.kernels

    def serves_model(self, model: Any, mode: str) -> bool:
        """Whether ``model`` (a :class:`~snn.models.NeuronModel` or its default config) runs here
        in kernel mode ``mode``: named by a hand-written backend, or (generating backend) its kernel plan
        with the default hyper-parameters and the Sigmoid surrogate renders."""
        if mode not in self.kernels:
            return False
        from snn.models import NeuronConfig, NeuronModel

        if isinstance(model, NeuronConfig):
            return self.serves_config(model)
        if not isinstance(model, NeuronModel):
            return False
        if self.models is not None:
            return _is_served(model, self.served_models)
        return self.serves_config(_default_config(model))

    def serves_config(self, config: Any) -> bool:
        """Whether this backend runs ``config`` (a :class:`~snn.models.NeuronConfig`): its model
        and surrogate (a hand-written backend: the registered model it names and a surrogate it
        implements; a generating backend: every operation of the plan, surrogate included)."""
        if self.models is not None:
            return _is_served(config.model, self.served_models) and self.serves_surrogate(config.surrogate)
        return _plan_operations(config) <= (self.operations or frozenset())

    def serves_surrogate(self, spec: Any) -> bool:
        """Whether the kernels implement the surrogate ``spec`` (a SurrogateSpec or class name)."""
        name = spec if isinstance(spec, str) else spec.name
        if self.surrogates is not None:
            if not isinstance(spec, str) and getattr(spec, "cls", None) is not None:
                return False  # a third-party class is never one of the named built-ins
            return name in self.surrogates
        if isinstance(spec, str):
            from snn.surrogate import CLOSED_FORM_SURROGATES

            return name in CLOSED_FORM_SURROGATES and _surrogate_operations_by_name(name) <= (
                self.operations or frozenset()
            )
        ops = _surrogate_operations(spec)
        return ops is not None and ops <= (self.operations or frozenset())

    def serves_device(self, device_type: str) -> bool:
        """Whether tensors of this device type can be handed to the kernels."""
        return device_type in self.devices or device_type in self.emulated_devices

    def claimed_surrogates(self) -> tuple[str, ...]:
        """Names of the :mod:`snn.surrogate` classes served (for listings and tests)."""
        from snn.surrogate import CLOSED_FORM_SURROGATES

        return tuple(name for name in CLOSED_FORM_SURROGATES if self.serves_surrogate(name))


def _is_served(model: Any, served: frozenset[Any]) -> bool:
    """Whether ``model`` is one of the ``served`` model objects, or a copy of one (a pickled
    configuration comes back with a new model object holding the same functions)."""
    if model in served:
        return True
    return any(
        model.name == m.name and model.charge is m.charge and model.reset is m.reset
        and (model.states, model.hyperparameters, model.learnables, model.fire, model.threshold, model.detached)
        == (m.states, m.hyperparameters, m.learnables, m.fire, m.threshold, m.detached)
        for m in served
    )


@lru_cache(maxsize=256)
def _default_config(model: Any) -> Any:
    from snn.surrogate import Sigmoid

    return model.config(Sigmoid().spec)


@lru_cache(maxsize=1024)
def _plan_operations(config: Any) -> frozenset[str]:
    from snn.models import kernel_plan

    return kernel_plan(config).operations


def _float32_overflow(info: Any, config: Any, dtype: torch.dtype) -> str | None:
    """``name=value`` of a constant that ``info``'s generated float32 source cannot hold.

    A backend that generates source folds the hyper-parameters and surrogate parameters into it
    as literals, in float32 for every input dtype but float64; a finite value beyond float32's
    range (``v_threshold=1e39``) has no such literal. ``None`` when all fit, when the backend has
    hand-written kernels or computes in float64, and for the torch backend (its programs pass
    the constants to torch as Python numbers, as a plain loop does).
    """
    from snn.expr import float32_literal  # the renderers' own rule for float32 literals

    if not info.generates or info.name == "torch" or dtype == torch.float64:
        return None
    surrogate = config.surrogate
    named = [*config.hyperparameters, *((f"{surrogate.name}.{name}", value) for name, value in surrogate.params)]
    for name, value in named:
        if isinstance(value, float) and math.isfinite(value):
            try:
                float32_literal(value, "c")
            except ValueError:
                return f"{name}={value!r}"
    return None


@lru_cache(maxsize=256)
def _surrogate_operations(spec: Any) -> frozenset[str] | None:
    """The operations of a surrogate's derivative, or ``None`` when it has no closed form."""
    from snn.expr import operations
    from snn.surrogate import derivative_expression

    try:
        return operations(derivative_expression(spec))
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=64)
def _surrogate_operations_by_name(name: str) -> frozenset[str]:
    from snn.surrogate import SURROGATES

    ops = _surrogate_operations(SURROGATES[name]().spec)
    return ops if ops is not None else frozenset({"<unrenderable>"})


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
        if "description" in self.metadata:  # given (a neuron model's own, possibly empty)
            return str(self.metadata["description"] or "")
        doc = getattr(self.implementation, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


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
        self._kernels: dict[tuple[str, str], Callable[..., Any]] = {}
        self._auto: dict[tuple[Any, ...], str] = {}
        self._lock = threading.Lock()

    # -- failures ----------------------------------------------------------------------------

    def failure_hint(self) -> str:
        """A sentence listing recorded plugin failures, or ``""`` when there are none."""
        if not self.failures:
            return ""
        return "recorded plugin failures: " + "; ".join(f.describe() for f in self.failures)

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
        if not info.serves_device(device_type):
            others = [n for n, b in self.backends.items() if b.serves_device(device_type)]
            raise UnsupportedOperationError(backend, f"tensors on device {device_type!r}", others)
        if dtype not in info.dtypes:
            others = [n for n, b in self.backends.items() if dtype in b.dtypes and b.serves_device(device_type)]
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
                missing = sorted(_plan_operations(config) - (info.operations or frozenset()))
                what += f" (its kernel uses operations {missing} that this backend does not render)"
            raise UnsupportedOperationError(backend, what, others)
        beyond = _float32_overflow(info, config, dtype)
        if beyond is not None:
            others = [
                n for n, b in self.backends.items()
                if dtype in b.dtypes and b.serves_config(config) and _float32_overflow(b, config, dtype) is None
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
            if _float32_overflow(info, config, dtype) is not None:
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


class _Registrar:
    """Base of the registrars handed to hooks: bound to one plugin and one table."""

    what = "entry"

    def __init__(self, registry: Registry, provenance: Provenance) -> None:
        self._registry = registry
        self._provenance = provenance
        self._before = set(self._table())

    def withdraw(self) -> list[str]:
        """Remove what this registrar registered (its hook raised: a plugin provides all of a
        hook's entries or none); returns the names removed."""
        table = self._table()
        added = [name for name in table if name not in self._before]
        for name in added:
            del table[name]
        return added

    def __repr__(self) -> str:  # shown by pluggy's hook tracing
        return f"{type(self).__name__}(plugin={self._provenance.plugin!r})"

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
    """``register(name, kernels, *, devices, dtypes, probe, models | operations, ...)``.

    See :func:`snn.hookspecs.snn_register_backends` for the meaning of each argument.
    """

    what = "backend"

    def _table(self) -> dict[str, Any]:
        return self._registry.backends

    def __call__(
        self,
        name: str,
        kernels: Mapping[str, str],
        *,
        devices: Iterable[str],
        dtypes: Iterable[torch.dtype],
        probe: Callable[[], str | None],
        models: Iterable[str] | None = None,
        operations: Iterable[str] | None = None,
        surrogates: Iterable[str] | None = None,
        emulated_devices: Iterable[str] = (),
        auto_priority: int = 0,
        description: str = "",
    ) -> None:
        checked = self._claim(name)
        if not isinstance(kernels, Mapping) or not kernels:
            raise TypeError(f"kernels: expected a non-empty mapping kernel mode -> 'module:attribute', got {kernels!r}")
        for key, target in kernels.items():
            if key not in KERNEL_MODES:
                hint = (
                    " (kernels are no longer keyed by neuron kind: one kernel per kernel mode serves every "
                    "model; name hand-written models with models=...)"
                    if isinstance(key, tuple) else ""
                )
                raise ValueError(f"kernels: expected keys in {KERNEL_MODES}, got {key!r}{hint}")
            if not isinstance(target, str) or target.count(":") != 1:
                raise ValueError(f"kernels[{key!r}]: expected a 'module:attribute' string, got {target!r}")
        if (models is None) == (operations is None):
            raise TypeError(
                "models / operations: give exactly one: models=(names...) for hand-written kernels, "
                "operations=(snn.expr operations...) for kernels generated from the models' expressions"
            )
        model_set = None if models is None else frozenset(_check_names("models", models))
        served_models = frozenset(self._registered_models(model_set or ()))
        op_set = None if operations is None else frozenset(_check_names("operations", operations))
        if surrogates is None and op_set is None:
            raise TypeError("surrogates: a backend with hand-written kernels must name the surrogates it implements")
        surrogate_set = None if surrogates is None else frozenset(_check_names("surrogates", surrogates))
        if surrogate_set is not None:
            from snn.surrogate import SURROGATES

            unknown = sorted(surrogate_set - set(SURROGATES))
            if unknown:
                raise ValueError(
                    f"surrogates: expected names of snn.surrogate classes, got unknown {unknown} "
                    f"(known: {sorted(SURROGATES)})"
                )
        device_set = frozenset(_check_device_types("devices", devices))
        emulated_set = frozenset(_check_device_types("emulated_devices", emulated_devices))
        dtype_set = frozenset(dtypes)
        if not all(isinstance(d, torch.dtype) for d in dtype_set):
            raise TypeError(f"dtypes: expected torch.dtype values, got {sorted(map(str, dtype_set))}")
        if not callable(probe):
            raise TypeError(f"probe: expected a callable returning None or a reason, got {probe!r}")
        self._registry.backends[checked] = BackendInfo(
            name=checked,
            kernels=dict(kernels),
            devices=device_set,
            emulated_devices=emulated_set,
            dtypes=dtype_set,
            models=model_set,
            operations=op_set,
            surrogates=surrogate_set,
            probe=probe,
            auto_priority=int(auto_priority),
            description=description,
            provenance=self._provenance,
            served_models=served_models,
        )

    def _registered_models(self, names: Iterable[str]) -> list[Any]:
        """The registered models called ``names`` (models are registered before backends)."""
        known = self._registry.models
        missing = sorted(set(names) - set(known))
        if missing:
            raise ValueError(
                f"models: expected names of registered neuron models, got unknown {missing} "
                f"(registered: {sorted(known)}; a hand-written backend's own model is registered "
                "with snn_register_neuron_models)"
            )
        return [known[name].implementation for name in names]


def _check_names(what: str, values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"{what}: expected a collection of strings, got the string {values!r}")
    names = list(values)
    if not all(isinstance(v, str) and v for v in names):
        raise TypeError(f"{what}: expected non-empty strings, got {names!r}")
    return names


#: Names people write for a device type that torch calls otherwise.
_DEVICE_ALIASES = {"gpu": "cuda", "nvidia": "cuda", "amd": "cuda", "apple": "mps", "intel": "xpu"}


def _check_device_types(what: str, values: Iterable[str]) -> list[str]:
    """Names of torch device types (``"cpu"``, ``"cuda"``, ``"xpu"`` ...): what ``tensor.device.type``
    says. ``ValueError`` for a device with an index (``"cuda:0"``), a name that is not a lowercase
    identifier, or a common alias (``"gpu"``). Other names pass: torch learns some device types
    only when their library is imported (``"npu"``), which a plugin module should not do."""
    names = _check_names(what, values)
    for name in names:
        hint = f" (torch calls it {_DEVICE_ALIASES[name]!r})" if name in _DEVICE_ALIASES else ""
        if hint or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"{what}: expected torch device types such as 'cpu' or 'cuda', got {name!r}{hint}")
    return names


class NeuronModelRegistrar(_Registrar):
    """``register(model, **metadata)``; see :func:`snn.hookspecs.snn_register_neuron_models`.

    The name is the model's own (:attr:`snn.models.NeuronModel.name`).
    """

    what = "neuron model"

    def _table(self) -> dict[str, Any]:
        return self._registry.models

    def __call__(self, model: NeuronModel, **metadata: Any) -> None:
        from snn.models import NeuronModel

        if not isinstance(model, NeuronModel):
            raise TypeError(f"model: expected an snn.models.NeuronModel, got {type(model).__name__}")
        if "node" in metadata:
            _check_node_class(model, metadata["node"])
        checked = self._claim(model.name)
        _check_model_builds(model)
        # the model's own line (never the NeuronModel class docstring of an instance)
        metadata.setdefault("description", model.description)
        self._registry.models[checked] = RegisteredItem(checked, model, dict(metadata), self._provenance)


def _check_node_class(model: NeuronModel, node: Any) -> None:
    """Raise ``TypeError`` unless ``node`` (the ``node=`` metadata) is a neuron class that runs
    ``model``: ``snn bench`` and :func:`snn.neuron.node_class` build it for the model's name."""
    from snn.neuron.base import BaseNode

    if not (isinstance(node, type) and issubclass(node, BaseNode)):
        raise TypeError(f"model {model.name!r}: node: expected a subclass of snn.neuron.BaseNode, got {node!r}")
    if node.model is not model:
        runs = "no model" if node.model is None else f"model {node.model.name!r}"
        raise TypeError(f"model {model.name!r}: node: {node.__name__} runs {runs}, not this one (its class attribute model)")


def _check_model_builds(model: NeuronModel) -> None:
    """Build the model's kernel plan (default hyper-parameters and each example, Sigmoid
    surrogate), so that a description that cannot run fails at registration, naming the model,
    rather than in ``snn doctor`` or a user's first forward."""
    from snn.models import kernel_plan
    from snn.surrogate import Sigmoid

    spec = Sigmoid().spec
    for settings in ({}, *model.examples):
        what = "its default hyper-parameters" if not settings else f"its example {dict(settings)!r}"
        try:
            kernel_plan(model.config(spec, **dict(settings)))
        except Exception as exc:
            raise ValueError(
                f"model {model.name!r}: its description does not build a kernel with {what}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


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
