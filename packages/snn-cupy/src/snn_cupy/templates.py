"""CUDA C templates of the multi-step IF, LIF and PLIF kernels.

One forward template (``fwd_train`` saves the charged potentials, ``fwd_infer`` does not) and one
backward template serve the three neuron kinds; each kind contributes only its charge equation
and its derivatives ``dh/dx`` and ``dh/du``. Every source defines one entry point per storage
layout of its dtype (:data:`snn_cupy._codegen.LAYOUTS`): ``<name>_v1`` (one neuron per thread)
and, for float16, ``<name>_v2`` (two neurons per thread, 32-bit accesses, even neuron counts).

The arithmetic follows :mod:`snn.backends.torch_kernels` (the reference) operation for
operation, so that NaN and infinities come out exactly as there: the potential is kept in the
frame ``u = v - vr`` with the threshold ``theta = v_threshold - vr``; the charge is ``u + x``
(IF), ``u + k (x - u)`` (``decay_input``) or ``u - k u + x``; the hard reset is
``h (1 - s)`` (``-inf`` stays ``-inf``, ``+inf`` spikes and becomes NaN), the soft one
``h - v_threshold s``. Backward accumulates ``dL/dh`` in the reference's order, skipping the
terms of absent upstream gradients (so ``0 * inf`` never turns into a NaN the reference does not
have). All math is float32. Signatures are the same for every kind (unused pointers are passed
null):

- forward: ``(x_seq, v_init, decay, spike_seq, h_seq, v_seq, v_last, n, steps)``;
- backward: ``(grad_spike_seq, grad_v_seq, grad_v_last, h_seq, v_init, decay, grad_x_seq,
  grad_v_init, grad_decay_partial, n, steps)``;

where ``n`` counts memory accesses per step (neurons, or neuron pairs for ``_v2``), ``decay`` is
a device pointer to PLIF's float32 ``sigmoid(w)``, and ``grad_decay_partial`` receives one float32
per block (PLIF; summed by the caller: deterministic, no atomics). ``grad_spike_seq``,
``grad_v_seq``, ``grad_v_last``, ``v_seq``, ``grad_x_seq`` and ``grad_v_init`` may be null.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from string import Template

from snn_cupy._codegen import BLOCK_SIZE, PREAMBLE, Layout, entry_name, layouts_for, literal

__all__ = ["ForwardSpec", "BackwardSpec", "KernelSource", "forward_source", "backward_source"]


@dataclass(frozen=True)
class ForwardSpec:
    """Everything that shapes a forward kernel's source.

    Attributes:
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        hard_reset: hard (``True``) or soft reset.
        v_threshold: firing threshold.
        v_reset: reset potential (0.0 for soft reset).
        decay_input: LIF / PLIF: input scaled by the decay (``False`` for IF).
        tau: LIF time constant (``None`` otherwise).
        dtype_tag: ``"f32"`` or ``"f16"``.
        train: save the charged potentials for backward.
    """

    kind: str
    hard_reset: bool
    v_threshold: float
    v_reset: float
    decay_input: bool
    tau: float | None
    dtype_tag: str
    train: bool


@dataclass(frozen=True)
class BackwardSpec:
    """Everything that shapes a backward kernel's source.

    Attributes:
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        hard_reset: hard (``True``) or soft reset.
        v_threshold: firing threshold.
        v_reset: reset potential (0.0 for soft reset).
        detach_reset: the reset is cut from the gradient.
        decay_input: LIF / PLIF: input scaled by the decay (``False`` for IF).
        tau: LIF time constant (``None`` otherwise).
        surrogate_body: the surrogate derivative as a float32 CUDA expression of ``x``.
        dtype_tag: ``"f32"`` or ``"f16"``.
    """

    kind: str
    hard_reset: bool
    v_threshold: float
    v_reset: float
    detach_reset: bool
    decay_input: bool
    tau: float | None
    surrogate_body: str
    dtype_tag: str


@dataclass(frozen=True)
class KernelSource:
    """One compilation unit.

    Attributes:
        name: the module name (fixed identifiers plus a hash of the source).
        source: the complete CUDA C source.
        entries: ``(entry-point name, neurons per thread)`` for each layout.
    """

    name: str
    source: str
    entries: tuple[tuple[str, int], ...]

    def entry(self, vec: int) -> str:
        """The entry-point name for ``vec`` neurons per thread.

        Raises:
            ValueError: no such layout in this source.
        """
        for name, width in self.entries:
            if width == vec:
                return name
        raise ValueError(f"vec: this source has layouts {[w for _, w in self.entries]}, got {vec!r}")


_FORWARD = Template(r"""
extern "C" __global__ void __launch_bounds__($block) $entry(
    const $storage* __restrict__ x_seq,
    const $storage* __restrict__ v_init,
    const float* __restrict__ decay,
    $storage* __restrict__ spike_seq,
    $storage* __restrict__ h_seq,
    $storage* __restrict__ v_seq,
    $storage* __restrict__ v_last,
    const long long n,
    const int steps)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
