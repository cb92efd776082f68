"""The torch backend's kernels against an independent plain autograd loop (float64)."""

from __future__ import annotations

import pytest
import torch

from snn import surrogate
from snn.backends import torch as torch_backend
from snn.neuron.integrate_and_fire import IF_MODEL, LIF_MODEL, PLIF_MODEL
from snn.plugins import get_registry

KINDS = ("if", "lif", "plif")
RESETS = (0.0, -0.3, None)
MODELS = {"if": IF_MODEL, "lif": LIF_MODEL, "plif": PLIF_MODEL}


def plain_loop(kind, x_seq, v, config, w=None):
    """Reference dynamics written out with ordinary autograd ops (not the kernel code)."""
    sf = surrogate.SURROGATES[config.surrogate.name](**config.surrogate.kwargs)
    hyper = config.hyper
    v_reset, v_threshold = hyper["v_reset"], hyper["v_threshold"]
    vr = 0.0 if v_reset is None else v_reset
    if kind == "lif":
        k = 1.0 / hyper["tau"]
    elif kind == "plif":
        k = torch.sigmoid(w)
    spikes, potentials = [], []
    for x in x_seq:
        if kind == "if":
            h = v + x
        elif hyper["decay_input"]:
            h = v + (x - (v - vr)) * k
        else:
            h = v - (v - vr) * k + x
        s = sf(h - v_threshold)
        sd = s.detach() if config.detach_reset else s
        v = sd * vr + (1.0 - sd) * h if v_reset is not None else h - sd * v_threshold
        spikes.append(s)
        potentials.append(v)
    return torch.stack(spikes), v, torch.stack(potentials)


def make_config(kind, v_reset=0.0, detach=False, decay_input=True, name="Sigmoid", v_threshold=1.0, tau=2.5):
    spec = surrogate.SURROGATES[name]().spec
    hyper = {"v_reset": v_reset, "v_threshold": v_threshold}
    if kind != "if":
        hyper["decay_input"] = decay_input
    if kind == "lif":
        hyper["tau"] = tau
    return MODELS[kind].config(spec, detach, **hyper)


def run(kind, x, v0, config, w=None, store_v_seq=False, single=False):
    """The generic kernel with the old per-kind calling convention (kind checked against the config)."""
    assert config.model.name == kind
    learnables = (w,) if w is not None else ()
    if single:
        spike, (v,), _ = torch_backend.single_step(x, (v0,), config, learnables=learnables)
        return spike, v, None
    spikes, (v_last,), seqs = torch_backend.multi_step(x, (v0,), config, learnables=learnables, store_state_seqs=store_v_seq)
    return spikes, v_last, (seqs[0] if seqs is not None else None)


def inputs(kind, shape=(6, 3, 4), dtype=torch.float64):
    x = (torch.randn(shape, dtype=dtype) * 0.8 + 0.5).requires_grad_()
    v0 = (torch.rand(shape[1:], dtype=dtype) * 0.6 - 0.2).requires_grad_()
    w = torch.tensor(-0.3, dtype=dtype, requires_grad=True) if kind == "plif" else None
    return x, v0, w


def grads_of(outputs, leaves, weights):
    loss = sum((o * g).sum() for o, g in zip(outputs, weights) if o is not None)
    return torch.autograd.grad(loss, [t for t in leaves if t is not None])


def assert_matches_loop(kind, config, x, v0, w, store_v_seq=True, single=False):
    if single:
        got = run(kind, x[0], v0, config, w=w, single=True)
        want = plain_loop(kind, x[:1], v0, config, w)
        want = (want[0][0], want[1], None)
    else:
        got = run(kind, x, v0, config, w=w, store_v_seq=store_v_seq)
        want = plain_loop(kind, x, v0, config, w)
        if not store_v_seq:
            want = (want[0], want[1], None)
    assert got[2] is None if want[2] is None else got[2] is not None
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
    if want[2] is not None:
        torch.testing.assert_close(got[2], want[2], rtol=1e-12, atol=1e-12)
    weights = [torch.randn_like(t) if t is not None else None for t in want]
    g_got = grads_of(got, (x, v0, w), weights)
    g_want = grads_of(want, (x, v0, w), weights)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kind", "decay_input"), [("if", True), ("lif", True), ("lif", False), ("plif", True), ("plif", False)])
