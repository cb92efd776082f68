"""The generated kernels as PyTorch custom operators, with fake implementations and autograd.

Two operators, both opaque to ``torch.compile`` (it traces through them without graph breaks,
using the fake implementations for shapes):

- ``snn_triton::multi_step_forward(x, states, learnables, config, save, store_seqs)`` returns
  ``(spikes [T, N], last states ([N], ...), state sequences ([T, N], ...) or [], saved charged
  values ([T, N] float32 per saved state) or [])``;
- ``snn_triton::multi_step_backward(grad_spikes, grad_last, grad_seqs, charged, x, states,
  learnables, config, need_x, need_learnables)`` returns ``(grad_x [T, N] (or [0] without
  need_x), grad of each initial state ([N], ...), grad of each learnable ([], ...))``.

``x`` is ``[T, N]`` and each state ``[N]`` in the storage dtype (float32, float16 or bfloat16);
learnable parameters are one-element tensors (their float32 values are handed to the kernels as
a tensor: no device synchronisation). ``config`` is a :class:`~snn.models.NeuronConfig` encoded
by :func:`encode_config`. With ``save=False`` (inference) nothing is saved and the saved list is
empty. Training saves the charged values the plan names, plus the input when
:attr:`~snn.models.KernelPlan.save_input` and the initial states named by
:attr:`~snn.models.KernelPlan.initial_states_needed` (see :mod:`snn_triton.codegen`). Absent
upstream gradients stay ``None`` down to the kernel, which leaves their terms out. Double
backward is not supported.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import weakref
from typing import Any

import torch
import triton

from snn.models import NeuronConfig, SurrogateSpec, kernel_plan
from snn_triton.codegen import STORAGE_TYPES, BackwardVariant, backward_kernel, forward_kernel
from snn_triton.runtime import interpreter_enabled

__all__ = [
    "CONFIG_FORMAT",
    "encode_config",
    "decode_config",
    "launch_config",
    "multi_step_forward",
    "multi_step_backward",
]

#: The first field of every encoded configuration (its format version).
CONFIG_FORMAT = "snn_triton/1"

#: Largest block the interpreter uses (tests lower it to exercise several programs).
INTERPRETER_MAX_BLOCK = 1024

_KNOWN_LIMIT = 4096
_known: dict[str, NeuronConfig] = {}
#: Unregistered models by ``"<name>@<id>"`` while they exist (see :func:`encode_config`).
_local_models: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
#: Surrogate classes no path reaches (defined in a function) by ``"<module>:<qualname>@<id>"``.
_local_surrogates: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()
_known_lock = threading.Lock()


def _class_path(cls: type | None) -> str | None:
    return None if cls is None else f"{cls.__module__}:{cls.__qualname__}"


def encode_config(config: NeuronConfig) -> str:
    """``config`` as the operators' string: model name, hyper-parameters, ``detach_reset`` and
    surrogate (class name, parameters and, for a class outside :mod:`snn.surrogate`,
    ``"module:qualname"``), as JSON (floats round-trip exactly).

    The model must be the one registered under its name (decoding looks it up there).

    Args:
        config: the neuron configuration.

    Returns:
        A string that :func:`decode_config` turns back into an equal configuration.

    A model that is not the registered model of its name (an unregistered one), and a surrogate
    class that no ``"module:qualname"`` path reaches (one defined in a function), are named by
    their identity: such a string decodes in this process only, while they exist.

    Raises:
        TypeError: ``config`` is not a NeuronConfig.
    """
    if not isinstance(config, NeuronConfig):
        raise TypeError(f"config: expected snn.models.NeuronConfig, got {type(config).__name__}")
    from snn.plugins import get_registry

    return _encode(get_registry(), config)


@functools.lru_cache(maxsize=4096)
def _encode(registry: Any, config: NeuronConfig) -> str:
    from snn.errors import RegistryEntryNotFoundError

    model = config.model
    try:
        registered = registry.model(model.name)
    except RegistryEntryNotFoundError:
        registered = None
    model_key = model.name
    if registered is not model:
        # a model the registry does not hold under its name (never registered, or another object
        # of that name): named by its identity, for this process only, like the other backends
        # run it (a registered model's string is rebuilt from the registry in any process)
        model_key = f"{model.name}@{id(model):x}"
        with _known_lock:
            _local_models[model_key] = model
    spec = config.surrogate
    cls_key = _class_path(spec.cls)
    if spec.cls is not None and not _reaches(cls_key, spec.cls):
        # a class defined in a function (or replaced since): named by its identity, for this
        # process only, as unregistered models are
        cls_key = f"{cls_key}@{id(spec.cls):x}"
        with _known_lock:
            _local_surrogates[cls_key] = spec.cls
    encoded = json.dumps([
        CONFIG_FORMAT, model_key, [[name, value] for name, value in config.hyperparameters],
        config.detach_reset, spec.name, [[name, float(value)] for name, value in spec.params], cls_key,
    ])
    with _known_lock:
        if len(_known) >= _KNOWN_LIMIT:
            _known.clear()
        _known[encoded] = config
    return encoded


def _reaches(path: str | None, cls: type) -> bool:
    """Whether ``path`` leads back to ``cls`` (false for a class defined in a function)."""
    try:
        return path is not None and _surrogate_class(path) is cls
    except ValueError:
        return False


def _surrogate_class(path: str) -> type:
    """The class at ``"module:qualname"`` (its module must be imported already: no import from a
    string), or a class encoded by identity in this process (``"...@<id>"``)."""
    if "@" in path:
        local = _local_surrogates.get(path)
        if local is None:
            raise ValueError(f"surrogate class {path!r} was defined in a function and not encoded in this process")
        return local
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise ValueError(f"surrogate class {path!r}: module {module_name!r} is not imported")
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"surrogate class {path!r}: {module_name} has no attribute {qualname!r}")
    if not isinstance(obj, type):
        raise ValueError(f"surrogate class {path!r}: not a class")
    return obj


def decode_config(encoded: str) -> NeuronConfig:
    """The :class:`~snn.models.NeuronConfig` of a string made by :func:`encode_config`.

    A string encoded in this process gives back the very configuration; another is rebuilt from
    the registered model of its name and checked like a new configuration.

    Raises:
        ValueError: ``encoded`` is not such a string, names an unregistered model, or its values
            are out of range.
    """
    found = _known.get(encoded)
    if found is not None:
        return found
    from snn.plugins import get_registry

    return _decode(get_registry(), encoded)


@functools.lru_cache(maxsize=1024)
def _decode(registry: Any, encoded: str) -> NeuronConfig:
    from snn.errors import RegistryEntryNotFoundError

    try:
        fmt, name, hyper, detach, surrogate, params, cls_path = json.loads(encoded)
        if fmt != CONFIG_FORMAT:
            raise ValueError(f"format {fmt!r}, expected {CONFIG_FORMAT!r}")
        if "@" in str(name):
            model = _local_models.get(str(name))
            if model is None:
                raise ValueError(f"neuron model {name!r} is not registered and was not encoded in this process")
        else:
            model = registry.model(str(name))
        cls = None if cls_path is None else _surrogate_class(str(cls_path))
        spec = SurrogateSpec(str(surrogate), tuple((str(k), float(v)) for k, v in params), cls)
        return model.config(spec, bool(detach), **{str(k): v for k, v in hyper})
    except (TypeError, ValueError, RegistryEntryNotFoundError) as exc:
        raise ValueError(f"config: expected a string made by encode_config, got {encoded!r}: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def launch_config(n: int, device: torch.device) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for ``n`` neurons on ``device``.

    On a GPU: the largest block of 1024, 512, 256 or 128 neurons that still gives at least two
    programs per multiprocessor; under the interpreter: one program of up to
    :data:`INTERPRETER_MAX_BLOCK` neurons when it fits (fewer programs interpret faster).
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


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _device_guard(device: torch.device) -> Any:
    if device.type == "cuda" and not interpreter_enabled():
        return torch.cuda.device(device)
    return _NullContext()


def _parameters(learnables: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor | None:
    """The learnable parameters' values as one float32 ``[K]`` tensor on the device (no sync)."""
    if not learnables:
        return None
    return torch.stack([p.detach().reshape(()).to(device=like.device, dtype=torch.float32) for p in learnables])


