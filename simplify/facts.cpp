// Sign and integrality facts about nodes, from constants, structure and assumptions.
//
// The analysis looks a bounded depth down the DAG (deeper nodes count as unknown), so it never
// recurses over the depth of a large DAG and costs O(1) per query.
#include "agnesi/simplify.hpp"

namespace agnesi {

namespace {

constexpr int kMaxDepth = 12;

struct Facts {
    bool positive = false, nonnegative = false, nonzero = false, integer = false;
};

Facts facts(const Node* n, int depth);

Facts facts_of_number(const Number& v) {
    Facts f;
    if (!v.is_finite()) return f;
    int s = v.sign();
    f.positive = s > 0;
    f.nonnegative = s >= 0;
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
            f.nonzero = (a & kNonzero) || f.positive;
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
            f.integer = a.integer && n->op() == Op::Relu;
            return f;
        }
        case Op::Neg: {
            Facts a = sub(0);
            f.nonzero = a.nonzero;
            f.integer = a.integer;
            return f;
        }
        case Op::Add: {
            Facts a = sub(0), b = sub(1);
            f.nonnegative = a.nonnegative && b.nonnegative;
            f.positive = f.nonnegative && (a.positive || b.positive);
            f.nonzero = f.positive;
            f.integer = a.integer && b.integer;
            return f;
        }
        case Op::Mul: {
            Facts a = sub(0), b = sub(1);
            f.positive = a.positive && b.positive;
            f.nonnegative = (a.nonnegative && b.nonnegative) || n->operand(0) == n->operand(1);
            f.nonzero = a.nonzero && b.nonzero;
            f.integer = a.integer && b.integer;
            return f;
        }
        case Op::Div: {
            Facts a = sub(0), b = sub(1);
            f.positive = a.positive && b.positive;
            f.nonnegative = a.nonnegative && b.positive;
            f.nonzero = a.nonzero;
            return f;
        }
        case Op::Pow: {
            Facts a = sub(0), b = sub(1);
            const Node* ex = n->operand(1);
            bool even = ex->is_constant() && ex->value().is_integer() && ex->value().to_int64() &&
                        *ex->value().to_int64() % 2 == 0;
            f.positive = a.positive || (even && a.nonzero);
            f.nonnegative = f.positive || a.nonnegative || even;
            f.nonzero = f.positive || a.nonzero;
            f.integer = a.integer && b.integer && b.nonnegative;
            return f;
        }
        case Op::Sum:
        case Op::Mean:
        case Op::ReduceMax:
        case Op::ReduceMin: {
            Facts a = sub(0);
            f.positive = a.positive;
            f.nonnegative = a.nonnegative;
            f.nonzero = a.positive;
            f.integer = a.integer && n->op() != Op::Mean;
            return f;
        }
        case Op::Minimum:
        case Op::Maximum: {
            Facts a = sub(0), b = sub(1);
            bool mx = n->op() == Op::Maximum;
            f.positive = mx ? (a.positive || b.positive) : (a.positive && b.positive);
            f.nonnegative =
                mx ? (a.nonnegative || b.nonnegative) : (a.nonnegative && b.nonnegative);
            f.nonzero = f.positive;
            f.integer = a.integer && b.integer;
            return f;
        }
        case Op::Floor:
        case Op::Ceil:
        case Op::Sign: f.integer = true; return f;
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
}

}  // namespace

bool known_positive(const Node* n) {
    return facts(n, 0).positive;
}
bool known_nonnegative(const Node* n) {
    return facts(n, 0).nonnegative;
}
bool known_nonzero(const Node* n) {
    return facts(n, 0).nonzero;
}
bool known_integer(const Node* n) {
    return facts(n, 0).integer;
}

}  // namespace agnesi
