// Launch planning (see plan.hpp): host code only, shared by the CUDA executor and the emulator.
#include "jit/cuda/plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "agnesi/error.hpp"

namespace agnesi::jit::cuda {
namespace {

struct Axis {
    std::int64_t size = 1;
    bool reduced = false;  // Reduce: a reduced axis; RowNormalize: the row axis
    std::vector<std::int64_t> st;
};

// Drops size-1 axes (except the row axis of a RowNormalize) and merges neighbours of the same
// kind whose strides are contiguous for every slot.
std::vector<Axis> simplify_axes(std::vector<Axis> axes, bool keep_last) {
    std::vector<Axis> out;
    for (std::size_t i = 0; i < axes.size(); ++i) {
        bool last = keep_last && i + 1 == axes.size();
        if (axes[i].size == 1 && !last) continue;
        out.push_back(std::move(axes[i]));
    }
    std::vector<Axis> merged;
    for (std::size_t i = 0; i < out.size(); ++i) {
        bool last = keep_last && i + 1 == out.size();
        if (!merged.empty() && !last && merged.back().reduced == out[i].reduced) {
            Axis& m = merged.back();
            bool ok = true;
            for (std::size_t k = 0; ok && k < m.st.size(); ++k)
                ok = m.st[k] == out[i].st[k] * out[i].size;
            if (ok) {
                m.size *= out[i].size;
                m.st = out[i].st;
                continue;
            }
        }
        merged.push_back(std::move(out[i]));
    }
    return merged;
}

// A split row's blocks reduce at least this many values each (16 per thread of 256).
constexpr std::int64_t kSplitMinValues = 4096;
constexpr std::int64_t kMaxSplitBlocks = std::int64_t(1) << 20;
// A split column's threads reduce at least this many values each; the split aims at this many
// threads per SM (a full SM of an H100).
constexpr std::int64_t kSplitMinColumnValues = 16;
constexpr std::int64_t kThreadsPerSm = 2048;
// A grid's x dimension.
constexpr std::int64_t kMaxGridBlocks = (std::int64_t(1) << 31) - 1;

// A pointwise launch's cap on blocks per SM: 16 blocks of 256 are two rounds of the 8 that an
// SM holds at 32 registers a thread, each block looping over the grid's stride.
// AGNESI_CUDA_POINTWISE_BLOCKS=N sets another (0: no cap, a block per 1024 values and no second
// round of the loop), to measure on a device.
std::int64_t pointwise_blocks_per_sm() {
    static const std::int64_t chosen = [] {
        const char* v = std::getenv("AGNESI_CUDA_POINTWISE_BLOCKS");
        return v && *v ? std::clamp<std::int64_t>(std::atoll(v), 0, 1 << 16) : 16;
    }();
    return chosen;
}

unsigned blocks_for(std::int64_t work, unsigned block, std::int64_t cap) {
    std::int64_t b = (work + block - 1) / block;
    return static_cast<unsigned>(std::clamp<std::int64_t>(b, 1, cap));
}

// Four values of the row per thread (the row loops load four steps at once), whole warps, at
// most 256 threads (128 for a reduction); up to 1024 when there are too few rows to give each SM
// two blocks (a long row summed by one block). Measured on an H100: 1024-thread blocks made
// 16384 rows of 4096 slower (softmax 0.24 -> 0.37 ms), and a sum of 2^20 values faster. On an
// H200, 16384 rows of 4096 (ms, blocks of 128 / 256 / 512 / 1024): softmax 0.198 / 0.167 /
// 0.202 / 0.312, layer norm 0.237 / 0.161 / 0.186 / 0.251, logsumexp 0.090 / 0.105 / 0.151 /
// 0.256. AGNESI_CUDA_ROW_BLOCK=N (32 to 1024) sets the cap for many rows instead, to measure
// others on a device.
unsigned block_for_row(std::int64_t inner, std::int64_t count, int sm_count, bool reduce) {
    static const std::int64_t chosen = [] {
        const char* v = std::getenv("AGNESI_CUDA_ROW_BLOCK");
        return v ? std::clamp<std::int64_t>(std::atoi(v) / 32 * 32, 32, kRowBlockMax) : 0;
    }();
    const std::int64_t many = chosen ? chosen : reduce ? 128 : kBlockSize;
    std::int64_t b = (std::max<std::int64_t>((inner + 3) / 4, 1) + 31) / 32 * 32;
    std::int64_t cap = count < 2 * std::int64_t(sm_count) ? kRowBlockMax : many;
    return static_cast<unsigned>(std::min<std::int64_t>(b, cap));
}

// Whether every row of a dense row kernel reads (or writes) slot k four values at a time: the
// slot is contiguous along the row, each row starting 16 bytes aligned, or an input broadcast
// along it. `axes` are the launch's (at most one kept axis, then the row).
bool dense_row_slot(const std::vector<Axis>& axes, std::size_t k, bool output, DType t,
                    const void* ptr) {
    std::int64_t along = axes.back().st[k];
    if (along == 0) return !output;
    auto bytes = static_cast<std::int64_t>(dtype_size(t));
    if (along != 1 || (bytes != 4 && bytes != 8)) return false;
    if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0) return false;
    return axes.size() == 1 || axes[0].st[k] * bytes % 16 == 0;
}

// A block per row of `inner` values, rows in a grid-stride loop over at most 64 blocks per SM.
// Rows of 128 values or fewer (a warp's four values a thread), when many: a warp per row, 8 in
// a block of 256, at most 8 blocks per SM. A block of 32 threads per row would cap an SM at 32
// rows (and 39% of its threads) and combine each row's values through shared memory and a
// barrier; a warp combines them with shuffles alone. AGNESI_CUDA_WARP_ROWS=0 keeps a block per
// row, to measure the difference on a device.
void row_blocks(LaunchPlan& plan, std::int64_t inner, std::int64_t count, int sm_count,
                bool reduce) {
    static const bool warp_rows = env_switch_on("AGNESI_CUDA_WARP_ROWS");
    plan.block = block_for_row(inner, count, sm_count, reduce);
    if (warp_rows && plan.block == 32 && count >= 2 * std::int64_t(sm_count)) {
        plan.params.warp_rows = 1;
        plan.block = kBlockSize;
        const std::int64_t per_block = kBlockSize / 32;
        plan.grid = static_cast<unsigned>(std::min<std::int64_t>(
            (count + per_block - 1) / per_block, std::int64_t(sm_count) * 8));
        return;
    }
    plan.grid = static_cast<unsigned>(std::min<std::int64_t>(count, std::int64_t(sm_count) * 64));
}

// The threads that take one row of a row kernel.
std::int64_t row_threads(const LaunchPlan& plan) {
    return plan.params.warp_rows ? 32 : std::int64_t(plan.block);
}

}  // namespace

