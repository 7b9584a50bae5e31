// The reference evaluator against hand-computed values: every op, broadcasting, reductions over
// every axis, shape ops, matmul, symbolic sizes, errors, and a 10^6-deep chain.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <numbers>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "agnesi/evaluate.hpp"
#include "agnesi/traverse.hpp"

using namespace agnesi;
using ::testing::HasSubstr;

namespace {

template <class E, class F>
std::string error_text(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "<no error>";
}

Tensor f64s(Shape shape, std::vector<double> v) {
    return Tensor::from_vector<double>(std::move(shape), v);
}

// Both NaN, or within a relative tolerance.
bool close(double a, double b, double rel = 1e-14) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (a == b) return true;
    return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b));
}

void expect_values(const Tensor& t, const std::vector<double>& want, double rel = 1e-14) {
    ASSERT_EQ(t.size(), static_cast<std::int64_t>(want.size())) << shape_string(t.shape());
    for (std::size_t i = 0; i < want.size(); ++i)
        EXPECT_TRUE(close(t.at(static_cast<std::int64_t>(i)), want[i], rel))
            << "element " << i << ": got " << format_value(t.at(static_cast<std::int64_t>(i)))
            << ", want " << format_value(want[i]);
}

// Deterministic test data: n values in roughly [-1.5, 1.5].
std::vector<double> ramp(std::size_t n, double scale = 0.37) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = std::fmod(static_cast<double>(i) * scale + 0.11, 3.0) - 1.5;
    return v;
}

// Row-major strides and the flat index of a broadcast operand for an output index.
std::vector<std::int64_t> unravel(std::int64_t flat, const Shape& s) {
    std::vector<std::int64_t> idx(s.size());
    for (std::size_t d = s.size(); d-- > 0;) {
        idx[d] = flat % s[d];
        flat /= s[d];
    }
    return idx;
}
std::int64_t broadcast_index(const std::vector<std::int64_t>& out_idx, const Shape& s) {
    std::int64_t flat = 0;
    std::size_t lead = out_idx.size() - s.size();
    for (std::size_t d = 0; d < s.size(); ++d)
        flat = flat * s[d] + (s[d] == 1 ? 0 : out_idx[lead + d]);
    return flat;
}

}  // namespace

// ---- leaves -------------------------------------------------------------------------------------

TEST(Evaluate, VariablesAndConstants) {
    Expr x = scalar("x");
    EXPECT_EQ(evaluate(x, {{"x", 0.25}}).item(), 0.25);
    EXPECT_EQ(evaluate(x + 2, {{"x", 0.25}}).item(), 2.25);

    Tensor third = evaluate(constant(Number::rational(1, 3), f32), {});
    EXPECT_EQ(third.dtype(), f32);
    EXPECT_EQ(third.data<float>()[0], 1.0f / 3.0f);
    EXPECT_EQ(evaluate(constant(Number::pi(), f64), {}).item(), std::numbers::pi);
    EXPECT_EQ(evaluate(constant(Number(-7), i32), {}).data<std::int32_t>()[0], -7);
    EXPECT_EQ(evaluate(constant(Number::rational(-5, 2), i64), {}).data<std::int64_t>()[0], -2);
    EXPECT_TRUE(evaluate(constant(Number::nan(), boolean), {}).data<bool>()[0]);
    EXPECT_FALSE(evaluate(constant(Number(0), boolean), {}).data<bool>()[0]);
    EXPECT_TRUE(std::isinf(evaluate(constant(Number::inf(), f32), {}).item()));
}

TEST(Evaluate, Identity) {
    Tensor i3 = evaluate(eye(3), {});
    ASSERT_EQ(i3.shape(), (Shape{3, 3}));
    for (std::int64_t r = 0; r < 3; ++r)
        for (std::int64_t c = 0; c < 3; ++c) EXPECT_EQ(i3.at(r * 3 + c), r == c ? 1.0 : 0.0);
    Tensor i2 = evaluate(eye(2, i32), {});
    EXPECT_EQ(i2.dtype(), i32);
    EXPECT_EQ(i2.data<std::int32_t>()[3], 1);
    EXPECT_EQ(i2.data<std::int32_t>()[1], 0);
    EXPECT_EQ(evaluate(eye(0), {}).size(), 0);
    EXPECT_THROW(eye(-1), ShapeError);
    EXPECT_THROW(eye(2, boolean), TypeError);
}

TEST(Evaluate, Float64ScalarBindsToAnyScalarDtype) {
    Tensor a = evaluate(scalar("xi", i32), {{"xi", 3.9}});
    EXPECT_EQ(a.dtype(), i32);
    EXPECT_EQ(a.data<std::int32_t>()[0], 3);
    Tensor b = evaluate(scalar("xf", f32) * 2, {{"xf", 0.1}});
    EXPECT_EQ(b.dtype(), f32);
    EXPECT_EQ(b.data<float>()[0], 0.1f * 2.0f);
    EXPECT_TRUE(evaluate(scalar("xb", boolean), {{"xb", 0.5}}).data<bool>()[0]);
}

TEST(Evaluate, MissingVariableIsNamed) {
    Expr e = scalar("x") + scalar("missing_var");
    EXPECT_EQ(error_text<ValueError>([&] {
                  evaluate(e, {{"x", 1.0}});
              }),
              "evaluate: no value for variable 'missing_var'");
}

