"""snn.nir: the order of many ports, recurrent containers whose loop is not zero at rest,
non-square convolutions, per-sample parameters, parametric LIF neurons with a large ``w``,
huge delays and the errors of untrusted files.

References: the original snn network (a round trip through a file must compute the same), and
the messages the documentation promises (typed errors naming the node).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from snn_core_test_helpers import run_sequence  # noqa: E402

import snn.functional as F  # noqa: E402
from snn import layer, neuron  # noqa: E402
from snn.errors import NIRConversionError  # noqa: E402
from snn.nir import Delay, Scale, Threshold, export_to_nir, import_from_nir  # noqa: E402

T = 12


def _graph(nodes: dict, edges: list) -> object:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


# -- 1. eleven or more inputs and outputs ------------------------------------------------------


def test_eleven_inputs_and_outputs_keep_their_order(tmp_path: Path) -> None:
    n = 12
    fcs = [layer.Linear(3, 2) for _ in range(n)]
    # a file as snn writes several ports (input_0 ... input_11), read back in argument order
    graph = nir.NIRGraph(
        nodes={
            **{f"input_{i}": nir.Input(np.array([3])) for i in range(n)},
            **{f"fc{i}": nir.Affine(fc.weight.detach().double().numpy(), fc.bias.detach().double().numpy())
               for i, fc in enumerate(fcs)},
            **{f"output_{i}": nir.Output(np.array([2])) for i in range(n)},
        },
        edges=[e for i in range(n) for e in ((f"input_{i}", f"fc{i}"), (f"fc{i}", f"output_{i}"))],
    )
    path = tmp_path / "many.nir"
    nir.write(path, graph)
    imported = import_from_nir(path)
    assert imported.inputs == [f"input_{i}" for i in range(n)]
    assert imported.outputs == [f"output_{i}" for i in range(n)]
    xs = [torch.randn(4, 3) * (i + 1) for i in range(n)]
    with torch.no_grad():
        actual = imported(*xs)
        for i in range(n):
            torch.testing.assert_close(actual[i], fcs[i](xs[i]))


def test_export_of_eleven_inputs_round_trips() -> None:
    n = 11
    args = ", ".join(f"x{i}" for i in range(n))
    body = " + ".join(f"self.fc{i}(x{i})" for i in range(n))
    namespace: dict = {}
    exec(f"def forward(self, {args}):\n    return {body}\n", namespace)  # torch.fx traces fixed arguments only
    net = type("Sum", (nn.Module,), {"forward": namespace["forward"]})()
    for i in range(n):
        setattr(net, f"fc{i}", layer.Linear(3, 2))
    xs = [torch.randn(4, 3) * (i + 1) for i in range(n)]
    imported = import_from_nir(export_to_nir(net, xs))
    assert imported.inputs == [f"input_{i}" for i in range(n)]
    with torch.no_grad():
        torch.testing.assert_close(imported(*xs), net(*xs))


def test_port_order_compares_digits_as_numbers() -> None:
    from snn.nir.graph import port_order

    names = ["input_10", "input_2", "input", "input_1", "b", "a"]
    assert port_order(names) == ["a", "b", "input", "input_1", "input_2", "input_10"]


# -- 2. recurrent containers whose loop source is not zero at rest -----------------------------


def _biased(features_in: int, features_out: int) -> layer.Linear:
    fc = layer.Linear(features_in, features_out)
    with torch.no_grad():
        fc.bias.fill_(0.7)
    return fc


RECURRENT: dict[str, Callable[[], nn.Module]] = {
    "element-wise, sub_module ends in a biased Linear": lambda: nn.Sequential(
        layer.Linear(3, 4), layer.ElementWiseRecurrentContainer(nn.Sequential(neuron.IFNode(), _biased(4, 4)), torch.add)
    ),
    "element-wise Linear alone": lambda: layer.ElementWiseRecurrentContainer(_biased(3, 3), torch.add),
    "linear recurrent, sub_module ends in a biased Linear": lambda: nn.Sequential(
        layer.LinearRecurrentContainer(nn.Sequential(neuron.IFNode(v_threshold=0.5), _biased(3, 4)), 3, 4),
        neuron.IFNode(v_threshold=0.2),
    ),
}


@pytest.mark.parametrize("case", sorted(RECURRENT))
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_recurrent_containers_start_their_feedback_at_zero_after_a_round_trip(
    case: str, step_mode: str, tmp_path: Path
) -> None:
    net = RECURRENT[case]()
    F.set_step_mode(net, step_mode)
    x_seq = torch.rand(T, 2, 3) * 2
    path = tmp_path / "rec.nir"
    graph = export_to_nir(net, x_seq if step_mode == "m" else x_seq[0], save_path=path)
    # the loop goes through a zero Delay, which is zero at rest and passes its input on afterwards
    feedback = [name for name in graph.nodes if name.endswith("feedback")]
    assert len(feedback) == 1 and isinstance(graph.nodes[feedback[0]], nir.Delay)
    assert not graph.nodes[feedback[0]].delay.any()
    imported = import_from_nir(path, step_mode=step_mode)
    assert [source for source, _ in imported.delayed_edges] == feedback
    expected = run_sequence(net, x_seq, step_mode)
    # the container multiplies [x, y] by one matrix, NIR sums two Affine nodes: BLAS may round differently
    torch.testing.assert_close(run_sequence(imported, x_seq, step_mode), expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().sum() > 0
    again = import_from_nir(export_to_nir(imported, x_seq if step_mode == "m" else x_seq[0]), step_mode=step_mode)
    torch.testing.assert_close(run_sequence(again, x_seq, step_mode), expected, rtol=1e-5, atol=1e-5)


def test_a_loop_that_is_zero_at_rest_is_written_without_a_delay() -> None:
    net = nn.Sequential(layer.Linear(3, 4), layer.ElementWiseRecurrentContainer(neuron.IFNode(), torch.add))
    graph = export_to_nir(net, torch.rand(2, 3))
    assert not any(isinstance(node, nir.Delay) for node in graph.nodes.values())
    assert ("1.sub_module", "1.sub_module") in graph.edges


class TwoReaders(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = layer.Linear(4, 4)
        self.b = layer.Linear(4, 4)
        self.sn = neuron.IFNode(v_threshold=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.a(x) + self.b(x))


def test_a_loop_the_importer_would_delay_elsewhere_is_refused() -> None:
    net = nn.Sequential(layer.Linear(3, 4), layer.ElementWiseRecurrentContainer(TwoReaders(), torch.add))
    with pytest.raises(NIRConversionError, match=r"1 \(ElementWiseRecurrentContainer\): its feedback edges .* would not be delayed"):
        export_to_nir(net, torch.rand(2, 3))


# -- 3. convolutions with a non-square kernel ------------------------------------------------


@pytest.mark.parametrize(("kernel", "stride", "padding"), [((3, 2), 1, 0), ((1, 5), (2, 1), (0, 2)), ((3, 2), (2, 1), (1, 0))])
def test_conv2d_with_a_non_square_kernel_round_trips(kernel: tuple, stride: object, padding: object, tmp_path: Path) -> None:
    net = nn.Sequential(layer.Conv2d(2, 3, kernel, stride=stride, padding=padding), neuron.IFNode(v_threshold=0.3))
    x = torch.randn(T, 2, 2, 7, 7) * 2
    path = tmp_path / "conv.nir"
    graph = export_to_nir(net, x[0], save_path=path)
    with torch.no_grad():
        out_shape = net[0](x[0]).shape[1:]
    assert list(graph.nodes["0"].output_type["output"]) == list(out_shape)
    imported = import_from_nir(path)
    expected = run_sequence(net, x, "s")
    assert torch.equal(run_sequence(imported, x, "s"), expected) and expected.sum() > 0


def test_import_computes_a_non_square_convolution_shape_itself(tmp_path: Path) -> None:
    shape = (3, 5, 6)
    nodes = {
        "input": nir.Input(input_type=np.array([2, 7, 7])),
        "conv": nir.Conv2d(input_shape=(7, 7), weight=np.random.default_rng(0).normal(size=(3, 2, 3, 2)), stride=1,
                           padding=0, dilation=1, groups=1, bias=np.zeros(3)),
        "if": nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape)),
        "output": nir.Output(output_type=np.array(shape)),
    }
    path = tmp_path / "conv.nir"
    nir.write(path, _graph(nodes, [("input", "conv"), ("conv", "if"), ("if", "output")]))
    net = import_from_nir(path, dt=1.0)
    assert net(torch.rand(1, 2, 7, 7)).shape == (1, *shape)
    # a shape that really cannot meet is still refused
    nodes["if"] = nir.IF(r=np.ones((3, 5, 5)), v_threshold=np.ones((3, 5, 5)), v_reset=np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match=r"'conv' \(Conv2d\) produces shape \[3, 5, 6\] but 'if' \(IF\) takes shape \[3, 5, 5\]"):
        import_from_nir(_graph(nodes, [("input", "conv"), ("conv", "if"), ("if", "output")]), dt=1.0)


# -- 4. per-sample parameters with more dimensions than a sample -------------------------------


@pytest.mark.parametrize(
    "node",
    [nir.Scale(np.array([[1.0] * 4, [5.0] * 4])), nir.Threshold(np.ones((2, 4))), nir.Delay(np.zeros((2, 4)))],
    ids=["Scale", "Threshold", "Delay"],
)
def test_import_refuses_a_parameter_that_reaches_into_the_batch(node: object) -> None:
    graph = _graph(
        {"i": nir.Input(input_type=np.array([4])), "p": node, "o": nir.Output(output_type=np.array([4]))},
        [("i", "p"), ("p", "o")],
    )
    kind = type(node).__name__
    with pytest.raises(ValueError, match=rf"edge 'i' -> 'p': .* 'p' \({kind}\) takes shape \[2, 4\] \(more dimensions"):
        import_from_nir(graph, dt=1e-3)


def test_modules_refuse_a_parameter_that_reaches_into_the_batch() -> None:
    for module in (Scale(torch.ones(2, 4)), Threshold(torch.ones(2, 4)), Delay(torch.ones(2, 4, dtype=torch.int64))):
        with pytest.raises(ValueError, match=r"shape \[2, 4\] has more dimensions than one sample"):
            module(torch.ones(2, 4))
    multi = Scale(torch.full((3, 4), 2.0), step_mode="m")
    assert torch.equal(multi(torch.ones(5, 2, 3, 4)), torch.full((5, 2, 3, 4), 2.0))
    with pytest.raises(ValueError, match="more dimensions than one sample"):
        multi(torch.ones(3, 4, 4))
    # leading sizes of 1 broadcast over the batch alike: still one sample's parameter
    assert torch.equal(Scale(torch.full((1, 4), 3.0))(torch.ones(2, 4)), torch.full((2, 4), 3.0))


# -- 5. parametric LIF neurons with a large w --------------------------------------------------


@pytest.mark.parametrize("w", [10.0, 16.5, 17.0, 20.0, 40.0])
@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_with_a_large_w_round_trips(w: float, decay_input: bool, tmp_path: Path) -> None:
    plif = neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, v_threshold=0.5)
    with torch.no_grad():
        plif.w.fill_(w)
    net = nn.Sequential(layer.Linear(4, 5), plif)
    path = tmp_path / "plif.nir"
    export_to_nir(net, torch.rand(2, 4), save_path=path, dt=1e-3)
    imported = import_from_nir(path, dt=1e-3)
    back = imported.nodes["1"]
    assert isinstance(back, neuron.ParametricLIFNode) and back.w.item() == w and back.decay_input is decay_input
    x = torch.rand(T, 2, 4) * 2
    expected = run_sequence(net, x, "s")
    assert torch.equal(run_sequence(imported, x, "s"), expected) and expected.sum() > 0


@pytest.mark.parametrize(("r", "decay_input"), [(1.0, True), (4.0, False)])
def test_plif_graph_without_decay_input_metadata_still_imports(r: float, decay_input: bool) -> None:
    # written before snn recorded decay_input: r = 1 with it, r = tau / dt without
    lif = nir.LIF(tau=np.full(3, 4e-3), r=np.full(3, r), v_leak=np.zeros(3), v_threshold=np.ones(3),
                  metadata={"snn": {"module": "ParametricLIFNode", "w": float(-np.log(3.0))}})
    graph = nir.NIRGraph.from_list(nir.Affine(np.ones((3, 4)), np.zeros(3)), lif)
    plif = import_from_nir(graph, dt=1e-3).nodes["lif"]
    assert isinstance(plif, neuron.ParametricLIFNode) and plif.decay_input is decay_input


# -- 6. huge delays --------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1e25, 1e9, 1e300])
def test_import_refuses_delays_beyond_the_cap(seconds: float) -> None:
    graph = _graph(
        {"i": nir.Input(np.array([4])), "d": nir.Delay(np.full(4, seconds)), "o": nir.Output(np.array([4]))},
        [("i", "d"), ("d", "o")],
    )
    with pytest.raises(NIRConversionError, match=r"node 'd' \(Delay\): a delay of .* accepts at most 100000 steps"):
        import_from_nir(graph, dt=1e-300 if seconds == 1e300 else 1e-3)


def test_the_longest_delay_accepted_is_the_cap() -> None:
    from snn.nir._import import MAX_DELAY_STEPS

    graph = _graph(
        {"i": nir.Input(np.array([2])), "d": nir.Delay(np.array([MAX_DELAY_STEPS * 1e-3, 0.0])), "o": nir.Output(np.array([2]))},
        [("i", "d"), ("d", "o")],
    )
    assert import_from_nir(graph, dt=1e-3).nodes["d"].max_delay == MAX_DELAY_STEPS == 100_000


# -- 7. the errors of untrusted files ----------------------------------------------------------


def test_a_file_with_a_node_type_nir_does_not_know_names_the_node(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "foo.nir"
    export_to_nir(nn.Sequential(layer.Linear(4, 5), neuron.LIFNode(tau=2.0)), torch.rand(2, 4), save_path=path)
    with h5py.File(path, "r+") as f:
        del f["node"]["nodes"]["1"]["type"]
        f["node"]["nodes"]["1"]["type"] = np.bytes_(b"Foo")
    with pytest.raises(NIRConversionError, match=rf"graph {str(path)!r}: node '1' \(Foo\): snn has no module for this node type"):
        import_from_nir(path)


def test_a_zero_convolution_stride_is_named_once() -> None:
    graph = _graph(
        {"i": nir.Input(np.array([1, 6])),
         "c": nir.Conv1d(input_shape=None, weight=np.ones((2, 1, 3)), stride=0, padding=0, dilation=1, groups=1,
                         bias=np.zeros(2)),
         "o": nir.Output(np.array([2]))},
        [("i", "c"), ("c", "o")],
    )
    with pytest.raises(ValueError) as raised:
        import_from_nir(graph)
    assert str(raised.value) == "graph: node 'c' (Conv1d): stride: expected integers >= 1, got 0"
    assert not isinstance(raised.value, NIRConversionError)
