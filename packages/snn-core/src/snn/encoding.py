"""Encoders: turn analogue inputs (pixel intensities, features in ``[0, 1]``) into spikes.

Two kinds, as in SpikingJelly's ``activation_based.encoding``:

- *stateless* encoders (:class:`StatelessEncoder`) map each input to spikes of the same shape on
  every call, independently: :class:`PoissonEncoder` fires with probability ``x``;
- *stateful* encoders (:class:`StatefulEncoder`) compute a whole spike train ``spike [T, *]``
  from the first input they see after a reset and then return ``spike[t % T]`` on the ``t``-th
  call: :class:`LatencyEncoder`, :class:`WeightedPhaseEncoder`, :class:`PeriodicEncoder`.
  They keep the train and the call counter as memories, so ``snn.functional.reset_net``
  (or :meth:`~snn.base.MemoryModule.reset`) starts them over.

Step modes. In step mode ``'s'`` an encoder takes one input ``x [N, *]`` per call. In step mode
``'m'`` it takes ``x_seq [T', N, *]`` and returns ``[T', N, *]``, exactly what ``T'`` calls in
step mode ``'s'`` on ``x_seq[0], ..., x_seq[T' - 1]`` return (a stateful encoder encodes
``x_seq[0]`` and ignores the later steps, like its later calls in ``'s'``). A static image is
presented for ``T'`` steps as ``x.unsqueeze(0).expand(T', *x.shape)``.

Randomness comes from torch's global generator of the input's device (``torch.manual_seed``
makes runs repeatable), drawn exactly as the reference library draws it: the same seed gives
the same spikes as SpikingJelly 2.0.0.

Example:
    >>> import torch
    >>> from snn import encoding
    >>> x = torch.tensor([[0.0, 0.5, 1.0]])
    >>> latency = encoding.LatencyEncoder(T=3)
    >>> [latency(x).tolist() for _ in range(3)]      # larger x fires earlier
    [[[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]]
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from snn.base import MemoryModule, StepModule
from snn.functional.misc import _require_data

__all__ = [
    "StatelessEncoder",
    "StatefulEncoder",
    "PoissonEncoder",
    "LatencyEncoder",
    "WeightedPhaseEncoder",
    "PeriodicEncoder",
]

_LATENCY_FUNCTIONS = ("linear", "log")


def _check_floating(name: str, x: Any, layout: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a floating-point torch.Tensor {layout}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor {layout}, got dtype {x.dtype}")
    return x


def _check_period(name: str, value: Any) -> int:
    """``value`` as a Python int: an int or a NumPy integer (not a bool), ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= 1, got {type(value).__name__} {value!r}")
    period = int(value)
    if period < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {period}")
    return period


def _check_range(x: torch.Tensor, high: float, what: str) -> None:
    """Raise ``ValueError`` unless every element of ``x`` lies in ``[0, high]`` (NaN fails).

    A non-empty meta tensor, which has no values to check, raises
    :class:`~snn.errors.UnsupportedOperationError`.
    """
    if x.numel() == 0:
        return
    _require_data(x, what, "x", f"to check that they lie in [0, {high:g}]")
    inside = (x >= 0) & (x <= high)
    if not bool(inside.all()):
        bad = x[~inside]
        raise ValueError(
            f"x: {what} expects values in [0, {high:g}], got {bad.numel()} element(s) outside, "
            f"e.g. {bad.flatten()[0].item()!r}"
        )


class StatelessEncoder(nn.Module, StepModule):
    """Base class of encoders without state: ``encoder(x)`` returns spikes shaped like ``x``.

    Subclasses implement :meth:`forward`, which serves both step modes (the encoding is
    element-wise, so a sequence ``[T, N, *]`` is encoded like any other tensor).

    Args:
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).
    """

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__()
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The spikes of ``x`` (same shape). Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


