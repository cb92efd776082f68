"""Layers that carry OTTT's ``[spike, trace]`` pairs through a network.

An :class:`~snn_online.neuron.OTTTLIFNode` in training mode emits a list ``[spike, trace]``:
the spikes ``s_t`` of this step and the presynaptic eligibility trace
``a_t = (1 - 1/tau) * a_{t-1} + s_t``. The next layer must *compute* with the spikes (that is
what the network's output and loss see) but take its *weight gradient* from the trace, so that
``dL_t/dW = delta_t * a_t^T`` (OTTT, Xiao et al., NeurIPS 2022). The pieces here do exactly
that:

- :class:`ReplaceforGrad`: an autograd function that shows one tensor's values and sends its
  incoming gradient to two tensors;
- :class:`GradwithTrace`: wraps a layer with parameters; value of ``module(spike)``, gradients
  of ``module(trace)`` (parameter gradients use the trace; the input gradient reaches both
  ``spike`` and ``trace``);
- :class:`SpikeTraceOp`: wraps a parameter-free layer (pooling, flatten, dropout ...) and
  applies it to both members, the trace without gradient;
- :class:`OTTTSequential`: a :class:`torch.nn.Sequential` that applies the right one of those
  to each child automatically.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ReplaceforGrad",
    "GradwithTrace",
    "SpikeTraceOp",
    "OTTTSequential",
    "grad_with_trace",
    "spike_trace_op",
]


class ReplaceforGrad(torch.autograd.Function):
    """``forward(x, x_r) -> x_r``; ``backward(grad) -> (grad, grad)``.

    The output has the values of ``x_r`` while the gradient arriving at the output is delivered
    unchanged to *both* inputs. Used to compute with one tensor while routing gradients
    through another graph. Both inputs must have the same shape.

    Call it as ``ReplaceforGrad.apply(x, x_r)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, x_r: torch.Tensor) -> torch.Tensor:
        """Return (a view of) ``x_r``.

        Args:
            ctx: the autograd context (unused).
            x: the tensor that receives the gradient alongside ``x_r``; any shape ``[*]``.
            x_r: the tensor whose values are returned; same shape as ``x``.

        Returns:
            ``x_r``'s values, shape ``[*]``.
        """
        if x.shape != x_r.shape:
            raise ValueError(
                f"x_r: expected the shape of x {tuple(x.shape)}, got {tuple(x_r.shape)}"
            )
        return x_r.view_as(x_r)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The incoming gradient, once for each input."""
        return grad, grad


def _split_pair(x: Any, argument: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        raise TypeError(
            f"{argument}: expected a [spike, trace] pair (list or tuple of 2 tensors), "
            f"got {type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (list, tuple)) else "")
        )
    spike, trace = x
    if not isinstance(spike, torch.Tensor) or not isinstance(trace, torch.Tensor):
        raise TypeError(
            f"{argument}: expected a [spike, trace] pair of tensors, "
            f"got [{type(spike).__name__}, {type(trace).__name__}]"
        )
    if spike.shape != trace.shape:
        raise ValueError(
            f"{argument}: expected the trace of a [spike, trace] pair to have the spikes' shape "
            f"{tuple(spike.shape)}, got {tuple(trace.shape)}"
        )
    return spike, trace


class _LinearWithTrace(torch.autograd.Function):
    """``F.linear(spike, W, b)`` by value, with the gradients :func:`grad_with_trace` defines.

    The generic path runs the layer twice (on the spikes for the value, on the trace for the
    graph); for a plain linear layer the gradients can be written down directly, so one matrix
    product per step is saved: ``dL/dW = g^T trace``, ``dL/db = sum(g)``,
    ``dL/dspike = dL/dtrace = g W``.
    """

    @staticmethod
    def forward(ctx: Any, spike: torch.Tensor, trace: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(trace, weight)
        ctx.has_bias = bias is not None
        return F.linear(spike, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        trace, weight = ctx.saved_tensors
        need_spike, need_trace, need_weight, need_bias = ctx.needs_input_grad
        grad_input = grad.matmul(weight) if (need_spike or need_trace) else None
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_weight = grad_2d.t().mm(trace.reshape(-1, trace.shape[-1])) if need_weight else None
        grad_bias = grad_2d.sum(0) if (ctx.has_bias and need_bias) else None
        return (
            grad_input if need_spike else None,
            grad_input if need_trace else None,
            grad_weight,
            grad_bias,
        )


def _has_own_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks or module._forward_pre_hooks
        or module._backward_hooks or module._backward_pre_hooks
    )


def _linear_fast_path(module: nn.Module, spike: torch.Tensor, trace: torch.Tensor) -> bool:
    """Whether ``module`` is a plain linear layer that :class:`_LinearWithTrace` computes exactly."""
    from snn.layer import Linear as StepLinear

    if type(module) not in (nn.Linear, StepLinear) or _has_own_hooks(module):
        return False
    weight = module.weight
    return (
        spike.shape == trace.shape
        and spike.dtype == trace.dtype == weight.dtype
        and spike.dim() >= 1
        and not torch.is_autocast_enabled(spike.device.type)
    )


def grad_with_trace(module: nn.Module, x: Any) -> torch.Tensor:
    """Apply ``module`` to a ``[spike, trace]`` pair: value from the spikes, gradient from the trace.

    A plain :class:`torch.nn.Linear` or :class:`snn.layer.Linear` (exact type, no hooks, no
    autocast) takes a fused path with the same values and gradients and one matrix product
    less; any other module runs twice, as in SpikingJelly: ``module(spike)`` without gradient
    for the value and ``module(ReplaceforGrad(spike, trace))`` for the graph.

    Args:
        module: a layer with parameters (``Linear``, ``Conv2d`` ...).
        x: ``[spike, trace]``, two tensors of the same shape ``[N, *]``.

    Returns:
        ``module(spike)`` by value, shape ``[N, *out]``; its gradient flows through
        ``module(trace)``, so parameter gradients use the trace and the input gradient reaches
        both ``spike`` and ``trace``.
    """
    spike, trace = _split_pair(x, "x")
    if _linear_fast_path(module, spike, trace):
        return _LinearWithTrace.apply(spike, trace, module.weight, module.bias)
    with torch.no_grad():
        out_value = module(spike)
    out_for_grad = module(ReplaceforGrad.apply(spike, trace))
    return ReplaceforGrad.apply(out_for_grad, out_value)


def spike_trace_op(module: nn.Module, x: Any) -> list[torch.Tensor]:
    """Apply a parameter-free ``module`` to both members of a ``[spike, trace]`` pair.

    Args:
        module: a layer without parameters (pooling, flatten, dropout ...). A stateful module
            sees two calls per step (spikes, then trace); :class:`snn.layer.Dropout` reuses its
            mask, so both members are masked alike.
        x: ``[spike, trace]``, two tensors of the same shape ``[N, *]``.

    Returns:
        ``[module(spike), module(trace)]``; the trace is computed without gradient.
    """
    spike, trace = _split_pair(x, "x")
    spike_out = module(spike)
    with torch.no_grad():
        trace_out = module(trace)
    return [spike_out, trace_out]


class GradwithTrace(nn.Module):
    """Wrap a layer with parameters so that it consumes ``[spike, trace]`` pairs.

    See :func:`grad_with_trace`. With ``module = Linear(W)``:
    ``forward([s, a]) == W s`` and ``dL/dW = delta a^T``, ``dL/ds = dL/da = W^T delta``.

    Args:
        module: the wrapped layer.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: Any) -> torch.Tensor:
        """Args: x: ``[spike, trace]``, tensors ``[N, *]``. Returns: ``[N, *out]``."""
        return grad_with_trace(self.module, x)


