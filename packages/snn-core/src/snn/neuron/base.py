"""The base class of spiking neurons: a module around a neuron model (:mod:`snn.models`).

A neuron class names its model (``model = LIF_MODEL``) and keeps the model's hyper-parameters
as attributes of the same names, its learnable parameters as ``nn.Parameter`` attributes, and
its states as memories (``self.v``, ``self.w`` ...). Each forward call builds the layer's
:class:`~snn.models.NeuronConfig` (cached until an attribute changes) and runs the kernel that
:mod:`snn.dispatch` picks for the neuron's backend: one step ``[N, *]`` in step mode ``'s'``, a
whole sequence ``[T, N, *]`` in step mode ``'m'``.

When no kernel can run the layer (a subclass overriding :meth:`BaseNode.neuronal_charge`,
:meth:`~BaseNode.neuronal_fire` or :meth:`~BaseNode.neuronal_reset`, a tensor hyper-parameter, a
surrogate without a closed-form derivative or in non-spiking mode, any callable surrogate, or a
:mod:`torch.func` transform running),
the neuron runs the model step by step with torch autograd through those three methods, on the
torch backend (other backends raise :class:`~snn.errors.UnsupportedOperationError`).

Gradients: the surrogate gradient is used whenever a gradient is needed, in training and in
eval mode alike (eval mode changes nothing in a neuron's math), so gradient-based analysis of a
trained network (saliency maps, adversarial examples) sees the same gradient as training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from snn.base import MemoryModule
from snn.dispatch import KernelDispatch, check_backend, supported_backends
from snn.errors import UnsupportedOperationError
from snn.models import (
    NeuronConfig,
    NeuronModel,
    check_flag,
    check_hyperparameter,
    evaluate_charge,
    evaluate_reset,
)
from snn.surrogate import Sigmoid, SurrogateFunctionBase

__all__ = ["BaseNode", "backend_and_store_v_seq", "check_real", "check_flag", "check_time_constant"]

_DYNAMICS_METHODS = ("neuronal_charge", "neuronal_fire", "neuronal_reset")
#: Whether a torch.func transform (grad, vmap, jacrev ...) is running: fused kernels write into
#: preallocated buffers and use autograd Functions those transforms cannot see through, so
#: neurons then step with their plain autograd dynamics (the same math).
_functorch_active: Callable[[], bool] = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def check_real(name: str, value: Any) -> float:
    """``value`` as a finite float (``bool`` refused); raises ``TypeError`` / ``ValueError``
    (:func:`snn.models.check_hyperparameter`'s ``"real"`` rule)."""
    number = check_hyperparameter(name, "real", value)
    assert isinstance(number, float)
    return number


def backend_and_store_v_seq(backend: Any, store_v_seq: Any) -> tuple[Any, Any]:
    """The ``backend`` and ``store_v_seq`` arguments of IF, LIF and parametric LIF neurons, read
    in both of SpikingJelly's positional orders.

    SpikingJelly's development version (and snn) have ``(..., step_mode, backend, store_v_seq)``;
    its 2.0.0 release dropped ``backend``: ``(..., step_mode, store_v_seq)``. A bool (or the
    integer 0 or 1) where the backend name goes is therefore 2.0.0's ``store_v_seq``.

    Raises:
        TypeError: a bool in ``backend``'s place and ``store_v_seq`` given too.
    """
    if isinstance(backend, bool) or (isinstance(backend, int) and backend in (0, 1)):
        if store_v_seq is not False:
            raise TypeError(
                f"backend: expected a backend name, got {backend!r} (SpikingJelly 2.0.0's positional "
                f"store_v_seq?) together with store_v_seq={store_v_seq!r}"
            )
        return "torch", backend
    return backend, store_v_seq


def check_time_constant(name: str, value: Any) -> float:
    """``value`` as a float ``> 1``; raises ``TypeError`` / ``ValueError``."""
    number = check_real(name, value)
    if not number > 1.0:
        raise ValueError(f"{name}: expected a membrane time constant > 1, got {value!r}")
    return number


def _as_floating(name: str, x: Any) -> torch.Tensor:
    """``x`` itself when floating; integer and bool tensors (event counts, spike trains) in
    torch's default dtype, as SpikingJelly's arithmetic with its float states promotes them;
    ``TypeError`` for anything else (complex tensors, non-tensors)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor (floating, or integer / bool counts), got {type(x).__name__}")
    if x.is_floating_point():
        return x
    if x.is_complex():
        raise TypeError(f"{name}: expected a floating-point tensor (or integer / bool counts), got dtype {x.dtype}")
    return x.to(torch.get_default_dtype())


def _check_surrogate(value: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if value is None:
        return Sigmoid()
    if isinstance(value, type):
        if issubclass(value, SurrogateFunctionBase):
            raise TypeError(
                f"surrogate_function: expected a surrogate function instance, got the class "
                f"{value.__name__}; call it: surrogate_function={value.__name__}()"
            )
        raise TypeError(f"surrogate_function: expected an snn.surrogate function or a callable, got the class {value!r}")
    if not callable(value):
        raise TypeError(
            f"surrogate_function: expected an snn.surrogate function or a callable, got {type(value).__name__}"
        )
    return value


def _in_dtype_of(value: Any, like: torch.Tensor | None) -> Any:
    """A floating tensor ``value`` in ``like``'s floating dtype; anything else unchanged."""
    if (
        like is not None and isinstance(value, torch.Tensor) and value.is_floating_point()
        and like.is_floating_point() and value.dtype != like.dtype
    ):
        return value.to(like.dtype)
    return value


class BaseNode(MemoryModule):
    """Base class of spiking neurons.

    Subclasses set :attr:`model` (a :class:`~snn.models.NeuronModel`), keep its
    hyper-parameters as attributes and register its states beyond ``v`` as memories (see
    :meth:`register_model_states`). A subclass without a model (SpikingJelly style) overrides
    :meth:`neuronal_charge` and runs on the torch autograd path with one state ``v``.

    Args:
        v_threshold: firing threshold (a real number).
        v_reset: potential after a spike (hard reset), or ``None`` for soft reset
            (the threshold is subtracted).
        surrogate_function: the surrogate gradient of the spike (an instance, e.g.
            ``surrogate.ATan()``); ``None`` gives a new ``snn.surrogate.Sigmoid(alpha=4.0)``
            for this neuron. Any callable ``(h - v_threshold) -> spikes`` is accepted (it then
            runs on the torch autograd path).
        detach_reset: cut the gradient through the spike in the reset.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).
        backend: kernel backend name (``"torch"``, ``"auto"``, or one a plugin provides). A
            bool here is taken for ``store_v_seq`` (SpikingJelly 2.0.0's positional order,
            which has no ``backend``).
        store_v_seq: keep the post-reset potentials in ``self.v_seq``: in step mode ``'m'`` the
            whole sequence ``[T, N, *]`` of the last call; in step mode ``'s'`` every step since
            the last reset, appended (``[t, N, *]``). When off, ``v_seq`` is never written.

    Raises:
        TypeError: a threshold or reset that is not a real number (``bool`` included), a
            non-bool flag, a surrogate class instead of an instance, a surrogate that is not
            callable.
        ValueError: a non-finite threshold or reset, a bad ``step_mode``.
        snn.errors.BackendNotFoundError: ``backend`` is not installed.
        snn.errors.UnsupportedOperationError: ``backend`` cannot serve this neuron.
    """

    #: The neuron model this class runs (``None``: custom dynamics on the autograd path).
    model: ClassVar[NeuronModel | None] = None

    # memories (registered with register_memory); declared for the type checker
    v: float | torch.Tensor

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(step_mode)
        backend, store_v_seq = backend_and_store_v_seq(backend, store_v_seq)
        self.v_threshold: float | torch.Tensor = check_real("v_threshold", v_threshold)
        self.v_reset: float | None = None if v_reset is None else check_real("v_reset", v_reset)
        self.detach_reset = check_flag("detach_reset", detach_reset)
        self.surrogate_function = _check_surrogate(surrogate_function)
        self.v_seq: torch.Tensor | None = None
        self.store_v_seq = store_v_seq
        self.register_memory("v", 0.0 if self.v_reset is None else self.v_reset)
        self._config_cache: tuple[Any, NeuronConfig] | None = None
        self._dispatch = KernelDispatch()
        self._backend = "torch"
        if backend != "torch":
            self.backend = backend

    @property
    def store_v_seq(self) -> bool:
        """Whether forward passes keep the post-reset potentials in ``v_seq``. Setting it (to
        either value) forgets the ``v_seq`` kept so far, as SpikingJelly does."""
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        self._store_v_seq = check_flag("store_v_seq", value, integers=True)
        self.v_seq = None

    def register_model_states(self) -> None:
        """Give every state of :attr:`model` its initial value for the current hyper-parameters,
        now and after every reset (call at the end of a subclass's ``__init__``, once the
        hyper-parameters are attributes): states that are not memories yet are registered, and
        ``v``, which this class registers at the reset potential, starts where the model says
        (``State("v", "v_rest")``, ``State("v", 0.7)``)."""
        model = type(self).model
        if model is None:
            return
        initial = model.initial_values(self._hyperparameter_values())
        for name in model.state_names:
            if name in self._memories:
                self.set_reset_value(name, initial[name])
                setattr(self, name, initial[name])
            else:
                self.register_memory(name, initial[name])

    # -- backends ------------------------------------------------------------------------------

    @property
    def supported_backends(self) -> tuple[str, ...]:
        """Installed backends that serve this neuron's model in its current step mode.

        Neurons on the autograd path (custom dynamics) run on ``"torch"`` only.
        """
        model = type(self).model
        if model is None or not self._has_model_dynamics():
            return ("torch",)
        config = self._kernel_config()
        return supported_backends(config if config is not None else model, self.step_mode)

    @supported_backends.setter
    def supported_backends(self, value: Iterable[str]) -> None:
        raise AttributeError(
            f"supported_backends: {type(self).__name__} lists the installed backends serving its model "
            f"in its step mode; it cannot be assigned (got {value!r})"
        )

    @property
    def backend(self) -> str:
        """The backend running this neuron (``"torch"`` by default; ``"auto"`` picks per input)."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        model = type(self).model
        if model is None or not self._has_model_dynamics():
            if not isinstance(value, str):
                raise TypeError(f"backend: expected a string, got {type(value).__name__}")
            if value not in ("torch", "auto"):
                from snn.plugins import get_registry

                get_registry().backend(value)  # BackendNotFoundError for unknown names
                raise UnsupportedOperationError(
                    value, f"{type(self).__name__} (custom neuron dynamics run on the torch autograd path)", ("torch",)
                )
            self._backend = value
            return
        unset = [name for name in model.hyperparameter_names if not hasattr(self, name)]
        if unset:
            raise TypeError(
                f"{type(self).__name__}: backend: chosen before the hyper-parameters {', '.join(unset)} were set; "
                "pass backend='torch' to BaseNode.__init__ and set self.backend = backend at the end of __init__"
            )
        config = self._kernel_config()
        check_backend(value, config if config is not None else model, self.step_mode, type(self).__name__)
        self._backend = value

    # -- configuration ---------------------------------------------------------------------------

    def _hyperparameter_values(self, like: torch.Tensor | None = None) -> dict[str, Any]:
        """The hyper-parameters by name; tensor ones (a per-sample threshold) in ``like``'s
        floating dtype, so that they do not promote the states and spikes of a step."""
        model = type(self).model
        assert model is not None
        return {name: _in_dtype_of(getattr(self, name), like) for name in model.hyperparameter_names}

    def _learnables(self) -> tuple[torch.Tensor, ...]:
        model = type(self).model
        return () if model is None else tuple(getattr(self, name) for name in model.learnables)

    def _has_model_dynamics(self) -> bool:
        cls = type(self)
        return all(getattr(cls, m) is getattr(BaseNode, m) for m in _DYNAMICS_METHODS)

    def _kernel_config(self) -> NeuronConfig | None:
        """The configuration kernels receive, or ``None`` when only the autograd path can run
        this neuron (cached until a hyper-parameter, the surrogate or ``detach_reset`` changes)."""
        model = type(self).model
        if model is None or not self._has_model_dynamics() or _functorch_active():
            return None
        sf = self.surrogate_function
        if not isinstance(sf, SurrogateFunctionBase) or not sf.spiking or not sf.has_closed_form_derivative:
            return None
        values = self._hyperparameter_values()
        if any(isinstance(v, torch.Tensor) for v in values.values()):
            return None
        spec = sf.spec
        key = (tuple(values.values()), self.detach_reset, spec)
        cached = self._config_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        config = model.config(spec, self.detach_reset, **values)
        self._config_cache = (key, config)
        return config

    def neuron_config(self) -> NeuronConfig:
        """The :class:`~snn.models.NeuronConfig` kernels receive.

        Raises:
            TypeError: no kernel can run this neuron (custom dynamics, a callable surrogate, a
                tensor hyper-parameter; the message says which).
        """
        config = self._kernel_config()
        if config is None:
            raise TypeError(f"{type(self).__name__}: no kernel can run it: {self._why_no_kernel()}")
        return config

    def _why_no_kernel(self) -> str:
        model = type(self).model
        if model is None or not self._has_model_dynamics():
            return f"{type(self).__name__} (custom neuron dynamics)"
        if _functorch_active():
            return "a torch.func transform (grad, vmap ...) is running"
        if any(isinstance(v, torch.Tensor) for v in self._hyperparameter_values().values()):
            return "a tensor hyper-parameter (e.g. v_threshold from functional.set_threshold_margin)"
        sf = self.surrogate_function
        if isinstance(sf, SurrogateFunctionBase):
            if not sf.spiking:
                return f"surrogate {type(sf).__name__} in non-spiking mode"
            return f"surrogate {type(sf).__name__} (no closed-form kernel derivative)"
        return f"a custom surrogate function {sf!r}"

    # -- dynamics (the autograd path; kernels run the model's same math) -------------------------

    def neuronal_charge(self, x: torch.Tensor) -> None:
        """Charge: set every state to its charged value given the input ``x`` (the model's
        charge; a subclass without a model must override this and set ``self.v``)."""
        model = type(self).model
        if model is None:
            raise NotImplementedError(f"{type(self).__name__} has no model: override neuronal_charge")
        states = {name: getattr(self, name) for name in model.state_names}
        learnables = dict(zip(model.learnables, self._learnables()))
        for name, value in evaluate_charge(model, self._hyperparameter_values(x), x, states, learnables).items():
            setattr(self, name, value)

    def neuronal_fire(self) -> torch.Tensor:
        """Fire: the spikes of the charged firing state (``surrogate(v - v_threshold)``)."""
        model = type(self).model
        fire, threshold = ("v", "v_threshold") if model is None else (model.fire, model.threshold)
        charged = getattr(self, fire)
        return self.surrogate_function(charged - _in_dtype_of(getattr(self, threshold), charged))

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        """Reset every state after ``spike`` (the model's reset; without a model the hard or
        soft reset of ``v``); the spike is detached where ``detach_reset`` says."""
        model = type(self).model
        if model is None:
            spike_d = spike.detach() if self.detach_reset else spike
            if self.v_reset is None:
                self.v = self.v - spike_d * _in_dtype_of(self.v_threshold, spike_d)
            else:
                self.v = spike_d * self.v_reset + (1.0 - spike_d) * self.v
            return
        charged = {name: getattr(self, name) for name in model.state_names}
        learnables = dict(zip(model.learnables, self._learnables()))
        values = evaluate_reset(model, self._hyperparameter_values(spike), self.detach_reset, charged, spike, learnables)
        for name, value in values.items():
            setattr(self, name, value)

    # -- state ---------------------------------------------------------------------------------

    def _state_names(self) -> tuple[str, ...]:
        model = type(self).model
        return ("v",) if model is None else model.state_names

    def _states_for(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every state as a tensor shaped like one step ``x`` (numbers materialised)."""
        out = []
        for name in self._state_names():
            if name not in self._memories:
                model = type(self).model
                raise TypeError(
                    f"{type(self).__name__}: the state {name!r} of model {getattr(model, 'name', None)!r} is not a "
                    "memory of this neuron; call self.register_model_states() at the end of __init__ (after the "
                    "hyper-parameters are set)"
                )
            value = self._memories[name]
            if isinstance(value, torch.Tensor):
                if value.shape != x.shape:
                    raise ValueError(
                        f"{type(self).__name__}: the state {name} has shape {tuple(value.shape)} but the input "
                        f"step has shape {tuple(x.shape)} (did the batch size change?); call "
                        "snn.functional.reset_net(net) before feeding inputs of a new shape"
                    )
                if value.dtype != x.dtype or value.device != x.device:
                    value = value.to(dtype=x.dtype, device=x.device)
                out.append(value)
            else:
                number = float(value)
                if math.isfinite(number) and abs(number) > torch.finfo(x.dtype).max:
                    raise ValueError(
                        f"{type(self).__name__}: the state {name} starts at {number!r}, which the input's dtype "
                        f"{x.dtype} cannot hold (largest {torch.finfo(x.dtype).max:g}); use a wider dtype or a "
                        "smaller reset value"
                    )
                out.append(torch.full(x.shape, number, dtype=x.dtype, device=x.device))
        return tuple(out)

    def _set_states(self, values: tuple[torch.Tensor, ...]) -> None:
        for name, value in zip(self._state_names(), values):
            self._memories[name] = value

    def _fire_index(self) -> int:
        model = type(self).model
        return 0 if model is None else model.state_names.index(model.fire)

    # -- forward -----------------------------------------------------------------------------

    def single_step_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """One step.

        Args:
            x: ``[N, *]`` floating input; integer or bool tensors (event counts, spikes) are
                computed in torch's default dtype, as SpikingJelly promotes them.

        Returns:
            Spikes ``[N, *]`` in ``x``'s dtype (the default dtype for integer inputs); the
            states hold their post-reset values and, with ``store_v_seq``, ``self.v_seq``
            gains this step's potential.

        Raises:
            TypeError: ``x`` is not a real tensor (a complex one, or not a tensor).
            ValueError: a state has another shape (call ``snn.functional.reset_net``), or starts
                at a number ``x``'s dtype cannot hold.
            snn.errors.UnsupportedOperationError: the backend cannot run this configuration.
        """
        x = _as_floating("x", x)
        states = self._states_for(x)
        config = self._kernel_config()
        if config is None:
            self._require_torch_backend()
            self._check_tensor_hyperparameters(x.shape)
            self._set_states(states)
            spike = self._autograd_step(x)
        else:
            kernel = self._dispatch.kernel(self._backend, "single_step", config, x)
            spike, new_states, _ = kernel(x, states, config, learnables=self._learnables())
            self._set_states(tuple(new_states))
        if self.store_v_seq:
            v = self._memories[self._state_names()[self._fire_index()]].unsqueeze(0)
            previous = self.v_seq
            compatible = (
                isinstance(previous, torch.Tensor) and previous.shape[1:] == v.shape[1:]
                and previous.dtype == v.dtype and previous.device == v.device
            )
            self.v_seq = torch.cat((previous, v)) if compatible else v.clone()  # type: ignore[arg-type]  # compatible implies a tensor
        return spike

    def _autograd_step(self, x: torch.Tensor) -> torch.Tensor:
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def _check_tensor_hyperparameters(self, step: torch.Size) -> None:
        """Raise ``ValueError`` when a tensor hyper-parameter (a per-sample threshold from
        ``snn.functional.set_threshold_margin``) does not broadcast to the shape of one step."""
        model = type(self).model
        names = ("v_threshold",) if model is None else model.hyperparameter_names
        for name in names:
            value = getattr(self, name, None)
            if not isinstance(value, torch.Tensor):
                continue
            try:
                fits = torch.broadcast_shapes(value.shape, step) == step
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(
                    f"{type(self).__name__}: {name} has shape {tuple(value.shape)}, which does not broadcast "
                    f"to the input step's shape {tuple(step)} (a threshold from "
                    "snn.functional.set_threshold_margin has the labels' shape [B, C])"
                )

    def _require_torch_backend(self) -> None:
        if self._backend not in ("torch", "auto"):
            raise UnsupportedOperationError(self._backend, self._why_no_kernel(), ("torch",))

    def multi_step_forward(self, x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """A whole sequence.

        Args:
            x_seq: ``[T, N, *]`` floating input; integer or bool tensors (event counts, spikes)
                are computed in torch's default dtype, as SpikingJelly promotes them.

        Returns:
            Spikes ``[T, N, *]`` in ``x_seq``'s dtype (the default dtype for integer inputs);
            the states hold their last values and, with ``store_v_seq``, ``self.v_seq`` every
            post-reset potential ``[T, N, *]``.

        Raises:
            TypeError: ``x_seq`` is not a real tensor (a complex one, or not a tensor).
            ValueError: ``x_seq`` has no time dimension, a state has another shape or starts at
                a number ``x_seq``'s dtype cannot hold.
            snn.errors.UnsupportedOperationError: the backend cannot run this configuration.
        """
        x_seq = _as_floating("x_seq", x_seq)
        if x_seq.dim() == 0 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq: expected shape [T, N, *] with T >= 1, got {tuple(x_seq.shape)}")
        states = self._states_for(x_seq[0])
        config = self._kernel_config()
        store = self.store_v_seq
        if config is None:
            self._require_torch_backend()
            self._check_tensor_hyperparameters(x_seq.shape[1:])
            self._set_states(states)
            spikes, potentials = [], []
            fire_name = self._state_names()[self._fire_index()]
            for t in range(x_seq.shape[0]):
                spikes.append(self._autograd_step(x_seq[t]))
                if store:
                    potentials.append(self._memories[fire_name])
            if store:
                self.v_seq = torch.stack(potentials)
            return torch.stack(spikes)
        kernel = self._dispatch.kernel(self._backend, "multi_step", config, x_seq)
        spikes, last, seqs = kernel(x_seq, states, config, learnables=self._learnables(), store_state_seqs=store)
        self._set_states(tuple(last))
        if store:
            assert seqs is not None
            self.v_seq = seqs[self._fire_index()]
        return spikes

    # -- bookkeeping -----------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / deepcopy support: caches are dropped, ``v_seq`` is detached."""
        state = super().__getstate__()
        state["_config_cache"] = None
        state["_dispatch"] = KernelDispatch()
        if isinstance(state.get("v_seq"), torch.Tensor):
            state["v_seq"] = state["v_seq"].detach()
        return state

    def reset(self) -> None:
        """Return every state to its reset value and forget ``v_seq``."""
        super().reset()
        self.v_seq = None

    def detach(self) -> None:
        """Cut the states (and an accumulated ``v_seq``) from the autograd graph."""
        super().detach()
        if isinstance(self.v_seq, torch.Tensor):
            self.v_seq = self.v_seq.detach()

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
            f"detach_reset={self.detach_reset}, " + super().extra_repr()
        )

