// compile() and Function on the CPU tiers, checked against the reference evaluator.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <random>
#include <thread>

#include "agnesi/agnesi.hpp"
#include "support/jit_check.hpp"
#include "support/random_expr.hpp"

namespace agnesi {
namespace {

using testing::expect_matches_reference;

Tensor random_tensor(DType dt, Shape shape, std::mt19937& rng, double lo = -2, double hi = 2) {
    Tensor t(f64, std::move(shape));
    std::uniform_real_distribution<double> u(lo, hi);
    for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] = u(rng);
    return t.astype(dt);
}

class JitTest : public ::testing::TestWithParam<testing::Tier> {
  protected:
    void SetUp() override {
        if (GetParam().cuda) {
            auto a = cuda_availability();
            if (!a.available) GTEST_SKIP() << "no CUDA device: " << a.reason;
        }
    }
    std::mt19937 rng{42};
    Backend backend() const { return GetParam().backend; }
    Device device() const { return GetParam().device(); }
    bool cuda() const { return GetParam().cuda; }
    const testing::Tier& tier() const { return GetParam(); }
};

TEST_P(JitTest, PointwiseChainWithBroadcasts) {
    auto x = matrix("x", 5, 7), w = vector("w", 7), b = scalar("b");
    Expr y = tanh(x * w + b) * sigmoid(x) + log1p(exp(-abs(x)));
    Bindings at{{"x", random_tensor(f64, {5, 7}, rng)},
                {"w", random_tensor(f64, {7}, rng)},
                {"b", Tensor(0.25)}};
    expect_matches_reference({x, w, b}, {y}, at, tier());
}

TEST_P(JitTest, LongBodiesInEveryLoopShape) {
    // A body of several math functions in each loop shape, which CUDA kernels share between
    // modes: flat by 4 with a tail and broadcast scalars, rows by 4 with a row vector and a
    // column, strided, and flat float64. Then online reductions over a row, over columns (a
    // thread per output) and over two axes (one value at a time), which share one loop too.
    auto w = scalar("w", f32), b = scalar("b", f32);
    auto body = [&](const Expr& u) {
        return tanh(u * w + b) * sigmoid(u) + log1p(exp(-abs(u))) + pow(abs(u) + 0.5, 1.5);
    };
    Tensor wv = random_tensor(f32, {}, rng), bv = random_tensor(f32, {}, rng);
    auto x = vector("x", 1027, f32);
    expect_matches_reference({x, w, b}, {body(x)},
                             {{"x", random_tensor(f32, {1027}, rng)}, {"w", wv}, {"b", bv}}, tier(),
                             1e-5);
    auto z = matrix("z", 6, 8, f32), c = vector("c", 8, f32), r = matrix("r", 6, 1, f32);
    Bindings zs{{"z", random_tensor(f32, {6, 8}, rng)},
                {"c", random_tensor(f32, {8}, rng)},
                {"r", random_tensor(f32, {6, 1}, rng)},
                {"w", wv},
                {"b", bv}};
    expect_matches_reference({z, c, r, w, b}, {body(z * r + c)}, zs, tier(), 1e-5);
    expect_matches_reference({z, c, r, w, b}, {body(transpose(z) * 2)}, zs, tier(), 1e-5);
    auto xd = vector("xd", 1027);
    Expr yd = tanh(xd * 0.75) * sigmoid(xd) + log1p(exp(-abs(xd)));
    expect_matches_reference({xd}, {yd}, {{"xd", random_tensor(f64, {1027}, rng)}}, tier(), 1e-12);
    auto t = tensor("t", {5, 6, 7}, f32);
    expect_matches_reference({t}, {logsumexp(t, {2}), logsumexp(t, {0}), logsumexp(t, {1, 2})},
                             {{"t", random_tensor(f32, {5, 6, 7}, rng)}}, tier(), 1e-5);
}

TEST_P(JitTest, SigmoidAndSoftplusOnBothTails) {
    // One exponential of -|x| serves both sides, each side rounding as the reference computes
    // it. The log shows the tails' relative error where the values are tiny.
    std::vector<double> v;
    for (double x = -80; x <= 80; x += 0.37) v.push_back(x);
    double inf = std::numeric_limits<double>::infinity();
    for (double x : {0.0, -0.0, 1e-30, -1e-30, 700.0, -700.0, 1e300, -1e300, inf, -inf, -inf * 0})
        v.push_back(x);
    auto n = static_cast<std::int64_t>(v.size());
    Tensor xs = Tensor::from_vector<double>({n}, v);
    for (DType t : {f32, f64}) {
        auto x = vector("x", n, t);
        expect_matches_reference(
            {x}, {sigmoid(x), softplus(x), log(sigmoid(x)), sigmoid(-x) * softplus(x)},
            {{"x", xs.astype(t)}}, tier(), t == f32 ? 1e-6 : 1e-15);
    }
}
TEST_P(JitTest, TrigOfInverseTrigKeepsNaNAndInfinities) {
    // Host compilers rewrite sin(atan(x)) and cos(atan(x)) into algebra that turns a NaN into
    // +-1 or +-0; the compiled tiers must keep the reference's values (NaN in, NaN out).
    double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    std::vector<double> v{nan, -nan, inf, -inf, 1e200, -1e200, 1e154, 1e-160, 0.0, -0.0};
    for (double x = -3; x <= 3; x += 0.25) v.push_back(x);
    auto n = static_cast<std::int64_t>(v.size());
    Tensor xs = Tensor::from_vector<double>({n}, v);
    for (DType t : {f32, f64}) {
        auto x = vector("x", n, t);
        Expr h = x / 4;  // inside (-1, 1) but for the non-finite values
        // Each composition has an inner call of its own (a shared one would be stored between
        // them).
        expect_matches_reference(
            {x},
            {cos(atan(x)), sin(atan(2 * x)), sinh(atanh(h)), cosh(atanh(h / 2)), tan(atan(x / 3))},
            {{"x", xs.astype(t)}}, tier(), t == f32 ? 1e-5 : 1e-13);
    }
}

TEST_P(JitTest, MatrixProductsOfConstantOperands) {
    // The gradient of sum(X W) with respect to W is X^T times a matrix of ones: a constant
    // operand, filled into a buffer for the product. A constant on the left too, and one that
    // is also an output.
    auto X = matrix("X", 3, 4), W = matrix("W", 4, 5);
    Bindings at{{"X", random_tensor(f64, {3, 4}, rng)}, {"W", random_tensor(f64, {4, 5}, rng)}};
    Expr twos = broadcast_to(constant(2, f64), {5, 3});
    expect_matches_reference({X, W},
                             {grad(sum(matmul(X, W)), W), matmul(twos, X), twos,
                              matmul(transpose(X), broadcast_to(constant(-1.5, f64), {3, 2}))},
                             at, tier(), 1e-12);
}

TEST_P(JitTest, EmptyBatchesOfMatrixProducts) {
    // A batch of 0 broadcast against a batch of 1 is empty, on either side.
    auto A = tensor("A", {0, 3, 4}), B = tensor("B", {1, 4, 5});
    auto C = tensor("C", {1, 3, 4}), D = tensor("D", {0, 4, 5});
    Bindings at{{"A", Tensor(f64, {0, 3, 4})},
                {"B", random_tensor(f64, {1, 4, 5}, rng)},
                {"C", random_tensor(f64, {1, 3, 4}, rng)},
                {"D", Tensor(f64, {0, 4, 5})}};
    expect_matches_reference({A, B, C, D}, {matmul(A, B), matmul(C, D) + 1}, at, tier());
}

TEST_P(JitTest, MatrixVectorPairsOverLargeMatrices) {
    // X w, then X^T of something of it: over a matrix past the caches, the CPU tiers make both
    // products in one pass over X, block by block. The second product's epilogue here reads a
    // mean of the first product, which a group between the two computes; so does a plain
    // logistic-regression gradient, without one.
    const std::int64_t n = 65536;
    auto X = matrix("X", n, 64, f32), y = vector("y", n, f32), w = vector("w", 64, f32);
    Bindings at{{"X", random_tensor(f32, {n, 64}, rng)},
                {"y", random_tensor(f32, {n}, rng)},
                {"w", random_tensor(f32, {64}, rng)}};
    Expr z = matmul(X, w);
    expect_matches_reference(
        {X, y, w},
        {matmul(transpose(X), sigmoid(z) - y) * mean(z), matmul(transpose(X), sigmoid(z) - y)}, at,
        tier(), 1e-4);
}

TEST_P(JitTest, ReluOfABiasedProductKeepsNaN) {
    // relu(x W + b) in float32: NaN rows of x stay NaN, whatever runs the product and its
    // epilogue (on a GPU, cuBLASLt's ReLU epilogue would give 0).
    auto x = matrix("x", 64, 32, f32), W = matrix("W", 32, 16, f32), b = vector("b", 16, f32);
    Tensor xv = random_tensor(f32, {64, 32}, rng);
    xv.data<float>()[5 * 32 + 3] = std::numeric_limits<float>::quiet_NaN();
    Bindings at{
        {"x", xv}, {"W", random_tensor(f32, {32, 16}, rng)}, {"b", random_tensor(f32, {16}, rng)}};
    expect_matches_reference({x, W, b}, {relu(matmul(x, W) + b)}, at, tier(), 1e-5);
}

TEST_P(JitTest, Float32AndIntegerDtypes) {
    auto x = matrix("x", 3, 4, f32), k = vector("k", 4, i32);
    Expr y = exp(x) * 2 + cast(k, f32);
    Expr c = where(x > 0.5, k * 3, -k);
    Expr cnt = sum(cast(x < 0, i64), {1});
    Bindings at{{"x", random_tensor(f32, {3, 4}, rng)}, {"k", random_tensor(i32, {4}, rng, -5, 5)}};
    expect_matches_reference({x, k}, {y, c, cnt}, at, tier(), 1e-6);
}

TEST_P(JitTest, ReductionsOverEveryAxis) {
    auto t = tensor("t", {3, 4, 5}), u = tensor("u", {5, 4, 3}), b = vector("b", 5);
    Bindings at{{"t", random_tensor(f64, {3, 4, 5}, rng)},
                {"u", random_tensor(f64, {5, 4, 3}, rng)},
                {"b", random_tensor(f64, {5}, rng)}};
    // Inputs over the domain's shape are contiguous before any call; a transposed view and a
    // broadcast one are not, and take the code that checks the layout at the call.
    for (bool views : {false, true})
        for (Op op : {Op::Sum, Op::Mean, Op::Prod, Op::ReduceMax, Op::ReduceMin, Op::Logsumexp})
            for (Axes axes : {Axes{0}, Axes{1}, Axes{2}, Axes{0, 2}, Axes{1, 2}, Axes{}})
                for (bool keep : {false, true}) {
                    SCOPED_TRACE(std::string(op_info(op).name) + " keepdims " +
                                 std::to_string(keep) + " views " + std::to_string(views));
                    Expr src = views ? exp(transpose(u)) * b : exp(t) - 1;
                    Expr r = reduce(op, src, axes, keep);
                    std::vector<Expr> in = views ? std::vector<Expr>{u, b} : std::vector<Expr>{t};
                    expect_matches_reference(in, {r, sqrt(abs(r)) + 1}, at, tier());
                }
}

TEST_P(JitTest, SoftmaxAlongEachAxisWithEpilogue) {
    auto z = matrix("z", 6, 9), y = matrix("y", 6, 9);
    Bindings at{{"z", random_tensor(f64, {6, 9}, rng, -5, 5)},
                {"y", random_tensor(f64, {6, 9}, rng)}};
    for (std::int64_t ax : {0, 1}) {
        expect_matches_reference({z, y}, {softmax(z, ax) - y, log_softmax(z * 2, ax)}, at, tier());
    }
    expect_matches_reference({z}, {logsumexp(z, {1}), logsumexp(z, {0}, true)}, at, tier());
}

TEST_P(JitTest, SoftmaxOfNonFiniteRows) {
    auto z = matrix("z", 2, 3);
    double inf = std::numeric_limits<double>::infinity();
    Bindings at{{"z", Tensor::from_vector<double>({2, 3}, {-inf, -inf, -inf, 1, inf, 2})}};
    expect_matches_reference({z}, {softmax(z), logsumexp(z, {1})}, at, tier());
}

TEST_P(JitTest, MatmulWithEpilogueAndTransposes) {
    auto a = matrix("a", 4, 3), b = matrix("b", 3, 5), bias = vector("bias", 5);
    auto v = vector("v", 3);
    Bindings at{{"a", random_tensor(f64, {4, 3}, rng)},
                {"b", random_tensor(f64, {3, 5}, rng)},
                {"bias", random_tensor(f64, {5}, rng)},
                {"v", random_tensor(f64, {3}, rng)}};
    Expr h = relu(matmul(a, b) + bias);
    Expr g = matmul(transpose(a), a);  // a transposed view, no copy
    Expr bt = matmul(transpose(b), v);
    expect_matches_reference({a, b, bias, v}, {h, g, bt, matmul(v, b)}, at, tier());
}

TEST_P(JitTest, MatmulBiasEpilogues) {
    // float32 products with a bias along their rows and a ReLU: what a GPU computes with
    // cuBLASLt's bias epilogue (the emulator computes it as such), including a NaN row, which
    // the ReLU keeps; and epilogues it does not take.
    auto a = matrix("a", 33, 20, f32), b = matrix("b", 20, 17, f32), c = vector("c", 17, f32);
    auto at2 = matrix("at", 20, 33, f32), r = matrix("r", 33, 1, f32), d = matrix("d", 33, 20, f32);
    auto e = matrix("e", 33, 20, f32);
    Tensor av = random_tensor(f32, {33, 20}, rng);
    for (std::int64_t j = 0; j < 20; ++j) av.data<float>()[5 * 20 + j] = std::nanf("");
    Bindings at{{"a", av},
                {"b", random_tensor(f32, {20, 17}, rng)},
                {"c", random_tensor(f32, {17}, rng)},
                {"at", random_tensor(f32, {20, 33}, rng)},
                {"r", random_tensor(f32, {33, 1}, rng)},
                {"d", random_tensor(f32, {33, 20}, rng)},
                {"e", random_tensor(f32, {33, 20}, rng)}};
    // (Each product its own, so that no value is shared between the outputs.)
    expect_matches_reference({a, b, c, at2, r, d, e},
                             {relu(matmul(a, b) + c), c + matmul(transpose(at2), b),
                              relu(matmul(d, b) + r), tanh(matmul(e, b) + c) * 2},
                             at, tier(), 1e-5);
}

// Products with one side a vector go to GEMV: every layout of the matrix (plain, transposed
// view) and of the vector (contiguous, strided slice), both sides, batched, and 1 x 1 results.
TEST_P(JitTest, MatrixVectorProducts) {
    auto a = matrix("a", 5, 7), w = vector("w", 14), u = vector("u", 5), s = tensor("s", {3, 5, 7});
    Bindings at{{"a", random_tensor(f64, {5, 7}, rng)},
                {"w", random_tensor(f64, {14}, rng)},
                {"u", random_tensor(f64, {5}, rng)},
                {"s", random_tensor(f64, {3, 5, 7}, rng)}};
    Expr v = slice(w, 0, 0, 14, 2);  // 7 elements, stride 2
    Expr v1 = slice(w, 0, 0, 7);
    expect_matches_reference(
        {a, w, u, s},
        {matmul(a, v), matmul(a, v1), matmul(transpose(a), u), matmul(u, a),
         matmul(v, transpose(a)), matmul(s, v1), matmul(u, u), matmul(expand_dims(u, 0), a)},
        at, tier());
}

// X w and then X^T v over a matrix too large for the caches run together, block by block of
// rows (the gradient of a linear model); the groups between them run per block or after.
TEST_P(JitTest, ProductPairsOverOneMatrix) {
    for (DType t : {f64, f32}) {
        const std::int64_t n = t == f64 ? 8192 : 16384, k = 130;
        auto X = variable("X", {n, k}, t), y = variable("y", {n}, t), w = variable("w", {k}, t);
        Bindings at{{"X", random_tensor(t, {n, k}, rng, -0.5, 0.5)},
                    {"y", random_tensor(t, {n}, rng, 0, 1)},
                    {"w", random_tensor(t, {k}, rng, -0.1, 0.1)}};
        Expr z = matmul(X, w);
        Expr loss = mean(softplus(z) - y * z);
        Expr g = grad(loss, w);
        Expr shifted = concat({slice(z, 0, 1, n), slice(z, 0, 0, 1)}, 0);  // rows out of step
        // float32: sums of 8-16 k terms, accumulated in another order than the reference's.
        double rel = t == f64 ? 1e-12 : 1e-3;
        expect_matches_reference({X, y, w}, {loss, g}, at, tier(), rel, true);
        expect_matches_reference({X, y, w},
                                 {matmul(transpose(X), sigmoid(z) - y), sum(z * y),
                                  matmul(sigmoid(z) * y, X), matmul(transpose(X), shifted)},
                                 at, tier(), rel);
    }
}

// Called from inside the caller's own parallel region, where a nested region gets one thread,
// the pair still runs every block.
TEST_P(JitTest, ProductPairsInsideAParallelRegion) {
    const std::int64_t n = 8192, k = 130;
    auto X = variable("X", {n, k}), y = variable("y", {n}), w = variable("w", {k});
    Bindings at{{"X", random_tensor(f64, {n, k}, rng, -0.5, 0.5)},
                {"y", random_tensor(f64, {n}, rng, 0, 1)},
                {"w", random_tensor(f64, {k}, rng, -0.1, 0.1)}};
    Expr g = matmul(transpose(X), sigmoid(matmul(X, w)) - y);
    Function f = compile({X, y, w}, {g}, {.device = device(), .backend = backend()});
    Tensor want = evaluate(g, at);
    std::vector<Tensor> got(2);
#pragma omp parallel num_threads(2)
    got[static_cast<std::size_t>(omp_get_thread_num())] =
        f.call({at.at("X"), at.at("y"), at.at("w")})[0];
    for (const Tensor& t : got) {
        ASSERT_TRUE(t.raw()) << "a thread of the region did not run";
        EXPECT_TRUE(testing::tensors_close(t, want, 1e-12));
    }
}

TEST_P(JitTest, BatchedMatmul) {
    auto a = tensor("a", {2, 3, 4}), b = matrix("b", 4, 2);
    Bindings at{{"a", random_tensor(f64, {2, 3, 4}, rng)}, {"b", random_tensor(f64, {4, 2}, rng)}};
    expect_matches_reference({a, b}, {matmul(a, b), matmul(a, b) * 2}, at, tier());
}

TEST_P(JitTest, ShapeOpsAsViews) {
    auto m = matrix("m", 4, 6);
    Bindings at{{"m", random_tensor(f64, {4, 6}, rng)}};
    std::vector<Expr> outs = {transpose(m),
                              reshape(transpose(m) * 2, {3, 8}),
                              reshape(transpose(m), {24}),
                              slice(m, 1, 1, 5, 2) + 1,
                              broadcast_to(sum(m, {1}, true), {4, 6}) - m,
                              concat({m, exp(m)}, 0),
                              concat({m, slice(m, 1, 0, 2)}, 1),
                              squeeze(expand_dims(m, 0), {0}) * m,
                              m};
    expect_matches_reference({m}, outs, at, tier());
}

TEST_P(JitTest, IdentityMatrices) {
    auto m = matrix("m", 3, 3);
    Bindings at{{"m", random_tensor(f64, {3, 3}, rng)}};
    expect_matches_reference({m}, {eye(3) * 2 + m, eye(3), matmul(m, eye(3) + m)}, at, tier());
}

TEST_P(JitTest, OutputsFedToReductionsAndSoftmax) {
    // Roots that are also the prologue of a reduction or a softmax of another root.
    auto m = matrix("m", 3, 5), v = vector("v", 5);
    Expr p = m * v;
    Bindings at{{"m", random_tensor(f64, {3, 5}, rng)}, {"v", random_tensor(f64, {5}, rng)}};
    expect_matches_reference({m, v}, {p, log_softmax(p), sum(p, {1}), p * 2}, at, tier());
}

TEST_P(JitTest, RecomputedValuesAgreeWithTheReference) {
    // The centred rows of a layer norm are computed again in the variance's reduction and in the
    // output; a shifted row both before a softmax and after it, in one group.
    for (DType dt : {f64, f32}) {
        auto x = matrix("x", 6, 33, dt), g = vector("g", 33, dt), b = vector("b", 33, dt);
        Bindings at{{"x", random_tensor(dt, {6, 33}, rng)},
                    {"g", random_tensor(dt, {33}, rng)},
                    {"b", random_tensor(dt, {33}, rng)}};
        Expr m = mean(x, {1}, true);
        Expr d = x - m;
        Expr y = d / sqrt(mean(d * d, {1}, true) + 1e-5) * g + b;
        Expr s = x - b;
        expect_matches_reference({x, g, b}, {y, softmax(s, 1) * s, sum(abs(s), {1}, true) + s}, at,
                                 tier(), dt == f32 ? 1e-5 : 1e-12);
    }
}

TEST_P(JitTest, RowReductionsWithTheWorkOnTheirRows) {
    // A reduction along the last axis and the elementwise work on the same rows, in one group:
    // every reduction, float and integer dtypes, rank 1 and 3, and rows longer than a block.
    for (DType dt : {f64, f32}) {
        auto x = matrix("x", 5, 37, dt), g = vector("g", 37, dt), t = tensor("t", {2, 3, 300}, dt);
        auto v = vector("v", 2500, dt);
        Bindings at{{"x", random_tensor(dt, {5, 37}, rng)},
                    {"g", random_tensor(dt, {37}, rng)},
                    {"t", random_tensor(dt, {2, 3, 300}, rng)},
                    {"v", random_tensor(dt, {2500}, rng, 0.5, 1.5)}};
        expect_matches_reference(
            {x, g, t, v},
            {x / sqrt(mean(x * x, {1}, true) + 1e-6) * g, x - amax(x, {1}, true),
             amin(x, {1}, true) * g + x, exp(x - logsumexp(x, {1}, true)),
             x * prod(1 + x * 0.01, {1}, true), t - sum(t, {2}, true), v / sum(v)},
            at, tier(), dt == f32 ? 2e-5 : 1e-12);
    }
    auto k = matrix("k", 4, 9, i64);
    Bindings at{{"k", random_tensor(i64, {4, 9}, rng, -50, 50)}};
    expect_matches_reference({k}, {k - sum(k, {1}, true), k * amax(k, {1}, true)}, at, tier());
}

TEST_P(JitTest, RowReductionsInSeveralPasses) {
    // Reductions along a row that later ones read, all in one group: a layer norm (the mean,
    // then the variance of x - mean), a fourth moment over the variance, the sum of
    // exponentials below the row's max; rows longer than a block, rank 3, integers.
    for (DType dt : {f64, f32}) {
        auto x = matrix("x", 6, 37, dt), g = vector("g", 37, dt), b = vector("b", 37, dt);
        auto t = tensor("t", {2, 3, 1500}, dt);
        Bindings at{{"x", random_tensor(dt, {6, 37}, rng)},
                    {"g", random_tensor(dt, {37}, rng)},
                    {"b", random_tensor(dt, {37}, rng)},
                    {"t", random_tensor(dt, {2, 3, 1500}, rng)}};
        auto layer_norm = [&](const Expr& v, int ax) {
            Expr d = v - mean(v, {ax}, true);
            return d / sqrt(mean(d * d, {ax}, true) + 1e-5);
        };
        Expr d = x - mean(x, {1}, true);
        Expr var = mean(d * d, {1}, true);
        Expr m = amax(x, {1}, true);
        expect_matches_reference(
            {x, g, b, t},
            {layer_norm(x, 1) * g + b, d * mean(d * d * d * d, {1}, true) / (var * var),
             exp(x - m) / sum(exp(x - m), {1}, true) + m, layer_norm(t, 2),
             x * sum(x / (abs(m) + 1), {1}, true)},
            at, tier(), dt == f32 ? 5e-5 : 1e-11);
    }
    auto k = matrix("k", 4, 9, i64);
    Bindings at{{"k", random_tensor(i64, {4, 9}, rng, -50, 50)}};
    Expr c = k - amax(k, {1}, true);
    expect_matches_reference({k}, {c * sum(c * c, {1}, true) + amin(c, {1}, true)}, at, tier());
}

TEST_P(JitTest, InputsBroadcastAlongTheInnerLoop) {
    // Inputs of size 1 along the reduced axes, or the last axis, beside full ones: native code
    // reads them once per row.
    auto t = tensor("t", {3, 4, 5}), c = tensor("c", {3, 1, 1}), r = tensor("r", {3, 4, 1});
    auto w = matrix("w", 4, 5), q = tensor("q", {1, 4, 1});
    Bindings at{{"t", random_tensor(f64, {3, 4, 5}, rng)},
                {"c", random_tensor(f64, {3, 1, 1}, rng)},
                {"r", random_tensor(f64, {3, 4, 1}, rng)},
                {"w", random_tensor(f64, {4, 5}, rng)},
                {"q", random_tensor(f64, {1, 4, 1}, rng)}};
    expect_matches_reference(
        {t, c, r, w, q},
        {sum(t * c, {1, 2}), sum(t - r, {2}), amax(t + r, {1, 2}), sum(t * w, {0}),
         mean((t - r) * (t - r), {2}, true) * r, t * r + q, softmax(t + r, 2) * c,
         sum(t * q, {0, 2}), sum(transpose(t, {0, 2, 1}) * c, {2})},
        at, tier());
}

TEST_P(JitTest, LongRowsReduceAndNormalize) {
    // Rows longer than a CUDA block keeps in registers (16 values by 256 threads), and a row
    // count that leaves the device idle (one block per row, up to 1024 threads).
    auto z = matrix("z_long", 3, 10007, f32);
    Bindings at{{"z_long", random_tensor(f32, {3, 10007}, rng)}};
    expect_matches_reference(
        {z}, {softmax(z, 1), log_softmax(z, 1), logsumexp(z, {1}), sum(z, {1}), amax(z, {1})}, at,
        tier(), 1e-4);  // float32 sums of 10^4 terms in another order: ~1e-5 apart
}

TEST_P(JitTest, VeryLongRowsSplitAcrossBlocks) {
    // Rows long enough, and few enough, that a GPU splits each across blocks and the row's last
    // block combines their partial results (the emulator's two SMs split rows of 16384 values
    // or more when there are fewer than four).
    auto x = vector("x", 100003), z = matrix("z", 3, 40000, f32), t = matrix("t", 40000, 2);
    auto k = vector("k", 70001, i64);
    Tensor xv = random_tensor(f64, {100003}, rng);
    xv.data<double>()[77777] = 3.5;  // the maximum, in a late block
    Bindings at{{"x", xv},
                {"z", random_tensor(f32, {3, 40000}, rng)},
                {"t", random_tensor(f64, {40000, 2}, rng)},
                {"k", random_tensor(i64, {70001}, rng, -1000, 1000)}};
    expect_matches_reference(
        {x, z, t, k},
        {sum(x), mean(x) * 2 + 1, amax(x), amin(x), logsumexp(x, {0}), prod(1 + x * 1e-6),
         sum(z, {1}), logsumexp(z * 3, {1}), amax(z, {1}), mean(t, {0}), sum(k), amax(k)},
        at, tier(), 1e-4);  // float32 sums of 4e4 terms in another order
    Tensor nan = xv.clone();
    nan.data<double>()[50000] = std::nan("");
    Bindings with_nan{{"x", nan}, {"z", at.at("z")}, {"t", at.at("t")}, {"k", at.at("k")}};
    expect_matches_reference({x, z, t, k}, {amax(x), sum(x), logsumexp(x, {0})}, with_nan, tier());
}

TEST_P(JitTest, ColumnsSplitAcrossThreads) {
    // Reductions over an outer axis with too few outputs to fill a GPU: each column is split
    // across threads (the emulator's two SMs aim at 4096 threads), and the column's last part
    // combines the partial results and runs the epilogue. A NaN, a late maximum, float64 and
    // int64 columns, and a middle axis of a 3-D array.
    auto X = matrix("X", 3000, 40, f32), b = vector("b", 40, f32), D = matrix("D", 700, 33);
    auto K = matrix("K", 900, 36, i64), T = variable("T", {6, 500, 8});
    Tensor xv = random_tensor(f32, {3000, 40}, rng, -2, 2);
    xv.data<float>()[2999 * 40 + 7] = 9.5f;  // column 7's maximum, in its last value
    xv.data<float>()[1234 * 40 + 11] = std::nanf("");
    Bindings at{{"X", xv},
                {"b", random_tensor(f32, {40}, rng)},
                {"D", random_tensor(f64, {700, 33}, rng)},
                {"K", random_tensor(i64, {900, 36}, rng, -1000, 1000)},
                {"T", random_tensor(f64, {6, 500, 8}, rng)}};
    expect_matches_reference(
        {X, b, D, K, T},
        {sum(X, {0}), amax(X, {0}) * 2 + b, logsumexp(X, {0}), mean(D, {0}),
         prod(1 + D * 1e-3, {0}), amin(K, {0}), sum(K, {0}), sum(T, {1}), logsumexp(T, {1})},
        at, tier(), 1e-4);  // float32 sums of 3000 terms in another order
}

TEST_P(JitTest, Float32RowsAroundTheSumBlock) {
    // Native code adds a float32 row in float within blocks of 256 values and the blocks in
    // double, and fetches the next row ahead: rows shorter than, equal to and just past a
    // block, and many blocks, with an epilogue input read beside the normalized row.
    for (std::int64_t len : {1, 255, 256, 257, 1000, 4099}) {
        auto z = matrix("z", 5, len, f32), y = matrix("y", 5, len, f32);
        Bindings at{{"z", random_tensor(f32, {5, len}, rng, 0.5, 2.0)},
                    {"y", random_tensor(f32, {5, len}, rng, 0.5, 2.0)}};
        expect_matches_reference({z, y},
                                 {sum(z, {1}), mean(z * y, {1}), logsumexp(z, {1}),
                                  softmax(z, 1) * y, log_softmax(z + y, 1)},
                                 at, tier(), 2e-6);
    }
}

TEST_P(JitTest, RowsHeldInRegisters) {
    // A CUDA block holds a dense row that fits (up to 16 float32 or 8 float64 values a thread)
    // in registers between its loops: rows that fill some of those values or all, one just past
    // them, a value broadcast along the row beside it, three loops over the row (a layer norm),
    // and non-finite values read back from the registers (a row of -inf among them). Rows of a
    // static length hold only the steps a warp needs: 128 values take one, 132 two, 260 four.
    for (DType dt : {f32, f64}) {
        for (std::int64_t len : {4, 12, 128, 132, 260, 1000, 2048, 4096, 4100}) {
            auto z = matrix("z", 6, len, dt), c = matrix("c", 6, 1, dt);
            auto g = vector("g", len, dt);
            Tensor zv = random_tensor(dt, {6, len}, rng, -3, 3);
            auto set = [&](std::int64_t r, std::int64_t col, double v) {
                if (dt == f32)
                    zv.data<float>()[r * len + col] = static_cast<float>(v);
                else
                    zv.data<double>()[r * len + col] = v;
            };
            set(1, len - 1, std::numeric_limits<double>::infinity());
            set(2, len / 2, std::nan(""));
            for (std::int64_t col = 0; col < len; ++col)
                set(3, col, -std::numeric_limits<double>::infinity());
            Bindings at{{"z", zv},
                        {"c", random_tensor(dt, {6, 1}, rng)},
                        {"g", random_tensor(dt, {len}, rng)}};
            Expr d = z - mean(z, {1}, true);
            expect_matches_reference({z, c, g},
                                     {softmax(z + c, 1) * g, log_softmax(z * c, 1),
                                      d / sqrt(mean(d * d, {1}, true) + 1e-5) * g + c},
                                     at, tier(), dt == f32 ? 5e-5 : 1e-11);
        }
    }
}

TEST_P(JitTest, ManyShortRowsAWarpEach) {
    // Rows of up to 128 values, many of them: on a GPU a warp takes each, 8 to a block, in a
    // grid-stride loop (the emulator's 2 SMs run 16 blocks, 128 rows at a time), so some warps
    // take one more row than others and some none in the last round. Reductions, row
    // normalizations and a layer norm, aligned rows (held in registers) and odd ones.
    for (std::int64_t len : {3, 12, 37, 128}) {
        auto z = matrix("z", 301, len, f32), g = vector("g", len, f32);
        Bindings at{{"z", random_tensor(f32, {301, len}, rng, -3, 3)},
                    {"g", random_tensor(f32, {len}, rng)}};
        Expr d = z - mean(z, {1}, true);
        expect_matches_reference(
            {z, g},
            {sum(z, {1}), amax(z * g, {1}), logsumexp(z, {1}), softmax(z, 1) * g,
             log_softmax(z + g, 1), d / sqrt(mean(d * d, {1}, true) + 1e-5) * g},
            at, tier(), 2e-5);
    }
}

TEST_P(JitTest, RowsByFourWithNonFiniteValuesAndOffsets) {
    // CUDA row loops take four values at a time: 16-byte loads and stores where a row starts
    // aligned, one rescale of an online max and sum per four values. Non-finite values in
    // every lane of a four, rows that start off alignment (odd lengths, slices), and rows of
    // 4- and 8-byte integers and of float64.
    const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    Tensor zv = random_tensor(f32, {9, 38}, rng, -3, 3);
    auto set = [&](std::int64_t r, std::int64_t c, double v) {
        zv.data<float>()[r * 38 + c] = static_cast<float>(v);
    };
    set(0, 5, nan);                                                         // a NaN in lane 1
    set(1, 10, inf);                                                        // +inf in lane 2
    for (std::int64_t c = 0; c < 38; ++c) set(2, c, c == 23 ? 1.5 : -inf);  // one finite value
    for (std::int64_t c = 0; c < 38; ++c) set(3, c, -inf);                  // all -inf
    set(4, 3, inf), set(4, 36, nan);   // +inf, then NaN in the tail
    set(5, 8, inf), set(5, 9, inf);    // two +inf in one four
    set(6, 0, 30), set(6, 37, 31);     // the max in the first lane, then the tail
    set(7, 12, -inf), set(7, 13, 20);  // -inf beside a new max
    for (std::int64_t c = 0; c < 38; ++c) set(8, c, c == 14 ? nan : -inf);  // NaN among -inf
    auto z = matrix("z", 9, 38, f32);
    Bindings at{{"z", zv}};
    for (const Expr& v : {Expr(z), slice(z, 1, 1, 35), slice(z, 1, 4, 38), slice(z, 1, 2, 37)}) {
        SCOPED_TRACE(to_string(v));
        expect_matches_reference({z},
                                 {softmax(v, 1), log_softmax(v, 1), logsumexp(v, {1}), amax(v, {1}),
                                  sum(v, {1}), softmax(v, 1) * 2 + v},
                                 at, tier(), 2e-6);
    }
    auto k = matrix("k", 3, 21, i32), q = matrix("q", 3, 22, i64), d = matrix("d", 5, 13);
    Bindings ints{{"k", random_tensor(i32, {3, 21}, rng, -100, 100)},
                  {"q", random_tensor(i64, {3, 22}, rng, -100, 100)},
                  {"d", random_tensor(f64, {5, 13}, rng)}};
    expect_matches_reference({k, q, d},
                             {sum(k, {1}), amax(k, {1}), amin(q, {1}), sum(q * q, {1}),
                              logsumexp(d, {1}), softmax(d, 1), d - mean(d, {1}, true)},
                             ints, tier());
}

TEST_P(JitTest, DenseAndGeneralLayoutsOfEveryKernel) {
    // CUDA kernels come in a dense variant (flat or rows by four over two axes; at most one
    // kept axis, rows that move four values at a time) and a general one. Kept axes that do
    // not merge (a transposed batch), rows by four over three axes, a full sum and a split one
    // (a single kept axis of none), columns, and float64 rows.
    auto X = variable("X", {4, 5, 8}, f32), b = vector("b", 8, f32), v = vector("v", 70000, f32);
    auto d = matrix("d", 6, 12);
    Expr Y = transpose(X, {1, 0, 2});
    Bindings at{{"X", random_tensor(f32, {4, 5, 8}, rng, -3, 3)},
                {"b", random_tensor(f32, {8}, rng, -1, 1)},
                {"v", random_tensor(f32, {70000}, rng, -1, 1)},
                {"d", random_tensor(f64, {6, 12}, rng)}};
    expect_matches_reference({X, b, v, d},
                             {sum(Y, {2}), logsumexp(Y, {2}), softmax(Y, 2), Y - mean(Y, {2}, true),
                              Y * b, sum(X, {2}), softmax(X, 2), X * b, sum(v), amax(v, {0}),
                              sum(X, {0}), softmax(d, 1), sum(d, {1}), d - mean(d, {1}, true)},
                             at, tier(), 1e-4);
}

TEST_P(JitTest, ProfileCountsEachGroupsCallsAndTime) {
    auto z = matrix("z", 64, 300, f32), w = matrix("w", 300, 20, f32);
    Expr h = tanh(matmul(z, w));
    Function f = compile({z, w}, {softmax(h, 1), sum(z * z, {1})},
                         {.device = device(), .backend = backend(), .profile = true});
    Tensor zv = random_tensor(f32, {64, 300}, rng), wv = random_tensor(f32, {300, 20}, rng);
    for (int i = 0; i < 4; ++i) f(zv, wv);
    std::vector<GroupProfile> prof = f.profile();
    ASSERT_EQ(prof.size(), static_cast<std::size_t>(f.stats().groups));
    double total = 0;
    int products = 0;
    for (const GroupProfile& g : prof) {
        SCOPED_TRACE(g.group);
        EXPECT_EQ(g.calls, 4);
        EXPECT_GE(g.ms, 0);
        total += g.ms;
        products += g.kind == "matmul";
    }
    EXPECT_GT(total, 0);
    EXPECT_EQ(products, 1);
}

TEST_P(JitTest, ConstantsAndRepeatedOutputs) {
    auto x = vector("x", 3);
    Bindings at{{"x", random_tensor(f64, {3}, rng)}};
    Expr y = x * 3;
    expect_matches_reference({x}, {y, y, literal(Number(2), f64), x + literal(Number::pi())}, at,
                             tier());
}

TEST_P(JitTest, RandomExpressionsAgreeWithTheReference) {
    testing::RandomExpr gen(testing::fuzz_seed(7));
    // Compiled tiers cost one compiler run per expression: fewer of them here (the fuzz label
    // runs more).
    int iters = testing::fuzz_iters(backend() == Backend::Evaluator ? 300 : 20);
    std::vector<Expr> vars = gen.variables();
    for (int i = 0; i < iters; ++i) {
        Expr e = gen();
        Bindings at = gen.values();
        SCOPED_TRACE(to_string(e));
        expect_matches_reference(vars, {e}, at, tier(), 1e-12);
        if (::testing::Test::HasFailure()) break;
    }
}

TEST_P(JitTest, SharedVariablesAndUpdates) {
    Expr w = shared("jit_w_" + tier().name(), Tensor::from_vector<double>({2}, {1.0, -1.0}));
    auto x = vector("x", 2);
    Expr loss = sum((w - x) * (w - x));
    Expr gw = grad(loss, w);
    FixedFunction<2> step =
        compile({x}, {loss, gw},
                {.updates = {{w, w - 0.25 * gw}}, .device = device(), .backend = backend()});
    Tensor target = Tensor::from_vector<double>({2}, {3.0, 5.0});
    auto [l0, g0] = step(target);
    EXPECT_DOUBLE_EQ(l0.item(), 4.0 + 36.0);
    EXPECT_DOUBLE_EQ(g0.at(0), -4.0);
    // w <- w - 0.25 * 2 (w - x): halfway to the target.
    Tensor w1 = get_value(w);
    EXPECT_DOUBLE_EQ(w1.at(0), 2.0);
    EXPECT_DOUBLE_EQ(w1.at(1), 2.0);
    auto [l1, g1] = step(target);
    EXPECT_DOUBLE_EQ(l1.item(), 1.0 + 9.0);
    (void)g1;
    // A call that fails leaves the shared variable as it was.
    EXPECT_THROW(step(Tensor::from_vector<double>({3}, {1, 2, 3})), ShapeError);
    EXPECT_DOUBLE_EQ(get_value(w).at(0), 2.5);
    set_value(w, Tensor::from_vector<double>({2}, {0, 0}));
    EXPECT_DOUBLE_EQ(step(target)[0].item(), 34.0);
}

TEST_P(JitTest, SymbolicSizesBindAtCallTime) {
    Dim n = sym_dim("n");
    auto X = variable("X", {n, 3}), v = vector("v", 3);
    Expr y = sum(exp(X) * v, {1});
    Function f = compile({X, v}, {y, softmax(X)}, {.device = device(), .backend = backend()});
    for (std::int64_t rows : {1, 4, 4, 9, 1}) {  // again and back: arguments prepared anew
        Bindings at{{"X", random_tensor(f64, {rows, 3}, rng)}, {"v", random_tensor(f64, {3}, rng)}};
        auto got = f.call(at);
        auto want = evaluate({y, softmax(X)}, at);
        EXPECT_TRUE(testing::tensors_close(got[0], want[0], 1e-12));
        EXPECT_TRUE(testing::tensors_close(got[1], want[1], 1e-12));
    }
    auto w = vector("w", 3);
    Function g = compile({X, w}, {X + w}, {.device = device(), .backend = backend()});
    EXPECT_THROW(g(random_tensor(f64, {2, 4}, rng), random_tensor(f64, {3}, rng)), ShapeError);
}

TEST_P(JitTest, MaxAndMinOverAxesACallMakesEmpty) {
    // As the reference evaluator: a max or min over an empty axis is an error where a value of
    // it is wanted, and an empty result where none is (no rows). Column and row reductions.
    auto X = variable("X", {sym_dim("e_rows"), sym_dim("e_cols")}, f32);
    Function f = compile({X}, {amax(X, {1}), X - amin(X, {1}, true)},
                         {.device = device(), .backend = backend()});
    Tensor no_rows(f32, {0, 5}), no_cols(f32, {3, 0});
    std::vector<Tensor> r = f(no_rows);
    EXPECT_EQ(r[0].shape(), (Shape{0}));
    EXPECT_EQ(r[1].shape(), (Shape{0, 5}));
    EXPECT_THROW(evaluate({amax(X, {1})}, {{"X", no_cols}}), ValueError);
    try {
        f(no_cols);
        FAIL() << "expected an error";
    } catch (const ValueError& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr("of an empty axis")) << e.what();
    }
    // amax(X, 0) over no rows, alone: an error too.
    Function g = compile({X}, {amax(X, {0})}, {.device = device(), .backend = backend()});
    EXPECT_THROW(g(no_rows), ValueError);
    EXPECT_EQ(g(no_cols)[0].shape(), (Shape{0}));
}

