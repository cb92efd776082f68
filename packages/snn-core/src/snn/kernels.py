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

:func:`check_kernel_arguments` checks everything above that does not depend on the backend;
every kernel calls it first, then checks what only it knows (its dtypes, devices and
surrogates, preferably with :meth:`snn.registry.Registry.check_kernel_inputs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = ["SurrogateSpec", "NeuronConfig", "MultiStepKernel", "KernelResult", "check_kernel_arguments"]

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


def _describe(value: Any) -> str:
    """A short description of a bad argument for error messages (never a tensor's values)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    return f"{type(value).__name__} {value!r}" if value is not None else "None"


def check_kernel_arguments(
    kind: str,
    x_seq: Any,
    v0: Any,
    config: Any,
    w: Any,
    *,
    single_step: bool = False,
) -> None:
    """Check a kernel call against the contract, before any backend-specific check.

    Checks, in this order: the kernel's own ``kind``; ``config`` is a :class:`NeuronConfig` of
    that kind; ``x_seq`` is a floating-point tensor of shape ``[T, *]`` with ``T >= 1`` (any
    shape for a single step, where the argument is called ``x``); ``v0`` is a tensor of one
    step's shape with ``x_seq``'s dtype and device; PLIF gets ``w``, a one-element floating
    tensor on ``x_seq``'s device, and the other kinds get ``w=None``. Nothing here reads tensor
    values, synchronises a device or breaks a ``torch.compile`` graph.

    Args:
        kind: the kernel's neuron kind, ``"if"``, ``"lif"`` or ``"plif"``.
        x_seq: the input, ``[T, *]`` (or ``[*]`` with ``single_step``).
        v0: the initial potential, ``[*]``.
        config: the neuron configuration the kernel was given.
        w: PLIF's decay parameter (``decay = sigmoid(w)``), else ``None``.
        single_step: check a single-step call (``x_seq`` is one step, named ``x``).

    Raises:
        TypeError: ``config`` is not a :class:`NeuronConfig`; ``x_seq`` is not a floating-point
            tensor; ``v0`` is not a tensor, or has another dtype or device than ``x_seq``;
            ``w`` missing or not a one-element floating tensor on ``x_seq``'s device for PLIF,
            or given for another kind.
        ValueError: ``kind`` is not a neuron kind; ``config.kind`` is not ``kind``;
            ``x_seq`` has no time steps (rank 0 or ``T == 0``); ``v0`` has another shape than
            one step of ``x_seq``.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")
    if not isinstance(config, NeuronConfig):
        raise TypeError(f"config: expected snn.kernels.NeuronConfig, got {type(config).__name__}")
    if config.kind != kind:
        raise ValueError(f"config.kind: this is the {kind!r} kernel, got a config of kind {config.kind!r}")
    name = "x" if single_step else "x_seq"
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{name}: expected a floating-point tensor, got {type(x_seq).__name__}")
    if not x_seq.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x_seq.dtype}")
    if single_step:
        step_shape, step = x_seq.shape, "the shape of x"
    else:
        if x_seq.dim() == 0 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq: expected shape [T, *] with T >= 1, got {tuple(x_seq.shape)}")
        step_shape, step = x_seq.shape[1:], "one step of x_seq"
    if not isinstance(v0, torch.Tensor):
        raise TypeError(f"v0: expected a tensor, got {type(v0).__name__}")
    if v0.shape != step_shape:
        raise ValueError(f"v0: expected shape {tuple(step_shape)} ({step}), got {tuple(v0.shape)}")
    if v0.dtype != x_seq.dtype or v0.device != x_seq.device:
        raise TypeError(
            f"v0: expected dtype {x_seq.dtype} on {x_seq.device} like {name}, got {v0.dtype} on {v0.device}"
        )
    if kind == "plif":
        if not isinstance(w, torch.Tensor) or w.numel() != 1 or not w.is_floating_point():
            raise TypeError(
                "w: expected the one-element floating parameter of a PLIF neuron (decay = sigmoid(w)), "
                f"got {_describe(w)}"
            )
        if w.device != x_seq.device:
            raise TypeError(f"w: expected a tensor on {x_seq.device} like {name}, got one on {w.device}")
    elif w is not None:
        raise TypeError(f"w: only PLIF neurons take a decay parameter, got one for kind {kind!r}: {_describe(w)}")
