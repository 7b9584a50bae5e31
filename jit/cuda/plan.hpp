// Launch planning: how one group's kernel (jit/cuda/codegen.hpp) is launched for one call. Host
// code only, shared by the CUDA executor and the emulator, so both run the same launches.
#pragma once

#include <cstddef>
#include <string>
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
    /// The launch is dense: the kernel compiled with -DAGNESI_DENSE_LAYOUT runs it (see
    /// codegen.hpp); any other launch needs the kernel compiled without.
    bool dense = false;
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

/// The variant of a group's kernel that a launch takes: 64-bit indices (bit 1), dense (bit 0).
inline int kernel_variant(const LaunchPlan& plan) {
    return (plan.wide ? 2 : 0) | (plan.dense ? 1 : 0);
}
inline constexpr int kKernelVariants = 4;
/// The NVRTC options of a kernel variant.
std::vector<std::string> variant_options(int variant);

/// A group's slots for one binding of the symbolic sizes: each slot's buffer and byte offset, and
/// the arguments of plan_launch (`args.ptrs` left null). `args` points into this object.
struct GroupLayout {
    std::vector<std::size_t> buffer;
    std::vector<std::int64_t> byte_offset, dims, edims, strides;
    agnesi_group_args args{};
    GroupLayout() = default;
    GroupLayout(const GroupLayout&) = delete;
    GroupLayout& operator=(const GroupLayout&) = delete;
    GroupLayout(GroupLayout&&) = default;  // moved vectors keep their storage
    GroupLayout& operator=(GroupLayout&&) = default;
};
void group_layout(const Program& p, const Group& g, const DimEnv& env, GroupLayout& out);

/// The variant of group `g`'s kernel that its calls most likely take: its layout with every
/// symbolic size taken as 1024 and every buffer 256-byte aligned (as the device pool's blocks
/// are). The runtime compiles that one first.
int likely_variant(const Program& p, const Group& g, int sm_count);

/// A Matmul group whose whole epilogue cuBLASLt's bias epilogue computes: its one output is
/// `product + bias`, float32, over one 2-D product of at least two rows and columns, written
/// contiguously, with `bias` a contiguous vector along the rows. The product is then written
/// straight to the output and the group launches no kernel. (`relu(product + bias)` is not:
/// cuBLASLt's ReLU gives 0 for a NaN.)
struct FusedEpilogue {
    bool fused = false;
    int bias = -1;                 ///< the bias's buffer
    std::int64_t bias_offset = 0;  ///< its first element in that buffer
    int out = -1;                  ///< the output's buffer
};
FusedEpilogue fused_epilogue(const Program& p, const Group& g, const DimEnv& env);

}  // namespace agnesi::jit::cuda
