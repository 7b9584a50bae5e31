// The op table: one entry per op, holding everything every stage needs to know about it.
//
// Every stage (builders, printers, parser, evaluator, and the later passes) reads this table; no
// stage keeps its own list of ops. Adding an op means adding one `Op` value, one table entry in
// symbolic/op_table.cpp and its tests; tests/op_table_test.cpp checks that the table is complete
// and in `Op` order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace agnesi {

class Expr;
struct VjpArgs;

enum class Op : std::uint8_t {
    // leaves
    Constant,
    Variable,
    // unary elementwise
    Neg,
    Exp,
    Log,
    Sqrt,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Abs,
    Sign,
    Log1p,
    Expm1,
    Erf,
    Erfc,
    Sigmoid,
    Softplus,
    Relu,
    Floor,
    Ceil,
    Not,
    Cast,
    // binary elementwise
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Minimum,
    Maximum,
    Atan2,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    // ternary elementwise
    Where,
    // reductions over axes (attribute: axes, keepdims)
    Sum,
    Prod,
    ReduceMax,
    ReduceMin,
    Mean,
    Logsumexp,
    // normalizations along one axis (attribute: axis)
    Softmax,
    LogSoftmax,
    // shape ops
    Reshape,
    Transpose,
    BroadcastTo,
    ExpandDims,
    Squeeze,
    Concat,
    Slice,
    // linear algebra
    Matmul,
    // constant tensors (leaves with a shape; attribute: none)
    Eye,
};

inline constexpr std::size_t kNumOps = static_cast<std::size_t>(Op::Eye) + 1;

/// What kind of op it is; the scheduler, evaluator and printers dispatch on this, not on Op.
enum class OpKind : std::uint8_t { Leaf, Elementwise, Reduction, AxisNormalize, Shape, Matmul };

/// How an elementwise op types its result from its operands' promoted dtype.
enum class TypeRule : std::uint8_t {
    None,     ///< not elementwise
    Same,     ///< promoted dtype (bool counts as int64): neg, abs, add, ...
    Float,    ///< a float: ints promote to float64 (exp, div, atan2, ...)
    Compare,  ///< bool result (lt, eq, ...)
    Logical,  ///< bool operands and result (not, and, or)
    Where,    ///< bool condition, promoted branches
    Cast,     ///< the target dtype
};

/// Binding strength for infix printing and parsing, lowest first.
enum class Prec : std::uint8_t { Lowest, Compare, Add, Mul, Unary, Pow, Atom };

using UnaryF64 = double (*)(double);
using UnaryF32 = float (*)(float);
using UnaryI64 = std::int64_t (*)(std::int64_t);
using BinaryF64 = double (*)(double, double);
using BinaryF32 = float (*)(float, float);
using BinaryI64 = std::int64_t (*)(std::int64_t, std::int64_t);
/// A derivative rule: the vector-Jacobian product of an op. Given the cotangent of the output
/// (VjpArgs, include/agnesi/vjp.hpp), it returns one cotangent per operand, each of that
/// operand's shape; an empty Expr means no gradient flows to that operand (zero, or not
/// differentiable). Rules are written with the public builders and are linear in the cotangent.
using VjpFn = std::vector<Expr> (*)(const VjpArgs&);

/// The scalar semantics of an elementwise op, per compute dtype. A null entry means the op does
/// not take that compute dtype (its type rule promotes away from it).
struct ScalarFns {
    UnaryF64 u64 = nullptr;
    UnaryF32 u32 = nullptr;
    UnaryI64 ui = nullptr;
    BinaryF64 b64 = nullptr;
    BinaryF32 b32 = nullptr;
    BinaryI64 bi = nullptr;
};

struct OpInfo {
    Op op;
    /// Name in text (function-call syntax), in the parser and in debug output.
    std::string_view name;
    /// Number of operands; -1 for variadic (concat).
    int arity;
    OpKind kind;
    TypeRule type = TypeRule::None;
    /// Infix symbol ("+", "<=") for binary operators, "-" for negation; empty for calls.
    std::string_view infix = {};
    Prec prec = Prec::Atom;
    /// LaTeX template: {0}, {1}, {2} are operands (already parenthesized where needed).
    std::string_view latex = {};
    /// Whether a(b, c) == a(c, b) (used by canonicalization).
    bool commutative = false;
    ScalarFns eval = {};
    /// Scalar C/C++/CUDA expression, {0}.. for operands (overloads pick float or double).
    std::string_view c_expr = {};
    /// Derivative rule (reverse mode); every non-leaf op has one.
    VjpFn vjp = nullptr;
};

namespace detail {
/// The op table, indexed by op (symbolic/op_table.cpp).
extern const OpInfo* const kOpTable;
[[noreturn]] void op_out_of_range(std::size_t i);
}  // namespace detail

/// The table entry of an op. Inline: walks of large DAGs ask it at every node.
inline const OpInfo& op_info(Op op) {
    auto i = static_cast<std::size_t>(op);
    if (i >= kNumOps) [[unlikely]]
        detail::op_out_of_range(i);
    return detail::kOpTable[i];
}
/// The op whose text name is `name` ("sin", "amax", ...); nullopt if none.
std::optional<Op> op_from_name(std::string_view name);

}  // namespace agnesi
