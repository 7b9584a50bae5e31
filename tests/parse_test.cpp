#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "agnesi/agnesi.hpp"

using namespace agnesi;
using ::testing::HasSubstr;

namespace {
ParseError parse_error(std::string_view text) {
    try {
        parse(text);
    } catch (const ParseError& e) {
        return e;
    }
    ADD_FAILURE() << "no parse error for: " << text;
    return ParseError("none", "", 0);
}
}  // namespace

TEST(Parse, SameNodeAsTheCppSpelling) {
    auto x = scalar("x"), y = scalar("y");
    EXPECT_EQ(parse("sin(x)^2 + log1p(y)"), pow(sin(x), 2) + log1p(y));
    EXPECT_EQ(parse("sin(x*x) + exp(-x)/3"), sin(x * x) + exp(-x) / 3);
    EXPECT_EQ(parse("x ** 2"), pow(x, 2));
    EXPECT_EQ(parse("x*0.1"), x * 0.1);
    EXPECT_EQ(parse("pow(x, y)"), pow(x, y));
    EXPECT_EQ(parse("min(x, y) + max(x, 2)"), minimum(x, y) + maximum(x, 2));
    EXPECT_EQ(parse("atan2(y, x)"), atan2(y, x));
    EXPECT_EQ(parse("where(x < y, x, y)"), where(x < y, x, y));
    EXPECT_EQ(parse("x <= 1"), x <= 1);
    EXPECT_EQ(parse("x != y"), ne(x, y));
    EXPECT_EQ(parse("eye(3)"), eye(3));
    EXPECT_EQ(parse("eye(2, float32)"), eye(2, f32));
}

TEST(Parse, PrecedenceAndAssociativity) {
    auto x = scalar("x"), y = scalar("y"), z = scalar("z");
    EXPECT_EQ(parse("x - y - z"), (x - y) - z);
    EXPECT_EQ(parse("x / y / z"), (x / y) / z);
    EXPECT_EQ(parse("x ^ y ^ z"), pow(x, pow(y, z)));
    EXPECT_EQ(parse("-x^2"), -pow(x, 2));
    EXPECT_EQ(parse("2^-x"), pow(2, -x));
    EXPECT_EQ(parse("x + y*z"), x + y * z);
    EXPECT_EQ(parse("(x + y)*z"), (x + y) * z);
    EXPECT_EQ(parse("x + y < z*2"), (x + y) < z * 2);
}

TEST(Parse, LiteralRules) {
    auto x = scalar("x");
    EXPECT_EQ(parse("-2"), literal(Number(-2)));
    EXPECT_EQ(parse("-(2)"), -Expr(2));
    EXPECT_EQ(parse("-2^2"), -pow(Expr(2), 2));
    EXPECT_EQ(parse("1/3"), literal(Number::rational(1, 3)));
    EXPECT_EQ(parse("(1)/3"), Expr(1) / Expr(3));
    EXPECT_EQ(parse("-1/3"), literal(Number::rational(-1, 3)));
    EXPECT_EQ(parse("x/3"), x / 3);
    EXPECT_EQ(parse("2.0"), literal(Number(2), f64));
    EXPECT_EQ(parse("pi"), literal(Number::pi()));
    EXPECT_EQ(parse("-inf"), literal(-Number::inf()));
    EXPECT_EQ(parse("1e-3"), literal(Number::rational(1, 1000)));
}

TEST(Parse, TensorFunctions) {
    auto X = matrix("X", 4, 8), A = matrix("A", 4, 8), B = matrix("B", 8, 3);
    std::vector<Expr> vars = {X, A, B};
    EXPECT_EQ(parse("sum(X, 1)", vars), sum(X, {1}));
    EXPECT_EQ(parse("sum(X)", vars), sum(X));
    EXPECT_EQ(parse("amax(X, 0, keepdims=true)", vars), amax(X, {0}, true));
    EXPECT_EQ(parse("amin(X, 0)", vars), amin(X, {0}));
    EXPECT_EQ(parse("prod(X, -1)", vars), prod(X, {1}));
    EXPECT_EQ(parse("mean(X)", vars), mean(X));
    EXPECT_EQ(parse("softmax(X, 1)", vars), softmax(X, 1));
    EXPECT_EQ(parse("log_softmax(X)", vars), log_softmax(X, -1));
    EXPECT_EQ(parse("logsumexp(X, 1)", vars), logsumexp(X, {1}));
    EXPECT_EQ(parse("matmul(A, B)", vars), matmul(A, B));
    EXPECT_EQ(parse("transpose(A)", vars), transpose(A));
    EXPECT_EQ(parse("reshape(X, 2, 16)", vars), reshape(X, {2, 16}));
    EXPECT_EQ(parse("broadcast_to(sum(X, 1), 3, 4)", vars), broadcast_to(sum(X, {1}), {3, 4}));
    EXPECT_EQ(parse("expand_dims(X, 0)", vars), expand_dims(X, 0));
    EXPECT_EQ(parse("squeeze(expand_dims(X, 0), 0)", vars), squeeze(expand_dims(X, 0), {0}));
    EXPECT_EQ(parse("concat(X, A, axis=1)", vars), concat({X, A}, 1));
    EXPECT_EQ(parse("slice(X, 1, 0, 8, 2)", vars), slice(X, 1, 0, 8, 2));
    EXPECT_EQ(parse("cast(X, float32)", vars), cast(X, f32));
    EXPECT_EQ(parse("cross_entropy(softmax(X), A)", vars), cross_entropy(softmax(X), A));
    // max(a, b) stays elementwise.
    EXPECT_EQ(parse("max(X, A)", vars), maximum(X, A));
}

