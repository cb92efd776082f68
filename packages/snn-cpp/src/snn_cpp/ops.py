"""The compiled kernels as PyTorch custom operators, with fake implementations and autograd.

Two operators, opaque to ``torch.compile`` (it traces through them without graph breaks, using
the fake implementations for shapes):

- ``snn_cpp::forward(x, states, learnables, key, save, store)`` with ``x`` ``[T, N]``, the
  states ``[N]`` each and the learnable parameters ``[1]`` each (all in ``x``'s dtype) returns
  ``[spikes [T, N], *last states [N], *state sequences [T, N] (when store),
  *saved charged values [T, N] (when save)]``;
- ``snn_cpp::backward(saved, x, initial, learnables, grad_spikes, grad_last, grad_seqs, key)``
  returns ``[grad_x [T, N], *grad of each initial state [N], *grad of each learnable [1]]``.

``key`` names a configuration registered by :func:`configuration_key` (a string, so the graph
holds a constant). The forward's autograd formula calls the backward operator; absent incoming
gradients stay absent (``None``), so the kernels skip their terms as autograd would. Double
backward is not supported.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import torch

from snn.backends.memory import empty_like
from snn.models import KernelPlan, NeuronConfig, kernel_plan
from snn_cpp.build import load_library
from snn_cpp.codegen import MAX_BLOCK, KernelLayout, embedded_id, generate_source, layout_of, source_id

__all__ = [
    "DTYPE_NAMES",
    "SERIAL_WORK",
    "STACK_BYTES",
    "STREAM_BYTES",
    "CompiledKernels",
    "configuration_key",
    "compiled_kernels",
    "block_size",
    "forward",
    "backward",
]

#: Storage dtypes of the kernels, by the name :func:`snn_cpp.codegen.generate_source` takes.
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}

#: Below this many neuron-steps a call runs on one thread (a parallel region costs more).
SERIAL_WORK = 1 << 15

#: Stack bytes a kernel's buffers may take (see :func:`block_size`): small, so that threads with
#: small stacks (``OMP_STACKSIZE``, ``threading.stack_size``) run the kernels too. Half of it
#: bounds the per-neuron sums of the learnable parameters' gradients; the rest holds the
#: per-chunk buffers (a few of :data:`~snn_cpp.codegen.CHUNK` values each) and the frames.
STACK_BYTES = 64 << 10

#: ``[T, N]`` outputs of at least this many bytes are written with non-temporal stores (see
#: :mod:`snn_cpp.codegen`): an output this large would not stay in the caches for its reader
#: anyway, and a cached store first reads every line it writes (a third more memory traffic for
#: the forward pass). Read at every call.
STREAM_BYTES = 16 << 20


_lock = threading.Lock()
_keys: dict[NeuronConfig, str] = {}
_plans: dict[str, KernelPlan] = {}
_kernels: dict[tuple[str, torch.dtype], CompiledKernels] = {}


@dataclass(frozen=True)
class CompiledKernels:
    """The loaded entry points of one configuration and dtype.

    Attributes:
        layout: what the pointer tables hold.
        library: the loaded shared library (kept alive here).
        forward: ``snn_forward(T, N, block, threads, save, store, stream, ptrs)``.
        backward: ``snn_backward(T, N, block, threads, stream, flags, ptrs)``.
    """

    layout: KernelLayout
    library: ctypes.CDLL
    forward: Any
    backward: Any


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # torch leaves it untyped
def configuration_key(config: NeuronConfig) -> str:
    """The operators' name for ``config``: its model and the id of its float64 source (whose
    literals are the plan's numbers exactly, so configurations share a key only when their plans
    render the same in every dtype).

    ``torch.compile`` calls this while tracing and keeps the result as a constant of the graph.
    """
    found = _keys.get(config)
    if found is not None:
        return found
    plan = kernel_plan(config)
    key = f"{config.model.name}-{source_id(generate_source(plan, 'float64'))[:20]}"
    with _lock:
        _plans.setdefault(key, plan)
        _keys[config] = key
    return key


def _plan(key: str) -> KernelPlan:
    try:
        return _plans[key]
    except KeyError:
        raise ValueError(
            f"key: expected a configuration key made by snn_cpp.ops.configuration_key in this process, got {key!r}"
        ) from None


def compiled_kernels(key: str, dtype: torch.dtype) -> CompiledKernels:
    """The kernels of configuration ``key`` for ``dtype``, compiled or loaded on first use."""
    found = _kernels.get((key, dtype))
    if found is not None:
        return found
    plan = _plan(key)
    source = generate_source(plan, DTYPE_NAMES[dtype])
    library = load_library(source, embedded_id(source))
    forward_fn = library.snn_forward
    forward_fn.restype = None
    forward_fn.argtypes = (
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_void_p,
    )
    backward_fn = library.snn_backward
    backward_fn.restype = None
    backward_fn.argtypes = (
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p
    )
    kernels = CompiledKernels(layout_of(plan), library, forward_fn, backward_fn)
    with _lock:
        return _kernels.setdefault((key, dtype), kernels)


def block_size(n: int, layout: KernelLayout, *, backward: bool = False) -> int:
    """Neurons per block for ``n`` neurons: about a sixteenth of them (so that up to 16 threads
    share the work evenly), a multiple of 64, between 1024 and :data:`~snn_cpp.codegen.MAX_BLOCK`,
    and, for the ``backward`` pass of a model with learnable parameters, small enough that the
    per-neuron sums of their gradients (states and carried gradients live in the outputs'
    slices) stay within half of :data:`STACK_BYTES`, leaving the rest to the chunk buffers. It
    depends on ``n``, the model and the pass only, never on the number of threads, so sums over
    blocks are reproducible."""
    per_neuron = 16 * layout.learnables if backward else 0
    cap = max(64, (STACK_BYTES // 2 // per_neuron) // 64 * 64) if per_neuron else MAX_BLOCK
    wanted = -(-n // 16)
    wanted = -(-wanted // 64) * 64
    return max(64, min(MAX_BLOCK, cap, max(1024, wanted)))


def _threads(steps: int, n: int, block: int) -> int:
    if steps * n < SERIAL_WORK:
        return 1
    return max(1, min(torch.get_num_threads(), -(-n // block)))


def _streams(like: torch.Tensor) -> int:
    """1 when ``[T, N]`` outputs like ``like`` are written with non-temporal stores."""
    return int(like.numel() * like.element_size() >= STREAM_BYTES)


def _pointers(tensors: list[torch.Tensor | None]) -> Any:
    table = (ctypes.c_void_p * max(1, len(tensors)))()
    for index, tensor in enumerate(tensors):
        table[index] = None if tensor is None else tensor.data_ptr()
    return table


def _layout(key: str) -> KernelLayout:
    return layout_of(_plan(key))


def _check_tensor(name: str, tensor: Any, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """The operators hand raw pointers to C: every tensor must be a CPU tensor of the exact
    shape and dtype the kernel indexes, or it would read or write out of bounds."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu" or tensor.dtype != dtype or tuple(tensor.shape) != shape:
        error = ValueError if tensor.device.type == "cpu" and tensor.dtype == dtype else TypeError
        raise error(
            f"{name}: expected a CPU {dtype} tensor of shape {list(shape)}, got a {tensor.device.type} "
            f"{tensor.dtype} tensor of shape {list(tensor.shape)}"
        )


