"""NIR graph -> snn network (:func:`import_from_nir`)."""

from __future__ import annotations

import importlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snn import layer, neuron
from snn.errors import NIRConversionError
from snn.functional import set_step_mode
from snn.nir._common import all_close, check_dt, close, read_snn_metadata, require_nir
from snn.nir._import_checks import (
    SUPPORTED,
    check_declared_shape,
    check_edge_shapes,
    input_shape,
    ints,
    read_file,
)
from snn.nir.graph import NIRGraphModule, port_order
from snn.nir.modules import CubaLINode, Delay, LINode, Scale, SumPool2d, Threshold
from snn.surrogate import Sigmoid

__all__ = ["import_from_nir", "MAX_DELAY_STEPS"]

#: The longest delay :func:`import_from_nir` accepts, in steps of ``dt``: a :class:`Delay` keeps
#: one input per step of delay in memory, and a file is untrusted input.
MAX_DELAY_STEPS = 100_000


def import_from_nir(
    graph: Any,
    dt: float = 1e-4,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    step_mode: str = "s",
) -> NIRGraphModule:
    """Build an snn network from a NIR graph.

    Every node becomes an snn module (see the parameter mapping on the "Interoperability" page
    of the documentation); the network sums each node's inputs and delays the edges that close a
    cycle by one step (:class:`snn.nir.NIRGraphModule`). It is a stateful snn module like any
    other: reset it with :func:`snn.functional.reset_net`, change its step mode with
    :func:`snn.functional.set_step_mode`, get an explicit-state forward with
    :func:`snn.functional.to_functional_forward`.

    Args:
        graph: a ``nir.NIRGraph``, or the path of a NIR file (``str`` or path-like), read as
            untrusted input.
        dt: seconds per simulation step: NIR time constants ``tau`` become ``tau / dt`` steps,
            and the forward-Euler step of each node is taken with ``dt`` (use the ``dt`` the
            graph was written for).
        device: where the network's parameters and buffers go.
        dtype: the floating dtype of the network's parameters and buffers.
        step_mode: ``'s'`` (inputs ``[N, *]``) or ``'m'`` (inputs ``[T, N, *]``).

    Returns:
        The network, a :class:`snn.nir.NIRGraphModule`, in train mode. It takes one tensor per
        ``Input`` node and returns one per ``Output`` node (a tuple when there are several), in
        name order with runs of digits compared as numbers (``input_2`` before ``input_10``).

    Raises:
        ImportError: the ``nir`` package is not installed (``pip install "snn-core[nir]"``).
        TypeError: an argument of the wrong type.
        FileNotFoundError: ``graph`` is a path that does not exist.
        ValueError: ``graph`` is not a valid NIR graph (a truncated or malformed file, edges
            to unknown nodes or between declared shapes that cannot meet, parameters of the
            wrong shape or non-finite ...), or a bad ``dt`` / ``step_mode`` / ``device`` (a
            CUDA device this machine does not have).
        snn.errors.NIRConversionError: a node snn has no module for (in a file, also a type
            ``nir`` does not know), parameters no snn module reproduces exactly, or a delay of
            more than 100 000 steps (the message names the node and why).
    """
    fn = "import_from_nir"
    dt = check_dt(fn, dt)
    if not isinstance(step_mode, str) or step_mode not in ("s", "m"):
        raise ValueError(f"{fn}: step_mode: expected 's' or 'm', got {step_mode!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype: expected a floating torch.dtype, got {dtype!r}")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{fn}: device: expected a str or torch.device, got {type(device).__name__}")
    device = _check_device(fn, device)
    nir = require_nir()
    root = "graph"  # how messages name the graph: with its file, when it came from one
    if isinstance(graph, (str, os.PathLike)):
        root = f"graph {str(graph)!r}"
        graph = read_file(nir, Path(graph))
    elif not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"{fn}: graph: expected a nir.NIRGraph or a file path, got {type(graph).__name__}")
    net = _Importer(nir, dt).graph(graph, root)
    net.to(device=device, dtype=dtype)
    set_step_mode(net, step_mode)
    return net


