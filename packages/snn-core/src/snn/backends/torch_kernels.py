"""Fused multi-step neuron dynamics in plain PyTorch, with a hand-written backward.

This is the arithmetic behind :mod:`snn.backends.torch`. Each time step costs three fused
tensor operations (charge, fire, reset) that write straight into preallocated ``[T, N]``
outputs, so a forward pass allocates nothing but its outputs. The backward pass walks the
sequence newest-first, evaluating the surrogate derivative (compiled by
:mod:`snn.backends.torch_expr` into ``out=`` operations) and the recursion of the
neuron-kernel contract on ``[N]`` rows that are reused at every step; it allocates only the
input gradient. Allocation matters on CPU: a fresh multi-megabyte tensor costs page faults that
can exceed the arithmetic on it.

Internally the potential is shifted by the reset potential, ``u = v - vr``, so that the
hard reset is ``u = h * (1 - s)`` and every neuron kind charges with a single operation:

- IF: ``h = u + x``;
- LIF / PLIF with ``decay_input``: ``h = lerp(u, x, k)`` (``u + k (x - u)``);
- LIF / PLIF without it: ``h = x + (1 - k) u``;

with ``k = 1 / tau`` or ``sigmoid(w)``; the firing threshold becomes ``v_threshold - vr``.
Only ``h`` (in the shifted frame) is saved for backward, plus ``v0`` for PLIF; spikes and
post-reset potentials are recomputed from it.

Half-precision inputs (float16 / bfloat16) are computed in float32, float64 in float64;
outputs are cast back to the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snn.backends.torch_expr import DerivativeProgram

__all__ = ["Dynamics", "compute_dtype", "run_sequence"]


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
    if d.kind == "if":
        torch.add(u_prev, x_t, out=out)
    elif d.decay_input:
        torch.lerp(u_prev, x_t, d.decay, out=out)
    else:
        torch.add(x_t, u_prev, alpha=1.0 - d.decay, out=out)


def _forward_loop(
    d: Dynamics, x: torch.Tensor, u0: torch.Tensor, keep_h: bool, store_v_seq: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Run the dynamics over ``x`` ``[T, N]`` from ``u0`` ``[N]`` (shifted frame).

    Returns:
        spikes ``[T, N]``, the last shifted potential ``[N]`` (a fresh tensor or a row of
        the shifted ``v_seq``), the shifted ``v_seq`` ``[T, N]`` or ``None``, and ``h``
        ``[T, N]`` when ``keep_h`` else ``None``. All in ``x``'s dtype.
    """
    steps, n = x.shape
    spikes = torch.empty((steps, n), dtype=x.dtype, device=x.device)
    h_seq = torch.empty((steps, n), dtype=x.dtype, device=x.device) if keep_h else None
    v_seq = torch.empty((steps, n), dtype=x.dtype, device=x.device) if store_v_seq else None
    state = None if store_v_seq else torch.empty((n,), dtype=x.dtype, device=x.device)
    theta, hard, vth = d.threshold, d.hard_reset, d.v_threshold
    u_prev = u0
    for t in range(steps):
        u_t = v_seq[t] if v_seq is not None else state
        h_t = h_seq[t] if h_seq is not None else u_t
        s_t = spikes[t]
        _charge(d, u_prev, x[t], h_t)
        torch.ge(h_t, theta, out=s_t)
        if hard:
            torch.addcmul(h_t, h_t, s_t, value=-1.0, out=u_t)
        else:
            torch.add(h_t, s_t, alpha=-vth, out=u_t)
        u_prev = u_t
    return spikes, u_prev, v_seq, h_seq


