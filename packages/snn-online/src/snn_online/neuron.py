"""Single-step LIF neurons for online learning: :class:`OTTTLIFNode` and :class:`SLTTLIFNode`.

Both are :class:`snn.neuron.LIFNode` with one change in training: the step starts from the
*detached* previous membrane potential, so no gradient flows from ``v_t`` back to ``v_{t-1}``
(the reset is detached too by default). Each step's loss is then back-propagated through the
network at that step only, with memory independent of the sequence length.

- :class:`OTTTLIFNode` (OTTT, Xiao et al., NeurIPS 2022) also keeps a presynaptic eligibility
  trace ``trace_t = (1 - 1/tau) * trace_{t-1} + spike_t`` (computed without gradient) and
  returns ``[spike, trace]`` in training, for :class:`~snn_online.layer.OTTTSequential` to turn
  into trace-based weight gradients. In eval mode it returns the spikes and leaves the trace
  alone.
- :class:`SLTTLIFNode` (SLTT, Meng et al., ICCV 2023) returns the spikes only.

In eval mode both behave exactly like :class:`snn.neuron.LIFNode` (Heaviside firing, no
detach). They run one step at a time: asking for ``step_mode='m'`` raises :class:`ValueError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from snn.neuron import LIFNode

__all__ = ["OTTTLIFNode", "SLTTLIFNode"]


class _OnlineLIFNode(LIFNode):
    """A :class:`LIFNode` that detaches the previous potential in training; single-step only."""

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s",)

    @property
    def step_mode(self) -> str:
        """Always ``'s'``: online learning presents one time step ``[N, *]`` at a time."""
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value != "s":
            raise ValueError(
                f"step_mode: {type(self).__name__} runs in single-step mode only (expected 's'), got {value!r}; "
                "online learning presents one time step at a time (keep the neuron in 's' and loop over "
                "time, e.g. with snn.functional.ottt_online_training)"
            )
        self._step_mode = value

    @property
    def supported_backends(self) -> tuple[str, ...]:
        """``("torch",)``: single-step neurons run on the reference backend."""
        return ("torch",)

    @supported_backends.setter
    def supported_backends(self, value: Iterable[str]) -> None:
        raise AttributeError(f"supported_backends: {type(self).__name__} runs on the torch backend only (got {value!r})")

    def _spike_step(self, x: torch.Tensor) -> torch.Tensor:
        """One LIF step; in training the previous potential is detached first."""
        if self.training and isinstance(self.v, torch.Tensor):
            self.v = self.v.detach()
        return super().single_step_forward(x)

    def single_step_forward(self, x: torch.Tensor) -> Any:
        """One step.

        Args:
            x: the input current of this step, ``[N, *]``, float dtype.

        Returns:
            The spikes ``[N, *]`` (same dtype as ``x``).
        """
        return self._spike_step(x)

    def multi_step_forward(self, x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(
            f"step_mode: {type(self).__name__} runs in single-step mode only; call it once per time "
            f"step with [N, *] inputs (got a multi-step call with shape {tuple(x_seq.shape)})"
        )


class OTTTLIFNode(_OnlineLIFNode):
    """LIF neuron for OTTT: detached temporal path, and a presynaptic trace.

    Training step (``h`` charged potential, ``v`` the previous potential, detached):
    ``h = v - (v - v_r)/tau + x`` (``decay_input=False``, the default) or
    ``h = v + (x - (v - v_r))/tau``; ``spike = sg(h - v_threshold)``; reset as in
    :class:`snn.neuron.LIFNode`; then, without gradient,
    ``trace = (1 - 1/tau) * trace + spike`` (the trace starts at zeros). Returns
    ``[spike, trace]``. Eval: the same charge and Heaviside firing, returns ``spike``, the trace
    is not updated.

    Memories: ``v`` (reset value ``v_reset``, or 0.0 for soft reset) and ``trace`` (reset
    value ``None``).

    Args:
        tau: membrane time constant, a float > 1.
        decay_input: whether the input is divided by ``tau`` too.
        v_threshold: firing threshold.
        v_reset: hard-reset potential, or ``None`` for soft reset (subtract the threshold).
        surrogate_function: surrogate gradient of the firing function (default: a new
            ``snn.surrogate.Sigmoid()``).
        detach_reset: whether the reset is cut from the graph.
        step_mode: must be ``'s'``.
        backend: must be ``"torch"``.
        store_v_seq: passed to :class:`snn.neuron.LIFNode`.

    Raises:
        ValueError: ``step_mode`` is not ``'s'``; or an invalid LIF argument.
    """

    # memories (registered with register_memory); declared for the type checker
    trace: float | torch.Tensor

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = None,
        surrogate_function: Any = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            tau=tau,
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
        self.register_memory("trace", None)

    def single_step_forward(self, x: torch.Tensor) -> Any:
        """One step.

        Args:
            x: the input current of this step, ``[N, *]``, float dtype.

        Returns:
            Training: ``[spike, trace]``, two tensors ``[N, *]`` (the trace without gradient).
            Eval: ``spike`` ``[N, *]``.
        """
        spike = self._spike_step(x)
        if not self.training:
            return spike
        trace = self.trace
        with torch.no_grad():
            if not isinstance(trace, torch.Tensor) or trace.shape != spike.shape:
                trace = torch.zeros_like(spike)
            trace = trace * (1.0 - 1.0 / self.tau) + spike
        self.trace = trace
        return [spike, trace]


class SLTTLIFNode(_OnlineLIFNode):
    """LIF neuron for SLTT: the previous potential is detached in training; returns spikes.

    Args:
        tau: membrane time constant, a float > 1.
        decay_input: whether the input is divided by ``tau`` too.
        v_threshold: firing threshold.
        v_reset: hard-reset potential, or ``None`` for soft reset.
        surrogate_function: surrogate gradient (default: a new ``snn.surrogate.Sigmoid()``).
        detach_reset: whether the reset is cut from the graph.
        step_mode: must be ``'s'``.
        backend: must be ``"torch"``.
        store_v_seq: passed to :class:`snn.neuron.LIFNode`.

    Raises:
        ValueError: ``step_mode`` is not ``'s'``; or an invalid LIF argument.
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Any = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            tau=tau,
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