LaunchPlan plan_launch(const Program& p, const Group& g, const agnesi_group_args& a, int sm_count) {
    if (sm_count <= 0) sm_count = 132;
    const auto rank = static_cast<std::size_t>(a.rank);
    const auto nslots = static_cast<std::size_t>(a.num_inputs + a.num_outputs);
    std::vector<bool> epi = epilogue_inputs(g);
    epi.resize(nslots, true);  // outputs are written over the epilogue domain
    auto slot_dtype = [&](std::size_t k) {
        const Access& acc =
            k < g.inputs.size() ? g.inputs[k] : g.outputs[k - g.inputs.size()].target;
        return p.buffers[static_cast<std::size_t>(acc.buffer)].dtype;
    };
    bool reduce = g.kind == GroupKind::Reduce;
    // A row normalization or row reduction: a block per row of the last axis.
    bool normalize = g.kind == GroupKind::RowNormalize || g.kind == GroupKind::RowReduce;
    std::vector<Axis> axes;
    for (std::size_t d = 0; d < rank; ++d) {
        Axis ax;
        ax.size = a.dims[d];
        ax.reduced =
            reduce ? std::find(g.axes.begin(), g.axes.end(), static_cast<int>(d)) != g.axes.end()
                   : normalize && d + 1 == rank;
        for (std::size_t k = 0; k < nslots; ++k) {
            std::int64_t s = a.strides[k * rank + d];
            ax.st.push_back(reduce && epi[k] && ax.reduced ? 0 : s);
        }
        axes.push_back(std::move(ax));
    }
    if (normalize && rank == 0) axes.push_back({1, true, std::vector<std::int64_t>(nslots, 0)});
    // Kept axes first, reduced (or row) axes last; both keep their order.
    std::stable_partition(axes.begin(), axes.end(), [](const Axis& x) { return !x.reduced; });
    axes = simplify_axes(std::move(axes), normalize);
    if (axes.size() > static_cast<std::size_t>(kMaxRank))
        throw ShapeError(
            fmt::format("CUDA kernels take at most {} axes after merging; group "
                        "has {}",
                        kMaxRank, axes.size()));

    LaunchPlan plan;
    CudaParams& P = plan.params;
    P.rank = static_cast<std::int32_t>(axes.size());
    std::int64_t count = 1, inner = 1;
    for (std::size_t i = 0; i < axes.size(); ++i) {
        P.dims[i] = axes[i].size;
        (axes[i].reduced ? inner : count) *= axes[i].size;
        if (!axes[i].reduced) ++P.nkept;
    }
    P.count = count;
    P.inner = inner;
    plan.strides.resize(nslots);
    std::int64_t max_off = 0;
    for (std::size_t k = 0; k < nslots; ++k) {
        std::int64_t off = 0;
        for (std::size_t i = 0; i < axes.size(); ++i) {
            plan.strides[k].s[i] = axes[i].st[k];
            off += (axes[i].size > 0 ? axes[i].size - 1 : 0) * std::abs(axes[i].st[k]);
        }
        max_off = std::max(max_off, off);
    }
    // 32-bit indices with room for the grid stride past the end.
    constexpr std::int64_t kNarrow = std::int64_t(1) << 30;
    plan.wide = count >= kNarrow || inner >= kNarrow || max_off >= kNarrow;

    if (g.kind == GroupKind::Pointwise || g.kind == GroupKind::Matmul) {
        P.inner = 0;
        if (count == 0) {
            plan.launch = false;
            return plan;
        }
        bool flat = axes.size() <= 1;
        for (std::size_t k = 0; flat && k < nslots; ++k) {
            std::int64_t s = axes.empty() ? 0 : axes[0].st[k];
            flat = s == 0 || s == 1;
            if (s == 0) P.bcast |= std::uint64_t(1) << k;
        }
        P.mode = flat ? 1 : 0;
        if (flat && vectorizable(p, g)) {
            bool aligned = true;
            for (std::size_t k = 0; k < nslots; ++k)
                if (!((P.bcast >> k) & 1))
                    aligned = aligned && reinterpret_cast<std::uintptr_t>(a.ptrs[k]) % 16 == 0;
            if (aligned) P.mode = 2;
        }
        // Rows by 4: the last axis a multiple of 4, contiguous or broadcast in every slot
        // (contiguous in outputs), each contiguous slot's rows 16 bytes aligned.
        if (!flat && vectorizable(p, g) && axes.back().size % 4 == 0) {
            bool rows4 = true;
            for (std::size_t k = 0; rows4 && k < nslots; ++k) {
                std::int64_t last = axes.back().st[k];
                bool output = k >= static_cast<std::size_t>(a.num_inputs);
                rows4 = last == 1 || (last == 0 && !output);
                if (last != 1) continue;
                rows4 = rows4 && reinterpret_cast<std::uintptr_t>(a.ptrs[k]) % 16 == 0;
                for (std::size_t i = 0; rows4 && i + 1 < axes.size(); ++i)
                    rows4 = axes[i].st[k] % 4 == 0;
            }
            if (rows4) P.mode = 3;
        }
        plan.dense = P.mode == 1 || P.mode == 2 || (P.mode == 3 && P.rank == 2);
        std::int64_t work = P.mode >= 2 ? std::max<std::int64_t>(count / 4, 1) : count;
        plan.block = kBlockSize;
        const std::int64_t per_sm = pointwise_blocks_per_sm();
        plan.grid =
            blocks_for(work, plan.block, per_sm ? std::int64_t(sm_count) * per_sm : kMaxGridBlocks);
        return plan;
    }
    if (count == 0) {
        plan.launch = false;
        return plan;
    }
    if (reduce) {
        Op op = g.instrs[static_cast<std::size_t>(g.reduce_at)].op;
        if (inner == 0 && (op == Op::ReduceMax || op == Op::ReduceMin))
            throw ValueError(fmt::format("{} of an empty axis", op_info(op).name));
        // Rows (a block per output) when the reduced values are contiguous for some input or
        // there are fewer outputs than a warp's threads; columns otherwise, where a warp reads
        // 32 neighbouring outputs' values at once (a block per output would read one value of
        // each 32-byte sector).
        bool contiguous = false;
        if (P.nkept < P.rank)
            for (std::size_t k = 0; k < nslots; ++k)
                contiguous = contiguous || (!epi[k] && axes.back().st[k] == 1);
        bool rows = P.nkept < P.rank && (contiguous || count < 32);
        if (inner <= 1) rows = false;
        P.mode = rows ? 0 : 1;
        // Dense: rows, with at most one kept axis, each read four values at a time.
        plan.dense = rows && P.nkept <= 1 && P.rank == P.nkept + 1 && rows_by_four();
        for (std::size_t k = 0; plan.dense && k < nslots; ++k)
            plan.dense = epi[k] || dense_row_slot(axes, k, false, slot_dtype(k), a.ptrs[k]);
        // Rows too few to give every SM two blocks, and long: each row split across blocks of
        // at least kSplitMinValues values.
        std::int64_t split = 1;
        if (rows && count < 2 * std::int64_t(sm_count) && inner >= 4 * kSplitMinValues)
            split =
                std::min((2 * std::int64_t(sm_count) + count - 1) / count, inner / kSplitMinValues);
        // Columns too few to give every SM a full load of threads: each column split across
        // threads of at least kSplitMinColumnValues values, in parts of 8 (a block's warps).
        const std::int64_t threads = std::int64_t(sm_count) * kThreadsPerSm;
        if (!rows && inner >= 8 * kSplitMinColumnValues && count < threads)
            split = std::min(((threads + count - 1) / count + 7) / 8 * 8,
                             inner / kSplitMinColumnValues / 8 * 8);
        if (split >= 2 && count * split <= kMaxSplitBlocks) {
            P.split = static_cast<std::int32_t>(split);
            plan.block = kBlockSize;
            static_assert(kBlockSize == 256, "a split column's block is 32 outputs by 8 parts");
            // Partial results that leave a block: one per block of a row, one per 8 parts of
            // a column.
            const std::int64_t parts = rows ? split : split / 8;
            plan.grid = rows ? static_cast<unsigned>(count * split)
                             : blocks_for((count + 31) / 32 * 32 * split, plan.block,
                                          std::int64_t(sm_count) * 16);
            plan.workspace = static_cast<std::size_t>(count * parts) * kSplitSlotBytes +
                             static_cast<std::size_t>(count) * sizeof(std::uint32_t);
        } else if (rows) {
            row_blocks(plan, inner, count, sm_count, true);
        } else {
            plan.block = kBlockSize;
            plan.grid = blocks_for(count, plan.block, std::int64_t(sm_count) * 16);
        }
        return plan;
    }
    // RowNormalize and RowReduce: a block per row; dense when there is at most one kept axis and
    // every slot moves four values at a time.
    if (inner == 0) {
        plan.launch = false;
        return plan;
    }
    row_blocks(plan, inner, count, sm_count, false);
    plan.dense = P.rank <= 2 && rows_by_four();
    for (std::size_t k = 0; plan.dense && k < nslots; ++k)
        plan.dense = dense_row_slot(axes, k, k >= static_cast<std::size_t>(a.num_inputs),
                                    slot_dtype(k), a.ptrs[k]);
    // A kernel that holds its rows in registers takes only the rows that fit there densely.
    if (const int steps = row_cache_plan(p, g).steps; steps > 0)
        plan.dense = plan.dense && inner % 4 == 0 && inner <= 4 * steps * row_threads(plan);
    return plan;
}

