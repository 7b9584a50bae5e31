// The CUDA executor (see executor.hpp), and the public CUDA entry points (Device::cuda,
// cuda_availability).
#include "jit/cuda/executor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

#include "agnesi/error.hpp"
#include "jit/cuda/nvrtc.hpp"

namespace agnesi::jit::cuda {

namespace {

// A call's scratch lists, on the stack for functions of up to 16 buffers: a call's own host
// cost is a few thousand instructions, and each heap allocation is a hundred or more of them.
template <class T>
using Scratch = boost::container::small_vector<T, 16>;

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Records that batch `u` uses device memory `d` (a block of this file; others are ignored).
void mark_used(const DeviceStorage* d, const StreamUse& u);

class Exec final : public CudaExecutor {
  public:
    Exec(CudaDevice& dev, std::string source) : dev_(dev), source_(std::move(source)) {
        tag_ = dev_.create_tagged_stream();
        stream_ = tag_->stream;
    }
    ~Exec() override {
        dev_.retire(tag_);  // waits for the stream: no kernel of the modules runs after this
        for (Module m : modules) dev_.unload_module(m);
    }

    std::string name() const override { return "cuda"; }
    std::string source() const override { return source_; }
    CudaDevice& device() override { return dev_; }
    Stream stream() const override { return stream_; }
    const StreamRef& tag() const override { return tag_; }
    void begin(const StreamUse& use) override { use_ = use; }
    void synchronize() override { dev_.wait({tag_, ~std::uint64_t(0)}); }
    std::shared_ptr<DeviceStorage>& constant(std::size_t b) override {
        if (constants_.size() <= b) constants_.resize(b + 1);
        return constants_[b];
    }

    // Per group, its kernel in each variant (kernel_variant): the likely one compiled with the
    // function, the others on their first launch.
    std::vector<std::array<Kernel, kKernelVariants>> kernels;
    std::vector<Module> modules;  // the kernels' modules, unloaded with the function
    std::string fname, arch;

    void run_group(const Program& p, std::size_t gi, const agnesi_group_args& a) override {
        const Group& g = p.groups[gi];
        if (!has_kernel(g)) return;
        LaunchPlan plan = plan_launch(p, g, a, dev_.sm_count());
        launch(p, gi, plan, a.ptrs);
    }

    void launch_group(const Program& p, std::size_t gi, const DevicePtr* bufs,
                      const DimEnv& env) override {
        const Group& g = p.groups[gi];
        if (!has_kernel(g)) return;
        if (prepared_.size() < p.groups.size()) prepared_.resize(p.groups.size());
        Prepared& pr = prepared_[gi];
        if (!pr.valid || pr.env != env) prepare(p, gi, env, pr);
        std::size_t nslots = pr.layout.buffer.size();
        pr.ptrs.resize(nslots);
        std::uint64_t aligned = 0;
        for (std::size_t k = 0; k < nslots; ++k) {
            DevicePtr ptr =
                bufs[pr.layout.buffer[k]] + static_cast<DevicePtr>(pr.layout.byte_offset[k]);
            pr.ptrs[k] = reinterpret_cast<void*>(ptr);
            aligned |= std::uint64_t(ptr % 16 == 0) << k;
        }
        // The plan depends on the pointers only through their alignment (by-4 modes).
        if (!pr.planned || aligned != pr.aligned) {
            pr.layout.args.ptrs = pr.ptrs.data();
            pr.plan = plan_launch(p, g, pr.layout.args, dev_.sm_count());
            pr.aligned = aligned;
            pr.planned = true;
        }
        launch(p, gi, pr.plan, pr.ptrs.data());
    }

