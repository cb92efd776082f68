"""Fused multi-step neuron dynamics in plain PyTorch, with a hand-written backward.

This is the arithmetic behind :mod:`snn.backends.torch`. Each time step costs a few fused
tensor operations (charge, fire, reset) that write straight into preallocated ``[T, N]``
outputs, so a forward pass allocates nothing but its outputs. The backward pass walks the
sequence newest-first in tiles of time steps (:func:`tiles`): the surrogate derivative
(compiled by :mod:`snn.backends.torch_expr` into ``out=`` operations) and ``dv/dh`` are
evaluated for a whole tile in a small reused workspace, and the recursion of the neuron-kernel
contract costs one fused operation per step; it allocates only the input gradient. Allocation
matters on CPU: a fresh multi-megabyte tensor costs page faults that can exceed the arithmetic
on it. On CPU the neurons are also processed in cache-sized column chunks.

Internally the potential is shifted by the reset potential, ``u = v - vr``, so that the
hard reset is ``u = h (1 - s)`` and the firing threshold becomes ``v_threshold - vr``:

- IF: ``h = u + x``;
- LIF / PLIF with ``decay_input``: ``h = u + k (x - u)``;
- LIF / PLIF without it: ``h = u - k u + x``;

with ``k = 1 / tau`` or ``sigmoid(w)``, evaluated in the contract's order of operations so that
NaN and infinities come out as the contract's equations give them. Only ``h`` (in the shifted
frame) is saved for backward, plus ``v0`` for PLIF; spikes and post-reset potentials are
recomputed from it.

Half-precision inputs (float16 / bfloat16) are computed in float32, float64 in float64;
outputs are cast back to the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from snn.backends.torch_expr import DerivativeProgram

__all__ = ["TILE_ELEMENTS", "Dynamics", "compute_dtype", "run_sequence", "tiles"]

_R = TypeVar("_R")


@dataclass(frozen=True)
class Dynamics:
    """Per-call constants of one neuron layer, in the shifted frame ``u = v - vr``.

    Attributes:
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        decay: ``k``: ``1 / tau`` (LIF), ``sigmoid(w)`` (PLIF); unused for IF.
        decay_input: LIF / PLIF: scale the input by ``k``.
        threshold: the firing threshold in the shifted frame, ``v_threshold - vr``.
        v_threshold: the threshold itself (the soft-reset step).
        v_reset: ``vr``: the reset potential, 0.0 for soft reset.
        hard_reset: hard (``True``) or soft reset.
        detach_reset: cut the gradient through the reset.
        derivative: the surrogate derivative (a function of ``h - v_threshold``), compiled to
            allocation-free operations.
    """

    kind: str
    decay: float
    decay_input: bool
    threshold: float
    v_threshold: float
    v_reset: float
    hard_reset: bool
    detach_reset: bool
    derivative: DerivativeProgram

    @property
    def leak(self) -> float:
        """``dh / du_prev``: 1 for IF, ``1 - k`` for LIF and PLIF."""
        return 1.0 if self.kind == "if" else 1.0 - self.decay

    @property
    def input_gain(self) -> float:
        """``dh / dx``: ``k`` for LIF / PLIF with ``decay_input``, else 1."""
        return self.decay if (self.kind != "if" and self.decay_input) else 1.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the dynamics are computed in: float32 for half types, else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _charge(d: Dynamics, u_prev: torch.Tensor, x_t: torch.Tensor, out: torch.Tensor) -> None:
    """``out = h`` in the contract's order of operations (``out`` must not alias ``u_prev``).

    The order matters for infinite values: ``u + k (x - u)`` is ``+inf`` for ``x = +inf``
    where ``lerp`` would give ``inf - inf``; ``u - k u + x`` is NaN for ``u = inf`` as the
    contract's ``v - (v - vr) k + x`` is.
    """
    if d.kind == "if":
        torch.add(u_prev, x_t, out=out)
    elif d.decay_input and d.decay < 0.5:
        # for weights below 1/2 torch.lerp is defined as u + k (x - u): one fused operation
        torch.lerp(u_prev, x_t, d.decay, out=out)
    elif d.decay_input:
        torch.sub(x_t, u_prev, out=out)
        torch.add(u_prev, out, alpha=d.decay, out=out)
    else:
        torch.add(u_prev, u_prev, alpha=-d.decay, out=out)
        out.add_(x_t)


def _fire_and_reset(d: Dynamics, h_t: torch.Tensor, s_t: torch.Tensor, out: torch.Tensor) -> None:
    """``s_t = H(h - threshold)``, ``out = `` the post-reset shifted potential.

    Hard reset multiplies by the complement, ``h (1 - s)``, which keeps ``-inf`` (no spike) as
    the contract's ``s vr + (1 - s) h`` does; ``out`` may alias nothing but itself.
    """
    torch.ge(h_t, d.threshold, out=s_t)
    if d.hard_reset:
        torch.lt(h_t, d.threshold, out=out)
        out.mul_(h_t)
    else:
        torch.add(h_t, s_t, alpha=-d.v_threshold, out=out)


#: On CPU, work is cut into tiles of at most this many elements (1 MiB in float32): neurons in
#: column chunks, and in backward several time steps per tile when the chunk is narrower, so
#: that the few rows a step touches stay in the core's cache while each operation is still
#: large enough for PyTorch's intra-op threads to share.
TILE_ELEMENTS = 1 << 18


def tiles(steps: int, n: int, device: torch.device) -> tuple[int, int]:
    """``(time steps, neurons)`` per tile; one tile covers everything off the CPU.

    On CPU the neurons are split into equal chunks (a multiple of 64 wide when there are
    several) of at most :data:`TILE_ELEMENTS`.
    """
    if device.type != "cpu" or n <= TILE_ELEMENTS:
        cols = max(n, 1)
    else:
        chunks = -(-n // TILE_ELEMENTS)  # ceil
        per_chunk = -(-n // chunks)
        cols = min(TILE_ELEMENTS, -(-per_chunk // 64) * 64)
    if device.type != "cpu":
        return steps, cols
    return max(1, min(steps, TILE_ELEMENTS // cols)), cols


def _for_chunks(n: int, cols: int, fn: Callable[[int, int], _R]) -> list[_R]:
    """``fn(c0, c1)`` for every column chunk ``[c0, c1)`` of ``cols`` neurons, in order."""
    return [fn(c0, min(n, c0 + cols)) for c0 in range(0, n, cols)]


def _forward_loop(
    d: Dynamics, x: torch.Tensor, u0: torch.Tensor, keep_h: bool, store_v_seq: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Run the dynamics over ``x`` ``[T, N]`` from ``u0`` ``[N]`` (shifted frame).

    Column chunk by column chunk (see :func:`tiles`), each step charges, fires and resets with
    two to five fused operations writing into the outputs.

    Returns:
        spikes ``[T, N]``, the last shifted potential ``[N]`` (a fresh tensor or a row of
        the shifted ``v_seq``), the shifted ``v_seq`` ``[T, N]`` or ``None``, and ``h``
        ``[T, N]`` when ``keep_h`` else ``None``. All in ``x``'s dtype.
    """
    steps, n = x.shape
    like = {"dtype": x.dtype, "device": x.device}
    spikes = torch.empty((steps, n), **like)
    h_seq = torch.empty((steps, n), **like) if keep_h else None
    v_seq = torch.empty((steps, n), **like) if store_v_seq else None
    state = None if store_v_seq else torch.empty((n,), **like)
    scratch = None if keep_h else torch.empty((n,), **like)

    def chunk(c0: int, c1: int) -> None:
        u_prev = u0[c0:c1]
        for t in range(steps):
            u_t = v_seq[t, c0:c1] if v_seq is not None else state[c0:c1]  # type: ignore[index]
            h_t = h_seq[t, c0:c1] if h_seq is not None else scratch[c0:c1]  # type: ignore[index]
            _charge(d, u_prev, x[t, c0:c1], h_t)
            _fire_and_reset(d, h_t, spikes[t, c0:c1], u_t)
            u_prev = u_t

    _, cols = tiles(steps, n, x.device)
    _for_chunks(n, cols, chunk)
    u_last = v_seq[steps - 1] if v_seq is not None else state
    assert u_last is not None
    return spikes, u_last, v_seq, h_seq