std::vector<std::string> variant_options(int variant) {
    // AGNESI_CUDA_STREAMING=1 marks pointwise loops' 16-byte stores evict-first, =2 their loads
    // too: an experiment for a device, off by default.
    static const int streaming = [] {
        const char* v = std::getenv("AGNESI_CUDA_STREAMING");
        return v ? std::clamp(std::atoi(v), 0, 2) : 0;
    }();
    std::vector<std::string> o;
    if (streaming >= 1) o.push_back("-DAGNESI_STREAM_STORES");
    if (streaming >= 2) o.push_back("-DAGNESI_STREAM_LOADS");
    if (variant & 2) o.push_back("-DAGNESI_WIDE_INDEX");
    if (variant & 1) o.push_back("-DAGNESI_DENSE_LAYOUT");
    return o;
}

void group_layout(const Program& p, const Group& g, const DimEnv& env, GroupLayout& out) {
    out = GroupLayout{};
    Shape d = concrete(g.domain, env), e = concrete(g.epilogue_domain(), env);
    out.dims.assign(d.begin(), d.end());
    out.edims.assign(e.begin(), e.end());
    auto add = [&](const Access& a, bool epi) {
        Resolved r = resolve_in_group(p, g, a, epi, env);
        auto b = static_cast<std::size_t>(a.buffer);
        out.buffer.push_back(b);
        out.byte_offset.push_back(r.offset *
                                  static_cast<std::int64_t>(dtype_size(p.buffers[b].dtype)));
        out.strides.insert(out.strides.end(), r.strides.begin(), r.strides.end());
    };
    std::vector<bool> epi = epilogue_inputs(g);
    for (std::size_t k = 0; k < g.inputs.size(); ++k) add(g.inputs[k], epi[k]);
    for (const auto& o : g.outputs) add(o.target, true);
    out.args.rank = static_cast<std::int64_t>(out.dims.size());
    out.args.dims = out.dims.data();
    out.args.edims = out.edims.data();
    out.args.strides = out.strides.data();
    out.args.num_inputs = static_cast<std::int64_t>(g.inputs.size());
    out.args.num_outputs = static_cast<std::int64_t>(g.outputs.size());
}

