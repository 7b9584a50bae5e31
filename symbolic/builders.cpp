// Builders: type and shape checks, then interning.
#include <fmt/format.h>

#include <algorithm>
#include <initializer_list>
#include <numeric>
#include <span>

#include "agnesi/error.hpp"
#include "agnesi/expr.hpp"

namespace agnesi {

namespace {

int dtype_rank(DType t) {
    switch (t) {
        case DType::Bool: return 0;
        case DType::Int32: return 1;
        case DType::Int64: return 2;
        case DType::Float16:
        case DType::BFloat16: return 3;
        case DType::Float32: return 4;
        case DType::Float64: return 5;
    }
    return 0;
}

DType promote2(DType a, DType b) {
    if (a == b) return a;
    if ((a == DType::Float16 && b == DType::BFloat16) ||
        (a == DType::BFloat16 && b == DType::Float16))
        return DType::Float32;
    return dtype_rank(a) >= dtype_rank(b) ? a : b;
}

// Promotes operand dtypes; weak operands yield to strong ones of the same or a higher category.
struct Promoted {
    DType dtype;
    bool weak;
};
using NodeList = boost::container::small_vector<const Node*, 4>;

template <class Range>
Promoted promote(const Range& xs) {
    bool any_strong = false;
    DType strong = DType::Bool, weak = DType::Bool;
    for (const Node* x : xs) {
        if (x->weak())
            weak = promote2(weak, x->dtype());
        else
            strong = any_strong ? promote2(strong, x->dtype()) : x->dtype(), any_strong = true;
    }
    if (!any_strong) return {weak, true};
    // A weak float meets a strong bool or integer: the result is float64.
    if (is_float(weak) && !is_float(strong)) return {DType::Float64, false};
    return {strong, false};
}

std::string op_label(Op op) {
    return std::string(op_info(op).name);
}

std::string type_string(const Node* n) {
    return fmt::format("{}{}", dtype_name(n->dtype()), shape_string(n->shape()));
}

Context& context_of(std::span<const Expr> xs) {
    // The context of the first non-constant operand; constants are rebuilt there if needed.
    for (const Expr& x : xs)
        if (!x.node()->is_constant()) return x.node()->context();
    return xs.front().node()->context();
}

// Brings every operand into one context: constants are rebuilt, anything else is an error.
NodeList unify(Op op, std::span<const Expr> xs) {
    for (const Expr& x : xs)
        if (!x) throw ValueError(op_label(op) + ": operand is an empty Expr");
    Context& ctx = context_of(xs);
    NodeList out;
    for (const Expr& x : xs) {
        const Node* n = x.node();
        if (&n->context() != &ctx) {
            if (!n->is_constant())
                throw ValueError(op_label(op) + ": operands come from different contexts");
            NodeDesc d;  // a constant has no operands to carry over
            d.op = Op::Constant;
            d.dtype = n->dtype();
            d.weak = n->weak();
            d.shape = n->shape();
            d.value = n->value();
            n = ctx.intern(std::move(d));
        }
        out.push_back(n);
    }
    return out;
}

const Node* retyped_constant(const Node* c, DType t) {
    NodeDesc d;
    d.op = Op::Constant;
    d.dtype = t;
    d.value = c->value();
    d.shape = c->shape();
    return c->context().intern(std::move(d));
}

std::int64_t normalize_axis(Op op, std::int64_t axis, std::size_t rank, const Shape& shape) {
    auto r = static_cast<std::int64_t>(rank);
    if (axis < -r || axis >= r)
        throw ShapeError(fmt::format("{}: axis {} is out of range for shape {}", op_label(op), axis,
                                     shape_string(shape)));
    return axis < 0 ? axis + r : axis;
}

Expr make(NodeDesc&& d, Context& ctx) {
    return Expr(ctx.intern(std::move(d)));
}

}  // namespace

DType compute_dtype(const Node* n) {
    const OpInfo& info = n->info();
    switch (info.type) {
        case TypeRule::Compare: {
            DType t = promote(n->operands()).dtype;
            return t == DType::Bool ? DType::Int64 : t;
        }
        case TypeRule::Logical: return DType::Int64;
        case TypeRule::Cast: return n->operand(0)->dtype();
        default: return n->dtype();
    }
}

// ---- leaves ----------------------------------------------------------------------------------

Expr variable(std::string name, Shape shape, DType dtype, std::uint8_t assume, Context& ctx) {
    if (name.empty()) throw ValueError("variable: the name is empty");
    for (Dim d : shape)
        if (d < 0) dim_name(d);  // checks that a symbolic size is known
    NodeDesc d;
    d.op = Op::Variable;
    d.dtype = dtype;
    d.shape = std::move(shape);
    d.name = std::move(name);
    // Stated assumptions imply weaker ones.
    if (assume & kPositive) assume |= kNonnegative | kNonzero;
    if (assume & kNegative) assume |= kNonpositive | kNonzero;
    if (((assume & kPositive) && (assume & kNonpositive)) ||
        ((assume & kNegative) && (assume & kNonnegative)))
        throw ValueError(fmt::format("variable {}: assumed both above and below zero", d.name));
    d.assume = assume;
    return make(std::move(d), ctx);
}
Expr scalar(std::string name, DType dtype, std::uint8_t assume, Context& ctx) {
    return variable(std::move(name), {}, dtype, assume, ctx);
}
Expr scalar(std::string name, std::uint8_t assume, Context& ctx) {
    return variable(std::move(name), {}, f64, assume, ctx);
}
Expr vector(std::string name, Dim n, DType dtype, Context& ctx) {
    return variable(std::move(name), {n}, dtype, kNone, ctx);
}
Expr matrix(std::string name, Dim rows, Dim cols, DType dtype, Context& ctx) {
    return variable(std::move(name), {rows, cols}, dtype, kNone, ctx);
}
Expr tensor(std::string name, Shape shape, DType dtype, Context& ctx) {
    return variable(std::move(name), std::move(shape), dtype, kNone, ctx);
}

Expr constant(const Number& v, DType dtype, Context& ctx) {
    NodeDesc d;
    d.op = Op::Constant;
    d.dtype = dtype;
    d.value = v;
    return make(std::move(d), ctx);
}
Expr literal(const Number& v, Context& ctx) {
    return literal(v, v.is_integer() ? DType::Int64 : DType::Float64, ctx);
}
Expr literal(const Number& v, DType dtype, Context& ctx) {
    NodeDesc d;
    d.op = Op::Constant;
    d.dtype = dtype;
    d.weak = true;
    d.value = v;
    return make(std::move(d), ctx);
}

Expr eye(std::int64_t n, DType dtype, Context& ctx) {
    if (n < 0) throw ShapeError(fmt::format("eye: the size must not be negative, got {}", n));
    if (dtype == DType::Bool) throw TypeError("eye: expects a numeric dtype, got bool");
    NodeDesc d;
    d.op = Op::Eye;
    d.dtype = dtype;
    d.shape = {n, n};
    return make(std::move(d), ctx);
}

Expr::Expr(int v) : Expr(literal(Number(v))) {}
Expr::Expr(long v) : Expr(literal(Number(static_cast<std::int64_t>(v)))) {}
Expr::Expr(long long v) : Expr(literal(Number(static_cast<std::int64_t>(v)))) {}
Expr::Expr(double v) : Expr(literal(Number::from_double(v), DType::Float64)) {}
Expr::Expr(const Number& v) : Expr(literal(v)) {}

// ---- elementwise -----------------------------------------------------------------------------

namespace {
Expr elementwise_impl(Op op, std::span<const Expr> operands) {
    const OpInfo& info = op_info(op);
    if (info.kind != OpKind::Elementwise || op == Op::Cast)
        throw ValueError(fmt::format("elementwise: {} is not an elementwise op", info.name));
    if (static_cast<int>(operands.size()) != info.arity)
        throw ValueError(
            fmt::format("{}: takes {} operands, got {}", info.name, info.arity, operands.size()));
    NodeList xs = unify(op, operands);
    Context& ctx = xs.front()->context();

    // Shapes broadcast pairwise, so an error names the two that clash.
    Shape shape = xs[0]->shape();
    for (std::size_t i = 1; i < xs.size(); ++i) {
        auto s = broadcast_shapes(shape, xs[i]->shape());
        if (!s)
            throw ShapeError(fmt::format("{}: cannot broadcast shapes {} and {}", info.name,
                                         shape_string(shape), shape_string(xs[i]->shape())));
        shape = *s;
    }

    // The value operands (a where's condition is not one) decide the compute dtype.
    NodeList values(xs.begin() + (op == Op::Where ? 1 : 0), xs.end());
    Promoted p = promote(values);
    DType compute = p.dtype;
    DType result = p.dtype;
    switch (info.type) {
        case TypeRule::Same:
            if (compute == DType::Bool) compute = result = DType::Int64;
            break;
        case TypeRule::Float:
            if (!is_float(compute)) {
                // An integer to a constant non-negative integer power stays an integer, as in
                // Python; any other integer power is a float.
                bool int_pow = op == Op::Pow && xs[1]->is_constant() &&
                               xs[1]->value().is_integer() && xs[1]->value().sign() >= 0;
                compute = result =
                    int_pow ? (compute == DType::Bool ? DType::Int64 : compute) : DType::Float64;
            }
            break;
        case TypeRule::Compare: result = DType::Bool; break;
        case TypeRule::Logical:
            compute = DType::Int64;
            result = DType::Bool;
            break;
        case TypeRule::Where: break;
        default: detail::unreachable("elementwise type rule");
    }

    NodeDesc d;
    d.op = op;
    d.dtype = result;
    // A bool result never yields to another operand's dtype, so it is never weak.
    d.weak = p.weak && result != DType::Bool;
    d.shape = std::move(shape);
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const Node* x = xs[i];
        bool is_value = !(op == Op::Where && i == 0);
        // Weak literals take the dtype the op computes in, so x32 * 2 holds a float32 2.
        if (!p.weak && is_value && x->is_constant() && x->weak() && x->dtype() != compute &&
            info.type != TypeRule::Logical)
            x = retyped_constant(x, compute);
        d.operands.push_back(x);
    }
    return make(std::move(d), ctx);
}

// Most of what the simplifier and the gradients build: an elementwise op of `arity` whose
// result has its float operands' dtype. Over operands of one float dtype and shape in one
// context there is nothing to promote, broadcast or retype: the general path's node is built
// directly (a third of simplify's building went to the general path).
bool keeps_float_dtype(Op op, std::size_t arity) {
    const OpInfo& info = op_info(op);
    return info.kind == OpKind::Elementwise && op != Op::Cast &&
           static_cast<std::size_t>(info.arity) == arity &&
           (info.type == TypeRule::Same || info.type == TypeRule::Float);
}

// The node of `op` over `ops`, which share a float dtype, a shape and a context.
Expr same_typed(Op op, std::initializer_list<const Expr*> ops) {
    const Expr& a = **ops.begin();
    NodeDesc d;
    d.op = op;
    d.dtype = a.dtype();
    d.weak = true;
    for (const Expr* x : ops) {
        d.weak = d.weak && (*x)->weak();
        d.operands.push_back(x->node());
    }
    d.shape = a.shape();
    return make(std::move(d), a->context());
}

Expr el(Op op, const Expr& a) {
    if (a && is_float(a.dtype()) && keeps_float_dtype(op, 1)) return same_typed(op, {&a});
    return elementwise_impl(op, {&a, 1});
}

// Whether `x` op `c` takes x's dtype and shape, with c converted to that dtype if it has
// another: x of a float dtype and not weak, c a weak scalar constant (x * 2, x - 1, x^2).
bool takes_weak_scalar(const Expr& x, const Expr& c) {
    return is_float(x.dtype()) && !x->weak() && c->is_constant() && c->weak() && c.shape().empty();
}

// The node the general path builds for those operands, without promoting or broadcasting
// (the exponents and coefficients that simplify and the gradients build are such scalars).
Expr with_weak_scalar(Op op, const Expr& a, const Expr& b, bool a_is_x) {
    const Expr& x = a_is_x ? a : b;
    const Node* c = (a_is_x ? b : a).node();
    if (c->dtype() != x.dtype()) c = retyped_constant(c, x.dtype());
    NodeDesc d;
    d.op = op;
    d.dtype = x.dtype();
    d.shape = x.shape();
    d.operands = a_is_x ? Operands{x.node(), c} : Operands{c, x.node()};
    return make(std::move(d), x->context());
}

Expr el(Op op, const Expr& a, const Expr& b) {
    if (a && b && keeps_float_dtype(op, 2) && &a->context() == &b->context()) {
        if (a.dtype() == b.dtype() && is_float(a.dtype()) && a.shape() == b.shape())
            return same_typed(op, {&a, &b});
        if (takes_weak_scalar(a, b)) return with_weak_scalar(op, a, b, true);
        if (takes_weak_scalar(b, a)) return with_weak_scalar(op, a, b, false);
    }
    const Expr xs[] = {a, b};
    return elementwise_impl(op, xs);
}
}  // namespace

