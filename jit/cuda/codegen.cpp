// CUDA source generation (see codegen.hpp).
#include "jit/cuda/codegen.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>

#include "agnesi/error.hpp"
#include "agnesi/print.hpp"
#include "jit/scalar_emit.hpp"

namespace agnesi::jit::cuda {

bool env_switch_on(const char* name) {
    const char* v = std::getenv(name);
    return !(v && std::strcmp(v, "0") == 0);
}

bool rows_by_four() {
    static const bool on = env_switch_on("AGNESI_CUDA_ROWS_BY_FOUR");
    return on;
}

bool row_cache() {
    static const bool on = env_switch_on("AGNESI_CUDA_ROW_CACHE");
    return on;
}

namespace {

// The slots that g's Loads in [lo, hi) read, each once, in order.
std::vector<std::size_t> loads_in(const Group& g, int lo, int hi) {
    std::vector<std::size_t> ks;
    for (int i = lo; i < hi; ++i) {
        const Instr& in = g.instrs[static_cast<std::size_t>(i)];
        if (in.kind != InstrKind::Load) continue;
        auto k = static_cast<std::size_t>(in.input);
        if (std::find(ks.begin(), ks.end(), k) == ks.end()) ks.push_back(k);
    }
    std::sort(ks.begin(), ks.end());
    return ks;
}

// The slots each loop of a RowReduce over its row loads: one loop per pass, then the epilogue's.
std::vector<std::vector<std::size_t>> row_loops(const Group& g) {
    std::vector<std::vector<std::size_t>> loops;
    std::vector<int> passes = g.passes();
    for (std::size_t k = 0; k < passes.size(); ++k)
        loops.push_back(loads_in(g, g.pass_begin(k), passes[k]));
    loops.push_back(loads_in(g, g.reduce_at + 1, static_cast<int>(g.instrs.size())));
    return loops;
}

}  // namespace

RowCache row_cache_plan(const Program& p, const Group& g) {
    RowCache c;
    if (!row_cache() || !rows_by_four()) return c;
    auto steps = [](std::size_t words) {
        constexpr std::size_t kCacheWords = 16;
        for (int r : {4, 2, 1})
            if (words > 0 && 4 * static_cast<std::size_t>(r) * words <= kCacheWords) return r;
        return 0;
    };
    auto words = [](DType t) { return std::max<std::size_t>(dtype_size(t) / 4, 1); };
    // A row of a static length takes no more steps than its narrowest launch needs (a warp, 32
    // threads): each step is a copy of the loop bodies and four registers a slot.
    const Dim row = g.domain.empty() ? 1 : g.domain.back();
    auto fit = [&](int r) {
        if (r == 0 || is_symbolic(row)) return r;
        int f = 1;
        while (f < r && 4 * 32 * static_cast<Dim>(f) < row) f *= 2;
        return f;
    };
    if (g.kind == GroupKind::RowNormalize) {
        c.steps = fit(steps(words(g.instrs[static_cast<std::size_t>(g.reduce_at)].dtype)));
        return c;
    }
    if (g.kind != GroupKind::RowReduce) return c;
    const std::vector<std::vector<std::size_t>> loops = row_loops(g);
    // Each pass loads its values through slots of its own: slots of one buffer through the
    // same views read the same values, and the first such slot (rep) stands for them all.
    const std::size_t nslots = g.inputs.size() + g.outputs.size();
    std::vector<std::size_t> rep(g.inputs.size());
    for (std::size_t k = 0; k < g.inputs.size(); ++k) {
        const Access& a = g.inputs[k];
        rep[k] = k;
        for (std::size_t q = 0; q < k && rep[k] == k; ++q) {
            const Access& b = g.inputs[q];
            if (b.buffer == a.buffer && b.views == a.views && b.shape == a.shape) rep[k] = rep[q];
        }
    }
    // For each rep: the loops that read it, and the first.
    std::vector<int> uses(g.inputs.size(), 0), first(g.inputs.size(), -1);
    for (std::size_t l = 0; l < loops.size(); ++l) {
        std::vector<bool> seen(g.inputs.size(), false);
        for (std::size_t q : loops[l]) {
            std::size_t r = rep[q];
            if (seen[r]) continue;
            seen[r] = true;
            if (uses[r]++ == 0) first[r] = static_cast<int>(l);
        }
    }
    c.held.assign(nslots, -1);
    c.first.assign(nslots, -1);
    std::size_t total = 0;
    for (std::size_t k = 0; k < g.inputs.size(); ++k) {
        if (uses[rep[k]] < 2) continue;
        c.held[k] = static_cast<int>(rep[k]);
        if (rep[k] != k) continue;
        c.slots.push_back(k);
        c.first[k] = first[k];
        total += words(p.buffers[static_cast<std::size_t>(g.inputs[k].buffer)].dtype);
    }
    c.steps = fit(steps(total));
    if (c.steps == 0) c = RowCache{};
    return c;
}

namespace {

std::string sanitize(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 48))
        out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
    return out.empty() ? "f" : out;
}

// Loops are not unrolled: the kernels are memory-bound, and unrolled copies of a long fused
// body are most of NVRTC's compile time. The index type is 32-bit unless the source is compiled
// with -DAGNESI_WIDE_INDEX (the runtime does that only for launches that need it).
// Compiled with -DAGNESI_DENSE_LAYOUT, the kernels take dense launches only (LaunchPlan::dense)
// and leave out the code of other layouts: 5-25% fewer instructions for NVRTC to compile.
const char* kPrelude = R"(#define AGNESI_MAX_RANK 8
#define AGNESI_NO_UNROLL _Pragma("unroll 1")
#define AGNESI_UNROLL _Pragma("unroll")
#ifdef AGNESI_WIDE_INDEX
typedef int64_t agnesi_index;
#else
typedef int agnesi_index;
#endif
#ifdef AGNESI_DENSE_LAYOUT
#define AGNESI_DENSE true
#else
#define AGNESI_DENSE false
#endif
struct agnesi_params {
    int64_t count;
    int64_t inner;
    int64_t dims[AGNESI_MAX_RANK];
    int32_t rank;
    int32_t nkept;
    int32_t mode;
    int32_t split;
    uint64_t bcast;
    uint64_t ws;
    int32_t warp_rows;
    int32_t unused;
};
struct agnesi_strides { int64_t s[AGNESI_MAX_RANK]; };
// Four consecutive values of 4 or 8 bytes from a 16-byte aligned address: one or two 16-byte
// loads (or stores) where there would be four; agnesi_vld and agnesi_vst move a float4 or int4.
// (The CPU emulator checks the alignment of each.)
#ifndef AGNESI_ASSERT_ALIGNED
#define AGNESI_ASSERT_ALIGNED(p)
#endif
template <class T> struct alignas(16) agnesi_vec4 { T v[4]; };
template <class T> static __device__ __forceinline__ bool agnesi_al4(const T* p) {
    return (sizeof(T) == 4 || sizeof(T) == 8) && ((unsigned long long)p & 15) == 0;
}
// AGNESI_STREAM_LOADS and AGNESI_STREAM_STORES (options that AGNESI_CUDA_STREAMING sets, to
// measure on a device) mark them evict-first (.cs): values that a pointwise loop touches once.
template <class V, class T> static __device__ __forceinline__ V agnesi_vld(const T* p) {
    AGNESI_ASSERT_ALIGNED(p);
#if defined(__CUDA_ARCH__) && defined(AGNESI_STREAM_LOADS)
    return __ldcs(reinterpret_cast<const V*>(p));
#else
    return *reinterpret_cast<const V*>(p);
#endif
}
template <class V, class T> static __device__ __forceinline__ void agnesi_vst(T* p, const V& v) {
    AGNESI_ASSERT_ALIGNED(p);
#if defined(__CUDA_ARCH__) && defined(AGNESI_STREAM_STORES)
    __stcs(reinterpret_cast<V*>(p), v);
#else
    *reinterpret_cast<V*>(p) = v;
#endif
}
template <class T>
static __device__ __forceinline__ void agnesi_ld4(const T* p, T& a, T& b, T& c, T& d) {
    AGNESI_ASSERT_ALIGNED(p);
    const agnesi_vec4<T> w = *reinterpret_cast<const agnesi_vec4<T>*>(p);
    a = w.v[0]; b = w.v[1]; c = w.v[2]; d = w.v[3];
}
template <class T>
static __device__ __forceinline__ void agnesi_st4(T* p, const T a, const T b, const T c, const T d) {
    agnesi_vec4<T> w;
    w.v[0] = a; w.v[1] = b; w.v[2] = c; w.v[3] = d;
    AGNESI_ASSERT_ALIGNED(p);
    *reinterpret_cast<agnesi_vec4<T>*>(p) = w;
}
// The larger of two values, NaN if either is.
template <class T> static __device__ __forceinline__ T agnesi_max_nan(T a, T b) {
    return a != a ? a : (b != b || b > a ? b : a);
}
struct agnesi_add_op {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct agnesi_max_op {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return agnesi_max_nan(a, b); }
};
// The values of a row's threads combined by `op` (`idle` its identity), every thread getting the
// result: a warp's by shuffles (wr: the warp has a row of its own), else the block's.
template <class T, class Op> static __device__ __forceinline__ T agnesi_row_reduce(T v, Op op, T idle, bool wr) {
    __shared__ T part[32];
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
    if (wr) return __shfl_sync(0xffffffffu, v, 0);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < (int)((blockDim.x + 31) >> 5) ? part[lane] : idle;
        for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    v = part[0];
    __syncthreads();
    return v;
}
)";

