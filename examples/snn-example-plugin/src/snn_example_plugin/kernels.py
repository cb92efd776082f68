"""The ``example`` backend's multi-step LIF kernel: the contract, spelled out.

This is the slowest correct way to run a LIF layer: a Python loop over time
with one small autograd graph per step, so PyTorch derives the backward pass.
It is meant to be read, and to show what a backend with a hand-written kernel
must do (the contract is :mod:`snn.kernels`):

- accept ``x_seq`` ``[T, *]`` with any trailing shape and strides and the
  model's states, and refuse anything else with a typed error naming the
  argument (:func:`snn.kernels.check_kernel_arguments` for the contract,
  :meth:`snn.registry.Registry.check_kernel_inputs` for what the backend
  registered: devices, dtypes, the models it named and its surrogates);
- charge, fire and reset exactly as the LIF model says (``H(0) = 1``; hard or
  soft reset; ``detach_reset`` cuts the gradient through the reset only);
- use the surrogate derivative that snn derives from the same math as every
  other backend (:func:`snn.surrogate.derivative_function`), so gradients
  agree with the reference;
- return ``(spike_seq, (v_last,), (v_seq,) or None)``, differentiable with
  respect to ``x_seq`` and the initial potential.

A real backend would fuse the loop into one kernel launch, save only the
charged potentials and recompute spikes in its own backward; a
code-generating one would serve every model (see ``snn.backends.torch``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn_example_plugin.plugin import BACKEND_NAME

__all__ = ["lif_multi_step"]


class _FireWithSurrogate(torch.autograd.Function):
    """``s = H(u)``, with ``H(0) = 1``; backward ``dL/du = dL/ds * g(u)``."""

    @staticmethod
    def forward(
        ctx: Any, u: torch.Tensor, derivative: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.derivative = derivative
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(
        ctx: Any, grad_spike: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad_spike * ctx.derivative(u), None


def lif_multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """Run a LIF layer over a whole sequence.

    Args:
        x_seq: ``[T, *]`` input currents, float32 or float64.
        states: ``(v0,)``, the ``[*]`` initial membrane potential (same
            dtype and device).
        config: the layer's :class:`~snn.models.NeuronConfig` (model
            ``"lif"``).
        learnables: must be empty (LIF has no learnable parameter).
        store_state_seqs: also return the post-reset potential of every step.

    Returns:
        ``(spike_seq [T, *], (v_last [*],), (v_seq [T, *],) or None)`` in
        ``x_seq``'s dtype.

    Raises:
        TypeError / ValueError: arguments that do not follow the contract
            (named in the message).
        snn.errors.UnsupportedOperationError: a device, dtype, model or
            surrogate this backend did not register.
    """
    from snn.plugins import get_registry
    from snn.surrogate import derivative_function

    # what every kernel checks (types, shapes, dtypes, devices, counts) ...
    check_kernel_arguments(x_seq, states, config, learnables)
    # ... and what this backend registered: devices, dtypes, models and
    # surrogates (an UnsupportedOperationError naming the backends that do)
    get_registry().check_kernel_inputs(
        BACKEND_NAME, x_seq.device.type, x_seq.dtype, config
    )
    derivative = derivative_function(config.surrogate)
    hyper = config.hyper
    tau, v_threshold = hyper["tau"], hyper["v_threshold"]
    v_reset = hyper["v_reset"]
    vr = 0.0 if v_reset is None else v_reset
    (v,) = states
    spikes: list[torch.Tensor] = []
    potentials: list[torch.Tensor] = []
    for x in x_seq.unbind(0):
        # charge
        if hyper["decay_input"]:
            h = v + (x - (v - vr)) / tau
        else:
            h = v - (v - vr) / tau + x
        # fire
        s = _FireWithSurrogate.apply(h - v_threshold, derivative)
        # reset
        s_reset = s.detach() if config.detach_reset else s
        if v_reset is not None:
            v = s_reset * vr + (1.0 - s_reset) * h
        else:
            v = h - s_reset * v_threshold
        spikes.append(s)
        if store_state_seqs:
            potentials.append(v)
    spike_seq = torch.stack(spikes)
    v_seq = (torch.stack(potentials),) if store_state_seqs else None
    return spike_seq, (v,), v_seq
