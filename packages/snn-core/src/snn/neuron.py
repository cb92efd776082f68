"""Spiking neurons: integrate-and-fire, leaky integrate-and-fire and parametric LIF.

Every neuron keeps its membrane potential in the memory ``v`` and runs one step at a time
(``step_mode='s'``, input ``[N, *]``) or a whole sequence (``step_mode='m'``, input
``[T, N, *]``). A step charges the potential, fires where it reaches the threshold and resets:

- charge ``h = f(v, x)`` (per neuron class);
- fire ``s = H(h - v_threshold)`` (``H(0) = 1``) with the surrogate gradient in backward;
- reset: hard ``v = s * v_reset + (1 - s) * h``; soft (``v_reset=None``) ``v = h - s * v_threshold``;
  ``s`` is detached in the reset when ``detach_reset``.

Multi-step mode runs a fused kernel of the selected backend (see :mod:`snn.kernels`); the
``"torch"`` backend is always present. Single-step mode runs the torch kernel. Configurations
that no kernel can run (a surrogate that is not a built-in closed-form one, a non-spiking
surrogate, a tensor ``v_threshold``, a subclass overriding the dynamics) run a plain autograd
loop on torch and raise :class:`snn.errors.UnsupportedOperationError` on other backends.

Example:
    >>> import torch
    >>> from snn import neuron
    >>> lif = neuron.LIFNode(tau=2.0, step_mode="m")
    >>> lif(torch.full((4, 1), 1.5)).flatten()
    tensor([0., 1., 0., 1.])
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from snn.backends import torch as _torch_backend
from snn.base import MemoryModule
from snn.errors import UnsupportedOperationError
from snn.kernels import NeuronConfig
from snn.surrogate import CLOSED_FORM_SURROGATES, SURROGATES, Sigmoid, SurrogateFunctionBase, heaviside

__all__ = ["BaseNode", "IFNode", "LIFNode", "ParametricLIFNode"]

_TORCH_SINGLE_STEP = {
    "if": _torch_backend.if_single_step,
    "lif": _torch_backend.lif_single_step,
    "plif": _torch_backend.plif_single_step,
}
_DYNAMICS_METHODS = ("neuronal_charge", "neuronal_fire", "neuronal_reset")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return number


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return value


def _time_constant(name: str, value: Any) -> float:
    number = _real(name, value)
    if not number > 1.0:
        raise ValueError(f"{name}: expected a membrane time constant > 1, got {value!r}")
    return number


def _check_floating(name: str, x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a floating-point tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")


class BaseNode(MemoryModule):
    """Base class of spiking neurons with one membrane potential ``v``.

    Subclasses implement :meth:`neuronal_charge` (``self.v = h``); a subclass whose class
    attribute :attr:`neuron_kind` is set and whose dynamics are the built-in ones runs on kernels.

    Args:
        v_threshold: firing threshold (a real number).
        v_reset: potential after a spike (hard reset), or ``None`` for soft reset
            (the threshold is subtracted).
        surrogate_function: the surrogate gradient of the spike; ``None`` gives a new
            ``snn.surrogate.Sigmoid(alpha=4.0)`` for this neuron. Any callable
            ``(h - v_threshold) -> spikes`` is accepted (it then runs on the torch loop).
        detach_reset: cut the gradient through the reset.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).
        backend: kernel backend name for multi-step mode (``"torch"``, ``"auto"``, or one a
            plugin provides).
        store_v_seq: in multi-step mode keep the post-reset potentials of every step in
            ``self.v_seq`` (``[T, N, *]``).

    Raises:
        TypeError: a threshold or reset that is not a real number (``bool`` included), a
            non-bool flag, a surrogate that is not callable.
        ValueError: a non-finite threshold or reset, a bad ``step_mode``.
        snn.errors.BackendNotFoundError: ``backend`` is not installed.
        snn.errors.UnsupportedOperationError: ``backend`` cannot serve this neuron.
    """

    neuron_kind: ClassVar[str | None] = None

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
        self.v_threshold: float | torch.Tensor = _real("v_threshold", v_threshold)
        self.v_reset: float | None = None if v_reset is None else _real("v_reset", v_reset)
        self.detach_reset = _flag("detach_reset", detach_reset)
        self.store_v_seq = _flag("store_v_seq", store_v_seq)
        if surrogate_function is None:
            surrogate_function = Sigmoid()
        elif not callable(surrogate_function):
            raise TypeError(
                "surrogate_function: expected an snn.surrogate function or a callable, "
                f"got {type(surrogate_function).__name__}"
            )
        self.surrogate_function = surrogate_function
        self.register_memory("v", 0.0 if self.v_reset is None else self.v_reset)
        self.v_seq: torch.Tensor | None = None
        self._config_cache: tuple[Any, NeuronConfig] | None = None
        self._dispatch: tuple[Any, str, Callable[..., Any]] | None = None
        self._dispatch_checked: set[tuple[Any, ...]] = set()
        self._auto_dispatch: tuple[Any, dict[tuple[Any, ...], Callable[..., Any]]] | None = None
        if backend == "torch":
            self._backend = "torch"
        else:
            self.backend = backend

    # -- dynamics (the plain autograd path; kernels implement the same math) ---------------------

    def neuronal_charge(self, x: torch.Tensor) -> None:
        """Charge: set ``self.v`` to the charged potential ``h`` given the input ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement neuronal_charge")

    def neuronal_fire(self) -> torch.Tensor:
        """Fire: the spikes of the charged potential ``self.v``.

        In eval mode a spiking snn surrogate is replaced by :func:`snn.surrogate.heaviside`
        (same values, no autograd node).
        """
        sf = self.surrogate_function
        if not self.training and isinstance(sf, SurrogateFunctionBase) and sf.spiking:
            return heaviside(self.v - self.v_threshold)
        return sf(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        """Reset ``self.v`` after ``spike`` (hard or soft; spike detached if ``detach_reset``)."""
        spike_d = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            self.v = self.v - spike_d * self.v_threshold
        else:
            self.v = spike_d * self.v_reset + (1.0 - spike_d) * self.v

    # -- kernel plumbing ---------------------------------------------------------------------

    _builtin_dynamics_cache: ClassVar[weakref.WeakKeyDictionary[type, bool]] = weakref.WeakKeyDictionary()
    _kernel_owner: ClassVar[type | None] = None

    def _has_builtin_dynamics(self) -> bool:
        cls = type(self)
        found = BaseNode._builtin_dynamics_cache.get(cls)
        if found is None:
            owner = cls._kernel_owner
            found = owner is not None and all(
                getattr(cls, m) is getattr(owner, m) for m in _DYNAMICS_METHODS
            )
            BaseNode._builtin_dynamics_cache[cls] = found
        return found

    def _kernel_surrogate(self) -> str | None:
        """The surrogate's name when a kernel can run this neuron, else ``None``."""
        if self.neuron_kind is None or not self._has_builtin_dynamics():
            return None
        if isinstance(self.v_threshold, torch.Tensor) or isinstance(self.v_reset, torch.Tensor):
            return None
        sf = self.surrogate_function
        if not isinstance(sf, SurrogateFunctionBase) or not sf.spiking:
            return None
        name = type(sf).__name__
        if SURROGATES.get(name) is not type(sf) or name not in CLOSED_FORM_SURROGATES:
            return None
        return name

    def _config_parameters(self) -> tuple[bool, float | None]:
        """``(decay_input, tau)`` of the kernel config (IF: no decay)."""
        return False, None

    def _kernel_w(self) -> torch.Tensor | None:
        return None

    def neuron_config(self) -> NeuronConfig:
        """The :class:`~snn.kernels.NeuronConfig` kernels receive (cached until a hyper-parameter changes).

        Raises:
            TypeError: the neuron has no kernel kind, or its surrogate is not an
                :class:`snn.surrogate.SurrogateFunctionBase`.
            ValueError: a hyper-parameter a kernel cannot take (e.g. a tensor threshold).
        """
        sf = self.surrogate_function
        if not isinstance(sf, SurrogateFunctionBase):
            raise TypeError(
                f"surrogate_function: kernels need an snn.surrogate function, got {type(sf).__name__}"
            )
        if isinstance(self.v_threshold, torch.Tensor) or isinstance(self.v_reset, torch.Tensor):
            raise ValueError("v_threshold / v_reset: kernels need numbers, got a tensor (the torch loop serves it)")
        decay_input, tau = self._config_parameters()
        spec = sf.spec
        key = (self.v_threshold, self.v_reset, self.detach_reset, decay_input, tau, spec)
        cached = self._config_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        if self.neuron_kind is None:
            raise TypeError(f"{type(self).__name__} has no neuron_kind: no kernel can run it")
        config = NeuronConfig(
            self.neuron_kind, float(self.v_threshold), self.v_reset, self.detach_reset,  # type: ignore[arg-type]
            decay_input, tau, spec,
        )
        self._config_cache = (key, config)
        return config

    def _multi_step_kernel(self, x_seq: torch.Tensor, surrogate: str) -> Callable[..., Any]:
        """The multi-step kernel for this input: cached per registry, backend and input kind."""
        from snn.plugins import get_registry

        registry = get_registry()
        backend = self._backend
        kind = self.neuron_kind
        assert kind is not None
        if backend != "auto":
            cached = self._dispatch
            if cached is None or cached[0] is not registry or cached[1] != backend:
                cached = (registry, backend, registry.kernel(backend, kind, "multi_step"))
                self._dispatch = cached
                self._dispatch_checked = set()
            if backend != "torch":
                key = (registry, x_seq.device.type, x_seq.dtype, surrogate)
                if key not in self._dispatch_checked:
                    registry.check_kernel_inputs(backend, x_seq.device.type, x_seq.dtype, surrogate)
                    self._dispatch_checked.add(key)
            return cached[2]
        auto = self._auto_dispatch
        if auto is None or auto[0] is not registry:
            auto = (registry, {})
            self._auto_dispatch = auto
        key = (x_seq.device.type, x_seq.dtype, surrogate)
        kernel = auto[1].get(key)
        if kernel is None:
            name = registry.auto_backend(kind, "multi_step", x_seq.device.type, x_seq.dtype, surrogate)
            kernel = registry.kernel(name, kind, "multi_step")
            auto[1][key] = kernel
        return kernel

    def _state_for(self, x: torch.Tensor) -> torch.Tensor:
        """``self.v`` as a tensor shaped like one step ``x`` (materialised from a number)."""
        v = self._memories["v"]
        if isinstance(v, torch.Tensor):
            if v.shape != x.shape:
                raise ValueError(
                    f"{type(self).__name__}: the state v has shape {tuple(v.shape)} but the input step has "
                    f"shape {tuple(x.shape)} (did the batch size change?); call "
                    "snn.functional.reset_net(net) before feeding inputs of a new shape"
                )
            if v.dtype != x.dtype or v.device != x.device:
                v = v.to(dtype=x.dtype, device=x.device)
            return v
        return torch.full(x.shape, float(v), dtype=x.dtype, device=x.device)

    # -- forward -----------------------------------------------------------------------------

    def single_step_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """One step.

        Args:
            x: ``[N, *]`` floating input.

        Returns:
            Spikes ``[N, *]`` in ``x``'s dtype; ``self.v`` holds the post-reset potential.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``self.v`` has another shape (call ``snn.functional.reset_net``).
        """
        _check_floating("x", x)
        v = self._state_for(x)
        self.v_seq = None
        surrogate = self._kernel_surrogate()
        if surrogate is not None and (self.training or not _needs_grad(x, v, self._kernel_w())):
            spike, v, _ = _TORCH_SINGLE_STEP[self.neuron_kind](  # type: ignore[index]
                x, v, self.neuron_config(), w=self._kernel_w()
            )
            self.v = v
            return spike
        self.v = v
        return self._autograd_step(x)

    def _autograd_step(self, x: torch.Tensor) -> torch.Tensor:
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """A whole sequence.

        Args:
            x_seq: ``[T, N, *]`` floating input.

        Returns:
            Spikes ``[T, N, *]`` in ``x_seq``'s dtype; ``self.v`` holds the last potential and,
            with ``store_v_seq``, ``self.v_seq`` every post-reset potential ``[T, N, *]``.

        Raises:
            TypeError: ``x_seq`` is not a floating tensor.
            ValueError: ``x_seq`` has no time dimension or ``self.v`` has another shape.
            snn.errors.UnsupportedOperationError: the backend cannot run this configuration.
        """
        _check_floating("x_seq", x_seq)
        if x_seq.dim() == 0 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq: expected shape [T, N, *] with T >= 1, got {tuple(x_seq.shape)}")
        v = self._state_for(x_seq[0])
        surrogate = self._kernel_surrogate()
        backend = self._backend
        w = self._kernel_w()
        if surrogate is None:
            if backend not in ("torch", "auto"):
                raise UnsupportedOperationError(backend, self._why_no_kernel(), ("torch",))
            return self._autograd_sequence(x_seq, v)
        if not self.training and backend in ("torch", "auto") and _needs_grad(x_seq, v, w):
            # eval mode fires with the plain Heaviside step: no gradient through the spikes
            return self._autograd_sequence(x_seq, v)
        kernel = self._multi_step_kernel(x_seq, surrogate)
        store = self.store_v_seq
        spikes, v_last, v_seq = kernel(x_seq, v, self.neuron_config(), w=w, store_v_seq=store)
        self.v = v_last
        self.v_seq = v_seq if store else None
        return spikes

    def _why_no_kernel(self) -> str:
        if self.neuron_kind is None or not self._has_builtin_dynamics():
            return f"{type(self).__name__} (custom neuron dynamics)"
        if isinstance(self.v_threshold, torch.Tensor):
            return "a tensor v_threshold (e.g. from functional.set_threshold_margin)"
        sf = self.surrogate_function
        if isinstance(sf, SurrogateFunctionBase):
            if not sf.spiking:
                return f"surrogate {type(sf).__name__} in non-spiking mode"
            return f"surrogate {type(sf).__name__} (no closed-form kernel derivative)"
        return f"a custom surrogate function {sf!r}"

    def _autograd_sequence(self, x_seq: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self.v = v
        spikes = []
        potentials = []
        for t in range(x_seq.shape[0]):
            spikes.append(self._autograd_step(x_seq[t]))
            if self.store_v_seq:
                potentials.append(self.v)
        self.v_seq = torch.stack(potentials) if self.store_v_seq else None
        return torch.stack(spikes)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / deepcopy support: dispatch caches are dropped, ``v_seq`` is detached."""
        state = super().__getstate__()
        state["_config_cache"] = None
        state["_dispatch"] = None
        state["_dispatch_checked"] = set()
        state["_auto_dispatch"] = None
        if isinstance(state.get("v_seq"), torch.Tensor):
            state["v_seq"] = state["v_seq"].detach()
        return state

    def reset(self) -> None:
        """Return ``v`` to its reset value and forget ``v_seq``."""
        super().reset()
        self.v_seq = None

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
            f"detach_reset={self.detach_reset}, " + super().extra_repr()
        )


def _needs_grad(x: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and (
        x.requires_grad or v.requires_grad or (w is not None and w.requires_grad)
    )


class IFNode(BaseNode):
    """Integrate-and-fire neuron: ``h = v + x``.

    Args:
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq: as :class:`BaseNode`.
    """

    neuron_kind: ClassVar[str | None] = "if"

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron with membrane time constant ``tau``.

    With ``vr = v_reset`` (0 for soft reset):
    ``h = v + (x - (v - vr)) / tau`` when ``decay_input``, else ``h = v - (v - vr) / tau + x``.

    Args:
        tau: membrane time constant, a real number ``> 1``.
        decay_input: whether the input is divided by ``tau`` too.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq: as :class:`BaseNode`.

    Raises:
        TypeError: ``tau`` is not a real number or ``decay_input`` not a bool.
        ValueError: ``tau <= 1``.
    """

    neuron_kind: ClassVar[str | None] = "lif"

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        tau = _time_constant("tau", tau)
        decay_input = _flag("decay_input", decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq)
        self.tau = tau
        self.decay_input = decay_input

    def _config_parameters(self) -> tuple[bool, float | None]:
        return self.decay_input, self.tau

    def neuronal_charge(self, x: torch.Tensor) -> None:
        vr = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            self.v = self.v + (x - (self.v - vr)) / self.tau
        else:
            self.v = self.v - (self.v - vr) / self.tau + x

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}"


class ParametricLIFNode(BaseNode):
    """LIF neuron with a learnable time constant: ``1 / tau = sigmoid(w)``.

    ``w`` is a 0-dim :class:`torch.nn.Parameter` initialised to ``-ln(init_tau - 1)`` so that
    ``sigmoid(w) = 1 / init_tau``; the charge is LIF's with ``1 / tau`` replaced by ``sigmoid(w)``.

    Args:
        init_tau: initial time constant, a real number ``> 1``.
        decay_input: whether the input is scaled by ``sigmoid(w)`` too.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq: as :class:`BaseNode`.

    Raises:
        TypeError: ``init_tau`` is not a real number or ``decay_input`` not a bool.
        ValueError: ``init_tau <= 1``, or so close to 1 (or so large) that ``sigmoid(w)`` rounds
            to 1 (or 0).
    """

    neuron_kind: ClassVar[str | None] = "plif"

    def __init__(
        self,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        init_tau = _time_constant("init_tau", init_tau)
        decay_input = _flag("decay_input", decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq)
        self.decay_input = decay_input
        w = torch.as_tensor(-math.log(init_tau - 1.0))
        if not 0.0 < float(torch.sigmoid(w)) < 1.0:
            raise ValueError(
                f"init_tau: expected a time constant whose decay 1/init_tau is representable strictly "
                f"between 0 and 1 in {w.dtype}, got {init_tau!r}"
            )
        self.w = nn.Parameter(w)

    def _config_parameters(self) -> tuple[bool, float | None]:
        return self.decay_input, None

    def _kernel_w(self) -> torch.Tensor | None:
        return self.w

    def neuronal_charge(self, x: torch.Tensor) -> None:
        vr = 0.0 if self.v_reset is None else self.v_reset
        k = self.w.sigmoid()
        if self.decay_input:
            self.v = self.v + (x - (self.v - vr)) * k
        else:
            self.v = self.v - (self.v - vr) * k + x

    def extra_repr(self) -> str:
        with torch.no_grad():
            tau = 1.0 / self.w.sigmoid()
        return super().extra_repr() + f", tau={tau}"


for _cls in (IFNode, LIFNode, ParametricLIFNode):
    _cls._kernel_owner = _cls
del _cls
