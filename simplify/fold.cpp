#include <optional>

#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"

namespace agnesi {

namespace {

std::optional<Number> fold_values(Op op, const std::vector<Number>& v) {
    auto boolean = [](bool b) { return Number(b ? 1 : 0); };
    switch (op) {
        case Op::Neg:
            if (v[0].is_rational() || !v[0].is_finite()) return -v[0];
            return std::nullopt;
        case Op::Add:
            return exact_add(v[0], v[1]);
        case Op::Sub:
            return exact_add(v[0], -v[1]);
        case Op::Mul:
            return exact_mul(v[0], v[1]);
        case Op::Div:
            return exact_div(v[0], v[1]);
        case Op::Pow:
            return exact_pow(v[0], v[1]);
        case Op::Abs:
            if (!v[0].is_rational()) return std::nullopt;
            return v[0].sign() < 0 ? -v[0] : v[0];
        case Op::Sign:
            if (!v[0].is_rational()) return std::nullopt;
            return Number(v[0].sign());
        default:
            break;
    }
    std::optional<int> c;
    if (v.size() == 2) c = exact_compare(v[0], v[1]);
    switch (op) {
        case Op::Minimum:
            return c ? std::optional(*c <= 0 ? v[0] : v[1]) : std::nullopt;
        case Op::Maximum:
            return c ? std::optional(*c >= 0 ? v[0] : v[1]) : std::nullopt;
        case Op::Lt:
            return c ? std::optional(boolean(*c < 0)) : std::nullopt;
        case Op::Le:
            return c ? std::optional(boolean(*c <= 0)) : std::nullopt;
        case Op::Gt:
            return c ? std::optional(boolean(*c > 0)) : std::nullopt;
        case Op::Ge:
            return c ? std::optional(boolean(*c >= 0)) : std::nullopt;
        case Op::Eq:
            return c ? std::optional(boolean(*c == 0)) : std::nullopt;
        case Op::Ne:
            return c ? std::optional(boolean(*c != 0)) : std::nullopt;
        default:
            return std::nullopt;
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

}  // namespace

Expr fold_constants(const Expr& e) {
    return rewrite_post_order({e}, [](const Node* n, const std::vector<Expr>& ops) -> Expr {
        bool changed = false;
        for (std::size_t i = 0; i < ops.size(); ++i)
            changed = changed || ops[i].node() != n->operand(i);
        Expr self = changed ? rebuild(n, ops) : Expr(n);
        const Node* s = self.node();
        if (s->info().kind != OpKind::Elementwise || s->arity() == 0) return self;
        if (s->op() == Op::Where && s->operand(0)->is_constant() &&
            s->operand(0)->value().is_rational()) {
            const Node* pick = s->operand(0)->value().is_zero() ? s->operand(2) : s->operand(1);
            if (pick->shape() == s->shape() && pick->dtype() == s->dtype()) return Expr(pick);
            return self;
        }
        std::vector<Number> vals;
        for (const Node* o : s->operands()) {
            if (!o->is_constant()) return self;
            vals.push_back(o->value());
        }
        std::optional<Number> r;
        if (s->op() == Op::Cast)
            r = vals[0];
        else
            r = fold_values(s->op(), vals);
        if (!r || !fits(*r, s->dtype()) || s->rank() != 0) return self;
        if (s->weak()) return literal(*r, s->dtype(), s->context());
        return constant(*r, s->dtype(), s->context());
    })[0];
}

Expr simplify(const Expr& e) {
    return fold_constants(e);
}

}  // namespace agnesi
