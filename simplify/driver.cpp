// The fixpoint driver: runs the chosen passes and rule sets in order until nothing changes.
#include <fmt/format.h>

#include <iostream>
#include <mutex>
#include <variant>

#include "agnesi/print.hpp"
#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"
#include "simplify/internal.hpp"

namespace agnesi {

const RuleSet& algebra_rules();
const RuleSet& unsafe_rules();
const RuleSet& stabilize_rules();
const RuleSet& tensor_rules();

namespace {

struct Registry {
    std::mutex mu;
    std::vector<RuleSet> sets;
};
Registry& registry() {
    static Registry* r = new Registry;
    return *r;
}

// Canonicalize folds the numbers of sums and products itself; general folding then runs in the
// same bottom-up traversal as the rule sets.
const std::vector<std::string> kBuiltinOrder = {"canonicalize", "fold", "algebra", "stabilize",
                                                "tensor"};

}  // namespace

const RuleSet& builtin_rule_set(const std::string& name) {
    if (name == "algebra") return algebra_rules();
    if (name == "stabilize") return stabilize_rules();
    if (name == "tensor") return tensor_rules();
    if (name == "unsafe") return unsafe_rules();
    throw ValueError(fmt::format("simplify: no built-in rule set named '{}'", name));
}

void register_rule_set(RuleSet set) {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    for (const std::string& b : kBuiltinOrder)
        if (b == set.name)
            throw ValueError(fmt::format("register_rule_set: '{}' is built in", set.name));
    for (auto& s : r.sets)
        if (s.name == set.name) {
            s = std::move(set);
            return;
        }
    r.sets.push_back(std::move(set));
}

namespace {

const RuleSet* find_set(const std::string& name, const std::vector<RuleSet>* explicit_sets,
                        std::vector<RuleSet>& registered_copies) {
    if (explicit_sets)
        for (const RuleSet& s : *explicit_sets)
            if (s.name == name) return &s;
    if (name == "algebra" || name == "stabilize" || name == "tensor" || name == "unsafe")
        return &builtin_rule_set(name);
    auto& r = registry();
    std::lock_guard lock(r.mu);
    auto it = std::find_if(r.sets.begin(), r.sets.end(),
                           [&](const RuleSet& s) { return s.name == name; });
    if (it == r.sets.end()) throw ValueError(fmt::format("simplify: no rule set named '{}'", name));
    registered_copies.push_back(*it);  // a copy: registration may change while we run
    return nullptr;
}

// A pass is canonicalize, and one bottom-up rewrite for each run of the other steps (folding and
// rule sets share a traversal).
struct Pass {
    std::vector<std::variant<std::monostate, detail::RulePass>> steps;  // monostate: canonicalize
};

Pass make_pass(const std::vector<std::string>& names, const SimplifyOptions& o,
               const std::vector<RuleSet>* explicit_sets, std::vector<RuleSet>& copies) {
    copies.reserve(names.size());
    Pass pass;
    std::vector<const RuleSet*> group;
    bool fold = false;
    auto flush = [&] {
        if (group.empty() && !fold) return;
        pass.steps.emplace_back(detail::RulePass(group, fold, o.trace));
        group.clear();
        fold = false;
    };
    for (const std::string& name : names) {
        if (name == "canonicalize") {
            flush();
            pass.steps.emplace_back(std::monostate{});
        } else if (name == "fold") {
            if (!group.empty()) flush();
            fold = true;
        } else {
            const RuleSet* set = find_set(name, explicit_sets, copies);
            group.push_back(set ? set : &copies.back());
        }
    }
    flush();
    return pass;
}

Expr fixpoint(const Expr& e, const SimplifyOptions& o, const std::vector<std::string>& steps,
              const std::vector<RuleSet>* explicit_sets) {
    std::vector<RuleSet> copies;
    Pass pass = make_pass(steps, o, explicit_sets, copies);
    Expr cur = e;
    // No default rule grows an expression by much; a rule set that does is stopped, not run.
    // When canonicalize runs first, its walk of the input counts the nodes (a second walk of a
    // large DAG was a few percent of simplify).
    const bool canonicalize_first =
        !pass.steps.empty() && std::holds_alternative<std::monostate>(pass.steps[0]);
    std::size_t limit = canonicalize_first ? 0 : 4 * count_nodes({e}) + 1000;
    const std::size_t start_size = e->context().size();
    std::vector<Expr> seen;  // earlier states: a cycle among normal forms ends the search
    // A rule step's result at a node depends on the node alone: its memo is kept across passes,
    // so later passes rewrite only what changed.
    std::vector<detail::NodeMap<Expr>> rule_memos(pass.steps.size());
    detail::CanonicalCache canonical_cache;
    for (int n = 0; n < o.max_passes; ++n) {
        Expr before = cur;
        seen.push_back(cur);
        for (std::size_t i = 0; i < pass.steps.size(); ++i) {
            const auto& step = pass.steps[i];
            if (std::holds_alternative<std::monostate>(step)) {
                // Not skipped on its own output: with shared subexpressions, a second run can
                // still flatten what the first rebuilt. The cache skips only nodes whose
                // canonical form is known to come out the same.
                cur = detail::canonicalize(cur, canonical_cache);
                if (n == 0 && i == 0) {
                    limit = 4 * canonical_cache.dag_size() + 1000;
                    // The rule steps' memos grow to about the DAG's size: sized once rather
                    // than rehashed at every doubling.
                    for (std::size_t j = 0; j < pass.steps.size(); ++j)
                        if (!std::holds_alternative<std::monostate>(pass.steps[j]))
                            rule_memos[j] = detail::NodeMap<Expr>(canonical_cache.dag_size());
                }
            } else {
                cur = std::get<detail::RulePass>(step).run(cur, &rule_memos[i]);
            }
        }
        if (cur == before) return cur;
        // Two normal forms that map to each other (possible in principle with shared
        // subexpressions): both are equal and simplified, so stop at one of them. User rule sets
        // that cycle are left to the pass cap below, which reports them.
        if (!explicit_sets && std::find(seen.begin(), seen.end(), cur) != seen.end()) return cur;
        // Counting is linear; the context's growth bounds the DAG's and is free to read.
        if (cur->context().size() - start_size > limit && count_nodes({cur}) > limit)
            throw InternalError(fmt::format(
                "simplify: the expression grew past {} nodes in pass {}", limit, n + 1));
    }
    throw InternalError(fmt::format("simplify: no fixpoint after {} passes for {}", o.max_passes,
                                    to_string(e).substr(0, 200)));
}

}  // namespace

Expr simplify(const Expr& e, const SimplifyOptions& o) {
    if (!e) throw ValueError("simplify: empty Expr");
    std::vector<std::string> steps = o.sets;
    if (steps.empty()) {
        steps = kBuiltinOrder;
        auto& r = registry();
        std::lock_guard lock(r.mu);
        for (const RuleSet& s : r.sets) steps.push_back(s.name);
    }
    if (o.unsafe) steps.push_back("unsafe");
    Expr out = fixpoint(e, o, steps, nullptr);
    // A result that is a number reads as one: x/x is 1, not a typed constant.
    if (out->is_constant() && !out->weak() && is_float(out.dtype()) && out.dtype() == f64)
        out = literal(out->value(), out.dtype(), out->context());
    return out;
}

std::vector<Expr> simplify(const std::vector<Expr>& roots, const SimplifyOptions& o) {
    std::vector<Expr> out;
    for (const Expr& r : roots) out.push_back(simplify(r, o));
    return out;
}

Expr simplify(const Expr& e, const std::vector<RuleSet>& sets) {
    SimplifyOptions o;
    std::vector<std::string> steps = {"fold", "canonicalize"};
    for (const RuleSet& s : sets) steps.push_back(s.name);
    return fixpoint(e, o, steps, &sets);
}

}  // namespace agnesi
