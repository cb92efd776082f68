"""snn.nir: export and import of NIR graphs.

References: the original snn network (round trips through a file; identical arithmetic wherever
the parameters come back exactly), and a plain float64 NumPy loop of NIR's own equations with
forward-Euler steps of ``dt`` for hand-built graphs. The interoperability with snnTorch and Norse
is tested in test_nir_interop.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from snn_core_test_helpers import run_sequence  # noqa: E402

import snn.functional as F  # noqa: E402
from snn import base, layer, neuron, surrogate  # noqa: E402
from snn.errors import NIRConversionError  # noqa: E402
from snn.nir import (  # noqa: E402
    CubaLINode,
    Delay,
    LINode,
    NIRGraphModule,
    Scale,
    SumPool2d,
    Threshold,
    export_to_nir,
    import_from_nir,
)

T = 16


def _round_trip(net: nn.Module, sample_shape: tuple[int, ...], tmp_path: Path, step_mode: str, scale: float = 2.0):
    """Export ``net`` to a file, import it back; run both on the same random sequence."""
    F.set_step_mode(net, step_mode)
    x_seq = torch.randn(T, *sample_shape) * scale
    path = tmp_path / "net.nir"
    export_to_nir(net, x_seq if step_mode == "m" else x_seq[0], save_path=path)
    imported = import_from_nir(path, step_mode=step_mode)
    return run_sequence(net, x_seq, step_mode), run_sequence(imported, x_seq, step_mode), imported


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = layer.Linear(6, 6)
        self.sn1 = neuron.LIFNode(tau=2.0)
        self.fc2 = layer.Linear(6, 6)
        self.sn2 = neuron.IFNode(v_threshold=0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sn1(self.fc1(x))
        return self.sn2(self.fc2(y) + x)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = layer.Linear(3, 4)
        self.b = layer.Linear(5, 4, bias=False)
        self.sn = neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.7)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.sn(self.a(x) + self.b(y))


class ConvFlatten(nn.Module):
    """Flattens with torch.flatten / Tensor.flatten inside forward (traced with torch.fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = layer.Conv2d(1, 2, 3)
        self.sn = neuron.IFNode(v_threshold=0.5)
        self.fc = layer.Linear(2 * 4 * 4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.flatten(self.sn(self.conv(x)), 1)
        return self.fc(self.drop(y)).flatten(1)


# -- round trips: snn -> NIR file -> snn ---------------------------------------------------------

#: (network factory, one sample's shape, exact): exact when the imported parameters are the
#: original ones bit for bit; otherwise a parameter went through a division by dt (tau) or a
#: reciprocal (decays), which may move it by one float64 ulp.
NODE_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], bool]] = {
    "affine+IF": (lambda: nn.Sequential(layer.Linear(4, 5), neuron.IFNode(v_threshold=0.9, v_reset=-0.2)), (3, 4), True),
    "linear+LIF": (lambda: nn.Sequential(layer.Linear(4, 5, bias=False), neuron.LIFNode(tau=2.0)), (3, 4), True),
    "LIF no decay_input": (
        lambda: nn.Sequential(layer.Linear(4, 5), neuron.LIFNode(tau=4.0, decay_input=False, v_reset=0.1)), (3, 4), False,
    ),
    "PLIF": (lambda: nn.Sequential(layer.Linear(4, 5), neuron.ParametricLIFNode(init_tau=3.0)), (3, 4), True),
    "LI": (lambda: nn.Sequential(layer.Linear(4, 5), LINode(tau=3.0, decay_input=False, v_leak=0.3)), (3, 4), False),
    "CubaLI": (lambda: nn.Sequential(layer.Linear(4, 5), CubaLINode(c_decay=0.5, v_decay=0.75, v_leak=-0.1)), (3, 4), True),
    "conv2d+avgpool+flatten": (
        lambda: nn.Sequential(
            layer.Conv2d(2, 3, 3, padding=1), neuron.LIFNode(), layer.AvgPool2d(2), layer.Flatten(), layer.Linear(48, 2)
        ),
        (2, 2, 8, 8),
        True,
    ),
    "conv1d": (
        lambda: nn.Sequential(
            layer.Conv1d(4, 4, 3, stride=2, bias=False), neuron.IFNode(),
            layer.Flatten(start_dim=1), layer.Linear(12, 3),
        ),
        (2, 4, 7),
        True,
    ),
    "sumpool2d": (lambda: nn.Sequential(SumPool2d(2, padding=1), neuron.IFNode(v_threshold=2.0)), (2, 1, 6, 6), True),
    "scale+threshold": (
        lambda: nn.Sequential(layer.Linear(4, 5), Scale(torch.linspace(0.5, 2.0, 5)), Threshold(torch.linspace(-0.5, 0.5, 5))),
        (3, 4),
        True,
    ),
    "delay": (lambda: nn.Sequential(layer.Linear(4, 3), Delay(torch.tensor([0, 1, 3])), neuron.IFNode()), (3, 4), True),
}


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_round_trip_of_every_node_gives_equal_outputs(case: str, step_mode: str, tmp_path: Path) -> None:
    factory, shape, exact = NODE_CASES[case]
    expected, actual, imported = _round_trip(factory(), shape, tmp_path, step_mode)
    assert isinstance(imported, NIRGraphModule)
    if exact:
        assert torch.equal(actual, expected)
    else:  # tau / dt and 1 - dt / tau_syn may differ from the original by an ulp
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
    assert expected.abs().sum() > 0 and not torch.all(expected == expected.flatten()[0])


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_round_trip_of_a_residual_graph(step_mode: str, tmp_path: Path) -> None:
    net = Residual()
    expected, actual, imported = _round_trip(net, (3, 6), tmp_path, step_mode)
    assert torch.equal(actual, expected)
    assert expected.sum() > 0
    graph = export_to_nir(net, torch.zeros(3, 6) if step_mode == "s" else torch.zeros(2, 3, 6))
    assert {("input", "fc1"), ("input", "sn2"), ("fc2", "sn2")} <= set(graph.edges)  # the skip is an edge


