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

}  // namespace
}  // namespace agnesi
