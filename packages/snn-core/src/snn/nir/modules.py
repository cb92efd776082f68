"""Modules for the NIR primitives that snn had no module for.

:func:`snn.nir.import_from_nir` builds these, :func:`snn.nir.export_to_nir` writes them back,
and they are ordinary snn modules otherwise (step-mode aware, reset by
:func:`snn.functional.reset_net`, usable in any network). None of them needs the ``nir``
package.

- :class:`LINode`: a leaky integrator (a LIF neuron that never fires), NIR ``LI``.
- :class:`CubaLINode`: a current-based leaky integrator, NIR ``CubaLI``.
- :class:`Scale`: an element-wise gain, NIR ``Scale``.
- :class:`Threshold`: the Heaviside step with a surrogate gradient, NIR ``Threshold``.
- :class:`Delay`: a per-element delay of whole steps, NIR ``Delay``.
- :class:`SumPool2d`: sum pooling, NIR ``SumPool2d``.

Shapes: ``[N, *]`` in step mode ``'s'``, ``[T, N, *]`` in step mode ``'m'``; the parameter
tensors of :class:`Scale`, :class:`Threshold` and :class:`Delay` have the shape of one sample
(``*``) or broadcast to it from the right (size-1 dimensions included); past leading sizes of 1
they never have more dimensions than a sample (they would reach into the batch and treat its
samples differently), which the modules check on every call.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from snn.base import MemoryModule, StepModule
from snn.layer.wrappers import StepModeWrapper
from snn.surrogate import Sigmoid

__all__ = ["LINode", "CubaLINode", "Scale", "Threshold", "Delay", "SumPool2d"]


def _real(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name}: expected a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{owner}: {name}: expected a finite number, got {value!r}")
    return number


def _check_floating(owner: str, name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{owner}: {name}: expected a floating-point tensor, got {what}")
    return x


def _state(module: MemoryModule, name: str, x: torch.Tensor) -> torch.Tensor:
    """Memory ``name`` as a tensor shaped like the step ``x`` (materialised from a number)."""
    value = getattr(module, name)
    if isinstance(value, torch.Tensor):
        if value.shape != x.shape:
            raise ValueError(
                f"{type(module).__name__}: the state {name} has shape {tuple(value.shape)} but the input step "
                f"has shape {tuple(x.shape)} (did the batch size change?); call "
                "snn.functional.reset_net(net) before feeding inputs of a new shape"
            )
        if value.dtype != x.dtype or value.device != x.device:
            value = value.to(dtype=x.dtype, device=x.device)
        return value
    return torch.full(x.shape, float(value), dtype=x.dtype, device=x.device)


def _check_trailing(owner: str, x: torch.Tensor, shape: torch.Size, lead: int) -> None:
    """A per-sample parameter of ``shape`` must broadcast to ``x`` without changing ``x``'s shape,
    and from one sample only: past its leading sizes of 1 it may not reach into the ``lead``
    batch (and time) dimensions, where it would treat the samples of a batch differently."""
    sizes = list(shape)
    while sizes and sizes[0] == 1:
        sizes.pop(0)
    if len(sizes) > x.dim() - lead:
        layout = "[N, *]" if lead == 1 else "[T, N, *]"
        raise ValueError(
            f"{owner}: the parameter's shape {list(shape)} has more dimensions than one sample * of the input "
            f"{layout}, got shape {list(x.shape)}; it would treat the samples of a batch differently"
        )
    try:
        fits = torch.broadcast_shapes(x.shape, shape) == x.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{owner}: expected an input whose last dimensions match {list(shape)} (one sample), "
            f"got shape {list(x.shape)}"
        )


def _parameter_tensor(owner: str, name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().clone()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        tensor = torch.tensor(float(value))
    else:
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{owner}: {name}: expected a tensor or a real number, got {type(value).__name__}") from exc
    if not tensor.is_floating_point():
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise TypeError(f"{owner}: {name}: expected real values, got dtype {tensor.dtype}")
        tensor = tensor.to(torch.get_default_dtype())
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{owner}: {name}: expected finite values")
    return tensor


class LINode(MemoryModule):
    """Leaky integrator: a LIF neuron without threshold, whose output is its potential.

    With ``vl = v_leak``, one step charges ``v`` like :class:`snn.neuron.LIFNode`:
    ``v = v + (x - (v - vl)) / tau`` when ``decay_input``, else ``v = v - (v - vl) / tau + x``,
    and returns the new ``v``. Nothing fires and nothing resets.

    Args:
        tau: membrane time constant in steps, a real number ``> 1``.
        decay_input: whether the input is divided by ``tau`` too.
        v_leak: the resting potential the membrane decays to (and starts from).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Memories:
        v: the membrane potential (``v_leak`` after a reset).

    Raises:
        TypeError: ``tau`` or ``v_leak`` is not a real number, ``decay_input`` not a bool.
        ValueError: ``tau <= 1`` or a non-finite value.

    Example:
        >>> import torch
        >>> from snn.nir import LINode
        >>> li = LINode(tau=2.0, step_mode="m")
        >>> li(torch.ones(3, 1)).flatten().tolist()
        [0.5, 0.75, 0.875]
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_leak: float = 0.0, step_mode: str = "s") -> None:
        tau = _real("LINode", "tau", tau)
        if not tau > 1.0:
            raise ValueError(f"LINode: tau: expected a membrane time constant > 1, got {tau!r}")
        if not isinstance(decay_input, bool):
            raise TypeError(f"LINode: decay_input: expected a bool, got {type(decay_input).__name__}")
        v_leak = _real("LINode", "v_leak", v_leak)
        super().__init__(step_mode)
        self.tau = tau
        self.decay_input = decay_input
        self.v_leak = v_leak
        self.register_memory("v", v_leak)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, *]`` floating -> the new potential ``[N, *]``.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``v`` has another shape (call ``snn.functional.reset_net``).
        """
        _check_floating("LINode", "x", x)
        v = _state(self, "v", x)
        if self.decay_input:
            v = v + (x - (v - self.v_leak)) / self.tau
        else:
            v = v - (v - self.v_leak) / self.tau + x
        self.v = v
        return v

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, v_leak={self.v_leak}, {super().extra_repr()}"


class CubaLINode(MemoryModule):
    """Current-based leaky integrator: a synaptic current ``c`` feeding a leaky potential ``v``.

    One step (the charge of a current-based LIF neuron, without firing):
    ``c = c * c_decay + x``, then ``v = v * v_decay + (1 - v_decay) * v_leak + c``; returns the
    new ``v``. With ``v_leak = 0`` the arithmetic is exactly ``v * v_decay + c``.

    Args:
        c_decay: the factor the current keeps per step, in ``[0, 1]``.
        v_decay: the factor the potential keeps per step, in ``[0, 1]``.
        v_leak: the resting potential the membrane decays to (and starts from).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Memories:
        v: the membrane potential (``v_leak`` after a reset).
        c: the synaptic current (0 after a reset).

    Raises:
        TypeError: a parameter that is not a real number.
        ValueError: a decay outside ``[0, 1]`` or a non-finite value.

    Example:
        >>> import torch
        >>> from snn.nir import CubaLINode
        >>> cuba = CubaLINode(c_decay=0.5, v_decay=0.5, step_mode="m")
        >>> cuba(torch.tensor([[1.0], [0.0], [0.0]])).flatten().tolist()
        [1.0, 1.0, 0.75]
    """

    def __init__(
        self, c_decay: float = 0.5, v_decay: float = 0.75, v_leak: float = 0.0, step_mode: str = "s"
    ) -> None:
        c_decay = _real("CubaLINode", "c_decay", c_decay)
        v_decay = _real("CubaLINode", "v_decay", v_decay)
        for name, value in (("c_decay", c_decay), ("v_decay", v_decay)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CubaLINode: {name}: expected a decay factor in [0, 1], got {value!r}")
        v_leak = _real("CubaLINode", "v_leak", v_leak)
        super().__init__(step_mode)
        self.c_decay = c_decay
        self.v_decay = v_decay
        self.v_leak = v_leak
        self.register_memory("v", v_leak)
        self.register_memory("c", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, *]`` floating -> the new potential ``[N, *]``.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: a state has another shape (call ``snn.functional.reset_net``).
        """
        _check_floating("CubaLINode", "x", x)
        v = _state(self, "v", x)
        c = _state(self, "c", x) * self.c_decay + x
        v = v * self.v_decay
        if self.v_leak != 0.0:
            v = v + (1.0 - self.v_decay) * self.v_leak
        v = v + c
        self.c = c
        self.v = v
        return v

    def extra_repr(self) -> str:
        return (
            f"c_decay={self.c_decay}, v_decay={self.v_decay}, v_leak={self.v_leak}, {super().extra_repr()}"
        )


