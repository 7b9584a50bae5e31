// What the runtime asks of a backend: run one group of a Program with resolved arguments.
#pragma once

#include <memory>
#include <string>

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
};

/// The group evaluator: runs each group's instrs row by row, in tiles, with the op table's scalar
/// functions; needs no compiler.
std::unique_ptr<Executor> make_evaluator(const Program& p);

/// Native code for the CPU: generates, compiles (or loads from the disk cache) and wraps it.
/// Returns null when no host compiler is found.
std::unique_ptr<Executor> make_native(const Program& p, const CompileOptions& options,
                                      CompileStats& stats);

/// The batched product of a Matmul group into its buffer (Eigen's GEMM, in the library).
void run_gemm(const Program& p, const Group& g, void* const* buffers, const DimEnv& env,
              int threads);

}  // namespace agnesi::jit
