"""Triton source of the fused kernels of any neuron model, generated from its kernel plan.

A model's :class:`~snn.models.KernelPlan` holds the per-step forward (charge, spike, reset) and
the backward coefficients as :mod:`snn.expr` expressions with the hyper-parameters folded in.
This module turns them into two ``@triton.jit`` kernels, each a loop over the time steps inside
one launch, one program per ``BLOCK`` neurons, the states carried in float32 registers:

- the **forward** kernel reads ``x [T, N]`` and the initial states, and writes the spikes, the
  last states, the state sequences (when asked) and, in training, the charged values of the
  states the plan saves (:attr:`~snn.models.KernelPlan.saved_states`, float32);
- the **backward** kernel walks the steps newest-first. Per step it reloads the saved charged
  values, recomputes the spike and the surrogate derivative, the previous states (the plan's
  reset applied to the step before, or the initial states) and, when the coefficients read it,
  the input (saved: :attr:`~snn.models.KernelPlan.save_input`). It then applies the recursion of
  :class:`~snn.models.KernelPlan` term by term in the order the plan gives. Upstream gradients
  that were not given (no gradient of the spikes, of a last state or of a state sequence) and
  structurally zero coefficients are left out, never multiplied by zero; the gradients of the
  charged values are carried from step to step (zero where no term reaches them), as in the
  torch backend, so NaN propagates as there; infinite gradients too, except where one meets a
  state-dependent coefficient (the terms are summed one by one, as autograd and the cpp kernels
  do, giving NaN where the torch backend keeps ``inf``: see the cpp backend's page). Learnable
  parameters' gradients are summed per program into a ``[K, programs]`` float32 buffer that the
  caller reduces (deterministic, no atomics).

Every expression is emitted as straight-line statements, one per operation, each rendered by
:func:`snn.expr.render` (dialect ``"triton"``) with its operands named by temporaries; equal
sub-expressions are computed once, and those that read only learnable parameters and numbers
are computed once before the loop. Four operations are written here instead, to keep the
torch semantics on GPUs: ``a / b`` as ``tl.div_rn`` and ``sqrt`` as ``tl.sqrt_rn`` (correctly
rounded, as torch computes them; Triton's ``/`` and ``tl.sqrt`` are approximate there), and
``minimum`` / ``maximum`` with ``propagate_nan=ALL`` (torch propagates NaN; Triton's default
drops it). Kernels are launched with ``enable_fp_fusion=False`` (:mod:`snn_triton.ops`): a
product and a sum stay two roundings, as in torch's element-wise operations, where a fused
multiply-add (Triton's default) can move a potential across the threshold by one rounding.

Sources are generated per storage dtype (float32, float16, bfloat16: loads are converted to
float32, results rounded to nearest even, bfloat16 with integer arithmetic because Triton's CPU
interpreter truncates that cast), per forward variant (training or inference, state sequences
or not) and per backward variant (:class:`BackwardVariant`). Identifiers in the source come
from this module (plan variables become ``var_<name>``), numbers are float32 literals printed
exactly (:func:`snn.expr.float32_literal`): no user string reaches the source. Sources are
loaded through :mod:`snn_triton.source_cache`; the kernels are cached per configuration and
variant.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from snn.expr import Expr, float32_literal, render, simplify, var, variables
from snn.models import INPUT, SPIKE, SURROGATE_INPUT, KernelPlan, NeuronConfig, kernel_plan

__all__ = [
    "BackwardVariant",
    "GeneratedKernel",
    "STORAGE_TYPES",
    "forward_source",
    "backward_source",
    "forward_kernel",
    "backward_kernel",
]

_HEADER = "import triton\nimport triton.language as tl\n\n\n"

#: Storage dtype names the generator writes (arithmetic is float32 in every case).
STORAGE_TYPES = ("float32", "float16", "bfloat16")
_INDENT = "    "
_SG = "sg"  # the surrogate derivative's name among the backward's variables


@dataclass(frozen=True)
class BackwardVariant:
    """Which upstream gradients exist and which results are needed, for one backward kernel.

    Attributes:
        grad_spikes: the spikes have a gradient.
        grad_last: per state, its last value has a gradient.
        grad_seqs: per state, its sequence has a gradient.
        grad_x: write the input's gradient.
        grad_learnables: accumulate the learnable parameters' gradients.
    """

    grad_spikes: bool
    grad_last: tuple[bool, ...]
    grad_seqs: tuple[bool, ...]
    grad_x: bool
    grad_learnables: bool


@dataclass(frozen=True)
class GeneratedKernel:
    """A generated kernel: its module source and its parameters in order.

    Attributes:
        source: the module's source text.
        parameters: the kernel's parameter names (pointer, size and ``BLOCK`` arguments).
    """

    source: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class _Value:
    """What an emitted expression is: an identifier or a literal; a ``[BLOCK]`` vector or not."""

    text: str
    vector: bool
    number: float | None = None


class _Emitter:
    """Straight-line Triton statements for expression DAGs, one per operation.

    Values that read no vector (learnable parameters and numbers only) go to :attr:`prologue`,
    computed once before the time loop; the rest go to the current body (:meth:`begin`).
    Equal operations on equal operands are emitted once per body (and once in the prologue).
    """

    def __init__(self) -> None:
        self.prologue: list[str] = []
        self._prologue_memo: dict[tuple[Any, ...], _Value] = {}
        self._count = 0
        self.lines: list[str] = []
        self._memo: dict[tuple[Any, ...], _Value] = {}

    def begin(self) -> list[str]:
        """Start a new body (a new scope for common sub-expressions); returns its lines."""
        self.lines = []
        self._memo = {}
        return self.lines

    def fresh(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def line(self, text: str) -> None:
        self.lines.append(text)

    def stored(self, value: str, storage: str) -> str:
        """``value`` (a float32 vector identifier) rounded to ``storage``, to nearest even.

        bfloat16 is rounded with integer arithmetic (Triton's CPU interpreter truncates float32
        -> bfloat16 casts; on GPUs the result is the same); NaN stays NaN.
        """
        if storage == "float32":
            return value
        if storage == "float16":
            return f"{value}.to(tl.float16)"
        bits, rounded = self.fresh(), self.fresh()
        self.lines.append(f"{bits} = {value}.to(tl.uint32, bitcast=True)")
        self.lines.append(f"{bits} = (({bits} + (0x7FFF + (({bits} >> 16) & 1))) >> 16) << 16")
        self.lines.append(f"{rounded} = tl.where({value} != {value}, {value}, {bits}.to(tl.float32, bitcast=True))")
        return f"{rounded}.to(tl.bfloat16)"

    def value(self, expr: Expr, names: Mapping[str, _Value]) -> _Value:
        """Emit ``expr`` with its variables bound by ``names``; returns the value."""
        seen: dict[int, _Value] = {}

        def go(e: Expr) -> _Value:
            found = seen.get(id(e))
            if found is not None:
                return found
            if e.op == "num":
                out = _Value(float32_literal(e.value, "triton"), False, float(e.value))
            elif e.op == "var":
                try:
                    out = names[e.value]
                except KeyError:
                    raise ValueError(
                        f"kernel plan: variable {e.value!r} is not available here (known: {sorted(names)})"
                    ) from None
            else:
                out = self._operation(e, [go(a) for a in e.args])
            seen[id(e)] = out
            return out

        return go(expr)

    def vector(self, value: _Value) -> str:
        """The identifier of ``value`` as a ``[BLOCK]`` float32 vector (scalars are broadcast
        in the current body)."""
        if value.vector:
            return value.text
        name = self.fresh()
        self.lines.append(f"{name} = {value.text} + zero_block")
        return name

    def _operation(self, e: Expr, args: list[_Value]) -> _Value:
        vector = any(a.vector for a in args)
        if e.op == "and" and vector:
            # a scalar truth value (a learnable's comparison, from the prologue) & a [BLOCK] one:
            # Triton's interpreter refuses a scalar bool & a vector bool, so the scalar is
            # broadcast first (as a 0/1 float, the form the interpreter broadcasts)
            args = [a if a.vector else self._vector_truth(a) for a in args]
        if all(a.number is not None for a in args):
            # numbers the plan could not fold (a non-finite result): compute them as a float32
            # tensor, so Triton applies IEEE rules instead of folding them in Python
            constant = self._emit_prologue(f"tl.full([], {args[0].text}, tl.float32)", ("const", args[0].text))
            args = [constant, *args[1:]]
        key = (e.op, e.value, tuple(a.text for a in args))
        found = self._prologue_memo.get(key)
        if found is None and vector:
            found = self._memo.get(key)
        if found is not None:
            return found
        text = _render_operation(e, args)
        if not vector:
            return self._emit_prologue(text, key)
        name = self.fresh()
        self.lines.append(f"{name} = {text}")
        out = _Value(name, True)
        self._memo[key] = out
        return out

    def _vector_truth(self, value: _Value) -> _Value:
        """The scalar truth value ``value`` as a ``[BLOCK]`` one, in the current body."""
        key = ("vector_truth", value.text)
        found = self._memo.get(key)
        if found is None:
            name = self.fresh()
            self.lines.append(f"{name} = (tl.where({value.text}, 1.0, 0.0) + zero_block) != 0.0")
            found = self._memo[key] = _Value(name, True)
        return found

    def _emit_prologue(self, text: str, key: tuple[Any, ...]) -> _Value:
        found = self._prologue_memo.get(key)
        if found is None:
            name = self.fresh()
            self.prologue.append(f"{name} = {text}")
            found = self._prologue_memo[key] = _Value(name, False)
        return found


def _render_operation(e: Expr, args: list[_Value]) -> str:
    """One operation on named operands, in Triton source."""
    texts = [a.text for a in args]
    if e.op == "/":
        return f"tl.div_rn({texts[0]}, {texts[1]})"
    if e.op == "sqrt":
        return f"tl.sqrt_rn({texts[0]})"
    if e.op in ("minimum", "maximum"):
        return f"tl.{e.op}({texts[0]}, {texts[1]}, propagate_nan=tl.PropagateNan.ALL)"
    operands = tuple(Expr("num", (), a.number) if a.number is not None else var(a.text) for a in args)
    return render(Expr(e.op, operands, e.value), "triton")


def _total(terms: Iterable[Expr]) -> Expr | None:
    """``t0 + t1 + ...`` left to right, simplified; ``None`` for no terms."""
    items = list(terms)
    if not items:
        return None
    return simplify(functools.reduce(lambda a, b: a + b, items))


def _simultaneous(assignments: list[tuple[str, str]]) -> list[str]:
    """``target = value`` lines that read every value before writing any target.

    A value may be the bare name of another target (a state whose new value is another state's
    previous one, ``d = u.v``): that name is copied to a temporary first, or the later line would
    read the target already overwritten.
    """
    targets = {target for target, _ in assignments}
    lines: list[str] = []
    final: list[tuple[str, str]] = []
    for index, (target, value) in enumerate(assignments):
        if value in targets and value != target:
            lines.append(f"previous_{index} = {value}")
            value = f"previous_{index}"
        final.append((target, value))
    return lines + [f"{target} = {value}" for target, value in final]


def _signature(parameters: list[str]) -> str:
    return f"def kernel({', '.join(parameters)}, T, N, BLOCK: tl.constexpr):"


def _module(kind: str, plan: KernelPlan, body: list[str]) -> str:
    model = plan.model.name  # a validated lowercase identifier
    return (
        f"# Generated by snn_triton.codegen: {kind} kernel of neuron model {model!r}. Do not edit.\n"
        + _HEADER
        + '@triton.jit(do_not_specialize=["T"])\n'
        + "\n".join(body)
        + "\n"
    )


def _state_var(prefix: str, state: str) -> str:
    return f"{prefix}_{state}"


# ---------------------------------------------------------------------------------------------
# forward


def _check_storage(storage: str) -> None:
    if storage not in STORAGE_TYPES:
        raise ValueError(f"storage: expected one of {STORAGE_TYPES}, got {storage!r}")


def forward_source(plan: KernelPlan, storage: str, save: bool, store_seqs: bool) -> GeneratedKernel:
    """The forward kernel of ``plan``.

    Args:
        plan: the configuration's kernel plan.
        storage: the dtype of the input, states and outputs (:data:`STORAGE_TYPES`).
        save: write the charged values of :attr:`~snn.models.KernelPlan.saved_states`
            (float32) for the backward pass.
        store_seqs: write every state's post-reset sequence.

    Returns:
        The module source and the kernel's parameters: ``x_ptr``, ``state0_ptr_<i>`` per state,
        ``param_ptr`` (float32 ``[K]``, models with learnable parameters), ``spike_ptr``,
        ``charged_ptr_<j>`` (saved states, with ``save``), ``seq_ptr_<i>`` (with
        ``store_seqs``), ``last_ptr_<i>``, then ``T``, ``N`` and ``BLOCK``.
    """
    _check_storage(storage)
    states = plan.states
    m = len(states)
    em = _Emitter()
    params = ["x_ptr", *(f"state0_ptr_{i}" for i in range(m))]
    if plan.learnables:
        params.append("param_ptr")
    params.append("spike_ptr")
    if save:
        params += [f"charged_ptr_{j}" for j in plan.saved_states]
    if store_seqs:
        params += [f"seq_ptr_{i}" for i in range(m)]
    params += [f"last_ptr_{i}" for i in range(m)]

    names: dict[str, _Value] = {f"p_{k}": _Value(f"var_p_{k}", False) for k in plan.learnables}
    for state in states:
        names[_state_var("u", state)] = _Value(f"var_u_{state}", True)
    names[INPUT] = _Value("var_x", True)
    body = em.begin()
    charged = [em.value(plan.charge[j], names) for j in range(m)]
    for state, value in zip(states, charged):
        names[_state_var("h", state)] = _Value(em.vector(value), True)
    fire = names[_state_var("h", states[plan.fire_index])].text
    threshold = float32_literal(plan.threshold, "triton")
    em.line(f"var_s = tl.where({fire} >= {threshold}, 1.0, 0.0)")
    names[SPIKE] = _Value("var_s", True)
    reset = [em.vector(em.value(plan.reset[i], names)) for i in range(m)]
    em.line(f"tl.store(spike_ptr + off, var_s.to(tl.{storage}), mask=mask)")
    if save:
        for j in plan.saved_states:
            em.line(f"tl.store(charged_ptr_{j} + off, {names[_state_var('h', states[j])].text}, mask=mask)")
    if store_seqs:
        for i in range(m):
            em.line(f"tl.store(seq_ptr_{i} + off, {em.stored(reset[i], storage)}, mask=mask)")
    for line in _simultaneous([(f"var_u_{state}", text) for state, text in zip(states, reset)]):
        em.line(line)
    em.line("off += N")
    epilogue = em.begin()
    for i, state in enumerate(states):
        em.line(f"tl.store(last_ptr_{i} + offs, {em.stored(f'var_u_{state}', storage)}, mask=mask)")

    out = [
        _signature(params),
        "offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)",
        "mask = offs < N",
        "zero_block = tl.zeros([BLOCK], dtype=tl.float32)",
    ]
    out += [f"var_p_{k} = tl.load(param_ptr + {n}).to(tl.float32)" for n, k in enumerate(plan.learnables)]
    out += em.prologue
    out += [f"var_u_{s} = tl.load(state0_ptr_{i} + offs, mask=mask, other=0.0).to(tl.float32)" for i, s in enumerate(states)]
    out += [
        "off = offs",
        "x_next = tl.load(x_ptr + off, mask=mask, other=0.0)",
        "for step in range(T):",
        _INDENT + "var_x = x_next.to(tl.float32)",
        _INDENT + "# prefetch x[step + 1] (a tensor comparison: the interpreter rejects a mask & a Python bool)",
        _INDENT + "has_next = (offs * 0 + (step + 1)) < T",
        _INDENT + "x_next = tl.load(x_ptr + (off + N), mask=mask & has_next, other=0.0)",
    ]
    out += [_INDENT + line for line in body]
    out += epilogue
    lines = [out[0]] + [_INDENT + line for line in out[1:]]
    return GeneratedKernel(_module("forward", plan, lines), tuple(params))


# ---------------------------------------------------------------------------------------------
# backward


def _previous_state_inputs(plan: KernelPlan) -> tuple[tuple[int, ...], bool]:
    """The charged states (indices) and whether the spike are read by the resets that recompute
    the previous states the backward pass needs."""
    read: set[str] = set()
    for i in plan.initial_states_needed:
        read |= variables(plan.reset[i])
    needs_spike = SPIKE in read
    indices = {j for j, s in enumerate(plan.states) if _state_var("h", s) in read}
    if needs_spike:
        indices.add(plan.fire_index)
    return tuple(sorted(indices)), needs_spike


def backward_source(plan: KernelPlan, storage: str, variant: BackwardVariant) -> GeneratedKernel:
    """The backward kernel of ``plan`` for the gradients that ``variant`` names.

    Args:
        plan: the configuration's kernel plan.
        storage: the dtype of the input, states, upstream gradients and results
            (:data:`STORAGE_TYPES`).
        variant: which upstream gradients exist and which results are needed.

    Returns:
        The module source and the kernel's parameters: ``charged_ptr_<j>`` (saved states,
        float32), ``x_ptr`` (:attr:`~snn.models.KernelPlan.save_input`), ``state0_ptr_<i>``
        (:attr:`~snn.models.KernelPlan.initial_states_needed`), ``param_ptr``,
        ``grad_spike_ptr``, ``grad_last_ptr_<i>``, ``grad_seq_ptr_<i>`` (the given gradients),
        ``grad_x_ptr``, ``grad_state0_ptr_<i>`` per state, ``partial_ptr`` (float32
        ``[K, programs]``, with ``grad_learnables``), then ``T``, ``N`` and ``BLOCK``.

    Raises:
        ValueError: ``variant`` does not match the plan's number of states.
    """
    _check_storage(storage)
    states = plan.states
    m = len(states)
    if len(variant.grad_last) != m or len(variant.grad_seqs) != m:
        raise ValueError(f"variant: expected {m} flags for grad_last and grad_seqs, got {variant}")
    k_count = len(plan.learnables)
    grad_learnables = variant.grad_learnables and k_count > 0
    carried_h, prev_spike = _previous_state_inputs(plan)
    # a post-reset state's gradient flows into the step before when some charge reads it
    flows_back = [any(plan.charge_u[j][i] is not None for j in range(m)) for i in range(m)]
    coefficients = list(plan.reset_s)
    coefficients += [e for rows in (plan.reset_h, plan.reset_p, plan.charge_u, plan.charge_p) for row in rows for e in row]
    coefficients += list(plan.charge_x)
    spike_read = any(SPIKE in variables(e) for e in coefficients if e is not None)

    params = [f"charged_ptr_{j}" for j in plan.saved_states]
    if plan.save_input:
        params.append("x_ptr")
    params += [f"state0_ptr_{i}" for i in plan.initial_states_needed]
    if k_count:
        params.append("param_ptr")
    if variant.grad_spikes:
        params.append("grad_spike_ptr")
    params += [f"grad_last_ptr_{i}" for i in range(m) if variant.grad_last[i]]
    params += [f"grad_seq_ptr_{i}" for i in range(m) if variant.grad_seqs[i]]
    params.append("grad_x_ptr")
    params += [f"grad_state0_ptr_{i}" for i in range(m)]
    if grad_learnables:
        params.append("partial_ptr")

    em = _Emitter()
    threshold = float32_literal(plan.threshold, "triton")
    zero = _Value("zero_block", True)

    def step(last: bool) -> list[str]:
        """One step's statements (``off`` is the step's row): the newest step when ``last``.

        The newest step's identifiers carry a prefix of their own, so that only the ``carry_*``
        and ``acc_*`` values are carried across the loop's iterations."""
        tag = "newest_" if last else ""
        lines = em.begin()
        names: dict[str, _Value] = {f"p_{k}": _Value(f"var_p_{k}", False) for k in plan.learnables}
        for j in plan.saved_states:
            h_name = _state_var("h", states[j])
            if last or j not in carried_h:
                em.line(f"{tag}var_{h_name} = tl.load(charged_ptr_{j} + off, mask=mask, other=0.0)")
                names[h_name] = _Value(f"{tag}var_{h_name}", True)
            else:
                names[h_name] = _Value(f"carry_h_{j}", True)
        if plan.initial_states_needed:
            em.line(f"{tag}later = off >= N")  # the step has a step before it (valid lanes: offs < N)
            previous: dict[str, _Value] = {f"p_{k}": names[f"p_{k}"] for k in plan.learnables}
            for j in carried_h:
                em.line(f"{tag}prev_h_{j} = tl.load(charged_ptr_{j} + (off - N), mask=mask & {tag}later, other=0.0)")
                previous[_state_var("h", states[j])] = _Value(f"{tag}prev_h_{j}", True)
            if prev_spike:
                em.line(f"{tag}prev_s = tl.where({tag}prev_h_{plan.fire_index} >= {threshold}, 1.0, 0.0)")
                previous[SPIKE] = _Value(f"{tag}prev_s", True)
            for i in plan.initial_states_needed:
                recomputed = em.vector(em.value(plan.reset[i], previous))
                u_name = _state_var("u", states[i])
                em.line(f"{tag}var_{u_name} = tl.where({tag}later, {recomputed}, u0_{i})")
                names[u_name] = _Value(f"{tag}var_{u_name}", True)
        fire = names[_state_var("h", states[plan.fire_index])].text
        if spike_read:
            em.line(f"{tag}var_s = tl.where({fire} >= {threshold}, 1.0, 0.0)")
            names[SPIKE] = _Value(f"{tag}var_s", True)
        if plan.save_input:
            em.line(f"{tag}var_x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)")
            names[INPUT] = _Value(f"{tag}var_x", True)

        # gS_i: the gradient reaching the post-reset state i of this step
        present: list[int] = []
        for i in range(m):
            terms: list[Expr] = []
            if not last and flows_back[i]:
                terms.append(var(f"carry_g_{i}"))
                names[f"carry_g_{i}"] = _Value(f"carry_g_{i}", True)
            if variant.grad_seqs[i]:
                em.line(f"{tag}grad_seq_{i} = tl.load(grad_seq_ptr_{i} + off, mask=mask, other=0.0).to(tl.float32)")
                names[f"grad_seq_{i}"] = _Value(f"{tag}grad_seq_{i}", True)
                terms.append(var(f"grad_seq_{i}"))
            if last and variant.grad_last[i]:
                em.line(f"{tag}grad_last_{i} = tl.load(grad_last_ptr_{i} + offs, mask=mask, other=0.0).to(tl.float32)")
                names[f"grad_last_{i}"] = _Value(f"{tag}grad_last_{i}", True)
                terms.append(var(f"grad_last_{i}"))
            total = _total(terms)
            if total is not None:
                names[f"gS_{i}"] = em.value(total, names)
                present.append(i)
        # gs_total = gs + sum_i gS_i reset_s[i]
        spike_terms: list[Expr] = []
        if variant.grad_spikes:
            em.line(f"{tag}grad_s = tl.load(grad_spike_ptr + off, mask=mask, other=0.0).to(tl.float32)")
            names["gs"] = _Value(f"{tag}grad_s", True)
            spike_terms.append(var("gs"))
        spike_terms += [var(f"gS_{i}") * c for i in present if (c := plan.reset_s[i]) is not None]
        spike_total = _total(spike_terms)
        if spike_total is not None:
            names["gs_total"] = em.value(spike_total, names)
            em.line(f"{tag}var_z = {fire} - {threshold}")
            names[SURROGATE_INPUT] = _Value(f"{tag}var_z", True)
            names[_SG] = em.value(plan.surrogate, names)
        # gH_j = sum_i gS_i reset_h[i][j] + [j = fire] gs_total sg
        for j in range(m):
            terms = [var(f"gS_{i}") * c for i in present if (c := plan.reset_h[i][j]) is not None]
            if j == plan.fire_index and spike_total is not None:
                terms.append(var("gs_total") * var(_SG))
            total = _total(terms)
            names[f"gH_{j}"] = em.value(total, names) if total is not None else zero
        if variant.grad_x:
            grad_x = _total(var(f"gH_{j}") * c for j in range(m) if (c := plan.charge_x[j]) is not None)
            value = em.vector(em.value(grad_x, names)) if grad_x is not None else "zero_block"
            em.line(f"tl.store(grad_x_ptr + off, {em.stored(value, storage)}, mask=mask)")
        if grad_learnables:
            for k in range(k_count):
                terms = [var(f"gH_{j}") * c for j in range(m) if (c := plan.charge_p[j][k]) is not None]
                terms += [var(f"gS_{i}") * c for i in present if (c := plan.reset_p[i][k]) is not None]
                total = _total(terms)
                if total is not None:
                    em.line(f"acc_{k} = acc_{k} + {em.vector(em.value(total, names))}")
        # the gradient reaching the previous post-reset states, carried to the step before
        updates: list[tuple[str, str]] = []
        for i in range(m):
            if flows_back[i]:
                total = _total(var(f"gH_{j}") * c for j in range(m) if (c := plan.charge_u[j][i]) is not None)
                assert total is not None
                updates.append((f"carry_g_{i}", em.vector(em.value(total, names))))
        updates += [(f"carry_h_{j}", f"{tag}prev_h_{j}") for j in carried_h]
        lines += _simultaneous(updates)
        return lines

    newest = step(last=True)
    loop = step(last=False)
    epilogue = em.begin()
    for i in range(m):
        value = f"carry_g_{i}" if flows_back[i] else "zero_block"
        em.line(f"tl.store(grad_state0_ptr_{i} + offs, {em.stored(value, storage)}, mask=mask)")
    out = [
        _signature(params),
        "pid = tl.program_id(0)",
        "offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)",
        "mask = offs < N",
        "zero_block = tl.zeros([BLOCK], dtype=tl.float32)",
    ]
    out += [f"var_p_{k} = tl.load(param_ptr + {n}).to(tl.float32)" for n, k in enumerate(plan.learnables)]
    out += em.prologue
    out += [f"u0_{i} = tl.load(state0_ptr_{i} + offs, mask=mask, other=0.0).to(tl.float32)"
            for i in plan.initial_states_needed]
    if grad_learnables:
        out += [f"acc_{k} = tl.zeros([BLOCK], dtype=tl.float32)" for k in range(k_count)]
    out += ["# int64 offsets throughout; the newest step first", "off = offs + (offs * 0 + N) * (T - 1)"]
    out += newest
    out += ["for _ in range(T - 1):", _INDENT + "off -= N"]
    out += [_INDENT + line for line in loop]
    out += epilogue
    if grad_learnables:
        out += [
            f"tl.store(partial_ptr + {k} * tl.num_programs(0) + pid, tl.sum(tl.where(mask, acc_{k}, 0.0), axis=0))"
            for k in range(k_count)
        ]
    lines = [out[0]] + [_INDENT + line for line in out[1:]]
    return GeneratedKernel(_module("backward", plan, lines), tuple(params))


