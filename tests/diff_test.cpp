// Differentiation: every op's derivative rule against finite differences (first and second
// order), tensor broadcasting, whole models, kinks, errors, forward mode, Jacobians, and the
// linear size of gradients.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "agnesi/agnesi.hpp"

using namespace agnesi;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

using Vars = std::vector<Expr>;

// Uniform values in [lo, hi] for each variable, from a fixed seed.
Bindings random_values(const Vars& vars, double lo, double hi, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(lo, hi);
    Bindings b;
    for (const Expr& v : vars) {
        Tensor t(f64, v.shape());
        for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] = u(rng);
        b[v->name()] = v.dtype() == f64 ? t : t.astype(v.dtype());
    }
    return b;
}

double value(const Expr& e, const Bindings& b) {
    return evaluate(e, b).item();
}

struct OpCase {
    std::string name;
    std::vector<Shape> shapes;  // one variable per shape: a, b, c
    std::function<Expr(const Vars&)> f;
    double lo = -2, hi = 2;
    bool second_order = true;
};

std::vector<OpCase> op_cases() {
    using V = const Vars&;
    Shape m = {2, 3};
    std::vector<OpCase> cs = {
        {"neg", {m}, [](V v) { return -v[0]; }},
        {"exp", {m}, [](V v) { return exp(v[0]); }},
        {"log", {m}, [](V v) { return log(v[0]); }, 0.5, 3},
        {"sqrt", {m}, [](V v) { return sqrt(v[0]); }, 0.5, 3},
        {"sin", {m}, [](V v) { return sin(v[0]); }},
        {"cos", {m}, [](V v) { return cos(v[0]); }},
        {"tan", {m}, [](V v) { return tan(v[0]); }, -1.2, 1.2},
        {"asin", {m}, [](V v) { return asin(v[0]); }, -0.9, 0.9},
        {"acos", {m}, [](V v) { return acos(v[0]); }, -0.9, 0.9},
        {"atan", {m}, [](V v) { return atan(v[0]); }},
        {"sinh", {m}, [](V v) { return sinh(v[0]); }},
        {"cosh", {m}, [](V v) { return cosh(v[0]); }},
        {"tanh", {m}, [](V v) { return tanh(v[0]); }},
        {"asinh", {m}, [](V v) { return asinh(v[0]); }},
        {"acosh", {m}, [](V v) { return acosh(v[0]); }, 1.5, 3},
        {"atanh", {m}, [](V v) { return atanh(v[0]); }, -0.9, 0.9},
        {"abs", {m}, [](V v) { return abs(v[0]); }},
        {"sign", {m}, [](V v) { return sign(v[0]) * v[0]; }},
        {"log1p", {m}, [](V v) { return log1p(v[0]); }, -0.5, 2},
        {"expm1", {m}, [](V v) { return expm1(v[0]); }},
        {"erf", {m}, [](V v) { return erf(v[0]); }},
        {"erfc", {m}, [](V v) { return erfc(v[0]); }},
        {"sigmoid", {m}, [](V v) { return sigmoid(v[0]); }},
        {"softplus", {m}, [](V v) { return softplus(v[0]); }},
        {"relu", {m}, [](V v) { return relu(v[0]); }},
        {"floor", {m}, [](V v) { return floor(v[0]) + v[0]; }},
        {"ceil", {m}, [](V v) { return ceil(v[0]) * v[0]; }},
        {"cast", {m}, [](V v) { return cast(v[0], f64) * cast(v[0] > 0, f64); }},
        {"add", {m, {3}}, [](V v) { return v[0] + v[1]; }},
        {"sub", {m, {3}}, [](V v) { return v[0] - v[1]; }},
        {"mul", {m, {3}}, [](V v) { return v[0] * v[1]; }},
        {"div", {m, {2, 1}}, [](V v) { return v[0] / v[1]; }, 0.5, 2},
        {"pow", {m, {3}}, [](V v) { return pow(v[0], v[1]); }, 0.5, 2},
        {"pow_const", {m}, [](V v) { return pow(v[0], 3); }},
        {"min", {m, {3}}, [](V v) { return min(v[0], v[1]); }},
        {"max", {{3}, m}, [](V v) { return max(v[0], v[1]); }},
        {"atan2", {m, {1, 3}}, [](V v) { return atan2(v[0], v[1]); }},
        {"where", {m, {3}, {2, 1}}, [](V v) { return where(v[0] > 0, v[1] * v[0], v[2]); }},
        {"sum", {{2, 3, 4}}, [](V v) { return sum(v[0], {1}); }},
        {"sum_keep",
         {{2, 3, 4}},
         [](V v) {
             return sum(v[0], {0, 2}, true);
         }},
        {"sum_all", {{2, 3, 4}}, [](V v) { return sum(v[0]); }},
        {"prod", {{2, 3, 4}}, [](V v) { return prod(v[0], {2}); }, 0.5, 2},
        {"amax", {{2, 3, 4}}, [](V v) { return amax(v[0], {1}); }},
        {"amin",
         {{2, 3, 4}},
         [](V v) {
             return amin(v[0], {0, 2}, true);
         }},
        {"mean",
         {{2, 3, 4}},
         [](V v) {
             return mean(v[0], {0, 1});
         }},
        {"logsumexp", {{2, 3, 4}}, [](V v) { return logsumexp(v[0], {2}); }},
        {"logsumexp_all", {m}, [](V v) { return logsumexp(v[0]); }},
        {"softmax", {{2, 3, 4}}, [](V v) { return softmax(v[0], 1); }},
        {"log_softmax", {m}, [](V v) { return log_softmax(v[0], 0); }},
        {"cross_entropy", {m, m}, [](V v) { return cross_entropy(softmax(v[0]), v[1]); }},
        {"reshape",
         {m},
         [](V v) {
             return sin(reshape(v[0], {3, 2}));
         }},
        {"transpose",
         {{2, 3, 4}},
         [](V v) {
             return sin(transpose(v[0], {2, 0, 1}));
         }},
        {"broadcast_to",
         {{3}},
         [](V v) {
             return sin(broadcast_to(v[0], {2, 3}));
         }},
        {"expand_dims", {m}, [](V v) { return sin(expand_dims(v[0], 1)); }},
        {"squeeze", {{2, 1, 3}}, [](V v) { return sin(squeeze(v[0])); }},
        {"concat",
         {m, {2, 2}},
         [](V v) {
             return sin(concat({v[0], v[1], v[0]}, 1));
         }},
        {"slice", {{2, 7}}, [](V v) { return sin(slice(v[0], 1, 1, 5)); }},
        {"slice_step", {{2, 7}}, [](V v) { return sin(slice(v[0], 1, 1, 6, 2)); }},
        {"slice_step_end", {{7, 2}}, [](V v) { return sin(slice(v[0], 0, -4, 7, 3)); }},
        {"matmul", {m, {3, 4}}, [](V v) { return matmul(v[0], v[1]); }},
        {"matmul_vec_mat", {{3}, {3, 4}}, [](V v) { return matmul(v[0], v[1]); }},
        {"matmul_mat_vec", {m, {3}}, [](V v) { return matmul(v[0], v[1]); }},
        {"matmul_dot", {{3}, {3}}, [](V v) { return matmul(v[0], v[1]); }},
        {"matmul_batched", {{2, 2, 3}, {3, 4}}, [](V v) { return matmul(v[0], v[1]); }},
        {"matmul_broadcast", {{3, 1, 2, 3}, {2, 3, 2}}, [](V v) { return matmul(v[0], v[1]); }},
    };
    return cs;
}

