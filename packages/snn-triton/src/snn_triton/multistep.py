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
from snn.kernels import KernelResult, NeuronConfig, SurrogateSpec, check_kernel_arguments
from snn_triton import ops
from snn_triton.plugin import BACKEND_NAME, DTYPES, claimed_surrogates
from snn_triton.runtime import interpreter_enabled

__all__ = ["if_multi_step", "lif_multi_step", "plif_multi_step"]


#: Surrogate names the kernels implement (fixed at import).
_CLAIMED = frozenset(claimed_surrogates())


@torch.compiler.assume_constant_result
def _encode_fields(
    kind: str,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    decay_input: bool,
    tau: float | None,
    surrogate_name: str,
    surrogate_params: tuple[tuple[str, float], ...],
) -> str:
    config = NeuronConfig(
        kind, v_threshold, v_reset, detach_reset, decay_input, tau,
        SurrogateSpec(surrogate_name, surrogate_params),
    )
    return ops.encode_config(config)


def _encoded(config: NeuronConfig) -> str:
    """``config`` as the operators' string; Dynamo treats the result as a constant.

    The fields are passed one by one: Dynamo cannot hand a dataclass it has not traced before to
    a constant-result function (it fails when a network is compiled before any eager call).
    """
    return _encode_fields(
        config.kind, config.v_threshold, config.v_reset, config.detach_reset, config.decay_input,
        config.tau, config.surrogate.name, config.surrogate.params,
    )


def _check(kind: str, x_seq: torch.Tensor, v0: torch.Tensor, config: NeuronConfig, w: object) -> None:
    """The contract's checks, then this backend's devices, dtypes and surrogates.

    The backend-specific test is plain membership (traceable by ``torch.compile``); only when it
    fails is the registry asked for the error, which lists the backends that would serve the call.
    """
    check_kernel_arguments(kind, x_seq, v0, config, w)
    device = x_seq.device.type
    runs_here = device == "cuda" or (device == "cpu" and interpreter_enabled())
    if runs_here and x_seq.dtype in DTYPES and config.surrogate.name in _CLAIMED:
        return
    from snn.plugins import get_registry

    registry = get_registry()
    if not runs_here:  # decided now, not at registration: TRITON_INTERPRET may have changed
        raise UnsupportedOperationError(
            BACKEND_NAME,
            f"tensors on device {device!r} (CUDA only; TRITON_INTERPRET=1 emulates it on CPU for tests)",
            [name for name, info in registry.backends.items() if info.serves_device(device) and name != BACKEND_NAME],
        )
    registry.check_kernel_inputs(BACKEND_NAME, device, x_seq.dtype, config.surrogate.name)


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

    Arguments, returns and errors as :func:`if_multi_step` (``config`` of kind ``"lif"``).
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
        w: the one-element learnable parameter (any float dtype, same device); its gradient
            is reduced deterministically (per-program partial sums added by torch).

    Other arguments, returns and errors as :func:`if_multi_step` (``config`` of kind ``"plif"``).
    """
    return _multi_step("plif", x_seq, v0, config, w, store_v_seq)
