"""The Triton kernels against an independent float64 autograd loop and the reference's values."""

from __future__ import annotations

import pytest
import torch
from snn_triton_test_helpers import DEVICE, compare, leaves, make_config, plain_loop

from snn.kernels import NeuronConfig
from snn.surrogate import SURROGATES, ATan, Sigmoid
from snn_triton import ops
from snn_triton.multistep import if_multi_step, lif_multi_step, plif_multi_step
from snn_triton.plugin import claimed_surrogates

pytestmark = pytest.mark.usefixtures("triton_ready")


DYNAMICS = [
    pytest.param(kind, v_reset, detach, decay_input, id=f"{kind}-{reset}-{detach}-{decay_input}")
    for kind in ("if", "lif", "plif")
    for reset, v_reset in (("hard", 0.0), ("hardneg", -0.4), ("soft", None))
    for detach in (False, True)
    for decay_input in ((True,) if kind == "if" else (True, False))
]


@pytest.mark.parametrize(("kind", "v_reset", "detach_reset", "decay_input"), DYNAMICS)
def test_matches_plain_loop(kind, v_reset, detach_reset, decay_input):
    config = make_config(kind, v_reset, detach_reset, decay_input, ATan())
    compare(kind, config, *leaves((6, 37), kind))


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (5, 1), (4, 2, 3, 5), (3, 0)], ids=str)
def test_edge_shapes(kind, shape):
    compare(kind, make_config(kind), *leaves(shape, kind))


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_several_programs(kind, monkeypatch):
    """Blocks of 16 neurons: 3 programs for 37 neurons, the last one masked; PLIF's partial sums."""
    monkeypatch.setattr(ops, "INTERPRETER_MAX_BLOCK", 16)
    if DEVICE == "cuda":
        pytest.skip("the block size is chosen by the GPU heuristic on CUDA")
    assert ops.launch_config(37, torch.device("cpu"))[0] == 16
    compare(kind, make_config(kind, v_reset=None), *leaves((4, 37), kind, seed=3))


@pytest.mark.parametrize("layout", ["transposed", "sliced", "expanded_v0"])
def test_non_contiguous_inputs(layout):
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(5, 9, 4, generator=gen) + 0.5
    if layout == "transposed":
        x = base.transpose(1, 2)
        v0 = torch.zeros(9, 4).t()
    elif layout == "sliced":
        x = base[:, ::2, 1:]
        v0 = torch.rand(9, 4, generator=gen)[::2, 1:]
    else:
        x = base
        v0 = torch.tensor(0.1).expand(9, 4)
    x = x.to(DEVICE).requires_grad_()
    v0 = v0.to(DEVICE).requires_grad_()
    assert not x.is_contiguous() or not v0.is_contiguous()
    w = torch.tensor(0.3, device=DEVICE, requires_grad=True)
    before = x.detach().clone()
    compare("plif", make_config("plif", v_reset=-0.1), x, v0, w)
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("name", claimed_surrogates())
def test_every_claimed_surrogate(name):
    cls = SURROGATES[name]
    compare("lif", make_config("lif", v_reset=None, surrogate=cls()), *leaves((4, 37), "lif", seed=5))


def test_surrogate_parameters_are_honoured():
    """Non-default parameters change the generated derivative (one module per spec)."""
    x, v0, _ = leaves((4, 37), "if", seed=9)
    for alpha in (0.5, 3.0):
        compare("if", make_config("if", surrogate=Sigmoid(alpha=alpha)), x, v0)


def test_inference_saves_nothing_and_matches_training():
    x, v0, w = leaves((5, 37), "plif", seed=2)
    config = make_config("plif")
    train = plif_multi_step(x, v0, config, w=w, store_v_seq=True)
    assert train[0].grad_fn is not None
    with torch.no_grad():
        infer = plif_multi_step(x, v0, config, w=w, store_v_seq=True)
    assert all(t.grad_fn is None for t in infer)
    for a, b in zip(train, infer):
        assert torch.equal(a.detach(), b)
    plain = plif_multi_step(x.detach(), v0.detach(), config, w=w.detach())
    assert plain[0].grad_fn is None and plain[2] is None
    assert torch.equal(plain[1], infer[1])


