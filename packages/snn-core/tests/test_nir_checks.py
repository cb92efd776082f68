"""snn.nir: what import refuses (metadata surrogates that do not fire with a Heaviside step,
shapes an edge cannot carry, parameters that are not real numbers, impossible ``Flatten``
dimensions and ``Input`` shapes, time constants of one step, delays beyond the limit), nested
graphs at rest, delays rounded to whole steps, recurrent graphs run in chunks, the default
surrogate of graphs from other tools, and an export that leaves the network as it found it.

References: NIR's own type check and a forward-Euler step of the NIR equations written out here
(the importer must agree with the flattened form of a nested graph), and the user's objects
before the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

import snn.functional as F  # noqa: E402
from snn import monitor, neuron, surrogate  # noqa: E402
from snn.errors import NIRConversionError  # noqa: E402
from snn.nir import export_to_nir, import_from_nir  # noqa: E402


def _graph(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> Any:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n: int, metadata: dict[str, Any] | None = None) -> Any:
    node = nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    if metadata is not None:
        node.metadata = metadata
    return node


@pytest.mark.parametrize(
    ("name", "params"), [("MultiLevelSpikeCount", {"max_spike_count": 4.0}), ("PoissonPass", {})]
)
def test_metadata_surrogate_without_heaviside_forward_is_refused(name: str, params: dict[str, float]) -> None:
    meta = {"snn": {"surrogate": name, "surrogate_params": params}}
    graph = _graph({"input": nir.Input(np.array([3])), "l": _lif(3, meta), "output": nir.Output(np.array([3]))},
                   [("input", "l"), ("l", "output")])
    with pytest.raises(ValueError, match=rf"node 'l'.*surrogate {name} whose forward is not the Heaviside step"):
        import_from_nir(graph, dt=1e-3)


def test_metadata_surrogate_with_heaviside_forward_is_kept() -> None:
    meta = {"snn": {"surrogate": "ATan", "surrogate_params": {"alpha": 3.0}}}
    graph = _graph({"input": nir.Input(np.array([3])), "l": _lif(3, meta), "output": nir.Output(np.array([3]))},
                   [("input", "l"), ("l", "output")])
    net = import_from_nir(graph, dt=1e-3)
    found = [m.surrogate_function for m in net.modules() if isinstance(m, neuron.BaseNode)]
    assert len(found) == 1 and isinstance(found[0], surrogate.ATan) and found[0].alpha == 3.0


def test_affine_fed_another_size_is_refused_as_nir_refuses_it() -> None:
    graph = _graph({"input": nir.Input(np.array([4])), "a": nir.Affine(np.ones((3, 1)), np.zeros(3)),
                    "output": nir.Output(np.array([3]))}, [("input", "a"), ("a", "output")])
    with pytest.raises(ValueError):
        nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, type_check=True)
    with pytest.raises(ValueError, match=r"edge 'input' -> 'a'.*shape \[4\].*takes shape \[1\]"):
        import_from_nir(graph, dt=1e-3)


def test_convolution_fed_other_channels_is_refused() -> None:
    conv = nir.Conv2d(None, np.ones((3, 1, 3, 3)), 1, 0, 1, 1, np.zeros(3))
    graph = _graph({"input": nir.Input(np.array([2, 5, 5])), "c": conv, "output": nir.Output(np.array([3, 3, 3]))},
                   [("input", "c"), ("c", "output")])
    with pytest.raises(ValueError, match=r"edge 'input' -> 'c'.*2 channels where the kernel reads 1"):
        import_from_nir(graph, dt=1e-3)


def test_one_element_neuron_parameters_still_broadcast() -> None:
    """snnTorch writes a layer of Leaky neurons with one scalar beta as a LIF of one element."""
    graph = _graph({"input": nir.Input(np.array([5])), "a": nir.Affine(np.eye(5) * 2.0, np.zeros(5)), "l": _lif(1),
                    "output": nir.Output(np.array([5]))}, [("input", "a"), ("a", "l"), ("l", "output")])
    net = import_from_nir(graph, dt=1e-3)
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    # one Euler step of dv/dt = (v_leak - v + r I) / tau with dt / tau = 0.5 from v = 0: v = I / 2 = x
    torch.testing.assert_close(net(x), (x >= 1.0).to(x.dtype))


def test_nested_graph_source_of_a_back_edge_gives_its_value_at_rest() -> None:
    m = 2
    weight, bias = np.eye(m) * 0.5, np.array([1.0, 2.0])
    inner = _graph({"input": nir.Input(np.array([m])), "aff": nir.Affine(weight, bias), "output": nir.Output(np.array([m]))},
                   [("input", "aff"), ("aff", "output")])
    nested = _graph({"input": nir.Input(np.array([m])), "s": nir.Scale(np.ones(m)), "n": inner,
                     "output": nir.Output(np.array([m]))}, [("input", "s"), ("s", "n"), ("n", "s"), ("s", "output")])
    net = import_from_nir(nested, dt=1e-3)
    # the loop s -> n -> s from rest: s[0] = b (the Affine's output at rest), s[t] = 0.5 s[t-1] + b
    expected, s = [], torch.tensor(bias)
    for _ in range(3):
        expected.append(s.clone())
        s = 0.5 * s + torch.tensor(bias)
    actual = [net(torch.zeros(1, m, dtype=torch.float32))[0] for _ in range(3)]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e.float())
    F.reset_net(net)
    again = import_from_nir(export_to_nir(net, torch.zeros(1, m), dt=1e-3), dt=1e-3)
    for a in actual:
        torch.testing.assert_close(again(torch.zeros(1, m)), a.unsqueeze(0))


@pytest.mark.parametrize(
    ("field", "value"),
    [("weight", np.ones((3, 3)) + 1j), ("weight", np.array([["1.5"] * 3] * 3)), ("weight", np.ones((3, 3), dtype=bool))],
)
def test_parameters_that_are_not_real_numbers_are_refused(field: str, value: np.ndarray) -> None:
    graph = _graph({"input": nir.Input(np.array([3])), "a": nir.Affine(value, np.zeros(3)),
                    "output": nir.Output(np.array([3]))}, [("input", "a"), ("a", "output")])
    with pytest.raises(ValueError, match=rf"node 'a' \(Affine\): {field}: expected real numbers.*dtype"):
        import_from_nir(graph, dt=1e-3)


def test_cuba_lif_from_another_tool_gets_the_documented_default_surrogate() -> None:
    n = 2
    node = nir.CubaLIF(tau_syn=np.full(n, 4e-3), tau_mem=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.ones(n))
    graph = _graph({"input": nir.Input(np.array([n])), "c": node, "output": nir.Output(np.array([n]))},
                   [("input", "c"), ("c", "output")])
    net = import_from_nir(graph, dt=1e-3)
    found = [m.surrogate_function for m in net.modules() if isinstance(m, neuron.BaseNode)]
    assert len(found) == 1 and type(found[0]) is surrogate.Sigmoid and found[0].alpha == 4.0


@pytest.mark.parametrize(("start", "end", "declared"), [(1, 0, None), (0, 3, [2, 3]), (-4, -1, [2, 3])])
def test_impossible_flatten_dimensions_are_refused(start: int, end: int, declared: list[int] | None) -> None:
    flatten = nir.Flatten(input_type=None if declared is None else {"input": np.array(declared)}, start_dim=start,
                          end_dim=end)
    graph = _graph({"input": nir.Input(np.array(declared or [2, 3])), "f": flatten, "output": nir.Output(np.array([6]))},
                   [("input", "f"), ("f", "output")])
    with pytest.raises(ValueError, match=rf"node 'f' \(Flatten\): start_dim {start}"):
        import_from_nir(graph, dt=1e-3)


def test_negative_input_shape_is_refused() -> None:
    graph = _graph({"input": nir.Input(np.array([-4])), "s": nir.Scale(np.ones(4)), "output": nir.Output(np.array([4]))},
                   [("input", "s"), ("s", "output")])
    with pytest.raises(ValueError, match=r"node 'input' \(Input\): input_type: expected integer sizes >= 0"):
        import_from_nir(graph, dt=1e-3)
    graph.nodes["input"] = nir.Input(np.array([-1]))  # a size left open: not checked
    torch.testing.assert_close(import_from_nir(graph, dt=1e-3)(torch.ones(2, 4)), torch.ones(2, 4))


def test_export_leaves_v_seq_and_monitor_records_as_they_were() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), neuron.LIFNode(step_mode="m", store_v_seq=True))
    F.set_step_mode(net, "m")
    with torch.no_grad():
        net(torch.rand(5, 2, 3))
    v_seq = net[1].v_seq
    assert v_seq is not None and v_seq.shape == (5, 2, 3)
    recorder = monitor.OutputMonitor(net, neuron.LIFNode)
    export_to_nir(net, torch.rand(7, 1, 3), dt=1e-3)
    assert net[1].v_seq is v_seq
    assert recorder.records == []
    with torch.no_grad():
        net(torch.rand(2, 2, 3))
    assert len(recorder.records) == 1  # recording resumes after the export


def test_paused_monitors_record_nothing_in_the_block_only() -> None:
    layer_ = torch.nn.Linear(2, 2)
    recorder = monitor.OutputMonitor(layer_, torch.nn.Linear)
    with monitor.paused():
        layer_(torch.rand(1, 2))
    assert recorder.records == []
    layer_(torch.rand(1, 2))
    assert len(recorder.records) == 1


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("extra", r"node 'l' \(LIF\): nir cannot read it \(TypeError: .*unexpected keyword argument 'foo'"),
        ("shapes", r"node 'l' \(LIF\): nir cannot read it \(AssertionError: All parameters must have the same shape"),
        ("type", r"node 'l': its 'type' should be a node type name, found"),
    ],
)
def test_a_file_nir_cannot_read_names_the_node(tmp_path, damage: str, named: str) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "graph.nir"
    graph = _graph({"input": nir.Input(np.array([3])), "l": _lif(3), "output": nir.Output(np.array([3]))},
                   [("input", "l"), ("l", "output")])
    nir.write(path, graph)
    with h5py.File(path, "r+") as file:
        node = file["node/nodes/l"]
        if damage == "extra":
            node["foo"] = np.ones(3)
        elif damage == "shapes":
            del node["v_threshold"]
            node["v_threshold"] = np.ones(2)
        else:
            del node["type"]
            node["type"] = 5
    with pytest.raises(ValueError, match=rf"graph '{path}': {named}"):
        import_from_nir(path, dt=1e-3)


def test_a_time_constant_of_one_step_is_refused_with_the_dt_hint() -> None:
    """``tau / dt`` must exceed 1 for a LIF (its decay ``1 - dt / tau`` would be 0): exactly 1
    is refused by the importer, naming the node and what to do, not later by the neuron."""
    graph = nir.NIRGraph.from_list(nir.Affine(np.eye(2), np.zeros(2)), nir.LIF(
        tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)))
    with pytest.raises(NIRConversionError, match=r"tau / dt = 0.001 / 0.001 = 1.0 steps, but the snn module "
                                                 r"needs > 1; import with a smaller dt"):
        import_from_nir(graph, dt=1e-3)


def test_delays_are_rounded_to_whole_steps() -> None:
    """``3e-4 / 1e-4`` is 2.9999999999999996 in floating point: 3 steps, not 2 or an error."""
    graph = nir.NIRGraph.from_list(nir.Delay(np.array([7e-4, 3e-4, 0.0])))
    imported = import_from_nir(graph, dt=1e-4)
    (delay,) = [m for m in imported.modules() if type(m).__name__ == "Delay"]
    assert torch.as_tensor(delay.delay_steps).tolist() == [7, 3, 0]


def test_the_longest_of_several_delays_is_checked_against_the_limit() -> None:
    graph = nir.NIRGraph.from_list(nir.Delay(np.array([0.0, 20.0])))
    with pytest.raises(NIRConversionError, match=r"a delay of 20.0 s is 200000 steps of dt = 0.0001 s"):
        import_from_nir(graph, dt=1e-4)


def test_a_recurrent_graph_in_chunks_equals_one_call() -> None:
    """Multi-step: the state a back edge carries into the next call is the last step's output."""
    from torch import nn

    from snn import layer

    torch.manual_seed(0)
    network = nn.Sequential(layer.Linear(3, 4), layer.LinearRecurrentContainer(
        neuron.LIFNode(tau=2.0, v_reset=0.0, v_threshold=0.3), 4, 4))
    imported = import_from_nir(export_to_nir(network, torch.zeros(2, 3)), dtype=torch.float64, step_mode="m")
    x = torch.randn(8, 2, 3, dtype=torch.float64) * 3
    with torch.no_grad():
        whole = imported(x)
        F.reset_net(imported)
        chunks = torch.cat([imported(x[:4]), imported(x[4:])])
    assert 0 < float(whole.sum()) < whole.numel()
    assert torch.equal(whole, chunks)
