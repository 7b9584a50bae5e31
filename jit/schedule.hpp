// The schedule: a DAG partitioned into fusion groups over buffers. Every backend (the group
// evaluator, generated C++, generated CUDA) runs the same schedule, so the partition is decided
// once, here.
//
// A group iterates over one index domain and computes a straight-line scalar program (SSA `Instr`s)
// at each point. Values inside a group are never stored; only the group's outputs are.
//
// - Pointwise: instrs at every index of `domain`; outputs written at that index.
// - Reduce: the instrs before `reduce_at` run over `domain` (the input shape); the Reduce instr
//   combines them over `axes`; the instrs after it (the epilogue) run over the reduced domain
//   (`domain` with the reduced axes set to 1) and write the outputs there.
// - RowNormalize (softmax / log_softmax along the last axis): instrs before the Normalize instr run
//   over `domain`; the row's max and sum are taken in one pass over each row, then the Normalize
//   value and the epilogue are computed at every index of the row and written.
// - RowReduce (reductions along the last axis and the elementwise work on their rows): a pass
//   over each row per Reduce instr (`stages`, then `reduce_at`), each reducing the instrs since
//   the previous one, which may read the values reduced before; then the epilogue is computed at
//   every index of the row (a reduced value is the same all along it) and written. A layer norm
//   is three passes: the mean, the variance of x - mean, the normalized row.
// - Matmul: `gemm` computes a batched product into its own buffer; the epilogue instrs (a Load of
//   that buffer first) run over its domain and write the outputs.
//
// Loads and stores go through an Access: a buffer seen through a chain of view ops (transpose,
// broadcast, slice, ...). Sizes may be symbolic; `resolve` turns an access into an offset and
// strides for the sizes of one call, so the generated code takes sizes and strides as arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agnesi/expr.hpp"
#include "agnesi/node.hpp"
#include "agnesi/number.hpp"
#include "agnesi/tensor.hpp"

namespace agnesi::jit {

enum class BufferKind : std::uint8_t { Input, Shared, Constant, Temp, Output };

struct Buffer {
    BufferKind kind = BufferKind::Temp;
    DType dtype = DType::Float64;
    Shape shape;                 ///< may hold symbolic sizes
    int slot = -1;               ///< Input: index in inputs; Shared: index in shared; Output: index
    const Node* node = nullptr;  ///< the value it holds
    Tensor value;                ///< Constant: the value (non-scalar constants only)
};

/// A buffer seen through view ops. `views` are shape-op nodes (Transpose, BroadcastTo,
/// ExpandDims, Squeeze, Reshape of a contiguous view, Slice), applied in order to the buffer.
struct Access {
    int buffer = -1;
    std::vector<const Node*> views;
    Shape shape;  ///< the shape after the views
};

enum class InstrKind : std::uint8_t {
    Load,       ///< inputs[input] at the current index
    Const,      ///< a scalar constant `value` in `dtype`
    Apply,      ///< elementwise `op` of args, operands converted to `compute` first
    Reduce,     ///< `op` (Sum, Prod, ReduceMax, ReduceMin, Mean, Logsumexp) of args[0] over axes
    Normalize,  ///< `op` (Softmax, LogSoftmax) of args[0] along the last axis
};

struct Instr {
    InstrKind kind = InstrKind::Const;
    Op op = Op::Constant;
    DType dtype = DType::Float64;    ///< the result's dtype
    DType compute = DType::Float64;  ///< Apply: operands are converted to this first
    int args[3] = {-1, -1, -1};
    int nargs = 0;
    int input = -1;              ///< Load: index into Group::inputs
    Number value;                ///< Const
    const Node* node = nullptr;  ///< the node it computes (for comments and errors)
};

enum class GroupKind : std::uint8_t { Pointwise, Reduce, RowNormalize, Matmul, RowReduce };
/// "pointwise", "reduce", "row-normalize", "matmul" or "row-reduce".
const char* group_kind_name(GroupKind k);
/// "1 group", "3 groups": a count and its noun, for comments in generated code and listings.
std::string counted(std::size_t n, std::string_view noun);

struct Gemm {
    Access a, b;   ///< operands ([..., M, K] and [..., K, N]); views only transpose or broadcast
    int out = -1;  ///< buffer receiving the product (row-major, the matmul node's shape)
};

struct Group {
    GroupKind kind = GroupKind::Pointwise;
    Shape domain;  ///< the index space of the instrs before reduce_at (all instrs for Pointwise)
    std::vector<Access> inputs;
    std::vector<Instr> instrs;
    /// Reduce/RowNormalize/RowReduce: index of the (last) Reduce or Normalize instr; -1
    /// otherwise.
    int reduce_at = -1;
    /// RowReduce: the Reduce instrs of the passes before the last, in order (often none).
    std::vector<int> stages;
    /// Reduce: the axes reduced (sorted, non-negative); the epilogue domain is `domain` with
    /// these axes set to 1.
    std::vector<int> axes;
    /// Reduce: the logical shape of the reduction's result (keepdims or not); epilogue values
    /// have this shape.
    Shape reduced_shape;
    Gemm gemm;  ///< Matmul only
    struct Output {
        int instr = -1;
        Access target;  ///< where it is written (shape: the epilogue domain's logical shape)
    };
    std::vector<Output> outputs;

