// NVRTC compile time of generated CUDA kernels, cold (no cache) and from the caches. Runs without
// a GPU: NVRTC compiles to cubin for sm_90 on any machine with the toolkit. The context lines
// give the process's first compile, which also loads NVRTC's libraries.
//   BM_JitCompileCudaCold/<workload>/<dense>   one NVRTC run on the kernel's source
//   BM_JitCompileCudaDisk/<workload>   the cubin read back from the disk cache
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "agnesi/agnesi.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/cuda/nvrtc.hpp"
#include "jit/cuda/plan.hpp"
#include "jit/schedule.hpp"

namespace {

using namespace agnesi;

std::string source_of(const std::vector<Expr>& outputs, const std::vector<Expr>& inputs) {
    std::vector<Expr> roots = simplify(outputs);
    std::vector<const Node*> rn, in;
    for (const Expr& r : roots) rn.push_back(r.node());
    for (const Expr& v : inputs) in.push_back(v.node());
    jit::Program p = jit::schedule(rn, in, static_cast<int>(roots.size()), {});
    return jit::cuda::generate_cuda_source(p, "bench");
}

std::string workload(int i) {
    auto x = vector("x", 1 << 26, f32), w = scalar("w", f32), b = scalar("b", f32);
    auto z = matrix("z", 16384, 4096, f32);
    switch (i) {
        case 0: return source_of({x * 2}, {x});
        case 1:
            return source_of({0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x * x * x)))},
                             {x});
        case 2: return source_of({tanh(x * w + b) * sigmoid(x) + log1p(exp(-abs(x)))}, {x, w, b});
        case 3: return source_of({softmax(z)}, {z});
        case 4: return source_of({logsumexp(z, {1})}, {z});
        case 5: {  // one kernel of three passes over each row
            auto g = vector("g", 4096, f32), bb = vector("bb", 4096, f32);
            Expr d = z - mean(z, {1}, true);
            return source_of({d / sqrt(mean(d * d, {1}, true) + 1e-5) * g + bb}, {z, g, bb});
        }
        default: {
            auto X = matrix("X", 512, 784, f32), Y = matrix("Y", 512, 10, f32);
            auto W1 = matrix("W1", 784, 1024, f32), b1 = vector("b1", 1024, f32);
            auto W2 = matrix("W2", 1024, 10, f32), b2 = vector("b2", 10, f32);
            Expr h = relu(matmul(X, W1) + b1);
            Expr logits = matmul(h, W2) + b2;
            Expr loss = -sum(Y * log_softmax(logits)) / 512.0;
            std::vector<Expr> ps{W1, b1, W2, b2}, outs{loss};
            auto gs = grad(loss, ps);
            for (std::size_t k = 0; k < ps.size(); ++k) outs.push_back(ps[k] - 0.1 * gs[k]);
            return source_of(outs, {X, Y, W1, b1, W2, b2});
        }
    }
}

const char* kNames[] = {"scale",     "gelu",       "chain",          "softmax",
                        "logsumexp", "layer_norm", "mlp_step_module"};

// Second argument: 0 the general kernels, 1 the dense ones (-DAGNESI_DENSE_LAYOUT), which a
// function whose layouts are dense compiles instead.
void BM_JitCompileCudaCold(benchmark::State& state) {
    std::string src = workload(static_cast<int>(state.range(0)));
    jit::cuda::NvrtcOptions o;
    o.arch = "sm_90";
    o.use_cache = false;
    o.extra = jit::cuda::variant_options(static_cast<int>(state.range(1)));
    for (auto _ : state) benchmark::DoNotOptimize(jit::cuda::nvrtc_compile(src, "bench", o));
    state.SetLabel(
        fmt::format("{} {}", kNames[state.range(0)], state.range(1) ? "dense" : "general"));
}

void BM_JitCompileCudaDisk(benchmark::State& state) {
    std::string src = workload(static_cast<int>(state.range(0)));
    auto dir = std::filesystem::temp_directory_path() / "agnesi_bench_cuda_cache";
    ::setenv("AGNESI_CACHE_DIR", dir.c_str(), 1);
    jit::cuda::NvrtcOptions o;
    o.arch = "sm_90";
    jit::cuda::clear_memory_cache();  // so this compile writes the disk entry
    jit::cuda::nvrtc_compile(src, "bench", o);
    int hits = 0;
    for (auto _ : state) {
        jit::cuda::clear_memory_cache();
        hits += jit::cuda::nvrtc_compile(src, "bench", o).disk_hit;
    }
    state.counters["disk_hits"] = hits;
    state.SetLabel(kNames[state.range(0)]);
    std::filesystem::remove_all(dir);
}

}  // namespace

BENCHMARK(BM_JitCompileCudaCold)
    ->ArgsProduct({benchmark::CreateDenseRange(0, 6, 1), {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK(BM_JitCompileCudaDisk)->DenseRange(0, 6)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
    // A process's first NVRTC compile also loads NVRTC's built-in headers library (tens of ms):
    // timed here, once, and kept out of the first benchmark's mean.
    if (jit::cuda::nvrtc_status().available) {
        jit::cuda::NvrtcOptions o;
        o.arch = "sm_90";
        o.use_cache = false;
        auto r = jit::cuda::nvrtc_compile("extern \"C\" __global__ void first() {}\n", "first", o);
        benchmark::AddCustomContext("nvrtc_first_compile_in_process",
                                    fmt::format("{:.1f} ms (an empty kernel)", r.compile_ms));
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