    bool run_gemm(const Program& p, const Group& g, void* const* buffers,
                  const DimEnv& env) override {
        auto gi = static_cast<std::size_t>(&g - p.groups.data());
        if (fused_.size() < p.groups.size()) fused_.resize(p.groups.size());
        Fused& fu = fused_[gi];
        if (!fu.valid || fu.env != env) {
            fu.epilogue = fused_epilogue(p, g, env);
            fu.env = env;
            fu.valid = true;
        }
        GemmLayout l = gemm_layout(p, g, env);
        std::int64_t m = l.m, n = l.n, k = l.k;
        std::size_t rbatch = l.batch.size();
        const Shape& batch = l.batch;
        DType dt = p.buffers[static_cast<std::size_t>(g.gemm.out)].dtype;
        auto es = static_cast<std::int64_t>(dtype_size(dt));
        auto base = [&](int b) { return reinterpret_cast<DevicePtr>(buffers[b]); };
        DevicePtr pa = base(g.gemm.a.buffer) + static_cast<DevicePtr>(l.a_offset * es);
        DevicePtr pb = base(g.gemm.b.buffer) + static_cast<DevicePtr>(l.b_offset * es);
        DevicePtr pc = base(g.gemm.out);
        if (fu.epilogue.fused) {
            const FusedEpilogue& f = fu.epilogue;
            CudaDevice::GemmOperand ga{pa, l.a_rs, l.a_cs, 0}, gb{pb, l.b_rs, l.b_cs, 0};
            DevicePtr bias = base(f.bias) + static_cast<DevicePtr>(f.bias_offset * es);
            if (dev_.gemm_bias(m, n, k, ga, gb, bias, false, base(f.out), use_)) return true;
        }
        // The last batch axis goes to one strided-batched call; outer batch axes loop.
        std::int64_t inner = rbatch ? batch[rbatch - 1] : 1;
        std::int64_t outer = rbatch ? numel(batch) / std::max<std::int64_t>(inner, 1) : 1;
        if (rbatch && inner == 0) return false;
        std::vector<std::int64_t> idx(rbatch ? rbatch - 1 : 0, 0);
        for (std::int64_t o = 0; o < outer; ++o) {
            std::int64_t oa = 0, ob = 0;
            for (std::size_t d = 0; d + 1 < rbatch; ++d) {
                oa += idx[d] * l.a_batch[d];
                ob += idx[d] * l.b_batch[d];
            }
            CudaDevice::GemmOperand ga{pa + static_cast<DevicePtr>(oa * es), l.a_rs, l.a_cs,
                                       rbatch ? l.a_batch[rbatch - 1] : 0};
            CudaDevice::GemmOperand gb{pb + static_cast<DevicePtr>(ob * es), l.b_rs, l.b_cs,
                                       rbatch ? l.b_batch[rbatch - 1] : 0};
            dev_.gemm(dt, m, n, k, ga, gb, pc + static_cast<DevicePtr>(o * inner * m * n * es),
                      inner, use_);
            for (std::size_t d = idx.size(); d-- > 0;) {
                if (++idx[d] < batch[d]) break;
                idx[d] = 0;
            }
        }
        return false;
    }

  private:
    // A group's launch for one binding of the symbolic sizes: which buffer and byte offset each
    // slot has, its dims and strides, and the plan, so that a call only adds the buffers'
    // addresses (prepared on the first call, again when the sizes or alignments change).
    struct Prepared {
        bool valid = false;
        DimEnv env;
        GroupLayout layout;
        std::vector<void*> ptrs;
        bool planned = false;
        std::uint64_t aligned = 0;  // bit k: slot k's address is 16-byte aligned (64 slots)
        LaunchPlan plan;
    };
    std::vector<Prepared> prepared_;
    // Per Matmul group: whether cuBLASLt computes its epilogue, for one binding of the sizes.
    struct Fused {
        bool valid = false;
        DimEnv env;
        FusedEpilogue epilogue;
    };
    std::vector<Fused> fused_;

    void prepare(const Program& p, std::size_t gi, const DimEnv& env, Prepared& pr) {
        pr = Prepared{};
        pr.env = env;
        group_layout(p, p.groups[gi], env, pr.layout);
        pr.valid = true;
    }

    void launch(const Program& p, std::size_t gi, LaunchPlan& plan, void* const* ptrs) {
        if (!plan.launch) return;
        if (plan.workspace > 0) plan.params.ws = workspace(gi, plan);
        std::size_t nslots = plan.strides.size();
        params_.assign({&plan.params});
        for (std::size_t k = 0; k < nslots; ++k) {
            params_.push_back(const_cast<void**>(ptrs + k));
            params_.push_back(&plan.strides[k]);
        }
        Kernel k = kernel(p, gi, kernel_variant(plan));
        try {
            dev_.launch(k, plan.grid, plan.block, stream_, params_.data());
        } catch (const CudaError& e) {
            throw CudaError(
                fmt::format("{} (launching kernel {} of group {}, {} blocks of {})", e.what(),
                            cuda_kernel_name(fname, gi), gi, plan.grid, plan.block),
                e.call(), e.status());
        }
    }
    std::vector<void*> params_;

