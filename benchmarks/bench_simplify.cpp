// Simplify time and result size on random expressions of 10^2 ... 10^5 nodes.
//   build/bin/agnesi_bench_simplify
#include <benchmark/benchmark.h>

#include <random>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

namespace {

// A random expression of about n distinct nodes: a sum of small random terms over 64 variables,
// with like terms, cancellations and stabilizable forms mixed in, and every tenth term nested
// inside the next so the DAG is deep as well as wide.
Expr random_expression(Context& ctx, int n, unsigned seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int k) { return std::uniform_int_distribution<int>(0, k - 1)(rng); };
    std::vector<Expr> vars;
    for (int i = 0; i < 64; ++i) vars.push_back(scalar("x" + std::to_string(i), f64, kNone, ctx));
    auto var = [&]() { return vars[static_cast<std::size_t>(pick(64))]; };
    auto lit = [&](int v) { return literal(Number(v), ctx); };
    Expr acc = lit(0);
    Expr carry = var();
    while (static_cast<int>(ctx.size()) < n) {
        Expr a = var(), b = var();
        Expr t;
        switch (pick(8)) {
            case 0: t = lit(1 + pick(5)) * a * b; break;
            case 1: t = a * b / a; break;
            case 2: t = log(1 + exp(a)) + b; break;
            case 3: t = pow(sin(a), 2) + pow(cos(a), 2) - b; break;
            case 4: t = exp(a) * exp(b) - lit(1); break;
            case 5: t = (a + b) * carry; break;
            case 6: t = sqrt(pow(a, 2)) + lit(pick(3)) * a; break;
            default: t = sigmoid(a - b) * lit(2) + carry; break;
        }
        if (pick(10) == 0) carry = t;
        acc = acc + t;
    }
    return acc;
}

// Simplifies `e` in the timed loop; the node counts are taken outside it.
void simplify_and_count(benchmark::State& state, const Expr& e) {
    Expr s;
    for (auto _ : state) {
        s = simplify(e);
        benchmark::DoNotOptimize(s.node());
    }
    auto in_nodes = static_cast<double>(count_nodes({e}));
    state.counters["nodes_in"] = in_nodes;
    state.counters["nodes_out"] = static_cast<double>(count_nodes({s}));
    state.counters["ns_per_node"] =
        benchmark::Counter(in_nodes * static_cast<double>(state.iterations()),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_Simplify(benchmark::State& state) {
    Context ctx;
    Expr e = random_expression(ctx, static_cast<int>(state.range(0)), 42);
    simplify_and_count(state, e);
}
BENCHMARK(BM_Simplify)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond);

// The gradient of a residual chain e = tanh(w*e)*2 + e of n layers, simplified: its adjoints
// are sums that each hold the next one, a shape that once made simplify cubic.
void BM_SimplifyResidualGradient(benchmark::State& state) {
    Context ctx;
    Expr x = scalar("x", f64, kNone, ctx);
    std::vector<Expr> w;
    for (int i = 0; i < 8; ++i) w.push_back(scalar("w" + std::to_string(i), f64, kNone, ctx));
    Expr e = x;
    for (int i = 0; i < state.range(0); ++i)
        e = tanh(w[static_cast<std::size_t>(i % 8)] * e) * 2 + e;
    Expr g = grad(e, x);
    simplify_and_count(state, g);
}
BENCHMARK(BM_SimplifyResidualGradient)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10'000)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
