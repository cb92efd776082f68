"""The body of the generated backward kernel (see :mod:`snn_cupy.templates` for the math).

:class:`BackwardBuilder` lowers a plan's backward coefficients once and writes the kernel body
for each memory layout. Every coefficient that is ``None`` in the plan leaves no code; every
gradient carries a presence flag (``has_*``): a term is added only when its gradient arrived
(:c:func:`snn_add`), as autograd adds only the gradients that exist. The flags are the same for
every thread of a launch, so they cost no divergence.
"""

from __future__ import annotations

from snn.expr import Expr
from snn.models import INPUT, SPIKE, KernelPlan
from snn_cupy._codegen import BLOCK_SIZE, Layout, Lines
from snn_cupy._lowering import (
    Constants,
    exact_for_c,
    inline_charges,
    plan_identifiers,
    read_learnables,
    render_c,
    used_variables,
)

__all__ = ["BackwardBuilder"]

Row = list[Expr | None]


class BackwardBuilder:
    """The backward kernel of one plan: pointer parameters and body.

    Args:
        plan: the kernel plan.

    Raises:
        ValueError: the plan's backward reads a charged state it does not save, a previous
            state it does not rebuild, or the input without a way to get it back.
    """

    def __init__(self, plan: KernelPlan) -> None:
        self.plan = plan
        self.names = plan_identifiers(plan)
        self.constants = Constants(plan, self.names)
        self.m = len(plan.states)
        self.n_p = len(plan.learnables)
        saved = plan.saved_states

        def lower(e: Expr | None) -> Expr | None:
            return None if e is None else self.constants.lift(exact_for_c(inline_charges(e, plan, saved)))

        m, n_p = self.m, self.n_p
        self.rs: Row = [lower(plan.reset_s[i]) for i in range(m)]
        self.rh: list[Row] = [[lower(plan.reset_h[i][j]) for j in range(m)] for i in range(m)]
        self.rp: list[Row] = [[lower(plan.reset_p[i][k]) for k in range(n_p)] for i in range(m)]
        self.cx: Row = [lower(plan.charge_x[j]) for j in range(m)]
        self.cu: list[Row] = [[lower(plan.charge_u[j][i]) for i in range(m)] for j in range(m)]
        self.cp: list[Row] = [[lower(plan.charge_p[j][k]) for k in range(n_p)] for j in range(m)]
        coefficients = [*self.rs, *(e for r in self.rh for e in r), *(e for r in self.rp for e in r), *self.cx,
                        *(e for r in self.cu for e in r), *(e for r in self.cp for e in r)]
        used = used_variables(coefficients)
        if INPUT in used and not plan.save_input:
            raise ValueError(f"{plan.model.name}: the backward pass reads x, which the plan does not save")
        self.previous = {i: lower(plan.reset[i]) for i in plan.initial_states_needed}
        self.lane_vars = used
        self.previous_vars = used_variables(self.previous.values())
        for name in (used | self.previous_vars):
            if name.startswith("h_") and plan.states.index(name[2:]) not in saved:
                raise ValueError(f"{plan.model.name}: the backward pass reads {name}, which the plan does not save")
            if name.startswith("u_") and plan.states.index(name[2:]) not in self.previous:
                raise ValueError(f"{plan.model.name}: the backward pass reads {name}, which the plan does not rebuild")
        # which gradients exist at all: gS_i feeds the spike, the charged states or parameters
        self.has_gs_state = [
            self.rs[i] is not None or any(e is not None for e in self.rh[i]) or any(e is not None for e in self.rp[i])
            for i in range(m)
        ]
        self.has_gh = [
            j == plan.fire_index or any(self.rh[i][j] is not None and self.has_gs_state[i] for i in range(m))
            for j in range(m)
        ]
        self.carries = [any(self.cu[j][i] is not None and self.has_gh[j] for j in range(m)) for i in range(m)]
        self.used_parameters = used | self.previous_vars | self.constants.parameters_used()

    def params(self) -> list[tuple[str, str, str]]:
        """``(name, kind, const)`` of every pointer argument (see :func:`snn_cupy.templates._assemble`)."""
        plan, m, n_p = self.plan, self.m, self.n_p
        params = [("grad_spike_seq", "storage", "const ")]
        params += [(f"grad_seq{i}", "storage", "const ") for i in range(m)]
        params += [(f"grad_last{i}", "storage", "const ") for i in range(m)]
        params += [(f"saved_h{j}", "saved", "const ") for j in plan.saved_states]
        if plan.save_input:
            params.append(("x_seq", "storage", "const "))
        params += [(f"init{i}", "storage", "const ") for i in plan.initial_states_needed]
        params += [(f"learn{k}", "float", "const ") for k in range(n_p)]
        params.append(("grad_x_seq", "storage", ""))
        params += [(f"grad_init{i}", "storage", "") for i in range(m)]
        params += [(f"grad_learn{k}", "float", "") for k in range(n_p)]
        return params

    def _r(self, e: Expr) -> str:
        return render_c(e, self.names)

    def body(self, layout: Layout, surrogate: str, theta: str) -> str:
        """The kernel body for ``layout`` (``surrogate``: the device function, ``theta``: the
        threshold literal)."""
        plan, m, n_p = self.plan, self.m, self.n_p
        saved = plan.saved_states
        c = Lines()
        c.open("")
        c("const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;")
        read_learnables(plan, self.used_parameters, c)
        c(*self.constants.declarations(""))
        c(*[f"float acc{k} = 0.0f;" for k in range(n_p)])
        c.open("if (i < n)")
        c("const bool has_gs = grad_spike_seq != 0;")
        for i in range(m):
            c(f"const bool has_gv{i} = grad_seq{i} != 0;", f"const bool has_gl{i} = grad_last{i} != 0;")
            c(f"float gl{i}[VEC] = {{}};")
            c.open(f"if (has_gl{i})")
            c(f"snn_load(grad_last{i}, i, gl{i});")
            c.close()
        for i in range(m):
            if self.carries[i]:
                c(f"float carry{i}[VEC] = {{}};", f"bool has_carry{i} = false;")
        c("long long idx = (long long)(steps - 1) * n + i;")
        for j in saved:
            c(f"float hc{j}[VEC];", f"snn_load(saved_h{j}, idx, hc{j});")
        c.open("for (int t = steps - 1; t >= 0; --t, idx -= n)")
        self._previous_step(c, theta)
        c("float gs[VEC] = {};")
        c.open("if (has_gs)")
        c("snn_load(grad_spike_seq, idx, gs);")
        c.close()
        for i in range(m):
            c(f"float gv{i}[VEC] = {{}};")
            c.open(f"if (has_gv{i})")
            c(f"snn_load(grad_seq{i}, idx, gv{i});")
            c.close()
        if INPUT in self.lane_vars and plan.save_input:
            c("float xs[VEC];", "snn_load(x_seq, idx, xs);")
        c("float gx[VEC];")
        c(*[f"bool next_carry{i} = false;" for i in range(m) if self.carries[i]])
        c.lanes()
        self._lane(c, surrogate, theta)
        c.close()
        c(*[f"has_carry{i} = next_carry{i};" for i in range(m) if self.carries[i]])
        c.open("if (grad_x_seq != 0)")
        c("snn_store(grad_x_seq, idx, gx);")
        c.close()
        if saved:
            c.open("if (t > 0)")
            c.lanes()
            c(*[f"hc{j}[lane] = hp{j}[lane];" for j in saved])
            c.close()
            c.close()
        c.close()  # time loop
        for i in range(m):
            c.open(f"if (grad_init{i} != 0)")
            c(f"float out{i}[VEC] = {{}};")
            if self.carries[i]:
                c.open(f"if (has_carry{i})")
                c.lanes()
                c(f"out{i}[lane] = carry{i}[lane];")
                c.close()
                c.close()
            c(f"snn_store(grad_init{i}, i, out{i});")
            c.close()
        c.close()  # if (i < n)
        if n_p:
            self._reduce(c)
        c.close()
        return c.text(layout.vec)

    def _previous_step(self, c: Lines, theta: str) -> None:
        """Load the step before's saved ``h`` (``hp``) and rebuild the previous states ``up``."""
        plan, saved = self.plan, self.plan.saved_states
        c(*[f"float hp{j}[VEC] = {{}};" for j in saved])
        c(*[f"float up{i}[VEC];" for i in self.previous])
        c.open("if (t > 0)")
        c(*[f"snn_load(saved_h{j}, idx - n, hp{j});" for j in saved])
        if self.previous:
            c.lanes()
            for j in saved:
                if f"h_{plan.states[j]}" in self.previous_vars:
                    c(f"const float h{j} = hp{j}[lane];")
            if SPIKE in self.previous_vars:
                c(f"const float spk = hp{plan.fire_index}[lane] >= {theta} ? 1.0f : 0.0f;")
            c(*[f"up{i}[lane] = {self._r(e)};" for i, e in self.previous.items() if e is not None])
            c.close()
        c.close()
        if self.previous:
            c.open("else")
            c(*[f"snn_load(init{i}, i, up{i});" for i in self.previous])
            c.close()

    def _lane(self, c: Lines, surrogate: str, theta: str) -> None:
        """One neuron of one step: the gradients of the plan (see the module docstring)."""
        plan, m, n_p = self.plan, self.m, self.n_p
        states, fire, v = plan.states, plan.fire_index, self.lane_vars
        for j in plan.saved_states:
            if j == fire or f"h_{states[j]}" in v:
                c(f"const float h{j} = hc{j}[lane];")
        for i in self.previous:
            if f"u_{states[i]}" in v:
                c(f"const float u{i} = up{i}[lane];")
        if INPUT in v:
            c("const float xin = xs[lane];")
        if SPIKE in v:
            c(f"const float spk = h{fire} >= {theta} ? 1.0f : 0.0f;")
        for i in range(m):
            if not self.has_gs_state[i]:
                continue
            c(f"float gS{i} = 0.0f;", f"bool has_gS{i} = false;")
            if self.carries[i]:
                c.open("if (t < steps - 1)")
                c.open(f"if (has_carry{i})")
                c(f"gS{i} = carry{i}[lane];", f"has_gS{i} = true;")
                c.close()
                c.close()
                c.open(f"else if (has_gl{i})")
            else:
                c.open(f"if (t == steps - 1 && has_gl{i})")
            c(f"gS{i} = gl{i}[lane];", f"has_gS{i} = true;")
            c.close()
            c.open(f"if (has_gv{i})")
            c(f"snn_add(gS{i}, has_gS{i}, gv{i}[lane]);")
            c.close()
        c("float gst = gs[lane];", "bool has_gst = has_gs;")
        for i in range(m):
            if (rs := self.rs[i]) is not None:
                self._term(c, "gst", "has_gst", f"gS{i}", rs)
        for j in range(m):
            if not self.has_gh[j]:
                continue
            c(f"float gH{j} = 0.0f;", f"bool has_gH{j} = false;")
            for i in range(m):
                if (rh := self.rh[i][j]) is not None and self.has_gs_state[i]:
                    self._term(c, f"gH{j}", f"has_gH{j}", f"gS{i}", rh)
            if j == fire:
                c.open("if (has_gst)")
                c(f"snn_add(gH{j}, has_gH{j}, gst * {surrogate}(h{fire} - {theta}));")
                c.close()
        x_terms = [(j, cx) for j in range(m) if (cx := self.cx[j]) is not None and self.has_gh[j]]
        if x_terms:
            c("float gxl = 0.0f;", "bool has_gx = false;")
            for j, cx in x_terms:
                self._term(c, "gxl", "has_gx", f"gH{j}", cx)
            c("gx[lane] = gxl;")
        else:
            c("gx[lane] = 0.0f;")
        for i in range(m):
            if not self.carries[i]:
                continue
            c(f"float cr{i} = 0.0f;", f"bool has_cr{i} = false;")
            for j in range(m):
                if (cu := self.cu[j][i]) is not None and self.has_gh[j]:
                    self._term(c, f"cr{i}", f"has_cr{i}", f"gH{j}", cu)
            c(f"carry{i}[lane] = cr{i};", f"next_carry{i} = has_cr{i};")
        for k in range(n_p):
            for j in range(m):
                if (cp := self.cp[j][k]) is not None and self.has_gh[j]:
                    c.open(f"if (has_gH{j})")
                    c(f"acc{k} += gH{j} * {self._r(cp)};")
                    c.close()
            for i in range(m):
                if (rp := self.rp[i][k]) is not None and self.has_gs_state[i]:
                    c.open(f"if (has_gS{i})")
                    c(f"acc{k} += gS{i} * {self._r(rp)};")
                    c.close()

    def _term(self, c: Lines, target: str, flag: str, gradient: str, coefficient: Expr) -> None:
        """``target += gradient * coefficient`` when ``gradient`` arrived."""
        c.open(f"if (has_{gradient})")
        c(f"snn_add({target}, {flag}, {gradient} * {self._r(coefficient)});")
        c.close()

    def _reduce(self, c: Lines) -> None:
        """Per-block tree sums of the parameter gradients into ``grad_learn<k>[blockIdx.x]``."""
        c(f"__shared__ float snn_partial[{BLOCK_SIZE}];")
        for k in range(self.n_p):
            c.open(f"if (grad_learn{k} != 0)")
            c(f"snn_partial[threadIdx.x] = acc{k};", "__syncthreads();")
            c.open("for (unsigned int stride = blockDim.x >> 1; stride > 0; stride >>= 1)")
            c.open("if (threadIdx.x < stride)")
            c("snn_partial[threadIdx.x] += snn_partial[threadIdx.x + stride];")
            c.close()
            c("__syncthreads();")
            c.close()
            c.open("if (threadIdx.x == 0)")
            c(f"grad_learn{k}[blockIdx.x] = snn_partial[0];")
            c.close()
            c("__syncthreads();")
            c.close()
