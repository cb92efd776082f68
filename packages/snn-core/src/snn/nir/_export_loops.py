"""The loops of an exported graph as :func:`snn.nir.import_from_nir` will run them.

snn's recurrent containers (:class:`~snn.layer.ElementWiseRecurrentContainer`,
:class:`~snn.layer.LinearRecurrentContainer`) feed back their previous output, which is zero
before the first step. The importer (:class:`snn.nir.NIRGraphModule`) delays the edges that close
a cycle in a depth-first walk from the inputs, and before the first step such an edge carries its
source's value *at rest* (zero inputs, stateful nodes zero, stateless nodes computed): the bias
of a recurrent ``Affine`` in snnTorch's ``RLeaky``. The two agree when the loop's source is zero
at rest; when it is not (the sub-module ends in a layer with a bias), the exporter routes the
loop through a NIR ``Delay`` of zero seconds, a stateful node that is zero at rest and passes its
input on unchanged afterwards.

This module answers the two questions the exporter asks of a finished graph: which edges the
importer will delay (:func:`back_edges`), and what each node gives at rest (:func:`rest_values`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from snn.nir.graph import _back_edges, port_order

__all__ = ["RestFn", "back_edges", "leaf_at_rest", "rest_values"]

#: a stateless node's output for its summed input ``[1, *sample]`` (``None`` marks a stateful node)
RestFn = Callable[[torch.Tensor], torch.Tensor]


def leaf_at_rest(module: nn.Module, lead: int) -> RestFn:
    """Run the stateless leaf ``module`` on one sample ``[1, *]`` laid out as it ran in the
    example (``lead`` = 2 adds a time dimension of 1); forward hooks are not called."""

    def call(x: torch.Tensor) -> torch.Tensor:
        y = module.forward(x.unsqueeze(0) if lead == 2 else x)
        return y[0] if lead == 2 else y

    return call


def back_edges(inputs: Sequence[str], names: Iterable[str], edges: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges the importer delays: those closing a cycle in its depth-first walk from the
    ``Input`` nodes (in :func:`~snn.nir.graph.port_order`), successors in name order."""
    successors: dict[str, list[str]] = {name: [] for name in names}
    for source, target in edges:
        successors[source].append(target)
    for targets in successors.values():
        targets.sort()
    back, _ = _back_edges(port_order(inputs), successors)
    return back


def rest_values(
    names: Iterable[str],
    edges: Sequence[tuple[str, str]],
    back: set[tuple[str, str]],
    start: Mapping[str, torch.Tensor],
    at_rest: Mapping[str, RestFn | None],
    shapes: Mapping[str, tuple[int, ...]],
) -> dict[str, torch.Tensor | None]:
    """Each node's value at rest, as the importer computes it before the first step.

    Args:
        names: every node.
        edges: the graph's edges; the ``back`` ones are left out (they carry the previous step).
        back: the delayed edges (:func:`back_edges`).
        start: each ``Input`` node's value at rest (zeros ``[1, *sample]``).
        at_rest: a node's :data:`RestFn`, or ``None`` for a stateful node (zeros of its
            ``shapes`` entry); a node without an entry (an ``Output``) passes its sum on.
        shapes: the shape of one sample of each node's output.

    Returns:
        node -> ``[1, *sample]`` tensor, or ``None`` where a predecessor has no value.
    """
    names = list(names)
    predecessors: dict[str, list[str]] = {name: [] for name in names}
    successors: dict[str, list[str]] = {name: [] for name in names}
    for source, target in edges:
        if (source, target) not in back:
            predecessors[target].append(source)
            successors[source].append(target)
    like = next(iter(start.values()))
    values: dict[str, torch.Tensor | None] = dict(start)
    waiting = {name: len(predecessors[name]) for name in names}
    ready = [name for name in names if waiting[name] == 0]
    while ready:
        name = ready.pop()
        if name not in values:
            parts = [values.get(p) for p in predecessors[name]]
            if not parts or any(part is None for part in parts):
                values[name] = None
            else:
                total = parts[0]
                for part in parts[1:]:
                    total = total + part  # type: ignore[operator]  # checked not None above
                if name not in at_rest:
                    values[name] = total
                elif (fn := at_rest[name]) is None:
                    values[name] = like.new_zeros((1, *shapes[name]))
                else:
                    values[name] = fn(total)  # type: ignore[arg-type]  # checked not None above
        for successor in successors[name]:
            waiting[successor] -= 1
            if waiting[successor] == 0:
                ready.append(successor)
    return values
