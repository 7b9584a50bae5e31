#include "agnesi/number.hpp"

#include <fmt/format.h>

#include <boost/functional/hash.hpp>
#include <boost/multiprecision/cpp_bin_float.hpp>
#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>
#include <limits>
#include <numeric>

#include "agnesi/error.hpp"

namespace agnesi {

namespace mp = boost::multiprecision;
using Rat = mp::cpp_rational;
using Int = mp::cpp_int;

struct Number::Big {
    Rat v;
    std::size_t hash = 0;  // computed once: hashing a big rational formats it
};

// Exact results larger than this many bits are not formed: folding gives up instead.
static constexpr unsigned kMaxBits = 4096;

struct NumberAccess {
    static Rat rat(const Number& n) {
        if (n.big_) return n.big_->v;
        return Rat(Int(n.p_), Int(n.q_));
    }
    static Number make(const Rat& r) {
        Number n;
        const Int& num = mp::numerator(r);
        const Int& den = mp::denominator(r);
        constexpr auto lo = std::numeric_limits<std::int64_t>::min() + 1;
        constexpr auto hi = std::numeric_limits<std::int64_t>::max();
        if (num >= lo && num <= hi && den <= hi) {
            n.p_ = static_cast<std::int64_t>(num);
            n.q_ = static_cast<std::int64_t>(den);
        } else {
            std::size_t h =
                static_cast<std::size_t>(Number::Kind::Rational) * 0x9e3779b97f4a7c15ull;
            boost::hash_combine(h, mp::numerator(r).str());
            boost::hash_combine(h, mp::denominator(r).str());
            n.big_ = std::make_shared<const Number::Big>(Number::Big{r, h});
        }
        return n;
    }
    static bool too_big(const Rat& r) {
        auto bits = [](const Int& i) { return i == 0 ? 0u : unsigned(mp::msb(mp::abs(i))) + 1; };
        return bits(mp::numerator(r)) > kMaxBits || bits(mp::denominator(r)) > kMaxBits;
    }
};

Number::Number() = default;
Number::Number(std::int64_t v) : p_(v) {
    if (v == std::numeric_limits<std::int64_t>::min()) *this = NumberAccess::make(Rat(v));
}
Number::Number(Kind k) : kind_(k) {}

Number Number::rational(std::int64_t p, std::int64_t q) {
    if (q == 0) throw ValueError("Number::rational: zero denominator");
    return NumberAccess::make(Rat(Int(p), Int(q)));
}
Number Number::pi() {
    return Number(Kind::Pi);
}
Number Number::e() {
    return Number(Kind::E);
}
Number Number::inf() {
    return Number(Kind::PosInf);
}
Number Number::nan() {
    return Number(Kind::NaN);
}

Number Number::from_double(double v) {
    if (std::isnan(v)) return nan();
    if (std::isinf(v)) return v > 0 ? inf() : -inf();
    if (v == std::floor(v) && std::fabs(v) < 9e15) return Number(static_cast<std::int64_t>(v));
    auto n = from_decimal(fmt::format("{}", v));
    AGNESI_ASSERT(n) << "shortest form of a double did not parse: " << v;
    return *n;
}

std::optional<Number> Number::from_decimal(std::string_view s) {
    std::size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    Int mant = 0;
    long long scale = 0;  // value = mant * 10^scale
    bool digits = false;
    for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
        mant = mant * 10 + (s[i] - '0');
        digits = true;
    }
    if (i < s.size() && s[i] == '.') {
        for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
            mant = mant * 10 + (s[i] - '0');
            --scale;
            digits = true;
        }
    }
    if (!digits) return std::nullopt;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        bool eneg = false;
        if (i < s.size() && (s[i] == '-' || s[i] == '+')) eneg = s[i++] == '-';
        long long ex = 0;
        bool edigits = false;
        for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
            if (ex < 100000) ex = ex * 10 + (s[i] - '0');
            edigits = true;
        }
        if (!edigits) return std::nullopt;
        scale += eneg ? -ex : ex;
    }
    if (i != s.size()) return std::nullopt;
    if (mant == 0) return Number(0);
    if (scale > 1000 || scale < -1000) {
        // Beyond any dtype's range: keep the magnitude, not the digits.
        if (scale > 0) return neg ? -inf() : inf();
        return Number(0);
    }
    Rat r = scale >= 0 ? Rat(mant * mp::pow(Int(10), unsigned(scale)))
                       : Rat(mant, mp::pow(Int(10), unsigned(-scale)));
    return NumberAccess::make(neg ? Rat(-r) : r);
}