def test_inference_op_writes_no_o_and_training_saves_h_minus_threshold():
    x = torch.randn(3, 10, device=DEVICE) + 0.6
    encoded = ops.encode_config(make_config("if"))
    out = torch.ops.snn_triton.multistep_forward(x, torch.zeros(10, device=DEVICE), None, encoded, False, False)
    assert out[2].numel() == 0 and out[3].numel() == 0
    trained = torch.ops.snn_triton.multistep_forward(x, torch.zeros(10, device=DEVICE), None, encoded, True, False)
    assert torch.equal(trained[0], out[0])
    v = torch.zeros(10, dtype=torch.float64)
    expected = []
    for step in x.cpu().double():
        h = v + step
        expected.append(h - 1.0)
        v = torch.where(h >= 1.0, 0.0, h)
    torch.testing.assert_close(trained[3].cpu().double(), torch.stack(expected), rtol=1e-6, atol=1e-6)
    assert torch.equal((trained[3] >= 0).to(x.dtype), trained[0])


def test_v_last_equals_last_step_and_gradient_only_through_v():
    x, v0, _ = leaves((5, 37), "lif", seed=4)
    config = make_config("lif", v_reset=None)
    spikes, v_last, v_seq = lif_multi_step(x, v0, config, store_v_seq=True)
    assert torch.equal(v_last, v_seq[-1])
    (gx,) = torch.autograd.grad(v_last.sum(), x)
    ref_x = x.detach().double().requires_grad_()
    _, ref_v, _ = plain_loop("lif", ref_x, v0.detach().double(), config)
    (want,) = torch.autograd.grad(ref_v.sum(), ref_x)
    torch.testing.assert_close(gx.cpu().double(), want, rtol=2e-5, atol=2e-5)


def test_plif_w_gradient_is_deterministic():
    x, v0, w = leaves((6, 300), "plif", seed=8)
    config = make_config("plif", v_reset=None)
    grads = []
    for _ in range(2):
        spikes, v_last, _ = plif_multi_step(x, v0, config, w=w)
        grads.append(torch.autograd.grad(spikes.sum() + v_last.sum(), w)[0])
    assert torch.equal(grads[0], grads[1])


# -- the reference page's worked values (section 7.2) ----------------------------------------


def test_reference_if_values():
    x = torch.tensor([[0.6], [0.6], [0.6], [1.2]], device=DEVICE, requires_grad=True)
    spikes, v_last, _ = if_multi_step(x, torch.zeros(1, device=DEVICE), make_config("if"))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v_last.item() == 0.0
    (grad,) = torch.autograd.grad(spikes.sum(), x)
    torch.testing.assert_close(
        grad.flatten().cpu(), torch.tensor([0.677951, 0.178907, 0.659091, 0.150527]), rtol=0, atol=2e-6
    )


def test_reference_lif_values():
    config = NeuronConfig("lif", 1.0, None, False, True, 2.0, ATan(alpha=2.0).spec)
    x = torch.tensor([[1.5], [1.5], [1.5], [0.0]], device=DEVICE, requires_grad=True)
    spikes, v_last, v_seq = lif_multi_step(x, torch.zeros(1, device=DEVICE), config, store_v_seq=True)
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert v_seq.flatten().tolist() == [0.75, 0.125, 0.8125, 0.40625]
    (grad,) = torch.autograd.grad(spikes.sum() + v_last.sum(), x)
    torch.testing.assert_close(
        grad.flatten().cpu(), torch.tensor([0.397429, 0.462296, 0.435601, 0.5]), rtol=0, atol=2e-6
    )


def test_reference_plif_values():
    w = torch.tensor(0.0, device=DEVICE, requires_grad=True)  # init_tau = 2: w = -ln(1) = 0
    x = torch.tensor([[1.5], [0.5], [2.5]], device=DEVICE, requires_grad=True)
    spikes, _, _ = plif_multi_step(x, torch.zeros(1, device=DEVICE), make_config("plif"), w=w)
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0]
    grad_x, grad_w = torch.autograd.grad(spikes.sum(), (x, w))
    torch.testing.assert_close(grad_w.cpu(), torch.tensor(0.466804), rtol=0, atol=2e-6)
    torch.testing.assert_close(
        grad_x.flatten().cpu(), torch.tensor([0.465492, 0.352388, 0.172516]), rtol=0, atol=2e-6
    )


