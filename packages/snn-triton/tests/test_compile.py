"""torch.compile traces through the kernels (custom operators) without graph breaks."""

from __future__ import annotations

import pytest
import torch
from snn_triton_test_helpers import DEVICE

from snn.kernels import NeuronConfig
from snn.surrogate import ATan
from snn_triton import ops
from snn_triton.multistep import if_multi_step, lif_multi_step, plif_multi_step

pytestmark = pytest.mark.usefixtures("triton_ready")

KERNELS = {"if": if_multi_step, "lif": lif_multi_step, "plif": plif_multi_step}


def make(kind):
    return NeuronConfig(kind, 1.0, -0.1, False, True, 2.0 if kind == "lif" else None, ATan().spec)


def layer(kind, config, x, v0, w):
    spikes, v_last, v_seq = KERNELS[kind](x * 1.5, v0, config, w=w, store_v_seq=True)
    return spikes.sum() + 0.5 * v_last.sum() + 0.25 * v_seq.sum()


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_no_graph_breaks(kind):
    config = make(kind)
    x = torch.rand(4, 3, 5, device=DEVICE, requires_grad=True)
    v0 = torch.zeros(3, 5, device=DEVICE)
    w = torch.tensor(0.2, device=DEVICE, requires_grad=True) if kind == "plif" else None
    explanation = torch._dynamo.explain(lambda a, b: layer(kind, config, a, b, w))(x, v0)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_compiled_forward_and_backward_match_eager(kind):
    torch._dynamo.reset()
    config = make(kind)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 5, generator=gen).to(DEVICE).requires_grad_()
    v0 = (torch.rand(3, 5, generator=gen) * 0.2).to(DEVICE).requires_grad_()
    w = torch.tensor(0.2, device=DEVICE, requires_grad=True) if kind == "plif" else None
    leaves = [t for t in (x, v0, w) if t is not None]
    compiled = torch.compile(lambda a, b, c: layer(kind, config, a, b, c), backend="aot_eager", fullgraph=True)
    got = compiled(x, v0, w)
    got_grads = torch.autograd.grad(got, leaves)
    want = layer(kind, config, x, v0, w)
    want_grads = torch.autograd.grad(want, leaves)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_compiled_inference():
    torch._dynamo.reset()
    config = make("lif")
    x = torch.rand(4, 7, device=DEVICE)
    compiled = torch.compile(lambda a: lif_multi_step(a, torch.zeros_like(a[0]), config)[0],
                             backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.equal(compiled(x), lif_multi_step(x, torch.zeros_like(x[0]), config)[0])


def test_opcheck_forward_and_backward():
    """PyTorch's own checks of the operators: schema, fake tensors, autograd registration."""
    encoded = ops.encode_config(make("plif"))
    x = torch.rand(3, 6, device=DEVICE, requires_grad=True)
    v0 = torch.rand(6, device=DEVICE, requires_grad=True)
    decay = torch.tensor(0.4, device=DEVICE, requires_grad=True)
    torch.library.opcheck(torch.ops.snn_triton.multistep_forward.default, (x, v0, decay, encoded, True, True))
    inference = (x.detach(), v0.detach(), decay.detach(), encoded, False, False)
    torch.library.opcheck(torch.ops.snn_triton.multistep_forward.default, inference)
    o = torch.ops.snn_triton.multistep_forward(x.detach(), v0.detach(), decay.detach(), encoded, True, True)[3]
    grads = (torch.rand(3, 6, device=DEVICE), torch.rand(6, device=DEVICE), None)
    torch.library.opcheck(
        torch.ops.snn_triton.multistep_backward.default,
        (*grads, o, x.detach(), v0.detach(), decay.detach(), encoded),
    )


def test_config_encoding_round_trips():
    config = NeuronConfig("lif", 0.3, None, True, False, 1.7, ATan(alpha=0.1).spec)
    assert ops.decode_config(ops.encode_config(config)) == config
    with pytest.raises(ValueError, match="config"):
        ops.decode_config("not json")


def test_backward_of_an_inference_call_is_a_clear_error():
    x = torch.rand(3, 4, device=DEVICE, requires_grad=True)
    encoded = ops.encode_config(make("if"))
    spikes = torch.ops.snn_triton.multistep_forward(x, torch.zeros(4, device=DEVICE), None, encoded, False, False)[0]
    with pytest.raises(RuntimeError, match="save_o=False"):
        spikes.sum().backward()
