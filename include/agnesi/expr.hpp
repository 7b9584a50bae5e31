// Expr, the user's handle to a node, and the builders.
//
// Builders check dtypes and shapes, then intern the node; they throw TypeError or ShapeError
// naming the op and both operands. They canonicalize only this much:
// - a weak constant operand takes the dtype of a typed operand (x32 * 2 is float32);
// - axes are normalized (negative axes count from the end; reduction axes are sorted);
// - identity shape ops are not built: reshape to the same shape, transpose by the identity
//   permutation, broadcast_to the same shape, and concat of one part return the operand.
// Everything else, including constant folding, belongs to simplify().
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "agnesi/context.hpp"
#include "agnesi/node.hpp"

namespace agnesi {

class Expr {
  public:
    Expr() = default;
    /// A weak constant in the global context.
    Expr(int v);            // NOLINT(google-explicit-constructor)
    Expr(long v);           // NOLINT(google-explicit-constructor)
    Expr(long long v);      // NOLINT(google-explicit-constructor)
    Expr(double v);         // NOLINT(google-explicit-constructor)
    Expr(const Number& v);  // NOLINT(google-explicit-constructor)
    explicit Expr(const Node* n) : node_(n) {}

    const Node* node() const { return node_; }
    const Node* operator->() const { return node_; }
    const Node& operator*() const { return *node_; }
    explicit operator bool() const { return node_ != nullptr; }

    Op op() const { return node_->op(); }
    DType dtype() const { return node_->dtype(); }
    const Shape& shape() const { return node_->shape(); }
    std::size_t rank() const { return node_->rank(); }
    Expr operand(std::size_t i) const { return Expr(node_->operand(i)); }

    /// Structural identity (nodes are interned, so this is a pointer compare).
    bool same(const Expr& o) const { return node_ == o.node_; }