    // Group gi's workspace for a split reduction: kept between calls, zero-filled when it is
    // made; launches on the one stream never overlap. Its counters (plan_launch: after the
    // partial results, a word per output) are left at zero by the kernels, but where they lie
    // depends on the sizes: a launch whose counters lie elsewhere than the last one's, maybe on
    // partial results, zeroes them first.
    DevicePtr workspace(std::size_t gi, const LaunchPlan& plan) {
        const std::size_t bytes = plan.workspace;
        const std::size_t counters =
            static_cast<std::size_t>(plan.params.count) * sizeof(std::uint32_t);
        AGNESI_ASSERT(counters <= bytes) << "a split reduction's workspace holds its counters";
        const std::size_t at = bytes - counters;
        if (workspaces_.size() <= gi) workspaces_.resize(gi + 1);
        auto& w = workspaces_[gi];
        if (!w.block || w.bytes < bytes) {
            std::shared_ptr<DeviceStorage> block = device_block(dev_, bytes, tag_);
            dev_.zero(block->address(), bytes, stream_);
            w = Workspace{std::move(block), bytes, at, counters};
        } else if (w.counters_at != at || w.counters != counters) {
            dev_.zero(w.block->address() + at, counters, stream_);
            w.counters_at = at;
            w.counters = counters;
        }
        mark_used(w.block.get(), use_);
        return w.block->address();
    }
    struct Workspace {
        std::shared_ptr<DeviceStorage> block;
        std::size_t bytes = 0;
        std::size_t counters_at = 0, counters = 0;  // the last launch's counters (bytes)
    };
    std::vector<Workspace> workspaces_;

    Kernel kernel(const Program& p, std::size_t gi, int variant) {
        Kernel& k = kernels[gi][static_cast<std::size_t>(variant)];
        if (!k) {  // a variant the function's likely layouts did not need: this group alone
            NvrtcOptions o;
            o.arch = arch;
            o.extra = variant_options(variant);
            CompileResult r;
            try {
                r = nvrtc_compile(generate_cuda_group_source(p, fname, gi),
                                  fmt::format("{}_g{}_v{}", fname, gi, variant), o);
            } catch (const CompileError& e) {
                throw with_failing_groups(e, p);
            }
            modules.push_back(dev_.load_module(*r.cubin));
            k = dev_.kernel(modules.back(), cuda_kernel_name(fname, gi));
        }
        return k;
    }

    CudaDevice& dev_;
    StreamRef tag_;
    Stream stream_ = nullptr;
    StreamUse use_;  // this call's batch
    std::string source_;
    std::vector<std::shared_ptr<DeviceStorage>> constants_;
};

class Block final : public DeviceStorage {
  public:
    Block(CudaDevice& dev, std::size_t bytes, const StreamRef& tag)
        : dev_(dev), ptr_(dev.alloc(bytes, tag)) {}
    ~Block() override { dev_.release(ptr_, uses()); }
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;
    int device_ordinal() const override { return dev_.ordinal(); }
    std::uint64_t address() const override { return ptr_; }
    void download(void* host, std::size_t bytes) const override {
        for (const StreamUse& u : uses()) dev_.wait(u);  // the work that wrote it, wherever
        dev_.make_current();
        dev_.download(host, ptr_, bytes, nullptr);
        dev_.synchronize(nullptr);
    }
    std::vector<StreamUse> uses() const {
        std::lock_guard lock(mutex_);
        return uses_;
    }
    // `u` is its last use on u's stream.
    void use(const StreamUse& u) const {
        std::lock_guard lock(mutex_);
        for (StreamUse& e : uses_)
            if (e.tag == u.tag) {
                e = u;
                return;
            }
        uses_.push_back(u);
    }
    // `u` is its only use, if no other stream has used it; false otherwise (nothing changed).
    bool use_if_alone(const StreamUse& u) const {
        std::lock_guard lock(mutex_);
        for (const StreamUse& e : uses_)
            if (e.tag != u.tag) return false;
        if (uses_.empty())
            uses_.push_back(u);
        else
            uses_.front() = u;
        return true;
    }
    // `u` is its last use on u's stream, and the uses in `finished` (other streams' batches,
    // waited for) are gone. A use another thread recorded meanwhile (a later batch) stays.
    void use_after(const StreamUse& u, const std::vector<StreamUse>& finished) const {
        std::lock_guard lock(mutex_);
        std::erase_if(uses_, [&](const StreamUse& e) {
            return e.tag == u.tag || std::ranges::any_of(finished, [&](const StreamUse& f) {
                       return f.tag == e.tag && e.batch <= f.batch;
                   });
        });
        uses_.push_back(u);
    }