struct Slot {
    DType dtype;
    bool output;
    bool epi;  // strides over the epilogue index space
};

class GroupEmitter {
  public:
    GroupEmitter(const Program& p, const Group& g, std::size_t gi, std::string fname)
        : p_(p), g_(g), gi_(gi), fname_(std::move(fname)) {
        auto epi = epilogue_inputs(g);
        for (std::size_t k = 0; k < g.inputs.size(); ++k)
            slots_.push_back({buffer_dtype(g.inputs[k]), false,
                              g.kind == GroupKind::Pointwise || g.kind == GroupKind::Matmul
                                  ? true
                                  : static_cast<bool>(epi[k])});
        for (const auto& o : g.outputs) slots_.push_back({buffer_dtype(o.target), true, true});
        if (slots_.size() > static_cast<std::size_t>(kMaxSlots))
            throw Error(
                fmt::format("cuda codegen: group {} has {} arguments; at most {} are "
                            "supported",
                            gi, slots_.size(), kMaxSlots));
        pre_ = "agnesi_g" + std::to_string(gi) + "_pre";
        post_ = "agnesi_g" + std::to_string(gi) + "_post";
        pfx_ = "agnesi_g" + std::to_string(gi);
        cache_ = row_cache_plan(p, g);
    }

    std::string emit() {
        out_ += fmt::format("\n// group {}: {}{}, {}, {}, {}\n", gi_, group_kind_name(g_.kind),
                            g_.kind == GroupKind::Matmul ? " epilogue" : "",
                            counted(g_.instrs.size(), "instr"), counted(g_.inputs.size(), "input"),
                            counted(g_.outputs.size(), "output"));
        switch (g_.kind) {
            case GroupKind::Pointwise:
            case GroupKind::Matmul:
                emit_compute(post_, 0, static_cast<int>(g_.instrs.size()), true, false);
                emit_pointwise();
                break;
            case GroupKind::Reduce:
            case GroupKind::RowNormalize:
            case GroupKind::RowReduce:
                for (std::size_t k = 0; k < g_.stages.size(); ++k)
                    emit_compute(pass_fn(k), g_.pass_begin(k), g_.stages[k], false, true);
                emit_compute(pre_, g_.pass_begin(g_.stages.size()), g_.reduce_at, false, true);
                emit_compute(post_, g_.reduce_at + 1, static_cast<int>(g_.instrs.size()), true,
                             false);
                if (g_.kind == GroupKind::Reduce)
                    emit_reduce();
                else if (g_.kind == GroupKind::RowReduce)
                    emit_row_reduce();
                else
                    emit_normalize();
                break;
        }
        emit_entry();
        // Every loop of the group's code stays rolled (see kPrelude), except the warp-shuffle
        // steps of cheap combines, whose trip count is fixed.
        std::string out;
        std::size_t pos = 0;
        while (pos < out_.size()) {
            std::size_t end = out_.find('\n', pos);
            if (end == std::string::npos) end = out_.size() - 1;
            std::string line = out_.substr(pos, end - pos + 1);
            std::size_t ind = line.find_first_not_of(' ');
            if (ind != std::string::npos && line.compare(ind, 5, "for (") == 0 &&
                line.find("int off = 16") == std::string::npos)
                line.insert(ind, "AGNESI_NO_UNROLL ");
            out += line;
            pos = end + 1;
        }
        return out;
    }

  private:
    DType buffer_dtype(const Access& a) const {
        return p_.buffers[static_cast<std::size_t>(a.buffer)].dtype;
    }
    const Instr& instr(int i) const { return g_.instrs[static_cast<std::size_t>(i)]; }
    std::size_t nslots() const { return slots_.size(); }
    std::string ty(std::size_t k) const { return c_type(slots_[k].dtype); }

    // The slots whose values a compute function over [lo, hi) loads.
    std::vector<std::size_t> loads_in(int lo, int hi) const { return cuda::loads_in(g_, lo, hi); }

    // The reduced or normalized value's dtype as the pre function of Reduce (or Normalize)
    // instr `at` (reduce_at by default) returns it.
    DType pre_dtype(int at = -1) const {
        const Instr& r = instr(at < 0 ? g_.reduce_at : at);
        return is_float(r.dtype) ? r.dtype : DType::Int64;
    }

    // A row reduction's pass k before the last: the function computing its values, and the
    // prefix of its accumulator's type and functions.
    std::string pass_fn(std::size_t k) const { return fmt::format("{}_pre{}", pfx_, k); }
    // Passes reducing by the last pass's op in its dtype share its accumulator.
    std::string pass_pfx(std::size_t k) const {
        int at = g_.stages.at(k);
        if (instr(at).op == instr(g_.reduce_at).op && pre_dtype(at) == pre_dtype()) return pfx_;
        return fmt::format("{}_p{}", pfx_, k);
    }

    // The reduced values that instrs from `lo` on may read: each Reduce (or Normalize) instr
    // before lo and its name in the generated code (r, or r<k> for a row reduction's pass k
    // before the last).
    std::vector<std::pair<int, std::string>> reduced_before(int lo) const {
        std::vector<int> at =
            g_.kind == GroupKind::RowReduce ? g_.passes() : std::vector<int>{g_.reduce_at};
        std::vector<std::pair<int, std::string>> r;
        for (std::size_t k = 0; k < at.size(); ++k)
            if (at[k] >= 0 && at[k] < lo)
                r.push_back({at[k], k + 1 == at.size() ? "r" : fmt::format("r{}", k)});
        return r;
    }
    std::string reduced_args(int lo) const {
        std::vector<std::string> names;
        for (const auto& [i, name] : reduced_before(lo)) names.push_back(name);
        return fmt::format("{}", fmt::join(names, ", "));
    }

    // A __device__ function computing instrs [lo, hi): parameters r (the reduced values it
    // reads), x<k> (loaded values), then either output references y<k> (outputs) or a returned
    // value (pre: the operand of Reduce instr hi).
    void emit_compute(const std::string& fn, int lo, int hi, bool outputs, bool pre) {
        std::vector<std::string> params;
        for (const auto& [i, name] : reduced_before(lo))
            params.push_back(fmt::format("const {} {}", c_type(instr(i).dtype), name));
        for (std::size_t k : loads_in(lo, hi))
            params.push_back(fmt::format("const {} x{}", ty(k), k));
        if (outputs)
            for (std::size_t k = 0; k < g_.outputs.size(); ++k)
                params.push_back(
                    fmt::format("{}& y{}", ty(g_.inputs.size() + k), g_.inputs.size() + k));
        std::string ret = pre ? c_type(pre_dtype(hi)) : "void";
        out_ += fmt::format("static __device__ __forceinline__ {} {}({}) {{\n", ret, fn,
                            fmt::join(params, ", "));
        for (const auto& [i, name] : reduced_before(lo))
            out_ += fmt::format("    const {} v{} = {};\n", c_type(instr(i).dtype), i, name);
        for (int i = lo; i < hi; ++i) {
            const Instr& in = instr(i);
            if (in.kind == InstrKind::Load)
                out_ += fmt::format("    const {} v{} = x{};\n", c_type(in.dtype), i, in.input);
            else if (!unread_const(g_, i))
                out_ += "    " + emit_instr(g_, i) + "\n";
        }
        if (pre) {
            const Instr& r = instr(hi);
            out_ += fmt::format(
                "    return {};\n",
                convert_expr(fmt::format("v{}", r.args[0]), instr(r.args[0]).dtype, pre_dtype(hi)));
        }
        if (outputs)
            for (std::size_t k = 0; k < g_.outputs.size(); ++k)
                out_ += fmt::format("    y{} = v{};\n", g_.inputs.size() + k, g_.outputs[k].instr);
        out_ += "}\n";
    }

