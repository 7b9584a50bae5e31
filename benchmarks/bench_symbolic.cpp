// Throughput of the symbolic layer: interning, printing, parsing, evaluating.
//   build/bin/agnesi_bench_symbolic [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

namespace {

// A sum of n distinct terms c_i * x_i: about 4n nodes.
Expr sum_of_terms(Context& ctx, int n) {
    Expr e = literal(Number(0), ctx);
    for (int i = 0; i < n; ++i)
        e = e + literal(Number(i + 1), ctx) * scalar("x" + std::to_string(i), f64, kNone, ctx);
    return e;
}

// A balanced tree of n leaves over 64 variables: about 2n distinct nodes.
Expr balanced_tree(Context& ctx, int n) {
    std::vector<Expr> level;
    level.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        level.push_back(scalar("v" + std::to_string(i % 64), f64, kNone, ctx) +
                        literal(Number(i), ctx));
    while (level.size() > 1) {
        std::vector<Expr> next;
        for (std::size_t i = 0; i + 1 < level.size(); i += 2)
            next.push_back((i / 2) % 2 ? level[i] * level[i + 1] : level[i] + level[i + 1]);
        if (level.size() % 2) next.push_back(level.back());
        level = std::move(next);
    }
    return level[0];
}

void BM_InternSumOfTerms(benchmark::State& state) {
    int n = static_cast<int>(state.range(0));
    std::size_t nodes = 0;
    for (auto _ : state) {
        Context ctx;
        Expr e = sum_of_terms(ctx, n);
        nodes = ctx.size();
        benchmark::DoNotOptimize(e.node());
    }
    state.counters["nodes"] = static_cast<double>(nodes);
    state.counters["nodes/s"] = benchmark::Counter(static_cast<double>(nodes) * state.iterations(),
                                                   benchmark::Counter::kIsRate);
}
BENCHMARK(BM_InternSumOfTerms)->Arg(10'000)->Arg(250'000)->Unit(benchmark::kMillisecond);

void BM_InternBalancedTree(benchmark::State& state) {
    int n = static_cast<int>(state.range(0));
    std::size_t nodes = 0;
    for (auto _ : state) {
        Context ctx;
        Expr e = balanced_tree(ctx, n);
        nodes = ctx.size();
        benchmark::DoNotOptimize(e.node());
    }
    state.counters["nodes"] = static_cast<double>(nodes);
    state.counters["nodes/s"] = benchmark::Counter(static_cast<double>(nodes) * state.iterations(),
                                                   benchmark::Counter::kIsRate);
}
BENCHMARK(BM_InternBalancedTree)->Arg(1 << 14)->Arg(1 << 19)->Unit(benchmark::kMillisecond);

// Re-building existing structure: every node is a hit in the intern table.
void BM_InternHit(benchmark::State& state) {
    Context ctx;
    int n = static_cast<int>(state.range(0));
    sum_of_terms(ctx, n);
    for (auto _ : state) benchmark::DoNotOptimize(sum_of_terms(ctx, n).node());
    state.counters["nodes/s"] =
        benchmark::Counter(4.0 * n * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_InternHit)->Arg(100'000)->Unit(benchmark::kMillisecond);

void BM_DebugPrint(benchmark::State& state) {
    Context ctx;
    Expr e = sum_of_terms(ctx, static_cast<int>(state.range(0)));
    std::size_t bytes = 0;
    for (auto _ : state) {
        std::string s = debug_print(e);
        bytes = s.size();
        benchmark::DoNotOptimize(s.data());
    }
    state.counters["nodes"] = static_cast<double>(ctx.size());
    state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_DebugPrint)->Arg(25'000)->Arg(250'000)->Unit(benchmark::kMillisecond);

void BM_ToString(benchmark::State& state) {
    Context ctx;
    Expr e = sum_of_terms(ctx, static_cast<int>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(to_string(e).data());
}
BENCHMARK(BM_ToString)->Arg(250'000)->Unit(benchmark::kMillisecond);

void BM_Parse(benchmark::State& state) {
    Context ctx;
    std::string text = to_string(sum_of_terms(ctx, static_cast<int>(state.range(0))));
    ParseOptions o;
    o.context = &ctx;
    for (auto _ : state) benchmark::DoNotOptimize(parse(text, o).node());
    state.SetBytesProcessed(static_cast<std::int64_t>(text.size()) * state.iterations());
}
BENCHMARK(BM_Parse)->Arg(25'000)->Unit(benchmark::kMillisecond);

// Evaluator throughput on an elementwise chain over n elements.
void BM_EvaluateElementwise(benchmark::State& state) {
    auto n = state.range(0);
    auto x = vector("x", n);
    Expr e = tanh(x * 0.5 + 1) * sigmoid(x) + log1p(exp(-abs(x)));
    Tensor xv(f64, {n});
    std::mt19937 rng(1);
    std::normal_distribution<double> d;
    for (std::int64_t i = 0; i < n; ++i) xv.data<double>()[i] = d(rng);
    for (auto _ : state) benchmark::DoNotOptimize(evaluate(e, {{"x", xv}}).raw());
    state.counters["elements/s"] = benchmark::Counter(static_cast<double>(n) * state.iterations(),
                                                      benchmark::Counter::kIsRate);
    state.counters["nodes"] = static_cast<double>(count_nodes({e}));
}
BENCHMARK(BM_EvaluateElementwise)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

// Evaluator on a row softmax (reduction-heavy).
void BM_EvaluateSoftmax(benchmark::State& state) {
    auto rows = state.range(0);
    auto X = matrix("X", rows, 1024);
    Expr e = softmax(X, 1);
    Tensor xv(f64, {rows, 1024});
    for (std::int64_t i = 0; i < xv.size(); ++i)
        xv.data<double>()[i] = std::sin(static_cast<double>(i));
    for (auto _ : state) benchmark::DoNotOptimize(evaluate(e, {{"X", xv}}).raw());
    state.counters["elements/s"] = benchmark::Counter(
        static_cast<double>(xv.size()) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EvaluateSoftmax)->Arg(1024)->Unit(benchmark::kMillisecond);

// A deep chain: the evaluator's per-node overhead.
void BM_EvaluateDeepChain(benchmark::State& state) {
    Context ctx;
    Expr e = scalar("x", f64, kNone, ctx);
    for (int i = 0; i < state.range(0); ++i) e = sin(e) + literal(Number(1), ctx);
    for (auto _ : state) benchmark::DoNotOptimize(evaluate(e, {{"x", 0.5}}).raw());
    state.counters["nodes/s"] =
        benchmark::Counter(2.0 * static_cast<double>(state.range(0)) * state.iterations(),
                           benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EvaluateDeepChain)->Arg(100'000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
