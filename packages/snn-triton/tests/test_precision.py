"""float16 / bfloat16 storage: float32 arithmetic, outputs in the storage type."""

from __future__ import annotations

import pytest
import torch
from snn_triton_test_helpers import DEVICE, KERNELS, leaves, make_config, plain_loop

from snn.kernels import NeuronConfig
from snn.surrogate import Sigmoid
from snn_triton import ops
from snn_triton.multistep import if_multi_step

pytestmark = pytest.mark.usefixtures("triton_ready")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
def test_half_types_match_float64_loop(dtype, kind, v_reset):
    x, v0, w = leaves((5, 37), kind, seed=13, dtype=dtype)
    config = make_config(kind, v_reset=v_reset)
    spikes, v_last, v_seq = KERNELS[kind](x, v0, config, w=w, store_v_seq=True)
    assert spikes.dtype == v_last.dtype == v_seq.dtype == dtype
    inputs = [t for t in (x, v0, w) if t is not None]
    grads = torch.autograd.grad(spikes.sum() + v_last.sum() + v_seq.sum(), inputs)
    assert [g.dtype for g in grads] == [t.dtype for t in inputs]
    ref = [t.detach().double().cpu().requires_grad_() for t in inputs]
    want = plain_loop(kind, ref[0], ref[1], config, ref[2] if w is not None else None)
    want_grads = torch.autograd.grad(want[0].sum() + want[1].sum() + want[2].sum(), ref)
    assert torch.equal(spikes.cpu().double(), want[0].detach())
    # the potential is carried in float32: only the final rounding to the storage type differs
    tol = {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(v_seq.cpu().double(), want[2].detach(), **tol)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got.cpu().double(), expected, **tol)


def test_float16_keeps_the_spike_of_a_tiny_negative_margin():
    """h just below the threshold: h - v_threshold = -2**-27 rounds to -0.0 in float16.

    The saved margin must still say "no spike", or backward would take the reset path of a
    spike that never happened (dL/dx of v_last would be 0 instead of about 1).
    """
    h = 2.0 ** -20  # exactly representable in float16
    config = NeuronConfig("if", h + 2.0 ** -27, 0.0, False, True, None, Sigmoid().spec)
    x = torch.tensor([[h]], dtype=torch.float16, device=DEVICE, requires_grad=True)
    v0 = torch.zeros(1, dtype=torch.float16, device=DEVICE)
    spikes, v_last, _ = if_multi_step(x, v0, config)
    assert spikes.item() == 0.0
    (grad,) = torch.autograd.grad(v_last.sum(), x)
    # d v_last / d x = (1 - s) + (v_reset - h) * sg with s = 0: 1 - h * sg(0-) ~ 1
    assert abs(grad.item() - 1.0) < 1e-3
    saved = torch.ops.snn_triton.multistep_forward(
        x.detach(), v0, None, ops.encode_config(config), True, False
    )[3]
    assert saved.item() < 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_outputs_round_to_nearest_even(dtype):
    """IF in float32 is exact addition: the stored potentials are the float32 ones rounded."""
    gen = torch.Generator().manual_seed(21)
    x = (torch.randn(6, 257, generator=gen) * 0.3).to(dtype)
    v0 = (torch.rand(257, generator=gen) * 0.5).to(dtype)
    config = NeuronConfig("if", 1.0, None, False, True, None, Sigmoid().spec)
    _, v_last, v_seq = if_multi_step(x.to(DEVICE), v0.to(DEVICE), config, store_v_seq=True)
    v = v0.float()
    expected = []
    for step in x.float():
        h = v + step
        v = h - (h - 1.0 >= 0).float() * 1.0
        expected.append(v.to(dtype))
    assert torch.equal(v_seq.cpu(), torch.stack(expected))
    assert torch.equal(v_last.cpu(), expected[-1])