    // The parameter list of the run function and kernels: (pointer, strides) per slot.
    std::string slot_params(bool by_ref) const {
        // The kernel's parameters are __grid_constant__: read in place where indexed at run
        // time (P.dims[d]), where a plain parameter would be copied to local memory first.
        std::vector<std::string> ps{by_ref ? "const agnesi_params& P"
                                           : "const __grid_constant__ agnesi_params P"};
        for (std::size_t k = 0; k < nslots(); ++k) {
            ps.push_back(
                fmt::format("{}{}* __restrict__ p{}", slots_[k].output ? "" : "const ", ty(k), k));
            ps.push_back(fmt::format("const {}agnesi_strides{} s{}",
                                     by_ref ? "" : "__grid_constant__ ", by_ref ? "&" : "", k));
        }
        return fmt::format("{}", fmt::join(ps, ", "));
    }
    std::string slot_args() const {
        std::vector<std::string> as{"P"};
        for (std::size_t k = 0; k < nslots(); ++k) {
            as.push_back(fmt::format("p{}", k));
            as.push_back(fmt::format("s{}", k));
        }
        return fmt::format("{}", fmt::join(as, ", "));
    }

    // Calls `fn` with loads at offsets o<k> and, for outputs, stores at o<k>; or, with `into`,
    // sets the outputs y<k><into> that the caller declared and stores.
    std::string call_at(const std::string& fn, int lo, int hi, bool outputs,
                        const std::string& first = "", const std::string& into = "") const {
        std::vector<std::string> as;
        if (!first.empty()) as.push_back(first);
        for (std::size_t k : loads_in(lo, hi)) as.push_back(fmt::format("p{}[o{}]", k, k));
        std::string s;
        if (outputs) {
            for (std::size_t k : output_slots()) {
                if (into.empty()) s += fmt::format("{} y{}; ", ty(k), k);
                as.push_back(fmt::format("y{}{}", k, into));
            }
        }
        s += fmt::format("{}({});", fn, fmt::join(as, ", "));
        if (outputs && into.empty())
            for (std::size_t k : output_slots()) s += fmt::format(" p{}[o{}] = y{};", k, k, k);
        return s;
    }
    std::vector<std::size_t> output_slots() const {
        std::vector<std::size_t> ks;
        for (std::size_t k = g_.inputs.size(); k < nslots(); ++k) ks.push_back(k);
        return ks;
    }
    // The four steps of unrolled_loop pushed at once: `fn` of each step's values, as by
    // call_loaded.
    std::string push4(const std::string& px, const std::string& fn, int lo, int hi,
                      const std::string& first = "") const {
        return fmt::format("{}_push4(a, {}, {}, {}, {});", px, call_loaded(fn, lo, hi, "_0", first),
                           call_loaded(fn, lo, hi, "_1", first),
                           call_loaded(fn, lo, hi, "_2", first),
                           call_loaded(fn, lo, hi, "_3", first));
    }

    // Declares I o<k> = 0 for the slots selected and decomposes `idx` over dims[0, hi); a dense
    // launch has at most one such axis.
    std::string offsets(const std::string& idx, const std::vector<std::size_t>& ks,
                        const std::string& hi_dim) const {
        std::string s = fmt::format("I rem = {};", idx);
        for (std::size_t k : ks) s += fmt::format(" I o{} = 0;", k);
        s += "\n            if (D) {\n";
        for (std::size_t k : ks)
            s += fmt::format("                o{0} = rem * (I)s{0}.s[0];\n", k);
        return s + "            } else {\n" + decompose(ks, "0", hi_dim, 12) + "            }\n";
    }

    // A loop adding to o<k>, for the slots `ks`, the offset of index `rem` over dims[lo, hi),
    // indented by `indent`; consumes rem.
    static std::string decompose(const std::vector<std::size_t>& ks, const std::string& lo_dim,
                                 const std::string& hi_dim, int indent) {
        std::string in(static_cast<std::size_t>(indent), ' ');
        std::string s =
            fmt::format("{}for (int d = {} - 1; d >= {}; --d) {{\n", in, hi_dim, lo_dim);
        s += fmt::format("{0}    const I c = rem % (I)P.dims[d];\n{0}    rem /= (I)P.dims[d];\n",
                         in);
        for (std::size_t k : ks) s += fmt::format("{0}    o{1} += c * (I)s{1}.s[d];\n", in, k);
        return s + in + "}\n";
    }

    std::vector<std::size_t> all_slots() const {
        std::vector<std::size_t> ks(nslots());
        for (std::size_t k = 0; k < nslots(); ++k) ks[k] = k;
        return ks;
    }
    std::vector<std::size_t> slots_where(bool epi) const {
        std::vector<std::size_t> ks;
        for (std::size_t k = 0; k < nslots(); ++k)
            if (slots_[k].epi == epi) ks.push_back(k);
        return ks;
    }

    // Each loop below holds one copy of the group's body (four in a by-4 loop): the copies are
    // what NVRTC spends its time on, so modes share loops, branching on P.mode (uniform).
    void emit_pointwise() {
        int n = static_cast<int>(g_.instrs.size());
        out_ += "template <class I, bool D>\n";
        out_ += fmt::format("static __device__ __forceinline__ void {}_run({}) {{\n", pfx_,
                            slot_params(true));
        out_ +=
            "    const I n = (I)P.count;\n"
            "    const I step = (I)gridDim.x * (I)blockDim.x;\n"
            "    const I first = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;\n"
            "    I i0 = first;\n";
        if (vectorizable(p_, g_)) emit_by_4();
        // Flat (mode 1, and mode 2's last n % 4 values) or strided (mode 0).
        out_ += "    for (I i = i0; i < n; i += step) {\n";
        for (std::size_t k = 0; k < nslots(); ++k) out_ += fmt::format("        I o{} = 0;\n", k);
        // The mode hidden from the compiler (as in unrolled_loop): it would otherwise copy the
        // loop, body and all, for the flat and the strided offsets, or for the last values of a
        // by-4 call.
        out_ +=
            "        int flat = D || P.mode != 0;\n"
            "        asm volatile(\"\" : \"+r\"(flat));\n"
            "        if (flat) {\n";
        for (std::size_t k = 0; k < nslots(); ++k)
            out_ += fmt::format("            o{0} = (P.bcast >> {0}) & 1 ? 0 : i;\n", k);
        out_ += "        } else {\n            I rem = i;\n";
        out_ += decompose(all_slots(), "0", "P.rank", 12) + "        }\n";
        out_ += "        " + call_at(post_, 0, n, true) + "\n    }\n}\n";
    }

    // Modes 2 and 3: by 4, with 16-byte loads and stores. Mode 2 is flat (contiguous slots and
    // broadcast scalars); in mode 3 the last axis is contiguous (or broadcast) in every slot and
    // each row starts 16 bytes aligned, so four neighbours along it are one load or store and the
    // row offset costs one division per four values.
    void emit_by_4() {
        int n = static_cast<int>(g_.instrs.size());
        out_ +=
            "    if (P.mode >= 2) {\n"
            "        const int last = P.rank - 1;\n"
            "        const I n4 = n >> 2;\n"
            "        const I inner4 = P.mode == 3 ? (I)P.dims[last] >> 2 : (I)1;\n";
        // Whether a loaded slot's four values are one vector (else one value, broadcast).
        for (std::size_t k : loads_in(0, n))
            out_ += fmt::format(
                "        const bool w{0} = P.mode == 2 ? !((P.bcast >> {0}) & 1) : "
                "s{0}.s[last] != 0;\n",
                k);
        out_ +=
            "        for (I q = first; q < n4; q += step) {\n"
            "            I j = q << 2;\n";
        for (std::size_t k = 0; k < nslots(); ++k)
            out_ += fmt::format("            I o{0} = 0;\n", k);
        out_ +=
            "            int rows = P.mode == 3;\n"
            "            asm volatile(\"\" : \"+r\"(rows));\n"
            "            if (rows) {\n"
            "                I rem = q / inner4;\n"
            "                j = (q - rem * inner4) << 2;\n"
            "                if (D || P.rank == 2) {\n";
        for (std::size_t k = 0; k < nslots(); ++k)
            out_ += fmt::format("                    o{0} = rem * (I)s{0}.s[0];\n", k);
        out_ += "                } else {\n";
        out_ += decompose(all_slots(), "0", "last", 20) + "                }\n            }\n";
        for (std::size_t k : loads_in(0, n))
            out_ += fmt::format(
                "            const {0} l{1} = w{1} ? agnesi_vld<{0}>(p{1} + o{1} + j) : "
                "make_{0}(p{1}[o{1}], p{1}[o{1}], p{1}[o{1}], p{1}[o{1}]);\n",
                vec4(k), k);
        emit_lanes("agnesi_vst<{0}>(p{1} + o{1} + j, y{1});");
        out_ +=
            "        }\n"
            "        if (P.mode == 3) return;\n"
            "        i0 = (n4 << 2) + first;\n"
            "    }\n";
    }

