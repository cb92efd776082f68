"""The cupy backend's multi-step kernels: IF, LIF and PLIF on CUDA tensors.

Each function follows the neuron-kernel contract of :mod:`snn.kernels`. One forward launch and
(in training) one backward launch run the whole sequence: a thread owns one neuron (two for
float16 with an even neuron count) and loops over time with the potential in registers.
Training saves only the charged potentials ``h_seq`` (PLIF also keeps ``v0`` and the decay);
spikes are recomputed in backward. Without gradients the inference kernel saves nothing.

CuPy is imported on first launch only, so this module imports on machines without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn_cupy import runtime
from snn_cupy.runtime import Executor
from snn_cupy.sources import SUPPORTED_DTYPES, backward_kernel_source, forward_kernel_source
from snn_cupy.templates import KernelSource

__all__ = ["if_multi_step", "lif_multi_step", "plif_multi_step", "run_multi_step", "MAX_STEPS"]

#: The longest sequence one launch handles (the step counter is a 32-bit int).
MAX_STEPS = 2**31 - 1


@dataclass
class _Plan:
    """Sources of one (config, dtype), built on first use."""

    config: NeuronConfig
    dtype: torch.dtype
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


_plans: dict[tuple[NeuronConfig, torch.dtype], _Plan] = {}


def _plan(config: NeuronConfig, dtype: torch.dtype) -> _Plan:
    key = (config, dtype)
    found = _plans.get(key)
    if found is None:
        found = _plans.setdefault(key, _Plan(config, dtype))
    return found


def _vec(dtype: torch.dtype, n: int, tensors: tuple[torch.Tensor | None, ...]) -> int:
    """2 (neuron pairs, 32-bit accesses) for float16 when every buffer allows it, else 1."""
    if dtype != torch.float16 or n % 2:
        return 1
    if all(t is None or t.data_ptr() % 4 == 0 for t in tensors):
        return 2
    return 1


def _forward(
    executor: Executor,
    plan: _Plan,
    x: torch.Tensor,
    v0: torch.Tensor,
    k: torch.Tensor | None,
    train: bool,
    store_v_seq: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Launch the forward kernel on contiguous ``x`` ``[T, N]`` and ``v0`` ``[N]``.

    Returns:
        ``(spike_seq [T, N], h_seq [T, N] | None, v_seq [T, N] | None, v_last [N])``.
    """
    steps, n = x.shape
    spikes = torch.empty_like(x)
    h_seq = torch.empty_like(x) if train else None
    v_seq = torch.empty_like(x) if store_v_seq else None
    v_last = torch.empty_like(v0)
    vec = _vec(x.dtype, n, (x, v0))
    source = plan.source("fwd_train" if train else "fwd_infer")
    function = executor.function(source, vec, x.device)
    units = n // vec
    executor.launch(
        function, units,
        (x, v0, k, spikes, h_seq, v_seq, v_last, units, runtime.Int32(steps)),
        x.device,
    )
    return spikes, h_seq, v_seq, v_last


def _backward(
    executor: Executor,
    plan: _Plan,
    h_seq: torch.Tensor,
    v0: torch.Tensor | None,
    k: torch.Tensor | None,
    grad_spikes: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    need_x: bool,
    need_v0: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Launch the backward kernel; returns ``(grad_x [T, N], grad_v0 [N], grad_decay 0-dim)``."""
    steps, n = h_seq.shape
    grad_spikes = None if grad_spikes is None else grad_spikes.to(h_seq.dtype).contiguous()
    grad_v_seq = None if grad_v_seq is None else grad_v_seq.to(h_seq.dtype).contiguous()
    grad_v_last = None if grad_v_last is None else grad_v_last.to(h_seq.dtype).reshape(n).contiguous()
    grad_x = torch.empty_like(h_seq) if need_x else None
    grad_v0 = torch.empty((n,), dtype=h_seq.dtype, device=h_seq.device) if need_v0 else None
    vec = _vec(h_seq.dtype, n, (h_seq, v0, grad_spikes, grad_v_seq, grad_v_last))
    units = n // vec
    partial = None
    if k is not None:
        blocks = (units + executor.block_size - 1) // executor.block_size
        partial = torch.empty((blocks,), dtype=torch.float32, device=h_seq.device)
    function = executor.function(plan.source("bwd"), vec, h_seq.device)
    executor.launch(
        function, units,
        (grad_spikes, grad_v_seq, grad_v_last, h_seq, v0, k, grad_x, grad_v0, partial, units,
         runtime.Int32(steps)),
        h_seq.device,
    )
    grad_decay = partial.sum() if partial is not None else None
    return grad_x, grad_v0, grad_decay


class _MultiStepFunction(torch.autograd.Function):
    """Autograd node of one launch: saves ``h_seq`` (plus ``v0`` and the decay for PLIF)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        v0: torch.Tensor,
        k: torch.Tensor | None,
        plan: _Plan,
        executor: Executor,
        store_v_seq: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        spikes, h_seq, v_seq, v_last = _forward(executor, plan, x, v0, k, True, store_v_seq)
        ctx.set_materialize_grads(False)
        ctx.plan = plan
        ctx.executor = executor
        ctx.has_k = k is not None
        if k is not None:
            ctx.save_for_backward(h_seq, v0, k)
        else:
            ctx.save_for_backward(h_seq)
        return spikes, v_last, v_seq

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any,
        grad_spikes: torch.Tensor | None,
        grad_v_last: torch.Tensor | None,
        grad_v_seq: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        if grad_spikes is None and grad_v_last is None and grad_v_seq is None:
            return None, None, None, None, None, None
        if ctx.has_k:
            h_seq, v0, k = ctx.saved_tensors
        else:
            (h_seq,), v0, k = ctx.saved_tensors, None, None
        need_x, need_v0, need_k = ctx.needs_input_grad[:3]
        grad_x, grad_v0, grad_decay = _backward(
            ctx.executor, ctx.plan, h_seq, v0, k, grad_spikes, grad_v_seq, grad_v_last, need_x, need_v0
        )
        grad_k = None
        if need_k and grad_decay is not None and k is not None:
            grad_k = grad_decay.reshape(k.shape).to(k.dtype)
        return grad_x, grad_v0, grad_k, None, None, None


def _check(kind: str, x_seq: Any, v0: Any, config: Any, w: Any, device_type: str) -> None:
    """The contract's checks, then what only these kernels need: their dtypes, the executor's
    device type and a step count that fits the kernels' 32-bit counter."""
    check_kernel_arguments(kind, x_seq, v0, config, w)
    if x_seq.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"x_seq: the cupy kernels support torch.float32 and torch.float16, got {x_seq.dtype}"
        )
    if x_seq.shape[0] > MAX_STEPS:
        raise ValueError(f"x_seq: at most {MAX_STEPS} time steps per call, got {x_seq.shape[0]}")
    if x_seq.device.type != device_type:
        what = "a CUDA tensor" if device_type == "cuda" else f"a tensor on {device_type!r}"
        raise ValueError(f"x_seq: the cupy kernels need {what}, got one on {x_seq.device}")


