"""QIF, EIF, Izhikevich, KLIF and CUBA-LIF neurons.

Checked against: an independent plain PyTorch loop of each model's equations written out below
(float64 and float32, both step modes); golden values of SpikingJelly 2.0.0 (produced by
``make_sj_golden_neuron_models.py`` next to this file); SpikingJelly's constructor signatures;
and the neuron's own autograd path (the same model through ``snn.models``, without kernels).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from snn import neuron, surrogate
from snn.backends.torch import multi_step
from snn.models import THRESHOLD_AND_RESET, HyperParameter, NeuronModel, State, kernel_plan
from snn.plugins import get_registry

CLASSES = {
    "qif": neuron.QIFNode,
    "eif": neuron.EIFNode,
    "izhikevich": neuron.IzhikevichNode,
    "klif": neuron.KLIFNode,
    "cubalif": neuron.CUBALIFNode,
}
STATES = {"qif": ("v",), "eif": ("v",), "izhikevich": ("v", "w"), "klif": ("v",), "cubalif": ("v", "c")}


# -- the plain loop: every model's equations, written out -------------------------------------------


def plain_step(name, hp, x, st, k, sf, detach):
    """One step of model ``name`` with hyper-parameters ``hp``: ``(spike, new states)``."""
    v_reset, v_threshold = hp["v_reset"], hp["v_threshold"]

    def reset(h, s, threshold=v_threshold):
        s = s.detach() if detach else s
        return h - s * threshold if v_reset is None else s * v_reset + (1.0 - s) * h

    v = st["v"]
    if name == "qif":
        h = v + (x + hp["a0"] * (v - hp["v_rest"]) * (v - hp["v_c"])) / hp["tau"]
    elif name == "eif":
        h = v + (x + hp["v_rest"] - v + hp["delta_T"] * torch.exp((v - hp["theta_rh"]) / hp["delta_T"])) / hp["tau"]
    elif name == "izhikevich":
        h = v + (x + hp["a0"] * (v - hp["v_rest"]) * (v - hp["v_c"]) - st["w"]) / hp["tau"]
    elif name == "klif":
        vr = 0.0 if v_reset is None else v_reset
        c = v + (x - (v - vr)) / hp["tau"] if hp["decay_input"] else v - (v - vr) / hp["tau"] + x
        h = torch.relu(k * c)
    else:
        current = st["c"] * hp["c_decay"] + x
        h = v * hp["v_decay"] + current
    s = sf(h - v_threshold)
    if name == "izhikevich":
        w = st["w"] + (hp["a"] * (h - hp["v_rest"]) - st["w"]) / hp["tau_w"] + hp["b"] * s
        return s, {"v": reset(h, s), "w": w}, h
    if name == "klif" and hp["scale_reset"]:
        return s, {"v": reset(h / k, s, v_threshold / k)}, h
    if name == "cubalif":
        return s, {"v": reset(h, s), "c": current}, h
    return s, {"v": reset(h, s)}, h


def plain_loop(name, hp, x_seq, states, k, sf, detach):
    """The whole sequence: spikes ``[T, *]``, last states, ``v`` sequence, and the smallest
    distance of a charged potential to the threshold (a tie could round either way)."""
    spikes, potentials, margin = [], [], float("inf")
    for x in x_seq:
        s, states, h = plain_step(name, hp, x, states, k, sf, detach)
        margin = min(margin, (h - hp["v_threshold"]).abs().min().item())
        spikes.append(s)
        potentials.append(states["v"])
    return torch.stack(spikes), states, torch.stack(potentials), margin


# -- cases ---------------------------------------------------------------------------------------

#: (model, hyper-parameters given to the constructor, surrogate, detach_reset, KLIF's k)
CASES = [
    ("qif", {}, "Sigmoid", False, None),
    ("qif", {"v_reset": None, "v_rest": -0.05}, "ATan", True, None),
    ("qif", {"tau": 3.0, "v_c": 0.5, "a0": 0.7, "v_threshold": 0.9, "v_rest": -0.05, "v_reset": -0.2}, "Rect", False, None),
    ("eif", {}, "Sigmoid", False, None),
    ("eif", {"v_reset": None}, "ATan", True, None),
    ("eif", {"tau": 3.0, "delta_T": 0.5, "theta_rh": 0.6, "v_threshold": 0.9, "v_rest": -0.05, "v_reset": -0.2}, "Sigmoid", False, None),
    ("izhikevich", {}, "Sigmoid", False, None),
    ("izhikevich", {"a": 0.3, "b": 0.2}, "Sigmoid", True, None),
    ("izhikevich", {"a": 0.3, "b": 0.2, "v_reset": None, "tau_w": 3.0, "w_rest": 0.1}, "ATan", False, None),
    ("izhikevich", {"a": -0.2, "b": 0.5, "v_reset": -0.2, "v_threshold": 0.8, "tau": 3.0}, "Rect", False, None),
    ("klif", {}, "Sigmoid", False, 1.3),
    ("klif", {"scale_reset": True}, "Sigmoid", True, 0.8),
    ("klif", {"scale_reset": True, "v_reset": None, "decay_input": False}, "ATan", False, 1.3),
    ("klif", {"decay_input": False, "v_reset": -0.3, "v_threshold": 0.7, "tau": 3.0}, "Sigmoid", False, 1.0),
    ("cubalif", {}, "Rect", False, None),
    ("cubalif", {"v_reset": None}, "Sigmoid", True, None),
    ("cubalif", {"c_decay": 0.8, "v_decay": 0.9, "v_reset": -0.2, "v_threshold": 1.0}, "ATan", False, None),
    ("cubalif", {"v_reset": -0.1}, "Sigmoid", True, None),
]


def case_id(case):
    name, hyper, sg, detach, _ = case
    return f"{name}-{'-'.join(f'{k}={v}' for k, v in hyper.items()) or 'defaults'}-{sg}{'-detach' if detach else ''}"


def build(case, surrogate_function=None, **kwargs):
    name, hyper, sg, detach, k = case
    sf = getattr(surrogate, sg)() if surrogate_function is None else surrogate_function
    node = CLASSES[name](**hyper, surrogate_function=sf, detach_reset=detach, **kwargs)
    if k is not None:
        with torch.no_grad():
            node.k.fill_(k)
    return node


def hyperparameters(node):
    return {h: getattr(node, h) for h in type(node).model.hyperparameter_names}


def reference_hyperparameters(case):
    """SpikingJelly's defaults (:data:`SJ_SIGNATURES`) updated with the case's arguments."""
    name, hyper = case[0], case[1]
    return {**{n: d for n, d in SJ_SIGNATURES[name] if d is not _SURROGATE}, **hyper}


def inputs(name, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(8, 3, 5, generator=g, dtype=torch.float64) * 1.6 - 0.3).to(dtype)
    states = {n: (torch.rand(3, 5, generator=g, dtype=torch.float64) * 0.6 - 0.2).to(dtype) for n in STATES[name]}
    weights = [torch.rand(8, 3, 5, generator=g, dtype=torch.float64).to(dtype) for _ in range(2 + len(STATES[name]))]
    return x, states, weights


def loss_of(spikes, last, v_seq, weights, names):
    loss = (spikes * weights[0]).sum() + (v_seq * weights[1]).sum()
    for i, n in enumerate(names):
        loss = loss + (last[n] * weights[2 + i][0]).sum()
    return loss


def run_node(node, x, states, step_mode):
    """Spikes, last states and ``v_seq`` of ``node`` from explicit (leaf) initial states."""
    for n, value in states.items():
        setattr(node, n, value)
    spikes = node(x) if step_mode == "m" else torch.stack([node(x[t]) for t in range(x.shape[0])])
    return spikes, {n: getattr(node, n) for n in states}, node.v_seq


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_plain_loop(case, dtype, step_mode):
    check_against_plain_loop(case, dtype, step_mode)


@pytest.mark.parametrize("case", [next(c for c in CASES if c[0] == name) for name in CLASSES], ids=case_id)
def test_cpu_tiles_match_plain_loop(monkeypatch, case):
    """Large layers run in column chunks and tiles of steps (``TILE_ELEMENTS``, shrunk here so
    that 15 neurons make two chunks); two-state models keep one state's charged values and
    recompute the other's, chunk by chunk."""
    from snn.backends import torch_kernels

    monkeypatch.setattr(torch_kernels, "TILE_ELEMENTS", 8)
    monkeypatch.setattr(torch_kernels, "BACKWARD_TILE_ELEMENTS", 8)
    assert torch_kernels.tiles(8, 15, torch.device("cpu"))[1] < 15
    check_against_plain_loop(case, torch.float64, "m")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward_paths_agree(monkeypatch, case):
    """The torch backward takes ``C[t + 1]`` from the tile's own rows (the reset written into
    ``C``) where ``C`` reads the previous states only and there are no learnables, else from
    the next row; both ways give the same gradients, and each model takes the way it may."""
    import dataclasses

    from snn.backends import torch_kernels

    name = case[0]
    node = build(case, step_mode="m", store_v_seq=True).double()
    compiled = torch_kernels.compiled_plan(node.neuron_config())
    assert (compiled.tile_next is not None) == (name != "klif")
    x, states, weights = inputs(name, torch.float64, seed=11)
    # tiles of two steps: both ways carry gradients across tile boundaries
    monkeypatch.setattr(torch_kernels, "BACKWARD_ROWS", 2)
    monkeypatch.setattr(torch_kernels, "BACKWARD_ROWS_ONE_PROGRAM", 2)
    monkeypatch.setattr(torch_kernels, "BACKWARD_TILE_ELEMENTS", 2 * 15)
    assert torch_kernels.tiles(8, 15, torch.device("cpu"), 2, torch_kernels.BACKWARD_TILE_ELEMENTS) == (2, 15)
    results = []
    for general in (False, True):
        if general:
            plain = dataclasses.replace(compiled, tile_next=None, initial=None)
            monkeypatch.setattr(torch_kernels, "compiled_plan", lambda config, plain=plain: plain)
        node.reset()
        xs, ss = x.clone().requires_grad_(), {n: v.clone().requires_grad_() for n, v in states.items()}
        spikes, last, v_seq = run_node(node, xs, ss, "m")
        params = [node.k] if name == "klif" else []
        grads = torch.autograd.grad(loss_of(spikes, last, v_seq, weights, STATES[name]), [xs, *ss.values(), *params])
        results.append(grads)
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