    // The 4-wide type of slot k's elements (float32 or int32).
    std::string vec4(std::size_t k) const {
        return slots_[k].dtype == DType::Float32 ? "float4" : "int4";
    }

    // The body of a by-4 loop once its loads l<k> are declared: the epilogue for each of the four
    // lanes into y<k>, then `store` (a format of the vector type {0} and the slot {1}) per output.
    // The four calls stay inlined: a rolled loop over the lanes would compile faster but cost a
    // compute-bound body a quarter more instructions per value.
    void emit_lanes(const std::string& store) {
        int n = static_cast<int>(g_.instrs.size());
        for (std::size_t k = g_.inputs.size(); k < nslots(); ++k)
            out_ += fmt::format("            {} y{};\n", vec4(k), k);
        for (const char* c : {"x", "y", "z", "w"}) {
            std::vector<std::string> as;
            for (std::size_t k : loads_in(0, n)) as.push_back(fmt::format("l{}.{}", k, c));
            for (std::size_t k = g_.inputs.size(); k < nslots(); ++k)
                as.push_back(fmt::format("y{}.{}", k, c));
            out_ += fmt::format("            {}({});\n", post_, fmt::join(as, ", "));
        }
        for (std::size_t k = g_.inputs.size(); k < nslots(); ++k)
            out_ += "            " + fmt::format(fmt::runtime(store), vec4(k), k) + "\n";
    }

    std::string acc_type(int at = -1) const { return c_type(pre_dtype(at)); }