class Scale(nn.Module, StepModule):
    """Element-wise gain ``y = x * scale``.

    Args:
        scale: the gains, a tensor of one sample's shape (or one that broadcasts to it from the
            right), or a number; it becomes a trainable :class:`torch.nn.Parameter` (float).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``); the gain is the
            same either way.

    Raises:
        TypeError: ``scale`` is not numeric.
        ValueError: ``scale`` has non-finite values.
    """

    def __init__(self, scale: torch.Tensor | float, step_mode: str = "s") -> None:
        super().__init__()
        self.scale = nn.Parameter(_parameter_tensor("Scale", "scale", scale))
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x * scale`` for ``x`` ``[N, *]`` or ``[T, N, *]``.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``x``'s last dimensions are not ``scale``'s shape, or ``scale`` has more
                dimensions than one sample (it would scale the samples of a batch differently).
        """
        _check_floating("Scale", "x", x)
        _check_trailing("Scale", x, self.scale.shape, 2 if self.step_mode == "m" else 1)
        return x * self.scale

    def extra_repr(self) -> str:
        return f"shape={list(self.scale.shape)}, step_mode={self.step_mode}"


class Threshold(nn.Module, StepModule):
    """The spike of a threshold: ``y = H(x - threshold)`` with ``H(0) = 1``, surrogate gradient in backward.

    Args:
        threshold: the thresholds, a tensor of one sample's shape (or one that broadcasts to it
            from the right), or a number; kept as a buffer.
        surrogate_function: the surrogate gradient (``None`` gives a new
            ``snn.surrogate.Sigmoid(alpha=4.0)``), any callable ``(x - threshold) -> spikes``.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Raises:
        TypeError: ``threshold`` is not numeric or the surrogate not callable.
        ValueError: ``threshold`` has non-finite values.
    """

    threshold: torch.Tensor  # a buffer

    def __init__(
        self,
        threshold: torch.Tensor | float,
        surrogate_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
        step_mode: str = "s",
    ) -> None:
        super().__init__()
        self.register_buffer("threshold", _parameter_tensor("Threshold", "threshold", threshold))
        if surrogate_function is None:
            surrogate_function = Sigmoid()
        elif not callable(surrogate_function):
            raise TypeError(
                f"Threshold: surrogate_function: expected an snn.surrogate function or a callable, "
                f"got {type(surrogate_function).__name__}"
            )
        self.surrogate_function = surrogate_function
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``H(x - threshold)`` of ``x`` ``[N, *]`` or ``[T, N, *]``, in ``x``'s dtype.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``x``'s last dimensions are not ``threshold``'s shape, or ``threshold``
                has more dimensions than one sample.
        """
        _check_floating("Threshold", "x", x)
        _check_trailing("Threshold", x, self.threshold.shape, 2 if self.step_mode == "m" else 1)
        return self.surrogate_function(x - self.threshold)

    def extra_repr(self) -> str:
        return f"shape={list(self.threshold.shape)}, step_mode={self.step_mode}"