def _check_device(fn: str, device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; ``ValueError`` for a malformed name or a CUDA device
    this machine does not have (torch would fail inside ``Module.to``)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{fn}: device: expected a device such as 'cpu' or 'cuda:0', got {device!r}") from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index is not None and parsed.index >= count):
            raise ValueError(f"{fn}: device: {str(parsed)!r} asked for, but torch sees {count} CUDA device(s)")
    return parsed


# -- parameter checks ----------------------------------------------------------------------------


def _array(where: str, field: str, value: Any) -> np.ndarray:
    """``value`` as a finite float64 array (from integers or real floats only: complex values,
    strings and booleans are refused, not converted)."""
    if value is None:
        raise ValueError(f"{where}: {field}: missing")
    try:
        given = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {field}: expected real numbers, got {type(value).__name__}") from exc
    if given.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {field}: expected real numbers (integers or floats), got an array of dtype {given.dtype}")
    array = given.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {field}: expected finite values")
    return array


def _uniform(where: str, field: str, array: np.ndarray) -> float:
    """The one value of ``array`` (all elements equal up to the tolerance)."""
    if array.size == 0:
        raise ValueError(f"{where}: {field}: expected at least one value, got an empty array")
    first = float(array.flat[0])
    if not all_close(array, first):
        raise NIRConversionError(
            where,
            f"{field} differs between neurons (from {array.min()!r} to {array.max()!r}); the snn module "
            "takes one value per layer",
        )
    return first


def _same_shape(where: str, arrays: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{where}: the parameters must have one shape, got {shapes}")
    return next(iter(shapes.values()))


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A float64 copy of ``array`` (never sharing the graph's memory: training the imported
    network must not change the caller's graph)."""
    return torch.from_numpy(np.array(array, dtype=np.float64, order="C", copy=True))


def _with_gain(gain: np.ndarray, module: nn.Module) -> nn.Module:
    """``module`` preceded by :class:`Scale` when some element of ``gain`` is not 1."""
    if all_close(gain, 1.0):
        return module
    first = float(gain.flat[0])
    scale = torch.tensor(first, dtype=torch.float64) if all_close(gain, first) else _tensor(gain)
    return nn.Sequential(OrderedDict(scale=Scale(scale), neuron=module))


# -- the mapping ---------------------------------------------------------------------------------


class _Importer:
    def __init__(self, nir: Any, dt: float) -> None:
        self.nir = nir
        self.dt = dt
        self.mappers: dict[type, Callable[[str, Any], nn.Module]] = {
            nir.Affine: self.affine,
            nir.Linear: self.linear,
            nir.Conv1d: self.conv1d,
            nir.Conv2d: self.conv2d,
            nir.Flatten: self.flatten,
            nir.AvgPool2d: self.avgpool2d,
            nir.SumPool2d: self.sumpool2d,
            nir.Scale: self.scale,
            nir.Threshold: self.threshold,
            nir.Delay: self.delay,
            nir.IF: self.if_node,
            nir.LIF: self.lif,
            nir.LI: self.li,
            nir.CubaLI: self.cuba_li,
            nir.CubaLIF: self.cuba_lif,
        }

    def graph(self, graph: Any, where: str) -> NIRGraphModule:
        nir = self.nir
        nodes, edges = getattr(graph, "nodes", None), getattr(graph, "edges", None)
        if not isinstance(nodes, Mapping):
            raise ValueError(f"{where}: nodes: expected a mapping of names to NIR nodes, got {type(nodes).__name__}")
        if not isinstance(edges, (list, tuple)):
            raise ValueError(f"{where}: edges: expected a list of (source, target) pairs, got {type(edges).__name__}")
        pairs: list[tuple[str, str]] = []
        for edge in edges:
            if not (isinstance(edge, (list, tuple)) and len(edge) == 2 and all(isinstance(e, str) for e in edge)):
                raise ValueError(f"{where}: edges: expected (source, target) pairs of node names, got {edge!r}")
            pairs.append((edge[0], edge[1]))
        inputs: list[str] = []
        outputs: list[str] = []
        modules: dict[str, nn.Module] = {}
        input_shapes: dict[str, tuple[int, ...]] = {}
        for name, node in nodes.items():
            if not isinstance(name, str):
                raise ValueError(f"{where}: node names must be strings, got {name!r}")
            here = f"{where}: node {name!r} ({type(node).__name__})"
            if isinstance(node, nir.Input):
                inputs.append(name)
                shape = input_shape(getattr(node, "input_type", None))
                if shape is not None:
                    input_shapes[name] = shape
                else:
                    check_declared_shape(here, getattr(node, "input_type", None))
            elif isinstance(node, nir.Output):
                outputs.append(name)
            elif isinstance(node, nir.NIRGraph):
                sub = self.graph(node, f"{where}: subgraph {name!r}")
                if len(sub.inputs) != 1 or len(sub.outputs) != 1:
                    raise NIRConversionError(
                        here, f"a nested graph needs one Input and one Output, got {sub.inputs} and {sub.outputs}"
                    )
                modules[name] = sub
            else:
                mapper = self.mappers.get(type(node))
                if mapper is None:
                    raise NIRConversionError(here, f"snn has no module for this node type; supported: {SUPPORTED}")
                modules[name] = mapper(here, node)
        check_edge_shapes(nir, where, nodes, pairs)
        try:
            return NIRGraphModule(modules, pairs, port_order(inputs), port_order(outputs), input_shapes)
        except ValueError as exc:  # NIRGraphModule names its argument, "graph: ..."
            raise ValueError(f"{where}: {str(exc).removeprefix('graph: ')}") from exc

    # -- stateless nodes ---------------------------------------------------------------------

    def _weight(self, where: str, node: Any, ndim: int) -> np.ndarray:
        weight = _array(where, "weight", getattr(node, "weight", None))
        if weight.ndim != ndim:
            raise NIRConversionError(where, f"expected a {ndim}-d weight, got shape {list(weight.shape)}")
        return weight

    def affine(self, where: str, node: Any) -> nn.Module:
        weight = self._weight(where, node, 2)
        bias = _array(where, "bias", getattr(node, "bias", None))
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"{where}: bias: expected shape {list(weight.shape[:1])}, got {list(bias.shape)}")
        module = layer.Linear(weight.shape[1], weight.shape[0], bias=True)
        with torch.no_grad():
            module.weight = nn.Parameter(_tensor(weight))
            module.bias = nn.Parameter(_tensor(bias))
        return module

    def linear(self, where: str, node: Any) -> nn.Module:
        weight = self._weight(where, node, 2)
        module = layer.Linear(weight.shape[1], weight.shape[0], bias=False)
        module.weight = nn.Parameter(_tensor(weight))
        return module

    def _conv(self, where: str, node: Any, dims: int) -> nn.Module:
        weight = self._weight(where, node, dims + 2)
        bias = _array(where, "bias", getattr(node, "bias", None))
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"{where}: bias: expected shape {list(weight.shape[:1])}, got {list(bias.shape)}")
        groups = ints(where, "groups", getattr(node, "groups", 1), 1, 1)[0]
        padding: Any = getattr(node, "padding", 0)
        if isinstance(padding, bytes):
            padding = padding.decode("utf-8", "replace")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{where}: padding: expected 'same', 'valid' or ints, got {padding!r}")
        else:
            padding = ints(where, "padding", padding, dims, 0)
        stride = ints(where, "stride", getattr(node, "stride", 1), dims, 1)
        dilation = ints(where, "dilation", getattr(node, "dilation", 1), dims, 1)
        cls = layer.Conv1d if dims == 1 else layer.Conv2d
        try:
            module = cls(
                weight.shape[1] * groups,
                weight.shape[0],
                tuple(weight.shape[2:]),
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=True,
            )
        except (ValueError, RuntimeError) as exc:
            raise NIRConversionError(where, f"torch rejects this convolution: {exc}") from exc
        module.weight = nn.Parameter(_tensor(weight))
        module.bias = nn.Parameter(_tensor(bias))
        return module

    def conv1d(self, where: str, node: Any) -> nn.Module:
        return self._conv(where, node, 1)

    def conv2d(self, where: str, node: Any) -> nn.Module:
        return self._conv(where, node, 2)

    def flatten(self, where: str, node: Any) -> nn.Module:
        start, end = (_int(where, f, getattr(node, f, d)) for f, d in (("start_dim", 1), ("end_dim", -1)))
        declared = input_shape(getattr(node, "input_type", None))
        if declared:
            rank = len(declared)
            first, last = (d + rank if d < 0 else d for d in (start, end))
            if not 0 <= first <= last < rank:
                raise ValueError(
                    f"{where}: start_dim {start} and end_dim {end}: expected dimensions of the declared "
                    f"input {list(declared)} (one sample, {rank} dimensions) with start_dim <= end_dim"
                )
        elif (start >= 0) == (end >= 0) and start > end:
            raise ValueError(f"{where}: start_dim {start} is after end_dim {end}")
        # NIR counts dimensions of one sample; torch's Flatten counts the batch dimension too
        return layer.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)

    def _pool_args(self, where: str, node: Any) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        kernel = ints(where, "kernel_size", getattr(node, "kernel_size", None), 2, 1)
        stride = ints(where, "stride", getattr(node, "stride", None), 2, 1)
        padding = ints(where, "padding", getattr(node, "padding", 0), 2, 0)
        if any(2 * p > k for p, k in zip(padding, kernel)):
            raise NIRConversionError(where, f"padding {padding} is more than half the kernel {kernel}")
        return (kernel[0], kernel[1]), (stride[0], stride[1]), (padding[0], padding[1])

    def avgpool2d(self, where: str, node: Any) -> nn.Module:
        kernel, stride, padding = self._pool_args(where, node)
        return layer.AvgPool2d(kernel, stride, padding)

    def sumpool2d(self, where: str, node: Any) -> nn.Module:
        kernel, stride, padding = self._pool_args(where, node)
        return SumPool2d(kernel, stride, padding)

    def scale(self, where: str, node: Any) -> nn.Module:
        return Scale(_tensor(_array(where, "scale", getattr(node, "scale", None))))

    def threshold(self, where: str, node: Any) -> nn.Module:
        meta = read_snn_metadata(where, getattr(node, "metadata", None))
        return Threshold(_tensor(_array(where, "threshold", getattr(node, "threshold", None))), meta.get("surrogate"))

    def delay(self, where: str, node: Any) -> nn.Module:
        seconds = _array(where, "delay", getattr(node, "delay", None))
        with np.errstate(over="ignore"):
            steps = seconds / self.dt
        longest = float(steps.max()) if steps.size else 0.0
        if not longest < MAX_DELAY_STEPS + 0.5:  # checked before the cast to int64 (which 1e19 steps overflow)
            raise NIRConversionError(
                where,
                f"a delay of {float(seconds.max())!r} s is {longest:.6g} steps of dt = {self.dt} s; snn keeps one "
                f"input per step of delay in memory and accepts at most {MAX_DELAY_STEPS} steps",
            )
        rounded = np.rint(steps)
        if np.any(rounded < 0) or not np.all(np.abs(steps - rounded) <= 1e-6 * np.maximum(1.0, np.abs(steps))):
            shown = seconds.tolist() if seconds.size <= 8 else f"values from {seconds.min()!r} to {seconds.max()!r}"
            raise NIRConversionError(where, f"delays must be whole numbers of steps of dt = {self.dt} s, got {shown} s")
        return Delay(torch.from_numpy(rounded.astype(np.int64, copy=True)))

    # -- neurons -------------------------------------------------------------------------------

    def _steps(self, where: str, field: str, tau: float, strict: bool) -> float:
        steps = tau / self.dt
        if not (steps > 1.0 if strict else steps >= 1.0):
            bound = "> 1" if strict else ">= 1"
            raise NIRConversionError(
                where,
                f"{field} / dt = {tau!r} / {self.dt!r} = {steps!r} steps, but the snn module needs {bound}; import with a "
                "smaller dt (the one the graph was written for)",
            )
        return steps

    def _neuron_kwargs(self, where: str, node: Any, shape: tuple[int, ...]) -> dict[str, Any]:
        thresholds = _array(where, "v_threshold", getattr(node, "v_threshold", None))
        resets = _array(where, "v_reset", getattr(node, "v_reset", np.zeros(shape)))
        if thresholds.shape != shape or resets.shape != shape:
            raise ValueError(f"{where}: v_threshold and v_reset must have the parameters' shape {list(shape)}")
        meta = read_snn_metadata(where, getattr(node, "metadata", None))
        kwargs: dict[str, Any] = {
            "v_threshold": _uniform(where, "v_threshold", thresholds),
            "v_reset": _uniform(where, "v_reset", resets),
        }
        # graphs from other tools name no surrogate: every neuron gets snn's default, Sigmoid(alpha=4.0)
        # (CUBALIFNode's own default is SpikingJelly's Rect)
        kwargs["surrogate_function"] = meta.get("surrogate", Sigmoid())
        if "detach_reset" in meta:
            kwargs["detach_reset"] = meta["detach_reset"]
        return kwargs

    def if_node(self, where: str, node: Any) -> nn.Module:
        r = _array(where, "r", getattr(node, "r", None))
        kwargs = self._neuron_kwargs(where, node, r.shape)
        # NIR: dv/dt = r I; one forward-Euler step adds dt * r * I, IFNode adds x
        return _with_gain(self.dt * r, neuron.IFNode(**kwargs))

    def lif(self, where: str, node: Any) -> nn.Module:
        arrays = {f: _array(where, f, getattr(node, f, None)) for f in ("tau", "r", "v_leak")}
        shape = _same_shape(where, arrays)
        kwargs = self._neuron_kwargs(where, node, shape)
        tau_seconds = _uniform(where, "tau", arrays["tau"])
        v_leak = _uniform(where, "v_leak", arrays["v_leak"])
        if not close(v_leak, kwargs["v_reset"]):
            raise NIRConversionError(
                where,
                f"v_leak = {v_leak!r} differs from v_reset = {kwargs['v_reset']!r}; snn's LIFNode leaks to its reset potential",
            )
        meta = read_snn_metadata(where, getattr(node, "metadata", None))
        if meta.get("module") == "ParametricLIFNode" and "w" in meta:
            return self._plif(where, meta, tau_seconds / self.dt, arrays["r"], kwargs)
        tau = self._steps(where, "tau", tau_seconds, strict=True)
        # NIR: tau dv/dt = (v_leak - v) + r I; one Euler step: v += (v_leak - v) / (tau/dt) + (dt r / tau) I
        gain = self.dt * arrays["r"] / (tau * self.dt)
        if all_close(arrays["r"], 1.0) and not all_close(gain, 1.0):
            return neuron.LIFNode(tau=tau, decay_input=True, **kwargs)
        return _with_gain(gain, neuron.LIFNode(tau=tau, decay_input=False, **kwargs))

    def _plif(
        self, where: str, meta: dict[str, Any], tau: float, r: np.ndarray, kwargs: dict[str, Any]
    ) -> nn.Module:
        """A ParametricLIFNode with the ``w`` of the metadata (``tau`` in steps). Its ``w`` is set
        after construction: ``init_tau = 1 / sigmoid(w)`` is not representable for large ``w``
        (sigmoid rounds to 1 from w = 17 in float32), while the module runs with any ``w``."""
        w = meta["w"]
        try:
            tau_of_w = 1.0 + math.exp(-w)
        except OverflowError:  # w below about -709: 1 / sigmoid(w) is beyond float64
            tau_of_w = math.inf
        if not close(tau_of_w, tau):
            raise ValueError(
                f"{where}: metadata 'snn': w = {w!r} gives tau {tau_of_w!r}, but tau / dt = {tau!r} (import with the "
                "dt the graph was written for)"
            )
        decay_input = meta.get("decay_input")
        if decay_input is None:  # written before snn recorded it: r = 1 with decay_input, r = tau without
            decay_input = all_close(r, 1.0) and not all_close(r / tau, 1.0)
        plif = neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, **kwargs)
        with torch.no_grad():
            plif.w.fill_(w)
        # with decay_input the module scales its input by sigmoid(w) = dt / tau, NIR by dt r / tau
        return _with_gain(r if decay_input else r / tau, plif)

    def li(self, where: str, node: Any) -> nn.Module:
        arrays = {f: _array(where, f, getattr(node, f, None)) for f in ("tau", "r", "v_leak")}
        _same_shape(where, arrays)
        tau = self._steps(where, "tau", _uniform(where, "tau", arrays["tau"]), strict=True)
        v_leak = _uniform(where, "v_leak", arrays["v_leak"])
        gain = self.dt * arrays["r"] / (tau * self.dt)
        if all_close(arrays["r"], 1.0) and not all_close(gain, 1.0):
            return LINode(tau=tau, decay_input=True, v_leak=v_leak)
        return _with_gain(gain, LINode(tau=tau, decay_input=False, v_leak=v_leak))

    def _cuba(self, where: str, node: Any) -> tuple[float, float, np.ndarray, float, tuple[int, ...]]:
        """``(c_decay, v_decay, input gain, v_leak, shape)`` of a CubaLI / CubaLIF node."""
        arrays = {f: _array(where, f, getattr(node, f, None)) for f in ("tau_syn", "tau_mem", "r", "v_leak", "w_in")}
        shape = _same_shape(where, arrays)
        tau_syn = self._steps(where, "tau_syn", _uniform(where, "tau_syn", arrays["tau_syn"]), strict=False)
        tau_mem = self._steps(where, "tau_mem", _uniform(where, "tau_mem", arrays["tau_mem"]), strict=False)
        # NIR, one Euler step: I += (w_in S - I) / tau_syn;  v += (v_leak - v + r I) / tau_mem  (new I).
        # With c = (r / tau_mem) I: c = c_decay c + gain S and v = v_decay v + (1 - v_decay) v_leak + c.
        gain = (arrays["w_in"] / tau_syn) * (arrays["r"] / tau_mem)
        return 1.0 - 1.0 / tau_syn, 1.0 - 1.0 / tau_mem, gain, _uniform(where, "v_leak", arrays["v_leak"]), shape

    def cuba_li(self, where: str, node: Any) -> nn.Module:
        c_decay, v_decay, gain, v_leak, _ = self._cuba(where, node)
        return _with_gain(gain, CubaLINode(c_decay=c_decay, v_decay=v_decay, v_leak=v_leak))

    def cuba_lif(self, where: str, node: Any) -> nn.Module:
        cls = getattr(importlib.import_module("snn.neuron"), "CUBALIFNode", None)
        if cls is None:
            raise NIRConversionError(where, "a CubaLIF node needs snn.neuron.CUBALIFNode, which this snn version lacks")
        c_decay, v_decay, gain, v_leak, shape = self._cuba(where, node)
        kwargs = self._neuron_kwargs(where, node, shape)
        if v_leak != 0.0:
            raise NIRConversionError(
                where, f"v_leak = {v_leak!r}; snn's CUBALIFNode leaks to 0 (v = v_decay * v + c)"
            )
        return _with_gain(gain, cls(c_decay=c_decay, v_decay=v_decay, **kwargs))


def _int(where: str, field: str, value: Any) -> int:
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise ValueError(f"{where}: {field}: expected an int, got {value!r}")
    return int(array)