    // The accumulator of a Reduce (or the max and sum of a RowNormalize): m (max or min), s (sum
    // or product), nan (a NaN was seen).
    // `at`: the Reduce instr (reduce_at by default); `px`: the names' prefix (pfx_ by default).
    void emit_acc(Op op, int at = -1, std::string px = "") {
        if (px.empty()) px = pfx_;
        std::string A = acc_type(at);
        bool fl = is_float(pre_dtype(at));
        std::string sfx = pre_dtype(at) == DType::Float32 ? "f" : "d";
        std::string lo = fl ? "-agnesi_inf_" + sfx + "()" : "(-0x7fffffffffffffffLL - 1)";
        std::string hi = fl ? "agnesi_inf_" + sfx + "()" : "0x7fffffffffffffffLL";
        std::string acc = px + "_acc";
        out_ += fmt::format("struct {} {{ {} m; {} s; int nan; }};\n", acc, A, A);
        out_ += fmt::format("static_assert(sizeof({}) <= {}, \"a split reduction's slot\");\n", acc,
                            kSplitSlotBytes);
        out_ += fmt::format(
            "static __device__ __forceinline__ {0} {1}_identity() {{ {0} a; a.m = {2}; a.s = "
            "{3}; a.nan = 0; return a; }}\n",
            acc, px, op == Op::ReduceMin ? hi : lo, op == Op::Prod ? "1" : "0");
        std::string body;
        auto add = [&](const std::string& a, const std::string& b) {
            return fl ? a + " + " + b : fmt::format("(int64_t)((uint64_t){} + (uint64_t){})", a, b);
        };
        auto mul = [&](const std::string& a, const std::string& b) {
            return fl ? a + " * " + b : fmt::format("(int64_t)((uint64_t){} * (uint64_t){})", a, b);
        };
        // Online max and sum: each combine costs two exponentials, so the shuffle steps stay
        // rolled (ten inlined copies per block reduction would cost NVRTC more than the rest).
        const bool online = op != Op::Sum && op != Op::Mean && op != Op::Prod &&
                            op != Op::ReduceMax && op != Op::ReduceMin;
        switch (op) {
            case Op::Sum:
            case Op::Mean: body = "a.s = " + add("a.s", "b.s") + ";"; break;
            case Op::Prod: body = "a.s = " + mul("a.s", "b.s") + ";"; break;
            case Op::ReduceMax: body = "a.nan |= b.nan; if (b.m > a.m) a.m = b.m;"; break;
            case Op::ReduceMin: body = "a.nan |= b.nan; if (b.m < a.m) a.m = b.m;"; break;
            default:  // Logsumexp, Softmax, LogSoftmax: online max and rescaled sum
                body = fmt::format(
                    "a.nan |= b.nan;\n    if (b.m == {0}) return;\n    if (a.m == {0}) {{ a.m = "
                    "b.m; a.s = b.s; return; }}\n    const {1} m = a.m > b.m ? a.m : b.m;\n    "
                    "a.s = a.s * exp(a.m - m) + b.s * exp(b.m - m);\n    a.m = m;",
                    lo, A);
        }
        out_ += fmt::format(
            "static __device__ __forceinline__ void {}_combine({}& a, const {}& b) {{\n    "
            "{}\n}}\n",
            px, acc, acc, body);
        // One value: NaN is flagged rather than combined.
        std::string push;
        switch (op) {
            case Op::Sum:
            case Op::Mean: push = "a.s = " + add("a.s", "x") + ";"; break;
            case Op::Prod: push = "a.s = " + mul("a.s", "x") + ";"; break;
            case Op::ReduceMax: push = "if (x != x) a.nan = 1; else if (x > a.m) a.m = x;"; break;
            case Op::ReduceMin: push = "if (x != x) a.nan = 1; else if (x < a.m) a.m = x;"; break;
            default:
                // One exponential per value: the sum is rescaled only when the max grows. A -inf
                // adds nothing; after a +inf max the sum is unused.
                push = fmt::format(
                    "if (x != x) {{ a.nan = 1; return; }}\n    if (x == {0}) return;\n    if (x > "
                    "a.m) {{ a.s = a.s * exp(a.m - x) + {1}(1); a.m = x; }} else {{ a.s += exp(x - "
                    "a.m); }}",
                    lo, A);
        }
        out_ += fmt::format(
            "static __device__ __forceinline__ void {}_push({}& a, const {} x) {{\n    {}\n}}\n",
            px, acc, A, push);
        // Four values. An online max and sum rescales once for the four (by their max) and adds
        // their exponentials in pairs: five exponentials where four pushes have up to eight in
        // their branches, and no branch per value. A NaN is flagged; the sum it spoils is then
        // unused, as it is after a +inf max.
        std::string push4 = fmt::format(
            "{0}_push(a, x0); {0}_push(a, x1); {0}_push(a, x2); "
            "{0}_push(a, x3);",
            px);
        if (online)
            push4 = fmt::format(
                "a.nan |= (x0 != x0) | (x1 != x1) | (x2 != x2) | (x3 != x3);\n    const {1} m = "
                "fmax(fmax(x0, x1), fmax(x2, x3));\n    if (m > a.m) {{ a.s = a.s * exp(a.m - m); "
                "a.m = m; }}\n    if (a.m != {0})\n        a.s += (exp(x0 - a.m) + exp(x1 - a.m)) "
                "+ (exp(x2 - a.m) + exp(x3 - a.m));",
                lo, A);
        out_ += fmt::format(
            "static __device__ __forceinline__ void {0}_push4({1}& a, const {2} x0, const {2} x1, "
            "const {2} x2, const {2} x3) {{\n    {3}\n}}\n",
            px, acc, A, push4);
        out_ +=
            fmt::format(R"(static __device__ __forceinline__ {0} {1}_shfl(const {0}& a, int off) {{
    {0} b;
    b.m = __shfl_down_sync(0xffffffffu, a.m, off);
    b.s = __shfl_down_sync(0xffffffffu, a.s, off);
    b.nan = __shfl_down_sync(0xffffffffu, a.nan, off);
    return b;
}}
// A row's threads' accumulators combined, every thread getting the result: a warp's by
// shuffles (wr: the warp has a row of its own), else the block's, one warp's first.
static __device__ __forceinline__ {0} {1}_block({0} a, bool wr) {{
    __shared__ {0} part[32];
    {2}for (int off = 16; off > 0; off >>= 1) {1}_combine(a, {1}_shfl(a, off));
    if (wr) {{
        a.m = __shfl_sync(0xffffffffu, a.m, 0);
        a.s = __shfl_sync(0xffffffffu, a.s, 0);
        a.nan = __shfl_sync(0xffffffffu, a.nan, 0);
        return a;
    }}
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) part[w] = a;
    __syncthreads();
    if (w == 0) {{
        a = lane < (int)((blockDim.x + 31) >> 5) ? part[lane] : {1}_identity();
        {2}for (int off = 16; off > 0; off >>= 1) {1}_combine(a, {1}_shfl(a, off));
        if (lane == 0) part[0] = a;
    }}
    __syncthreads();
    a = part[0];
    __syncthreads();
    return a;
}}
)",
                        acc, px, online ? "AGNESI_NO_UNROLL " : "");
    }

    // The reduced value in the Reduce instr's dtype, from accumulator `a`.
    std::string final_value(const Instr& red, int at = -1) const {
        std::string A = acc_type(at);
        bool fl = is_float(pre_dtype(at));
        std::string sfx = pre_dtype(at) == DType::Float32 ? "f" : "d";
        std::string v;
        switch (red.op) {
            case Op::Sum:
            case Op::Prod: v = "a.s"; break;
            case Op::Mean: v = fmt::format("a.s / ({})P.inner", A); break;
            case Op::ReduceMax:
            case Op::ReduceMin:
                v = fl ? fmt::format("a.nan ? agnesi_nan_{}() : a.m", sfx) : "a.m";
                break;
            case Op::Logsumexp:
                v = fmt::format("a.nan ? agnesi_nan_{}() : (isfinite(a.m) ? a.m + log(a.s) : a.m)",
                                sfx);
                break;
            default: throw InternalError("cuda codegen: unknown reduction");
        }
        return convert_expr("(" + v + ")", pre_dtype(at), red.dtype);
    }

    void emit_reduce() {
        const Instr& red = instr(g_.reduce_at);
        emit_acc(red.op);
        int n = static_cast<int>(g_.instrs.size());
        auto pre = slots_where(false);
        std::string acc = pfx_ + "_acc";
        // A split column's 8 parts in a block (its warps, a lane per output): the first warp
        // combines them.
        out_ += fmt::format(R"(static __device__ __forceinline__ {0} {1}_columns({0} a) {{
    __shared__ {0} part[256];
    part[threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.x < 32) {{
        AGNESI_NO_UNROLL for (int w = 1; w < 8; ++w) {1}_combine(a, part[threadIdx.x + 32 * w]);
    }}
    __syncthreads();
    return a;
}}
)",
                            acc, pfx_);
        out_ += "template <class I, bool D>\n";
        out_ += fmt::format("static __device__ __forceinline__ void {}_run({}) {{\n", pfx_,
                            slot_params(true));
        out_ += "    const I rows = (I)P.count, inner = (I)P.inner;\n";
        std::string epilogue = fmt::format(
            "{{\n                const {} r = {};\n                {}\n            }}\n",
            c_type(red.dtype), final_value(red), call_at(post_, g_.reduce_at + 1, n, true, "r"));
        // Mode 0: a block per output (a warp per output for many short rows, P.warp_rows), or
        // `split` blocks per output (long rows too few to fill the device), each reducing every
        // split-th stretch of blockDim values. Mode 1
        // (columns): a thread per output, neighbouring threads on neighbouring outputs, or
        // `split` threads per output (too few outputs to fill the device), each reducing every
        // split-th value: blocks of 256 threads then take 32 outputs (the lanes) by 8 parts
        // (the warps), which combine in shared memory, so split / 8 partial results per output
        // leave the block. With a split, each block's partial result is stored and counted in
        // (per row, or per 32 columns), and the last block combines them with all its threads
        // (a row's partial results across them, a column's across the 8 warps) and runs the
        // epilogue.
        // One loop serves all: each copy of it costs NVRTC time.
        out_ +=
            "    const bool by_block = D || P.mode == 0;\n"
            "    const bool wr = P.warp_rows != 0;\n"
            "    const I tid = wr ? (I)(threadIdx.x & 31) : (I)threadIdx.x;\n"
            "    const I nth = wr ? (I)32 : (I)blockDim.x;\n"
            "    const I split = P.split > 1 ? (I)P.split : (I)1;\n"
            "    const I per = !by_block ? (I)blockDim.x : wr ? (I)(blockDim.x >> 5) : (I)1;\n"
            "    const I groups = (rows + (I)31) >> 5;\n"
            "    const I parts = by_block ? split : split >> 3;\n"
            "    const I total = by_block || split == 1 ? rows * split : groups * (I)32 * split;\n"
            "    for (I bid = (I)blockIdx.x * per + (!by_block ? (I)threadIdx.x : wr ? "
            "(I)(threadIdx.x >> 5) : (I)0); bid < "
            "total; bid += (I)gridDim.x * per) {\n"
            "            const I row = split == 1 ? bid : by_block ? bid / split : (bid >> 8) % "
            "groups * (I)32 + (bid & (I)31);\n"
            "            const I part = split == 1 ? (I)0 : by_block ? bid - row * split : (bid "
            ">> 8) / groups * (I)8 + ((bid & (I)255) >> 5);\n"
            "            ";
        out_ += offsets("row", all_slots(), "P.nkept");
        for (std::size_t k : pre) out_ += fmt::format("            const I b{0} = o{0};\n", k);
        out_ += fmt::format("            {} a = {}_identity();\n", acc, pfx_);
        // With one reduced axis (the common case) four values are loaded before any is used;
        // the rest, and every value of several reduced axes, one by one.
        for (std::size_t k : pre)
            out_ += fmt::format(
                "            const I t{0} = D || P.rank == P.nkept + 1 ? (I)s{0}.s[P.nkept] : "
                "(I)0;\n",
                k);
        out_ += unrolled_loop(
            "by_block ? part * nth + tid : row < rows ? part : inner",
            "by_block ? split * nth : split", loads_in(0, g_.reduce_at),
            [&](const std::string& u) {
                return fmt::format("{}_push(a, {});", pfx_, call_loaded(pre_, 0, g_.reduce_at, u));
            },
            "P.rank == P.nkept + 1",
            [&] {
                return reduced_offsets(pre) + fmt::format("                {}_push(a, {});\n", pfx_,
                                                          call_expr(pre_, 0, g_.reduce_at));
            },
            {}, push4(pfx_, pre_, 0, g_.reduce_at));
        out_ += fmt::format(
            "            if (by_block) a = {2}_block(a, wr);\n"
            "            else if (split > 1) a = {2}_columns(a);\n"
            "            const bool lead = by_block ? tid == 0\n"
            "                                       : split == 1 || (threadIdx.x < 32 && row < "
            "rows);\n"
            "            if (parts > 1) {{\n"
            "                char* const ws = (char*)P.ws;\n"
            "                char* const mine = ws + (uint64_t)row * (uint64_t)parts * {1};\n"
            "                unsigned* const done = (unsigned*)(ws + (uint64_t)rows * "
            "(uint64_t)parts * {1}) + (by_block ? row : row >> 5);\n"
            "                __shared__ bool last_block;\n"
            "                const I slot = by_block ? part : part >> 3;\n"
            "                if (lead) *({0}*)(mine + (uint64_t)slot * {1}) = a;\n"
            "                __threadfence();\n"
            "                __syncthreads();\n"
            "                if (threadIdx.x == 0) last_block = atomicAdd(done, 1u) == "
            "(unsigned)(parts - 1);\n"
            "                __syncthreads();\n"
            "                if (!last_block) continue;\n"
            "                __threadfence();\n"
            "                a = {2}_identity();\n"
            "                const I qs = by_block ? (I)blockDim.x : (I)8;\n"
            "                const I q0 = by_block ? (I)threadIdx.x : (I)(threadIdx.x >> 5);\n"
            "                for (I q = q0; row < rows && q < parts; q += qs) {{\n"
            "                    const {0}* const b = (const {0}*)(mine + (uint64_t)q * {1});\n"
            "                    {0} t;\n"
            "                    t.m = __ldcg(&b->m);\n"
            "                    t.s = __ldcg(&b->s);\n"
            "                    t.nan = __ldcg(&b->nan);\n"
            "                    {2}_combine(a, t);\n"
            "                }}\n"
            "                a = by_block ? {2}_block(a, false) : {2}_columns(a);\n"
            "                if (threadIdx.x == 0) *done = 0;\n"
            "                if (!lead) continue;\n"
            "            }} else if (!lead) {{\n"
            "                continue;\n"
            "            }}\n"
            "            ",
            acc, kSplitSlotBytes, pfx_);
        out_ += epilogue;
        out_ += "    }\n}\n";
    }

    // A loop over j from `start` by `step` below `inner` that loads the values of four steps
    // (l<k>_<u> for the slots `ks`) before `use(suffix)` consumes them, so that each thread has
    // four loads in flight (`after4`, if given, consumes the four in its place); then the stores
    // of the slots `stores` (`use` sets y<k>_<u>), and the remaining steps one by one.
    // Where every slot is contiguous along the row (or broadcast along it) and 16-byte aligned
    // at the row's start, the four steps are four consecutive values (du = 1): 16-byte loads and
    // stores, four times fewer than the scalar ones of a strided row (du = st). The empty asm
    // hides from the compiler that the choice is the same in every step: it would otherwise copy
    // the loop, body and all, for each side (NVRTC time for no gain). A dense kernel (D) takes
    // the four consecutive values in every row; a slot broadcast along the row is one value.
    // `guard` (if any) must hold for the four-step loop to run; `tail` (if any) is the body of
    // the one-by-one loop, which then loads for itself.
    template <class Use>
    std::string unrolled_loop(const std::string& start, const std::string& step,
                              const std::vector<std::size_t>& ks, Use use,
                              const std::string& guard = "",
                              const std::function<std::string()>& tail = {},
                              const std::vector<std::size_t>& stores = {},
                              const std::string& after4 = "") const {
        // Slot k's statement `pattern` for each of the four steps ({1}) of the strided side.
        auto four = [](const char* pattern, std::size_t k) {
            std::string r;
            for (int u = 0; u < 4; ++u) r += fmt::format(fmt::runtime(pattern), k, u);
            return r;
        };
        std::vector<std::string> v4;
        if (!guard.empty()) v4.push_back(guard);
        for (std::size_t k : ks)
            v4.push_back(fmt::format("((t{0} == 1 && agnesi_al4(p{0} + b{0})) || t{0} == 0)", k));
        for (std::size_t k : stores)
            v4.push_back(fmt::format("(t{0} == 1 && agnesi_al4(p{0} + b{0}))", k));
        std::string s = fmt::format(
            "            {{\n            const I st = {1};\n"
            "            const bool v4 = D || ({3});\n"
            "            const I du = v4 ? (I)1 : st;\n"
            "            I j = v4 ? (I)4 * ({0}) : ({0});\n"
            "            {2}for (; j + 3 * du < inner; j += 4 * st) {{\n"
            "                int w4 = v4;\n"
            "                asm volatile(\"\" : \"+r\"(w4));\n",
            start, step, guard.empty() ? "" : "if (D || " + guard + ") {",
            !rows_by_four() ? "false"
            : v4.empty()    ? "true"
                            : fmt::format("{}", fmt::join(v4, " && ")));
        for (std::size_t k : ks) {
            s += fmt::format("                {0} l{1}_0, l{1}_1, l{1}_2, l{1}_3;\n", ty(k), k);
            s += fmt::format(
                "                if (w4 && t{0} != 0) agnesi_ld4(p{0} + b{0} + j, l{0}_0, l{0}_1, "
                "l{0}_2, l{0}_3);\n"
                "                else if (D) l{0}_0 = l{0}_1 = l{0}_2 = l{0}_3 = p{0}[b{0}];\n"
                "                else {{",
                k);
            s += four(" l{0}_{1} = p{0}[b{0} + (j + {1} * du) * t{0}];", k) + " }\n";
        }
        for (std::size_t k : stores)
            s += fmt::format("                {0} y{1}_0, y{1}_1, y{1}_2, y{1}_3;\n", ty(k), k);
        if (!after4.empty())
            s += "                " + after4 + "\n";
        else
            for (int u = 0; u < 4; ++u)
                s += fmt::format("                {{ const I ju = j + {} * du; (void)ju; {} }}\n",
                                 u, use(fmt::format("_{}", u)));
        for (std::size_t k : stores) {
            s += fmt::format(
                "                if (D || w4) agnesi_st4(p{0} + b{0} + j, y{0}_0, y{0}_1, y{0}_2, "
                "y{0}_3);\n                else {{",
                k);
            s += four(" p{0}[b{0} + (j + {1} * du) * t{0}] = y{0}_{1};", k) + " }\n";
        }
        s += fmt::format("            }}{}\n            if (v4) j = (inner & ~(I)3) + ({});\n",
                         guard.empty() ? "" : "}", start);
        s += "            for (; j < inner; j += st) {\n";
        if (tail) {
            s += tail();
        } else {
            for (std::size_t k : ks)
                s += fmt::format("                const {0} l{1}_ = p{1}[b{1} + j * t{1}];\n",
                                 ty(k), k);
            for (std::size_t k : stores) s += fmt::format("                {} y{}_;\n", ty(k), k);
            s += fmt::format("                {{ const I ju = j; (void)ju; {} }}\n", use("_"));
            for (std::size_t k : stores)
                s += fmt::format("                p{0}[b{0} + j * t{0}] = y{0}_;\n", k);
        }
        s += "            }\n            }\n";
        return s;
    }

    // A loop of the cached path (RowCache) over this thread's steps of four values of the row:
    // j is the step's first value.
    std::string cached_head() const {
        return fmt::format(
            "                AGNESI_UNROLL for (int ci = 0; ci < {}; ++ci) {{\n"
            "                    const I j = (I)4 * (tid + (I)ci * nth);\n"
            "                    if (j < inner) {{\n",
            cache_.steps);
    }
    static constexpr const char* kCachedTail = "                    }\n                }\n";
    // In such a loop: slot k's four values at j into `dst` ({} the index 0..3), one value four
    // times for a slot broadcast along the row.
    static std::string load4(std::size_t k, const std::string& dst) {
        auto d = [&](int u) { return fmt::format(fmt::runtime(dst), u); };
        return fmt::format(
            "                        if (t{0} != 0) agnesi_ld4(p{0} + b{0} + j, {1}, {2}, {3}, "
            "{4});\n                        else {1} = {2} = {3} = {4} = p{0}[b{0}];\n",
            k, d(0), d(1), d(2), d(3));
    }
    // l<k>_0..3 declared and loaded so.
    std::string declare_load4(std::size_t k) const {
        return fmt::format("                        {0} l{1}_0, l{1}_1, l{1}_2, l{1}_3;\n", ty(k),
                           k) +
               load4(k, fmt::format("l{}_{{}}", k));
    }

    // Row loop number `loop` (as row_cache_plan numbers them) over the slots `ks`: in a dense
    // launch, the row held in registers (see codegen.hpp); else unrolled_loop from the thread's
    // index by the block's size. A slot that several loops read is loaded by the first into
    // c<k>[i][u] (all its loads issued before any value is used) and read from there after.
    template <class Use>
    std::string row_loop(int loop, const std::vector<std::size_t>& ks, Use use,
                         const std::vector<std::size_t>& stores = {},
                         const std::string& after4 = "") const {
        std::string plain = unrolled_loop("tid", "nth", ks, use, "", {}, stores, after4);
        if (cache_.steps == 0) return plain;
        // The slots whose registers this loop fills (one slot of each), and where each value
        // read from registers is.
        std::vector<std::size_t> fill;
        for (std::size_t k : ks) {
            const int h = cache_.held[k];
            if (h < 0 || cache_.first[static_cast<std::size_t>(h)] != loop) continue;
            bool filled = false;
            for (std::size_t f : fill) filled = filled || cache_.held[f] == h;
            if (!filled) fill.push_back(k);
        }
        const std::string head = cached_head(), tail = kCachedTail;
        std::string s = "            if constexpr (D) {\n";
        if (!fill.empty()) {
            s += head;
            for (std::size_t k : fill) {
                const int h = cache_.held[k];
                s += load4(k, fmt::format("c{}[ci][{{}}]", h));
            }
            s += tail;
        }
        s += head;
        for (std::size_t k : ks) {
            if (const int h = cache_.held[k]; h >= 0) {
                s += fmt::format(
                    "                        const {0} l{1}_0 = c{2}[ci][0], l{1}_1 = c{2}[ci][1], "
                    "l{1}_2 = c{2}[ci][2], l{1}_3 = c{2}[ci][3];\n",
                    ty(k), k, h);
            } else {
                s += declare_load4(k);
            }
        }
        for (std::size_t k : stores)
            s += fmt::format("                        {0} y{1}_0, y{1}_1, y{1}_2, y{1}_3;\n", ty(k),
                             k);
        if (!after4.empty())
            s += "                        " + after4 + "\n";
        else
            for (int u = 0; u < 4; ++u)
                s += fmt::format("                        {{ {} }}\n", use(fmt::format("_{}", u)));
        for (std::size_t k : stores)
            s += fmt::format(
                "                        agnesi_st4(p{0} + b{0} + j, y{0}_0, y{0}_1, y{0}_2, "
                "y{0}_3);\n",
                k);
        s += tail;
        return s + "            } else\n" + plain;
    }

    // `fn` applied to `first` (if any) and the values loaded by unrolled_loop, step `u`.
    std::string call_loaded(const std::string& fn, int lo, int hi, const std::string& u,
                            const std::string& first = "") const {
        std::vector<std::string> as;
        if (!first.empty()) as.push_back(first);
        for (std::size_t k : loads_in(lo, hi)) as.push_back(fmt::format("l{}{}", k, u));
        return fmt::format("{}({})", fn, fmt::join(as, ", "));
    }

    // Offsets o<k> of value j of the current output: one multiply when the reduced axes merged
    // into one (the common case), a decomposition over them otherwise.
    std::string reduced_offsets(const std::vector<std::size_t>& pre) const {
        std::string s = "               ";
        for (std::size_t k : pre) s += fmt::format(" I o{0} = b{0};", k);
        s += "\n                if (D || P.rank == P.nkept + 1) {\n";
        for (std::size_t k : pre)
            s += fmt::format("                    o{0} += j * (I)s{0}.s[P.nkept];\n", k);
        s += "                } else {\n                    I rem = j;\n";
        s += decompose(pre, "P.nkept", "P.rank", 20) + "                }\n";
        return s;
    }

    std::string call_expr(const std::string& fn, int lo, int hi) const {
        std::vector<std::string> as;
        for (std::size_t k : loads_in(lo, hi)) as.push_back(fmt::format("p{}[o{}]", k, k));
        return fmt::format("{}({})", fn, fmt::join(as, ", "));
    }

    // The run function's start for a block per row of the last axis: each slot's offset b<k> at
    // the row's start and its stride t<k> along the row.
    void emit_rows_head() {
        out_ += "template <class I, bool D>\n";
        out_ += fmt::format("static __device__ __forceinline__ void {}_run({}) {{\n", pfx_,
                            slot_params(true));
        out_ += "    const I rows = (I)P.count, inner = (I)P.inner;\n";
        for (std::size_t k : cache_.slots)
            out_ += fmt::format("    {} c{}[{}][4];\n", ty(k), k, cache_.steps);
        // A row per block, or per warp (P.warp_rows): the row's threads are tid of nth.
        out_ +=
            "    const bool wr = P.warp_rows != 0;\n"
            "    const I rpb = wr ? (I)(blockDim.x >> 5) : (I)1;\n"
            "    const I tid = wr ? (I)(threadIdx.x & 31) : (I)threadIdx.x;\n"
            "    const I nth = wr ? (I)32 : (I)blockDim.x;\n"
            "    for (I row = (I)blockIdx.x * rpb + (wr ? (I)(threadIdx.x >> 5) : (I)0); row < "
            "rows; row += (I)gridDim.x * rpb) {\n            ";
        out_ += offsets("row", all_slots(), "P.rank - 1");
        for (std::size_t k = 0; k < nslots(); ++k)
            out_ += fmt::format(
                "            const I b{0} = o{0};\n"
                "            const I t{0} = (I)s{0}.s[P.rank - 1];\n",
                k);
    }

    void emit_normalize() {
        const Instr& nz = instr(g_.reduce_at);
        emit_acc(nz.op);
        int n = static_cast<int>(g_.instrs.size());
        std::string A = c_type(nz.dtype);
        std::string sfx = nz.dtype == DType::Float32 ? "f" : "d";
        std::string acc = pfx_ + "_acc";
        std::vector<std::size_t> pre_loads = loads_in(0, g_.reduce_at);
        // The epilogue's inputs along the row are loaded with the row's values.
        std::vector<std::size_t> row_loads = pre_loads;
        for (std::size_t k : loads_in(g_.reduce_at + 1, n))
            if (std::find(row_loads.begin(), row_loads.end(), k) == row_loads.end())
                row_loads.push_back(k);
        std::sort(row_loads.begin(), row_loads.end());
        emit_rows_head();
        if (cache_.steps > 0) emit_normalize_cached();
        std::string at_j;
        for (std::size_t k = 0; k < nslots(); ++k)
            at_j += fmt::format(" const I o{0} = b{0} + j * t{0};", k);
        out_ += fmt::format("            {} a = {}_identity();\n", acc, pfx_);
        out_ += unrolled_loop(
            "tid", "nth", pre_loads,
            [&](const std::string& u) {
                return fmt::format("{}_push(a, {});", pfx_, call_loaded(pre_, 0, g_.reduce_at, u));
            },
            "", {}, {}, push4(pfx_, pre_, 0, g_.reduce_at));
        out_ += fmt::format("            a = {}_block(a, wr);\n", pfx_);
        // A non-finite max is not subtracted: the sum is then of plain exponentials.
        out_ += fmt::format("            const {0} shift = isfinite(a.m) ? a.m : {0}(0);\n", A);
        out_ += fmt::format("            {} sum = a.s;\n", A);
        out_ +=
            "            if (!isfinite(a.m)) {\n"
            "                " +
            A +
            " t = 0;\n"
            "                for (I j = tid; j < inner; j += nth) {" +
            at_j + "\n";
        out_ += fmt::format("                    t += exp({});\n                }}\n",
                            call_expr(pre_, 0, g_.reduce_at));
        out_ += "                sum = agnesi_row_reduce(t, agnesi_add_op(), " + A +
                "(0), wr);\n            }\n";
        out_ += fmt::format("            if (a.nan) sum = agnesi_nan_{}();\n", sfx);
        // log(sum) or 1 / sum once per row.
        bool log_softmax = nz.op == Op::LogSoftmax;
        out_ += log_softmax ? fmt::format("            const {} lsum = log(sum);\n", A)
                            : fmt::format("            const {0} rsum = {0}(1) / sum;\n", A);
        out_ += unrolled_loop(
            "tid", "nth", row_loads,
            [&](const std::string& u) {
                std::string c = fmt::format(" const {} z = {} - shift;", A,
                                            call_loaded(pre_, 0, g_.reduce_at, u));
                c += fmt::format(" const {} r = {}; ", A,
                                 log_softmax ? "z - lsum" : "exp(z) * rsum");
                std::vector<std::string> as{"r"};
                for (std::size_t k : loads_in(g_.reduce_at + 1, n))
                    as.push_back(fmt::format("l{}{}", k, u));
                for (std::size_t k : output_slots()) as.push_back(fmt::format("y{}{}", k, u));
                return c + fmt::format("{}({});", post_, fmt::join(as, ", "));
            },
            "", {}, output_slots());
        if (cache_.steps > 0) out_ += "            }\n";
        out_ += "    }\n}\n";
    }

    // A row normalization whose row the block holds in registers (the values the row's
    // function computes, cache_.steps steps of four a thread): the values, their max (a block
    // reduction), their exponentials below it and their sum (another), then the normalized
    // values; every load is issued before any value is used, and each exponential is computed
    // once. Opens the `if constexpr (D)` whose else is the general row loop.
    void emit_normalize_cached() {
        const Instr& nz = instr(g_.reduce_at);
        const int n = static_cast<int>(g_.instrs.size());
        const std::string A = c_type(nz.dtype);
        const std::string sfx = nz.dtype == DType::Float32 ? "f" : "d";
        const bool log_softmax = nz.op == Op::LogSoftmax;
        const std::string head = cached_head(), tail = kCachedTail;
        const std::string in = "                        ";
        auto loads = [&](const std::vector<std::size_t>& ks) {
            std::string r;
            for (std::size_t k : ks) r += declare_load4(k);
            return r;
        };
        std::string s = "            if constexpr (D) {\n";
        s += fmt::format("                {} z[{}][4];\n", A, cache_.steps);
        s += head + loads(loads_in(0, g_.reduce_at));
        for (int u = 0; u < 4; ++u)
            s += fmt::format("{}z[ci][{}] = {};\n", in, u,
                             call_loaded(pre_, 0, g_.reduce_at, fmt::format("_{}", u)));
        s += tail;
        s += fmt::format("                {} m = -agnesi_inf_{}();\n", A, sfx);
        s += head;
        for (int u = 0; u < 4; ++u)
            s += fmt::format("{}m = agnesi_max_nan(m, z[ci][{}]);\n", in, u);
        s += tail;
        // A non-finite max is not subtracted: the sum is then of plain exponentials.
        s += fmt::format(
            "                m = agnesi_row_reduce(m, agnesi_max_op(), -agnesi_inf_{}(), wr);\n",
            sfx);
        s += fmt::format("                const {0} shift = isfinite(m) ? m : {0}(0);\n", A);
        s += fmt::format("                {} t = 0;\n", A);
        s += head;
        for (int u = 0; u < 4; ++u)
            s += log_softmax
                     ? fmt::format("{0}z[ci][{1}] -= shift; t += exp(z[ci][{1}]);\n", in, u)
                     : fmt::format("{0}z[ci][{1}] = exp(z[ci][{1}] - shift); t += z[ci][{1}];\n",
                                   in, u);
        s += tail;
        s += fmt::format(
            "                {0} sum = agnesi_row_reduce(t, agnesi_add_op(), {0}(0), wr);\n", A);
        s += fmt::format("                if (m != m) sum = agnesi_nan_{}();\n", sfx);
        s += log_softmax ? fmt::format("                const {} lsum = log(sum);\n", A)
                         : fmt::format("                const {0} rsum = {0}(1) / sum;\n", A);
        s += head + loads(loads_in(g_.reduce_at + 1, n));
        for (std::size_t k : output_slots())
            s += fmt::format("{0}{1} y{2}_0, y{2}_1, y{2}_2, y{2}_3;\n", in, ty(k), k);
        for (int u = 0; u < 4; ++u) {
            std::vector<std::string> as{fmt::format(
                fmt::runtime(log_softmax ? "z[ci][{}] - lsum" : "z[ci][{}] * rsum"), u)};
            for (std::size_t k : loads_in(g_.reduce_at + 1, n))
                as.push_back(fmt::format("l{}_{}", k, u));
            for (std::size_t k : output_slots()) as.push_back(fmt::format("y{}_{}", k, u));
            s += fmt::format("{}{}({});\n", in, post_, fmt::join(as, ", "));
        }
        for (std::size_t k : output_slots())
            s += fmt::format("{0}agnesi_st4(p{1} + b{1} + j, y{1}_0, y{1}_1, y{1}_2, y{1}_3);\n",
                             in, k);
        s += tail;
        out_ += s + "            } else {\n";
    }

    // A block per row: the row's reductions, a pass each (four loads in flight per thread, then
    // the block's), then the epilogue along the row with the reduced values; the passes after the
    // first read the row again (from L1 or L2 when it fits).
    void emit_row_reduce() {
        std::vector<int> passes = g_.passes();
        const std::size_t last = passes.size() - 1;
        for (std::size_t k = 0; k < last; ++k)
            if (pass_pfx(k) != pfx_) emit_acc(instr(passes[k]).op, passes[k], pass_pfx(k));
        const Instr& red = instr(g_.reduce_at);
        emit_acc(red.op);
        int n = static_cast<int>(g_.instrs.size());
        const std::vector<std::vector<std::size_t>> loops = row_loops(g_);
        emit_rows_head();
        for (std::size_t k = 0; k <= last; ++k) {
            const int lo = g_.pass_begin(k), at = passes[k];
            const std::string px = k == last ? pfx_ : pass_pfx(k);
            const std::string fn = k == last ? pre_ : pass_fn(k);
            const std::string in = k == last ? "            " : "                ";
            if (k < last)
                out_ += fmt::format("            {} r{};\n            {{\n",
                                    c_type(instr(at).dtype), k);
            out_ += fmt::format("{}{}_acc a = {}_identity();\n", in, px, px);
            out_ += row_loop(
                static_cast<int>(k), loops[k],
                [&](const std::string& u) {
                    return fmt::format("{}_push(a, {});", px,
                                       call_loaded(fn, lo, at, u, reduced_args(lo)));
                },
                {}, push4(px, fn, lo, at, reduced_args(lo)));
            out_ += fmt::format("{}a = {}_block(a, wr);\n", in, px);
            if (k < last)
                out_ += fmt::format("                r{} = {};\n            }}\n", k,
                                    final_value(instr(at), at));
        }
        out_ += fmt::format("            const {} r = {};\n", c_type(red.dtype), final_value(red));
        out_ += row_loop(
            static_cast<int>(last + 1), loops.back(),
            [&](const std::string& u) {
                std::vector<std::string> as{reduced_args(n)};
                for (std::size_t k : loads_in(g_.reduce_at + 1, n))
                    as.push_back(fmt::format("l{}{}", k, u));
                for (std::size_t k : output_slots()) as.push_back(fmt::format("y{}{}", k, u));
                return fmt::format("{}({});", post_, fmt::join(as, ", "));
            },
            output_slots());
        out_ += "    }\n}\n";
    }

    void emit_entry() {
        bool rows = g_.kind == GroupKind::Reduce || g_.kind == GroupKind::RowNormalize ||
                    g_.kind == GroupKind::RowReduce;
        out_ += fmt::format("extern \"C\" __global__ void __launch_bounds__({}) {}({}) {{\n",
                            rows ? kRowBlockMax : kBlockSize, cuda_kernel_name(fname_, gi_),
                            slot_params(false));
        out_ += fmt::format("    {}_run<agnesi_index, AGNESI_DENSE>({});\n}}\n", pfx_, slot_args());
    }

    const Program& p_;
    const Group& g_;
    std::size_t gi_;
    std::string fname_;
    std::vector<Slot> slots_;
    RowCache cache_;
    std::string pre_, post_, pfx_;
    std::string out_;
};

