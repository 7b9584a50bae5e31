// Sign and integrality facts about nodes, from constants, structure and assumptions.
//
// The analysis looks a bounded depth down the DAG (deeper nodes count as unknown), so it never
// recurses over the depth of a large DAG and costs O(1) per query.
#include "agnesi/simplify.hpp"

namespace agnesi {

namespace {

constexpr int kMaxDepth = 12;

struct Facts {
    bool positive = false, nonnegative = false, negative = false, nonpositive = false;
    bool nonzero = false, integer = false;
};

// The facts of -a.
Facts negated(const Facts& a) {
    Facts f;
    f.positive = a.negative;
    f.negative = a.positive;
    f.nonnegative = a.nonpositive;
    f.nonpositive = a.nonnegative;
    f.nonzero = a.nonzero;
    f.integer = a.integer;
    return f;
}

// The signs of a * b, and of a / b where b is nonzero.
Facts product(const Facts& a, const Facts& b) {
    Facts f;
    f.positive = (a.positive && b.positive) || (a.negative && b.negative);
    f.negative = (a.positive && b.negative) || (a.negative && b.positive);
    f.nonnegative = (a.nonnegative && b.nonnegative) || (a.nonpositive && b.nonpositive);
    f.nonpositive = (a.nonnegative && b.nonpositive) || (a.nonpositive && b.nonnegative);
    return f;
}

// The signs of a + b.
Facts sum_of(const Facts& a, const Facts& b) {
    Facts f;
    f.nonnegative = a.nonnegative && b.nonnegative;
    f.positive = f.nonnegative && (a.positive || b.positive);
    f.nonpositive = a.nonpositive && b.nonpositive;
    f.negative = f.nonpositive && (a.negative || b.negative);
    f.integer = a.integer && b.integer;
    return f;
}

Facts facts(const Node* n, int depth);

Facts facts_of_number(const Number& v) {
    Facts f;
    if (!v.is_finite()) return f;
    int s = v.sign();
    f.positive = s > 0;
    f.nonnegative = s >= 0;
    f.negative = s < 0;
    f.nonpositive = s <= 0;
    f.nonzero = s != 0;
    f.integer = v.is_integer();
    return f;
}

Facts facts(const Node* n, int depth) {
    Facts f;
    if (depth > kMaxDepth) return f;
    auto sub = [&](std::size_t i) { return facts(n->operand(i), depth + 1); };
    switch (n->op()) {
        case Op::Constant: return facts_of_number(n->value());
        case Op::Eye:
            f.nonnegative = true;
            f.integer = true;
            return f;
        case Op::Variable: {
            std::uint8_t a = n->assumptions();
            f.positive = a & kPositive;
            f.nonnegative = (a & kNonnegative) || f.positive;
            f.negative = a & kNegative;
            f.nonpositive = (a & kNonpositive) || f.negative;
            f.nonzero = (a & kNonzero) || f.positive || f.negative;
            f.integer = (a & kInteger) || is_integer(n->dtype()) || n->dtype() == DType::Bool;
            if (n->dtype() == DType::Bool) f.nonnegative = true;
            return f;
        }
        case Op::Exp:
        case Op::Cosh:
        case Op::Sigmoid:
        case Op::Softplus:
        case Op::Softmax:
        case Op::Erfc:
            // Positive for every finite argument.
            f.positive = f.nonnegative = f.nonzero = true;
            return f;
        case Op::Tanh:
        case Op::Sinh:
        case Op::Asinh:
        case Op::Atan:
        case Op::Erf:
        case Op::Expm1:
        case Op::Log1p:
        case Op::Sign:
            // Increasing through 0 at 0 (sign steps there): the sign of the argument (log1p's
            // domain is > -1).
            f = sub(0);
            f.integer = n->op() == Op::Sign;
            return f;
        case Op::Abs: {
            Facts a = sub(0);
            f.nonnegative = true;
            f.positive = f.nonzero = a.nonzero;
            f.integer = a.integer;
            return f;
        }
        case Op::Sqrt:
        case Op::Relu: {
            Facts a = sub(0);
            f.nonnegative = true;
            f.positive = f.nonzero = a.positive;
            f.nonpositive = a.nonpositive && n->op() == Op::Relu;  // relu(a) = 0
            f.integer = a.integer && n->op() == Op::Relu;
            return f;
        }
        case Op::Neg: return negated(sub(0));
        case Op::Add: f = sum_of(sub(0), sub(1)); break;
        case Op::Sub: f = sum_of(sub(0), negated(sub(1))); break;
        case Op::Mul: {
            Facts a = sub(0), b = sub(1);
            f = product(a, b);
            f.nonnegative = f.nonnegative || n->operand(0) == n->operand(1);
            f.nonzero = a.nonzero && b.nonzero;
            f.integer = a.integer && b.integer;
            break;
        }
        case Op::Div: {
            Facts a = sub(0), b = sub(1);
            // No sign where b may be 0 (a / 0 is an infinity of either sign, or NaN).
            if (b.nonzero) f = product(a, b);
            f.nonzero = a.nonzero;
            break;
        }
        case Op::Pow: {
            Facts a = sub(0), b = sub(1);
            const Node* ex = n->operand(1);
            const auto k = ex->is_constant() && ex->value().is_integer() ? ex->value().to_int64()
                                                                         : std::nullopt;
            const bool even = k && *k % 2 == 0, odd = k && *k % 2 != 0;
            f.positive = a.positive || (even && a.nonzero);
            f.nonnegative = f.positive || a.nonnegative || even;
            // An odd power keeps the sign of a negative base (x^-1 of -0 is -inf: not finite).
            f.negative = odd && a.negative;
            f.nonpositive = odd && a.nonpositive;
            f.nonzero = f.positive || a.nonzero;
            f.integer = a.integer && b.integer && b.nonnegative;
            return f;
        }
        case Op::Sum:
        case Op::Mean:
        case Op::ReduceMax:
        case Op::ReduceMin: {
            Facts a = sub(0);
            // A sum over an axis that may be empty (size 0, or a symbolic size) may be 0.
            bool some = true;
            for (auto ax : n->ints())
                some = some && n->operand(0)->shape()[static_cast<std::size_t>(ax)] > 0;
            f.positive = a.positive && (some || n->op() != Op::Sum);
            f.negative = a.negative && (some || n->op() != Op::Sum);
            f.nonnegative = a.nonnegative;
            f.nonpositive = a.nonpositive;
            f.integer = a.integer && n->op() != Op::Mean;
            break;
        }
        case Op::Minimum:
        case Op::Maximum: {
            Facts a = sub(0), b = sub(1);
            // The larger of two values has the better of their lower bounds, the smaller the
            // better of their upper bounds.
            bool mx = n->op() == Op::Maximum;
            auto either = [mx](bool p, bool q) { return mx ? (p || q) : (p && q); };
            auto both = [mx](bool p, bool q) { return mx ? (p && q) : (p || q); };
            f.positive = either(a.positive, b.positive);
            f.nonnegative = either(a.nonnegative, b.nonnegative);
            f.negative = both(a.negative, b.negative);
            f.nonpositive = both(a.nonpositive, b.nonpositive);
            f.integer = a.integer && b.integer;
            break;
        }
        case Op::Floor:
        case Op::Ceil: {
            // Both keep a >= 0 and a <= 0 (floor(0.5) is 0: not a > 0).
            Facts a = sub(0);
            f.integer = true;
            f.nonnegative = a.nonnegative;
            f.nonpositive = a.nonpositive;
            return f;
        }
        case Op::Reshape:
        case Op::Transpose:
        case Op::BroadcastTo:
        case Op::ExpandDims:
        case Op::Squeeze:
        case Op::Slice: return sub(0);
        default:
            if (n->dtype() == DType::Bool)
                f.nonnegative = f.integer = true;
            else if (is_integer(n->dtype()))
                f.integer = true;
            return f;
    }
    f.nonzero = f.nonzero || f.positive || f.negative;
    return f;
}

}  // namespace

std::uint8_t known_facts(const Node* n) {
    const Facts f = facts(n, 0);
    return static_cast<std::uint8_t>(
        (f.positive ? kPositive : 0) | (f.nonnegative ? kNonnegative : 0) |
        (f.negative ? kNegative : 0) | (f.nonpositive ? kNonpositive : 0) |
        (f.nonzero ? kNonzero : 0) | (f.integer ? kInteger : 0));
}
bool known_positive(const Node* n) {
    return facts(n, 0).positive;
}
bool known_nonnegative(const Node* n) {
    return facts(n, 0).nonnegative;
}
bool known_negative(const Node* n) {
    return facts(n, 0).negative;
}
bool known_nonpositive(const Node* n) {
    return facts(n, 0).nonpositive;
}
bool known_nonzero(const Node* n) {
    return facts(n, 0).nonzero;
}
bool known_integer(const Node* n) {
    return facts(n, 0).integer;
}

}  // namespace agnesi
