"""Fused multi-step neuron dynamics in plain PyTorch, for any neuron model.

This is the arithmetic behind :mod:`snn.backends.torch`. A model's :class:`~snn.models.KernelPlan`
is compiled once per configuration (:mod:`snn.backends.torch_plan`) into allocation-free
programs (:mod:`snn.backends.torch_program`): per time step the charge, the firing comparison
and the reset write straight into preallocated ``[T, N]`` outputs, so a forward pass allocates
nothing but its outputs. The backward pass is :mod:`snn.backends.torch_backward`. On CPU the
neurons are processed in cache-sized column chunks (:func:`tiles`).

Half-precision inputs (float16 / bfloat16) are computed in float32, float64 in float64;
outputs are cast back to the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from snn.backends.memory import empty
from snn.backends.torch_backward import backward
from snn.backends.torch_plan import CompiledPlan, bound_program, compiled_plan
from snn.backends.torch_program import number_operand
from snn.models import NeuronConfig

__all__ = [
    "BACKWARD_ROWS",
    "BACKWARD_ROWS_ONE_PROGRAM",
    "BACKWARD_TILE_ELEMENTS",
    "TILE_ELEMENTS",
    "compute_dtype",
    "run_sequence",
    "tiles",
]

_R = TypeVar("_R")

#: On CPU, the forward pass works on column chunks of at most this many neurons (1 MiB in
#: float32), so that the few rows a step touches stay in the core's cache while each operation
#: is still large enough for PyTorch's intra-op threads to share.
TILE_ELEMENTS = 1 << 18

#: On CPU, the backward pass works on tiles of at most this many elements (4 MiB in float32):
#: several time steps of a column chunk. Its operations cover a whole tile, so larger tiles
#: mean fewer of them; beyond this size they leave the cache. Measured with T=16 on 2 threads
#: (medians, the same process taking turns), against tiles of ``1 << 18``: LIF backward 11.9 ->
#: 10.5 ms, PLIF 21.3 -> 17.9, QIF 15.2 -> 13.0, KLIF 18.6 -> 16.8 at N=2^18; LIF 186 -> 161 ms
#: and EIF 247 -> 212 at N=2^22; ``1 << 21`` was slower than both.
BACKWARD_TILE_ELEMENTS = 1 << 20


def tiles(steps: int, n: int, device: torch.device, min_rows: int = 1, elements: int | None = None) -> tuple[int, int]:
    """``(time steps, neurons)`` per tile; one tile covers everything off the CPU.

    On CPU the neurons are split into equal chunks (a multiple of 64 wide when there are
    several) of at most ``elements`` (default :data:`TILE_ELEMENTS`; the backward pass passes
    :data:`BACKWARD_TILE_ELEMENTS`), narrower when needed so that a tile holds at least
    ``min_rows`` steps (the backward pass reads one step around each tile: taller tiles read it
    less often).
    """
    limit = TILE_ELEMENTS if elements is None else elements
    if device.type != "cpu" or n <= limit:
        cols = max(n, 1)
    else:
        chunks = -(-n // limit)  # ceil
        per_chunk = -(-n // chunks)
        cols = min(limit, -(-per_chunk // 64) * 64)
    if device.type != "cpu":
        return steps, cols
    want = min(steps, max(1, min_rows))
    if cols * want > limit and cols > 64:
        cols = max(64, (limit // want) // 64 * 64)
    return max(1, min(steps, limit // cols)), cols


#: Steps per backward tile the CPU tiling aims for: the two-program tiles read one row past
#: the tile (taller tiles read it less often); the one-program tiles of
#: :attr:`~snn.backends.torch_plan.CompiledPlan.tile_next` read none, and their wider rows let
#: both intra-op threads share the recursion's row operations (QIF backward at T=16, N=2^18 on
#: 2 threads, tiles of ``1 << 18`` elements: 14.4 ms with 8 rows, 13.3 ms with 4).
BACKWARD_ROWS = 8

#: Steps per backward tile of :attr:`~snn.backends.torch_plan.CompiledPlan.tile_next` (see
#: :data:`BACKWARD_ROWS`).
BACKWARD_ROWS_ONE_PROGRAM = 4


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the dynamics are computed in: float32 for half types, else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _for_chunks(n: int, cols: int, fn: Callable[[int, int], _R]) -> list[_R]:
    """``fn(c0, c1)`` for every column chunk ``[c0, c1)`` of ``cols`` neurons, in order."""
    return [fn(c0, min(n, c0 + cols)) for c0 in range(0, n, cols)]


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
    spikes = empty((steps, n), **like)
    h_seq: list[torch.Tensor | None] = [
        empty((steps, n), **like) if keep_h and j in plan.saved_states else None for j in range(m)
    ]
    seqs = [empty((steps, n), **like) for _ in range(m)] if store_seqs else None
    state = None if store_seqs else [torch.empty((n,), **like) for _ in range(m)]
    scratch = [torch.empty((n,), **like) if h_seq[j] is None else None for j in range(m)]
    charge_scalars = cp.charge.scalar_values(raw, x.dtype)
    reset_scalars = cp.reset.scalar_values(raw, x.dtype)
    theta = number_operand(plan.threshold, x.dtype, x.device)
    fire = plan.fire_index

    def chunk(c0: int, c1: int) -> None:
        shape = (c1 - c0,)
        run_charge = bound_program(cp.charge, shape, x.dtype, x.device)
        run_reset = bound_program(cp.reset, shape, x.dtype, x.device)
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
        min_rows = BACKWARD_ROWS if cp.tile_next is None else BACKWARD_ROWS_ONE_PROGRAM
        rows_per_tile, cols = tiles(steps, n, like.device, min_rows, BACKWARD_TILE_ELEMENTS)
        grad_x, grad_u0, grad_p = backward(
            cp, saved_h, x, states0, ctx.raw, grad_spikes, grad_last, grad_seqs, need_learnables, steps, n, like,
            rows_per_tile, cols, [bool(needs[n_fixed + i]) for i in range(m)],
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