std::string header(const std::string& name, const Program& p) {
    return fmt::format("// Agnesi: CUDA kernels of function '{}' ({})\n", sanitize(name),
                       counted(p.groups.size(), "group")) +
           cuda_scalar_prelude() + kPrelude;
}

}  // namespace

bool has_kernel(const Group& g) {
    return !g.outputs.empty();
}

bool vectorizable(const Program& p, const Group& g) {
    if (g.kind != GroupKind::Pointwise && g.kind != GroupKind::Matmul) return false;
    // The by-4 loop holds four copies of the body: worth it for short bodies (bandwidth-bound),
    // not for long ones (compile time and registers).
    if (g.instrs.size() > kMaxVectorInstrs) return false;
    auto ok = [&](const Access& a) {
        DType t = p.buffers[static_cast<std::size_t>(a.buffer)].dtype;
        return t == DType::Float32 || t == DType::Int32;
    };
    for (const Access& a : g.inputs)
        if (!ok(a)) return false;
    for (const auto& o : g.outputs)
        if (!ok(o.target)) return false;
    return true;
}

std::vector<bool> epilogue_inputs(const Group& g) {
    std::vector<bool> epi(g.inputs.size(), false);
    std::vector<bool> seen(g.inputs.size(), false);
    for (std::size_t i = 0; i < g.instrs.size(); ++i) {
        const Instr& in = g.instrs[i];
        if (in.kind != InstrKind::Load) continue;
        auto k = static_cast<std::size_t>(in.input);
        if (seen[k]) continue;
        seen[k] = true;
        epi[k] = g.in_epilogue(static_cast<int>(i));
    }
    return epi;
}