@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("detach", [False, True])
def test_multi_step_matches_plain_loop(kind, v_reset, detach, decay_input):
    config = make_config(kind, v_reset, detach, decay_input)
    x, v0, w = inputs(kind)
    assert_matches_loop(kind, config, x, v0, w, store_v_seq=True)
    assert_matches_loop(kind, config, x, v0, w, store_v_seq=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("detach", [False, True])
def test_single_step_matches_plain_loop(kind, v_reset, detach):
    config = make_config(kind, v_reset, detach)
    x, v0, w = inputs(kind, shape=(1, 5, 3))
    assert_matches_loop(kind, config, x, v0, w, single=True)


@pytest.mark.parametrize("name", surrogate.CLOSED_FORM_SURROGATES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_closed_form_surrogate(kind, name):
    config = make_config(kind, None if kind == "lif" else 0.0, name=name)
    x, v0, w = inputs(kind, shape=(4, 9))
    assert_matches_loop(kind, config, x, v0, w)


@pytest.mark.parametrize("kind", KINDS)
def test_threshold_exactly_reached_fires(kind):
    config = make_config(kind)
    if kind == "if":
        x = torch.tensor([[0.5], [0.5]], dtype=torch.float64)
    else:
        x = torch.tensor([[2.0], [0.0]], dtype=torch.float64)  # h = 0 + 2 * 0.5 = 1 (PLIF w=0)
    w = torch.tensor(0.0, dtype=torch.float64) if kind == "plif" else None
    if kind == "lif":
        config = make_config("lif", tau=2.0)
    spikes, _, _ = run(kind, x, torch.zeros(1, dtype=torch.float64), config, w=w)
    assert spikes[1 if kind == "if" else 0].item() == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_odd_shapes_noncontiguous_and_t1(kind):
    config = make_config(kind, -0.2)
    # transposed input
    base = torch.randn(5, 4, 3, dtype=torch.float64) + 0.5
    x = base.transpose(1, 2).requires_grad_()
    assert not x.is_contiguous()
    v0 = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(0.2, dtype=torch.float64, requires_grad=True) if kind == "plif" else None
    assert_matches_loop(kind, config, x, v0, w)
    # strided input (every other column), T = 1, and a 0-dim neuron shape
    x2 = (torch.randn(1, 7, 10, dtype=torch.float64) + 0.6)[..., ::2].requires_grad_()
    assert_matches_loop(kind, config, x2, torch.zeros(7, 5, dtype=torch.float64, requires_grad=True), w)
    x3 = (torch.randn(4, dtype=torch.float64) + 0.7).requires_grad_()
    assert_matches_loop(kind, config, x3, torch.zeros((), dtype=torch.float64, requires_grad=True), w)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_through_potentials_only_and_partial_inputs(kind):
    config = make_config(kind, None)
    x, v0, w = inputs(kind)
    def fn(*args, **kwargs):
        return run(kind, *args, **kwargs)

    _, v_last, v_seq = fn(x, v0, config, w=w, store_v_seq=True)
    _, rv_last, rv_seq = plain_loop(kind, x, v0, config, w)
    leaves = [t for t in (x, v0, w) if t is not None]
    got = torch.autograd.grad(v_last.sum() + v_seq.square().sum(), leaves)
    want = torch.autograd.grad(rv_last.sum() + rv_seq.square().sum(), leaves)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # only v0 requires grad
    x_plain = x.detach()
    spikes, _, _ = fn(x_plain, v0, config, w=None if w is None else w.detach())
    (g,) = torch.autograd.grad(spikes.sum(), v0)
    rs, _, _ = plain_loop(kind, x_plain, v0, config, None if w is None else w.detach())
    torch.testing.assert_close(g, torch.autograd.grad(rs.sum(), v0)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_reduced_precision_against_float64_loop(kind, dtype):
    config = make_config(kind, 0.0)
    x64, v064, w64 = inputs(kind, shape=(5, 40))
    x = x64.detach().to(dtype).requires_grad_()
    v0 = v064.detach().to(dtype).requires_grad_()
    w = w64.detach().to(dtype).requires_grad_() if w64 is not None else None
    spikes, v_last, v_seq = run(kind, x, v0, config, w=w, store_v_seq=True)
    assert spikes.dtype == v_last.dtype == v_seq.dtype == dtype
    # the reference: the same (rounded) inputs in float64
    xr = x.detach().double().requires_grad_()
    vr = v0.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_() if w is not None else None
    rs, rv, rseq = plain_loop(kind, xr, vr, config, wr)
    assert torch.equal(spikes.double(), rs)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(v_seq.double(), rseq, **tol)
    g = torch.autograd.grad(spikes.float().sum() + v_last.float().sum(), [t for t in (x, v0, w) if t is not None])
    gr = torch.autograd.grad(rs.sum() + rv.sum(), [t for t in (xr, vr, wr) if t is not None])
    for a, b in zip(g, gr):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), b, **tol)


def _saved_bytes(fn):
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


@pytest.mark.parametrize("kind", KINDS)
def test_training_saves_only_h_and_inference_nothing(kind):
    T, N = 6, 50
    config = make_config(kind)
    x = torch.randn(T, N, requires_grad=True)
    v0 = torch.zeros(N)
    w = torch.tensor(0.0, requires_grad=True) if kind == "plif" else None

    def fn(*args, **kwargs):
        return run(kind, *args, **kwargs)

    nbytes, _ = _saved_bytes(lambda: fn(x, v0, config, w=w))
    expected = T * N * 4 + (N * 4 if kind == "plif" else 0)  # h (+ v0 for PLIF: the gradient of w reads v)
    assert nbytes == expected
    with torch.no_grad():
        nbytes, (spikes, _, _) = _saved_bytes(lambda: fn(x, v0, config, w=w))
    assert nbytes == 0 and spikes.grad_fn is None
    nbytes, (spikes, _, _) = _saved_bytes(lambda: fn(x.detach(), v0, config, w=None if w is None else w.detach()))
    assert nbytes == 0 and spikes.grad_fn is None


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_not_modified(kind):
    config = make_config(kind, -0.3)
    x, v0, w = inputs(kind)
    xc, vc = x.detach().clone(), v0.detach().clone()

    def fn(*args, **kwargs):
        return run(kind, *args, **kwargs)

    spikes, v_last, _ = fn(x, v0, config, w=w)
    (spikes.sum() + v_last.sum()).backward()
    with torch.no_grad():
        fn(x, v0, config, w=w)
    assert torch.equal(x.detach(), xc) and torch.equal(v0.detach(), vc)


def test_kernel_argument_errors():
    config = make_config("lif")
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="learnables: model 'lif' has learnable parameters"):
        torch_backend.multi_step(x, (torch.zeros(4),), config, learnables=(torch.tensor(0.0),))
    with pytest.raises(ValueError, match="learnables: model 'plif'"):
        torch_backend.multi_step(x, (torch.zeros(4),), make_config("plif"))
    with pytest.raises(ValueError, match="states: model 'lif' has 1 state"):
        torch_backend.multi_step(x, (torch.zeros(4), torch.zeros(4)), config)
    with pytest.raises(ValueError, match=r"states\['v'\]: expected shape"):
        torch_backend.multi_step(x, (torch.zeros(5),), config)
    with pytest.raises(TypeError, match=r"states\['v'\]: expected dtype"):
        torch_backend.multi_step(x, (torch.zeros(4, dtype=torch.float64),), config)
    with pytest.raises(TypeError, match="floating-point"):
        torch_backend.multi_step(torch.ones(3, 4, dtype=torch.int64), (torch.zeros(4),), config)
    with pytest.raises(ValueError, match="T >= 1"):
        torch_backend.multi_step(torch.ones(0, 4), (torch.zeros(4),), config)
    with pytest.raises(TypeError, match=r"learnables\['w'\]: expected a tensor on cpu"):
        torch_backend.multi_step(x, (torch.zeros(4),), make_config("plif"), learnables=(torch.zeros((), device="meta"),))
    with pytest.raises(TypeError, match="NeuronConfig"):
        torch_backend.multi_step(x, (torch.zeros(4),), {"kind": "lif"})
    with pytest.raises(TypeError, match="states: expected a tuple"):
        torch_backend.multi_step(x, torch.zeros(4), config)