$prologue
    float u[$vec];
    snn_load(v_init, i, u);
$shift_in
    long long idx = i;
    for (int t = 0; t < steps; ++t, idx += n) {
        float x[$vec];
        float h[$vec];
        float s[$vec];
        float v[$vec];
        snn_load(x_seq, idx, x);
#pragma unroll
        for (int j = 0; j < $vec; ++j) {
            $charge
            s[j] = h[j] >= $theta ? 1.0f : 0.0f;
            u[j] = $reset;
            v[j] = $shift_out;
        }
        snn_store(spike_seq, idx, s);
$store_h
        if (v_seq != 0) {
            snn_store(v_seq, idx, v);
        }
    }
    float v[$vec];
#pragma unroll
    for (int j = 0; j < $vec; ++j) {
        v[j] = $shift_out;
    }
    snn_store(v_last, i, v);
}
""")

_BACKWARD = Template(r"""
extern "C" __global__ void __launch_bounds__($block) $entry(
    const $storage* __restrict__ grad_spike_seq,
    const $storage* __restrict__ grad_v_seq,
    const $storage* __restrict__ grad_v_last,
    const $storage* __restrict__ h_seq,
    const $storage* __restrict__ v_init,
    const float* __restrict__ decay,
    $storage* __restrict__ grad_x_seq,
    $storage* __restrict__ grad_v_init,
    float* __restrict__ grad_decay_partial,
    const long long n,
    const int steps)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
$prologue
    if (i < n) {
        float gu[$vec];
        if (grad_v_last != 0) {
            snn_load(grad_v_last, i, gu);
        } else {
#pragma unroll
            for (int j = 0; j < $vec; ++j) {
                gu[j] = 0.0f;
            }
        }
        long long idx = (long long)(steps - 1) * n + i;
$plif_init
        for (int t = steps - 1; t >= 0; --t, idx -= n) {
            float h[$vec];
            float gs[$vec];
            float gv[$vec];
            float gx[$vec];
$load_h
            if (grad_spike_seq != 0) {
                snn_load(grad_spike_seq, idx, gs);
            } else {
#pragma unroll
                for (int j = 0; j < $vec; ++j) {
                    gs[j] = 0.0f;
                }
            }
            if (grad_v_seq != 0) {
                snn_load(grad_v_seq, idx, gv);
            } else {
#pragma unroll
                for (int j = 0; j < $vec; ++j) {
                    gv[j] = 0.0f;
                }
            }
            /* the carried leak * dL/dh of step t + 1, or dL/dv_last; absent at the last step without one */
            const bool has_gu = t < steps - 1 || grad_v_last != 0;
#pragma unroll
            for (int j = 0; j < $vec; ++j) {
$spike
                const float sg = $surrogate(h[j] - $theta);
                const float dv_dh = $dv_dh;
                float g_h = grad_spike_seq != 0 ? gs[j] * sg : 0.0f;
                if (grad_v_seq != 0) {
                    g_h = g_h + gv[j] * dv_dh;
                }
                if (has_gu) {
                    g_h = g_h + gu[j] * dv_dh;
                }
                gx[j] = $grad_x;
                gu[j] = $grad_u;
$plif_accumulate
            }
            if (grad_x_seq != 0) {
                snn_store(grad_x_seq, idx, gx);
            }
        }
        if (grad_v_init != 0) {
            snn_store(grad_v_init, i, gu);
        }
    }