std::set<int> error_lines(const std::string& log) {
    std::set<int> lines;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
        std::size_t open = line.find('('), close = line.find("): error");
        if (open == std::string::npos || close == std::string::npos || close <= open + 1 ||
            close - open > 9)
            continue;
        std::string digits = line.substr(open + 1, close - open - 1);
        if (std::all_of(digits.begin(), digits.end(),
                        [](unsigned char c) { return std::isdigit(c); }))
            lines.insert(std::stoi(digits));
    }
    return lines;
}

std::string failing_groups(const Program& p, const std::string& source, const std::string& log) {
    const std::set<int> bad = error_lines(log);
    // Each line's group: the last "// group N:" comment above it.
    std::set<std::size_t> groups;
    std::istringstream in(source);
    std::string line;
    long group = -1;
    for (int n = 1; std::getline(in, line); ++n) {
        if (line.rfind("// group ", 0) == 0) group = std::strtol(line.c_str() + 9, nullptr, 10);
        if (bad.count(n) && group >= 0 && static_cast<std::size_t>(group) < p.groups.size())
            groups.insert(static_cast<std::size_t>(group));
    }
    std::string out;
    for (std::size_t gi : groups) {
        const Group& g = p.groups[gi];
        out += fmt::format("in group {} ({} over {}), which computes:\n", gi,
                           group_kind_name(g.kind), shape_string(g.domain));
        for (const auto& o : g.outputs) {
            const Node* node = g.instrs.at(static_cast<std::size_t>(o.instr)).node;
            std::string e = node ? to_string(Expr(node)) : "?";
            constexpr std::size_t kMax = 400;  // a deep expression stays readable
            if (e.size() > kMax) e = e.substr(0, kMax) + " ...";
            out += "    " + e + "\n";
        }
    }
    return out;
}

