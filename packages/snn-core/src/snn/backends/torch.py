"""The torch reference backend (in-tree plugin ``"torch"``).

Kernels for IF, LIF and parametric LIF neurons, multi-step and single-step, following the
neuron-kernel contract of :mod:`snn.kernels`. They run on every device PyTorch supports,
in float16, bfloat16, float32 and float64, for every surrogate whose derivative has a closed
form (:data:`snn.surrogate.CLOSED_FORM_SURROGATES`).

A multi-step call costs three fused tensor operations per time step; training saves only the
charged potentials ``h_seq`` (plus ``v0`` for PLIF) and a hand-written backward recomputes the
spikes (see :mod:`snn.backends.torch_kernels`). Without gradients nothing is saved.

Usage (normally through a neuron's ``backend="torch"``)::

    from snn.kernels import NeuronConfig, SurrogateSpec
    from snn.backends.torch import lif_multi_step

    config = NeuronConfig("lif", 1.0, 0.0, False, True, 2.0, SurrogateSpec("Sigmoid", (("alpha", 4.0),)))
    spike_seq, v_last, v_seq = lif_multi_step(x_seq, torch.zeros_like(x_seq[0]), config)
"""

from __future__ import annotations

import math

import torch

import snn
from snn.backends.torch_kernels import Dynamics, compute_dtype, run_sequence
from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments

__all__ = [
    "BACKEND_NAME",
    "KERNELS",
    "DTYPES",
    "DEVICES",
    "snn_register_backends",
    "if_multi_step",
    "lif_multi_step",
    "plif_multi_step",
    "if_single_step",
    "lif_single_step",
    "plif_single_step",
    "probe",
]

#: The registered name of this backend.
BACKEND_NAME = "torch"

#: ``(kind, mode) -> "module:attribute"`` of every kernel of this backend.
KERNELS: dict[tuple[str, str], str] = {
    (kind, mode): f"{__name__}:{kind}_{mode}"
    for kind in ("if", "lif", "plif")
    for mode in ("multi_step", "single_step")
}

#: Storage dtypes served.
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Device types served.
DEVICES = ("cpu", "cuda", "mps")


def probe() -> str | None:
    """The torch backend runs wherever torch runs: always ``None``."""
    return None


