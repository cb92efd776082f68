"""snn network -> NIR graph (:func:`export_to_nir`)."""

from __future__ import annotations

import itertools
import operator
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from snn import layer, monitor, neuron
from snn.base import MemoryModule, StepModule
from snn.errors import NIRConversionError, SNNError
from snn.nir._common import check_dt, require_nir
from snn.nir._export_leaves import LeafMapper, Shape, as_numpy, no_node_reason
from snn.nir._export_loops import RestFn, back_edges, leaf_at_rest, rest_values
from snn.nir.graph import NIRGraphModule

__all__ = ["export_to_nir"]


#: containers whose children run one step at a time on ``[N, *]`` (or ``[T * N, *]``)
_PER_STEP_CONTAINERS = (layer.MultiStepContainer, layer.SeqToANNContainer, layer.StepModeContainer)
_KEEP_MODE = (*_PER_STEP_CONTAINERS, layer.TLastMultiStepContainer, layer.TLastSeqToANNContainer,
              layer.LinearRecurrentContainer, layer.ElementWiseRecurrentContainer)


def export_to_nir(
    net: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    save_path: str | os.PathLike[str] | None = None,
    dt: float = 1e-4,
) -> Any:
    """Describe an snn network as a NIR graph (and optionally write it to a file).

    The network is walked module by module: ``nn.Sequential`` and the per-step containers in
    order, recurrent containers as cycles (through a zero ``Delay`` when the loop's source is
    not zero at rest, so that it starts from zero as the container does),
    :class:`snn.nir.NIRGraphModule` edge by edge, and any other module by tracing its
    ``forward`` with :mod:`torch.fx` (calls of submodules, ``+`` between branches,
    ``torch.flatten``). Each leaf becomes one NIR node, named after its qualified name; see the
    parameter mapping on the "Interoperability" page of the documentation. Nothing NIR cannot
    state is dropped: a module, a soft reset, a non-Heaviside spike or a custom surrogate raises
    :class:`snn.errors.NIRConversionError`. What NIR's dynamics leave out but snn needs to
    rebuild the same module (the surrogate gradient, ``detach_reset``, a parametric LIF's ``w``
    and ``decay_input``) is kept in each node's ``metadata["snn"]``, which
    :func:`import_from_nir` reads and other tools ignore.

    ``example_input`` is run through the network once (from reset memories, under
    :func:`torch.no_grad`, in eval mode) to learn the shapes; the memories, train/eval modes
    and neurons' ``v_seq`` are restored afterwards, and :mod:`snn.monitor` monitors record
    nothing from it (:func:`snn.monitor.paused`). Other forward hooks of the network run.

    Args:
        net: the network (stateful snn modules, snn layers, torch layers).
        example_input: one input of the network (``[N, *]`` in step mode ``'s'``,
            ``[T, N, *]`` in step mode ``'m'``), or a sequence of them for a network with
            several inputs.
        save_path: where to write the graph as a NIR (HDF5) file; ``None`` writes nothing.
        dt: seconds per simulation step, used for every time constant (``tau * dt``) and
            every input resistance.

    Returns:
        The ``nir.NIRGraph``.

    Raises:
        ImportError: the ``nir`` package is not installed (``pip install "snn-core[nir]"``).
        TypeError: an argument of the wrong type.
        ValueError: a bad ``dt``, step modes that differ between modules, an
            ``example_input`` the network cannot run, or a ``save_path`` in a folder that does
            not exist.
        snn.errors.NIRConversionError: something NIR cannot express, or a recurrent container
            whose loop snn's importer would delay at another edge (the message names the
            module and why).
    """
    fn = "export_to_nir"
    if not isinstance(net, nn.Module):
        raise TypeError(f"{fn}: net: expected a torch.nn.Module, got {type(net).__name__}")
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    if not isinstance(inputs, (tuple, list)) or not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError(f"{fn}: example_input: expected a tensor or a sequence of tensors, got {type(example_input).__name__}")
    if save_path is not None and not isinstance(save_path, (str, os.PathLike)):
        raise TypeError(f"{fn}: save_path: expected a path or None, got {type(save_path).__name__}")
    if save_path is not None:
        _check_save_path(save_path)
    dt = check_dt(fn, dt)
    nir = require_nir()
    lead = _lead_dims(net)
    for i, x in enumerate(inputs):
        if x.dim() < lead:
            layout = "[N, *]" if lead == 1 else "[T, N, *]"
            raise ValueError(f"{fn}: example_input[{i}]: expected shape {layout}, got {list(x.shape)}")
    # surrogates NIR cannot express are refused before the example runs (a stochastic one could
    # not even run on an arbitrary input)
    checker = _Builder(nir, dt, {})
    for qualname, module in net.named_modules():
        if isinstance(module, neuron.BaseNode):
            checker._surrogate(module.surrogate_function, _where(qualname, module))
    calls = _record_calls(net, tuple(inputs), lead)
    builder = _Builder(nir, dt, calls)
    names = ["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]
    sources = []
    for name, x in zip(names, inputs):
        shape = tuple(x.shape[lead:])
        builder.add(name, nir.Input(input_type=np.array(shape, dtype=np.int64)), [], shape)
        builder.inputs[name] = x.new_zeros((1, *shape))
        sources.append([name])
    outs = builder.root(net, sources, lead)
    for i, out in enumerate(outs):
        shape = builder.shape_of(out, "the network's output")
        name = "output" if len(outs) == 1 else f"output_{i}"
        builder.add(name, nir.Output(output_type=np.array(shape, dtype=np.int64)), out, shape)
    nodes, edges = builder.finish()
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)
    except (ValueError, AssertionError) as exc:
        raise NIRConversionError(_where("", net), f"nir's type check rejects the graph snn built: {exc}") from exc
    if save_path is not None:
        nir.write(save_path, graph)
    return graph


