"""Building blocks of the generated CUDA C: preamble, storage layouts, literals and names.

Everything that ends up in kernel source passes through this module. Numbers are checked finite
and printed exactly (:func:`snn.expr.float32_literal`: hexadecimal float32 literals); names are
built from fixed identifiers and a hash of the source body, so no user string ever reaches the
compiler.

The generated code needs no CUDA header: float16 values are stored as their IEEE binary16 bits
(``unsigned short``) and converted with the PTX ``cvt`` instruction. All arithmetic runs in
float32 with the membrane potential kept in float32 registers for the whole sequence (as the
torch reference does for half inputs); values are rounded to float16 only when stored. The
saved charged potential is rounded *to the side of the threshold it was on*
(``snn_f2h_keep_side``), so the spikes that backward recomputes from it are exactly the spikes
forward emitted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from snn.expr import float32_literal

__all__ = [
    "BLOCK_SIZE",
    "PREAMBLE",
    "Layout",
    "LAYOUTS",
    "DTYPE_TAGS",
    "layouts_for",
    "literal",
    "entry_name",
]

#: Threads per block of every kernel (a power of two: the PLIF reduction relies on it).
BLOCK_SIZE = 256

#: Helpers shared by every source; guarded so that several sources can be concatenated into one
#: compilation unit. A host emulation (tests) may define ``SNN_CUPY_PREAMBLE`` and provide its own.
PREAMBLE = r"""#ifndef SNN_CUPY_PREAMBLE
#define SNN_CUPY_PREAMBLE
__device__ __forceinline__ float snn_h2f(const unsigned short bits) {
    float value;
    asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(bits));
    return value;
}
__device__ __forceinline__ unsigned short snn_f2h(const float value) {
    unsigned short bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
    return bits;
}
#endif
#ifndef SNN_CUPY_IO
#define SNN_CUPY_IO
/* float16 rounding of h that stays on h's side of theta (h >= theta is preserved). */
__device__ __forceinline__ unsigned short snn_f2h_keep_side(const float h, const float theta) {
    unsigned short bits = snn_f2h(h);
    const bool above = h >= theta;
    if ((snn_h2f(bits) >= theta) != above) {
        if (above) {
            bits = (bits & 0x8000u) ? (bits == 0x8000u ? (unsigned short)0x0001u : (unsigned short)(bits - 1u))
                                    : (unsigned short)(bits + 1u);
        } else {
            bits = (bits & 0x8000u) ? (unsigned short)(bits + 1u)
                                    : (bits == 0u ? (unsigned short)0x8001u : (unsigned short)(bits - 1u));
        }
    }
    return bits;
}
__device__ __forceinline__ void snn_load(const float* p, const long long i, float (&out)[1]) {
    out[0] = p[i];
}
__device__ __forceinline__ void snn_store(float* p, const long long i, const float (&in)[1]) {
    p[i] = in[0];
}
__device__ __forceinline__ void snn_store_h(float* p, const long long i, const float (&in)[1], const float theta) {
    p[i] = in[0];
}
__device__ __forceinline__ void snn_load(const unsigned short* p, const long long i, float (&out)[1]) {
    out[0] = snn_h2f(p[i]);
}
__device__ __forceinline__ void snn_store(unsigned short* p, const long long i, const float (&in)[1]) {
    p[i] = snn_f2h(in[0]);
}
__device__ __forceinline__ void snn_store_h(unsigned short* p, const long long i, const float (&in)[1],
                                            const float theta) {
    p[i] = snn_f2h_keep_side(in[0], theta);
}
__device__ __forceinline__ void snn_load(const unsigned int* p, const long long i, float (&out)[2]) {
    const unsigned int pair = p[i];
    out[0] = snn_h2f((unsigned short)(pair & 0xffffu));
    out[1] = snn_h2f((unsigned short)(pair >> 16));
}
__device__ __forceinline__ void snn_store(unsigned int* p, const long long i, const float (&in)[2]) {
    p[i] = (unsigned int)snn_f2h(in[0]) | ((unsigned int)snn_f2h(in[1]) << 16);
}
__device__ __forceinline__ void snn_store_h(unsigned int* p, const long long i, const float (&in)[2],
                                            const float theta) {
    p[i] = (unsigned int)snn_f2h_keep_side(in[0], theta) | ((unsigned int)snn_f2h_keep_side(in[1], theta) << 16);
}
#endif
"""


@dataclass(frozen=True)
class Layout:
    """How one kernel entry point reads and writes a storage dtype.

    Attributes:
        suffix: entry-name suffix (``"v1"`` one neuron per thread, ``"v2"`` two).
        storage: the C type of one memory access (``float``, ``unsigned short`` = one float16,
            ``unsigned int`` = two float16 neurons).
        vec: neurons per memory access (and per thread).
    """

    suffix: str
    storage: str
    vec: int


#: Entry-point layouts per dtype tag. float16 has a two-neurons-per-thread entry (32-bit
#: accesses, used when the neuron count is even) and a one-neuron entry (odd counts).
LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "f32": (Layout("v1", "float", 1),),
    "f16": (Layout("v1", "unsigned short", 1), Layout("v2", "unsigned int", 2)),
}

#: Dtype tags by torch dtype name.
DTYPE_TAGS: dict[str, str] = {"float32": "f32", "float16": "f16"}


def layouts_for(dtype_tag: str) -> tuple[Layout, ...]:
    """The entry-point layouts of a dtype tag (``"f32"`` or ``"f16"``).

    Raises:
        ValueError: unknown tag.
    """
    try:
        return LAYOUTS[dtype_tag]
    except KeyError:
        raise ValueError(f"dtype_tag: expected one of {sorted(LAYOUTS)}, got {dtype_tag!r}") from None


def literal(value: float, what: str) -> str:
    """``value`` rounded to float32, as an exact CUDA literal (hexadecimal float).

    Args:
        value: the number.
        what: the argument name for error messages.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, or not finite once rounded to float32.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: expected a real number, got {type(value).__name__} {value!r}")
    try:
        return float32_literal(float(value), "cuda")
    except ValueError:
        raise ValueError(
            f"{what}: expected a finite number representable in float32, got {value!r}"
        ) from None


def entry_name(kind: str, role: str, dtype_tag: str, body: str) -> str:
    """A kernel name made of fixed identifiers and a hash of the source body.

    Args:
        kind: ``"if"``, ``"lif"`` or ``"plif"`` (fixed set).
        role: ``"fwd_train"``, ``"fwd_infer"`` or ``"bwd"`` (fixed set).
        dtype_tag: ``"f32"`` or ``"f16"``.
        body: the source text the name stands for.

    Raises:
        ValueError: a part outside its fixed set.
    """
    if kind not in ("if", "lif", "plif"):
        raise ValueError(f"kind: expected 'if', 'lif' or 'plif', got {kind!r}")
    if role not in ("fwd_train", "fwd_infer", "bwd"):
        raise ValueError(f"role: expected 'fwd_train', 'fwd_infer' or 'bwd', got {role!r}")
    layouts_for(dtype_tag)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    return f"snn_{kind}_{role}_{dtype_tag}_{digest}"
