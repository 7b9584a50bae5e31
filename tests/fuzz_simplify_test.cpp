// Random expressions from the op table, simplified: the value is unchanged wherever every
// subexpression of the original is finite and the sample is well conditioned, simplify is
// idempotent, and the result prints and parses back.
// (in_rewrite_domain says which samples count, and why). A sample is ill-conditioned when a
// relative nudge of 1e-13 to the inputs moves the original's value by more than 1e-9 relative:
// rounding could explain any difference there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "support/random_expr.hpp"

using namespace agnesi;
using agnesi::testing::RandomExpr;

namespace {

Bindings nudged(const Bindings& at, double rel) {
    Bindings out;
    for (const auto& [k, v] : at) {
        Tensor t = v.clone();
        for (std::int64_t i = 0; i < t.size(); ++i) t.data<double>()[i] *= 1 + rel;
        out[k] = t;
    }
    return out;
}

void check_corpus(unsigned seed, int iters, agnesi::testing::RandomExprOptions opts) {
    RandomExpr gen(seed, opts);
    int compared = 0;
    for (int i = 0; i < iters; ++i) {
        Expr e = gen();
        Expr s;
        try {
            s = simplify(e);
        } catch (const Error& err) {
            FAIL() << "seed " << seed << " iteration " << i << ": " << to_string(e) << "\n"
                   << err.what();
        }
        ASSERT_EQ(s.shape(), e.shape()) << to_string(e);
        ASSERT_EQ(s.dtype(), e.dtype()) << to_string(e) << " -> " << to_string(s);
        ASSERT_EQ(simplify(s), s) << "not idempotent: " << to_string(e) << " -> " << to_string(s)
                                  << " -> " << to_string(simplify(s));
        ASSERT_EQ(parse(to_string(s), gen.variables()), s) << to_string(s);
        for (int k = 0; k < 3; ++k) {
            Bindings at = gen.values();
            if (!agnesi::testing::in_rewrite_domain(e, at)) continue;
            Tensor a = evaluate(e, at), b = evaluate(s, at), a2 = evaluate(e, nudged(at, 1e-13));
            for (std::int64_t j = 0; j < a.size(); ++j) {
                double x = a.at(j), y = b.at(j), x2 = a2.at(j);
                if (!std::isfinite(x) || !std::isfinite(x2)) continue;
                double scale = std::max(1.0, std::fabs(x));
                if (std::fabs(x2 - x) > 1e-9 * scale) continue;  // ill-conditioned here
                ++compared;
                ASSERT_LE(std::fabs(x - y), 1e-12 * std::max(scale, std::fabs(y)))
                    << "seed " << seed << " iteration " << i << "\n  original:   " << to_string(e)
                    << "\n  simplified: " << to_string(s) << "\n  element " << j << ": " << x
                    << " vs " << y;
            }
        }
    }
    EXPECT_GT(compared, iters / 4);
}

}  // namespace

TEST(FuzzSimplify, ScalarExpressionsKeepTheirValue) {
    check_corpus(agnesi::testing::fuzz_seed(11), agnesi::testing::fuzz_iters(2000),
                 {.max_depth = 5, .tensors = false});
}

TEST(FuzzSimplify, TensorExpressionsKeepTheirValue) {
    check_corpus(agnesi::testing::fuzz_seed(12), agnesi::testing::fuzz_iters(1500),
                 {.max_depth = 4});
}