TEST(Evaluate, WrongShapeOrDtypeIsNamed) {
    Expr m = matrix("M", 2, 3);
    std::string msg = error_text<ShapeError>([&] { evaluate(m, {{"M", Tensor(f64, {3, 2})}}); });
    EXPECT_THAT(msg, HasSubstr("variable 'M'"));
    EXPECT_THAT(msg, HasSubstr("(2, 3)"));
    EXPECT_THAT(msg, HasSubstr("(3, 2)"));
    EXPECT_THAT(error_text<ShapeError>([&] { evaluate(m, {{"M", 1.0}}); }), HasSubstr("()"));
    msg = error_text<TypeError>([&] { evaluate(m, {{"M", Tensor(f32, {2, 3})}}); });
    EXPECT_THAT(msg, HasSubstr("variable 'M' has dtype float64, given a value of dtype float32"));
    EXPECT_THAT(error_text<TypeError>([&] {
                    evaluate(scalar("s32", f32), {{"s32", Tensor::scalar(1)}});
                }),
                HasSubstr("given a value of dtype int32"));
}

TEST(Evaluate, SymbolicSizesBindConsistently) {
    Dim n = sym_dim("eval_n");
    Expr x = tensor("xs", {n, 3});
    Expr y = vector("ys", n);
    Tensor xv = f64s({2, 3}, {1, 2, 3, 4, 5, 6});
    Tensor r = evaluate(sum(x, {1}) + y, {{"xs", xv}, {"ys", f64s({2}, {10, 20})}});
    EXPECT_EQ(r.shape(), (Shape{2}));
    expect_values(r, {16, 35});

    std::string msg = error_text<ShapeError>([&] {
        evaluate(sum(x, {1}) + y, {{"xs", xv}, {"ys", f64s({3}, {1, 2, 3})}});
    });
    EXPECT_THAT(msg, HasSubstr("variable 'ys' has shape (eval_n,), given shape (3,)"));
    EXPECT_THAT(msg, HasSubstr("eval_n is 2"));

    // Shape ops take their symbolic sizes from the bound values.
    Tensor t = evaluate(reshape(x, {3, n}), {{"xs", xv}});
    EXPECT_EQ(t.shape(), (Shape{3, 2}));
    expect_values(t, {1, 2, 3, 4, 5, 6});
    Tensor b = evaluate(broadcast_to(scalar("s") + 0 * sum(y), {n, 2}),
                        {{"s", 1.5}, {"ys", f64s({3}, {1, 2, 3})}});
    EXPECT_EQ(b.shape(), (Shape{3, 2}));
    Tensor tr = evaluate(transpose(x) * 2, {{"xs", f64s({1, 3}, {1, 2, 3})}});
    EXPECT_EQ(tr.shape(), (Shape{3, 1}));
    expect_values(tr, {2, 4, 6});

    Expr unbound = broadcast_to(scalar("s"), {sym_dim("eval_unbound")});
    EXPECT_THAT(error_text<ValueError>([&] {
                    evaluate(unbound, {{"s", 1.0}});
                }),
                HasSubstr("'eval_unbound'"));
}

TEST(Evaluate, ResultsDoNotAliasInputs) {
    Expr v = vector("va", 2);
    Tensor in = f64s({2}, {1, 2});
    Tensor out = evaluate(v, {{"va", in}});
    out.data<double>()[0] = 99;
    EXPECT_EQ(in.at(0), 1.0);
    Tensor r = evaluate(reshape(v, {2, 1}), {{"va", in}});
    r.data<double>()[1] = 99;
    EXPECT_EQ(in.at(1), 2.0);
}

TEST(Evaluate, SeveralRootsShareWork) {
    Expr x = vector("vr", 3);
    Expr s = exp(x);
    std::vector<Tensor> r = evaluate({s, sum(s), s * 2, x}, {{"vr", f64s({3}, {0, 1, 2})}});
    ASSERT_EQ(r.size(), 4u);
    expect_values(r[0], {1, std::exp(1.0), std::exp(2.0)});
    expect_values(r[1], {1 + std::exp(1.0) + std::exp(2.0)});
    expect_values(r[2], {2, 2 * std::exp(1.0), 2 * std::exp(2.0)});
    expect_values(r[3], {0, 1, 2});
}

// ---- elementwise --------------------------------------------------------------------------------