Expr elementwise(Op op, const std::vector<Expr>& operands) {
    return elementwise_impl(op, operands);
}

Expr operator-(const Expr& a) {
    return el(Op::Neg, a);
}
Expr operator+(const Expr& a, const Expr& b) {
    return el(Op::Add, a, b);
}
Expr operator-(const Expr& a, const Expr& b) {
    return el(Op::Sub, a, b);
}
Expr operator*(const Expr& a, const Expr& b) {
    return el(Op::Mul, a, b);
}
Expr operator/(const Expr& a, const Expr& b) {
    return el(Op::Div, a, b);
}
Expr operator<(const Expr& a, const Expr& b) {
    return el(Op::Lt, a, b);
}
Expr operator<=(const Expr& a, const Expr& b) {
    return el(Op::Le, a, b);
}
Expr operator>(const Expr& a, const Expr& b) {
    return el(Op::Gt, a, b);
}
Expr operator>=(const Expr& a, const Expr& b) {
    return el(Op::Ge, a, b);
}
Expr eq(const Expr& a, const Expr& b) {
    return el(Op::Eq, a, b);
}
Expr ne(const Expr& a, const Expr& b) {
    return el(Op::Ne, a, b);
}
Expr logical_and(const Expr& a, const Expr& b) {
    return el(Op::And, a, b);
}
Expr logical_or(const Expr& a, const Expr& b) {
    return el(Op::Or, a, b);
}
Expr logical_not(const Expr& a) {
    return el(Op::Not, a);
}
Expr pow(const Expr& a, const Expr& b) {
    return el(Op::Pow, a, b);
}
Expr minimum(const Expr& a, const Expr& b) {
    return el(Op::Minimum, a, b);
}
Expr maximum(const Expr& a, const Expr& b) {
    return el(Op::Maximum, a, b);
}
Expr atan2(const Expr& y, const Expr& x) {
    return el(Op::Atan2, y, x);
}
Expr where(const Expr& c, const Expr& a, const Expr& b) {
    return elementwise(Op::Where, {c, a, b});
}

