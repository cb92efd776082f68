"""float16 / bfloat16 storage: float32 arithmetic, float32 saved values, outputs rounded to nearest even.

(Every model in every dtype against the float64 reference is in the conformance suite.)
"""

from __future__ import annotations

import pytest
import torch
from snn_triton_test_helpers import DEVICE, make_inputs

from snn.plugins import get_registry
from snn.surrogate import Sigmoid
from snn_triton import ops
from snn_triton.multistep import multi_step

pytestmark = pytest.mark.usefixtures("triton_ready")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_outputs_round_to_nearest_even(dtype):
    """IF in float32 is exact addition: the stored potentials are the float32 ones rounded."""
    gen = torch.Generator().manual_seed(21)
    x = (torch.randn(6, 257, generator=gen) * 0.3).to(dtype)
    v0 = (torch.rand(257, generator=gen) * 0.5).to(dtype)
    config = get_registry().model("if").config(Sigmoid().spec, v_reset=None)
    _, (v_last,), (v_seq,) = multi_step(x.to(DEVICE), (v0.to(DEVICE),), config, store_state_seqs=True)
    v = v0.float()
    expected = []
    for step in x.float():
        h = v + step
        v = h - (h - 1.0 >= 0).float() * 1.0
        expected.append(v.to(dtype))
    assert torch.equal(v_seq.cpu(), torch.stack(expected))
    assert torch.equal(v_last.cpu(), expected[-1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gradients_are_computed_in_float32_and_rounded_once(dtype):
    """LIF's gradient of ``sum(v_seq)`` is a float32 recursion; the stored gradient is its
    rounding, not the result of rounding every step."""
    config = get_registry().model("lif").config(Sigmoid().spec, tau=3.0, v_threshold=100.0)  # never fires
    x = torch.full((40, 3), 0.1, dtype=dtype, device=DEVICE, requires_grad=True)
    _, _, (v_seq,) = multi_step(x, (torch.zeros(3, dtype=dtype, device=DEVICE),), config, store_state_seqs=True)
    (grad,) = torch.autograd.grad(v_seq.sum(), x)
    # d sum_t v_t / d x_s = k sum_{t >= s} (1 - k)^(t - s), k = 1/3, as a float32 recursion with
    # the plan's float32 constants (1 - k is folded in double precision, then rounded)
    k = torch.tensor(1.0 / 3.0, dtype=torch.float32)
    keep = torch.tensor(2.0 / 3.0, dtype=torch.float32)
    carried = torch.zeros((), dtype=torch.float32)
    want = []
    for _ in range(40):
        carried = carried * keep + 1.0
        want.append(carried * k)
    expected = torch.stack(want[::-1]).to(dtype)
    assert torch.equal(grad[:, 0].cpu(), expected)


def test_half_storage_saves_float32_charged_values():
    config = get_registry().model("plif").config(Sigmoid().spec)
    x, (v0,), (w,) = make_inputs(config, (4, 9), seed=3, dtype=torch.float16)
    out = torch.ops.snn_triton.multi_step_forward(x, [v0], [w], ops.encode_config(config), True, False)
    assert out[0].dtype == torch.float16 and out[1][0].dtype == torch.float16
    (charged,) = out[3]
    assert charged.dtype == torch.float32
    # the first step's charge from the float16 inputs, in float32
    k = torch.sigmoid(w.float())
    torch.testing.assert_close(charged[0], v0.float() + (x[0].float() - v0.float()) * k, rtol=1e-6, atol=1e-6)


def test_float16_keeps_the_spike_of_a_tiny_negative_margin():
    """h just below the threshold: h - v_threshold = -2**-27 is -0.0 once rounded to float16.

    The saved charged value is float32, so backward sees "no spike" like forward (dL/dx of
    v_last is then about 1, not the reset path's value).
    """
    h = 2.0 ** -20  # exactly representable in float16
    config = get_registry().model("if").config(Sigmoid().spec, v_threshold=h + 2.0 ** -27)
    x = torch.tensor([[h]], dtype=torch.float16, device=DEVICE, requires_grad=True)
    v0 = torch.zeros(1, dtype=torch.float16, device=DEVICE)
    spikes, (v_last,), _ = multi_step(x, (v0,), config)
    assert spikes.item() == 0.0
    (grad,) = torch.autograd.grad(v_last.sum(), x)
    # d v_last / d x = (1 - s) + (v_reset - h) * sg with s = 0: 1 - h * sg(0-) ~ 1
    assert abs(grad.item() - 1.0) < 1e-3
