// Time and size of reverse-mode gradients on two families (benchmarks/compare_diff.sh sets them
// beside SymPy and GiNaC):
//   nested:    g(g(...g(x))), g(t) = sin(t) + t^2, `depth` levels, d/dx
//   chain_sum: f = sum_i sin(x_i x_{i+1}) exp(x_i / (1 + x_{i+1}^2)), all N partials
// Each iteration builds the function in a fresh Context (not timed) and times grad alone.
//   build/bin/agnesi_bench_diff [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <chrono>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

namespace {

Expr nested(Context& ctx, int depth) {
    Expr t = scalar("x", f64, kNone, ctx);
    for (int i = 0; i < depth; ++i) t = sin(t) + pow(t, 2);
    return t;
}

std::pair<Expr, std::vector<Expr>> chain_sum(Context& ctx, int n) {
    std::vector<Expr> xs;
    for (int i = 0; i < n; ++i) xs.push_back(scalar("x" + std::to_string(i), f64, kNone, ctx));
    Expr f;
    for (int i = 0; i + 1 < n; ++i) {
        Expr term = sin(xs[i] * xs[i + 1]) * exp(xs[i] / (1 + pow(xs[i + 1], 2)));
        f = f ? f + term : term;
    }
    return {f, xs};
}

template <class Build>
void run_grad(benchmark::State& state, Build build) {
    std::size_t nodes = 0, fwd = 0;
    for (auto _ : state) {
        Context ctx;
        auto [f, wrt] = build(ctx);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<Expr> g = grad(f, wrt);
        auto t1 = std::chrono::steady_clock::now();
        state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
        nodes = count_nodes(g);
        fwd = count_nodes({f});
    }
    state.counters["nodes"] = static_cast<double>(nodes);
    state.counters["fwd_nodes"] = static_cast<double>(fwd);
}

void BM_GradNested(benchmark::State& state) {
    int depth = static_cast<int>(state.range(0));
    run_grad(state, [&](Context& ctx) {
        Expr f = nested(ctx, depth);
        return std::pair{f, free_variables({f})};
    });
}
BENCHMARK(BM_GradNested)
    ->Arg(10)
    ->Arg(20)
    ->Arg(100)
    ->Arg(1000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_GradChainSum(benchmark::State& state) {
    int n = static_cast<int>(state.range(0));
    run_grad(state, [&](Context& ctx) { return chain_sum(ctx, n); });
}
BENCHMARK(BM_GradChainSum)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
