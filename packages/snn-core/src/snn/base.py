"""Step-mode-aware modules and modules with memory (state).

Every snn module runs in one of two *step modes*:

- ``'s'`` (single step): the input is one time step ``[N, *]``;
- ``'m'`` (multi step): the input is a whole sequence ``[T, N, *]`` (time first).

:class:`StepModule` adds the ``step_mode`` attribute; :class:`MemoryModule` adds *memories*:
named states (membrane potentials, traces, masks ...) that persist between calls, are read and
written as plain attributes, and return to their reset values on :meth:`MemoryModule.reset`
(``snn.functional.reset_net`` resets a whole network).

A subclass implements :meth:`MemoryModule.single_step_forward`; the default
:meth:`MemoryModule.multi_step_forward` loops it over time, so a single-step implementation
works in both modes. Neurons override ``multi_step_forward`` with a fused kernel.

SpikingJelly 2.0.0's explicit-state contract works too: a subclass may implement
:meth:`MemoryModule.single_step_functional_forward` (``(inputs, states) -> (outputs,
new_states)``, optionally :meth:`MemoryModule.materialize_states` and
:meth:`MemoryModule.multi_step_functional_forward`) instead, and every memory module without
stateful submodules offers :meth:`MemoryModule.functional_forward`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = [
    "STEP_MODES",
    "StepModule",
    "SingleStepModule",
    "MultiStepModule",
    "MemoryModule",
    "named_memories",
    "memories",
    "extract_memories",
    "load_memories",
]

logger = logging.getLogger("snn")

#: The step modes: ``'s'`` one step ``[N, *]``, ``'m'`` a sequence ``[T, N, *]``.
STEP_MODES = ("s", "m")

class StepModule:
    """Mixin giving a module a validated ``step_mode`` attribute (``'s'`` or ``'m'``)."""

    def supported_step_mode(self) -> tuple[str, ...]:
        """The step modes this module accepts."""
        return STEP_MODES

    @property
    def step_mode(self) -> str:
        """``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``)."""
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        supported = self.supported_step_mode()
        if not isinstance(value, str) or value not in supported:
            raise ValueError(
                f'step_mode: expected one of {supported}, got {value!r} '
                f'(step_mode can only be {supported}, but got "{value}"!)'
            )
        self._step_mode = value


class SingleStepModule(StepModule):
    """A module that only runs one step at a time."""

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s",)


class MultiStepModule(StepModule):
    """A module that only runs whole sequences."""

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("m",)


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` of a tensor memory, or of each tensor in a list / tuple memory (a delay line's
    queue); other values unchanged."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)) and any(isinstance(item, torch.Tensor) for item in value):
        return type(value)(fn(item) if isinstance(item, torch.Tensor) else item for item in value)
    return value


class _StepModeNotGiven(str):
    """The default of ``MemoryModule(step_mode=...)``: ``'s'``, told apart from an explicit
    ``'s'`` (which is checked) by identity."""

    def __repr__(self) -> str:
        return "'s'"


_STEP_MODE_NOT_GIVEN = _StepModeNotGiven("s")


class MemoryModule(nn.Module, StepModule):
    """Base of every stateful module.

    Memories are registered with :meth:`register_memory` and then used as attributes
    (``self.v``). Their reset values are deep copies taken at registration.

    A memory module runs on plain PyTorch; its ``backend`` is ``"torch"`` unless a subclass
    stores another name for its own forward to read (as SpikingJelly modules do, with their own
    :attr:`supported_backends`). Neurons (:class:`snn.neuron.BaseNode`) override both to run on
    kernel backends.

    Args:
        step_mode: ``'s'`` or ``'m'``, checked against :meth:`supported_step_mode`. Left out,
            the module starts in ``'s'`` unchecked, as SpikingJelly's ``MemoryModule`` does, so
            that a subclass that runs only whole sequences (``MultiStepModule``) sets
            ``self.step_mode = 'm'`` after this constructor.
    """

    def __init__(self, step_mode: str = _STEP_MODE_NOT_GIVEN) -> None:
        super().__init__()
        object.__setattr__(self, "_memories", {})
        object.__setattr__(self, "_memories_rv", {})
        self._backend = "torch"
        if step_mode is _STEP_MODE_NOT_GIVEN:
            self._step_mode = "s"
        else:
            self.step_mode = step_mode

    # -- memories ------------------------------------------------------------------------------

    def register_memory(self, name: str, value: Any) -> None:
        """Register a memory ``name`` with initial (and reset) value ``value``.

        Raises:
            ValueError: ``name`` is already an attribute of the module.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name: expected an identifier, got {name!r}")
        if name in self._memories or hasattr(self, name):
            raise ValueError(f"name: {name!r} is already an attribute of {type(self).__name__}")
        self._memories[name] = value
        self.set_reset_value(name, value)

    def set_reset_value(self, name: str, value: Any) -> None:
        """Set the value memory ``name`` returns to on :meth:`reset` (deep-copied)."""
        self._memories_rv[name] = copy.deepcopy(value)

    def get_reset_value(self, name: str) -> Any:
        """The reset value of memory ``name`` (a deep copy).

        Raises:
            KeyError: ``name`` is not a registered memory or has no reset value.
        """
        if name not in self._memories:
            raise KeyError(f"{name!r} is not a registered memory of {type(self).__name__}")
        if name not in self._memories_rv:
            raise KeyError(f"memory {name!r} of {type(self).__name__} has no reset value")
        return copy.deepcopy(self._memories_rv[name])

    def reset(self) -> None:
        """Return every memory to its reset value.

        A tensor memory whose reset value is a tensor of the same shape, dtype and device is
        detached and overwritten in place; a tensor memory whose reset value is a number becomes
        that number again (re-materialised with the next input's shape); anything else becomes a
        deep copy of the reset value.
        """
        for name, reset_value in self._memories_rv.items():
            current = self._memories.get(name)
            if (
                isinstance(current, torch.Tensor)
                and isinstance(reset_value, torch.Tensor)
                and current.shape == reset_value.shape
                and current.dtype == reset_value.dtype
                and current.device == reset_value.device
            ):
                try:
                    current.detach_()
                    current.copy_(reset_value)
                except RuntimeError:
                    self._memories[name] = reset_value.detach().clone()
            elif isinstance(reset_value, (int, float)) and not isinstance(reset_value, bool):
                self._memories[name] = reset_value
            else:
                self._memories[name] = copy.deepcopy(reset_value)

    def detach(self) -> None:
        """Cut every tensor memory, and the tensors of list / tuple memories, from the autograd
        graph (truncated BPTT); tensors in place where possible. A leaf tensor that requires
        grad (one the user handed in: an initial state, a pattern to replay) is replaced by a
        detached alias instead: detaching it in place would clear the user's ``requires_grad``."""
        for name, value in self._memories.items():
            if isinstance(value, torch.Tensor):
                if value.is_leaf and value.requires_grad:
                    self._memories[name] = value.detach()
                    continue
                try:
                    value.detach_()
                except RuntimeError:
                    self._memories[name] = value.detach()
            else:
                self._memories[name] = _map_tensors(value, torch.Tensor.detach)

    def memories(self) -> Iterator[Any]:
        """The current memory values."""
        yield from self._memories.values()

    def named_memories(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of each memory of this module (not of submodules)."""
        yield from self._memories.items()

    # -- attribute routing ---------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            return memories[name]
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            memories[name] = value
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            del memories[name]
            self._memories_rv.pop(name, None)
        else:
            super().__delattr__(name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._memories))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / deepcopy support: tensor memories are stored as detached values.

        A state tensor that still carries an autograd graph (right after a training forward)
        cannot be deep-copied by torch; its value is what a copy needs.
        """
        state = self.__dict__.copy()
        state["_memories"] = {k: _map_tensors(v, torch.Tensor.detach) for k, v in self._memories.items()}
        return state

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MemoryModule:
        """``.to()``, ``.half()``, ``.cuda()`` ...: the tensor memories and tensor reset values
        follow the parameters, so a reset does not bring back the old dtype or device."""
        super()._apply(fn, recurse)
        for name, value in self._memories.items():
            self._memories[name] = _map_tensors(value, fn)
        for name, value in self._memories_rv.items():
            self._memories_rv[name] = _map_tensors(value, lambda t: _like_applied(t, fn))
        return self

    def _replicate_for_data_parallel(self) -> MemoryModule:
        replica = super()._replicate_for_data_parallel()
        object.__setattr__(replica, "_memories", self._memories.copy())
        return replica

    # -- backends ------------------------------------------------------------------------------

    @property
    def supported_backends(self) -> tuple[str, ...]:
        """The backends :func:`snn.functional.set_backend` may give this module: ``("torch",)``
        unless the module assigned its own (``self.supported_backends = ("torch", "cupy")``, as
        SpikingJelly modules do); neurons list the kernel backends serving their model."""
        return self.__dict__.get("_supported_backends", ("torch",))

    @supported_backends.setter
    def supported_backends(self, value: Iterable[str]) -> None:
        names = tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else None
        if not names or not all(isinstance(name, str) and name for name in names):
            raise TypeError(f"supported_backends: expected a non-empty tuple of backend names, got {value!r}")
        self.__dict__["_supported_backends"] = names

    @property
    def backend(self) -> str:
        """The backend name: ``"torch"``, or another of :attr:`supported_backends` that the
        module (or :func:`~snn.functional.set_backend`) stored for its own forward to read.
        snn's kernel backends serve neurons only, which override this."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError(f"backend: expected a backend name (a non-empty string), got {value!r}")
        supported = self.supported_backends
        if value not in supported:
            from snn.errors import UnsupportedOperationError

            raise UnsupportedOperationError(
                value, f"{type(self).__name__} (a memory module whose supported_backends are {supported})", supported
            )
        self._backend = value

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}, backend={self.backend}"

    # -- forward -------------------------------------------------------------------------------

    def single_step_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """One step: ``x`` is ``[N, *]``. Subclasses implement this, or
        :meth:`single_step_functional_forward` (then this runs it on the memories and writes the
        new states back)."""
        if _overridden(type(self), "single_step_functional_forward"):
            return self._through_functional("s", (x, *args), kwargs)
        raise NotImplementedError(
            f"{type(self).__name__} implements neither single_step_forward nor single_step_functional_forward"
        )

    def multi_step_forward(self, x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """A sequence ``[T, N, *]``: by default :meth:`single_step_forward` looped over time and
        stacked (or, for a subclass with a functional forward, :meth:`multi_step_functional_forward`
        on the memories, the new states written back).

        Raises:
            TypeError: ``x_seq`` is not a tensor.
            ValueError: ``x_seq`` has no time dimension or ``T = 0``.
        """
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"x_seq: expected a torch.Tensor [T, N, *], got {type(x_seq).__name__}")
        if x_seq.dim() == 0 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq: expected shape [T, N, *] with T >= 1, got {tuple(x_seq.shape)}")
        cls = type(self)
        if _overridden(cls, "multi_step_functional_forward") or _overridden(cls, "single_step_functional_forward"):
            return self._through_functional("m", (x_seq, *args), kwargs)
        outputs = [self.single_step_forward(x_seq[t], *args, **kwargs) for t in range(x_seq.shape[0])]
        return torch.stack(outputs)

    # -- explicit state (SpikingJelly's functional forward) ------------------------------------

    def materialize_states(self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str) -> tuple[Any, ...]:
        """The ``states`` a functional forward of ``inputs`` in ``step_mode`` starts from: by
        default ``states`` unchanged. A subclass may turn numbers (a fresh memory's ``0.0``)
        into tensors shaped after the inputs; it must not modify ``states`` or the memories."""
        return tuple(states)

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """One step with explicit state: ``(outputs, new_states)``, states in the order of this
        module's own memories; neither ``states`` nor the memories are modified.

        A subclass may implement this instead of :meth:`single_step_forward` (SpikingJelly 2.0.0's
        contract). By default it runs :meth:`single_step_forward` with ``states`` loaded into the
        memories and puts them back (:func:`snn.functional.to_functional_forward`).

        Raises:
            NotImplementedError: the module implements no single-step forward, or it has stateful
                submodules (their states belong in the explicit state too: use
                :func:`snn.functional.to_functional_forward` on the module).
        """
        if not _overridden(type(self), "single_step_forward"):
            raise NotImplementedError(
                f"{type(self).__name__} implements neither single_step_forward nor single_step_functional_forward"
            )
        return self._with_states(self.single_step_forward, inputs, states, kwargs)

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """A sequence with explicit state (time is dimension 0 of each input): ``(outputs
        stacked over time, new_states)``. By default :meth:`single_step_functional_forward` step
        by step when the subclass implements it, else :meth:`multi_step_forward` (a neuron's
        fused kernel) with ``states`` loaded and put back."""
        if not _overridden(type(self), "single_step_functional_forward"):
            return self._with_states(self.multi_step_forward, inputs, states, kwargs)
        steps: list[tuple[Any, ...]] = []
        for t in range(inputs[0].shape[0]):
            outputs, states = _checked_result(
                self, "single_step_functional_forward",
                self.single_step_functional_forward(tuple(x[t] for x in inputs), states, **kwargs),
            )
            steps.append(outputs)
        return tuple(torch.stack(sequence) for sequence in zip(*steps)), states

    def functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """:meth:`materialize_states`, then the single- or multi-step functional forward of the
        current step mode.

        Args:
            inputs: the forward's positional arguments as a tuple (``(x,)``).
            states: one value per memory of this module, in registration order.

        Returns:
            ``(outputs, new_states)``: the outputs as a tuple, the states after the call.

        Raises:
            TypeError: ``inputs`` or ``states`` is not a tuple or list.
        """
        for name, value in (("inputs", inputs), ("states", states)):
            if not isinstance(value, (tuple, list)):
                raise TypeError(f"{type(self).__name__}.functional_forward: {name}: expected a tuple, got {type(value).__name__}")
        mode = self._step_mode
        states = self.materialize_states(tuple(inputs), tuple(states), mode)
        if mode == "s":
            return self.single_step_functional_forward(tuple(inputs), states, **kwargs)
        return self.multi_step_functional_forward(tuple(inputs), states, **kwargs)

    def _through_functional(self, mode: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The stateful forward of a subclass that implements the functional one."""
        names = list(self._memories)
        states = self.materialize_states(inputs, tuple(self._memories.values()), mode)
        step = self.single_step_functional_forward if mode == "s" else self.multi_step_functional_forward
        outputs, new_states = _checked_result(self, step.__name__, step(inputs, states, **kwargs))
        if len(new_states) != len(names):
            raise ValueError(
                f"{type(self).__name__}: {step.__name__} returned {len(new_states)} states for the "
                f"{len(names)} memories {names}"
            )
        for name, value in zip(names, new_states):
            self._memories[name] = value
        return outputs[0] if len(outputs) == 1 else outputs

    def _with_states(
        self, forward: Callable[..., Any], inputs: tuple[Any, ...], states: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """``forward`` as a function of this module's own states (loaded, then put back)."""
        if any(isinstance(sub, MemoryModule) for sub in self.modules() if sub is not self):
            raise NotImplementedError(
                f"{type(self).__name__} has stateful submodules, whose states an explicit-state forward must "
                "carry too: use snn.functional.to_functional_forward(module)"
            )
        from snn.functional.explicit_state import to_functional_forward

        return to_functional_forward(self, forward)(inputs, states, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._step_mode == "s":
            return self.single_step_forward(*args, **kwargs)
        return self.multi_step_forward(*args, **kwargs)


def _like_applied(tensor: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``tensor`` moved to the dtype and device ``fn`` gives, its values kept (``fn`` itself may
    not keep them: ``Module.to_empty`` applies ``empty_like``)."""
    target = fn(torch.empty(0, dtype=tensor.dtype, device=tensor.device))
    return tensor.to(dtype=target.dtype, device=target.device)


def _overridden(cls: type, method: str) -> bool:
    """Whether ``cls`` defines ``method`` other than :class:`MemoryModule`'s default."""
    return getattr(cls, method) is not getattr(MemoryModule, method)


def _checked_result(module: MemoryModule, method: str, result: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``(outputs, new_states)`` of a functional forward, each a tuple; ``TypeError`` for another
    shape of result (a bare tensor would be split into its rows by ``tuple()``)."""
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(r, (tuple, list)) for r in result)):
        shown = type(result).__name__ if not isinstance(result, tuple) else f"({', '.join(type(r).__name__ for r in result)})"
        raise TypeError(
            f"{type(module).__name__}.{method}: expected to return (outputs, new_states), two tuples, got {shown}"
        )
    outputs, new_states = result
    return tuple(outputs), tuple(new_states)


def named_memories(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted name, value)`` of every memory in ``module`` and its submodules (e.g. ``"0.v"``)."""
    for module_name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, MemoryModule):
            for name, value in sub.named_memories():
                yield (f"{module_name}.{name}" if module_name else name), value


def memories(module: nn.Module) -> Iterator[Any]:
    """Every memory value in ``module`` and its submodules, in :func:`named_memories` order."""
    for _, value in named_memories(module):
        yield value


def extract_memories(module: nn.Module) -> list[Any]:
    """The memory values of ``module`` as a list (see :func:`load_memories`)."""
    return list(memories(module))


def load_memories(module: nn.Module, memory_list: list[Any] | None = None, *, values: list[Any] | None = None) -> None:
    """Write ``memory_list`` (from :func:`extract_memories`) back into ``module``'s memories.

    ``values`` is the same argument under snn's earlier name.

    Raises:
        TypeError: neither or both of ``memory_list`` and ``values`` given.
        ValueError: ``memory_list`` does not have one entry per memory.
    """
    if (memory_list is None) == (values is None):
        raise TypeError("load_memories: expected memory_list (or its earlier name values), exactly one of them")
    values = memory_list if memory_list is not None else values
    assert values is not None
    targets = [
        (sub, name)
        for sub in module.modules()
        if isinstance(sub, MemoryModule)
        for name in list(sub._memories)
    ]
    if len(values) != len(targets):
        raise ValueError(
            f"memory_list: Memory length mismatch: expected {len(targets)} memories, got {len(values)}"
        )
    for (sub, name), value in zip(targets, values):
        sub._memories[name] = value
