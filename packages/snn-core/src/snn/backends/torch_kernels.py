"""Fused multi-step neuron dynamics in plain PyTorch, for any neuron model.

This is the arithmetic behind :mod:`snn.backends.torch`. A model's :class:`~snn.models.KernelPlan`
is compiled once per configuration into allocation-free programs (:mod:`snn.backends.torch_program`):
per time step the charge, the firing comparison and the reset write straight into preallocated
``[T, N]`` outputs, so a forward pass allocates nothing but its outputs.

The backward pass walks the sequence newest-first in tiles of time steps (:func:`tiles`). With
``G_j[t]`` the gradient of the charged state ``j`` at step ``t``, the plan's coefficients give

    ``G_j[t] = [j = fire] dL/ds_t sg_t + sum_i gV_i[t] A_ij[t] + sum_k G_k[t+1] M_kj[t]``

with ``A_ij = d reset_i / d h_j`` (the spike's share through the surrogate included),
``M_kj[t] = sum_i C_ki[t+1] A_ij[t]`` and ``C_ki = d charge_k / d u_i``; ``gV`` is the gradient of
the state sequences (and of the last states at ``t = T - 1``). Everything but the recursion is
computed for a whole tile at once in a small reused workspace; the recursion costs one fused
operation per step and pair of states with a non-zero coefficient (one for IF, LIF and PLIF).
Then ``dL/dx = sum_j G_j d charge_j / dx``, ``dL/du0_i = sum_j G_j[0] C_ji[0]`` and the
learnable parameters' gradients are sums over the tile. Allocation matters on CPU: a fresh
multi-megabyte tensor costs page faults that can exceed the arithmetic on it; on CPU the neurons
are also processed in cache-sized column chunks.

Half-precision inputs (float16 / bfloat16) are computed in float32, float64 in float64;
outputs are cast back to the input dtype.

Non-finite values follow the model's expressions, as autograd evaluates them, with one
exception: the recursion multiplies an incoming state gradient by the combined coefficient
``M_kj`` in one operation, so where that gradient is itself infinite (possible only when
``d charge / d u`` reads the states, as QIF's does, and the input or state is infinite) the
result is ``+-inf`` where autograd's term-by-term sum gives NaN.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import torch

from snn.backends.torch_program import Program, compile_program, split_scalar_factor
from snn.expr import FLOAT_OPS, Expr, evaluate, variables
from snn.models import INPUT, SPIKE, SURROGATE_INPUT, KernelPlan, NeuronConfig, kernel_plan

__all__ = ["TILE_ELEMENTS", "CompiledPlan", "compiled_plan", "compute_dtype", "run_sequence", "tiles"]

_R = TypeVar("_R")

#: On CPU, work is cut into tiles of at most this many elements (1 MiB in float32): neurons in
#: column chunks, and in backward several time steps per tile when the chunk is narrower, so
#: that the few rows a step touches stay in the core's cache while each operation is still
#: large enough for PyTorch's intra-op threads to share.
TILE_ELEMENTS = 1 << 18


def tiles(steps: int, n: int, device: torch.device, min_rows: int = 1) -> tuple[int, int]:
    """``(time steps, neurons)`` per tile; one tile covers everything off the CPU.

    On CPU the neurons are split into equal chunks (a multiple of 64 wide when there are
    several) of at most :data:`TILE_ELEMENTS`, narrower when needed so that a tile holds at
    least ``min_rows`` steps (the backward pass reads one step around each tile: taller tiles
    read it less often).
    """
    if device.type != "cpu" or n <= TILE_ELEMENTS:
        cols = max(n, 1)
    else:
        chunks = -(-n // TILE_ELEMENTS)  # ceil
        per_chunk = -(-n // chunks)
        cols = min(TILE_ELEMENTS, -(-per_chunk // 64) * 64)
    if device.type != "cpu":
        return steps, cols
    want = min(steps, max(1, min_rows))
    if cols * want > TILE_ELEMENTS and cols > 64:
        cols = max(64, (TILE_ELEMENTS // want) // 64 * 64)
    return max(1, min(steps, TILE_ELEMENTS // cols)), cols


#: Steps per backward tile the CPU tiling aims for.
BACKWARD_ROWS = 8


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the dynamics are computed in: float32 for half types, else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _for_chunks(n: int, cols: int, fn: Callable[[int, int], _R]) -> list[_R]:
    """``fn(c0, c1)`` for every column chunk ``[c0, c1)`` of ``cols`` neurons, in order."""
    return [fn(c0, min(n, c0 + cols)) for c0 in range(0, n, cols)]


# A coefficient at run time: None (zero), a float, or (tensor, factor or None).
Coefficient = Any

#: Bound programs of at most this many elements per slot are kept for reuse (per thread, last
#: 64): binding allocates the scratch slots, which costs more than the arithmetic on small layers.
_BIND_CACHE_ELEMENTS = 1 << 20
_local = threading.local()


def _bound(program: Program, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Callable[..., list[Any]]:
    """``program.bind(shape, dtype, device)``, reused from this thread's cache for small shapes.

    Scratch memory is never shared between threads; within a thread a kernel call uses a bound
    program's results before it runs the program again, so reuse across calls is safe.
    """
    if math.prod(shape) > _BIND_CACHE_ELEMENTS:
        return program.bind(shape, dtype, device)
    cache: OrderedDict[tuple[Any, ...], Callable[..., list[Any]]] | None = getattr(_local, "binds", None)
    if cache is None:
        cache = _local.binds = OrderedDict()
    key = (program, shape, dtype, device)
    found = cache.get(key)
    if found is None:
        found = cache[key] = program.bind(shape, dtype, device)
        if len(cache) > 64:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return found


class _Coefficients:
    """Named expressions evaluated together: scalars once per call, tensors by one program.

    Each expression is ``None`` (structurally zero), parameter-only (a float per call), or a
    tensor expression, optionally split into ``tensor * scalar factor`` (``split=True``).
    """

    def __init__(self, exprs: Sequence[Expr | None], scalar_names: tuple[str, ...], split: bool = False) -> None:
        self.scalar_names = scalar_names
        self.entries: list[tuple[str, Any, Expr | None]] = []
        tensor_exprs: list[Expr] = []
        for e in exprs:
            if e is None:
                self.entries.append(("none", None, None))
                continue
            tensor_part, factor = split_scalar_factor(e, scalar_names) if split else (
                (None, e) if variables(e) <= set(scalar_names) else (e, None)
            )
            if tensor_part is None:
                self.entries.append(("scalar", factor, None))
            else:
                self.entries.append(("tensor", len(tensor_exprs), factor))
                tensor_exprs.append(tensor_part)
        names: set[str] = set()
        for e in tensor_exprs:
            names |= variables(e)
        self.tensor_vars = tuple(sorted(names - set(scalar_names)))
        self.program: Program | None = (
            compile_program(tensor_exprs, self.tensor_vars, scalar_names) if tensor_exprs else None
        )
        self._last: tuple[tuple[float, ...], Any] | None = None

    @property
    def any_tensor(self) -> bool:
        return self.program is not None

    def prepare(self, raw: Sequence[float]) -> tuple[tuple[float, ...], list[float | None], list[float | None]]:
        """Per-call values: the program's scalars, each scalar entry's value, each factor
        (the last result is reused while the learnable parameters keep their values)."""
        key = tuple(raw)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        prepared = self._prepare(key)
        self._last = (key, prepared)
        return prepared

    def _prepare(self, raw: tuple[float, ...]) -> tuple[tuple[float, ...], list[float | None], list[float | None]]:
        env = dict(zip(self.scalar_names, raw))
        program_scalars = self.program.scalar_values(raw) if self.program is not None else ()
        values: list[float | None] = []
        factors: list[float | None] = []
        for kind, item, factor in self.entries:
            values.append(float(evaluate(item, env, FLOAT_OPS)) if kind == "scalar" else None)
            factors.append(float(evaluate(factor, env, FLOAT_OPS)) if kind == "tensor" and factor is not None else None)
        return program_scalars, values, factors

    def run(
        self,
        tensors: dict[str, torch.Tensor],
        prepared: tuple[Any, ...],
        like: torch.Tensor,
        into: dict[int, torch.Tensor] | None = None,
    ) -> list[Coefficient]:
        """Every coefficient over the tile of ``like``'s shape: None, float or (tensor, factor).

        ``into`` maps entry indices to tensors the program writes those entries into (no copy).
        """
        program_scalars, values, factors = prepared
        outputs: list[Any] = []
        if self.program is not None:
            bound = _bound(self.program, tuple(like.shape), like.dtype, like.device)
            outs: list[torch.Tensor | None] = [None] * len(self.program.results)
            for index, target in (into or {}).items():
                kind, item, _ = self.entries[index]
                if kind == "tensor":
                    outs[item] = target
            outputs = bound([tensors[name] for name in self.tensor_vars], program_scalars, outs)
        result: list[Coefficient] = []
        for (kind, item, _), value, factor in zip(self.entries, values, factors):
            if kind == "none":
                result.append(None)
            elif kind == "scalar":
                result.append(value)
            else:
                out = outputs[item]
                if not isinstance(out, torch.Tensor):
                    out = torch.full_like(like, float(out))
                result.append((out, factor))
        return result


@dataclass
class CompiledPlan:
    """A :class:`~snn.models.KernelPlan` compiled to torch programs (one per configuration).

    Attributes:
        plan: the plan.
        scalar_names: the variables of the learnable parameters (``p_<name>``).
        charge: ``u_*, x -> h_*`` (one output per state).
        reset: ``h_*, s -> v_*`` (one output per state).
        surrogate: ``z -> sg``.
        a: ``A_ij`` (``i`` major), ``c``: ``C_ki`` (``k`` major), ``fx``: ``d charge_j / dx``,
        fp: ``d charge_j / dp_k`` (``j`` major, split into tensor and factor), rp: ``d reset_i / dp_k``.
        previous: the reset of the states whose previous value the backward pass reads.
        recovery: ``x`` from the charged states when it is not saved.
    """

    plan: KernelPlan
    scalar_names: tuple[str, ...]
    charge: Program
    reset: Program
    surrogate: Program
    a: _Coefficients
    c: _Coefficients
    fx: _Coefficients
    fp: _Coefficients
    rp: _Coefficients
    previous: _Coefficients
    recovery: _Coefficients | None


@lru_cache(maxsize=256)
def compiled_plan(config: NeuronConfig) -> CompiledPlan:
    """The compiled plan of ``config`` (cached per configuration)."""
    plan = kernel_plan(config)
    names = plan.states
    n = len(names)
    scalar_names = tuple(f"p_{k}" for k in plan.learnables)
    u_vars = tuple(f"u_{s}" for s in names)
    h_vars = tuple(f"h_{s}" for s in names)
    charge = compile_program(plan.charge, (*u_vars, INPUT), scalar_names)
    reset = compile_program(plan.reset, (*h_vars, SPIKE), scalar_names)
    surrogate = compile_program((plan.surrogate,), (SURROGATE_INPUT,), ())
    sg = Expr("var", (), "sg")
    a_exprs: list[Expr | None] = []
    for i in range(n):
        for j in range(n):
            term = plan.reset_h[i][j]
            reset_s = plan.reset_s[i]
            if j == plan.fire_index and reset_s is not None:
                spike_term = reset_s * sg
                term = spike_term if term is None else term + spike_term
            a_exprs.append(term)
    c_exprs = [plan.charge_u[k][i] for k in range(n) for i in range(n)]
    fp_exprs = [plan.charge_p[j][k] for j in range(n) for k in range(len(plan.learnables))]
    rp_exprs = [plan.reset_p[i][k] for i in range(n) for k in range(len(plan.learnables))]
    previous = [plan.reset[i] if i in plan.initial_states_needed else None for i in range(n)]
    return CompiledPlan(
        plan=plan,
        scalar_names=scalar_names,
        charge=charge,
        reset=reset,
        surrogate=surrogate,
        a=_Coefficients(a_exprs, scalar_names),
        c=_Coefficients(c_exprs, scalar_names),
        fx=_Coefficients(list(plan.charge_x), scalar_names),
        fp=_Coefficients(fp_exprs, scalar_names, split=True),
        rp=_Coefficients(rp_exprs, scalar_names, split=True),
        previous=_Coefficients(previous, scalar_names),
        recovery=_Coefficients([plan.input_recovery], scalar_names) if plan.input_recovery is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------


def _forward(
    cp: CompiledPlan,
    x: torch.Tensor,
    states0: Sequence[torch.Tensor],
    raw: tuple[float, ...],
    keep_h: bool,
    store_seqs: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None, list[torch.Tensor | None]]:
    """Run the plan over ``x`` ``[T, N]`` from ``states0`` (``[N]`` each).

    Returns:
        spikes ``[T, N]``, the last states (``[N]`` each, fresh tensors), the state sequences
        ``[T, N]`` or ``None``, and the charged sequences ``[T, N]`` of the saved states (when
        ``keep_h``; ``None`` for the others).
    """
    plan = cp.plan
    steps, n = x.shape
    m = len(plan.states)
    like: dict[str, Any] = {"dtype": x.dtype, "device": x.device}
    spikes = torch.empty((steps, n), **like)
    h_seq: list[torch.Tensor | None] = [
        torch.empty((steps, n), **like) if keep_h and j in plan.saved_states else None for j in range(m)
    ]
    seqs = [torch.empty((steps, n), **like) for _ in range(m)] if store_seqs else None
    state = None if store_seqs else [torch.empty((n,), **like) for _ in range(m)]
    scratch = [torch.empty((n,), **like) if h_seq[j] is None else None for j in range(m)]
    charge_scalars = cp.charge.scalar_values(raw)
    reset_scalars = cp.reset.scalar_values(raw)
    theta = plan.threshold
    fire = plan.fire_index

    def chunk(c0: int, c1: int) -> None:
        shape = (c1 - c0,)
        run_charge = _bound(cp.charge, shape, x.dtype, x.device)
        run_reset = _bound(cp.reset, shape, x.dtype, x.device)
        whole = c0 == 0 and c1 == n

        def rows(t2: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (t2 if whole else t2[:, c0:c1]).unbind(0)

        x_rows, spike_rows = rows(x), rows(spikes)
        h_rows = [rows(hs) if hs is not None else None for hs in h_seq]
        # one column of scratch per state whose charged values are not kept (None for the others)
        h_fixed = [sc if whole or sc is None else sc[c0:c1] for sc in scratch]
        seq_rows = [rows(seq) for seq in seqs] if seqs is not None else None
        state_cols = [st if whole else st[c0:c1] for st in state] if state is not None else None
        u = [st if whole else st[c0:c1] for st in states0]
        for t in range(steps):
            h: list[torch.Tensor] = [r[t] if r is not None else h_fixed[j] for j, r in enumerate(h_rows)]  # type: ignore[misc]  # h_fixed holds a tensor wherever a row is None
            u.append(x_rows[t])
            run_charge(u, charge_scalars, h)
            s = spike_rows[t]
            torch.ge(h[fire], theta, out=s)
            new = [r[t] for r in seq_rows] if seq_rows is not None else state_cols
            h.append(s)
            run_reset(h, reset_scalars, new)
            u = list(new)  # type: ignore[arg-type]  # new is a list: sequence rows or state columns

    _, cols = tiles(steps, n, x.device)
    _for_chunks(n, cols, chunk)
    last = [seq[steps - 1].clone() for seq in seqs] if seqs is not None else list(state)  # type: ignore[arg-type]  # state is a list when seqs is None
    return spikes, last, seqs, h_seq


# ---------------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------------


def _accumulate(out: torch.Tensor, value: torch.Tensor, coefficient: Coefficient) -> None:
    """``out += value * coefficient`` (coefficient: float or (tensor, factor))."""
    if isinstance(coefficient, float):
        out.add_(value, alpha=coefficient)
        return
    tensor, factor = coefficient
    out.addcmul_(value, tensor, value=1.0 if factor is None else factor)


def _backward(
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
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """The backward recursion of the plan (see the module docstring), tile by tile.

    Returns:
        ``(grad_x [T, N], grad of each initial state [N], grad of each learnable (0-dim))``.
    """
    plan = cp.plan
    m = len(plan.states)
    fire = plan.fire_index
    theta = plan.threshold
    device = like_tensor.device
    like: dict[str, Any] = {"dtype": like_tensor.dtype, "device": device}
    rows_per_tile, cols = tiles(steps, n, device, BACKWARD_ROWS)
    grad_x = torch.empty((steps, n), **like)
    grad_u0 = [torch.zeros((n,), **like) for _ in range(m)]
    n_p = len(plan.learnables)
    sums: list[list[torch.Tensor]] = [[] for _ in range(n_p)]
    prep = {
        name: coeffs.prepare(raw)
        for name, coeffs in (("a", cp.a), ("c", cp.c), ("fx", cp.fx), ("fp", cp.fp), ("rp", cp.rp), ("prev", cp.previous))
    }
    prep_rec = cp.recovery.prepare(raw) if cp.recovery is not None else None
    fx_static = cp.fx.prepare(raw)[1]
    # m == 1 with a scalar (or no) input coefficient: G lives in grad_x and is scaled in place
    in_place = m == 1 and not cp.fx.any_tensor
    need_rp = need_learnables and any(kind != "none" for kind, _, _ in cp.rp.entries)
    need_prev = bool(plan.initial_states_needed)
    need_x = plan.needs_input

    def chunk(c0: int, c1: int) -> None:
        width = c1 - c0
        ext_rows = min(steps, rows_per_tile + 2)
        s_ext_buf = torch.empty((ext_rows, width), **like)
        z_buf = torch.empty((rows_per_tile, width), **like)
        g_bufs = [torch.empty((rows_per_tile, width), **like) for _ in range(0 if in_place else m)]
        prev_buf = {i: torch.empty((ext_rows, width), **like) for i in plan.initial_states_needed}
        x_buf = torch.empty((ext_rows, width), **like) if (need_x and x is None) else None
        work = torch.empty((rows_per_tile, width), **like)
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
            s_ext = s_ext_buf[: e1 - w0]
            torch.ge(h_fire[w0:e1], theta, out=s_ext)
            s_t = s_ext[start - w0 : end - w0]
            z = z_buf[:rows]
            torch.sub(h_fire[start:end], theta, out=z)
            sg = _bound(cp.surrogate, (rows, width), like["dtype"], device)((z,), (), (None,))[0]
            if not isinstance(sg, torch.Tensor):  # a constant surrogate gradient
                sg = torch.full_like(z, float(sg))
            tiles_by_name: dict[str, torch.Tensor] = {SPIKE: s_t, "sg": sg}
            for j, hs in enumerate(h_full):
                if hs is not None:
                    tiles_by_name[f"h_{plan.states[j]}"] = hs[start:end]
            a = cp.a.run(tiles_by_name, prep["a"], z)
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
                    values = cp.previous.run(prev_tiles, prep["prev"], s_ext[: ext - first], into)
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
            if need_x:
                if x is not None:
                    ext_tiles[INPUT] = x[start:e1, c0:c1]
                else:
                    assert cp.recovery is not None and x_buf is not None and prep_rec is not None
                    x_tile = x_buf[:ext]
                    value = cp.recovery.run(ext_tiles, prep_rec, x_tile)[0]
                    if isinstance(value, tuple):
                        x_tile.copy_(value[0])
                    else:
                        x_tile.fill_(value)
                    ext_tiles[INPUT] = x_tile
            like_ext = s_ext_buf[:ext]
            c = cp.c.run(ext_tiles, prep["c"], like_ext)
            # G: the gradients of the charged states over the tile
            g = [grad_x[start:end, c0:c1]] if in_place else [buf[:rows] for buf in g_bufs]
            for j in range(m):
                gj = g[j]
                if j == fire and grad_spikes is not None:
                    torch.mul(grad_spikes[start:end, c0:c1], sg, out=gj)
                else:
                    gj.zero_()
                for i in range(m):
                    coefficient = a[i * m + j]
                    gv = grad_seqs[i]
                    if coefficient is not None and gv is not None:
                        _accumulate(gj, gv[start:end, c0:c1], _rows(coefficient, 0, rows))
            # M_kj[t] = sum_i C_ki[t+1] A_ij[t] for the rows that have a next step
            span = rows if end < steps else rows - 1
            mix = _mixing(a, c, m, span, work)
            for t in range(rows - 1, -1, -1):
                if start + t == steps - 1:
                    for i in range(m):
                        gl = grad_last[i]
                        if gl is None:
                            continue
                        for j in range(m):
                            coefficient = a[i * m + j]
                            if coefficient is not None:
                                _accumulate(g[j][t], gl[c0:c1], _rows(coefficient, t, t + 1, squeeze=True))
                    continue
                for j in range(m):
                    for k in range(m):
                        coefficient = mix[k][j]
                        if coefficient is None:
                            continue
                        incoming = carry[k] if t == rows - 1 else g[k][t + 1]
                        assert incoming is not None
                        _accumulate(g[j][t], incoming, _rows(coefficient, t, t + 1, squeeze=True))
            if need_learnables:
                fp = cp.fp.run(ext_tiles, prep["fp"], like_ext)
                for k in range(n_p):
                    for j in range(m):
                        _sum_into(sums[k], g[j], fp[j * n_p + k], rows, work)
                if need_rp:
                    rp = cp.rp.run(tiles_by_name, prep["rp"], z)
                    gs_tiles = _state_gradients(g, c, m, rows, start, steps, carry, grad_last, grad_seqs, c0, c1, like)
                    for k in range(n_p):
                        for i in range(m):
                            _sum_into(sums[k], gs_tiles[i], rp[i * n_p + k], rows, work)
            if start > 0:
                carry = [gj[0].clone() for gj in g]
            else:
                for i in range(m):
                    for j in range(m):
                        coefficient = c[j * m + i]
                        if coefficient is not None:
                            _accumulate(grad_u0[i][c0:c1], g[j][0], _rows(coefficient, 0, 1, squeeze=True))
            # dL/dx = sum_j G_j d charge_j / dx
            fx = cp.fx.run(ext_tiles, prep["fx"], like_ext) if cp.fx.any_tensor else fx_static
            gx = grad_x[start:end, c0:c1]
            if in_place:
                coefficient = fx[0]
                if coefficient is None:
                    gx.zero_()
                elif isinstance(coefficient, float):
                    if coefficient != 1.0:
                        gx.mul_(coefficient)
                else:  # pragma: no cover - in_place requires scalar coefficients
                    raise AssertionError("tensor input coefficient in place")
            else:
                gx.zero_()
                for j in range(m):
                    if fx[j] is not None:
                        _accumulate(gx, g[j], _rows(fx[j], 0, rows))

    _for_chunks(n, cols, chunk)
    grads_p = []
    for k in range(n_p):
        grads_p.append(torch.stack(sums[k]).sum() if sums[k] else torch.zeros((), **like))
    return grad_x, grad_u0, grads_p


def _rows(coefficient: Coefficient, r0: int, r1: int, squeeze: bool = False) -> Coefficient:
    """Rows ``[r0, r1)`` of a tensor coefficient (row ``r0`` alone with ``squeeze``)."""
    if coefficient is None or isinstance(coefficient, float):
        return coefficient
    tensor, factor = coefficient
    return (tensor[r0] if squeeze else tensor[r0:r1], factor)


def _mixing(a: list[Coefficient], c: list[Coefficient], m: int, span: int, work: torch.Tensor) -> list[list[Coefficient]]:
    """``M_kj = sum_i C_ki[t + 1] A_ij[t]`` over the first ``span`` rows of the tile.

    A single product of a number and a coefficient stays a (tensor, factor) pair or a float, so
    the recursion folds it into one ``addcmul``; other products are computed into tensors.
    """
    mix: list[list[Coefficient]] = [[None] * m for _ in range(m)]
    used_work = False
    for k in range(m):
        for j in range(m):
            terms = []
            for i in range(m):
                ci, ai = c[k * m + i], a[i * m + j]
                if ci is not None and ai is not None:
                    terms.append((ci, ai))
            if not terms:
                continue
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
                    mix[k][j] = (tensor[1 : span + 1], ai * (1.0 if factor is None else factor))
                    continue
            out = work if not used_work else torch.empty_like(work)
            used_work = True
            target = out[:span]
            for index, (ci, ai) in enumerate(terms):
                c_t = _scaled(ci, span, shift=1, like=target)
                a_t = _scaled(ai, span, shift=0, like=target)
                if index == 0:
                    torch.mul(c_t, a_t, out=target)
                else:
                    target.addcmul_(c_t, a_t)
            mix[k][j] = (target, None)
    return mix


def _scaled(coefficient: Coefficient, span: int, shift: int, like: torch.Tensor) -> torch.Tensor:
    """A coefficient over ``span`` rows (starting at ``shift``) as one tensor."""
    if isinstance(coefficient, float):
        return torch.full_like(like, coefficient)
    tensor, factor = coefficient
    rows = tensor[shift : shift + span]
    return rows if factor is None else rows * factor


def _sum_into(sums: list[torch.Tensor], g: torch.Tensor, coefficient: Coefficient, rows: int, work: torch.Tensor) -> None:
    """Append ``sum(g * coefficient)`` over the tile to ``sums``."""
    if coefficient is None:
        return
    if isinstance(coefficient, float):
        sums.append(g.sum() * coefficient)
        return
    tensor, factor = coefficient
    total = torch.mul(g, tensor[:rows], out=work[:rows]).sum()
    sums.append(total if factor is None else total * factor)


def _state_gradients(
    g: list[torch.Tensor],
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
                incoming = g[j][t + 1] if t + 1 < rows else carry[j]
                if coefficient is not None and incoming is not None:
                    _accumulate(gs[t], incoming, _rows(coefficient, t + 1, t + 2, squeeze=True))
        out.append(gs)
    return out


class _SequenceFunction(torch.autograd.Function):
    """Autograd node of a whole sequence: saves what the plan names, nothing else."""

    @staticmethod
    def forward(
        ctx: Any,
        cp: CompiledPlan,
        raw: tuple[float, ...],
        store_seqs: bool,
        m: int,
        x: torch.Tensor,
        *rest: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        states0, learnables = list(rest[:m]), list(rest[m:])
        spikes, last, seqs, h_seq = _forward(cp, x, states0, raw, True, store_seqs)
        plan = cp.plan
        ctx.set_materialize_grads(False)
        ctx.cp, ctx.raw, ctx.m, ctx.store_seqs = cp, raw, m, store_seqs
        ctx.shape = x.shape
        ctx.saved_h_index = [j for j in range(m) if h_seq[j] is not None]
        ctx.u0_index = list(plan.initial_states_needed)
        ctx.has_x = plan.save_input
        ctx.n_learnables = len(learnables)
        ctx.learnable_dtypes = [p.dtype for p in learnables]
        tensors = [h for h in h_seq if h is not None]
        tensors += [states0[i] for i in ctx.u0_index]
        if plan.save_input:
            tensors.append(x)
        ctx.save_for_backward(*tensors)
        return (spikes, *last, *(seqs or ()))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, *grads: torch.Tensor | None) -> tuple[Any, ...]:
        cp: CompiledPlan = ctx.cp
        m = ctx.m
        grad_last = list(grads[:m])
        grad_seqs: list[torch.Tensor | None] = list(grads[m:]) if ctx.store_seqs else [None] * m
        n_fixed = 5
        needs = ctx.needs_input_grad
        if grad_spikes is None and all(g is None for g in grad_last) and all(g is None for g in grad_seqs):
            return (None,) * (n_fixed + m + ctx.n_learnables)
        saved = list(ctx.saved_tensors)
        saved_h: list[torch.Tensor | None] = [None] * m
        for j in ctx.saved_h_index:
            saved_h[j] = saved.pop(0)
        states0: list[torch.Tensor | None] = [None] * m
        for i in ctx.u0_index:
            states0[i] = saved.pop(0)
        x = saved.pop(0) if ctx.has_x else None
        need_learnables = any(needs[n_fixed + m :])
        steps, n = ctx.shape
        like = saved_h[cp.plan.fire_index]
        assert like is not None
        grad_x, grad_u0, grad_p = _backward(
            cp, saved_h, x, states0, ctx.raw, grad_spikes, grad_last, grad_seqs, need_learnables, steps, n, like
        )
        out: list[Any] = [None, None, None, None, grad_x if needs[4] else None]
        out += [grad_u0[i] if needs[n_fixed + i] else None for i in range(m)]
        out += [
            grad_p[k].to(ctx.learnable_dtypes[k]) if needs[n_fixed + m + k] else None for k in range(ctx.n_learnables)
        ]
        return tuple(out)


def run_sequence(
    config: NeuronConfig,
    x: torch.Tensor,
    states0: Sequence[torch.Tensor],
    learnables: Sequence[torch.Tensor],
    store_seqs: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None]:
    """Run ``config``'s model over ``x`` ``[T, N]`` from ``states0`` (``[N]`` each, compute dtype).

    Args:
        config: the configuration.
        x: ``[T, N]`` inputs in the compute dtype (any strides).
        states0: ``[N]`` initial states in the compute dtype.
        learnables: the learnable parameters (one-element tensors); their values are read once.
        store_seqs: also return the post-reset state sequences.

    Returns:
        ``(spikes [T, N], last states [N] each, state sequences [T, N] each | None)`` in the
        compute dtype; an autograd node connects them to ``x``, ``states0`` and ``learnables``
        when a gradient is needed, and nothing is saved otherwise.
    """
    cp = compiled_plan(config)
    raw = tuple(float(p.detach().reshape(())) for p in learnables)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(s.requires_grad for s in states0) or any(p.requires_grad for p in learnables)
    )
    m = len(states0)
    if needs_grad:
        flat = [p.reshape(()) for p in learnables]
        outputs = _SequenceFunction.apply(cp, raw, store_seqs, m, x, *states0, *flat)
        spikes, last = outputs[0], list(outputs[1 : 1 + m])
        seqs = list(outputs[1 + m :]) if store_seqs else None
        return spikes, last, seqs
    spikes, last, seqs, _ = _forward(cp, x, list(states0), raw, False, store_seqs)
    return spikes, last, seqs
