// The prelude of every generated CPU source: the helpers that jit/scalar_emit's statements and
// the op table's `c_expr` name, written to vectorize, and vector-callable math functions.
#pragma once

namespace agnesi::jit::cpu {

// The math functions are redeclared `simd("notinbranch")`: glibc only does this under
// -ffast-math, and without it GCC cannot call libmvec's vector variants (which keep a few ulp
// of accuracy). Calls go through overloads in agnesi_k rather than <cmath>'s std:: overloads,
// whose float versions call __builtin_*f and lose the attribute.
inline constexpr const char* kPreludeHead = R"agnesi_prelude(
#include <stdint.h>
// No <math.h>, <stdlib.h> or <omp.h>: parsing them took a quarter of a cold compile.
typedef __SIZE_TYPE__ size_t;
#define INFINITY (__builtin_inff())
#define NAN (__builtin_nanf(""))
#define malloc __builtin_malloc
#define free __builtin_free
extern "C" int omp_get_max_threads(void) noexcept;

#if defined(__GNUC__) && !defined(__clang__)
#define AGNESI_SIMD __attribute__((simd("notinbranch")))
#else
#define AGNESI_SIMD
#endif
#define AGNESI_INLINE static inline __attribute__((always_inline))
)agnesi_prelude";

/// float32 functions the prelude implements itself (kPreludeFloatMath) instead of calling
/// libmvec: these dominate the memory-bound workloads (softmax, logsumexp, gelu, the activation
/// chains), and inlined polynomials run 2-4x faster than libmvec's calls. All but erf are within
/// 1.5 ulp of the correctly rounded result, erf within 6.5 ulp (measured over every float;
/// tests/jit_cpu_test.cpp checks a strided sample and the special values).
inline constexpr const char* kOwnFloat[] = {"exp", "expm1", "log", "log1p", "tanh", "erf"};

/// The smallest domain worth more than one thread. A group whose sizes are all known and give
/// fewer values has no OpenMP region at all: libgomp spends about a microsecond on a region even
/// when its `if` clause keeps it to one thread.
inline constexpr long long kParMin = 32768;