Vars make_vars(const OpCase& c) {
    Vars vs;
    const char* names[] = {"a", "b", "c"};
    for (std::size_t i = 0; i < c.shapes.size(); ++i) vs.push_back(tensor(names[i], c.shapes[i]));
    return vs;
}

}  // namespace

TEST(Diff, EveryOpHasADerivativeRule) {
    for (std::size_t i = 0; i < kNumOps; ++i) {
        const OpInfo& info = op_info(static_cast<Op>(i));
        if (info.kind != OpKind::Leaf) {
            EXPECT_NE(info.vjp, nullptr) << info.name;
        }
    }
}

TEST(Diff, EveryDifferentiableOpIsCovered) {
    std::set<Op> seen;
    for (const OpCase& c : op_cases())
        for (const Node* n : post_order(c.f(make_vars(c)))) seen.insert(n->op());
    for (std::size_t i = 0; i < kNumOps; ++i) {
        const OpInfo& info = op_info(static_cast<Op>(i));
        bool no_float_out = info.type == TypeRule::Compare || info.type == TypeRule::Logical;
        if (info.kind == OpKind::Leaf || no_float_out) continue;
        EXPECT_TRUE(seen.count(info.op)) << info.name << " has no case in op_cases()";
    }
}

TEST(Diff, FirstOrderMatchesFiniteDifferences) {
    unsigned seed = 1;
    for (const OpCase& c : op_cases()) {
        Vars vs = make_vars(c);
        Expr f = c.f(vs);
        Bindings at = random_values(vs, c.lo, c.hi, seed++);
        CheckGradReport r = check_grad(f, at, vs);
        EXPECT_TRUE(r.ok) << c.name << ": " << to_string(f) << "\n" << r.message;
        EXPECT_GT(r.checked, 0u) << c.name;
    }
}