def run_multi_step(
    kind: str,
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    w: torch.Tensor | None,
    store_v_seq: bool,
    executor: Executor = runtime.CUPY,
) -> KernelResult:
    """The multi-step kernel of ``kind`` on ``executor`` (the contract of :mod:`snn.kernels`).

    Args:
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        x_seq: ``[T, *]`` input on the executor's device type.
        v0: ``[*]`` initial potential.
        config: the neuron configuration of that kind.
        w: PLIF's parameter, else ``None``.
        store_v_seq: also return the post-reset potentials.
        executor: where to compile and launch (default: CUDA through CuPy).

    Returns:
        ``(spike_seq, v_last, v_seq | None)``.
    """
    _check(kind, x_seq, v0, config, w, executor.device_type)
    shape = x_seq.shape
    steps = shape[0]
    n = math.prod(shape[1:])
    plan = _plan(config, x_seq.dtype)
    x2 = x_seq.reshape(steps, n).contiguous()
    u0 = v0.reshape(n).contiguous()
    k = torch.sigmoid(w.reshape(())).to(torch.float32).contiguous() if w is not None else None
    needs_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or v0.requires_grad or (w is not None and w.requires_grad)
    )
    if needs_grad:
        spikes, v_last, v_seq = _MultiStepFunction.apply(x2, u0, k, plan, executor, bool(store_v_seq))
    else:
        with torch.no_grad():
            spikes, _, v_seq, v_last = _forward(
                executor, plan, x2, u0, None if k is None else k.detach(), False, bool(store_v_seq)
            )
    return (
        spikes.view(shape),
        v_last.view(shape[1:]),
        v_seq.view(shape) if v_seq is not None else None,
    )


def if_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Integrate-and-fire over a sequence on the GPU: ``h = v + x``.

    Args:
        x_seq: ``[T, *]`` CUDA tensor, float32 or float16, any strides.
        v0: ``[*]`` initial potential, same dtype and device.
        config: a :class:`~snn.kernels.NeuronConfig` of kind ``"if"``.
        w: must be ``None``.
        store_v_seq: also return the post-reset potentials.

    Returns:
        ``(spike_seq [T, *], v_last [*], v_seq [T, *] | None)`` in ``x_seq``'s dtype.

    Raises:
        TypeError: unsupported dtype, dtype or device mismatch, a ``w``.
        ValueError: not a CUDA tensor, shape mismatch, ``T == 0``, a config of another kind or
            with a parameter that cannot be compiled.
    """
    return run_multi_step("if", x_seq, v0, config, w, store_v_seq)


def lif_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Leaky integrate-and-fire over a sequence on the GPU (``k = 1 / config.tau``).

    ``h = v + (x - (v - vr)) k`` with ``decay_input``, else ``h = v - (v - vr) k + x``.
    Arguments, returns and errors as :func:`if_multi_step`.
    """
    return run_multi_step("lif", x_seq, v0, config, w, store_v_seq)


def plif_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Parametric LIF over a sequence on the GPU: LIF with ``k = sigmoid(w)``.

    The decay is read on the device (no host synchronisation); its gradient is reduced per
    block in shared memory and the block sums are added by torch (deterministic).

    Args:
        w: the 0-dim learnable parameter (required), on the same device.

    Other arguments, returns and errors as :func:`if_multi_step`; ``TypeError`` when ``w`` is
    missing.
    """
    return run_multi_step("plif", x_seq, v0, config, w, store_v_seq)
