"""Neurons: reference golden values, step modes, validation, eval mode, dispatch and fallbacks."""

from __future__ import annotations

import math
import types
from typing import Any

import pytest
import torch

import snn
from snn import neuron, plugins, surrogate
from snn.errors import BackendNotFoundError, UnsupportedOperationError
from snn.registry import Registry

ALL = (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode)


def column(values):
    return torch.tensor(values).view(-1, 1)


# -- golden values of the reference library (SpikingJelly's activation_based neurons) ---------------


def test_golden_if():
    node = neuron.IFNode(step_mode="m")
    x = column([0.6, 0.6, 0.6, 1.2]).requires_grad_()
    spikes = node(x)
    spikes.sum().backward()
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert node.v.item() == 0.0
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([0.677951, 0.178907, 0.659091, 0.150527]), atol=1e-6, rtol=0)


def test_golden_lif_soft_atan_store_v_seq():
    node = neuron.LIFNode(tau=2.0, v_reset=None, surrogate_function=surrogate.ATan(2.0), store_v_seq=True, step_mode="m")
    x = column([1.5, 1.5, 1.5, 0.0]).requires_grad_()
    spikes = node(x)
    (spikes.sum() + node.v.sum()).backward()
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert node.v_seq.flatten().tolist() == [0.75, 0.125, 0.8125, 0.40625]
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([0.397429, 0.462296, 0.435601, 0.5]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_golden_plif(step_mode):
    node = neuron.ParametricLIFNode(init_tau=2.0, step_mode=step_mode)
    x = column([1.5, 0.5, 2.5]).requires_grad_()
    spikes = node(x) if step_mode == "m" else torch.stack([node(x[t]) for t in range(3)])
    spikes.sum().backward()
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0]
    torch.testing.assert_close(node.w.grad, torch.tensor(0.466804), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([0.465492, 0.352388, 0.172516]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_plif_decay_is_the_float32_sigmoid_of_w_at_the_threshold(step_mode):
    """The decay is ``w.sigmoid()`` in the parameter's float32, as SpikingJelly computes it: in
    float64 it differs in the last bit for about a third of the values of ``w``, and a
    potential that close to the threshold spiked where the reference does not."""
    g = torch.Generator().manual_seed(5)
    w = torch.rand(48, generator=g) * 6.0 - 3.0
    for value in w.tolist():
        node = neuron.ParametricLIFNode(step_mode=step_mode)
        node.w.data.fill_(value)
        decay = torch.sigmoid(node.w.detach())  # float32, as the reference
        crossing = 1.0 / decay  # inputs within a few ulp of the threshold crossing
        x = torch.nextafter(crossing.expand(9).clone(), torch.tensor(0.0))
        for _ in range(4):
            x = torch.nextafter(x, torch.tensor(0.0))
        for i in range(1, 9):
            x[i:] = torch.nextafter(x[i:], torch.tensor(math.inf))
        x_seq = x.view(1, 9)
        spikes = node(x_seq) if step_mode == "m" else node(x_seq[0]).unsqueeze(0)
        assert torch.equal(spikes, (x_seq * decay >= 1.0).float()), value


# -- an independent loop (plain autograd) ---------------------------------------------------------


def loop_reference(node, x_seq, v):
    """The reference dynamics of ``node``'s hyper-parameters, written out step by step."""
    vr = 0.0 if node.v_reset is None else node.v_reset
    spikes, vs = [], []
    for x in x_seq:
        if isinstance(node, neuron.IFNode):
            h = v + x
        else:
            k = 1.0 / node.tau if isinstance(node, neuron.LIFNode) else torch.sigmoid(node.w)
            h = v + (x - (v - vr)) * k if node.decay_input else v - (v - vr) * k + x
        s = node.surrogate_function(h - node.v_threshold)
        sd = s.detach() if node.detach_reset else s
        v = h - sd * node.v_threshold if node.v_reset is None else sd * vr + (1 - sd) * h
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), v, torch.stack(vs)


def build(cls, **kw):
    if cls is neuron.LIFNode:
        kw.setdefault("tau", 3.0)
    if cls is neuron.ParametricLIFNode:
        kw.setdefault("init_tau", 3.0)
    return cls(**kw)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("v_reset", [0.0, None, -0.25])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_both_step_modes_match_loop_float64(cls, v_reset, detach_reset):
    x = (torch.randn(7, 3, 5, dtype=torch.float64) + 0.5).requires_grad_()
    grads = {}
    outs = {}
    for mode in ("s", "m"):
        node = build(cls, v_reset=v_reset, detach_reset=detach_reset, step_mode=mode, store_v_seq=True).double()
        out = node(x) if mode == "m" else torch.stack([node(x[t]) for t in range(x.shape[0])])
        loss = (out * torch.arange(out.numel(), dtype=torch.float64).view_as(out).cos()).sum() + node.v.sum()
        params = [x] + ([node.w] if cls is neuron.ParametricLIFNode else [])
        grads[mode] = torch.autograd.grad(loss, params)
        outs[mode] = (out.detach(), node.v.detach())
        # store_v_seq: the whole sequence in step mode 'm'; every step appended in step mode 's'
        assert node.v_seq.shape == x.shape
    ref_node = build(cls, v_reset=v_reset, detach_reset=detach_reset).double()
    rs, rv, _ = loop_reference(ref_node, x, torch.full((3, 5), v_reset or 0.0, dtype=torch.float64))
    loss = (rs * torch.arange(rs.numel(), dtype=torch.float64).view_as(rs).cos()).sum() + rv.sum()
    ref_grads = torch.autograd.grad(loss, [x] + ([ref_node.w] if cls is neuron.ParametricLIFNode else []))
    for mode in ("s", "m"):
        assert torch.equal(outs[mode][0], rs.detach())
        torch.testing.assert_close(outs[mode][1], rv.detach(), rtol=1e-12, atol=1e-12)
        for a, b in zip(grads[mode], ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", ALL)
def test_state_carries_across_calls_and_reset(cls):
    node = build(cls, step_mode="m")
    x = torch.rand(4, 6) * 1.5
    first = node(x)
    second = node(x)
    joined = build(cls, step_mode="m")(torch.cat([x, x]))
    assert torch.equal(torch.cat([first, second]), joined)
    node.reset()
    assert node.v == 0.0 and node.v_seq is None
    assert torch.equal(node(x), first)


def test_soft_reset_memory_resets_to_zero():
    node = neuron.LIFNode(v_reset=None, step_mode="m", store_v_seq=True)
    node(torch.rand(3, 2) * 3)
    assert node.v_seq is not None
    node.reset()
    assert node.v == 0.0 and node.v_seq is None
    node = neuron.IFNode(v_reset=-0.5)
    assert node.v == -0.5 and node.get_reset_value("v") == -0.5


def test_batch_size_change_raises():
    node = neuron.LIFNode(step_mode="m")
    node(torch.rand(3, 4, 2))
    with pytest.raises(ValueError, match="reset_net"):
        node(torch.rand(3, 5, 2))
    node.step_mode = "s"
    with pytest.raises(ValueError, match="reset_net"):
        node(torch.rand(5, 2))
    node.reset()
    assert node(torch.rand(5, 2)).shape == (5, 2)


def test_state_is_cast_to_input_dtype():
    node = neuron.IFNode(step_mode="m")
    node(torch.rand(2, 3))
    out = node(torch.rand(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and node.v.dtype == torch.float64


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: neuron.IFNode(v_threshold=True), TypeError, "v_threshold"),
        (lambda: neuron.IFNode(v_threshold="1"), TypeError, "v_threshold"),
        (lambda: neuron.IFNode(v_threshold=float("nan")), ValueError, "v_threshold"),
        # ints beyond the float range: ValueError, not float()'s OverflowError
        (lambda: neuron.IFNode(v_threshold=10**400), ValueError, "v_threshold: expected a finite number"),
        (lambda: neuron.LIFNode(tau=10**400), ValueError, "tau: expected a finite number"),
        (lambda: neuron.QIFNode(a0=-(10**400)), ValueError, "a0: expected a finite number"),
        (lambda: neuron.IFNode(v_reset="0"), TypeError, "v_reset"),
        (lambda: neuron.IFNode(detach_reset=1), TypeError, "detach_reset"),
        (lambda: neuron.IFNode(store_v_seq=None), TypeError, "store_v_seq"),
        (lambda: neuron.IFNode(surrogate_function=3), TypeError, "surrogate_function"),
        (lambda: neuron.IFNode(step_mode="x"), ValueError, "step_mode"),
        (lambda: neuron.LIFNode(tau=1.0), ValueError, "tau"),
        (lambda: neuron.LIFNode(tau=0.5), ValueError, "tau"),
        (lambda: neuron.LIFNode(tau="2"), TypeError, "tau"),
        (lambda: neuron.LIFNode(decay_input=2), TypeError, "decay_input"),
        (lambda: neuron.ParametricLIFNode(init_tau=1.0), ValueError, "init_tau"),
        (lambda: neuron.LIFNode(backend="no-such-backend"), BackendNotFoundError, "no-such-backend"),
    ],
)
def test_constructor_validation(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_integers_accepted_as_floats():
    node = neuron.LIFNode(tau=2, v_threshold=1, v_reset=0)
    assert isinstance(node.v_threshold, float) and isinstance(node.v_reset, float) and isinstance(node.tau, float)


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
@pytest.mark.parametrize("cls", [neuron.IFNode, neuron.LIFNode, neuron.EIFNode])
def test_integer_and_bool_inputs_run_as_the_default_dtype(step_mode, dtype, cls):
    # SpikingJelly's float states promote integer event counts: the same spikes as x.float()
    counts = (torch.arange(24).reshape(4, 2, 3) % 3).to(dtype)
    counted, floated = cls(step_mode=step_mode), cls(step_mode=step_mode)
    if step_mode == "m":
        got, expected = counted(counts), floated(counts.float())
    else:
        got = torch.stack([counted(step) for step in counts])
        expected = torch.stack([floated(step) for step in counts.float()])
    assert got.dtype == torch.get_default_dtype() and counted.v.dtype == torch.get_default_dtype()
    assert torch.equal(got, expected) and torch.equal(counted.v, floated.v)
    if dtype != torch.bool or cls is neuron.IFNode:  # a leaky neuron fed 0/1 never reaches 1
        assert got.sum() > 0


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_complex_and_non_tensor_inputs_raise(step_mode):
    node = neuron.IFNode(step_mode=step_mode)
    name = "x_seq" if step_mode == "m" else "x"
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point tensor \(or integer / bool counts\), got dtype torch.complex64"):
        node(torch.ones(2, 3, dtype=torch.complex64))
    with pytest.raises(TypeError, match=rf"{name}: expected a tensor \(floating, or integer / bool counts\), got list"):
        node([[1.0, 2.0]])


def test_default_surrogate_is_a_new_sigmoid_per_neuron():
    a, b = neuron.IFNode(), neuron.LIFNode()
    assert isinstance(a.surrogate_function, surrogate.Sigmoid) and a.surrogate_function.alpha == 4.0
    assert a.surrogate_function is not b.surrogate_function


def test_plif_parameter_and_repr():
    node = neuron.ParametricLIFNode(init_tau=4.0)
    assert node.w.dim() == 0 and node.w.requires_grad
    torch.testing.assert_close(torch.sigmoid(node.w), torch.tensor(0.25))
    text = repr(node)
    assert "tau=4.0" in text and "v_threshold=1.0" in text and "detach_reset=False" in text
    lif = repr(neuron.LIFNode(tau=3.0, v_reset=None))
    assert "tau=3.0" in lif and "v_reset=None" in lif and "backend=torch" in lif


# -- eval mode, store_v_seq, precision -----------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_eval_mode_keeps_the_surrogate_gradient(cls):
    """Eval mode changes nothing in a neuron's math: same spikes, and the surrogate gradient still
    flows when a gradient is asked for (saliency, adversarial examples); without one nothing is kept."""
    x = (torch.rand(5, 4) * 2).requires_grad_()
    train = build(cls, step_mode="m")
    out_train = train(x)
    (g_train,) = torch.autograd.grad(out_train.sum(), x)
    node = build(cls, step_mode="m").eval()
    out = node(x)
    assert torch.equal(out, out_train.detach())
    (g_eval,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(g_eval, g_train)
    assert g_eval.abs().sum() > 0
    node.reset()
    with torch.no_grad():
        assert torch.equal(node(x), out.detach())
    single = build(cls).eval()
    s0 = single(x[0])
    assert s0.requires_grad and torch.equal(s0.detach(), out_train[0].detach())


def test_store_v_seq_values_match_loop():
    node = neuron.LIFNode(tau=2.0, store_v_seq=True, step_mode="m")
    x = torch.rand(6, 2, 3) * 2
    node(x)
    _, _, ref = loop_reference(node, x, torch.zeros(2, 3))
    torch.testing.assert_close(node.v_seq, ref)
    torch.testing.assert_close(node.v, ref[-1])
    node.store_v_seq = False
    node.v_seq = []  # as a user's forward hook may set it (the reference's MNIST tutorial does)
    node(x)
    assert node.v_seq == []  # v_seq is only written when store_v_seq is on


def test_store_v_seq_in_single_step_mode_appends_until_reset():
    node = neuron.LIFNode(tau=2.0, store_v_seq=True)
    x = torch.rand(6, 2, 3) * 2
    for t in range(3):
        node(x[t])
        assert node.v_seq.shape == (t + 1, 2, 3)
        assert torch.equal(node.v_seq[-1], node.v)
    _, _, ref = loop_reference(neuron.LIFNode(tau=2.0), x[:3], torch.zeros(2, 3))
    torch.testing.assert_close(node.v_seq, ref)
    node.reset()
    assert node.v_seq is None
    node(x[0])
    assert node.v_seq.shape == (1, 2, 3)
    plain = neuron.LIFNode(tau=2.0)
    plain(x[0])
    assert plain.v_seq is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward_backward(dtype):
    node = neuron.LIFNode(step_mode="m")
    x = (torch.rand(4, 8) * 2).to(dtype).requires_grad_()
    out = node(x)
    out.sum().backward()
    assert out.dtype == dtype and x.grad.dtype == dtype and node.v.dtype == dtype


# -- fallbacks -----------------------------------------------------------------------------------


class _MyNode(neuron.BaseNode):
    def neuronal_charge(self, x):
        self.v = 0.5 * self.v + x


class _MyLIF(neuron.LIFNode):
    def neuronal_charge(self, x):
        self.v = self.v + x * 2.0


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_custom_dynamics_run_on_the_loop(step_mode):
    x = torch.rand(5, 3)
    node = _MyNode(step_mode=step_mode)
    out = node(x) if step_mode == "m" else torch.stack([node(t) for t in x])
    v = torch.zeros(3)
    expected = []
    for t in x:
        h = 0.5 * v + t
        s = (h >= 1.0).float()
        v = h * (1 - s)
        expected.append(s)
    assert torch.equal(out, torch.stack(expected))
    lif = _MyLIF(step_mode="m")
    assert torch.equal(lif(torch.full((2, 1), 0.5)).flatten(), torch.tensor([1.0, 1.0]))


def _non_spiking():
    node = neuron.LIFNode(step_mode="m", store_v_seq=True)
    node.surrogate_function.set_spiking_mode(False)
    return node


def _custom_callable():
    return neuron.LIFNode(step_mode="m", store_v_seq=True, surrogate_function=lambda y: surrogate.heaviside(y) + 0 * y)


def _tensor_threshold():
    node = neuron.LIFNode(step_mode="m", store_v_seq=True)
    node.v_threshold = torch.tensor([0.5, 1.0, 1.5])
    return node


@pytest.mark.parametrize("make", [_non_spiking, _custom_callable, _tensor_threshold])
def test_configurations_without_kernel_use_the_torch_loop(make):
    x = (torch.rand(4, 2, 3) * 2).requires_grad_()
    node = make()
    out = node(x)
    ref_s, ref_v, ref_seq = loop_reference(make(), x, torch.zeros(2, 3))
    torch.testing.assert_close(out, ref_s)
    torch.testing.assert_close(node.v_seq, ref_seq)
    assert out.requires_grad


# -- dispatch ------------------------------------------------------------------------------------


def _fake_plugin(name, dtypes=(torch.float32,), surrogates=("Sigmoid",)):
    @snn.hookimpl
    def snn_register_backends(register):
        register(
            name,
            {"multi_step": "snn.backends.torch:multi_step"},
            models=("if", "lif", "plif"),
            devices=("cpu",),
            dtypes=dtypes,
            surrogates=surrogates,
            probe=lambda: None,
        )

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


def test_auto_picks_torch_on_cpu_among_the_in_tree_plugins(in_tree_only):
    node = neuron.LIFNode(step_mode="m", backend="auto")
    x = torch.rand(3, 4) * 2
    ref = neuron.LIFNode(step_mode="m")(x)
    assert torch.equal(node(x), ref)
    registry = plugins.get_registry()
    assert registry.auto_backend(node.neuron_config(), "multi_step", "cpu", torch.float32) == "torch"
    assert list(node._dispatch._cache.values()) == [registry.kernel("torch", "multi_step")]


def test_dispatch_is_cached_per_registry(monkeypatch):
    calls = []
    original = Registry.kernel

    def counting(self, *args):
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(Registry, "kernel", counting)
    node = neuron.LIFNode(step_mode="m")
    x = torch.rand(3, 4)
    node(x)
    assert calls == [("torch", "multi_step")]
    node(x)
    node.reset()
    node(x)
    assert len(calls) == 1
    plugins.reset()
    node(x)
    assert len(calls) == 2


def test_other_backend_checks_inputs_and_refuses_the_loop(temporary_plugin):
    temporary_plugin(_fake_plugin("fake32"), name="fake32")
    node = neuron.LIFNode(step_mode="m", backend="fake32")
    x = torch.rand(3, 4) * 2
    assert torch.equal(node(x), neuron.LIFNode(step_mode="m")(x))
    node.reset()
    with pytest.raises(UnsupportedOperationError, match="dtype"):
        node(x.double())
    node.reset()
    node.surrogate_function = surrogate.ATan()
    with pytest.raises(UnsupportedOperationError, match="ATan"):
        node(x)
    node.surrogate_function.set_spiking_mode(False)
    with pytest.raises(UnsupportedOperationError, match="non-spiking"):
        node(x)
    node.surrogate_function = surrogate.Sigmoid()
    node.v_threshold = torch.ones(4)
    with pytest.raises(UnsupportedOperationError, match="tensor hyper-parameter"):
        node(x)


def test_single_step_mode_refuses_kernel_only_backend(temporary_plugin):
    temporary_plugin(_fake_plugin("fakems"), name="fakems")
    with pytest.raises(UnsupportedOperationError):
        neuron.IFNode(step_mode="s", backend="fakems")
    node = neuron.IFNode(step_mode="m", backend="fakems")
    assert "fakems" in node.supported_backends
    node.step_mode = "s"  # single-step mode runs the torch kernel
    assert node(torch.full((2,), 1.5)).tolist() == [1.0, 1.0]


def test_config_is_cached_and_follows_hyper_parameters():
    node = neuron.LIFNode(step_mode="m")
    first = node.neuron_config()
    assert node.neuron_config() is first
    node.v_threshold = 0.5
    node.surrogate_function.alpha = 2.0
    second = node.neuron_config()
    assert second["v_threshold"] == 0.5 and second.surrogate.kwargs == {"alpha": 2.0}
    x = torch.full((2, 1), 0.8)  # h = 0.4, then 0.6 >= 0.5
    assert node(x).flatten().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("cls", ALL)
def test_deepcopy_and_pickle_after_training_forward(cls):
    import copy
    import pickle

    node = build(cls, step_mode="m", store_v_seq=True, backend="auto")
    x = (torch.rand(3, 4) * 2).requires_grad_()
    out = node(x)
    clone = copy.deepcopy(node)
    restored = pickle.loads(pickle.dumps(node))
    for other in (clone, restored):
        assert torch.equal(other.v, node.v.detach()) and torch.equal(other.v_seq, node.v_seq.detach())
        other.reset()
        node_fresh = build(cls, step_mode="m")
        if cls is neuron.ParametricLIFNode:
            node_fresh.w.data.copy_(node.w.data)
        assert torch.equal(other(x.detach()), node_fresh(x.detach()))
    assert out.requires_grad


@pytest.mark.parametrize("init_tau", [1.0 + 1e-9, 1e50])
def test_plif_init_tau_whose_decay_rounds_to_zero_or_one_is_refused(init_tau: float) -> None:
    with pytest.raises(ValueError, match="init_tau"):
        neuron.ParametricLIFNode(init_tau=init_tau)


@pytest.mark.parametrize("cls", ALL)
def test_surrogate_class_instead_of_instance_is_refused_at_construction(cls):
    """Passing ``surrogate.ATan`` (the class) used to fail 13 frames deep at the first forward."""
    with pytest.raises(TypeError, match=r"got the class ATan; call it: surrogate_function=ATan\(\)"):
        cls(surrogate_function=surrogate.ATan)
    with pytest.raises(TypeError, match="surrogate_function: expected an snn.surrogate function or a callable"):
        cls(surrogate_function=int)


def test_setting_store_v_seq_forgets_the_kept_sequence():
    """As SpikingJelly's setter: assigning ``store_v_seq`` (either value) drops ``v_seq``."""
    node = neuron.LIFNode(step_mode="m", store_v_seq=True)
    node(torch.rand(4, 3))
    assert node.v_seq is not None and node.v_seq.shape == (4, 3)
    node.store_v_seq = False
    assert node.v_seq is None and node.store_v_seq is False
    node(torch.rand(4, 3))
    assert node.v_seq is None  # not written while off
    node.store_v_seq = True
    node(torch.rand(2, 3))
    assert node.v_seq is not None and node.v_seq.shape == (2, 3)
    node.store_v_seq = True
    assert node.v_seq is None
    with pytest.raises(TypeError, match="store_v_seq: expected a bool"):
        node.store_v_seq = "yes"  # type: ignore[assignment]  # a wrong type on purpose: the error is under test


def test_a_reset_value_the_input_dtype_cannot_hold_is_named():
    node = neuron.IFNode(v_reset=-7e4)  # fine in float32, beyond float16's 65504
    with pytest.raises(ValueError, match=r"IFNode: the state v starts at -70000.0, which the input's dtype torch.float16 cannot hold"):
        node(torch.rand(2, 3).half())
    assert node(torch.rand(2, 3)).dtype == torch.float32


@pytest.mark.parametrize("make", [
    lambda *a: neuron.IFNode(1.0, None, surrogate.ATan(), True, "m", *a),
    lambda *a: neuron.LIFNode(2.0, True, 1.0, None, surrogate.ATan(), True, "m", *a),
    lambda *a: neuron.ParametricLIFNode(2.0, True, 1.0, None, surrogate.ATan(), True, "m", *a),
], ids=["IF", "LIF", "PLIF"])
def test_both_spikingjelly_positional_orders(make: Any) -> None:
    # development version (and snn): (..., step_mode, backend, store_v_seq); 2.0.0: (..., step_mode, store_v_seq)
    released = make(True)
    assert released.store_v_seq is True and released.backend == "torch"
    assert make(False).store_v_seq is False and make(1).store_v_seq is True
    development = make("torch", True)
    assert development.store_v_seq is True and development.backend == "torch"
    with pytest.raises(TypeError, match="backend: expected a backend name, got True .* store_v_seq=True"):
        make(True, True)
    x_seq = torch.rand(3, 2)
    released(x_seq)
    assert released.v_seq is not None and released.v_seq.shape == (3, 2)


def test_flags_take_the_integers_0_and_1_as_spikingjelly_does() -> None:
    assert neuron.LIFNode(decay_input=0).decay_input is False
    assert neuron.ParametricLIFNode(decay_input=1).decay_input is True
    node = neuron.IFNode(store_v_seq=1)
    assert node.store_v_seq is True
    for bad in (None, 2, 0.0, "yes"):
        with pytest.raises(TypeError, match=r"decay_input: expected a bool \(or the integer 0 or 1, a NumPy bool, a one-element boolean tensor\)"):
            neuron.LIFNode(decay_input=bad)
    with pytest.raises(TypeError, match=r"store_v_seq: expected a bool \(or the integer 0 or 1, a NumPy bool, a one-element boolean tensor\), got NoneType"):
        neuron.IFNode(store_v_seq=None)
    with pytest.raises(TypeError, match="detach_reset: expected a bool, got int"):  # the reference asserts a bool
        neuron.IFNode(detach_reset=1)


def test_a_backend_chosen_before_the_hyper_parameters_is_named() -> None:
    class EarlyNode(neuron.BaseNode):
        model = neuron.LIFNode.model

        def __init__(self, backend: str = "torch") -> None:
            super().__init__(step_mode="m", backend=backend)  # the backend is checked here
            self.tau = 2.0
            self.decay_input = True

    with pytest.raises(TypeError, match="EarlyNode: backend: chosen before the hyper-parameters tau, decay_input were set"):
        EarlyNode(backend="auto")
    assert EarlyNode().backend == "torch"
