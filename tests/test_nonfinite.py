"""Non-finite inputs (NaN, +inf, -inf): every backend gives the same answer and never hangs.

What the answer is: the neuron-kernel contract (:mod:`snn.kernels`, docs/architecture.rst) evaluated in
IEEE arithmetic, one step at a time, exactly as written there and as the neurons' own plain
autograd path (``BaseNode.neuronal_charge`` / ``neuronal_fire`` / ``neuronal_reset``) computes it:

- charge: IF ``h = v + x``; LIF ``h = v + (x - (v - vr)) / tau`` (``decay_input``) or
  ``h = v - (v - vr) / tau + x``; PLIF with ``1 / tau`` replaced by ``sigmoid(w)``;
- fire: ``s = H(h - v_threshold)``: ``NaN >= 0`` is false, so **NaN never spikes**; ``+inf``
  always spikes, ``-inf`` never does;
- reset: hard ``v = s * vr + (1 - s) * h``, soft ``v = h - s * v_threshold``. Consequences:
  a NaN potential stays NaN (and silent) for the rest of the sequence; ``+inf`` spikes and then
  resets to ``NaN`` under hard reset (``0 * inf``) but stays ``+inf`` under soft reset;
  ``-inf`` stays ``-inf`` after the reset (no spike, ``1 * -inf``).

Every backend must match this bit for bit in the spikes and, for the potentials, position for
position in NaN / inf (finite values within float32 rounding). Gradients (with respect to
``x_seq``, ``v0`` and PLIF's ``w``) must equal those of autograd through the same equations,
NaN for NaN, with NaN / inf in the inputs and in the initial state, with and without
``detach_reset``. A non-finite value in one neuron must not change any other neuron.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from if_lif_plif import FamilyConfig, family_kernel, family_serves

from snn import neuron, surrogate
from snn.plugins import get_registry

NAN, INF = float("nan"), float("inf")
RESETS = {"hard0": 0.0, "hardneg": -0.3, "soft": None}


def contract_loop(
    x: torch.Tensor, v0: torch.Tensor, kind: str, v_threshold: float, v_reset: float | None,
    decay_input: bool, tau: float, w: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract's equations, step by step (independent of every backend). Returns ``(spikes, v_seq)``."""
    vr = 0.0 if v_reset is None else v_reset
    k = 1.0 / tau if kind == "lif" else 1.0 / (1.0 + math.exp(-w))
    v = v0.clone()
    spikes, potentials = [], []
    for x_t in x:
        if kind == "if":
            h = v + x_t
        elif kind == "lif":
            h = v + (x_t - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x_t
        else:
            h = v + (x_t - (v - vr)) * k if decay_input else v - (v - vr) * k + x_t
        s = (h - v_threshold >= 0).to(x.dtype)
        v = s * vr + (1.0 - s) * h if v_reset is not None else h - s * v_threshold
        spikes.append(s)
        potentials.append(v)
    return torch.stack(spikes), torch.stack(potentials)


def make_neuron(kind: str, backend: str, v_reset: float | None, decay_input: bool) -> neuron.BaseNode:
    common = dict(v_threshold=1.0, v_reset=v_reset, step_mode="m", backend=backend, store_v_seq=True)
    if kind == "if":
        return neuron.IFNode(**common)
    if kind == "lif":
        return neuron.LIFNode(tau=2.0, decay_input=decay_input, **common)
    node = neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, **common)
    with torch.no_grad():
        node.w.fill_(0.4)
    return node


def nonfinite_inputs(dtype: torch.dtype, device: str) -> torch.Tensor:
    """``[T=4, 9]``: one non-finite value per column in columns 0-5, finite columns 6-8."""
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(4, 9, generator=gen, dtype=torch.float32) * 1.6 - 0.2
    x[0, 0] = NAN
    x[2, 1] = NAN
    x[0, 2] = INF
    x[1, 3] = INF
    x[0, 4] = -INF
    x[3, 5] = -INF
    return x.to(dtype=dtype, device=device)


def _serves(backend: str, kind: str, dtype: torch.dtype) -> bool:
    info = get_registry().backend(backend)
    return family_serves(info, kind) and dtype in info.dtypes