Expr cast(const Expr& a, DType dtype) {
    if (!a) throw ValueError("cast: operand is an empty Expr");
    if (a.dtype() == dtype && !a->weak()) return a;
    if (a->is_constant()) {
        // Casting a number types it, when the value survives the cast exactly.
        const Number& v = a->value();
        bool exact = is_float(dtype) || (is_integer(dtype) && v.is_integer()) ||
                     (dtype == DType::Bool && (v.is_zero() || v.is_one()));
        if (exact) return constant(v, dtype, a->context());
    }
    NodeDesc d;
    d.op = Op::Cast;
    d.dtype = dtype;
    d.shape = a.shape();
    d.operands = {a.node()};
    return make(std::move(d), a->context());
}

#define AGNESI_UNARY(fn, OP)  \
    Expr fn(const Expr& a) {  \
        return el(Op::OP, a); \
    }
AGNESI_UNARY(exp, Exp)
AGNESI_UNARY(log, Log)
AGNESI_UNARY(sqrt, Sqrt)
AGNESI_UNARY(sin, Sin)
AGNESI_UNARY(cos, Cos)
AGNESI_UNARY(tan, Tan)
AGNESI_UNARY(asin, Asin)
AGNESI_UNARY(acos, Acos)
AGNESI_UNARY(atan, Atan)
AGNESI_UNARY(sinh, Sinh)
AGNESI_UNARY(cosh, Cosh)
AGNESI_UNARY(tanh, Tanh)
AGNESI_UNARY(asinh, Asinh)
AGNESI_UNARY(acosh, Acosh)
AGNESI_UNARY(atanh, Atanh)
AGNESI_UNARY(abs, Abs)
AGNESI_UNARY(sign, Sign)
AGNESI_UNARY(log1p, Log1p)
AGNESI_UNARY(expm1, Expm1)
AGNESI_UNARY(erf, Erf)
AGNESI_UNARY(erfc, Erfc)
AGNESI_UNARY(sigmoid, Sigmoid)
AGNESI_UNARY(softplus, Softplus)
AGNESI_UNARY(relu, Relu)
AGNESI_UNARY(floor, Floor)
AGNESI_UNARY(ceil, Ceil)
#undef AGNESI_UNARY

