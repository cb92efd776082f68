"""Forward helpers: run modules over a time sequence.

Two families, each with a time-first (``[T, N, *]``) and a time-last (``[N, *, T]``) variant:

- *loop* helpers (:func:`multi_step_forward`, :func:`t_last_multi_step_forward`) call a
  single-step module once per time step, so stateful modules (neurons) carry their state from
  one step to the next;
- *sequence-to-ANN* helpers (:func:`seq_to_ann_forward`, :func:`t_last_seq_to_ann_forward`)
  run a stateless module once over all time steps at the same time (time folded into the
  batch, or vectorised with :func:`torch.vmap`). Normalisation layers wrapped this way compute
  their statistics over ``T * N`` samples.

:func:`chunk_multi_step_forward` runs a multi-step module over a long sequence chunk by chunk,
to bound the memory of no-grad inference.

Every helper accepts its module argument in the form described by :func:`apply_modules`: one
callable, or a list / tuple of callables applied one after another.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "ModuleSpec",
    "apply_modules",
    "multi_step_forward",
    "t_last_multi_step_forward",
    "chunk_multi_step_forward",
    "seq_to_ann_forward",
    "t_last_seq_to_ann_forward",
]

#: One callable (an ``nn.Module``, a function ...), or a list / tuple of callables.
ModuleSpec = Callable[..., Any] | Sequence[Callable[..., Any]]


# ---------------------------------------------------------------------------------------------
# The module-application rule
# ---------------------------------------------------------------------------------------------


def _as_callables(modules: ModuleSpec, argument: str) -> tuple[Callable[..., Any], ...]:
    """Validate ``modules`` and return the callables to apply, in order."""
    if isinstance(modules, (list, tuple)):
        if len(modules) == 0:
            raise ValueError(
                f"{argument}: expected a callable or a non-empty list/tuple of callables, "
                f"got an empty {type(modules).__name__}"
            )
        for index, module in enumerate(modules):
            if not callable(module):
                raise TypeError(
                    f"{argument}[{index}]: expected a callable (an nn.Module or a function), "
                    f"got {type(module).__name__}"
                )
        return tuple(modules)
    if not callable(modules):
        raise TypeError(
            f"{argument}: expected a callable (an nn.Module or a function) or a list/tuple of "
            f"callables, got {type(modules).__name__}"
        )
    return (modules,)


def _apply(x: Any, callables: tuple[Callable[..., Any], ...]) -> Any:
    """Apply already-validated ``callables`` to ``x`` (a tuple ``x`` is splatted into the first)."""
    first, *rest = callables
    y = first(*x) if isinstance(x, tuple) else first(x)
    for module in rest:
        y = module(y)
    return y


def apply_modules(x: Any, modules: ModuleSpec) -> Any:
    """Apply ``modules`` to ``x``: the module-application rule shared by every forward helper.

    - ``modules`` may be one callable (an ``nn.Module``, an ``nn.Sequential``, a function) or a
      ``list`` / ``tuple`` of callables. Only lists and tuples are iterated: an ``nn.Sequential``
      is called once, as a whole (its forward hooks fire once).
    - When ``x`` is a Python ``tuple`` it is splatted as positional arguments into the *first*
      callable, e.g. ``(pooled, indices)`` into ``nn.MaxUnpool2d``; any other ``x`` is passed as
      one argument. Every later callable receives the previous output as one argument, even
      when that output is a tuple.

    Args:
        x: the input: a tensor of any shape, or a tuple of positional arguments.
        modules: a callable or a non-empty list / tuple of callables.

    Returns:
        The output of the last callable (whatever it returns).

    Raises:
        TypeError: ``modules`` (or one of its items) is not callable.
        ValueError: ``modules`` is an empty list or tuple.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> apply_modules(torch.ones(2, 3), [nn.Identity(), torch.relu]).shape
        torch.Size([2, 3])
    """
    return _apply(x, _as_callables(modules, "modules"))


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _check_tensor(x: Any, argument: str, min_rank: int, layout: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{argument}: expected a torch.Tensor with shape {layout}, got {type(x).__name__}"
        )
    if x.dim() < min_rank:
        raise ValueError(
            f"{argument}: expected a tensor with shape {layout} (at least {min_rank} "
            f"dimension{'s' if min_rank > 1 else ''}), got shape {list(x.shape)}"
        )
    return x


def _check_steps(x_seq: torch.Tensor, dim: int, argument: str, layout: str) -> int:
    steps = x_seq.shape[dim]
    if steps == 0:
        raise ValueError(
            f"{argument}: expected at least one time step in {layout}, got shape "
            f"{list(x_seq.shape)} (T = 0)"
        )
    return steps


def _join(outputs: list[Any], dim: int, join: Callable[..., torch.Tensor], argument: str) -> Any:
    """Stack or concatenate per-step (per-chunk) outputs; tuples are joined field by field."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return join(outputs, dim)
    if isinstance(first, tuple) and all(isinstance(item, torch.Tensor) for item in first):
        return tuple(join(list(field), dim) for field in zip(*outputs))
    raise _not_tensor_output(argument, first)