@snn.hookimpl
def snn_register_backends(register: object) -> None:
    """Register the ``"torch"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    from snn.surrogate import CLOSED_FORM_SURROGATES

    register(  # type: ignore[operator]
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        dtypes=DTYPES,
        surrogates=tuple(CLOSED_FORM_SURROGATES),
        probe=probe,
        auto_priority=0,
        description="reference PyTorch kernels: fused in-place steps, hand-written backward",
    )


_DYNAMICS_CACHE: dict[tuple[NeuronConfig, float], Dynamics] = {}


def _dynamics(config: NeuronConfig, decay: float) -> Dynamics:
    key = (config, decay)
    found = _DYNAMICS_CACHE.get(key)
    if found is not None:
        return found
    from snn.backends.torch_expr import compile_derivative

    vr = config.reset_potential
    built = Dynamics(
        kind=config.kind,
        decay=decay,
        decay_input=config.decay_input,
        threshold=config.v_threshold - vr,
        v_threshold=config.v_threshold,
        v_reset=vr,
        hard_reset=config.hard_reset,
        detach_reset=config.detach_reset,
        derivative=compile_derivative(config.surrogate),
    )
    if len(_DYNAMICS_CACHE) > 1024:  # PLIF decays change every optimiser step
        _DYNAMICS_CACHE.clear()
    _DYNAMICS_CACHE[key] = built
    return built


def _decay(kind: str, config: NeuronConfig, w: torch.Tensor | None) -> float:
    """``k``: ``sigmoid(w)`` (PLIF), ``1 / tau`` (LIF), unused 0 (IF); arguments already checked."""
    if kind == "plif":
        assert w is not None
        decay = float(torch.sigmoid(w.detach()).item())
        if not 0.0 < decay < 1.0:
            raise ValueError(f"w: sigmoid(w) must lie strictly between 0 and 1, got {decay!r} (w={w.item()!r})")
        return decay
    if kind == "lif":
        assert config.tau is not None
        return 1.0 / config.tau
    return 0.0


def _check(kind: str, x: torch.Tensor, v0: torch.Tensor, config: NeuronConfig, w: object, single: bool) -> None:
    """The contract's checks (:func:`snn.kernels.check_kernel_arguments`), then this backend's dtypes."""
    check_kernel_arguments(kind, x, v0, config, w, single_step=single)
    if x.dtype not in DTYPES:
        raise TypeError(f"{'x' if single else 'x_seq'}: expected one of {DTYPES}, got {x.dtype}")


def _multi_step(
    kind: str,
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    w: torch.Tensor | None,
    store_v_seq: bool,
    checked: bool = False,
) -> KernelResult:
    if not checked:
        _check(kind, x_seq, v0, config, w, single=False)
    d = _dynamics(config, _decay(kind, config, w))
    steps = x_seq.shape[0]
    n = math.prod(x_seq.shape[1:])
    dtype = x_seq.dtype
    work = compute_dtype(dtype)
    x2 = x_seq.reshape(steps, n)
    u0 = v0.reshape(n)
    if work != dtype:
        x2, u0 = x2.to(work), u0.to(work)
    spikes, v_last, v_seq = run_sequence(d, x2, u0, w, bool(store_v_seq))
    if work != dtype:
        spikes, v_last = spikes.to(dtype), v_last.to(dtype)
        v_seq = v_seq.to(dtype) if v_seq is not None else None
    shape = x_seq.shape
    return (
        spikes.view(shape),
        v_last.view(shape[1:]),
        v_seq.view(shape) if v_seq is not None else None,
    )


def _single_step(
    kind: str, x: torch.Tensor, v0: torch.Tensor, config: NeuronConfig, w: torch.Tensor | None
) -> KernelResult:
    _check(kind, x, v0, config, w, single=True)
    spikes, v_last, _ = _multi_step(kind, x.unsqueeze(0), v0, config, w, False, checked=True)
    return spikes[0], v_last, None


def if_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Integrate-and-fire over a sequence: ``h = v + x``.

    Args:
        x_seq: ``[T, *]`` input, float16 / bfloat16 / float32 / float64, any strides.
        v0: ``[*]`` initial potential, same dtype and device.
        config: a :class:`~snn.kernels.NeuronConfig` of kind ``"if"``.
        w: must be ``None``.
        store_v_seq: also return the post-reset potentials.

    Returns:
        ``(spike_seq [T, *], v_last [*], v_seq [T, *] | None)`` in ``x_seq``'s dtype.

    Raises:
        TypeError: non-floating input, dtype or device mismatch, a ``w``.
        ValueError: shape mismatch, ``T == 0``, a config of another kind.
    """
    return _multi_step("if", x_seq, v0, config, w, store_v_seq)


def lif_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Leaky integrate-and-fire over a sequence (``k = 1 / config.tau``).

    ``h = v + (x - (v - vr)) k`` with ``decay_input``, else ``h = v - (v - vr) k + x``.
    Arguments, returns and errors as :func:`if_multi_step`.
    """
    return _multi_step("lif", x_seq, v0, config, w, store_v_seq)


def plif_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """Parametric LIF over a sequence: LIF with ``k = sigmoid(w)``, differentiable in ``w``.

    Args:
        w: the 0-dim learnable parameter (required).

    Other arguments, returns and errors as :func:`if_multi_step`; ``TypeError`` when ``w`` is
    missing.
    """
    return _multi_step("plif", x_seq, v0, config, w, store_v_seq)


def if_single_step(
    x: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """One IF step: ``x`` and ``v0`` are ``[*]``; returns ``(spike [*], v [*], None)``."""
    return _single_step("if", x, v0, config, w)


def lif_single_step(
    x: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """One LIF step: ``x`` and ``v0`` are ``[*]``; returns ``(spike [*], v [*], None)``."""
    return _single_step("lif", x, v0, config, w)


def plif_single_step(
    x: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    *,
    w: torch.Tensor | None = None,
    store_v_seq: bool = False,
) -> KernelResult:
    """One PLIF step (``w`` required): returns ``(spike [*], v [*], None)``."""
    return _single_step("plif", x, v0, config, w)
