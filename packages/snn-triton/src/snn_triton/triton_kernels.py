"""The Triton kernels: one forward and one backward launch per sequence.

Layout: every tensor is a contiguous ``[T, N]`` (or ``[N]``) array. The grid is 1-D over
neurons; each program owns ``BLOCK`` neurons and loops over time at run time
(``for _ in range(T)``, ``T`` a runtime argument that Triton does not specialise on: one
compiled kernel serves every sequence length), carrying the membrane potential (forward) or the running gradient (backward) in
registers. Offsets are 64-bit; every load and store is masked.

Storage is float32, float16 or bfloat16; arithmetic is float32 in registers (the potential is
carried in float32 across steps, as the torch reference computes half types in float32).

What training saves is ``o = h - v_threshold`` (the charged potential relative to the
threshold) in the storage type, rather than ``h`` itself: its sign is the spike, so the spikes
recomputed in backward (``o >= 0``) equal the forward's in every storage type. Rounding keeps
the sign of nonzero numbers; the one exception, a tiny negative ``o`` that would round to
``-0.0``, is stored as the smallest negative subnormal of float16 (``-2**-24``) instead.

Neuron kinds (``KIND``): 0 IF, 1 LIF (divides by the runtime scalar ``tau``), 2 PLIF
(multiplies by ``decay = sigmoid(w)``, read from ``decay_ptr``).

The backward is the recursion of the reference (section 8.1), with the surrogate derivative
``SURROGATE`` (a generated ``@triton.jit`` function, see :mod:`snn_triton.codegen`) inlined.
``dL/dh`` is summed in the torch reference's order (``dL/ds sg``, then ``dL/dv_seq dv/dh``, then
the carried gradient times ``dv/dh``), each term only when its upstream gradient exists, so that
NaN and infinite potentials give NaN gradients exactly where the torch backend does.
PLIF's decay gradient is reduced per program into ``grad_decay_ptr[program]``; the caller
sums those partials with torch (deterministic, no atomics).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["forward_kernel", "backward_kernel"]

#: -2**-24: the negative number closest to zero representable in float16, bfloat16, float32.
_NEG_TINY = tl.constexpr(-5.960464477539063e-08)


@triton.jit
def _to_storage(a, STORAGE: tl.constexpr):
    """Round float32 ``a`` to the storage type, to nearest even in every mode.

    bfloat16 is rounded with integer arithmetic first (Triton's CPU interpreter truncates
    float32 -> bfloat16 casts); the final cast of the already representable value is exact.
    """
    if STORAGE == tl.bfloat16:
        bits = a.to(tl.uint32, bitcast=True)
        bits = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16) << 16
        a = tl.where(a != a, a, bits.to(tl.float32, bitcast=True))
    return a.to(STORAGE)


@triton.jit
def _charge(v, x, v_reset, tau, decay, KIND: tl.constexpr, DECAY_INPUT: tl.constexpr):
    """The charged potential ``h`` from ``v`` (previous step) and input ``x``."""
    if KIND == 0:
        h = v + x
    elif KIND == 1:
        if DECAY_INPUT:
            h = v + tl.div_rn(x - (v - v_reset), tau)
        else:
            h = v - tl.div_rn(v - v_reset, tau) + x
    else:
        if DECAY_INPUT:
            h = v + (x - (v - v_reset)) * decay
        else:
            h = v - (v - v_reset) * decay + x
    return h


@triton.jit
def _reset(h, s, v_threshold, v_reset, HARD_RESET: tl.constexpr):
    """Post-reset potential: hard ``s*vr + (1-s)*h``, soft ``h - s*v_threshold``."""
    if HARD_RESET:
        v = s * v_reset + (1.0 - s) * h
    else:
        v = h - s * v_threshold
    return v


@triton.jit(do_not_specialize=["T"])
def forward_kernel(
    x_ptr, v0_ptr, decay_ptr,
    spike_ptr, o_ptr, v_seq_ptr, v_last_ptr,
    T, N,
    v_threshold, v_reset, tau,
    KIND: tl.constexpr,
    HARD_RESET: tl.constexpr,
    DECAY_INPUT: tl.constexpr,
    SAVE_O: tl.constexpr,
    STORE_V_SEQ: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Forward over ``T`` steps for ``BLOCK`` neurons.

    Reads ``x [T, N]`` and ``v0 [N]`` (and PLIF's ``decay``); writes ``spike [T, N]``,
    ``o = h - v_threshold [T, N]`` when ``SAVE_O`` (training), ``v_seq [T, N]`` when
    ``STORE_V_SEQ`` and always ``v_last [N]``. Pointers not needed may be ``None``.
    """
    STORAGE: tl.constexpr = x_ptr.dtype.element_ty
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    decay = 0.0
    if KIND == 2:
        decay = tl.load(decay_ptr).to(tl.float32)
    off = offs
    x_next = tl.load(x_ptr + off, mask=mask, other=0.0)
    for i in range(T):
        x = x_next.to(tl.float32)
        # prefetch x[t+1] while step t computes (nothing is read after the last step)
        # a tensor comparison: newer interpreters reject a mask combined with a Python bool
        has_next = (offs * 0 + (i + 1)) < T
        x_next = tl.load(x_ptr + (off + N), mask=mask & has_next, other=0.0)
        h = _charge(v, x, v_reset, tau, decay, KIND, DECAY_INPUT)
        o = h - v_threshold
        s = (o >= 0.0).to(tl.float32)
        v = _reset(h, s, v_threshold, v_reset, HARD_RESET)
        tl.store(spike_ptr + off, s.to(STORAGE), mask=mask)
        if SAVE_O:
            rounded = _to_storage(o, STORAGE).to(tl.float32)
            rounded = tl.where((o < 0.0) & (rounded >= 0.0), _NEG_TINY, rounded)
            tl.store(o_ptr + off, rounded.to(STORAGE), mask=mask)
        if STORE_V_SEQ:
            tl.store(v_seq_ptr + off, _to_storage(v, STORAGE), mask=mask)
        off += N
    tl.store(v_last_ptr + offs, _to_storage(v, STORAGE), mask=mask)


