// The op table. One entry per op, in Op order (tests/op_table_test.cpp checks both).
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "agnesi/error.hpp"
#include "agnesi/op.hpp"
#include "agnesi/vjp.hpp"

namespace agnesi {
namespace {

// Scalar semantics, written once as generic lambdas and instantiated per compute dtype.
template <class F>
constexpr ScalarFns unary_float() {
    return {.u64 = [](double a) { return F{}(a); }, .u32 = [](float a) { return F{}(a); }};
}
template <class F>
constexpr ScalarFns unary_any() {
    return {.u64 = [](double a) { return F{}(a); },
            .u32 = [](float a) { return F{}(a); },
            .ui = [](std::int64_t a) { return F{}(a); }};
}
template <class F>
constexpr ScalarFns binary_float() {
    return {.b64 = [](double a, double b) { return F{}(a, b); },
            .b32 = [](float a, float b) { return F{}(a, b); }};
}
template <class F>
constexpr ScalarFns binary_any() {
    return {.b64 = [](double a, double b) { return F{}(a, b); },
            .b32 = [](float a, float b) { return F{}(a, b); },
            .bi = [](std::int64_t a, std::int64_t b) { return F{}(a, b); }};
}

template <class T>
T sigmoid_of(T x) {
    // Stable on both tails: never exp of a large positive number.
    if (x >= 0) return T(1) / (T(1) + std::exp(-x));
    T z = std::exp(x);
    return z / (T(1) + z);
}
template <class T>
T softplus_of(T x) {
    return std::max(x, T(0)) + std::log1p(std::exp(-std::fabs(x)));
}
template <class T>
T sign_of(T x) {
    if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(x)) return x;
    return T((T(0) < x) - (x < T(0)));
}
template <class T>
T abs_of(T x) {
    if constexpr (std::is_floating_point_v<T>)
        return std::fabs(x);
    else
        return x < 0 ? -x : x;
}
template <class T>
T min_of(T a, T b) {
    // NaN propagates, as in NumPy's minimum.
    if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(a) || std::isnan(b)) return a + b;
    return b < a ? b : a;
}
template <class T>
T max_of(T a, T b) {
    if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(a) || std::isnan(b)) return a + b;
    return a < b ? b : a;
}
template <class T>
T relu_of(T x) {
    if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(x)) return x;
    return x > T(0) ? x : T(0);
}
std::int64_t ipow(std::int64_t b, std::int64_t e) {
    // Integer powers wrap around like integer multiplication; the type rule keeps e >= 0.
    if (e < 0) return 0;
    std::uint64_t r = 1, x = static_cast<std::uint64_t>(b);
    for (auto k = static_cast<std::uint64_t>(e); k; k >>= 1, x *= x)
        if (k & 1) r *= x;
    return static_cast<std::int64_t>(r);
}

// Derivative rules (see include/agnesi/vjp.hpp). Kinks: abs'(0) = sign(0) = 0, relu'(0) = 0;
// floor, ceil and sign have zero gradient; comparisons and logical ops pass none.
using Grads = std::vector<Expr>;
Grads no_grad(const VjpArgs& v) {
    return Grads(v.operands.size());
}
Expr ub(const Expr& g, const Expr& like) {
    return unbroadcast(g, like);
}
Expr pi() {
    return Expr(Number::pi());
}
std::int64_t axis(const VjpArgs& v) {
    return v.node->ints()[0];
}
// a^(b - 1), with b - 1 folded when b is a constant (d/dx x^3 reads 3*x^2, d/dx x^2 reads 2*x).
Expr pow_minus_one(const Expr& a, const Expr& b) {
    auto v = b->is_constant() ? exact_add(b->value(), Number(-1)) : std::nullopt;
    if (!v) return pow(a, b - 1);
    if (v->is_one()) return a;
    return pow(a, b->weak() ? literal(*v, b.dtype()) : constant(*v, b.dtype()));
}

