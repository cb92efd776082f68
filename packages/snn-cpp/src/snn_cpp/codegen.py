"""C source for one neuron configuration, generated from its :class:`~snn.models.KernelPlan`.

Every piece of math in the source comes from the plan's expressions, rendered by
:func:`snn.expr.render` (dialect ``"c"`` for float32, ``"c64"`` for float64); this module only
arranges them into loops. The source is plain C99 (no torch headers) with three entry points:

- ``snn_forward(T, N, block, threads, save, store, stream, ptrs)``: the sequence forward,
  ``save`` keeping the charged values training needs and ``store`` writing the post-reset state
  sequences;
- ``snn_backward(T, N, block, threads, stream, flags, ptrs)``: the backward pass, newest step
  first;
- ``snn_source_id()``: the hash of this source (the loader checks it).

Layout: the neurons are cut into blocks of ``block`` neurons (a runtime argument, at most
:data:`MAX_BLOCK`; the last block shorter; see :func:`snn_cpp.ops.block_size`). A block
runs the whole sequence with its states in the block's slice of the last-state outputs (the
backward pass: its carried gradients in the slice of the initial-state gradients), which stays in
the caches; only the per-neuron sums of the learnable parameters' gradients are stack arrays
(bounded by :data:`snn_cpp.ops.STACK_BYTES`); each step's
loop over the block's neurons (in chunks of :data:`CHUNK`) is the innermost loop, written so that
the compiler vectorises it (``restrict`` pointers, selections without branches, no calls except
the vector math library's; the backward pass computes each chunk's surrogate gradients, whose
``exp`` is such a call, in a loop of its own before the main one, so that the main loop's values
are not spilled around it). Threads
take blocks one at a time (OpenMP ``schedule(dynamic, 1)``: on a shared machine a thread whose
core is busy with another process takes fewer blocks instead of holding up the others); each
block writes its partial sums of the learnable parameters' gradients to its own slot, and one
thread adds the slots in block order, so the result depends neither on the number of threads
nor on which thread ran which block. Within a block, a learnable parameter's gradient terms of
each neuron are summed over steps in the storage type for at most :data:`FLUSH_STEPS` steps, then
added to a ``double`` per neuron (a float32 sum over a few steps loses nothing a float32 gradient
keeps, and a ``double`` add per step cost the float32 PLIF backward about a tenth of its time).

``stream`` (set by the caller for outputs larger than the caches) writes the ``[T, N]`` outputs
with non-temporal stores: each step's values go to a buffer of :data:`CHUNK` neurons in the
first-level cache, then straight to memory without the read a cached store makes of every line
it writes. It changes where values are stored, never which values.

Pointer tables (``ptrs``, ``void *``; ``N`` neurons, ``T`` steps, all arrays contiguous):

forward: ``x [T,N]``, the initial states ``[N]`` (model order), the learnables ``[P]``,
``spikes [T,N]``, the last states ``[N]``, the state sequences ``[T,N]`` (NULL unless
``store``), the saved charged values ``[T,N]`` of :attr:`~snn.models.KernelPlan.saved_states`
(NULL unless ``save``).

backward: the saved charged values, ``x [T,N]`` (only when the plan saves the input), the
initial states of :attr:`~snn.models.KernelPlan.initial_states_needed`, the learnables,
``grad_spikes [T,N]``, the gradients of the last states ``[N]``, of the state sequences
``[T,N]``, then the outputs ``grad_x [T,N]``, the initial states' gradients ``[N]``, a
``double`` scratch of ``blocks * P`` and the ``double`` learnable gradients ``[P]``. ``flags``
(``int32``) says which incoming gradients exist: the spikes', then each last state's, then each
state sequence's; a missing one is skipped (never multiplied by zero, which would turn a NaN
coefficient into a NaN gradient where autograd has none), exactly as the torch backend does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from snn.expr import Expr, render, variables
from snn.models import INPUT, SPIKE, SURROGATE_INPUT, KernelPlan
from snn_cpp.c_helpers import HELPERS

__all__ = [
    "MAX_BLOCK",
    "CHUNK",
    "FLUSH_STEPS",
    "DIALECTS",
    "ABI_VERSION",
    "KernelLayout",
    "layout_of",
    "generate_source",
    "source_id",
    "embedded_id",
]

#: The largest number of neurons per block.
MAX_BLOCK = 16384

#: Neurons per buffer of the streaming stores (a few KiB per output: stays in the L1 cache).
CHUNK = 512

#: Steps over which the learnable parameters' per-neuron gradient terms are summed in the
#: storage type before they are added to the ``double`` sums.
FLUSH_STEPS = 16

#: Storage dtype name -> (``snn.expr`` dialect, C type).
DIALECTS = {"float32": ("c", "float"), "float64": ("c64", "double")}

#: Bumped whenever the entry points' signatures or pointer tables change.
ABI_VERSION = 3

# Functions of the rendered C replaced by the kernels' own: snn.expr renders minimum / maximum
# with C's fmin / fmax, which return the other operand when one is NaN, where torch.minimum and
# torch.clamp propagate NaN; float32 exp is glibc's vector expf where the toolchain has it
# (SNN_LIBMVEC), else an inline version the compiler vectorises (a scalar libm call would keep
# the whole loop scalar).
_REPLACED = {"fminf": "snn_min", "fmaxf": "snn_max", "fmin": "snn_min", "fmax": "snn_max", "expf": "snn_expf"}
_REPLACED_PATTERN = re.compile(r"\b(fminf|fmaxf|fmin|fmax|expf)\(")
_ID_PATTERN = re.compile(r'snn_source_id\(void\) \{ return "([0-9a-f]{32})"; \}\n\Z')


@dataclass(frozen=True)
class KernelLayout:
    """What the pointer tables of a configuration hold (see the module docstring).

    Attributes:
        states: number of states ``m``.
        learnables: number of learnable parameters ``P``.
        saved: indices of the states whose charged values training saves.
        save_input: whether training saves ``x``.
        initial_needed: indices of the initial states the backward pass reads.
    """

    states: int
    learnables: int
    saved: tuple[int, ...]
    save_input: bool
    initial_needed: tuple[int, ...]


def layout_of(plan: KernelPlan) -> KernelLayout:
    """The :class:`KernelLayout` of ``plan``."""
    return KernelLayout(
        states=len(plan.states),
        learnables=len(plan.learnables),
        saved=tuple(plan.saved_states),
        save_input=bool(plan.save_input),
        initial_needed=tuple(plan.initial_states_needed),
    )


def source_id(source: str) -> str:
    """The identifier embedded in (and checked against) a generated source: a SHA-256 prefix."""
    return hashlib.sha256(source.encode()).hexdigest()[:32]


def embedded_id(source: str) -> str:
    """The id a source made by :func:`generate_source` returns from ``snn_source_id()``.

    Raises:
        ValueError: ``source`` does not end with that function.
    """
    found = _ID_PATTERN.search(source)
    if found is None:
        raise ValueError("source: expected a source made by snn_cpp.codegen.generate_source")
    return found.group(1)


class _Renderer:
    """Renders plan expressions with the C names of one loop body."""

    def __init__(self, plan: KernelPlan, dialect: str) -> None:
        self.plan = plan
        self.dialect = dialect
        self.base: dict[str, str] = {INPUT: "xv", SPIKE: "sv", SURROGATE_INPUT: "zv"}
        for i, name in enumerate(plan.states):
            self.base[f"u_{name}"] = f"u{i}"
            self.base[f"h_{name}"] = f"h{i}"
        for k, name in enumerate(plan.learnables):
            self.base[f"p_{name}"] = f"p{k}"

    def __call__(self, expr: Expr, available: Iterable[str], rename: dict[str, str] | None = None) -> str:
        """``expr`` as C, checking that it reads only ``available`` plan variables."""
        allowed = set(available)
        missing = variables(expr) - allowed
        if missing:
            raise ValueError(
                f"model {self.plan.model.name!r}: an expression reads {sorted(missing)}, which this loop does not have"
            )
        names = dict(self.base)
        if rename:
            names.update(rename)
        text = render(expr, self.dialect, names)
        return _REPLACED_PATTERN.sub(lambda m: _REPLACED[m.group(1)] + "(", text)


def _present(exprs: Sequence[Expr | None]) -> list[tuple[int, Expr]]:
    """``(index, expression)`` of the coefficients that are not structurally zero."""
    return [(index, e) for index, e in enumerate(exprs) if e is not None]


def _sum(terms: Sequence[str], zero: str) -> str:
    return " + ".join(terms) if terms else zero


def _prelude(real: str, dialect: str, plan: KernelPlan) -> list[str]:
    one, zero = ("1.0f", "0.0f") if dialect == "c" else ("1.0", "0.0")
    bits = "uint32_t" if dialect == "c" else "uint64_t"
    threshold = render(Expr("num", (), plan.threshold), dialect)
    return [
        f"/* snn-cpp kernel: model {plan.model.name}, {len(plan.states)} state(s), ABI {ABI_VERSION} */",
        "#include <math.h>",
        "#include <stdint.h>",
        "#include <stddef.h>",
        "#include <string.h>",
        "#if defined(SNN_LIBMVEC)",
        "/* glibc's vector math library: lets the compiler vectorise loops that call these */",
        *[f'__attribute__((__simd__("notinbranch"))) {t} {f}({t});'
          for t, names in (("float", ("expf", "logf", "sinf", "cosf")), ("double", ("exp", "log", "sin", "cos")))
          for f in names],
        "#endif",
        "#ifdef _OPENMP",
        "#include <omp.h>",
        "#endif",
        f"typedef {real} real_t;",
        f"typedef {bits} bits_t;",
        f"#define SNN_MAX_BLOCK {MAX_BLOCK}",
        f"#define SNN_CHUNK {CHUNK}",
        f"#define SNN_FLUSH {FLUSH_STEPS}",
        f"#define ONE {one}",
        f"#define ZERO {zero}",
        f"#define THRESHOLD {threshold}",
        "#define SNN_EXPORT __attribute__((visibility(\"default\")))",
        "#define SNN_INLINE static inline __attribute__((always_inline))",
        *HELPERS,
    ]


def _row_loop(body: Callable[[Callable[[str, str], str]], list[str]], outputs: Sequence[tuple[str, str]],
              indent: str, prepare: Sequence[str] = ()) -> list[str]:
    """One step's loop over a block's neurons, chunk by chunk (:data:`CHUNK` neurons). Each output
    row is stored through a pointer ``o_<row>``: the row itself, or under ``stream`` a chunk buffer
    that :c:func:`snn_stream_out` copies out after the chunk (one loop serves both ways).

    Args:
        body: the loop body's lines for neuron ``i`` (``k`` within the chunk), given
            ``store(row, value)``, which returns the statement storing ``value`` to row ``row``.
        outputs: ``(row pointer, condition)`` of each output row the body stores to; the
            condition (a C expression, ``""`` for always) is the one the body stores under.
        indent: the indentation of the lines returned.
        prepare: lines run before the body's loop in each chunk (a loop of their own over the
            chunk's ``cl`` neurons ``c + k``), e.g. to fill a buffer the body reads.
    """
    lines = ["for (int64_t c = 0; c < len; c += SNN_CHUNK) {",
             "    const int64_t cl = len - c < SNN_CHUNK ? len - c : SNN_CHUNK;"]
    for row, condition in outputs:
        # the buffer when streaming, and when the row is absent (the body then stores nothing)
        buffered = f"stream || !({condition})" if condition else "stream"
        lines += [f"    real_t b_{row}[SNN_CHUNK];",
                  f"    real_t *restrict o_{row} = ({buffered}) ? b_{row} : {row} + c;"]
    lines += ["    " + line for line in prepare]
    lines += ["    for (int64_t k = 0; k < cl; ++k) {", "        const int64_t i = c + k;"]
    lines += ["        " + line for line in body(lambda row, value: f"o_{row}[k] = {value};")]
    lines += ["    }", "    if (stream) {"]
    for row, condition in outputs:
        copy = f"snn_stream_out({row} + c, b_{row}, cl);"
        lines.append("        " + (f"if ({condition}) {copy}" if condition else copy))
    lines += ["    }", "}"]
    return [indent + line for line in lines]


def _forward(plan: KernelPlan, r: _Renderer, layout: KernelLayout) -> list[str]:
    m, n_p = layout.states, layout.learnables
    fire = plan.fire_index
    forward_vars = {f"u_{s}" for s in plan.states} | {INPUT} | {f"p_{k}" for k in plan.learnables}
    reset_vars = {f"h_{s}" for s in plan.states} | {SPIKE} | {f"p_{k}" for k in plan.learnables}
    params = ["const int64_t T", "const int64_t N", "const int64_t n0", "const int64_t len",
              "const real_t *restrict x"]
    params += [f"const real_t *restrict init{i}" for i in range(m)]
    params += ["const real_t *restrict pp", "real_t *restrict spikes"]
    params += [f"real_t *restrict last{i}" for i in range(m)]
    params += [f"real_t *restrict seq{i}" for i in range(m)]
    params += [f"real_t *restrict saved{j}" for j in layout.saved]
    params += ["const int save", "const int store", "const int stream"]
    out = ["SNN_INLINE void snn_forward_block(" + ", ".join(params) + ") {"]
    out += [f"    const real_t p{k} = pp[{k}];" for k in range(n_p)]
    # the block's states live in its slice of the last-state outputs (no stack buffer)
    out += [f"    real_t *st{i} = last{i} + n0;" for i in range(m)]  # based on a restrict parameter
    out += ["    for (int64_t i = 0; i < len; ++i) {"]
    out += [f"        st{i}[i] = init{i}[n0 + i];" for i in range(m)]
    out += ["    }", "    for (int64_t t = 0; t < T; ++t) {", "        const int64_t row = t * N + n0;",
            "        const real_t *restrict xr = x + row;", "        real_t *restrict sr = spikes + row;"]
    out += [f"        real_t *restrict qr{i} = store ? seq{i} + row : NULL;" for i in range(m)]
    out += [f"        real_t *restrict hr{j} = save ? saved{j} + row : NULL;" for j in layout.saved]

    def body(store: Callable[[str, str], str]) -> list[str]:
        lines = [f"const real_t u{i} = st{i}[i];" for i in range(m)]
        lines.append("const real_t xv = xr[i];")
        lines += [f"const real_t h{i} = {r(plan.charge[i], forward_vars)};" for i in range(m)]
        lines.append(f"const real_t sv = (h{fire} >= THRESHOLD) ? ONE : ZERO;")
        lines += [f"const real_t v{i} = {r(plan.reset[i], reset_vars)};" for i in range(m)]
        lines += [f"st{i}[i] = v{i};" for i in range(m)]
        lines.append(store("sr", "sv"))
        lines += [f"if (store) {store(f'qr{i}', f'v{i}')}" for i in range(m)]
        lines += [f"if (save) {store(f'hr{j}', f'h{j}')}" for j in layout.saved]
        return lines

    outputs = [("sr", "")] + [(f"qr{i}", "store") for i in range(m)] + [(f"hr{j}", "save") for j in layout.saved]
    out += _row_loop(body, outputs, "        ")
    out += ["    }", "    if (stream) snn_stream_fence();", "}", ""]
    # the entry points: unpack the pointer table, run the blocks on the threads. save and store
    # are literal constants inside each parallel region (OpenMP outlines the region before
    # constants could propagate into it), so each variant's loop is free of branches.
    names = ["x"] + [f"init{i}" for i in range(m)] + ["pp", "spikes"] + [f"last{i}" for i in range(m)]
    names += [f"seq{i}" for i in range(m)] + [f"saved{j}" for j in layout.saved]
    unpack = []
    for index, name in enumerate(names):
        const = "const " if name == "x" or name.startswith("init") or name == "pp" else ""
        unpack.append(f"    {const}real_t *{name} = ({const}real_t *)ptrs[{index}];")
    body_lines: list[str] = []
    for save, store in ((1, 1), (1, 0), (0, 1), (0, 0)):
        call_args = ["T", "N", "b * block", "(N - b * block) < block ? (N - b * block) : block"]
        call_args += [*names, str(save), str(store), "stream"]
        body_lines += [f"static void snn_forward_{save}{store}(const int64_t T, const int64_t N, const int64_t block, "
                       "const int threads, const int stream, void *const *ptrs) {", *unpack,
                       "    const int64_t blocks = (N + block - 1) / block;",
                       "    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)",
                       "    for (int64_t b = 0; b < blocks; ++b) {",
                       "        snn_forward_block(" + ", ".join(call_args) + ");",
                       "    }", "}", ""]
    body_lines += [
        "SNN_EXPORT void snn_forward(const int64_t T, const int64_t N, const int64_t block, const int threads, "
        "const int save, const int store, const int stream, void *const *ptrs) {",
        "    if (save && store) snn_forward_11(T, N, block, threads, stream, ptrs);",
        "    else if (save) snn_forward_10(T, N, block, threads, stream, ptrs);",
        "    else if (store) snn_forward_01(T, N, block, threads, stream, ptrs);",
        "    else snn_forward_00(T, N, block, threads, stream, ptrs);",
        "}",
        "",
    ]
    return out + body_lines


def _backward(plan: KernelPlan, r: _Renderer, layout: KernelLayout) -> list[str]:
    m, n_p = layout.states, layout.learnables
    fire = plan.fire_index
    states, learnables = plan.states, plan.learnables
    p_vars = {f"p_{k}" for k in learnables}
    h_vars = {f"h_{states[j]}" for j in layout.saved}
    u_vars = {f"u_{states[i]}" for i in layout.initial_needed}
    x_vars = {INPUT} if plan.needs_input else set()
    step_vars = h_vars | {SPIKE} | p_vars
    charge_vars = h_vars | u_vars | x_vars | p_vars
    feeds = [any(plan.charge_u[j][i] is not None for j in range(m)) for i in range(m)]
    # charged values of the previous step that its reset reads (for the previous states)
    previous_h = sorted({
        j for i in layout.initial_needed for j in range(m) if f"h_{states[j]}" in variables(plan.reset[i])
    } | {fire})
    params = ["const int64_t T", "const int64_t N", "const int64_t n0", "const int64_t len", "const int64_t b"]
    params += [f"const real_t *restrict saved{j}" for j in layout.saved]
    if layout.save_input:
        params.append("const real_t *restrict xin")
    params += [f"const real_t *restrict init{i}" for i in layout.initial_needed]
    params += ["const real_t *restrict pp", "const real_t *restrict gs"]
    params += [f"const real_t *restrict gl{i}" for i in range(m)]
    params += [f"const real_t *restrict gq{i}" for i in range(m)]
    params += ["real_t *restrict gx"] + [f"real_t *restrict gu{i}" for i in range(m)]
    params += ["double *restrict partial", "const int stream", "const int has_gs"]
    params += [f"const int has_gl{i}" for i in range(m)] + [f"const int has_gq{i}" for i in range(m)]
    out = ["SNN_INLINE void snn_backward_block(" + ", ".join(params) + ") {"]
    out += [f"    const real_t p{k} = pp[{k}];" for k in range(n_p)]
    # the carried state gradients live in the block's slice of the initial-state gradients
    out += [f"    real_t *c{i} = gu{i} + n0;" for i in range(m)]  # based on a restrict parameter
    out += [f"    real_t a{k}[len];" for k in range(n_p)]
    out += [f"    double d{k}[len];" for k in range(n_p)]
    out += ["    const int any_gq = " + " || ".join(f"has_gq{i}" for i in range(m)) + ";"]
    out += ["    for (int64_t i = 0; i < len; ++i) {"]
    out += [f"        c{i}[i] = has_gl{i} ? gl{i}[n0 + i] : ZERO;" for i in range(m)]
    out += [f"        a{k}[i] = ZERO;" for k in range(n_p)]
    out += [f"        d{k}[i] = 0.0;" for k in range(n_p)]
    out += ["    }", "    for (int64_t t = T - 1; t >= 0; --t) {", "        const int64_t row = t * N + n0;",
            "        const int final_step = t == T - 1;"]
    for i in range(m):
        out.append(f"        const int pres{i} = final_step ? (has_gl{i} || has_gq{i}) : (has_gq{i} || {int(feeds[i])});")
    spike_terms = [f"(pres{i} && {int(plan.reset_s[i] is not None)})" for i in range(m)]
    out.append("        const int path = has_gs || " + " || ".join(spike_terms) + ";")
    out += [f"        const bits_t mpres{i} = pres{i} ? ~(bits_t)0 : 0;" for i in range(m)]
    out.append("        const bits_t mpath = path ? ~(bits_t)0 : 0;")
    out += ["        const real_t *restrict gsr = has_gs ? gs + row : snn_zeros;"]
    out += [f"        const real_t *restrict qr{i} = has_gq{i} ? gq{i} + row : snn_zeros;" for i in range(m)]
    out += [f"        const real_t *restrict hr{j} = saved{j} + row;" for j in layout.saved]
    if layout.save_input:
        out.append("        const real_t *restrict xr = xin + row;")
    out.append("        real_t *restrict gxr = gx + row;")

    def body(first: bool, with_gq: bool, store: Callable[[str, str], str]) -> list[str]:
        lines = [f"const real_t h{j} = hr{j}[i];" for j in layout.saved]
        lines.append(f"const real_t sv = (h{fire} >= THRESHOLD) ? ONE : ZERO;")
        lines.append("const real_t sg = b_sg[k];")
        if layout.initial_needed:
            if first:
                lines += [f"const real_t u{i} = init{i}[n0 + i];" for i in layout.initial_needed]
            else:
                lines += [f"const real_t hp{j} = hpr{j}[i];" for j in previous_h]
                lines.append(f"const real_t sp = (hp{fire} >= THRESHOLD) ? ONE : ZERO;")
                rename = {f"h_{states[j]}": f"hp{j}" for j in range(m)} | {SPIKE: "sp"}
                lines += [
                    f"const real_t u{i} = {r(plan.reset[i], {f'h_{states[j]}' for j in previous_h} | {SPIKE} | p_vars, rename)};"
                    for i in layout.initial_needed
                ]
        if layout.save_input:
            lines.append("const real_t xv = xr[i];")
        lines += [f"const real_t g{i} = c{i}[i]{f' + qr{i}[i]' if with_gq else ''};" for i in range(m)]
        spike = ["gsr[i]"] + [
            f"snn_keep(mpres{i}, g{i} * {r(e, step_vars)})" for i, e in _present(plan.reset_s)
        ]
        lines.append(f"const real_t gst = {' + '.join(spike)};")
        lines.append("const real_t gsg = snn_keep(mpath, gst * sg);")
        for j in range(m):
            terms = [
                f"snn_keep(mpres{i}, g{i} * {r(e, step_vars)})"
                for i, e in _present([plan.reset_h[i][j] for i in range(m)])
            ]
            if j == fire:
                terms.append("gsg")
            lines.append(f"const real_t gh{j} = {_sum(terms, 'ZERO')};")
        gx_terms = [f"gh{j} * {r(e, charge_vars)}" for j, e in _present(plan.charge_x)]
        lines.append(store("gxr", _sum(gx_terms, "ZERO")))
        for i in range(m):
            terms = [
                f"gh{j} * {r(e, charge_vars)}" for j, e in _present([plan.charge_u[j][i] for j in range(m)])
            ]
            lines.append(f"c{i}[i] = {_sum(terms, 'ZERO')};")
        for k in range(n_p):
            terms = [
                f"gh{j} * {r(e, charge_vars)}" for j, e in _present([plan.charge_p[j][k] for j in range(m)])
            ]
            terms += [
                f"snn_keep(mpres{i}, g{i} * {r(e, step_vars)})"
                for i, e in _present([plan.reset_p[i][k] for i in range(m)])
            ]
            if terms:
                lines.append(f"a{k}[i] += {' + '.join(terms)};")
        return lines

    # The surrogate gradient runs in a loop of its own over each chunk: its functions (exp, ...)
    # are calls into the vector math library, and a call inside the main loop would make the
    # compiler spill every value live across it.
    surrogate_loop = [
        "real_t b_sg[SNN_CHUNK];",
        "for (int64_t k = 0; k < cl; ++k) {",
        f"    const real_t zv = hr{fire}[c + k] - THRESHOLD;",
        f"    b_sg[k] = {r(plan.surrogate, {SURROGATE_INPUT})};",
        "}",
    ]

    def step_loops(first: bool, indent: str) -> list[str]:
        # without incoming state-sequence gradients (the usual case) the loop reads no zeros; the
        # first step (one of T) reads them either way
        if first:
            return _row_loop(lambda store: body(first, True, store), [("gxr", "")], indent, surrogate_loop)
        lines = [indent + "if (any_gq) {"]
        lines += _row_loop(lambda store: body(first, True, store), [("gxr", "")], indent + "    ", surrogate_loop)
        lines.append(indent + "} else {")
        lines += _row_loop(lambda store: body(first, False, store), [("gxr", "")], indent + "    ", surrogate_loop)
        lines.append(indent + "}")
        return lines

    if layout.initial_needed:
        out.append("        if (t > 0) {")
        out += [f"            const real_t *restrict hpr{j} = saved{j} + row - N;" for j in previous_h]
        out += step_loops(False, "            ")
        out.append("        } else {")
        out += step_loops(True, "            ")
        out.append("        }")
    else:
        out += step_loops(False, "        ")
    if n_p:
        out += ["        if ((T - 1 - t) % SNN_FLUSH == SNN_FLUSH - 1 || t == 0) {",
                "            for (int64_t i = 0; i < len; ++i) {"]
        for k in range(n_p):
            out += [f"                d{k}[i] += (double)a{k}[i];", f"                a{k}[i] = ZERO;"]
        out += ["            }", "        }"]
    out.append("    }")
    for k in range(n_p):
        out += ["    {", "        double total = 0.0;", f"        for (int64_t i = 0; i < len; ++i) total += d{k}[i];",
                f"        partial[b * {n_p} + {k}] = total;", "    }"]
    out += ["    if (stream) snn_stream_fence();", "}", ""]
    # the entry point
    names = [f"saved{j}" for j in layout.saved] + (["xin"] if layout.save_input else [])
    names += [f"init{i}" for i in layout.initial_needed] + ["pp", "gs"]
    names += [f"gl{i}" for i in range(m)] + [f"gq{i}" for i in range(m)]
    outputs = ["gx"] + [f"gu{i}" for i in range(m)]
    entry = ["SNN_EXPORT void snn_backward(const int64_t T, const int64_t N, const int64_t block, const int threads, "
             "const int stream, const int32_t *flags, void *const *ptrs) {"]
    for index, name in enumerate(names):
        entry.append(f"    const real_t *{name} = (const real_t *)ptrs[{index}];")
    for index, name in enumerate(outputs, start=len(names)):
        entry.append(f"    real_t *{name} = (real_t *)ptrs[{index}];")
    entry.append(f"    double *partial = (double *)ptrs[{len(names) + len(outputs)}];")
    entry.append(f"    double *dp = (double *)ptrs[{len(names) + len(outputs) + 1}];")
    flag_names = ["has_gs"] + [f"has_gl{i}" for i in range(m)] + [f"has_gq{i}" for i in range(m)]
    entry += [f"    const int {name} = flags[{index}] != 0;" for index, name in enumerate(flag_names)]
    call = ["T", "N", "b * block", "(N - b * block) < block ? (N - b * block) : block", "b"]
    entry += [
        "    const int64_t blocks = (N + block - 1) / block;",
        "    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)",
        "    for (int64_t b = 0; b < blocks; ++b) {",
        "        snn_backward_block(" + ", ".join([*call, *names, *outputs, "partial", "stream", *flag_names]) + ");",
        "    }",
    ]
    for k in range(n_p):
        entry += ["    {", "        double total = 0.0;",
                  f"        for (int64_t b = 0; b < blocks; ++b) total += partial[b * {n_p} + {k}];",
                  f"        dp[{k}] = total;", "    }"]
    if n_p == 0:
        entry += ["    (void)partial;", "    (void)dp;"]
    entry += ["}", ""]
    return out + entry


def generate_source(plan: KernelPlan, dtype: str) -> str:
    """The C source of ``plan`` for storage dtype ``dtype`` (``"float32"`` or ``"float64"``).

    Args:
        plan: the configuration's kernel plan (:func:`snn.models.kernel_plan`).
        dtype: a key of :data:`DIALECTS`.

    Returns:
        The source; its last function, ``snn_source_id()``, returns :func:`source_id` of
        everything before it.

    Raises:
        ValueError: an unknown dtype, or an expression that reads a variable the plan does not
            provide where it is used (a plan that breaks the contract).
    """
    if dtype not in DIALECTS:
        raise ValueError(f"dtype: expected one of {tuple(DIALECTS)}, got {dtype!r}")
    dialect, real = DIALECTS[dtype]
    renderer = _Renderer(plan, dialect)
    layout = layout_of(plan)
    lines = _prelude(real, dialect, plan) + [""]
    lines += _forward(plan, renderer, layout)
    lines += _backward(plan, renderer, layout)
    body = "\n".join(lines) + "\n"
    ident = source_id(body)
    return body + f'SNN_EXPORT const char *snn_source_id(void) {{ return "{ident}"; }}\n'
