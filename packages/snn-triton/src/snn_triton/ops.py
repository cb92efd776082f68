"""The kernels as PyTorch custom operators, with fake implementations and autograd.

Two operators, both opaque to ``torch.compile`` (it traces through them without graph breaks,
using the fake implementations for shapes):

- ``snn_triton::multistep_forward(x, v0, decay, config, save_o, store_v_seq)`` returns
  ``(spike [T, N], v_last [N], v_seq [T, N] or [0], o [T, N] or [0])``;
- ``snn_triton::multistep_backward(grad_spike, grad_v_last, grad_v_seq, o, x, v0, decay,
  config)`` returns ``(grad_x [T, N], grad_v0 [N], grad_decay [])``.

``x`` is ``[T, N]`` and ``v0`` ``[N]`` in the storage dtype; ``decay`` is PLIF's 0-dim float32
``sigmoid(w)`` (``None`` otherwise); ``config`` is a :class:`~snn.kernels.NeuronConfig`
encoded by :func:`encode_config`. ``o = h - v_threshold`` is what training saves (see
:mod:`snn_triton.triton_kernels`); with ``save_o=False`` (inference) nothing is saved and
``o`` is an empty tensor. The forward's autograd formula calls the backward operator, whose
gradient to ``decay`` flows on to ``w`` through torch's own sigmoid. Double backward is not
supported.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch
import triton

from snn.kernels import NeuronConfig, SurrogateSpec
from snn_triton import triton_kernels
from snn_triton.codegen import surrogate_derivative_function
from snn_triton.runtime import interpreter_enabled

__all__ = [
    "KIND_CODES",
    "encode_config",
    "decode_config",
    "launch_config",
    "multistep_forward",
    "multistep_backward",
]

#: Neuron kind -> the kernels' ``KIND`` code.
KIND_CODES = {"if": 0, "lif": 1, "plif": 2}

#: Largest block the interpreter uses (tests lower it to exercise several programs).
INTERPRETER_MAX_BLOCK = 1024


@functools.lru_cache(maxsize=4096)
def encode_config(config: NeuronConfig) -> str:
    """``config`` as a JSON string (operators take strings; floats round-trip exactly).

    Args:
        config: the neuron configuration.

    Returns:
        A string that :func:`decode_config` turns back into an equal configuration.
    """
    spec = config.surrogate
    return json.dumps([
        config.kind, config.v_threshold, config.v_reset, config.detach_reset, config.decay_input,
        config.tau, spec.name, [[name, float(value)] for name, value in spec.params],
    ])


@functools.lru_cache(maxsize=4096)
def decode_config(encoded: str) -> NeuronConfig:
    """The :class:`~snn.kernels.NeuronConfig` of a string made by :func:`encode_config`.

    Raises:
        ValueError: ``encoded`` is not such a string.
    """
    try:
        kind, v_th, v_reset, detach, decay_input, tau, name, params = json.loads(encoded)
        spec = SurrogateSpec(str(name), tuple((str(k), float(v)) for k, v in params))
        return NeuronConfig(
            str(kind), float(v_th), None if v_reset is None else float(v_reset), bool(detach),
            bool(decay_input), None if tau is None else float(tau), spec,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config: expected a string made by encode_config, got {encoded!r}: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def launch_config(n: int, device: torch.device) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for ``n`` neurons on ``device``.

    On a GPU: the largest block of 1024, 512, 256 or 128 neurons that still gives at least two
    programs per multiprocessor (every thread then moves 16-byte vectors for float32 at 1024
    and 512); under the interpreter: one program of up to :data:`INTERPRETER_MAX_BLOCK`
    neurons when it fits (fewer programs interpret faster).
    """
    if device.type != "cuda" or interpreter_enabled():
        block = 16
        while block < n and block < INTERPRETER_MAX_BLOCK:
            block *= 2
        return block, 4
    index = device.index if device.index is not None else torch.cuda.current_device()
    programs_wanted = 2 * _sm_count(index)
    for block in (1024, 512, 256):
        if triton.cdiv(n, block) >= programs_wanted:
            return block, max(1, min(4, block // 128))
    return 128, 1


def _device_guard(device: torch.device) -> Any:
    if device.type == "cuda" and not interpreter_enabled():
        return torch.cuda.device(device)
    return _NullContext()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((0,))


# ---------------------------------------------------------------------------------------------
# forward


@torch.library.custom_op("snn_triton::multistep_forward", mutates_args=())
def multistep_forward(
    x: torch.Tensor,
    v0: torch.Tensor,
    decay: torch.Tensor | None,
    config: str,
    save_o: bool,
    store_v_seq: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the forward kernel (see the module docstring for arguments and results)."""
    cfg = decode_config(config)
    if save_o:
        surrogate_derivative_function(cfg.surrogate)  # fail now, not in backward
    x = x.contiguous()
    v0 = v0.contiguous()
    steps, n = x.shape
    spike = torch.empty_like(x)
    v_last = torch.empty_like(v0)
    v_seq = torch.empty_like(x) if store_v_seq else _empty(x)
    o = torch.empty_like(x) if save_o else _empty(x)
    if n == 0:
        return spike, v_last, v_seq, o
    kind = KIND_CODES[cfg.kind]
    plif_decay = decay.detach().to(torch.float32).contiguous() if kind == 2 and decay is not None else None
    if kind == 2 and plif_decay is None:
        raise ValueError("decay: expected the 0-dim sigmoid(w) tensor for a PLIF neuron, got None")
    block, warps = launch_config(n, x.device)
    with _device_guard(x.device):
        triton_kernels.forward_kernel[(triton.cdiv(n, block),)](
            x, v0, plif_decay,
            spike, o if save_o else None, v_seq if store_v_seq else None, v_last,
            steps, n,
            float(cfg.v_threshold), float(cfg.reset_potential), float(cfg.tau or 1.0),
            KIND=kind,
            HARD_RESET=cfg.hard_reset,
            DECAY_INPUT=cfg.decay_input,
            SAVE_O=save_o,
            STORE_V_SEQ=store_v_seq,
            BLOCK=block,
            num_warps=warps,
        )
    return spike, v_last, v_seq, o


@multistep_forward.register_fake
def _multistep_forward_fake(
    x: torch.Tensor,
    v0: torch.Tensor,
    decay: torch.Tensor | None,
    config: str,
    save_o: bool,
    store_v_seq: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    spike = torch.empty_like(x, memory_format=torch.contiguous_format)
    v_last = torch.empty_like(v0, memory_format=torch.contiguous_format)
    v_seq = torch.empty_like(spike) if store_v_seq else _empty(x)
    o = torch.empty_like(spike) if save_o else _empty(x)
    return spike, v_last, v_seq, o


# ---------------------------------------------------------------------------------------------
# backward


def _grad(value: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor | None:
    if value is None or value.shape != shape:
        return None
    return value.to(dtype).contiguous()


@torch.library.custom_op("snn_triton::multistep_backward", mutates_args=())
def multistep_backward(
    grad_spike: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    o: torch.Tensor,
    x: torch.Tensor | None,
    v0: torch.Tensor | None,
    decay: torch.Tensor | None,
    config: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the backward kernel (see the module docstring for arguments and results)."""
    cfg = decode_config(config)
    kind = KIND_CODES[cfg.kind]
    steps, n = o.shape
    dtype = o.dtype
    o = o.contiguous()
    grad_spike = _grad(grad_spike, o.shape, dtype)
    grad_v_seq = _grad(grad_v_seq, o.shape, dtype)
    grad_v_last = _grad(grad_v_last, o.shape[1:], dtype)
    grad_x = torch.empty_like(o)
    grad_v0 = o.new_empty((n,))
    grad_decay = torch.zeros((), dtype=torch.float32, device=o.device)
    if n == 0:
        return grad_x, grad_v0, grad_decay
    block, warps = launch_config(n, o.device)
    programs = triton.cdiv(n, block)
    partials = None
    if kind == 2:
        if decay is None or v0 is None or (cfg.decay_input and x is None):
            raise ValueError("decay, v0 and (decay_input) x: PLIF's backward needs them, got None")
        decay = decay.detach().to(torch.float32).contiguous()
        v0 = v0.contiguous()
        x = x.contiguous() if cfg.decay_input and x is not None else None
        partials = torch.empty((programs,), dtype=torch.float32, device=o.device)
    else:
        x = v0 = decay = None
    with _device_guard(o.device):
        triton_kernels.backward_kernel[(programs,)](
            grad_spike, grad_v_seq, grad_v_last,
            o, x, v0, decay,
            grad_x, grad_v0, partials,
            steps, n,
            float(cfg.v_threshold), float(cfg.reset_potential), float(cfg.tau or 1.0),
            SURROGATE=surrogate_derivative_function(cfg.surrogate),
            KIND=kind,
            HARD_RESET=cfg.hard_reset,
            DETACH_RESET=cfg.detach_reset,
            DECAY_INPUT=cfg.decay_input,
            HAS_GRAD_SPIKE=grad_spike is not None,
            HAS_GRAD_V_SEQ=grad_v_seq is not None,
            HAS_GRAD_V_LAST=grad_v_last is not None,
            BLOCK=block,
            num_warps=warps,
        )
    if partials is not None:
        # deterministic: fixed per-program partials, summed in float64 by torch
        grad_decay = partials.sum(dtype=torch.float64).to(torch.float32)
    return grad_x, grad_v0, grad_decay


@multistep_backward.register_fake
def _multistep_backward_fake(
    grad_spike: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    o: torch.Tensor,
    x: torch.Tensor | None,
    v0: torch.Tensor | None,
    decay: torch.Tensor | None,
    config: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_x = torch.empty_like(o, memory_format=torch.contiguous_format)
    grad_v0 = o.new_empty((o.shape[1],))
    grad_decay = o.new_empty((), dtype=torch.float32)
    return grad_x, grad_v0, grad_decay


# ---------------------------------------------------------------------------------------------
# autograd


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    x, v0, decay, config, save_o, store_v_seq = inputs
    o = output[3]
    cfg = decode_config(config)
    plif = cfg.kind == "plif"
    ctx.config = config
    ctx.saved = bool(save_o)
    ctx.store_v_seq = bool(store_v_seq)
    ctx.save_for_backward(
        o,
        x if (plif and cfg.decay_input) else None,
        v0 if plif else None,
        decay if plif else None,
    )
    ctx.mark_non_differentiable(o)
    ctx.set_materialize_grads(False)


def _backward(
    ctx: Any,
    grad_spike: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    grad_o: torch.Tensor | None,
) -> tuple[torch.Tensor | None, ...]:
    if not ctx.saved:
        raise RuntimeError(
            "snn_triton::multistep_forward ran with save_o=False (inference) and saved nothing "
            "for backward; call it with save_o=True when gradients are needed"
        )
    o, x, v0, decay = ctx.saved_tensors
    if grad_spike is None and grad_v_last is None and (grad_v_seq is None or not ctx.store_v_seq):
        return None, None, None, None, None, None
    grad_x, grad_v0, grad_decay = torch.ops.snn_triton.multistep_backward(
        grad_spike, grad_v_last, grad_v_seq if ctx.store_v_seq else None, o, x, v0, decay, ctx.config
    )
    need_x, need_v0, need_decay = ctx.needs_input_grad[:3]
    return (
        grad_x if need_x else None,
        grad_v0 if need_v0 else None,
        grad_decay if (need_decay and decay is not None) else None,
        None,
        None,
        None,
    )


torch.library.register_autograd(
    "snn_triton::multistep_forward", _backward, setup_context=_setup_context
)
