"""Exact checkpoints: copies, pickles, ``torch.save`` and state dicts of spiking networks.

What is promised (and what the docs say):

- ``copy.deepcopy``, ``pickle`` and ``torch.save`` / ``torch.load(weights_only=False)`` of a
  whole network keep its parameters *and* its neuron state (memories such as ``v``, the
  ``v_seq`` of ``store_v_seq``, OTTT traces), step mode and backend; right after a training
  forward, state tensors that still carry an autograd graph are copied as detached values and
  the original keeps its graph (it can still be back-propagated).
- ``state_dict`` / ``load_state_dict`` round-trip the parameters (PLIF's ``w`` included) but not
  the neuron state: memories are not parameters or buffers. Save them with
  ``snn.base.extract_memories`` and restore them with ``snn.base.load_memories``.
- Splitting a sequence is exact: T steps in one call equal T/2 steps, a checkpoint (state dict
  + memories) loaded into a fresh network, and the other T/2 steps, bit for bit in spikes and
  potentials. For gradients, "identical" means truncated back-propagation: the second half's
  gradients with respect to the parameters, given the carried state as a constant, equal those of
  one network whose state is detached (``snn.functional.detach_net``) at the split; the full
  BPTT gradient differs from it by exactly the part flowing through the carried state, which
  the test reconstructs with the chain rule.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from if_lif_plif import family_serves

from snn import functional, layer, neuron
from snn.base import extract_memories, load_memories, named_memories
from snn.plugins import get_registry

T = 6
BATCH = 3
FEATURES = 5


def _kinds(backend: str) -> set[str]:
    info = get_registry().backend(backend)
    return {kind for kind in ("if", "lif", "plif") if family_serves(info, kind)}


def build_network(backend: str = "torch", device: str = "cpu", seed: int = 0, store_v_seq: bool = False) -> torch.nn.Sequential:
    """``Linear -> IF -> Linear -> LIF -> Linear -> PLIF`` in multi-step mode.

    Each neuron runs on ``backend`` when it serves that neuron kind, else on torch.
    """
    kinds = _kinds(backend)

    def pick(kind: str) -> str:
        return backend if kind in kinds else "torch"

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        layer.Linear(FEATURES, 7),
        neuron.IFNode(v_threshold=0.6, step_mode="m", backend=pick("if"), store_v_seq=store_v_seq),
        layer.Linear(7, 6),
        neuron.LIFNode(tau=2.5, v_threshold=0.4, v_reset=None, step_mode="m", backend=pick("lif"), store_v_seq=store_v_seq),
        layer.Linear(6, 4),
        neuron.ParametricLIFNode(init_tau=2.0, v_threshold=0.3, v_reset=-0.1, step_mode="m", backend=pick("plif")),
    )
    functional.set_step_mode(net, "m")
    with torch.no_grad():
        for linear in (net[0], net[2], net[4]):  # lively layers: every neuron layer spikes
            linear.weight.mul_(2.0)
            linear.bias.add_(0.25)
        net[5].w.fill_(0.3)  # not the initial value: a copy must keep the trained one
    return net.to(device)


def _inputs(device: str, steps: int = T, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, BATCH, FEATURES, generator=gen) * 2.0).to(device)


def _roundtrip(how: str) -> Callable[[Any], Any]:
    def via_pickle(obj: Any) -> Any:
        return pickle.loads(pickle.dumps(obj))

    def via_torch_save(obj: Any) -> Any:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=False)

    return {"deepcopy": copy.deepcopy, "pickle": via_pickle, "torch.save": via_torch_save}[how]


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    ma, mb = dict(named_memories(a)), dict(named_memories(b))
    assert ma.keys() == mb.keys()
    for key in ma:
        va, vb = ma[key], mb[key]
        if isinstance(va, torch.Tensor):
            assert isinstance(vb, torch.Tensor), key
            assert torch.equal(va.detach(), vb), key
            assert va.dtype == vb.dtype and va.device == vb.device
        else:
            assert va == vb, key


HOW = ["deepcopy", "pickle", "torch.save"]


# ---------------------------------------------------------------------------------------------
# whole-network copies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_copy_after_training_forward_keeps_parameters_and_state(how: str, backend_device: tuple[str, str]) -> None:
    backend, device = backend_device
    net = build_network(backend, device, store_v_seq=True)
    out = net(_inputs(device))  # training mode: every state carries a graph
    assert all(isinstance(v, torch.Tensor) and v.grad_fn is not None for v in extract_memories(net))
    assert net[1].v_seq is not None and net[1].v_seq.grad_fn is not None

    clone = _roundtrip(how)(net)

    _assert_same_state(net, clone)
    for value in extract_memories(clone):
        assert not value.requires_grad and value.grad_fn is None
    assert torch.equal(clone[1].v_seq, net[1].v_seq.detach()) and not clone[1].v_seq.requires_grad
    assert [m.backend for m in clone if isinstance(m, neuron.BaseNode)] == [
        m.backend for m in net if isinstance(m, neuron.BaseNode)
    ]
    assert all(m.step_mode == "m" for m in clone if isinstance(m, neuron.BaseNode))
    assert clone[3].surrogate_function is not net[3].surrogate_function
    # the original keeps its graph: it can still be trained
    out.sum().backward()
    assert net[0].weight.grad is not None and net[5].w.grad is not None
    # the copy owns its state: writing to it leaves the original alone
    before = net[3].v.detach().clone()
    clone[3].v.add_(100.0)
    assert torch.equal(net[3].v.detach(), before)


@pytest.mark.parametrize("how", HOW)
def test_copy_continues_exactly_like_the_original(how: str, backend_device: tuple[str, str]) -> None:
    """After the copy, the next sequence gives identical spikes, states and gradients."""
    backend, device = backend_device
    net = build_network(backend, device)
    net(_inputs(device, seed=2))
    clone = _roundtrip(how)(net)
    functional.detach_net(net)
    x = _inputs(device, seed=3)
    y_net, y_clone = net(x), clone(x)
    assert torch.equal(y_net, y_clone)
    _assert_same_state(net, clone)
    (y_net * torch.arange(1, 5, device=device)).sum().backward()
    (y_clone * torch.arange(1, 5, device=device)).sum().backward()
    for (name, p), q in zip(net.named_parameters(), clone.parameters()):
        assert torch.equal(p.grad, q.grad), name


@pytest.mark.parametrize("how", HOW)
def test_copy_of_fresh_and_reset_networks(how: str) -> None:
    """Before the first forward the state is a number; reset returns a copy to it too."""
    net = build_network()
    clone = _roundtrip(how)(net)
    assert extract_memories(clone) == [0.0, 0.0, -0.1] == extract_memories(net)
    net(_inputs("cpu"))
    functional.reset_net(net)
    clone = _roundtrip(how)(net)
    _assert_same_state(net, clone)
    x = _inputs("cpu", seed=4)
    assert torch.equal(net(x), clone(x))


@pytest.mark.parametrize("how", HOW)
def test_copy_of_an_ottt_network_keeps_the_trace(how: str) -> None:
    snn_online = pytest.importorskip("snn_online")
    torch.manual_seed(0)
    net = snn_online.OTTTSequential(layer.Linear(4, 5), snn_online.OTTTLIFNode(v_threshold=0.3), layer.Linear(5, 2))
    x = torch.rand(3, 4) * 2
    for _ in range(2):
        net(x)
    memories = dict(named_memories(net))
    assert set(memories) == {"1.v", "1.trace"} and memories["1.trace"] is not None
    clone = _roundtrip(how)(net)
    _assert_same_state(net, clone)
    assert torch.equal(net(x), clone(x))
    _assert_same_state(net, clone)


# ---------------------------------------------------------------------------------------------
# state_dict: parameters only
# ---------------------------------------------------------------------------------------------


def test_state_dict_round_trip_keeps_parameters_but_not_neuron_state() -> None:
    net = build_network()
    net(_inputs("cpu"))
    state = net.state_dict()
    assert "5.w" in state and float(state["5.w"]) == pytest.approx(0.3)
    # neuron state is not part of the state dict
    memory_names = {name for name, _ in named_memories(net)}
    assert memory_names == {"1.v", "3.v", "5.v"}
    assert not memory_names & set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = build_network(seed=99)
    assert not torch.equal(fresh[0].weight, net[0].weight)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))  # strict: no missing or extra keys
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # the fresh network's neurons are still at rest
    assert extract_memories(fresh) == [0.0, 0.0, -0.1]
    functional.reset_net(net)
    x = _inputs("cpu", seed=5)
    assert torch.equal(fresh(x), net(x))


# ---------------------------------------------------------------------------------------------
# splitting a sequence across a checkpoint
# ---------------------------------------------------------------------------------------------


def _checkpoint(net: torch.nn.Module) -> bytes:
    """Parameters and (detached) memories, serialised as a training script would."""
    buffer = io.BytesIO()
    memories = [v.detach() if isinstance(v, torch.Tensor) else v for v in extract_memories(net)]
    torch.save({"model": net.state_dict(), "memories": memories}, buffer)
    return buffer.getvalue()


def _restore(blob: bytes, backend: str, device: str) -> torch.nn.Sequential:
    saved = torch.load(io.BytesIO(blob), weights_only=True)
    fresh = build_network(backend, device, seed=123)
    fresh.load_state_dict(saved["model"])
    load_memories(fresh, saved["memories"])
    return fresh


def _loss(y: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(0.5, 2.0, y.shape[-1], device=y.device)
    return (y * weights).sum() + 0.1 * (y.sum(0) ** 2).sum()


def _layer_outputs(net: torch.nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every layer of ``net`` on ``x`` (the input of layer ``i + 1`` is entry ``i``)."""
    outputs = []
    for module in net:
        x = module(x)
        outputs.append(x)
    return outputs