TEST(Evaluate, EveryUnaryOpMatchesTheStandardLibrary) {
    struct Case {
        Op op;
        double (*f)(double);
        double shift;  // moves the inputs into the op's domain
    };
    auto sigmoid_ref = [](double x) { return 1 / (1 + std::exp(-x)); };
    auto softplus_ref = [](double x) { return std::log1p(std::exp(x)); };
    std::vector<Case> cases = {
        {Op::Exp, [](double x) { return std::exp(x); }, 0},
        {Op::Log, [](double x) { return std::log(x); }, 2},
        {Op::Sqrt, [](double x) { return std::sqrt(x); }, 2},
        {Op::Sin, [](double x) { return std::sin(x); }, 0},
        {Op::Cos, [](double x) { return std::cos(x); }, 0},
        {Op::Tan, [](double x) { return std::tan(x); }, 0},
        {Op::Asin, [](double x) { return std::asin(x); }, 0},
        {Op::Acos, [](double x) { return std::acos(x); }, 0},
        {Op::Atan, [](double x) { return std::atan(x); }, 0},
        {Op::Sinh, [](double x) { return std::sinh(x); }, 0},
        {Op::Cosh, [](double x) { return std::cosh(x); }, 0},
        {Op::Tanh, [](double x) { return std::tanh(x); }, 0},
        {Op::Asinh, [](double x) { return std::asinh(x); }, 0},
        {Op::Acosh, [](double x) { return std::acosh(x); }, 2},
        {Op::Atanh, [](double x) { return std::atanh(x); }, 0},
        {Op::Abs, [](double x) { return std::fabs(x); }, 0},
        {Op::Sign, [](double x) { return x > 0   ? 1.0
                                         : x < 0 ? -1.0
                                                 : 0.0; }, 0},
        {Op::Log1p, [](double x) { return std::log1p(x); }, 0},
        {Op::Expm1, [](double x) { return std::expm1(x); }, 0},
        {Op::Erf, [](double x) { return std::erf(x); }, 0},
        {Op::Erfc, [](double x) { return std::erfc(x); }, 0},
        {Op::Relu, [](double x) { return x > 0 ? x : 0.0; }, 0},
        {Op::Floor, [](double x) { return std::floor(x); }, 0},
        {Op::Ceil, [](double x) { return std::ceil(x); }, 0},
        {Op::Neg, [](double x) { return -x; }, 0},
    };
    std::vector<double> xs = {-0.9, -0.5, -0.1, 0.0, 0.3, 0.75};
    Expr v = vector("vu", 6);
    for (const Case& c : cases) {
        std::vector<double> in, want;
        for (double x : xs) in.push_back(x + c.shift), want.push_back(c.f(x + c.shift));
        Tensor r = evaluate(elementwise(c.op, {v}), {{"vu", f64s({6}, in)}});
        SCOPED_TRACE(std::string(op_info(c.op).name));
        EXPECT_EQ(r.dtype(), f64);
        expect_values(r, want, 0);  // the same library function, so bit-identical
    }
    std::vector<double> in = {-30, -2, -0.5, 0, 0.5, 2};
    std::vector<double> sig, sp;
    for (double x : in) sig.push_back(sigmoid_ref(x)), sp.push_back(softplus_ref(x));
    expect_values(evaluate(sigmoid(v), {{"vu", f64s({6}, in)}}), sig, 1e-15);
    expect_values(evaluate(softplus(v), {{"vu", f64s({6}, in)}}), sp, 1e-15);
}

TEST(Evaluate, DomainErrorsFollowIeee) {
    Expr x = scalar("x");
    EXPECT_TRUE(std::isnan(evaluate(log(x), {{"x", -1.0}}).item()));
    EXPECT_EQ(evaluate(log(x), {{"x", 0.0}}).item(), -std::numeric_limits<double>::infinity());
    EXPECT_EQ(evaluate(1 / x, {{"x", 0.0}}).item(), std::numeric_limits<double>::infinity());
    EXPECT_TRUE(std::isnan(evaluate(sqrt(x), {{"x", -1.0}}).item()));
}

TEST(Evaluate, Float32ComputesInFloat32) {
    Expr v = vector("v32", 4, f32);
    std::vector<float> in = {0.1f, 0.7f, 1.3f, 2.9f};
    Bindings b = {{"v32", Tensor::from_vector<float>({4}, in)}};
    Tensor e = evaluate(exp(v) * 3 + sin(v), b);
    ASSERT_EQ(e.dtype(), f32);
    for (int i = 0; i < 4; ++i)
        EXPECT_FLOAT_EQ(e.data<float>()[i], std::exp(in[i]) * 3.0f + std::sin(in[i])) << i;
    // 1e8 + 0.7 rounds to 1e8 in float32 (the spacing there is 8), so this is 0, not 0.7.
    Tensor c = evaluate(v + 1e8 - 1e8, b);
    ASSERT_EQ(c.dtype(), f32);
    EXPECT_EQ(c.data<float>()[1], 0.0f);
    Tensor d = evaluate(v / 3, b);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(d.data<float>()[i], in[i] / 3.0f);
}

