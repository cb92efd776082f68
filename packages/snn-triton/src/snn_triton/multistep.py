"""The multi-step kernel of the ``"triton"`` backend (the neuron-kernel contract of
:mod:`snn.kernels`), for every neuron model whose kernel plan uses operations the generator
renders::

    multi_step(x_seq, states, config, *, learnables=(), store_state_seqs=False)
        -> (spike_seq, states_last, state_seqs | None)

One Triton launch runs the whole sequence forward and one runs it backward; the kernels are
generated per configuration from its :class:`~snn.models.KernelPlan` (see
:mod:`snn_triton.codegen`). Inputs of any strides are accepted (made contiguous ``[T, N]``
when they are not); storage is float32, float16 or bfloat16 with float32 arithmetic. With a
gradient needed the forward saves what the plan names (float32 charged values, and the input or
initial states where the plan says so); without, it saves nothing.

Usage (normally through a neuron's ``backend="triton"``)::

    from snn.neuron import LIFNode
    from snn_triton.multistep import multi_step

    config = LIFNode(tau=2.0).neuron_config()
    spike_seq, (v_last,), _ = multi_step(x_seq.cuda(), (torch.zeros_like(x_seq[0]).cuda(),), config)

The function is traceable by ``torch.compile(fullgraph=True)``: the kernels are the custom
operators of :mod:`snn_triton.ops`, and the configuration reaches them as a string computed
once per configuration.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from snn.errors import UnsupportedOperationError
from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn_triton import ops
from snn_triton.plugin import BACKEND_NAME
from snn_triton.runtime import interpreter_enabled

__all__ = ["multi_step"]


@functools.lru_cache(maxsize=4096)
def _checked_encoding(registry: Any, config: NeuronConfig, device: str, dtype: torch.dtype) -> str:
    registry.check_kernel_inputs(BACKEND_NAME, device, dtype, config)
    return ops.encode_config(config)


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # torch leaves it untyped
def _encoded(config: NeuronConfig, device: str, dtype: torch.dtype) -> str:
    """``config`` as the operators' string, after the registry's checks of what this backend
    serves (model, surrogate, device, dtype), cached per registry; Dynamo treats the result as a
    constant."""
    from snn.plugins import get_registry

    return _checked_encoding(get_registry(), config, device, dtype)


def _check(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    learnables: tuple[torch.Tensor, ...],
) -> str:
    """The contract's checks, then this backend's; returns the encoded configuration."""
    check_kernel_arguments(x_seq, states, config, learnables)
    device = x_seq.device.type
    if not (device == "cuda" or (device == "cpu" and interpreter_enabled())):
        # decided now, not at registration: TRITON_INTERPRET may have changed since
        from snn.plugins import get_registry

        registry = get_registry()
        raise UnsupportedOperationError(
            BACKEND_NAME,
            f"tensors on device {device!r} (CUDA only; TRITON_INTERPRET=1 emulates it on CPU for tests)",
            [name for name, info in registry.backends.items() if info.serves_device(device) and name != BACKEND_NAME],
        )
    return _encoded(config, device, x_seq.dtype)


def multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """Run any served neuron model over a sequence (one fused launch forward, one backward).

    Args:
        x_seq: ``[T, *]`` input, float32 / float16 / bfloat16, on CUDA (or CPU under
            ``TRITON_INTERPRET=1``), any strides.
        states: the model's initial states in its order, ``[*]`` each, same dtype and device.
        config: the layer's :class:`~snn.models.NeuronConfig`; its model must be registered.
        learnables: the model's learnable parameters (one-element floating tensors on the
            device); their gradients are reduced deterministically (per-program partial sums
            added by torch).
        store_state_seqs: also return every state's post-reset sequence.

    Returns:
        ``(spike_seq [T, *], states_last ([*], ...), state_seqs ([T, *], ...) | None)`` in
        ``x_seq``'s dtype.

    Raises:
        TypeError, ValueError: bad arguments (named in the message).
        snn.errors.UnsupportedOperationError: a device, dtype, model or surrogate this backend
            does not serve.
    """
    encoded = _check(x_seq, states, config, learnables)
    shape = x_seq.shape
    steps = shape[0]
    n = math.prod(shape[1:])
    needs_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or any(s.requires_grad for s in states) or any(p.requires_grad for p in learnables)
    )
    spikes, last, seqs, _ = torch.ops.snn_triton.multi_step_forward(
        x_seq.reshape(steps, n), [s.reshape(n) for s in states], list(learnables), encoded, needs_grad,
        bool(store_state_seqs),
    )
    return (
        spikes.view(shape),
        tuple(v.view(shape[1:]) for v in last),
        tuple(v.view(shape) for v in seqs) if store_state_seqs else None,
    )
