"""torch.compile traces through the kernel (custom operators) without graph breaks; the
configuration string round-trips."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from snn_triton_test_helpers import (
    DEVICE,
    SYNTHETIC_MODELS,
    all_model_names,
    assert_close_outputs,
    make_inputs,
    outputs_and_gradients,
)

from snn.backends.torch import multi_step as torch_multi_step
from snn.models import NeuronModel, State
from snn.plugins import get_registry
from snn.surrogate import ATan, Sigmoid, SurrogateFunctionBase
from snn_triton import ops
from snn_triton.multistep import multi_step

pytestmark = pytest.mark.usefixtures("triton_ready", "synthetic_models")


def model_named(name):
    return SYNTHETIC_MODELS.get(name) or get_registry().model(name)


def layer(config, x, states, learnables):
    spikes, last, seqs = multi_step(x * 1.5, states, config, learnables=learnables, store_state_seqs=True)
    return spikes.sum() + 0.5 * sum(v.sum() for v in last) + 0.25 * sum(v.sum() for v in seqs)


def leaves(config, seed=3):
    x, states, learnables = make_inputs(config, (4, 3, 5), seed=seed)
    return (x.requires_grad_(), tuple(s.requires_grad_() for s in states), tuple(p.requires_grad_() for p in learnables))


@pytest.mark.parametrize("name", all_model_names())
def test_no_graph_breaks(name):
    config = model_named(name).config(ATan().spec, v_reset=-0.1)
    x, states, learnables = leaves(config)
    explanation = torch._dynamo.explain(lambda a: layer(config, a, states, learnables))(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("name", ["lif", "plif", "twostate"])
def test_compiled_forward_and_backward_match_eager(name):
    torch._dynamo.reset()
    config = model_named(name).config(ATan().spec, v_reset=-0.1)
    x, states, learnables = leaves(config)
    inputs = [x, *states, *learnables]
    m = len(states)
    compiled = torch.compile(
        lambda *a: layer(config, a[0], tuple(a[1 : 1 + m]), tuple(a[1 + m :])), backend="aot_eager", fullgraph=True
    )
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(got, inputs)
    want = layer(config, x, states, learnables)
    want_grads = torch.autograd.grad(want, inputs)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_compiled_inference():
    torch._dynamo.reset()
    config = model_named("lif").config(ATan().spec)
    x = torch.rand(4, 7, device=DEVICE)
    compiled = torch.compile(
        lambda a: multi_step(a, (torch.zeros_like(a[0]),), config)[0], backend="aot_eager", fullgraph=True
    )
    with torch.no_grad():
        assert torch.equal(compiled(x), multi_step(x, (torch.zeros_like(x[0]),), config)[0])


@pytest.mark.parametrize("name", ["plif", "twostate", "clipin"])
def test_opcheck_forward_and_backward(name):
    """PyTorch's own checks of the operators: schema, fake tensors, autograd registration."""
    config = model_named(name).config(ATan().spec)
    encoded = ops.encode_config(config)
    x, states, learnables = make_inputs(config, (3, 6), seed=1)
    x.requires_grad_()
    states = [s.requires_grad_() for s in states]
    learnables = [p.requires_grad_() for p in learnables]
    forward = torch.ops.snn_triton.multi_step_forward.default
    torch.library.opcheck(forward, (x, states, learnables, encoded, True, True))
    detached = ([t.detach() for t in states], [p.detach() for p in learnables])
    torch.library.opcheck(forward, (x.detach(), *detached, encoded, False, False))
    charged = forward(x.detach(), *detached, encoded, True, False)[3]
    m = len(states)
    gen = torch.Generator().manual_seed(0)
    grads = (torch.rand(3, 6, generator=gen).to(DEVICE), [torch.rand(6, generator=gen).to(DEVICE)] + [None] * (m - 1),
             [None] * m)
    torch.library.opcheck(
        torch.ops.snn_triton.multi_step_backward.default,
        (*grads, charged, x.detach(), detached[0], detached[1], encoded, True, True),
    )


class ThirdPartySurrogate(SurrogateFunctionBase):
    """A surrogate of another package: ``g(x) = alpha / (1 + |alpha x|)^2``."""

    param_names = ("alpha",)

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def derivative(x, ops, alpha=2.0):
        return alpha / ((1.0 + ops.abs(alpha * x)) ** 2)

    @staticmethod
    def primitive(x, alpha=2.0):
        return 0.5 + 0.5 * alpha * x / (1.0 + (alpha * x).abs())


