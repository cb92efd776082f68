"""A neuron model's kernel plan compiled to torch programs, for the torch backend's kernels.

:func:`compiled_plan` compiles a configuration's :class:`~snn.models.KernelPlan` once: the
charge and reset programs of the forward pass, and the coefficient programs of the backward
pass (:mod:`snn.backends.torch_backward`), each a :class:`~snn.backends.torch_program.Program`
of ``out=`` operations. A :class:`Coefficients` group evaluates named derivative expressions
together: parameter-only ones once per call as floats, the others in one program per tile,
split where possible into a tensor and a scalar factor so that the factor folds into the
operation that consumes the tensor.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from snn.backends.torch_lowering import lower, split_scalar_factor
from snn.backends.torch_program import Program, compile_program
from snn.expr import FLOAT_OPS, Expr, evaluate, nodes, replace_nodes, substitute, variables
from snn.models import INPUT, SPIKE, SURROGATE_INPUT, KernelPlan, NeuronConfig, kernel_plan

__all__ = [
    "BIND_CACHE_ELEMENTS", "NOT_SPIKE", "Coefficient", "Coefficients", "CompiledPlan", "bound_program", "compiled_plan",
    "live_states",
]

#: A coefficient at run time: ``None`` (zero), a float, or ``(tensor, factor or None)``.
Coefficient = Any

#: The variable of ``1 - s`` in tile programs that read it instead of the spike ``s``.
NOT_SPIKE = "not_s"

#: Bound programs of at most this many elements per slot are kept for reuse (per thread, last
#: 64): binding allocates the scratch slots, which costs more than the arithmetic on small layers.
BIND_CACHE_ELEMENTS = 1 << 20
_local = threading.local()


def bound_program(program: Program, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Callable[..., list[Any]]:
    """``program.bind(shape, dtype, device)``, reused from this thread's cache for small shapes.

    Scratch memory is never shared between threads; within a thread a kernel call uses a bound
    program's results before it runs the program again, so reuse across calls is safe.
    """
    if math.prod(shape) > BIND_CACHE_ELEMENTS:
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


class Coefficients:
    """Named expressions evaluated together: scalars once per call, tensors by one program.

    Each expression is ``None`` (structurally zero), parameter-only (a float per call), or a
    tensor expression, optionally split into ``tensor * scalar factor`` (``split=True``). With
    ``zero_is_none`` (the backward's coefficients) one that is the number zero, or a tensor
    times the number zero, counts as structurally zero too: a coupling switched off (an
    Izhikevich neuron's default ``a = 0``) passes no gradient, where autograd multiplies the
    incoming gradient by zero (NaN for an infinite or NaN one).

    The entries listed in ``offsets`` (with ``split``) whose lowered expression is an affine
    ``alpha t + beta`` of a tensor ``t`` with ``beta`` not zero keep the offset apart too: the
    program computes ``t`` alone and the coefficient at run time is ``(t, alpha, beta)``, for a
    consumer that folds the offset into its own operation (the backward's ``C[t + 1] A[t]`` as
    one ``addcmul``, :func:`snn.backends.torch_backward._mixing`).
    """

    def __init__(
        self,
        exprs: Sequence[Expr | None],
        scalar_names: tuple[str, ...],
        split: bool = False,
        affine: bool = False,
        binary_vars: tuple[str, ...] = (SPIKE,),
        zero_is_none: bool = False,
        offsets: Collection[int] = (),
    ) -> None:
        self.scalar_names = scalar_names
        self.entries: list[tuple[str, Any, Expr | None]] = []
        #: per entry, the offset kept apart (see ``offsets``) or ``None``
        self.offsets: list[float | None] = []
        tensor_exprs: list[Expr] = []
        lowered = iter(lower([e for e in exprs if e is not None], scalar_names, affine))
        for index, given in enumerate(exprs):
            e = next(lowered) if given is not None else None
            self.offsets.append(None)
            if e is None:
                self.entries.append(("none", None, None))
                continue
            if (split and index in offsets and e.op == "affine" and e.value[0] != 0.0 and e.value[1] != 0.0
                    and not variables(e.args[0]) <= set(scalar_names)):
                self.offsets[-1] = float(e.value[1])
                self.entries.append(("tensor", len(tensor_exprs), Expr("num", (), float(e.value[0]))))
                tensor_exprs.append(e.args[0])
                continue
            tensor_part, factor = split_scalar_factor(e, scalar_names) if split else (
                (None, e) if variables(e) <= set(scalar_names) else (e, None)
            )
            if zero_is_none and factor is not None and factor.op == "num" and factor.value == 0.0:
                self.entries.append(("none", None, None))
                continue
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
            compile_program(tensor_exprs, self.tensor_vars, scalar_names, affine, binary_vars=binary_vars)
            if tensor_exprs else None
        )
        #: whether the program reads :data:`NOT_SPIKE` (``1 - s``) rather than the spike
        self.reads_not_spike = NOT_SPIKE in self.tensor_vars
        #: per entry, whether it is not structurally zero
        self.nonzero = [kind != "none" for kind, _, _ in self.entries]
        self._last: tuple[tuple[float, ...], Any] | None = None

    @property
    def any_tensor(self) -> bool:
        return self.program is not None

    @property
    def size(self) -> int:
        """The number of operations of the program (0 without one)."""
        return 0 if self.program is None else len(self.program.instructions)

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
        """Every coefficient over the tile of ``like``'s shape: None, float, (tensor, factor) or,
        for the entries with an offset kept apart, (tensor, factor, offset).

        ``into`` maps entry indices to tensors the program writes those entries into (no copy).
        """
        program_scalars, values, factors = prepared
        outputs: list[Any] = []
        if self.program is not None:
            bound = bound_program(self.program, tuple(like.shape), like.dtype, like.device)
            outs: list[torch.Tensor | None] = [None] * len(self.program.results)
            for index, target in (into or {}).items():
                kind, item, _ = self.entries[index]
                if kind == "tensor":
                    outs[item] = target
            outputs = bound([tensors[name] for name in self.tensor_vars], program_scalars, outs)
        result: list[Coefficient] = []
        for (kind, item, _), value, factor, offset in zip(self.entries, values, factors, self.offsets):
            if kind == "none":
                result.append(None)
            elif kind == "scalar":
                result.append(value)
            else:
                out = outputs[item]
                if not isinstance(out, torch.Tensor):
                    out = torch.full_like(like, float(out))
                result.append((out, factor) if offset is None else (out, factor, offset))
        return result


@dataclass
class CompiledPlan:
    """A :class:`~snn.models.KernelPlan` compiled to torch programs (one per configuration).

    Attributes:
        plan: the plan.
        scalar_names: the variables of the learnable parameters (``p_<name>``).
        charge: ``u_*, x -> h_*`` (one output per state).
        reset: ``h_*, s -> v_*`` (one output per state).
        tile, tile_rp: the surrogate gradient ``sg``, then ``A_ij = d reset_i / d h_j``
            (``i`` major; the spike's share through ``sg`` included), then (``tile_rp``)
            ``d reset_i / dp_k``: what a backward tile evaluates over its rows, in one program.
        ext, ext_fp: ``C_ki = d charge_k / d u_i`` (``k`` major), ``d charge_j / dx``, then
            (``ext_fp``) ``d charge_j / dp_k`` (``j`` major): what a backward tile evaluates over
            its rows and the next one, in one program, so shared sub-expressions run once.
        previous: the reset of the states whose previous value the backward pass reads.
        tensor_fx: whether some ``d charge_j / dx`` reads tensors (else they are numbers or
            parameter-only).
        reset_reads_learnables: whether some ``d reset_i / dp_k`` is not zero.
        tile_next: for a plan whose ``C`` reads the previous states and parameters only, whose
            ``d charge / dx`` are parameter-only and which has no learnables (IF, LIF, QIF,
            EIF, Izhikevich, CUBA-LIF): ``sg``, ``A``, then ``C[t + 1]`` with ``u[t + 1] = reset(h[t], s[t])``
            written out, then ``d charge_j / dx``, all from the tile's own rows. A backward
            tile then runs this one program instead of ``tile``, ``previous`` and ``ext``
            over one row more, and the reset's sub-expressions are shared. ``None`` otherwise.
        initial: ``C`` over the initial states (for their gradient), with ``tile_next``.

    ``tile_next``, else ``tile`` and ``tile_rp``, may read :data:`NOT_SPIKE` instead of the
    spike (:attr:`Coefficients.reads_not_spike`; see :func:`_reading_not_spike`).

    Coefficients are split into a tensor and a scalar factor where the expression allows
    (``where(h > 0, k / 2, 0)`` is the 0/1 mask times ``k / 2``), except ``previous``, which
    is written into buffers as it is.
    """

    plan: KernelPlan
    scalar_names: tuple[str, ...]
    charge: Program
    reset: Program
    previous: Coefficients
    tile: Coefficients
    tile_rp: Coefficients
    ext: Coefficients
    ext_fp: Coefficients
    tensor_fx: bool
    reset_reads_learnables: bool
    tile_next: Coefficients | None = None
    initial: Coefficients | None = None


def _factored_hard_reset(reset: Expr, parameters: set[str]) -> Expr:
    """A hard reset ``s c + (1 - s) t`` (``c`` a number or parameter-only) as
    ``c - (1 - s) (c - t)``, the same value for a spike ``s`` of 0 or 1 up to rounding (and NaN
    for an infinite ``t`` where ``s = 1``, as the original gives).

    For the backward's coefficients at the next step: ``c - t`` is the reset's derivative in
    the spike (the surrogate's share of ``A``) and ``1 - s`` its derivative in ``t``, so a
    coefficient of the reset value shares both instead of computing ``s c`` and the sum anew
    (QIF's ``C[t + 1]`` is then one ``addcmul``). Other resets are returned unchanged.
    """
    if reset.op != "+":
        return reset

    def spike_times_constant(e: Expr) -> Expr | None:
        if e.op != "*":
            return None
        for spike, c in (e.args, e.args[::-1]):
            if spike.op == "var" and spike.value == SPIKE and variables(c) <= parameters:
                return c
        return None

    def kept_times_value(e: Expr) -> tuple[Expr, Expr] | None:
        if e.op != "*":
            return None
        for kept, t in (e.args, e.args[::-1]):
            if (kept.op == "-" and kept.args[0].op == "num" and kept.args[0].value == 1.0
                    and kept.args[1].op == "var" and kept.args[1].value == SPIKE and SPIKE not in variables(t)):
                return kept, t
        return None

    for first, second in (reset.args, reset.args[::-1]):
        c, kept = spike_times_constant(first), kept_times_value(second)
        if c is not None and kept is not None:
            return c - kept[0] * (c - kept[1])
    return reset


def _derivatives(
    exprs: Sequence[Expr | None],
    scalar_names: tuple[str, ...],
    binary_vars: tuple[str, ...] = (SPIKE,),
    offsets: Collection[int] = (),
) -> Coefficients:
    """Backward coefficients: split into tensor and factor, affine chains folded, zeros as none."""
    return Coefficients(
        exprs, scalar_names, split=True, affine=True, binary_vars=binary_vars, zero_is_none=True, offsets=offsets
    )


#: Operations whose value is NaN where one operand is NaN (``pow`` with a zero exponent aside).
_NAN_PROPAGATING = frozenset({"+", "-", "*", "/", "neg", "exp", "log", "sqrt", "sigmoid", "cos", "sin", "abs", "pow"})


def _nan_follows(expr: Expr, name: str) -> bool:
    """Whether ``expr`` is surely NaN wherever the variable ``name`` is NaN (a conservative
    test: selections count only when both branches are, comparisons and clamps never)."""
    memo: dict[int, bool] = {}

    def go(e: Expr) -> bool:
        found = memo.get(id(e))
        if found is None:
            if e.op == "var":
                found = e.value == name
            elif e.op == "where":
                found = go(e.args[1]) and go(e.args[2])
            elif e.op in _NAN_PROPAGATING and not (e.op == "pow" and e.value == 0.0):
                found = any(go(a) for a in e.args)
            else:
                found = False
            memo[id(e)] = found
        return found

    return go(expr)


def _complement_spike(expr: Expr) -> Expr:
    """``expr`` with ``1 - s`` read as :data:`NOT_SPIKE` and any other ``s`` as ``1 - NOT_SPIKE``."""
    not_spike = Expr("var", (), NOT_SPIKE)
    complements = {
        id(e): not_spike for e in nodes(expr)
        if e.op == "-" and e.args[0].op == "num" and e.args[0].value == 1.0
        and e.args[1].op == "var" and e.args[1].value == SPIKE
    }
    return substitute(replace_nodes(expr, complements), {SPIKE: 1.0 - not_spike})


def _reading_not_spike(
    exprs: Sequence[Expr | None],
    fire_var: str,
    scalar_names: tuple[str, ...],
    than: Coefficients,
    offsets: Collection[int] = (),
) -> Coefficients | None:
    """The coefficients ``exprs`` reading ``1 - s`` (:data:`NOT_SPIKE`) instead of ``s``, where
    that is allowed and makes a shorter program than ``than`` (their ``s``-reading version).

    A backward tile gets ``s = (h >= threshold)`` from the firing state's charged values; a
    program that needs only ``1 - s`` can take ``h < threshold`` instead, one operation
    fewer. The two differ only where ``h`` is NaN (``s`` is 0 there, ``h < threshold`` too), so
    this is allowed only when every expression that reads ``s`` is NaN wherever ``h`` is
    (:func:`_nan_follows`): a detached hard reset's ``d v / d h = 1 - s`` is not (a NaN
    potential passes its gradient on), with the reset's surrogate term it is.
    """
    if any(e is not None and SPIKE in variables(e) and not _nan_follows(e, fire_var) for e in exprs):
        return None
    variant = _derivatives(
        [None if e is None else _complement_spike(e) for e in exprs], scalar_names, (NOT_SPIKE,), offsets
    )
    return variant if variant.size < than.size else None


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
    reset = compile_program(plan.reset, (*h_vars, SPIKE), scalar_names, binary_vars=(SPIKE,))
    # the surrogate gradient of the tile's rows, from the firing state's charged values
    sg = substitute(plan.surrogate, {SURROGATE_INPUT: Expr("var", (), h_vars[plan.fire_index]) - plan.threshold})
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
    reset_reads_learnables = any(e is not None for e in rp_exprs)
    tile = _derivatives([sg, *a_exprs], scalar_names)
    ext = _derivatives([*c_exprs, *plan.charge_x], scalar_names)
    # C[t + 1] from row t: u[t + 1] is the reset of row t
    parameters = set(scalar_names)
    c_reads_u_only = all(e is None or variables(e) <= parameters | set(u_vars) for e in c_exprs)
    fx_parameter_only = all(e is None or variables(e) <= parameters for e in plan.charge_x)
    # the same programs again when there is nothing to add (tile_rp is used only when the
    # reset reads learnables, ext_fp only when there are learnables)
    tile_rp = (
        _derivatives([sg, *a_exprs, *rp_exprs], scalar_names) if reset_reads_learnables else tile
    )
    fire_var = h_vars[plan.fire_index]
    tile_next = initial = None
    if c_reads_u_only and fx_parameter_only and not plan.learnables and not plan.needs_input:
        next_u = {u_vars[i]: _factored_hard_reset(plan.reset[i], parameters) for i in range(n)}
        c_next = [substitute(e, next_u) if e is not None else None for e in c_exprs]
        next_exprs = [sg, *a_exprs, *c_next, *plan.charge_x]
        # a single state's C[t + 1] = alpha q + beta keeps beta apart: C A is then one addcmul
        # (A + (alpha / beta) A q, times beta) instead of the affine and a product (EIF, QIF)
        offsets = range(1 + n * n, 1 + 2 * n * n) if n == 1 else ()
        tile_next = _derivatives(next_exprs, scalar_names, offsets=offsets)
        initial = _derivatives(c_exprs, scalar_names)
        variant = _reading_not_spike(next_exprs, fire_var, scalar_names, tile_next, offsets)
        if variant is not None:
            tile_next = variant
    elif not plan.initial_states_needed:  # the spikes feed the tile program alone (no `previous`)
        variant = _reading_not_spike([sg, *a_exprs], fire_var, scalar_names, tile)
        variant_rp = (
            _reading_not_spike([sg, *a_exprs, *rp_exprs], fire_var, scalar_names, tile_rp)
            if reset_reads_learnables else variant
        )
        if variant is not None and variant_rp is not None:
            tile, tile_rp = variant, variant_rp
    return CompiledPlan(
        plan=plan,
        scalar_names=scalar_names,
        charge=charge,
        reset=reset,
        previous=Coefficients(previous, scalar_names),
        tile=tile,
        tile_rp=tile_rp,
        ext=ext,
        ext_fp=_derivatives([*c_exprs, *plan.charge_x, *fp_exprs], scalar_names)
        if fp_exprs else ext,
        tensor_fx=any(e is not None and not variables(e) <= set(scalar_names) for e in plan.charge_x),
        reset_reads_learnables=reset_reads_learnables,
        tile_next=tile_next,
        initial=initial,
    )


def live_states(
    m: int,
    fire: int,
    a_nonzero: Sequence[bool],
    c_nonzero: Sequence[bool],
    c0_nonzero: Sequence[bool],
    x_p_nonzero: Sequence[bool],
    spike_source: bool,
    seq_source: Sequence[bool],
    last_source: Sequence[bool],
    wanted_u0: Sequence[bool],
    need_learnables: bool,
    need_rp: bool,
    n_p: int,
) -> list[bool]:
    """Which states' ``G`` the pass computes: those that can be non-zero and are read.

    ``G_j`` can be non-zero when it has a source (the firing state's ``dL/ds``, or a state
    sequence or last state whose ``A_ij`` is not zero) or reads a ``G_k`` that can be (``M_kj``
    not zero); it is read when it feeds ``dL/dx`` (``d charge_j / dx``), a wanted initial
    state's gradient (``C_ji`` at the start), a learnable's gradient, or a ``G_i`` that is read
    (``M_ji``). A state whose coupling is switched off (Izhikevich's ``w`` with ``a = 0``, whose
    gradient would only flow into its own constant initial value) then costs nothing.

    Args:
        m, fire: the number of states and the firing state's index.
        a_nonzero, c_nonzero, c0_nonzero: whether ``A_ij``, ``C_ki`` and ``C_ki`` at the
            initial states are structurally non-zero (row-major, ``m * m`` each).
        x_p_nonzero: the same for ``d charge_j / dx`` (``m``), then ``d charge_j / dp_k``.
        spike_source, seq_source, last_source, wanted_u0: the gradients given and wanted.
        need_learnables, need_rp: whether the learnables' gradients are computed, and through
            the reset (every state counts as read then).
        n_p: the number of learnable parameters.
    """
    mix = [[any(c_nonzero[k * m + i] and a_nonzero[i * m + j] for i in range(m)) for j in range(m)] for k in range(m)]
    nonzero = [
        (j == fire and spike_source)
        or any(a_nonzero[i * m + j] and (seq_source[i] or last_source[i]) for i in range(m))
        for j in range(m)
    ]
    read = [
        x_p_nonzero[j]
        or any(wanted_u0[i] and c0_nonzero[j * m + i] for i in range(m))
        or (need_learnables and any(x_p_nonzero[m + j * n_p + k] for k in range(n_p) if m + j * n_p + k < len(x_p_nonzero)))
        or need_rp
        for j in range(m)
    ]
    for _ in range(m):  # propagate along the recursion (m rounds reach every path)
        nonzero = [nonzero[j] or any(nonzero[k] and mix[k][j] for k in range(m)) for j in range(m)]
        read = [read[k] or any(read[j] and mix[k][j] for j in range(m)) for k in range(m)]
    return [nonzero[j] and read[j] for j in range(m)]
