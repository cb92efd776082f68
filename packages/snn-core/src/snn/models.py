"""Neuron models as data: one description per neuron, rendered by every backend.

A :class:`NeuronModel` says everything a kernel needs to run a neuron layer, once:

- its **state variables** (``v`` for LIF; ``v`` and ``w`` for Izhikevich) and their initial
  values;
- its **hyper-parameters** (numbers and flags fixed per layer, validated by
  :class:`HyperParameter`) and its **learnable parameters** (one-element tensors such as PLIF's
  ``w``, passed to kernels at run time);
- the **charge**: the per-step update of every state from the previous (post-reset) states and
  the input ``x``, written with the math namespace of :mod:`snn.expr`;
- the **firing** state and the threshold hyper-parameter: ``s = H(h - threshold)``, ``H(0) = 1``;
- the **reset** of every state after the spike (by default the firing state's hard or soft
  reset, :meth:`ModelParameters.reset`); the spike is detached in the resets of the states named
  in ``detached_in_reset`` when the layer has ``detach_reset``.

From a description and a layer's :class:`NeuronConfig`, :func:`kernel_plan` derives a
:class:`KernelPlan`: the forward expressions with the hyper-parameters folded in, the surrogate
derivative, and the backward pass, derived symbolically (:func:`snn.expr.diff`) instead of
written by hand per model. The plan also says what training must save, the minimum the backward
pass needs (see :class:`KernelPlan`). Backends render the plan to Triton, CUDA or C source or
compile it to tensor operations; :func:`autograd_step` evaluates the same description with torch
autograd (the reference that the conformance suite checks every backend against).

A plugin adds a model through the ``snn_register_neuron_models`` hook; code-generating backends
then serve it without a change (see :meth:`snn.registry.BackendInfo.serves_model`).

Example (a LIF model, as :mod:`snn.neuron` writes it)::

    def lif_charge(x, u, p, ops):
        return {"v": u.v + (x - (u.v - p.reset_potential)) / p.tau}

    LIF = NeuronModel(
        name="my_lif",
        states=(State("v", initial="v_reset"),),
        hyperparameters=(HyperParameter("tau", 2.0, "time_constant"), *THRESHOLD_AND_RESET),
        charge=lif_charge,
    )
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from snn.expr import SYMBOLIC_OPS, Expr, diff, operations, replace_nodes, simplify, substitute, var, variables

__all__ = [
    "SurrogateSpec",
    "HyperParameter",
    "State",
    "NeuronModel",
    "NeuronConfig",
    "ModelParameters",
    "StateValues",
    "KernelPlan",
    "THRESHOLD_AND_RESET",
    "kernel_plan",
    "autograd_step",
    "evaluate_charge",
    "evaluate_reset",
    "check_hyperparameter",
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


def check_hyperparameter(name: str, kind: str, value: Any) -> float | bool | None:
    """``value`` checked against ``kind`` and normalised (floats as ``float``).

    Kinds: ``"real"`` (a finite real number), ``"positive"`` (``> 0``), ``"time_constant"``
    (``> 1``), ``"optional_real"`` (``None`` or a finite real number), ``"flag"`` (a bool).

    Raises:
        TypeError: a value of the wrong type (``bool`` is not a number).
        ValueError: a number that is not finite or out of range; an unknown kind.
    """
    if kind == "flag":
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
        return value
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


#: The threshold and reset hyper-parameters most spiking models share.
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
    ``h_j`` for ``j`` in :attr:`saved_states`; the inputs ``x`` when :attr:`save_input` (else,
    if needed, recovered from ``h`` with :attr:`input_recovery`, exact up to rounding); the
    initial states named by :attr:`initial_states_needed`.

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
        saved_states, save_input, input_recovery, initial_states_needed: what training keeps.
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
    input_recovery: Expr | None
    initial_states_needed: tuple[int, ...]
    operations: frozenset[str]

    @property
    def needs_input(self) -> bool:
        """Whether the backward pass reads ``x`` (saved or recovered)."""
        return self.save_input or self.input_recovery is not None

    def needed_previous_states(self) -> tuple[int, ...]:
        """Indices of the states whose previous value ``u_i`` the backward pass reads."""
        return self.initial_states_needed


def _state_var(prefix: str, name: str) -> Expr:
    return var(f"{prefix}_{name}")


def _symbolic_forward(model: NeuronModel, config: NeuronConfig) -> tuple[tuple[Expr, ...], tuple[Expr, ...]]:
    """``(charge, reset)`` expressions of every state, simplified."""
    names = model.state_names
    p = ModelParameters(config.hyper, {k: _state_var("p", k) for k in model.learnables})
    u = StateValues({n: _state_var("u", n) for n in names})
    h = StateValues({n: _state_var("h", n) for n in names})
    spike = var(SPIKE)
    try:  # the model's own functions: name the model when they fail (an operation snn.expr lacks)
        charged = _as_state_mapping(model, "charge", model.charge(var(INPUT), u, p, SYMBOLIC_OPS))
        changed = (
            {model.fire: p.reset(h[model.fire], spike)} if model.reset is None
            else dict(model.reset(h, spike, p, SYMBOLIC_OPS))
        )
    except (AttributeError, TypeError, ValueError, ArithmeticError) as exc:
        if str(exc).startswith(f"{model.name}:"):
            raise
        kind = ValueError if isinstance(exc, (ValueError, ArithmeticError)) else TypeError
        raise kind(f"{model.name}: its description does not build an expression: {type(exc).__name__}: {exc}") from exc
    if model.reset is not None:
        unknown = set(changed) - set(names)
        if unknown:
            raise ValueError(f"{model.name}: reset returned values for unknown states {sorted(unknown)}")
    finite = {SPIKE}
    charge = tuple(simplify(_as_expr(model, "charge", charged[n]), finite) for n in names)
    reset = tuple(simplify(_as_expr(model, "reset", changed.get(n, h[n])), finite) for n in names)
    return charge, reset


def _as_state_mapping(model: NeuronModel, what: str, values: Any) -> Mapping[str, Any]:
    if not isinstance(values, Mapping):
        if len(model.states) == 1:
            return {model.fire: values}
        raise TypeError(f"{model.name}: {what} must return a mapping state -> value, got {type(values).__name__}")
    missing = set(model.state_names) - set(values)
    extra = set(values) - set(model.state_names)
    if missing or extra:
        raise ValueError(f"{model.name}: {what} must return every state {model.state_names}, got {tuple(values)}")
    return values


def _as_expr(model: NeuronModel, what: str, value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Expr("num", (), float(value))
    raise TypeError(f"{model.name}: {what} must build expressions with the ops namespace, got {type(value).__name__}")


def _is_affine_in(expr: Expr, name: str) -> bool:
    """Whether ``expr`` is ``a + b * name`` with ``a`` and ``b`` free of ``name`` (polynomial of
    degree at most one, built with ``+ - * /`` and negation only)."""
    if name not in variables(expr):
        return True
    op = expr.op
    if op == "var":
        return True
    if op in ("+", "-"):
        return all(_is_affine_in(a, name) for a in expr.args)
    if op == "neg":
        return _is_affine_in(expr.args[0], name)
    if op == "*":
        a, b = expr.args
        return (name not in variables(a) and _is_affine_in(b, name)) or (
            name not in variables(b) and _is_affine_in(a, name)
        )
    if op == "/":
        return name not in variables(expr.args[1]) and _is_affine_in(expr.args[0], name)
    return False


def _affine_recovery(charge: Expr, x_coefficient: Expr | None, h_name: str) -> Expr | None:
    """``x`` recovered from ``h = charge`` when ``charge`` is affine in ``x``: ``(h - c0) / c1``."""
    if x_coefficient is None or not _is_affine_in(charge, INPUT):
        return None
    if x_coefficient.op == "num" and x_coefficient.value == 0.0:
        return None
    offset = simplify(substitute(charge, {INPUT: 0.0}))
    return simplify((var(h_name) - offset) / x_coefficient)


def _additive_terms(expr: Expr, sign: float = 1.0) -> list[tuple[float, Expr]]:
    """``expr`` as a signed sum of terms (through ``+``, ``-`` and negation)."""
    if expr.op == "+":
        return _additive_terms(expr.args[0], sign) + _additive_terms(expr.args[1], sign)
    if expr.op == "-":
        return _additive_terms(expr.args[0], sign) + _additive_terms(expr.args[1], -sign)
    if expr.op == "neg":
        return _additive_terms(expr.args[0], -sign)
    return [(sign, expr)]


def _vanishes_with_derivative(g: Expr) -> bool:
    """Whether ``g' = 0`` wherever ``g = 0`` (``sigmoid`` and ``exp`` of anything, times a
    number): positive in exact arithmetic, they reach 0 only by underflow, and their derivative
    (``g (1 - g)``, ``g``, times the inner derivative) then does too."""
    if g.op in ("sigmoid", "exp"):
        return True
    if g.op == "*":
        a, b = g.args
        return (a.op == "num" and _vanishes_with_derivative(b)) or (b.op == "num" and _vanishes_with_derivative(a))
    return False


def _scaled_parameter_derivative(charge: Expr, param: str, h_name: str, under_relu: bool = False) -> Expr | None:
    """``d charge / d param`` without the input, when ``charge = A + B g(param)`` (or ``relu`` of it).

    If exactly one additive term of ``charge`` depends on ``param`` and it is ``B * g`` with
    ``g`` a function of ``param`` alone and ``B`` free of it, then ``B = (h - A) / g`` and the
    derivative ``B g'`` is ``(h - A) g' / g``, which reads the charged value ``h`` instead of
    the input ``x`` inside ``B`` (PLIF: ``(h - v) (1 - k)``). ``None`` when the shape differs.

    Where ``g`` is 0 (a KLIF ``k`` of 0, a PLIF ``sigmoid(w)`` that underflows) ``B`` cannot be
    read from ``h``: the factor ``g' / g`` is then taken as 0, which is the derivative when ``g``
    sits under a ``relu`` (``under_relu``: ``relu'(0) = 0``) or when ``g'`` vanishes with ``g``
    (:func:`_vanishes_with_derivative`); for other ``g`` the rule does not apply (``None``).
    """
    if charge.op == "relu":
        # relu(A + B g): where h > 0, h is the inner value, so the rule above applies there;
        # elsewhere the gradient is 0 (autograd's relu passes it where the result is > 0),
        # also where g = 0 (B g = 0 there, and relu'(0) = 0)
        inner = _scaled_parameter_derivative(charge.args[0], param, h_name, under_relu=True)
        if inner is None:
            return None
        if all(param in variables(t) for _, t in _additive_terms(charge.args[0])):
            # relu(B g): the derivative h g' / g is already 0 where the rectifier is off (h = 0)
            # and NaN where h is (autograd's relu passes a gradient at a NaN result too)
            return inner
        return simplify(Expr("where", (var(h_name) > 0.0, inner, Expr("num", (), 0.0))))
    terms = _additive_terms(charge)
    dependent = [(sign, t) for sign, t in terms if param in variables(t)]
    if len(dependent) != 1:
        return None
    sign, term = dependent[0]
    if term.op != "*":
        return None
    a, b = term.args
    for factor, scale in ((a, b), (b, a)):
        if variables(scale) <= {param} and param not in variables(factor):
            g_prime = diff(scale, param)
            if g_prime is None:
                return None
            rest: Expr | None = None
            for other_sign, other in terms:
                if other is term:
                    continue
                signed = other if other_sign > 0 else -other
                rest = signed if rest is None else rest + signed
            if not (under_relu or _vanishes_with_derivative(scale)):
                return None
            h_minus_rest = var(h_name) if rest is None else var(h_name) - rest
            # d/dp = sign F g' and F g = sign (h - rest), so d/dp = (h - rest) g' / g either way
            ratio = Expr("where", (Expr("abs", (scale,)) > 0.0, g_prime / scale, Expr("num", (), 0.0)))
            return simplify(h_minus_rest * ratio)
    return None


@lru_cache(maxsize=512)
def kernel_plan(config: NeuronConfig) -> KernelPlan:
    """The :class:`KernelPlan` of ``config`` (cached per configuration).

    Raises:
        TypeError, ValueError: the model's functions return something that is not an expression
            of the states, or the surrogate has no closed-form derivative.
    """
    from snn.surrogate import derivative_expression

    model = config.model
    names = model.state_names
    n = len(names)
    charge, reset = _symbolic_forward(model, config)
    detached = set(model.detached) if config.detach_reset else set()
    h_names = [f"h_{name}" for name in names]
    u_names = [f"u_{name}" for name in names]
    p_names = [f"p_{name}" for name in model.learnables]
    reset_h = tuple(tuple(diff(reset[i], h_names[j]) for j in range(n)) for i in range(n))
    reset_s = tuple(None if names[i] in detached else diff(reset[i], SPIKE) for i in range(n))
    reset_p = tuple(tuple(diff(reset[i], pn) for pn in p_names) for i in range(n))
    # derivatives of a charge may read the charged value itself (relu, exp at the root)
    as_h = [{id(charge[j]): var(h_names[j])} for j in range(n)]

    def charge_diff(j: int, name: str) -> Expr | None:
        d = diff(charge[j], name)
        return None if d is None else replace_nodes(d, as_h[j])

    charge_u = tuple(tuple(charge_diff(j, u_names[i]) for i in range(n)) for j in range(n))
    charge_x = tuple(charge_diff(j, INPUT) for j in range(n))
    charge_p_list = [[charge_diff(j, pn) for pn in p_names] for j in range(n)]
    for j in range(n):
        for k, pn in enumerate(p_names):
            d = charge_p_list[j][k]
            if d is not None and INPUT in variables(d):
                rewritten = _scaled_parameter_derivative(charge[j], pn, h_names[j])
                if rewritten is not None:
                    charge_p_list[j][k] = rewritten
    charge_p = tuple(tuple(row) for row in charge_p_list)
    surrogate = derivative_expression(config.surrogate, SURROGATE_INPUT)
    fire_index = names.index(model.fire)
    threshold = float(config.hyper[model.threshold])

    # what the backward pass reads, and so what training keeps
    def used(exprs: Iterable[Expr | None]) -> set[str]:
        found: set[str] = set()
        for e in exprs:
            if e is not None:
                found |= variables(e)
        return found

    reset_terms = [e for row in reset_h for e in row] + list(reset_s) + [e for row in reset_p for e in row]
    charge_terms = [e for row in charge_u for e in row] + list(charge_x) + [e for row in charge_p for e in row]
    needed = used(reset_terms) | used(charge_terms) | {h_names[fire_index]}  # s and sg read h_fire
    recovery = None
    save_input = False
    if INPUT in needed:
        for j in range(n):
            recovery = _affine_recovery(charge[j], charge_x[j], h_names[j])
            if recovery is not None:
                needed |= variables(recovery)
                break
        save_input = recovery is None
    needs_u = {i for i in range(n) if u_names[i] in needed}
    # a previous state u_i is the reset of the step before: it reads the h its reset reads
    for i in needs_u:
        needed |= variables(reset[i])
    saved = tuple(j for j in range(n) if h_names[j] in needed)
    ops: set[str] = set()
    for e in (*charge, *reset, surrogate, *reset_terms, *charge_terms, recovery):
        if e is not None:
            ops |= operations(e)
    ops |= {">=", "-"}  # the firing comparison and z = h - threshold
    return KernelPlan(
        model=model,
        config=config,
        states=names,
        learnables=model.learnables,
        fire_index=fire_index,
        threshold=threshold,
        charge=charge,
        reset=reset,
        surrogate=surrogate,
        reset_h=reset_h,
        reset_s=reset_s,
        reset_p=reset_p,
        charge_u=charge_u,
        charge_x=charge_x,
        charge_p=charge_p,
        saved_states=saved,
        save_input=save_input,
        input_recovery=recovery,
        initial_states_needed=tuple(sorted(needs_u)),
        operations=frozenset(ops),
    )


def evaluate_charge(
    model: NeuronModel,
    hyper: Mapping[str, Any],
    x: torch.Tensor,
    states: Mapping[str, torch.Tensor],
    learnables: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The charged value of every state, evaluated with torch (autograd records it).

    ``hyper`` may hold tensors (a tensor threshold, say): the model's functions run unchanged.
    """
    from snn.expr import torch_ops

    p = ModelParameters(hyper, learnables)
    ops = torch_ops(x.dtype if x.is_floating_point() else None)
    return dict(_as_state_mapping(model, "charge", model.charge(x, StateValues(states), p, ops)))


def evaluate_reset(
    model: NeuronModel,
    hyper: Mapping[str, Any],
    detach_reset: bool,
    charged: Mapping[str, torch.Tensor],
    spike: torch.Tensor,
    learnables: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Every state after the spike, evaluated with torch; the spike is detached in the resets of
    :attr:`NeuronModel.detached` when ``detach_reset``."""
    from snn.expr import torch_ops

    p = ModelParameters(hyper, learnables)
    h = StateValues(charged)
    ops = torch_ops(spike.dtype if spike.is_floating_point() else None)
    detached = set(model.detached) if detach_reset else set()
    out = dict(charged)
    if model.reset is None:
        s = spike.detach() if model.fire in detached else spike
        out[model.fire] = p.reset(charged[model.fire], s)
        return out
    plain = dict(model.reset(h, spike, p, ops))
    cut_names = detached & set(plain)
    if cut_names:
        cut = dict(model.reset(h, spike.detach(), p, ops))
        for name in cut_names:
            plain[name] = cut[name]
    out.update(plain)
    return out


def autograd_step(
    config: NeuronConfig,
    x: torch.Tensor,
    states: Mapping[str, torch.Tensor],
    learnables: Mapping[str, torch.Tensor],
    fire: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step of ``config``'s model with torch autograd: the reference semantics.

    Charges every state, fires with ``fire(h_fire - threshold)`` (a surrogate function, or any
    callable returning the spikes) and resets (see :func:`evaluate_reset`).

    Args:
        config: the configuration.
        x: the input of one step, a floating tensor ``[*]``.
        states: state name -> tensor ``[*]`` (the previous post-reset values).
        learnables: learnable parameter name -> one-element tensor.
        fire: the spike function.

    Returns:
        ``(spike, new states)``.
    """
    model = config.model
    hyper = config.hyper
    charged = evaluate_charge(model, hyper, x, states, learnables)
    spike = fire(charged[model.fire] - hyper[model.threshold])
    return spike, evaluate_reset(model, hyper, config.detach_reset, charged, spike, learnables)
