// Walking the DAG without recursion.
//
// Every pass is linear in the number of distinct nodes: it visits each node once, in an order
// where operands come before their users, with an explicit stack (no C++ recursion over depth).
#pragma once

#include <functional>
#include <unordered_map>
#include <vector>

#include "agnesi/expr.hpp"

namespace agnesi {

/// The distinct nodes reachable from `roots`, operands before users (a topological order).
std::vector<const Node*> post_order(const std::vector<const Node*>& roots);
std::vector<const Node*> post_order(const Expr& root);

/// Number of distinct nodes reachable from the roots.
std::size_t count_nodes(const std::vector<Expr>& roots);

/// How many times each node is used as an operand within the DAG of `roots` (roots not counted).
std::unordered_map<const Node*, std::size_t> use_counts(const std::vector<const Node*>& order);

/// The variables reachable from `roots`, in first-visit order.
std::vector<Expr> free_variables(const std::vector<Expr>& roots);

/// Rebuilds the DAG bottom-up: `f(node, new_operands)` returns the replacement of each node,
/// given the replacements of its operands. Memoized; each node is visited once.
std::vector<Expr> rewrite_post_order(
    const std::vector<Expr>& roots,
    const std::function<Expr(const Node*, const std::vector<Expr>&)>& f);

/// Replaces nodes (usually variables) by other expressions everywhere in `e`.
Expr substitute(const Expr& e, const std::unordered_map<const Node*, Expr>& replacements);

}  // namespace agnesi