class Delay(MemoryModule):
    """Delay each element by a whole number of steps: ``y[t] = x[t - d]``, zeros before the first input.

    Args:
        delay_steps: the delays ``d >= 0``, an int or an integer tensor of one sample's shape
            (or one that broadcasts to it from the right); kept as a buffer.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Memories:
        history: the last ``max(d)`` inputs, oldest first, ``[max(d), N, *]`` (``None`` after a
            reset: zeros).

    Raises:
        TypeError: ``delay_steps`` is not integer.
        ValueError: a negative delay.

    Example:
        >>> import torch
        >>> from snn.nir import Delay
        >>> delay = Delay(torch.tensor([0, 2]), step_mode="m")
        >>> delay(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]).unsqueeze(1)).squeeze(1).tolist()
        [[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]]
    """

    def __init__(self, delay_steps: torch.Tensor | int, step_mode: str = "s") -> None:
        if isinstance(delay_steps, bool):
            raise TypeError("Delay: delay_steps: expected an int or an integer tensor, got bool")
        if isinstance(delay_steps, numbers.Integral):
            steps = torch.tensor(int(delay_steps), dtype=torch.int64)
        elif isinstance(delay_steps, torch.Tensor) and not (
            delay_steps.is_floating_point() or delay_steps.is_complex() or delay_steps.dtype == torch.bool
        ):
            steps = delay_steps.detach().to(torch.int64).clone()
        else:
            raise TypeError(
                f"Delay: delay_steps: expected an int or an integer tensor, got {type(delay_steps).__name__}"
                + (f" of dtype {delay_steps.dtype}" if isinstance(delay_steps, torch.Tensor) else "")
            )
        if steps.numel() and int(steps.min()) < 0:
            raise ValueError(f"Delay: delay_steps: expected delays >= 0, got a minimum of {int(steps.min())}")
        super().__init__(step_mode)
        self.register_buffer("delay_steps", steps)
        self.max_delay = int(steps.max()) if steps.numel() else 0
        self.register_memory("history", None)

    def _history(self, sample: torch.Tensor) -> torch.Tensor:
        history = self.history
        shape = (self.max_delay, *sample.shape)
        if history is None:
            return sample.new_zeros(shape)
        if tuple(history.shape) != shape:
            raise ValueError(
                f"Delay: the state history has shape {tuple(history.shape)} but the input needs {shape} "
                "(did the batch size change?); call snn.functional.reset_net(net) before feeding inputs of "
                "a new shape"
            )
        return history.to(dtype=sample.dtype, device=sample.device)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, *]`` -> ``[N, *]``, each element from ``d`` steps ago.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``x``'s last dimensions do not match ``delay_steps`` (or it has more
                dimensions than one sample).
        """
        _check_floating("Delay", "x", x)
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A sequence ``[T, N, *]`` -> ``[T, N, *]``, ``y[t] = x[t - d]`` across calls.

        Raises:
            TypeError: ``x_seq`` is not a floating tensor.
            ValueError: ``x_seq`` has no time dimension or its last dimensions do not match
                ``delay_steps`` (or it has more dimensions than one sample).
        """
        _check_floating("Delay", "x_seq", x_seq)
        if x_seq.dim() < 2:
            raise ValueError(f"Delay: x_seq: expected shape [T, N, *], got {list(x_seq.shape)}")
        _check_trailing("Delay", x_seq[0], self.delay_steps.shape, 1)
        if self.max_delay == 0:
            return x_seq
        steps = x_seq.shape[0]
        full = torch.cat((self._history(x_seq[0]), x_seq))  # full[k] = x[k - max_delay]
        time = torch.arange(steps, device=x_seq.device).view(steps, *([1] * (x_seq.dim() - 1)))
        index = (time + self.max_delay - self.delay_steps.to(x_seq.device)).expand(x_seq.shape)
        self.history = full[steps:]
        return full.gather(0, index)

    def extra_repr(self) -> str:
        return f"max_delay={self.max_delay}, shape={list(self.delay_steps.shape)}, {super().extra_repr()}"


class SumPool2d(StepModeWrapper, nn.AvgPool2d):
    """Sum pooling over 2-d windows (zero padding): :class:`torch.nn.AvgPool2d` with divisor 1.

    Args:
        kernel_size: the window, an int or ``(height, width)``.
        stride: the step, an int or ``(height, width)``; ``None`` means ``kernel_size``.
        padding: zeros added on both sides, an int or ``(height, width)``.
        step_mode: ``'s'`` (input ``[N, C, H, W]``) or ``'m'`` (input ``[T, N, C, H, W]``).
    """

    multi_step_ranks = (5,)
    multi_step_layout = "[T, N, C, H, W]"

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        step_mode: str = "s",
    ) -> None:
        nn.AvgPool2d.__init__(
            self, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=1
        )
        self.step_mode = step_mode
