// The CUDA emulator (backend.hpp, make_cuda_emulator): the kernels the CUDA backend generates,
// exactly as NVRTC gets them, compiled by the host compiler behind a prelude that defines CUDA's
// built-ins, and launched as the CUDA executor plans them (jit/cuda/plan.hpp). Blocks run one
// after another; the threads of a block run as fibers on the calling thread, switching only at
// __syncthreads and warp shuffles, which wait for every thread of the block or warp. So the
// kernels' indexing, launch modes, shared memory and reductions are checked on any machine;
// only the device's own arithmetic (and its speed) is not.
#include <fmt/format.h>
#include <ucontext.h>

#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agnesi/error.hpp"
#include "jit/backend.hpp"
#include "jit/cpu/compiler.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/cuda/plan.hpp"
#include "jit/scalar_emit.hpp"

namespace agnesi::jit::cuda {
namespace {

// CUDA's built-ins for the host. The fixed-width names are renamed so that the kernel source's
// own typedefs cannot clash with the C library's. Shared memory is static per thread of the
// host, so concurrent calls from several threads do not share it.
const char* kEmulationPrelude = R"(#include <math.h>
#include <string.h>
/* The float atan of <cmath> calls __builtin_atanf, which GCC folds into sin(atan(x)) and
   cos(atan(x)) as algebra that is wrong for a NaN; atanf itself is no builtin here (the native
   compiler's flags), as on a GPU. */
static inline double agnesi_emu_atan(double x) { return atan(x); }
static inline float agnesi_emu_atan(float x) { return atanf(x); }
#define atan agnesi_emu_atan
#define int64_t agnesi_emu_i64
#define uint64_t agnesi_emu_u64
#define int32_t agnesi_emu_i32
#define uint32_t agnesi_emu_u32
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __grid_constant__
#define __shared__ static thread_local
struct agnesi_emu_dim3 { unsigned x, y, z; };
struct agnesi_emu_rt {
    agnesi_emu_dim3 thread, block, block_dim, grid_dim;
    void* self;
    void (*sync)(void*);
    void (*shfl)(void*, const void*, void*, unsigned, int, int);
};
/* 64-byte alignment for this module's thread-local block: AddressSanitizer's __tls_get_addr
   hook misreads a block that malloc places 16 bytes into a page, and a leak check then crashes. */
static thread_local const agnesi_emu_rt* agnesi_emu __attribute__((aligned(64)));
#define threadIdx (agnesi_emu->thread)
#define blockIdx (agnesi_emu->block)
#define blockDim (agnesi_emu->block_dim)
#define gridDim (agnesi_emu->grid_dim)
static inline void __syncthreads() { agnesi_emu->sync(agnesi_emu->self); }
template <class T> static inline T __shfl_down_sync(unsigned, T v, int off) {
    T r;
    agnesi_emu->shfl(agnesi_emu->self, &v, &r, sizeof(T), off, 0);
    return r;
}
template <class T> static inline T __shfl_sync(unsigned, T v, int lane) {
    T r;
    agnesi_emu->shfl(agnesi_emu->self, &v, &r, sizeof(T), lane, 1);
    return r;
}
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
static inline double __longlong_as_double(long long i) { double f; memcpy(&f, &i, sizeof f); return f; }
static inline void __threadfence() {}
static inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
template <class T> static inline T __ldcg(const T* p) { return *p; }
/* A 16-byte access off alignment faults on a GPU; on the host it would go unseen. */
#include <stdio.h>
#include <stdlib.h>
#define AGNESI_ASSERT_ALIGNED(p) agnesi_emu_assert_aligned(p, __LINE__)
static inline void agnesi_emu_assert_aligned(const void* p, int line) {
    if ((unsigned long long)p & 15) {
        fprintf(stderr, "CUDA emulator: a 16-byte access at %p, off alignment (line %d)\n", p, line);
        abort();
    }
}
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
)";

struct Dim3 {
    unsigned x = 0, y = 0, z = 0;
};
// Mirrors agnesi_emu_rt in the prelude.
struct Runtime {
    Dim3 thread, block, block_dim, grid_dim;
    void* self = nullptr;
    void (*sync)(void*) = nullptr;
    void (*shfl)(void*, const void*, void*, unsigned, int, int) = nullptr;
};

using Entry = void (*)(void* const* args, const Runtime* rt);

// In a build under AddressSanitizer the kernels are compiled with it too, so that a kernel that
// reads or writes outside its buffers fails the test that launches it (on a GPU such a read can
// go unseen).
#if defined(__SANITIZE_ADDRESS__)
#define AGNESI_EMULATOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AGNESI_EMULATOR_ASAN 1
#endif
#endif
#ifdef AGNESI_EMULATOR_ASAN
const std::vector<std::string> kKernelFlags{"-fsanitize=address", "-fno-omit-frame-pointer"};
#else
const std::vector<std::string> kKernelFlags{};
#endif

constexpr std::size_t kStackBytes = 256 * 1024;
// Small on purpose: grids are capped by the SM count, so few blocks run each grid-stride loop
// many times, and fewer than two blocks per SM exercises the long-row paths.
constexpr int kEmulatedSms = 2;

// One block of threads as fibers. A thread runs until it waits at a barrier (its block's, or its
// warp's for a shuffle) or returns; a barrier opens when every thread of the block or warp that
// has not returned waits at it.
class BlockRun {
  public:
    enum class State : std::uint8_t { Ready, AtSync, AtWarp, Done };

