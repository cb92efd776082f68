"""Built-in forward strategies (an in-tree plugin): named ways to run a module over a sequence.

Every strategy is called as ``strategy(module, x_seq, **options)`` and returns the stacked
outputs. Look one up with ``snn.plugins.get_registry().strategy(name).implementation``.

========================  ===================================================================
name                      what it does
========================  ===================================================================
``loop``                  single-step ``module`` once per step of ``x_seq [T, N, *]``
``t_last``                the same with time last: ``x_seq [N, *, T]``
``chunked``               multi-step ``module`` over chunks of ``split_size`` steps
``seq_to_ann``            stateless ``module`` once over ``[T * N, *]``
``t_last_seq_to_ann``     stateless ``module`` vectorised over the last (time) dimension
``checkpointed``          like ``loop``, with activation checkpointing every ``k`` steps
========================  ===================================================================
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

import snn
from snn.base import extract_memories, load_memories
from snn.functional.forward import (
    chunk_multi_step_forward,
    multi_step_forward,
    seq_to_ann_forward,
    t_last_multi_step_forward,
    t_last_seq_to_ann_forward,
)
from snn.monitor import paused as _monitors_paused
from snn.registry import StrategyRegistrar

__all__ = [
    "loop_strategy",
    "t_last_strategy",
    "chunked_strategy",
    "seq_to_ann_strategy",
    "t_last_seq_to_ann_strategy",
    "checkpointed_strategy",
    "snn_register_forward_strategies",
]


def _no_options(name: str, options: dict[str, Any], known: tuple[str, ...] = ()) -> None:
    """Raise ``TypeError`` for options the strategy does not take (``known``: the ones it does)."""
    if options:
        takes = f"takes only the options {list(known)}" if known else "takes no options"
        raise TypeError(f"forward strategy {name!r} {takes}, got unknown {sorted(options)}")


def loop_strategy(module: Callable[..., Any], x_seq: torch.Tensor, **options: Any) -> Any:
    """Run single-step ``module`` over ``x_seq [T, N, *]`` one step at a time (no options).

    Returns:
        ``[T, N, *out]``.
    """
    _no_options("loop", options)
    return multi_step_forward(x_seq, module)


def t_last_strategy(module: Callable[..., Any], x_seq: torch.Tensor, **options: Any) -> Any:
    """Run single-step ``module`` over ``x_seq [N, *, T]`` (time last) one step at a time.

    Returns:
        ``[N, *out, T]``.
    """
    _no_options("t_last", options)
    return t_last_multi_step_forward(x_seq, module)


def chunked_strategy(
    module: Callable[..., Any], x_seq: torch.Tensor, *, split_size: int | list[int], **options: Any
) -> Any:
    """Run multi-step ``module`` over ``x_seq [T, N, *]`` in chunks of ``split_size`` steps.

    Args:
        module: a multi-step module (its state carries over between chunks).
        x_seq: ``[T, N, *]``.
        split_size: steps per chunk (positive int) or the list of chunk sizes.

    Returns:
        ``[T, N, *out]``.
    """
    _no_options("chunked", options, ("split_size",))
    return chunk_multi_step_forward(split_size, x_seq, module)


def seq_to_ann_strategy(module: Callable[..., Any], x_seq: torch.Tensor, **options: Any) -> Any:
    """Run stateless ``module`` once over ``x_seq [T, N, *]`` folded to ``[T * N, *]``.

    Returns:
        ``[T, N, *out]``.
    """
    _no_options("seq_to_ann", options)
    return seq_to_ann_forward(x_seq, module)


def t_last_seq_to_ann_strategy(module: Callable[..., Any], x_seq: torch.Tensor, **options: Any) -> Any:
    """Run stateless ``module`` vectorised (``torch.vmap``) over the last dimension of ``x_seq [N, *, T]``.

    Returns:
        ``[N, *out, T]``.
    """
    _no_options("t_last_seq_to_ann", options)
    return t_last_seq_to_ann_forward(x_seq, module)


class _ModuleSnapshot:
    """What a recomputed segment may change besides the memories, taken before it runs.

    For every module inside: the plain attributes (``__dict__`` entries, e.g. a neuron's
    ``v_seq``, which a step extends by assigning a new tensor) and the values of the buffers
    (e.g. BatchNorm's running statistics, updated in place). :meth:`restore` puts them back,
    so a recomputation leaves the modules exactly as the first forward left them.
    """

    def __init__(self, module: nn.Module) -> None:
        # per module, its attributes and its buffer entries (a module may replace a buffer:
        # self.count = self.count + 1)
        self.modules = [(m, dict(m.__dict__), dict(m._buffers)) for m in module.modules()]
        with torch.no_grad():
            self.buffers = [(b, b.clone()) for b in module.buffers()]

    def restore(self) -> None:
        for m, saved, entries in self.modules:
            current = m.__dict__
            for key in [key for key in current if key not in saved]:
                del current[key]
            for key, value in saved.items():
                if current.get(key) is not value:
                    current[key] = value
            m._buffers.clear()
            m._buffers.update(entries)
        with torch.no_grad():
            for buffer, value in self.buffers:
                buffer.copy_(value)


class _Segment:
    """Runs ``k`` steps of a single-step module from a given state, for ``torch.utils.checkpoint``.

    The segment function receives the memories entering the segment explicitly (so gradients
    flow into them and recomputation starts from the very same state), loads them into the
    module, runs the steps, and restores whatever memories the module held before the call,
    also when recomputation is stopped early. The first forward leaves restoring the exit state
    to the caller, which loads the memories returned through the checkpoint.

    A recomputation (any call after the first, made by the backward pass) leaves no trace: it
    runs with monitors paused (:func:`snn.monitor.paused`; other forward hooks still run), and
    afterwards every module's plain attributes (a neuron's ``v_seq`` ...) and buffer values
    (BatchNorm running statistics ...) are put back as they were before it.
    """

    def __init__(
        self, module: Callable[..., Any], state_module: nn.Module | None, template: list[Any]
    ) -> None:
        self.module = module
        self.state_module = state_module
        # Non-tensor memories (numbers, None ...) are constants of the segment.
        self.template = template
        self.calls = 0

    def __call__(self, x_chunk: torch.Tensor, *tensor_states: torch.Tensor) -> tuple[torch.Tensor, list[Any]]:
        self.calls += 1
        if self.calls == 1:
            return self._run(x_chunk, tensor_states)
        snapshot = _ModuleSnapshot(self.state_module) if self.state_module is not None else None
        try:
            with _monitors_paused():
                return self._run(x_chunk, tensor_states)
        finally:
            if snapshot is not None:
                snapshot.restore()

    def _run(self, x_chunk: torch.Tensor, tensor_states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, list[Any]]:
        if self.state_module is None:
            return multi_step_forward(x_chunk, self.module), []
        found = extract_memories(self.state_module)
        states = iter(tensor_states)
        entry = [next(states) if isinstance(v, torch.Tensor) else v for v in self.template]
        load_memories(self.state_module, entry)
        try:
            y = multi_step_forward(x_chunk, self.module)
            exit_state = extract_memories(self.state_module)
        finally:
            load_memories(self.state_module, found)
        return y, exit_state


def checkpointed_strategy(
    module: Callable[..., Any], x_seq: torch.Tensor, *, k: int | None = None, **options: Any
) -> Any:
    """Like ``loop``, but keeps activations only at every ``k``-th step (activation checkpointing).

    The sequence is cut into segments of ``k`` steps, each run under
    :func:`torch.utils.checkpoint.checkpoint` (``use_reentrant=False``): training keeps only the
    inputs and the memories (neuron states) entering each segment, and the backward pass reruns
    one segment at a time from its saved state. BPTT memory drops from ``O(T)`` activations to
    ``O(T / k)`` states plus one segment's activations, for about one extra forward pass of
    compute. Gradients equal those of ``loop``; random ops (dropout) are replayed identically.
    The recomputation leaves no trace: monitors do not record during it, and a neuron's
    ``v_seq``, other plain attributes and buffers (BatchNorm running statistics) are restored
    afterwards, so records and states after backward equal those after forward (as with ``loop``).
    Without autograd (``torch.no_grad()`` or no input requiring grad) it is exactly ``loop``.

    Args:
        module: a single-step module (or list of callables, see
            :func:`snn.functional.multi_step_forward`); its memories (see
            :func:`snn.base.extract_memories`) are the state carried between segments.
        x_seq: ``[T, N, *]``.
        k: steps per segment, ``>= 1`` (default ``ceil(sqrt(T))``, which balances the saved
            states against one segment's activations).

    Returns:
        ``[T, N, *out]`` (a tuple of such tensors when the module returns tuples).

    Raises:
        TypeError: ``k`` not an int, unknown options, non-tensor ``x_seq``.
        ValueError: ``k < 1``, or ``x_seq`` with no time steps.
    """
    _no_options("checkpointed", options, ("k",))
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"checkpointed: x_seq: expected a torch.Tensor [T, N, *], got {type(x_seq).__name__}")
    if x_seq.dim() == 0 or x_seq.shape[0] == 0:
        raise ValueError(
            f"checkpointed: x_seq: expected a sequence [T, N, *] with T >= 1, got shape {tuple(x_seq.shape)}"
        )
    steps = x_seq.shape[0]
    if k is None:
        k = math.ceil(math.sqrt(steps))
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"checkpointed: k: expected a positive int, got {k!r}")
    if k < 1:
        raise ValueError(f"checkpointed: k: expected an int >= 1, got {k}")

    if not torch.is_grad_enabled():
        return multi_step_forward(x_seq, module)

    state_modules = [
        m for m in (module if isinstance(module, (list, tuple)) else [module]) if isinstance(m, nn.Module)
    ]
    state_module: nn.Module | None = None
    if state_modules:
        state_module = state_modules[0] if len(state_modules) == 1 else nn.ModuleList(state_modules)

    outputs = []
    for start in range(0, steps, k):
        x_chunk = x_seq[start : start + k]
        entry = extract_memories(state_module) if state_module is not None else []
        segment = _Segment(module, state_module, entry)
        tensor_states = [v for v in entry if isinstance(v, torch.Tensor)]
        y, exit_state = torch.utils.checkpoint.checkpoint(
            segment, x_chunk, *tensor_states, use_reentrant=False
        )
        if state_module is not None:
            load_memories(state_module, exit_state)
        outputs.append(y)
    if len(outputs) == 1:
        return outputs[0]
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(items, dim=0) for items in zip(*outputs))
    return torch.cat(outputs, dim=0)


#: The options each built-in strategy takes (they accept ``**options`` only to refuse the others
#: with a clear message, so their signatures do not tell).
_BUILTIN_OPTIONS: dict[Callable[..., Any], tuple[str, ...]] = {
    loop_strategy: (),
    t_last_strategy: (),
    chunked_strategy: ("split_size",),
    seq_to_ann_strategy: (),
    t_last_seq_to_ann_strategy: (),
    checkpointed_strategy: ("k",),
}


def _declared_options(implementation: Callable[..., Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``(accepted, required)`` option names of a strategy from its signature (the parameters
    after ``module`` and ``x_seq`` that can be passed by keyword), or ``None`` when it cannot
    tell (a ``**options`` parameter, or no signature)."""
    try:
        parameters = list(inspect.signature(implementation).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    rest = parameters[2:] if len(parameters) >= 2 and all(p.kind in positional for p in parameters[:2]) else []
    keyword = [p for p in rest if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    required = tuple(p.name for p in keyword if p.default is inspect.Parameter.empty)
    return tuple(p.name for p in keyword), required


def check_strategy_options(name: str, implementation: Callable[..., Any], options: dict[str, Any]) -> None:
    """Check, before any call, that the strategy ``name`` takes exactly the given ``options``.

    The built-in strategies declare their options here; for another strategy they are read from
    its signature (``strategy(module, x_seq, *, option=default, ...)``). A strategy with a
    ``**options`` parameter of its own is not checked here (it checks its options when called).

    Args:
        name: the strategy's registered name (for the message).
        implementation: the strategy callable.
        options: the keyword options that will be passed on every call.

    Raises:
        TypeError: an option the strategy does not take (naming it and the accepted ones), or a
            required option left out.
    """
    builtin = _BUILTIN_OPTIONS.get(implementation)
    declared = (builtin, ()) if builtin is not None else _declared_options(implementation)
    if declared is None:
        return
    accepted, required = declared
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"takes only the options {list(accepted)}" if accepted else "takes no options"
        raise TypeError(f"strategy options: forward strategy {name!r} {takes}, got unknown {unknown}")
    missing = [option for option in required if option not in options]
    if missing:
        raise TypeError(f"strategy options: forward strategy {name!r} requires the options {missing}, got {sorted(options)}")


@snn.hookimpl
def snn_register_forward_strategies(register: StrategyRegistrar) -> None:
    """Register the built-in strategies."""
    register("loop", loop_strategy, description="single-step module once per step of [T, N, *]")
    register("t_last", t_last_strategy, description="single-step module once per step of [N, *, T]")
    register(
        "chunked", chunked_strategy, description="multi-step module over chunks (option split_size)", module="multi_step"
    )
    register("seq_to_ann", seq_to_ann_strategy, description="stateless module once over [T*N, *]", module="stateless")
    register(
        "t_last_seq_to_ann",
        t_last_seq_to_ann_strategy,
        description="stateless module vectorised over time-last",
        module="stateless",
    )
    register(
        "checkpointed",
        checkpointed_strategy,
        description="loop with activation checkpointing every k steps (BPTT memory O(T/k))",
    )
