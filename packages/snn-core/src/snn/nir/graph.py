"""Run a network along the edges of a graph: the module :func:`snn.nir.import_from_nir` returns.

A NIR graph is a set of named nodes and directed edges. Every node receives the **sum** of the
outputs of its predecessors; ``Input`` nodes hold the network's inputs and ``Output`` nodes its
outputs. :class:`NIRGraphModule` runs such a graph one step (step mode ``'s'``) or one sequence
(step mode ``'m'``) at a time, holding each node's module in :attr:`NIRGraphModule.nodes`.

Cycles (recurrent connections) need a delay to be computable. The graph is walked depth-first
from its inputs (inputs in the given order, successors in name order); an edge that closes a
cycle in that walk (a *back edge*) carries the value its source produced **at the previous
step**. Every other edge carries the current step's value. A recurrent ``Affine`` (``W_rec``,
``b``) from a LIF layer back to itself thus gives ``I[t] = W x[t] + W_rec s[t - 1] + b``.

Before the first step after a reset, a back edge carries its source's value at rest: the graph
is evaluated once on zero inputs, with every stateful node (neurons, integrators, delays)
giving zero and every stateless node (``Affine``, convolutions, ``Scale`` ...) computing its
output; so the ``Affine`` above contributes ``b`` at the first step, as in snnTorch's
``RLeaky``, and a recurrent connection without bias contributes zero. (snn's recurrent
containers feed back zero instead; :func:`snn.nir.export_to_nir` routes a loop whose source is
not zero at rest through a zero ``Delay``, a stateful node, so the two agree.)

In step mode ``'m'`` the acyclic parts run each node once over the whole sequence (fused
kernels); only the strongly connected parts (the cycles) are stepped through time, one step at
a time, with their members called on length-1 sequences.
"""

from __future__ import annotations

import itertools
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from snn.base import MemoryModule, StepModule

__all__ = ["NIRGraphModule"]


def port_order(names: Sequence[str]) -> list[str]:
    """``names`` in name order with runs of digits compared as numbers (``input_2`` before
    ``input_10``): the order of a graph's ``Input`` and ``Output`` nodes.

    :func:`snn.nir.export_to_nir` names the ports of a network with several inputs or outputs
    ``input_0``, ``input_1`` ... in argument order; plain string order would put ``input_10``
    before ``input_2``. Names without digits keep plain string order.
    """

    def key(name: str) -> tuple[Any, ...]:
        parts = re.split(r"(\d+)", name)  # text at even positions, digit runs at odd ones
        return tuple((int(part), part) if i % 2 else part for i, part in enumerate(parts))

    return sorted(names, key=key)


@dataclass(frozen=True)
class _Step:
    """One node of the plan: its name, module key (``None`` for an ``Output``) and predecessors."""

    name: str
    key: str | None
    current: tuple[str, ...]  # predecessors read at the same step
    delayed: tuple[str, ...]  # predecessors read at the previous step (back edges)


@dataclass(frozen=True)
class _Block:
    """A strongly connected part of the graph, run as one unit in step mode ``'m'``."""

    steps: tuple[_Step, ...]
    cyclic: bool


def _module_keys(names: Sequence[str]) -> dict[str, str]:
    """A :class:`~torch.nn.ModuleDict` key for each node name (dots replaced, clashes renamed)."""
    reserved = set(dir(nn.ModuleDict())) | {""}
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        key = name.replace(".", "_")
        if key in reserved or keyword.iskeyword(key):
            key = f"node_{key}"
        base, i = key, 1
        while key in taken:
            key = f"{base}_{i}"
            i += 1
        taken.add(key)
        keys[name] = key
    return keys


def _back_edges(inputs: Sequence[str], successors: Mapping[str, list[str]]) -> tuple[set[tuple[str, str]], list[str]]:
    """Depth-first walk from ``inputs``: the edges that close a cycle, and the preorder."""
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 finished
    preorder: list[str] = []
    for root in inputs:
        if root in state:
            continue
        state[root] = 1
        preorder.append(root)
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack[-1]
            succ = successors[node]
            if index == len(succ):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, index + 1)
            nxt = succ[index]
            seen = state.get(nxt)
            if seen is None:
                state[nxt] = 1
                preorder.append(nxt)
                stack.append((nxt, 0))
            elif seen == 1:
                back.add((node, nxt))
    return back, preorder


