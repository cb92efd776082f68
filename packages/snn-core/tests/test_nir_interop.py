"""NIR graphs written by snnTorch and Norse: imported by snn, simulated like those libraries do.

Run in the tox environment ``nir`` (snnTorch and Norse installed with the pinned torch). The
references are the libraries' own simulations: the network that wrote the graph (snnTorch,
Norse) or, where the writer's network and the written graph differ, the library's own importer
of that graph (Norse's ``from_nir``). Each case names the writer's conventions it relies on.
Comparisons run in float32 on both sides: spikes must agree exactly, potentials within float32
rounding (the libraries compute ``beta * v`` where snn computes ``v - v / tau``).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

import snn.functional as F  # noqa: E402
from snn.errors import NIRConversionError  # noqa: E402
from snn.nir import import_from_nir  # noqa: E402

T = 30
F32 = {"rtol": 1e-5, "atol": 1e-5}  # float32 rounding of two equal formulas written differently


def _steps(module: nn.Module, x_seq: torch.Tensor, stateful: bool) -> torch.Tensor:
    """Run a module of another library one step at a time (Norse modules return (y, state))."""
    outputs, state = [], None
    with torch.no_grad():
        for x in x_seq:
            if stateful:
                y, state = module(x, state)
            else:
                y = module(x)
            outputs.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(outputs)


def _ours(graph: object, x_seq: torch.Tensor, dt: float, step_mode: str) -> torch.Tensor:
    net = import_from_nir(graph, dt=dt, step_mode=step_mode)
    F.reset_net(net)
    with torch.no_grad():
        return net(x_seq) if step_mode == "m" else torch.stack([net(x) for x in x_seq])


# -- snnTorch (writes dt = 1e-4 s; beta = 1 - dt / tau, r = tau / dt) ----------------------------

@pytest.fixture
def snn_torch() -> ModuleType:
    module = pytest.importorskip("snntorch")
    pytest.importorskip("snntorch.export_nir")
    return module


def _leaky(snntorch_module: ModuleType, n: int, beta: float, threshold: float, **kwargs: object) -> nn.Module:
    # snnTorch 1.0.0 writes a scalar beta as a 0-d array, which nir 1.0.8's type check rejects;
    # per-neuron tensors give arrays of the layer's shape
    return snntorch_module.Leaky(
        beta=torch.full((n,), beta), threshold=torch.full((n,), threshold), init_hidden=True,
        reset_mechanism="zero", **kwargs,
    )


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("reset_delay", [False, True])
def test_snntorch_leaky_graph(snn_torch: ModuleType, step_mode: str, reset_delay: bool) -> None:
    from snntorch import utils
    from snntorch.export_nir import export_to_nir as snntorch_export

    net = nn.Sequential(
        nn.Linear(4, 6), _leaky(snn_torch, 6, 0.8, 0.5, reset_delay=reset_delay),
        nn.Linear(6, 3), _leaky(snn_torch, 3, 0.9, 0.7, output=True, reset_delay=reset_delay),
    )
    graph = snntorch_export(net, torch.randn(4))  # snnTorch traces one sample without batch
    x_seq = torch.randn(T, 5, 4) * 2
    utils.reset(net)
    expected = _steps(net, x_seq, stateful=False)
    actual = _ours(graph, x_seq, dt=1e-4, step_mode=step_mode)
    assert torch.equal(actual, expected)
    assert expected.sum() > 0


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_snntorch_recurrent_leaky_graph(snn_torch: ModuleType, step_mode: str) -> None:
    """RLeaky: the recurrent Linear (with bias) becomes an Affine node in a cycle with the LIF."""
    from snntorch import utils
    from snntorch.export_nir import export_to_nir as snntorch_export

    recurrent = snn_torch.RLeaky(
        beta=torch.full((5,), 0.8), threshold=torch.full((5,), 0.5), linear_features=5, init_hidden=True,
        reset_mechanism="zero", reset_delay=False,
    )
    net = nn.Sequential(nn.Linear(4, 5), recurrent, nn.Linear(5, 2))
    graph = snntorch_export(net, torch.randn(4))
    assert any(isinstance(n, nir.Affine) and k.endswith("w_rec") for k, n in graph.nodes.items())
    x_seq = torch.randn(T, 3, 4) * 2
    utils.reset(net)
    expected = _steps(net, x_seq, stateful=False)
    actual = _ours(graph, x_seq, dt=1e-4, step_mode=step_mode)
    torch.testing.assert_close(actual, expected, **F32)
    assert expected.abs().sum() > 0


def test_snntorch_synaptic_graph(snn_torch: ModuleType, cuba_lif_class: type) -> None:
    """Synaptic -> CubaLIF (alpha = 1 - dt / tau_syn, w_in = tau_syn / dt) -> snn.neuron.CUBALIFNode."""
    from snntorch import utils
    from snntorch.export_nir import export_to_nir as snntorch_export

    synaptic = snn_torch.Synaptic(
        alpha=torch.full((5,), 0.6), beta=torch.full((5,), 0.8), threshold=torch.full((5,), 0.5), init_hidden=True,
        reset_mechanism="zero", reset_delay=False,
    )
    net = nn.Sequential(nn.Linear(4, 5), synaptic)
    graph = snntorch_export(net, torch.randn(4))
    x_seq = torch.randn(T, 3, 4) * 2
    utils.reset(net)
    expected = _steps(net, x_seq, stateful=False)
    actual = _ours(graph, x_seq, dt=1e-4, step_mode="s")
    torch.testing.assert_close(actual, expected, **F32)
    assert expected.sum() > 0


def test_snntorch_graphs_snn_cannot_reproduce_give_the_typed_error(snn_torch: ModuleType) -> None:
    from snntorch.export_nir import export_to_nir as snntorch_export

    mixed = snn_torch.Leaky(beta=torch.tensor([0.5, 0.9]), threshold=torch.ones(2), init_hidden=True, reset_mechanism="zero")
    graph = snntorch_export(nn.Sequential(nn.Linear(3, 2), mixed), torch.randn(3))
    with pytest.raises(NIRConversionError, match=r"node '1' \(LIF\): tau differs between neurons"):
        import_from_nir(graph, dt=1e-4)
    uniform = _leaky(snn_torch, 2, 0.5, 1.0)
    graph = snntorch_export(nn.Sequential(nn.Linear(3, 2), uniform), torch.randn(3))
    with pytest.raises(NIRConversionError, match=r"node '1' \(LIF\): tau / dt .* import with a smaller dt"):
        import_from_nir(graph, dt=1e-3)  # snnTorch wrote the graph for dt = 1e-4


# -- Norse ------------------------------------------------------------------------------------


@pytest.fixture
def norse_torch() -> ModuleType:
    module = pytest.importorskip("norse.torch")
    pytest.importorskip("norse.torch.utils.export_nir")
    return module


def test_norse_lif_and_li_graph(norse_torch: ModuleType) -> None:
    """LIFBoxCell -> LIF, LIBoxCell -> LI, r = 1: dv = dt / tau (v_leak - v + I).

    Norse's exporter writes ``tau = dt / tau_mem_inv``, which is the time constant in seconds
    only for ``dt = 1`` (its own importer reads ``tau_mem_inv = 1 / tau``); so the graph is
    written with ``to_nir(..., dt=1.0)`` and simulated at Norse's step of 1 ms.
    """
    from norse.torch.utils.export_nir import to_nir

    lif = norse_torch.LIFBoxCell(norse_torch.LIFBoxParameters(tau_mem_inv=torch.tensor(250.0), v_th=torch.tensor(0.4)))
    li = norse_torch.LIBoxCell(norse_torch.LIBoxParameters(tau_mem_inv=torch.tensor(500.0)))
    net = norse_torch.SequentialState(nn.Linear(4, 6), lif, nn.Linear(6, 3), li)
    graph = to_nir(net, torch.randn(1, 4), dt=1.0)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"LIF", "LI"}
    x_seq = torch.randn(T, 5, 4) * 3
    expected = _steps(net, x_seq, stateful=True)
    for step_mode in ("s", "m"):
        actual = _ours(graph, x_seq, dt=1e-3, step_mode=step_mode)
        torch.testing.assert_close(actual, expected, **F32)
    assert expected.abs().sum() > 0
    # the spikes of the LIF layer alone, against Norse's own importer of the same graph
    from norse.torch.utils.import_nir import from_nir

    spiking = norse_torch.SequentialState(nn.Linear(4, 6), lif)
    graph = to_nir(spiking, torch.randn(1, 4), dt=1.0)
    theirs = _steps(from_nir(graph, dt=1e-3), x_seq, stateful=True)
    ours = _ours(graph, x_seq, dt=1e-3, step_mode="m")
    assert torch.equal(ours, theirs) and ours.sum() > 0


def test_norse_if_graph(norse_torch: ModuleType) -> None:
    """IAFCell -> IF with r = 1. Norse adds the input to v whatever dt (``v + x``), which is NIR's
    ``dv/dt = r I`` only for ``dt = 1``: import Norse's IF graphs with ``dt=1.0``."""
    from norse.torch.utils.export_nir import to_nir

    iaf = norse_torch.IAFCell(norse_torch.IAFParameters(v_th=torch.tensor(0.8)))
    net = norse_torch.SequentialState(nn.Linear(4, 6), iaf)
    graph = to_nir(net, torch.randn(1, 4))
    x_seq = torch.randn(T, 5, 4)
    expected = _steps(net, x_seq, stateful=True)
    actual = _ours(graph, x_seq, dt=1.0, step_mode="m")
    assert torch.equal(actual, expected) and expected.sum() > 0