#define AG_VJP(...) [](const VjpArgs& v) -> Grads { return {__VA_ARGS__}; }
#define AG_FN1(expr) decltype([](auto a) { return expr; })
#define AG_FN2(expr) decltype([](auto a, auto b) { return expr; })

using K = OpKind;
using T = TypeRule;

constexpr std::array<OpInfo, kNumOps> kTable = {{
    {.op = Op::Constant, .name = "constant", .arity = 0, .kind = K::Leaf},
    {.op = Op::Variable, .name = "variable", .arity = 0, .kind = K::Leaf},

    {.op = Op::Neg,
     .name = "neg",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Same,
     .infix = "-",
     .prec = Prec::Unary,
     .latex = "-{0}",
     .eval = unary_any<AG_FN1(-a)>(),
     .c_expr = "(-{0})",
     .vjp = AG_VJP(-v.g)},
    {.op = Op::Exp,
     .name = "exp",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "e^{{0}}",
     .eval = unary_float<AG_FN1(std::exp(a))>(),
     .c_expr = "exp({0})",
     .vjp = AG_VJP(v.g * v.out)},
    {.op = Op::Log,
     .name = "log",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\log{0}",
     .eval = unary_float<AG_FN1(std::log(a))>(),
     .c_expr = "log({0})",
     .vjp = AG_VJP(v.g / v.a())},
    {.op = Op::Sqrt,
     .name = "sqrt",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\sqrt{{0}}",
     .eval = unary_float<AG_FN1(std::sqrt(a))>(),
     .c_expr = "sqrt({0})",
     .vjp = AG_VJP(v.g / (2 * v.out))},
    {.op = Op::Sin,
     .name = "sin",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\sin{0}",
     .eval = unary_float<AG_FN1(std::sin(a))>(),
     .c_expr = "sin({0})",
     .vjp = AG_VJP(v.g * cos(v.a()))},
    {.op = Op::Cos,
     .name = "cos",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\cos{0}",
     .eval = unary_float<AG_FN1(std::cos(a))>(),
     .c_expr = "cos({0})",
     .vjp = AG_VJP(-v.g * sin(v.a()))},
    {.op = Op::Tan,
     .name = "tan",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\tan{0}",
     .eval = unary_float<AG_FN1(std::tan(a))>(),
     .c_expr = "tan({0})",
     .vjp = AG_VJP(v.g / pow(cos(v.a()), 2))},
    {.op = Op::Asin,
     .name = "asin",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\arcsin{0}",
     .eval = unary_float<AG_FN1(std::asin(a))>(),
     .c_expr = "asin({0})",
     .vjp = AG_VJP(v.g / sqrt(1 - pow(v.a(), 2)))},
    {.op = Op::Acos,
     .name = "acos",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\arccos{0}",
     .eval = unary_float<AG_FN1(std::acos(a))>(),
     .c_expr = "acos({0})",
     .vjp = AG_VJP(-v.g / sqrt(1 - pow(v.a(), 2)))},
    {.op = Op::Atan,
     .name = "atan",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\arctan{0}",
     .eval = unary_float<AG_FN1(std::atan(a))>(),
     .c_expr = "atan({0})",
     .vjp = AG_VJP(v.g / (1 + pow(v.a(), 2)))},
    {.op = Op::Sinh,
     .name = "sinh",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\sinh{0}",
     .eval = unary_float<AG_FN1(std::sinh(a))>(),
     .c_expr = "sinh({0})",
     .vjp = AG_VJP(v.g * cosh(v.a()))},
    {.op = Op::Cosh,
     .name = "cosh",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\cosh{0}",
     .eval = unary_float<AG_FN1(std::cosh(a))>(),
     .c_expr = "cosh({0})",
     .vjp = AG_VJP(v.g * sinh(v.a()))},
    {.op = Op::Tanh,
     .name = "tanh",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\tanh{0}",
     .eval = unary_float<AG_FN1(std::tanh(a))>(),
     .c_expr = "tanh({0})",
     .vjp = AG_VJP(v.g * (1 - pow(v.out, 2)))},
    {.op = Op::Asinh,
     .name = "asinh",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{arsinh}{0}",
     .eval = unary_float<AG_FN1(std::asinh(a))>(),
     .c_expr = "asinh({0})",
     .vjp = AG_VJP(v.g / sqrt(pow(v.a(), 2) + 1))},
    {.op = Op::Acosh,
     .name = "acosh",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{arcosh}{0}",
     .eval = unary_float<AG_FN1(std::acosh(a))>(),
     .c_expr = "acosh({0})",
     .vjp = AG_VJP(v.g / sqrt(pow(v.a(), 2) - 1))},
    {.op = Op::Atanh,
     .name = "atanh",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{artanh}{0}",
     .eval = unary_float<AG_FN1(std::atanh(a))>(),
     .c_expr = "atanh({0})",
     .vjp = AG_VJP(v.g / (1 - pow(v.a(), 2)))},
    {.op = Op::Abs,
     .name = "abs",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\left|{0}\\right|",
     .eval = unary_any<AG_FN1(abs_of(a))>(),
     .c_expr = "abs({0})",
     .vjp = AG_VJP(v.g * sign(v.a()))},
    {.op = Op::Sign,
     .name = "sign",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\operatorname{sign}{0}",
     .eval = unary_any<AG_FN1(sign_of(a))>(),
     .c_expr = "agnesi_sign({0})",
     .vjp = no_grad},
    {.op = Op::Log1p,
     .name = "log1p",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{log1p}{0}",
     .eval = unary_float<AG_FN1(std::log1p(a))>(),
     .c_expr = "log1p({0})",
     .vjp = AG_VJP(v.g / (1 + v.a()))},
    {.op = Op::Expm1,
     .name = "expm1",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{expm1}{0}",
     .eval = unary_float<AG_FN1(std::expm1(a))>(),
     .c_expr = "expm1({0})",
     .vjp = AG_VJP(v.g * exp(v.a()))},
    {.op = Op::Erf,
     .name = "erf",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{erf}{0}",
     .eval = unary_float<AG_FN1(std::erf(a))>(),
     .c_expr = "erf({0})",
     .vjp = AG_VJP(v.g * (2 / sqrt(pi())) * exp(-pow(v.a(), 2)))},
    {.op = Op::Erfc,
     .name = "erfc",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{erfc}{0}",
     .eval = unary_float<AG_FN1(std::erfc(a))>(),
     .c_expr = "erfc({0})",
     .vjp = AG_VJP(-v.g * (2 / sqrt(pi())) * exp(-pow(v.a(), 2)))},
    {.op = Op::Sigmoid,
     .name = "sigmoid",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\sigma{0}",
     .eval = unary_float<AG_FN1(sigmoid_of(a))>(),
     .c_expr = "agnesi_sigmoid({0})",
     .vjp = AG_VJP(v.g * v.out * (1 - v.out))},
    {.op = Op::Softplus,
     .name = "softplus",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{softplus}{0}",
     .eval = unary_float<AG_FN1(softplus_of(a))>(),
     .c_expr = "agnesi_softplus({0})",
     .vjp = AG_VJP(v.g * sigmoid(v.a()))},
    {.op = Op::Relu,
     .name = "relu",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\operatorname{relu}{0}",
     .eval = unary_any<AG_FN1(relu_of(a))>(),
     .c_expr = "agnesi_relu({0})",
     .vjp = AG_VJP(where(v.a() > 0, v.g, 0))},
    {.op = Op::Floor,
     .name = "floor",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\left\\lfloor {0} \\right\\rfloor",
     .eval = {.u64 = [](double a) { return std::floor(a); },
              .u32 = [](float a) { return std::floor(a); },
              .ui = [](std::int64_t a) { return a; }},
     .c_expr = "floor({0})",
     .vjp = no_grad},
    {.op = Op::Ceil,
     .name = "ceil",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\left\\lceil {0} \\right\\rceil",
     .eval = {.u64 = [](double a) { return std::ceil(a); },
              .u32 = [](float a) { return std::ceil(a); },
              .ui = [](std::int64_t a) { return a; }},
     .c_expr = "ceil({0})",
     .vjp = no_grad},
    {.op = Op::Not,
     .name = "not",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Logical,
     .latex = "\\lnot {0}",
     .eval = {.ui = [](std::int64_t a) -> std::int64_t { return !a; }},
     .c_expr = "(!{0})",
     .vjp = no_grad},
    {.op = Op::Cast,
     .name = "cast",
     .arity = 1,
     .kind = K::Elementwise,
     .type = T::Cast,
     .latex = "{0}",
     .c_expr = "{0}",
     .vjp = AG_VJP(is_float(v.a().dtype()) ? cast(v.g, v.a().dtype()) : Expr())},

    {.op = Op::Add,
     .name = "add",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Same,
     .infix = "+",
     .prec = Prec::Add,
     .latex = "{0} + {1}",
     .commutative = true,
     .eval = binary_any<AG_FN2(a + b)>(),
     .c_expr = "({0} + {1})",
     .vjp = AG_VJP(ub(v.g, v.a()), ub(v.g, v.b()))},
    {.op = Op::Sub,
     .name = "sub",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Same,
     .infix = "-",
     .prec = Prec::Add,
     .latex = "{0} - {1}",
     .eval = binary_any<AG_FN2(a - b)>(),
     .c_expr = "({0} - {1})",
     .vjp = AG_VJP(ub(v.g, v.a()), ub(-v.g, v.b()))},
    {.op = Op::Mul,
     .name = "mul",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Same,
     .infix = "*",
     .prec = Prec::Mul,
     .latex = "{0} {1}",
     .commutative = true,
     .eval = binary_any<AG_FN2(a* b)>(),
     .c_expr = "({0} * {1})",
     .vjp = AG_VJP(v.needs(0) ? ub(v.g * v.b(), v.a()) : Expr(),
                   v.needs(1) ? ub(v.g* v.a(), v.b()) : Expr())},
    {.op = Op::Div,
     .name = "div",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Float,
     .infix = "/",
     .prec = Prec::Mul,
     .latex = "\\frac{{0}}{{1}}",
     .eval = binary_float<AG_FN2(a / b)>(),
     .c_expr = "({0} / {1})",
     .vjp = AG_VJP(ub(v.g / v.b(), v.a()),
                   v.needs(1) ? ub(-v.g* v.a() / pow(v.b(), 2), v.b()) : Expr())},
    {.op = Op::Pow,
     .name = "pow",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Float,
     .infix = "^",
     .prec = Prec::Pow,
     .latex = "{0}^{{1}}",
     .eval = {.b64 = [](double a, double b) { return std::pow(a, b); },
              .b32 = [](float a, float b) { return std::pow(a, b); },
              .bi = ipow},
     .c_expr = "pow({0}, {1})",
     .vjp = AG_VJP(ub(v.g * v.b() * pow_minus_one(v.a(), v.b()), v.a()),
                   v.needs(1) ? ub(v.g* v.out* log(v.a()), v.b()) : Expr())},
    {.op = Op::Minimum,
     .name = "min",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\min\\left({0}, {1}\\right)",
     .commutative = true,
     .eval = binary_any<AG_FN2(min_of(a, b))>(),
     .c_expr = "agnesi_min({0}, {1})",
     .vjp = [](const VjpArgs& v) { return detail::minmax_vjp(v, false); }},
    {.op = Op::Maximum,
     .name = "max",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Same,
     .latex = "\\max\\left({0}, {1}\\right)",
     .commutative = true,
     .eval = binary_any<AG_FN2(max_of(a, b))>(),
     .c_expr = "agnesi_max({0}, {1})",
     .vjp = [](const VjpArgs& v) { return detail::minmax_vjp(v, true); }},
    {.op = Op::Atan2,
     .name = "atan2",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Float,
     .latex = "\\operatorname{atan2}\\left({0}, {1}\\right)",
     .eval = binary_float<AG_FN2(std::atan2(a, b))>(),
     .c_expr = "atan2({0}, {1})",
     .vjp = AG_VJP(ub(v.g * v.b() / (pow(v.a(), 2) + pow(v.b(), 2)), v.a()),
                   ub(-v.g* v.a() / (pow(v.a(), 2) + pow(v.b(), 2)), v.b()))},
    {.op = Op::Lt,
     .name = "lt",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Compare,
     .infix = "<",
     .prec = Prec::Compare,
     .latex = "{0} < {1}",
     .eval = binary_any<AG_FN2(decltype(a)(a < b))>(),
     .c_expr = "({0} < {1})",
     .vjp = no_grad},
    {.op = Op::Le,
     .name = "le",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Compare,
     .infix = "<=",
     .prec = Prec::Compare,
     .latex = "{0} \\le {1}",
     .eval = binary_any<AG_FN2(decltype(a)(a <= b))>(),
     .c_expr = "({0} <= {1})",
     .vjp = no_grad},
    {.op = Op::Gt,
     .name = "gt",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Compare,
     .infix = ">",
     .prec = Prec::Compare,
     .latex = "{0} > {1}",
     .eval = binary_any<AG_FN2(decltype(a)(a > b))>(),
     .c_expr = "({0} > {1})",
     .vjp = no_grad},
    {.op = Op::Ge,
     .name = "ge",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Compare,
     .infix = ">=",
     .prec = Prec::Compare,
     .latex = "{0} \\ge {1}",
     .eval = binary_any<AG_FN2(decltype(a)(a >= b))>(),
     .c_expr = "({0} >= {1})",
     .vjp = no_grad},
    {.op = Op::Eq,
     .name = "eq",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Compare,
     .infix = "==",
     .prec = Prec::Compare,
     .latex = "{0} = {1}",
     .commutative = true,
     .eval = binary_any<AG_FN2(decltype(a)(a == b))>(),
     .c_expr = "({0} == {1})",
     .vjp = no_grad},
    {.op = Op::Ne,
     .name = "ne",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Compare,
     .infix = "!=",
     .prec = Prec::Compare,
     .latex = "{0} \\ne {1}",
     .commutative = true,
     .eval = binary_any<AG_FN2(decltype(a)(a != b))>(),
     .c_expr = "({0} != {1})",
     .vjp = no_grad},
    {.op = Op::And,
     .name = "and",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Logical,
     .latex = "{0} \\land {1}",
     .commutative = true,
     .eval = {.bi = [](std::int64_t a, std::int64_t b) -> std::int64_t { return a && b; }},
     .c_expr = "({0} && {1})",
     .vjp = no_grad},
    {.op = Op::Or,
     .name = "or",
     .arity = 2,
     .kind = K::Elementwise,
     .type = T::Logical,
     .latex = "{0} \\lor {1}",
     .commutative = true,
     .eval = {.bi = [](std::int64_t a, std::int64_t b) -> std::int64_t { return a || b; }},
     .c_expr = "({0} || {1})",
     .vjp = no_grad},

    {.op = Op::Where,
     .name = "where",
     .arity = 3,
     .kind = K::Elementwise,
     .type = T::Where,
     .latex = "\\begin{cases} {1} & {0} \\\\ {2} & \\text{otherwise} \\end{cases}",
     .c_expr = "({0} ? {1} : {2})",
     .vjp = AG_VJP(Expr(), v.needs(1) ? ub(where(v.a(), v.g, 0), v.b()) : Expr(),
                   v.needs(2) ? ub(where(v.a(), 0, v.g), v.c()) : Expr())},

    {.op = Op::Sum,
     .name = "sum",
     .arity = 1,
     .kind = K::Reduction,
     .latex = "\\sum",
     .vjp = detail::reduce_vjp},
    {.op = Op::Prod,
     .name = "prod",
     .arity = 1,
     .kind = K::Reduction,
     .latex = "\\prod",
     .vjp = detail::reduce_vjp},
    {.op = Op::ReduceMax,
     .name = "amax",
     .arity = 1,
     .kind = K::Reduction,
     .latex = "\\max",
     .vjp = detail::reduce_vjp},
    {.op = Op::ReduceMin,
     .name = "amin",
     .arity = 1,
     .kind = K::Reduction,
     .latex = "\\min",
     .vjp = detail::reduce_vjp},
    {.op = Op::Mean,
     .name = "mean",
     .arity = 1,
     .kind = K::Reduction,
     .latex = "\\operatorname{mean}",
     .vjp = detail::reduce_vjp},
    {.op = Op::Logsumexp,
     .name = "logsumexp",
     .arity = 1,
     .kind = K::Reduction,
     .latex = "\\operatorname{logsumexp}",
     .vjp = detail::reduce_vjp},

    {.op = Op::Softmax,
     .name = "softmax",
     .arity = 1,
     .kind = K::AxisNormalize,
     .latex = "\\operatorname{softmax}",
     .vjp = AG_VJP(v.out * (v.g - sum(v.g * v.out, {axis(v)}, true)))},
    {.op = Op::LogSoftmax,
     .name = "log_softmax",
     .arity = 1,
     .kind = K::AxisNormalize,
     .latex = "\\operatorname{log\\_softmax}",
     .vjp = AG_VJP(v.g - exp(v.out) * sum(v.g, {axis(v)}, true))},

    {.op = Op::Reshape,
     .name = "reshape",
     .arity = 1,
     .kind = K::Shape,
     .latex = "\\operatorname{reshape}",
     .vjp = AG_VJP(reshape(v.g, v.a().shape()))},
    {.op = Op::Transpose,
     .name = "transpose",
     .arity = 1,
     .kind = K::Shape,
     .latex = "^{\\top}",
     .vjp = detail::transpose_vjp},
    {.op = Op::BroadcastTo,
     .name = "broadcast_to",
     .arity = 1,
     .kind = K::Shape,
     .latex = "\\operatorname{broadcast}",
     .vjp = AG_VJP(ub(v.g, v.a()))},
    {.op = Op::ExpandDims,
     .name = "expand_dims",
     .arity = 1,
     .kind = K::Shape,
     .latex = "\\operatorname{expand\\_dims}",
     .vjp = AG_VJP(reshape(v.g, v.a().shape()))},
    {.op = Op::Squeeze,
     .name = "squeeze",
     .arity = 1,
     .kind = K::Shape,
     .latex = "\\operatorname{squeeze}",
     .vjp = AG_VJP(reshape(v.g, v.a().shape()))},
    {.op = Op::Concat,
     .name = "concat",
     .arity = -1,
     .kind = K::Shape,
     .latex = "\\operatorname{concat}",
     .vjp = detail::concat_vjp},
    {.op = Op::Slice,
     .name = "slice",
     .arity = 1,
     .kind = K::Shape,
     .latex = "\\operatorname{slice}",
     .vjp = detail::slice_vjp},

    {.op = Op::Matmul,
     .name = "matmul",
     .arity = 2,
     .kind = K::Matmul,
     .latex = "{0} {1}",
     .vjp = detail::matmul_vjp},

    // An identity matrix: a leaf, built by eye(n) and printed, parsed and evaluated by name.
    {.op = Op::Eye, .name = "eye", .arity = 0, .kind = K::Leaf, .latex = "I_n"},
}};

#undef AG_FN1
#undef AG_VJP
#undef AG_FN2

}  // namespace

const OpInfo* const detail::kOpTable = kTable.data();

void detail::op_out_of_range(std::size_t i) {
    throw InternalError("internal error: op out of range: " + std::to_string(i));
}

std::optional<Op> op_from_name(std::string_view name) {
    static const auto* names = [] {
        auto* m = new std::unordered_map<std::string_view, Op>;
        for (const auto& info : kTable)
            if (info.kind != OpKind::Leaf) m->emplace(info.name, info.op);
        return m;
    }();
    auto it = names->find(name);
    if (it == names->end()) return std::nullopt;
    return it->second;
}

}  // namespace agnesi