TEST_P(JitTest, ClearErrorsForBadCalls) {
    auto x = vector("x", 3), y = vector("y", 3);
    Function f = compile({x, y}, {x + y}, {.device = device(), .backend = backend()});
    try {
        f(random_tensor(f64, {3}, rng));
        FAIL() << "expected an error";
    } catch (const ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("takes 2 inputs (x, y), got 1"), std::string::npos)
            << e.what();
    }
    try {
        f(random_tensor(f32, {3}, rng), random_tensor(f64, {3}, rng));
        FAIL() << "expected an error";
    } catch (const TypeError& e) {
        EXPECT_NE(std::string(e.what()).find("input 'x' is float64, the argument is float32"),
                  std::string::npos)
            << e.what();
    }
    try {
        f.call(Bindings{{"x", Tensor(f64, {3})}});
        FAIL() << "expected an error";
    } catch (const ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("missing input 'y'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(
        f.call(Bindings{{"x", Tensor(f64, {3})}, {"y", Tensor(f64, {3})}, {"z", Tensor(f64, {3})}}),
        ValueError);
    try {
        compile({x}, {x + y});
        FAIL() << "expected an error";
    } catch (const ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("variable 'y', which is neither an input nor shared"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_THROW(compile({x + 1}, {x}), ValueError);
    EXPECT_THROW(compile({x, x}, {x}), ValueError);
}

TEST_P(JitTest, MlpTrainingStepMatchesTheReference) {
    // A 2-layer MLP with softmax cross-entropy: loss, the four gradients and the SGD step.
    auto X = matrix("X", 8, 5, f32), Y = matrix("Y", 8, 3, f32);
    auto W1 = matrix("W1", 5, 6, f32), b1 = vector("b1", 6, f32);
    auto W2 = matrix("W2", 6, 3, f32), b2 = vector("b2", 3, f32);
    Expr h = relu(matmul(X, W1) + b1);
    Expr loss = mean(cross_entropy(softmax(matmul(h, W2) + b2), Y));
    std::vector<Expr> params{W1, b1, W2, b2};
    std::vector<Expr> grads = grad(loss, params);
    std::vector<Expr> outs{loss};
    for (std::size_t i = 0; i < params.size(); ++i) outs.push_back(params[i] - 0.1 * grads[i]);
    Tensor Yv(f32, {8, 3});
    for (int i = 0; i < 8; ++i) Yv.data<float>()[i * 3 + i % 3] = 1;
    Bindings at{{"X", random_tensor(f32, {8, 5}, rng)},  {"Y", Yv},
                {"W1", random_tensor(f32, {5, 6}, rng)}, {"b1", random_tensor(f32, {6}, rng)},
                {"W2", random_tensor(f32, {6, 3}, rng)}, {"b2", random_tensor(f32, {3}, rng)}};
    // float32 with fused evaluation orders: a few ulp of float32.
    expect_matches_reference({X, Y, W1, b1, W2, b2}, outs, at, tier(), 2e-5, true);
}

INSTANTIATE_TEST_SUITE_P(Tiers, JitTest,
                         ::testing::Values(testing::Tier(Backend::Evaluator),
                                           testing::Tier(Backend::Native),
                                           testing::Tier(Backend::EmulatedCuda),
                                           testing::Tier(Backend::Auto, true),
                                           testing::Tier(Backend::Auto, true, true)),
                         [](const auto& info) { return info.param.name(); });

TEST(Function, EvaluatesWhileNativeCodeCompiles) {
    auto x = vector("wx", 16);
    // A fresh cache directory: the native build really runs in the background.
    std::string dir = ::testing::TempDir() + "agnesi_bg_cache";
    setenv("AGNESI_CACHE_DIR", dir.c_str(), 1);
    Function f = compile({x}, {sin(x) * 3 + 1},
                         {.backend = Backend::Auto, .evaluate_while_compiling = true});
    Tensor xv = Tensor::from_vector<double>({16}, std::vector<double>(16, 0.5));
    // Answered at once (by whichever tier is ready), then by native code after waiting.
    EXPECT_NEAR(f(xv)[0].at(3), std::sin(0.5) * 3 + 1, 1e-12);
    f.wait_ready();
    EXPECT_EQ(f.backend(), "native");
    EXPECT_NEAR(f(xv)[0].at(3), std::sin(0.5) * 3 + 1, 1e-12);
    unsetenv("AGNESI_CACHE_DIR");
}

TEST(Function, AFailedBackgroundCompileLeavesTheEvaluatorAnswering) {
    // The cache directory cannot be made, so native compilation fails in the background: calls
    // go on with the evaluator, and waiting reports the error.
    auto x = vector("fx", 16);
    setenv("AGNESI_CACHE_DIR", "/proc/agnesi_no_such_cache", 1);
    Function f =
        compile({x}, {cos(x) * 2}, {.backend = Backend::Auto, .evaluate_while_compiling = true});
    Tensor xv = Tensor::from_vector<double>({16}, std::vector<double>(16, 0.25));
    for (int i = 0; i < 50; ++i) {
        EXPECT_NEAR(f(xv)[0].at(0), std::cos(0.25) * 2, 1e-12);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_THROW(f.wait_ready(), Error);
    EXPECT_EQ(f.backend(), "evaluator");
    EXPECT_NEAR(f(xv)[0].at(0), std::cos(0.25) * 2, 1e-12);
    EXPECT_THROW(f.wait_ready(), Error);
    unsetenv("AGNESI_CACHE_DIR");
}

TEST(Function, ReusesReleasedOutputBuffers) {
    auto x = vector("rx", 1024);
    Function f = compile({x}, {exp(x)}, {.backend = Backend::Evaluator});
    Tensor xv(f64, {1024});
    const void* first = f(xv)[0].raw();  // released at once
    std::vector<Tensor> kept = f(xv);
    EXPECT_EQ(kept[0].raw(), first);
    EXPECT_NE(f(xv)[0].raw(), kept[0].raw());  // a result still held is never overwritten
    EXPECT_DOUBLE_EQ(kept[0].at(0), 1.0);
}

TEST(Schedule, FusesChainsReductionsAndEpilogues) {
    auto x = matrix("sx", 64, 32), b = vector("sb", 32);
    // One pointwise chain: one group.
    EXPECT_EQ(compile({x, b}, {tanh(x * 2 + b) * sigmoid(x)}).stats().groups, 1);
    // Row softmax minus a target: one row-normalize group with the subtraction in its epilogue.
    auto y = matrix("sy", 64, 32);
    EXPECT_EQ(compile({x, y}, {softmax(x) - y}).stats().groups, 1);
    // logsumexp of a chain, and an epilogue after it: one group.
    EXPECT_EQ(compile({x}, {sqrt(logsumexp(exp(x) * 2, {1}) + 1)}).stats().groups, 1);
    // matmul with bias and activation: one group (gemm + epilogue).
    auto W = matrix("sW", 32, 16), c = vector("sc", 16);
    EXPECT_EQ(compile({x, W, c}, {relu(matmul(x, W) + c)}).stats().groups, 1);
}

TEST(Schedule, RecomputesCheapValuesInsteadOfStoringThem) {
    auto x = matrix("rx", 64, 32), z = matrix("rz", 64, 32), g = vector("rg", 32);
    Expr m = mean(x, {1}, true);
    Expr d = x - m;
    // Layer norm: passes over each row for the mean, then the variance, then the output. x - m
    // is computed in the last two, not stored.
    Function ln = compile({x, g}, {d / sqrt(mean(d * d, {1}, true) + 1e-5) * g});
    EXPECT_EQ(ln.stats().groups, 1);
    EXPECT_THAT(ln.schedule_text(), ::testing::HasSubstr("row-reduce over (64, 32) (2 reductions"));
    // Used before and after the softmax of one group: computed in both places.
    EXPECT_EQ(compile({x, g}, {softmax(x - g, 1) * (x - g)}).stats().groups, 1);
    // Costly, or reading two full tensors where the stored value is one: stored by a group, read
    // by the row reduction.
    Expr e = tanh(x);
    EXPECT_EQ(compile({x}, {e / sum(e, {1}, true)}).stats().groups, 2);
    Expr p = x * z;
    EXPECT_EQ(compile({x, z}, {p / sum(p, {1}, true)}).stats().groups, 2);
}

TEST(Schedule, RowReductionsJoinTheWorkOnTheirRows) {
    auto x = matrix("wx", 64, 32), g = vector("wg", 32);
    // An RMS norm: the row's mean square, then the scaled row: one group.
    Expr rms = sqrt(mean(x * x, {1}, true) + 1e-6);
    Function f = compile({x, g}, {x / rms * g});
    EXPECT_EQ(f.stats().groups, 1);
    EXPECT_THAT(f.schedule_text(), ::testing::HasSubstr("row-reduce"));
    // The row value also an output, or a reduction over another axis: stored, two groups.
    EXPECT_EQ(compile({x, g}, {x / rms * g, rms}).stats().groups, 2);
    EXPECT_EQ(compile({x}, {x - mean(x, {0}, true)}).stats().groups, 2);
    // Each of these centres the last: at most four reductions share a row's passes.
    Expr c = x;
    for (int i = 0; i < 4; ++i) c = c - mean(c, {1}, true);
    EXPECT_EQ(compile({x}, {c}).stats().groups, 1);
    EXPECT_EQ(compile({x}, {c - mean(c, {1}, true)}).stats().groups, 2);
}

}  // namespace
}  // namespace agnesi
