"""CUDA C of the multi-step kernels, generated from any neuron model's kernel plan.

One forward and one backward kernel shape serve every model (:class:`snn.models.KernelPlan`);
the plan's expressions fill them in, rendered by :func:`snn.expr.render` (see
:mod:`snn_cupy._lowering`). A thread owns one neuron (two for the float16 pair layout) and loops
over time with every state in float32 registers.

Forward (``fwd_train`` / ``fwd_infer``), per step: ``h_i = charge_i`` for every state (a later
state's charge reads the earlier states' ``h`` registers), ``s = h_fire >= threshold``,
``v_i = reset_i``; stores the spikes, the post-reset states when asked (null pointers
otherwise) and, in training, the charged states the plan saves (float32).

Backward, newest step first, with the plan's coefficients (``None`` ones leave no code):

- previous states ``u_i`` (those the plan reads) are recomputed from the step before's saved
  ``h`` and spike, or read from the initial states at ``t = 0``; the input ``x`` is read back
  (saved when the plan's coefficients read it);
- ``gS_i`` (gradient of post-reset state ``i``) = carried gradient from the next step, or the
  last state's gradient at ``t = T - 1``, plus the state sequence's gradient;
- ``gs_total = gs + sum_i gS_i reset_s[i]``; ``gH_j = sum_i gS_i reset_h[i][j]`` plus
  ``gs_total sg(h_fire - threshold)`` for the firing state;
- ``dL/dx = sum_j gH_j charge_x[j]``; carried ``sum_j gH_j charge_u[j][i]``; learnable
  parameters accumulate ``gH_j charge_p[j][k] + gS_i reset_p[i][k]`` per thread, reduced per
  block in shared memory (no atomics; torch adds the block sums).

A gradient that does not arrive (a null upstream pointer, a path the plan does not have) is
skipped, never added as zero, so NaN and infinities propagate exactly as in the torch backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from snn.expr import Expr
from snn.models import INPUT, SURROGATE_INPUT, KernelPlan
from snn_cupy._backward import BackwardBuilder
from snn_cupy._codegen import BLOCK_SIZE, PREAMBLE, Layout, Lines, entry_name, layouts_for, literal
from snn_cupy._lowering import (
    Constants,
    exact_for_c,
    inline_charges,
    plan_identifiers,
    read_learnables,
    render_c,
    used_variables,
)

__all__ = ["KernelSource", "surrogate_body", "surrogate_function", "forward_source", "backward_source"]


@dataclass(frozen=True)
class KernelSource:
    """One compilation unit.

    Attributes:
        name: the module name (fixed words plus a hash of the source).
        source: the complete CUDA C source.
        entries: ``(entry-point name, neurons per thread)`` for each layout.
        params: the names of the pointer arguments, in order; every entry point takes them,
            then ``long long n`` (threads) and ``int steps``.
    """

    name: str
    source: str
    entries: tuple[tuple[str, int], ...]
    params: tuple[str, ...]

    def entry(self, vec: int) -> str:
        """The entry-point name for ``vec`` neurons per thread.

        Raises:
            ValueError: no such layout in this source.
        """
        for name, width in self.entries:
            if width == vec:
                return name
        raise ValueError(f"vec: this source has layouts {[w for _, w in self.entries]}, got {vec!r}")


def surrogate_body(expr: Expr) -> str:
    """A surrogate derivative (an expression of ``z``) as a float32 CUDA expression of ``x``."""
    return render_c(exact_for_c(expr), {SURROGATE_INPUT: "x"})


def surrogate_function(body: str) -> tuple[str, str]:
    """``(name, code)``: a guarded ``__device__`` function returning ``body`` (an expression of ``x``)."""
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    name = f"snn_surrogate_{digest}"
    guard = f"SNN_SURROGATE_{digest.upper()}"
    code = (
        f"#ifndef {guard}\n#define {guard}\n"
        f"__device__ __forceinline__ float {name}(const float x) {{\n    return {body};\n}}\n#endif\n"
    )
    return name, code


def _signature(entry: str, params: Sequence[tuple[str, str]]) -> list[str]:
    args = [f"    {ctype} __restrict__ {name}," for name, ctype in params]
    return [f'extern "C" __global__ void __launch_bounds__({BLOCK_SIZE}) {entry}(', *args,
            "    const long long n,", "    const int steps)"]


def _assemble(role: str, dtype_tag: str, header: str, params: list[tuple[str, str, str]],
              body: Callable[[Any], str]) -> KernelSource:
    """Fill one entry point per layout under a name derived from the text.

    ``params`` are ``(name, kind, constness)`` with kind ``storage``, ``saved`` or ``float``;
    ``body(layout)`` returns the function body (with ``VEC`` for the neurons per thread).
    """
    layouts = layouts_for(dtype_tag)
    bodies = []
    for layout in layouts:
        types = {"storage": layout.storage, "saved": layout.saved, "float": "float"}
        typed = [(name, f"{const}{types[kind]}*") for name, kind, const in params]
        bodies.append((layout, typed, body(layout)))
    draft = PREAMBLE + header + "".join("\n".join(_signature("ENTRY", t)) + b for _, t, b in bodies)
    base = entry_name(role, dtype_tag, draft)
    text = [PREAMBLE, header]
    entries = []
    for layout, typed, code in bodies:
        entry = f"{base}_{layout.suffix}"
        text.append("\n".join(_signature(entry, typed)) + "\n" + code)
        entries.append((entry, layout.vec))
    return KernelSource(base, "".join(text), tuple(entries), tuple(name for name, _, _ in params))


def forward_source(plan: KernelPlan, dtype_tag: str, train: bool) -> KernelSource:
    """The forward kernel of ``plan`` (``fwd_train`` saves the plan's charged states).

    Raises:
        ValueError: a number that cannot be placed in source (non-finite in float32), or an
            unknown dtype tag.
    """
    names = plan_identifiers(plan)
    constants = Constants(plan, names)
    m = len(plan.states)
    charges = [constants.lift(exact_for_c(inline_charges(plan.charge[i], plan, range(i)))) for i in range(m)]
    resets = [constants.lift(exact_for_c(plan.reset[i])) for i in range(m)]
    used = used_variables([*charges, *resets]) | constants.parameters_used()
    theta = literal(plan.threshold, "threshold")
    fire = plan.fire_index
    saved = plan.saved_states if train else ()
    params = [("x_seq", "storage", "const ")]
    params += [(f"init{i}", "storage", "const ") for i in range(m)]
    params += [(f"learn{k}", "float", "const ") for k in range(len(plan.learnables))]
    params += [("spike_seq", "storage", "")]
    params += [(f"saved_h{j}", "saved", "") for j in saved]
    params += [(f"seq{i}", "storage", "") for i in range(m)]
    params += [(f"last{i}", "storage", "") for i in range(m)]

    def body(layout: Layout) -> str:
        c = Lines()
        c.open("")
        c("const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;")
        c.open("if (i >= n)")
        c("return;")
        c.close()
        read_learnables(plan, used, c)
        c(*constants.declarations(""))
        for i in range(m):
            c(f"float st{i}[VEC];", f"snn_load(init{i}, i, st{i});")
        c("long long idx = i;")
        c.open("for (int t = 0; t < steps; ++t, idx += n)")
        c("float xs[VEC];", "snn_load(x_seq, idx, xs);", "float spikes[VEC];")
        c(*[f"float hs{j}[VEC];" for j in saved])
        c.lanes()
        if INPUT in used:
            c("const float xin = xs[lane];")
        for i, state in enumerate(plan.states):
            if f"u_{state}" in used:
                c(f"const float u{i} = st{i}[lane];")
        for i in range(m):
            c(f"const float h{i} = {render_c(charges[i], names)};")
        c(f"const float spk = h{fire} >= {theta} ? 1.0f : 0.0f;")
        for i in range(m):
            c(f"st{i}[lane] = {render_c(resets[i], names)};")
        c("spikes[lane] = spk;", *[f"hs{j}[lane] = h{j};" for j in saved])
        c.close()
        c("snn_store(spike_seq, idx, spikes);", *[f"snn_store(saved_h{j}, idx, hs{j});" for j in saved])
        for i in range(m):
            c.open(f"if (seq{i} != 0)")
            c(f"snn_store(seq{i}, idx, st{i});")
            c.close()
        c.close()
        c(*[f"snn_store(last{i}, i, st{i});" for i in range(m)])
        c.close()
        return c.text(layout.vec)

    return _assemble("fwd_train" if train else "fwd_infer", dtype_tag, "", params, body)


def backward_source(plan: KernelPlan, dtype_tag: str) -> KernelSource:
    """The backward kernel of ``plan`` (see the module docstring).

    Raises:
        ValueError: a number that cannot be placed in source, an unknown dtype tag, or a plan
            whose backward reads a value it does not keep (an inconsistent plan).
    """
    builder = BackwardBuilder(plan)
    sname, scode = surrogate_function(surrogate_body(plan.surrogate))
    theta = literal(plan.threshold, "threshold")
    return _assemble("bwd", dtype_tag, scode, builder.params(), lambda layout: builder.body(layout, sname, theta))