class SpikeTraceOp(nn.Module):
    """Wrap a parameter-free layer so that it maps ``[spike, trace]`` to ``[spike', trace']``.

    See :func:`spike_trace_op`.

    Args:
        module: the wrapped layer.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: Any) -> list[torch.Tensor]:
        """Args: x: ``[spike, trace]``, tensors ``[N, *]``. Returns: ``[spike', trace']``."""
        return spike_trace_op(self.module, x)


def _is_spiking_neuron(module: nn.Module) -> bool:
    from snn.neuron import BaseNode

    return isinstance(module, BaseNode)


class OTTTSequential(nn.Sequential):
    """A sequential container for OTTT networks.

    Each child is called on the running value. When that value is a ``[spike, trace]`` list
    (the training output of an :class:`~snn_online.neuron.OTTTLIFNode`):

    - a spiking neuron receives the spikes only (it must not integrate the trace);
    - a child without parameters is applied as in :class:`SpikeTraceOp`;
    - a child with parameters is applied as in :class:`GradwithTrace`.

    Otherwise the child is called normally. The output is whatever the last child returns: a
    ``[spike, trace]`` list when the network ends in an ``OTTTLIFNode`` in training mode.

    Example::

        net = OTTTSequential(Linear(784, 256), OTTTLIFNode(), Linear(256, 10), LIFNode())
    """

    def forward(self, x: Any) -> Any:
        """Args: x: one time step ``[N, *]``. Returns: the last child's output."""
        value = x
        for child in self:
            if isinstance(value, list):
                if _is_spiking_neuron(child):
                    value = child(value[0])
                elif next(child.parameters(), None) is None:
                    value = spike_trace_op(child, value)
                else:
                    value = grad_with_trace(child, value)
            else:
                value = child(value)
        return value
