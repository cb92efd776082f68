"""The backward pass of the torch backend's multi-step kernel, for any neuron model.

The pass walks the sequence newest-first in tiles of time steps (:func:`snn.backends.torch_kernels.tiles`).
With ``G_j[t]`` the gradient of the charged state ``j`` at step ``t``, the plan's coefficients give

    ``G_j[t] = [j = fire] dL/ds_t sg_t + sum_i gV_i[t] A_ij[t] + sum_k G_k[t+1] M_kj[t]``

with ``A_ij = d reset_i / d h_j`` (the spike's share through the surrogate included),
``M_kj[t] = sum_i C_ki[t+1] A_ij[t]`` and ``C_ki = d charge_k / d u_i``; ``gV`` is the gradient of
the state sequences (and of the last states at ``t = T - 1``). Everything but the recursion is
computed for a whole tile at once, in workspaces shared by all column chunks: by two programs
(the tile's rows; the rows and the next one, with the previous states recomputed by the reset),
or, where ``C`` reads the previous states and parameters only and there are no learnables (IF,
LIF, QIF, EIF, Izhikevich, CUBA-LIF), by one program over the tile's rows, as
``u[t + 1] = reset(h[t], s[t])`` is then all ``C[t + 1]`` needs. The recursion costs one fused
operation per step and pair of states with a non-zero coefficient (one for IF, LIF and PLIF), for
the states whose ``G`` can be non-zero and is read (:func:`snn.backends.torch_plan.live_states`). Then
``dL/dx = sum_j G_j d charge_j / dx``, ``dL/du0_i = sum_j G_j[0] C_ji[0]`` and the learnable
parameters' gradients are sums over the tile. A tile program that needs only ``1 - s`` reads it
as ``h < threshold`` (:func:`snn.backends.torch_plan._reading_not_spike`). Allocation matters on CPU: a fresh
multi-megabyte tensor costs page faults that can exceed the arithmetic on it.

The coefficient programs collapse chains of arithmetic with numbers into one operation
(:func:`snn.backends.torch_lowering.lower` with ``affine``), so they may differ from autograd's
evaluation of the same derivative in the last bits. Non-finite values follow the model's
expressions, as autograd evaluates them, with two exceptions for non-finite gradients: the
recursion multiplies an incoming state gradient by the combined coefficient ``M_kj`` in one
operation, so where that gradient is itself infinite (possible only when ``d charge / d u``
reads the states, as QIF's does, and the input or state is infinite) the result is ``+-inf``
where autograd's term-by-term sum gives NaN; and a coefficient that is the number zero passes
nothing, where autograd's ``0 * inf`` or ``0 * NaN`` is NaN (``zero_is_none`` of
:class:`~snn.backends.torch_plan.Coefficients`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from snn.backends.memory import empty
from snn.backends.torch_plan import NOT_SPIKE, Coefficient, CompiledPlan, live_states
from snn.backends.torch_program import _add_product, _add_scaled, _scaled_product, number_operand
from snn.models import INPUT, SPIKE

__all__ = ["backward"]



def _accumulate(out: torch.Tensor, value: torch.Tensor, coefficient: Coefficient) -> None:
    """``out += value * coefficient`` (coefficient: float or (tensor, factor)); a factor beyond
    the dtype's range overflows as autograd's products do (see ``torch_program._add_scaled``)."""
    if isinstance(coefficient, float):
        _add_scaled(out, value, coefficient, out)
        return
    tensor, factor = coefficient
    _add_product(out, value, tensor, 1.0 if factor is None else factor, out)


def _assign(out: torch.Tensor, value: torch.Tensor, coefficient: Coefficient, zero: torch.Tensor) -> None:
    """``out = value * coefficient`` in one pass (``zero``: a 0-dim zero of ``out``'s dtype)."""
    if isinstance(coefficient, float):
        torch.mul(value, coefficient, out=out)
        return
    tensor, factor = coefficient
    if factor is None:
        torch.mul(value, tensor, out=out)
    else:
        _scaled_product(value, tensor, factor, zero, out)


def backward(
    cp: CompiledPlan,
    saved_h: list[torch.Tensor | None],
    x: torch.Tensor | None,
    states0: list[torch.Tensor | None],
    raw: tuple[float, ...],
    grad_spikes: torch.Tensor | None,
    grad_last: list[torch.Tensor | None],
    grad_seqs: list[torch.Tensor | None],
    need_learnables: bool,
    steps: int,
    n: int,
    like_tensor: torch.Tensor,
    rows_per_tile: int,
    cols: int,
    need_u0: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor]]:
    """The backward recursion of the plan (see the module docstring), tile by tile.

    Args:
        cp: the compiled plan.
        saved_h: per state, its charged values ``[T, N]`` if saved, else ``None``.
        x: the inputs ``[T, N]`` when the plan saves them, else ``None``.
        states0: per state, its initial values ``[N]`` when the plan needs them, else ``None``.
        raw: the learnable parameters' values.
        grad_spikes: ``dL/ds`` ``[T, N]`` or ``None``.
        grad_last: per state, ``dL/d`` (last value) ``[N]`` or ``None``.
        grad_seqs: per state, ``dL/d`` (state sequence) ``[T, N]`` or ``None``.
        need_learnables: whether to compute the learnables' gradients.
        steps, n: ``T`` and ``N``.
        like_tensor: a tensor of the compute dtype and device.
        rows_per_tile, cols: the tile (steps, neurons), from :func:`snn.backends.torch_kernels.tiles`.
        need_u0: per state, whether its initial value's gradient is wanted (default: all).

    Returns:
        ``(grad_x [T, N], grad of each initial state [N] (``None`` where not wanted), grad of
        each learnable (0-dim))``.
    """
    plan = cp.plan
    m = len(plan.states)
    fire = plan.fire_index
    device = like_tensor.device
    like: dict[str, Any] = {"dtype": like_tensor.dtype, "device": device}
    theta = number_operand(plan.threshold, like_tensor.dtype, device)
    grad_x = empty((steps, n), **like)  # huge pages: its first write faults far less
    wanted_u0 = [True] * m if need_u0 is None else list(need_u0)
    grad_u0 = [torch.zeros((n,), **like) if wanted_u0[i] else None for i in range(m)]
    n_p = len(plan.learnables)
    mm = m * m
    sums: list[list[torch.Tensor]] = [[] for _ in range(n_p)]
    need_rp = need_learnables and cp.reset_reads_learnables
    # one program per tile for the coefficients of the tile's rows, one for the rows and the next;
    # or, where C[t + 1] follows from row t (CompiledPlan.tile_next), one program for everything
    aligned = cp.tile_next is not None
    if cp.tile_next is not None:
        tile_coefficients = cp.tile_next
    else:
        tile_coefficients = cp.tile_rp if need_rp else cp.tile
    ext_coefficients = cp.ext_fp if need_learnables else cp.ext
    prep_tile, prep_ext = tile_coefficients.prepare(raw), ext_coefficients.prepare(raw)
    prep_initial = cp.initial.prepare(raw) if cp.initial is not None else None
    prep_prev = cp.previous.prepare(raw)
    c_shift = 0 if aligned else 1  # row t of C[t + 1] is row t + c_shift of c
    # which coefficients are structurally non-zero: sg, A, then (C, d charge / dx, d charge / dp)
    tile_nonzero = tile_coefficients.nonzero
    ext_nonzero = tile_nonzero[1 + mm :] if aligned else ext_coefficients.nonzero
    initial_nonzero = cp.initial.nonzero if aligned and cp.initial is not None else ext_nonzero[:mm]
    live = live_states(
        m, fire, tile_nonzero[1 : 1 + mm], ext_nonzero[:mm], initial_nonzero, ext_nonzero[mm:],
        grad_spikes is not None and tile_nonzero[0], [gv is not None for gv in grad_seqs],
        [gl is not None for gl in grad_last], wanted_u0, need_learnables, need_rp, n_p,
    )
    live_indices = [j for j in range(m) if live[j]]
    # one live state with a scalar (or no) input coefficient: G lives in grad_x, scaled in place
    fx_entries = tile_coefficients.entries[1 + 2 * mm :] if aligned else ext_coefficients.entries[mm:]
    solo = live_indices[0] if len(live_indices) == 1 and fx_entries[live_indices[0]][0] != "tensor" else -1
    in_place = solo >= 0
    # else the gradient of a state whose dcharge/dx is 1 lives in grad_x (no pass to copy it)
    home = -1
    if not in_place:
        home = next(
            (j for j, e in enumerate(plan.charge_x) if live[j] and e is not None and e.op == "num" and e.value == 1.0), -1
        )
    need_prev = bool(plan.initial_states_needed) and not aligned
    # s = (h >= threshold), or 1 - s as h < threshold where the tile program reads that instead
    spike_name, fire_test = (NOT_SPIKE, torch.lt) if tile_coefficients.reads_not_spike else (SPIKE, torch.ge)
    need_x = plan.needs_input
    zero = torch.zeros((), **like)
    # workspaces for the widest chunk, shared by all chunks (fresh memory costs page faults)
    ext_rows = min(steps, rows_per_tile + 2)
    flat = {
        "s_ext": ext_rows, "work": rows_per_tile,
        **{f"g{j}": rows_per_tile for j in live_indices if not in_place and j != home},
        **{f"prev{i}": ext_rows for i in plan.initial_states_needed if need_prev},
    }
    buffers = {name: torch.empty((height * cols,), **like) for name, height in flat.items()}
    mix_work: list[torch.Tensor] = []

    def chunk(c0: int, c1: int) -> None:
        width = c1 - c0

        def shaped(name: str) -> torch.Tensor:
            return buffers[name][: flat[name] * width].view(flat[name], width)

        s_ext_buf, work = shaped("s_ext"), shaped("work")
        g_bufs = {j: shaped(f"g{j}") for j in live_indices if not in_place and j != home}
        prev_buf = {i: shaped(f"prev{i}") for i in plan.initial_states_needed if need_prev}
        carry: list[torch.Tensor | None] = [None] * m
        h_full = [hs[:, c0:c1] if hs is not None else None for hs in saved_h]
        for end in range(steps, 0, -rows_per_tile):
            start = max(0, end - rows_per_tile)
            rows = end - start
            w0 = max(start - 1, 0)
            e1 = min(end + 1, steps)
            ext = e1 - start
            h_fire = h_full[fire]
            assert h_fire is not None
            if not need_prev:  # the spikes of the tile's rows feed its first program alone
                s_ext = s_t = s_ext_buf[:rows]
                fire_test(h_fire[start:end], theta, out=s_t)
            else:
                s_ext = s_ext_buf[: e1 - w0]
                torch.ge(h_fire[w0:e1], theta, out=s_ext)
                s_t = s_ext[start - w0 : end - w0]
            tiles_by_name: dict[str, torch.Tensor] = {spike_name: s_t}
            for j, hs in enumerate(h_full):
                if hs is not None:
                    tiles_by_name[f"h_{plan.states[j]}"] = hs[start:end]
            # work[:rows] gives the tile's shape (constant coefficients get tensors of their own)
            sg_a_rp = tile_coefficients.run(tiles_by_name, prep_tile, work[:rows])
            sg, a = sg_a_rp[0], sg_a_rp[1 : 1 + mm]
            if aligned:
                coefficients = sg_a_rp[1 + mm :]
            else:
                # states and inputs over the rows [start, e1): one row past the tile for C[t + 1]
                ext_tiles: dict[str, torch.Tensor] = {}
                for j, hs in enumerate(h_full):
                    if hs is not None:
                        ext_tiles[f"h_{plan.states[j]}"] = hs[start:e1]
                if need_prev:
                    first = 1 if start == 0 else 0
                    if ext - first > 0:
                        prev_tiles = {SPIKE: s_ext[start - 1 - w0 + first : e1 - 1 - w0]}
                        for j, hs in enumerate(h_full):
                            if hs is not None:
                                prev_tiles[f"h_{plan.states[j]}"] = hs[start - 1 + first : e1 - 1]
                        into = {i: buf[first:ext] for i, buf in prev_buf.items()}
                        values = cp.previous.run(prev_tiles, prep_prev, s_ext[: ext - first], into)
                    for i, buf in prev_buf.items():
                        u_tile = buf[:ext]
                        if first:
                            u0 = states0[i]
                            assert u0 is not None
                            u_tile[0].copy_(u0[c0:c1])
                        if ext - first > 0:
                            value = values[i]
                            if not isinstance(value, tuple):
                                u_tile[first:].fill_(value)
                            elif value[0].data_ptr() != u_tile[first:].data_ptr():
                                u_tile[first:].copy_(value[0])
                        ext_tiles[f"u_{plan.states[i]}"] = u_tile
                if need_x:  # saved by the forward pass (KernelPlan.save_input)
                    assert x is not None
                    ext_tiles[INPUT] = x[start:e1, c0:c1]
                like_ext = s_ext_buf[:ext]
                coefficients = ext_coefficients.run(ext_tiles, prep_ext, like_ext)
            c, fx = coefficients[:mm], coefficients[mm : mm + m]
            # in place, G times a scalar dcharge/dx is dL/dx: the recursion is linear in G, so
            # its sources are scaled instead (no pass over grad_x after it); the gradients read
            # from G (initial states) divide by it
            fold = fx[solo] if in_place and not need_learnables and isinstance(fx[solo], float) else None
            if fold is not None and (fold in (0.0, 1.0) or not math.isfinite(1.0 / fold)):
                fold = None
            # G: the gradients of the charged states over the tile (None: not live)
            g: list[torch.Tensor | None] = [
                (grad_x[start:end, c0:c1] if j == home or j == solo else g_bufs[j][:rows]) if live[j] else None
                for j in range(m)
            ]
            live_g = {j: gj for j, gj in enumerate(g) if gj is not None}
            # a G with no source of its own in the tile is written by its first recursion term
            # (rows with a next step) instead of being zeroed first
            unset = [False] * m
            for j, gj in live_g.items():
                sources = [
                    (gv[start:end, c0:c1], coefficient) for i in range(m)
                    if (coefficient := a[i * m + j]) is not None and (gv := grad_seqs[i]) is not None
                ]
                if j == fire and grad_spikes is not None and sg is not None:
                    _assign(gj, grad_spikes[start:end, c0:c1], _scaled(sg, fold), zero)
                elif sources:
                    value, coefficient = sources.pop(0)
                    _assign(gj, value, _scaled(_rows(coefficient, 0, rows), fold), zero)
                else:
                    unset[j] = True
                for value, coefficient in sources:
                    _accumulate(gj, value, _scaled(_rows(coefficient, 0, rows), fold))
            # M_kj[t] = sum_i C_ki[t+1] A_ij[t] for the rows that have a next step
            span = rows if end < steps else rows - 1
            mix = _mixing(a, c, m, span, work, mix_work, zero, c_shift, live)
            # the recursion, one fused operation per row and non-zero M_kj, on row views made once
            g_rows = [gj.unbind(0) if gj is not None else () for gj in g]
            recursion = [
                (j, k, None, coefficient) if isinstance(coefficient, float)
                else (j, k, coefficient[0].unbind(0), None if coefficient[1] == 1.0 else coefficient[1])
                for j in live_indices for k in live_indices if (coefficient := mix[k][j]) is not None
            ]
            unset_rows = [g_rows[j] for j in live_indices if unset[j]]
            for t in range(rows - 1, -1, -1):
                if start + t == steps - 1:
                    for g_j in unset_rows:
                        g_j[t].zero_()
                    for i in range(m):
                        gl = grad_last[i]
                        if gl is None:
                            continue
                        for j in live_indices:
                            coefficient = a[i * m + j]
                            if coefficient is not None:
                                _accumulate(g_rows[j][t], gl[c0:c1], _scaled(_rows(coefficient, t, t + 1, squeeze=True), fold))
                    continue
                after = carry if t == rows - 1 else [g_k[t + 1] if g_k else None for g_k in g_rows]
                written = [not flag for flag in unset]
                for j, k, coefficient_rows, value in recursion:
                    incoming = after[k]
                    assert incoming is not None
                    coefficient = value if coefficient_rows is None else (coefficient_rows[t], value)
                    if written[j]:
                        _accumulate(g_rows[j][t], incoming, coefficient)
                    else:
                        _assign(g_rows[j][t], incoming, coefficient, zero)
                        written[j] = True
                for j in live_indices:
                    if not written[j]:
                        g_rows[j][t].zero_()
            if need_learnables:
                fp = coefficients[mm + m :]
                for k in range(n_p):
                    for j in live_indices:
                        _sum_into(sums[k], live_g[j], fp[j * n_p + k], rows, work)
                if need_rp:
                    rp = sg_a_rp[1 + mm :]
                    gs_tiles = _state_gradients(g, c, m, rows, start, steps, carry, grad_last, grad_seqs, c0, c1, like)
                    for k in range(n_p):
                        for i in range(m):
                            _sum_into(sums[k], gs_tiles[i], rp[i * n_p + k], rows, work)
            if start > 0:
                # G's first row is read by the next tile: rows of grad_x that nothing writes again
                # (no scaling pass below) are kept as they are, others copied
                kept = in_place and isinstance(fx[solo], float) and (fx[solo] == 1.0 or fold is not None)
                carry = [None if gj is None else gj[0] if kept else gj[0].clone() for gj in g]
            elif any(wanted_u0):
                c_first = c
                if aligned:  # C[0] from the initial states (c holds C[t + 1])
                    assert cp.initial is not None and prep_initial is not None
                    initial_tiles = {}
                    for i in plan.initial_states_needed:
                        u0 = states0[i]
                        assert u0 is not None
                        initial_tiles[f"u_{plan.states[i]}"] = u0[c0:c1].unsqueeze(0)
                    c_first = cp.initial.run(initial_tiles, prep_initial, work[:1])
                for i in range(m):
                    gu0 = grad_u0[i]
                    if gu0 is None:
                        continue
                    for j in live_indices:
                        coefficient = c_first[j * m + i]
                        if coefficient is not None:
                            _accumulate(
                                gu0[c0:c1], live_g[j][0],
                                _scaled(_rows(coefficient, 0, 1, squeeze=True), None if fold is None else 1.0 / fold),
                            )
            # dL/dx = sum_j G_j d charge_j / dx
            gx = grad_x[start:end, c0:c1]
            if in_place:
                coefficient = fx[solo]
                if coefficient is None:
                    gx.zero_()
                elif isinstance(coefficient, float):
                    if coefficient != 1.0 and fold is None:
                        gx.mul_(coefficient)
                else:  # pragma: no cover - in_place requires scalar coefficients
                    raise AssertionError("tensor input coefficient in place")
            else:
                terms = [(live_g[j], _rows(fx[j], 0, rows)) for j in live_indices if fx[j] is not None and j != home]
                if not terms and home < 0:
                    gx.zero_()
                for index, (gj, coefficient) in enumerate(terms):
                    if index == 0 and home < 0:
                        _assign(gx, gj, coefficient, zero)
                    else:
                        _accumulate(gx, gj, coefficient)

    for c0 in range(0, n, cols):
        chunk(c0, min(n, c0 + cols))
    grads_p = []
    for k in range(n_p):
        grads_p.append(torch.stack(sums[k]).sum() if sums[k] else torch.zeros((), **like))
    return grad_x, grad_u0, grads_p


