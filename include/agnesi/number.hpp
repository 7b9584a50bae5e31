// Exact constants.
//
// A Number is an exact rational (any size, through Boost.Multiprecision), one of the symbolic
// constants pi and e, or a non-finite value (inf, -inf, nan). Numbers are immutable and cheap to
// copy. A finite C++ double becomes the rational of its shortest round-trip decimal (0.1 is
// 1/10), so `x * 0.1` in C++ and "x * 0.1" parsed are the same constant, and folding stays exact.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace agnesi {

class Number {
  public:
    enum class Kind : std::uint8_t { Rational, Pi, E, PosInf, NegInf, NaN };

    Number();                ///< zero
    Number(std::int64_t v);  // NOLINT: implicit on purpose, numbers read like numbers
    static Number from_double(double v);
    /// Exact value of a decimal literal ("12", "0.5", "1e-3", "2.5E+4"); nullopt if malformed.
    static std::optional<Number> from_decimal(std::string_view text);
    /// p/q exactly; q must be nonzero.
    static Number rational(std::int64_t p, std::int64_t q);
    static Number pi();
    static Number e();
    static Number inf();
    static Number nan();

    Kind kind() const { return kind_; }
    bool is_rational() const { return kind_ == Kind::Rational; }
    // Inline for rationals that fit in int64: simplify asks these at nearly every node.
    bool is_integer() const { return small() ? q_ == 1 : big_integer(); }
    bool is_zero() const { return small() && p_ == 0; }
    bool is_one() const { return small() && p_ == 1 && q_ == 1; }
    bool is_finite() const {
        return kind_ == Kind::Rational || kind_ == Kind::Pi || kind_ == Kind::E;
    }
    /// -1, 0, +1 by sign; nan has sign 0.
    int sign() const { return small() ? (p_ > 0) - (p_ < 0) : sign_slow(); }
    /// The value as a double (correctly rounded for rationals).
    double to_double() const;
    /// The value rounded to float (correctly rounded for rationals, not via double).
    float to_float() const;
    /// Numerator and denominator (positive) of a rational, in lowest terms.
    Number numerator() const;
    Number denominator() const;
    /// The value as int64 if it is an integer that fits.
    std::optional<std::int64_t> to_int64() const;

    /// Text that the parser reads back to the same Number: "3", "-2", "0.5", "1/3", "pi", "inf".
    std::string to_string() const;
    /// LaTeX: "\frac{1}{3}", "\pi", "\infty".
    std::string to_latex() const;
    std::size_t hash() const;

    // Exact arithmetic on rationals; nullopt where the result is not an exact rational
    // (pi, e, non-finite operands, division by zero, a non-integer power, a result too large).
    friend std::optional<Number> exact_add(const Number& a, const Number& b);
    friend std::optional<Number> exact_mul(const Number& a, const Number& b);
    friend std::optional<Number> exact_div(const Number& a, const Number& b);
    friend std::optional<Number> exact_pow(const Number& a, const Number& b);
    Number operator-() const;

    /// Exact comparison of two rationals; nullopt if either is not rational.
    friend std::optional<int> exact_compare(const Number& a, const Number& b);
    /// Structural equality: same kind and same value (nan == nan here).
    friend bool operator==(const Number& a, const Number& b) {
        if (a.small() && b.small()) return a.p_ == b.p_ && a.q_ == b.q_;
        return equal_slow(a, b);
    }

    struct Big;  // a rational that does not fit in int64/int64

  private:
    explicit Number(Kind k);
    bool small() const { return kind_ == Kind::Rational && !big_; }
    bool big_integer() const;
    int sign_slow() const;
    static bool equal_slow(const Number& a, const Number& b);
    Kind kind_ = Kind::Rational;
    // A rational is p_/q_ in lowest terms with q_ > 0 when it fits in int64; otherwise big_.
    std::int64_t p_ = 0;
    std::int64_t q_ = 1;
    std::shared_ptr<const Big> big_;
    friend struct NumberAccess;
    friend struct NumberFast;
};

}  // namespace agnesi