def _storage(dtype: torch.dtype) -> str:
    """The generator's name of a storage dtype."""
    name = str(dtype).removeprefix("torch.")
    if name not in STORAGE_TYPES:
        raise ValueError(f"dtype: expected one of {STORAGE_TYPES}, got {dtype}")
    return name


def _launch(kernel: Any, parameters: tuple[str, ...], arguments: dict[str, Any], steps: int, n: int,
            device: torch.device) -> None:
    block, warps = launch_config(n, device)
    args = [arguments[name] for name in parameters]
    with _device_guard(device):
        # no contraction into fused multiply-adds: every operation rounds once, as torch's do
        kernel[(triton.cdiv(n, block),)](*args, steps, n, BLOCK=block, num_warps=warps, enable_fp_fusion=False)


# ---------------------------------------------------------------------------------------------
# forward


@torch.library.custom_op("snn_triton::multi_step_forward", mutates_args=())
def multi_step_forward(
    x: torch.Tensor,
    states: list[torch.Tensor],
    learnables: list[torch.Tensor],
    config: str,
    save: bool,
    store_seqs: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Run the forward kernel (see the module docstring for arguments and results)."""
    cfg = decode_config(config)
    plan = kernel_plan(cfg)
    x = x.contiguous()
    steps, n = x.shape
    spikes = torch.empty_like(x)
    last = [torch.empty((n,), dtype=x.dtype, device=x.device) for _ in plan.states]
    seqs = [torch.empty_like(x) for _ in plan.states] if store_seqs else []
    charged = [torch.empty((steps, n), dtype=torch.float32, device=x.device) for _ in plan.saved_states] if save else []
    if n == 0:
        return spikes, last, seqs, charged
    kernel, parameters = forward_kernel(cfg, _storage(x.dtype), save, store_seqs)
    arguments: dict[str, Any] = {"x_ptr": x, "spike_ptr": spikes, "param_ptr": _parameters(learnables, x)}
    for i, state in enumerate(states):
        arguments[f"state0_ptr_{i}"] = state.contiguous()
        arguments[f"last_ptr_{i}"] = last[i]
        if store_seqs:
            arguments[f"seq_ptr_{i}"] = seqs[i]
    for j, buffer in zip(plan.saved_states, charged):
        arguments[f"charged_ptr_{j}"] = buffer
    _launch(kernel, parameters, arguments, steps, n, x.device)
    return spikes, last, seqs, charged


@multi_step_forward.register_fake
def _multi_step_forward_fake(
    x: torch.Tensor,
    states: list[torch.Tensor],
    learnables: list[torch.Tensor],
    config: str,
    save: bool,
    store_seqs: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    plan = kernel_plan(decode_config(config))
    steps, n = x.shape
    spikes = x.new_empty((steps, n))
    last = [x.new_empty((n,)) for _ in plan.states]
    seqs = [x.new_empty((steps, n)) for _ in plan.states] if store_seqs else []
    charged = [x.new_empty((steps, n), dtype=torch.float32) for _ in plan.saved_states] if save else []
    return spikes, last, seqs, charged


# ---------------------------------------------------------------------------------------------
# backward


def _gradient(value: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    if value is None:
        return None
    if tuple(value.shape) != shape:
        raise ValueError(f"gradient: expected shape {shape}, got {tuple(value.shape)}")
    return value.to(dtype).contiguous()


@torch.library.custom_op("snn_triton::multi_step_backward", mutates_args=())
def multi_step_backward(
    grad_spikes: torch.Tensor | None,
    grad_last: list[torch.Tensor | None],
    grad_seqs: list[torch.Tensor | None],
    charged: list[torch.Tensor],
    x: torch.Tensor | None,
    states: list[torch.Tensor | None],
    learnables: list[torch.Tensor],
    config: str,
    need_x: bool,
    need_learnables: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Run the backward kernel (see the module docstring for arguments and results)."""
    cfg = decode_config(config)
    plan = kernel_plan(cfg)
    m = len(plan.states)
    if len(grad_last) != m or len(grad_seqs) != m or len(states) != m or len(charged) != len(plan.saved_states):
        raise ValueError(
            f"multi_step_backward: model {cfg.model.name!r} has {m} state(s) and saves {len(plan.saved_states)}, "
            f"got {len(grad_last)} last / {len(grad_seqs)} sequence gradient(s), {len(states)} state(s), "
            f"{len(charged)} saved tensor(s)"
        )
    steps, n = charged[0].shape
    dtype = next(
        (g.dtype for g in (grad_spikes, *grad_last, *grad_seqs) if g is not None),
        x.dtype if x is not None else torch.float32,
    )
    device = charged[0].device
    grad_spikes = _gradient(grad_spikes, (steps, n), dtype)
    grad_last = [_gradient(g, (n,), dtype) for g in grad_last]
    grad_seqs = [_gradient(g, (steps, n), dtype) for g in grad_seqs]
    grad_x = torch.empty((steps, n) if need_x else (0,), dtype=dtype, device=device)
    grad_states = [torch.empty((n,), dtype=dtype, device=device) for _ in range(m)]
    grad_learnables = [torch.zeros_like(p) for p in learnables]
    if n == 0:
        return grad_x, grad_states, grad_learnables
    variant = BackwardVariant(
        grad_spikes is not None,
        tuple(g is not None for g in grad_last),
        tuple(g is not None for g in grad_seqs),
        bool(need_x),
        bool(need_learnables) and bool(learnables),
    )
    kernel, parameters = backward_kernel(cfg, _storage(dtype), variant)
    block, _ = launch_config(n, device)
    programs = triton.cdiv(n, block)
    partials = (
        torch.empty((len(learnables), programs), dtype=torch.float32, device=device)
        if variant.grad_learnables else None
    )
    arguments: dict[str, Any] = {
        "grad_spike_ptr": grad_spikes,
        "grad_x_ptr": grad_x if need_x else torch.empty((1,), dtype=dtype, device=device),
        "param_ptr": _parameters(learnables, charged[0]),
        "partial_ptr": partials,
        "x_ptr": x.contiguous() if (plan.save_input and x is not None) else None,
    }
    if plan.save_input and x is None:
        raise ValueError(f"x: the backward pass of model {cfg.model.name!r} reads the saved input, got None")
    for j, buffer in zip(plan.saved_states, charged):
        arguments[f"charged_ptr_{j}"] = buffer.contiguous()
    for i in range(m):
        arguments[f"grad_last_ptr_{i}"] = grad_last[i]
        arguments[f"grad_seq_ptr_{i}"] = grad_seqs[i]
        arguments[f"grad_state0_ptr_{i}"] = grad_states[i]
    for i in plan.initial_states_needed:
        state = states[i]
        if state is None:
            raise ValueError(f"states[{i}]: the backward pass of model {cfg.model.name!r} reads it, got None")
        arguments[f"state0_ptr_{i}"] = state.contiguous()
    _launch(kernel, parameters, arguments, steps, n, device)
    if partials is not None:
        # deterministic: fixed per-program partial sums, added in float64 by torch
        totals = partials.sum(dim=1, dtype=torch.float64)
        grad_learnables = [totals[k].to(p.dtype).reshape(p.shape) for k, p in enumerate(learnables)]
    return grad_x, grad_states, grad_learnables


@multi_step_backward.register_fake
def _multi_step_backward_fake(
    grad_spikes: torch.Tensor | None,
    grad_last: list[torch.Tensor | None],
    grad_seqs: list[torch.Tensor | None],
    charged: list[torch.Tensor],
    x: torch.Tensor | None,
    states: list[torch.Tensor | None],
    learnables: list[torch.Tensor],
    config: str,
    need_x: bool,
    need_learnables: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    steps, n = charged[0].shape
    dtype = next(
        (g.dtype for g in (grad_spikes, *grad_last, *grad_seqs) if g is not None),
        x.dtype if x is not None else torch.float32,
    )
    grad_x = charged[0].new_empty((steps, n) if need_x else (0,), dtype=dtype)
    grad_states = [charged[0].new_empty((n,), dtype=dtype) for _ in grad_last]
    return grad_x, grad_states, [torch.empty_like(p) for p in learnables]


# ---------------------------------------------------------------------------------------------
# autograd


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    x, states, learnables, config, save, store_seqs = inputs
    charged = output[3]
    plan = kernel_plan(decode_config(config))
    ctx.config = config
    ctx.saved = bool(save)
    ctx.store_seqs = bool(store_seqs)
    ctx.m = len(states)
    ctx.n_charged = len(charged)
    ctx.has_x = bool(plan.save_input)
    ctx.state_index = tuple(plan.initial_states_needed)
    ctx.n_learnables = len(learnables)
    ctx.dtype = x.dtype
    kept = [*charged, *(states[i] for i in ctx.state_index), *learnables]
    if ctx.has_x:
        kept.append(x)
    ctx.save_for_backward(*kept)
    if charged:
        ctx.mark_non_differentiable(*charged)
    ctx.set_materialize_grads(False)


def _backward(
    ctx: Any,
    grad_spikes: torch.Tensor | None,
    grad_last: list[torch.Tensor | None] | None,
    grad_seqs: list[torch.Tensor | None] | None,
    grad_charged: Any,
) -> tuple[Any, ...]:
    if not ctx.saved:
        raise RuntimeError(
            "snn_triton::multi_step_forward ran with save=False (inference) and saved nothing for "
            "backward; call it with save=True when gradients are needed"
        )
    m = ctx.m
    grad_last = list(grad_last) if grad_last is not None else [None] * m
    grad_seqs = list(grad_seqs) if (grad_seqs is not None and ctx.store_seqs) else [None] * m
    nothing = (None, [None] * m, [None] * ctx.n_learnables, None, None, None)
    if grad_spikes is None and all(g is None for g in grad_last) and all(g is None for g in grad_seqs):
        return nothing
    saved = list(ctx.saved_tensors)
    charged = saved[: ctx.n_charged]
    rest = saved[ctx.n_charged :]
    states: list[torch.Tensor | None] = [None] * m
    for i in ctx.state_index:
        states[i] = rest.pop(0)
    learnables = rest[: ctx.n_learnables]
    x = rest[ctx.n_learnables] if ctx.has_x else None
    need_x, need_states, need_learnables = _needs(ctx.needs_input_grad, m, ctx.n_learnables)
    grad_x, grad_states, grad_params = torch.ops.snn_triton.multi_step_backward(
        grad_spikes, grad_last, grad_seqs, charged, x, states, learnables, ctx.config,
        need_x, any(need_learnables),
    )
    return (
        grad_x if need_x else None,
        [g if need else None for g, need in zip(grad_states, need_states)],
        [g if need else None for g, need in zip(grad_params, need_learnables)],
        None,
        None,
        None,
    )


def _needs(flags: tuple[Any, ...], m: int, k: int) -> tuple[bool, list[bool], list[bool]]:
    """``needs_input_grad`` as (x, per state, per learnable); list inputs may report one flag."""

    def expand(flag: Any, count: int) -> list[bool]:
        if isinstance(flag, (list, tuple)):
            return [bool(f) for f in flag]
        return [bool(flag)] * count

    return bool(flags[0]), expand(flags[1], m), expand(flags[2], k)


torch.library.register_autograd("snn_triton::multi_step_forward", _backward, setup_context=_setup_context)
