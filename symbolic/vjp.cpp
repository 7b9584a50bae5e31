// The helpers derivative rules are written with, and the rules too long for one table line:
// reductions, min/max, concat, slice, transpose and matmul.
#include "agnesi/vjp.hpp"

#include <algorithm>

#include "agnesi/error.hpp"

namespace agnesi {

Expr unbroadcast(const Expr& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    AGNESI_ASSERT(g.rank() >= shape.size())
        << "unbroadcast: " << shape_string(g.shape()) << " to " << shape_string(shape);
    std::size_t lead = g.rank() - shape.size();
    Axes axes;
    for (std::size_t i = 0; i < lead; ++i) axes.push_back(static_cast<std::int64_t>(i));
    for (std::size_t i = 0; i < shape.size(); ++i)
        if (shape[i] == 1 && g.shape()[lead + i] != 1)
            axes.push_back(static_cast<std::int64_t>(lead + i));
    return reshape(axes.empty() ? g : sum(g, axes), shape);
}

Expr zeros(const Shape& shape, DType dtype, Context& ctx) {
    // A float64 zero is a plain literal, so it prints as 0 rather than as a cast.
    Expr z =
        dtype == DType::Float64 ? literal(Number(0), dtype, ctx) : constant(Number(0), dtype, ctx);
    return broadcast_to(z, shape);
}

namespace detail {

namespace {

// The cotangent of a reduction with its reduced axes kept (size 1), so it broadcasts back.
Expr kept(const Expr& g, const Node* n) {
    if (n->keepdims()) return g;
    Shape s = n->operand(0)->shape();
    for (auto ax : n->ints()) s[static_cast<std::size_t>(ax)] = 1;
    return reshape(g, s);
}

Axes axes_of(const Node* n) {
    return Axes(n->ints().begin(), n->ints().end());
}

// Swaps the last two axes.
Expr mT(const Expr& x) {
    Axes perm;
    for (std::size_t i = 0; i < x.rank(); ++i) perm.push_back(static_cast<std::int64_t>(i));
    std::swap(perm[x.rank() - 1], perm[x.rank() - 2]);
    return transpose(x, perm);
}

}  // namespace

std::vector<Expr> reduce_vjp(const VjpArgs& v) {
    const Node* n = v.node;
    Expr a = v.a(), g = kept(v.g, n);
    switch (n->op()) {
        case Op::Sum: return {broadcast_to(g, a.shape())};
        case Op::Mean: {
            std::int64_t count = 1;
            for (auto ax : n->ints()) {
                Dim d = a.shape()[static_cast<std::size_t>(ax)];
                if (d < 0)
                    throw ShapeError(
                        "mean: the gradient needs static sizes along the reduced "
                        "axes, shape is " +
                        shape_string(a.shape()));
                count *= d;
            }
            return {broadcast_to(g / Expr(Number(count)), a.shape())};
        }
        case Op::Prod:
            // prod/x: not defined where an element is 0 (documented in docs/ops.md).
            return {g * kept(v.out, n) / a};
        case Op::ReduceMax:
        case Op::ReduceMin: {
            // Ties share the gradient equally, so the rule does not depend on element order.
            Expr hit = eq(a, kept(v.out, n));
            Expr count = cast(sum(hit, axes_of(n), true), g.dtype());
            return {where(hit, g / count, 0)};
        }
        case Op::Logsumexp: return {g * exp(a - kept(v.out, n))};
        default: break;
    }
    detail::unreachable("reduce_vjp: not a reduction");
}

std::vector<Expr> minmax_vjp(const VjpArgs& v, bool is_max) {
    Expr a = v.a(), b = v.b(), g = v.g;
    // At a tie each side gets half, which keeps the rule symmetric (min and max commute).
    Expr tie = where(eq(a, b), g / 2, 0);
    Expr ga, gb;
    if (v.needs(0)) ga = unbroadcast(where(is_max ? a > b : a < b, g, tie), a);
    if (v.needs(1)) gb = unbroadcast(where(is_max ? b > a : b < a, g, tie), b);
    return {ga, gb};
}

std::vector<Expr> concat_vjp(const VjpArgs& v) {
    std::int64_t axis = v.node->ints()[0], offset = 0;
    std::vector<Expr> out;
    for (std::size_t i = 0; i < v.operands.size(); ++i) {
        Dim len = v.operands[i].shape()[static_cast<std::size_t>(axis)];
        if (v.needs(i))
            out.push_back(slice(v.g, axis, offset, offset + len));
        else
            out.emplace_back();
        offset += len;
    }
    return out;
}

std::vector<Expr> slice_vjp(const VjpArgs& v) {
    const auto& p = v.node->ints();
    std::int64_t ax = p[0], start = p[1], step = p[3];
    auto uax = static_cast<std::size_t>(ax);
    Expr g = v.g;
    Dim n = v.a().shape()[uax], m = g.shape()[uax];
    Context& ctx = v.out->context();
    if (step > 1 && m > 0) {
        // Interleave step-1 zeros after each element: (.., m, ..) -> (.., m*step, ..).
        Shape zs = g.shape();
        zs.insert(zs.begin() + ax + 1, step - 1);
        g = concat({expand_dims(g, ax + 1), zeros(zs, g.dtype(), ctx)}, ax + 1);
        Shape rs = v.g.shape();
        rs[uax] = m * step;
        g = slice(reshape(g, rs), ax, 0, std::min(m * step, n - start));
    }
    Dim len = g.shape()[uax];
    std::vector<Expr> parts;
    auto pad = [&](Dim k) {
        Shape s = g.shape();
        s[uax] = k;
        if (k > 0) parts.push_back(zeros(s, g.dtype(), ctx));
    };
    pad(start);
    parts.push_back(g);
    pad(n - start - len);
    return {concat(parts, ax)};
}

std::vector<Expr> transpose_vjp(const VjpArgs& v) {
    const auto& perm = v.node->ints();
    Axes inv(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i)
        inv[static_cast<std::size_t>(perm[i])] = static_cast<std::int64_t>(i);
    return {transpose(v.g, inv)};
}

std::vector<Expr> matmul_vjp(const VjpArgs& v) {
    Expr a = v.a(), b = v.b(), G = v.g;
    bool va = a.rank() == 1, vb = b.rank() == 1;
    // Promote vectors to matrices as NumPy does, and the cotangent with them.
    Expr A = va ? expand_dims(a, 0) : a;
    Expr B = vb ? expand_dims(b, 1) : b;
    if (vb) G = expand_dims(G, static_cast<std::int64_t>(G.rank()));
    if (va) G = expand_dims(G, static_cast<std::int64_t>(G.rank()) - 1);
    Expr ga, gb;
    // Batch axes that were broadcast are summed by unbroadcast.
    if (v.needs(0)) ga = reshape(unbroadcast(matmul(G, mT(B)), A.shape()), a.shape());
    if (v.needs(1)) gb = reshape(unbroadcast(matmul(mT(A), G), B.shape()), b.shape());
    return {ga, gb};
}

}  // namespace detail
}  // namespace agnesi
