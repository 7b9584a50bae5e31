// Algebraic identities, each with the condition that makes it true where the original is finite.
// Every rule makes the expression smaller or moves a negation outward, so the set terminates.
#include "agnesi/simplify.hpp"
#include "simplify/internal.hpp"

namespace agnesi {

namespace {

// x*(a/x + b) -> a + x*b: a factor that a term of a sum divides by is multiplied in, so that it
// cancels (the chain rule writes softmax(z)*(-y/softmax(z) + ...) for a softmax's gradient).
std::optional<Expr> cancel_into_sum(const Node* n) {
    if (n->op() != Op::Mul || !is_float(n->dtype())) return std::nullopt;
    for (std::size_t i = 0; i < 2; ++i) {
        Expr f(n->operand(i)), s(n->operand(1 - i));
        if (s.op() != Op::Add && s.op() != Op::Sub) continue;
        // t = num/den with f a factor of den, looked for among the first kLook nodes of the sum:
        // collecting every term of every sum nested in it, at every product, made the
        // gradients of deep residual chains quadratic.
        constexpr std::size_t kLook = 256;
        auto divided = [&](const Node* t) {
            if (t->op() != Op::Div) return false;
            const Node* den = t->operand(1);
            for (int k = 0; k < 8; ++k) {
                if (den == f.node()) return true;
                if (den->op() != Op::Mul) return false;
                den = den->operand(1) == f.node() ? f.node() : den->operand(0);
            }
            return false;
        };
        if (!detail::any_term(s.node(), divided, kLook)) continue;
        detail::SumForm form = detail::sum_form(s);
        Expr out = literal(form.constant, n->context()) * f;
        for (const auto& [c, t] : form.terms) out = out + literal(c, n->context()) * t * f;
        return out;
    }
    return std::nullopt;
}

}  // namespace

const RuleSet& algebra_rules() {
    static const RuleSet set = [] {
        Expr x = wildcard("x"), y = wildcard("y"), a = wildcard("a"), b = wildcard("b"),
             c = wildcard("c");
        return RuleSet{"algebra",
                       {
                           rule(log(exp(x)), x),
                           rule(exp(log(x)), x),
                           rule(log(sqrt(x)), log(x) / 2),
                           rule(log(x * y), log(x) + log(y), when(positive(x) && positive(y))),
                           rule(log(x / y), log(x) - log(y), when(positive(x) && positive(y))),
                           rule(log(pow(x, a)), a * log(x), when(positive(x))),
                           rule(pow(pow(x, a), b), pow(x, a * b), when(integer_valued(b))),
                           rule(pow(pow(x, a), b), pow(x, a * b), when(positive(x))),
                           rule(exp(x) * exp(y), exp(x + y)),
                           rule(exp(x) / exp(y), exp(x - y)),
                           rule(pow(exp(x), a), exp(a * x)),
                           rule(abs(abs(x)), abs(x)),
                           rule(abs(-x), abs(x)),
                           rule(abs(x), x, when(nonnegative(x))),
                           rule(abs(x), -x, when(nonpositive(x))),
                           rule(pow(abs(x), 2), pow(x, 2)),
                           rule(sign(sign(x)), sign(x)),
                           rule(sign(x), 1, when(positive(x))),
                           rule(sign(x), -1, when(negative(x))),
                           rule(sign(x) * abs(x), x),
                           rule(sign(-x), -sign(x)),
                           rule(relu(relu(x)), relu(x)),
                           rule(relu(x), x, when(nonnegative(x))),
                           rule(relu(x), 0, when(nonpositive(x))),
                           rule(minimum(x, x), x),
                           rule(maximum(x, x), x),
                           rule(where(c, x, x), x),
                           rule(sin(-x), -sin(x)),
                           rule(cos(-x), cos(x)),
                           rule(tan(-x), -tan(x)),
                           rule(sinh(-x), -sinh(x)),
                           rule(cosh(-x), cosh(x)),
                           rule(tanh(-x), -tanh(x)),
                           rule(asin(-x), -asin(x)),
                           rule(atan(-x), -atan(x)),
                           rule(erf(-x), -erf(x)),
                           rule(sin(x) / cos(x), tan(x)),
                           rule(sin(asin(x)), x),
                           rule(cos(acos(x)), x),
                           rule(tan(atan(x)), x),
                           rule(sinh(asinh(x)), x),
                           rule(cosh(acosh(x)), x),
                           rule(tanh(atanh(x)), x),
                           rule(asinh(sinh(x)), x),
                           rule("x*(a/x + b) -> a + x*b", {Op::Mul}, cancel_into_sum),
                       }};
    }();
    return set;
}

// True only on part of the domain: these change finite values elsewhere, so they run only with
// SimplifyOptions::unsafe.
const RuleSet& unsafe_rules() {
    static const RuleSet set = [] {
        Expr x = wildcard("x"), y = wildcard("y"), a = wildcard("a"), b = wildcard("b");
        return RuleSet{"unsafe",
                       {
                           rule(asin(sin(x)), x),
                           rule(acos(cos(x)), x),
                           rule(atan(tan(x)), x),
                           rule(log(x * y), log(x) + log(y)),
                           rule(pow(pow(x, a), b), pow(x, a * b)),
                           rule(sqrt(pow(x, 2)), x),
                       }};
    }();
    return set;
}

}  // namespace agnesi