    /// The shape of the epilogue's index space: `domain` for Pointwise/RowNormalize/Matmul/
    /// RowReduce, `domain` with `axes` set to 1 for Reduce.
    Shape epilogue_domain() const;
    /// Whether instr i runs in the epilogue (after reduce_at).
    bool in_epilogue(int i) const { return reduce_at >= 0 && i > reduce_at; }
    /// RowReduce: the Reduce instrs, one per pass (`stages`, then `reduce_at`).
    std::vector<int> passes() const;
    /// RowReduce: the first instr of pass k (the one after the previous pass's Reduce).
    int pass_begin(std::size_t k) const;
};

struct Program {
    std::vector<Buffer> buffers;
    std::vector<Group> groups;        ///< in execution order
    std::vector<const Node*> inputs;  ///< variable nodes, in call order
    std::vector<const Node*> shared;  ///< shared variable nodes read or updated
    std::vector<int> outputs;         ///< buffer of each output (and then each update value)
    int num_outputs = 0;              ///< the user's outputs; the rest are update values
    std::vector<const Node*> update_targets;  ///< the shared variable of each update value

    std::string to_string() const;
};

/// Partitions `roots` (outputs, then update values) into fusion groups. `inputs` are the
/// variables passed at each call; other free variables must be shared.
Program schedule(const std::vector<const Node*>& roots, const std::vector<const Node*>& inputs,
                 int num_outputs, const std::vector<const Node*>& update_targets);

// ---- sizes at call time --------------------------------------------------------------------

/// Values of symbolic sizes, by id.
using DimEnv = std::unordered_map<Dim, std::int64_t>;

/// `s` with its symbolic sizes replaced by their values.
Shape concrete(const Shape& s, const DimEnv& env);

/// An access for one call: the element offset of its first element and its strides (in
/// elements) over a domain of rank `strides.size()`; broadcast axes have stride 0.
struct Resolved {
    std::int64_t offset = 0;
    std::vector<std::int64_t> strides;
};

/// Resolves `a` over `domain` (concrete): the access's shape is right-aligned and broadcast
/// against the domain, like NumPy.
Resolved resolve(const Program& p, const Access& a, const Shape& domain, const DimEnv& env);
/// Resolves an access of group `g` (a Load's input or an output target): over the concrete
/// `domain` for the instrs before reduce_at, over the epilogue domain after it. For a Reduce
/// group the epilogue access has the reduced logical shape, which is mapped onto the epilogue
/// domain (stride 0 on the reduced axes).
Resolved resolve_in_group(const Program& p, const Group& g, const Access& a, bool epilogue,
                          const DimEnv& env);

/// A Matmul group's product for one call: for each index b of `batch` (row-major),
/// C[b] (m x n, contiguous) = A[b] (m x k) * B[b] (k x n), where A[b] starts at element
/// a_offset + sum(b_d * a_batch[d]) of A's buffer and has row and column strides a_rs, a_cs
/// (likewise B). 1-D operands are promoted as NumPy does; broadcast batch axes have stride 0.
struct GemmLayout {
    std::int64_t m = 0, n = 0, k = 0;
    std::int64_t a_offset = 0, b_offset = 0;
    std::int64_t a_rs = 0, a_cs = 0, b_rs = 0, b_cs = 0;
    Shape batch;
    std::vector<std::int64_t> a_batch, b_batch;
};
GemmLayout gemm_layout(const Program& p, const Group& g, const DimEnv& env);

}  // namespace agnesi::jit
