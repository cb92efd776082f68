"""What the registry stores: backends, registered items, provenance and plugin failures.

:class:`BackendInfo` also answers which models, surrogates, devices and dtypes a backend
serves (for a generating backend, from the operations its kernels render).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from snn.errors import BackendProbeError, BackendUnavailableError

__all__ = ["KERNEL_MODES", "Provenance", "PluginFailure", "BackendInfo", "RegisteredItem"]

# documented where it is public: snn.registry.KERNEL_MODES
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
        """One line for error messages and ``snn doctor`` (a multi-line error, as pluggy's
        validation messages are, is joined into one)."""
        where = self.plugin
        if self.distribution:
            where += f" ({self.distribution} {self.version or '?'})"
        error = " ".join(self.error.split())
        if self.stage == "clash":
            return (
                f"plugin {where} registered {self.clash_name!r}, already taken by plugin "
                f"{self.clash_with!r}: {error}"
            )
        return f"plugin {where} failed at {self.stage}: {error}"


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
        literal_constants: whether a generating backend's kernels hold the hyper-parameters and
            surrogate parameters as float32 literals for inputs other than float64 (``False``:
            they reach the kernels as Python numbers at run time, as on the torch backend).
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
    literal_constants: bool = True
    _probe_result: list[tuple[str | None, BaseException | None]] = field(
        default_factory=list, compare=False, repr=False
    )

    def unavailable_reason(self) -> str | None:
        """The probe's reason this backend cannot run here, or ``None``; probed once."""
        if not self._probe_result:
            try:
                answer = self.probe()
                result: tuple[str | None, BaseException | None] = (answer, None)
                if answer is not None and not isinstance(answer, str):  # a probe must say why in words
                    result = (f"its probe returned {type(answer).__name__} {answer!r:.80}; expected None or a reason string", None)
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
        return plan_operations(config) <= (self.operations or frozenset())

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
def plan_operations(config: Any) -> frozenset[str]:
    from snn.models import kernel_plan

    return kernel_plan(config).operations


def float32_overflow(info: Any, config: Any, dtype: torch.dtype) -> str | None:
    """What ``info``'s generated float32 source cannot hold for ``config`` at ``dtype``
    (:func:`snn.models.constant_beyond_float32`), or ``None``: also when the backend has
    hand-written kernels, computes in float64, or takes the constants as Python numbers at run
    time (``literal_constants=False``: the torch backend, whose products then overflow as a
    plain loop's do).
    """
    from snn.models import constant_beyond_float32

    if not info.generates or not info.literal_constants or dtype == torch.float64:
        return None
    return constant_beyond_float32(config)


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