$plif_reduce
}
""")

_PLIF_INIT = r"""        float h_next[$vec];
        snn_load(h_seq, idx, h_next);"""

_PLIF_LOAD_H = r"""#pragma unroll
            for (int j = 0; j < $vec; ++j) {
                h[j] = h_next[j];
            }
            float u_prev[$vec];
            if (t > 0) {
                snn_load(h_seq, idx - n, h_next);
#pragma unroll
                for (int j = 0; j < $vec; ++j) {
                    const float s_prev = h_next[j] >= $theta ? 1.0f : 0.0f;
                    u_prev[j] = $reset_prev;
                }
            } else {
                snn_load(v_init, i, u_prev);
$shift_in_prev
            }"""

_PLIF_REDUCE = r"""    __shared__ float snn_partial[$block];
    snn_partial[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int stride = blockDim.x >> 1; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            snn_partial[threadIdx.x] += snn_partial[threadIdx.x + stride];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        grad_decay_partial[blockIdx.x] = $finish;
    }"""


def _check_kind(kind: str) -> None:
    if kind not in ("if", "lif", "plif"):
        raise ValueError(f"kind: expected 'if', 'lif' or 'plif', got {kind!r}")


def _decay_terms(kind: str, tau: float | None) -> tuple[str, str]:
    """``(k, 1 - k)`` as C expressions: literals for LIF, the runtime decay for PLIF."""
    if kind == "lif":
        if tau is None or not isinstance(tau, (int, float)) or isinstance(tau, bool) or not 1.0 < tau < math.inf:
            raise ValueError(f"tau: expected a finite number > 1 for a LIF neuron, got {tau!r}")
        k = literal(1.0 / float(tau), "tau")
        return k, literal(1.0 - 1.0 / float(tau), "tau")
    return "k", "leak"


def _charge(kind: str, decay_input: bool, tau: float | None) -> str:
    """The charge statement, in the reference's order of operations (see the module docstring)."""
    if kind == "if":
        return "h[j] = u[j] + x[j];"
    k, _ = _decay_terms(kind, tau)
    if decay_input:
        return f"h[j] = u[j] + {k} * (x[j] - u[j]);"
    return f"h[j] = (u[j] - {k} * u[j]) + x[j];"


def _reset(hard: bool, h: str, s: str, vth: str) -> str:
    """The post-reset shifted potential: hard ``h (1 - s)``, soft ``h - v_threshold s``."""
    return f"{h} * (1.0f - {s})" if hard else f"{h} - {vth} * {s}"


def _shifts(v_reset: float, hard: bool) -> tuple[str, str, str]:
    """``(vr literal, u from v, v from u)`` with ``{}`` for the variable."""
    vr = literal(v_reset if hard else 0.0, "v_reset")
    if vr == "0.0f":
        return vr, "{}", "{}"
    return vr, "{} - " + vr, "{} + " + vr


def _shift_loop(shift: str, variable: str, vec: str, indent: str) -> str:
    """A loop applying ``shift`` to ``variable[j]``; empty when the shift is the identity."""
    if shift == "{}":
        return ""
    target = f"{variable}[j]"
    return (
        f"{indent}#pragma unroll\n{indent}for (int j = 0; j < {vec}; ++j) {{\n"
        f"{indent}    {target} = {shift.format(target)};\n{indent}}}"
    )


def _layout_entries(base: str, dtype_tag: str) -> list[tuple[str, Layout]]:
    return [(f"{base}_{layout.suffix}", layout) for layout in layouts_for(dtype_tag)]


def _assemble(kind: str, role: str, dtype_tag: str, bodies: list[tuple[Template, dict[str, str]]],
              header: str = "") -> KernelSource:
    """Fill the per-layout bodies under a name derived from their text."""
    draft = PREAMBLE + header + "".join(t.substitute(entry="ENTRY", **parts) for t, parts in bodies)
    base = entry_name(kind, role, dtype_tag, draft)
    text = [PREAMBLE, header]
    entries = []
    for template, parts in bodies:
        entry = f"{base}_{parts['suffix']}"
        text.append(template.substitute(entry=entry, **parts))
        entries.append((entry, int(parts["vec"])))
    return KernelSource(base, "".join(text), tuple(entries))


