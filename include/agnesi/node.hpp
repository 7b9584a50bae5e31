// The IR: immutable, hash-consed nodes owned by a Context.
//
// Semantics, written once:
// - A node is an op applied to operand nodes, with a dtype, a shape and attributes. Elementwise
//   ops broadcast their operands by NumPy rules and compute in the node's dtype (operands are
//   converted to it first); comparisons compute in the operands' promoted dtype.
// - Floating ops follow IEEE semantics outside their domain: log(-1) and sqrt(-1) are NaN,
//   log(0) is -inf, 1/0 is inf. Integer division does not exist (div of integers is float64).
// - Constants are exact (Number): a node's dtype says how the value is rounded when evaluated.
//   Constants built from C++ numbers or parsed literals are "weak": combined with a typed
//   operand they take its dtype (x32 * 2 stays float32), as in JAX.
// - Nodes never change. Two structurally equal nodes built in one Context are the same object, so
//   pointer equality is structural equality. Structural hashes are computed once, from the
//   payload and the operands' hashes, and do not depend on addresses: they are the same on every
//   run, and commutative operands can be ordered by them.
// - Rewrites may assume only what these rules and a variable's stated assumptions give.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "agnesi/number.hpp"
#include "agnesi/op.hpp"
#include "agnesi/types.hpp"

namespace agnesi {

class Context;

/// What a user states about a variable's values; rewrites may rely on these.
enum Assume : std::uint8_t {
    kNone = 0,
    kPositive = 1,
    kNonnegative = 2,
    kNonzero = 4,
    kInteger = 8,
    kSimplex =
        16,  ///< nonnegative, and sums to 1 along the last axis (probabilities, one-hot rows)
    kNonpositive = 32,
    kNegative = 64,
};
class Expr;
class Match;

/// An assumption, usable two ways: scalar("x", positive) states it for a variable, and in a
/// rewrite rule when(positive(x)) requires it of what the wildcard x matched.
struct Assumption {
    std::uint8_t mask;
    constexpr operator std::uint8_t() const { return mask; }  // NOLINT: a mask where one is asked
    /// The rule condition "known to hold for what `wild` matched" (defined in simplify/).
    std::function<bool(const Match&)> operator()(const Expr& wild) const;
};
inline constexpr Assumption positive{kPositive | kNonnegative | kNonzero};
inline constexpr Assumption nonnegative{kNonnegative};
inline constexpr Assumption negative{kNegative | kNonpositive | kNonzero};
inline constexpr Assumption nonpositive{kNonpositive};
inline constexpr Assumption nonzero{kNonzero};
inline constexpr Assumption integer{kInteger};
/// Rows of probabilities: nonnegative, each slice along the last axis sums to 1.
inline constexpr Assumption simplex{kSimplex | kNonnegative};

using Operands = boost::container::small_vector<const class Node*, 3>;
// Three attribute values inline (reduction axes, an axis, a permutation of up to three axes)
// keep a node within four cache lines; a slice's four values live on the heap.
using Ints = boost::container::small_vector<std::int64_t, 3>;

/// Everything that makes a node, before it is interned. Builders fill one in and hand it to
/// Context::intern, which returns the unique node with that content.
struct NodeDesc {
    Op op = Op::Constant;
    DType dtype = DType::Float64;
    bool weak = false;
    Shape shape;
    Operands operands;
    Number value;                 ///< Constant
    std::string name;             ///< Variable
    std::uint8_t assume = kNone;  ///< Variable
    /// Op attributes: reduction axes (sorted), softmax/concat/expand_dims axis, transpose
    /// permutation, slice (axis, start, stop, step).
    Ints ints;
    bool keepdims = false;  ///< reductions
};

// The fields a traversal reads (op, arity, operands, height) and those interning reads of an
// operand (hash) share the first cache line of a node; the payload of leaves and attributes
// follow. Walks of large DAGs are bound by these loads.
class alignas(64) Node {
  public:
    Op op() const { return op_; }
    DType dtype() const { return dtype_; }
    /// Whether the dtype was taken from a literal and yields to a typed operand.
    bool weak() const { return weak_; }
    const Shape& shape() const { return shape_; }
    std::size_t rank() const { return shape_.size(); }
    const Operands& operands() const { return operands_; }
    const Node* operand(std::size_t i) const { return operands_[i]; }
    std::size_t arity() const { return operands_.size(); }
    const Number& value() const { return value_; }
    const std::string& name() const { return name_; }
    std::uint8_t assumptions() const { return assume_; }
    const Ints& ints() const { return ints_; }
    bool keepdims() const { return keepdims_; }

    std::size_t hash() const { return hash_; }
    /// Longest path to a leaf (leaves are 0).
    std::uint32_t height() const { return height_; }
    Context& context() const { return *ctx_; }
    const OpInfo& info() const { return op_info(op_); }
    bool is_constant() const { return op() == Op::Constant; }
    /// Whether the node may carry attributes (axes, keepdims): not an elementwise op, a
    /// variable or a constant. Those have none (the constructor checks), so a walk that would
    /// compare attributes need not read the cache line they are in.
    bool has_attributes() const {
        return op_ != Op::Constant && op_ != Op::Variable && info().kind != OpKind::Elementwise;
    }
    bool is_variable() const { return op() == Op::Variable; }

    Node(NodeDesc&& d, std::size_t hash, Context* ctx);

  private:
    Op op_;
    DType dtype_;
    bool weak_;
    bool keepdims_;
    std::uint32_t height_;
    std::size_t hash_;
    Operands operands_;
    Context* ctx_;
    std::uint8_t assume_;
    Shape shape_;
    Number value_;
    std::string name_;
    Ints ints_;
};

/// Structural hash of a description (the hash its node will have).
std::size_t structural_hash(const NodeDesc& d);
/// Whether a node has exactly this content (operands compared by pointer).
bool same_content(const Node& n, const NodeDesc& d);

/// A total order on nodes that is the same on every run (hash first, then structure); used to
/// order commutative operands and to print deterministically. Returns <0, 0 or >0.
int structural_compare(const Node* a, const Node* b);

}  // namespace agnesi
