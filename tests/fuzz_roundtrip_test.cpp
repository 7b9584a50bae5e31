// Random expressions from the op table: printing and parsing are inverse, and constant folding
// keeps the value. On failure the seed and iteration are printed; AGNESI_FUZZ_SEED and
// AGNESI_FUZZ_ITERS explore further.
#include <gtest/gtest.h>

#include <cmath>

#include "support/random_expr.hpp"

using namespace agnesi;
using agnesi::testing::RandomExpr;

namespace {

bool close(double a, double b, double rel) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return std::fabs(a - b) <= rel * std::max({1.0, std::fabs(a), std::fabs(b)});
}

}  // namespace

TEST(Fuzz, PrintThenParseGivesTheSameNode) {
    unsigned seed = agnesi::testing::fuzz_seed(1234);
    int iters = agnesi::testing::fuzz_iters(3000);
    RandomExpr gen(seed);
    for (int i = 0; i < iters; ++i) {
        Expr e = gen();
        std::string text = to_string(e);
        Expr back;
        try {
            back = parse(text, gen.variables());
        } catch (const Error& err) {
            FAIL() << "seed " << seed << " iteration " << i << ": " << text << "\n" << err.what();
        }
        ASSERT_EQ(back, e) << "seed " << seed << " iteration " << i << "\n  printed: " << text
                           << "\n  reparsed: " << to_string(back);
        EXPECT_FALSE(to_latex(e).empty());
        EXPECT_FALSE(debug_print(e).empty());
    }
}

TEST(Fuzz, FoldingKeepsTheValue) {
    unsigned seed = agnesi::testing::fuzz_seed(99);
    int iters = agnesi::testing::fuzz_iters(1500);
    RandomExpr gen(seed);
    for (int i = 0; i < iters; ++i) {
        Expr e = gen();
        Expr f = fold_constants(e);
        ASSERT_EQ(f.shape(), e.shape());
        ASSERT_EQ(f.dtype(), e.dtype()) << to_string(e) << " -> " << to_string(f);
        ASSERT_EQ(fold_constants(f), f) << "not idempotent: " << to_string(e);
        Bindings at = gen.values();
        if (!agnesi::testing::in_rewrite_domain(e, at)) continue;
        Tensor a = evaluate(e, at), b = evaluate(f, at);
        ASSERT_EQ(a.size(), b.size());
        for (std::int64_t k = 0; k < a.size(); ++k)
            ASSERT_TRUE(close(a.at(k), b.at(k), 1e-12))
                << "seed " << seed << " iteration " << i << ": " << to_string(e) << " -> "
                << to_string(f) << " element " << k << ": " << a.at(k) << " vs " << b.at(k);
    }
}