TEST(Evaluate, EveryBinaryOp) {
    Expr a = vector("ba", 5), b = vector("bb", 5);
    std::vector<double> av = {-1.5, 0.5, 2, 3, 0}, bv = {2, 0.5, -1, 3, -0.0};
    Bindings at = {{"ba", f64s({5}, av)}, {"bb", f64s({5}, bv)}};
    auto check = [&](const Expr& e, double (*f)(double, double)) {
        std::vector<double> want;
        for (int i = 0; i < 5; ++i) want.push_back(f(av[i], bv[i]));
        SCOPED_TRACE(std::string(e->info().name));
        expect_values(evaluate(e, at), want, 0);
    };
    check(a + b, [](double x, double y) { return x + y; });
    check(a - b, [](double x, double y) { return x - y; });
    check(a * b, [](double x, double y) { return x * y; });
    check(a / b, [](double x, double y) { return x / y; });
    check(pow(abs(a), b), [](double x, double y) { return std::pow(std::fabs(x), y); });
    check(minimum(a, b), [](double x, double y) { return std::min(x, y); });
    check(maximum(a, b), [](double x, double y) { return std::max(x, y); });
    check(atan2(a, b), [](double x, double y) { return std::atan2(x, y); });
    check(a < b, [](double x, double y) { return double(x < y); });
    check(a <= b, [](double x, double y) { return double(x <= y); });
    check(a > b, [](double x, double y) { return double(x > y); });
    check(a >= b, [](double x, double y) { return double(x >= y); });
    check(eq(a, b), [](double x, double y) { return double(x == y); });
    check(ne(a, b), [](double x, double y) { return double(x != y); });
    check(logical_and(a > 0, b > 0), [](double x, double y) { return double(x > 0 && y > 0); });
    check(logical_or(a > 0, b > 0), [](double x, double y) { return double(x > 0 || y > 0); });
    check(logical_not(a > 0), [](double x, double) { return double(!(x > 0)); });
    EXPECT_EQ(evaluate(a < b, at).dtype(), boolean);
    EXPECT_EQ(evaluate(logical_not(a > 0), at).dtype(), boolean);
}

TEST(Evaluate, MinMaxPropagateNan) {
    Expr x = scalar("x"), y = scalar("y");
    double nan = std::nan("");
    EXPECT_TRUE(std::isnan(evaluate(minimum(x, y), {{"x", nan}, {"y", 1.0}}).item()));
    EXPECT_TRUE(std::isnan(evaluate(maximum(x, y), {{"x", 1.0}, {"y", nan}}).item()));
}

TEST(Evaluate, IntegerArithmeticStaysInteger) {
    Expr a = vector("ia", 4, i32), b = vector("ib", 4, i32);
    Bindings at = {{"ia", Tensor::from_vector<std::int32_t>({4}, {-7, 2, 2147483647, 0})},
                   {"ib", Tensor::from_vector<std::int32_t>({4}, {2, -3, 1, 5})}};
    Tensor s = evaluate(a + b, at);
    ASSERT_EQ(s.dtype(), i32);
    EXPECT_EQ(s.data<std::int32_t>()[0], -5);
    EXPECT_EQ(s.data<std::int32_t>()[2], std::numeric_limits<std::int32_t>::min());  // wraps
    Tensor p = evaluate(a * b - abs(a) + sign(b), at);
    EXPECT_EQ(p.data<std::int32_t>()[0], -14 - 7 + 1);
    EXPECT_EQ(p.data<std::int32_t>()[1], -6 - 2 - 1);
    Tensor d = evaluate(a / b, at);  // integer division is float64
    ASSERT_EQ(d.dtype(), f64);
    EXPECT_EQ(d.at(0), -3.5);
    Tensor c = evaluate(a < b, at);
    ASSERT_EQ(c.dtype(), boolean);
    expect_values(c, {1, 0, 0, 1});
    Tensor l = evaluate(tensor("il", {2}, i64) * 3,
                        {{"il", Tensor::from_vector<std::int64_t>({2}, {9007199254740993, -1})}});
    ASSERT_EQ(l.dtype(), i64);
    EXPECT_EQ(l.data<std::int64_t>()[0], 27021597764222979);
    Tensor bools = evaluate(vector("bl", 2, boolean) + vector("bl", 2, boolean),
                            {{"bl", Tensor::from_vector<bool>({2}, {true, false})}});
    ASSERT_EQ(bools.dtype(), i64);
    expect_values(bools, {2, 0});
}

TEST(Evaluate, MixedDtypesConvertFirst) {
    Expr a = vector("ma", 3, i32), b = vector("mb", 3, f32);
    Tensor r = evaluate(a + b, {{"ma", Tensor::from_vector<std::int32_t>({3}, {1, 2, 3})},
                                {"mb", Tensor::from_vector<float>({3}, {0.5f, 0.25f, 0.1f})}});
    ASSERT_EQ(r.dtype(), f32);
    EXPECT_EQ(r.data<float>()[2], 3.0f + 0.1f);
}

TEST(Evaluate, BroadcastingMatchesNaiveIndexing) {
    struct Case {
        Shape a, b;
    };
    std::vector<Case> cases = {{{2, 3}, {3}},          {{3, 1}, {1, 4}},      {{}, {2, 3}},
                               {{2, 1, 3}, {4, 1}},    {{4, 1, 5}, {4, 5}},   {{1}, {7}},
                               {{2, 3, 4}, {2, 3, 4}}, {{5, 1, 1}, {1, 1, 6}}};
    for (const Case& c : cases) {
        Expr x = tensor("bx" + std::to_string(c.a.size()), c.a);
        Expr y = tensor("by" + std::to_string(c.b.size()), c.b);
        Tensor xv = f64s(c.a, ramp(static_cast<std::size_t>(numel(c.a)), 0.41));
        Tensor yv = f64s(c.b, ramp(static_cast<std::size_t>(numel(c.b)), 0.23));
        Bindings at = {{x->name(), xv}, {y->name(), yv}};
        Tensor r = evaluate(x * 10 - y, at);
        Shape out = *broadcast_shapes(c.a, c.b);
        ASSERT_EQ(r.shape(), out);
        std::vector<double> want;
        for (std::int64_t i = 0; i < numel(out); ++i) {
            auto idx = unravel(i, out);
            want.push_back(xv.at(broadcast_index(idx, c.a)) * 10 -
                           yv.at(broadcast_index(idx, c.b)));
        }
        SCOPED_TRACE(shape_string(c.a) + " and " + shape_string(c.b));
        expect_values(r, want, 0);
        // The same with the operands swapped exercises the other broadcast side.
        Tensor s = evaluate(y - x * 10, at);
        for (auto& w : want) w = -w;
        expect_values(s, want, 0);
    }
}

