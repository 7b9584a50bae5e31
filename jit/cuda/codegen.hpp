// CUDA C++ source for a Program: one `extern "C" __global__` kernel per fusion group, compiled by
// NVRTC. The source includes no header (NVRTC compile time stays low); the fixed-width types and
// scalar helpers come from the shared prelude (jit/scalar_emit.hpp).
//
// Every kernel takes the launch parameters by value (CudaParams below, mirrored in the source),
// then one (pointer, strides) pair per argument slot: the group's inputs, then its outputs, as in
// jit/abi.h. Indices are 32-bit unless the source is compiled with -DAGNESI_WIDE_INDEX; the
// runtime compiles that variant only when a launch has an index or offset past 2^30.
//
// - Pointwise and Matmul (the epilogue; the product itself is cuBLAS's): a grid-stride loop over
//   the domain in one of three modes: strided (any strides, index decomposed over `dims`), flat
//   (every slot contiguous or a broadcast scalar), flat by 4 (flat, 4-byte dtypes, 16-byte
//   aligned: float4/int4 loads and stores).
// - Reduce: the domain is permuted so kept axes come first (`nkept` of them, `count` outputs) and
//   reduced axes last (`inner` values each). Mode 0 ("rows"): one block per output, warp shuffles
//   and a block reduction, for a reduced axis that is contiguous; mode 1 ("columns"): one thread
//   per output, for reductions over outer axes, where neighbouring threads read neighbouring
//   elements. Either splits an output across blocks (or threads) when the outputs are too few
//   to fill the device. The epilogue runs once per output.
// - RowNormalize: one block per row; one pass reads the row for its max and sum of exponentials
//   (online, rescaling the sum when the max grows), a second writes the normalized values.
//
// Each kernel also compiles, with -DAGNESI_DENSE_LAYOUT, to a smaller variant for dense
// launches only (LaunchPlan::dense): pointwise in the flat modes and in rows by 4 over two axes;
// reductions and row kernels with at most one kept axis and rows that move four values at a
// time. The runtime compiles the variant that the function's layouts likely need, and the other
// one on the first call that needs it.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "agnesi/error.hpp"
#include "jit/schedule.hpp"