    BlockRun(Entry entry, void* const* args, unsigned block, unsigned grid, unsigned threads)
        : entry_(entry),
          args_(args),
          n_(threads),
          state_(threads, State::Ready),
          ctx_(threads),
          slots_{std::vector<Slot>(threads), std::vector<Slot>(threads)},
          shuffles_(threads, 0) {
        rt_.block = {block, 0, 0};
        rt_.grid_dim = {grid, 1, 1};
        rt_.block_dim = {threads, 1, 1};
        rt_.self = this;
        rt_.sync = [](void* self) { static_cast<BlockRun*>(self)->wait(State::AtSync); };
        rt_.shfl = [](void* self, const void* in, void* out, unsigned size, int arg, int idx) {
            static_cast<BlockRun*>(self)->shfl(in, out, size, arg, idx != 0);
        };
    }

    void run() {
        auto& stacks = stack_pool();
        while (stacks.size() < n_) stacks.emplace_back(new char[kStackBytes]);
        for (unsigned t = 0; t < n_; ++t) {
            ucontext_t& c = ctx_[t];
            if (getcontext(&c) != 0) throw Error("CUDA emulator: getcontext failed");
            c.uc_stack.ss_sp = stacks[t].get();
            c.uc_stack.ss_size = kStackBytes;
            c.uc_link = &main_;
            makecontext(&c, &BlockRun::fiber_main, 0);
        }
        BlockRun* outer = current();
        current() = this;
        for (;;) {
            bool ran = false;
            for (unsigned t = 0; t < n_; ++t) {
                if (state_[t] != State::Ready) continue;
                ran = true;
                cur_ = t;
                rt_.thread = {t, 0, 0};
                swapcontext(&main_, &ctx_[t]);
            }
            if (ran) continue;
            if (!release()) break;
        }
        current() = outer;
        for (unsigned t = 0; t < n_; ++t)
            if (state_[t] != State::Done)
                throw InternalError(fmt::format(
                    "CUDA emulator: block {} cannot go on: its threads wait at different "
                    "barriers (thread {} at a {})",
                    rt_.block.x, t, state_[t] == State::AtSync ? "__syncthreads" : "warp shuffle"));
    }

  private:
    // Opens the barriers every live thread of the block, or of a warp, waits at. False when
    // nothing could be opened (all done, or stuck).
    bool release() {
        bool live = false, all_sync = true;
        for (unsigned t = 0; t < n_; ++t) {
            if (state_[t] == State::Done) continue;
            live = true;
            all_sync = all_sync && state_[t] == State::AtSync;
        }
        if (!live) return false;
        if (all_sync) {
            for (unsigned t = 0; t < n_; ++t)
                if (state_[t] == State::AtSync) state_[t] = State::Ready;
            return true;
        }
        bool opened = false;
        for (unsigned w = 0; w < n_; w += 32) {
            unsigned end = std::min(n_, w + 32);
            bool any = false, all_warp = true;
            for (unsigned t = w; t < end; ++t) {
                if (state_[t] == State::Done) continue;
                any = true;
                all_warp = all_warp && state_[t] == State::AtWarp;
            }
            if (!any || !all_warp) continue;
            for (unsigned t = w; t < end; ++t)
                if (state_[t] == State::AtWarp) state_[t] = State::Ready;
            opened = true;
        }
        return opened;
    }