TEST(Evaluate, WhereBroadcastsAndCast) {
    Expr c = vector("wc", 3) > 0;
    Expr m = matrix("wm", 2, 3);
    Tensor r = evaluate(where(c, m, -1.0),
                        {{"wc", f64s({3}, {1, -1, 2})}, {"wm", f64s({2, 3}, {1, 2, 3, 4, 5, 6})}});
    ASSERT_EQ(r.shape(), (Shape{2, 3}));
    expect_values(r, {1, -1, 3, 4, -1, 6});

    Expr x = vector("cx", 5);
    Bindings at = {{"cx", f64s({5}, {-2.7, -0.5, 0, 1.5, 3.99})}};
    Tensor i = evaluate(cast(x, i32), at);
    ASSERT_EQ(i.dtype(), i32);
    expect_values(i, {-2, 0, 0, 1, 3});
    Tensor b = evaluate(cast(x, boolean), at);
    ASSERT_EQ(b.dtype(), boolean);
    expect_values(b, {1, 1, 0, 1, 1});
    Tensor f = evaluate(cast(x, f32), at);
    EXPECT_EQ(f.data<float>()[0], -2.7f);
}

TEST(Evaluate, HalfPrecisionRoundsEachNode) {
    Expr h = vector("h16", 3, f16);
    Tensor in = f64s({3}, {1, 2, 1000}).astype(f16);
    Tensor r = evaluate(h + constant(Number::rational(1, 2), f16), {{"h16", in}});
    ASSERT_EQ(r.dtype(), f16);
    expect_values(r, {1.5, 2.5, 1000.5});
    Tensor q = evaluate(h / 3, {{"h16", in}});
    ASSERT_EQ(q.dtype(), f16);
    EXPECT_EQ(q.at(0), 0.333251953125);  // 1/3 rounded to half
}

// ---- reductions ---------------------------------------------------------------------------------

namespace {
// Groups the elements of a row-major array by their output index after reducing `axes`.
std::vector<std::vector<double>> groups(const std::vector<double>& x, const Shape& s,
                                        const std::vector<std::int64_t>& axes) {
    std::map<std::vector<std::int64_t>, std::vector<double>> g;
    for (std::size_t i = 0; i < x.size(); ++i) {
        auto idx = unravel(static_cast<std::int64_t>(i), s);
        std::vector<std::int64_t> key;
        for (std::size_t d = 0; d < s.size(); ++d)
            if (std::find(axes.begin(), axes.end(), static_cast<std::int64_t>(d)) == axes.end())
                key.push_back(idx[d]);
        g[key].push_back(x[i]);
    }
    std::vector<std::vector<double>> out;
    for (auto& [k, v] : g) out.push_back(v);
    return out;
}

double ref_reduce(Op op, const std::vector<double>& v) {
    double s = 0, p = 1, mx = -INFINITY, mn = INFINITY;
    for (double x : v) s += x, p *= x, mx = std::max(mx, x), mn = std::min(mn, x);
    switch (op) {
        case Op::Sum: return s;
        case Op::Prod: return p;
        case Op::ReduceMax: return mx;
        case Op::ReduceMin: return mn;
        case Op::Mean: return s / static_cast<double>(v.size());
        case Op::Logsumexp: {
            double e = 0;
            for (double x : v) e += std::exp(x - mx);
            return mx + std::log(e);
        }
        default: return NAN;
    }
}
}  // namespace

TEST(Evaluate, EveryReductionOverEveryAxis) {
    Shape s = {2, 3, 4};
    std::vector<double> xv = ramp(24);
    Expr x = tensor("rx", s);
    Bindings at = {{"rx", f64s(s, xv)}};
    std::vector<std::vector<std::int64_t>> axes_list = {{},     {0},    {1},  {2},      {0, 1},
                                                        {0, 2}, {1, 2}, {-1}, {0, 1, 2}};
    for (Op op : {Op::Sum, Op::Prod, Op::ReduceMax, Op::ReduceMin, Op::Mean, Op::Logsumexp})
        for (const auto& axes : axes_list)
            for (bool keep : {false, true}) {
                Expr e = reduce(op, x, Axes(axes.begin(), axes.end()), keep);
                Tensor r = evaluate(e, at);
                std::vector<std::int64_t> norm;
                for (auto a : axes) norm.push_back(a < 0 ? a + 3 : a);
                if (norm.empty()) norm = {0, 1, 2};
                Shape want_shape;
                for (std::int64_t d = 0; d < 3; ++d) {
                    bool red = std::find(norm.begin(), norm.end(), d) != norm.end();
                    if (!red)
                        want_shape.push_back(s[static_cast<std::size_t>(d)]);
                    else if (keep)
                        want_shape.push_back(1);
                }
                SCOPED_TRACE(fmt::format("{} axes [{}] keepdims {}", op_info(op).name,
                                         fmt::join(axes, ", "), keep));
                EXPECT_EQ(r.shape(), want_shape);
                EXPECT_EQ(r.dtype(), f64);
                std::vector<double> want;
                for (const auto& g : groups(xv, s, norm)) want.push_back(ref_reduce(op, g));
                expect_values(r, want, 1e-13);
            }
}

