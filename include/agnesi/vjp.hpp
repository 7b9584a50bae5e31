// What a derivative rule (OpInfo::vjp) sees, and the helpers rules are written with.
//
// Reverse mode (diff/reverse_mode.cpp) calls an op's rule with the node, its operands, its
// output and the cotangent `g` of the output (same shape as the output). The rule returns one
// cotangent per operand, of that operand's shape (unbroadcast() undoes broadcasting); an empty
// Expr means that no gradient flows there. Rules may skip work for operands that do not need a
// gradient (needs(i) is false), and must stay linear in g: forward mode relies on it.
#pragma once

#include <array>
#include <vector>

#include "agnesi/expr.hpp"

namespace agnesi {

struct VjpArgs {
    const Node* node;            ///< the node being differentiated
    std::vector<Expr> operands;  ///< its operands
    Expr out;                    ///< the node itself
    Expr g;                      ///< cotangent of the output, shape and dtype of the output
    std::array<bool, 3> need = {true, true, true};  ///< operands that need a cotangent

    Expr a() const { return operands[0]; }
    Expr b() const { return operands[1]; }
    Expr c() const { return operands[2]; }
    bool needs(std::size_t i) const { return i >= need.size() || need[i]; }
};

/// Sums `g` over the axes along which `shape` was broadcast to g's shape, and reshapes the sum to
/// `shape`: the adjoint of broadcasting. unbroadcast(ones(3, 4), (4,)) is 3s of shape (4,).
Expr unbroadcast(const Expr& g, const Shape& shape);
inline Expr unbroadcast(const Expr& g, const Expr& like) {
    return unbroadcast(g, like.shape());
}

/// A zero of this dtype and shape (a constant broadcast to the shape).
Expr zeros(const Shape& shape, DType dtype, Context& ctx = Context::global());

namespace detail {
// The longer rules, kept out of the table so that each table entry stays one line.
std::vector<Expr> reduce_vjp(const VjpArgs& v);
std::vector<Expr> minmax_vjp(const VjpArgs& v, bool is_max);
std::vector<Expr> concat_vjp(const VjpArgs& v);
std::vector<Expr> slice_vjp(const VjpArgs& v);
std::vector<Expr> matmul_vjp(const VjpArgs& v);
std::vector<Expr> transpose_vjp(const VjpArgs& v);
}  // namespace detail

}  // namespace agnesi
