// Random expressions compiled by every available CPU tier agree with the reference evaluator.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <random>

#include "agnesi/agnesi.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/cuda/nvrtc.hpp"
#include "jit/cuda/plan.hpp"
#include "jit/schedule.hpp"
#include "support/jit_check.hpp"
#include "support/random_expr.hpp"

namespace agnesi {
namespace {

void fuzz_tier(Backend backend, unsigned seed, int iters, bool several_outputs) {
    testing::RandomExpr gen(testing::fuzz_seed(seed), {.max_depth = 5});
    std::vector<Expr> vars = gen.variables();
    for (int i = 0; i < iters; ++i) {
        std::vector<Expr> outs{gen()};
        // Several outputs sharing subexpressions exercise groups with more than one output.
        if (several_outputs) {
            outs.push_back(exp(-abs(outs[0])) + sum(outs[0]));
            outs.push_back(gen());
        }
        Bindings at = gen.values();
        SCOPED_TRACE("iteration " + std::to_string(i) + ": " + to_string(outs[0]));
        testing::expect_matches_reference(vars, outs, at, backend, 1e-12);
        if (::testing::Test::HasFailure()) return;
    }
}

TEST(FuzzJit, EvaluatorTierSingleOutput) {
    fuzz_tier(Backend::Evaluator, 101, testing::fuzz_iters(1500), false);
}

TEST(FuzzJit, EvaluatorTierSharedOutputs) {
    fuzz_tier(Backend::Evaluator, 202, testing::fuzz_iters(1000), true);
}

// Compiled code: many random expressions per function, so each compiler run checks dozens.
void fuzz_batches(unsigned seed, testing::Tier tier, double rel) {
    testing::RandomExpr gen(testing::fuzz_seed(seed), {.max_depth = 5});
    std::vector<Expr> vars = gen.variables();
    int batches = testing::fuzz_iters(8);
    for (int b = 0; b < batches; ++b) {
        std::vector<Expr> outs;
        for (int i = 0; i < 40; ++i) outs.push_back(gen());
        Bindings at = gen.values();
        SCOPED_TRACE("batch " + std::to_string(b));
        // An output may differ where a floor, ceil, sign or comparison in it is within rounding
        // of its step: ceil(sum(softmax(M, 1))) is the number of rows in real arithmetic, and
        // the compiled code sums in another order than the reference.
        testing::expect_matches_reference(vars, outs, at, tier, rel, false, [&](std::size_t i) {
            return testing::near_a_step(outs[i], at);
        });
        if (::testing::Test::HasFailure()) return;
    }
}

// libmvec's vector functions differ from the scalar ones by an ulp or so, and random
// compositions amplify that (atanh(tanh(x)) near saturation by ~e^(2x)): 1e-8 here, 1e-12 in the
// unit tests' fixed expressions.
TEST(FuzzJit, NativeTierBatches) {
    fuzz_batches(303, Backend::Native, 1e-8);
}

// The CUDA kernels, run on the CPU by the emulator: everywhere.
TEST(FuzzJit, EmulatedCudaBatches) {
    fuzz_batches(505, Backend::EmulatedCuda, 1e-8);
}

Tensor random_tensor(const Shape& shape, std::mt19937& rng) {
    Tensor t(DType::Float64, shape);
    std::uniform_real_distribution<double> u(-2, 2);
    for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] = u(rng);
    return t;
}

// Chains of statistics along rows: each step reduces the value so far (or its square or
// magnitude) along the last axis and centres, scales, clips or mixes the value with it, so that
// later reductions read earlier ones: what the scheduler turns into row reductions of several
// passes. Some intermediate values are outputs too (stored, so their groups split). Every step
// is continuous: a comparison with a row's own mean (`where(v > mean(v), ...)` on a row of equal
// values) would turn a last-bit difference in the sum into a different branch. Rows of x are
// odd (read value by value on a GPU); rows of t are a multiple of 4 (held in registers).
void fuzz_row_chains(unsigned seed, testing::Tier tier, int batches, int per_batch) {
    std::mt19937 rng(testing::fuzz_seed(seed));
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    auto x = matrix("x", 6, 37), t = tensor("t", {2, 3, 40});
    for (int b = 0; b < batches; ++b) {
        std::vector<Expr> outs;
        for (int i = 0; i < per_batch; ++i) {
            Expr v = pick(2) ? x : t;
            Expr base = v;
            int axis = static_cast<int>(v.rank()) - 1;
            int depth = 1 + pick(4);
            for (int d = 0; d < depth; ++d) {
                static const Op red[] = {Op::Sum, Op::Mean, Op::ReduceMax, Op::ReduceMin,
                                         Op::Logsumexp};
                Expr in = pick(3) == 0 ? v * v : pick(2) ? abs(v) : v;
                Expr r = reduce(red[pick(5)], in, {axis}, true);
                switch (pick(4)) {
                    case 0: v = v - r; break;
                    case 1: v = v / (abs(r) + 1); break;
                    case 2: v = maximum(v, r * 0.5); break;
                    default: v = v * (r * 0.125) + base; break;
                }
                if (pick(8) == 0) outs.push_back(r);
            }
            outs.push_back(v);
        }
        Bindings at{{"x", random_tensor({6, 37}, rng)}, {"t", random_tensor({2, 3, 40}, rng)}};
        SCOPED_TRACE(fmt::format("seed {} batch {}", seed, b));
        testing::expect_matches_reference({x, t}, outs, at, tier, 1e-9);
        if (::testing::Test::HasFailure()) return;
    }
}

TEST(FuzzJit, RowChainsOnEveryCpuTier) {
    fuzz_row_chains(606, Backend::Evaluator, testing::fuzz_iters(20), 10);
    fuzz_row_chains(607, Backend::Native, testing::fuzz_iters(2), 12);
    fuzz_row_chains(608, Backend::EmulatedCuda, testing::fuzz_iters(2), 12);
}

// Random functions of float64 and of float32 variables compile with NVRTC, in both variants of
// their kernels: ops, types and fusions in combinations the fixed corpus does not reach. No GPU
// is needed; the emulator runs the same source on the CPU (above).
TEST(FuzzJit, RandomKernelsCompileWithNvrtc) {
    const jit::cuda::NvrtcStatus status = jit::cuda::nvrtc_status();
    if (!status.available) GTEST_SKIP() << status.reason;
    jit::cuda::NvrtcOptions o;
    o.arch = "sm_90";
    o.use_cache = false;
    for (DType dt : {DType::Float64, DType::Float32}) {
        testing::RandomExpr gen(testing::fuzz_seed(707), {.max_depth = 5, .dtype = dt});
        std::vector<Expr> outs;
        for (int i = 0; i < testing::fuzz_iters(24); ++i) outs.push_back(gen());
        std::vector<Expr> roots = simplify(outs);
        std::vector<const Node*> rn, in;
        for (const Expr& r : roots) rn.push_back(r.node());
        for (const Expr& v : gen.variables()) in.push_back(v.node());
        jit::Program p = jit::schedule(rn, in, static_cast<int>(roots.size()), {});
        std::string src = jit::cuda::generate_cuda_source(p, "fuzz");
        SCOPED_TRACE(fmt::format("{} groups of {}", p.groups.size(), dtype_name(dt)));
        try {
            auto results = jit::cuda::nvrtc_compile_all(
                {src, src}, "fuzz", o, 0,
                {jit::cuda::variant_options(0), jit::cuda::variant_options(1)});
            for (const auto& r : results) EXPECT_GT(r.cubin->size(), 0u);
        } catch (const CompileError& e) {
            ADD_FAILURE() << e.what();
        }
    }
}

// The same on the GPU: CUDA's math functions are within 2 ulp of the host's, amplified alike.
TEST(FuzzJit, CudaBatches) {
    auto a = cuda_availability();
    if (!a.available) GTEST_SKIP() << "no CUDA device: " << a.reason;
    fuzz_batches(404, testing::Tier(Backend::Auto, true), 1e-8);
}

}  // namespace
}  // namespace agnesi