TEST(Evaluate, ReductionEdgeCases) {
    double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    Expr v = vector("re", 3);
    auto at = [](std::vector<double> x) { return Bindings{{"re", f64s({3}, x)}}; };
    EXPECT_TRUE(std::isnan(evaluate(amax(v), at({1, nan, 3})).item()));
    EXPECT_TRUE(std::isnan(evaluate(amin(v), at({nan, 1, 3})).item()));
    EXPECT_EQ(evaluate(logsumexp(v), at({-inf, -inf, -inf})).item(), -inf);
    EXPECT_EQ(evaluate(logsumexp(v), at({1, inf, 3})).item(), inf);
    EXPECT_TRUE(std::isnan(evaluate(logsumexp(v), at({1, nan, 3})).item()));
    EXPECT_NEAR(evaluate(logsumexp(v), at({1000, 1000, 1000})).item(), 1000 + std::log(3.0), 1e-12);
    EXPECT_NEAR(evaluate(logsumexp(v), at({-1000, -1000, -1000})).item(), -1000 + std::log(3.0),
                1e-12);

    Expr e = tensor("rempty", {0, 2});
    Bindings empty = {{"rempty", Tensor(f64, {0, 2})}};
    expect_values(evaluate(sum(e, {0}), empty), {0, 0});
    expect_values(evaluate(prod(e, {0}), empty), {1, 1});
    Tensor m = evaluate(mean(e, {0}), empty);
    EXPECT_TRUE(std::isnan(m.at(0)) && std::isnan(m.at(1)));
    Tensor l = evaluate(logsumexp(e, {0}), empty);
    EXPECT_EQ(l.at(0), -inf);
    EXPECT_EQ(evaluate(sum(e, {1}), empty).shape(), (Shape{0}));
    EXPECT_THAT(error_text<ValueError>([&] { evaluate(amax(e, {0}, true), empty); }),
                HasSubstr("empty axis"));
}

TEST(Evaluate, IntegerAndBoolReductions) {
    Expr a = matrix("ri", 2, 3, i32);
    Bindings at = {{"ri", Tensor::from_vector<std::int32_t>({2, 3}, {1, -2, 3, 4, 5, -6})}};
    Tensor s = evaluate(sum(a, {1}), at);
    ASSERT_EQ(s.dtype(), i64);
    expect_values(s, {2, 3});
    Tensor p = evaluate(prod(a), at);
    ASSERT_EQ(p.dtype(), i64);
    EXPECT_EQ(p.data<std::int64_t>()[0], 720);
    Tensor mx = evaluate(amax(a, {0}), at);
    ASSERT_EQ(mx.dtype(), i32);
    expect_values(mx, {4, 5, 3});
    Tensor mean_i = evaluate(mean(a), at);
    ASSERT_EQ(mean_i.dtype(), f64);
    EXPECT_DOUBLE_EQ(mean_i.item(), 5.0 / 6.0);
    Tensor any = evaluate(amax(vector("rb", 3, boolean)),
                          {{"rb", Tensor::from_vector<bool>({3}, {false, true, false})}});
    ASSERT_EQ(any.dtype(), boolean);
    EXPECT_TRUE(any.data<bool>()[0]);
}

TEST(Evaluate, Float32SumAccumulatesInDouble) {
    const int n = 100000;
    Expr v = vector("rs32", n, f32);
    std::vector<float> in(n, 0.1f);
    Tensor s = evaluate(sum(v), {{"rs32", Tensor::from_vector<float>({n}, in)}});
    ASSERT_EQ(s.dtype(), f32);
    double exact = static_cast<double>(0.1f) * n;
    EXPECT_EQ(s.data<float>()[0], static_cast<float>(exact));
    Tensor m = evaluate(mean(v), {{"rs32", Tensor::from_vector<float>({n}, in)}});
    EXPECT_EQ(m.data<float>()[0], 0.1f);
}