def test_norse_cuba_lif_graph_against_norse_importer(norse_torch: ModuleType, cuba_lif_class: type) -> None:
    """LIFCell -> CubaLIF (r = 1, w_in = 1). Norse's importer simulates the graph as NIR states it
    (a leaky synapse, then the membrane with the new current); Norse's own LIFCell differs from
    its export (it adds the input to the current unscaled and charges with the old current),
    so the reference is Norse's importer."""
    from norse.torch.utils.export_nir import to_nir
    from norse.torch.utils.import_nir import from_nir

    params = norse_torch.LIFParameters(
        tau_syn_inv=torch.tensor(500.0), tau_mem_inv=torch.tensor(250.0), v_th=torch.tensor(0.05)
    )
    net = norse_torch.SequentialState(nn.Linear(4, 6), norse_torch.LIFCell(params))
    graph = to_nir(net, torch.randn(1, 4), dt=1.0)
    x_seq = torch.randn(T, 5, 4) * 3
    theirs = _steps(from_nir(graph, dt=1e-3), x_seq, stateful=True)
    ours = _ours(graph, x_seq, dt=1e-3, step_mode="s")
    torch.testing.assert_close(ours, theirs, **F32)
    assert theirs.sum() > 0


def test_norse_graph_with_too_coarse_dt_gives_the_typed_error(norse_torch: ModuleType) -> None:
    from norse.torch.utils.export_nir import to_nir

    net = norse_torch.SequentialState(nn.Linear(4, 6), norse_torch.LIFBoxCell())
    graph = to_nir(net, torch.randn(1, 4))  # default dt = 1e-3 writes tau = dt / tau_mem_inv = 1e-5 s
    with pytest.raises(NIRConversionError, match=r"node '1' \(LIF\): tau / dt"):
        import_from_nir(graph, dt=1e-3)
    assert np.isclose(float(np.asarray(graph.nodes["1"].tau)), 1e-5)