def _backward(
    d: Dynamics,
    h: torch.Tensor,
    u0: torch.Tensor | None,
    grad_spikes: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    need_decay_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The backward recursion of the contract, tile by tile, newest time steps first.

    With ``sg = surrogate'(h_t - v_threshold)``, ``D_t = dv_t/dh_t`` (hard reset:
    ``(1 - s) - (h - vr) sg``, or ``1 - s`` when detached; soft: ``1 - v_threshold sg``, or 1)
    and ``leak = dh_{t+1}/dv_t``, the gradient of the charged potential is

        ``G_h[t] = dL/ds_t sg + (dL/dv_seq[t] + leak G_h[t+1]) D_t``

    (``dL/dv_last`` instead of ``leak G_h[T]`` at the last step). Within a tile of time steps
    (:func:`tiles`) everything but the recursion is computed at once, in the output and a small
    workspace; the recursion costs one fused operation per step. Then
    ``dL/dx_t = G_h[t] dh/dx`` and ``dL/dv0 = leak G_h[0]``.

    Returns:
        ``(grad_x [T, N], grad_u0 [N], grad_decay 0-dim | None)``; ``grad_decay`` is
        ``dL/dk`` for PLIF.
    """
    steps, n = h.shape
    rows_per_tile, cols = tiles(steps, n, h.device)
    like = {"dtype": h.dtype, "device": h.device}
    grad_x = torch.empty_like(h)
    grad_u0 = torch.empty((n,), **like)  # also the carry: leak * G_h of the step after a tile
    has_d = d.hard_reset or not d.detach_reset
    theta, vth, leak, gain = d.threshold, d.v_threshold, d.leak, d.input_gain

    def chunk(c0: int, c1: int) -> torch.Tensor | None:
        width = c1 - c0
        scratch = torch.empty((rows_per_tile, width), **like)
        work = torch.empty((rows_per_tile, width), **like) if (has_d or need_decay_grad) else None
        carry = grad_u0[c0:c1]
        programs: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        decay_sum = torch.zeros((), **like) if need_decay_grad else None
        for end in range(steps, 0, -rows_per_tile):
            start = max(0, end - rows_per_tile)
            rows = end - start
            hb, gb = h[start:end, c0:c1], grad_x[start:end, c0:c1]
            o = scratch[:rows]
            torch.sub(hb, theta, out=o)
            run = programs.get(rows)
            if run is None:
                run = programs[rows] = d.derivative.bind(o)
            sg = run(o)
            dv_dh = None
            if has_d:
                assert work is not None
                dv_dh = work[:rows]
                if d.hard_reset:
                    # 1 - s, as not(h >= theta): a NaN potential never spikes, so its 1 - s is 1
                    # (h < theta would give 0 there)
                    torch.ge(hb, theta, out=dv_dh)
                    torch.logical_not(dv_dh, out=dv_dh)
                    if not d.detach_reset:
                        dv_dh.addcmul_(hb, sg, value=-1.0)  # - (h - vr) sg
                else:
                    torch.mul(sg, -vth, out=dv_dh)
                    dv_dh.add_(1.0)
            if grad_spikes is not None:
                torch.mul(grad_spikes[start:end, c0:c1], sg, out=gb)
            else:
                gb.zero_()
            if grad_v_seq is not None:
                if dv_dh is None:
                    gb.add_(grad_v_seq[start:end, c0:c1])
                else:
                    gb.addcmul_(grad_v_seq[start:end, c0:c1], dv_dh)
            for i in range(rows - 1, -1, -1):
                if start + i == steps - 1:
                    if grad_v_last is None:
                        continue
                    incoming, scale = grad_v_last[c0:c1], 1.0
                elif i == rows - 1:
                    incoming, scale = carry, 1.0
                else:
                    incoming, scale = gb[i + 1], leak
                if dv_dh is None:
                    gb[i].add_(incoming, alpha=scale)
                else:
                    gb[i].addcmul_(incoming, dv_dh[i], value=scale)
            if decay_sum is not None:
                assert work is not None and u0 is not None
                # dh/dk = x - u_prev = (h - u_prev) / k with decay_input, else -u_prev
                u_prev = work[:rows]
                if start == 0:
                    u_prev[0] = u0[c0:c1]
                    if rows > 1:
                        _fire_and_reset(d, h[: rows - 1, c0:c1], o[1:], u_prev[1:])
                else:
                    _fire_and_reset(d, h[start - 1 : end - 1, c0:c1], o, u_prev)
                if d.decay_input:
                    torch.sub(hb, u_prev, out=u_prev)
                    decay_sum += torch.mul(gb, u_prev, out=o).sum()
                else:
                    decay_sum -= torch.mul(gb, u_prev, out=o).sum()
            torch.mul(gb[0], leak, out=carry)
            if gain != 1.0:
                gb.mul_(gain)
        return decay_sum

    partial_sums = _for_chunks(n, cols, chunk)
    grad_decay = None
    if need_decay_grad:
        sums = [p for p in partial_sums if p is not None]
        total = torch.stack(sums).sum() if sums else torch.zeros((), **like)
        grad_decay = total / d.decay if d.decay_input else total
    return grad_x, grad_u0, grad_decay


class _SequenceFunction(torch.autograd.Function):
    """Autograd node of a whole sequence: saves ``h`` (and ``u0`` for PLIF) only."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        u0: torch.Tensor,
        w: torch.Tensor | None,
        d: Dynamics,
        store_v_seq: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        spikes, u_last, v_seq, h = _forward_loop(d, x, u0, True, store_v_seq)
        v_last = u_last.clone() if v_seq is not None else u_last
        if d.v_reset != 0.0:
            v_last.add_(d.v_reset)
            if v_seq is not None:
                v_seq.add_(d.v_reset)
        ctx.set_materialize_grads(False)
        ctx.dynamics = d
        ctx.has_w = w is not None
        if w is not None:
            ctx.save_for_backward(h, u0, w)
        else:
            ctx.save_for_backward(h)
        return spikes, v_last, v_seq

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        grad_spikes: torch.Tensor | None,
        grad_v_last: torch.Tensor | None,
        grad_v_seq: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        d: Dynamics = ctx.dynamics
        need_x, need_u0, need_w = ctx.needs_input_grad[:3]
        if ctx.has_w:
            h, u0, w = ctx.saved_tensors
        else:
            (h,), u0, w = ctx.saved_tensors, None, None
        if grad_spikes is None and grad_v_last is None and grad_v_seq is None:
            return None, None, None, None, None
        need_w = bool(need_w and w is not None)
        grad_x, grad_u0, grad_decay = _backward(
            d, h, u0, grad_spikes, grad_v_last, grad_v_seq, need_w
        )
        grad_w = None
        if need_w and grad_decay is not None and w is not None:
            # k = sigmoid(w): dk/dw = k (1 - k)
            grad_w = (grad_decay * (d.decay * (1.0 - d.decay))).to(w.dtype).reshape(w.shape)
        return (
            grad_x if need_x else None,
            grad_u0 if need_u0 else None,
            grad_w,
            None,
            None,
        )