TEST(Diff, SecondOrderMatchesFiniteDifferences) {
    unsigned seed = 100;
    for (const OpCase& c : op_cases()) {
        if (!c.second_order) continue;
        Vars vs = make_vars(c);
        Expr f = c.f(vs);
        // Differentiate a random projection, then check the gradient of that gradient.
        Expr r = tensor("R", f.shape());
        Vars all = vs;
        all.push_back(r);
        Bindings at = random_values(all, c.lo, c.hi, seed++);
        Expr y = f.rank() ? sum(f * r) : f * r;
        std::vector<Expr> g = grad(y, vs);
        for (std::size_t i = 0; i < vs.size(); ++i) {
            CheckGradReport rep = check_grad(g[i], at, vs);
            EXPECT_TRUE(rep.ok) << c.name << " d/d" << vs[i]->name() << ": " << rep.message;
        }
    }
}

TEST(Diff, CheckGradReportsTheWorstComponent) {
    Expr x = vector("x", 3);
    // A wrong "gradient": check_grad of a function whose rule is right passes...
    Bindings at = {{"x", Tensor::from_vector<double>({3}, {0.5, -1.0, 2.0})}};
    CheckGradReport ok = check_grad(sum(sin(x) * x), at);
    EXPECT_TRUE(ok.ok) << ok.message;
    EXPECT_EQ(ok.checked, 3u);
    EXPECT_THAT(ok.message, HasSubstr("check_grad: ok"));
    // ...and a tolerance too tight to meet names the component that misses it most.
    CheckGradOptions tight;
    tight.rtol = tight.atol = 1e-30;
    CheckGradReport bad = check_grad(sum(exp(x * 3)), at, {x}, tight);
    EXPECT_FALSE(bad.ok);
    EXPECT_EQ(bad.variable, "x");
    EXPECT_EQ(bad.index, (std::vector<std::int64_t>{2}));
    EXPECT_NEAR(bad.symbolic, 3 * std::exp(6.0), 1e-9);
    EXPECT_THAT(bad.message, HasSubstr("FAILED"));
    EXPECT_THAT(bad.message, HasSubstr("d/dx[2]"));
}

TEST(Diff, ScalarRulesHaveTheirTextbookValues) {
    Expr x = scalar("x"), y = scalar("y");
    Bindings at = {{"x", 0.7}, {"y", 1.3}};
    EXPECT_NEAR(value(grad(sin(x * x), x), at), 2 * 0.7 * std::cos(0.49), 1e-15);
    EXPECT_NEAR(value(grad(pow(x, y), y), at), std::pow(0.7, 1.3) * std::log(0.7), 1e-15);
    EXPECT_NEAR(value(grad(atan2(y, x), x), at), -1.3 / (0.49 + 1.69), 1e-15);
    EXPECT_NEAR(value(grad(erf(x), x), at), 2 / std::sqrt(M_PI) * std::exp(-0.49), 1e-15);
    EXPECT_NEAR(value(grad(sigmoid(x), x), at), std::exp(-0.7) / std::pow(1 + std::exp(-0.7), 2),
                1e-15);
    // Higher orders: the 4th derivative of sin is sin.
    EXPECT_NEAR(value(derivative(sin(x), x, 4), at), std::sin(0.7), 1e-15);
    EXPECT_NEAR(value(derivative(exp(2 * x), x, 3), at), 8 * std::exp(1.4), 1e-12);
    EXPECT_EQ(derivative(x, x, 0), x);
}

