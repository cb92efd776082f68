"""The generated kernels against the torch backend, for every registered model and the synthetic ones.

The conformance suite (test_conformance.py) compares the same matrix with a float64 autograd
loop; here the reference is the torch backend on the same float32 inputs, which also fixes the
NaN / infinity semantics, plus the reference page's worked values and the kernel's own
promises (what training saves, deterministic learnable gradients, several programs).
"""

from __future__ import annotations

import pytest
import torch
from snn_triton_test_helpers import (
    DEVICE,
    SYNTHETIC_MODELS,
    all_model_names,
    assert_close_outputs,
    config_variants,
    make_inputs,
    outputs_and_gradients,
    surrogate_spec,
)

from snn.backends.torch import multi_step as torch_multi_step
from snn.models import evaluate_charge, kernel_plan
from snn.plugins import get_registry
from snn.surrogate import ATan, Sigmoid
from snn_triton import ops
from snn_triton.multistep import multi_step

pytestmark = pytest.mark.usefixtures("triton_ready", "synthetic_models")

MODELS = all_model_names()


def model_named(name):
    return SYNTHETIC_MODELS.get(name) or get_registry().model(name)


def labels(config):
    names = config.model.state_names
    return ["spikes", *(f"last {n}" for n in names), *(f"seq {n}" for n in names), "grad x",
            *(f"grad state {n}" for n in names), *(f"grad {p}" for p in config.model.learnables)]


def upstream_for(config, shape, seed=3):
    """Upstream gradients on a 1/8 grid (exact in every dtype)."""
    gen = torch.Generator().manual_seed(seed)
    m = len(config.model.states)

    def grid(size):
        return torch.randint(-8, 8, size, generator=gen).float() / 8

    return {"spikes": grid(shape), "last": [grid(shape[1:]) for _ in range(m)], "seqs": [grid(shape) for _ in range(m)]}


def compare_with_torch(config, x, states, learnables, given=("spikes", "last", "seqs"), rtol=1e-5, atol=1e-5):
    upstream = upstream_for(config, tuple(x.shape))
    got = outputs_and_gradients(multi_step, config, x, states, learnables, upstream, given)
    want = outputs_and_gradients(torch_multi_step, config, x, states, learnables, upstream, given)
    assert_close_outputs(got, want, labels(config), rtol, atol)


VARIANTS = [
    pytest.param(name, variant, id=f"{name}-{variant}")
    for name in MODELS
    for variant, _ in config_variants(model_named(name))
]


@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_matches_the_torch_backend(name, variant):
    config = dict(config_variants(model_named(name)))[variant]
    compare_with_torch(config, *make_inputs(config, (6, 37), seed=sum(map(ord, variant))))


@pytest.mark.parametrize("surrogate", get_registry().backend("torch").claimed_surrogates())
def test_every_claimed_surrogate_on_a_two_state_model(surrogate):
    config = SYNTHETIC_MODELS["twostate"].config(surrogate_spec(surrogate), v_reset=None)
    compare_with_torch(config, *make_inputs(config, (4, 19), seed=5))


@pytest.mark.parametrize(
    "given", [("last:1",), ("seqs:0",), ("spikes", "last:0")], ids=["last-c-only", "seq-v-only", "spikes-last-v"]
)
def test_gradients_through_some_states_only(given):
    config = SYNTHETIC_MODELS["twostate"].config(ATan().spec, detach_reset=True)
    compare_with_torch(config, *make_inputs(config, (5, 23), seed=8), given=given)


@pytest.mark.parametrize("name", ["lif", "twostate"])
@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (4, 2, 3, 5), (3, 0)], ids=str)
def test_edge_shapes(name, shape):
    config = model_named(name).config(ATan().spec, v_reset=-0.2)
    compare_with_torch(config, *make_inputs(config, shape, seed=2))


@pytest.mark.parametrize("name", ["plif", "twostate", "clipin"])
def test_several_programs(name, monkeypatch):
    """Blocks of 16 neurons: 3 programs for 37 neurons, the last one masked; learnable partial sums."""
    if DEVICE == "cuda":
        pytest.skip("the block size is chosen by the GPU heuristic on CUDA")
    monkeypatch.setattr(ops, "INTERPRETER_MAX_BLOCK", 16)
    assert ops.launch_config(37, torch.device("cpu"))[0] == 16
    config = model_named(name).config(ATan().spec, v_reset=None)
    compare_with_torch(config, *make_inputs(config, (4, 37), seed=3))