def _check_count(name: str, values: list[Any], expected: int, key: str) -> None:
    if len(values) != expected:
        raise ValueError(f"{name}: configuration {key!r} expects {expected}, got {len(values)}")


def _check_forward_inputs(
    x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor], key: str, layout: KernelLayout
) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype not in DTYPE_NAMES or x.device.type != "cpu":
        what = f"a {x.device.type} {x.dtype} tensor of {x.dim()} dimensions" if isinstance(x, torch.Tensor) else type(x).__name__
        wrong_kind = not isinstance(x, torch.Tensor) or x.dtype not in DTYPE_NAMES or x.device.type != "cpu"
        raise (TypeError if wrong_kind else ValueError)(
            f"x: expected a [T, N] CPU tensor of dtype {' or '.join(map(str, DTYPE_NAMES))}, got {what}"
        )
    _check_count("states", states, layout.states, key)
    _check_count("learnables", learnables, layout.learnables, key)
    n = x.shape[1]
    for index, state in enumerate(states):
        _check_tensor(f"states[{index}]", state, (n,), x.dtype)
    for index, parameter in enumerate(learnables):
        _check_tensor(f"learnables[{index}]", parameter.reshape(-1) if isinstance(parameter, torch.Tensor) else parameter, (1,), x.dtype)