  private:
    const Node* node_ = nullptr;
};

/// Pointer identity; equal structure in one Context means equal pointers.
inline bool operator==(const Expr& a, const Expr& b) {
    return a.same(b);
}
inline bool operator!=(const Expr& a, const Expr& b) {
    return !a.same(b);
}

/// Hash for unordered containers keyed by Expr.
struct ExprHash {
    std::size_t operator()(const Expr& e) const { return e.node() ? e.node()->hash() : 0; }
};

using Axes = std::vector<std::int64_t>;

// ---- leaves ----------------------------------------------------------------------------------

/// A variable of any shape. `assume` is a mask of Assume flags (positive, nonzero, ...).
Expr variable(std::string name, Shape shape, DType dtype = f64, std::uint8_t assume = kNone,
              Context& ctx = Context::global());
Expr scalar(std::string name, DType dtype = f64, std::uint8_t assume = kNone,
            Context& ctx = Context::global());
Expr scalar(std::string name, std::uint8_t assume, Context& ctx = Context::global());
Expr vector(std::string name, Dim n, DType dtype = f64, Context& ctx = Context::global());
Expr matrix(std::string name, Dim rows, Dim cols, DType dtype = f64,
            Context& ctx = Context::global());
Expr tensor(std::string name, Shape shape, DType dtype = f64, Context& ctx = Context::global());
/// A typed (strong) scalar constant.
Expr constant(const Number& v, DType dtype, Context& ctx = Context::global());
/// A weak scalar constant, as a literal makes: int64 for an integer, float64 otherwise.
Expr literal(const Number& v, Context& ctx = Context::global());
/// A weak scalar constant of a given dtype (2.0 is a float64 literal).
Expr literal(const Number& v, DType dtype, Context& ctx = Context::global());
/// The n x n identity matrix: eye(3) prints as `eye(3)`, eye(3, f32) as `eye(3, float32)`.
Expr eye(std::int64_t n, DType dtype = f64, Context& ctx = Context::global());

// ---- elementwise -----------------------------------------------------------------------------

/// Builds any elementwise op from the table (arity 1, 2 or 3) with the checks above.
Expr elementwise(Op op, const std::vector<Expr>& operands);

Expr operator-(const Expr& a);
Expr operator+(const Expr& a, const Expr& b);
Expr operator-(const Expr& a, const Expr& b);
Expr operator*(const Expr& a, const Expr& b);
Expr operator/(const Expr& a, const Expr& b);
/// Comparisons build nodes (bool dtype); use `same` or == for identity.
Expr operator<(const Expr& a, const Expr& b);
Expr operator<=(const Expr& a, const Expr& b);
Expr operator>(const Expr& a, const Expr& b);
Expr operator>=(const Expr& a, const Expr& b);
Expr eq(const Expr& a, const Expr& b);
Expr ne(const Expr& a, const Expr& b);
Expr logical_and(const Expr& a, const Expr& b);
Expr logical_or(const Expr& a, const Expr& b);
Expr logical_not(const Expr& a);

Expr pow(const Expr& a, const Expr& b);
Expr minimum(const Expr& a, const Expr& b);
Expr maximum(const Expr& a, const Expr& b);
inline Expr min(const Expr& a, const Expr& b) {
    return minimum(a, b);
}
inline Expr max(const Expr& a, const Expr& b) {
    return maximum(a, b);
}
Expr atan2(const Expr& y, const Expr& x);
Expr where(const Expr& cond, const Expr& a, const Expr& b);
Expr cast(const Expr& a, DType dtype);

Expr exp(const Expr& a);
Expr log(const Expr& a);
Expr sqrt(const Expr& a);
Expr sin(const Expr& a);
Expr cos(const Expr& a);
Expr tan(const Expr& a);
Expr asin(const Expr& a);
Expr acos(const Expr& a);
Expr atan(const Expr& a);
Expr sinh(const Expr& a);
Expr cosh(const Expr& a);
Expr tanh(const Expr& a);
Expr asinh(const Expr& a);
Expr acosh(const Expr& a);
Expr atanh(const Expr& a);
Expr abs(const Expr& a);
Expr sign(const Expr& a);
Expr log1p(const Expr& a);
Expr expm1(const Expr& a);
Expr erf(const Expr& a);
Expr erfc(const Expr& a);
Expr sigmoid(const Expr& a);
Expr softplus(const Expr& a);
Expr relu(const Expr& a);
Expr floor(const Expr& a);
Expr ceil(const Expr& a);

// ---- reductions and normalizations -------------------------------------------------------------

/// Reduces over `axes` (empty: all axes). Negative axes count from the end.
Expr reduce(Op op, const Expr& a, Axes axes = {}, bool keepdims = false);
Expr sum(const Expr& a, Axes axes = {}, bool keepdims = false);
Expr prod(const Expr& a, Axes axes = {}, bool keepdims = false);
Expr amax(const Expr& a, Axes axes = {}, bool keepdims = false);
Expr amin(const Expr& a, Axes axes = {}, bool keepdims = false);
Expr mean(const Expr& a, Axes axes = {}, bool keepdims = false);
/// log(sum(exp(a), axes)), computed stably.
Expr logsumexp(const Expr& a, Axes axes = {}, bool keepdims = false);
Expr softmax(const Expr& a, std::int64_t axis = -1);
Expr log_softmax(const Expr& a, std::int64_t axis = -1);
/// -sum(y * log(p), axis): cross-entropy of probabilities p against targets y. A helper built from
/// primitives (log of a softmax becomes log_softmax under simplify's stabilize rules).
Expr cross_entropy(const Expr& p, const Expr& y, std::int64_t axis = -1);

// ---- shape ops ---------------------------------------------------------------------------------

/// Same elements, new shape (one dimension may be -1 and is inferred).
Expr reshape(const Expr& a, Shape shape);
/// Permutes axes; an empty permutation reverses them.
Expr transpose(const Expr& a, Axes perm = {});
Expr broadcast_to(const Expr& a, Shape shape);
Expr expand_dims(const Expr& a, std::int64_t axis);
/// Removes the given size-1 axes (empty: all size-1 axes).
Expr squeeze(const Expr& a, Axes axes = {});
Expr concat(const std::vector<Expr>& parts, std::int64_t axis = 0);
/// Elements start, start+step, ... < stop along `axis` (step > 0; bounds clamp as in NumPy).
Expr slice(const Expr& a, std::int64_t axis, std::int64_t start, std::int64_t stop,
           std::int64_t step = 1);

/// Matrix product with NumPy semantics: 1-D operands are promoted, leading axes broadcast.
Expr matmul(const Expr& a, const Expr& b);

/// The dtype an elementwise node computes in: its own dtype, except that comparisons compute in
/// their operands' promoted dtype, logical ops in int64, and a cast in its operand's dtype.
DType compute_dtype(const Node* n);

/// Rebuilds a node of the same op and attributes over new operands (checks run again).
Expr rebuild(const Node* n, const std::vector<Expr>& operands);

}  // namespace agnesi