TEST(Parse, QuotedNames) {
    auto v = scalar("my var");
    EXPECT_EQ(parse("`my var` + 1"), v + 1);
    EXPECT_EQ(parse("`e`"), scalar("e"));
    EXPECT_EQ(parse("`a``b`"), scalar("a`b"));
}

TEST(Parse, ErrorsNameTheColumn) {
    auto e = parse_error("sin(x) + * 2");
    EXPECT_EQ(e.column(), 10u);
    EXPECT_THAT(e.what(), HasSubstr("expected an operand but found '*'"));
    EXPECT_EQ(e.caret(), "sin(x) + * 2\n         ^");
    EXPECT_EQ(parse_error("foo(x)").column(), 1u);
    EXPECT_THAT(parse_error("foo(x)").what(), HasSubstr("unknown function 'foo'"));
    EXPECT_THAT(parse_error("(x + 1").what(), HasSubstr("expected ')' but found end of input"));
    EXPECT_EQ(parse_error("(x + 1").column(), 7u);
    EXPECT_THAT(parse_error("x + 1)").what(), HasSubstr("unmatched ')'"));
    EXPECT_THAT(parse_error("sin(x, y)").what(), HasSubstr("sin: takes 1 argument, got 2"));
    EXPECT_THAT(parse_error("x # y").what(), HasSubstr("unexpected character '#'"));
    EXPECT_THAT(parse_error("").what(), HasSubstr("empty expression"));
    EXPECT_THAT(parse_error("1 < 2 < 3").what(), HasSubstr("comparisons do not chain"));
    EXPECT_THAT(parse_error("sum(x, y)").what(), HasSubstr("sum: expected an integer"));
    EXPECT_THAT(parse_error("12abc").what(), HasSubstr("malformed number"));
    EXPECT_THAT(parse_error("`abc").what(), HasSubstr("unterminated quoted name"));
}

TEST(Parse, ShapeErrorsCarryTheColumn) {
    auto X = matrix("X", 3, 4), w = vector("w", 5);
    try {
        parse("X + w", {X, w});
        FAIL() << "no error";
    } catch (const ShapeError& e) {
        EXPECT_THAT(e.what(), HasSubstr("add: cannot broadcast shapes (3, 4) and (5,)"));
        EXPECT_THAT(e.what(), HasSubstr("column 3"));
    }
}

TEST(Parse, DeepNestingIsAnErrorNotACrash) {
    std::string deep(100000, '(');
    EXPECT_THAT(parse_error(deep + "x").what(), HasSubstr("nested deeper than"));
    std::string pows;
    for (int i = 0; i < 5000; ++i) pows += "x^";
    EXPECT_THAT(parse_error(pows + "x").what(), HasSubstr("nested deeper than"));
    // Long flat chains are fine: they do not nest.
    std::string flat = "x";
    for (int i = 0; i < 100000; ++i) flat += "+1";
    EXPECT_EQ(parse(flat)->height(), 100000u);
}

TEST(Parse, SurvivesArbitraryBytes) {
    std::mt19937 rng(7);
    const std::string alphabet = "xy12.e+-*/^()<=>!,`_ \t\x01\xff";
    for (int i = 0; i < 3000; ++i) {
        std::string s;
        int n = static_cast<int>(rng() % 24);
        for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
        try {
            Expr e = parse(s);
            EXPECT_EQ(parse(to_string(e)), e) << s;
        } catch (const Error&) {
        }
    }
}