def test_round_trip_of_a_traced_forward_with_flatten_and_dropout(tmp_path: Path) -> None:
    net = ConvFlatten().eval()  # dropout is the identity at inference, which is what NIR describes
    expected, actual, imported = _round_trip(net, (2, 1, 6, 6), tmp_path, "s")
    assert torch.equal(actual, expected) and expected.abs().sum() > 0
    graph = export_to_nir(net, torch.zeros(2, 1, 6, 6))
    assert [type(graph.nodes[k]).__name__ for k in ("conv", "sn", "flatten", "fc", "flatten_1")] == [
        "Conv2d", "IF", "Flatten", "Affine", "Flatten",
    ]
    assert graph.nodes["flatten"].start_dim == 0 and "drop" not in graph.nodes


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_round_trip_of_recurrent_graphs(step_mode: str, tmp_path: Path) -> None:
    linear_rec = nn.Sequential(
        layer.Linear(3, 4), layer.LinearRecurrentContainer(neuron.LIFNode(tau=2.0), 4, 4), layer.Linear(4, 2)
    )
    expected, actual, imported = _round_trip(linear_rec, (5, 3), tmp_path, step_mode)
    # the container multiplies [x, y] by one matrix; NIR has two Affine nodes whose outputs are
    # summed, which BLAS may round differently
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert imported.delayed_edges == [("1.rc_recurrent", "1.sub_module")]

    element_rec = nn.Sequential(
        layer.Linear(3, 4), layer.ElementWiseRecurrentContainer(neuron.IFNode(v_threshold=1.5), torch.add)
    )
    expected, actual, imported = _round_trip(element_rec, (5, 3), tmp_path, step_mode)
    assert torch.equal(actual, expected)
    assert imported.delayed_edges == [("1.sub_module", "1.sub_module")]
    assert expected.sum() > 0


def test_round_trip_of_two_inputs_and_of_an_imported_graph(tmp_path: Path) -> None:
    net = TwoInputs()
    x, y = torch.randn(T, 2, 3) * 2, torch.randn(T, 2, 5) * 2
    graph = export_to_nir(net, (x[0], y[0]))
    imported = import_from_nir(graph)
    assert imported.inputs == ["input_0", "input_1"]
    F.reset_net(net)
    expected = torch.stack([net(x[t], y[t]) for t in range(T)])
    actual = torch.stack([imported(x[t], y[t]) for t in range(T)])
    assert torch.equal(actual, expected) and expected.sum() > 0
    # NIR -> snn -> NIR -> snn
    again = import_from_nir(export_to_nir(imported, (x[0], y[0]), save_path=tmp_path / "again.nir"))
    assert torch.equal(torch.stack([again(x[t], y[t]) for t in range(T)]), expected)


def test_export_writes_the_documented_parameters() -> None:
    dt = 1e-3
    net = nn.Sequential(
        layer.Linear(2, 3),
        neuron.LIFNode(tau=4.0, decay_input=False, v_threshold=0.5, v_reset=0.1),
        layer.Linear(3, 3, bias=False),
        neuron.IFNode(v_threshold=2.0, v_reset=-1.0),
        layer.Linear(3, 3),
        LINode(tau=5.0, decay_input=True, v_leak=0.2),
        layer.Linear(3, 3),
        CubaLINode(c_decay=0.5, v_decay=0.75, v_leak=0.0),
    )
    g = export_to_nir(net, torch.zeros(1, 2), dt=dt)
    assert [type(g.nodes[k]).__name__ for k in ["0", "1", "2", "3", "4", "5", "6", "7"]] == [
        "Affine", "LIF", "Linear", "IF", "Affine", "LI", "Affine", "CubaLI",
    ]
    lif, if_, li, cuba = g.nodes["1"], g.nodes["3"], g.nodes["5"], g.nodes["7"]
    np.testing.assert_allclose(lif.tau, np.full(3, 4.0 * dt))  # tau_NIR = tau * dt
    np.testing.assert_allclose(lif.r, np.full(3, 4.0))  # r = tau without decay_input
    np.testing.assert_allclose(lif.v_leak, np.full(3, 0.1))  # v_leak = v_reset
    np.testing.assert_allclose(lif.v_threshold, np.full(3, 0.5))
    np.testing.assert_allclose(if_.r, np.full(3, 1.0 / dt))  # dt * r = 1
    np.testing.assert_allclose(if_.v_reset, np.full(3, -1.0))
    np.testing.assert_allclose(li.r, np.ones(3))  # r = 1 with decay_input
    np.testing.assert_allclose(cuba.tau_syn, np.full(3, dt / 0.5))  # tau_syn = dt / (1 - c_decay)
    np.testing.assert_allclose(cuba.tau_mem, np.full(3, dt / 0.25))
    np.testing.assert_allclose(cuba.w_in, np.full(3, 2.0))  # w_in = tau_syn / dt
    np.testing.assert_allclose(cuba.r, np.full(3, 4.0))  # r = tau_mem / dt
    meta = lif.metadata["snn"]
    assert meta["module"] == "LIFNode" and meta["surrogate"] == "Sigmoid" and meta["surrogate_params"] == {"alpha": 4.0}


