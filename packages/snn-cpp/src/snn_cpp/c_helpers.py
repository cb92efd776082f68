"""The fixed C helpers every generated kernel source carries (after its typedefs and macros).

They use what :mod:`snn_cpp.codegen` defines before them: ``real_t`` (the storage type),
``bits_t`` (an unsigned integer of its size) and ``SNN_INLINE`` / ``SNN_MAX_BLOCK``.

- ``snn_zeros``: a block's worth of zeros, read where an incoming gradient is absent;
- ``snn_keep(mask, v)``: ``v`` where the mask is all ones, +0 where it is zero;
- ``snn_stream_out(dst, src, n)`` / ``snn_stream_fence()``: copy with non-temporal stores, and
  the store fence that makes them visible;
- ``snn_min`` / ``snn_max``: minimum and maximum that propagate NaN as torch does;
- ``snn_expf``: glibc's vector ``expf`` where the toolchain has it, else an inline version.
"""

from __future__ import annotations

__all__ = ["HELPERS"]

# expf(x) = 2^k exp(r) with k = rint(x / ln 2) and r = x - k ln 2 (ln 2 in two parts);
# exp(r) = 1 + r + r^2 q(r) with q of degree 4 fitted for the least maximum relative error on
# |r| <= ln(2) / 2 (measured within 8.1e-8 relative of the exact value over every 13th float in
# [-110, 100], under 1.5 ulp); 2^k applied in two halves so that results near overflow and
# subnormal results are right. No branches: the clamp to [-104, 89] makes larger inputs overflow
# to inf and smaller ones underflow to 0, and NaN propagates through r.
_EXPF_INLINE = (
    "#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)",
    "#define SNN_MULADD(a, b, c) fmaf(a, b, c)",
    "#else",
    "#define SNN_MULADD(a, b, c) ((a) * (b) + (c))",
    "#endif",
    "SNN_INLINE float snn_expf(const float x) {",
    "    const float lo = -104.0f > x ? -104.0f : x;",
    "    const float c = lo > 89.0f ? 89.0f : lo;",
    "    const float shift = 0x1.8p23f;",
    "    const float k = SNN_MULADD(c, 0x1.715476p+0f, shift) - shift;",
    "    const float r = SNN_MULADD(k, -0x1.7f7d1cp-20f, SNN_MULADD(k, -0x1.62e400p-1f, c));",
    "    float q = 0x1.6a2448p-10f;",
    "    q = SNN_MULADD(q, r, 0x1.1239d4p-7f);",
    "    q = SNN_MULADD(q, r, 0x1.5558f2p-5f);",
    "    q = SNN_MULADD(q, r, 0x1.555492p-3f);",
    "    q = SNN_MULADD(q, r, 0x1.fffffcp-2f);",
    "    const float p = SNN_MULADD(q, r * r, r) + 1.0f;",
    "    const int32_t ki = (int32_t)k;",
    "    const int32_t k1 = ki >> 1;",
    "    const uint32_t b1 = (uint32_t)(k1 + 127) << 23;",
    "    const uint32_t b2 = (uint32_t)(ki - k1 + 127) << 23;",
    "    float s1, s2;",
    "    memcpy(&s1, &b1, sizeof s1);",
    "    memcpy(&s2, &b2, sizeof s2);",
    "    return (p * s1) * s2;",
    "}",
)
# dst[0:n] = src[0:n] with non-temporal stores where the target has them: element by element up
# to the first vector-aligned address, whole vectors, then the tail. A block that streamed calls
# snn_stream_fence() before it returns, so the values are visible to whoever reads them next.
_STREAM = (
    "#if (defined(__GNUC__) || defined(__clang__)) && (defined(__AVX__) || defined(__SSE2__))",
    "#if defined(__AVX__)",
    "typedef long long snn_lanes __attribute__((vector_size(32)));",
    "#else",
    "typedef long long snn_lanes __attribute__((vector_size(16)));",
    "#endif",
    "/* one vector stored past the caches (compiler builtins: the intrinsics headers would cost a",
    "   third of a kernel's compile time to parse) */",
    "SNN_INLINE void snn_stream_vector(real_t *dst, const real_t *src) {",
    "    snn_lanes v;",
    "    memcpy(&v, src, sizeof v);",
    "#if defined(__clang__)",
    "    __builtin_nontemporal_store(v, (snn_lanes *)(void *)dst);",
    "#elif defined(__AVX__)",
    "    __builtin_ia32_movntdq256((snn_lanes *)(void *)dst, v);",
    "#else",
    "    __builtin_ia32_movntdq((snn_lanes *)(void *)dst, v);",
    "#endif",
    "}",
    "#define SNN_STREAM_VECTORS 1",
    "#endif",
    "static __attribute__((noinline)) void snn_stream_out(real_t *restrict dst, const real_t *restrict src,",
    "                                                     const int64_t n) {",
    "    int64_t i = 0;",
    "#if defined(SNN_STREAM_VECTORS)",
    "    const int64_t lanes = (int64_t)(sizeof(snn_lanes) / sizeof(real_t));",
    "    for (; i < n && ((uintptr_t)(dst + i) % sizeof(snn_lanes)) != 0; ++i) dst[i] = src[i];",
    "    for (; i + lanes <= n; i += lanes) snn_stream_vector(dst + i, src + i);",
    "#endif",
    "    for (; i < n; ++i) dst[i] = src[i];",
    "}",
    "SNN_INLINE void snn_stream_fence(void) {",
    "#if defined(SNN_STREAM_VECTORS)",
    "    __builtin_ia32_sfence();",
    "#endif",
    "}",
)

_EXPF = ("#if defined(SNN_LIBMVEC) && !defined(SNN_INLINE_EXPF)", "#define snn_expf expf", "#else", *_EXPF_INLINE, "#endif")


_SELECTS = (
    "static const real_t snn_zeros[SNN_MAX_BLOCK];",
    "/* v where mask is all ones, +0 where it is zero: a select that never moves the computation of v",
    "   under a branch (which would stop the vectoriser at calls of libm functions) */",
    "SNN_INLINE real_t snn_keep(const bits_t mask, const real_t v) {",
    "    bits_t b;",
    "    memcpy(&b, &v, sizeof b);",
    "    b &= mask;",
    "    real_t r;",
    "    memcpy(&r, &b, sizeof r);",
    "    return r;",
    "}",
)

_MIN_MAX = (
    "SNN_INLINE real_t snn_min(real_t a, real_t b) { return (a < b || a != a) ? a : b; }",
    "SNN_INLINE real_t snn_max(real_t a, real_t b) { return (a > b || a != a) ? a : b; }",
)

#: The helpers' lines, in the order a source needs them.
HELPERS: tuple[str, ...] = (*_SELECTS, *_STREAM, *_MIN_MAX, *_EXPF)