// Computed when asked, not kept: numbers are built far more often than hashed (every node
// description holds one).
std::size_t Number::hash() const {
    std::size_t h = static_cast<std::size_t>(kind_) * 0x9e3779b97f4a7c15ull;
    if (kind_ != Kind::Rational) return h;
    if (big_) return big_->hash;
    h ^= static_cast<std::size_t>(p_) * 0xff51afd7ed558ccdull;
    h ^= static_cast<std::size_t>(q_) * 0xc4ceb9fe1a85ec53ull + (h << 6) + (h >> 2);
    return h;
}

bool Number::big_integer() const {
    return kind_ == Kind::Rational && mp::denominator(big_->v) == 1;
}

int Number::sign_slow() const {
    switch (kind_) {
        case Kind::Rational: return big_->v.sign();  // the int64 case is inline
        case Kind::Pi:
        case Kind::E:
        case Kind::PosInf: return 1;
        case Kind::NegInf: return -1;
        case Kind::NaN: return 0;
    }
    detail::unreachable("Number::sign");
}

double Number::to_double() const {
    switch (kind_) {
        case Kind::Rational: {
            constexpr std::int64_t exact = std::int64_t(1) << 53;
            if (!big_ && p_ > -exact && p_ < exact && q_ < exact)
                return static_cast<double>(p_) / static_cast<double>(q_);
            using Quad = mp::cpp_bin_float_quad;
            Rat r = NumberAccess::rat(*this);
            Quad v = Quad(mp::numerator(r)) / Quad(mp::denominator(r));
            return static_cast<double>(v);
        }
        case Kind::Pi: return 3.141592653589793238462643383279502884;
        case Kind::E: return 2.718281828459045235360287471352662498;
        case Kind::PosInf: return std::numeric_limits<double>::infinity();
        case Kind::NegInf: return -std::numeric_limits<double>::infinity();
        case Kind::NaN: return std::numeric_limits<double>::quiet_NaN();
    }
    detail::unreachable("Number::to_double");
}

float Number::to_float() const {
    if (kind_ == Kind::Rational && !big_) {
        constexpr std::int64_t exact = std::int64_t(1) << 24;
        if (p_ > -exact && p_ < exact && q_ < exact)
            return static_cast<float>(p_) / static_cast<float>(q_);
    }
    if (kind_ == Kind::Rational) {
        using Quad = mp::cpp_bin_float_quad;
        Rat r = NumberAccess::rat(*this);
        Quad v = Quad(mp::numerator(r)) / Quad(mp::denominator(r));
        return static_cast<float>(v);
    }
    switch (kind_) {
        case Kind::Pi: return 3.14159265358979323846f;
        case Kind::E: return 2.71828182845904523536f;
        default: return static_cast<float>(to_double());
    }
}

Number Number::numerator() const {
    AGNESI_ASSERT(kind_ == Kind::Rational) << "numerator of " << to_string();
    if (!big_) return Number(p_);
    return NumberAccess::make(Rat(mp::numerator(big_->v)));
}

Number Number::denominator() const {
    AGNESI_ASSERT(kind_ == Kind::Rational) << "denominator of " << to_string();
    if (!big_) return Number(q_);
    return NumberAccess::make(Rat(mp::denominator(big_->v)));
}

std::optional<std::int64_t> Number::to_int64() const {
    if (kind_ != Kind::Rational || big_ || q_ != 1) return std::nullopt;
    return p_;
}

