"""The neuron-kernel contract shared by every backend.

A *multi-step kernel* runs one neuron layer of any registered model (see :mod:`snn.models`)
over a whole sequence in one call::

    kernel(x_seq, states, config, *, learnables=(), store_state_seqs=False)
        -> (spike_seq, states_last, state_seqs | None)

Args:
    x_seq: ``[T, *]`` input currents, float32 / float16 / bfloat16 / float64 as the backend
        registers them (torch: all four; cpp: float32 and float64), any
        strides (kernels make contiguous what they need; they never read wrong memory).
    states: the initial value of every state variable of the model, in the model's order
        (``(v,)`` for LIF, ``(v, w)`` for Izhikevich), each ``[*]`` with ``x_seq``'s dtype and
        device.
    config: a :class:`~snn.models.NeuronConfig`: the model, its hyper-parameters,
        ``detach_reset`` and the surrogate (frozen, hashable: kernels may cache compiled code on
        it).
    learnables: the model's learnable parameters in its order (e.g. PLIF's ``w`` with
        ``decay = sigmoid(w)``), one-element floating tensors on ``x_seq``'s device.
    store_state_seqs: also return every state's post-reset values of every step.

Returns:
    ``spike_seq`` ``[T, *]`` (dtype of ``x_seq``), ``states_last`` (a tuple, one ``[*]`` per
    state), and ``state_seqs`` (a tuple, one ``[T, *]`` per state) when ``store_state_seqs``
    else ``None``.

Differentiable with respect to ``x_seq``, ``states`` and ``learnables``. The math is the
model's: per step every state is charged, the firing state's charged value ``h`` fires
``s = H(h - threshold)`` with ``H(0) = 1`` (the surrogate's derivative in backward), and every
state is reset; :func:`snn.models.kernel_plan` lowers it to expressions and derives the backward
pass. In training a kernel saves what the plan names (:attr:`snn.models.KernelPlan.saved_states`:
for IF, LIF and PLIF only the charged potentials, plus PLIF's initial potential) and recomputes
spikes in backward; when no gradient is needed it saves nothing.

A *single-step kernel* (kernel mode ``"single_step"``, for neurons in step mode ``'s'``) has the same signature with ``x_seq`` of shape
``[*]`` (one step) and returns ``(spike, states, None)``.

:func:`check_kernel_arguments` checks everything above that does not depend on the backend;
every kernel calls it first, then checks what only it knows (its dtypes, devices and
surrogates, preferably with :meth:`snn.registry.Registry.check_kernel_inputs`). On the way back,
:class:`~snn.dispatch.KernelDispatch` checks a plugin backend's result with
:func:`check_kernel_result` before a neuron stores any of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch

from snn.errors import KernelContractError
from snn.models import NeuronConfig, SurrogateSpec

__all__ = [
    "SurrogateSpec",
    "NeuronConfig",
    "MultiStepKernel",
    "KernelResult",
    "check_kernel_arguments",
    "check_kernel_result",
]

#: What a kernel returns: ``(spike_seq, states_last, state_seqs)``, the spikes ``[T, *]``, the
#: states after the last step (a tuple, one ``[*]`` per state) and, with ``store_state_seqs``,
#: every state's post-reset values (a tuple, one ``[T, *]`` per state), else ``None``; in the
#: dtype of ``x_seq`` (a single-step kernel: ``(spike, states, None)``).
KernelResult = tuple[torch.Tensor, tuple[torch.Tensor, ...], "tuple[torch.Tensor, ...] | None"]


class MultiStepKernel(Protocol):
    """The callable every backend registers for kernel mode ``"multi_step"``."""

    def __call__(
        self,
        x_seq: torch.Tensor,
        states: tuple[torch.Tensor, ...],
        config: NeuronConfig,
        *,
        learnables: tuple[torch.Tensor, ...] = (),
        store_state_seqs: bool = False,
    ) -> KernelResult: ...


def _describe(value: Any) -> str:
    """A short description of a bad argument for error messages (never a tensor's values)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    return f"{type(value).__name__} {value!r}" if value is not None else "None"


def check_kernel_arguments(
    x_seq: Any,
    states: Any,
    config: Any,
    learnables: Any = (),
    *,
    single_step: bool = False,
) -> None:
    """Check a kernel call against the contract, before any backend-specific check.

    Checks, in this order: ``config`` is a :class:`~snn.models.NeuronConfig`; ``x_seq`` is a
    floating-point tensor of shape ``[T, *]`` with ``T >= 1`` (any shape for a single step,
    where the argument is called ``x``); ``states`` is a tuple (or list) with one tensor per
    state of the model, each of one step's shape with ``x_seq``'s dtype and device;
    ``learnables`` holds one one-element floating tensor per learnable parameter of the model,
    on ``x_seq``'s device. Nothing here reads tensor values, synchronises a device or breaks a
    ``torch.compile`` graph.

    Args:
        x_seq: the input, ``[T, *]`` (or ``[*]`` with ``single_step``).
        states: the initial states, ``[*]`` each.
        config: the neuron configuration the kernel was given.
        learnables: the learnable parameters.
        single_step: check a single-step call (``x_seq`` is one step, named ``x``).

    Raises:
        TypeError: ``config`` is not a NeuronConfig; ``x_seq`` is not a floating-point tensor;
            ``states`` or ``learnables`` is not a sequence of tensors; a state with another
            dtype or device than ``x_seq``; a learnable parameter that is not a one-element
            floating tensor on ``x_seq``'s device.
        ValueError: ``x_seq`` has no time steps (rank 0 or ``T == 0``); the number of states or
            learnable parameters differs from the model's; a state of another shape than one
            step of ``x_seq``.
    """
    if not isinstance(config, NeuronConfig):
        raise TypeError(f"config: expected snn.models.NeuronConfig, got {type(config).__name__}")
    model = config.model
    name = "x" if single_step else "x_seq"
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{name}: expected a floating-point tensor, got {type(x_seq).__name__}")
    if not x_seq.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x_seq.dtype}")
    if single_step:
        step_shape, step = x_seq.shape, "the shape of x"
    else:
        if x_seq.dim() == 0 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq: expected shape [T, *] with T >= 1, got {tuple(x_seq.shape)}")
        step_shape, step = x_seq.shape[1:], "one step of x_seq"
    if not isinstance(states, Sequence) or isinstance(states, (str, torch.Tensor)):
        raise TypeError(
            f"states: expected a tuple of {len(model.states)} tensor(s) {model.state_names}, got {_describe(states)}"
        )
    if len(states) != len(model.states):
        raise ValueError(
            f"states: model {model.name!r} has {len(model.states)} state(s) {model.state_names}, got {len(states)}"
        )
    for state_name, value in zip(model.state_names, states):
        label = f"states[{state_name!r}]"
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{label}: expected a tensor, got {type(value).__name__}")
        if value.shape != step_shape:
            raise ValueError(f"{label}: expected shape {tuple(step_shape)} ({step}), got {tuple(value.shape)}")
        if value.dtype != x_seq.dtype or value.device != x_seq.device:
            raise TypeError(
                f"{label}: expected dtype {x_seq.dtype} on {x_seq.device} like {name}, "
                f"got {value.dtype} on {value.device}"
            )
    if not isinstance(learnables, Sequence) or isinstance(learnables, (str, torch.Tensor)):
        raise TypeError(f"learnables: expected a tuple of tensors {model.learnables}, got {_describe(learnables)}")
    if len(learnables) != len(model.learnables):
        raise ValueError(
            f"learnables: model {model.name!r} has learnable parameters {model.learnables}, "
            f"got {len(learnables)} value(s)"
        )
    for param_name, value in zip(model.learnables, learnables):
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point():
            raise TypeError(
                f"learnables[{param_name!r}]: expected a one-element floating tensor, got {_describe(value)}"
            )
        if value.device != x_seq.device:
            raise TypeError(
                f"learnables[{param_name!r}]: expected a tensor on {x_seq.device} like {name}, got one on {value.device}"
            )