# ---------------------------------------------------------------------------------------------
# loaded kernels


_lock = threading.Lock()
_kernels: dict[tuple[Any, ...], tuple[Any, tuple[str, ...]]] = {}


def _loaded(key: tuple[Any, ...], make: Callable[[], GeneratedKernel], prefix: str) -> tuple[Any, tuple[str, ...]]:
    found = _kernels.get(key)
    if found is not None:
        return found
    from snn_triton.source_cache import load_generated

    generated = make()
    module = load_generated(generated.source, prefix)
    found = (module.kernel, generated.parameters)
    with _lock:
        _kernels[key] = found
    return found


def forward_kernel(config: NeuronConfig, storage: str, save: bool, store_seqs: bool) -> tuple[Any, tuple[str, ...]]:
    """The ``@triton.jit`` forward kernel of ``config`` for ``storage`` and its parameter names
    (cached; arguments as :func:`forward_source`).

    Raises:
        ValueError, TypeError: the plan cannot be built or rendered (e.g. a surrogate without
            closed-form derivative).
        PermissionError: the cache directory is not private.
    """
    key = ("forward", config, storage, bool(save), bool(store_seqs))
    return _loaded(key, lambda: forward_source(kernel_plan(config), storage, bool(save), bool(store_seqs)), "fw")


def backward_kernel(config: NeuronConfig, storage: str, variant: BackwardVariant) -> tuple[Any, tuple[str, ...]]:
    """The ``@triton.jit`` backward kernel of ``config`` for ``storage`` and ``variant`` and its
    parameter names (cached; arguments as :func:`backward_source`); errors as
    :func:`forward_kernel`."""
    key = ("backward", config, storage, variant)
    return _loaded(key, lambda: backward_source(kernel_plan(config), storage, variant), "bw")