TEST(Diff, BroadcastingIsUndoneBySummation) {
    Expr X = matrix("X", 2, 3), b = vector("b", 3), c = scalar("c"), col = matrix("col", 2, 1);
    std::vector<Expr> g = grad(sum(X * b + c + col), {X, b, c, col});
    EXPECT_EQ(g[0].shape(), (Shape{2, 3}));
    EXPECT_EQ(g[1].shape(), (Shape{3}));
    EXPECT_EQ(g[2].shape(), (Shape{}));
    EXPECT_EQ(g[3].shape(), (Shape{2, 1}));
    Bindings at = random_values({X, b, c, col}, -1, 1, 7);
    EXPECT_NEAR(value(g[2], at), 6, 1e-15);
    EXPECT_EQ(format_tensor(evaluate(g[3], at)), "[[3], [3]]");
    Tensor gb = evaluate(g[1], at);
    Tensor Xv = at["X"];
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(gb.at(j), Xv.at(j) + Xv.at(3 + j), 1e-15);
}

TEST(Diff, LogisticRegression) {
    Expr X = matrix("X", 6, 3), y = vector("y", 6), w = vector("w", 3), b = scalar("b");
    Expr p = sigmoid(matmul(X, w) + b);
    Expr loss = -mean(y * log(p) + (1 - y) * log(1 - p));
    Bindings at = random_values({X, w, b}, -1, 1, 11);
    at["y"] = Tensor::from_vector<double>({6}, {1, 0, 0, 1, 1, 0});
    CheckGradReport r = check_grad(loss, at, {w, b});
    EXPECT_TRUE(r.ok) << r.message;
    // The gradient is X^T (p - y) / n.
    Tensor gw = evaluate(grad(loss, w), at);
    Tensor expect = evaluate(matmul(transpose(X), p - y) / 6, at);
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(gw.at(j), expect.at(j), 1e-14);
}

TEST(Diff, MlpWithSoftmaxCrossEntropy) {
    Expr X = matrix("X", 4, 5), Y = matrix("Y", 4, 3);
    Expr W1 = matrix("W1", 5, 6), b1 = vector("b1", 6), W2 = matrix("W2", 6, 6),
         b2 = vector("b2", 6), W3 = matrix("W3", 6, 3), b3 = vector("b3", 3);
    Expr h1 = tanh(matmul(X, W1) + b1);
    Expr h2 = sigmoid(matmul(h1, W2) + b2);
    Expr loss = mean(cross_entropy(softmax(matmul(h2, W3) + b3), Y));
    Vars params = {W1, b1, W2, b2, W3, b3};
    Vars all = params;
    all.push_back(X);
    Bindings at = random_values(all, -1, 1, 12);
    at["Y"] = Tensor::from_vector<double>({4, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0});
    CheckGradReport r = check_grad(loss, at, params);
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_EQ(r.checked, 30u + 6 + 36 + 6 + 18 + 3);
}

TEST(Diff, LayerNorm) {
    Expr x = matrix("x", 4, 6), gamma = vector("gamma", 6), beta = vector("beta", 6);
    Expr mu = mean(x, {-1}, true);
    Expr var = mean(pow(x - mu, 2), {-1}, true);
    Expr y = (x - mu) / sqrt(var + 1e-5) * gamma + beta;
    Bindings at = random_values({x, gamma, beta}, -1, 1, 13);
    CheckGradReport r = check_grad(y, at, {x, gamma, beta});
    EXPECT_TRUE(r.ok) << r.message;
    // Each row of a layer norm's input gradient sums to zero (the mean is subtracted).
    Expr r6 = vector("r6", 6);
    Tensor gx = evaluate(grad(sum(y * r6), x), [&] {
        Bindings b = at;
        b["r6"] = Tensor::from_vector<double>({6}, {1, -2, 3, 0.5, 0, 1});
        return b;
    }());
    for (int i = 0; i < 4; ++i) {
        double s = 0;
        for (int j = 0; j < 6; ++j) s += gx.at(i * 6 + j);
        EXPECT_NEAR(s, 0, 1e-12);
    }
}

