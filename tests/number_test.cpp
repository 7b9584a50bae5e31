#include <gtest/gtest.h>

#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>
#include <random>

#include "agnesi/number.hpp"

using agnesi::Number;

TEST(Number, DecimalLiteralsAreExact) {
    EXPECT_EQ(*Number::from_decimal("0.5"), Number::rational(1, 2));
    EXPECT_EQ(*Number::from_decimal("1e-3"), Number::rational(1, 1000));
    EXPECT_EQ(*Number::from_decimal("2.5E+2"), Number(250));
    EXPECT_EQ(*Number::from_decimal(".25"), Number::rational(1, 4));
    EXPECT_FALSE(Number::from_decimal("1e"));
    EXPECT_FALSE(Number::from_decimal("abc"));
    EXPECT_FALSE(Number::from_decimal(""));
}

TEST(Number, DoublesBecomeTheirShortestDecimal) {
    EXPECT_EQ(Number::from_double(0.1), Number::rational(1, 10));
    EXPECT_EQ(Number::from_double(-3.0), Number(-3));
    EXPECT_EQ(Number::from_double(INFINITY).kind(), Number::Kind::PosInf);
    EXPECT_EQ(Number::from_double(-INFINITY).kind(), Number::Kind::NegInf);
    EXPECT_EQ(Number::from_double(NAN).kind(), Number::Kind::NaN);
    EXPECT_EQ(Number::from_double(0.1).to_double(), 0.1);
}

TEST(Number, ExactArithmetic) {
    auto third = Number::rational(1, 3), sixth = Number::rational(1, 6);
    EXPECT_EQ(*exact_add(third, sixth), Number::rational(1, 2));
    EXPECT_EQ(*exact_pow(Number(2), Number(10)), Number(1024));
    EXPECT_EQ(*exact_pow(Number(2), Number(-2)), Number::rational(1, 4));
    EXPECT_EQ(*exact_div(Number(7), Number(14)), Number::rational(1, 2));
    EXPECT_FALSE(exact_div(Number(1), Number(0)));
    EXPECT_EQ(*exact_pow(Number::rational(-5, 2), Number(-3)), Number::rational(-8, 125));
    EXPECT_FALSE(exact_pow(Number(0), Number(-1)));
    EXPECT_FALSE(exact_pow(Number(2), Number::rational(1, 2)));
    EXPECT_FALSE(exact_add(Number::pi(), Number(1)));
    // Beyond the size limit folding gives up instead of growing without bound.
    EXPECT_FALSE(exact_pow(Number(3), Number(100000)));
    EXPECT_EQ(*exact_compare(third, sixth), 1);
}

TEST(Number, ArithmeticAgreesWithBoostRationals) {
    // Operands of every size class, so that sums, products and quotients take each path: the
    // integers, the 64-bit reduction, the 128-bit one and the unbounded one.
    using Rat = boost::multiprecision::cpp_rational;
    std::mt19937_64 rng(7);
    auto draw = [&]() -> std::int64_t {
        int bits = std::uniform_int_distribution<int>(1, 62)(rng);
        auto v = static_cast<std::int64_t>(rng() >> (64 - bits));
        return rng() % 2 ? -v : v;
    };
    // Numerator and denominator as integers, which print the same in both.
    auto same = [](const std::optional<Number>& r, const Rat& x) {
        return r && r->numerator().to_string() == numerator(x).str() &&
               r->denominator().to_string() == denominator(x).str();
    };
    for (int i = 0; i < 4000; ++i) {
        std::int64_t p1 = draw(), p2 = draw();
        std::int64_t q1 = i % 4 == 0 ? 1 : std::abs(draw()) + 1;
        std::int64_t q2 = i % 3 == 0 ? 1 : std::abs(draw()) + 1;
        Number a = Number::rational(p1, q1), b = Number::rational(p2, q2);
        Rat x = Rat(p1) / q1, y = Rat(p2) / q2;
        SCOPED_TRACE(x.str() + " and " + y.str());
        EXPECT_TRUE(same(exact_add(a, b), x + y));
        EXPECT_TRUE(same(exact_mul(a, b), x * y));
        if (p2 != 0) {
            EXPECT_TRUE(same(exact_div(a, b), x / y));
        }
        EXPECT_EQ(a.sign(), x.sign());
        EXPECT_EQ(a.is_integer(), denominator(x) == 1);
        EXPECT_EQ(a == b, x == y);
    }
}

TEST(Number, BigValuesStayExact) {
    auto big = *exact_pow(Number(10), Number(30));
    EXPECT_EQ(big.to_string(), "1000000000000000000000000000000");
    auto back = *exact_div(big, *exact_pow(Number(10), Number(29)));
    EXPECT_EQ(back, Number(10));
    EXPECT_EQ(big.hash(), (*Number::from_decimal("1e30")).hash());
}

TEST(Number, PrintsInAFormTheParserReadsBack) {
    EXPECT_EQ(Number(3).to_string(), "3");
    EXPECT_EQ(Number(-2).to_string(), "-2");
    EXPECT_EQ(Number::rational(1, 2).to_string(), "0.5");
    EXPECT_EQ(Number::rational(-1, 3).to_string(), "-1/3");
    EXPECT_EQ(Number::rational(1, 1000).to_string(), "0.001");
    EXPECT_EQ(Number::pi().to_string(), "pi");
    EXPECT_EQ((-Number::inf()).to_string(), "-inf");
    auto tiny = *exact_pow(Number(2), Number(-80));
    EXPECT_EQ(*Number::from_decimal(tiny.to_string()), tiny);
    EXPECT_EQ(Number::rational(1, 3).to_latex(), "\\frac{1}{3}");
}

TEST(Number, RoundsCorrectlyToFloat) {
    // 1/3 rounded once to float, not through double.
    EXPECT_EQ(Number::rational(1, 3).to_float(), 1.0f / 3.0f);
    EXPECT_EQ(Number::rational(1, 3).to_double(), 1.0 / 3.0);
    auto big = *exact_div(*exact_pow(Number(10), Number(40)), Number(3));
    EXPECT_DOUBLE_EQ(big.to_double(), 1e40 / 3);
}
