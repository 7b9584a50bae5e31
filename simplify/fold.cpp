#include <optional>

#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"
#include "simplify/internal.hpp"

namespace agnesi {

namespace {

std::optional<Number> fold_values(Op op, const std::vector<Number>& v) {
    auto boolean = [](bool b) { return Number(b ? 1 : 0); };
    switch (op) {
        case Op::Neg:
            if (v[0].is_rational() || !v[0].is_finite()) return -v[0];
            return std::nullopt;
        case Op::Add: return exact_add(v[0], v[1]);
        case Op::Sub:
            if (!v[1].is_rational()) return std::nullopt;
            return exact_add(v[0], -v[1]);
        case Op::Mul: return exact_mul(v[0], v[1]);
        case Op::Div: return exact_div(v[0], v[1]);
        case Op::Pow: return exact_pow(v[0], v[1]);
        case Op::Abs:
            if (!v[0].is_rational()) return std::nullopt;
            return v[0].sign() < 0 ? -v[0] : v[0];
        case Op::Sign:
            if (!v[0].is_rational()) return std::nullopt;
            return Number(v[0].sign());
        case Op::Relu:
            if (!v[0].is_rational()) return std::nullopt;
            return v[0].sign() < 0 ? Number(0) : v[0];
        case Op::Floor:
        case Op::Ceil: {
            if (!v[0].is_rational()) return std::nullopt;
            // floor(p/q) by exact integer division, rounding toward -inf.
            Number p = v[0].numerator(), q = v[0].denominator();
            if (q.is_one()) return v[0];
            auto pi = p.to_int64(), qi = q.to_int64();
            if (!pi || !qi) return std::nullopt;
            std::int64_t f = *pi / *qi - ((*pi % *qi) < 0 ? 1 : 0);
            return Number(op == Op::Floor ? f : f + 1);
        }
        default: break;
    }
    if (v.size() == 1) {
        // Exact values at the points where they are rational.
        const Number& a = v[0];
        bool zero = a.is_zero(), one = a.is_one();
        switch (op) {
            case Op::Exp:
            case Op::Cos:
            case Op::Cosh:
            case Op::Erfc:
                if (zero) return Number(1);
                break;
            case Op::Sin:
            case Op::Tan:
            case Op::Sinh:
            case Op::Tanh:
            case Op::Asin:
            case Op::Atan:
            case Op::Asinh:
            case Op::Atanh:
            case Op::Erf:
            case Op::Log1p:
            case Op::Expm1:
                if (zero) return Number(0);
                break;
            case Op::Log:
                if (one) return Number(0);
                if (a.kind() == Number::Kind::E) return Number(1);
                break;
            case Op::Acos:
            case Op::Acosh:
                if (one) return Number(0);
                break;
            case Op::Sigmoid:
                if (zero) return Number::rational(1, 2);
                break;
            default: break;
        }
    }
    std::optional<int> c;
    if (v.size() == 2) c = exact_compare(v[0], v[1]);
    switch (op) {
        case Op::Minimum: return c ? std::optional(*c <= 0 ? v[0] : v[1]) : std::nullopt;
        case Op::Maximum: return c ? std::optional(*c >= 0 ? v[0] : v[1]) : std::nullopt;
        case Op::Lt: return c ? std::optional(boolean(*c < 0)) : std::nullopt;
        case Op::Le: return c ? std::optional(boolean(*c <= 0)) : std::nullopt;
        case Op::Gt: return c ? std::optional(boolean(*c > 0)) : std::nullopt;
        case Op::Ge: return c ? std::optional(boolean(*c >= 0)) : std::nullopt;
        case Op::Eq: return c ? std::optional(boolean(*c == 0)) : std::nullopt;
        case Op::Ne: return c ? std::optional(boolean(*c != 0)) : std::nullopt;
        default: return std::nullopt;
    }
}

// Whether an exact value fits the dtype it would be stored in (integers must not wrap).
bool fits(const Number& v, DType t) {
    if (is_float(t)) return true;
    auto i = v.to_int64();
    if (!i) return false;
    if (t == DType::Int32) return *i >= INT32_MIN && *i <= INT32_MAX;
    if (t == DType::Bool) return *i == 0 || *i == 1;
    return true;
}

// The largest k with k^2 dividing n (trial division; from 2^40 on it gives up with 1).
std::int64_t square_part(std::int64_t n, std::int64_t& rest) {
    rest = n;
    if (n >= (std::int64_t(1) << 40)) return 1;
    std::int64_t k = 1;
    for (std::int64_t d = 2; d * d <= rest; ++d)
        while (rest % (d * d) == 0) rest /= d * d, k *= d;
    return k;
}

// sqrt(p/q) = a/(b*q') * sqrt(p'*q') with the square parts taken out: sqrt(8) is 2*sqrt(2).
std::optional<Expr> exact_sqrt(const Number& v, const Node* s) {
    if (!v.is_rational() || v.sign() < 0) return std::nullopt;
    auto p = v.numerator().to_int64(), q = v.denominator().to_int64();
    if (!p || !q) return std::nullopt;
    std::int64_t p1 = 0, q1 = 0;
    std::int64_t a = square_part(*p, p1), b = square_part(*q, q1);
    if (a == 1 && b == 1 && q1 == 1) return std::nullopt;  // already square-free
    std::int64_t inside = 0;
    if (__builtin_mul_overflow(p1, q1, &inside)) return std::nullopt;
    Context& ctx = s->context();
    Number coef = *exact_div(Number(a), *exact_mul(Number(b), Number(q1)));
    // Weak stays weak, so the parent's dtype does not change.
    auto num = [&](const Number& x) {
        return s->weak() ? literal(x, s->dtype(), ctx) : constant(x, s->dtype(), ctx);
    };
    if (inside == 1) return num(coef);
    Expr root = sqrt(s->weak() ? literal(Number(inside), ctx) : num(Number(inside)));
    return coef.is_one() ? root : num(coef) * root;
}

}  // namespace

namespace detail {

std::optional<Expr> fold_node(const Node* s) {
    if (s->info().kind != OpKind::Elementwise || s->arity() == 0) return std::nullopt;
    if (s->op() == Op::Where && s->operand(0)->is_constant() &&
        s->operand(0)->value().is_rational()) {
        const Node* pick = s->operand(0)->value().is_zero() ? s->operand(2) : s->operand(1);
        if (pick->shape() == s->shape() && pick->dtype() == s->dtype()) return Expr(pick);
        return std::nullopt;
    }
    std::vector<Number> vals;
    for (const Node* o : s->operands()) {
        if (!o->is_constant()) return std::nullopt;
        vals.push_back(o->value());
    }
    std::optional<Number> r;
    if (s->op() == Op::Cast)
        r = vals[0];
    else
        r = fold_values(s->op(), vals);
    if (!r && s->op() == Op::Sqrt && s->rank() == 0 && is_float(s->dtype()))
        if (auto root = exact_sqrt(vals[0], s)) return *root;
    if (!r || !fits(*r, s->dtype()) || s->rank() != 0) return std::nullopt;
    if (s->weak()) return literal(*r, s->dtype(), s->context());
    return constant(*r, s->dtype(), s->context());
}

}  // namespace detail

Expr fold_constants(const Expr& e) {
    return rewrite_post_order({e}, [](const Node* n, const std::vector<Expr>& ops) -> Expr {
        bool changed = false;
        for (std::size_t i = 0; i < ops.size(); ++i)
            changed = changed || ops[i].node() != n->operand(i);
        Expr self = changed ? detail::rebuild_same_type(n, ops) : Expr(n);
        if (auto f = detail::fold_node(self.node())) return *f;
        return self;
    })[0];
}

}  // namespace agnesi
