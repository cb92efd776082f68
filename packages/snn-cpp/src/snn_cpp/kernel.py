"""The multi-step kernel of the ``"cpp"`` backend (the neuron-kernel contract of :mod:`snn.kernels`).

:func:`multi_step` checks its arguments, flattens the neurons to ``[T, N]`` and calls the custom
operator :func:`snn_cpp.ops.forward`, which compiles the configuration's kernels on first use
(see :mod:`snn_cpp.build`). Training saves what the plan names; inference saves nothing.

Usage (normally through a neuron's ``backend="cpp"`` or ``backend="auto"``)::

    from snn.neuron import LIFNode
    from snn_cpp.kernel import multi_step

    config = LIFNode(tau=2.0).neuron_config()
    spike_seq, (v_last,), _ = multi_step(x_seq, (torch.zeros_like(x_seq[0]),), config)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn_cpp import ops

__all__ = ["BACKEND_NAME", "multi_step", "prepare"]

#: The registered name of this backend.
BACKEND_NAME = "cpp"


_prepared: dict[tuple[NeuronConfig, str, torch.dtype], tuple[Any, str]] = {}


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # torch leaves it untyped
def prepare(config: NeuronConfig, device_type: str, dtype: torch.dtype) -> str:
    """The registry's check of what this backend serves, then the configuration's operator key
    (remembered per configuration, device type, dtype and registry).

    Raises:
        snn.errors.UnsupportedOperationError: a device, dtype, model or surrogate this backend
            does not serve.
    """
    from snn.plugins import get_registry

    registry = get_registry()
    found = _prepared.get((config, device_type, dtype))
    if found is not None and found[0] is registry:
        return found[1]
    registry.check_kernel_inputs(BACKEND_NAME, device_type, dtype, config)
    key = ops.configuration_key(config)
    _prepared[(config, device_type, dtype)] = (registry, key)
    return key


def multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """Run any served neuron model over a sequence with the compiled CPU kernels.

    Args:
        x_seq: ``[T, *]`` input, float32 or float64 on the CPU, any strides.
        states: the initial states of the model (``[*]`` each), same dtype and device.
        config: the layer's :class:`~snn.models.NeuronConfig`.
        learnables: the model's learnable parameters (one-element tensors).
        store_state_seqs: also return every state's post-reset sequence.

    Returns:
        ``(spike_seq [T, *], last states ([*], ...), state sequences ([T, *], ...) | None)`` in
        ``x_seq``'s dtype; differentiable with respect to ``x_seq``, the states and the learnables.

    Raises:
        TypeError: non-floating input, dtype or device mismatch, a bad learnable.
        ValueError: shape mismatch, ``T == 0``, the wrong number of states or learnables.
        snn.errors.UnsupportedOperationError: a dtype, device, model or surrogate this backend
            does not serve.
    """
    check_kernel_arguments(x_seq, states, config, learnables)
    key = prepare(config, x_seq.device.type, x_seq.dtype)
    shape = x_seq.shape
    steps = shape[0]
    n = math.prod(shape[1:])
    x2 = x_seq.reshape(steps, n)
    states2 = [s.reshape(n) for s in states]
    params = [p.reshape(1).to(x_seq.dtype) for p in learnables]
    store = bool(store_state_seqs)
    save = torch.is_grad_enabled() and (
        x_seq.requires_grad or any(s.requires_grad for s in states) or any(p.requires_grad for p in learnables)
    )
    out = ops.forward(x2, states2, params, key, save, store)
    m = len(states2)
    spikes = out[0].view(shape)
    last = tuple(v.view(shape[1:]) for v in out[1 : 1 + m])
    seqs = tuple(v.view(shape) for v in out[1 + m : 1 + 2 * m]) if store else None
    return spikes, last, seqs
