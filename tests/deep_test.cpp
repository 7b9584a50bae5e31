// A chain 10^6 deep builds, prints, evaluates and is destroyed without a stack overflow.
#include <gtest/gtest.h>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

namespace {
constexpr int kDepth = 1'000'000;
}

TEST(Deep, MillionNodeChain) {
    auto ctx = std::make_unique<Context>();
    Expr x = scalar("x", f64, kNone, *ctx);
    Expr e = x;
    for (int i = 0; i < kDepth; ++i) e = (i % 2 == 0) ? e + 1 : e * 1;
    EXPECT_EQ(e->height(), static_cast<std::uint32_t>(kDepth));
    EXPECT_EQ(post_order(e).size(), static_cast<std::size_t>(kDepth) + 2);  // + x and 1.0

    std::string text = to_string(e);
    EXPECT_GT(text.size(), static_cast<std::size_t>(2 * kDepth));
    EXPECT_EQ(text.substr(0, 5), std::string(5, '('));

    std::string debug = debug_print(e);
    EXPECT_GT(debug.size(), static_cast<std::size_t>(2 * kDepth));

    EXPECT_DOUBLE_EQ(evaluate(e, {{"x", 0.5}}).item(), 0.5 + kDepth / 2);

    std::string latex = to_latex(e);
    EXPECT_FALSE(latex.empty());
    Expr s = fold_constants(e);
    EXPECT_EQ(s->height(), e->height());
    ctx.reset();  // destroys a million nodes iteratively
}

TEST(Deep, NestedFunctionsPrintAndEvaluate) {
    Context ctx;
    Expr e = scalar("x", f64, kNone, ctx);
    for (int i = 0; i < 200'000; ++i) e = sin(e);
    std::string text = to_string(e);
    EXPECT_EQ(text.size(), 200'000u * 5 + 1);
    double v = 0.5;
    for (int i = 0; i < 200'000; ++i) v = std::sin(v);
    EXPECT_DOUBLE_EQ(evaluate(e, {{"x", 0.5}}).item(), v);
}
