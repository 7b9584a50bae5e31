#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agnesi/agnesi.hpp"

using namespace agnesi;
using ::testing::HasSubstr;

TEST(PrintText, MinimalParentheses) {
    auto x = scalar("x"), y = scalar("y"), z = scalar("z");
    EXPECT_EQ(to_string(sin(x * x) + exp(-x) / 3), "sin(x*x) + exp(-x)/3");
    EXPECT_EQ(to_string((x + y) * z), "(x + y)*z");
    EXPECT_EQ(to_string(x + y * z), "x + y*z");
    EXPECT_EQ(to_string(x - (y - z)), "x - (y - z)");
    EXPECT_EQ(to_string((x - y) - z), "x - y - z");
    EXPECT_EQ(to_string(x / (y * z)), "x/(y*z)");
    EXPECT_EQ(to_string(pow(pow(x, 2), 3)), "(x^2)^3");
    EXPECT_EQ(to_string(pow(x, pow(Expr(2), 3))), "x^2^3");
    EXPECT_EQ(to_string(pow(-x, 2)), "(-x)^2");
    EXPECT_EQ(to_string(-pow(x, 2)), "-x^2");
    EXPECT_EQ(to_string(-(x + y)), "-(x + y)");
    EXPECT_EQ(to_string(pow(x, -y)), "x^-y");
    EXPECT_EQ(to_string(2 * x * cos(pow(x, 2))), "2*x*cos(x^2)");
    EXPECT_EQ(to_string((x < y) + 1), "(x < y) + 1");
}

TEST(PrintText, Literals) {
    auto x = scalar("x");
    EXPECT_EQ(to_string(x * 0.5), "x*0.5");
    EXPECT_EQ(to_string(x + literal(Number::rational(1, 3))), "x + 1/3");
    EXPECT_EQ(to_string(x * literal(Number::rational(1, 3))), "x*(1/3)");
    EXPECT_EQ(to_string(Expr(1) / Expr(3)), "(1)/3");
    EXPECT_EQ(to_string(-Expr(2)), "-(2)");
    EXPECT_EQ(to_string(literal(Number(-2))), "-2");
    EXPECT_EQ(to_string(pow(literal(Number(-2)), x)), "(-2)^x");
    EXPECT_EQ(to_string(literal(Number(2), f64)), "2.0");
    EXPECT_EQ(to_string(constant(2, f32)), "cast(2, float32)");
    EXPECT_EQ(to_string(scalar("x", f32) * 2), "x*2");
    EXPECT_EQ(to_string(literal(Number::pi()) * x), "pi*x");
}

TEST(PrintText, TensorOps) {
    auto X = matrix("X", 4, 8);
    EXPECT_EQ(to_string(sum(X, {1})), "sum(X, 1)");
    EXPECT_EQ(to_string(sum(X)), "sum(X)");
    EXPECT_EQ(to_string(amax(X, {0}, true)), "amax(X, 0, keepdims=true)");
    EXPECT_EQ(to_string(softmax(X, -1)), "softmax(X, 1)");
    EXPECT_EQ(to_string(reshape(X, {2, 16})), "reshape(X, 2, 16)");
    EXPECT_EQ(to_string(transpose(X)), "transpose(X)");
    EXPECT_EQ(to_string(concat({X, X}, 0)), "concat(X, X, axis=0)");
    EXPECT_EQ(to_string(slice(X, 1, 0, 8, 2)), "slice(X, 1, 0, 8, 2)");
    EXPECT_EQ(to_string(cast(X, f32)), "cast(X, float32)");
    EXPECT_EQ(to_string(matmul(eye(4), X)), "matmul(eye(4), X)");
    EXPECT_EQ(to_string(eye(2, f32)), "eye(2, float32)");
    EXPECT_EQ(to_latex(eye(4)), "I_{4}");
}

TEST(PrintText, OddNamesAreQuoted) {
    EXPECT_EQ(to_string(scalar("x; system(\"rm\")") + 1), "`x; system(\"rm\")` + 1");
    EXPECT_EQ(to_string(scalar("e")), "`e`");
    EXPECT_EQ(quote_name("w_1"), "w_1");
}

TEST(PrintLatex, ReadsLikeMath) {
    auto x = scalar("x"), y = scalar("y");
    EXPECT_EQ(to_latex(sin(pow(x, 2))), "\\sin\\left(x^{2}\\right)");
    EXPECT_EQ(to_latex(x / (y + 1)), "\\frac{x}{y + 1}");
    EXPECT_EQ(to_latex(exp(-x)), "e^{-x}");
    EXPECT_EQ(to_latex(sqrt(x)), "\\sqrt{x}");
    EXPECT_EQ(to_latex((x + y) * x), "\\left(x + y\\right) \\cdot x");
    EXPECT_EQ(to_latex(2 * x), "2 x");
    EXPECT_EQ(to_latex(x * 2), "x \\cdot 2");
    EXPECT_EQ(to_latex(abs(x)), "\\left|x\\right|");
    EXPECT_EQ(to_latex(scalar("alpha") * scalar("x1")), "\\alpha \\cdot x_{1}");
    EXPECT_EQ(to_latex(literal(Number::rational(1, 3))), "\\frac{1}{3}");
    EXPECT_EQ(to_latex(sum(matrix("X", 2, 3), {1})), "\\sum_{1}\\left(X\\right)");
    EXPECT_EQ(to_latex(transpose(matrix("A", 2, 3))), "A^{\\top}");
}

TEST(PrintDot, OneBoxPerDistinctNode) {
    auto x = scalar("x");
    Expr t = x * x;
    std::string dot = to_dot(sin(t) + cos(t));
    EXPECT_THAT(dot, HasSubstr("digraph agnesi {"));
    // x, x*x, sin, cos, add: five nodes, and one output.
    int boxes = 0;
    for (std::size_t p = dot.find("[label="); p != std::string::npos;
         p = dot.find("[label=", p + 1))
        if (dot.compare(p - 1, 1, " ") == 0) ++boxes;
    EXPECT_EQ(boxes, 6);
    EXPECT_THAT(dot, HasSubstr("label=\"mul\""));
    EXPECT_THAT(to_dot(scalar("a\"b")), HasSubstr("a\\\"b"));
}

TEST(PrintDebug, SharedNodesAppearOnce) {
    auto x = scalar("x");
    Expr t = x * x;
    EXPECT_EQ(debug_print(sin(t) + exp(t)), "$1 = x*x\nsin($1) + exp($1)\n");
    EXPECT_EQ(debug_print(sin(x), {.types = true}), "sin(x)  : float64 ()\n");
    auto X = matrix("X", 2, 3);
    EXPECT_EQ(debug_print(std::vector<Expr>{sum(X), sum(X) * 2}, {.types = true}),
              "$1 = sum(X)  : float64 ()\n[0] $1  : float64 ()\n[1] $1*2  : float64 ()\n");
}

TEST(PrintDebug, LinearOnADiamondChain) {
    // Each level uses the previous one twice: the tree has 2^40 leaves, the DAG 40 nodes.
    Expr e = scalar("x");
    for (int i = 0; i < 40; ++i) e = sin(e) * cos(e);
    std::string s = debug_print(e);
    EXPECT_LT(s.size(), 40u * 40u);
    EXPECT_THAT(s, HasSubstr("$39 = sin($38)*cos($38)\nsin($39)*cos($39)\n"));
}