def _expect_tensor(backend: str, mode: str, label: str, value: Any, shape: torch.Size, like: torch.Tensor) -> None:
    """Raise :class:`~snn.errors.KernelContractError` unless ``value`` is a tensor of ``shape``
    with ``like``'s dtype and device."""
    if not isinstance(value, torch.Tensor):
        raise KernelContractError(backend, mode, f"{label}: expected a tensor, got {_describe(value)}")
    if value.shape != shape or value.dtype != like.dtype or value.device != like.device:
        raise KernelContractError(
            backend, mode,
            f"{label}: expected shape {tuple(shape)}, dtype {like.dtype} on {like.device}, got {_describe(value)}",
        )


def check_kernel_result(
    backend: str,
    mode: str,
    result: Any,
    x_seq: torch.Tensor,
    n_states: int,
    store_state_seqs: bool = False,
) -> KernelResult:
    """Check what a kernel returned against the contract; return it unchanged (a list where the
    contract says tuple is accepted).

    The result must be ``(spikes, states_last, state_seqs)``: spikes of ``x_seq``'s shape, dtype
    and device; one state per model state, each of one step's shape (all of ``x_seq``'s shape
    in kernel mode ``"single_step"``) with that dtype and device; and, when
    ``store_state_seqs``, one ``[T, *]`` sequence per state, else ``None`` (a sequence given
    anyway is ignored by callers and allowed). Reads no tensor values.

    Args:
        backend: the backend's name (for the message).
        mode: ``"multi_step"`` or ``"single_step"``.
        result: what the kernel returned.
        x_seq: the input the kernel was given.
        n_states: how many states the model has.
        store_state_seqs: whether the state sequences were asked for.

    Raises:
        snn.errors.KernelContractError: the result breaks the contract; the message names the
            backend, the part of the result, what was expected and what came.
    """
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise KernelContractError(
            backend, mode, f"expected a tuple (spikes, states_last, state_seqs), got {_describe(result)}"
        )
    spikes, last, seqs = result
    single = mode == "single_step"
    step_shape = x_seq.shape if single else x_seq.shape[1:]
    _expect_tensor(backend, mode, "spikes", spikes, x_seq.shape, x_seq)
    if not isinstance(last, (tuple, list)) or len(last) != n_states:
        raise KernelContractError(
            backend, mode, f"states_last: expected a tuple of {n_states} tensor(s), got {_describe(last)}"
            + (f" of length {len(last)}" if isinstance(last, (tuple, list)) else ""),
        )
    for index, value in enumerate(last):
        _expect_tensor(backend, mode, f"states_last[{index}]", value, step_shape, x_seq)
    if store_state_seqs and not single:
        if not isinstance(seqs, (tuple, list)) or len(seqs) != n_states:
            raise KernelContractError(
                backend, mode,
                f"state_seqs: store_state_seqs=True asks for a tuple of {n_states} [T, *] tensor(s), got {_describe(seqs)}"
                + (f" of length {len(seqs)}" if isinstance(seqs, (tuple, list)) else ""),
            )
        for index, value in enumerate(seqs):
            _expect_tensor(backend, mode, f"state_seqs[{index}]", value, x_seq.shape, x_seq)
    return cast(KernelResult, result)  # checked above
