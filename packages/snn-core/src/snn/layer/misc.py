"""Small layers of spiking networks: a filtering synapse, a voting read-out and a delay line.

- :class:`SynapseFilter`: a synapse whose current decays with time constant ``tau`` and jumps
  by one with each input spike (optionally with a learnable ``tau``);
- :class:`VotingLayer`: average groups of ``voting_size`` output neurons into one class score;
- :class:`Delay`: ``y[t] = x[t - delay_steps]``, zeros before the first input arrives.

Each works in both step modes; the stateful ones (:class:`SynapseFilter`, :class:`Delay`) are
:class:`~snn.base.MemoryModule` subclasses cleared by ``snn.functional.reset_net``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snn.base import MemoryModule, StepModule
from snn.functional.forward import seq_to_ann_forward
from snn.neuron.base import check_flag

__all__ = ["SynapseFilter", "VotingLayer", "Delay"]


def _check_tensor(name: str, x: Any, layout: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor with shape {layout}, got {type(x).__name__}")
    return x


def _check_sequence(x_seq: Any, layout: str = "[T, N, *]") -> torch.Tensor:
    _check_tensor("x_seq", x_seq, layout)
    if x_seq.dim() == 0 or x_seq.shape[0] == 0:
        raise ValueError(f"x_seq: expected shape {layout} with T >= 1, got {list(x_seq.shape)}")
    return x_seq


def _reset_hint(module: nn.Module, state: str, state_shape: torch.Size, step_shape: torch.Size) -> ValueError:
    return ValueError(
        f"{type(module).__name__}: the state {state} has steps of shape {list(state_shape)} but the input "
        f"step has shape {list(step_shape)} (did the batch size change?); call "
        "snn.functional.reset_net(net) before feeding inputs of a new shape"
    )


class SynapseFilter(MemoryModule):
    """A filtering synapse: the output current decays with ``tau`` and jumps by 1 per spike.

    With input ``x[t]`` (spikes, or any current) and output current ``i[t]``:

    ``i[t] = i[t-1] - (1 - x[t]) * i[t-1] / tau + x[t]``, ``i[-1] = 0``,

    the discretisation of ``tau * di/dt = -i`` between spikes plus a unit jump at each spike
    (between spikes the current decays by ``1 / tau`` per step; at a spike it keeps its value and
    adds 1). It can also be read as a LIF neuron that never fires, whose potential sums its
    input spikes with a decay, e.g. as a read-out layer. The update is computed in the order
    written above, as in the reference library.

    Args:
        tau: the time constant, a real number ``> 1``.
        learnable: learn the time constant: ``1 / tau = sigmoid(w)`` with a 0-dim parameter ``w``
            initialised to ``-ln(tau - 1)``; otherwise ``tau`` is a fixed float.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Memories:
        out_i: the output current, ``0.0`` after a reset, then a tensor shaped like one input
            step (the input's dtype and device).

    Raises:
        TypeError: ``tau`` is not a real number or ``learnable`` not a bool (or 0 or 1).
        ValueError: ``tau <= 1`` (or not finite).

    Example:
        >>> import torch
        >>> from snn import layer
        >>> synapse = layer.SynapseFilter(tau=2.0, step_mode="m")
        >>> synapse(torch.tensor([[1.0], [0.0], [0.0], [1.0]])).flatten()
        tensor([1.0000, 0.5000, 0.2500, 1.2500])
    """

    # memories (registered with register_memory); declared for the type checker
    out_i: float | torch.Tensor

    learnable: bool
    w: nn.Parameter  # when learnable
    tau: float  # when not learnable

    def __init__(self, tau: float = 100.0, learnable: bool = False, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
            raise TypeError(f"tau: expected a real number > 1, got {type(tau).__name__} {tau!r}")
        if not (math.isfinite(tau) and tau > 1.0):
            raise ValueError(f"tau: expected a finite time constant > 1, got {tau!r}")
        learnable = check_flag("learnable", learnable, integers=True)
        self.learnable = learnable
        if learnable:
            self.w = nn.Parameter(torch.as_tensor(-math.log(float(tau) - 1.0)))
        else:
            self.tau = float(tau)
        self.register_memory("out_i", 0.0)

    def decay(self) -> float | torch.Tensor:
        """``1 / tau``: a float, or ``sigmoid(w)`` (a 0-dim tensor with gradient) when learnable."""
        return self.w.sigmoid() if self.learnable else 1.0 / self.tau

    def _current_for(self, x: torch.Tensor) -> torch.Tensor:
        current = self.out_i
        if not isinstance(current, torch.Tensor):
            return torch.full_like(x, float(current))
        if current.shape != x.shape:
            raise _reset_hint(self, "out_i", current.shape, x.shape)
        if current.dtype != x.dtype or current.device != x.device:
            current = current.to(dtype=x.dtype, device=x.device)
        return current

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x [N, *]`` -> the new current ``i [N, *]`` (also stored in ``out_i``).

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: ``out_i`` holds a state of another shape (call ``reset_net``).
        """
        _check_tensor("x", x, "[N, *]")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        current = self._current_for(x)
        k = self.decay()
        current = current - (1.0 - x) * current * k + x
        self.out_i = current
        return current

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A sequence: ``x_seq [T, N, *]`` -> the currents ``[T, N, *]``; ``out_i`` keeps the last.

        Raises:
            TypeError: ``x_seq`` is not a floating-point tensor.
            ValueError: ``x_seq`` has no time dimension, or ``out_i`` has another step shape.
        """
        _check_sequence(x_seq)
        if not x_seq.is_floating_point():
            raise TypeError(f"x_seq: expected a floating-point tensor, got dtype {x_seq.dtype}")
        current = self._current_for(x_seq[0])
        k = self.decay()
        currents = []
        for x in x_seq.unbind(0):
            current = current - (1.0 - x) * current * k + x
            currents.append(current)
        self.out_i = current
        return torch.stack(currents)

    def extra_repr(self) -> str:
        if self.learnable:
            with torch.no_grad():
                tau = float(1.0 / self.w.sigmoid())
        else:
            tau = self.tau
        return f"tau={tau}, learnable={self.learnable}, step_mode={self.step_mode}"


class VotingLayer(nn.Module, StepModule):
    """Average every ``voting_size`` consecutive neurons of the last dimension into one score.

    ``[..., C * voting_size] -> [..., C]``: output ``c`` is the mean of inputs
    ``c * voting_size, ..., (c + 1) * voting_size - 1``, i.e. average pooling with kernel and
    stride ``voting_size`` over the last dimension (used when each class is read from a
    population of output neurons). The layer has no state, so both step modes compute the same
    thing over any leading dimensions (``[N, *]`` in ``'s'``, ``[T, N, *]`` in ``'m'``).
    Floating inputs keep their dtype; integer and bool inputs (spikes, spike counts) give
    scores in ``torch.get_default_dtype()``.

    Args:
        voting_size: the number of neurons voting for one class, an int ``>= 1``.
        step_mode: ``'s'`` or ``'m'``.

    Raises:
        TypeError: ``voting_size`` is not an int.
        ValueError: ``voting_size < 1``.

    Example:
        >>> import torch
        >>> from snn import layer
        >>> layer.VotingLayer(voting_size=2)(torch.tensor([[1.0, 0.0, 1.0, 1.0]]))
        tensor([[0.5000, 1.0000]])
        >>> layer.VotingLayer(voting_size=2)(torch.tensor([[1, 0, 1, 1]]))  # spike counts
        tensor([[0.5000, 1.0000]])
    """

    def __init__(self, voting_size: int = 10, step_mode: str = "s") -> None:
        super().__init__()
        if isinstance(voting_size, bool) or not isinstance(voting_size, int):
            raise TypeError(f"voting_size: expected an int >= 1, got {type(voting_size).__name__} {voting_size!r}")
        if voting_size < 1:
            raise ValueError(f"voting_size: expected an int >= 1, got {voting_size}")
        self.voting_size = voting_size
        self.step_mode = step_mode

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class scores of ``x`` ``[..., C * voting_size]`` -> ``[..., C]`` (one step
        ``[N, C * voting_size]``, or any leading dimensions).

        The scores have ``x``'s dtype when it is floating; integer or bool inputs (spike counts
        from ``.sum()`` are int64) are averaged in ``torch.get_default_dtype()`` (float32 unless
        changed), never truncated to integers.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` is 0-dim, or its last dimension is not a multiple of ``voting_size``.
        """
        _check_tensor("x", x, "[..., C * voting_size]")
        if x.dim() == 0 or x.shape[-1] % self.voting_size != 0:
            raise ValueError(
                f"x: expected shape [..., C * voting_size] (voting_size = {self.voting_size}), "
                f"got {list(x.shape)}"
            )
        if not (x.is_floating_point() or x.is_complex()):
            # spike counts (int64 from .sum()), uint8 or bool spikes: a mean in integers would
            # truncate, so average in the default floating dtype
            x = x.to(torch.get_default_dtype())
        leading = x.shape[:-1]
        pooled = F.avg_pool1d(x.reshape(-1, 1, x.shape[-1]), self.voting_size, self.voting_size)
        return pooled.reshape(*leading, x.shape[-1] // self.voting_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class scores of ``x``: :meth:`single_step_forward` in step mode ``'s'``, and on
        the ``[T * N, ...]`` view of ``x`` ``[T, N, ..., C * voting_size]`` in step mode ``'m'``
        (as SpikingJelly calls it, so a subclass overriding :meth:`single_step_forward` serves
        both modes).

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` has too few dimensions for the step mode, or its last dimension
                is not a multiple of ``voting_size``.
        """
        if self.step_mode == "s":
            return self.single_step_forward(x)
        _check_tensor("x", x, "[T, N, ..., C * voting_size]")
        if x.dim() < 2:
            raise ValueError(f"x: expected shape [T, N, ..., C * voting_size] in step mode 'm', got {list(x.shape)}")
        return seq_to_ann_forward(x, self.single_step_forward)  # type: ignore[return-value]  # one tensor out

    def extra_repr(self) -> str:
        return f"voting_size={self.voting_size}, step_mode={self.step_mode}"


class Delay(MemoryModule):
    """A delay line: ``y[t] = x[t - delay_steps]``, and zeros while nothing has arrived yet.

    The delay spans calls: in step mode ``'s'`` the ``t``-th call returns the input of call
    ``t - delay_steps``; in step mode ``'m'`` a sequence continues where the previous one
    stopped, until a reset. Gradients flow from ``y[t]`` back to ``x[t - delay_steps]``.

    Args:
        delay_steps: the delay, an int ``>= 0`` (0 returns the input unchanged).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Memories:
        queue: the last ``min(delay_steps, steps seen)`` inputs, oldest first (a list of
            ``[N, *]`` tensors; empty after a reset).

    Raises:
        TypeError: ``delay_steps`` is not an int.
        ValueError: ``delay_steps < 0``.

    Example:
        >>> import torch
        >>> from snn import layer
        >>> layer.Delay(delay_steps=2, step_mode="m")(torch.arange(1.0, 5.0).view(4, 1)).flatten()
        tensor([0., 0., 1., 2.])
    """

    def __init__(self, delay_steps: int, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        if isinstance(delay_steps, bool) or not isinstance(delay_steps, int):
            raise TypeError(f"delay_steps: expected an int >= 0, got {type(delay_steps).__name__} {delay_steps!r}")
        if delay_steps < 0:
            raise ValueError(f"delay_steps: expected an int >= 0, got {delay_steps}")
        self._delay_steps = delay_steps
        self.register_memory("queue", [])

    @property
    def delay_steps(self) -> int:
        """The delay in steps (read-only)."""
        return self._delay_steps

    def _check_queue(self, step_shape: torch.Size) -> list[torch.Tensor]:
        queue: list[torch.Tensor] = self.queue
        if queue and queue[-1].shape != step_shape:
            raise _reset_hint(self, "queue", queue[-1].shape, step_shape)
        return queue

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: returns the input of ``delay_steps`` calls ago (zeros until there is one).

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: the queued inputs have another shape (call ``reset_net``).
        """
        _check_tensor("x", x, "[N, *]")
        queue = self._check_queue(x.shape)
        if self._delay_steps == 0:
            return x
        # a new list, never the stored one changed in place: a state saved earlier (a rewind with
        # extract_memories, the checkpointed strategy, an explicit-state call) keeps its value
        queue = [*queue, x]
        y = queue.pop(0) if len(queue) > self._delay_steps else torch.zeros_like(x)
        self.queue = queue
        return y

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A sequence ``x_seq [T, N, *]`` -> ``[T, N, *]``, continuing the queue of earlier calls.

        Raises:
            TypeError: ``x_seq`` is not a tensor.
            ValueError: ``x_seq`` has no time dimension, or the queue has another step shape.
        """
        _check_sequence(x_seq)
        queue = self._check_queue(x_seq.shape[1:])
        d = self._delay_steps
        if d == 0:
            return x_seq
        history = torch.cat((torch.stack(queue), x_seq)) if queue else x_seq
        missing = d - len(queue)  # zeros still owed before the first queued input comes out
        if missing > 0:
            padded = torch.cat((x_seq.new_zeros((missing, *x_seq.shape[1:])), history))
        else:
            padded = history
        self.queue = list(history[max(history.shape[0] - d, 0):].unbind(0))
        return padded[: x_seq.shape[0]]

    def extra_repr(self) -> str:
        return f"delay_steps={self._delay_steps}, step_mode={self.step_mode}"