#: Which upstream gradients a backward pass receives (the others are ``None``).
_GRADIENT_SETS = (("spikes", "v_last", "v_seq"), ("v_last", "v_seq"), ("v_seq",), ("v_last",), ("spikes",))


def _nonfinite_inputs():
    """``[T=4, N=12]`` on a 1/8 grid: NaN, +inf, -inf in ``x`` (columns 0-5) and ``v0`` (6-8)."""
    nan, inf = float("nan"), float("inf")
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-6, 14, (4, 12), generator=gen).float() / 8
    x[0, 0], x[2, 1], x[0, 2], x[1, 3], x[0, 4], x[3, 5] = nan, nan, inf, inf, -inf, -inf
    v0 = torch.randint(-4, 8, (12,), generator=gen).float() / 8
    v0[6], v0[7], v0[8] = nan, inf, -inf
    upstream = {
        "spikes": torch.randint(-8, 8, (4, 12), generator=gen).float() / 8,
        "v_last": torch.randint(-8, 8, (12,), generator=gen).float() / 8,
        "v_seq": torch.randint(-8, 8, (4, 12), generator=gen).float() / 8,
    }
    return x, v0, upstream


def _outputs_and_gradients(kernel, x, v0, config, upstream, given):
    x = x.to(DEVICE).requires_grad_()
    v0 = v0.to(DEVICE).requires_grad_()
    w = torch.zeros((), device=DEVICE, requires_grad=True) if config.kind == "plif" else None
    spikes, v_last, v_seq = kernel(x, v0, config, w=w, store_v_seq=True)
    outputs = {"spikes": spikes, "v_last": v_last, "v_seq": v_seq}
    grads = torch.autograd.grad([outputs[n] for n in given], [x, v0], [upstream[n].to(DEVICE) for n in given])
    return [t.detach().cpu() for t in (spikes, v_last, v_seq, *grads)]


# the interpreter evaluates with numpy, which warns about the NaN that inf * 0 rightly produces
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(("kind", "v_reset", "detach_reset", "decay_input"), DYNAMICS)
def test_nonfinite_inputs_match_the_torch_backend(kind, v_reset, detach_reset, decay_input):
    """NaN / inf in ``x`` and ``v0``: spikes equal the torch backend's, potentials NaN / inf exactly
    where torch's are (finite ones within float32 rounding: Triton computes ``v``, torch
    ``v - v_reset``), and gradients NaN exactly where torch's are (also when upstream gradients are missing:
    an absent one must not turn ``0 * inf`` into NaN) and close elsewhere."""
    from snn.backends import torch as torch_backend

    config = NeuronConfig(kind, 1.0, v_reset, detach_reset, decay_input, 2.0 if kind == "lif" else None,
                          Sigmoid().spec)
    x, v0, upstream = _nonfinite_inputs()
    for given in _GRADIENT_SETS:
        want = _outputs_and_gradients(getattr(torch_backend, f"{kind}_multi_step"), x, v0, config, upstream, given)
        got = _outputs_and_gradients(
            {"if": if_multi_step, "lif": lif_multi_step, "plif": plif_multi_step}[kind], x, v0, config, upstream, given
        )
        assert torch.equal(got[0], want[0]), f"spikes differ ({given})"
        for name, a, b in zip(("v_last", "v_seq"), got[1:3], want[1:3]):  # the frames round differently
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf()), name
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, equal_nan=True, msg=lambda m, n=name: f"{n}: {m}")
        for name, a, b in zip(("grad_x", "grad_v0"), got[3:], want[3:]):
            assert torch.equal(a.isnan(), b.isnan()), f"NaN positions of {name} differ ({given}):\n{a}\n{b}"
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, equal_nan=True, msg=lambda m, n=name: f"{n}: {m}")