def _check_backward_inputs(
    saved: list[torch.Tensor], x: torch.Tensor | None, initial: list[torch.Tensor], learnables: list[torch.Tensor],
    grad_spikes: torch.Tensor | None, grad_last: list[torch.Tensor | None], grad_seqs: list[torch.Tensor | None],
    key: str, layout: KernelLayout,
) -> None:
    _check_count("saved", saved, len(layout.saved), key)
    _check_count("initial", initial, len(layout.initial_needed), key)
    _check_count("learnables", learnables, layout.learnables, key)
    _check_count("grad_last", grad_last, layout.states, key)
    _check_count("grad_seqs", grad_seqs, layout.states, key)
    if not saved or not isinstance(saved[0], torch.Tensor) or saved[0].dim() != 2 or saved[0].dtype not in DTYPE_NAMES:
        raise ValueError("saved: expected the [T, N] float32 or float64 tensors the forward saved")
    like = saved[0]
    steps, n = like.shape
    for index, tensor in enumerate(saved):
        _check_tensor(f"saved[{index}]", tensor, (steps, n), like.dtype)
    if layout.save_input:
        _check_tensor("x", x, (steps, n), like.dtype)
    for index, tensor in enumerate(initial):
        _check_tensor(f"initial[{index}]", tensor, (n,), like.dtype)
    for index, parameter in enumerate(learnables):
        _check_tensor(f"learnables[{index}]", parameter.reshape(-1) if isinstance(parameter, torch.Tensor) else parameter, (1,), like.dtype)
    # incoming gradients are converted to the saved dtype; their shapes must match
    incoming: list[tuple[str, torch.Tensor | None, tuple[int, ...]]] = [("grad_spikes", grad_spikes, (steps, n))]
    incoming += [(f"grad_last[{i}]", g, (n,)) for i, g in enumerate(grad_last)]
    incoming += [(f"grad_seqs[{i}]", g, (steps, n)) for i, g in enumerate(grad_seqs)]
    for name, gradient, shape in incoming:
        if gradient is not None:
            _check_tensor(name, gradient, shape, gradient.dtype if isinstance(gradient, torch.Tensor) else like.dtype)


# ---------------------------------------------------------------------------------------------
# forward


@torch.library.custom_op("snn_cpp::forward", mutates_args=())
def forward(
    x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor], key: str, save: bool, store: bool
) -> list[torch.Tensor]:
    """Run the forward kernel (see the module docstring for arguments and results).

    Raises:
        TypeError, ValueError: a tensor of the wrong shape, dtype or device, or the wrong
            number of states or learnable parameters for ``key``'s configuration.
    """
    _check_forward_inputs(x, states, learnables, key, _layout(key))
    kernels = compiled_kernels(key, x.dtype)
    layout = kernels.layout
    x = x.contiguous()
    states = [s.contiguous() for s in states]
    steps, n = x.shape
    spikes = empty_like(x)
    last = [torch.empty_like(s) for s in states]
    seqs = [empty_like(x) for _ in states] if store else []
    saved = [empty_like(x) for _ in layout.saved] if save else []
    if n > 0:
        params = torch.cat([p.reshape(1) for p in learnables]).contiguous() if learnables else None
        table: list[torch.Tensor | None] = [x, *states, params, spikes, *last]
        table += seqs if store else [None] * layout.states
        table += saved if save else [None] * len(layout.saved)
        block = block_size(n, layout)
        stream = _streams(x)
        kernels.forward(steps, n, block, _threads(steps, n, block), int(save), int(store), stream, _pointers(table))
    return [spikes, *last, *seqs, *saved]


@forward.register_fake
def _forward_fake(
    x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor], key: str, save: bool, store: bool
) -> list[torch.Tensor]:
    layout = _layout(key)
    spikes = torch.empty_like(x, memory_format=torch.contiguous_format)
    last = [torch.empty_like(s, memory_format=torch.contiguous_format) for s in states]
    seqs = [torch.empty_like(spikes) for _ in states] if store else []
    saved = [torch.empty_like(spikes) for _ in layout.saved] if save else []
    return [spikes, *last, *seqs, *saved]


def _setup_forward(ctx: Any, inputs: tuple[Any, ...], output: list[torch.Tensor]) -> None:
    x, states, learnables, key, save, store = inputs
    layout = _layout(key)
    m = layout.states
    saved = output[1 + m + (m if store else 0):] if save else []
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(*saved)
    ctx.key, ctx.save, ctx.store, ctx.m = key, save, store, m
    ctx.n_learnables = len(learnables)
    tensors = [*saved, *(states[i] for i in layout.initial_needed), *learnables]
    if layout.save_input:
        tensors.append(x)
    ctx.save_for_backward(*tensors)


