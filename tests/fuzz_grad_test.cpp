// Fuzzing grad: random expressions from the op table, their symbolic gradients against finite
// differences at random points. AGNESI_FUZZ_SEED and AGNESI_FUZZ_ITERS explore further.
//
// Samples are skipped, not failed, where finite differences cannot judge them:
// - the value or a gradient component is not finite, or |f| > 1e6 (overflow-prone, e.g.
//   exp(exp(x))): the point is outside the domain or ill-conditioned;
// - check_grad's skip_nonsmooth: finite differences at steps h, 2h and h/64 disagree, so a kink
//   or a jump (abs, relu, floor, where, min/max, amax ties) lies within 2h of the point.
#include <gtest/gtest.h>

#include <cmath>

#include "agnesi/agnesi.hpp"
#include "support/random_expr.hpp"

using namespace agnesi;

namespace {

bool all_finite(const Tensor& t) {
    for (std::int64_t i = 0; i < t.size(); ++i)
        if (!std::isfinite(t.at(i)) || std::fabs(t.at(i)) > 1e6) return false;
    return true;
}

}  // namespace

namespace {

void fuzz_grad(unsigned seed, int iters, agnesi::testing::RandomExprOptions gopts) {
    agnesi::testing::RandomExpr gen(seed, gopts);
    int checked = 0, skipped = 0;
    for (int it = 0; it < iters; ++it) {
        Expr e = gen();
        if (!is_float(e.dtype()) || e->is_constant()) continue;
        std::vector<Expr> xs;
        // Not with respect to a variable assumed integer: a step off an integer leaves its domain.
        for (const Expr& v : free_variables({e}))
            if (is_float(v.dtype()) && !(v->assumptions() & kInteger)) xs.push_back(v);
        if (xs.empty()) continue;
        Bindings at = gen.values(-1.5, 1.5);
        Expr y = e.rank() ? sum(e) : e;
        bool finite = all_finite(evaluate(e, at));
        for (const Tensor& g : evaluate(grad(y, xs), at)) finite = finite && all_finite(g);
        if (!finite) {
            ++skipped;
            continue;
        }
        CheckGradOptions opts;
        opts.skip_nonsmooth = true;
        opts.rtol = opts.atol = 1e-5;
        CheckGradReport r = check_grad(e, at, xs, opts);
        if (r.checked == 0) {
            ++skipped;
            continue;
        }
        ++checked;
        ASSERT_TRUE(r.ok) << "seed " << seed << " iteration " << it << "\n"
                          << "expression: " << to_string(e) << "\n"
                          << r.message << "\nReproduce with: AGNESI_FUZZ_SEED=" << seed;
    }
    // Most samples must be judged, or the test proves little.
    EXPECT_GT(checked, iters / 3) << "skipped " << skipped;
}

}  // namespace

TEST(FuzzGrad, GradientMatchesFiniteDifferences) {
    fuzz_grad(agnesi::testing::fuzz_seed(4242), agnesi::testing::fuzz_iters(400), {.max_depth = 3});
}

// Over variables with assumptions (positive, negative, nonnegative, nonpositive, integer), which
// the simplified gradients may use: at points inside their domains.
TEST(FuzzGrad, GradientsOfAssumedVariablesMatchFiniteDifferences) {
    fuzz_grad(agnesi::testing::fuzz_seed(4343), agnesi::testing::fuzz_iters(400),
              {.max_depth = 3, .assumptions = true, .zeros = false});
}
