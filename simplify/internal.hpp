// Internals shared by the simplifier's files: matching, and sums and products as term lists.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "agnesi/detail/node_map.hpp"
#include "agnesi/simplify.hpp"

namespace agnesi::detail {

std::optional<Match> match(const Expr& pattern, const Node* target);
/// Builds a rule's right side with the matched expressions, in the target's context.
Expr instantiate(const Expr& rhs, const Match& m, Context& ctx);
/// The replacement brought to the original's shape and dtype, or nullopt if it cannot be.
std::optional<Expr> fit_to(const Expr& replacement, const Node* original);
/// `n` over new operands, with n's dtype: rebuilding can change it (a power's dtype depends on
/// whether its exponent is a literal, so (-1)^sign(0) is float64 and (-1)^0 int64).
Expr rebuild_same_type(const Node* n, const std::vector<Expr>& operands);
/// Constant folding of one node (operands already folded), or nullopt.
std::optional<Expr> fold_node(const Node* n);

/// Rule sets indexed by the op at the root of each pattern, for one rewrite pass.
class RulePass {
  public:
    RulePass(std::vector<const RuleSet*> sets, bool fold, bool trace);
    /// Rewrites bottom-up once: at each node, folding and then the sets' rules, in order.
    /// The result at a node depends on that node alone, so `memo` (node -> result) may be kept
    /// across passes: nodes met again are not rewritten again.
    Expr run(const Expr& e, NodeMap<Expr>* memo = nullptr) const;

  private:
    Expr rewrite_node(const Node* n, const std::vector<Expr>& ops) const;
    struct Indexed {
        const RuleSet* set;
        std::vector<std::vector<const Rule*>> by_op;  // pattern rules by root op, then code rules
    };
    std::vector<Indexed> sets_;
    bool fold_, trace_;
};

/// One rule at one node: the fitted replacement, or nullopt.
std::optional<Expr> try_rule(const Rule& rule, const Node* n);

/// What one canonicalize run recorded of its visits, for the next run: a node whose visit would
/// read the same state (memoized operands, use counts, product forms) is not visited again.
class CanonicalCache {
  public:
    CanonicalCache();
    ~CanonicalCache();
    CanonicalCache(const CanonicalCache&) = delete;
    CanonicalCache& operator=(const CanonicalCache&) = delete;
    /// The number of nodes in the DAG the last run saw.
    std::size_t dag_size() const;
    struct Impl;

  private:
    friend Expr canonicalize(const Expr& e, CanonicalCache& cache);
    std::unique_ptr<Impl> impl_;
};
/// canonicalize(e), reusing and updating what earlier runs over related DAGs recorded; the
/// result is the same as without the cache.
Expr canonicalize(const Expr& e, CanonicalCache& cache);

/// Whether `pred` holds for a term of the sum `s` (through +, -, unary - and c*t), looking at
/// no more than `limit` nodes: a quick test before the terms are collected.
template <class Pred>
bool any_term(const Node* s, Pred pred, std::size_t limit = SIZE_MAX) {
    boost::container::small_vector<const Node*, 64> stack{s};
    for (std::size_t seen = 0; !stack.empty() && seen < limit; ++seen) {
        const Node* m = stack.back();
        stack.pop_back();
        switch (m->op()) {
            case Op::Add:
            case Op::Sub: stack.push_back(m->operand(1)); [[fallthrough]];
            case Op::Neg: stack.push_back(m->operand(0)); break;
            case Op::Mul:
                if (m->operand(0)->is_constant()) stack.push_back(m->operand(1));
                break;
            default:
                if (pred(m)) return true;
        }
    }
    return false;
}

/// A sum as coefficient * term pairs plus a constant: 2*x - y + 3.
struct SumForm {
    std::vector<std::pair<Number, Expr>> terms;  // coefficient, monomial (coefficient 1)
    Number constant;
};
/// The sum form of an expression (a single term if it is not a sum).
SumForm sum_form(const Expr& e);
/// Builds a canonical sum from its form (ordered terms, subtraction for negative ones).
Expr build_sum(const SumForm& f, Context& ctx);

}  // namespace agnesi::detail