def forward_source(spec: ForwardSpec) -> KernelSource:
    """The forward kernel source of ``spec`` (``fwd_train`` or ``fwd_infer``).

    Raises:
        ValueError: a parameter that cannot be placed in source (non-finite, out of range).
    """
    _check_kind(spec.kind)
    _, shift_in, shift_out = _shifts(spec.v_reset, spec.hard_reset)
    vth = literal(spec.v_threshold, "v_threshold")
    theta = literal(spec.v_threshold - (spec.v_reset if spec.hard_reset else 0.0), "v_threshold - v_reset")
    prologue = "    const float k = *decay;" if spec.kind == "plif" else ""
    bodies = []
    for _, layout in _layout_entries("x", spec.dtype_tag):
        parts = {
            "block": str(BLOCK_SIZE),
            "storage": layout.storage,
            "vec": str(layout.vec),
            "suffix": layout.suffix,
            "prologue": prologue,
            "shift_in": _shift_loop(shift_in, "u", str(layout.vec), "    "),
            "shift_out": shift_out.format("u[j]"),
            "charge": _charge(spec.kind, spec.decay_input, spec.tau),
            "theta": theta,
            "reset": _reset(spec.hard_reset, "h[j]", "s[j]", vth),
            "store_h": f"        snn_store_h(h_seq, idx, h, {theta});" if spec.train else "",
        }
        bodies.append((_FORWARD, parts))
    return _assemble(spec.kind, "fwd_train" if spec.train else "fwd_infer", spec.dtype_tag, bodies)


def _surrogate_function(body: str) -> tuple[str, str]:
    """A guarded ``__device__`` function computing ``body`` (an expression of ``x``)."""
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    name = f"snn_surrogate_{digest}"
    guard = f"SNN_SURROGATE_{digest.upper()}"
    code = (
        f"#ifndef {guard}\n#define {guard}\n"
        f"__device__ __forceinline__ float {name}(const float x) {{\n    return {body};\n}}\n#endif\n"
    )
    return name, code


def backward_source(spec: BackwardSpec) -> KernelSource:
    """The backward kernel source of ``spec``.

    Raises:
        ValueError: a parameter that cannot be placed in source (non-finite, out of range).
    """
    _check_kind(spec.kind)
    _, shift_in, _ = _shifts(spec.v_reset, spec.hard_reset)
    vth = literal(spec.v_threshold, "v_threshold")
    theta = literal(spec.v_threshold - (spec.v_reset if spec.hard_reset else 0.0), "v_threshold - v_reset")
    surrogate, surrogate_code = _surrogate_function(spec.surrogate_body)
    if spec.hard_reset:
        dv_dh = "1.0f - s" if spec.detach_reset else "(1.0f - s) - h[j] * sg"
    else:
        dv_dh = "1.0f" if spec.detach_reset else f"1.0f - {vth} * sg"
    if spec.kind == "if":
        gain, leak = "", ""
    else:
        k, leak_term = _decay_terms(spec.kind, spec.tau)
        gain = f" * {k}" if spec.decay_input else ""
        leak = f" * {leak_term}"
    plif = spec.kind == "plif"
    bodies = []
    for _, layout in _layout_entries("x", spec.dtype_tag):
        vec = str(layout.vec)
        parts = {
            "block": str(BLOCK_SIZE),
            "storage": layout.storage,
            "vec": vec,
            "suffix": layout.suffix,
            "theta": theta,
            "surrogate": surrogate,
            "dv_dh": dv_dh,
            "spike": f"                const float s = h[j] >= {theta} ? 1.0f : 0.0f;" if spec.hard_reset else "",
            "grad_x": "g_h" + gain,
            "grad_u": "g_h" + leak,
            "prologue": (
                "    const float k = *decay;\n    const float leak = 1.0f - k;\n    float acc = 0.0f;"
                if plif else ""
            ),
            "plif_init": Template(_PLIF_INIT).substitute(vec=vec) if plif else "",
            "load_h": (
                Template(_PLIF_LOAD_H).substitute(
                    vec=vec,
                    theta=theta,
                    reset_prev=_reset(spec.hard_reset, "h_next[j]", "s_prev", vth),
                    shift_in_prev=_shift_loop(shift_in, "u_prev", vec, "                "),
                )
                if plif else "            snn_load(h_seq, idx, h);"
            ),
            "plif_accumulate": (
                (
                    "                acc += g_h * (h[j] - u_prev[j]);"
                    if spec.decay_input else "                acc -= g_h * u_prev[j];"
                )
                if plif else ""
            ),
            "plif_reduce": (
                Template(_PLIF_REDUCE).substitute(
                    block=str(BLOCK_SIZE),
                    finish="snn_partial[0] / k" if spec.decay_input else "snn_partial[0]",
                )
                if plif else ""
            ),
        }
        bodies.append((_BACKWARD, parts))
    return _assemble(spec.kind, "bwd", spec.dtype_tag, bodies, header=surrogate_code)
