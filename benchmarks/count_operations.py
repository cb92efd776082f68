"""How many element-wise passes over the neurons one training step costs, per neuron model.

Run from the repository root with the project's environment (SpikingJelly 2.0.0 optional)::

    python benchmarks/count_operations.py [--models qif,eif] [--T 16] [--N 262144]

One forward pass with gradients and its backward pass are recorded with
:mod:`torch.profiler` (shapes on), for the torch backend and, when it is installed, for
SpikingJelly's same neuron in multi-step mode. Every top-level ATen operation that is not a view
or an allocation counts the elements of its largest input, in units of ``N``: an operation over
a ``[N]`` row counts 1, over a ``[4, N / 4]`` tile 1, over one row of a tile 1/4. Operations
on fewer than 4096 elements (numbers, reductions' results) are left out. The total divided by
``T`` is the number of passes over the layer per time step: on a CPU, where each pass over
``2^18`` float32 neurons costs some tens of microseconds whichever library issues it, the ratio
of two such counts is close to the ratio of the training times.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.profiler import profile

__all__ = ["passes_per_step", "main"]

#: Operations that move no element (views, allocations, dtype no-ops).
_NOT_PASSES = frozenset({
    "aten::view", "aten::select", "aten::slice", "aten::as_strided", "aten::unbind", "aten::reshape",
    "aten::detach", "aten::alias", "aten::expand", "aten::t", "aten::squeeze", "aten::unsqueeze",
    "aten::_reshape_alias", "aten::view_as", "aten::empty", "aten::empty_like", "aten::empty_strided",
    "aten::to", "aten::lift_fresh", "aten::resolve_conj", "aten::resolve_neg",
})


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        reset = getattr(m, "reset", None)
        if callable(reset) and hasattr(m, "_memories"):
            reset()


def passes_per_step(module: nn.Module, x_seq: torch.Tensor, grad_seq: torch.Tensor) -> float:
    """Element passes per time step of one training step of ``module`` (multi-step mode).

    Args:
        module: a neuron layer in multi-step mode.
        x_seq: ``[T, N]`` float input.
        grad_seq: ``[T, N]`` gradient of the spikes.
    """
    steps, n = x_seq.shape
    x_leaf = x_seq.detach().clone().requires_grad_(True)
    _reset(module)
    module(x_leaf).backward(grad_seq)  # warm-up: kernels compiled, caches filled
    _reset(module)
    x_leaf.grad = None
    with profile(record_shapes=True) as recorded:
        module(x_leaf).backward(grad_seq)
    total = 0.0
    for event in recorded.events():
        if not event.name.startswith("aten::") or event.name in _NOT_PASSES:
            continue
        parent = event.cpu_parent
        if parent is not None and parent.name.startswith("aten::"):
            continue  # counted with the operation that called it
        sizes = [math.prod(shape) for shape in event.input_shapes if isinstance(shape, list) and shape]
        largest = max(sizes, default=0)
        if largest >= 4096:
            total += largest / n
    return total / steps


def _contenders(model: str) -> list[tuple[str, Callable[[], nn.Module]]]:
    from snn.neuron import node_class

    cls = node_class(model)
    if cls is None:
        raise SystemExit(f"--models: unknown neuron model {model!r}")
    found: list[tuple[str, Callable[[], nn.Module]]] = [("snn torch", lambda: cls(step_mode="m", backend="torch"))]
    from snn.bench.measure import _reference, _reference_module

    reference = _reference_module()
    if reference is not None:
        make: Any = _reference(reference[0], model)
        if make is not None:
            found.append((f"spikingjelly {reference[1]}", make))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qif,eif,izhikevich,klif,cubalif")
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--N", type=int, default=1 << 18)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x_seq = torch.rand(args.T, args.N, generator=generator) * 1.6 - 0.3
    grad_seq = torch.rand(args.T, args.N, generator=generator)
    print(f"{'model':12s} {'contender':22s} passes/step  (T={args.T}, N={args.N})")
    for model in args.models.split(","):
        for label, make in _contenders(model):
            print(f"{model:12s} {label:22s} {passes_per_step(make(), x_seq, grad_seq):11.1f}")


if __name__ == "__main__":
    main()