inline constexpr const char* kPreludeFloatMath = R"agnesi_prelude(
// float32 math functions that vectorize: branch-free, with bit manipulation through
// __builtin_bit_cast. Coefficients are minimax fits (relative error of the polynomial alone
// below 1e-8); the results are within 1.5 ulp of the correctly rounded value, erf within
// 6.5 ulp. They are forced inline: a call left in a loop stops it vectorizing.
AGNESI_INLINE float agnesi_bf(int32_t i) { return __builtin_bit_cast(float, i); }
AGNESI_INLINE int32_t agnesi_bi(float f) { return __builtin_bit_cast(int32_t, f); }
// 2^k for k in [-126, 127].
AGNESI_INLINE float agnesi_pow2i(int32_t k) { return agnesi_bf((k + 127) << 23); }
// c0 + x (c1 + x (c2 + ...)), with fused multiply-adds.
AGNESI_INLINE float agnesi_horner(float, float c) { return c; }
template <class... C> AGNESI_INLINE float agnesi_horner(float x, float c, C... rest) {
    return __builtin_fmaf(agnesi_horner(x, rest...), x, c);
}
// p 2^k for k in [-150, 128], as two factors: a subnormal result rounds once, a large one
// overflows to inf.
AGNESI_INLINE float agnesi_scale2(float p, int32_t k) {
    int32_t k1 = k >> 1;
    return p * agnesi_pow2i(k1) * agnesi_pow2i(k - k1);
}
// x = n ln2 + r with |r| <= ln2/2; returns r, n in *n and as an integer in *k. x must lie in
// [-150 ln2, 150 ln2]; outside it the results are meaningless.
AGNESI_INLINE float agnesi_reduce_ln2(float x, float* n, int32_t* k) {
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    float t = __builtin_fmaf(x, 1.44269504089f, magic);
    *n = t - magic;
    *k = agnesi_bi(t) - agnesi_bi(magic);
    float r = __builtin_fmaf(*n, -0.693145751953125f, x);  // ln 2 in two parts
    return __builtin_fmaf(*n, -1.428606765330187e-06f, r);
}
AGNESI_INLINE float agnesi_expf(float x) {
    // n stays in [-150, 128] for x in [-104, 89]. Outside that range the result is selected at
    // the end (a comparison with NaN is false: NaN passes through).
    float n;
    int32_t k;
    float r = agnesi_reduce_ln2(x, &n, &k);
    float p = agnesi_horner(r, 4.999999404e-01f, 1.666652113e-01f, 4.166838899e-02f,
        8.368710056e-03f, 1.381461043e-03f);
    p = __builtin_fmaf(p, r * r, r) + 1.0f;
    float y = agnesi_scale2(p, k);
    y = x > 89.0f ? __builtin_inff() : y;
    return x < -104.0f ? 0.0f : y;
}
AGNESI_INLINE float agnesi_expm1f(float x) {
    // expm1(x) = 2^n (e^r - 1) + (2^n - 1); for n > 24 the -1 is below rounding and the result
    // is e^x. Below -18 the result rounds to -1.
    float xc = x < -18.0f ? -18.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    float n;
    int32_t k;
    float r = agnesi_reduce_ln2(xc, &n, &k);
    float q = agnesi_horner(r, 0.5f, 1.666666567e-01f, 4.166648164e-02f, 8.333419450e-03f,
        1.393324463e-03f, 1.982412650e-04f);
    float em = __builtin_fmaf(q, r * r, r);  // e^r - 1
    int32_t kc = k > 24 ? 24 : k;
    float s = agnesi_pow2i(kc);
    float small = __builtin_fmaf(s, em, s - 1.0f);
    float big = agnesi_scale2(em + 1.0f, k);
    float y = k > 24 ? big : small;
    return x == 0.0f ? x : y;  // keeps the sign of zero
}
AGNESI_INLINE float agnesi_logf(float x) {
    // x = 2^e m with m in [sqrt(1/2), sqrt(2)); log x = e ln2 + log1p(m - 1). Subnormals are
    // scaled by 2^23 first.
    bool sub = x < 1.17549435e-38f;
    float xs = sub ? x * 8388608.0f : x;
    int32_t ix = agnesi_bi(xs) - 0x3f3504f3;  // bits of sqrt(1/2)
    // Every select here is on floats: a comparison feeding both an integer and a float select
    // keeps GCC from vectorizing the loops around it.
    float fe = (float)(ix >> 23) - (sub ? 23.0f : 0.0f);
    float f = agnesi_bf((ix & 0x007fffff) + 0x3f3504f3) - 1.0f;
    float p = agnesi_horner(f, 3.333333135e-01f, -2.500082254e-01f, 2.000122666e-01f,
        -1.662335694e-01f, 1.420176178e-01f, -1.316019446e-01f, 1.276154965e-01f,
        -7.634429634e-02f);
    float f2 = f * f;
    float y = __builtin_fmaf(p * f, f2, __builtin_fmaf(fe, 1.428606765330187e-06f, -0.5f * f2));
    float r = __builtin_fmaf(fe, 0.693145751953125f, f + y);
    r = x == __builtin_inff() ? x : r;
    r = x == 0.0f ? -__builtin_inff() : r;
    return x < 0.0f ? __builtin_nanf("") : (x != x ? x : r);
}
AGNESI_INLINE float agnesi_log1pf(float x) {
    // log1p(x) = log(u) - (u - 1 - x)/u with u = 1 + x rounded: the quotient undoes the rounding.
    float u = 1.0f + x;
    float c = (x - (u - 1.0f)) / u;
    float l = agnesi_logf(u);
    float r = l + c;
    r = u == 1.0f ? x : r;
    r = u == 0.0f ? l : r;                      // x = -1: -inf
    return x > 3.40282347e+38f ? l : r;  // x = inf: inf
}
AGNESI_INLINE float agnesi_tanhf(float x) {
    float a = __builtin_fabsf(x);
    float z = x * x;
    float p = agnesi_horner(z, -3.333328068e-01f, 1.333144158e-01f, -5.373971537e-02f,
        2.063908987e-02f, -5.704990588e-03f);
    // tanh is odd and |x^3 p| < |x|: the sign of x, also for -0 (where the sum would give +0).
    float small = __builtin_copysignf(__builtin_fmaf(p, z * x, x), x);
    float e = agnesi_expf(2.0f * a);
    float big = __builtin_copysignf(1.0f - 2.0f / (e + 1.0f), x);
    return a < 0.625f ? small : big;
}
AGNESI_INLINE float agnesi_erff(float x) {
    // erf(x) = x P(x^2) / Q(x^2) on |x| <= 3.92 (relative error of the fit 2e-9, within 6.5 ulp
    // after float rounding: a third of the cost of an exp-based erf, which gelu needs). Beyond,
    // erf rounds to +-1. |x| is clamped as an integer (one vector min; a float select takes
    // a compare and a blend) and the sign put back: the same result bit for bit.
    int32_t ai = agnesi_bi(x) & 0x7fffffff;
    float a = agnesi_bf(ai < 0x407ae148 ? ai : 0x407ae148);  // 3.92f
    float z = a * a;
    float p = agnesi_horner(z, 1.128379226e+00f, 1.851352453e-01f, 5.424307659e-02f,
        3.838503500e-03f, 3.767197195e-04f, 4.608190011e-06f, -1.279441353e-08f);
    float q = agnesi_horner(z, 1.0f, 4.974052310e-01f, 1.138729453e-01f, 1.542967185e-02f,
        1.301447861e-03f, 6.238926289e-05f);
    float r = agnesi_bf(agnesi_bi(a * p / q) | (agnesi_bi(x) & (int32_t)0x80000000));
    return x != x ? x : r;  // the clamp took NaN to 3.92
}
)agnesi_prelude";

