// Tensor identities: shape-op chains, reductions of broadcasts and constants, trivial products.
#include <numeric>

#include "agnesi/simplify.hpp"

namespace agnesi {

namespace {

Axes axes_of(const Node* n) {
    return Axes(n->ints().begin(), n->ints().end());
}

bool is_filled_constant(const Node* n, Number* value = nullptr) {
    if (n->op() == Op::BroadcastTo) n = n->operand(0);
    if (!n->is_constant()) return false;
    if (value) *value = n->value();
    return true;
}

std::optional<Expr> shape_chains(const Node* n) {
    if (n->info().kind != OpKind::Shape) return std::nullopt;
    Expr a(n->operand(0));
    switch (n->op()) {
        case Op::Transpose:
            if (a.op() == Op::Transpose) {
                // transpose(transpose(x, p), q) is transpose(x, p[q])
                Axes perm;
                for (auto q : n->ints()) perm.push_back(a->ints()[static_cast<std::size_t>(q)]);
                return transpose(a.operand(0), perm);
            }
            break;
        case Op::Reshape:
            if (a.op() == Op::Reshape) return reshape(a.operand(0), n->shape());
            break;
        case Op::BroadcastTo:
            if (a.op() == Op::BroadcastTo) return broadcast_to(a.operand(0), n->shape());
            break;
        case Op::Squeeze:
        case Op::ExpandDims:
            if (a.op() == Op::Reshape || a.op() == Op::Squeeze || a.op() == Op::ExpandDims)
                if (is_static(n->shape())) return reshape(a.operand(0), n->shape());
            break;
        default: break;
    }
    // A shape op on a filled constant is a filled constant.
    Number v;
    if (n->info().kind == OpKind::Shape && n->op() != Op::Concat &&
        is_filled_constant(a.node(), &v))
        return broadcast_to(constant(v, n->dtype(), n->context()), n->shape());
    return std::nullopt;
}

std::optional<Expr> reductions(const Node* n) {
    if (n->info().kind != OpKind::Reduction) return std::nullopt;
    Expr a(n->operand(0));
    if (n->ints().empty()) return a;  // over no axes: the operand itself
    Number v;
    if (is_filled_constant(a.node(), &v) && is_static(a.shape())) {
        std::int64_t count = 1;
        for (auto ax : n->ints()) count *= a.shape()[static_cast<std::size_t>(ax)];
        Expr c = constant(v, a.dtype(), n->context());
        switch (n->op()) {
            case Op::Sum: return broadcast_to(c * count, n->shape());
            case Op::Prod: return broadcast_to(pow(c, count), n->shape());
            case Op::Mean:
            case Op::ReduceMax:
            case Op::ReduceMin:
                if (count > 0) return broadcast_to(c, n->shape());
                break;
            case Op::Logsumexp:
                if (count > 0)
                    return broadcast_to(c + log(literal(Number(count), n->context())), n->shape());
                break;
            default: break;
        }
    }
    // A reduction over axes along which a broadcast only repeats x: sum(broadcast_to(x, S), A)
    // is x times the count, broadcast to the result.
    if (a.op() == Op::BroadcastTo && is_static(a.shape())) {
        Expr x = a.operand(0);
        std::size_t R = a.rank(), r = x.rank();
        bool repeats = true;
        std::int64_t count = 1;
        Axes squeeze_axes;
        for (auto ax : n->ints()) {
            auto i = static_cast<std::size_t>(ax);
            count *= a.shape()[i];
            if (i + r < R) continue;  // x has no such axis
            std::size_t xi = i + r - R;
            if (x.shape()[xi] != 1) repeats = false;
            squeeze_axes.push_back(static_cast<std::int64_t>(xi));
        }
        if (repeats) {
            Expr y = n->keepdims() ? x : squeeze(x, squeeze_axes);
            Expr c;
            switch (n->op()) {
                case Op::Sum: c = y * count; break;
                case Op::Prod: c = pow(y, count); break;
                case Op::Mean:
                case Op::ReduceMax:
                case Op::ReduceMin:
                    if (count > 0) c = y;
                    break;
                case Op::Logsumexp:
                    if (count > 0) c = y + log(literal(Number(count), n->context()));
                    break;
                default: break;
            }
            if (c) return broadcast_to(c, n->shape());
        }
    }
    // Sums and means are linear: a negation or a numeric factor moves outside.
    if (n->op() == Op::Sum || n->op() == Op::Mean) {
        Axes axes = axes_of(n);
        if (a.op() == Op::Neg) return -reduce(n->op(), a.operand(0), axes, n->keepdims());
        // Only where the other factor has the product's shape: c*y with c a filled tensor and y
        // a scalar has no axes of y to reduce.
        if (a.op() == Op::Mul && is_filled_constant(a->operand(0), &v) && v.is_rational() &&
            a.operand(1).shape() == a.shape())
            return constant(v, n->dtype(), n->context()) *
                   reduce(n->op(), a.operand(1), axes, n->keepdims());
    }
    // sum(sum(x, A), B) is one sum over both sets of axes.
    if (n->op() == Op::Sum && a.op() == Op::Sum && a->keepdims() == n->keepdims()) {
        Axes inner = axes_of(a.node());
        Axes all = inner;
        std::vector<std::int64_t> remaining;  // axes of x that survive the inner sum
        for (std::int64_t i = 0; i < static_cast<std::int64_t>(a.operand(0).rank()); ++i)
            if (a->keepdims() || std::find(inner.begin(), inner.end(), i) == inner.end())
                remaining.push_back(i);
        for (auto b : n->ints()) all.push_back(remaining[static_cast<std::size_t>(b)]);
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        return sum(a.operand(0), all, n->keepdims());
    }
    return std::nullopt;
}

// sum(y, last axis) is 1 when y's rows are stated to be probabilities (variable("y", ...,
// simplex)), also through a shape op that keeps the last axis.
std::optional<Expr> sum_of_simplex(const Node* n) {
    if (n->op() != Op::Sum || n->ints().size() != 1) return std::nullopt;
    const Node* y = n->operand(0);
    if (!y->is_variable() || !(y->assumptions() & kSimplex) || y->rank() == 0) return std::nullopt;
    if (n->ints()[0] != static_cast<std::int64_t>(y->rank()) - 1) return std::nullopt;
    return broadcast_to(constant(Number(1), n->dtype(), n->context()), n->shape());
}

std::optional<Expr> trivial_matmul(const Node* n) {
    if (n->op() != Op::Matmul) return std::nullopt;
    Number v;
    for (std::size_t i = 0; i < 2; ++i)
        if (is_filled_constant(n->operand(i), &v) && v.is_zero())
            return broadcast_to(constant(Number(0), n->dtype(), n->context()), n->shape());
    return std::nullopt;
}

// matmul(eye(n), x) and matmul(x, eye(n)) are x: the identity has no batch axes, so the product
// has x's shape (fit_to casts x if the identity's dtype promotes it).
std::optional<Expr> identity_matmul(const Node* n) {
    if (n->op() != Op::Matmul) return std::nullopt;
    const Node* a = n->operand(0);
    const Node* b = n->operand(1);
    if (a->op() == Op::Eye && b->shape() == n->shape()) return Expr(b);
    if (b->op() == Op::Eye && a->shape() == n->shape()) return Expr(a);
    return std::nullopt;
}

}  // namespace

const RuleSet& tensor_rules() {
    static const RuleSet set{
        "tensor",
        {
            rule("shape op chains", ops_of_kind(OpKind::Shape), shape_chains),
            rule("reductions of constants and of sums", ops_of_kind(OpKind::Reduction), reductions),
            rule("matmul with zeros", {Op::Matmul}, trivial_matmul),
            rule("matmul with an identity", {Op::Matmul}, identity_matmul),
            rule("sum(y, -1) of probabilities -> 1", {Op::Sum}, sum_of_simplex),
        }};
    return set;
}

}  // namespace agnesi
