// Forward mode: jvp, by transposing reverse mode.
//
// Every vjp rule is linear in its cotangent u, so vjp(y, x, u) . t is a linear function of u
// whose gradient with respect to u is J t, the Jacobian-vector product (the "double vjp" trick,
// see JAX's linear transposition). The dummy cotangent u does not appear in the result. This
// costs two reverse passes, each linear in the DAG, and needs no second set of rules.
#include <fmt/format.h>

#include "agnesi/diff.hpp"
#include "agnesi/error.hpp"
#include "agnesi/traverse.hpp"
#include "agnesi/vjp.hpp"

namespace agnesi {

Expr jvp(const Expr& y, const std::vector<Expr>& wrt, const std::vector<Expr>& tangents) {
    if (!y) throw ValueError("jvp: the output is an empty Expr");
    if (wrt.size() != tangents.size())
        throw ValueError(
            fmt::format("jvp: {} inputs but {} tangents", wrt.size(), tangents.size()));
    for (std::size_t i = 0; i < wrt.size(); ++i)
        if (!tangents[i] || tangents[i].shape() != wrt[i].shape())
            throw ShapeError(fmt::format(
                "jvp: tangent {} has shape {}, its input {}", i,
                tangents[i] ? shape_string(tangents[i].shape()) : std::string("(empty)"),
                shape_string(wrt[i].shape())));
    // A name the parser cannot produce, so it never collides with a user's variable.
    Expr u = variable("%jvp_cotangent", y.shape(), y.dtype(), kNone, y->context());
    std::vector<Expr> cts = vjp(y, wrt, u);
    Expr h;
    for (std::size_t i = 0; i < wrt.size(); ++i) {
        Expr term = cts[i] * tangents[i];
        if (term.rank() > 0) term = sum(term);
        h = h ? h + term : term;
    }
    if (!h) return zeros(y.shape(), y.dtype(), y->context());
    Expr out = vjp(h, {u}, literal(Number(1), h.dtype(), h->context()))[0];
    for (const Expr& v : free_variables({out}))
        AGNESI_ASSERT(v != u) << "jvp: a derivative rule is not linear in its cotangent";
    return out;
}

}  // namespace agnesi