int likely_variant(const Program& p, const Group& g, int sm_count) {
    constexpr std::int64_t kGuess = 1024;
    DimEnv env;
    auto bind = [&](const Shape& s) {
        for (Dim d : s)
            if (is_symbolic(d)) env.emplace(d, kGuess);
    };
    bind(g.domain);
    bind(g.epilogue_domain());
    for (const Buffer& b : p.buffers) bind(b.shape);
    try {
        GroupLayout l;
        group_layout(p, g, env, l);
        std::vector<void*> ptrs;
        for (std::int64_t off : l.byte_offset)
            ptrs.push_back(reinterpret_cast<void*>(
                static_cast<std::uintptr_t>((std::int64_t(1) << 40) + off)));
        l.args.ptrs = ptrs.data();
        return kernel_variant(plan_launch(p, g, l.args, sm_count));
    } catch (const Error&) {
        return 1;  // no launch at the guessed sizes (an empty max): calls decide
    }
}

FusedEpilogue fused_epilogue(const Program& p, const Group& g, const DimEnv& env) {
    FusedEpilogue no;
    if (g.kind != GroupKind::Matmul || g.outputs.size() != 1) return no;
    auto dtype = [&](int buffer) { return p.buffers[static_cast<std::size_t>(buffer)].dtype; };
    if (dtype(g.gemm.out) != DType::Float32) return no;
    GemmLayout l = gemm_layout(p, g, env);
    if (!l.batch.empty() || l.m < 2 || l.n < 2 || l.k < 1) return no;
    // cuBLASLt writes only the epilogue's result: the product must be a temporary that no other
    // group reads.
    if (p.buffers[static_cast<std::size_t>(g.gemm.out)].kind != BufferKind::Temp) return no;
    for (const Group& h : p.groups)
        if (&h != &g)
            for (const Access& a : h.inputs)
                if (a.buffer == g.gemm.out) return no;
    // Exactly: the product's Load, the bias's Load and their float32 sum. Not a ReLU of it:
    // cuBLASLt's is max(x, 0), which turns a NaN into 0 where relu keeps it (and the same
    // function would then give 0 or NaN as its buffers' alignment let it fuse or not).
    int prod = -1, bias = -1, add = -1;
    for (std::size_t i = 0; i < g.instrs.size(); ++i) {
        const Instr& in = g.instrs[i];
        int at = static_cast<int>(i);
        if (in.dtype != DType::Float32) return no;
        if (in.kind == InstrKind::Load) {
            const Access& a = g.inputs[static_cast<std::size_t>(in.input)];
            if (a.buffer == g.gemm.out && a.views.empty() && prod < 0)
                prod = at;
            else if (bias < 0 && dtype(a.buffer) == DType::Float32)
                bias = at;
            else
                return no;
        } else if (in.kind == InstrKind::Apply && in.compute == DType::Float32 && in.nargs >= 1) {
            if (in.op == Op::Add && add < 0)
                add = at;
            else
                return no;
        } else {
            return no;
        }
    }
    if (prod < 0 || bias < 0 || add < 0) return no;
    const Instr& sum = g.instrs[static_cast<std::size_t>(add)];
    if (!((sum.args[0] == prod && sum.args[1] == bias) ||
          (sum.args[0] == bias && sum.args[1] == prod)))
        return no;
    const Group::Output& o = g.outputs[0];
    if (o.instr != add) return no;
    // The bias: one value per column, contiguous, the same on every row.
    const Access& ba =
        g.inputs[static_cast<std::size_t>(g.instrs[static_cast<std::size_t>(bias)].input)];
    Resolved rb = resolve_in_group(p, g, ba, true, env);
    if (rb.strides.size() != 2 || rb.strides[0] != 0 || rb.strides[1] != 1) return no;
    // The output: the whole domain, row-major from its start.
    Resolved ro = resolve_in_group(p, g, o.target, true, env);
    if (ro.offset != 0 || ro.strides.size() != 2 || ro.strides[0] != l.n || ro.strides[1] != 1)
        return no;
    FusedEpilogue f;
    f.fused = true;
    f.bias = ba.buffer;
    f.bias_offset = rb.offset;
    f.out = o.target.buffer;
    return f;
}

}  // namespace agnesi::jit::cuda
