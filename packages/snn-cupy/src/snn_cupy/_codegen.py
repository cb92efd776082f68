"""Building blocks of the generated CUDA C: preamble, storage layouts, literals and names.

Everything that ends up in kernel source passes through this module or :mod:`snn_cupy._lowering`.
Numbers are checked finite and printed exactly (:func:`snn.expr.float32_literal`: hexadecimal
float32 literals); identifiers are fixed (``u0``, ``h1``, ``p0``...: no model, state or
parameter name of a plugin ever reaches the compiler) and kernel names are fixed words plus a
hash of the source.

The generated code needs no CUDA header: float16 values are stored as their IEEE binary16 bits
(``unsigned short``, or ``unsigned int`` for a pair of neurons) and converted with the PTX
``cvt`` instruction. All arithmetic runs in float32 with the states kept in float32 registers
for the whole sequence; values are rounded to float16 only when stored. The charged states that
training saves for backward are float32 (``float``, or ``snn_float2`` for a pair), so backward
recomputes exactly the spikes and previous states that forward computed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from snn.expr import float32_literal

__all__ = [
    "BLOCK_SIZE",
    "PREAMBLE",
    "ROLES",
    "Layout",
    "LAYOUTS",
    "DTYPE_TAGS",
    "layouts_for",
    "literal",
    "entry_name",
    "Lines",
]

#: Threads per block of every kernel (a power of two: the parameter-gradient reduction relies on it).
BLOCK_SIZE = 256

#: The kernels generated per configuration: forward saving what backward needs, forward saving
#: nothing, backward.
ROLES = ("fwd_train", "fwd_infer", "bwd")

#: Helpers shared by every source; guarded so that several sources can be concatenated into one
#: compilation unit. A host emulation (tests) may define ``SNN_CUPY_PREAMBLE`` and provide its
#: own float16 conversions.
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
/* two float32 values of neighbouring neurons, one 8-byte access */
struct alignas(8) snn_float2 {
    float a;
    float b;
};
__device__ __forceinline__ void snn_load(const float* p, const long long i, float (&out)[1]) {
    out[0] = p[i];
}
__device__ __forceinline__ void snn_store(float* p, const long long i, const float (&in)[1]) {
    p[i] = in[0];
}
__device__ __forceinline__ void snn_load(const snn_float2* p, const long long i, float (&out)[2]) {
    const snn_float2 pair = p[i];
    out[0] = pair.a;
    out[1] = pair.b;
}
__device__ __forceinline__ void snn_store(snn_float2* p, const long long i, const float (&in)[2]) {
    snn_float2 pair;
    pair.a = in[0];
    pair.b = in[1];
    p[i] = pair;
}
__device__ __forceinline__ void snn_load(const unsigned short* p, const long long i, float (&out)[1]) {
    out[0] = snn_h2f(p[i]);
}
__device__ __forceinline__ void snn_store(unsigned short* p, const long long i, const float (&in)[1]) {
    p[i] = snn_f2h(in[0]);
}
__device__ __forceinline__ void snn_load(const unsigned int* p, const long long i, float (&out)[2]) {
    const unsigned int pair = p[i];
    out[0] = snn_h2f((unsigned short)(pair & 0xffffu));
    out[1] = snn_h2f((unsigned short)(pair >> 16));
}
__device__ __forceinline__ void snn_store(unsigned int* p, const long long i, const float (&in)[2]) {
    p[i] = (unsigned int)snn_f2h(in[0]) | ((unsigned int)snn_f2h(in[1]) << 16);
}
/* acc += term, or acc = term when nothing was added yet: a gradient that never arrived is
   skipped, not taken as zero (0 * inf would be NaN where autograd has no term) */
__device__ __forceinline__ void snn_add(float& acc, bool& present, const float term) {
    acc = present ? acc + term : term;
    present = true;
}
#endif
"""


@dataclass(frozen=True)
class Layout:
    """How one kernel entry point reads and writes memory.

    Attributes:
        suffix: entry-name suffix (``"v1"`` one neuron per thread, ``"v2"`` two).
        storage: the C type of one access to a tensor of the storage dtype (``float``,
            ``unsigned short`` = one float16, ``unsigned int`` = two float16 neurons).
        saved: the C type of one access to a float32 tensor of saved charged states
            (``float``, or ``snn_float2`` for two neurons).
        vec: neurons per access (and per thread).
    """

    suffix: str
    storage: str
    saved: str
    vec: int


#: Entry-point layouts per dtype tag. float16 has a two-neurons-per-thread entry (32-bit
#: accesses to float16 tensors, 64-bit to float32 ones; used when the neuron count is even and
#: every buffer is aligned for it) and a one-neuron entry.
LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "f32": (Layout("v1", "float", "float", 1),),
    "f16": (Layout("v1", "unsigned short", "float", 1), Layout("v2", "unsigned int", "snn_float2", 2)),
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
    except (KeyError, TypeError):
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
        raise ValueError(f"{what}: expected a finite number representable in float32, got {value!r}") from None


def entry_name(role: str, dtype_tag: str, body: str) -> str:
    """A kernel name made of fixed words and a hash of the source body.

    Args:
        role: one of :data:`ROLES`.
        dtype_tag: ``"f32"`` or ``"f16"``.
        body: the source text the name stands for.

    Returns:
        ``snn_<role>_<dtype_tag>_<16 hex digits>``.

    Raises:
        ValueError: a part outside its fixed set.
    """
    if role not in ROLES:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    layouts_for(dtype_tag)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    return f"snn_{role}_{dtype_tag}_{digest}"


class Lines:
    """Generated source lines with indentation; ``VEC`` in a line stands for neurons per thread."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, *lines: str) -> None:
        """Append lines at the current depth."""
        for line in lines:
            self.lines.append("    " * self.depth + line)

    def open(self, line: str) -> None:
        """Append ``line {`` and indent (``line`` empty: a bare block)."""
        self(f"{line} {{" if line else "{")
        self.depth += 1

    def close(self) -> None:
        """Dedent and close the block."""
        self.depth -= 1
        self("}")

    def lanes(self) -> None:
        """Open the loop over the neurons of the thread (index ``lane``)."""
        self("#pragma unroll")
        self.open("for (int lane = 0; lane < VEC; ++lane)")

    def text(self, vec: int) -> str:
        """The source, ``VEC`` replaced by ``vec``."""
        return "\n".join(self.lines).replace("VEC", str(vec)) + "\n"