  private:
    CudaDevice& dev_;
    DevicePtr ptr_;
    mutable std::mutex mutex_;
    // The batch that last used it (read or written) on each stream. Calls wait for the other
    // streams' uses before theirs, so more than one is pending only while calls of several
    // functions on several threads share it.
    mutable std::vector<StreamUse> uses_;
};

void mark_used(const DeviceStorage* d, const StreamUse& u) {
    if (auto* b = dynamic_cast<const Block*>(d)) b->use(u);
}

// Device memory that batch `u` is about to use: work on other streams that used it is waited
// for first, then `u` is its last use.
void adopt(CudaDevice& dev, const DeviceStorage* d, const StreamUse& u) {
    auto* b = dynamic_cast<const Block*>(d);
    if (!b || b->use_if_alone(u)) return;
    std::vector<StreamUse> finished;
    for (const StreamUse& e : b->uses()) {
        if (e.tag == u.tag) continue;
        dev.wait(e);
        // Still running: a call of another function, on another thread, is launching it.
        if (!dev.pending(e)) finished.push_back(e);
    }
    b->use_after(u, finished);
}

}  // namespace

std::unique_ptr<CudaExecutor> make_cuda_executor(const Program& p, const CompileOptions& options,
                                                 CompileStats& stats) {
    CudaDevice& dev = CudaDevice::get(options.device.ordinal);
    auto t0 = std::chrono::steady_clock::now();
    // One module per core at most: each NVRTC run has a fixed cost (30-40 ms), so a function's
    // kernels are dealt round-robin into as many modules as there are cores to compile them.
    // Each group compiles in the variant its layout most likely needs (a dense kernel is less
    // NVRTC work), so a module holds the groups of one variant.
    struct ModuleSpec {
        int variant;
        std::vector<std::size_t> groups;
    };
    std::vector<std::vector<std::size_t>> by_variant(kKernelVariants);
    std::size_t with_kernel = 0;
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi)
        if (has_kernel(p.groups[gi])) {
            by_variant[static_cast<std::size_t>(likely_variant(p, p.groups[gi], dev.sm_count()))]
                .push_back(gi);
            ++with_kernel;
        }
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    std::vector<ModuleSpec> modules;
    for (int v = 0; v < kKernelVariants; ++v) {
        const auto& gs = by_variant[static_cast<std::size_t>(v)];
        if (gs.empty()) continue;
        // This variant's share of the cores, at least one module.
        std::size_t n = std::clamp<std::size_t>(cores * gs.size() / with_kernel, 1, gs.size());
        std::size_t first = modules.size();
        modules.resize(first + n, ModuleSpec{v, {}});
        for (std::size_t i = 0; i < gs.size(); ++i) modules[first + i % n].groups.push_back(gs[i]);
    }
    std::vector<std::string> sources;
    std::vector<std::vector<std::string>> extra;
    for (const auto& m : modules) {
        sources.push_back(generate_cuda_source(p, options.name, m.groups));
        extra.push_back(variant_options(m.variant));
    }
    std::string whole = generate_cuda_source(p, options.name);
    stats.codegen_ms = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    NvrtcOptions no;
    no.arch = dev.arch();
    std::vector<CompileResult> compiled;
    try {
        compiled = nvrtc_compile_all(sources, options.name, no,
                                     static_cast<int>(std::min(modules.size(), cores)), extra);
    } catch (const CompileError& e) {
        throw with_failing_groups(e, p);
    }
    stats.compile_ms = 0;
    stats.cache_hit = true;
    for (const auto& c : compiled)
        if (c.cubin && !c.cache_hit) stats.cache_hit = false;
    if (!stats.cache_hit) stats.compile_ms = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    auto ex = std::make_unique<Exec>(dev, std::move(whole));
    ex->kernels.resize(p.groups.size());
    ex->fname = options.name;
    ex->arch = no.arch;
    for (std::size_t mi = 0; mi < modules.size(); ++mi) {
        Module m = dev.load_module(*compiled[mi].cubin);
        ex->modules.push_back(m);
        for (std::size_t gi : modules[mi].groups)
            ex->kernels[gi][static_cast<std::size_t>(modules[mi].variant)] =
                dev.kernel(m, cuda_kernel_name(options.name, gi));
    }
    stats.load_ms = ms_since(t0);
    return ex;
}