// ---- reductions --------------------------------------------------------------------------------

Expr reduce(Op op, const Expr& a, Axes axes, bool keepdims) {
    if (!a) throw ValueError(op_label(op) + ": operand is an empty Expr");
    if (op_info(op).kind != OpKind::Reduction)
        throw ValueError(fmt::format("reduce: {} is not a reduction", op_info(op).name));
    std::size_t r = a.rank();
    Ints norm;
    if (axes.empty()) {
        for (std::size_t i = 0; i < r; ++i) norm.push_back(static_cast<std::int64_t>(i));
    } else {
        for (auto ax : axes) norm.push_back(normalize_axis(op, ax, r, a.shape()));
        std::sort(norm.begin(), norm.end());
        if (std::adjacent_find(norm.begin(), norm.end()) != norm.end())
            throw ShapeError(fmt::format("{}: repeated axis in a reduction of shape {}",
                                         op_label(op), shape_string(a.shape())));
    }
    if (norm.size() == r) keepdims = keepdims && r > 0;
    NodeDesc d;
    d.op = op;
    d.weak = a->weak();
    DType t = a.dtype();
    switch (op) {
        case Op::Sum:
        case Op::Prod: d.dtype = (t == DType::Bool || t == DType::Int32) ? DType::Int64 : t; break;
        case Op::ReduceMax:
        case Op::ReduceMin: d.dtype = t; break;
        default: d.dtype = is_float(t) ? t : DType::Float64;
    }
    for (std::size_t i = 0; i < r; ++i) {
        bool reduced =
            std::find(norm.begin(), norm.end(), static_cast<std::int64_t>(i)) != norm.end();
        if (!reduced)
            d.shape.push_back(a.shape()[i]);
        else if (keepdims)
            d.shape.push_back(1);
        else if (a.shape()[i] == 0 && (op == Op::ReduceMax || op == Op::ReduceMin))
            throw ShapeError(fmt::format("{}: reduction of an empty axis {} of shape {}",
                                         op_label(op), i, shape_string(a.shape())));
    }
    d.ints = std::move(norm);
    d.keepdims = keepdims;
    d.operands = {a.node()};
    return make(std::move(d), a->context());
}