TEST(Evaluate, SoftmaxAndLogSoftmax) {
    Expr x = matrix("sx", 3, 4);
    std::vector<double> xv = ramp(12, 1.7);
    xv[4] = 1000, xv[5] = 1001;  // row 1 would overflow exp without the shift
    Bindings at = {{"sx", f64s({3, 4}, xv)}};
    for (std::int64_t axis : {1, 0}) {
        Tensor s = evaluate(softmax(x, axis), at);
        Tensor l = evaluate(log_softmax(x, axis), at);
        ASSERT_EQ(s.shape(), (Shape{3, 4}));
        std::int64_t lines = axis == 1 ? 3 : 4, len = axis == 1 ? 4 : 3;
        for (std::int64_t a = 0; a < lines; ++a) {
            auto at_ = [&](std::int64_t k) { return axis == 1 ? a * 4 + k : k * 4 + a; };
            double m = -INFINITY, z = 0, total = 0;
            for (std::int64_t k = 0; k < len; ++k) m = std::max(m, xv[at_(k)]);
            for (std::int64_t k = 0; k < len; ++k) z += std::exp(xv[at_(k)] - m);
            for (std::int64_t k = 0; k < len; ++k) {
                double want = std::exp(xv[at_(k)] - m) / z;
                EXPECT_TRUE(close(s.at(at_(k)), want, 1e-14)) << axis << " " << a << " " << k;
                EXPECT_NEAR(l.at(at_(k)), xv[at_(k)] - m - std::log(z), 1e-12);
                total += s.at(at_(k));
            }
            EXPECT_NEAR(total, 1.0, 1e-15);
        }
    }
    Tensor f = evaluate(softmax(vector("s32", 3, f32)),
                        {{"s32", Tensor::from_vector<float>({3}, {1, 2, 3})}});
    ASSERT_EQ(f.dtype(), f32);
    EXPECT_NEAR(f.at(0) + f.at(1) + f.at(2), 1.0, 1e-6);
}

// ---- shape ops ----------------------------------------------------------------------------------

TEST(Evaluate, ShapeOps) {
    Expr x = tensor("sh", {2, 3, 4});
    std::vector<double> xv(24);
    for (int i = 0; i < 24; ++i) xv[static_cast<std::size_t>(i)] = i;
    Bindings at = {{"sh", f64s({2, 3, 4}, xv)}};

    Tensor r = evaluate(reshape(x, {4, 6}), at);
    EXPECT_EQ(r.shape(), (Shape{4, 6}));
    expect_values(r, xv);
    EXPECT_EQ(evaluate(reshape(x, {-1, 4}), at).shape(), (Shape{6, 4}));

    Tensor t = evaluate(transpose(x, {2, 0, 1}), at);
    ASSERT_EQ(t.shape(), (Shape{4, 2, 3}));
    for (int k = 0; k < 4; ++k)
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 3; ++j)
                EXPECT_EQ(t.at(k * 6 + i * 3 + j),
                          xv[static_cast<std::size_t>(i * 12 + j * 4 + k)]);
    Tensor rev = evaluate(transpose(x), at);
    ASSERT_EQ(rev.shape(), (Shape{4, 3, 2}));
    EXPECT_EQ(rev.at(1), 12.0);

    Expr v = vector("shv", 3);
    Bindings vb = {{"shv", f64s({3}, {1, 2, 3})}};
    Tensor b = evaluate(broadcast_to(v, {2, 3}), vb);
    expect_values(b, {1, 2, 3, 1, 2, 3});
    Tensor bc = evaluate(broadcast_to(reshape(v, {3, 1}), {3, 2}), vb);
    expect_values(bc, {1, 1, 2, 2, 3, 3});

    Tensor e = evaluate(expand_dims(v, 0), vb);
    EXPECT_EQ(e.shape(), (Shape{1, 3}));
    EXPECT_EQ(evaluate(expand_dims(v, -1), vb).shape(), (Shape{3, 1}));
    Expr y = tensor("shy", {1, 3, 1});
    Bindings yb = {{"shy", f64s({1, 3, 1}, {4, 5, 6})}};
    EXPECT_EQ(evaluate(squeeze(y), yb).shape(), (Shape{3}));
    Tensor sq = evaluate(squeeze(y, {2}), yb);
    EXPECT_EQ(sq.shape(), (Shape{1, 3}));
    expect_values(sq, {4, 5, 6});

    Tensor s = evaluate(slice(x, 2, 1, 4, 2), at);
    ASSERT_EQ(s.shape(), (Shape{2, 3, 2}));
    std::vector<double> want;
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k : {1, 3}) want.push_back(i * 12 + j * 4 + k);
    expect_values(s, want);
    Tensor s0 = evaluate(slice(x, 0, -1, 5), at);
    EXPECT_EQ(s0.shape(), (Shape{1, 3, 4}));
    EXPECT_EQ(s0.at(0), 12.0);
    EXPECT_EQ(evaluate(slice(x, 1, 2, 2), at).shape(), (Shape{2, 0, 4}));
}

TEST(Evaluate, ConcatConvertsDtypes) {
    Expr a = matrix("ca", 2, 2, i32), b = matrix("cb", 2, 1);
    Bindings at = {{"ca", Tensor::from_vector<std::int32_t>({2, 2}, {1, 2, 3, 4})},
                   {"cb", f64s({2, 1}, {0.5, 0.25})}};
    Tensor r = evaluate(concat({a, b}, 1), at);
    ASSERT_EQ(r.dtype(), f64);
    ASSERT_EQ(r.shape(), (Shape{2, 3}));
    expect_values(r, {1, 2, 0.5, 3, 4, 0.25});
    Tensor c = evaluate(concat({a, transpose(b), a}, 0), at);
    ASSERT_EQ(c.shape(), (Shape{5, 2}));
    expect_values(c, {1, 2, 3, 4, 0.5, 0.25, 1, 2, 3, 4});
}

// ---- matmul -------------------------------------------------------------------------------------