def test_registration():
    registry = get_registry()
    info = registry.backend("torch")
    assert info.devices == frozenset({"cpu", "cuda", "mps"})
    assert info.dtypes == frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
    assert set(info.claimed_surrogates()) == set(surrogate.CLOSED_FORM_SURROGATES)
    assert info.unavailable_reason() is None and info.auto_priority == 0
    assert info.provenance.plugin == "torch"
    assert info.generates and info.models is None
    assert registry.kernel("torch", "multi_step") is torch_backend.multi_step
    assert registry.kernel("torch", "single_step") is torch_backend.single_step
    for name, item in registry.models.items():
        assert info.serves_model(item.implementation, "multi_step"), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", surrogate.CLOSED_FORM_SURROGATES)
def test_compiled_derivative_equals_derivative_function(name, dtype):
    """The surrogate's derivative compiled to out= operations computes what its torch evaluation does."""
    from snn.backends.torch_program import compile_program

    cls = surrogate.SURROGATES[name]
    for sf in (cls(), cls(**{p: 2 * v for p, v in cls().params.items()})):
        x = torch.cat([torch.randn(500, dtype=dtype) * 2, torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 0.25], dtype=dtype)])
        program = compile_program([surrogate.derivative_expression(sf.spec, "z")], ["z"])
        bound = program.bind(tuple(x.shape), dtype, x.device)
        out = torch.empty_like(x)
        got = bound((x,), (), (out,))[0]
        want = surrogate.derivative_function(sf.spec)(x)
        assert torch.equal(got, want), (name, (got - want).abs().max())
        got2 = bound((x * 0.5,), (), (out,))[0]  # slots are reusable
        assert torch.equal(got2, surrogate.derivative_function(sf.spec)(x * 0.5))