TEST(Diff, KinksAndNonDifferentiableOps) {
    Expr x = scalar("x"), y = scalar("y");
    Bindings zero = {{"x", 0.0}, {"y", 0.0}};
    EXPECT_EQ(value(grad(abs(x), x), zero), 0);
    EXPECT_EQ(value(grad(relu(x), x), zero), 0);
    EXPECT_EQ(value(grad(relu(x), x), {{"x", 2.0}}), 1);
    EXPECT_EQ(value(grad(abs(x), x), {{"x", -2.0}}), -1);
    // floor, ceil and sign have zero gradient: nothing flows through them.
    EXPECT_EQ(grad(floor(x) + ceil(x) + sign(x), x), literal(Number(0), f64));
    EXPECT_EQ(value(grad(floor(x) * x, x), {{"x", 2.5}}), 2);
    // At a tie, min and max split the gradient.
    std::vector<Expr> g = grad(max(x, y), {x, y});
    EXPECT_EQ(value(g[0], zero), 0.5);
    EXPECT_EQ(value(g[1], zero), 0.5);
    EXPECT_EQ(value(grad(min(x, y), x), {{"x", 1.0}, {"y", 2.0}}), 1);
    // amax shares the gradient among tied elements.
    Expr v = vector("v", 4);
    Tensor gv = evaluate(grad(amax(v), v), {{"v", Tensor::from_vector<double>({4}, {1, 3, 3, 2})}});
    EXPECT_EQ(format_tensor(gv), "[0, 0.5, 0.5, 0]");
    // A where's condition gets no gradient; the branches do.
    EXPECT_EQ(value(grad(where(x > 0, x * x, -x), x), {{"x", 3.0}}), 6);
    EXPECT_EQ(value(grad(where(x > 0, x * x, -x), x), {{"x", -3.0}}), -1);
    // A cast to an integer cuts the path; a cast between floats passes the gradient.
    EXPECT_EQ(grad(cast(cast(x, i64), f64) * 3, x), literal(Number(0), f64));
    Expr x32 = scalar("x32", f32);
    Expr g32 = grad(cast(x32, f64) * x, x32);
    EXPECT_EQ(g32.dtype(), f32);
    EXPECT_FLOAT_EQ(static_cast<float>(value(g32, {{"x32", 1.0}, {"x", 0.25}})), 0.25f);
}

TEST(Diff, Float32GradientsStayFloat32) {
    Expr x = scalar("x", f32), y = scalar("y");
    EXPECT_EQ(grad(sin(x) * 2, x).dtype(), f32);
    std::vector<Expr> g = grad(x * y, {x, y});
    EXPECT_EQ(g[0].dtype(), f32);
    EXPECT_EQ(g[1].dtype(), f64);
    Expr X = matrix("X32", 2, 3, f32);
    Expr gX = grad(sum(softmax(X) * X), X);
    EXPECT_EQ(gX.dtype(), f32);
    CheckGradReport r = check_grad(sum(softmax(X) * X), random_values({X}, -1, 1, 3), {X});
    EXPECT_TRUE(r.ok) << r.message;
}

TEST(Diff, Errors) {
    Expr x = scalar("x"), n = scalar("n", i64), v = vector("v", 3);
    try {
        grad(x * cast(n, f64), n);
        FAIL() << "no error for an integer input";
    } catch (const TypeError& e) {
        EXPECT_THAT(e.what(), HasSubstr("'n'"));
        EXPECT_THAT(e.what(), HasSubstr("int64"));
        EXPECT_THAT(e.what(), HasSubstr("no gradient"));
    }
    EXPECT_THROW(grad(x > 1, x), TypeError);
    try {
        grad(v * x, x);
        FAIL() << "no error for a vector output";
    } catch (const ShapeError& e) {
        EXPECT_THAT(e.what(), HasSubstr("must be a scalar, got shape (3,)"));
    }
    EXPECT_THROW(vjp(v * x, {x}, scalar("ct")), ShapeError);
    EXPECT_THROW(jvp(v * x, {x}, {v}), ShapeError);
    EXPECT_THROW(derivative(x, x, -1), ValueError);
}