Expr sum(const Expr& a, Axes axes, bool k) {
    return reduce(Op::Sum, a, std::move(axes), k);
}
Expr prod(const Expr& a, Axes axes, bool k) {
    return reduce(Op::Prod, a, std::move(axes), k);
}
Expr amax(const Expr& a, Axes axes, bool k) {
    return reduce(Op::ReduceMax, a, std::move(axes), k);
}
Expr amin(const Expr& a, Axes axes, bool k) {
    return reduce(Op::ReduceMin, a, std::move(axes), k);
}
Expr mean(const Expr& a, Axes axes, bool k) {
    return reduce(Op::Mean, a, std::move(axes), k);
}
Expr logsumexp(const Expr& a, Axes axes, bool k) {
    return reduce(Op::Logsumexp, a, std::move(axes), k);
}

namespace {
Expr normalize_along(Op op, const Expr& a, std::int64_t axis) {
    if (!a) throw ValueError(op_label(op) + ": operand is an empty Expr");
    if (a.rank() == 0) throw ShapeError(op_label(op) + ": needs at least one axis, got a scalar");
    NodeDesc d;
    d.op = op;
    d.dtype = is_float(a.dtype()) ? a.dtype() : DType::Float64;
    d.weak = a->weak();
    d.shape = a.shape();
    d.ints = {normalize_axis(op, axis, a.rank(), a.shape())};
    d.operands = {a.node()};
    return make(std::move(d), a->context());
}
}  // namespace