def test_surrogate_detach_reset_and_plif_w_survive_the_file(tmp_path: Path) -> None:
    plif = neuron.ParametricLIFNode(init_tau=3.0, surrogate_function=surrogate.ATan(alpha=3.5), detach_reset=True)
    with torch.no_grad():
        plif.w.add_(0.123)
    net = nn.Sequential(layer.Linear(2, 3), plif, Threshold(0.5, surrogate.Erf(alpha=1.5)))
    export_to_nir(net, torch.zeros(1, 2), save_path=tmp_path / "p.nir")
    back = import_from_nir(tmp_path / "p.nir")
    plif2, threshold2 = back.nodes["1"], back.nodes["2"]
    assert type(plif2) is neuron.ParametricLIFNode and torch.equal(plif2.w, plif.w)
    assert plif2.detach_reset is True
    assert type(plif2.surrogate_function) is surrogate.ATan and plif2.surrogate_function.alpha == 3.5
    assert type(threshold2.surrogate_function) is surrogate.Erf and threshold2.surrogate_function.alpha == 1.5


def test_import_step_modes_dtype_and_reset() -> None:
    net = nn.Sequential(
        layer.Linear(3, 4), layer.LinearRecurrentContainer(neuron.LIFNode(tau=2.0), 4, 4), LINode(tau=2.0)
    )
    graph = export_to_nir(net, torch.zeros(2, 3))
    x_seq = torch.randn(T, 2, 3, dtype=torch.float64) * 2
    single = import_from_nir(graph, dtype=torch.float64)
    multi = import_from_nir(graph, dtype=torch.float64, step_mode="m")
    assert single.nodes["0"].weight.dtype == torch.float64
    a = torch.stack([single(x) for x in x_seq])
    torch.testing.assert_close(multi(x_seq), a, rtol=1e-12, atol=1e-12)
    F.reset_net(single)
    assert all(m is None for m in [single.feedback_0])
    torch.testing.assert_close(torch.stack([single(x) for x in x_seq]), a, rtol=0, atol=0)


# -- import against NIR's equations ---------------------------------------------------------------


def _euler(node: object, x: np.ndarray, state: dict[str, np.ndarray], dt: float) -> np.ndarray:
    """One forward-Euler step of ``dt`` of a NIR neuron node (float64, NIR's fire rule ``v > thr``)."""
    if isinstance(node, nir.CubaLI):
        state["i"] = state["i"] + dt / node.tau_syn * (-state["i"] + node.w_in * x)
        state["v"] = state["v"] + dt / node.tau_mem * (node.v_leak - state["v"] + node.r * state["i"])
        return state["v"]
    if isinstance(node, nir.LI):
        state["v"] = state["v"] + dt / node.tau * (node.v_leak - state["v"] + node.r * x)
        return state["v"]
    if isinstance(node, nir.IF):
        v = state["v"] + dt * node.r * x
    else:
        v = state["v"] + dt / node.tau * (node.v_leak - state["v"] + node.r * x)
    z = (v > node.v_threshold).astype(np.float64)
    state["v"] = np.where(z > 0, node.v_reset, v)
    return z


