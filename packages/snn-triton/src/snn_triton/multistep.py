"""The multi-step kernels of the ``"triton"`` backend (the neuron-kernel contract).

Each function follows :class:`snn.kernels.MultiStepKernel`::

    kernel(x_seq, v0, config, *, w=None, store_v_seq=False) -> (spike_seq, v_last, v_seq | None)

and runs the whole sequence in one Triton launch forward and one backward. Inputs of any
strides are accepted (copied to contiguous ``[T, N]`` when they are not); storage is float32,
float16 or bfloat16 with float32 arithmetic. With a gradient needed the forward saves only
``o = h - v_threshold`` (plus, for PLIF, ``v0``, ``sigmoid(w)`` and, with ``decay_input``,
the input); without, it saves and writes nothing extra.

Usage (normally through a neuron's ``backend="triton"``)::

    from snn.kernels import NeuronConfig, SurrogateSpec
    from snn_triton.multistep import lif_multi_step

    config = NeuronConfig("lif", 1.0, 0.0, False, True, 2.0, SurrogateSpec("Sigmoid", (("alpha", 4.0),)))
    spike_seq, v_last, v_seq = lif_multi_step(x_seq.cuda(), torch.zeros_like(x_seq[0]).cuda(), config)

The functions are traceable by ``torch.compile(fullgraph=True)``: the kernels are the custom
operators of :mod:`snn_triton.ops`.
"""

from __future__ import annotations

import math

import torch

from snn.errors import UnsupportedOperationError
from snn.kernels import KernelResult, NeuronConfig
from snn_triton import ops
from snn_triton.plugin import BACKEND_NAME, DTYPES, claimed_surrogates
from snn_triton.runtime import interpreter_enabled

__all__ = ["if_multi_step", "lif_multi_step", "plif_multi_step"]


#: Surrogate names the kernels implement (fixed at import).
_CLAIMED = frozenset(claimed_surrogates())


def _alternatives(predicate: object) -> list[str]:
    try:
        from snn.plugins import get_registry

        return [name for name, info in get_registry().backends.items() if predicate(info)]  # type: ignore[operator]
    except Exception:  # the error message must not fail because of the registry
        return []


@torch.compiler.assume_constant_result
def _encoded(config: NeuronConfig) -> str:
    return ops.encode_config(config)


def _check(kind: str, x_seq: torch.Tensor, v0: torch.Tensor, config: NeuronConfig, w: object) -> None:
    if not isinstance(config, NeuronConfig):
        raise TypeError(f"config: expected snn.kernels.NeuronConfig, got {type(config).__name__}")
    if config.kind != kind:
        raise ValueError(f"config.kind: this is the {kind!r} kernel, got a config of kind {config.kind!r}")
    if not isinstance(x_seq, torch.Tensor) or not x_seq.is_floating_point():
        what = x_seq.dtype if isinstance(x_seq, torch.Tensor) else type(x_seq).__name__
        raise TypeError(f"x_seq: expected a floating-point tensor, got {what}")
    if x_seq.dim() == 0 or x_seq.shape[0] == 0:
        raise ValueError(f"x_seq: expected shape [T, *] with T >= 1, got {tuple(x_seq.shape)}")
    if x_seq.dtype not in DTYPES:
        raise UnsupportedOperationError(
            BACKEND_NAME, f"dtype {x_seq.dtype}", _alternatives(lambda b: x_seq.dtype in b.dtypes)
        )
    device = x_seq.device.type
    if device != "cuda" and not (device == "cpu" and interpreter_enabled()):
        raise UnsupportedOperationError(
            BACKEND_NAME,
            f"tensors on device {device!r} (CUDA only; TRITON_INTERPRET=1 emulates it on CPU for tests)",
            _alternatives(lambda b: b.serves_device(device)),
        )
    name = config.surrogate.name
    if name not in _CLAIMED:
        raise UnsupportedOperationError(
            BACKEND_NAME, f"surrogate {name!r}", _alternatives(lambda b: name in b.surrogates)
        )
    if not isinstance(v0, torch.Tensor):
        raise TypeError(f"v0: expected a tensor, got {type(v0).__name__}")
    if v0.shape != x_seq.shape[1:]:
        raise ValueError(f"v0: expected shape {tuple(x_seq.shape[1:])} (one step of x_seq), got {tuple(v0.shape)}")
    if v0.dtype != x_seq.dtype or v0.device != x_seq.device:
        raise TypeError(
            f"v0: expected dtype {x_seq.dtype} on {x_seq.device} like x_seq, got {v0.dtype} on {v0.device}"
        )
    if kind == "plif":
        if not isinstance(w, torch.Tensor) or w.numel() != 1 or not w.is_floating_point():
            raise TypeError(
                f"w: expected the one-element floating parameter of a PLIF neuron (decay = sigmoid(w)), got {w!r}"
            )
        if w.device != x_seq.device:
            raise TypeError(f"w: expected a tensor on {x_seq.device} like x_seq, got one on {w.device}")
    elif w is not None:
        raise TypeError(f"w: only PLIF neurons take a decay parameter, got one for kind {kind!r}")