@pytest.mark.parametrize("name", ["plif", "twostate"])
def test_non_contiguous_states_are_read_right_and_kept(name):
    config = model_named(name).config(ATan().spec, v_reset=-0.1)
    x, states, learnables = make_inputs(config, (5, 4, 9), seed=11)
    x = x.transpose(1, 2)
    states = [torch.full((), 0.1 * (i + 1), device=DEVICE).expand(9, 4) for i in range(len(states))]
    states[0] = (torch.rand(4, 9, generator=torch.Generator().manual_seed(1)) * 0.5).to(DEVICE).t()
    assert not x.is_contiguous() and not any(s.is_contiguous() for s in states)
    before = [t.clone() for t in (x, *states)]
    compare_with_torch(config, x, states, learnables)
    assert all(torch.equal(a, b) for a, b in zip(before, (x, *states)))


@pytest.mark.parametrize("name", ["plif", "twostate", "clipin"])
def test_learnable_gradients_are_deterministic(name):
    config = model_named(name).config(ATan().spec, v_reset=None)
    x, states, learnables = make_inputs(config, (6, 300), seed=8)
    w = [p.clone().requires_grad_() for p in learnables]
    grads = []
    for _ in range(2):
        spikes, last, _ = multi_step(x, tuple(states), config, learnables=tuple(w))
        grads.append(torch.autograd.grad(spikes.sum() + sum(v.sum() for v in last), w))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("name", MODELS)
def test_training_saves_what_the_plan_names_and_inference_nothing(name):
    """The op saves the float32 charged values of the plan's saved states (equal to the charge
    of the kernel's own states, recomputed with torch); inference saves nothing and gives the
    same outputs bit for bit."""
    config = model_named(name).config(ATan().spec)
    plan = kernel_plan(config)
    x, states, learnables = make_inputs(config, (5, 11), seed=4)
    encoded = ops.encode_config(config)
    args = (x, states, learnables, encoded)
    infer = torch.ops.snn_triton.multi_step_forward(*args, False, True)
    train = torch.ops.snn_triton.multi_step_forward(*args, True, True)
    assert infer[3] == [] and len(train[3]) == len(plan.saved_states)
    assert torch.equal(infer[0], train[0])
    assert all(torch.equal(a, b) for a, b in zip(infer[1] + infer[2], train[1] + train[2]))
    names = config.model.state_names
    previous = dict(zip(names, states))
    params = dict(zip(config.model.learnables, learnables))
    for t in range(x.shape[0]):
        charged = evaluate_charge(config.model, config.hyper, x[t], previous, params)
        for j, saved in zip(plan.saved_states, train[3]):
            assert saved.dtype == torch.float32
            torch.testing.assert_close(saved[t], charged[names[j]].float(), rtol=1e-6, atol=1e-6)
        previous = {n: seq[t] for n, seq in zip(names, train[2])}
    with torch.no_grad():
        out = multi_step(x.requires_grad_(), tuple(states), config, learnables=tuple(learnables), store_state_seqs=True)
    assert out[0].grad_fn is None and all(v.grad_fn is None for v in out[1] + out[2])


def test_backward_of_an_inference_call_is_a_clear_error():
    config = model_named("if").config(ATan().spec)
    x = torch.rand(3, 4, device=DEVICE, requires_grad=True)
    spikes = torch.ops.snn_triton.multi_step_forward(
        x, [torch.zeros(4, device=DEVICE)], [], ops.encode_config(config), False, False
    )[0]
    with pytest.raises(RuntimeError, match="save=False"):
        spikes.sum().backward()


# -- the reference page's worked values (section 7.2) ----------------------------------------


def test_reference_if_values():
    config = model_named("if").config(Sigmoid().spec)
    x = torch.tensor([[0.6], [0.6], [0.6], [1.2]], device=DEVICE, requires_grad=True)
    spikes, (v_last,), _ = multi_step(x, (torch.zeros(1, device=DEVICE),), config)
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v_last.item() == 0.0
    (grad,) = torch.autograd.grad(spikes.sum(), x)
    torch.testing.assert_close(
        grad.flatten().cpu(), torch.tensor([0.677951, 0.178907, 0.659091, 0.150527]), rtol=0, atol=2e-6
    )


def test_reference_lif_values():
    config = model_named("lif").config(ATan(alpha=2.0).spec, tau=2.0, v_reset=None)
    x = torch.tensor([[1.5], [1.5], [1.5], [0.0]], device=DEVICE, requires_grad=True)
    spikes, (v_last,), (v_seq,) = multi_step(x, (torch.zeros(1, device=DEVICE),), config, store_state_seqs=True)
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert v_seq.flatten().tolist() == [0.75, 0.125, 0.8125, 0.40625]
    (grad,) = torch.autograd.grad(spikes.sum() + v_last.sum(), x)
    torch.testing.assert_close(
        grad.flatten().cpu(), torch.tensor([0.397429, 0.462296, 0.435601, 0.5]), rtol=0, atol=2e-6
    )