    void wait(State s) {
        unsigned t = cur_;
        state_[t] = s;
        swapcontext(&ctx_[t], &main_);
        // Resumed by run(), which set cur_ and the thread index back to this thread.
    }

    // The value of lane + arg of this warp (__shfl_down_sync), or of lane arg (__shfl_sync);
    // this thread's own where that lane is past the warp.
    // Slots alternate between two sets, so one barrier suffices: a lane writes a set again only
    // after the next shuffle's barrier, which every lane reaches after reading this one.
    void shfl(const void* in, void* out, unsigned size, int arg, bool idx) {
        if (size > sizeof(Slot)) throw InternalError("CUDA emulator: a shuffle of over 16 bytes");
        unsigned t = cur_;
        unsigned set = shuffles_[t]++ & 1;
        std::vector<Slot>& slots = slots_[set];
        std::memcpy(slots[t].data(), in, size);
        wait(State::AtWarp);
        unsigned lane = t % 32;
        unsigned src = idx ? static_cast<unsigned>(arg) : lane + static_cast<unsigned>(arg);
        if (arg >= 0 && src < 32 && t - lane + src < n_)
            std::memcpy(out, slots[t - lane + src].data(), size);
        else
            std::memcpy(out, in, size);
    }

    static void fiber_main() {
        BlockRun* b = current();
        b->entry_(b->args_, &b->rt_);
        b->state_[b->cur_] = State::Done;
        // Returning resumes main_ (uc_link).
    }

    static BlockRun*& current() {
        thread_local BlockRun* c = nullptr;
        return c;
    }
    static std::vector<std::unique_ptr<char[]>>& stack_pool() {
        thread_local std::vector<std::unique_ptr<char[]>> pool;
        return pool;
    }

    using Slot = std::array<unsigned char, 16>;
    Entry entry_;
    void* const* args_;
    unsigned n_;
    std::vector<State> state_;
    std::vector<ucontext_t> ctx_;
    std::vector<Slot> slots_[2];
    std::vector<unsigned> shuffles_;
    ucontext_t main_{};
    unsigned cur_ = 0;
    Runtime rt_;
};

// The entry points of group gi's kernel, general and dense (agnesi_emu_general_<gi> and
// agnesi_emu_dense_<gi>): each unpacks the launch arguments (as cuLaunchKernel takes them: the
// address of each parameter) into a call of the kernel's code in its variant.
std::string trampoline(const Program& p, std::size_t gi) {
    const Group& g = p.groups[gi];
    std::vector<std::string> as{"*(const agnesi_params*)a[0]"};
    std::size_t k = 0;
    auto add = [&](const Access& acc, bool output) {
        std::string t = c_type(p.buffers[static_cast<std::size_t>(acc.buffer)].dtype);
        as.push_back(fmt::format("*({}{}* const*)a[{}]", output ? "" : "const ", t, 1 + 2 * k));
        as.push_back(fmt::format("*(const agnesi_strides*)a[{}]", 2 + 2 * k));
        ++k;
    };
    for (const Access& a : g.inputs) add(a, false);
    for (const auto& o : g.outputs) add(o.target, true);
    std::string s;
    for (const char* v : {"general", "dense"})
        s += fmt::format(
            "extern \"C\" void agnesi_emu_{0}_{1}(void* const* a, const agnesi_emu_rt* rt) {{\n"
            "    agnesi_emu = rt;\n    agnesi_g{1}_run<agnesi_index, {2}>({3});\n}}\n",
            v, gi, v[0] == 'd' ? "true" : "false", fmt::join(as, ", "));
    return s;
}

// Every group's kernel in one module (one compiler run per function, as the CUDA executor
// compiles one module per core), general and dense; the 64-bit index variants only when a
// launch needs them.
class Emulator final : public Executor {
  public:
    Emulator(const Program& p, std::string fname, cpu::HostCompiler cc)
        : fname_(std::move(fname)), cc_(std::move(cc)), source_(generate_cuda_source(p, fname_)) {
        narrow_ = build(p, false);
    }