def _check_save_path(save_path: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` when ``save_path`` cannot be a new file (before any work is done)."""
    path = Path(save_path)
    if path.is_dir():
        raise ValueError(f"export_to_nir: save_path: {str(path)!r} is a folder; expected a file path")
    if not path.parent.is_dir():
        raise ValueError(f"export_to_nir: save_path: the folder {str(path.parent)!r} does not exist")


def _lead_dims(net: nn.Module) -> int:
    """1 when the network runs single steps ``[N, *]``, 2 for sequences ``[T, N, *]``."""
    modes: set[str] = set()
    stack = [net]
    while stack:
        module = stack.pop()
        if isinstance(module, StepModule):
            modes.add(module.step_mode)
        if not isinstance(module, _KEEP_MODE):
            stack.extend(module.children())
    if len(modes) > 1:
        raise ValueError(
            "export_to_nir: net: its modules are in different step modes; set one with snn.functional.set_step_mode"
        )
    return 2 if modes == {"m"} else 1


def _record_calls(net: nn.Module, inputs: tuple[torch.Tensor, ...], lead: int) -> dict[int, list[tuple[Shape, Shape]]]:
    """Run ``net`` once and record each module's ``(input shape, output shape)`` per call.

    Raises:
        ValueError: the network cannot run ``inputs`` (torch's reason, as a shape mismatch).
    """
    from snn.base import extract_memories, load_memories

    calls: dict[int, list[tuple[Shape, Shape]]] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.setdefault(id(module), []).append((tuple(args[0].shape), tuple(output.shape)))

    memories = extract_memories(net)
    potentials = [(m, m.v_seq) for m in net.modules() if isinstance(m, neuron.BaseNode)]
    at_rest = [m.get_reset_value(name) for m in net.modules() if isinstance(m, MemoryModule) for name, _ in m.named_memories()]
    modes = [(m, m.training) for m in net.modules()]
    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        load_memories(net, at_rest)  # a fresh state fits example_input's batch size
        net.eval()
        with torch.no_grad(), monitor.paused():
            try:
                net(*inputs)
            except (SNNError, NotImplementedError, torch.OutOfMemoryError):
                raise  # typed errors of snn and its backends, and memory: not about the input's shape
            except RuntimeError as exc:  # torch's own shape and dtype checks, deep in a layer
                layout = "[N, *]" if lead == 1 else "[T, N, *]"
                shapes = ", ".join(str(list(x.shape)) for x in inputs)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(
                    f"export_to_nir: example_input: the network cannot run an input of shape {shapes} "
                    f"(expected {layout} in step mode {'s' if lead == 1 else 'm'!r}): {reason}"
                ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
        for node, v_seq in potentials:
            node.v_seq = v_seq
        load_memories(net, memories)
    return calls


class _Builder(LeafMapper):
    """Collects NIR nodes and edges while walking a network."""

    def __init__(self, nir: Any, dt: float, calls: dict[int, list[tuple[Shape, Shape]]]) -> None:
        self.nir = nir
        self.dt = dt
        self.calls = calls
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, Shape] = {}
        self.used: dict[int, int] = {}
        self.pending: dict[str, list[str]] = {}  # placeholder -> the sources it stands for
        self._placeholders = itertools.count()
        # for the loops (see _export_loops): each Input's value at rest, each node's output at rest
        # (None: stateful, zero; no entry: an Output, its sum), each recurrent container's loop
        self.inputs: dict[str, torch.Tensor] = {}
        self.at_rest: dict[str, RestFn | None] = {}
        self.loops: list[tuple[str, str, str]] = []  # (placeholder, qualname, where)

    # -- bookkeeping -------------------------------------------------------------------------

    def unique(self, name: str) -> str:
        name = name or "node"
        base, i = name, 1
        while name in self.nodes or name in self.pending:
            name = f"{base}_{i}"
            i += 1
        return name

    def add(self, name: str, node: Any, sources: Sequence[str], shape: Shape) -> str:
        name = self.unique(name)
        self.nodes[name] = node
        self.shapes[name] = shape
        self.edges.extend((source, name) for source in sources)
        return name

    def placeholder(self) -> str:
        token = f"\x00pending{next(self._placeholders)}"
        self.pending[token] = []
        return token

    def shape_of(self, sources: Sequence[str], what: str) -> Shape:
        for source in sources:
            if source in self.shapes:
                return self.shapes[source]
            if source in self.pending:
                shape = self.shape_of(self.pending[source], what)
                if shape is not None:
                    return shape
        raise NIRConversionError(what, "its shape is unknown (it only feeds back on itself)")

    def resolve(self, token: str, seen: frozenset[str] = frozenset()) -> list[tuple[str, frozenset[str]]]:
        """The nodes ``token`` stands for, each with the placeholders passed on the way."""
        if token not in self.pending:
            return [(token, seen)]
        if token in seen:
            raise NIRConversionError("a recurrent connection", "it passes through no module (an empty loop)")
        return [n for source in self.pending[token] for n in self.resolve(source, seen | {token})]

    def resolved_edges(self) -> tuple[list[tuple[str, str]], dict[str, set[tuple[str, str]]]]:
        """The edges between nodes, and each loop's feedback edges (those through its placeholder)."""
        edges: list[tuple[str, str]] = []
        feedback: dict[str, set[tuple[str, str]]] = {token: set() for token, _, _ in self.loops}
        seen: set[tuple[str, str]] = set()
        for source, target in self.edges:
            for resolved, via in self.resolve(source):
                if (resolved, target) in seen:
                    raise NIRConversionError(
                        f"node {target!r}", f"receives {resolved!r} twice (e.g. x + x); NIR sums distinct edges only"
                    )
                seen.add((resolved, target))
                edges.append((resolved, target))
                for token in via & feedback.keys():
                    feedback[token].add((resolved, target))
        return edges, feedback

    def finish(self) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The nodes and edges, each recurrent container's loop made to start from zero.

        A loop whose source is not zero at rest (see :mod:`snn.nir._export_loops`) is routed
        through a zero ``Delay``; then every feedback edge must be one the importer delays.

        Raises:
            NIRConversionError: the importer would delay another edge of some loop.
        """
        edges, feedback = self.resolved_edges()
        if not self.loops:
            return self.nodes, edges
        back = back_edges(list(self.inputs), self.nodes, edges)
        try:
            with torch.no_grad():
                rest = rest_values(self.nodes, edges, back, self.inputs, self.at_rest, self.shapes)
        except Exception:  # a layer that cannot run one sample at rest: assume the worst
            rest = {}
        changed = False
        for token, qualname, _ in self.loops:
            sources = {source for source, _ in feedback[token]}
            if any(source not in rest or _nonzero(rest[source]) for source in sources):
                shape = self.shape_of(self.pending[token], _join(qualname, "feedback"))
                delay = self.nir.Delay(np.zeros(shape, dtype=np.float64))
                name = self.add(_join(qualname, "feedback"), delay, self.pending[token], shape)
                self.at_rest[name] = None  # stateful: zero at rest
                self.pending[token] = [name]
                changed = True
        if changed:
            edges, feedback = self.resolved_edges()
            back = back_edges(list(self.inputs), self.nodes, edges)
        for token, _, where in self.loops:
            missed = sorted(feedback[token] - back)
            if missed:
                raise NIRConversionError(
                    where,
                    f"its feedback edges {missed} would not be delayed by one step when the graph is read back: "
                    "snn's importer delays the edges that close a cycle in a depth-first walk from the inputs "
                    "(successors in name order); a sub_module whose input feeds a single module exports exactly",
                )
        return self.nodes, edges

    def call(self, module: nn.Module, qualname: str) -> tuple[Shape, Shape]:
        """The recorded shapes of this use of ``module``."""
        index = self.used.get(id(module), 0)
        self.used[id(module)] = index + 1
        if index and isinstance(module, MemoryModule):
            raise NIRConversionError(
                _where(qualname, module), "the same stateful module is used twice; NIR nodes cannot share state"
            )
        recorded = self.calls.get(id(module))
        if not recorded:
            raise NIRConversionError(_where(qualname, module), "it was not called when running example_input")
        return recorded[min(index, len(recorded) - 1)]

    # -- walking -----------------------------------------------------------------------------

    def root(self, net: nn.Module, sources: list[list[str]], lead: int) -> list[list[str]]:
        """Emit the whole network; one list of sources per network output."""
        if type(net) is NIRGraphModule:
            return self.graph_module(net, "", sources, lead)
        if self.leaf_mapper(net) is None and not self.is_structural(net):
            return self.traced(net, "", sources, lead)
        if len(sources) != 1:
            raise NIRConversionError(_where("", net), f"it takes one input, got {len(sources)} example inputs")
        return [self.emit(net, "", sources[0], lead)]

    def is_structural(self, module: nn.Module) -> bool:
        return (
            type(module) in (nn.Sequential, nn.Identity, nn.Dropout, layer.Dropout, NIRGraphModule,
                             layer.LinearRecurrentContainer, layer.ElementWiseRecurrentContainer)
            or type(module) in _PER_STEP_CONTAINERS
        )

    def emit(self, module: nn.Module, qualname: str, sources: list[str], lead: int) -> list[str]:
        """Emit ``module`` fed by the sum of ``sources``; return the sources of its output."""
        mapper = self.leaf_mapper(module)
        if mapper is not None:
            in_shape, out_shape = self.call(module, qualname)
            own = lead if not isinstance(module, StepModule) else (1 if module.step_mode == "s" else 2)
            where = _where(qualname, module)
            node = mapper(module, where, in_shape[own:], out_shape[own:], own)
            name = self.add(qualname, node, sources, out_shape[own:])
            self.at_rest[name] = None if isinstance(module, MemoryModule) else leaf_at_rest(module, own)
            return [name]
        kind = type(module)
        if kind in (nn.Identity, nn.Dropout, layer.Dropout):
            return sources  # dropout is the identity at inference, which is what NIR describes
        if kind is nn.Sequential or kind in _PER_STEP_CONTAINERS:
            inner = lead if kind is nn.Sequential else 1
            # every entry, as forward runs them: named_children() lists a module used twice once
            for name, child in module._modules.items():
                if child is not None:
                    sources = self.emit(child, _join(qualname, name), sources, inner)
            return sources
        if type(module) is layer.LinearRecurrentContainer:  # type(), not kind: narrows module for the type checker
            return self.linear_recurrent(module, qualname, sources)
        if type(module) is layer.ElementWiseRecurrentContainer:  # type(), not kind: narrows module for the type checker
            return self.element_wise_recurrent(module, qualname, sources)
        if type(module) is NIRGraphModule:  # type(), not kind: narrows module for the type checker
            outs = self.graph_module(module, qualname, [sources], lead)
            if len(outs) != 1:
                raise NIRConversionError(_where(qualname, module), "a nested graph must have one output")
            return outs[0]
        if isinstance(module, MemoryModule) or kind.__module__.startswith("torch.") or kind.__module__.startswith("snn."):
            raise NIRConversionError(_where(qualname, module), no_node_reason(module))
        outs = self.traced(module, qualname, [sources], lead)
        if len(outs) != 1:
            raise NIRConversionError(_where(qualname, module), "a nested module must return one tensor")
        return outs[0]

    def traced(self, module: nn.Module, qualname: str, sources: list[list[str]], lead: int) -> list[list[str]]:
        """Emit a module of another kind by tracing its ``forward`` with :mod:`torch.fx`."""
        where = _where(qualname, module)
        try:
            graph = _ShallowTracer().trace(module)
        except Exception as exc:  # fx raises many kinds (TraceError, TypeError, NotImplementedError ...)
            raise NIRConversionError(
                where, f"snn has no NIR mapping for it and cannot trace its forward with torch.fx ({type(exc).__name__}: {exc})"
            ) from exc
        values: dict[fx.Node, list[str]] = {}
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        if len(placeholders) != len(sources):
            raise NIRConversionError(where, f"its forward takes {len(placeholders)} inputs, got {len(sources)}")
        for node, srcs in zip(placeholders, sources):
            values[node] = srcs
        for node in graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                result = node.args[0]
                results = list(result) if isinstance(result, (tuple, list)) else [result]
                if not all(isinstance(r, fx.Node) and r in values for r in results):
                    raise NIRConversionError(where, "its forward returns something other than tensors it computed")
                return [values[r] for r in results]
            values[node] = self.traced_node(module, qualname, where, node, values, lead)
        raise NIRConversionError(where, "its forward returns nothing")

    def traced_node(
        self, module: nn.Module, qualname: str, where: str, node: fx.Node, values: dict[fx.Node, list[str]], lead: int
    ) -> list[str]:
        def operand(arg: Any) -> list[str]:
            if not isinstance(arg, fx.Node) or arg not in values:
                raise NIRConversionError(where, f"{node.format_node()}: NIR edges carry tensors only, got {arg!r}")
            return values[arg]

        if node.op == "call_module":
            if len(node.args) != 1 or node.kwargs:
                raise NIRConversionError(where, f"{node.format_node()}: NIR nodes take one input")
            child = module.get_submodule(str(node.target))
            return self.emit(child, _join(qualname, str(node.target)), operand(node.args[0]), lead)
        if node.target in (operator.add, torch.add) and len(node.args) == 2 and not node.kwargs:
            left, right = operand(node.args[0]), operand(node.args[1])
            token = self.placeholder()  # a junction: NIR sums the edges into a node
            self.pending[token] = [*left, *right]
            return [token]
        if (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target == "flatten"
        ):
            return self.flatten_call(qualname, where, node, operand, lead)
        raise NIRConversionError(
            where, f"{node.format_node()}: NIR has no node for {node.op} {getattr(node.target, '__name__', node.target)!r}"
        )

    def flatten_call(
        self, qualname: str, where: str, node: fx.Node, operand: Callable[[Any], list[str]], lead: int
    ) -> list[str]:
        args = list(node.args)
        sources = operand(args[0])
        start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
        if not (isinstance(start, int) and isinstance(end, int)):
            raise NIRConversionError(where, f"{node.format_node()}: flatten with non-constant dimensions")
        shape = self.shape_of(sources, where)
        nir_flatten, out_shape = self.flatten_node(where, shape, start, end, lead)
        name = self.add(_join(qualname, node.name), nir_flatten, sources, out_shape)
        self.at_rest[name] = lambda x: x.reshape(1, *out_shape)
        return [name]

    # -- structural modules ------------------------------------------------------------------

    def linear_recurrent(self, module: layer.LinearRecurrentContainer, qualname: str, sources: list[str]) -> list[str]:
        nir = self.nir
        where = _where(qualname, module)
        weight = as_numpy(module.rc.weight).astype(np.float64)
        w_in, w_rec = weight[:, : module.in_features], weight[:, module.in_features :]
        in_shape, _ = self.call(module, qualname)
        step_shape = tuple(in_shape[1 if module.step_mode == "s" else 2 :])
        if len(step_shape) != 1:
            raise NIRConversionError(where, f"NIR's Affine takes one-dimensional samples, got {list(step_shape)}")
        bias = module.rc.bias
        node = nir.Affine(w_in, as_numpy(bias).astype(np.float64)) if bias is not None else nir.Linear(w_in)
        entry = self.add(_join(qualname, "rc"), node, sources, step_shape)
        split = module.in_features
        self.at_rest[entry] = lambda x: nn.functional.linear(x, module.rc.weight[:, :split], module.rc.bias)
        loop = self.placeholder()
        self.loops.append((loop, qualname, where))
        outs = self.emit(module.sub_module, _join(qualname, "sub_module"), [entry, loop], 1)
        back = self.add(_join(qualname, "rc_recurrent"), nir.Linear(w_rec), outs, step_shape)
        self.at_rest[back] = lambda x: nn.functional.linear(x, module.rc.weight[:, split:])
        self.pending[loop] = [back]
        return outs

    def element_wise_recurrent(
        self, module: layer.ElementWiseRecurrentContainer, qualname: str, sources: list[str]
    ) -> list[str]:
        if module.element_wise_function not in (torch.add, operator.add):
            name = getattr(module.element_wise_function, "__name__", repr(module.element_wise_function))
            raise NIRConversionError(
                _where(qualname, module), f"element_wise_function={name}: NIR combines inputs by summing only (torch.add)"
            )
        self.call(module, qualname)
        loop = self.placeholder()
        self.loops.append((loop, qualname, _where(qualname, module)))
        outs = self.emit(module.sub_module, _join(qualname, "sub_module"), [*sources, loop], 1)
        if loop in outs:
            raise NIRConversionError(_where(qualname, module), "its sub_module passes its input through unchanged")
        self.pending[loop] = list(outs)
        return outs

    def graph_module(
        self, module: NIRGraphModule, qualname: str, sources: list[list[str]], lead: int
    ) -> list[list[str]]:
        if len(sources) != len(module.inputs):
            raise NIRConversionError(_where(qualname, module), f"it takes {len(module.inputs)} inputs, got {len(sources)}")
        tokens = {name: self.placeholder() for name in [*module.keys, *module.outputs]}
        for name, srcs in zip(module.inputs, sources):
            tokens[name] = self.placeholder()
            self.pending[tokens[name]] = list(srcs)
        predecessors: dict[str, list[str]] = {}
        for source, target in module.edges:
            predecessors.setdefault(target, []).append(tokens[source])
        for name, key in module.keys.items():
            outs = self.emit(module.nodes[key], _join(qualname, name), predecessors.get(name, []), lead)
            self.pending[tokens[name]] = list(outs)
        for name in module.outputs:
            self.pending[tokens[name]] = predecessors.get(name, [])
        return [[tokens[name]] for name in module.outputs]


class _ShallowTracer(fx.Tracer):
    """Traces one module's own ``forward``: every submodule call stays a ``call_module`` node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _nonzero(value: torch.Tensor | None) -> bool:
    return value is not None and bool((value != 0).any())


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _where(qualname: str, module: nn.Module) -> str:
    return f"{qualname or 'net'} ({type(module).__name__})"
