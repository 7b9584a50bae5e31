// The prelude of every generated CPU source: the scalar helpers the op table's `c_expr` names,
// conversions with the reference evaluator's semantics, and vector-callable math functions.
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
)agnesi_prelude";

/// Unary functions with a libmvec vector variant, as (double name, float name).
inline constexpr const char* kVectorUnary[] = {
    "exp",  "log",  "sin",   "cos",   "tan",   "asin",  "acos",  "atan", "sinh",
    "cosh", "tanh", "asinh", "acosh", "atanh", "log1p", "expm1", "erf",  "erfc",
};
inline constexpr const char* kVectorBinary[] = {"pow", "atan2"};

inline constexpr const char* kPreludeHelpers = R"agnesi_prelude(
static inline double sqrt(double x) { return __builtin_sqrt(x); }
static inline float sqrt(float x) { return __builtin_sqrtf(x); }
static inline double floor(double x) { return __builtin_floor(x); }
static inline float floor(float x) { return __builtin_floorf(x); }
static inline int64_t floor(int64_t x) { return x; }
static inline double ceil(double x) { return __builtin_ceil(x); }
static inline float ceil(float x) { return __builtin_ceilf(x); }
static inline int64_t ceil(int64_t x) { return x; }
static inline double abs(double x) { return __builtin_fabs(x); }
static inline float abs(float x) { return __builtin_fabsf(x); }
static inline int64_t abs(int64_t x) { return x < 0 ? -x : x; }
// Integer powers wrap like integer multiplication; a negative exponent gives 0.
static inline int64_t pow(int64_t b, int64_t e) {
    if (e < 0) return 0;
    uint64_t r = 1, x = (uint64_t)b;
    for (uint64_t k = (uint64_t)e; k; k >>= 1, x *= x)
        if (k & 1) r *= x;
    return (int64_t)r;
}
template <class T> static inline T agnesi_sign(T x) {
    return x != x ? x : (T)((T(0) < x) - (x < T(0)));
}
// Both quotients are computed so the select vectorizes; each side rounds like the reference.
template <class T> static inline T agnesi_sigmoid(T x) {
    T e = exp(-abs(x));
    T d = T(1) + e;
    T r = T(1) / d, q = e / d;
    return x >= T(0) ? r : q;
}
template <class T> static inline T agnesi_softplus(T x) {
    T t = log1p(exp(-abs(x)));
    return (x < T(0) ? T(0) : x) + t;
}
template <class T> static inline T agnesi_relu(T x) {
    return (x > T(0) || x != x) ? x : T(0);
}
// NaN propagates, as in NumPy's minimum and maximum.
template <class T> static inline T agnesi_min(T a, T b) {
    return (a != a || b != b) ? a + b : (b < a ? b : a);
}
template <class T> static inline T agnesi_max(T a, T b) {
    return (a != a || b != b) ? a + b : (a < b ? b : a);
}
// Conversions as Tensor::astype: floats to integers truncate, NaN gives 0, out-of-range values
// saturate; anything to bool is "nonzero" (NaN is true).
template <class D, class S> static inline D agnesi_cvt(S v) { return (D)v; }
template <class D, class S> static inline D agnesi_f2i(S v, D lo, D hi, S lim) {
    return v != v ? (D)0 : v >= lim ? hi : v < -lim ? lo : (D)v;
}
template <> inline int64_t agnesi_cvt<int64_t, double>(double v) {
    return agnesi_f2i<int64_t, double>(v, INT64_MIN, INT64_MAX, 0x1p63);
}
template <> inline int64_t agnesi_cvt<int64_t, float>(float v) {
    return agnesi_f2i<int64_t, float>(v, INT64_MIN, INT64_MAX, 0x1p63f);
}
template <> inline int32_t agnesi_cvt<int32_t, double>(double v) {
    return agnesi_f2i<int32_t, double>(v, INT32_MIN, INT32_MAX, 0x1p31);
}
template <> inline int32_t agnesi_cvt<int32_t, float>(float v) {
    return agnesi_f2i<int32_t, float>(v, INT32_MIN, INT32_MAX, 0x1p31f);
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
static const int64_t kParMin = 32768;   // smallest domain worth more than one thread
static const int64_t kCol = 256;        // columns per block when reducing leading axes
)agnesi_prelude";

}  // namespace agnesi::jit::cpu