std::string Number::to_string() const {
    switch (kind_) {
        case Kind::Pi: return "pi";
        case Kind::E: return "e";
        case Kind::PosInf: return "inf";
        case Kind::NegInf: return "-inf";
        case Kind::NaN: return "nan";
        case Kind::Rational: break;
    }
    if (!big_ && q_ == 1) return std::to_string(p_);
    Rat r = NumberAccess::rat(*this);
    Int num = mp::numerator(r), den = mp::denominator(r);
    if (den == 1) return num.str();
    // Denominators of the form 2^a 5^b print as exact decimals.
    Int d = den;
    unsigned twos = 0, fives = 0;
    while (d % 2 == 0) d /= 2, ++twos;
    while (d % 5 == 0) d /= 5, ++fives;
    if (d != 1) return num.str() + "/" + den.str();
    unsigned k = std::max(twos, fives);
    Int m = num * mp::pow(Int(10), k) / den;
    bool neg = m < 0;
    std::string digits = Int(mp::abs(m)).str();
    std::string out = neg ? "-" : "";
    if (k <= 20) {
        if (digits.size() <= k) digits = std::string(k - digits.size() + 1, '0') + digits;
        out += digits.substr(0, digits.size() - k) + "." + digits.substr(digits.size() - k);
    } else {
        // d.ddd e-X with the exponent of the leading digit.
        long long ex = static_cast<long long>(digits.size()) - 1 - static_cast<long long>(k);
        out += digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        out += "e" + std::to_string(ex);
    }
    return out;
}

std::string Number::to_latex() const {
    switch (kind_) {
        case Kind::Pi: return "\\pi";
        case Kind::E: return "e";
        case Kind::PosInf: return "\\infty";
        case Kind::NegInf: return "-\\infty";
        case Kind::NaN: return "\\mathrm{NaN}";
        case Kind::Rational: break;
    }
    std::string s = to_string();
    auto slash = s.find('/');
    if (slash == std::string::npos) return s;
    bool neg = s[0] == '-';
    std::string p = s.substr(neg ? 1 : 0, slash - (neg ? 1 : 0));
    return std::string(neg ? "-" : "") + "\\frac{" + p + "}{" + s.substr(slash + 1) + "}";
}

Number Number::operator-() const {
    switch (kind_) {
        case Kind::Rational:
            // Sums negate a coefficient per term: small numbers skip the big rational.
            if (!big_ && p_ != std::numeric_limits<std::int64_t>::min()) {
                Number n = *this;
                n.p_ = -p_;
                return n;
            }
            return NumberAccess::make(-NumberAccess::rat(*this));
        case Kind::PosInf: return Number(Kind::NegInf);
        case Kind::NegInf: return Number(Kind::PosInf);
        case Kind::NaN: return *this;
        default: AGNESI_ASSERT(false) << "negating a symbolic constant; use a neg node";
    }
    return *this;
}

namespace {
std::optional<Number> checked(const Rat& r) {
    if (NumberAccess::too_big(r)) return std::nullopt;
    return NumberAccess::make(r);
}
}  // namespace

// Small rationals (the common case) take a fast path in 128-bit integers.
struct NumberFast {
    static bool small(const Number& n) { return n.kind_ == Number::Kind::Rational && !n.big_; }
    static std::optional<Number> make(__int128 p, __int128 q) {
        if (q < 0) p = -p, q = -q;
        __int128 a = p < 0 ? -p : p;
        constexpr __int128 u64 = std::numeric_limits<std::uint64_t>::max();
        if (q == 1) {
            // an integer is in lowest terms
        } else if (a <= u64 && q <= u64) {
            // 64-bit arithmetic where it fits: division of __int128 is a library call, and
            // simplify multiplies and adds coefficients at nearly every node.
            auto ua = static_cast<std::uint64_t>(a), uq = static_cast<std::uint64_t>(q);
            std::uint64_t g = std::gcd(ua, uq);
            if (g > 1) {
                ua /= g;
                uq /= g;
                p = p < 0 ? -__int128(ua) : __int128(ua);
                q = uq;
            }
        } else {
            __int128 b = q;
            while (b) a %= b, std::swap(a, b);  // gcd
            if (a > 1) p /= a, q /= a;
        }
        constexpr __int128 hi = std::numeric_limits<std::int64_t>::max();
        if (p > hi || p < -hi || q > hi) return std::nullopt;
        Number n;
        n.p_ = static_cast<std::int64_t>(p);
        n.q_ = static_cast<std::int64_t>(q);
        return n;
    }
    static std::optional<Number> add(const Number& a, const Number& b) {
        if (!small(a) || !small(b)) return std::nullopt;
        if (a.q_ == 1 && b.q_ == 1) return make(__int128(a.p_) + b.p_, 1);
        return make(__int128(a.p_) * b.q_ + __int128(b.p_) * a.q_, __int128(a.q_) * b.q_);
    }
    static std::optional<Number> mul(const Number& a, const Number& b) {
        if (!small(a) || !small(b)) return std::nullopt;
        return make(__int128(a.p_) * b.p_, __int128(a.q_) * b.q_);
    }
};