def _scaled(coefficient: Coefficient, scale: float | None) -> Coefficient:
    """``coefficient`` times ``scale`` (unchanged for ``None``), the scale kept in the factor."""
    if scale is None or coefficient is None:
        return coefficient
    if isinstance(coefficient, float):
        return coefficient * scale
    tensor, factor = coefficient
    return (tensor, scale if factor is None else factor * scale)


def _rows(coefficient: Coefficient, r0: int, r1: int, squeeze: bool = False) -> Coefficient:
    """Rows ``[r0, r1)`` of a tensor coefficient (row ``r0`` alone with ``squeeze``)."""
    if coefficient is None or isinstance(coefficient, float):
        return coefficient
    tensor, factor = coefficient
    return (tensor[r0] if squeeze else tensor[r0:r1], factor)


def _mixing(
    a: list[Coefficient],
    c: list[Coefficient],
    m: int,
    span: int,
    work: torch.Tensor,
    spare: list[torch.Tensor],
    zero: torch.Tensor,
    c_shift: int = 1,
    live: Sequence[bool] | None = None,
) -> list[list[Coefficient]]:
    """``M_kj = sum_i C_ki[t + 1] A_ij[t]`` over the first ``span`` rows of the tile.

    Row ``t`` of ``C[t + 1]`` is row ``t + c_shift`` of ``c`` (0 when ``c`` holds it already).
    Only pairs of live states (``live``, default all) get one; the others are ``None``.

    A single product of a number and a coefficient stays a (tensor, factor) pair or a float, so
    the recursion folds it into one ``addcmul``; other products are computed into ``work`` and
    then into flat buffers of ``spare`` (grown as needed, kept for the next tiles); ``zero`` is a
    0-dim zero of the compute dtype. A ``C`` given as ``(q, alpha, beta)`` (``alpha q + beta``,
    see :class:`~snn.backends.torch_plan.Coefficients`) times a tensor ``A`` is the one
    operation ``addcmul(A, A, q, value=alpha / beta)`` with the factor ``beta``; anywhere else it
    is computed first.
    """
    mix: list[list[Coefficient]] = [[None] * m for _ in range(m)]
    used = 0

    def buffer() -> torch.Tensor:
        nonlocal used
        if used == 0:
            out = work
        else:
            if len(spare) < used:
                spare.append(torch.empty((work.numel(),), dtype=work.dtype, device=work.device))
            out = spare[used - 1][: work.numel()].view(work.shape)
        used += 1
        return out

    def folded(ci: Coefficient, ai: Coefficient) -> Coefficient:
        """``C A`` as one addcmul for ``C = (q, alpha, beta)`` and a tensor ``A``, else ``None``."""
        if not (isinstance(ci, tuple) and len(ci) == 3 and isinstance(ai, tuple)):
            return None
        q, alpha, beta = ci
        tensor, factor = ai
        ratio = alpha / beta
        if not math.isfinite(ratio):
            return None
        target = buffer()[:span]
        a_rows = tensor[:span]
        try:
            torch.addcmul(a_rows, a_rows, q[c_shift : span + c_shift], value=ratio, out=target)
        except RuntimeError:  # a ratio beyond the dtype's range
            return None
        return (target, beta * (1.0 if factor is None else factor))

    def computed(ci: Coefficient) -> Coefficient:
        """``C = (q, alpha, beta)`` as ``(alpha q + beta, None)`` in a buffer; others unchanged."""
        if not (isinstance(ci, tuple) and len(ci) == 3):
            return ci
        q, alpha, beta = ci
        target = buffer()[: q.shape[0]]
        _add_scaled(torch.full((), beta, dtype=q.dtype, device=q.device), q, alpha, target)
        return (target, None)

    for k in range(m):
        for j in range(m):
            if live is not None and not (live[k] and live[j]):
                continue
            terms = []
            for i in range(m):
                ci, ai = c[k * m + i], a[i * m + j]
                if ci is not None and ai is not None:
                    terms.append((ci, ai))
            if not terms:
                continue
            if len(terms) == 1 and (product := folded(*terms[0])) is not None:
                mix[k][j] = product
                continue
            terms = [(computed(ci), ai) for ci, ai in terms]
            if len(terms) == 1:
                ci, ai = terms[0]
                if isinstance(ci, float) and isinstance(ai, float):
                    mix[k][j] = ci * ai
                    continue
                if isinstance(ci, float):
                    tensor, factor = ai
                    mix[k][j] = (tensor, ci * (1.0 if factor is None else factor))
                    continue
                if isinstance(ai, float):
                    tensor, factor = ci
                    mix[k][j] = (tensor[c_shift : span + c_shift], ai * (1.0 if factor is None else factor))
                    continue
            target = buffer()[:span]
            products = [_product_terms(((ci, c_shift), (ai, 0)), span) for ci, ai in terms]
            if len(products) == 1 and len(products[0][1]) == 2:  # the factor stays apart
                value, (p, q) = products[0]
                torch.mul(p, q, out=target)
                mix[k][j] = (target, None if value == 1.0 else value)
                continue
            for index, (value, tensors) in enumerate(products):
                if len(tensors) == 2:
                    if index == 0:
                        _scaled_product(tensors[0], tensors[1], value, zero, target)
                    else:
                        _add_product(target, tensors[0], tensors[1], value, target)
                elif tensors:
                    if index == 0:
                        torch.mul(tensors[0], value, out=target)
                    else:
                        _add_scaled(target, tensors[0], value, target)
                elif index == 0:
                    target.fill_(value)
                else:
                    target.add_(value)
            mix[k][j] = (target, None)
    return mix