def _backward(
    d: Dynamics,
    h: torch.Tensor,
    u0: torch.Tensor | None,
    grad_spikes: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    need_decay_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The backward recursion of the contract, one time step at a time (newest first).

    With ``c`` the total gradient reaching the post-reset potential ``v_t`` (from ``v_seq``,
    ``v_last`` and the next step), ``a = dL/ds_t`` and ``sg = surrogate'(h_t - v_threshold)``,
    the gradient of the charged potential is ``G_h = a sg + c dv/dh``, rearranged per reset
    mode so that each case costs two or three fused operations on ``[N]`` rows:

    - hard: ``dv/dh = (1 - s) - (h - vr) sg`` -> ``G_h = sg (a - c (h - vr)) + c (1 - s)``;
    - hard, detached: ``G_h = a sg + c (1 - s)``;
    - soft: ``dv/dh = 1 - v_threshold sg`` -> ``G_h = c + sg (a - v_threshold c)``;
    - soft, detached: ``G_h = c + a sg``.

    Then ``dL/dx_t = G_h dh/dx`` and the next ``c`` is ``G_h dh/dv_prev``. Only the output
    ``[T, N]`` and a few ``[N]`` rows are allocated.

    Returns:
        ``(grad_x [T, N], grad_u0 [N], grad_decay 0-dim | None)``.
    """
    steps, n = h.shape
    grad_x = torch.empty_like(h)
    row = torch.empty((n,), dtype=h.dtype, device=h.device)
    other = torch.empty((n,), dtype=h.dtype, device=h.device)
    zeros = torch.zeros((n,), dtype=h.dtype, device=h.device) if grad_spikes is None else None
    acc = torch.zeros((n,), dtype=h.dtype, device=h.device) if need_decay_grad else None
    theta, vth, hard, detach = d.threshold, d.v_threshold, d.hard_reset, d.detach_reset
    leak, gain, derivative = d.leak, d.input_gain, d.derivative.bind(row)
    carry: torch.Tensor | None = None
    carry_buffers = (torch.empty((n,), dtype=h.dtype, device=h.device), None)
    for t in range(steps - 1, -1, -1):
        h_t = h[t]
        g_t = grad_x[t]
        a = grad_spikes[t] if grad_spikes is not None else zeros
        # the total gradient reaching v_t
        if t == steps - 1:
            if grad_v_last is not None and grad_v_seq is not None:
                carry = torch.add(grad_v_last, grad_v_seq[t], out=carry_buffers[0])
            else:
                carry = grad_v_last if grad_v_last is not None else (
                    grad_v_seq[t] if grad_v_seq is not None else None
                )
        elif grad_v_seq is not None:
            assert carry is not None
            carry = carry.add_(grad_v_seq[t]) if carry.data_ptr() != grad_x[t + 1].data_ptr() else (
                torch.add(carry, grad_v_seq[t], out=carry_buffers[0])
            )
        sg = derivative(torch.sub(h_t, theta, out=row))
        if carry is None:
            torch.mul(a, sg, out=g_t)
        elif hard:
            if detach:
                torch.mul(a, sg, out=g_t)
            else:
                torch.addcmul(a, carry, h_t, value=-1.0, out=other)
                torch.mul(other, sg, out=g_t)
            torch.lt(h_t, theta, out=other)  # 1 - s
            g_t.addcmul_(carry, other)
        elif detach:
            torch.addcmul(carry, a, sg, out=g_t)
        else:
            torch.add(a, carry, alpha=-vth, out=other)
            torch.addcmul(carry, other, sg, out=g_t)
        if acc is not None:
            assert u0 is not None
            # dh/dk = x - u_prev = (h - u_prev) / k (decay_input), or -u_prev
            if t == 0:
                u_prev = u0
            else:
                h_prev = h[t - 1]
                torch.ge(h_prev, theta, out=other)
                if hard:
                    u_prev = torch.addcmul(h_prev, h_prev, other, value=-1.0, out=row)
                else:
                    u_prev = torch.add(h_prev, other, alpha=-vth, out=row)
            if d.decay_input:
                acc.addcmul_(g_t, torch.sub(h_t, u_prev, out=other))
            else:
                acc.addcmul_(g_t, u_prev, value=-1.0)
        # the gradient reaching v_{t-1}
        if leak == 1.0:
            carry = g_t
        else:
            carry = torch.mul(g_t, leak, out=carry_buffers[0])
        if gain != 1.0:
            g_t.mul_(gain)
    assert carry is not None
    grad_u0 = carry.clone() if (carry._base is not None or leak == 1.0) else carry
    grad_decay = None
    if acc is not None:
        grad_decay = acc.sum()
        if d.decay_input:
            grad_decay = grad_decay / d.decay
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