NEURON_NODES = {
    # r = 1 (decay_input), r = tau / dt (no decay of the input), and an arbitrary r (a Scale in front)
    "LIF r=1": lambda n: nir.LIF(tau=np.full(n, 4e-3), r=np.ones(n), v_leak=np.full(n, 0.1), v_threshold=np.full(n, 0.6), v_reset=np.full(n, 0.1)),
    "LIF r=tau/dt": lambda n: nir.LIF(tau=np.full(n, 3e-3), r=np.full(n, 3.0), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)),
    "LIF any r": lambda n: nir.LIF(tau=np.full(n, 5e-3), r=np.linspace(0.5, 9.0, n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)),
    "IF": lambda n: nir.IF(r=np.full(n, 700.0), v_threshold=np.full(n, 1.2), v_reset=np.full(n, -0.3)),
    "LI": lambda n: nir.LI(tau=np.full(n, 2e-3), r=np.linspace(1.0, 3.0, n), v_leak=np.full(n, -0.2)),
    "CubaLI": lambda n: nir.CubaLI(tau_syn=np.full(n, 2e-3), tau_mem=np.full(n, 4e-3), r=np.full(n, 2.0), v_leak=np.full(n, 0.3), w_in=np.linspace(0.5, 2.0, n)),
}


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("case", sorted(NEURON_NODES))
def test_import_follows_nir_equations(case: str, step_mode: str) -> None:
    dt, n = 1e-3, 5
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(n, 3)), rng.normal(size=n)
    node = NEURON_NODES[case](n)
    graph = nir.NIRGraph.from_list(nir.Affine(weight, bias), node)
    net = import_from_nir(graph, dt=dt, dtype=torch.float64, step_mode=step_mode)
    x_seq = rng.normal(size=(40, 2, 3)) * 1.5
    actual = run_sequence(net, torch.from_numpy(x_seq), step_mode).numpy()

    v0 = node.v_reset if hasattr(node, "v_reset") else node.v_leak  # snn starts at rest
    state = {"v": np.broadcast_to(v0, (2, n)).copy(), "i": np.zeros((2, n))}
    expected = np.stack([_euler(node, x @ weight.T + bias, state, dt) for x in x_seq])
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)
    assert np.abs(expected).sum() > 0


def test_import_of_scale_threshold_delay_follows_nir() -> None:
    dt = 1e-3
    scale = np.array([0.5, -1.0, 2.0])
    graph = nir.NIRGraph.from_list(
        nir.Scale(scale), nir.Delay(np.array([0.0, 2e-3, 1e-3])), nir.Threshold(np.array([0.1, 0.05, -0.2]))
    )
    net = import_from_nir(graph, dt=dt, dtype=torch.float64)
    x_seq = np.random.default_rng(2).normal(size=(10, 4, 3))
    actual = run_sequence(net, torch.from_numpy(x_seq), "s").numpy()
    steps = np.array([0, 2, 1])
    scaled = x_seq * scale
    delayed = np.stack([[scaled[t - d, :, j] if t >= d else np.zeros(4) for j, d in enumerate(steps)] for t in range(10)])
    expected = (np.moveaxis(delayed, 1, 2) > np.array([0.1, 0.05, -0.2])).astype(np.float64)
    np.testing.assert_array_equal(actual, expected)
    # the one documented difference: snn fires at equality (H(0) = 1), NIR's rule is v > threshold
    assert Threshold(0.5)(torch.tensor([0.5])).item() == 1.0


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_import_of_a_cycle_delays_the_back_edge_and_starts_from_rest(step_mode: str) -> None:
    dt, n = 1e-3, 4
    rng = np.random.default_rng(3)
    w_in, b_in = rng.normal(size=(n, 2)), rng.normal(size=n)
    w_rec, b_rec = rng.normal(size=(n, n)), rng.normal(size=n) * 0.5
    lif = nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2])), "in": nir.Affine(w_in, b_in), "lif": lif,
            "rec": nir.Affine(w_rec, b_rec), "output": nir.Output(np.array([n])),
        },
        edges=[("input", "in"), ("in", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
    )
    net = import_from_nir(graph, dt=dt, dtype=torch.float64, step_mode=step_mode)
    assert net.delayed_edges == [("rec", "lif")]
    x_seq = rng.normal(size=(30, 3, 2)) * 2
    for _ in range(2):  # the second run checks that reset_net restores the rest values
        actual = run_sequence(net, torch.from_numpy(x_seq), step_mode).numpy()
        state, spikes, expected = {"v": np.zeros((3, n))}, np.zeros((3, n)), []
        for x in x_seq:
            # I[t] = W_in x[t] + b_in + W_rec s[t-1] + b_rec, with s[-1] = 0 (b_rec from the first step)
            spikes = _euler(lif, x @ w_in.T + b_in + spikes @ w_rec.T + b_rec, state, dt)
            expected.append(spikes)
        np.testing.assert_array_equal(actual, np.stack(expected))
    assert np.stack(expected).sum() > 0


def test_import_of_nested_graphs() -> None:
    n = 3
    inner = nir.NIRGraph.from_list(nir.Linear(np.eye(n) * 2.0), nir.IF(r=np.full(n, 1e4), v_threshold=np.ones(n)))
    graph = nir.NIRGraph.from_list(nir.Affine(np.ones((n, 2)), np.zeros(n)), inner)
    net = import_from_nir(graph)
    x = torch.full((1, 2), 0.3)
    assert torch.equal(torch.stack([net(x) for _ in range(3)])[:, 0], torch.tensor([[1.0] * n, [1.0] * n, [1.0] * n]))
    graph_again = export_to_nir(net, x)
    assert {type(node).__name__ for node in graph_again.nodes.values()} == {"Input", "Affine", "Linear", "IF", "Output"}


def test_functional_forward_of_an_imported_recurrent_graph_under_vmap() -> None:
    net = nn.Sequential(layer.Linear(3, 4), layer.LinearRecurrentContainer(neuron.IFNode(), 4, 4))
    imported = import_from_nir(export_to_nir(net, torch.zeros(2, 3)))
    f = F.to_functional_forward(imported)
    x = torch.randn(2, 3) * 2
    F.reset_net(imported)
    fresh = tuple(base.extract_memories(imported))
    assert fresh == (None, 0.0)  # (feedback_0 of the graph, v of the neuron)
    (y0,), states = f((x,), fresh)
    batch = tuple(torch.stack([s, s * 0.5]) for s in states)
    (ys,), new = torch.func.vmap(lambda a, b: f((x,), (a, b)))(*batch)
    for i in range(2):
        (y,), (a, b) = f((x,), (batch[0][i], batch[1][i]))
        torch.testing.assert_close(ys[i], y)
        torch.testing.assert_close(new[1][i], b)


# -- what NIR or snn cannot express ---------------------------------------------------------------


class Custom(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x))