/// Unary functions with a libmvec vector variant, as (double name, float name).
inline constexpr const char* kVectorUnary[] = {
    "exp",  "log",  "sin",   "cos",   "tan",   "asin",  "acos",  "atan", "sinh",
    "cosh", "tanh", "asinh", "acosh", "atanh", "log1p", "expm1", "erf",  "erfc",
};
inline constexpr const char* kVectorBinary[] = {"pow", "atan2"};

inline constexpr const char* kPreludeHelpers = R"agnesi_prelude(
AGNESI_INLINE double sqrt(double x) { return __builtin_sqrt(x); }
AGNESI_INLINE float sqrt(float x) { return __builtin_sqrtf(x); }
AGNESI_INLINE double floor(double x) { return __builtin_floor(x); }
AGNESI_INLINE float floor(float x) { return __builtin_floorf(x); }
AGNESI_INLINE int64_t floor(int64_t x) { return x; }
AGNESI_INLINE double ceil(double x) { return __builtin_ceil(x); }
AGNESI_INLINE float ceil(float x) { return __builtin_ceilf(x); }
AGNESI_INLINE int64_t ceil(int64_t x) { return x; }
AGNESI_INLINE double abs(double x) { return __builtin_fabs(x); }
AGNESI_INLINE float abs(float x) { return __builtin_fabsf(x); }
// The helpers the shared statement emitter (jit/scalar_emit) names.
AGNESI_INLINE float agnesi_inf_f() { return __builtin_inff(); }
AGNESI_INLINE float agnesi_nan_f() { return __builtin_nanf(""); }
AGNESI_INLINE double agnesi_inf_d() { return __builtin_inf(); }
AGNESI_INLINE double agnesi_nan_d() { return __builtin_nan(""); }
AGNESI_INLINE float agnesi_abs(float x) { return __builtin_fabsf(x); }
AGNESI_INLINE double agnesi_abs(double x) { return __builtin_fabs(x); }
AGNESI_INLINE int64_t agnesi_abs(int64_t x) { return x < 0 ? (int64_t)(0 - (uint64_t)x) : x; }
// Integer powers wrap like integer multiplication; a negative exponent gives 0.
static inline int64_t agnesi_ipow(int64_t b, int64_t e) {
    if (e < 0) return 0;
    uint64_t r = 1, x = (uint64_t)b;
    for (uint64_t k = (uint64_t)e; k; k >>= 1, x *= x)
        if (k & 1) r *= x;
    return (int64_t)r;
}
// Floats to integers as Tensor::astype: truncation, NaN gives 0, out-of-range values saturate.
template <class T> AGNESI_INLINE int64_t agnesi_to_i64(T v) {
    return v != v ? 0 : v >= (T)0x1p63 ? INT64_MAX : v < -(T)0x1p63 ? INT64_MIN : (int64_t)v;
}
template <class T> AGNESI_INLINE int32_t agnesi_to_i32(T v) {
    return v != v ? 0 : v >= (T)0x1p31 ? INT32_MAX : v < -(T)0x1p31 ? INT32_MIN : (int32_t)v;
}
template <class T> AGNESI_INLINE T agnesi_sign(T x) {
    return x != x ? x : (T)((T(0) < x) - (x < T(0)));
}
// One exponential and one division, no branch (so it vectorizes); each side rounds like the
// reference: 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below.
template <class T> AGNESI_INLINE T agnesi_sigmoid(T x) {
    T e = exp(-abs(x));
    return (x >= T(0) ? T(1) : e) / (T(1) + e);
}
template <class T> AGNESI_INLINE T agnesi_softplus(T x) {
    T t = log1p(exp(-abs(x)));
    return (x < T(0) ? T(0) : x) + t;
}
template <class T> AGNESI_INLINE T agnesi_relu(T x) {
    return (x > T(0) || x != x) ? x : T(0);
}
// NaN propagates, as in NumPy's minimum and maximum.
template <class T> AGNESI_INLINE T agnesi_min(T a, T b) {
    return (a != a || b != b) ? a + b : (b < a ? b : a);
}
template <class T> AGNESI_INLINE T agnesi_max(T a, T b) {
    return (a != a || b != b) ? a + b : (a < b ? b : a);
}
// Whether strides s are row-major contiguous over sizes d (size-1 axes may have any stride).
static inline bool agnesi_contig(const int64_t* s, const int64_t* d, int64_t r) {
    int64_t run = 1;
    for (int64_t k = r - 1; k >= 0; --k) {
        if (d[k] != 1 && s[k] != run) return false;
        run *= d[k];
    }
    return true;
}
static const int64_t kChunk = 8192;     // elements per parallel chunk of a flat loop
static const int64_t kCol = 256;        // columns per block when reducing leading axes
static const int64_t kSumBlock = 256;   // float32 values summed in float before a double add
)agnesi_prelude";

}  // namespace agnesi::jit::cpu