def _backward_forward(ctx: Any, grads: list[torch.Tensor | None]) -> tuple[Any, ...]:
    if not ctx.save:
        raise RuntimeError(
            "snn_cpp::forward ran with save=False, so it kept nothing for a backward pass; call it with save=True "
            "when a gradient is needed (snn_cpp.kernel.multi_step does)"
        )
    layout = _layout(ctx.key)
    m = ctx.m
    tensors = list(ctx.saved_tensors)
    n_saved, n_init = len(layout.saved), len(layout.initial_needed)
    saved = tensors[:n_saved]
    initial = tensors[n_saved : n_saved + n_init]
    learnables = tensors[n_saved + n_init : n_saved + n_init + ctx.n_learnables]
    x = tensors[-1] if layout.save_input else None
    grad_spikes = grads[0]
    grad_last = list(grads[1 : 1 + m])
    grad_seqs = list(grads[1 + m : 1 + 2 * m]) if ctx.store else [None] * m
    if grad_spikes is None and all(g is None for g in (*grad_last, *grad_seqs)):
        return None, [None] * m, [None] * ctx.n_learnables, None, None, None
    out = backward(saved, x, initial, learnables, grad_spikes, grad_last, grad_seqs, ctx.key)
    return out[0], list(out[1 : 1 + m]), list(out[1 + m :]), None, None, None


torch.library.register_autograd("snn_cpp::forward", _backward_forward, setup_context=_setup_forward)


# ---------------------------------------------------------------------------------------------
# backward


def _incoming(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if grad is None else grad.to(like.dtype).contiguous()


@torch.library.custom_op("snn_cpp::backward", mutates_args=())
def backward(
    saved: list[torch.Tensor],
    x: torch.Tensor | None,
    initial: list[torch.Tensor],
    learnables: list[torch.Tensor],
    grad_spikes: torch.Tensor | None,
    grad_last: list[torch.Tensor | None],
    grad_seqs: list[torch.Tensor | None],
    key: str,
) -> list[torch.Tensor]:
    """Run the backward kernel (see the module docstring for arguments and results).

    Raises:
        TypeError, ValueError: as :func:`forward`, for every tensor and list.
    """
    _check_backward_inputs(saved, x, initial, learnables, grad_spikes, grad_last, grad_seqs, key, _layout(key))
    like = saved[0]
    kernels = compiled_kernels(key, like.dtype)
    layout = kernels.layout
    m = layout.states
    steps, n = like.shape
    saved = [s.contiguous() for s in saved]
    initial = [s.contiguous() for s in initial]
    grad_x = empty_like(like)
    grad_initial = [torch.empty((n,), dtype=like.dtype) for _ in range(m)]
    n_p = layout.learnables
    dp = torch.zeros((max(n_p, 1),), dtype=torch.float64)
    if n > 0:
        gs = _incoming(grad_spikes, like)
        gl = [_incoming(g, like) for g in grad_last]
        gq = [_incoming(g, like) for g in grad_seqs]
        params = torch.cat([p.reshape(1) for p in learnables]).contiguous() if learnables else None
        block = block_size(n, layout, backward=True)
        blocks = -(-n // block)
        partial = torch.empty((blocks * max(n_p, 1),), dtype=torch.float64)
        table: list[torch.Tensor | None] = [*saved]
        if layout.save_input:
            table.append(None if x is None else x.contiguous())
        table += [*initial, params, gs, *gl, *gq, grad_x, *grad_initial, partial, dp]
        flags = (ctypes.c_int32 * (1 + 2 * m))(gs is not None, *(g is not None for g in gl), *(g is not None for g in gq))
        threads = _threads(steps, n, block)
        kernels.backward(steps, n, block, threads, _streams(like), ctypes.cast(flags, ctypes.c_void_p), _pointers(table))
    else:
        grad_x.zero_()
        for g in grad_initial:
            g.zero_()
    grad_p = [dp[k : k + 1].to(like.dtype, copy=True) for k in range(n_p)]
    return [grad_x, *grad_initial, *grad_p]


@backward.register_fake
def _backward_fake(
    saved: list[torch.Tensor],
    x: torch.Tensor | None,
    initial: list[torch.Tensor],
    learnables: list[torch.Tensor],
    grad_spikes: torch.Tensor | None,
    grad_last: list[torch.Tensor | None],
    grad_seqs: list[torch.Tensor | None],
    key: str,
) -> list[torch.Tensor]:
    layout = _layout(key)
    like = saved[0]
    grad_x = torch.empty_like(like, memory_format=torch.contiguous_format)
    grad_initial = [like.new_empty((like.shape[1],)) for _ in range(layout.states)]
    grad_p = [like.new_empty((1,)) for _ in range(layout.learnables)]
    return [grad_x, *grad_initial, *grad_p]