@triton.jit(do_not_specialize=["T"])
def backward_kernel(
    grad_spike_ptr, grad_v_seq_ptr, grad_v_last_ptr,
    o_ptr, x_ptr, v0_ptr, decay_ptr,
    grad_x_ptr, grad_v0_ptr, grad_decay_ptr,
    T, N,
    v_threshold, v_reset, tau,
    SURROGATE: tl.constexpr,
    KIND: tl.constexpr,
    HARD_RESET: tl.constexpr,
    DETACH_RESET: tl.constexpr,
    DECAY_INPUT: tl.constexpr,
    HAS_GRAD_SPIKE: tl.constexpr,
    HAS_GRAD_V_SEQ: tl.constexpr,
    HAS_GRAD_V_LAST: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Backward through time (``t = T-1 .. 0``) for ``BLOCK`` neurons.

    Reads ``o [T, N]``, the upstream gradients that exist (``HAS_*``; the others may be
    ``None``), and for PLIF ``v0``, ``decay`` and (``DECAY_INPUT``) ``x``; writes
    ``grad_x [T, N]``, ``grad_v0 [N]`` and for PLIF one partial sum of the decay gradient per
    program into ``grad_decay[program_id]``. PLIF's previous potential ``v[t-1]`` is
    recomputed from ``o[t-1]`` (or is ``v0``).
    """
    STORAGE: tl.constexpr = grad_x_ptr.dtype.element_ty
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    if HAS_GRAD_V_LAST:
        grad_v = tl.load(grad_v_last_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        grad_v = tl.zeros([BLOCK], dtype=tl.float32)
    decay = 0.0
    grad_decay = tl.zeros([BLOCK], dtype=tl.float32)
    v0 = tl.zeros([BLOCK], dtype=tl.float32)
    if KIND == 2:
        decay = tl.load(decay_ptr).to(tl.float32)
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # int64 arithmetic throughout (Triton may specialise T or N to constants)
    last_row = (offs * 0 + N) * (T - 1)
    off = offs + last_row
    o_next = tl.load(o_ptr + off, mask=mask, other=0.0).to(tl.float32)
    grad_s_next = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_GRAD_SPIKE:
        grad_s_next = tl.load(grad_spike_ptr + off, mask=mask, other=0.0).to(tl.float32)
    for _ in range(T):
        o = o_next
        grad_s = grad_s_next
        # valid lanes have 0 <= offs < N, so off >= N exactly when t > 0
        later = off >= N
        # prefetch step t-1 (nothing is read at t = 0): o (also PLIF's v[t-1]) and dL/ds
        o_next = tl.load(o_ptr + (off - N), mask=mask & later, other=0.0).to(tl.float32)
        if HAS_GRAD_SPIKE:
            grad_s_next = tl.load(grad_spike_ptr + (off - N), mask=mask & later, other=0.0).to(tl.float32)
        s = (o >= 0.0).to(tl.float32)
        sg = SURROGATE(o)
        # dv/dh: hard 1 - s (+ dv/ds sg with dv/ds = v_reset - h = (v_reset - v_threshold) - o),
        # soft 1 - v_threshold sg; 1 for a detached soft reset (no multiplication then)
        if HARD_RESET:
            dv_dh = 1.0 - s
            if not DETACH_RESET:
                dv_dh = dv_dh + ((v_reset - v_threshold) - o) * sg
        else:
            dv_dh = 1.0 - v_threshold * sg
        # dL/dh = dL/ds sg + dL/dv_seq dv/dh + (carried dL/dv) dv/dh, in the torch reference's
        # order and with only the terms whose gradients exist: an absent one is no 0 * inf = NaN
        if HAS_GRAD_SPIKE:
            grad_h = grad_s * sg
        else:
            grad_h = tl.zeros([BLOCK], dtype=tl.float32)
        if HAS_GRAD_V_SEQ:
            grad_v_t = tl.load(grad_v_seq_ptr + off, mask=mask, other=0.0).to(tl.float32)
            if HARD_RESET or not DETACH_RESET:
                grad_v_t = grad_v_t * dv_dh
            grad_h = grad_h + grad_v_t
        carried = grad_v
        if HARD_RESET or not DETACH_RESET:
            carried = carried * dv_dh
        if HAS_GRAD_V_LAST:
            grad_h = grad_h + carried
        else:  # nothing flows into the last step
            grad_h = grad_h + tl.where(off >= last_row, 0.0, carried)
        if KIND == 0:
            grad_x = grad_h
            grad_v = grad_h
        elif KIND == 1:
            scaled = tl.div_rn(grad_h, tau)
            grad_x = scaled if DECAY_INPUT else grad_h
            grad_v = grad_h - scaled
        else:
            scaled = grad_h * decay
            grad_x = scaled if DECAY_INPUT else grad_h
            grad_v = grad_h - scaled
            s_prev = (o_next >= 0.0).to(tl.float32)
            v_prev = _reset(o_next + v_threshold, s_prev, v_threshold, v_reset, HARD_RESET)
            leak = tl.where(later, v_prev, v0) - v_reset
            if DECAY_INPUT:
                x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
                grad_decay += grad_h * (x - leak)
            else:
                grad_decay -= grad_h * leak
        tl.store(grad_x_ptr + off, _to_storage(grad_x, STORAGE), mask=mask)
        off -= N
    tl.store(grad_v0_ptr + offs, _to_storage(grad_v, STORAGE), mask=mask)
    if KIND == 2:
        tl.store(grad_decay_ptr + pid, tl.sum(tl.where(mask, grad_decay, 0.0), axis=0))
