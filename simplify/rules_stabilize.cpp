// Numerically stable forms (after Theano's stabilize rewrites). None of these re-creates its own
// left side, so the set terminates; each applies wherever its pattern appears.
#include "agnesi/simplify.hpp"
#include "simplify/internal.hpp"

namespace agnesi {

namespace {

Axes axes_of(const Node* n) {
    return Axes(n->ints().begin(), n->ints().end());
}

// c*exp(u) + ... - c  ->  c*expm1(u) + ...   (canonical sums keep their constant last)
std::optional<Expr> expm1_in_sum(const Node* n) {
    if ((n->op() != Op::Add && n->op() != Op::Sub) || !n->operand(1)->is_constant() ||
        !is_float(n->dtype()))
        return std::nullopt;
    // Most sums have no exponential term: look for one before collecting the terms.
    if (!detail::any_term(n, [](const Node* m) { return m->op() == Op::Exp; })) return std::nullopt;
    detail::SumForm f = detail::sum_form(Expr(n));
    for (auto& [c, m] : f.terms) {
        if (m.op() != Op::Exp) continue;
        auto rest = exact_add(f.constant, c);
        if (!rest || !(f.constant == -c)) continue;
        f.constant = *rest;
        m = expm1(m.operand(0));
        return detail::build_sum(f, n->context());
    }
    return std::nullopt;
}

std::optional<Expr> log_of_reduction(const Node* n) {
    if (n->op() != Op::Log) return std::nullopt;
    Expr a(n->operand(0));
    // log(sum(exp(x))) -> logsumexp(x)
    if (a.op() == Op::Sum && a.operand(0).op() == Op::Exp)
        return logsumexp(a.operand(0).operand(0), axes_of(a.node()), a->keepdims());
    // log(softmax(x)) -> log_softmax(x)
    if (a.op() == Op::Softmax) return log_softmax(a.operand(0), a->ints()[0]);
    return std::nullopt;
}

// exp(log_softmax(x)) -> softmax(x), as a gradient through log_softmax writes it.
std::optional<Expr> exp_of_log_softmax(const Node* n) {
    if (n->op() != Op::Exp || n->operand(0)->op() != Op::LogSoftmax) return std::nullopt;
    return softmax(Expr(n->operand(0)->operand(0)), n->operand(0)->ints()[0]);
}

// exp(x)/sum(exp(x), axis, keepdims) -> softmax(x, axis)
std::optional<Expr> softmax_by_hand(const Node* n) {
    if (n->op() != Op::Div) return std::nullopt;
    Expr num(n->operand(0)), den(n->operand(1));
    if (num.op() != Op::Exp || den.op() != Op::Sum || !den->keepdims() || den->ints().size() != 1 ||
        den.operand(0) != num)
        return std::nullopt;
    return softmax(num.operand(0), den->ints()[0]);
}

}  // namespace

const RuleSet& stabilize_rules() {
    static const RuleSet set = [] {
        Expr x = wildcard("x"), y = wildcard("y");
        return RuleSet{
            "stabilize",
            {
                rule(log(1 + x), log1p(x)),
                // Where x <= 0, log1p(exp(x)) cannot overflow, and its exp(x) can be shared
                // (sigmoid(x) computes exp(-abs(x)) too): kept as written.
                rule(log1p(exp(x)), softplus(x),
                     [x](const Match& m) { return !known_nonpositive(m[x].node()); }),
                rule(log(sigmoid(x)), -softplus(-x)),
                rule(log1p(-sigmoid(x)), -softplus(x)),
                rule(log(1 - sigmoid(x)), -softplus(x)),
                rule(exp(x) - 1, expm1(x)),
                rule("c*exp(u) + ... - c -> c*expm1(u) + ...", {Op::Add, Op::Sub}, expm1_in_sum),
                rule(exp(x) / (exp(x) + 1), sigmoid(x)),
                rule(y / (exp(x) + 1), y * sigmoid(-x)),
                rule(sqrt(pow(x, 2)), abs(x)),
                rule("log(sum(exp(x))) -> logsumexp(x), log(softmax(x)) -> log_softmax(x)",
                     {Op::Log}, log_of_reduction),
                rule("exp(x)/sum(exp(x), a, keepdims=true) -> softmax(x, a)", {Op::Div},
                     softmax_by_hand),
                rule("exp(log_softmax(x)) -> softmax(x)", {Op::Exp}, exp_of_log_softmax),
            }};
    }();
    return set;
}

}  // namespace agnesi
