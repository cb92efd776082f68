"""The ``example`` backend's multi-step LIF kernel: the contract of :mod:`snn.kernels`, spelled out.

This is the slowest correct way to run a LIF layer: a Python loop over time with one small
autograd graph per step, so PyTorch derives the backward pass. It is meant to be read, and to
show what a backend must do:

- accept ``x_seq`` ``[T, *]`` with any trailing shape and strides, ``v0`` ``[*]``, and refuse
  anything else with a typed error naming the argument (:func:`snn.kernels.check_kernel_arguments`
  for the contract, :meth:`snn.registry.Registry.check_kernel_inputs` for what the backend
  registered);
- charge, fire and reset exactly as the contract says (``H(0) = 1``; hard or soft reset;
  ``detach_reset`` cuts the gradient through the reset only);
- use the surrogate derivative that snn derives from the same math as every other backend
  (:func:`snn.surrogate.derivative_function`), so gradients agree with the torch reference;
- return ``(spike_seq, v_last, v_seq or None)``, differentiable with respect to ``x_seq`` and
  ``v0``.

A real backend would fuse the loop into one kernel launch, save only the charged potentials and
recompute spikes in its own backward (see ``snn.backends.torch``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn_example_plugin.plugin import BACKEND_NAME

__all__ = ["lif_multi_step"]


class _FireWithSurrogate(torch.autograd.Function):
    """``s = H(u)`` forward (``H(0) = 1``); ``dL/du = dL/ds * g(u)`` backward."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, derivative: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.derivative = derivative
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad_spike: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad_spike * ctx.derivative(u), None


def lif_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Run a LIF layer over a whole sequence.

    Args:
        x_seq: ``[T, *]`` input currents, float32 or float64.
        v0: ``[*]`` initial membrane potential (same dtype and device).
        config: the layer's :class:`~snn.kernels.NeuronConfig` (kind ``"lif"``).
        w: must be ``None`` (PLIF's parameter; this backend has no PLIF kernel).
        store_v_seq: also return the post-reset potential of every step.

    Returns:
        ``(spike_seq [T, *], v_last [*], v_seq [T, *] or None)`` in ``x_seq``'s dtype.

    Raises:
        TypeError / ValueError: arguments that do not follow the contract (named in the message).
        snn.errors.UnsupportedOperationError: a device, dtype or surrogate this backend did not
            register.
    """
    from snn.plugins import get_registry
    from snn.surrogate import derivative_function

    # what every kernel checks (types, shapes, dtypes, devices, w, the config's kind) ...
    check_kernel_arguments("lif", x_seq, v0, config, w)
    # ... and what this backend registered: devices, dtypes and surrogates (an
    # UnsupportedOperationError naming the backends that do serve the call)
    get_registry().check_kernel_inputs(BACKEND_NAME, x_seq.device.type, x_seq.dtype, config.surrogate.name)
    derivative = derivative_function(config.surrogate)
    tau = config.tau
    vr = config.reset_potential
    v = v0
    spikes: list[torch.Tensor] = []
    potentials: list[torch.Tensor] = []
    for x in x_seq.unbind(0):
        # charge
        if config.decay_input:
            h = v + (x - (v - vr)) / tau
        else:
            h = v - (v - vr) / tau + x
        # fire
        s = _FireWithSurrogate.apply(h - config.v_threshold, derivative)
        # reset
        s_reset = s.detach() if config.detach_reset else s
        if config.hard_reset:
            v = s_reset * vr + (1.0 - s_reset) * h
        else:
            v = h - s_reset * config.v_threshold
        spikes.append(s)
        if store_v_seq:
            potentials.append(v)
    spike_seq = torch.stack(spikes)
    v_seq = torch.stack(potentials) if store_v_seq else None
    return spike_seq, v, v_seq
