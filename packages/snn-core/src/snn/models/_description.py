"""Neuron-model descriptions: states, hyper-parameters, configurations, plans (:mod:`snn.models`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from snn.expr import Expr

__all__ = [
    "HYPERPARAMETER_KINDS",
    "INPUT",
    "SPIKE",
    "SURROGATE_INPUT",
    "SurrogateSpec",
    "check_hyperparameter",
    "check_flag",
    "HyperParameter",
    "State",
    "THRESHOLD_AND_RESET",
    "StateValues",
    "ModelParameters",
    "ChargeFunction",
    "ResetFunction",
    "NeuronModel",
    "NeuronConfig",
    "KernelPlan",
]

#: Kinds of hyper-parameters :class:`HyperParameter` validates.
HYPERPARAMETER_KINDS = ("real", "positive", "time_constant", "optional_real", "flag")

#: The variable names plans use (backends map them to their identifiers).
INPUT = "x"
SPIKE = "s"
SURROGATE_INPUT = "z"


@dataclass(frozen=True)
class SurrogateSpec:
    """A hashable description of a surrogate function for kernels.

    Attributes:
        name: the class name, e.g. ``"Sigmoid"``.
        params: ``(parameter name, value)`` pairs in the constructor's order.
        cls: the surrogate class; ``None`` means the class of that name in :mod:`snn.surrogate`.
            Surrogates of other packages carry their class, so kernels can derive their math.
    """

    name: str
    params: tuple[tuple[str, float], ...] = ()
    cls: type | None = field(default=None, repr=False)

    @property
    def kwargs(self) -> dict[str, float]:
        """The parameters as keyword arguments."""
        return dict(self.params)

    def __repr__(self) -> str:
        extra = "" if self.cls is None else f", cls={self.cls.__module__}.{self.cls.__qualname__}"
        return f"SurrogateSpec(name={self.name!r}, params={self.params!r}{extra})"


def check_flag(name: str, value: Any, integers: bool = False) -> bool:
    """``value`` if it is a bool; raises ``TypeError`` otherwise.

    With ``integers`` (the flags SpikingJelly tests for truth) also the integer 0 or 1 (NumPy's
    included), a NumPy bool and a one-element boolean tensor, as a bool.
    """
    if isinstance(value, bool):
        return value
    if integers:
        if isinstance(value, numbers.Integral) and value in (0, 1):
            return bool(value)
        if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
            return bool(value)
        if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.numel() == 1:
            return bool(value)
    expected = "a bool (or the integer 0 or 1, a NumPy bool, a one-element boolean tensor)" if integers else "a bool"
    raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")


def check_hyperparameter(name: str, kind: str, value: Any) -> float | bool | None:
    """``value`` checked against ``kind`` and normalised (floats as ``float``).

    Kinds: ``"real"`` (a finite real number), ``"positive"`` (``> 0``), ``"time_constant"``
    (``> 1``), ``"optional_real"`` (``None`` or a finite real number), ``"flag"`` (a bool).

    Raises:
        TypeError: a value of the wrong type (``bool`` is not a number).
        ValueError: a number that is not finite or out of range; an unknown kind.
    """
    if kind == "flag":
        return check_flag(name, value)
    if kind == "optional_real" and value is None:
        return None
    if kind not in HYPERPARAMETER_KINDS:
        raise ValueError(f"kind: expected one of {HYPERPARAMETER_KINDS}, got {kind!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or isinstance(value, torch.Tensor):
        expected = "None or a real number" if kind == "optional_real" else "a real number"
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if kind == "positive" and not number > 0.0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    if kind == "time_constant" and not number > 1.0:
        raise ValueError(f"{name}: expected a time constant > 1, got {value!r}")
    return number


@dataclass(frozen=True)
class HyperParameter:
    """A hyper-parameter of a neuron model: fixed per layer, folded into kernel code.

    Attributes:
        name: the name (also the neuron module's attribute and constructor argument).
        default: the default value.
        kind: how values are checked (see :func:`check_hyperparameter`).
        doc: one line for the documentation and ``snn doctor``.
    """

    name: str
    default: float | bool | None
    kind: str = "real"
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name: expected an identifier, got {self.name!r}")
        try:  # the default must be a value of its own kind (and the kind a known one)
            check_hyperparameter(self.name, self.kind, self.default)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"HyperParameter {self.name!r} (kind {self.kind!r}): default: {exc}") from None

    def check(self, value: Any) -> float | bool | None:
        """``value`` checked and normalised (see :func:`check_hyperparameter`)."""
        return check_hyperparameter(self.name, self.kind, value)


@dataclass(frozen=True)
class State:
    """A state variable of a neuron model.

    Attributes:
        name: the memory name on the neuron module (``"v"``, ``"w"``, ``"c"``).
        initial: the value the state starts from and returns to on reset: a number, or the name of
            a hyper-parameter (``"v_reset"``: the reset potential, 0 for soft reset).
        doc: one line for the documentation.
    """

    name: str
    initial: float | str = 0.0
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name: expected an identifier, got {self.name!r}")
        if isinstance(self.initial, str):
            return
        if isinstance(self.initial, bool) or not isinstance(self.initial, numbers.Real):
            raise TypeError(
                f"State {self.name!r}: initial: expected a real number or a hyper-parameter name, "
                f"got {type(self.initial).__name__} {self.initial!r}"
            )
        if not math.isfinite(float(self.initial)):
            raise ValueError(f"State {self.name!r}: initial: expected a finite number, got {self.initial!r}")


# documented where it is public: snn.models.THRESHOLD_AND_RESET
THRESHOLD_AND_RESET = (
    HyperParameter("v_threshold", 1.0, "real", "firing threshold"),
    HyperParameter("v_reset", 0.0, "optional_real", "potential after a spike (None: soft reset)"),
)


class _Example(Mapping[str, Any]):
    """A read-only, hashable mapping of hyper-parameter settings (a model's ``examples``).

    Hashable so that a :class:`NeuronModel`, and every configuration holding it, stays hashable
    field by field (``torch.compile`` hashes configurations that way).
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._items = tuple(dict(values).items())

    def __getitem__(self, key: str) -> Any:
        return dict(self._items)[key]

    def __iter__(self) -> Any:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return repr(dict(self._items))


class StateValues:
    """Read-only attribute access to state expressions: ``u.v``, ``u.w`` (or ``u["v"]``)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the model has no state {name!r}; states: {tuple(self._values)}") from None

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("state values are read-only: return the new values instead")


class ModelParameters:
    """What a model's functions see as ``p``: hyper-parameters, learnable parameters, helpers.

    Hyper-parameters are Python numbers (or flags, or ``None`` for a soft-reset ``v_reset``);
    learnable parameters are expressions (or tensors, when evaluated with torch).

    Attributes:
        reset_potential: ``v_reset``, or 0.0 for soft reset (models without ``v_reset``: 0.0).
        hard_reset: whether ``v_reset`` is a number.
    """

    def __init__(self, hyper: Mapping[str, Any], learnable: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", {**hyper, **learnable})
        v_reset = hyper.get("v_reset")
        object.__setattr__(self, "hard_reset", v_reset is not None)
        reset_potential = v_reset if isinstance(v_reset, torch.Tensor) else float(v_reset or 0.0)
        object.__setattr__(self, "reset_potential", reset_potential)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the model has no parameter {name!r}; parameters: {tuple(self._values)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("model parameters are read-only")

    def reset(self, value: Any, spike: Any, threshold: Any = None) -> Any:
        """The standard reset of ``value`` after ``spike``: hard ``s vr + (1 - s) value`` when
        ``v_reset`` is a number, soft ``value - s threshold`` otherwise (``threshold`` defaults to
        ``v_threshold``)."""
        if self.hard_reset:
            return spike * self.reset_potential + (1.0 - spike) * value
        return value - spike * (self._values["v_threshold"] if threshold is None else threshold)


ChargeFunction = Callable[[Any, StateValues, ModelParameters, Any], Mapping[str, Any]]
ResetFunction = Callable[[StateValues, Any, ModelParameters, Any], Mapping[str, Any]]


@dataclass(frozen=True, eq=False)
class NeuronModel:
    """The description of a neuron model (compared and hashed by identity).

    Attributes:
        name: the registry name (``"lif"``), a lowercase identifier.
        states: the state variables; the kernel contract passes them in this order.
        hyperparameters: the hyper-parameters, in a fixed order.
        learnables: names of the learnable parameters (one-element tensors, e.g. ``("w",)``).
        charge: ``charge(x, u, p, ops) -> {state: charged value}`` for every state, with ``u``
            the previous post-reset states (:class:`StateValues`), ``p`` the parameters
            (:class:`ModelParameters`) and ``ops`` the math namespace of :mod:`snn.expr`. A later
            state's charge may use an earlier one's charged value (build it first in Python).
        fire: the state compared with the threshold.
        threshold: the hyper-parameter that holds the threshold.
        reset: ``reset(h, s, p, ops) -> {state: value}`` for the states that change after a
            spike, with ``h`` the charged states and ``s`` the spike; states it leaves out keep
            their charged value. ``None``: the standard reset of the firing state
            (:meth:`ModelParameters.reset`).
        detached_in_reset: states whose reset sees a detached spike when ``detach_reset`` is on
            (default: the firing state).
        description: one line for the documentation and ``snn doctor``.
        examples: hyper-parameter settings (besides the defaults) that the conformance suite runs.
    """

    name: str
    states: tuple[State, ...]
    hyperparameters: tuple[HyperParameter, ...]
    charge: ChargeFunction
    learnables: tuple[str, ...] = ()
    fire: str = "v"
    threshold: str = "v_threshold"
    reset: ResetFunction | None = None
    detached_in_reset: tuple[str, ...] | None = None
    description: str = ""
    examples: tuple[Mapping[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.learnables, str) or not isinstance(self.learnables, (tuple, list)):
            # a string would be its characters: learnables="gain" is four parameters g, a, i, n
            raise TypeError(f"learnables: expected a tuple of parameter names, got {self.learnables!r}")
        object.__setattr__(self, "learnables", tuple(self.learnables))
        if not all(isinstance(e, Mapping) for e in self.examples):
            raise TypeError(f"examples: expected mappings of hyper-parameter settings, got {self.examples!r}")
        object.__setattr__(self, "examples", tuple(_Example(e) for e in self.examples))
        if not isinstance(self.name, str) or not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"name: expected a lowercase identifier, got {self.name!r}")
        if not self.states or not all(isinstance(s, State) for s in self.states):
            raise TypeError(f"states: expected a non-empty tuple of snn.models.State, got {self.states!r}")
        if not all(isinstance(h, HyperParameter) for h in self.hyperparameters):
            raise TypeError("hyperparameters: expected a tuple of snn.models.HyperParameter")
        names = [s.name for s in self.states] + [h.name for h in self.hyperparameters] + list(self.learnables)
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{self.name}: names must be identifiers, got {name!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: state, hyper-parameter and learnable names must be distinct, got {names}")
        if self.fire not in self.state_names:
            raise ValueError(f"fire: expected one of the states {self.state_names}, got {self.fire!r}")
        if self.threshold not in self.hyperparameter_names:
            raise ValueError(f"threshold: expected a hyper-parameter name, got {self.threshold!r}")
        threshold_kind = next(h.kind for h in self.hyperparameters if h.name == self.threshold)
        if threshold_kind not in ("real", "positive", "time_constant"):
            raise ValueError(
                f"threshold: {self.threshold!r} is a hyper-parameter of kind {threshold_kind!r}; the threshold "
                "must be a number (kind 'real', 'positive' or 'time_constant')"
            )
        for state in self.states:
            if isinstance(state.initial, str) and state.initial not in self.hyperparameter_names:
                raise ValueError(f"states: initial value of {state.name!r} names no hyper-parameter: {state.initial!r}")
        for name in self.detached:
            if name not in self.state_names:
                raise ValueError(f"detached_in_reset: {name!r} is not a state of {self.name!r}")
        if not callable(self.charge) or (self.reset is not None and not callable(self.reset)):
            raise TypeError("charge and reset: expected callables")

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state names in order."""
        return tuple(s.name for s in self.states)

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        """The hyper-parameter names in order."""
        return tuple(h.name for h in self.hyperparameters)

    @property
    def detached(self) -> tuple[str, ...]:
        """The states whose reset sees a detached spike under ``detach_reset``."""
        return (self.fire,) if self.detached_in_reset is None else tuple(self.detached_in_reset)

    def defaults(self) -> dict[str, Any]:
        """The default hyper-parameters."""
        return {h.name: h.default for h in self.hyperparameters}

    def initial_values(self, hyper: Mapping[str, Any]) -> dict[str, float]:
        """The initial value of every state for these hyper-parameters."""
        out = {}
        for state in self.states:
            if isinstance(state.initial, str):
                value = hyper[state.initial]
                out[state.name] = 0.0 if value is None else float(value)
            else:
                out[state.name] = float(state.initial)
        return out

    def config(
        self,
        surrogate: SurrogateSpec,
        detach_reset: bool = False,
        **hyper: Any,
    ) -> NeuronConfig:
        """A :class:`NeuronConfig` for this model; missing hyper-parameters take their defaults.

        Raises:
            TypeError, ValueError: a hyper-parameter of the wrong type or range, an unknown name.
        """
        unknown = set(hyper) - set(self.hyperparameter_names)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyper-parameters {sorted(unknown)}; known: {self.hyperparameter_names}")
        values = tuple(
            (h.name, h.check(hyper.get(h.name, h.default))) for h in self.hyperparameters
        )
        return NeuronConfig(self, values, bool(detach_reset), surrogate)

    def __repr__(self) -> str:
        return f"NeuronModel({self.name!r}, states={self.state_names}, learnables={self.learnables})"


@dataclass(frozen=True)
class NeuronConfig:
    """Everything fixed about a neuron layer that kernels see: frozen and hashable.

    Attributes:
        model: the :class:`NeuronModel`.
        hyperparameters: ``(name, value)`` in the model's order, checked.
        detach_reset: cut the gradient through the spike in the resets of
            :attr:`NeuronModel.detached`.
        surrogate: the surrogate gradient.
    """

    model: NeuronModel
    hyperparameters: tuple[tuple[str, float | bool | None], ...]
    detach_reset: bool
    surrogate: SurrogateSpec

    def __post_init__(self) -> None:
        if not isinstance(self.model, NeuronModel):
            raise TypeError(f"model: expected an snn.models.NeuronModel, got {type(self.model).__name__}")
        if not isinstance(self.surrogate, SurrogateSpec):
            raise TypeError(f"surrogate: expected an snn.kernels.SurrogateSpec, got {type(self.surrogate).__name__}")
        names = tuple(name for name, _ in self.hyperparameters)
        if names != self.model.hyperparameter_names:
            raise ValueError(
                f"hyperparameters: model {self.model.name!r} takes {self.model.hyperparameter_names}, got {names}"
            )

    @property
    def kind(self) -> str:
        """The model's name."""
        return self.model.name

    @property
    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters as a dict."""
        return dict(self.hyperparameters)

    def __getitem__(self, name: str) -> Any:
        """One hyper-parameter by name."""
        return self.hyper[name]


@dataclass(frozen=True)
class KernelPlan:
    """A model and configuration lowered to expressions: what every backend renders.

    Variables: ``u_<state>`` previous post-reset states, ``x`` the input, ``h_<state>`` charged
    states, ``s`` the spike, ``p_<name>`` learnable parameters, ``z = h_<fire> - threshold`` the
    surrogate's input.

    Forward, per step: ``h_i = charge[i]``, ``s = H(h_fire - threshold)`` (``H(0) = 1``),
    ``v_i = reset[i]``.

    Backward, per step (newest first), with ``gS_i`` the gradient reaching the post-reset state
    ``i`` (from the next step and from ``state_seqs``), ``gs`` the gradient of the spike and
    ``sg = surrogate(z)``:

    - ``gs_total = gs + sum_i gS_i reset_s[i]``
    - ``gH_j = sum_i gS_i reset_h[i][j] + [j = fire] gs_total sg``
    - ``dL/dx = sum_j gH_j charge_x[j]``; ``dL/du_i = sum_j gH_j charge_u[j][i]`` (becomes
      ``gS_i`` of the step before, or the gradient of the initial state)
    - ``dL/dp_k += sum_j gH_j charge_p[j][k] + sum_i gS_i reset_p[i][k]``.

    Coefficients are expressions, or ``None`` where they are structurally zero (the term is
    skipped, as autograd skips it). What training saves follows from the variables they use:
    ``h_j`` for ``j`` in :attr:`saved_states`; the inputs ``x`` when :attr:`save_input` (a
    coefficient reads them); the initial states named by :attr:`initial_states_needed`.

    Attributes:
        model: the description.
        config: the configuration.
        states: state names.
        learnables: learnable parameter names.
        fire_index: index of the firing state.
        threshold: the firing threshold.
        charge, reset: forward expressions per state.
        surrogate: ``sg`` as an expression of ``z``.
        reset_h, reset_s, reset_p, charge_u, charge_x, charge_p: backward coefficients.
        saved_states, save_input, initial_states_needed: what training keeps.
        operations: every operation the plan uses (a backend serves it if it renders them all).
    """

    model: NeuronModel
    config: NeuronConfig
    states: tuple[str, ...]
    learnables: tuple[str, ...]
    fire_index: int
    threshold: float
    charge: tuple[Expr, ...]
    reset: tuple[Expr, ...]
    surrogate: Expr
    reset_h: tuple[tuple[Expr | None, ...], ...]
    reset_s: tuple[Expr | None, ...]
    reset_p: tuple[tuple[Expr | None, ...], ...]
    charge_u: tuple[tuple[Expr | None, ...], ...]
    charge_x: tuple[Expr | None, ...]
    charge_p: tuple[tuple[Expr | None, ...], ...]
    saved_states: tuple[int, ...]
    save_input: bool
    initial_states_needed: tuple[int, ...]
    operations: frozenset[str]

    @property
    def needs_input(self) -> bool:
        """Whether the backward pass reads ``x`` (then saved: :attr:`save_input`)."""
        return self.save_input

    def needed_previous_states(self) -> tuple[int, ...]:
        """Indices of the states whose previous value ``u_i`` the backward pass reads."""
        return self.initial_states_needed