def test_reference_plif_values():
    config = model_named("plif").config(Sigmoid().spec)
    w = torch.tensor(0.0, device=DEVICE, requires_grad=True)  # init_tau = 2: w = -ln(1) = 0
    x = torch.tensor([[1.5], [0.5], [2.5]], device=DEVICE, requires_grad=True)
    spikes, _, _ = multi_step(x, (torch.zeros(1, device=DEVICE),), config, learnables=(w,))
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0]
    grad_x, grad_w = torch.autograd.grad(spikes.sum(), (x, w))
    torch.testing.assert_close(grad_w.cpu(), torch.tensor(0.466804), rtol=0, atol=2e-6)
    torch.testing.assert_close(
        grad_x.flatten().cpu(), torch.tensor([0.465492, 0.352388, 0.172516]), rtol=0, atol=2e-6
    )


# -- NaN and infinities ------------------------------------------------------------------------

#: Which upstream gradients a backward pass receives (the others are absent).
_GRADIENT_SETS = (("spikes", "last", "seqs"), ("last",), ("seqs",), ("spikes",), ("spikes", "last:0"))

NONFINITE = [
    pytest.param(name, variant, id=f"{name}-{variant}")
    for name in MODELS
    for variant, _ in config_variants(model_named(name))
    if variant.startswith(("hard-nodetach", "soft-detach", "default"))
]


def _nonfinite_inputs(config):
    """``[T=4, N=12 + 3 per extra state]`` on a 1/8 grid: NaN, +inf, -inf in ``x`` (columns
    0-5) and in each state (three columns per state after those)."""
    nan, inf = float("nan"), float("inf")
    m = len(config.model.states)
    n = 9 + 3 * m
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-6, 14, (4, n), generator=gen).float() / 8
    x[0, 0], x[2, 1], x[0, 2], x[1, 3], x[0, 4], x[3, 5] = nan, nan, inf, inf, -inf, -inf
    states = []
    for i in range(m):
        s = torch.randint(-4, 8, (n,), generator=gen).float() / 8
        s[6 + 3 * i], s[7 + 3 * i], s[8 + 3 * i] = nan, inf, -inf
        states.append(s.to(DEVICE))
    learnables = [torch.tensor(0.75, device=DEVICE) for _ in config.model.learnables]
    return x.to(DEVICE), states, learnables


# (torch warns about nothing here; the interpreter's numpy warnings are filtered in conftest)
@pytest.mark.parametrize(("name", "variant"), NONFINITE)
def test_nonfinite_inputs_match_the_torch_backend(name, variant):
    """NaN / inf in the input and the states: spikes equal the torch backend's; states and every
    gradient NaN / infinite exactly where torch's are, also when upstream gradients are absent
    (an absent one must not turn ``0 * inf`` into NaN), and close elsewhere."""
    config = dict(config_variants(model_named(name)))[variant]
    x, states, learnables = _nonfinite_inputs(config)
    upstream = upstream_for(config, tuple(x.shape))
    for given in _GRADIENT_SETS:
        got = outputs_and_gradients(multi_step, config, x, states, learnables, upstream, given)
        want = outputs_and_gradients(torch_multi_step, config, x, states, learnables, upstream, given)
        assert_close_outputs(got, want, [f"{label} ({given})" for label in labels(config)], 1e-5, 1e-5)


@pytest.mark.parametrize("k_value", [1.0, -1.0])
def test_condition_joining_a_learnable_and_the_input(k_value: float) -> None:
    """``where((k >= 0) & (x > 0.1), x, 0)`` with a learnable ``k``: its comparison is a scalar
    (the kernel's prologue) joined with a [BLOCK] one; spikes, states and gradients equal the
    torch backend's (the interpreter refused a scalar bool & a vector bool)."""
    from snn.models import THRESHOLD_AND_RESET, NeuronModel, State

    def charge(x, u, p, ops):
        return {"v": u.v * 0.5 + ops.where((p.k >= 0.0) & (x > 0.1), x * p.k, 0.25) + ops.where(x < 2.0, 0.0, x)}

    model = NeuronModel("gated_by_k_triton", (State("v", "v_reset"),), THRESHOLD_AND_RESET, charge, learnables=("k",))
    config = model.config(Sigmoid().spec, v_threshold=1.0)
    torch.manual_seed(0)
    x = (torch.rand(4, 24) * 2.5 - 0.2).requires_grad_()
    v0 = torch.rand(24) * 0.4
    k = torch.tensor(k_value, requires_grad=True)
    got = multi_step(x, (v0,), config, learnables=(k,), store_state_seqs=True)
    want = torch_multi_step(x, (v0,), config, learnables=(k,), store_state_seqs=True)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[2][0], want[2][0])
    g_got = torch.autograd.grad(got[0].sum() + got[2][0].sum(), (x, k))
    g_want = torch.autograd.grad(want[0].sum() + want[2][0].sum(), (x, k))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)