std::shared_ptr<DeviceStorage> device_block(CudaDevice& dev, std::size_t bytes,
                                            const StreamRef& tag) {
    return std::make_shared<Block>(dev, bytes, tag);
}

std::vector<Tensor> run_program(CudaExecutor& ex, const Program& p,
                                const std::vector<Tensor>& inputs, std::vector<Tensor>& shared,
                                const DimEnv& env, bool wait, std::vector<double>* group_ms) {
    CudaDevice& dev = ex.device();
    dev.make_current();
    Stream s = ex.stream();
    const StreamRef& tag = ex.tag();
    // This call's work is one batch on the function's stream. Every block it touches records
    // the batch, so that the host waits for it before reading the block and another stream
    // waits before using it; the pool gives a released block to other streams only then.
    const StreamUse use = dev.begin_batch(tag);
    ex.begin(use);
    Scratch<DevicePtr> bufs(p.buffers.size(), 0);
    // Blocks that outlive the call (outputs, uploaded shared values and constants), declared
    // before the guard below so that they are released after it.
    Scratch<std::shared_ptr<DeviceStorage>> blocks(p.buffers.size());
    Scratch<DevicePtr> temps;
    struct End {  // however the call ends: the batch is launched, temporaries go back
        CudaDevice& dev;
        const StreamUse& use;
        bool wait;
        Scratch<DevicePtr>& temps;
        ~End() {
            dev.end_batch(use);
            if (wait) {
                try {  // an error here was reported by the call, or will be by the next one
                    dev.wait(use);
                } catch (...) {
                }
            }
            for (DevicePtr b : temps) dev.release(b, {use});
        }
    } end{dev, use, wait, temps};
    for (std::size_t b = 0; b < p.buffers.size(); ++b) {
        const Buffer& buf = p.buffers[b];
        Shape shape = concrete(buf.shape, env);
        std::size_t bytes = static_cast<std::size_t>(numel(shape)) * dtype_size(buf.dtype);
        const Tensor* host = nullptr;
        switch (buf.kind) {
            case BufferKind::Input: host = &inputs.at(static_cast<std::size_t>(buf.slot)); break;
            case BufferKind::Shared: host = &shared.at(static_cast<std::size_t>(buf.slot)); break;
            case BufferKind::Constant: {
                auto& c = ex.constant(b);
                if (!c) {  // kept only once its upload is queued
                    std::shared_ptr<DeviceStorage> block = device_block(dev, bytes, tag);
                    dev.upload(block->address(), buf.value.raw(), bytes, s);
                    c = std::move(block);
                }
                mark_used(c.get(), use);
                bufs[b] = c->address();
                continue;
            }
            case BufferKind::Output: {
                blocks[b] = device_block(dev, bytes, tag);
                mark_used(blocks[b].get(), use);
                bufs[b] = blocks[b]->address();
                continue;
            }
            case BufferKind::Temp: break;
        }
        if (host) {
            const DeviceStorage* d = host->device_storage();
            if (d && d->device_ordinal() == dev.ordinal()) {
                adopt(dev, d, use);
                bufs[b] = d->address();
                continue;
            }
            // Copies from pageable host memory are staged before the call returns: the caller
            // may change its tensor at once.
            const void* values = std::as_const(*host).raw();
            if (buf.kind == BufferKind::Shared) {  // uploaded once, then kept on the device
                blocks[b] = device_block(dev, bytes, tag);
                mark_used(blocks[b].get(), use);
                bufs[b] = blocks[b]->address();
                dev.upload(bufs[b], values, bytes, s);
                continue;
            }
            bufs[b] = dev.alloc(bytes, tag);
            temps.push_back(bufs[b]);
            dev.upload(bufs[b], values, bytes, s);
            continue;
        }
        bufs[b] = dev.alloc(bytes, tag);
        temps.push_back(bufs[b]);
    }
    Scratch<void*> dptrs;
    for (DevicePtr b : bufs) dptrs.push_back(reinterpret_cast<void*>(b));
    // Profiling: an event before each group's work and one after the last, on the stream.
    struct Events {
        CudaDevice& dev;
        std::vector<Event> at;
        ~Events() {
            for (Event e : at) dev.destroy_event(e);
        }
    } events{dev, {}};
    if (group_ms)
        for (std::size_t k = 0; k <= p.groups.size(); ++k) events.at.push_back(dev.create_event());
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
        const Group& g = p.groups[gi];
        if (group_ms) dev.record(events.at[gi], s);
        if (g.kind == GroupKind::Matmul &&
            (ex.run_gemm(p, g, dptrs.data(), env) || g.outputs.empty()))
            continue;
        ex.launch_group(p, gi, bufs.data(), env);
    }
    if (group_ms) dev.record(events.at.back(), s);
    if (wait || group_ms) {  // launch errors reported by the wait come from this call
        dev.end_batch(use);
        dev.wait(use);
    }
    if (group_ms) {
        group_ms->assign(p.groups.size(), 0.0);
        for (std::size_t gi = 0; gi < p.groups.size(); ++gi)
            (*group_ms)[gi] = dev.elapsed_ms(events.at[gi], events.at[gi + 1]);
    }
    // A buffer returned twice gets a tensor of its own each time (its host copy is its own).
    std::vector<Tensor> out;
    out.reserve(p.outputs.size());
    Scratch<char> taken(p.buffers.size(), 0);
    for (int ob : p.outputs) {
        auto b = static_cast<std::size_t>(ob);
        const Buffer& buf = p.buffers[b];
        Shape shape = concrete(buf.shape, env);
        if (buf.kind == BufferKind::Output) {
            out.push_back(Tensor::on_device(buf.dtype, std::move(shape), blocks[b]));
        } else {
            Tensor t = buf.kind == BufferKind::Input ? inputs.at(static_cast<std::size_t>(buf.slot))
                       : buf.kind == BufferKind::Shared
                           ? shared.at(static_cast<std::size_t>(buf.slot))
                           : buf.value;
            out.push_back(taken[b] ? t.clone() : t);
        }
        taken[b] = 1;
    }
    for (std::size_t b = 0; b < p.buffers.size(); ++b) {
        const Buffer& buf = p.buffers[b];
        if (buf.kind != BufferKind::Shared || !blocks[b]) continue;
        // No host values kept: the caller may still write to the tensor it gave.
        shared.at(static_cast<std::size_t>(buf.slot)) =
            Tensor::on_device(buf.dtype, concrete(buf.shape, env), blocks[b]);
    }
    return out;
}

}  // namespace agnesi::jit::cuda

namespace agnesi {

CudaAvailability cuda_availability() {
    auto a = jit::cuda::probe_cuda();
    if (!a.available) return a;
    auto n = jit::cuda::nvrtc_status();
    if (!n.available) return {false, n.reason};
    return a;
}

Device Device::cuda(int ordinal) {
    auto a = cuda_availability();
    if (!a.available)
        throw Error(
            fmt::format("Device::cuda({}): no CUDA device available: {}", ordinal, a.reason));
    jit::cuda::CudaDevice::get(ordinal);  // checks the ordinal
    Device d;
    d.kind = Kind::Cuda;
    d.ordinal = ordinal;
    return d;
}

}  // namespace agnesi
