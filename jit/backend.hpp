// What the runtime asks of a backend: run one group of a Program with resolved arguments.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agnesi/jit.hpp"
#include "jit/abi.h"
#include "jit/schedule.hpp"

namespace agnesi::jit {

class Executor {
  public:
    virtual ~Executor() = default;
    /// Runs group `gi` (its instrs; a Matmul group's product is already in its buffer).
    virtual void run_group(const Program& p, std::size_t gi, const agnesi_group_args& args) = 0;
    virtual std::string name() const = 0;
    virtual std::string source() const { return {}; }
    /// Matmul group `gi`'s epilogue computed with its product, as cuBLASLt's bias epilogue does
    /// on a GPU; `buffers` hold every buffer of `p`, the product's already computed. Returns
    /// false where the backend does not (the group then runs as any other).
    virtual bool run_fused_epilogue(const Program& p, std::size_t gi, void* const* buffers,
                                    const DimEnv& env) {
        (void)p, (void)gi, (void)buffers, (void)env;
        return false;
    }
};

/// The group evaluator: runs each group's instrs row by row, in tiles, with the op table's scalar
/// functions; needs no compiler.
std::unique_ptr<Executor> make_evaluator(const Program& p);

/// Native code for the CPU: generates, compiles (or loads from the disk cache) and wraps it.
/// Returns null when no host compiler is found.
std::unique_ptr<Executor> make_native(const Program& p, const CompileOptions& options,
                                      CompileStats& stats);

/// The kernels of the CUDA backend run on the CPU (Backend::EmulatedCuda; jit/cuda/emulator.cpp).
/// Throws Error when no host compiler is found.
std::unique_ptr<Executor> make_cuda_emulator(const Program& p, const CompileOptions& options);

/// The batched product of a Matmul group into its buffer (Eigen's GEMM, in the library).
void run_gemm(const Program& p, const Group& g, void* const* buffers, const DimEnv& env,
              int threads);

/// The arguments of one run of a group: its concrete domain, pointers into `buffers` and the
/// strides of its accesses. With rows >= 0 the run covers rows [row0, row0 + rows) of a rank-1
/// domain only (pointers offset, size cut).
struct GroupCall {
    std::vector<std::int64_t> dims, edims, strides;
    std::vector<void*> ptrs;
    agnesi_group_args args{};
};
void prepare_group_call(const Program& p, const Group& g, void* const* buffers, const DimEnv& env,
                        int threads, GroupCall& call, std::int64_t row0 = 0,
                        std::int64_t rows = -1);

/// Two matrix-vector products over one matrix X (n x k, rows contiguous), z = X w and then
/// g = X^T v, where v is computed from z row by row by the pointwise groups between them: the
/// gradient of a linear model. Run together over blocks of rows, X is read once, not twice.
struct GemvPair {
    std::size_t first = 0, second = 0;
    std::vector<std::size_t> members;  ///< pointwise groups between them, run per block
};

/// The pair starting at group `first` for this call's sizes, if the groups allow it: X large
/// enough to leave the caches, every group between the two either a member (rank-1 pointwise
/// over the n rows, reading what the block computed at the same rows only) or independent of
/// the members and the second product (it then runs after them).
std::optional<GemvPair> find_gemv_pair(const Program& p, std::size_t first, const DimEnv& env);

/// Runs the pair: both products and the members, block by block of rows, on `threads` threads
/// when `parallel` (each thread accumulates its own part of g, summed at the end).
void run_gemv_pair(const Program& p, const GemvPair& pair, void* const* buffers, const DimEnv& env,
                   Executor& ex, int threads, bool parallel);

}  // namespace agnesi::jit
