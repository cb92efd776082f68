"""An explicit-state forward of a stateful network, for ``torch.func`` transforms.

snn modules keep their state (membrane potentials, traces ...) in *memories*
(:class:`snn.base.MemoryModule`). :func:`to_functional_forward` turns a network into a pure
function of its inputs and states, ``(inputs, states) -> (outputs, new_states)``, which
:func:`torch.func.grad`, :func:`torch.func.vmap` and :func:`torch.func.functional_call` can
transform.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from snn.base import MemoryModule, extract_memories, load_memories

__all__ = ["to_functional_forward"]



def to_functional_forward(
    module: nn.Module, fn: Callable[..., Any] | None = None
) -> Callable[..., tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """A forward of ``module`` whose state goes in and comes out explicitly.

    The returned function is ``f(inputs, states, **kwargs) -> (outputs, new_states)``:

    - ``inputs``: a tuple (or list) of the positional arguments of the forward; a single input
      is still wrapped: ``(x,)``;
    - ``states``: one value per memory of ``module``, in
      :func:`snn.base.extract_memories` order (a fresh network's memories are numbers such as
      ``0.0``; tensors of one step's shape work too);
    - ``kwargs``: passed on to the forward;
    - ``outputs``: the forward's result as a tuple (a single tensor becomes ``(y,)``);
    - ``new_states``: the memories after the step, in the same order.

    Each call loads ``states`` into the memories, runs the forward and puts the memories back
    as they were (and the neurons' recorded ``v_seq``, for ``store_v_seq=True``), so
    ``module`` itself is left unchanged and the ``states`` passed in are never
    written to (the tensors are not modified in place; a module that did so is reported with a
    :class:`RuntimeError`). The result equals the stateful forward: ``f((x,), s)`` gives what
    ``module(x)`` gives after loading ``s``.

    Under :mod:`torch.func` transforms (``grad``, ``vmap``, ``jacrev`` ...) neurons run their
    step as plain autograd operations of their model (see :class:`snn.neuron.BaseNode`) instead
    of a fused kernel, which transforms cannot see through; the values agree with the kernel up
    to float rounding.
    Parameters are the module's own: to make them an argument, call
    :func:`torch.func.functional_call` in ``fn`` (see the example).

    Args:
        module: the network.
        fn: the forward to run, ``fn(*inputs, **kwargs)``; ``None`` calls ``module`` itself.
            ``fn`` may be anything that runs ``module`` (a parent class's ``forward``, a
            ``functional_call`` with other parameters ...).

    Returns:
        The function ``f(inputs, states, **kwargs) -> (outputs, new_states)``.

    Raises:
        TypeError: ``module`` is not a module or ``fn`` not callable; when ``f`` is called,
            ``inputs`` or ``states`` that are not sequences, or a state that is neither a real
            number nor a tensor where the memory holds one of these (the message names the
            memory).
        ValueError: when ``f`` is called, a number of states that is not the number of
            memories of ``module``.
        RuntimeError: when ``f`` is called, a module modified a state tensor in place.

    Example:
        >>> import torch
        >>> from snn import neuron
        >>> from snn.functional import to_functional_forward
        >>> lif = neuron.LIFNode(tau=2.0)
        >>> f = to_functional_forward(lif)
        >>> (spike,), (v,) = f((torch.tensor([1.5, 0.5]),), (torch.tensor([1.0, 0.0]),))
        >>> spike.tolist(), v.tolist()
        ([1.0, 0.0], [0.0, 0.25])

        Parameters as an argument (gradients with :func:`torch.func.grad`):

        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), neuron.LIFNode())
        >>> params = dict(net.named_parameters())
        >>> def loss(params, x, v):
        ...     f = to_functional_forward(net, lambda x: torch.func.functional_call(net, params, (x,)))
        ...     (y,), (v_new,) = f((x,), (v,))
        ...     return v_new.sum()
        >>> grads = torch.func.grad(loss)(params, torch.ones(3, 2), torch.zeros(3, 2))
        >>> sorted(grads)
        ['0.bias', '0.weight']
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_functional_forward: module: expected a torch.nn.Module, got {type(module).__name__}")
    if fn is not None and not callable(fn):
        raise TypeError(f"to_functional_forward: fn: expected a callable or None, got {type(fn).__name__}")
    forward: Callable[..., Any] = module if fn is None else fn

    def functional_forward(
        inputs: Sequence[Any], states: Sequence[Any], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        if not isinstance(inputs, (tuple, list)):
            raise TypeError(
                f"functional forward of {type(module).__name__}: inputs: expected a tuple of the forward's "
                f"arguments (wrap a single input: (x,)), got {type(inputs).__name__}"
            )
        if not isinstance(states, (tuple, list)):
            raise TypeError(
                f"functional forward of {type(module).__name__}: states: expected a tuple in "
                f"snn.base.extract_memories order, got {type(states).__name__}"
            )
        original = extract_memories(module)
        if len(states) != len(original):
            raise ValueError(
                f"functional forward of {type(module).__name__}: states: expected {len(original)} states "
                f"(one per memory, in snn.base.extract_memories order), got {len(states)}"
            )
        _check_states(module, states, original)
        versions = [(i, _version(s)) for i, s in enumerate(states)]
        recorded = [(sub, sub.__dict__["v_seq"]) for sub in module.modules() if "v_seq" in sub.__dict__]
        load_memories(module, list(states))
        try:
            result = forward(*inputs, **kwargs)
            new_states = tuple(extract_memories(module))
        finally:
            load_memories(module, original)
            for sub, v_seq in recorded:
                sub.__dict__["v_seq"] = v_seq
        for i, version in versions:
            if version is not None and _version(states[i]) != version:
                raise RuntimeError(
                    f"functional forward of {type(module).__name__}: state {i} was modified in place by the forward; "
                    "explicit states need modules that assign new memory values"
                )
        outputs = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        return outputs, new_states

    return functional_forward


def _check_states(module: nn.Module, states: Sequence[Any], original: Sequence[Any]) -> None:
    """Raise ``TypeError`` for a state that is neither a real number nor a tensor where the
    memory it replaces is one of these (lists and other memory kinds are not checked)."""
    for i, (value, current) in enumerate(zip(states, original)):
        if not isinstance(current, (int, float, torch.Tensor)) or isinstance(current, bool):
            continue
        if isinstance(value, torch.Tensor) or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            continue
        names = [  # in snn.base.extract_memories order
            f"{prefix or type(module).__name__}.{name}"
            for prefix, sub in module.named_modules()
            if isinstance(sub, MemoryModule)
            for name in sub._memories
        ]
        raise TypeError(
            f"functional forward of {type(module).__name__}: states[{i}] (memory {names[i]}): expected a real "
            f"number or a tensor, got {type(value).__name__}"
        )


def _version(value: Any) -> int | None:
    """The in-place version counter of a plain tensor (``None`` for other values and wrappers)."""
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return int(value._version)
    except (RuntimeError, AttributeError, NotImplementedError):
        return None