class StatefulEncoder(MemoryModule):
    """Base class of encoders that encode once, then replay the spike train period by period.

    On the first call after a reset the encoder computes ``spike = single_step_encode(x)``
    (``[T, *]``); the ``t``-th call (counting from 0) returns ``spike[t % T]``. Inputs of later
    calls are ignored until :meth:`~snn.base.MemoryModule.reset` (or
    ``snn.functional.reset_net``) clears the train; an input of another shape than the encoded
    one (a new batch without a reset) raises :class:`ValueError`. Subclasses implement
    :meth:`single_step_encode`.

    Args:
        T: the encoding period, usually the number of simulation steps; an int (or NumPy
            integer) ``>= 1``.
        step_mode: ``'s'`` (one input ``x [N, *]`` per call) or ``'m'`` (``x_seq [T', N, *]``:
            ``T'`` steps at once, as ``T'`` calls in step mode ``'s'``).

    Memories:
        spike: ``None`` after a reset, then the encoded train ``[T, N, *]``.
        t: the index of the next step to return, ``0 <= t < T``.

    Raises:
        TypeError: ``T`` is not an int or a NumPy integer (bools are refused).
        ValueError: ``T < 1``.
    """

    # memories (registered with register_memory); declared for the type checker
    spike: torch.Tensor | None
    t: int

    def __init__(self, T: int, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.T = _check_period("T", T)
        self.register_memory("spike", None)
        self.register_memory("t", 0)

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        """The spike train ``[T, *]`` of one input ``x [*]``. Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement single_step_encode")

    def _input_shape(self, spike: torch.Tensor) -> torch.Size:
        """The shape of the input that ``spike`` encodes (one step of the train)."""
        return spike.shape[1:]

    def _train_for(self, x: Any) -> torch.Tensor:
        """The stored spike train, encoded from ``x`` first if there is none."""
        spike = self.spike
        if spike is not None:
            if x is not None and not isinstance(x, torch.Tensor):
                raise TypeError(f"x: expected a tensor (or None to replay the stored train), got {type(x).__name__}")
            if isinstance(x, torch.Tensor) and x.shape != self._input_shape(spike):
                raise ValueError(
                    f"{type(self).__name__}: the stored spike train encodes inputs of shape "
                    f"{list(self._input_shape(spike))} but the input has shape {list(x.shape)} (did the "
                    "batch size change?); call snn.functional.reset_net(net) before encoding new inputs"
                )
        else:
            spike = self.single_step_encode(x)
            if not isinstance(spike, torch.Tensor) or spike.dim() == 0 or spike.shape[0] == 0:
                shape = list(spike.shape) if isinstance(spike, torch.Tensor) else type(spike).__name__
                raise ValueError(
                    f"{type(self).__name__}.single_step_encode: expected a spike train of shape "
                    f"[T, *] with T >= 1, got {shape}"
                )
            self.spike = spike
        return spike

    def single_step_forward(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The next step of the train: ``spike[t]``, then ``t`` advances (modulo ``T``).

        Args:
            x: the input to encode when no train is stored (otherwise only its shape is checked).

        Returns:
            ``spike[t]``: spikes shaped like one step of the train (a view of the stored train).

        Raises:
            ValueError: ``x`` has another shape than the input the stored train encodes.
        """
        spike = self._train_for(x)
        t = self.t
        self.t = (t + 1) % spike.shape[0]
        return spike[t]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``T'`` steps at once: ``spike[(t + i) % T]`` for ``i < T'``, as ``T'`` single steps return.

        Args:
            x_seq: ``[T', N, *]`` with ``T' >= 1``; ``x_seq[0]`` is encoded when no train is stored.

        Returns:
            ``[T', N, *]`` spikes (a new tensor).

        Raises:
            TypeError: ``x_seq`` is not a tensor.
            ValueError: ``x_seq`` has no time dimension or ``T' = 0``, or its steps have another
                shape than the input the stored train encodes.
        """
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"x_seq: expected a torch.Tensor with shape [T, N, *], got {type(x_seq).__name__}")
        if x_seq.dim() == 0 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq: expected shape [T, N, *] with T >= 1, got {list(x_seq.shape)}")
        spike = self._train_for(x_seq[0])
        period = spike.shape[0]
        steps = x_seq.shape[0]
        index = torch.arange(self.t, self.t + steps, device=spike.device).remainder_(period)
        self.t = (self.t + steps) % period
        return spike.index_select(0, index)

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode}"


class PoissonEncoder(StatelessEncoder):
    """Bernoulli ("Poisson") rate coding: each element fires with probability ``x``.

    ``spike = (u <= x)`` with ``u = torch.rand_like(x)`` drawn from torch's global generator, in
    ``x``'s dtype; the same seed gives the same spikes as the reference library. Every call (and
    every step of a sequence) draws fresh noise. ``x`` should lie in ``[0, 1]``: values above 1
    always fire, values below 0 (and NaN) never do; nothing is checked, so that encoding adds
    no device synchronisation.

    Args:
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Example:
        >>> import torch
        >>> from snn import encoding
        >>> _ = torch.manual_seed(0)
        >>> rates = encoding.PoissonEncoder()(torch.full((10000,), 0.3)).mean()
        >>> round(rates.item(), 2)
        0.3
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes of ``x``.

        Args:
            x: firing probabilities, any shape, floating dtype.

        Returns:
            Spikes (0 or 1) with ``x``'s shape, dtype and device.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
        """
        _check_floating("x", x, "of firing probabilities")
        # sampling has no gradient: the spikes carry no graph, as the reference's out-of-place le
        return torch.rand_like(x).le_(x.detach()).to(x.dtype)


class LatencyEncoder(StatefulEncoder):
    """Latency (time-to-first-spike) coding: each element fires once, earlier for larger ``x``.

    An input ``0 <= x <= 1`` fires at step ``t_f = round(f(x))`` of the period ``T``:

    - ``enc_function='linear'``: ``f(x) = (T - 1) * (1 - x)``;
    - ``enc_function='log'``: ``f(x) = (T - 1) - ln(alpha * x + 1)`` with
      ``alpha = exp(T - 1) - 1``, so that ``f(1) = 0`` and ``f(0) = T - 1``; computed in float64
      as ``-ln(x + (1 - x) * exp(1 - T))`` (the same function, finite for any ``T``).

    ``round`` rounds half to even, as :func:`torch.round`.

    Args:
        T: the period (latest firing step is ``T - 1``), an int (or NumPy integer) ``>= 1``.
        enc_function: ``'linear'`` or ``'log'``.
        step_mode: ``'s'`` or ``'m'``, see :class:`StatefulEncoder`.

    Attributes:
        alpha: ``exp(T - 1) - 1`` for ``enc_function='log'`` (``inf`` when it overflows a float).

    Raises:
        TypeError: ``T`` is not an int or a NumPy integer (bools are refused).
        ValueError: ``T < 1`` or an unknown ``enc_function``.
    """

    def __init__(self, T: int, enc_function: str = "linear", step_mode: str = "s") -> None:
        super().__init__(T, step_mode)
        if enc_function not in _LATENCY_FUNCTIONS:
            raise ValueError(f"enc_function: expected one of {_LATENCY_FUNCTIONS}, got {enc_function!r}")
        self.enc_function = enc_function
        if enc_function == "log":
            try:
                self.alpha = math.expm1(self.T - 1.0)
            except OverflowError:
                self.alpha = math.inf

    def firing_step(self, x: torch.Tensor) -> torch.Tensor:
        """The firing step ``t_f`` of each element of ``x`` (int64, in ``[0, T - 1]``).

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: an element of ``x`` is outside ``[0, 1]`` (or NaN).
            snn.errors.UnsupportedOperationError: ``x`` is a non-empty meta tensor (its values
                are read for that check).
        """
        _check_floating("x", x, "of intensities in [0, 1]")
        _check_range(x, 1.0, type(self).__name__)
        if self.enc_function == "linear":
            # half types in float32: in float16 (T - 1) overflows from T = 65506, and bfloat16
            # rounds 1 - x and the product to 8 bits (T = 1001, x = 0.30078125: 700, not 699)
            wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            return ((self.T - 1.0) * (1.0 - wide)).round().long()
        x64 = x.double()
        floor = math.exp(1.0 - self.T)  # exp(-(T - 1)); it underflows to 0.0 for T > 746
        # -ln(x + (1 - x) * exp(1 - T)) <= T - 1; the clamp only catches ln(0) at x = 0
        return torch.log(x64 + (1.0 - x64) * floor).neg_().clamp_(max=self.T - 1.0).round().long()

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        """The spike train ``[T, *]`` of ``x [*]``: one spike per element, at its firing step.

        Returns:
            ``[T, *]`` in ``x``'s dtype and device.
        """
        t_f = self.firing_step(x)
        steps = torch.arange(self.T, device=x.device).view(self.T, *([1] * x.dim()))
        return (steps == t_f).to(x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}, enc_function={self.enc_function!r}, step_mode={self.step_mode}"


class WeightedPhaseEncoder(StatefulEncoder):
    """Weighted phase coding: the binary expansion of ``x``, most significant bit first.

    Phase ``i`` (``0 <= i < K``) carries weight ``2 ** -(i + 1)``; the spikes are the bits of
    ``x`` found greedily (``spike[i] = (r >= w_i)``, ``r -= w_i * spike[i]``), so
    ``x = sum_i 2 ** -(i + 1) * spike[i]`` for every ``x`` that is a multiple of ``2 ** -K``
    (Kim et al., *Deep neural networks with weighted spikes*, Neurocomputing 2018). ``x`` must
    lie in ``[0, 1 - 2 ** -K]``.

    Args:
        K: the number of phases (the period ``T``), an int (or NumPy integer) ``>= 1``.
        step_mode: ``'s'`` or ``'m'``, see :class:`StatefulEncoder`.

    Raises:
        TypeError: ``K`` is not an int or a NumPy integer (bools are refused).
        ValueError: ``K < 1``.

    Example:
        >>> import torch
        >>> from snn import encoding
        >>> encoder = encoding.WeightedPhaseEncoder(K=4)
        >>> torch.stack([encoder(torch.tensor([0.75, 0.0625])) for _ in range(4)]).T
        tensor([[1., 1., 0., 0.],
                [0., 0., 0., 1.]])
    """

    def __init__(self, K: int, step_mode: str = "s") -> None:
        super().__init__(_check_period("K", K), step_mode)

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        """The spike train ``[K, *]`` of ``x [*]`` (``x``'s dtype and device).

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: an element of ``x`` is outside ``[0, 1 - 2 ** -K]`` (or NaN).
            snn.errors.UnsupportedOperationError: ``x`` is a non-empty meta tensor (its values
                are read for that check).
        """
        _check_floating("x", x, "of values in [0, 1 - 2 ** -K]")
        # in float64: the weights 2 ** -k underflow to 0 in float16 from k = 25 (float32 from
        # k = 150), where remainder >= 0 would fire for every element, x = 0 included; for the
        # values a float32 input can hold the subtractions are exact, so its spikes do not change
        remainder = x.to(torch.float64 if x.device.type != "mps" else torch.float32, copy=True)
        _check_range(remainder, 1.0 - 2.0 ** (-self.T), type(self).__name__)
        spike = torch.empty((self.T, *x.shape), dtype=x.dtype, device=x.device)
        weight = 0.5
        for phase in range(self.T):
            torch.ge(remainder, weight, out=spike[phase])
            remainder -= weight * spike[phase]
            weight *= 0.5
        return spike


class PeriodicEncoder(StatefulEncoder):
    """Replay a given spike pattern periodically: the ``t``-th call returns ``spike[t % T]``.

    As in the reference, the pattern replayed is the *input of the first call* after a reset
    (``[T, N, *]``); ``spike`` given here sets ``T`` and is also the default pattern when the
    first call passes no input (``encoder()``).

    Args:
        spike: the pattern ``[T, N, *]`` (``T >= 1``); kept as a non-persistent buffer, so it
            follows ``.to(device)``.
        step_mode: ``'s'`` or ``'m'``, see :class:`StatefulEncoder` (in step mode ``'m'`` each
            step of the input is a whole pattern: ``x_seq [T', T, N, *]``).

    Raises:
        TypeError: ``spike`` is not a tensor.
        ValueError: ``spike`` has no time dimension or ``T = 0``.

    Example:
        >>> import torch
        >>> from snn import encoding
        >>> pattern = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> encoder = encoding.PeriodicEncoder(pattern)
        >>> [encoder().tolist() for _ in range(3)]
        [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    """

    def __init__(self, spike: torch.Tensor, step_mode: str = "s") -> None:
        if not isinstance(spike, torch.Tensor):
            raise TypeError(f"spike: expected a torch.Tensor with shape [T, N, *], got {type(spike).__name__}")
        if spike.dim() == 0 or spike.shape[0] == 0:
            raise ValueError(f"spike: expected shape [T, N, *] with T >= 1, got {list(spike.shape)}")
        super().__init__(spike.shape[0], step_mode)
        self.register_buffer("pattern", spike, persistent=False)

    def _input_shape(self, spike: torch.Tensor) -> torch.Size:
        return spike.shape  # the input is the pattern itself

    def single_step_encode(self, spike: torch.Tensor | None) -> torch.Tensor:
        """The pattern to replay: ``spike`` itself (``[T, N, *]``), or the constructor's when ``None``.

        Raises:
            TypeError: ``spike`` is neither a tensor nor ``None``.
        """
        if spike is None:
            return self.pattern
        if not isinstance(spike, torch.Tensor):
            raise TypeError(f"spike: expected a torch.Tensor with shape [T, N, *] or None, got {type(spike).__name__}")
        return spike