def test_backward_skips_the_gradient_of_a_state_nothing_reads():
    """Izhikevich with ``a = b = 0`` (the default): ``w`` never reaches ``v``, ``x`` or the spike,
    so its gradient is computed only when the loss or the initial ``w`` asks for it; with
    ``a != 0`` it feeds ``v`` and is always computed."""
    from snn.backends.torch_plan import compiled_plan, live_states

    def live(node, spikes=True, seq=(False, False), last=(False, False), u0=(False, False)):
        cp = compiled_plan(node.neuron_config())
        kinds = cp.tile_next.nonzero
        m, mm = 2, 4
        return live_states(m, 0, kinds[1 : 1 + mm], kinds[1 + mm : 1 + 2 * mm], cp.initial.nonzero, kinds[1 + 2 * mm :],
                           spikes, list(seq), list(last), list(u0), False, False, 0)

    plain = neuron.IzhikevichNode(step_mode="m")
    entries = compiled_plan(plain.neuron_config()).tile_next.entries
    assert [kind for kind, _, _ in entries][7] == "none"  # d w / d v = (a / tau_w) d h / d v, a = 0
    assert live(plain) == [True, False]
    assert live(plain, last=(False, True)) == [True, False]  # w's gradient reaches nothing wanted
    assert live(plain, last=(False, True), u0=(False, True)) == [True, True]
    assert live(plain, spikes=False, seq=(False, True), u0=(True, False)) == [False, False]
    coupled = neuron.IzhikevichNode(a=0.3, step_mode="m")
    assert live(coupled) == [True, True]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_tiles_with_some_initial_states_constant(monkeypatch, case):
    """Tiles of two steps, a loss of the spikes only, and only the first state's initial value
    requiring a gradient (the others constant, as a neuron's reset state is): the gradients of
    ``x``, that state and KLIF's ``k`` against the plain loop (float64)."""
    from snn.backends import torch_kernels

    monkeypatch.setattr(torch_kernels, "BACKWARD_ROWS", 2)
    monkeypatch.setattr(torch_kernels, "BACKWARD_ROWS_ONE_PROGRAM", 2)
    monkeypatch.setattr(torch_kernels, "BACKWARD_TILE_ELEMENTS", 2 * 15)
    assert torch_kernels.tiles(8, 15, torch.device("cpu"), 2, torch_kernels.BACKWARD_TILE_ELEMENTS) == (2, 15)
    name = case[0]
    first = STATES[name][0]
    x, states, weights = inputs(name, torch.float64, seed=5)
    node = build(case, step_mode="m").double()
    results = []
    for reference in (False, True):
        xs = x.clone().requires_grad_()
        ss = {n: v.clone().requires_grad_(n == first) for n, v in states.items()}
        if reference:
            k = node.k.detach().clone().requires_grad_() if name == "klif" else None
            sf = getattr(surrogate, case[2])()
            spikes = plain_loop(name, reference_hyperparameters(case), xs, ss, k, sf, case[3])[0]
            params = [k] if k is not None else []
        else:
            spikes = run_node(node, xs, ss, "m")[0]
            params = [node.k] if name == "klif" else []
        results.append(torch.autograd.grad((spikes * weights[0]).sum(), [xs, ss[first], *params]))
    for i, (got, want) in enumerate(zip(*results)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12, msg=lambda m, i=i: f"gradient {i}: {m}")


