// The scalar expression emitter (see scalar_emit.hpp).
#include "jit/scalar_emit.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "agnesi/error.hpp"

namespace agnesi::jit {
namespace {

std::string value(int i) {
    return fmt::format("v{}", i);
}

// Integer arithmetic in the generated code wraps like the evaluator's int64 (unsigned arithmetic,
// so no signed overflow).
std::string wrap_int(char op, const std::string& a, const std::string& b) {
    return fmt::format("(int64_t)((uint64_t)({}) {} (uint64_t)({}))", a, op, b);
}

std::string fill(std::string_view tmpl, const std::vector<std::string>& args) {
    std::string out;
    for (std::size_t i = 0; i < tmpl.size(); ++i) {
        if (tmpl[i] == '{' && i + 2 < tmpl.size() && tmpl[i + 2] == '}') {
            out += args.at(static_cast<std::size_t>(tmpl[i + 1] - '0'));
            i += 2;
        } else {
            out += tmpl[i];
        }
    }
    return out;
}

// 2 or 3 where `in` is a float power x^2 or x^3, emitted as products (the exponent's value is
// then not read); 0 otherwise.
int product_power(const Group& g, const Instr& in) {
    if (in.kind != InstrKind::Apply || in.op != Op::Pow || !is_float(in.compute)) return 0;
    const Instr& e = g.instrs[static_cast<std::size_t>(in.args[1])];
    if (e.kind != InstrKind::Const) return 0;
    const double v = e.value.to_double();
    return v == 2 ? 2 : v == 3 ? 3 : 0;
}

// The C expression of an Apply in the compute class (float, double or int64_t).
std::string apply_expr(const Group& g, const Instr& in, const std::vector<std::string>& a) {
    bool integer = !is_float(in.compute);
    // x^2 as one product (correctly rounded, as pow is); x^3 as two. A call to pow is large, and
    // code size is most of NVRTC's compile time.
    switch (product_power(g, in)) {
        case 2: return fmt::format("({0} * {0})", a[0]);
        case 3: return fmt::format("({0} * {0} * {0})", a[0]);
        default: break;
    }
    if (integer) {
        switch (in.op) {
            case Op::Neg: return wrap_int('-', "0", a[0]);
            case Op::Add: return wrap_int('+', a[0], a[1]);
            case Op::Sub: return wrap_int('-', a[0], a[1]);
            case Op::Mul: return wrap_int('*', a[0], a[1]);
            case Op::Pow: return fmt::format("agnesi_ipow({}, {})", a[0], a[1]);
            case Op::Floor:
            case Op::Ceil: return a[0];
            default: break;
        }
    }
    if (in.op == Op::Abs) return fmt::format("agnesi_abs({})", a[0]);
    const OpInfo& info = op_info(in.op);
    if (info.c_expr.empty())
        throw InternalError(fmt::format("scalar_emit: op {} has no C expression", info.name));
    return fill(info.c_expr, a);
}

}  // namespace

bool unread_const(const Group& g, int i) {
    if (g.instrs[static_cast<std::size_t>(i)].kind != InstrKind::Const) return false;
    for (const Group::Output& o : g.outputs)
        if (o.instr == i) return false;
    for (const Instr& in : g.instrs)
        for (int a = 0; a < in.nargs; ++a)
            if (in.args[a] == i && !(a == 1 && product_power(g, in) != 0)) return false;
    return true;
}

std::string c_type(DType t) {
    switch (t) {
        case DType::Bool: return "bool";
        case DType::Int32: return "int32_t";
        case DType::Int64: return "int64_t";
        case DType::Float32: return "float";
        case DType::Float64: return "double";
        default:
            throw TypeError(
                fmt::format("generated code does not compute in {} (yet)", dtype_name(t)));
    }
}

std::string compute_type(DType t) {
    return is_float(t) ? c_type(t) : "int64_t";
}

std::string convert_expr(const std::string& expr, DType from, DType to) {
    if (from == to) return expr;
    if (to == DType::Bool) return fmt::format("({} != 0)", expr);
    if (is_float(from) && !is_float(to))
        return fmt::format("agnesi_to_{}({})", to == DType::Int32 ? "i32" : "i64", expr);
    return fmt::format("(({}){})", c_type(to), expr);
}

std::string constant_literal(const Number& v, DType t) {
    switch (t) {
        case DType::Bool: return v.is_zero() ? "false" : "true";
        case DType::Int32:
        case DType::Int64: {
            std::int64_t x = 0;
            if (auto i = v.to_int64()) {
                x = *i;
            } else {  // saturate like astype (NaN gives 0)
                double d = v.to_double();
                x = std::isnan(d)                ? 0
                    : d >= 9223372036854775808.0 ? std::numeric_limits<std::int64_t>::max()
                    : d < -9223372036854775808.0 ? std::numeric_limits<std::int64_t>::min()
                                                 : static_cast<std::int64_t>(d);
            }
            if (t == DType::Int32)
                return fmt::format("((int32_t){})", static_cast<std::int32_t>(x));
            if (x == std::numeric_limits<std::int64_t>::min())
                return "(-9223372036854775807LL - 1)";
            return fmt::format("((int64_t){}LL)", x);
        }
        case DType::Float32:
        case DType::Float64: {
            bool f32 = t == DType::Float32;
            // The group evaluator rounds constants through double; do the same.
            double d = f32 ? static_cast<double>(static_cast<float>(v.to_double())) : v.to_double();
            const char* suffix = f32 ? "f" : "d";
            if (std::isnan(d)) return fmt::format("agnesi_nan_{}()", suffix);
            if (std::isinf(d)) return fmt::format("{}agnesi_inf_{}()", d < 0 ? "-" : "", suffix);
            // %.17g (double) and %.9g (float) round-trip exactly.
            std::string s = f32 ? fmt::format("{:.9g}", d) : fmt::format("{:.17g}", d);
            if (s.find_first_of(".e") == std::string::npos) s += ".0";
            if (f32) s += "f";
            return "(" + s + ")";
        }
        default: return c_type(t);  // throws
    }
}

std::string emit_instr(const Group& g, int i) {
    const Instr& in = g.instrs[static_cast<std::size_t>(i)];
    std::string lhs = fmt::format("const {} {} = ", c_type(in.dtype), value(i));
    auto arg_dtype = [&](int k) { return g.instrs[static_cast<std::size_t>(in.args[k])].dtype; };
    switch (in.kind) {
        case InstrKind::Const: return lhs + constant_literal(in.value, in.dtype) + ";";
        case InstrKind::Apply: break;
        default: throw InternalError("scalar_emit: only Const and Apply instrs are emitted here");
    }
    if (in.op == Op::Cast)
        return lhs + convert_expr(value(in.args[0]), arg_dtype(0), in.dtype) + ";";
    if (in.op == Op::Where)
        return lhs +
               fmt::format("({} ? {} : {})",
                           convert_expr(value(in.args[0]), arg_dtype(0), DType::Bool),
                           convert_expr(value(in.args[1]), arg_dtype(1), in.dtype),
                           convert_expr(value(in.args[2]), arg_dtype(2), in.dtype)) +
               ";";
    // Operands in the compute class: the compute float dtype, or int64 for integers and bool.
    DType cls = is_float(in.compute) ? in.compute : DType::Int64;
    std::vector<std::string> a;
    for (int k = 0; k < in.nargs; ++k)
        a.push_back(convert_expr(value(in.args[k]), arg_dtype(k), cls));
    return lhs + convert_expr(apply_expr(g, in, a), cls, in.dtype) + ";";
}

std::string cuda_scalar_prelude() {
    std::string fn = "static __device__ __forceinline__";
    // NVRTC sees no system headers: the fixed-width types are defined here.
    std::string s =
        "typedef long long int64_t;\ntypedef unsigned long long uint64_t;\n"
        "typedef int int32_t;\ntypedef unsigned int uint32_t;\n";
    s += fn + " float agnesi_inf_f() { return __int_as_float(0x7f800000); }\n";
    s += fn + " float agnesi_nan_f() { return __int_as_float(0x7fc00000); }\n";
    s += fn + " double agnesi_inf_d() { return __longlong_as_double(0x7ff0000000000000LL); }\n";
    s += fn + " double agnesi_nan_d() { return __longlong_as_double(0x7ff8000000000000LL); }\n";
    // The scalar semantics of symbolic/op_table.cpp, NaN handling included.
    s += fmt::format(
        R"(template <class T> {0} T agnesi_sign(T x) {{ return x != x ? x : (T)((T(0) < x) - (x < T(0))); }}
{0} float agnesi_abs(float x) {{ return fabs(x); }}
{0} double agnesi_abs(double x) {{ return fabs(x); }}
{0} int64_t agnesi_abs(int64_t x) {{ return x < 0 ? (int64_t)(0 - (uint64_t)x) : x; }}
template <class T> {0} T agnesi_sigmoid(T x) {{
    T z = exp(-fabs(x));
    return (x >= T(0) ? T(1) : z) / (T(1) + z);
}}
template <class T> {0} T agnesi_softplus(T x) {{ return (x < T(0) ? T(0) : x) + log1p(exp(-fabs(x))); }}
template <class T> {0} T agnesi_relu(T x) {{ return x != x ? x : (x > T(0) ? x : T(0)); }}
template <class T> {0} T agnesi_min(T a, T b) {{ return (a != a || b != b) ? a + b : (b < a ? b : a); }}
template <class T> {0} T agnesi_max(T a, T b) {{ return (a != a || b != b) ? a + b : (a < b ? b : a); }}
{0} int64_t agnesi_ipow(int64_t b, int64_t e) {{
    if (e < 0) return 0;
    uint64_t r = 1, x = (uint64_t)b;
    for (uint64_t k = (uint64_t)e; k; k >>= 1, x *= x)
        if (k & 1) r *= x;
    return (int64_t)r;
}}
template <class T> {0} int64_t agnesi_to_i64(T v) {{
    if (v != v) return 0;
    if (v >= (T)9223372036854775808.0) return 0x7fffffffffffffffLL;
    if (v < -(T)9223372036854775808.0) return -0x7fffffffffffffffLL - 1;
    return (int64_t)v;
}}
template <class T> {0} int32_t agnesi_to_i32(T v) {{
    if (v != v) return 0;
    if (v >= (T)2147483648.0) return 0x7fffffff;
    if (v < -(T)2147483648.0) return -0x7fffffff - 1;
    return (int32_t)v;
}}
)",
        fn);
    return s;
}

}  // namespace agnesi::jit