def _check_against_contract(backend: str, device: str, kind: str, reset: str, decay_input: bool) -> None:
    dtype = torch.float32
    v_reset = RESETS[reset]
    node = make_neuron(kind, backend, v_reset, decay_input).to(device)
    x = nonfinite_inputs(dtype, device)
    with torch.no_grad():
        spikes = node(x)
    want_spikes, want_v = contract_loop(
        x.cpu(), torch.full((x.shape[1],), 0.0 if v_reset is None else v_reset), kind, 1.0, v_reset,
        decay_input, 2.0, 0.4,
    )
    assert torch.equal(spikes.cpu(), want_spikes), (spikes, want_spikes)
    torch.testing.assert_close(node.v_seq.cpu(), want_v, rtol=1e-6, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(node.v.cpu(), want_v[-1], rtol=1e-6, atol=1e-6, equal_nan=True)


CASES = [
    (kind, reset, decay_input)
    for kind in ("if", "lif", "plif")
    for reset in RESETS
    for decay_input in ((True, False) if kind != "if" else (True,))
]


def _case_id(case: tuple[str, str, bool]) -> str:
    kind, reset, decay_input = case
    return f"{kind}-{reset}" + ("" if kind == "if" else ("-decayin" if decay_input else "-nodecayin"))


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_nonfinite_forward_matches_the_contract(
    case: tuple[str, str, bool], kernel_backend_device: tuple[str, str], deadline
) -> None:
    kind, reset, decay_input = case
    backend, device = kernel_backend_device
    if not _serves(backend, kind, torch.float32):
        pytest.skip(f"backend {backend!r} has no float32 {kind} kernel")
    with deadline(60):
        _check_against_contract(backend, device, kind, reset, decay_input)


def test_the_neurons_plain_autograd_path_is_the_contract(deadline) -> None:
    """The neurons' own step functions (used in eval mode with gradients) agree with the loop."""
    for kind, reset, decay_input in CASES:
        v_reset = RESETS[reset]
        node = make_neuron(kind, "torch", v_reset, decay_input).eval()
        x = nonfinite_inputs(torch.float32, "cpu").requires_grad_()
        with deadline(30):
            spikes = node(x)  # eval + requires_grad: the plain autograd loop, not a kernel
        want_spikes, want_v = contract_loop(
            x.detach(), torch.full((9,), 0.0 if v_reset is None else v_reset), kind, 1.0, v_reset, decay_input, 2.0, 0.4
        )
        assert torch.equal(spikes.detach(), want_spikes), (kind, reset, decay_input)
        torch.testing.assert_close(node.v_seq.detach(), want_v, equal_nan=True, rtol=1e-6, atol=1e-6)


def test_nan_spikes_never_and_poisons_only_its_own_neuron(kernel_backend_device: tuple[str, str], deadline) -> None:
    """NaN semantics on every backend, including torch (no infinities involved)."""
    backend, device = kernel_backend_device
    for kind in ("if", "lif", "plif"):
        if not _serves(backend, kind, torch.float32):
            continue
        for v_reset in RESETS.values():
            node = make_neuron(kind, backend, v_reset, True).to(device)
            x = nonfinite_inputs(torch.float32, device)
            x = torch.where(torch.isinf(x), torch.zeros_like(x), x)
            with deadline(60), torch.no_grad():
                spikes = node(x).cpu()
            v_seq = node.v_seq.cpu()
            # column 0 is NaN from step 0, column 1 from step 2
            assert spikes[:, 0].eq(0).all() and v_seq[:, 0].isnan().all()
            assert spikes[2:, 1].eq(0).all() and v_seq[2:, 1].isnan().all() and not v_seq[:2, 1].isnan().any()
            assert not v_seq[:, 2:].isnan().any()
            reference = make_neuron(kind, "torch", v_reset, True)
            with torch.no_grad():
                want = reference(x[:, 2:].cpu())
            assert torch.equal(spikes[:, 2:], want)
            torch.testing.assert_close(v_seq[:, 2:], reference.v_seq, rtol=1e-6, atol=1e-6)


class _Fire(torch.autograd.Function):
    """``H(u)`` forward, ``grad * g(u)`` backward (the surrogate's one math source)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, derivative: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.derivative = derivative
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.derivative(u), None


def differentiable_contract(
    x_seq: torch.Tensor, v0: torch.Tensor, config: FamilyConfig, w: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`contract_loop` with autograd (``detach_reset`` included): ``(spikes, v_last, v_seq)``."""
    derivative = surrogate.derivative_function(config.surrogate)
    vr = config.reset_potential
    v = v0
    spikes, potentials = [], []
    for x in x_seq.unbind(0):
        if config.kind == "if":
            h = v + x
        elif config.kind == "lif":
            h = v + (x - (v - vr)) / config.tau if config.decay_input else v - (v - vr) / config.tau + x
        else:
            k = torch.sigmoid(w)
            h = v + (x - (v - vr)) * k if config.decay_input else v - (v - vr) * k + x
        s = _Fire.apply(h - config.v_threshold, derivative)
        s_reset = s.detach() if config.detach_reset else s
        v = s_reset * vr + (1.0 - s_reset) * h if config.hard_reset else h - s_reset * config.v_threshold
        spikes.append(s)
        potentials.append(v)
    return torch.stack(spikes), v, torch.stack(potentials)


def _forward_backward(
    kernel: Callable[..., Any] | None, config: FamilyConfig, x: torch.Tensor, v0: torch.Tensor,
    w: torch.Tensor | None, weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor], device: str,
) -> dict[str, torch.Tensor]:
    leaves = {"x": x.clone().to(device).requires_grad_(), "v0": v0.clone().to(device).requires_grad_()}
    if w is not None:
        leaves["w"] = w.clone().to(device).requires_grad_()
    if kernel is None:
        spikes, v_last, v_seq = differentiable_contract(leaves["x"], leaves["v0"], config, leaves.get("w"))
    else:
        spikes, v_last, v_seq = kernel(leaves["x"], leaves["v0"], config, w=leaves.get("w"), store_v_seq=True)
    gs, gv, gl = (g.to(device) for g in weights)
    loss = (spikes * gs).sum() + (v_seq * gv).sum() + (v_last * gl).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    out = {"spikes": spikes, "v_last": v_last, "v_seq": v_seq}
    out.update({f"grad_{name}": g for name, g in zip(leaves, grads)})
    return {k: v.detach().cpu() for k, v in out.items()}