def _strongly_connected(nodes: Sequence[str], successors: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each a list of node names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, i = work[-1]
            succ = successors[node]
            if i < len(succ):
                work[-1] = (node, i + 1)
                nxt = succ[i]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


class NIRGraphModule(MemoryModule):
    """A network whose modules are wired by a graph: each node gets the sum of its predecessors.

    Built by :func:`snn.nir.import_from_nir`; see the module documentation for how cycles are
    delayed. ``forward`` takes one tensor per ``Input`` node (in :attr:`inputs` order) and
    returns one tensor per ``Output`` node (in :attr:`outputs` order; a single output is
    returned as a tensor, not a tuple).

    Args:
        modules: node name -> module, for every node that is not an ``Input`` or ``Output``.
        edges: ``(source, target)`` node names.
        inputs: the ``Input`` node names, in argument order.
        outputs: the ``Output`` node names, in result order.
        input_shapes: optional ``Input`` name -> shape of one sample (without the batch and time
            dimensions), checked on every call.
        step_mode: ``'s'`` (inputs ``[N, *]``) or ``'m'`` (inputs ``[T, N, *]``). Change it for
            the whole network with :func:`snn.functional.set_step_mode`.

    Attributes:
        nodes: the modules, keyed by node name with ``.`` replaced by ``_`` (see :attr:`keys`).
        keys: node name -> key in :attr:`nodes`.
        edges: the edges as given.
        inputs: the ``Input`` node names.
        outputs: the ``Output`` node names.
        delayed_edges: the back edges (see the module documentation), sorted.

    Memories:
        feedback_<i>: the previous step's output of the ``i``-th source of a back edge (``None``
            after a reset: its value at rest, see the module documentation).

    Raises:
        TypeError: a module that is not an :class:`torch.nn.Module`.
        ValueError: an edge to an unknown node, into an ``Input`` or out of an ``Output``, a
            duplicate edge, a node no ``Input`` reaches, an ``Output`` without predecessor,
            no ``Input`` or no ``Output``.
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        edges: Sequence[tuple[str, str]],
        inputs: Sequence[str],
        outputs: Sequence[str],
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        step_mode: str = "s",
    ) -> None:
        super().__init__(step_mode)
        inputs, outputs = list(inputs), list(outputs)
        if not inputs or not outputs:
            raise ValueError(f"graph: expected at least one Input and one Output node, got {len(inputs)} and {len(outputs)}")
        names = [*inputs, *modules, *outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"graph: node names must be unique, got {names}")
        for name, module in modules.items():
            if not isinstance(module, nn.Module):
                raise TypeError(f"graph: node {name!r}: expected a torch.nn.Module, got {type(module).__name__}")
        known = set(names)
        seen_edges: set[tuple[str, str]] = set()
        successors: dict[str, list[str]] = {name: [] for name in names}
        predecessors: dict[str, list[str]] = {name: [] for name in names}
        for edge in edges:
            source, target = edge
            for end in (source, target):
                if end not in known:
                    raise ValueError(f"graph: edge {edge!r} names an unknown node {end!r}")
            if target in inputs:
                raise ValueError(f"graph: edge {edge!r} leads into the Input node {target!r}")
            if source in outputs:
                raise ValueError(f"graph: edge {edge!r} leaves the Output node {source!r}")
            if (source, target) in seen_edges:
                raise ValueError(f"graph: duplicate edge {edge!r}")
            seen_edges.add((source, target))
            successors[source].append(target)
            predecessors[target].append(source)
        for name in names:
            successors[name].sort()
        back, preorder = _back_edges(inputs, successors)
        unreached = sorted(known - set(preorder))
        if unreached:
            raise ValueError(f"graph: no Input node reaches the nodes {unreached}")

        self.keys: dict[str, str] = _module_keys(list(modules))
        self.nodes = nn.ModuleDict({self.keys[name]: module for name, module in modules.items()})
        self.edges: list[tuple[str, str]] = [(s, t) for s, t in edges]
        self.inputs: list[str] = inputs
        self.outputs: list[str] = outputs
        self.delayed_edges: list[tuple[str, str]] = sorted(back)
        self._input_shapes = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}

        steps: dict[str, _Step] = {}
        for name in names:
            if name in inputs:
                continue
            preds = sorted(predecessors[name])
            steps[name] = _Step(
                name,
                self.keys.get(name),
                tuple(p for p in preds if (p, name) not in back),
                tuple(p for p in preds if (p, name) in back),
            )
        self._blocks = self._plan(steps, successors, back, preorder)
        self._stateless = {
            key: not any(isinstance(m, MemoryModule) for m in module.modules()) for key, module in self.nodes.items()
        }
        self._feedback: dict[str, str] = {}
        for i, source in enumerate(sorted({s for s, _ in back})):
            memory = f"feedback_{i}"
            self._feedback[source] = memory
            self.register_memory(memory, None)

    @staticmethod
    def _plan(
        steps: dict[str, _Step],
        successors: Mapping[str, list[str]],
        back: set[tuple[str, str]],
        preorder: list[str],
    ) -> tuple[_Block, ...]:
        """Strongly connected parts in dependency order; members in order of their same-step edges."""
        rank = {name: i for i, name in enumerate(preorder)}
        names = [n for n in preorder if n in steps]
        forward = {n: [s for s in successors[n] if s in steps and (n, s) not in back] for n in names}
        components = _strongly_connected(names, {n: [s for s in successors[n] if s in steps] for n in names})
        component_of = {m: i for i, comp in enumerate(components) for m in comp}
        # Kahn over the components, ties broken by the walk's preorder
        indegree = [0] * len(components)
        for n in names:
            for s in forward[n]:
                if component_of[s] != component_of[n]:
                    indegree[component_of[s]] += 1
        first = [min(rank[m] for m in comp) for comp in components]
        ready = sorted((first[i], i) for i, d in enumerate(indegree) if d == 0)
        blocks: list[_Block] = []
        while ready:
            _, c = ready.pop(0)
            members = set(components[c])
            # order the members by their same-step edges inside the component (acyclic)
            inner = {m: sum(1 for p in steps[m].current if p in members) for m in members}
            queue = sorted((rank[m], m) for m, d in inner.items() if d == 0)
            order: list[str] = []
            while queue:
                _, m = queue.pop(0)
                order.append(m)
                for s in forward[m]:
                    if s in members:
                        inner[s] -= 1
                        if inner[s] == 0:
                            queue.append((rank[s], s))
                            queue.sort()
            cyclic = len(members) > 1 or any(t == src for src, t in back if src in members)
            blocks.append(_Block(tuple(steps[m] for m in order), cyclic))
            for m in order:
                for s in forward[m]:
                    cs = component_of[s]
                    if cs != c:
                        indegree[cs] -= 1
                        if indegree[cs] == 0:
                            ready.append((first[cs], cs))
                            ready.sort()
        return tuple(blocks)

    # -- forward -------------------------------------------------------------------------------

    def _check_call(self, xs: tuple[Any, ...], lead: int) -> None:
        if len(xs) != len(self.inputs):
            raise TypeError(
                f"NIRGraphModule: expected {len(self.inputs)} input tensor(s) (Input nodes {self.inputs}), got {len(xs)}"
            )
        dtype = next((p.dtype for p in itertools.chain(self.parameters(), self.buffers()) if p.is_floating_point()), None)
        for name, x in zip(self.inputs, xs):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"NIRGraphModule: input {name!r}: expected a tensor, got {type(x).__name__}")
            if not x.is_floating_point() or (dtype is not None and x.dtype != dtype):
                expected = f"the network's dtype {dtype}" if dtype is not None else "a floating dtype"
                raise TypeError(
                    f"NIRGraphModule: input {name!r}: expected {expected} (set it with import_from_nir(..., dtype=) "
                    f"or net.to()), got {x.dtype}"
                )
            shape = self._input_shapes.get(name)
            sample = tuple(x.shape[lead:])
            # some writers (nirtorch's tracer) include a batch dimension of 1 in the Input's shape
            if shape is not None and sample != shape and not (shape[:1] == (1,) and sample == shape[1:]):
                layout = "[N, *]" if lead == 1 else "[T, N, *]"
                raise ValueError(
                    f"NIRGraphModule: input {name!r}: expected shape {layout} with * = {list(shape)} in step mode "
                    f"{self.step_mode!r}, got {list(x.shape)}"
                )
        for key, module in self.nodes.items():
            if isinstance(module, StepModule) and module.step_mode != self.step_mode:
                raise ValueError(
                    f"NIRGraphModule: node {key!r} is in step mode {module.step_mode!r} but the graph in "
                    f"{self.step_mode!r}; set both with snn.functional.set_step_mode(net, {self.step_mode!r})"
                )

    @staticmethod
    def _sum(name: str, parts: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        total = parts[0][1]
        for source, value in parts[1:]:
            if value.shape != total.shape:
                raise ValueError(
                    f"NIRGraphModule: node {name!r} sums its inputs, but {parts[0][0]!r} gives shape "
                    f"{list(total.shape)} and {source!r} gives {list(value.shape)}"
                )
            total = total + value
        return total

    def _previous(self, xs: tuple[torch.Tensor, ...], multi: bool) -> dict[str, torch.Tensor | None]:
        """The back-edge sources' previous outputs: the memories, or the values at rest after a reset."""
        previous = {source: getattr(self, memory) for source, memory in self._feedback.items()}
        if all(value is not None for value in previous.values()):
            return previous
        values = self._at_rest(tuple(torch.zeros_like(x[:1] if multi else x) for x in xs))
        for source, value in previous.items():
            if value is None:
                rest = values[source]
                previous[source] = rest[0] if multi and rest is not None else rest
        return previous

    def _at_rest(self, zeros: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor | None]:
        """Every node's output with the graph at rest (one step before the first): ``zeros`` as
        the inputs (one step, or a sequence of one step in step mode ``'m'``), stateful nodes
        giving zero, stateless ones (and nested graphs, through their own nodes) computing their
        output; ``None`` for a node downstream of a value without a rest value. Changes no state."""
        values: dict[str, torch.Tensor | None] = dict(zip(self.inputs, zeros))
        for block in self._blocks:
            for step in block.steps:
                parts = [(p, value) for p in step.current if (value := values[p]) is not None]
                if len(parts) != len(step.current):  # an input without a value at rest
                    values[step.name] = None
                    continue
                total = self._sum(step.name, parts)
                if step.key is None:
                    values[step.name] = total
                    continue
                module = self.nodes[step.key]
                if self._stateless[step.key]:
                    values[step.name] = module(total)
                elif isinstance(module, NIRGraphModule):
                    inner = module._at_rest((torch.zeros_like(total),)) if len(module.inputs) == 1 else {}
                    outputs = [inner.get(name) for name in module.outputs]
                    values[step.name] = outputs[0] if len(outputs) == 1 else None
                else:
                    values[step.name] = torch.zeros_like(total)
        return values

    def _outputs(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(self.outputs) == 1:
            return values[self.outputs[0]]
        return tuple(values[name] for name in self.outputs)

    def single_step_forward(self, *xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """One step: one ``[N, *]`` tensor per ``Input`` -> one ``[N, *]`` tensor per ``Output``.

        Raises:
            TypeError: the wrong number of inputs, or an input that is not a tensor.
            ValueError: an input of the wrong shape, node inputs whose shapes differ, or a node
                in another step mode.
        """
        self._check_call(xs, 1)
        values: dict[str, torch.Tensor] = dict(zip(self.inputs, xs))
        previous = self._previous(xs, multi=False)
        for block in self._blocks:
            for step in block.steps:
                parts = [(p, values[p]) for p in step.current]
                parts += [(p, value) for p in step.delayed if (value := previous[p]) is not None]
                total = self._sum(step.name, parts)
                values[step.name] = total if step.key is None else self.nodes[step.key](total)
        for source, memory in self._feedback.items():
            setattr(self, memory, values[source])
        return self._outputs(values)

    def multi_step_forward(self, *x_seqs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """A sequence: one ``[T, N, *]`` tensor per ``Input`` -> one ``[T, N, *]`` per ``Output``.

        Raises:
            TypeError: the wrong number of inputs, or an input that is not a tensor.
            ValueError: an input of the wrong shape, inputs of different lengths ``T``, node
                inputs whose shapes differ, or a node in another step mode.
        """
        self._check_call(x_seqs, 2)
        lengths = {x.shape[0] if x.dim() else 0 for x in x_seqs}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"NIRGraphModule: expected inputs [T, N, *] with one T >= 1, got shapes {[list(x.shape) for x in x_seqs]}")
        steps_t = lengths.pop()
        values: dict[str, torch.Tensor] = dict(zip(self.inputs, x_seqs))
        previous = self._previous(x_seqs, multi=True)
        for block in self._blocks:
            if not block.cyclic:
                step = block.steps[0]
                total = self._sum(step.name, [(p, values[p]) for p in step.current])
                values[step.name] = total if step.key is None else self.nodes[step.key](total)
                continue
            members = {step.name for step in block.steps}
            sequences: dict[str, list[torch.Tensor]] = {step.name: [] for step in block.steps}
            for t in range(steps_t):
                now: dict[str, torch.Tensor] = {}
                for step in block.steps:
                    parts = [(p, now[p] if p in members else values[p][t]) for p in step.current]
                    parts += [(p, value) for p in step.delayed if (value := previous[p]) is not None]
                    total = self._sum(step.name, parts)
                    now[step.name] = total if step.key is None else self.nodes[step.key](total.unsqueeze(0))[0]
                for name, value in now.items():
                    sequences[name].append(value)
                    if name in previous:
                        previous[name] = value
            for name, seq in sequences.items():
                values[name] = torch.stack(seq)
        for source, memory in self._feedback.items():
            setattr(self, memory, values[source][-1])
        return self._outputs(values)

    def extra_repr(self) -> str:
        return (
            f"inputs={self.inputs}, outputs={self.outputs}, delayed_edges={self.delayed_edges}, "
            f"{super().extra_repr()}"
        )