std::optional<Number> exact_add(const Number& a, const Number& b) {
    if (!a.is_rational() || !b.is_rational()) return std::nullopt;
    if (auto r = NumberFast::add(a, b)) return r;
    return checked(NumberAccess::rat(a) + NumberAccess::rat(b));
}
std::optional<Number> exact_mul(const Number& a, const Number& b) {
    if (!a.is_rational() || !b.is_rational()) return std::nullopt;
    if (auto r = NumberFast::mul(a, b)) return r;
    return checked(NumberAccess::rat(a) * NumberAccess::rat(b));
}
std::optional<Number> exact_div(const Number& a, const Number& b) {
    if (!a.is_rational() || !b.is_rational() || b.is_zero()) return std::nullopt;
    if (NumberFast::small(a) && NumberFast::small(b))
        if (auto r = NumberFast::make(__int128(a.p_) * b.q_, __int128(a.q_) * b.p_)) return r;
    return checked(NumberAccess::rat(a) / NumberAccess::rat(b));
}
std::optional<Number> exact_pow(const Number& a, const Number& b) {
    auto e = b.to_int64();
    if (!a.is_rational() || !e) return std::nullopt;
    if (a.is_zero() && *e <= 0) return std::nullopt;
    if (*e == 0) return Number(1);
    if (*e == 1) return a;
    if (*e == -1) return exact_div(Number(1), a);
    Rat base = NumberAccess::rat(a);
    auto bits = [](const Int& i) { return i == 0 ? 0u : unsigned(mp::msb(mp::abs(i))) + 1; };
    std::uint64_t mag = static_cast<std::uint64_t>(*e < 0 ? -*e : *e);
    unsigned need = std::max(bits(mp::numerator(base)), bits(mp::denominator(base)));
    if (need > 1 && mag > kMaxBits / (need - 1)) return std::nullopt;
    if (mag > 100000) return std::nullopt;
    Int num = mp::pow(mp::numerator(base), unsigned(mag));
    Int den = mp::pow(mp::denominator(base), unsigned(mag));
    Rat r(num, den);
    if (*e < 0) r = Rat(1) / r;  // not Rat(den, num): a negative denominator is rejected
    return checked(r);
}

std::optional<int> exact_compare(const Number& a, const Number& b) {
    if (!a.is_rational() || !b.is_rational()) return std::nullopt;
    if (NumberFast::small(a) && NumberFast::small(b)) {
        __int128 x = __int128(a.p_) * b.q_, y = __int128(b.p_) * a.q_;
        return (x > y) - (x < y);
    }
    Rat x = NumberAccess::rat(a), y = NumberAccess::rat(b);
    return (x > y) - (x < y);
}

bool Number::equal_slow(const Number& a, const Number& b) {
    if (a.kind_ != b.kind_) return false;
    if (a.kind_ != Number::Kind::Rational) return true;
    if (!a.big_ && !b.big_) return a.p_ == b.p_ && a.q_ == b.q_;
    if (!a.big_ || !b.big_) return false;
    return a.big_->hash == b.big_->hash && a.big_->v == b.big_->v;
}

}  // namespace agnesi
