"""The cupy backend's multi-step kernel: every neuron model whose plan it renders, on CUDA tensors.

:func:`multi_step` follows the neuron-kernel contract of :mod:`snn.kernels`. One forward launch
and (in training) one backward launch run the whole sequence, from sources generated per
configuration (:mod:`snn_cupy.sources`): a thread owns one neuron (two for float16 with an even
neuron count) and loops over time with the states in registers. Training saves what the model's
plan names (:attr:`snn.models.KernelPlan.saved_states`, in float32; the input or initial states
when the plan needs them); spikes and previous states are recomputed in backward. Without
gradients the inference kernel saves nothing.

Learnable parameters reach the kernels as one-element float32 device tensors (no host
synchronisation); their gradients are reduced per block in shared memory and the block sums
are added by torch (deterministic, no atomics).

CuPy is imported on first launch only, so this module imports on machines without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn.models import KernelPlan, kernel_plan
from snn_cupy import runtime
from snn_cupy.plugin import OPERATIONS
from snn_cupy.runtime import Executor
from snn_cupy.sources import SUPPORTED_DTYPES, backward_kernel_source, forward_kernel_source
from snn_cupy.templates import KernelSource

__all__ = ["MAX_STEPS", "multi_step", "run_multi_step"]

#: The longest sequence one launch handles (the step counter is a 32-bit int).
MAX_STEPS = 2**31 - 1

@dataclass
class _Kit:
    """The plan and sources of one (config, dtype), built on first use."""

    config: NeuronConfig
    dtype: torch.dtype
    plan: KernelPlan
    _sources: dict[str, KernelSource] = field(default_factory=dict)

    def source(self, role: str) -> KernelSource:
        found = self._sources.get(role)
        if found is None:
            if role == "bwd":
                found = backward_kernel_source(self.config, self.dtype)
            else:
                found = forward_kernel_source(self.config, self.dtype, role == "fwd_train")
            self._sources[role] = found
        return found


_kits: dict[tuple[NeuronConfig, torch.dtype], _Kit] = {}


def _kit(config: NeuronConfig, dtype: torch.dtype) -> _Kit:
    key = (config, dtype)
    found = _kits.get(key)
    if found is None:
        if len(_kits) > 1024:
            _kits.clear()
        found = _kits.setdefault(key, _Kit(config, dtype, kernel_plan(config)))
    return found


def _vec(dtype: torch.dtype, n: int, tensors: tuple[torch.Tensor | None, ...]) -> int:
    """2 (neuron pairs: 32-bit float16 and 64-bit float32 accesses) for float16 when every
    buffer is aligned for it, else 1."""
    if dtype != torch.float16 or n % 2:
        return 1
    for t in tensors:
        if t is not None and t.data_ptr() % (4 if t.dtype == torch.float16 else 8):
            return 1
    return 2


def _launch(executor: Executor, source: KernelSource, vec: int, units: int, steps: int,
            args: dict[str, torch.Tensor | None], device: torch.device) -> None:
    """Launch ``source`` with the pointer arguments named by its parameters."""
    function = executor.function(source, vec, device)
    pointers = tuple(args.get(name) for name in source.params)
    executor.launch(function, units, (*pointers, units, runtime.Int32(steps)), device)


def _forward(
    executor: Executor,
    kit: _Kit,
    x: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    params: tuple[torch.Tensor, ...],
    train: bool,
    store: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None, dict[int, torch.Tensor]]:
    """Launch the forward kernel on contiguous ``x`` ``[T, N]`` and states ``[N]``.

    Returns:
        ``(spike_seq [T, N], last states [N], state sequences [T, N] | None, saved h by state
        index (float32 [T, N]; empty for inference))``.
    """
    steps, n = x.shape
    plan = kit.plan
    spikes = torch.empty_like(x)
    saved = {j: torch.empty((steps, n), dtype=torch.float32, device=x.device) for j in plan.saved_states} if train else {}
    seqs = [torch.empty_like(x) for _ in states] if store else None
    last = [torch.empty_like(s) for s in states]
    args: dict[str, torch.Tensor | None] = {"x_seq": x, "spike_seq": spikes}
    for i, s in enumerate(states):
        args[f"init{i}"] = s
        args[f"last{i}"] = last[i]
        args[f"seq{i}"] = seqs[i] if seqs is not None else None
    for k, p in enumerate(params):
        args[f"learn{k}"] = p
    for j, h in saved.items():
        args[f"saved_h{j}"] = h
    vec = _vec(x.dtype, n, (x, *states))
    _launch(executor, kit.source("fwd_train" if train else "fwd_infer"), vec, n // vec, steps, args, x.device)
    return spikes, last, seqs, saved


def _params(learnables: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The learnable parameters as one-element float32 tensors on ``device`` (no host sync)."""
    return tuple(p.detach().reshape(1).to(device=device, dtype=torch.float32).contiguous() for p in learnables)