namespace agnesi::jit::cuda {

inline constexpr int kMaxRank = 8;
/// The most argument slots one kernel takes (the bcast mask is 64 bits).
inline constexpr int kMaxSlots = 64;
inline constexpr int kBlockSize = 256;
/// The most threads of a block per row (row reductions and normalizations): a long row is read
/// four values per thread, all in flight at once, and a re-read of it hits the L1 cache.
inline constexpr int kRowBlockMax = 1024;
/// Groups with more instrs than this get no flat-by-4 mode.
inline constexpr std::size_t kMaxVectorInstrs = 24;

/// The launch parameters, laid out exactly as `agnesi_params` in the generated source.
struct CudaParams {
    std::int64_t count = 0;  ///< Pointwise: elements; Reduce/RowNormalize: outputs or rows
    std::int64_t inner = 0;  ///< Reduce: values per output; RowNormalize: row length
    std::int64_t dims[kMaxRank] = {};
    std::int32_t rank = 0;
    std::int32_t nkept = 0;  ///< Reduce: leading kept axes of dims
    /// Pointwise: 0 strided, 1 flat, 2 flat by 4, 3 rows by 4; Reduce: 0 rows, 1 columns
    std::int32_t mode = 0;
    /// Reduce: parts per output (0 or 1: one), blocks in mode 0, threads in mode 1 (a multiple
    /// of 8: a block's warps take 8 parts of 32 outputs)
    std::int32_t split = 0;
    std::uint64_t bcast = 0;  ///< flat modes: bit k set when slot k has all-zero strides
    /// Reduce with a split: the workspace (kSplitSlotBytes per block's partial result, then a
    /// counter per output), zero-filled before its first launch; each output's last block
    /// leaves its counter at zero again.
    std::uint64_t ws = 0;
    /// Row kernels (RowNormalize, RowReduce, Reduce in mode 0 without a split): 1 when each
    /// warp takes a row of its own (blockDim.x / 32 rows a block), 0 when the block takes one.
    std::int32_t warp_rows = 0;
    std::int32_t unused = 0;
};
struct CudaStrides {
    std::int64_t s[kMaxRank] = {};
};
static_assert(sizeof(CudaParams) == 120 && sizeof(CudaStrides) == 64);
/// Bytes of one block's partial result in a split reduction's workspace (any accumulator fits).
inline constexpr std::size_t kSplitSlotBytes = 32;

/// The complete source of every group's kernels (what `agnesi emit --target cuda` prints).
/// `name` only labels it and is reduced to [A-Za-z0-9_].
std::string generate_cuda_source(const Program& p, const std::string& name);

/// The source of the kernels of `groups` only (one module of a function compiled in several);
/// empty when none of them has a kernel.
std::string generate_cuda_source(const Program& p, const std::string& name,
                                 const std::vector<std::size_t>& groups);

/// The source of group `gi` alone (prelude and its kernel), so a function's groups compile
/// in parallel and are cached one by one. Empty for a Matmul group without epilogue.
std::string generate_cuda_group_source(const Program& p, const std::string& name, std::size_t gi);

/// The source lines that NVRTC's `log` reports errors on ("<program>(<line>): error: ...").
std::set<int> error_lines(const std::string& log);

/// What NVRTC's `log` of a failed compile of `source` (generated from `p`) says of the groups:
/// for each group whose code holds a line the log marks as an error, its index, kind and shape,
/// and the expressions it computes. Empty when no marked line is in a group's code.
std::string failing_groups(const Program& p, const std::string& source, const std::string& log);

/// NVRTC's error `e` about kernels of `p`, with failing_groups after its first line.
CompileError with_failing_groups(const CompileError& e, const Program& p);

/// The kernel of group `gi`: "agnesi_<name>_g<gi>" with `name` reduced to [A-Za-z0-9_].
std::string cuda_kernel_name(const std::string& name, std::size_t gi);

/// Whether the group has a kernel (a Matmul group with no epilogue outputs has none).
bool has_kernel(const Group& g);

/// Whether the group's kernels include the flat-by-4 mode (every slot a 4-byte dtype).
bool vectorizable(const Program& p, const Group& g);

/// Whether the switch `name` is on: unset or anything but "0" (the AGNESI_CUDA_* switches below
/// and in plan.cpp, which turn a kernel path off to measure it on a device).
bool env_switch_on(const char* name);

/// Whether row kernels may read and write four consecutive values at once (16-byte accesses).
/// AGNESI_CUDA_ROWS_BY_FOUR=0 keeps every row on strided scalar accesses, to measure what the
/// 16-byte accesses of contiguous rows bring on a device.
bool rows_by_four();

/// Whether dense row kernels hold their rows in registers (see RowCache).
/// AGNESI_CUDA_ROW_CACHE=0 reads each row again in each loop over it, to measure what holding
/// it brings on a device.
bool row_cache();

/// A row kernel's row held in registers: its dense variant (LaunchPlan::dense) then takes only
/// rows of a multiple of 4 values and at most 4 * steps values a thread, each read from memory
/// once. A row normalization holds the values its row function computes (16 float32 or 8
/// float64 a thread); a row reduction holds the inputs that two or more of its loops over the
/// row read (each through a slot of its own), up to 16 registers' worth a thread (a block of
/// 1024 threads has 64 a thread). A row of a static length takes only the steps that a warp
/// needs for it (one for rows of up to 128 values).
struct RowCache {
    int steps = 0;                   ///< steps of four values a thread; 0: rows are read again
    std::vector<std::size_t> slots;  ///< RowReduce: the slots whose registers hold values
    std::vector<int> held;           ///< per slot: the slot whose registers hold its values, or -1
    std::vector<int> first;          ///< per slot of `slots`: the loop over the row that fills them
};
RowCache row_cache_plan(const Program& p, const Group& g);

/// For each input of `g`: whether its Loads are in the epilogue (after reduce_at).
std::vector<bool> epilogue_inputs(const Group& g);

}  // namespace agnesi::jit::cuda
