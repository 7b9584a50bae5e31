// Patterns: wildcards, matching a pattern against a node, and building a rule's right side.
#include <fmt/format.h>

#include <iostream>

#include "agnesi/print.hpp"
#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"
#include "simplify/internal.hpp"

namespace agnesi {

namespace {

// Patterns live in their own context, so a wildcard is never confused with a user's variable.
Context& pattern_context() {
    static Context* ctx = new Context;
    return *ctx;
}

bool is_wildcard(const Node* n) {
    return n->is_variable() && &n->context() == &pattern_context();
}

// Patterns are a few nodes deep, so matching recurses over the pattern, never over the target.
bool match_node(const Node* p, const Node* t, Match& m) {
    if (is_wildcard(p)) {
        for (const auto& [w, e] : m.bound)
            if (w == p) return e.node() == t;
        m.bound.emplace_back(p, Expr(t));
        return true;
    }
    if (p->is_constant()) return t->is_constant() && t->value() == p->value();
    if (p->op() != t->op() || p->arity() != t->arity() || p->keepdims() != t->keepdims() ||
        (p->has_attributes() && p->ints() != t->ints()))
        return false;
    if (p->op() == Op::Cast && p->dtype() != t->dtype()) return false;
    if (!(p->info().commutative && p->arity() == 2)) {
        // On failure m may hold partial bindings; the caller discards or restores it.
        for (std::size_t i = 0; i < p->arity(); ++i)
            if (!match_node(p->operand(i), t->operand(i), m)) return false;
        return true;
    }
    Match saved = m;
    if (match_node(p->operand(0), t->operand(0), m) && match_node(p->operand(1), t->operand(1), m))
        return true;
    m = saved;
    if (match_node(p->operand(0), t->operand(1), m) && match_node(p->operand(1), t->operand(0), m))
        return true;
    m = std::move(saved);
    return false;
}

}  // namespace

Expr wildcard(const std::string& name) {
    return scalar("?" + name, f64, kNone, pattern_context());
}

Expr Match::operator[](const Expr& wild) const {
    for (const auto& [w, e] : bound)
        if (w == wild.node()) return e;
    throw ValueError(fmt::format("Match: {} is not bound by this rule", to_string(wild)));
}

std::function<bool(const Match&)> Assumption::operator()(const Expr& w) const {
    std::uint8_t need = mask;
    return [w, need](const Match& m) {
        // One walk of the facts for every bit the condition needs (kSimplex is not a fact).
        const auto facts = static_cast<std::uint8_t>(need & ~kSimplex);
        return (known_facts(m[w].node()) & facts) == facts;
    };
}
Condition integer_valued(const Expr& w) {
    return integer(w);
}
Condition operator&&(Condition a, Condition b) {
    return [a = std::move(a), b = std::move(b)](const Match& m) { return a(m) && b(m); };
}

Rule rule(const Expr& lhs, const Expr& rhs, Condition condition) {
    // A right side may only use wildcards the left side binds (checked when the rule is built).
    std::vector<const Node*> left = post_order(lhs);
    for (const Node* n : post_order(rhs))
        if (is_wildcard(n) && std::find(left.begin(), left.end(), n) == left.end())
            throw ValueError(
                fmt::format("rule: {} appears on the right of {} -> {} but not on the left",
                            to_string(Expr(n)), to_string(lhs), to_string(rhs)));
    Rule r;
    r.name = to_string(lhs) + " -> " + to_string(rhs);
    r.lhs = lhs;
    r.rhs = rhs;
    r.condition = std::move(condition);
    return r;
}

Rule rule(std::string name, std::function<std::optional<Expr>(const Node*)> apply) {
    Rule r;
    r.name = std::move(name);
    r.apply = std::move(apply);
    return r;
}

Rule rule(std::string name, std::vector<Op> ops,
          std::function<std::optional<Expr>(const Node*)> apply) {
    if (ops.empty())
        throw ValueError(
            fmt::format("rule '{}': an empty list of ops (omit it for every op)", name));
    Rule r = rule(std::move(name), std::move(apply));
    r.ops = std::move(ops);
    return r;
}

std::vector<Op> ops_of_kind(OpKind kind) {
    std::vector<Op> out;
    for (std::size_t i = 0; i < kNumOps; ++i)
        if (op_info(static_cast<Op>(i)).kind == kind) out.push_back(static_cast<Op>(i));
    return out;
}

namespace detail {

std::optional<Match> match(const Expr& pattern, const Node* target) {
    Match m;
    if (match_node(pattern.node(), target, m)) return m;
    return std::nullopt;
}

Expr instantiate(const Expr& rhs, const Match& m, Context& ctx) {
    return rewrite_post_order({rhs}, [&](const Node* n, const std::vector<Expr>& ops) -> Expr {
        if (is_wildcard(n)) return m[Expr(n)];
        if (n->is_constant()) return literal(n->value(), ctx);
        return rebuild(n, ops);
    })[0];
}

std::optional<Expr> fit_to(const Expr& replacement, const Node* original) {
    Expr r = replacement;
    const Node* filled = r.op() == Op::BroadcastTo ? r.operand(0).node() : r.node();
    if (filled->is_constant() && filled->value().is_rational() &&
        (r.dtype() != original->dtype() || r->weak() != original->weak())) {
        // A number takes the original's type directly: broadcast_to(0.0, ...), not a cast.
        Context& ctx = original->context();
        r = original->weak() ? literal(filled->value(), original->dtype(), ctx)
                             : constant(filled->value(), original->dtype(), ctx);
    }
    if (r.shape() != original->shape()) {
        auto b = broadcast_shapes(r.shape(), original->shape());
        if (!b || *b != original->shape()) return std::nullopt;
        r = broadcast_to(r, original->shape());
    }
    if (r.dtype() != original->dtype() || r->weak() != original->weak()) {
        if (original->weak()) {
            if (!r->is_constant()) return std::nullopt;
            r = literal(r->value(), original->dtype(), original->context());
        } else {
            r = cast(r, original->dtype());
        }
    }
    return r;
}

Expr rebuild_same_type(const Node* n, const std::vector<Expr>& operands) {
    Expr r = rebuild(n, operands);
    if (r.dtype() == n->dtype() && r->weak() == n->weak()) return r;
    // A weak node's type comes from its value: only a constant can take it back. Otherwise the
    // node keeps its operands as they were.
    if (auto f = fold_node(r.node())) r = *f;
    if (auto fit = fit_to(r, n)) return *fit;
    return Expr(n);
}

std::optional<Expr> try_rule(const Rule& rule, const Node* n) {
    std::optional<Expr> out;
    if (rule.apply) {
        out = rule.apply(n);
    } else {
        auto m = match(rule.lhs, n);
        if (!m) return std::nullopt;
        if (rule.condition && !rule.condition(*m)) return std::nullopt;
        try {
            out = instantiate(rule.rhs, *m, n->context());
        } catch (const ShapeError&) {
            return std::nullopt;  // the right side does not fit these operands' shapes
        }
    }
    if (!out || out->node() == n) return std::nullopt;
    return fit_to(*out, n);
}

}  // namespace detail

namespace detail {

RulePass::RulePass(std::vector<const RuleSet*> sets, bool fold, bool trace)
    : fold_(fold), trace_(trace) {
    for (const RuleSet* set : sets) {
        Indexed ix{set, std::vector<std::vector<const Rule*>>(kNumOps)};
        for (const Rule& r : set->rules) {
            if (r.lhs && !is_wildcard(r.lhs.node())) {
                ix.by_op[static_cast<std::size_t>(r.lhs.op())].push_back(&r);
            } else if (!r.lhs && !r.ops.empty()) {
                for (Op op : r.ops) {
                    auto& v = ix.by_op[static_cast<std::size_t>(op)];
                    if (std::find(v.begin(), v.end(), &r) == v.end()) v.push_back(&r);
                }
            } else {
                for (auto& v : ix.by_op) v.push_back(&r);  // code rules see every node
            }
        }
        sets_.push_back(std::move(ix));
    }
}

Expr RulePass::rewrite_node(const Node* n, const std::vector<Expr>& ops) const {
    bool changed = false;
    for (std::size_t i = 0; i < ops.size(); ++i)
        changed = changed || ops[i].node() != n->operand(i);
    Expr cur = changed ? rebuild_same_type(n, ops) : Expr(n);
    if (fold_)
        if (auto f = fold_node(cur.node())) cur = *f;
    for (const Indexed& ix : sets_) {
        // A few rules may fire in a row at one node; the next pass picks up the rest.
        for (int round = 0; round < 4; ++round) {
            bool fired = false;
            for (const Rule* r : ix.by_op[static_cast<std::size_t>(cur.op())]) {
                auto out = try_rule(*r, cur.node());
                if (!out) continue;
                if (trace_)
                    std::cerr << "[" << ix.set->name << "] " << r->name << ": " << to_string(cur)
                              << "  =>  " << to_string(*out) << "\n";
                cur = *out;
                fired = true;
                break;
            }
            if (!fired) break;
        }
    }
    return cur;
}

Expr RulePass::run(const Expr& e, NodeMap<Expr>* memo) const {
    NodeMap<Expr> local;
    NodeMap<Expr>& done = memo ? *memo : local;
    // Post-order with an explicit stack; a node already in `done` (from this traversal or an
    // earlier pass) is not entered again.
    std::vector<std::pair<const Node*, std::size_t>> stack{{e.node(), 0}};
    std::vector<Expr> ops;
    while (!stack.empty()) {
        auto [n, next] = stack.back();
        if (next == 0) {
            if (done.contains(n)) {
                stack.pop_back();
                continue;
            }
            // Each operand is looked up next: start loading their slots together.
            for (const Node* o : n->operands()) done.prefetch(o);
        }
        if (next < n->arity()) {
            ++stack.back().second;
            const Node* o = n->operand(next);
            if (!done.contains(o)) stack.emplace_back(o, 0);
            continue;
        }
        stack.pop_back();
        ops.clear();
        for (const Node* o : n->operands()) ops.push_back(*done.find(o));
        Expr r = rewrite_node(n, ops);
        done[n] = r;
    }
    return *done.find(e.node());
}

}  // namespace detail

Expr apply_rules(const Expr& e, const RuleSet& set, bool trace) {
    return detail::RulePass({&set}, false, trace).run(e);
}

}  // namespace agnesi
