"""The neuron-kernel contract shared by every backend.

A *multi-step kernel* runs one neuron layer over a whole sequence in one call::

    kernel(x_seq, v0, config, *, w=None, store_v_seq=False) -> (spike_seq, v_last, v_seq | None)

Args:
    x_seq: ``[T, *]`` input currents, float32 / float16 / bfloat16 (float64 on torch), any
        strides (kernels make contiguous what they need; they never read wrong memory).
    v0: ``[*]`` initial membrane potential, same dtype and device as ``x_seq``.
    config: a :class:`NeuronConfig` (frozen, hashable: kernels may cache compiled code on it).
    w: PLIF only, the learnable 0-dim parameter with ``decay = sigmoid(w)``.
    store_v_seq: also return the post-reset potentials of every step.

Returns:
    ``spike_seq`` ``[T, *]`` (dtype of ``x_seq``), ``v_last`` ``[*]``, and ``v_seq``
    ``[T, *]`` when ``store_v_seq`` else ``None``.

Differentiable with respect to ``x_seq``, ``v0`` and ``w``. In training a kernel saves only
the charged potential ``h_seq`` (plus what PLIF needs) and recomputes spikes in backward; when
no gradient is needed it saves nothing.

Per neuron and step, with ``h`` the charged potential and ``vr = v_reset`` (0 for soft reset):

- IF: ``h = v + x``
- LIF: ``h = v + (x - (v - vr)) / tau`` (``decay_input``) or ``h = v - (v - vr) / tau + x``
- PLIF: as LIF with ``1 / tau`` replaced by ``sigmoid(w)``
- fire: ``s = H(h - v_threshold)`` with ``H(0) = 1``
- reset: hard ``v = s * vr + (1 - s) * h``; soft ``v = h - s * v_threshold``; ``s`` detached
  in the reset when ``detach_reset``.

A *single-step kernel* (mode ``"single_step"``) has the same signature with ``x_seq`` of shape
``[*]`` (one step) and returns ``(spike, v, None)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = ["SurrogateSpec", "NeuronConfig", "MultiStepKernel", "KernelResult"]

KernelResult = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


@dataclass(frozen=True)
class SurrogateSpec:
    """A hashable description of a surrogate function for kernels.

    Attributes:
        name: the class name in :mod:`snn.surrogate`, e.g. ``"Sigmoid"``.
        params: ``(parameter name, value)`` pairs in the constructor's order.
    """

    name: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def kwargs(self) -> dict[str, float]:
        """The parameters as keyword arguments."""
        return dict(self.params)


_KINDS = ("if", "lif", "plif")


@dataclass(frozen=True)
class NeuronConfig:
    """Frozen hyper-parameters of a neuron layer, as kernels see them.

    Attributes:
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        v_threshold: firing threshold.
        v_reset: reset potential, or ``None`` for soft reset (subtract the threshold).
        detach_reset: cut the gradient through the reset.
        decay_input: LIF/PLIF: whether the input is scaled by the decay.
        tau: LIF membrane time constant (``> 1``); ``None`` for IF and PLIF.
        surrogate: the surrogate gradient.
    """

    kind: str
    v_threshold: float
    v_reset: float | None
    detach_reset: bool
    decay_input: bool
    tau: float | None
    surrogate: SurrogateSpec

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {self.kind!r}")
        for name in ("v_threshold", "v_reset", "tau"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if self.kind == "lif" and (self.tau is None or self.tau <= 1.0):
            raise ValueError(f"tau: expected a number > 1 for a LIF neuron, got {self.tau!r}")

    @property
    def hard_reset(self) -> bool:
        """True for hard reset (``v_reset`` is a number)."""
        return self.v_reset is not None

    @property
    def reset_potential(self) -> float:
        """``v_reset``, or 0.0 for soft reset (the ``vr`` of the charge equations)."""
        return 0.0 if self.v_reset is None else self.v_reset


class MultiStepKernel(Protocol):
    """The callable every backend registers for ``(kind, "multi_step")``."""

    def __call__(
        self,
        x_seq: torch.Tensor,
        v0: torch.Tensor,
        config: NeuronConfig,
        *,
        w: torch.Tensor | None = None,
        store_v_seq: bool = False,
    ) -> KernelResult: ...
