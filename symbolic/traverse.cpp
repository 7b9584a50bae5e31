#include "agnesi/traverse.hpp"

#include <unordered_set>

#include "agnesi/detail/node_map.hpp"

namespace agnesi {

std::vector<const Node*> post_order(const std::vector<const Node*>& roots) {
    std::vector<const Node*> order;
    detail::NodeMap<bool> seen(roots.size() * 8);
    // (node, next operand to visit)
    std::vector<std::pair<const Node*, std::size_t>> stack;
    for (const Node* r : roots) {
        if (!r || !seen.insert(r)) continue;
        stack.emplace_back(r, 0);
        while (!stack.empty()) {
            auto& [n, i] = stack.back();
            if (i < n->arity()) {
                const Node* c = n->operand(i++);
                if (seen.insert(c)) stack.emplace_back(c, 0);
            } else {
                order.push_back(n);
                stack.pop_back();
            }
        }
    }
    return order;
}

std::vector<const Node*> post_order(const Expr& root) {
    return post_order(std::vector<const Node*>{root.node()});
}

std::size_t count_nodes(const std::vector<Expr>& roots) {
    std::vector<const Node*> rs;
    for (const Expr& e : roots) rs.push_back(e.node());
    return post_order(rs).size();
}

std::unordered_map<const Node*, std::size_t> use_counts(const std::vector<const Node*>& order) {
    std::unordered_map<const Node*, std::size_t> uses;
    uses.reserve(order.size());
    for (const Node* n : order)
        for (const Node* o : n->operands()) ++uses[o];
    return uses;
}

std::vector<Expr> free_variables(const std::vector<Expr>& roots) {
    std::vector<const Node*> rs;
    for (const Expr& e : roots) rs.push_back(e.node());
    std::vector<Expr> out;
    for (const Node* n : post_order(rs))
        if (n->is_variable()) out.emplace_back(n);
    return out;
}

std::vector<Expr> rewrite_post_order(
    const std::vector<Expr>& roots,
    const std::function<Expr(const Node*, const std::vector<Expr>&)>& f) {
    std::vector<const Node*> rs;
    for (const Expr& e : roots) rs.push_back(e.node());
    std::vector<const Node*> order = post_order(rs);
    detail::NodeMap<Expr> memo(order.size());
    std::vector<Expr> ops;
    for (const Node* n : order) {
        ops.clear();
        for (const Node* o : n->operands()) ops.push_back(*memo.find(o));
        Expr r = f(n, ops);
        memo[n] = r;
    }
    std::vector<Expr> out;
    for (const Node* r : rs) out.push_back(*memo.find(r));
    return out;
}

Expr substitute(const Expr& e, const std::unordered_map<const Node*, Expr>& replacements) {
    return rewrite_post_order({e}, [&](const Node* n, const std::vector<Expr>& ops) {
        if (auto it = replacements.find(n); it != replacements.end()) return it->second;
        bool same = true;
        for (std::size_t i = 0; i < ops.size(); ++i) same = same && ops[i].node() == n->operand(i);
        return same ? Expr(n) : rebuild(n, ops);
    })[0];
}

}  // namespace agnesi