CompileError with_failing_groups(const CompileError& e, const Program& p) {
    std::string groups = failing_groups(p, e.source(), e.log());
    if (groups.empty()) return e;
    std::string what = e.what();
    std::size_t nl = std::min(what.find('\n'), what.size());
    std::string rest = nl < what.size() ? what.substr(nl + 1) : std::string();
    return CompileError(what.substr(0, nl) + "\n" + groups + rest, e.log(), e.source());
}

std::string cuda_kernel_name(const std::string& name, std::size_t gi) {
    return fmt::format("agnesi_{}_g{}", sanitize(name), gi);
}

std::string generate_cuda_group_source(const Program& p, const std::string& name, std::size_t gi) {
    return generate_cuda_source(p, name, {gi});
}

std::string generate_cuda_source(const Program& p, const std::string& name,
                                 const std::vector<std::size_t>& groups) {
    std::string s = header(name, p);
    bool any = false;
    for (std::size_t gi : groups)
        if (has_kernel(p.groups.at(gi))) {
            s += GroupEmitter(p, p.groups[gi], gi, name).emit();
            any = true;
        }
    return any ? s : std::string();
}

std::string generate_cuda_source(const Program& p, const std::string& name) {
    std::vector<std::size_t> all(p.groups.size());
    for (std::size_t gi = 0; gi < all.size(); ++gi) all[gi] = gi;
    return generate_cuda_source(p, name, all);
}

}  // namespace agnesi::jit::cuda
