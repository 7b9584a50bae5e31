#include <gtest/gtest.h>

#include "agnesi/agnesi.hpp"

using namespace agnesi;

TEST(Fold, ExactRationals) {
    EXPECT_EQ(to_string(fold_constants(parse("1/3 + 1/6"))), "0.5");
    EXPECT_EQ(to_string(fold_constants(parse("(1)/3 + (1)/6"))), "0.5");
    EXPECT_EQ(to_string(fold_constants(parse("2^10"))), "1024");
    EXPECT_EQ(to_string(fold_constants(parse("2*3 + 4"))), "10");
    EXPECT_EQ(to_string(fold_constants(parse("(1)/3"))), "1/3");
    EXPECT_EQ(to_string(fold_constants(parse("x*(2 + 3)"))), "x*5");
    EXPECT_EQ(to_string(fold_constants(parse("0.1 + 0.2"))), "0.3");
}

TEST(Fold, LeavesInexactValuesAlone) {
    EXPECT_EQ(to_string(fold_constants(parse("sin(1)"))), "sin(1)");
    EXPECT_EQ(to_string(fold_constants(parse("(1)/0"))), "(1)/0");
    EXPECT_EQ(to_string(fold_constants(parse("2^0.5"))), "2^0.5");
}

TEST(Fold, ComparisonsAndWhere) {
    EXPECT_EQ(to_string(fold_constants(parse("where(1 < 2, x, y)"))), "x");
    EXPECT_EQ(to_string(fold_constants(parse("where(3 < 2, x, y)"))), "y");
    EXPECT_EQ(to_string(fold_constants(parse("min(3, 1/2) + max(-1, 2)"))), "2.5");
}

TEST(Fold, KeepsDtypes) {
    auto x = scalar("x", f32);
    Expr e = fold_constants(x * (Expr(2) + 3));
    EXPECT_EQ(e.dtype(), f32);
    EXPECT_EQ(e, x * 5);
}

TEST(Fold, PreservesValues) {
    for (const char* s : {"1/3 + 1/6 - x", "x*(2^-3)", "(x + 1/7)*(3 - 5/2)", "-(2) + -3*x",
                          "abs(-5/3) + sign(-2)*x"}) {
        Expr e = parse(s);
        Expr f = fold_constants(e);
        for (double x : {-1.5, 0.25, 3.0})
            EXPECT_NEAR(evaluate(f, {{"x", x}}).item(), evaluate(e, {{"x", x}}).item(), 1e-12)
                << s << " at " << x;
    }
}