def _multi_step(
    kind: str,
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    config: NeuronConfig,
    w: torch.Tensor | None,
    store_v_seq: bool,
) -> KernelResult:
    _check(kind, x_seq, v0, config, w)
    shape = x_seq.shape
    steps = shape[0]
    n = math.prod(shape[1:])
    decay = torch.sigmoid(w.reshape(())).to(torch.float32) if w is not None else None
    needs_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or v0.requires_grad or (w is not None and w.requires_grad)
    )
    spike, v_last, v_seq, _ = torch.ops.snn_triton.multistep_forward(
        x_seq.reshape(steps, n), v0.reshape(n), decay, _encoded(config), needs_grad, bool(store_v_seq)
    )
    return (
        spike.view(shape),
        v_last.view(shape[1:]),
        v_seq.view(shape) if store_v_seq else None,
    )


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
        x_seq: ``[T, *]`` input, float32 / float16 / bfloat16, on CUDA (or CPU under
            ``TRITON_INTERPRET=1``), any strides.
        v0: ``[*]`` initial potential, same dtype and device.
        config: a :class:`~snn.kernels.NeuronConfig` of kind ``"if"``.
        w: must be ``None``.
        store_v_seq: also return the post-reset potentials.

    Returns:
        ``(spike_seq [T, *], v_last [*], v_seq [T, *] | None)`` in ``x_seq``'s dtype.

    Raises:
        TypeError, ValueError: bad arguments (named in the message).
        snn.errors.UnsupportedOperationError: a dtype, device or surrogate this backend lacks.
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
    """Leaky integrate-and-fire: ``h = v + (x - (v - vr)) / tau`` (or ``v - (v - vr) / tau + x``).

    Args:
        x_seq: ``[T, *]`` input, float32 / float16 / bfloat16, on CUDA (or CPU under
            ``TRITON_INTERPRET=1``), any strides.
        v0: ``[*]`` initial potential, same dtype and device.
        config: a :class:`~snn.kernels.NeuronConfig` of kind ``"lif"``.
        w: must be ``None``.
        store_v_seq: also return the post-reset potentials.

    Returns:
        ``(spike_seq [T, *], v_last [*], v_seq [T, *] | None)`` in ``x_seq``'s dtype.

    Raises:
        TypeError, ValueError: bad arguments (named in the message).
        snn.errors.UnsupportedOperationError: a dtype, device or surrogate this backend lacks.
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
    """Parametric LIF: as LIF with ``1 / tau`` replaced by ``sigmoid(w)``.

    Args:
        x_seq: ``[T, *]`` input, float32 / float16 / bfloat16, on CUDA (or CPU under
            ``TRITON_INTERPRET=1``), any strides.
        v0: ``[*]`` initial potential, same dtype and device.
        config: a :class:`~snn.kernels.NeuronConfig` of kind ``"plif"``.
        w: the one-element learnable parameter (any float dtype, same device); its gradient
            is reduced deterministically (per-program partial sums added by torch).
        store_v_seq: also return the post-reset potentials.

    Returns:
        ``(spike_seq [T, *], v_last [*], v_seq [T, *] | None)`` in ``x_seq``'s dtype.

    Raises:
        TypeError, ValueError: bad arguments (named in the message).
        snn.errors.UnsupportedOperationError: a dtype, device or surrogate this backend lacks.
    """
    return _multi_step("plif", x_seq, v0, config, w, store_v_seq)