Expr softmax(const Expr& a, std::int64_t axis) {
    return normalize_along(Op::Softmax, a, axis);
}
Expr log_softmax(const Expr& a, std::int64_t axis) {
    return normalize_along(Op::LogSoftmax, a, axis);
}
Expr cross_entropy(const Expr& p, const Expr& y, std::int64_t axis) {
    Expr prod = y * log(p);
    if (prod.rank() == 0) throw ShapeError("cross_entropy: needs at least one axis, got scalars");
    return -sum(prod, {axis});
}

// ---- shape ops ---------------------------------------------------------------------------------

namespace {
Expr shape_node(Op op, const Expr& a, Shape shape, Ints ints = {}) {
    NodeDesc d;
    d.op = op;
    d.dtype = a.dtype();
    d.weak = a->weak();
    d.shape = std::move(shape);
    d.ints = std::move(ints);
    d.operands = {a.node()};
    return make(std::move(d), a->context());
}
void check_operand(Op op, const Expr& a) {
    if (!a) throw ValueError(op_label(op) + ": operand is an empty Expr");
}
}  // namespace

Expr reshape(const Expr& a, Shape shape) {
    check_operand(Op::Reshape, a);
    int infer = -1;
    std::int64_t known = 1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1 && infer < 0 && is_static(a.shape())) {
            infer = static_cast<int>(i);
            continue;
        }
        if (shape[i] >= 0) known *= shape[i];
    }
    auto mismatch = [&] {
        return ShapeError(fmt::format("reshape: cannot reshape {} into {}", shape_string(a.shape()),
                                      shape_string(shape)));
    };
    if (infer >= 0) {
        std::int64_t total = numel(a.shape());
        if (known == 0 || total % known != 0) throw mismatch();
        shape[static_cast<std::size_t>(infer)] = total / known;
    }
    // Sizes agree when the static parts multiply to the same number and the symbolic sizes
    // are the same multiset.
    auto split = [](const Shape& s) {
        std::int64_t n = 1;
        std::vector<Dim> syms;
        for (Dim d : s) d >= 0 ? void(n *= d) : syms.push_back(d);
        std::sort(syms.begin(), syms.end());
        return std::pair{n, syms};
    };
    if (split(a.shape()) != split(shape)) throw mismatch();
    if (shape == a.shape()) return a;
    return shape_node(Op::Reshape, a, std::move(shape));
}

Expr transpose(const Expr& a, Axes perm) {
    check_operand(Op::Transpose, a);
    std::size_t r = a.rank();
    if (perm.empty())
        for (std::size_t i = 0; i < r; ++i) perm.push_back(static_cast<std::int64_t>(r - 1 - i));
    if (perm.size() != r)
        throw ShapeError(fmt::format("transpose: permutation of {} axes for shape {}", perm.size(),
                                     shape_string(a.shape())));
    Ints norm;
    std::vector<bool> seen(r, false);
    Shape shape;
    for (auto p : perm) {
        auto ax = normalize_axis(Op::Transpose, p, r, a.shape());
        if (seen[static_cast<std::size_t>(ax)])
            throw ShapeError(fmt::format("transpose: axis {} repeated in the permutation", ax));
        seen[static_cast<std::size_t>(ax)] = true;
        norm.push_back(ax);
        shape.push_back(a.shape()[static_cast<std::size_t>(ax)]);
    }
    bool identity = true;
    for (std::size_t i = 0; i < r; ++i)
        identity = identity && norm[i] == static_cast<std::int64_t>(i);
    if (identity) return a;
    return shape_node(Op::Transpose, a, std::move(shape), std::move(norm));
}