class _SequenceFunction(torch.autograd.Function):
    """Autograd node of one forward launch: saves what the plan names, nothing else."""

    @staticmethod
    def forward(
        ctx: Any,
        kit: _Kit,
        executor: Executor,
        store: bool,
        m: int,
        x: torch.Tensor,
        *rest: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        states, learnables = tuple(rest[:m]), tuple(rest[m:])
        params = _params(learnables, x.device)
        spikes, last, seqs, saved = _forward(executor, kit, x, states, params, True, store)
        plan = kit.plan
        ctx.set_materialize_grads(False)
        ctx.kit, ctx.executor, ctx.store, ctx.m = kit, executor, store, m
        ctx.shape = tuple(x.shape)
        ctx.learnable_meta = [(p.shape, p.dtype) for p in learnables]
        tensors = [saved[j] for j in plan.saved_states]
        tensors += [states[i] for i in plan.initial_states_needed]
        tensors += [x] if plan.save_input else []
        ctx.save_for_backward(*tensors, *params)
        return (spikes, *last, *(seqs or ()))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, *grads: torch.Tensor | None) -> tuple[Any, ...]:
        kit: _Kit = ctx.kit
        plan, m = kit.plan, ctx.m
        n_fixed = 5
        nothing = (None,) * (n_fixed + m + len(ctx.learnable_meta))
        grad_last = list(grads[:m])
        grad_seqs = list(grads[m:]) if ctx.store else [None] * m
        if grad_spikes is None and all(g is None for g in (*grad_last, *grad_seqs)):
            return nothing
        needs = ctx.needs_input_grad
        saved = list(ctx.saved_tensors)
        steps, n = ctx.shape
        dtype = kit.dtype
        device = saved[0].device
        args: dict[str, torch.Tensor | None] = {}
        for j in plan.saved_states:
            args[f"saved_h{j}"] = saved.pop(0)
        for i in plan.initial_states_needed:
            args[f"init{i}"] = saved.pop(0)
        if plan.save_input:
            args["x_seq"] = saved.pop(0)
        for k, p in enumerate(saved):
            args[f"learn{k}"] = p

        def prepared(g: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
            return None if g is None else g.to(dtype).reshape(shape).contiguous()

        args["grad_spike_seq"] = prepared(grad_spikes, (steps, n))
        for i in range(m):
            args[f"grad_seq{i}"] = prepared(grad_seqs[i], (steps, n))
            args[f"grad_last{i}"] = prepared(grad_last[i], (n,))
        grad_x = torch.empty((steps, n), dtype=dtype, device=device) if needs[4] else None
        grad_init = [torch.empty((n,), dtype=dtype, device=device) if needs[n_fixed + i] else None for i in range(m)]
        args["grad_x_seq"] = grad_x
        for i in range(m):
            args[f"grad_init{i}"] = grad_init[i]
        paired = [t for name, t in args.items() if not name.startswith(("learn", "grad_learn"))]
        vec = _vec(dtype, n, tuple(paired))
        units = n // vec
        executor: Executor = ctx.executor
        blocks = (units + executor.block_size - 1) // executor.block_size
        partials: list[torch.Tensor | None] = []
        for k in range(len(ctx.learnable_meta)):
            partial = torch.empty((blocks,), dtype=torch.float32, device=device) if needs[n_fixed + m + k] else None
            args[f"grad_learn{k}"] = partial
            partials.append(partial)
        _launch(executor, kit.source("bwd"), vec, units, steps, args, device)
        grad_params = [
            None if partial is None else partial.sum().reshape(shape).to(p_dtype)
            for partial, (shape, p_dtype) in zip(partials, ctx.learnable_meta)
        ]
        return (None, None, None, None, grad_x, *grad_init, *grad_params)


def _check(x_seq: Any, states: Any, config: Any, learnables: Any, executor: Executor) -> None:
    """The contract's checks, then this backend's: what its registration serves (dtype, device,
    model, surrogate), the executor's device type and a step count that fits the kernels'
    32-bit counter."""
    check_kernel_arguments(x_seq, states, config, learnables)
    from snn.plugins import get_registry

    registry = get_registry()
    if executor.backend in registry.backends:
        registry.check_kernel_inputs(executor.backend, x_seq.device.type, x_seq.dtype, config)
    else:  # an executor used directly (tests): the same checks, without the registry's listing
        from snn.errors import UnsupportedOperationError

        if x_seq.dtype not in SUPPORTED_DTYPES:
            raise UnsupportedOperationError(executor.backend, f"dtype {x_seq.dtype}", [])
        missing = kernel_plan(config).operations - set(OPERATIONS)
        if missing:
            raise UnsupportedOperationError(executor.backend, f"operations {sorted(missing)}", [])
    if x_seq.shape[0] > MAX_STEPS:
        raise ValueError(f"x_seq: at most {MAX_STEPS} time steps per call, got {x_seq.shape[0]}")
    if x_seq.device.type != executor.device_type:
        what = "a CUDA tensor" if executor.device_type == "cuda" else f"a tensor on {executor.device_type!r}"
        raise ValueError(f"x_seq: the {executor.backend} kernels need {what}, got one on {x_seq.device}")


def run_multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
    executor: Executor = runtime.CUPY,
) -> KernelResult:
    """The multi-step kernel on ``executor`` (the contract of :mod:`snn.kernels`).

    Args:
        x_seq: ``[T, *]`` input on the executor's device type, float32 or float16.
        states: the model's initial states, ``[*]`` each.
        config: the neuron configuration.
        learnables: the model's learnable parameters (one-element tensors).
        store_state_seqs: also return the post-reset state sequences.
        executor: where to compile and launch (default: CUDA through CuPy).

    Returns:
        ``(spike_seq, states_last, state_seqs | None)``.
    """
    _check(x_seq, states, config, learnables, executor)
    shape = x_seq.shape
    steps = shape[0]
    n = math.prod(shape[1:])
    kit = _kit(config, x_seq.dtype)
    m = len(states)
    x2 = x_seq.reshape(steps, n).contiguous()
    s2 = tuple(s.reshape(n).contiguous() for s in states)
    learnables = tuple(learnables)
    store = bool(store_state_seqs)
    needs_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or any(s.requires_grad for s in states) or any(p.requires_grad for p in learnables)
    )
    if needs_grad:
        outputs = _SequenceFunction.apply(kit, executor, store, m, x2, *s2, *learnables)
        spikes, last = outputs[0], list(outputs[1 : 1 + m])
        seqs = list(outputs[1 + m :]) if store else None
    else:
        with torch.no_grad():
            spikes, last, seqs, _ = _forward(executor, kit, x2, s2, _params(learnables, x2.device), False, store)
    return (
        spikes.view(shape),
        tuple(v.view(shape[1:]) for v in last),
        tuple(v.view(shape) for v in seqs) if seqs is not None else None,
    )


def multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """Run any neuron model whose plan the backend renders over a sequence on the GPU.

    Args:
        x_seq: ``[T, *]`` CUDA tensor, float32 or float16, any strides.
        states: the model's initial states (``config.model.state_names`` order), ``[*]`` each,
            same dtype and device.
        config: the layer's :class:`~snn.models.NeuronConfig`.
        learnables: the model's learnable parameters (one-element tensors on the same device).
        store_state_seqs: also return every state's post-reset sequence.

    Returns:
        ``(spike_seq [T, *], states_last ([*], ...), state_seqs ([T, *], ...) | None)`` in
        ``x_seq``'s dtype.

    Raises:
        TypeError: non-floating input, dtype or device mismatch, a bad learnable (the contract's
            :func:`~snn.kernels.check_kernel_arguments`).
        ValueError: shape mismatch, ``T == 0`` or too many steps, the wrong number of states or
            learnables, not a CUDA tensor.
        snn.errors.UnsupportedOperationError: a dtype, model or surrogate the backend does not
            serve (e.g. bfloat16).
        snn.errors.BackendUnavailableError: CuPy or a CUDA device is missing here (the probe's
            reason, e.g. the install command), when this function is called directly.
    """
    return run_multi_step(x_seq, states, config, learnables, store_state_seqs, runtime.CUPY)
