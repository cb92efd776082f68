"""Checks of an untrusted NIR graph before snn builds modules from it: reading a file, the node
types it names, and the shapes its edges declare (:func:`snn.nir.import_from_nir`)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from snn.errors import NIRConversionError

__all__ = ["SUPPORTED", "check_declared_shape", "check_edge_shapes", "input_shape", "ints", "read_file"]

#: the NIR node types snn builds a module for (besides the ports and nested graphs)
_NODE_TYPES = (
    "Affine", "Linear", "Conv1d", "Conv2d", "Flatten", "AvgPool2d", "SumPool2d", "Scale", "Delay",
    "Threshold", "IF", "LIF", "LI", "CubaLIF", "CubaLI",
)
SUPPORTED = f"Input, Output, {', '.join(_NODE_TYPES)} and nested NIRGraph"
#: node types that read their input by position: an edge into one must carry the declared shape
_POSITIONAL_NODES = ("Affine", "Linear", "Conv1d", "Conv2d", "Flatten", "AvgPool2d", "SumPool2d")


def read_file(nir: Any, path: Path) -> Any:
    """``nir.read`` with every failure of a malformed file turned into a :class:`ValueError`."""
    if not path.exists():
        raise FileNotFoundError(f"import_from_nir: graph: no such file: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"import_from_nir: graph: {str(path)!r} is not a file")
    _check_node_types(path)
    try:
        graph = nir.read(path, type_check=False)
    except MemoryError:
        raise
    except Exception as exc:  # h5py / nir raise OSError, KeyError, AssertionError, TypeError ... on bad files
        node_reason = _failing_node(nir, path)
        if node_reason is not None:
            raise ValueError(f"import_from_nir: graph {str(path)!r}: {node_reason}") from exc
        reason = f"{type(exc).__name__}: {exc}" if str(exc).strip() else f"{type(exc).__name__} in nir.read, without a message"
        raise ValueError(f"import_from_nir: graph: {str(path)!r} is not a readable NIR file ({reason})") from exc
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(
            f"import_from_nir: graph: {str(path)!r} holds a {type(graph).__name__}, expected a NIRGraph"
        )
    return graph


def _failing_node(nir: Any, path: Path) -> str | None:
    """``"node 'name' (type): reason"`` for the first node of the file at ``path`` that nir
    cannot build on its own (``nir.read`` names none), or ``None`` when that cannot be told
    (the file's structure is not a graph's, or every node builds)."""
    hdf2dict = getattr(getattr(nir, "serialization", None), "hdf2dict", None)
    build = getattr(nir, "dict2NIRNode", None)
    if hdf2dict is None or build is None:
        return None
    try:
        h5py = importlib.import_module("h5py")
        with h5py.File(path, "r") as file:
            data = hdf2dict(file["node"])
    except Exception:  # unreadable as HDF5: nir.read's own message says why
        return None

    def search(group: Any, where: str) -> str | None:
        nodes = group.get("nodes") if isinstance(group, Mapping) else None
        if not isinstance(nodes, Mapping):
            return None
        for name, node in nodes.items():
            kind = node.get("type") if isinstance(node, Mapping) else None
            here = f"{where}node {name!r} ({kind})" if isinstance(kind, str) else f"{where}node {name!r}"
            if not isinstance(kind, str):
                return f"{here}: its 'type' should be a node type name, found {kind!r:.60}"
            if kind == "NIRGraph":
                found = search(node, f"{where}subgraph {name!r}: ")
                if found is not None:
                    return found
                continue
            try:
                build(dict(node))
            except MemoryError:
                raise
            except Exception as exc:
                reason = str(exc).strip() or f"{type(exc).__name__} in nir, without a message"
                return f"{here}: nir cannot read it ({type(exc).__name__}: {reason})"
        return None

    return search(data, "")


def _check_node_types(path: Path) -> None:
    """Raise :class:`NIRConversionError` naming the first node whose ``type`` snn has no module
    for (``nir.read`` fails on a type it does not know with a bare ``AssertionError``). A file
    this scan cannot read is left to ``nir.read``, which reports it."""
    try:
        h5py = importlib.import_module("h5py")  # nir's own dependency (untyped: imported by name)
    except ImportError:  # pragma: no cover - nir needs h5py
        return
    try:
        with h5py.File(path, "r") as file:
            found = _unknown_type(file.get("node"), f"graph {str(path)!r}")
    except Exception:  # any h5py failure on a malformed file: nir.read names it
        return
    if found is not None:
        where, kind = found
        raise NIRConversionError(
            f"{where} ({kind})", f"snn has no module for this node type; supported: {SUPPORTED}"
        )


def _unknown_type(group: Any, where: str) -> tuple[str, str] | None:
    """``(where, type)`` of the first node below the graph group ``group`` whose type is not one
    snn reads; ``None`` when all are (or when the structure is not a graph's)."""
    nodes = group.get("nodes") if hasattr(group, "get") else None
    if nodes is None or not hasattr(nodes, "items"):
        return None
    for name, node in nodes.items():
        kind = node.get("type") if hasattr(node, "get") else None
        value = kind[()] if kind is not None and hasattr(kind, "shape") and kind.shape == () else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            continue  # not a plain type name: nir.read reports it
        if value == "NIRGraph":
            found = _unknown_type(node, f"{where}: subgraph {name!r}")
            if found is not None:
                return found
        elif value not in (*_NODE_TYPES, "Input", "Output"):
            return f"{where}: node {name!r}", value
    return None


def ints(where: str, field: str, value: Any, count: int, minimum: int) -> tuple[int, ...]:
    """``value`` (an int or ``count`` ints) as a tuple of ``count`` ints ``>= minimum``."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or array.ndim > 1 or (array.ndim == 1 and array.size not in (1, count)):
        raise ValueError(f"{where}: {field}: expected an int or {count} ints, got {value!r}")
    flat = [float(v) for v in np.broadcast_to(array.reshape(-1), (count,))] if array.ndim else [float(array)] * count
    if not all(math.isfinite(v) and v == int(v) and v >= minimum for v in flat):
        raise ValueError(f"{where}: {field}: expected integers >= {minimum}, got {value!r}")
    return tuple(int(v) for v in flat)


def _without_leading_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    index = 0
    while index < len(shape) - 1 and shape[index] == 1:
        index += 1
    return shape[index:]


def check_edge_shapes(nir: Any, where: str, nodes: Mapping[str, Any], pairs: list[tuple[str, str]]) -> None:
    """Refuse (``ValueError``: not valid NIR) an edge whose source declares an output shape that
    cannot meet the target's declared input shape (a 5-neuron LIF fed 3 values would otherwise
    run on 3, its uniform parameters broadcast), or one whose target declares more dimensions
    than the source produces (a ``Scale`` of shape ``[2, 4]`` fed samples of ``[4]`` would
    otherwise scale each row of the batch differently). Leading sizes of 1 are ignored and sizes
    of 1 broadcast into element-wise nodes (neurons, ``Scale``, ``Threshold``, ``Delay``, an
    ``Output``: snnTorch writes a layer of ``Leaky`` neurons with one scalar ``beta`` as a LIF of
    one element), never into a node that reads its input by position (``Affine``, ``Linear``,
    convolutions, pooling, ``Flatten``), which must get the shape it declares; edges with a side
    that declares no shape, or several, are left to the modules. A convolution's output shape is
    computed here from its declared input and its kernel (nir 1.0.8 takes the kernel as
    square)."""
    positional = tuple(getattr(nir, name) for name in _POSITIONAL_NODES if hasattr(nir, name))
    for source, target in pairs:
        if source not in nodes or target not in nodes:
            continue  # NIRGraphModule names unknown nodes
        if isinstance(nodes[source], (nir.Conv1d, nir.Conv2d)):
            produced = _conv_output_shape(nodes[source])
        else:
            produced = input_shape(getattr(nodes[source], "output_type", None))
        expected = input_shape(getattr(nodes[target], "input_type", None))
        if produced and not expected and isinstance(nodes[target], (nir.Conv1d, nir.Conv2d)):
            _check_conv_channels(where, source, target, nodes, produced)
        if not produced or not expected or 0 in produced or 0 in expected:
            continue  # undeclared, or declared without sizes
        # writers differ on a leading batch dimension of 1 (Norse: Input [1, 4] into Affine [4]),
        # and one-element parameters broadcast (a Scale of [1]): only shapes that cannot meet fail
        produced_core, expected_core = _without_leading_ones(produced), _without_leading_ones(expected)
        if isinstance(nodes[target], positional):
            fits = produced_core == expected_core
        else:
            try:
                np.broadcast_shapes(produced_core, expected_core)
                fits = len(expected_core) <= len(produced_core)
            except ValueError:
                fits = False
        if not fits:
            more = " (more dimensions than one sample has)" if len(expected_core) > len(produced_core) else ""
            raise ValueError(
                f"{where}: edge {source!r} -> {target!r}: {source!r} ({type(nodes[source]).__name__}) produces "
                f"shape {list(produced)} but {target!r} ({type(nodes[target]).__name__}) takes shape "
                f"{list(expected)}{more}"
            )


def _check_conv_channels(
    where: str, source: str, target: str, nodes: Mapping[str, Any], produced: tuple[int, ...]
) -> None:
    """Refuse an edge into a convolution that declares no input shape when the source's
    declared output has another number of channels than the kernel reads (``in_channels``
    of the weight times ``groups``) or another number of dimensions."""
    node = nodes[target]
    try:
        weight_shape = tuple(np.shape(node.weight))
        groups = int(getattr(node, "groups", 1))
    except (TypeError, ValueError):
        return  # the importer names a malformed weight or groups
    dims = len(weight_shape) - 2
    if dims not in (1, 2) or groups < 1:
        return
    core = _without_leading_ones(produced)
    if len(core) > dims + 1:
        problem = f"{len(core)} dimensions, more than the {dims + 1} of one sample"
    else:
        channels = (1,) * (dims + 1 - len(core)) + core
        if channels[0] == weight_shape[1] * groups:
            return
        problem = f"{channels[0]} channels where the kernel reads {weight_shape[1] * groups}"
    raise ValueError(
        f"{where}: edge {source!r} -> {target!r}: {source!r} ({type(nodes[source]).__name__}) produces shape "
        f"{list(produced)} but {target!r} ({type(node).__name__}) takes [channels, *spatial] with "
        f"{weight_shape[1] * groups} channels: {problem}"
    )


def _conv_output_shape(node: Any) -> tuple[int, ...] | None:
    """``[C_out, *spatial]`` of a NIR convolution from its declared input shape, its weight and
    its (already checked) stride, padding and dilation; ``None`` when the input is undeclared."""
    try:
        weight_shape = tuple(np.shape(node.weight))
        dims = len(weight_shape) - 2
        declared = input_shape(getattr(node, "input_type", None))
        if dims not in (1, 2) or not declared or len(declared) != dims + 1:
            return None
        sizes = declared[1:]
        stride = ints("", "stride", getattr(node, "stride", 1), dims, 1)
        dilation = ints("", "dilation", getattr(node, "dilation", 1), dims, 1)
        padding: Any = getattr(node, "padding", 0)
        if isinstance(padding, bytes):
            padding = padding.decode("utf-8", "replace")
        if isinstance(padding, str):
            if padding != "valid":  # "same" (the importer refused any other string)
                return (weight_shape[0], *sizes)
            pads: tuple[int, ...] = (0,) * dims
        else:
            pads = ints("", "padding", padding, dims, 0)
    except (ValueError, TypeError, AttributeError):
        return None
    out = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip(sizes, pads, dilation, weight_shape[2:], stride)
    ]
    return (weight_shape[0], *out) if all(o > 0 for o in out) else None


def _declared_sizes(types: Any) -> np.ndarray | None:
    """The array a node's ``input_type`` / ``output_type`` holds for its one port, or ``None``
    when it declares none (not one port, no value, or a value numpy cannot read)."""
    if not isinstance(types, Mapping) or len(types) != 1:
        return None
    value = next(iter(types.values()))
    if value is None:
        return None
    try:
        return np.asarray(value)
    except (TypeError, ValueError):  # a ragged or foreign value
        return None


def input_shape(types: Any) -> tuple[int, ...] | None:
    """The shape a node's ``input_type`` / ``output_type`` declares, when it declares one, as a
    plain list of sizes; ``None`` otherwise."""
    array = _declared_sizes(types)
    if array is None or array.ndim != 1 or array.dtype.kind not in "iu" or np.any(array < 0):
        return None
    return tuple(int(v) for v in array)


def check_declared_shape(where: str, types: Any) -> None:
    """Raise ``ValueError`` when ``types`` (an ``Input``'s ``input_type``) declares a shape
    with fractional sizes or negative ones other than -1; an undeclared or empty shape, or one
    with -1 for a size some writers leave open, is fine (and not checked)."""
    array = _declared_sizes(types)
    if array is None or array.size == 0:
        return
    if array.dtype.kind not in "iuf" or array.ndim != 1 or np.any(array < -1) or np.any(array != np.round(array)):
        raise ValueError(
            f"{where}: input_type: expected integer sizes >= 0 (or -1 for an open one), got {next(iter(types.values()))!r}"
        )