TEST(Diff, UnrelatedInputsGetZerosOfTheirShape) {
    Expr x = scalar("x"), M = matrix("M", 2, 3, f32);
    std::vector<Expr> g = grad(sin(x), {M, x});
    EXPECT_EQ(g[0].shape(), (Shape{2, 3}));
    EXPECT_EQ(g[0].dtype(), f32);
    EXPECT_EQ(format_tensor(evaluate(g[0], {{"x", 1.0}})), "[[0, 0, 0], [0, 0, 0]]");
}

TEST(Diff, JvpMatchesTheJacobian) {
    Expr x = vector("x", 3), t = vector("t", 3), w = scalar("w");
    Expr y = concat({sin(x) * w, reshape(sum(pow(x, 2)), {1})}, 0);
    Expr j = jacobian(y, x);
    EXPECT_EQ(j.shape(), (Shape{4, 3}));
    Bindings at = random_values({x, t, w}, -1, 1, 5);
    Tensor jt = evaluate(jvp(y, {x}, {t}), at);
    Tensor expect = evaluate(matmul(j, t), at);
    ASSERT_EQ(jt.shape(), (Shape{4}));
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(jt.at(i), expect.at(i), 1e-14);
    // The tangent of the scalar w as well.
    Tensor both = evaluate(jvp(y, {x, w}, {t, literal(Number(2), f64)}), at);
    Tensor jw = evaluate(jacobian(y, w), at);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(both.at(i), expect.at(i) + 2 * jw.at(i), 1e-14);
}

TEST(Diff, JacobianAndHessianShapesAndValues) {
    Expr v = vector("v", 3), M = matrix("M", 2, 2);
    Bindings at = {{"v", Tensor::from_vector<double>({3}, {0.5, -1, 2})},
                   {"M", Tensor::from_vector<double>({2, 2}, {1, 2, 3, 4})}};
    EXPECT_EQ(format_tensor(evaluate(jacobian(v * 2, v), at)), "[[2, 0, 0], [0, 2, 0], [0, 0, 2]]");
    Tensor h = evaluate(hessian(sum(pow(v, 3)), v), at);
    ASSERT_EQ(h.shape(), (Shape{3, 3}));
    const double expect[] = {3, 0, 0, 0, -6, 0, 0, 0, 12};  // 6 v_i on the diagonal
    for (int i = 0; i < 9; ++i) EXPECT_EQ(h.at(i), expect[i]) << i;
    Expr jm = jacobian(matmul(M, M), M);
    EXPECT_EQ(jm.shape(), (Shape{2, 2, 2, 2}));
    // d(M M)_{ij}/dM_{kl} = delta_ik M_lj + M_ik delta_jl; entry (0, 1, 0, 0) is M_01 = 2.
    Tensor jv = evaluate(jm, at);
    EXPECT_EQ(jv.at(0 * 8 + 1 * 4 + 0 * 2 + 0), 2);
    EXPECT_EQ(jacobian(sum(v), v).shape(), (Shape{3}));
}

TEST(Diff, GradientsCompileAndDifferentiateAgain) {
    // A gradient prints, parses back, and its value survives the round trip.
    Expr x = scalar("x"), y = scalar("y");
    Expr g = grad(sin(x * y) * exp(x / (1 + y * y)), x);
    Bindings at = {{"x", 0.3}, {"y", -0.8}};
    Expr back = parse(to_string(g));
    EXPECT_NEAR(value(back, at), value(g, at), 1e-15);
    Expr gs = simplify(g);
    EXPECT_NEAR(value(gs, at), value(g, at), 1e-14);
    EXPECT_NEAR(value(grad(gs, y), at), value(grad(g, y), at), 1e-13);
}

// ---- size -----------------------------------------------------------------------------------