@pytest.mark.parametrize("detach_reset", [False, True], ids=["nodetach", "detach"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_nonfinite_gradients_match_autograd_of_the_contract(
    case: tuple[str, str, bool], detach_reset: bool, kernel_backend_device: tuple[str, str], deadline
) -> None:
    """NaN / inf in ``x_seq`` and in ``v0``: values and gradients NaN-for-NaN equal to the loop's."""
    kind, reset, decay_input = case
    backend, device = kernel_backend_device
    if not _serves(backend, kind, torch.float32):
        pytest.skip(f"backend {backend!r} has no float32 {kind} kernel")
    v_reset = RESETS[reset]
    config = FamilyConfig(
        kind, 1.0, v_reset, detach_reset, decay_input if kind != "if" else False,
        2.0 if kind == "lif" else None, surrogate.ATan().spec,
    )
    x = nonfinite_inputs(torch.float32, "cpu")
    v0 = torch.full((x.shape[1],), 0.0 if v_reset is None else v_reset)
    v0[6], v0[7], v0[8] = NAN, INF, -INF  # non-finite initial state in the last three neurons
    w = torch.tensor(0.4) if kind == "plif" else None
    gen = torch.Generator().manual_seed(3)
    weights = (torch.rand(x.shape, generator=gen), torch.rand(x.shape, generator=gen), torch.rand(x.shape[1:], generator=gen))
    kernel = family_kernel(backend, kind)
    with deadline(60):
        got = _forward_backward(kernel, config, x, v0, w, weights, device)
    want = _forward_backward(None, config, x, v0, w, weights, "cpu")
    assert torch.equal(got["spikes"], want["spikes"])
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, equal_nan=True, msg=lambda m, k=key: f"{k}: {m}")
    # each neuron's values and x / v0 gradients depend on that neuron alone in the loop, so the
    # equality above also says that no non-finite value leaked into another neuron


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_nan_in_other_dtypes(dtype: torch.dtype, kernel_backend_device: tuple[str, str], deadline) -> None:
    backend, device = kernel_backend_device
    if not _serves(backend, "lif", dtype):
        pytest.skip(f"backend {backend!r} has no {dtype} lif kernel")
    x = nonfinite_inputs(dtype, device)
    x = torch.where(torch.isinf(x), torch.zeros_like(x), x)
    node = make_neuron("lif", backend, 0.0, True).to(device)
    with deadline(60), torch.no_grad():
        spikes = node(x).cpu()
    assert spikes.dtype == dtype
    want_spikes, want_v = contract_loop(x.cpu().float(), torch.zeros(9), "lif", 1.0, 0.0, True, 2.0, 0.4)
    assert torch.equal(spikes.float(), want_spikes)
    assert torch.equal(node.v_seq.cpu().isnan(), want_v.isnan())