Expr broadcast_to(const Expr& a, Shape shape) {
    check_operand(Op::BroadcastTo, a);
    auto b = broadcast_shapes(a.shape(), shape);
    if (!b || *b != shape)
        throw ShapeError(fmt::format("broadcast_to: cannot broadcast shape {} to {}",
                                     shape_string(a.shape()), shape_string(shape)));
    if (shape == a.shape()) return a;
    return shape_node(Op::BroadcastTo, a, std::move(shape));
}

Expr expand_dims(const Expr& a, std::int64_t axis) {
    check_operand(Op::ExpandDims, a);
    auto ax = normalize_axis(Op::ExpandDims, axis, a.rank() + 1, a.shape());
    Shape shape = a.shape();
    shape.insert(shape.begin() + ax, 1);
    return shape_node(Op::ExpandDims, a, std::move(shape), {ax});
}

Expr squeeze(const Expr& a, Axes axes) {
    check_operand(Op::Squeeze, a);
    Ints norm;
    if (axes.empty()) {
        for (std::size_t i = 0; i < a.rank(); ++i)
            if (a.shape()[i] == 1) norm.push_back(static_cast<std::int64_t>(i));
    } else {
        for (auto ax : axes) {
            auto n = normalize_axis(Op::Squeeze, ax, a.rank(), a.shape());
            if (a.shape()[static_cast<std::size_t>(n)] != 1)
                throw ShapeError(fmt::format("squeeze: axis {} of shape {} is not of size 1", n,
                                             shape_string(a.shape())));
            norm.push_back(n);
        }
        std::sort(norm.begin(), norm.end());
        norm.erase(std::unique(norm.begin(), norm.end()), norm.end());
    }
    if (norm.empty()) return a;
    Shape shape;
    for (std::size_t i = 0; i < a.rank(); ++i)
        if (!std::binary_search(norm.begin(), norm.end(), static_cast<std::int64_t>(i)))
            shape.push_back(a.shape()[i]);
    return shape_node(Op::Squeeze, a, std::move(shape), std::move(norm));
}

Expr concat(const std::vector<Expr>& parts, std::int64_t axis) {
    if (parts.empty()) throw ValueError("concat: needs at least one part");
    NodeList xs = unify(Op::Concat, parts);
    if (xs.size() == 1) return Expr(xs[0]);
    const Node* first = xs[0];
    if (first->rank() == 0) throw ShapeError("concat: cannot concatenate scalars");
    auto ax =
        static_cast<std::size_t>(normalize_axis(Op::Concat, axis, first->rank(), first->shape()));
    Shape shape = first->shape();
    for (std::size_t i = 1; i < xs.size(); ++i) {
        const Shape& s = xs[i]->shape();
        bool ok = s.size() == shape.size();
        for (std::size_t k = 0; ok && k < s.size(); ++k) ok = k == ax || s[k] == shape[k];
        if (!ok || s[ax] < 0 || shape[ax] < 0)
            throw ShapeError(fmt::format("concat: shapes {} and {} do not fit along axis {}",
                                         shape_string(first->shape()), shape_string(s), ax));
        shape[ax] += s[ax];
    }
    Promoted p = promote(xs);
    NodeDesc d;
    d.op = Op::Concat;
    d.dtype = p.dtype;
    d.weak = p.weak;
    d.shape = std::move(shape);
    d.ints = {static_cast<std::int64_t>(ax)};
    d.operands.assign(xs.begin(), xs.end());
    return make(std::move(d), first->context());
}

