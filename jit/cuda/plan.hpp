// Launch planning: how one group's kernel (jit/cuda/codegen.hpp) is launched for one call. Host
// code only, shared by the CUDA executor and the emulator, so both run the same launches.
#pragma once

#include <cstddef>
#include <vector>

#include "jit/abi.h"
#include "jit/cuda/codegen.hpp"
#include "jit/schedule.hpp"

namespace agnesi::jit::cuda {

/// How one group is launched for one call: the parameters (index width included), one strides
/// block per slot, and the grid. Computed on the host from the resolved accesses; `launch` false
/// when there is nothing to compute (an empty domain).
struct LaunchPlan {
    CudaParams params;
    std::vector<CudaStrides> strides;
    bool wide = false;
    bool launch = true;
    unsigned grid = 1, block = kBlockSize;
    /// Bytes of workspace the launch needs (a split reduction), zero-filled before its first use;
    /// the caller sets params.ws to its address.
    std::size_t workspace = 0;
};

/// Plans group `g` for the arguments `a` (device addresses in a.ptrs, used only for their
/// alignment). Throws ShapeError for a domain of more than kMaxRank axes after merging, and
/// ValueError for a max or min over an empty axis.
LaunchPlan plan_launch(const Program& p, const Group& g, const agnesi_group_args& a, int sm_count);

/// A Matmul group whose whole epilogue cuBLASLt's bias epilogue computes: its one output is
/// `product + bias` or `relu(product + bias)`, float32, over one 2-D product of at least two rows
/// and columns, written contiguously, with `bias` a contiguous vector along the rows. The product
/// is then written straight to the output and the group launches no kernel.
struct FusedEpilogue {
    bool fused = false;
    bool relu = false;
    int bias = -1;                 ///< the bias's buffer
    std::int64_t bias_offset = 0;  ///< its first element in that buffer
    int out = -1;                  ///< the output's buffer
};
FusedEpilogue fused_epilogue(const Program& p, const Group& g, const DimEnv& env);

}  // namespace agnesi::jit::cuda
