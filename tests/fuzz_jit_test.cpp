// Random expressions compiled by every available CPU tier agree with the reference evaluator.
#include <gtest/gtest.h>

#include "agnesi/agnesi.hpp"
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
        testing::expect_matches_reference(vars, outs, at, tier, rel);
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

// The same on the GPU: CUDA's math functions are within 2 ulp of the host's, amplified alike.
TEST(FuzzJit, CudaBatches) {
    auto a = cuda_availability();
    if (!a.available) GTEST_SKIP() << "no CUDA device: " << a.reason;
    fuzz_batches(404, testing::Tier(Backend::Auto, true), 1e-8);
}

}  // namespace
}  // namespace agnesi