def _product_terms(factors: Sequence[tuple[Coefficient, int]], span: int) -> tuple[float, list[torch.Tensor]]:
    """A product of coefficients (each over ``span`` rows from its shift) as ``(number, tensors)``."""
    value = 1.0
    tensors: list[torch.Tensor] = []
    for coefficient, shift in factors:
        if isinstance(coefficient, float):
            value *= coefficient
            continue
        tensor, factor = coefficient
        tensors.append(tensor[shift : shift + span])
        if factor is not None:
            value *= factor
    return value, tensors


def _sum_into(sums: list[torch.Tensor], g: torch.Tensor, coefficient: Coefficient, rows: int, work: torch.Tensor) -> None:
    """Append ``sum(g * coefficient)`` over the tile to ``sums``."""
    if coefficient is None:
        return
    if isinstance(coefficient, float):
        sums.append(g.sum() * coefficient)
        return
    tensor, factor = coefficient
    t = tensor[:rows]
    if g.is_contiguous() and t.is_contiguous():
        total = torch.dot(g.reshape(-1), t.reshape(-1))
    elif g.dim() == 2 and g.stride(-1) == 1 and t.stride(-1) == 1:
        # rows of a column chunk: a dot per row reads them in place (a product into ``work`` and
        # its sum write and read the tile once more: KLIF's k at N=2^18, 8 x 131072 tiles,
        # 334 -> 200 us per tile)
        total = torch.stack([torch.dot(g_row, t_row) for g_row, t_row in zip(g.unbind(0), t.unbind(0))]).sum()
    else:
        total = torch.mul(g, t, out=work[:rows]).sum()
    sums.append(total if factor is None else total * factor)