def run_sequence(
    d: Dynamics,
    x: torch.Tensor,
    v0: torch.Tensor,
    w: torch.Tensor | None,
    store_v_seq: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run the dynamics ``d`` over ``x`` ``[T, N]`` from ``v0`` ``[N]`` (both compute dtype).

    Args:
        d: the constants (``decay`` already evaluated for PLIF).
        x: ``[T, N]`` inputs in the compute dtype (any strides).
        v0: ``[N]`` initial potential in the compute dtype.
        w: PLIF's parameter (for its gradient), else ``None``.
        store_v_seq: also return the post-reset potentials.

    Returns:
        ``(spikes [T, N], v_last [N], v_seq [T, N] | None)`` in the compute dtype; an autograd
        node connects them to ``x``, ``v0`` and ``w`` when a gradient is needed, and nothing
        is saved otherwise.
    """
    u0 = v0 if d.v_reset == 0.0 else v0 - d.v_reset
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or v0.requires_grad or (w is not None and w.requires_grad)
    )
    if needs_grad:
        return _SequenceFunction.apply(x, u0, w if (w is not None and w.requires_grad) else None, d, store_v_seq)
    spikes, u_last, v_seq, _ = _forward_loop(d, x, u0, False, store_v_seq)
    v_last = u_last.clone() if v_seq is not None else u_last
    if d.v_reset != 0.0:
        v_last.add_(d.v_reset)
        if v_seq is not None:
            v_seq.add_(d.v_reset)
    return spikes, v_last, v_seq