def _not_tensor_output(argument: str, value: Any) -> TypeError:
    return TypeError(
        f"{argument}: expected the module to return a torch.Tensor or a tuple of tensors, got {type(value).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Loop helpers (stateful, one call per time step)
# ---------------------------------------------------------------------------------------------


def multi_step_forward(x_seq: torch.Tensor, single_step_module: ModuleSpec) -> Any:
    """Run a single-step module over a time-first sequence, one step at a time.

    For ``t = 0 .. T-1`` computes ``y[t] = apply_modules(x_seq[t], single_step_module)`` and
    stacks the outputs along a new first dimension. Stateful modules (neurons) keep their state
    from one step to the next; nothing is reset here.

    Args:
        x_seq: the input sequence, shape ``[T, N, *]`` (any dtype, device and strides; the
            steps are views of it).
        single_step_module: a callable or a list / tuple of callables (see
            :func:`apply_modules`) mapping one step ``[N, *]`` to ``[N, *out]``.

    Returns:
        The stacked outputs, shape ``[T, N, *out]``, with the dtype and device the module
        returns. A module returning a tuple of tensors gives a tuple of stacked tensors.

    Raises:
        TypeError: ``x_seq`` is not a tensor, a module is not callable, or the module returns
            something other than a tensor or a tuple of tensors.
        ValueError: ``x_seq`` is 0-dimensional or has ``T = 0`` steps.
    """
    _check_tensor(x_seq, "x_seq", 1, "[T, N, *]")
    steps = _check_steps(x_seq, 0, "x_seq", "[T, N, *]")
    callables = _as_callables(single_step_module, "single_step_module")
    outputs = [_apply(x_seq.select(0, t), callables) for t in range(steps)]
    return _join(outputs, 0, torch.stack, "single_step_module")


def t_last_multi_step_forward(x_seq: torch.Tensor, single_step_module: ModuleSpec) -> Any:
    """Run a single-step module over a time-last sequence, one step at a time.

    Like :func:`multi_step_forward` with time on the last dimension: step ``t`` is
    ``x_seq.select(-1, t)`` and the outputs are stacked along a new last dimension
    (``torch.stack(outputs, dim=-1)``, so the result has exactly that layout and strides).

    Args:
        x_seq: the input sequence, shape ``[N, *, T]``.
        single_step_module: a callable or a list / tuple of callables mapping one step
            ``[N, *]`` to ``[N, *out]``.

    Returns:
        The stacked outputs, shape ``[N, *out, T]`` (a tuple of such tensors when the module
        returns tuples).

    Raises:
        TypeError: ``x_seq`` is not a tensor, a module is not callable, or the module returns
            something other than a tensor or a tuple of tensors.
        ValueError: ``x_seq`` is 0-dimensional or has ``T = 0`` steps.
    """
    _check_tensor(x_seq, "x_seq", 1, "[N, *, T]")
    steps = _check_steps(x_seq, -1, "x_seq", "[N, *, T]")
    callables = _as_callables(single_step_module, "single_step_module")
    outputs = [_apply(x_seq.select(-1, t), callables) for t in range(steps)]
    return _join(outputs, -1, torch.stack, "single_step_module")


def _integer_or_none(value: Any) -> int | None:
    """``value`` as an int (``operator.index``; bools refused), or ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_split_size(split_size: Any, steps: int) -> int | list[int]:
    if isinstance(split_size, bool):
        raise TypeError(
            f"split_size: expected a positive int or a list of positive ints, got {split_size!r}"
        )
    if isinstance(split_size, (list, tuple)):
        given = [_integer_or_none(s) for s in split_size]
        sizes = [s for s in given if s is not None and s > 0]
        if not sizes or len(sizes) != len(given):
            raise ValueError(
                f"split_size: expected a non-empty list of positive ints, got {split_size!r}"
            )
        if sum(sizes) != steps:
            raise ValueError(
                f"split_size: expected chunk sizes summing to the number of time steps T = {steps}, "
                f"got {sizes} (sum {sum(sizes)})"
            )
        return sizes
    size = _integer_or_none(split_size)  # int, NumPy and 0-dim integer tensors
    if size is None:
        raise TypeError(
            f"split_size: expected a positive int or a list of positive ints, got {type(split_size).__name__}"
        )
    if size <= 0:
        raise ValueError(f"split_size: expected a positive int, got {size}")
    return size


def chunk_multi_step_forward(
    split_size: int | Sequence[int], x_seq: torch.Tensor, multi_step_module: ModuleSpec
) -> Any:
    """Run a multi-step module over a long sequence in consecutive chunks of time steps.

    ``x_seq`` is split along time with :func:`torch.split` (chunks of ``split_size`` steps, the
    last one possibly shorter, or chunks of the listed sizes), the module is called on each chunk
    in order (its state carries over between chunks; nothing is reset) and the outputs are
    concatenated along time. Meant for no-grad inference over very long sequences, where it
    bounds the memory a multi-step kernel needs.

    Args:
        split_size: the number of steps per chunk (a positive int), or the list of chunk sizes
            (positive ints summing to ``T``).
        x_seq: the input sequence, shape ``[T, N, *]``.
        multi_step_module: a callable or a list / tuple of callables mapping a chunk
            ``[t, N, *]`` to ``[t, N, *out]``.

    Returns:
        The concatenated outputs, shape ``[T, N, *out]`` (a tuple of such tensors when the module
        returns tuples). With ``T = 0`` the module is called once on the empty sequence.

    Raises:
        TypeError: ``split_size`` is not an int or a list of ints, ``x_seq`` is not a tensor, or
            a module is not callable.
        ValueError: ``split_size`` is not positive, or its sizes do not sum to ``T``; ``x_seq``
            is 0-dimensional.
    """
    _check_tensor(x_seq, "x_seq", 1, "[T, N, *]")
    sizes = _check_split_size(split_size, x_seq.shape[0])
    callables = _as_callables(multi_step_module, "multi_step_module")
    outputs = [_apply(chunk, callables) for chunk in torch.split(x_seq, sizes, dim=0)]
    return _join(outputs, 0, torch.cat, "multi_step_module")


# ---------------------------------------------------------------------------------------------
# Sequence-to-ANN helpers (stateless, all steps at once)
# ---------------------------------------------------------------------------------------------


def _unflatten_output(y: Any, steps: int, batch: int) -> Any:
    def restore(item: Any, where: str) -> torch.Tensor:
        if not isinstance(item, torch.Tensor):
            raise TypeError(
                f"stateless_module: expected the module to return a torch.Tensor or a tuple of "
                f"tensors, got {type(item).__name__}{where}"
            )
        if item.dim() == 0 or item.shape[0] != steps * batch:
            raise ValueError(
                f"stateless_module: expected an output whose first dimension is T * N = "
                f"{steps} * {batch} = {steps * batch}, got shape {list(item.shape)}{where}; a module "
                f"wrapped by seq_to_ann_forward must keep the batch dimension"
            )
        return item.unflatten(0, (steps, batch))

    if isinstance(y, tuple):
        return tuple(restore(item, f" at output[{i}]") for i, item in enumerate(y))
    return restore(y, "")


def seq_to_ann_forward(
    x_seq: torch.Tensor | tuple[torch.Tensor, ...], stateless_module: ModuleSpec
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Run a stateless module over every time step at once, with time folded into the batch.

    A tensor ``x_seq`` of shape ``[T, N, *]`` is flattened to ``[T * N, *]``, the module is
    applied once and the output is unflattened back to ``[T, N, *out]``. Batch-statistics layers
    (``BatchNorm``) therefore see ``T * N`` samples.

    A tuple ``x_seq = (a, b, ...)`` of tensors that share their ``[T, N]`` leading dimensions is
    flattened item by item and splatted into the first module (e.g. ``(pooled, indices)`` into
    ``nn.MaxUnpool2d``). A module returning a tuple gives a tuple, each item unflattened.

    Args:
        x_seq: a tensor ``[T, N, *]``, or a tuple of tensors ``[T, N, *]`` with equal ``T`` and
            ``N``.
        stateless_module: a callable or a list / tuple of callables (see :func:`apply_modules`)
            mapping ``[T * N, *]`` to ``[T * N, *out]``. It must not keep state across steps.

    Returns:
        ``[T, N, *out]``, or a tuple of such tensors when the module returns a tuple. The output
        may be a view of the module's output (``unflatten`` semantics).

    Raises:
        TypeError: ``x_seq`` is neither a tensor nor a tuple of tensors, a module is not callable,
            or the module returns something other than a tensor or a tuple of tensors.
        ValueError: ``x_seq`` (or an item) has fewer than 2 dimensions; tuple items do not share
            their ``[T, batch_size] leading dimensions``; the tuple is empty; or the module
            changes the size of the first dimension.
    """
    callables = _as_callables(stateless_module, "stateless_module")
    if isinstance(x_seq, tuple):
        _check_tuple_items(x_seq, 2, "[T, N, *]")
        leading = x_seq[0].shape[:2]
        mismatched = [list(item.shape[:2]) for item in x_seq if item.shape[:2] != leading]
        if mismatched:
            raise ValueError(
                "x_seq: tuple inputs must share their [T, batch_size] leading dimensions, got "
                f"{[list(item.shape[:2]) for item in x_seq]}"
            )
        steps, batch = leading
        y = _apply(tuple(item.flatten(0, 1) for item in x_seq), callables)
    else:
        _check_tensor(x_seq, "x_seq", 2, "[T, N, *]")
        steps, batch = x_seq.shape[:2]
        y = _apply(x_seq.flatten(0, 1), callables)
    return _unflatten_output(y, steps, batch)


def t_last_seq_to_ann_forward(
    x_seq: torch.Tensor | tuple[torch.Tensor, ...], stateless_module: ModuleSpec
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Run a stateless module over every time step of a time-last sequence, vectorised.

    Computes ``torch.vmap(lambda x: apply_modules(x, stateless_module), in_dims=-1,
    out_dims=-1)(x_seq)``: the module sees one step ``[N, *]`` at a time as far as shapes go,
    but all steps run in one batched call. The output has the layout :func:`torch.vmap`
    produces (time moved to the last dimension, usually as a view). A tuple ``x_seq = (a, b,
    ...)`` of tensors with the same ``T`` is splatted into the first module step by step (e.g.
    ``(pooled, indices)`` into ``nn.MaxUnpool2d``), as :func:`seq_to_ann_forward` does; tuple
    outputs are supported.

    Modules that update buffers in place during the forward pass (``BatchNorm`` in training
    mode) cannot be vectorised; :func:`torch.vmap` raises for them. Use
    :func:`t_last_multi_step_forward` or permute to time-first and use
    :func:`seq_to_ann_forward` instead.

    Args:
        x_seq: the input sequence, shape ``[N, *, T]``, or a tuple of such tensors with equal
            ``T``.
        stateless_module: a callable or a list / tuple of callables mapping ``[N, *]`` to
            ``[N, *out]``; it must be a pure function of its input.

    Returns:
        ``[N, *out, T]``, or a tuple of such tensors when the module returns a tuple.

    Raises:
        TypeError: ``x_seq`` is neither a tensor nor a tuple of tensors, a module is not
            callable, or the module returns something other than a tensor or a tuple of tensors.
        ValueError: ``x_seq`` (or an item) is 0-dimensional, the tuple is empty or its items
            differ in ``T``.
    """
    if isinstance(x_seq, tuple):
        _check_tuple_items(x_seq, 1, "[N, *, T]")
        lengths = [item.shape[-1] for item in x_seq]
        if any(length != lengths[0] for length in lengths):
            raise ValueError(f"x_seq: tuple inputs must share their last (time) dimension, got T = {lengths}")
    else:
        _check_tensor(x_seq, "x_seq", 1, "[N, *, T]")
    callables = _as_callables(stateless_module, "stateless_module")
    step = functools.partial(_apply_returning_tensors, callables=callables)
    return torch.vmap(step, in_dims=-1, out_dims=-1)(x_seq)


def _check_tuple_items(x_seq: tuple[Any, ...], min_dim: int, layout: str) -> None:
    """Raise unless the tuple ``x_seq`` is non-empty and holds tensors of ``min_dim`` or more
    dimensions (errors name ``x_seq[i]``)."""
    if not x_seq:
        raise ValueError("x_seq: expected a tensor or a non-empty tuple of tensors, got an empty tuple")
    for index, item in enumerate(x_seq):
        _check_tensor(item, f"x_seq[{index}]", min_dim, layout)


def _apply_returning_tensors(x: torch.Tensor, callables: tuple[Callable[..., Any], ...]) -> Any:
    """:func:`_apply`, raising the helpers' ``TypeError`` for an output that is not a tensor
    or a tuple of tensors (which :func:`torch.vmap` would report about its own wrapper)."""
    y = _apply(x, callables)
    if isinstance(y, torch.Tensor) or (isinstance(y, tuple) and all(isinstance(i, torch.Tensor) for i in y)):
        return y
    raise _not_tensor_output("stateless_module", y)