namespace {
Expr nested(const Expr& x, int depth) {
    Expr t = x;
    for (int i = 0; i < depth; ++i) t = sin(t) + pow(t, 2);
    return t;
}
std::pair<Expr, Vars> chain_sum(int n, Context& ctx) {
    Vars xs;
    for (int i = 0; i < n; ++i) xs.push_back(scalar("x" + std::to_string(i), f64, kNone, ctx));
    Expr f;
    for (int i = 0; i + 1 < n; ++i) {
        Expr term = sin(xs[i] * xs[i + 1]) * exp(xs[i] / (1 + pow(xs[i + 1], 2)));
        f = f ? f + term : term;
    }
    return {f, xs};
}
}  // namespace

TEST(Diff, GradientOfNestedFunctionGrowsLinearly) {
    Expr x = scalar("x");
    std::vector<double> nodes;
    for (int depth : {10, 100, 1000}) {
        Expr f = nested(x, depth);
        Expr g = grad(f, x);
        std::size_t n = count_nodes({g});
        nodes.push_back(static_cast<double>(n));
        EXPECT_LT(n, 8u * count_nodes({f})) << depth;
    }
    EXPECT_LT(nodes[2] / nodes[1], 11);
    EXPECT_LT(nodes[1] / nodes[0], 11);
    // Still correct at depth 1000 (no recursion over depth anywhere).
    Expr f = nested(x, 1000);
    Bindings at = {{"x", 0.01}};
    CheckGradReport r = check_grad(nested(x, 3), at);
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_TRUE(std::isfinite(value(grad(f, x), {{"x", 1e-4}})));
}

TEST(Diff, GradientOfChainSumGrowsLinearly) {
    std::vector<double> nodes;
    for (int n : {1000, 10000}) {
        Context ctx;
        auto [f, xs] = chain_sum(n, ctx);
        std::vector<Expr> g = grad(f, xs);
        std::size_t count = count_nodes(g);
        nodes.push_back(static_cast<double>(count));
        EXPECT_LT(count, 4u * count_nodes({f})) << n;
    }
    EXPECT_LT(nodes[1] / nodes[0], 11);
    Context ctx;
    auto [f, xs] = chain_sum(6, ctx);
    Bindings at = random_values(xs, -1, 1, 9);
    CheckGradReport r = check_grad(f, at);
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_EQ(r.checked, 6u);
}

// ---- readable results ---------------------------------------------------------------------

TEST(DiffReadable, SinOfSquare) {
    Expr x = scalar("x");
    EXPECT_EQ(to_string(simplify(grad(sin(pow(x, 2)), x))), "2*x*cos(x^2)");
}

TEST(DiffReadable, SoftmaxCrossEntropy) {
    // Targets stated to be probabilities (each row sums to 1): the gradient is softmax(z) - y.
    Expr z = vector("z", 4), y = variable("y", {4}, f64, simplex);
    Expr g = grad(cross_entropy(softmax(z), y), z);
    Bindings at = random_values({z}, -2, 2, 21);
    at["y"] = Tensor::from_vector<double>({4}, {0.1, 0.2, 0.3, 0.4});
    Tensor gv = evaluate(g, at), expect = evaluate(softmax(z) - y, at);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(gv.at(i), expect.at(i), 1e-15);
    EXPECT_EQ(to_string(simplify(g)), "softmax(z, 0) - y");
    // Without the statement the sum stays: the gradient is softmax(z)*sum(y) - y.
    Expr y2 = vector("y2", 4);
    EXPECT_EQ(to_string(simplify(grad(cross_entropy(softmax(z), y2), z))),
              "sum(y2, keepdims=true)*softmax(z, 0) - y2");
    // Batched, over rows of a matrix.
    Expr Z = matrix("Z", 3, 4), Y = variable("Y", {3, 4}, f64, simplex);
    EXPECT_EQ(to_string(simplify(grad(sum(cross_entropy(softmax(Z, 1), Y)), Z))),
              "softmax(Z, 1) - Y");
}

TEST(DiffReadable, LogisticLossIsInTermsOfSigmoid) {
    Expr X = matrix("X", 5, 3), y = vector("y", 5), w = vector("w", 3);
    Expr z = matmul(X, w);
    Expr loss = mean(softplus(z) - y * z);
    Expr g = grad(loss, w);
    std::string text = to_string(simplify(g));
    EXPECT_THAT(text, HasSubstr("sigmoid(matmul(X, w))"));
    EXPECT_THAT(text, Not(HasSubstr("exp(")));
}