    std::string name() const override { return "cuda-emulator"; }
    std::string source() const override { return source_; }

    // What cuBLASLt's bias epilogue computes on a GPU, where the CUDA executor uses it: the
    // group's output written from the product, and no kernel.
    bool run_fused_epilogue(const Program& p, std::size_t gi, void* const* buffers,
                            const DimEnv& env) override {
        const Group& g = p.groups[gi];
        FusedEpilogue f = fused_epilogue(p, g, env);
        if (!f.fused) return false;
        GemmLayout l = gemm_layout(p, g, env);
        auto buf = [&](int b) { return static_cast<float*>(buffers[static_cast<std::size_t>(b)]); };
        const float* c = buf(g.gemm.out);
        const float* bias = buf(f.bias) + f.bias_offset;
        float* out = buf(f.out);
        for (std::int64_t i = 0; i < l.m; ++i)
            for (std::int64_t j = 0; j < l.n; ++j) out[i * l.n + j] = c[i * l.n + j] + bias[j];
        return true;
    }

    void run_group(const Program& p, std::size_t gi, const agnesi_group_args& a) override {
        const Group& g = p.groups[gi];
        if (!has_kernel(g)) return;
        LaunchPlan plan = plan_launch(p, g, a, kEmulatedSms);
        if (!plan.launch) return;
        Entries* e = &narrow_;
        if (plan.wide) {
            std::lock_guard lock(mutex_);
            if (wide_.general.empty()) wide_ = build(p, true);
            e = &wide_;
        }
        Entry fn = (plan.dense ? e->dense : e->general).at(gi);
        std::vector<char> workspace(plan.workspace, 0);
        if (plan.workspace > 0) plan.params.ws = reinterpret_cast<std::uintptr_t>(workspace.data());
        auto nslots = static_cast<std::size_t>(a.num_inputs + a.num_outputs);
        std::vector<void*> ptrs(a.ptrs, a.ptrs + nslots);
        std::vector<void*> args{&plan.params};
        for (std::size_t k = 0; k < nslots; ++k) {
            args.push_back(&ptrs[k]);
            args.push_back(&plan.strides[k]);
        }
        for (unsigned b = 0; b < plan.grid; ++b)
            BlockRun(fn, args.data(), b, plan.grid, plan.block).run();
    }

  private:
    struct Entries {
        std::vector<Entry> general, dense;
    };
    Entries build(const Program& p, bool wide) {
        Entries entries{std::vector<Entry>(p.groups.size(), nullptr),
                        std::vector<Entry>(p.groups.size(), nullptr)};
        if (source_.empty()) return entries;
        std::string src = kEmulationPrelude;
        if (wide) src += "#define AGNESI_WIDE_INDEX 1\n";
        src += source_ + "\n";
        for (std::size_t gi = 0; gi < p.groups.size(); ++gi)
            if (has_kernel(p.groups[gi])) src += trampoline(p, gi);
        cpu::BuildResult r = cpu::build(src, cc_, kKernelFlags);
        modules_.push_back(r.module);
        for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
            if (!has_kernel(p.groups[gi])) continue;
            // Through void (*)(): the symbol's real type is Entry, not GroupFn.
            auto entry = [&](const char* v) {
                return reinterpret_cast<Entry>(reinterpret_cast<void (*)()>(
                    r.module->function(fmt::format("agnesi_emu_{}_{}", v, gi))));
            };
            entries.general[gi] = entry("general");
            entries.dense[gi] = entry("dense");
        }
        return entries;
    }

    std::string fname_;
    cpu::HostCompiler cc_;
    std::string source_;
    Entries narrow_, wide_;
    std::vector<std::shared_ptr<cpu::Module>> modules_;
    std::mutex mutex_;
};

}  // namespace

}  // namespace agnesi::jit::cuda

namespace agnesi::jit {

std::unique_ptr<Executor> make_cuda_emulator(const Program& p, const CompileOptions& options) {
    auto cc = cpu::find_compiler();
    if (!cc)
        throw Error(fmt::format(
            "{}: the CUDA emulator compiles kernels with a host C++ compiler, and none was found "
            "(set AGNESI_CXX)",
            options.name.empty() ? "compile" : options.name));
    return std::make_unique<cuda::Emulator>(p, options.name.empty() ? "f" : options.name, *cc);
}

}  // namespace agnesi::jit