def test_cpu_benchmark_script_runs_small():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_lif_cpu.py"
    if not path.exists():
        pytest.skip(f"{path} is not part of this checkout")
    spec = importlib.util.spec_from_file_location("bench_lif_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.run(T=3, N=64, repeats=1)
    assert rows[0]["name"] == "snn torch" and rows[0]["saved_bytes"] == 3 * 64 * 4
    assert all(row["spikes_match"] for row in rows)
    assert all(row["train_ms"] > 0 and row["infer_ms"] > 0 for row in rows)
    if len(rows) > 1:  # spikingjelly importable: its autograd loop keeps more per step
        assert rows[1]["saved_bytes"] > rows[0]["saved_bytes"]
    assert "train ms" in module.format_table(rows)
    with pytest.raises(ValueError, match="repeats"):
        module.run(T=3, N=8, repeats=0)


@pytest.mark.parametrize(("tile", "expected"), [(12, (1, 12)), (24, (2, 12)), (36, (3, 12)), (5, (1, 5)), (8, (1, 8))])
@pytest.mark.parametrize(("kind", "v_reset", "detach", "decay_input"), [
    ("if", 0.0, False, True), ("lif", -0.3, True, True), ("lif", None, False, False),
    ("plif", 0.0, False, True), ("plif", None, True, False), ("plif", -0.3, False, False),
])
def test_cpu_tiles_of_steps_and_neurons(monkeypatch, tile, expected, kind, v_reset, detach, decay_input):
    from snn.backends import torch_kernels

    shape = (7, 3, 4)  # 12 neurons: several tiles over time and / or neurons, the last ones partial
    monkeypatch.setattr(torch_kernels, "TILE_ELEMENTS", tile)
    monkeypatch.setattr(torch_kernels, "BACKWARD_TILE_ELEMENTS", tile)
    assert torch_kernels.tiles(7, 12, torch.device("cpu")) == expected
    config = make_config(kind, v_reset, detach, decay_input)
    x, v0, w = inputs(kind, shape=shape)
    assert_matches_loop(kind, config, x, v0, w, store_v_seq=True)
    assert_matches_loop(kind, config, x, v0, w, store_v_seq=False)
    with torch.no_grad():
        spikes, v_last, _ = run(kind, x, v0, config, w=w)
    ref_s, ref_v, _ = plain_loop(kind, x, v0, config, w)
    assert torch.equal(spikes, ref_s.detach())
    torch.testing.assert_close(v_last, ref_v.detach(), rtol=1e-12, atol=1e-12)
    with torch.inference_mode():
        xi, vi, wi = (t.detach().clone() if t is not None else None for t in (x, v0, w))
        spikes, _, v_seq = run(kind, xi, vi, config, w=wi, store_v_seq=True)
    assert torch.equal(spikes, ref_s.detach()) and torch.equal(v_seq[-1], v_last)


@pytest.mark.parametrize(("kind", "v_reset", "decay_input"), [
    ("if", 0.0, True), ("lif", 0.0, True), ("lif", -0.3, False), ("lif", None, True), ("plif", None, False),
    ("plif", -0.3, True),
])
def test_non_finite_values_follow_the_contract_equations(kind, v_reset, decay_input):
    nan, inf = float("nan"), float("inf")
    x = torch.tensor([[nan, inf, -inf, 0.5, 0.2], [0.3, 0.2, 0.4, inf, -inf], [0.9, 0.9, 0.9, 0.9, 0.9]], dtype=torch.float64)
    config = make_config(kind, v_reset, decay_input=decay_input)
    w = torch.tensor(0.4, dtype=torch.float64) if kind == "plif" else None
    spikes, v_last, v_seq = run(kind, x, torch.zeros(5, dtype=torch.float64), config, w=w, store_v_seq=True)
    ref_s, ref_v, ref_seq = plain_loop(kind, x, torch.zeros(5, dtype=torch.float64), config, w)
    assert torch.equal(spikes, ref_s)
    torch.testing.assert_close(v_seq, ref_seq, equal_nan=True, rtol=1e-12, atol=1e-12)
    assert torch.equal(v_seq.isnan(), ref_seq.isnan()) and torch.equal(v_seq.isinf(), ref_seq.isinf())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v_reset", [0.0, -0.3, None])
@pytest.mark.parametrize("detach", [True, False])
def test_non_finite_gradients_follow_the_contract_equations(kind, v_reset, detach):
    """Gradients through the potentials with NaN / inf inputs equal the plain loop's, NaN for NaN.

    A NaN potential never spikes, so with a detached hard reset ``dv/dh = 1 - s = 1`` and the
    gradient through it stays finite (``h < v_threshold`` would say 0 there).
    """
    nan, inf = float("nan"), float("inf")
    x = torch.tensor(
        [[nan, inf, -inf, 0.5, 0.2], [0.3, 0.2, 0.4, inf, -inf], [0.9, nan, 0.9, 0.9, 0.9]], dtype=torch.float64
    ).requires_grad_()
    v0 = torch.tensor([0.1, -0.2, 0.3, nan, 0.0], dtype=torch.float64).requires_grad_()
    config = make_config(kind, v_reset, detach)
    w = torch.tensor(0.4, dtype=torch.float64, requires_grad=True) if kind == "plif" else None
    got = run(kind, x, v0, config, w=w, store_v_seq=True)
    want = plain_loop(kind, x, v0, config, w)
    weights = [torch.linspace(-1.0, 1.0, 5, dtype=torch.float64), torch.rand(3, 5, dtype=torch.float64)]
    grad_got = torch.autograd.grad(got[1:], (x, v0), weights)  # no gradient through the spikes
    grad_want = torch.autograd.grad(want[1:], (x, v0), weights)
    for a, b in zip(grad_got, grad_want):
        assert torch.equal(a.isnan(), b.isnan())
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)
    if detach and v_reset is not None:
        assert torch.isfinite(grad_got[0][:, 0]).all()  # the neuron charged to NaN at step 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["Sigmoid", "ATan"])