def check_forward_bit_equal_to_plain_loop(case, x, g, equal_nan=False):
    """The node of ``case`` in float32 over ``x`` ``[T, 2048]``, from initial states drawn from
    ``g``, against :func:`plain_loop`: spikes, ``v_seq`` and last states bit-equal (with
    ``equal_nan``, NaN where the loop's are)."""
    name = case[0]
    states = {n: torch.rand(2048, generator=g) * 0.6 - 0.2 for n in STATES[name]}
    node = build(case, step_mode="m", store_v_seq=True)
    k = node.k.detach().clone() if name == "klif" else None
    with torch.no_grad():
        spikes, last, v_seq = run_node(node, x, {n: v.clone() for n, v in states.items()}, "m")
        sf = getattr(surrogate, case[2])()
        r_spikes, r_last, r_seq, _ = plain_loop(name, reference_hyperparameters(case), x, dict(states), k, sf, case[3])
    exact = {"rtol": 0.0, "atol": 0.0, "equal_nan": equal_nan}
    assert torch.equal(spikes, r_spikes)
    torch.testing.assert_close(v_seq, r_seq, **exact)
    for n in STATES[name]:
        torch.testing.assert_close(last[n], r_last[n], **exact, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_rounds_as_the_plain_loop_float32(case):
    """In float32 the torch kernel's states are bit-equal to the plain loop's, which rounds
    every operation as SpikingJelly does: no fused multiply-add of an inexact product (QIF's
    ``x + u (u - v_c)`` fused into ``addcmul`` gave 10% of the potentials a different last bit,
    and spikes can then differ)."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(16, 2048, generator=g) * 1.4 - 0.1
    check_forward_bit_equal_to_plain_loop(case, x, g)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_keeps_non_finite_values_as_the_plain_loop_float32(monkeypatch, case):
    """Infinite and NaN inputs, in some column chunks only, one at the last step: states and
    spikes bit-equal to the plain loop's, NaN where its are and ``-inf`` where its are (a hard
    reset written as one ``torch.lerp(h, c, s)`` would turn a potential of ``-inf`` into NaN)."""
    from snn.backends import torch_kernels

    monkeypatch.setattr(torch_kernels, "TILE_ELEMENTS", 512)  # four chunks of 512 neurons
    g = torch.Generator().manual_seed(11)
    x = torch.rand(16, 2048, generator=g) * 1.4 - 0.1
    x[3, 5:9] = -math.inf
    x[15, 600] = -math.inf  # at the last step: the last state itself
    x[9, 1100] = math.nan
    x[0, 1200] = math.inf
    check_forward_bit_equal_to_plain_loop(case, x, g, equal_nan=True)


def check_against_plain_loop(case, dtype, step_mode):
    """The node of ``case`` against :func:`plain_loop`: spikes equal, states, ``v_seq`` and the
    gradients of a weighted loss equal up to rounding."""
    name = case[0]
    names = STATES[name]
    x, states, weights = inputs(name, dtype, seed=len(case_id(case)))
    node = build(case, step_mode=step_mode, store_v_seq=True).to(dtype)
    x1, s1 = x.clone().requires_grad_(), {n: v.clone().requires_grad_() for n, v in states.items()}
    spikes, last, v_seq = run_node(node, x1, s1, step_mode)
    params = [node.k] if name == "klif" else []
    grads = torch.autograd.grad(loss_of(spikes, last, v_seq, weights, names), [x1, *s1.values(), *params])

    x2, s2 = x.clone().requires_grad_(), {n: v.clone().requires_grad_() for n, v in states.items()}
    k = node.k.detach().clone().requires_grad_() if name == "klif" else None
    sf = getattr(surrogate, case[2])()
    r_spikes, r_last, r_seq, margin = plain_loop(name, reference_hyperparameters(case), x2, s2, k, sf, case[3])
    ref_grads = torch.autograd.grad(loss_of(r_spikes, r_last, r_seq, weights, names), [x2, *s2.values(), *([k] if k is not None else [])])

    # different (correct) roundings of a potential within a few ulps of the threshold could fire
    # differently; the inputs keep clear of that, so the spikes must be identical
    assert margin > 1e-4, f"inputs too close to the threshold ({margin}): pick another seed"
    assert torch.equal(spikes, r_spikes)
    # the same formulas, evaluated by another program (the kernel simplifies, fuses and orders
    # operations its own way): equal up to rounding
    tol = {"rtol": 1e-11, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    for n in names:
        torch.testing.assert_close(last[n], r_last[n], **tol)
    torch.testing.assert_close(v_seq, r_seq, **tol)
    for i, (got, want) in enumerate(zip(grads, ref_grads)):
        # NaN only where the plain loop has NaN (a parameter gradient through an overflow)
        torch.testing.assert_close(got, want, **tol, equal_nan=True, msg=lambda m, i=i: f"gradient {i}: {m}")


class _ReluPassingWherePositive(torch.autograd.Function):
    """``relu`` whose gradient passes where the result is ``> 0``: the rule of
    :func:`snn.expr.diff` (autograd's ``threshold_backward`` also passes it at a NaN result)."""

    @staticmethod
    def forward(ctx, a):
        out = a.clamp(min=0.0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (out > 0.0)


@pytest.mark.parametrize("through_spikes", [True, False], ids=["loss-of-spikes", "loss-of-states"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_nan_inputs_give_the_plain_loops_gradients(monkeypatch, case, through_spikes):
    """NaN inputs and a NaN initial state (float64, multi-step): the gradients are NaN exactly
    where the plain loop's are and equal elsewhere. A NaN potential never fires, so a detached
    hard reset passes its gradient on (``d v / d h = 1 - s = 1``); the backward tiles that take
    ``1 - s`` as ``h < threshold`` (0 at NaN) must not do so there (the detached hard resets
    of the cases with a constant ``d charge / d u`` fail without that check). The loss reads
    the spikes or not (a surrogate's NaN through the spikes would hide the rest). KLIF's loop
    uses ``relu``'s derivative as the kernels do, 0 at a NaN potential (autograd's is 1 there:
    a documented difference of :func:`snn.expr.diff`)."""
    monkeypatch.setattr(torch, "relu", _ReluPassingWherePositive.apply)
    name = case[0]
    names = STATES[name]
    x, states, weights = inputs(name, torch.float64, seed=5)

    def loss(spikes, last, v_seq):
        return loss_of(spikes if through_spikes else spikes.detach(), last, v_seq, weights, names)

    x[0, 0, 0] = x[3, 1, 2] = x[6, 2, 4] = math.nan
    states[names[0]][2, 1] = math.nan
    node = build(case, step_mode="m", store_v_seq=True).double()
    x1, s1 = x.clone().requires_grad_(), {n: v.clone().requires_grad_() for n, v in states.items()}
    spikes, last, v_seq = run_node(node, x1, s1, "m")
    params = [node.k] if name == "klif" else []
    grads = torch.autograd.grad(loss(spikes, last, v_seq), [x1, *s1.values(), *params])
    x2, s2 = x.clone().requires_grad_(), {n: v.clone().requires_grad_() for n, v in states.items()}
    k = node.k.detach().clone().requires_grad_() if name == "klif" else None
    r_spikes, r_last, r_seq, _ = plain_loop(
        name, reference_hyperparameters(case), x2, s2, k, getattr(surrogate, case[2])(), case[3]
    )
    ref_grads = torch.autograd.grad(loss(r_spikes, r_last, r_seq), [x2, *s2.values(), *([k] if k is not None else [])])
    assert torch.equal(spikes, r_spikes)
    for i, (got, want) in enumerate(zip(grads, ref_grads)):
        assert torch.equal(got.isnan(), want.isnan()), f"gradient {i}: NaN at other places"
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_kernel_matches_autograd_path_float64(case):
    """The torch kernels against the same model on the neuron's autograd path (a callable
    surrogate that is no :class:`~snn.surrogate.SurrogateFunctionBase` forces it)."""
    name = case[0]
    x, states, weights = inputs(name, torch.float64, seed=3)
    results = []
    for wrap in (False, True):
        sf = getattr(surrogate, case[2])()
        callable_only = (lambda z, sf=sf: sf(z)) if wrap else None
        node = build(case, surrogate_function=callable_only, step_mode="m", store_v_seq=True).double()
        if wrap:
            with pytest.raises(TypeError, match="custom surrogate"):
                node.neuron_config()
        xs, ss = x.clone().requires_grad_(), {n: v.clone().requires_grad_() for n, v in states.items()}
        spikes, last, v_seq = run_node(node, xs, ss, "m")
        params = [node.k] if name == "klif" else []
        grads = torch.autograd.grad(loss_of(spikes, last, v_seq, weights, STATES[name]), [xs, *ss.values(), *params])
        results.append((spikes, last, v_seq, grads))
    (a_s, a_last, a_seq, a_grads), (b_s, b_last, b_seq, b_grads) = results
    assert torch.equal(a_s, b_s)
    for n in STATES[name]:
        torch.testing.assert_close(a_last[n], b_last[n], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(a_seq, b_seq, rtol=1e-12, atol=1e-13)
    for got, want in zip(a_grads, b_grads):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


# -- SpikingJelly 2.0.0 golden values (make_sj_golden_neuron_models.py) ------------------------------

GOLDEN_X = [[0.9, 0.2], [0.6, -0.3], [1.3, 0.8], [0.1, 0.9], [0.7, 0.4], [1.1, 1.6]]
GOLDEN_CASES = {
    "qif": ("qif", {"tau": 2.0}, ("Sigmoid", 4.0), {"v": [0.1, -0.05]}, None),
    "qif_soft": ("qif", {"tau": 3.0, "v_c": 0.5, "a0": 0.7, "v_reset": None}, ("ATan", 2.0), {"v": [0.3, 0.0]}, None),
    "eif": ("eif", {"tau": 2.0}, ("Sigmoid", 4.0), {"v": [0.1, -0.05]}, None),
    "eif_soft": ("eif", {"tau": 3.0, "delta_T": 0.5, "theta_rh": 0.6, "v_reset": None}, ("ATan", 2.0), {"v": [0.3, 0.0]}, None),
    "izhikevich": ("izhikevich", {"a": 0.3, "b": 0.2}, ("Sigmoid", 4.0), {"v": [0.1, -0.1], "w": [0.0, 0.05]}, None),
    "izhikevich_soft": (
        "izhikevich", {"tau": 3.0, "a": -0.2, "b": 0.5, "tau_w": 3.0, "v_reset": None, "detach_reset": True},
        ("ATan", 2.0), {"v": [0.2, 0.0], "w": [0.1, -0.1]}, None,
    ),
    "klif": ("klif", {}, ("Sigmoid", 4.0), {"v": [0.1, 0.0]}, 1.3),
    "klif_scaled_soft": (
        "klif", {"scale_reset": True, "decay_input": False, "tau": 3.0, "v_reset": None},
        ("ATan", 2.0), {"v": [0.2, -0.1]}, 0.8,
    ),
    "cubalif": ("cubalif", {}, ("Rect", 1.0), {"v": [0.1, 0.0], "c": [0.0, 0.2]}, None),
    "cubalif_soft": ("cubalif", {"c_decay": 0.8, "v_decay": 0.9, "v_reset": None}, ("Sigmoid", 4.0),
                     {"v": [0.2, 0.0], "c": [0.1, -0.1]}, None),
}

#: SpikingJelly 2.0.0, float32, multi-step: loss = sum(spikes) + sum(last states).
GOLDEN = {
 'qif': {'spikes': [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
         'last': {'v': [0.81841636, -0.1]},
         'grad_x': [[0.58612627, 0.27117398],
                    [0.45031545, 0.34023547],
                    [0.13525103, 0.63930315],
                    [0.37573934, 0.61319339],
                    [0.57705754, 0.46561757],
                    [0.53585172, -0.082404621]],
         'grad_initial': {'v': [0.82057673, 0.29829139]}},
 'qif_soft': {'spikes': [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
              'last': {'v': [0.89478588, 0.2090981]},
              'grad_x': [[0.38850942, 0.30291173],
                         [0.36404476, 0.32738274],
                         [0.35052237, 0.37799358],
                         [0.36550865, 0.38899067],
                         [0.36285767, 0.36737838],
                         [0.33333334, 0.33333334]],
              'grad_initial': {'v': [1.192724, 0.80271614]}},
 'eif': {'spikes': [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
         'last': {'v': [0.70328486, -0.1]},
         'grad_x': [[0.39929399, 0.44791415],
                    [0.022395309, 0.46795502],
                    [0.54141098, 0.49288222],
                    [0.49841321, 0.26391673],
                    [-0.057567816, 0.027405776],
                    [0.57048249, -0.1421303]],
         'grad_initial': {'v': [0.59757745, 0.63935935]}},
 'eif_soft': {'spikes': [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
              'last': {'v': [0.79374599, 0.24023628]},
              'grad_x': [[0.33503565, 0.21205868],
                         [0.33797505, 0.24738972],
                         [0.30783749, 0.30670366],
                         [0.2672959, 0.34588253],
                         [0.31232604, 0.34735849],
                         [0.33333334, 0.33333334]],
              'grad_initial': {'v': [0.85394275, 0.48798823]}},
 'izhikevich': {'spikes': [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
                'last': {'v': [0.49970391, 0.0], 'w': [0.15730853, 0.49321383]},
                'grad_x': [[0.50610805, 0.090543486],
                           [0.42051363, 0.17104755],
                           [0.22758837, 0.51947594],
                           [0.20109276, 0.57927918],
                           [0.55426967, 0.39875168],
                           [0.72192055, 0.045116447]],
                'grad_initial': {'v': [0.75916207, 0.099597834], 'w': [-0.83997542, -0.38905302]}},
 'izhikevich_soft': {'spikes': [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
                     'last': {'v': [0.33403182, 0.09810853], 'w': [0.1279345, 0.35501423]},
                     'grad_x': [[1.2956617, 0.7534551],
                                [1.208762, 0.86685711],
                                [1.0267808, 1.1100444],
                                [0.59092832, 1.1608442],
                                [0.36965021, 1.0047215],
                                [0.40409449, 0.7677331]],
                     'grad_initial': {'v': [3.4982862, 1.7329466], 'w': [-2.7713799, -2.3804393]}},
 'klif': {'spikes': [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]],
          'last': {'v': [0.0, 0.0]},
          'grad_x': [[0.64837128, 0.075383008],
                     [0.61753994, 0.0],
                     [0.26891828, 0.62559193],
                     [0.22562388, 0.67234588],
                     [0.25797561, 0.5857451],
                     [-0.02469356, -0.11916248]],
          'grad_initial': {'v': [0.64837128, 0.075383008]},
          'grad_k': 3.1699588},
 'klif_scaled_soft': {'spikes': [[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]],
                      'last': {'v': [0.38360775, 0.69814825]},
                      'grad_x': [[0.73861045, 0.090126805],
                                 [0.79737288, 0.0],
                                 [0.7835409, 0.62728208],
                                 [0.49730125, 0.7383768],
                                 [0.68647826, 0.67218161],
                                 [0.89634675, 0.9509654]],
                      'grad_initial': {'v': [0.49240696, 0.060084537]},
                      'grad_k': 7.0794339},
 'cubalif': {'spikes': [[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
             'last': {'v': [0.0, 0.0], 'c': [1.703125, 2.1156249]},
             'grad_x': [[1.03125, 3.0173438],
                        [0.0625, 2.2562499],
                        [0.125, 1.125],
                        [0.25, 0.25],
                        [0.5, 0.5],
                        [1.0, 1.0]],
             'grad_initial': {'v': [0.75, 1.4169141], 'c': [0.515625, 1.5086719]}},
 'cubalif_soft': {'spikes': [[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
                  'last': {'v': [7.6909637, 4.0202265], 'c': [2.9564862, 2.8220415]},
                  'grad_x': [[3.2074163, 4.8900404],
                             [3.0449462, 4.2967796],
                             [2.977006, 3.6708231],
                             [2.8099999, 2.861938],
                             [2.5, 2.5011594],
                             [2.0, 2.0000002]],
                  'grad_initial': {'v': [0.69431341, 1.307355], 'c': [2.565933, 3.9120324]}}}


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("key", list(GOLDEN_CASES))
def test_golden_spikingjelly(key, step_mode):
    name, hyper, (sg, alpha), initial, k = GOLDEN_CASES[key]
    hyper = dict(hyper)
    detach = hyper.pop("detach_reset", False)
    node = build((name, hyper, "Sigmoid", detach, k), step_mode=step_mode)
    node.surrogate_function = getattr(surrogate, sg)(alpha=alpha)
    x = torch.tensor(GOLDEN_X, requires_grad=True)
    states = {n: torch.tensor(v, requires_grad=True) for n, v in initial.items()}
    spikes, last, _ = run_node(node, x, states, step_mode)
    loss = spikes.sum() + sum(v.sum() for v in last.values())
    params = [node.k] if k is not None else []
    grads = torch.autograd.grad(loss, [x, *states.values(), *params])
    want = GOLDEN[key]
    assert spikes.tolist() == want["spikes"]
    # float32 runs of two implementations (SpikingJelly's registered kernels, ours): rounding only
    tol = {"rtol": 1e-5, "atol": 1e-6}
    for n in initial:
        torch.testing.assert_close(last[n], torch.tensor(want["last"][n]), **tol)
        torch.testing.assert_close(grads[1 + list(initial).index(n)], torch.tensor(want["grad_initial"][n]), **tol)
    torch.testing.assert_close(grads[0], torch.tensor(want["grad_x"]), **tol)
    if k is not None:
        torch.testing.assert_close(grads[-1], torch.tensor(want["grad_k"]), **tol)


# -- constructors: SpikingJelly 2.0.0's arguments, order and defaults ---------------------------------

_SURROGATE = object()  # SpikingJelly's default is a surrogate instance; ours is None (a new one per neuron)
SJ_SIGNATURES = {
    "qif": [("tau", 2.0), ("v_c", 0.8), ("a0", 1.0), ("v_threshold", 1.0), ("v_rest", 0.0), ("v_reset", -0.1),
            ("surrogate_function", _SURROGATE), ("detach_reset", False), ("step_mode", "s"), ("store_v_seq", False)],
    "eif": [("tau", 2.0), ("delta_T", 1.0), ("theta_rh", 0.8), ("v_threshold", 1.0), ("v_rest", 0.0),
            ("v_reset", -0.1), ("surrogate_function", _SURROGATE), ("detach_reset", False), ("step_mode", "s"),
            ("store_v_seq", False)],
    "izhikevich": [("tau", 2.0), ("v_c", 0.8), ("a0", 1.0), ("v_threshold", 1.0), ("v_reset", 0.0),
                   ("v_rest", -0.1), ("w_rest", 0.0), ("tau_w", 2.0), ("a", 0.0), ("b", 0.0),
                   ("surrogate_function", _SURROGATE), ("detach_reset", False), ("step_mode", "s"),
                   ("store_v_seq", False)],
    "klif": [("scale_reset", False), ("tau", 2.0), ("decay_input", True), ("v_threshold", 1.0), ("v_reset", 0.0),
             ("surrogate_function", _SURROGATE), ("detach_reset", False), ("step_mode", "s"), ("store_v_seq", False)],
    "cubalif": [("c_decay", 0.5), ("v_decay", 0.75), ("v_threshold", 0.5), ("v_reset", 0.0),
                ("surrogate_function", _SURROGATE)],
}
#: Arguments snn adds, keyword only.
EXTRA_KEYWORDS = {
    "qif": {"backend": "torch"},
    "eif": {"backend": "torch"},
    "izhikevich": {"backend": "torch"},
    "klif": {"backend": "torch"},
    "cubalif": {"detach_reset": False, "step_mode": "s", "backend": "torch", "store_v_seq": False},
}

#: Non-default values for every SpikingJelly argument, in its order.
POSITIONAL = {
    "qif": (3.0, 0.7, 0.9, 1.1, 0.05, -0.2, surrogate.ATan(), True, "m", True),
    "eif": (3.0, 0.6, 0.7, 1.1, 0.05, -0.2, surrogate.ATan(), True, "m", True),
    "izhikevich": (3.0, 0.7, 0.9, 1.1, -0.2, -0.05, 0.1, 2.5, 0.3, 0.2, surrogate.ATan(), True, "m", True),
    "klif": (True, 3.0, False, 1.1, -0.2, surrogate.ATan(), True, "m", True),
    "cubalif": (0.6, 0.8, 1.1, -0.2, surrogate.ATan()),
}


@pytest.mark.parametrize("name", list(CLASSES))
def test_constructor_is_spikingjelly_compatible(name):
    params = list(inspect.signature(CLASSES[name]).parameters.values())
    expected = SJ_SIGNATURES[name]
    positional = params[: len(expected)]
    assert [p.name for p in positional] == [n for n, _ in expected]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in positional)
    for p, (_, default) in zip(positional, expected):
        assert p.default == (None if default is _SURROGATE else default), p.name
    extra = params[len(expected):]
    assert {p.name: p.default for p in extra} == EXTRA_KEYWORDS[name]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)
    # positional arguments land where SpikingJelly puts them
    values = POSITIONAL[name]
    node = CLASSES[name](*values)
    for (arg, _), value in zip(expected, values):
        assert getattr(node, arg) is value if arg == "surrogate_function" else getattr(node, arg) == value, arg


def test_default_surrogates_are_new_instances():
    a, b = neuron.QIFNode(), neuron.QIFNode()
    assert isinstance(a.surrogate_function, surrogate.Sigmoid) and a.surrogate_function.alpha == 4.0
    assert a.surrogate_function is not b.surrogate_function
    c = neuron.CUBALIFNode()
    assert isinstance(c.surrogate_function, surrogate.Rect) and c.surrogate_function.alpha == 1.0


def test_integers_accepted():
    node = neuron.IzhikevichNode(tau=3, v_c=1, a0=2, v_threshold=2, v_reset=0, v_rest=0, w_rest=0, tau_w=4, a=1, b=0)
    assert all(isinstance(v, float) for v in hyperparameters(node).values())
    assert isinstance(neuron.QIFNode(tau=3, v_reset=-1).tau, float)
    assert isinstance(neuron.CUBALIFNode(c_decay=1, v_decay=0).c_decay, float)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: neuron.QIFNode(tau=1.0), ValueError, "tau"),
        (lambda: neuron.QIFNode(tau="2"), TypeError, "tau"),
        (lambda: neuron.QIFNode(a0=0.0), ValueError, "a0"),
        (lambda: neuron.QIFNode(v_c=True), TypeError, "v_c"),
        (lambda: neuron.QIFNode(v_rest=float("inf")), ValueError, "v_rest"),
        (lambda: neuron.QIFNode(v_reset=1.0), ValueError, "v_reset.*v_threshold"),
        (lambda: neuron.QIFNode(v_reset=0.1, v_rest=0.0), ValueError, "v_reset.*v_rest"),
        (lambda: neuron.EIFNode(delta_T=0.0), ValueError, "delta_T"),
        (lambda: neuron.EIFNode(theta_rh=None), TypeError, "theta_rh"),
        (lambda: neuron.EIFNode(v_reset=0.2), ValueError, "v_reset.*v_rest"),
        (lambda: neuron.EIFNode(tau=0.5), ValueError, "tau"),
        (lambda: neuron.IzhikevichNode(tau_w=0.0), ValueError, "tau_w"),
        (lambda: neuron.IzhikevichNode(a0=-1.0), ValueError, "a0"),
        (lambda: neuron.IzhikevichNode(b="0"), TypeError, "b"),
        (lambda: neuron.IzhikevichNode(w_rest=float("nan")), ValueError, "w_rest"),
        (lambda: neuron.KLIFNode(scale_reset=1), TypeError, "scale_reset"),
        (lambda: neuron.KLIFNode(decay_input=None), TypeError, "decay_input"),
        (lambda: neuron.KLIFNode(tau=1.0), ValueError, "tau"),
        (lambda: neuron.CUBALIFNode(c_decay="0.5"), TypeError, "c_decay"),
        (lambda: neuron.CUBALIFNode(v_decay=float("nan")), ValueError, "v_decay"),
        (lambda: neuron.CUBALIFNode(v_threshold=True), TypeError, "v_threshold"),
        (lambda: neuron.CUBALIFNode(detach_reset=1), TypeError, "detach_reset"),
        (lambda: neuron.CUBALIFNode(surrogate_function=surrogate.Rect), TypeError, "surrogate_function"),
    ],
)
def test_constructor_validation(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_hard_reset_checks_do_not_apply_to_soft_reset():
    assert neuron.QIFNode(v_reset=None, v_rest=-0.5).v_reset is None
    assert neuron.IzhikevichNode().v_reset == 0.0  # its default v_reset is above its v_rest, as in SpikingJelly


# -- states --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "initial"),
    [
        (neuron.QIFNode(v_rest=-0.05, v_reset=-0.2), {"v": -0.05}),
        (neuron.EIFNode(v_rest=0.1, v_reset=None), {"v": 0.1}),
        (neuron.IzhikevichNode(v_rest=-0.2, w_rest=0.3), {"v": -0.2, "w": 0.3}),
        (neuron.KLIFNode(v_reset=-0.3), {"v": -0.3}),
        (neuron.KLIFNode(v_reset=None), {"v": 0.0}),
        (neuron.CUBALIFNode(v_reset=-0.2), {"v": 0.0, "c": 0.0}),
    ],
    ids=lambda p: type(p).__name__ if isinstance(p, torch.nn.Module) else "",
)
def test_initial_states_and_reset(node, initial):
    assert dict(node._memories) == initial
    node.step_mode = "m"
    node(torch.rand(3, 4) * 2)
    assert all(isinstance(getattr(node, n), torch.Tensor) for n in initial)
    node.reset()
    assert dict(node._memories) == initial


@pytest.mark.parametrize("name", list(CLASSES))
def test_states_carry_across_calls(name):
    node = CLASSES[name](step_mode="m")
    x = torch.rand(5, 2, 3) * 1.5
    first, second = node(x[:2]), node(x[2:])
    assert torch.equal(torch.cat([first, second]), CLASSES[name](step_mode="m")(x))


def test_klif_k_is_a_learnable_scalar():
    node = neuron.KLIFNode(step_mode="m")
    assert isinstance(node.k, torch.nn.Parameter) and node.k.dim() == 0 and node.k.item() == 1.0
    assert list(node.state_dict()) == ["k"]
    node(torch.rand(4, 3) * 2).sum().backward()
    assert node.k.grad is not None and node.k.grad.shape == ()


def test_klif_k_gradient_reads_the_charged_potential_alone():
    """``d relu(k c) / dk`` is ``h / k``: 0 where the rectifier is off (``h = 0``), so no
    selection over tensors (two operations per backward tile on the torch backend), NaN where
    ``h`` is, as autograd's ``relu`` (which passes a gradient at a NaN result) gives, and 0 for
    ``k = 0`` (``relu'(0) = 0``; ``h / k`` would be NaN there, and a Python float division by
    zero raised). With a term without ``k`` inside the rectifier, ``relu(k c + b)``, the
    derivative at ``k = 0`` is ``relu'(b) c``, which needs ``c``: no rewrite (the input is saved)."""
    from snn.expr import FLOAT_OPS, Expr, evaluate, var, variables
    from snn.models._plan import _scaled_parameter_derivative

    plan = kernel_plan(neuron.KLIFNode(step_mode="m").neuron_config())
    (coefficient,) = plan.charge_p[0]
    # h times a factor of k alone (the selection for k = 0 is on the number, not on tensors)
    assert coefficient.op == "*" and variables(coefficient) == {"h_v", "p_k"}
    tensor_part, factor = coefficient.args if coefficient.args[0] == var("h_v") else coefficient.args[::-1]
    assert tensor_part == var("h_v") and variables(factor) == {"p_k"}
    h, k = torch.tensor([0.0, 0.7, math.nan, 2.5]), 1.3
    got = h * evaluate(factor, {"p_k": k}, FLOAT_OPS)  # the factor is a number per call
    c = torch.tensor([-0.4, 0.7 / k, math.nan, 2.5 / k], requires_grad=True)  # h = relu(k c)
    kk = torch.tensor(k, requires_grad=True)
    (want,) = torch.autograd.grad(torch.relu(kk * c[1:2]).sum(), [kk])
    torch.testing.assert_close(got[1], want)
    assert got[0] == 0.0 and got[2].isnan()
    # k = 0: h = relu(0 c) = 0 and autograd's d/dk = c relu'(0) = 0
    assert evaluate(factor, {"p_k": 0.0}, FLOAT_OPS) == 0.0
    zero_k = torch.tensor(0.0, requires_grad=True)
    (want_zero,) = torch.autograd.grad(torch.relu(zero_k * torch.tensor([-0.4, 0.5, 2.0])).sum(), [zero_k])
    assert want_zero == 0.0
    assert _scaled_parameter_derivative(Expr("relu", (var("p_k") * var("c") + var("b"),)), "p_k", "h") is None


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "case",
    [
        ("klif", {}, "Sigmoid", False, 0.0),
        ("klif", {"v_reset": None}, "ATan", True, 0.0),
        ("klif", {"v_reset": None, "scale_reset": True}, "Sigmoid", False, 1e-30),
    ],
    ids=case_id,
)
def test_klif_with_k_zero_matches_the_plain_loop(case, dtype, step_mode):
    """``k = 0`` (a learnable clipped or initialised to 0): the gradients are autograd's zeros,
    not NaN (``h / k``) or a ``ZeroDivisionError`` (the per-call factor ``1 / k``). ``k = 1e-30``
    with the scaled soft reset: factors beyond float32's range overflow to inf as in the plain
    loop (torch refuses such a number as ``torch.add``'s ``alpha``)."""
    check_against_plain_loop(case, dtype, step_mode)


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_klif_with_a_subnormal_k_and_scaled_reset_gives_non_finite_gradients(step_mode, detach_reset):
    """``k = 1e-39``: the backward's factor ``1 / k`` is beyond float32's range, which torch
    refuses as an ``addcmul`` value; the products overflow instead, as autograd's do (it was a
    RuntimeError)."""
    node = neuron.KLIFNode(scale_reset=True, detach_reset=detach_reset, step_mode=step_mode)
    with torch.no_grad():
        node.k.fill_(1e-39)
    x = torch.full((2, 1), 0.5, requires_grad=True)
    spikes = node(x) if step_mode == "m" else torch.stack([node(x[t]) for t in range(2)])
    (spikes.sum() + node.v.sum()).backward()
    assert x.grad is not None and node.k.grad is not None
    assert not x.grad.isfinite().all() and not node.k.grad.isfinite()


@pytest.mark.parametrize("w", [-800.0, 800.0])
def test_plif_with_a_saturated_sigmoid_matches_autograd(w):
    """``sigmoid(w)`` of 0 (in double precision) or 1: the gradients are the plain loop's
    (``dL/dw = 0``), not NaN or a ``ZeroDivisionError`` from ``g' / g``."""
    x = torch.rand(4, 3, dtype=torch.float64) * 2
    node = neuron.ParametricLIFNode(step_mode="m", backend="torch").to(torch.float64)
    with torch.no_grad():
        node.w.fill_(w)
    x1 = x.clone().requires_grad_()
    node(x1).sum().backward()
    sf, wt, x2 = surrogate.Sigmoid(), torch.tensor(w, dtype=torch.float64, requires_grad=True), x.clone().requires_grad_()
    v, total = torch.zeros(3, dtype=torch.float64), 0.0
    for x_t in x2:
        h = v + (x_t - v) * torch.sigmoid(wt)
        s = sf(h - 1.0)
        total = total + s.sum()
        v = h * (1.0 - s)
    total.backward()
    assert node.w.grad is not None and wt.grad is not None
    torch.testing.assert_close(node.w.grad, wt.grad.to(node.w.grad.dtype))
    torch.testing.assert_close(x1.grad, x2.grad)


def test_store_v_seq_single_step_accumulates():
    node = neuron.IzhikevichNode(a=0.3, b=0.2, store_v_seq=True)
    xs = torch.rand(4, 3) * 2
    for x in xs:
        node(x)
    multi = neuron.IzhikevichNode(a=0.3, b=0.2, store_v_seq=True, step_mode="m")
    multi(xs)
    torch.testing.assert_close(node.v_seq, multi.v_seq, rtol=0, atol=0)


# -- registry and kernel plans -------------------------------------------------------------------


def test_builtin_models_registered():
    names = [m.name for m in neuron.BUILTIN_MODELS]
    assert names[-5:] == ["qif", "eif", "izhikevich", "klif", "cubalif"]
    registry = get_registry()
    for name, cls in CLASSES.items():
        assert registry.model(name) is cls.model
        assert cls.model.state_names == STATES[name]
        assert "torch" in cls().supported_backends


#: What training saves per model (see each class docstring): charged states, whether the input is
#: saved, the initial states kept.
SAVED = {
    "qif": (("v",), False, ("v",)),
    "eif": (("v",), False, ("v",)),
    "izhikevich": (("v",), False, ("v",)),
    "klif": (("v",), False, ()),
    "cubalif": (("v",), False, ()),
}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_training_saves(case):
    plan = kernel_plan(build(case).neuron_config())
    saved, save_input, initial = SAVED[case[0]]
    assert tuple(plan.states[i] for i in plan.saved_states) == saved
    assert plan.save_input is save_input
    assert tuple(plan.states[i] for i in plan.initial_states_needed) == initial


def test_torch_backend_runs_relu_in_a_charge():
    """A charge with relu runs on the torch backend (its programs write relu with ``out=``)."""
    model = NeuronModel(
        name="relu_probe", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
        charge=lambda x, u, p, ops: {"v": ops.relu(u.v + x)},
    )
    config = model.config(surrogate.Sigmoid().spec)
    x = torch.tensor([[0.5], [-2.0], [1.2]])
    spikes, (v,), _ = multi_step(x, (torch.zeros(1),), config)
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0]
    assert v.tolist() == [0.0]


def test_an_input_coefficient_that_reads_a_state_saves_the_input():
    """``x (1 + 0.1 v)`` is 0 at ``v = -10``: recovering ``x`` as ``(h - c0) / c1`` gave NaN
    there; the input is saved, and the gradients equal autograd's through the state."""
    model = NeuronModel(
        name="input_times_state", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
        charge=lambda x, u, p, ops: {"v": u.v * 0.7 + x * u.v * 0.1 + x},
    )
    config = model.config(surrogate.Sigmoid().spec)
    plan = kernel_plan(config)
    assert plan.save_input
    for v0 in (-10.0, -9.9999, 0.3):
        x = torch.full((2, 1), 0.5, dtype=torch.float64, requires_grad=True)
        u0 = torch.tensor([v0], dtype=torch.float64, requires_grad=True)
        _, (v,), _ = multi_step(x, (u0,), config)
        got = torch.autograd.grad(v.sum(), (x, u0))
        x_ref = x.detach().requires_grad_(True)
        u_ref = u0.detach().requires_grad_(True)
        u = u_ref
        for t in range(2):  # the plain loop: threshold 1, Sigmoid(4) surrogate, hard reset to 0
            h = u * 0.7 + x_ref[t] * u * 0.1 + x_ref[t]
            smooth = torch.sigmoid(4.0 * (h - 1.0))
            s = smooth + ((h >= 1.0).to(h.dtype) - smooth).detach()
            u = h * (1.0 - s)
        want = torch.autograd.grad(u.sum(), (x_ref, u_ref))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_a_charge_of_every_smooth_function_has_autograds_gradients():
    """A user's model may use any function of ``snn.expr``, built-in models or not: ``cos``,
    ``sin``, ``sqrt``, ``log``, ``abs``, ``maximum`` of two expressions; the derived backward
    of the torch backend equals autograd through a plain float64 loop."""

    def charge(x, u, p, ops):
        v = u.v
        return {"v": 0.5 * v + 0.2 * ops.cos(v) + 0.1 * ops.sin(x * v) + 0.3 * ops.sqrt(x * x + 1.0)
                + 0.1 * ops.log(x * x + 1.0) + 0.05 * ops.abs(v - x) + 0.1 * ops.maximum(x, 0.5 * v) + 0.5 * x}

    model = NeuronModel(name="smooth_functions", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
                        charge=charge)
    config = model.config(surrogate.Sigmoid().spec)
    generator = torch.Generator().manual_seed(3)
    x = (torch.rand(5, 7, generator=generator, dtype=torch.float64) * 2.0 - 0.6).requires_grad_(True)
    u0 = (torch.rand(7, generator=generator, dtype=torch.float64) - 0.5).requires_grad_(True)
    weights = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    spikes, (v,), _ = multi_step(x, (u0,), config)
    got = torch.autograd.grad((spikes * weights).sum() + v.sum(), (x, u0))
    x_ref, u_ref = (t.detach().requires_grad_(True) for t in (x, u0))
    u, total = u_ref, 0.0
    for t in range(5):  # the plain loop: threshold 1, Sigmoid(4) surrogate, hard reset to 0
        xt = x_ref[t]
        h = (0.5 * u + 0.2 * torch.cos(u) + 0.1 * torch.sin(xt * u) + 0.3 * torch.sqrt(xt * xt + 1.0)
             + 0.1 * torch.log(xt * xt + 1.0) + 0.05 * torch.abs(u - xt) + 0.1 * torch.maximum(xt, 0.5 * u) + 0.5 * xt)
        smooth = torch.sigmoid(4.0 * (h - 1.0))
        s = smooth + ((h >= 1.0).to(h.dtype) - smooth).detach()
        total = total + (s * weights[t]).sum()
        u = h * (1.0 - s)
    want = torch.autograd.grad(total + u.sum(), (x_ref, u_ref))
    assert 0 < float(spikes.detach().sum()) < spikes.numel()  # both branches of the reset are exercised
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rectified", [False, True])
@pytest.mark.parametrize("gain", [0.0, 1e-30, 0.7])
def test_a_learnable_input_gain_of_zero_has_autograds_gradient(rectified, gain):
    """``0.5 v + k x`` (and its ``relu``) at ``k = 0``: ``dL/dk`` is ``x`` times the gradient of
    ``h``. Recovering ``x`` as ``(h - 0.5 v) / k`` gave NaN, and the rewrite
    ``(h - A) g' / g`` taken as 0 there gave 0 under the ``relu``; both need ``x``, which is saved."""

    def charge(x, u, p, ops):
        inner = u.v * 0.5 + x * p.k
        return {"v": ops.relu(inner) if rectified else inner}

    model = NeuronModel(
        name="input_gain" + ("_relu" if rectified else ""), states=(State("v", 0.0),),
        hyperparameters=THRESHOLD_AND_RESET, learnables=("k",), charge=charge,
    )
    config = model.config(surrogate.Sigmoid().spec)
    x = torch.full((3, 2), 0.8, dtype=torch.float64, requires_grad=True)
    u0 = torch.tensor([1.5, 0.4], dtype=torch.float64, requires_grad=True)
    k = torch.tensor(gain, dtype=torch.float64, requires_grad=True)
    spikes, (v,), _ = multi_step(x, (u0,), config, learnables=(k,))
    got = torch.autograd.grad(spikes.sum() + v.sum(), (x, u0, k))
    x_ref, u_ref, k_ref = (t.detach().requires_grad_(True) for t in (x, u0, k))
    u, total = u_ref, 0.0
    for t in range(3):  # the plain loop: threshold 1, Sigmoid(4) surrogate, hard reset to 0
        h = u * 0.5 + x_ref[t] * k_ref
        h = torch.relu(h) if rectified else h
        smooth = torch.sigmoid(4.0 * (h - 1.0))
        s = smooth + ((h >= 1.0).to(h.dtype) - smooth).detach()
        total = total + s.sum()
        u = h * (1.0 - s)
    want = torch.autograd.grad(total + u.sum(), (x_ref, u_ref, k_ref))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_the_standard_soft_reset_subtracts_the_models_own_threshold():
    """A model whose threshold is ``theta``: the standard soft reset subtracts ``theta`` (it
    read ``v_threshold`` and raised a KeyError)."""
    tau_theta = (HyperParameter("tau", 2.0, "time_constant"), HyperParameter("theta", 0.5, "real"))
    for reset_potential in [(HyperParameter("v_reset", None, "optional_real"),), ()]:
        model = NeuronModel(
            name="theta_soft", states=(State("v", 0.0),), hyperparameters=(*tau_theta, *reset_potential),
            charge=lambda x, u, p, ops: {"v": u.v + (x - u.v) / p.tau}, threshold="theta",
        )
        config = model.config(surrogate.Sigmoid().spec)
        spikes, (v,), _ = multi_step(torch.tensor([[1.2], [0.1]]), (torch.zeros(1),), config)
        # h = 0.6 fires and keeps 0.6 - 0.5; then h = 0.1 + (0.1 - 0.1) / 2 = 0.1
        assert spikes.flatten().tolist() == [1.0, 0.0]
        torch.testing.assert_close(v, torch.tensor([0.1]))


def test_descriptions_refuse_a_threshold_that_is_not_a_number_and_learnables_as_a_string():
    def charge(x, u, p, ops):
        return {"v": u.v + x}

    with pytest.raises(ValueError, match="threshold: 'v_reset' is a hyper-parameter of kind 'optional_real'"):
        NeuronModel(name="bad", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
                    charge=charge, threshold="v_reset")
    with pytest.raises(TypeError, match="learnables: expected a tuple of parameter names, got 'gain'"):
        NeuronModel(name="bad", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
                    charge=charge, learnables="gain")  # type: ignore[arg-type]  # a wrong type on purpose
    listed = NeuronModel(name="listed", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
                         charge=charge, learnables=["gain"])  # type: ignore[arg-type]  # a list is taken as a tuple
    assert listed.learnables == ("gain",)
    bare = NeuronModel(name="bare_reset", states=(State("v", 0.0),), hyperparameters=THRESHOLD_AND_RESET,
                       charge=charge, reset=lambda h, s, p, ops: p.reset(h.v, s))
    with pytest.raises(TypeError, match=r"bare_reset: reset must return a mapping state -> value .* got Expr"):
        kernel_plan(bare.config(surrogate.Sigmoid().spec))


def test_register_model_states_starts_v_at_the_models_initial_value():
    """``State("v", 0.7)``: a module built with register_model_states starts (and resets) ``v``
    at 0.7, not at the reset potential BaseNode registers it with."""
    from snn.neuron import BaseNode

    model = NeuronModel(
        name="starts_high", states=(State("v", 0.7), State("w", "v_reset")), hyperparameters=THRESHOLD_AND_RESET,
        charge=lambda x, u, p, ops: {"v": u.v + x, "w": u.w * 0.5},
    )

    class StartsHigh(BaseNode):
        def __init__(self, v_reset: float = -0.2, step_mode: str = "s") -> None:
            super().__init__(v_reset=v_reset, step_mode=step_mode)
            self.register_model_states()

    StartsHigh.model = model
    node = StartsHigh()
    assert dict(node.named_memories()) == {"v": 0.7, "w": -0.2}
    node(torch.tensor([0.1]))
    node.reset()
    assert dict(node.named_memories()) == {"v": 0.7, "w": -0.2}


def test_factored_hard_reset_matches_the_reset_for_both_spike_values():
    """The one-program backward substitutes ``c - (1 - s) (c - t)`` for a hard reset
    ``s c + (1 - s) t`` (sharing the reset's derivatives): the same values for ``s`` of 0 and 1
    up to rounding, NaN where the original gives NaN; QIF's tile program is one operation
    shorter for it; other resets are left alone."""
    from snn.backends.torch_plan import _factored_hard_reset, compiled_plan
    from snn.expr import TORCH_OPS, evaluate, var
    from snn.models import SPIKE

    s, t = var(SPIKE), var("h_v")
    for reset in (s * -0.1 + (1.0 - s) * t, t * (1.0 - s) + -0.1 * s):
        factored = _factored_hard_reset(reset, set())
        assert factored is not reset
        hh = torch.cat([torch.randn(200, dtype=torch.float64) * 3, torch.tensor([math.inf, -math.inf, math.nan])])
        for spike in (0.0, 1.0):
            env = {SPIKE: torch.full_like(hh, spike), "h_v": hh}
            want, got = evaluate(reset, env, TORCH_OPS), evaluate(factored, env, TORCH_OPS)
            assert torch.equal(torch.isnan(got), torch.isnan(want))
            torch.testing.assert_close(got, want, rtol=1e-15, atol=1e-15, equal_nan=True)
    soft = t - s * 1.0
    assert _factored_hard_reset(soft, set()) is soft
    node = neuron.QIFNode(step_mode="m")
    assert len(compiled_plan(node.neuron_config()).tile_next.program.instructions) == 6


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: HyperParameter("tau", math.nan, "time_constant"), ValueError, "HyperParameter 'tau'.*finite"),
        (lambda: HyperParameter("tau", 0.5, "time_constant"), ValueError, "time constant > 1"),
        (lambda: HyperParameter("tau", 2.0, "timeconst"), ValueError, "kind: expected one of"),
        (lambda: HyperParameter("tau", "2", "time_constant"), TypeError, "expected a real number, got str"),
        (lambda: HyperParameter("flag", 1, "flag"), TypeError, "expected a bool"),
        (lambda: State("v", math.inf), ValueError, "State 'v': initial: expected a finite number"),
        (lambda: State("v", True), TypeError, "State 'v': initial: expected a real number or a hyper-parameter name"),
        (lambda: State("v w"), ValueError, "name: expected an identifier"),
    ],
)
def test_descriptions_check_their_defaults(make, error, match):
    """A description's defaults are values of their own kind, so a model cannot ship a default
    that every neuron built from it would refuse (or run with NaN states)."""
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("cls", [neuron.KLIFNode, neuron.ParametricLIFNode])
def test_learnable_gradients_over_column_chunks_of_several_steps(monkeypatch, cls):
    """A learnable parameter's gradient sums ``G * d charge / dp`` over each tile; tiles of a
    column chunk (rows that are contiguous, the tile not) take a dot product per row. The same
    gradients as one tile over everything."""
    from snn.backends import torch_kernels

    calls = []
    dot = torch.dot

    def counting_dot(a, b):
        calls.append(a.shape)
        return dot(a, b)

    generator = torch.Generator().manual_seed(3)
    x0 = torch.rand(8, 200, dtype=torch.float64, generator=generator) * 2
    g = torch.randn(8, 200, dtype=torch.float64, generator=generator)
    grads = []
    for elements in (1 << 20, 256):
        monkeypatch.setattr(torch_kernels, "BACKWARD_TILE_ELEMENTS", elements)
        node = cls(step_mode="m", backend="torch").double()
        x = x0.clone().requires_grad_(True)
        monkeypatch.setattr(torch, "dot", counting_dot)
        node(x).backward(g)
        monkeypatch.setattr(torch, "dot", dot)
        grads.append((x.grad, [p.grad for p in node.parameters()]))
    assert torch_kernels.tiles(8, 200, torch.device("cpu"), torch_kernels.BACKWARD_ROWS, 256) == (4, 64)
    assert (64,) in calls  # the per-row dots of the chunked tiles
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-12, atol=1e-12)
    for tiled, whole in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(tiled, whole, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k_value", [0.7, -0.7])
def test_torch_backend_condition_joining_a_learnable_and_the_input(k_value: float) -> None:
    """``where((k > 0) & (x > 0.1), ...)`` with a learnable ``k``: spikes, states and gradients
    (of x, v0 and k) equal a float64 autograd loop of the description."""
    from snn.backends.torch import single_step
    from snn.models import autograd_step

    def charge(x, u, p, ops):
        gate = ops.where((p.k > 0.0) & (x > 0.1), 1.0, 0.5)
        return {"v": u.v + gate * x * p.k + ops.where(x > 0.3, 0.1, 0.0) - ops.where(u.v > 0.2, 0.3, 0.0)}

    model = NeuronModel("gated_by_k", (State("v", "v_reset"),), THRESHOLD_AND_RESET, charge, learnables=("k",))
    config = model.config(surrogate.Sigmoid().spec, v_threshold=1.0)
    torch.manual_seed(0)
    x = (torch.rand(6, 40, dtype=torch.float64) * 1.5 - 0.2).requires_grad_()
    v0 = (torch.rand(40, dtype=torch.float64) * 0.4).requires_grad_()
    k = torch.tensor(k_value, dtype=torch.float64, requires_grad=True)
    sg = surrogate.Sigmoid()
    spikes, state = [], {"v": v0}
    for t in range(x.shape[0]):
        s, state = autograd_step(config, x[t], state, {"k": k}, sg)
        spikes.append(s)
    want_spikes, want_v = torch.stack(spikes), state["v"]
    want_grads = torch.autograd.grad(want_spikes.sum() + want_v.sum(), (x, v0, k))
    got_spikes, (got_v,), _ = multi_step(x, (v0,), config, learnables=(k,))
    assert torch.equal(got_spikes, want_spikes)
    torch.testing.assert_close(got_v, want_v)
    got_grads = torch.autograd.grad(got_spikes.sum() + got_v.sum(), (x, v0, k))
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want)
    s1, (v1,) = single_step(x[0], (v0,), config, learnables=(k,))[:2]
    s_ref, ref = autograd_step(config, x[0], {"v": v0}, {"k": k}, sg)
    assert torch.equal(s1, s_ref)
    torch.testing.assert_close(v1, ref["v"])