Expr slice(const Expr& a, std::int64_t axis, std::int64_t start, std::int64_t stop,
           std::int64_t step) {
    check_operand(Op::Slice, a);
    if (step <= 0) throw ShapeError(fmt::format("slice: step must be positive, got {}", step));
    if (a.rank() == 0) throw ShapeError("slice: cannot slice a scalar");
    auto ax = normalize_axis(Op::Slice, axis, a.rank(), a.shape());
    Dim n = a.shape()[static_cast<std::size_t>(ax)];
    if (n < 0)
        throw ShapeError(fmt::format("slice: axis {} of shape {} has a symbolic size", ax,
                                     shape_string(a.shape())));
    auto clamp = [n](std::int64_t i) {
        if (i < 0) i += n;
        return std::clamp<std::int64_t>(i, 0, n);
    };
    start = clamp(start);
    stop = std::max(clamp(stop), start);
    Shape shape = a.shape();
    shape[static_cast<std::size_t>(ax)] = (stop - start + step - 1) / step;
    if (start == 0 && stop == n && step == 1) return a;
    return shape_node(Op::Slice, a, std::move(shape), {ax, start, stop, step});
}

Expr matmul(const Expr& a, const Expr& b) {
    const Expr ab[] = {a, b};
    NodeList xs = unify(Op::Matmul, ab);
    const Node* x = xs[0];
    const Node* y = xs[1];
    auto fail = [&](const char* what) {
        return ShapeError(fmt::format("matmul: {}: {} and {}", what, shape_string(x->shape()),
                                      shape_string(y->shape())));
    };
    if (x->rank() == 0 || y->rank() == 0) throw fail("operands must have at least one axis");
    if (x->dtype() == DType::Bool || y->dtype() == DType::Bool)
        throw TypeError(fmt::format("matmul: expects numeric operands, got {} and {}",
                                    type_string(x), type_string(y)));
    Shape sa = x->shape(), sb = y->shape();
    bool va = sa.size() == 1, vb = sb.size() == 1;
    if (va) sa.insert(sa.begin(), 1);
    if (vb) sb.push_back(1);
    Dim k1 = sa[sa.size() - 1], k2 = sb[sb.size() - 2];
    if (k1 != k2) throw fail("inner dimensions differ");
    Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
    auto batch = broadcast_shapes(ba, bb);
    if (!batch) throw fail("batch dimensions do not broadcast");
    Shape shape = *batch;
    if (!va) shape.push_back(sa[sa.size() - 2]);
    if (!vb) shape.push_back(sb[sb.size() - 1]);
    Promoted p = promote(xs);
    NodeDesc d;
    d.op = Op::Matmul;
    d.dtype = p.dtype;
    d.weak = p.weak;
    d.shape = std::move(shape);
    d.operands = {x, y};
    return make(std::move(d), x->context());
}

// ---- rebuild -----------------------------------------------------------------------------------

Expr rebuild(const Node* n, const std::vector<Expr>& ops) {
    auto shape_of = [&]() { return n->shape(); };
    const auto& ints = n->ints();
    switch (n->info().kind) {
        case OpKind::Leaf: return Expr(n);
        case OpKind::Elementwise:
            if (n->op() == Op::Cast) return cast(ops.at(0), n->dtype());
            if (ops.size() == 1) return el(n->op(), ops[0]);
            if (ops.size() == 2) return el(n->op(), ops[0], ops[1]);
            return elementwise(n->op(), ops);
        case OpKind::Reduction:
            return reduce(n->op(), ops.at(0), Axes(ints.begin(), ints.end()), n->keepdims());
        case OpKind::AxisNormalize:
            return n->op() == Op::Softmax ? softmax(ops.at(0), ints[0])
                                          : log_softmax(ops.at(0), ints[0]);
        case OpKind::Matmul: return matmul(ops.at(0), ops.at(1));
        case OpKind::Shape: break;
    }
    switch (n->op()) {
        case Op::Reshape: return reshape(ops.at(0), shape_of());
        case Op::Transpose: return transpose(ops.at(0), Axes(ints.begin(), ints.end()));
        case Op::BroadcastTo: return broadcast_to(ops.at(0), shape_of());
        case Op::ExpandDims: return expand_dims(ops.at(0), ints[0]);
        case Op::Squeeze: return squeeze(ops.at(0), Axes(ints.begin(), ints.end()));
        case Op::Concat: return concat(ops, ints[0]);
        case Op::Slice: return slice(ops.at(0), ints[0], ints[1], ints[2], ints[3]);
        default: break;
    }
    detail::unreachable("rebuild: unknown shape op");
}

}  // namespace agnesi