class SubLIF(neuron.LIFNode):
    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (nn.Sequential(layer.Linear(2, 2), neuron.IFNode(v_reset=None)), r"1 \(IFNode\): soft reset"),
        (nn.Sequential(layer.Linear(2, 2), neuron.LIFNode(surrogate_function=lambda x: (x >= 0).float())), "not an snn.surrogate"),
        (nn.Sequential(layer.Linear(2, 2), neuron.LIFNode(surrogate_function=surrogate.Sigmoid(spiking=False))), "non-spiking"),
        (nn.Sequential(layer.Linear(2, 2), neuron.LIFNode(surrogate_function=surrogate.PoissonPass())), "not the Heaviside"),
        (nn.Sequential(layer.Linear(2, 2), nn.BatchNorm1d(2)), "1 \\(BatchNorm1d\\): .*fold it"),
        (nn.Sequential(layer.Linear(2, 2), SubLIF()), "subclass of an snn neuron"),
        (nn.Sequential(layer.Linear(2, 2), nn.ReLU()), "NIR has no node for ReLU"),
        (Custom(layer.Linear(2, 2)), "call_function 'relu'"),
        (nn.Sequential(layer.ElementWiseRecurrentContainer(neuron.IFNode(), torch.mul)), "element_wise_function=mul"),
        (nn.Sequential(CubaLINode(c_decay=1.0)), "c_decay=1.0"),
        (nn.Sequential(nn.AvgPool2d(2, ceil_mode=True)), "ceil_mode"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), "groups=2"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding_mode="circular")), "padding_mode='circular'"),
    ],
)
def test_export_refuses_what_nir_cannot_express(net: nn.Module, match: str) -> None:
    first = next(iter(net.children()))
    x = torch.zeros(1, 2, 4, 4) if isinstance(first, (nn.AvgPool2d, nn.Conv2d)) else torch.zeros(3, 2)
    with pytest.raises(NIRConversionError, match=match):
        export_to_nir(net, x)


def test_export_refuses_shared_state_mixed_modes_and_bad_arguments() -> None:
    lif = neuron.LIFNode()

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = lif

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lif(self.lif(x))

    with pytest.raises(NIRConversionError, match="used twice"):
        export_to_nir(Twice(), torch.zeros(1, 2))
    # the same through an nn.Sequential that lists the neuron twice (named_children() lists it
    # once, and the second use was dropped from the graph)
    with pytest.raises(NIRConversionError, match="3 \\(LIFNode\\): the same stateful module is used twice"):
        export_to_nir(nn.Sequential(layer.Linear(2, 2), lif, layer.Linear(2, 2), lif), torch.zeros(1, 2))
    mixed = nn.Sequential(layer.Linear(2, 2), neuron.LIFNode(step_mode="m"))
    with pytest.raises(ValueError, match="different step modes"):
        export_to_nir(mixed, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="dt: expected a positive"):
        export_to_nir(nn.Sequential(layer.Linear(2, 2)), torch.zeros(1, 2), dt=0.0)
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module"):
        export_to_nir("net", torch.zeros(1, 2))  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="example_input"):
        export_to_nir(nn.Sequential(layer.Linear(2, 2)), [1.0, 2.0])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_export_restores_memories_and_modes() -> None:
    net = nn.Sequential(layer.Linear(2, 3), neuron.LIFNode())
    net(torch.ones(1, 2) * 5)
    v = net[1].v
    export_to_nir(net, torch.zeros(4, 2))
    assert net[1].v is v and net.training and net[1].training


