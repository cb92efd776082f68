"""The registrars handed to the hooks of :mod:`snn.hookspecs`: each validates what one plugin
registers, records its provenance and refuses names that are already taken."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from snn.errors import DuplicateRegistrationError
from snn.registry._entries import KERNEL_MODES, BackendInfo, Provenance, RegisteredItem
from snn.registry._tables import Registry

if TYPE_CHECKING:
    from snn.models import NeuronModel

__all__ = [
    "BackendRegistrar",
    "NeuronModelRegistrar",
    "StrategyRegistrar",
    "LossRegistrar",
    "LearnerRegistrar",
]


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise TypeError(f"name: expected a non-empty string without surrounding spaces, got {name!r}")
    return name


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
        literal_constants: bool = True,
        description: str = "",
    ) -> None:
        checked = self._claim(name)
        if checked == "auto":
            raise ValueError("name: 'auto' is reserved: set_backend(net, 'auto') picks a backend by auto_priority")
        if isinstance(auto_priority, bool) or not isinstance(auto_priority, int):
            raise TypeError(f"auto_priority: expected an int, got {type(auto_priority).__name__} {auto_priority!r}")
        description = _check_description(description)
        if isinstance(dtypes, (str, torch.dtype)) or not isinstance(dtypes, Iterable):
            raise TypeError(
                f"dtypes: expected an iterable of torch.dtype values (e.g. (torch.float32,)), got "
                f"{type(dtypes).__name__} {dtypes!r}"
            )
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
        if not device_set and not emulated_set:
            raise ValueError("devices: expected at least one torch device type (e.g. ('cpu',)), got none")
        dtype_set = frozenset(dtypes)
        if not all(isinstance(d, torch.dtype) for d in dtype_set):
            raise TypeError(f"dtypes: expected torch.dtype values, got {sorted(map(str, dtype_set))}")
        if not dtype_set:
            raise ValueError("dtypes: expected at least one floating dtype (e.g. (torch.float32,)), got none")
        not_floating = sorted(str(d) for d in dtype_set if not d.is_floating_point)
        if not_floating:
            raise ValueError(
                f"dtypes: expected floating dtypes (neuron inputs are floating), got {not_floating}"
            )
        if not isinstance(literal_constants, bool):
            raise TypeError(f"literal_constants: expected True or False, got {literal_constants!r}")
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
            auto_priority=auto_priority,
            description=description,
            provenance=self._provenance,
            served_models=served_models,
            literal_constants=literal_constants,
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
    """``register(model, *, description=None, node=None)``; see :func:`snn.hookspecs.snn_register_neuron_models`.

    The name is the model's own (:attr:`snn.models.NeuronModel.name`).
    """

    what = "neuron model"

    def _table(self) -> dict[str, Any]:
        return self._registry.models

    def __call__(self, model: NeuronModel, *, description: str | None = None, node: type | None = None) -> None:
        from snn.models import NeuronModel

        if not isinstance(model, NeuronModel):
            raise TypeError(f"model: expected an snn.models.NeuronModel, got {type(model).__name__}")
        _check_free_names(model)
        metadata: dict[str, Any] = {}
        if node is not None:
            _check_node_class(model, node)
            metadata["node"] = node
        checked = self._claim(model.name)
        _check_model_builds(model)
        # the model's own line (never the NeuronModel class docstring of an instance)
        metadata["description"] = model.description if description is None else _check_description(description)
        self._registry.models[checked] = RegisteredItem(checked, model, dict(metadata), self._provenance)


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise TypeError(f"description: expected a string (one line for snn doctor), got {description!r}")
    return description


def _check_free_names(model: NeuronModel) -> None:
    """Refuse hyper-parameter, learnable and state names that a neuron module already uses for
    something else (``step_mode``, ``backend``, ``training``, a method ...): the module stores
    its hyper-parameters as attributes of those names."""
    from snn.neuron.base import BaseNode

    taken = set(dir(BaseNode)) | {"detach_reset", "surrogate_function", "v_seq", "training", "v_threshold", "v_reset"}
    # the threshold and reset potential are BaseNode's own hyper-parameters: only as those
    hyper_names = {"v_threshold", "v_reset"}
    declared = [
        *(("hyper-parameter", h.name) for h in model.hyperparameters),
        *(("learnable parameter", name) for name in model.learnables),
        *(("state", name) for name in model.state_names),
    ]
    for kind, name in declared:
        if (name in taken and not (kind == "hyper-parameter" and name in hyper_names)) or name.startswith("_"):
            raise ValueError(
                f"model {model.name!r}: {kind} {name!r}: expected a name a neuron module does not use already "
                "(not a BaseNode attribute or method such as step_mode, backend or detach_reset, and not private); "
                "rename it"
            )


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

    def _add(self, name: str, implementation: Any, metadata: dict[str, Any]) -> None:
        """Claim ``name`` and store ``implementation`` with the metadata given (``None`` values left out)."""
        checked = self._claim(name)
        self._validate(implementation)
        if metadata.get("description") is not None:
            _check_description(metadata["description"])
        given = {key: value for key, value in metadata.items() if value is not None}
        self._table()[checked] = RegisteredItem(checked, implementation, given, self._provenance)

    def _validate(self, implementation: Any) -> None:
        if not callable(implementation):
            raise TypeError(f"implementation of {self.what}: expected a callable, got {implementation!r}")


#: What a forward strategy runs (``module=`` of :class:`StrategyRegistrar`).
_STRATEGY_MODULES = ("single_step", "multi_step", "stateless")


class StrategyRegistrar(_ItemRegistrar):
    """``register(name, strategy, *, description=None, module="single_step")``; see
    :func:`snn.hookspecs.snn_register_forward_strategies`."""

    what = "forward strategy"
    table_name = "strategies"

    def __call__(
        self, name: str, strategy: Callable[..., Any], *, description: str | None = None, module: str = "single_step"
    ) -> None:
        if module not in _STRATEGY_MODULES:
            raise ValueError(
                f"module: expected what the strategy runs, one of {list(_STRATEGY_MODULES)}, got {module!r}"
            )
        self._add(name, strategy, {"description": description, "module": module})


class LossRegistrar(_ItemRegistrar):
    """``register(name, loss, *, signature=None, description=None)``; see :func:`snn.hookspecs.snn_register_losses`."""

    what = "loss"
    table_name = "losses"

    def __call__(
        self, name: str, loss: Callable[..., Any], *, signature: str | None = None, description: str | None = None
    ) -> None:
        if signature is not None and not (isinstance(signature, str) and signature):
            raise TypeError(f"signature: expected None or a non-empty string such as 'sequence_classification', got {signature!r}")
        self._add(name, loss, {"signature": signature, "description": description})


class LearnerRegistrar(_ItemRegistrar):
    """``register(name, learner, *, description=None, data_parallel=False)``; see
    :func:`snn.hookspecs.snn_register_online_learners`."""

    what = "online learner"
    table_name = "learners"

    def __call__(self, name: str, learner: Any, *, description: str | None = None, data_parallel: bool = False) -> None:
        if not isinstance(data_parallel, bool):
            raise TypeError(f"data_parallel: expected True or False, got {data_parallel!r}")
        self._add(name, learner, {"description": description, "data_parallel": data_parallel or None})

    def _validate(self, implementation: Any) -> None:
        from snn.learning import OnlineLearner

        if not isinstance(implementation, OnlineLearner):
            raise TypeError(
                f"implementation of online learner: expected an snn.learning.OnlineLearner instance, "
                f"got {type(implementation).__name__}"
            )