def test_config_encoding_round_trips():
    for config in (
        model_named("lif").config(ATan(alpha=0.1).spec, detach_reset=True, tau=1.7, v_reset=None, decay_input=False),
        model_named("twostate").config(Sigmoid().spec, tau_syn=2.25, v_threshold=0.3),
    ):
        encoded = ops.encode_config(config)
        assert ops.decode_config(encoded) is config
        assert ops._decode(get_registry(), encoded) == config  # rebuilt from the registry, as in another process
    with pytest.raises(ValueError, match="config"):
        ops.decode_config("not json")
    with pytest.raises(ValueError, match="format"):
        ops.decode_config('["other/9", "lif", [], false, "Sigmoid", [], null]')


def test_third_party_surrogate_class_is_encoded_by_path():
    spec = ThirdPartySurrogate(alpha=3.0).spec
    assert spec.cls is ThirdPartySurrogate
    config = model_named("lif").config(spec)
    encoded = ops.encode_config(config)
    assert f"{__name__}:ThirdPartySurrogate" in encoded
    assert ops._decode(get_registry(), encoded) == config
    x, states, _ = make_inputs(config, (4, 9), seed=2)
    upstream = {"spikes": torch.ones(4, 9), "last": [torch.ones(9)], "seqs": [torch.ones(4, 9)]}
    got = outputs_and_gradients(multi_step, config, x, states, [], upstream)
    want = outputs_and_gradients(torch_multi_step, config, x, states, [], upstream)
    assert_close_outputs(got, want, ["spikes", "last", "seq", "grad x", "grad v"], 1e-5, 1e-5)
    gone = encoded.replace(__name__, "not_a_loaded_module")
    assert "not_a_loaded_module" not in sys.modules
    with pytest.raises(ValueError, match="not imported"):
        ops.decode_config(gone)


def test_unregistered_models_run_in_this_process():
    """A model the registry does not hold under its name (another object called 'lif', or one
    never registered) is encoded by identity: it decodes to the very configuration here, runs
    like the torch backend, and a string naming a model this process never encoded is refused."""
    stray = NeuronModel(name="lif", states=(State("v"),), hyperparameters=model_named("if").hyperparameters,
                        charge=lambda x, u, p, o: {"v": 0.5 * u.v + x})
    unknown = NeuronModel(name="nowhere", states=(State("v"),), hyperparameters=model_named("if").hyperparameters,
                          charge=lambda x, u, p, o: {"v": u.v + 2.0 * x})
    x = torch.rand(3, 5, device=DEVICE)
    for model in (stray, unknown):
        config = model.config(Sigmoid().spec)
        encoded = ops.encode_config(config)
        assert ops.decode_config(encoded) is config
        assert f'"{model.name}@' in encoded
        got = multi_step(x, (torch.zeros(5, device=DEVICE),), config)
        want = torch_multi_step(x, (torch.zeros(5, device=DEVICE),), config)
        assert torch.equal(got[0], want[0]) and torch.allclose(got[1][0], want[1][0])
    with pytest.raises(ValueError, match="not registered and was not encoded in this process"):
        ops.decode_config(encoded.replace("nowhere@", "nowhere@0"))
    with pytest.raises(TypeError, match="NeuronConfig"):
        ops.encode_config(types.SimpleNamespace())


def test_a_surrogate_class_defined_in_a_function_survives_cache_eviction():
    """Its class path cannot be followed back (``<locals>``): it is encoded by identity, so the
    string still decodes after the encoded-config table was cleared (it failed after 4096
    other configurations)."""

    def make_local():
        class LocalSigmoid(Sigmoid):
            pass

        return LocalSigmoid

    local = make_local()
    config = model_named("lif").config(local(alpha=2.5).spec)
    encoded = ops.encode_config(config)
    assert "<locals>.LocalSigmoid@" in encoded
    ops._known.clear()  # what 4096 other configurations do
    assert ops._decode(get_registry(), encoded) == config
    assert ops.decode_config(encoded) == config
    with pytest.raises(ValueError, match="was defined in a function and not encoded in this process"):
        ops._decode(get_registry(), encoded.replace("LocalSigmoid@", "LocalSigmoid@0"))