@pytest.mark.parametrize(
    ("node", "match"),
    [
        (nir.I(r=np.ones(2)), "no module for this node type"),
        (nir.LIF(tau=np.array([2e-3, 3e-3]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)), "tau differs between neurons"),
        (nir.LIF(tau=np.full(2, 1e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)), r"tau / dt = .* needs > 1"),
        (nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.ones(2), v_threshold=np.full(2, 2.0)), "v_leak = 1.0 differs from v_reset"),
        (nir.Delay(np.array([1.5e-3, 0.0])), "whole numbers of steps"),
        (nir.Affine(np.ones((2, 2, 2)), np.zeros((2, 2))), "2-d weight"),
    ],
)
def test_import_refuses_what_snn_cannot_reproduce(node: object, match: str) -> None:
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "x": node, "output": nir.Output(np.array([2]))},
        edges=[("input", "x"), ("x", "output")],
        type_check=False,
    )
    with pytest.raises(NIRConversionError, match=f"node 'x'.*{match}"):
        import_from_nir(graph, dt=1e-3)


def test_cuba_lif_follows_nir_equations_and_round_trips(cuba_lif_class: type) -> None:
    """CubaLIF nodes against the NIR equations written out, and snn -> NIR -> snn with CUBALIFNode."""
    dt, n = 1e-3, 4
    node = nir.CubaLIF(tau_syn=np.full(n, 2e-3), tau_mem=np.full(n, 4e-3), r=np.linspace(1.0, 4.0, n), v_leak=np.zeros(n),
                       v_threshold=np.full(n, 0.3), v_reset=np.full(n, -0.1), w_in=np.full(n, 3.0))
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(n, 3))
    net = import_from_nir(nir.NIRGraph.from_list(nir.Linear(weight), node), dt=dt, dtype=torch.float64)
    assert any(type(m) is cuba_lif_class for m in net.modules())
    x_seq = rng.normal(size=(30, 2, 3))
    actual = run_sequence(net, torch.from_numpy(x_seq), "s").numpy()
    # the neuron starts at rest: v_leak = 0 (snn's CUBALIFNode starts at 0, where its leak goes)
    i, v, expected = np.zeros((2, n)), np.zeros((2, n)), []
    for x in x_seq:
        i = i + dt / node.tau_syn * (-i + node.w_in * (x @ weight.T))
        v = v + dt / node.tau_mem * (-v + node.r * i)  # the new current, as in snnTorch's Synaptic
        z = (v > node.v_threshold).astype(np.float64)
        v = np.where(z > 0, node.v_reset, v)
        expected.append(z)
    np.testing.assert_array_equal(actual, np.stack(expected))
    assert np.stack(expected).sum() > 0
    # snn -> NIR -> snn
    original = nn.Sequential(layer.Linear(3, n), cuba_lif_class(c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=0.0))
    graph = export_to_nir(original, torch.zeros(2, 3), dt=dt)
    cuba = graph.nodes["1"]
    np.testing.assert_allclose(cuba.tau_syn, np.full(n, 2e-3))  # dt / (1 - c_decay)
    np.testing.assert_allclose(cuba.w_in, np.full(n, 2.0))  # tau_syn / dt
    np.testing.assert_allclose(cuba.r, np.full(n, 4.0))  # tau_mem / dt
    back = import_from_nir(graph, dt=dt)
    x = torch.randn(T, 2, 3) * 2
    torch.testing.assert_close(run_sequence(back, x, "s"), run_sequence(original, x, "s"), rtol=0, atol=0)
    with pytest.raises(NIRConversionError, match="v_leak = 0.5"):
        bad = nir.CubaLIF(tau_syn=np.full(n, 2e-3), tau_mem=np.full(n, 4e-3), r=np.ones(n), v_leak=np.full(n, 0.5),
                          v_threshold=np.ones(n))
        import_from_nir(nir.NIRGraph.from_list(bad), dt=dt)


# -- untrusted files --------------------------------------------------------------------------


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "valid.nir"
    export_to_nir(nn.Sequential(layer.Linear(3, 4), neuron.LIFNode()), torch.zeros(1, 3), save_path=path)
    return path


def test_truncated_garbage_and_empty_files_give_a_value_error(valid_file: Path, tmp_path: Path) -> None:
    data = valid_file.read_bytes()
    cases = {
        "truncated.nir": data[: len(data) // 2],
        "garbage.nir": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8,
        "empty.nir": b"",
        "text.nir": b"not a nir file at all",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match="is not a readable NIR file"):
            import_from_nir(path)
        with pytest.raises(ValueError, match="is not a readable NIR file"):
            import_from_nir(str(path))


def test_missing_paths_directories_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        import_from_nir(tmp_path / "missing.nir")
    with pytest.raises(ValueError, match="is not a file"):
        import_from_nir(tmp_path)
    with pytest.raises(TypeError, match="graph: expected a nir.NIRGraph or a file path"):
        import_from_nir(42)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match="step_mode"):
        import_from_nir(tmp_path / "missing.nir", step_mode="x")
    with pytest.raises(TypeError, match="dtype"):
        import_from_nir(tmp_path / "missing.nir", dtype=torch.int32)


