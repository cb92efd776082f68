"""Shared helpers of the snn-triton tests (imported by name: conftest puts this folder on sys.path).

:func:`plain_loop` is the independent reference: written here from the neuron equations, each
step charges, fires through the surrogate module's own autograd (``snn.surrogate``) and
resets, in float64, with autograd deriving every gradient. Nothing of it is shared with either
backend's hand-written backward.
"""

from __future__ import annotations

import torch

from snn.kernels import NeuronConfig
from snn.surrogate import SURROGATES, Sigmoid
from snn_triton.multistep import if_multi_step, lif_multi_step, plif_multi_step

__all__ = ["DEVICE", "KERNELS", "compare", "leaves", "make_config", "plain_loop"]

KERNELS = {"if": if_multi_step, "lif": lif_multi_step, "plif": plif_multi_step}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def plain_loop(kind, x_seq, v0, config, w=None):
    """Float64 autograd reference: returns (spikes, v_last, v_seq) differentiable by autograd."""
    surrogate = SURROGATES[config.surrogate.name](**config.surrogate.kwargs)
    vr = 0.0 if config.v_reset is None else config.v_reset
    if kind == "lif":
        decay = 1.0 / config.tau
    elif kind == "plif":
        decay = torch.sigmoid(w)
    v = v0
    spikes, potentials = [], []
    for x in x_seq:
        if kind == "if":
            h = v + x
        elif config.decay_input:
            h = v + (x - (v - vr)) * decay
        else:
            h = v - (v - vr) * decay + x
        s = surrogate(h - config.v_threshold)
        s_reset = s.detach() if config.detach_reset else s
        if config.v_reset is None:
            v = h - s_reset * config.v_threshold
        else:
            v = s_reset * vr + (1.0 - s_reset) * h
        spikes.append(s)
        potentials.append(v)
    return torch.stack(spikes), v, torch.stack(potentials)


def make_config(kind, v_reset=0.0, detach_reset=False, decay_input=True, surrogate=None, v_threshold=1.0):
    spec = (surrogate or Sigmoid()).spec
    return NeuronConfig(kind, v_threshold, v_reset, detach_reset, decay_input, 2.5 if kind == "lif" else None, spec)


def compare(kind, config, x, v0, w=None, store_v_seq=True, rtol=2e-5, atol=2e-5):
    """Run kernel (float32 leaves x, v0, w) and the float64 loop; compare outputs and grads."""
    gen = torch.Generator().manual_seed(7)
    weights = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    weight_last = torch.randn(x.shape[1:], generator=gen, dtype=torch.float64)

    def loss(spikes, v_last, v_seq):
        total = (spikes.double() * weights[0].to(spikes.device)).sum()
        total = total + (v_last.double() * weight_last.to(v_last.device)).sum()
        if v_seq is not None:
            total = total + (v_seq.double() * weights[1].to(v_seq.device)).sum()
        return total

    leaves = [t for t in (x, v0, w) if t is not None]
    got = KERNELS[kind](x, v0, config, w=w, store_v_seq=store_v_seq)
    got_grads = torch.autograd.grad(loss(*got), leaves)
    ref_leaves = [t.detach().double().cpu().requires_grad_() for t in leaves]
    rw = ref_leaves[2] if w is not None else None
    want = plain_loop(kind, ref_leaves[0], ref_leaves[1], config, rw)
    want_grads = torch.autograd.grad(loss(want[0], want[1], want[2] if store_v_seq else None), ref_leaves)
    assert torch.equal(got[0].cpu().double(), want[0].detach()), "spikes differ"
    torch.testing.assert_close(got[1].cpu().double(), want[1].detach(), rtol=rtol, atol=atol)
    if store_v_seq:
        torch.testing.assert_close(got[2].cpu().double(), want[2].detach(), rtol=rtol, atol=atol)
    else:
        assert got[2] is None
    for name, a, b in zip(("x", "v0", "w"), got_grads, want_grads):
        torch.testing.assert_close(a.cpu().double(), b, rtol=rtol, atol=atol, msg=f"grad {name}")


def leaves(shape, kind, seed=0, device=DEVICE, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 0.9 + 0.45).to(device=device, dtype=dtype).requires_grad_()
    v0 = (torch.rand(shape[1:], generator=gen) * 0.8 - 0.3).to(device=device, dtype=dtype).requires_grad_()
    w = torch.tensor(-0.2, device=device, requires_grad=True) if kind == "plif" else None
    return x, v0, w
