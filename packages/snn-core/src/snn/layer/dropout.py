"""Dropout for spiking networks: one mask per sequence, reused at every time step."""

from __future__ import annotations

import numbers

import torch

from snn.base import MemoryModule

__all__ = ["Dropout"]


class Dropout(MemoryModule):
    """Dropout whose mask is sampled once and reused at every time step until :meth:`reset`.

    Dropping a different set of neurons at each step would let every neuron through some of
    the time and so barely regularise a spiking network; this layer samples one Bernoulli mask
    (kept elements scaled by ``1 / (1 - p)``) on the first training step after a reset and
    applies that same mask to every later step, in both step modes, until
    ``snn.functional.reset_net`` (or :meth:`reset`) clears it. In evaluation mode the layer is
    the identity and leaves the mask alone.

    Args:
        p: the probability of zeroing an element, ``0 <= p <= 1``: a Python or NumPy real
            number (``np.float32(0.5)`` ...), not a bool.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``; the mask has shape
            ``[N, *]`` and is shared by all ``T`` steps).

    Memories:
        mask: ``None`` after a reset, then the mask ``[N, *]`` (dtype and device of the input).

    Raises:
        TypeError: ``p`` is not a real number, or is a bool.
        ValueError: ``p`` is outside ``[0, 1]`` (or NaN).
    """

    # memories (registered with register_memory); declared for the type checker
    mask: torch.Tensor | None

    p: float

    def __init__(self, p: float = 0.5, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        if isinstance(p, bool) or not isinstance(p, numbers.Real):  # NumPy bools are not numbers.Real
            raise TypeError(f"p: expected a probability (a real number in [0, 1]), got {type(p).__name__} {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p}")
        self.p = float(p)
        self.register_memory("mask", None)

    def create_mask(self, x: torch.Tensor) -> None:
        """Sample a new :attr:`mask` shaped like one step ``x`` ``[N, *]`` (its dtype and device):
        each element ``1 / (1 - p)`` with probability ``1 - p``, else ``0``.

        The forward calls this when there is no mask; a subclass overrides it to drop other
        patterns (whole channels, as SpikingJelly's ``Dropout2d`` does), setting ``self.mask``
        to a tensor of the step's shape.
        """
        if self.p == 1.0:
            self.mask = torch.zeros_like(x)
        else:
            keep = 1.0 - self.p
            self.mask = torch.empty_like(x).bernoulli_(keep).div_(keep)

    def _mask_for(self, step: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
        """The current mask for steps shaped like ``step``, sampled by :meth:`create_mask` if
        there is none."""
        if not x.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating tensor in training (the mask scales kept elements by "
                f"1 / (1 - p)), got dtype {x.dtype}; convert spikes with .float()"
            )
        step_shape = step.shape
        mask = self.mask
        if mask is None:
            self.create_mask(step.detach())
            mask = self.mask
            if not isinstance(mask, torch.Tensor) or mask.shape != step_shape:
                got = f"shape {list(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise ValueError(
                    f"{type(self).__name__}.create_mask: expected it to set self.mask to a tensor of the "
                    f"step's shape {list(step_shape)}, got {got}"
                )
        elif mask.shape != step_shape:
            raise ValueError(
                f"x: the dropout mask was sampled for steps of shape {list(mask.shape)} but this "
                f"step has shape {list(step_shape)}; call snn.functional.reset_net (or reset()) "
                f"between sequences"
            )
        return mask

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step ``x`` ``[N, *]``: ``x * mask`` in training, ``x`` in evaluation.

        Raises:
            TypeError: ``x`` is not a tensor, or (sampling a mask) not a floating one.
            ValueError: the mask was sampled for steps of another shape (call ``reset_net``).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor with shape [N, *], got {type(x).__name__}")
        if not self.training or self.p == 0.0:
            return x
        return x * self._mask_for(x, x, "x")

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A sequence ``x_seq`` ``[T, N, *]``: every step multiplied by the same mask ``[N, *]``.

        Raises:
            TypeError: ``x_seq`` is not a tensor, or (sampling a mask) not a floating one.
            ValueError: ``x_seq`` is 0-dimensional, or the mask was sampled for steps of
                another shape (call ``reset_net``).
        """
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"x_seq: expected a torch.Tensor with shape [T, N, *], got {type(x_seq).__name__}")
        if x_seq.dim() < 1:
            raise ValueError(f"x_seq: expected a tensor with shape [T, N, *], got shape {list(x_seq.shape)}")
        if not self.training or self.p == 0.0:
            return x_seq
        step = x_seq[0] if x_seq.shape[0] else x_seq.new_zeros(x_seq.shape[1:])
        return x_seq * self._mask_for(step, x_seq, "x_seq")

    def extra_repr(self) -> str:
        return f"p={self.p}, step_mode={self.step_mode}"