namespace {
// C = A B for row-major A (m x k) and B (k x n).
std::vector<double> naive_matmul(const std::vector<double>& a, const std::vector<double>& b,
                                 std::int64_t m, std::int64_t k, std::int64_t n) {
    std::vector<double> c(static_cast<std::size_t>(m * n), 0.0);
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j)
            for (std::int64_t l = 0; l < k; ++l)
                c[static_cast<std::size_t>(i * n + j)] +=
                    a[static_cast<std::size_t>(i * k + l)] * b[static_cast<std::size_t>(l * n + j)];
    return c;
}
}  // namespace

TEST(Evaluate, MatmulMatchesNaiveLoop) {
    std::vector<double> av = ramp(12, 0.53), bv = ramp(20, 0.29);
    Expr a = matrix("mma", 3, 4), b = matrix("mmb", 4, 5);
    Bindings at = {{"mma", f64s({3, 4}, av)}, {"mmb", f64s({4, 5}, bv)}};
    Tensor c = evaluate(matmul(a, b), at);
    ASSERT_EQ(c.shape(), (Shape{3, 5}));
    expect_values(c, naive_matmul(av, bv, 3, 4, 5), 1e-13);

    Expr v = vector("mmv", 4), w = vector("mmw", 4);
    std::vector<double> vv = {1, -2, 0.5, 3}, wv = {2, 1, -4, 0.25};
    at.emplace("mmv", f64s({4}, vv));
    at.emplace("mmw", f64s({4}, wv));
    Tensor vm = evaluate(matmul(v, b), at);
    ASSERT_EQ(vm.shape(), (Shape{5}));
    expect_values(vm, naive_matmul(vv, bv, 1, 4, 5), 1e-13);
    Tensor mv = evaluate(matmul(a, v), at);
    ASSERT_EQ(mv.shape(), (Shape{3}));
    expect_values(mv, naive_matmul(av, vv, 3, 4, 1), 1e-13);
    Tensor dot = evaluate(matmul(v, w), at);
    ASSERT_EQ(dot.shape(), Shape{});
    EXPECT_DOUBLE_EQ(dot.item(), 2 - 2 - 2 + 0.75);
}

TEST(Evaluate, BatchedMatmulBroadcasts) {
    // (2, 1, 3, 4) @ (5, 4, 2) -> (2, 5, 3, 2)
    std::vector<double> av = ramp(24, 0.31), bv = ramp(40, 0.47);
    Expr a = tensor("bma", {2, 1, 3, 4}), b = tensor("bmb", {5, 4, 2});
    Tensor c =
        evaluate(matmul(a, b), {{"bma", f64s({2, 1, 3, 4}, av)}, {"bmb", f64s({5, 4, 2}, bv)}});
    ASSERT_EQ(c.shape(), (Shape{2, 5, 3, 2}));
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 5; ++j) {
            std::vector<double> am(av.begin() + i * 12, av.begin() + i * 12 + 12);
            std::vector<double> bm(bv.begin() + j * 8, bv.begin() + j * 8 + 8);
            std::vector<double> want = naive_matmul(am, bm, 3, 4, 2);
            for (int k = 0; k < 6; ++k)
                EXPECT_TRUE(
                    close(c.at((i * 5 + j) * 6 + k), want[static_cast<std::size_t>(k)], 1e-13));
        }
}

TEST(Evaluate, MatmulInIntegersAndFloat32) {
    Expr a = matrix("mia", 2, 3, i32), b = matrix("mib", 3, 2, i32);
    Tensor c = evaluate(
        matmul(a, b), {{"mia", Tensor::from_vector<std::int32_t>({2, 3}, {1, 2, 3, 4, 5, 6})},
                       {"mib", Tensor::from_vector<std::int32_t>({3, 2}, {7, 8, 9, 10, 11, 12})}});
    ASSERT_EQ(c.dtype(), i32);
    expect_values(c, {58, 64, 139, 154});

    Expr x = matrix("mfa", 2, 2, f32), y = matrix("mfb", 2, 2, f32);
    Tensor f = evaluate(matmul(x, y),
                        {{"mfa", Tensor::from_vector<float>({2, 2}, {0.1f, 0.2f, 0.3f, 0.4f})},
                         {"mfb", Tensor::from_vector<float>({2, 2}, {1, 2, 3, 4})}});
    ASSERT_EQ(f.dtype(), f32);
    EXPECT_FLOAT_EQ(f.data<float>()[0], 0.1f * 1 + 0.2f * 3);

    Expr e = tensor("mk0", {2, 0}), g = tensor("mk1", {0, 3});
    Tensor z = evaluate(matmul(e, g), {{"mk0", Tensor(f64, {2, 0})}, {"mk1", Tensor(f64, {0, 3})}});
    ASSERT_EQ(z.shape(), (Shape{2, 3}));
    expect_values(z, {0, 0, 0, 0, 0, 0});
}

// ---- depth --------------------------------------------------------------------------------------

TEST(Evaluate, MillionDeepChain) {
    Context ctx;
    Expr v = vector("v", 2, f64, ctx);
    Expr e = v;
    for (int i = 0; i < 1'000'000; ++i) e = e + 1;
    ASSERT_EQ(e->height(), 1'000'000u);
    expect_values(evaluate(e, {{"v", f64s({2}, {0.5, -1'000'000})}}), {1'000'000.5, 0});
}