def test_split_sequence_forward_is_bit_identical(backend_device: tuple[str, str]) -> None:
    """Every layer, given the same inputs, computes the same values whether split or not.

    The neuron layers must be bit-identical: with identical inputs they run the same
    element-wise arithmetic step by step. The ``Linear`` layers are not held to bit identity: a
    ``[T, N, F]`` input is one matrix multiply of ``T*N`` rows here and two of ``T*N/2`` rows
    when split, and BLAS may block and vectorise different shapes differently (seen on AVX-512
    CPUs: 2.5e-8 apart). So each layer of the split run is fed the unsplit run's input of that
    layer, and a ``Linear``'s output is compared with a float32 tolerance.
    """
    backend, device = backend_device
    x = _inputs(device, steps=T, seed=7)
    whole = build_network(backend, device)
    outputs_whole = _layer_outputs(whole, x)
    inputs_whole = [x, *outputs_whole[:-1]]
    assert outputs_whole[-1].sum() > 0, "no spikes at all: the comparison would be vacuous"

    first = build_network(backend, device)
    first_halves = [module(layer_input[: T // 2]) for module, layer_input in zip(first, inputs_whole)]
    resumed = _restore(_checkpoint(first), backend, device)
    second_halves = [module(layer_input[T // 2:]) for module, layer_input in zip(resumed, inputs_whole)]
    for index, (module, expected) in enumerate(zip(whole, outputs_whole)):
        split = torch.cat([first_halves[index], second_halves[index]])
        if isinstance(module, torch.nn.Linear):
            # other matrix shapes: BLAS may round differently (see the docstring)
            torch.testing.assert_close(split, expected, rtol=1e-6, atol=1e-6, msg=f"layer {index}")
        else:
            assert torch.equal(split, expected), f"layer {index} ({type(module).__name__})"
    for (name, a), (_, b) in zip(named_memories(whole), named_memories(resumed)):
        assert torch.equal(a.detach(), b.detach()), name


def test_split_sequence_gradients_are_truncated_bptt_exactly(backend_device: tuple[str, str]) -> None:
    backend, device = backend_device
    x = _inputs(device, steps=T, seed=8)
    half = T // 2

    # one network, state detached at the split: truncated BPTT of the second half
    truncated = build_network(backend, device)
    truncated(x[:half])
    functional.detach_net(truncated)
    _loss(truncated(x[half:])).backward()

    # a fresh network resumed from a checkpoint taken at the split
    first = build_network(backend, device)
    first(x[:half])
    resumed = _restore(_checkpoint(first), backend, device)
    _loss(resumed(x[half:])).backward()
    for (name, p), q in zip(truncated.named_parameters(), resumed.parameters()):
        assert p.grad is not None and q.grad is not None, name
        assert torch.equal(p.grad, q.grad), name

    # full BPTT of the same second-half loss = truncated part + the part through the carried state
    full = build_network(backend, device)
    full(x[:half])
    carried = extract_memories(full)
    second_loss = _loss(full(x[half:]))
    params = list(full.parameters())
    full_grads = torch.autograd.grad(second_loss, params + carried)
    full_param_grads, state_grads = full_grads[: len(params)], full_grads[len(params):]

    # gradient w.r.t. the carried state: the resumed network with the memories as leaves
    leaves = [v.detach().clone().requires_grad_() for v in carried]
    probe = _restore(_checkpoint(first), backend, device)
    load_memories(probe, leaves)
    probe_grads = torch.autograd.grad(_loss(probe(x[half:])), leaves)
    for a, b in zip(state_grads, probe_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    # chain rule: d(second loss)/d(params via state) = J_state^T . state_grads
    first_again = build_network(backend, device)
    first_again(x[:half])
    through_state = torch.autograd.grad(
        extract_memories(first_again), list(first_again.parameters()), grad_outputs=list(state_grads), allow_unused=True
    )
    differs = False
    for name_p, full_g, trunc_p, via in zip(
        [n for n, _ in full.named_parameters()], full_param_grads, truncated.parameters(), through_state
    ):
        expected = trunc_p.grad + (via if via is not None else 0.0)
        torch.testing.assert_close(full_g, expected, rtol=1e-5, atol=1e-6, msg=name_p)
        differs |= not torch.allclose(full_g, trunc_p.grad, rtol=1e-4, atol=1e-6)
    assert differs, "full and truncated BPTT agree: the carried state had no influence to test"