def test_surrogate_parameters_beyond_float32_overflow_as_the_plain_loop(kind, name):
    """alpha = 1e39 on float32 inputs: the products overflow, as in a plain float32 loop (torch
    refuses such a number as the ``alpha``/``value`` scale of ``add``/``addcmul``)."""
    spec = surrogate.SURROGATES[name](alpha=1e39).spec
    hyper = {"v_reset": 0.0, "v_threshold": 1.0, **({} if kind == "if" else {"decay_input": True})}
    if kind == "lif":
        hyper["tau"] = 2.5
    config = MODELS[kind].config(spec, False, **hyper)
    x, v0, w = inputs(kind, dtype=torch.float32)
    got = run(kind, x, v0, config, w=w)
    want = plain_loop(kind, x, v0, config, w)
    assert torch.equal(got[0], want[0])
    leaves = [t for t in (x, v0, w) if t is not None]
    for a, b in zip(torch.autograd.grad(got[0].sum(), leaves), torch.autograd.grad(want[0].sum(), leaves)):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())
        torch.testing.assert_close(a, b, equal_nan=True)


def test_the_product_of_an_offset_coefficient_is_one_addcmul():
    """A single state's ``C[t + 1] = alpha q + beta`` (EIF's ``0.5 exp(u - 0.8) + 0.5``) comes
    as ``(q, alpha, beta)``: ``C A`` is ``addcmul(A, A, q, alpha / beta)`` times ``beta``, with
    no pass for ``C``; times a number ``A`` (a detached soft reset) ``C`` is computed first."""
    from snn.backends.torch_backward import _mixing
    from snn.backends.torch_plan import compiled_plan
    from snn.neuron import EIFNode

    generator = torch.Generator().manual_seed(5)
    q, a = (torch.randn(4, 50, dtype=torch.float64, generator=generator) for _ in range(2))
    zero = torch.zeros((), dtype=torch.float64)
    for shift in (0, 1):
        work = torch.empty(4, 50, dtype=torch.float64)
        (tensor, factor), = _mixing([(a, 3.0)], [(q, 0.5, 0.25)], 1, 3, work, [], zero, shift)[0]
        torch.testing.assert_close(tensor[:3] * factor, 3.0 * a[:3] * (0.5 * q[shift : 3 + shift] + 0.25))
        (tensor, factor), = _mixing([2.0], [(q, 0.5, 0.25)], 1, 3, work, [], zero, shift)[0]
        torch.testing.assert_close(tensor[:3] * factor, 2.0 * (0.5 * q[shift : 3 + shift] + 0.25))
    plan = compiled_plan(EIFNode(step_mode="m").neuron_config())
    assert plan.tile_next is not None
    assert plan.tile_next.offsets[2] == 0.5  # C = 0.5 exp(u - 0.8) + 0.5
    assert "affine" not in [i.op for i in plan.tile_next.program.instructions][-1:]