def test_files_with_bad_structure_or_values(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")

    def write(name: str, nodes: dict, edges: list) -> Path:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
        path = tmp_path / name
        nir.write(path, graph)
        return path

    def io() -> dict:
        return {"input": nir.Input(np.array([2])), "output": nir.Output(np.array([2]))}

    unknown = write("unknown.nir", {**io(), "a": nir.Linear(np.eye(2))}, [("input", "a"), ("a", "ghost"), ("a", "output")])
    with pytest.raises(ValueError, match="unknown node 'ghost'") as raised:
        import_from_nir(unknown)
    # the message names the file once and the graph once (not "graph: graph: ...")
    assert str(raised.value).startswith(f"graph {str(unknown)!r}: edge") and "graph: graph" not in str(raised.value)
    unreached = write("unreached.nir", {**io(), "a": nir.Linear(np.eye(2)), "b": nir.Linear(np.eye(2))}, [("input", "a"), ("a", "output"), ("b", "output")])
    with pytest.raises(ValueError, match=r"no Input node reaches the nodes \['b'\]"):
        import_from_nir(unreached)
    nan = write("nan.nir", {**io(), "a": nir.Linear(np.array([[1.0, np.nan], [0.0, 1.0]]))}, [("input", "a"), ("a", "output")])
    with pytest.raises(ValueError, match="node 'a'.*weight: expected finite values") as raised:
        import_from_nir(nan)
    assert str(nan) in str(raised.value)
    no_output = write("no_output.nir", {"input": nir.Input(np.array([2])), "a": nir.Linear(np.eye(2))}, [("input", "a")])
    with pytest.raises(ValueError, match="at least one Input and one Output"):
        import_from_nir(no_output)
    # a valid HDF5 file that is no NIR graph, and a NIR file whose metadata is malformed
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("weights", data=np.ones(3))
    with pytest.raises(ValueError, match="is not a readable NIR file"):
        import_from_nir(other)
    bad_meta = write(
        "meta.nir",
        {**io(), "a": nir.IF(r=np.full(2, 1e4), v_threshold=np.ones(2), metadata={"snn": {"surrogate": "os.system"}})},
        [("input", "a"), ("a", "output")],
    )
    with pytest.raises(ValueError, match="surrogate: expected the name of an snn.surrogate class"):
        import_from_nir(bad_meta)


def test_wrong_input_shapes_are_named() -> None:
    net = import_from_nir(export_to_nir(nn.Sequential(layer.Linear(3, 4)), torch.zeros(1, 3)))
    with pytest.raises(ValueError, match=r"input 'input': expected shape \[N, \*\] with \* = \[3\]"):
        net(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="expected 1 input tensor"):
        net(torch.zeros(2, 3), torch.zeros(2, 3))
    net.step_mode = "m"
    with pytest.raises(ValueError, match="set_step_mode"):
        net(torch.zeros(4, 2, 3))


def test_modules_validate_their_arguments() -> None:
    with pytest.raises(ValueError, match="tau: expected a membrane time constant > 1"):
        LINode(tau=1.0)
    with pytest.raises(ValueError, match="c_decay: expected a decay factor in"):
        CubaLINode(c_decay=1.5)
    with pytest.raises(ValueError, match="delay_steps: expected delays >= 0"):
        Delay(torch.tensor([1, -1]))
    with pytest.raises(TypeError, match="delay_steps: expected an int"):
        Delay(1.5)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match="scale: expected finite"):
        Scale(torch.tensor([math.inf]))
    with pytest.raises(ValueError, match="last dimensions match \\[3\\]"):
        Scale(torch.ones(3))(torch.ones(2, 4))
    delay = Delay(2)
    delay(torch.ones(2, 3))
    with pytest.raises(ValueError, match="reset_net"):
        delay(torch.ones(5, 3))


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_a_stateless_module_used_twice_is_exported_twice(step_mode: str) -> None:
    shared = layer.Linear(4, 4)
    net = nn.Sequential(shared, neuron.IFNode(), shared, neuron.IFNode())
    graph = export_to_nir(net, torch.zeros(1, 4))
    assert [name for name in graph.nodes if name not in ("input", "output")] == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(graph.nodes["0"].weight, graph.nodes["2"].weight)
    imported = import_from_nir(graph, step_mode=step_mode)
    F.set_step_mode(net, step_mode)
    x_seq = torch.rand(T, 3, 4) * 3
    torch.testing.assert_close(run_sequence(imported, x_seq, step_mode), run_sequence(net, x_seq, step_mode))


def test_import_copies_the_graphs_arrays() -> None:
    """Training (or editing) the imported network leaves the caller's graph alone, float64 too."""
    graph = export_to_nir(nn.Sequential(layer.Linear(3, 2), neuron.LIFNode()), torch.zeros(1, 3))
    before = {name: np.array(getattr(node, "weight", np.zeros(1))) for name, node in graph.nodes.items()}
    for dtype in (torch.float32, torch.float64):
        imported = import_from_nir(graph, dtype=dtype)
        with torch.no_grad():
            for p in imported.parameters():
                p.add_(1.0)
    for name, node in graph.nodes.items():
        np.testing.assert_array_equal(getattr(node, "weight", np.zeros(1)), before[name])


