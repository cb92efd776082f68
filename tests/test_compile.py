"""``torch.compile`` of small spiking networks on every backend that runs here.

The network ``Linear -> LIF -> Linear -> PLIF -> Linear`` (multi-step; each neuron on the
backend under test when it serves that kind, else on torch) is compiled with
``backend="aot_eager"`` (traces forward and backward through AOTAutograd without code
generation, so it is quick) before any eager call and must match eager mode over two
consecutive batches: outputs, final potentials and parameter gradients within float32 rounding
(spikes are not compared separately: the outputs and gradients depend on every spike). Graphs and
graph breaks are counted with Dynamo's counters and reported (``record_property`` and ``-s``
output). Triton's kernels are custom operators: a network compiled after one eager call must
trace as one graph (``torch._dynamo.explain``, then ``fullgraph=True``). ``inductor`` (C++ code
generation) is tried once, for the torch backend, on one batch. ``reset_net`` runs eagerly
between batches; a compiled step that calls ``reset_net`` itself is checked separately (no
guards on other networks, no recompiles).
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import torch
from if_lif_plif import family_serves

from snn import functional, layer, neuron
from snn.base import named_memories
from snn.plugins import get_registry

torch_dynamo = pytest.importorskip("torch._dynamo")

pytestmark = [
    # Dynamo traces through functools.lru_cache wrappers (the surrogate derivative lookup) and says so
    pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning"),
    # inductor's own use of a deprecated TorchScript decorator
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

def build(backend: str, device: str) -> torch.nn.Sequential:
    info = get_registry().backend(backend)

    def pick(kind: str) -> str:
        return backend if family_serves(info, kind) else "torch"

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Linear(4, 8),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m", backend=pick("lif")),
        layer.Linear(8, 6),
        neuron.ParametricLIFNode(init_tau=2.5, v_threshold=0.4, v_reset=None, step_mode="m", backend=pick("plif")),
        layer.Linear(6, 3),
    )
    with torch.no_grad():
        for linear in (net[0], net[2]):
            linear.weight.mul_(2.0)
            linear.bias.add_(0.2)
    functional.set_step_mode(net, "m")
    return net.to(device)


def batches(device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [(torch.rand(5, 2, 4, generator=gen) * 2.0).to(device) for _ in range(2)]


def forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(net)
    return net(x)


def compiled_forward(net: torch.nn.Module, **options: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``reset_net`` eagerly, then the compiled network."""
    compiled = torch.compile(net, **options)

    def call(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        return compiled(x)

    return call


def train_step(call: Callable[[torch.Tensor], torch.Tensor], net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward and backward; returns outputs, spikes, potentials and gradients."""
    net.zero_grad(set_to_none=True)
    y = call(x)
    target = torch.arange(y.shape[1], device=y.device) % y.shape[-1]
    loss = functional.temporal_efficient_training_cross_entropy(y, target)
    loss.backward()
    record = {"y": y.detach(), "loss": loss.detach()}
    record.update({f"mem:{k}": v.detach() for k, v in named_memories(net)})
    record.update({f"grad:{k}": p.grad.detach().clone() for k, p in net.named_parameters()})
    return record


def _spikes_of(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Spikes of each neuron layer of ``net`` (eager, no grad) for ``x``."""
    functional.reset_net(net)
    out, spikes = x, []
    with torch.no_grad():
        for module in net:
            out = module(out)
            if isinstance(module, neuron.BaseNode):
                spikes.append(out)
    functional.reset_net(net)
    return spikes


def compare(eager: dict[str, torch.Tensor], compiled: dict[str, torch.Tensor]) -> None:
    assert eager.keys() == compiled.keys()
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-5, atol=1e-6, msg=key)


def count_graph_breaks(backend: str, device: str) -> tuple[int, int]:
    """``(graphs, graph breaks)`` of one forward after an eager call, as ``torch._dynamo.explain`` sees them."""
    net = build(backend, device)
    x = batches(device)[0]
    forward(net, x)
    torch_dynamo.reset()
    functional.reset_net(net)
    explanation = torch_dynamo.explain(net)(x)
    return explanation.graph_count, explanation.graph_break_count


def check_compiled_matches_eager(
    backend: str, device: str, compile_backend: str, n_batches: int = 2, **options: object
) -> tuple[int, int]:
    """Compile (cold: no eager call first) and compare with eager over ``n_batches`` batches.

    Returns:
        ``(graphs compiled, graph breaks)`` counted by Dynamo over the compiled calls.
    """
    eager_net, compiled_net = build(backend, device), build(backend, device)
    xs = batches(device)[:n_batches]
    torch_dynamo.reset()
    counters = torch_dynamo.utils.counters
    counters.clear()
    compiled = compiled_forward(compiled_net, backend=compile_backend, **options)
    for x in xs:  # the second batch reuses (or re-checks the guards of) the compiled code
        want = train_step(lambda inp: forward(eager_net, inp), eager_net, x)
        got = train_step(compiled, compiled_net, x)
        compare(want, got)
    spikes = _spikes_of(eager_net, xs[-1])
    assert all(s.sum() > 0 for s in spikes), "a silent layer would make the comparison vacuous"
    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))


def test_aot_eager_matches_eager(backend_device: tuple[str, str], record_property) -> None:
    backend, device = backend_device
    graphs, breaks = check_compiled_matches_eager(backend, device, "aot_eager")
    record_property(f"{backend}-{device}-graphs", graphs)
    record_property(f"{backend}-{device}-graph-breaks", breaks)
    print(f"\n[{backend}/{device} aot_eager, 2 batches] graphs compiled={graphs} graph breaks={breaks}")


def test_triton_network_traces_as_one_graph(backend_device: tuple[str, str]) -> None:
    """After one eager call (kernels imported, configs cached) the whole network is one graph."""
    backend, device = backend_device
    if backend != "triton":
        pytest.skip("only the triton kernels are custom operators")
    assert count_graph_breaks(backend, device) == (1, 0)
    net = build(backend, device)
    eager_net = build(backend, device)
    xs = batches(device)
    forward(net, xs[0])
    torch_dynamo.reset()
    compiled = compiled_forward(net, backend="aot_eager", fullgraph=True)
    for x in xs:
        compare(train_step(lambda inp: forward(eager_net, inp), eager_net, x), train_step(compiled, net, x))


def test_reset_net_in_a_compiled_step_does_not_depend_on_other_networks() -> None:
    def small() -> torch.nn.Sequential:
        net = torch.nn.Sequential(layer.Linear(3, 4), neuron.LIFNode(step_mode="m"))
        functional.set_step_mode(net, "m")
        return net

    net = small()
    x = torch.rand(4, 2, 3)
    torch_dynamo.reset()
    counters = torch_dynamo.utils.counters
    counters.clear()
    step = torch.compile(lambda inp: forward(net, inp), backend="eager")
    want = forward(net, x)
    assert torch.equal(step(x), want) and torch.equal(step(x), want)
    graphs = counters["stats"]["unique_graphs"]
    other = small()
    functional.reset_net(other)  # an unrelated network enters reset_net's cache
    assert torch.equal(step(x), want)
    del other
    gc.collect()
    assert torch.equal(step(x), want)
    assert counters["stats"]["unique_graphs"] == graphs, "the compiled step recompiled because of another network"


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
def test_inductor_matches_eager_on_torch(record_property) -> None:
    graphs, breaks = check_compiled_matches_eager("torch", "cpu", "inductor", n_batches=1)
    record_property("torch-cpu-inductor-graph-breaks", breaks)
    print(f"\n[torch/cpu inductor, 1 batch] graphs compiled={graphs} graph breaks={breaks}")