def _state_gradients(
    g: list[torch.Tensor | None],
    c: list[Coefficient],
    m: int,
    rows: int,
    start: int,
    steps: int,
    carry: list[torch.Tensor | None],
    grad_last: list[torch.Tensor | None],
    grad_seqs: list[torch.Tensor | None],
    c0: int,
    c1: int,
    like: dict[str, Any],
) -> list[torch.Tensor]:
    """``gS_i[t] = gV_i[t] + sum_j G_j[t + 1] C_ji[t + 1]`` (``gV_i + dL/dv_last_i`` at the end);
    ``carry`` holds ``G`` of the step after the tile."""
    out = []
    for i in range(m):
        gs = torch.zeros((rows, c1 - c0), **like)
        gv = grad_seqs[i]
        if gv is not None:
            gs.add_(gv[start : start + rows, c0:c1])
        for t in range(rows):
            if start + t == steps - 1:
                gl = grad_last[i]
                if gl is not None:
                    gs[t].add_(gl[c0:c1])
                continue
            for j in range(m):
                coefficient = c[j * m + i]
                gj = g[j]
                incoming = None if gj is None else gj[t + 1] if t + 1 < rows else carry[j]
                if coefficient is not None and incoming is not None:
                    _accumulate(gs[t], incoming, _rows(coefficient, t + 1, t + 2, squeeze=True))
        out.append(gs)
    return out