def test_import_refuses_edges_whose_declared_shapes_cannot_meet() -> None:
    """A 5-neuron LIF fed 3 values ran on 3 (its uniform parameters broadcast) and answered with
    the wrong width; declared shapes that cannot meet are refused, naming the edge. A leading
    batch size of 1 (as Norse writes Input types) and one-element parameters still import."""

    def lif(n: int) -> object:
        return nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))

    def graph(nodes: dict[str, object], chain: list[str]) -> object:
        return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False)

    bad = graph({"input": nir.Input(input_type=np.array([3])), "a": lif(5), "output": nir.Output(output_type=np.array([5]))},
                ["input", "a", "output"])
    with pytest.raises(ValueError, match=r"edge 'input' -> 'a': 'input' \(Input\) produces shape \[3\] but 'a' \(LIF\) takes shape \[5\]"):
        import_from_nir(bad, dt=1e-3)
    affine = nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))
    chain = graph({"input": nir.Input(input_type=np.array([4])), "a": affine,
                   "b": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), "output": nir.Output(output_type=np.array([3]))},
                  ["input", "a", "b", "output"])
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b'.*produces shape \[3\] but 'b' \(Affine\) takes shape \[4\]"):
        import_from_nir(chain)
    batched = graph({"input": nir.Input(input_type=np.array([1, 4])), "a": affine, "output": nir.Output(output_type=np.array([3]))},
                    ["input", "a", "output"])
    assert import_from_nir(batched)(torch.ones(2, 4)).shape == (2, 3)
    scale = graph({"input": nir.Input(input_type=np.array([3])), "a": nir.Scale(scale=np.array([2.0])),
                   "output": nir.Output(output_type=np.array([3]))}, ["input", "a", "output"])
    torch.testing.assert_close(import_from_nir(scale)(torch.ones(2, 3)), torch.full((2, 3), 2.0))


def _affine_lif_graph(metadata: dict | None = None) -> object:
    lif = nir.LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), metadata=metadata or {})
    return nir.NIRGraph(
        nodes={"in": nir.Input(np.array([4])), "aff": nir.Affine(np.ones((3, 4)), np.zeros(3)), "lif": lif,
               "out": nir.Output(np.array([3]))},
        edges=[("in", "aff"), ("aff", "lif"), ("lif", "out")],
    )


def test_import_refuses_a_plif_w_whose_tau_overflows() -> None:
    # 1 + exp(1000) is beyond float64: an infinite tau is not close to tau / dt = 20
    graph = _affine_lif_graph({"snn": {"module": "ParametricLIFNode", "w": -1000.0}})
    with pytest.raises(ValueError, match=r"node 'lif' \(LIF\): metadata 'snn': w = -1000.0 gives tau inf, but tau / dt = 20"):
        import_from_nir(graph)


def test_import_checks_the_device() -> None:
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu' or 'cuda:0', got 'bogus'"):
        import_from_nir(_affine_lif_graph(), device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device: 'cuda' asked for, but torch sees 0 CUDA device\(s\)"):
            import_from_nir(_affine_lif_graph(), device="cuda")
    assert import_from_nir(_affine_lif_graph(), device=torch.device("cpu")) is not None


def test_imported_network_names_an_input_of_another_dtype() -> None:
    net = import_from_nir(_affine_lif_graph())
    for dtype in (torch.bool, torch.int64, torch.float64):
        with pytest.raises(TypeError, match=rf"input 'in': expected the network's dtype torch.float32 .*got {dtype}"):
            net(torch.ones(2, 4, dtype=dtype))
    assert net(torch.ones(2, 4)).shape == (2, 3)
    double = import_from_nir(_affine_lif_graph(), dtype=torch.float64)
    assert double(torch.ones(2, 4, dtype=torch.float64)).dtype == torch.float64


def test_export_names_an_example_input_the_network_cannot_run(tmp_path: Path) -> None:
    net = nn.Sequential(layer.Linear(4, 3), neuron.LIFNode())
    with pytest.raises(ValueError, match=r"example_input: the network cannot run an input of shape \[1, 7\] \(expected \[N, \*\] "
                                         r"in step mode 's'\): mat1 and mat2 shapes cannot be multiplied"):
        export_to_nir(net, torch.randn(1, 7))
    multi = nn.Sequential(layer.Linear(4, 3, step_mode="m"), neuron.LIFNode(step_mode="m"))
    with pytest.raises(NIRConversionError, match=r"step mode 'm', so example_input is read as \[T, N, \*\]"):
        export_to_nir(multi, torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"save_path: the folder '.*missing' does not exist"):
        export_to_nir(net, torch.randn(1, 4), tmp_path / "missing" / "x.nir")
    with pytest.raises(ValueError, match="save_path: .* is a folder"):
        export_to_nir(net, torch.randn(1, 4), tmp_path)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("kind", ["qif", "eif", "izhikevich", "klif"])
def test_export_names_the_model_nir_has_no_node_for(kind: str) -> None:
    cls = neuron.node_class(kind)
    assert cls is not None
    with pytest.raises(NIRConversionError, match=rf"1 \({cls.__name__}\): NIR has no node for the '{kind}' neuron model"):
        export_to_nir(nn.Sequential(layer.Linear(4, 3), cls()), torch.randn(1, 4))
