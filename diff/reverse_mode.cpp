// Reverse mode: grad and vjp.
//
// One forward pass over the topological order marks the nodes that depend on an input being
// differentiated (only float nodes carry gradients); one backward pass hands each marked node's
// adjoint to its op's vjp rule and adds the results to its operands' adjoints. Each node is
// visited once and each rule builds O(1) nodes, so the result has O(n) nodes.
#include <fmt/format.h>

#include <unordered_map>

#include "agnesi/diff.hpp"
#include "agnesi/error.hpp"
#include "agnesi/traverse.hpp"
#include "agnesi/vjp.hpp"

namespace agnesi {

namespace {

std::string describe(const Expr& x) {
    if (x->is_variable()) return "'" + x->name() + "'";
    return "a " + std::string(x->info().name) + " node";
}

void check_inputs(const char* fn, const std::vector<Expr>& wrt) {
    for (const Expr& x : wrt) {
        if (!x) throw ValueError(fmt::format("{}: an input is an empty Expr", fn));
        if (!is_float(x.dtype()))
            throw TypeError(
                fmt::format("{}: cannot differentiate with respect to {} of dtype {}: "
                            "integer and boolean inputs have no gradient",
                            fn, describe(x), dtype_name(x.dtype())));
    }
}

}  // namespace

std::vector<Expr> vjp(const Expr& y, const std::vector<Expr>& wrt, const Expr& ct) {
    if (!y || !ct) throw ValueError("vjp: the output or the cotangent is an empty Expr");
    check_inputs("vjp", wrt);
    if (!is_float(y.dtype()))
        throw TypeError(
            fmt::format("vjp: the output has dtype {}; only float outputs have "
                        "gradients",
                        dtype_name(y.dtype())));
    if (ct.shape() != y.shape())
        throw ShapeError(fmt::format("vjp: the cotangent has shape {}, the output {}",
                                     shape_string(ct.shape()), shape_string(y.shape())));

    std::vector<const Node*> order = post_order(y);
    std::unordered_map<const Node*, std::size_t> index;
    index.reserve(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) index.emplace(order[i], i);

    // Forward: which nodes lie on a path from an input (through float nodes only).
    std::vector<char> reach(order.size(), 0);
    for (const Expr& x : wrt)
        if (auto it = index.find(x.node()); it != index.end()) reach[it->second] = 1;
    for (std::size_t i = 0; i < order.size(); ++i) {
        const Node* n = order[i];
        if (reach[i] || !is_float(n->dtype())) continue;
        for (const Node* o : n->operands())
            if (reach[index.at(o)]) {
                reach[i] = 1;
                break;
            }
    }

    // Backward: adjoints in reverse topological order.
    std::vector<Expr> adj(order.size());
    std::size_t root = order.size() - 1;
    if (reach[root]) adj[root] = ct.dtype() == y.dtype() ? ct : cast(ct, y.dtype());
    VjpArgs args{};
    for (std::size_t i = order.size(); i-- > 0;) {
        const Node* n = order[i];
        if (!reach[i] || !adj[i] || n->arity() == 0) continue;
        const OpInfo& info = n->info();
        AGNESI_ASSERT(info.vjp) << info.name << " has no derivative rule";
        args.node = n;
        args.operands.clear();
        for (const Node* o : n->operands()) args.operands.emplace_back(o);
        args.out = Expr(n);
        args.g = adj[i];
        std::vector<std::size_t> at(n->arity());
        for (std::size_t k = 0; k < n->arity(); ++k) {
            at[k] = index.at(n->operand(k));
            if (k < args.need.size()) args.need[k] = reach[at[k]];
        }
        std::vector<Expr> cts = info.vjp(args);
        AGNESI_ASSERT(cts.size() == n->arity()) << info.name << ": rule returned " << cts.size();
        for (std::size_t k = 0; k < n->arity(); ++k) {
            Expr c = cts[k];
            const Node* o = n->operand(k);
            if (!c || !reach[at[k]]) continue;
            AGNESI_ASSERT(c.shape() == o->shape())
                << info.name << ": cotangent of shape " << shape_string(c.shape())
                << " for an operand of shape " << shape_string(o->shape());
            if (c.dtype() != o->dtype()) c = cast(c, o->dtype());
            Expr& a = adj[at[k]];
            a = a ? a + c : c;
        }
    }

    std::vector<Expr> out;
    out.reserve(wrt.size());
    for (const Expr& x : wrt) {
        auto it = index.find(x.node());
        Expr a = it == index.end() ? Expr() : adj[it->second];
        out.push_back(a ? a : zeros(x.shape(), x.dtype(), x->context()));
    }
    return out;
}

std::vector<Expr> grad(const Expr& y, const std::vector<Expr>& wrt) {
    if (!y) throw ValueError("grad: the output is an empty Expr");
    if (y.rank() != 0)
        throw ShapeError(
            fmt::format("grad: the output must be a scalar, got shape {} (reduce it "
                        "with sum or mean, or use vjp or jacobian)",
                        shape_string(y.shape())));
    check_inputs("grad", wrt);
    if (!is_float(y.dtype()))
        throw TypeError(
            fmt::format("grad: the output has dtype {}; only float outputs have "
                        "gradients",
                        dtype_name(y.dtype())));
    return vjp(y, wrt, literal(Number(1), y.dtype(), y->context()));
}

Expr grad(const Expr& y, const Expr& x) {
    return grad(y, std::vector<Expr>{x})[0];
}

}  // namespace agnesi
