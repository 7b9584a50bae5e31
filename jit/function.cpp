// compile() and Function: input checks, symbolic sizes, buffers, running the groups, updates.
#include <fmt/format.h>

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <exception>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "agnesi/error.hpp"
#include "agnesi/jit.hpp"
#include "agnesi/print.hpp"
#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"
#include "jit/backend.hpp"

#ifdef AGNESI_HAVE_OPENBLAS
#include <cblas.h>
#endif
#ifdef AGNESI_WITH_CUDA
#include "jit/cuda/executor.hpp"
#endif

namespace agnesi {

// ---- shared variables ------------------------------------------------------------------------

namespace {

struct SharedSlot {
    std::mutex mutex;
    Tensor value;
};

struct SharedRegistry {
    std::mutex mutex;
    std::unordered_map<const Node*, std::shared_ptr<SharedSlot>> slots;

    static SharedRegistry& get() {
        static SharedRegistry r;
        return r;
    }
    std::shared_ptr<SharedSlot> find(const Node* n) {
        std::lock_guard lock(mutex);
        auto it = slots.find(n);
        return it == slots.end() ? nullptr : it->second;
    }
};

// The CPU count, read once: glibc reads /sys/devices/system/cpu/online on every
// hardware_concurrency(), which cost a small call more than its loops (10 of 14 us).
int cpu_count() {
    static const int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return n;
}

std::shared_ptr<SharedSlot> slot_of(const Expr& v, const char* what) {
    if (!v) throw ValueError(fmt::format("{}: empty Expr", what));
    auto s = SharedRegistry::get().find(v.node());
    if (!s) throw ValueError(fmt::format("{}: '{}' is not a shared variable", what, to_string(v)));
    return s;
}

void check_value(const Expr& v, const Tensor& t, const char* what) {
    if (t.dtype() != v.dtype())
        throw TypeError(fmt::format("{}: shared variable '{}' is {}, the value is {}", what,
                                    v->name(), dtype_name(v.dtype()), dtype_name(t.dtype())));
    if (t.shape() != v.shape())
        throw ShapeError(fmt::format("{}: shared variable '{}' has shape {}, the value has {}",
                                     what, v->name(), shape_string(v.shape()),
                                     shape_string(t.shape())));
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Expr shared(std::string name, const Tensor& initial, Context& ctx) {
    if (!is_static(initial.shape()))
        throw ShapeError("shared: the initial value must have a static shape");
    Expr v = variable(name, initial.shape(), initial.dtype(), kNone, ctx);
    auto& reg = SharedRegistry::get();
    std::lock_guard lock(reg.mutex);
    auto [it, fresh] = reg.slots.try_emplace(v.node(), nullptr);
    if (!fresh)
        throw ValueError(fmt::format(
            "shared: a shared variable '{}' of this dtype and shape already exists", name));
    it->second = std::make_shared<SharedSlot>();
    it->second->value = initial.clone();
    return v;
}

bool is_shared(const Expr& v) {
    return v && SharedRegistry::get().find(v.node()) != nullptr;
}

Tensor get_value(const Expr& v) {
    auto s = slot_of(v, "get_value");
    std::lock_guard lock(s->mutex);
    return s->value.clone();
}

void set_value(const Expr& v, const Tensor& value) {
    auto s = slot_of(v, "set_value");
    check_value(v, value, "set_value");
    std::lock_guard lock(s->mutex);
    s->value = value.clone();
}

// ---- devices -------------------------------------------------------------------------------

std::string Device::name() const {
    return kind == Kind::Cpu ? "cpu" : fmt::format("cuda:{}", ordinal);
}

// ---- the function ---------------------------------------------------------------------------

class FunctionImpl {
  public:
    std::vector<Expr> inputs, outputs;
    std::vector<Update> updates;
    CompileOptions options;
    jit::Program program;
    std::vector<std::shared_ptr<SharedSlot>> shared;  // per program.shared
    std::vector<std::size_t> extrema;                 // the groups with a max or min reduction
    std::unique_ptr<jit::Executor> executor;
    CompileStats stats;
    mutable std::mutex mutex;  // one call at a time (buffers and shared values)
    // Native code compiling in the background while the evaluator answers calls.
    std::future<std::pair<std::unique_ptr<jit::Executor>, CompileStats>> pending;

    // Switches to the native executor once it is ready (wait: block until it is). A failed
    // background compile keeps the evaluator; waiting rethrows its error.
    void adopt_pending(bool wait) {
        if (pending.valid()) {
            if (!wait && pending.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
                return;
            try {
                auto [ex, st] = pending.get();
                if (ex) {
                    executor = std::move(ex);
                    st.schedule_ms = stats.schedule_ms;
                    st.groups = stats.groups;
                    stats = st;
                }
            } catch (...) {  // kept for wait_ready; calls go on with the evaluator
                background_error = std::current_exception();
            }
        }
        if (wait && background_error) std::rethrow_exception(background_error);
    }
    std::exception_ptr background_error;

    std::vector<Tensor> call(const std::vector<Tensor>& args);

    // Per group: calls and milliseconds (CompileOptions::profile).
    std::vector<std::pair<std::int64_t, double>> profiled;
    void add_profile(std::size_t gi, double ms) {
        if (profiled.size() != program.groups.size()) profiled.assign(program.groups.size(), {});
        profiled[gi].first += 1;
        profiled[gi].second += ms;
    }

    // Buffers are recycled between calls: temporaries at once, outputs and replaced shared
    // values once nobody else holds them. A fresh large buffer costs page faults on first touch.
    std::vector<Tensor> pool, lent;
    Tensor acquire(DType dt, const Shape& shape) {
        for (auto& t : lent)
            if (t.unique()) pool.push_back(std::move(t));
        std::erase_if(lent, [](const Tensor& t) { return !t.raw(); });  // moved to the pool
        for (auto it = pool.begin(); it != pool.end(); ++it)
            if (it->dtype() == dt && it->shape() == shape) {
                Tensor t = std::move(*it);
                pool.erase(it);
                return t;
            }
        return Tensor(dt, shape);
    }

    // Each group's arguments (sizes, strides and offsets into its buffers), computed on the
    // first call for a binding of the sizes; later calls only add the buffers' addresses.
    struct PreparedGroup {
        bool valid = false;
        jit::GroupCall call;
        std::vector<std::size_t> buffer;     // per slot
        std::vector<std::ptrdiff_t> offset;  // per slot, in bytes
    };
    std::vector<PreparedGroup> prepared;
    jit::DimEnv prepared_env;
    int prepared_threads = 0;
    const agnesi_group_args& group_args(std::size_t gi, const jit::DimEnv& env, int threads,
                                        void* const* ptrs) {
        const jit::Group& g = program.groups[gi];
        PreparedGroup& pg = prepared[gi];
        if (!pg.valid) {
            jit::prepare_group_call(program, g, ptrs, env, threads, pg.call);
            pg.buffer.clear();
            for (const auto& a : g.inputs) pg.buffer.push_back(static_cast<std::size_t>(a.buffer));
            for (const auto& o : g.outputs)
                pg.buffer.push_back(static_cast<std::size_t>(o.target.buffer));
            pg.offset.resize(pg.buffer.size());
            for (std::size_t k = 0; k < pg.buffer.size(); ++k)
                pg.offset[k] =
                    static_cast<char*>(pg.call.ptrs[k]) - static_cast<char*>(ptrs[pg.buffer[k]]);
            pg.valid = true;
        } else {
            for (std::size_t k = 0; k < pg.buffer.size(); ++k)
                pg.call.ptrs[k] = static_cast<char*>(ptrs[pg.buffer[k]]) + pg.offset[k];
        }
        return pg.call.args;
    }

  private:
    jit::DimEnv bind(const std::vector<Tensor>& args) const;
    void check_extrema(const jit::DimEnv& env) const;
};

// A max or min over an axis that this call's sizes make empty, where some value of it is wanted,
// is an error, as the reference evaluator says; every tier says so before it runs anything.
void FunctionImpl::check_extrema(const jit::DimEnv& env) const {
    for (std::size_t gi : extrema) {
        const jit::Group& g = program.groups[gi];
        const Shape d = jit::concrete(g.domain, env);
        std::int64_t reduced = 1, kept = 1;
        for (std::size_t a = 0; a < d.size(); ++a) {
            const bool r =
                g.kind == jit::GroupKind::Reduce
                    ? std::find(g.axes.begin(), g.axes.end(), static_cast<int>(a)) != g.axes.end()
                    : a + 1 == d.size();
            (r ? reduced : kept) *= d[a];
        }
        if (reduced != 0 || kept == 0) continue;
        for (const jit::Instr& in : g.instrs)
            if (in.kind == jit::InstrKind::Reduce &&
                (in.op == Op::ReduceMax || in.op == Op::ReduceMin))
                throw ValueError(fmt::format("{}: {} of an empty axis (group {}, shape {})",
                                             options.name, op_info(in.op).name, gi,
                                             shape_string(d)));
    }
}

jit::DimEnv FunctionImpl::bind(const std::vector<Tensor>& args) const {
    if (args.size() != inputs.size()) {
        std::string names;
        for (const Expr& v : inputs) names += (names.empty() ? "" : ", ") + v->name();
        throw ValueError(fmt::format("{}: takes {} input{} ({}), got {}", options.name,
                                     inputs.size(), inputs.size() == 1 ? "" : "s", names,
                                     args.size()));
    }
    jit::DimEnv env;
    std::unordered_map<Dim, std::string> bound_by;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const Node* v = inputs[i].node();
        const Tensor& t = args[i];
        if (t.dtype() != v->dtype())
            throw TypeError(fmt::format("{}: input '{}' is {}, the argument is {}", options.name,
                                        v->name(), dtype_name(v->dtype()), dtype_name(t.dtype())));
        const Shape& want = v->shape();
        bool ok = want.size() == t.rank();
        for (std::size_t d = 0; ok && d < want.size(); ++d) {
            if (!is_symbolic(want[d])) {
                ok = want[d] == t.shape()[d];
                continue;
            }
            auto [it, fresh] = env.try_emplace(want[d], t.shape()[d]);
            if (!fresh && it->second != t.shape()[d])
                throw ShapeError(fmt::format(
                    "{}: size '{}' is {} from input '{}' but {} from input '{}' (shape {})",
                    options.name, dim_name(want[d]), it->second, bound_by[want[d]], t.shape()[d],
                    v->name(), shape_string(t.shape())));
            if (fresh) bound_by[want[d]] = v->name();
        }
        if (!ok)
            throw ShapeError(fmt::format("{}: input '{}' has shape {}, the argument has shape {}",
                                         options.name, v->name(), shape_string(want),
                                         shape_string(t.shape())));
    }
    return env;
}

std::vector<Tensor> FunctionImpl::call(const std::vector<Tensor>& raw_args) {
    std::lock_guard lock(mutex);
    adopt_pending(false);
    // A float64 scalar argument converts to a scalar input's dtype (as evaluate's bindings do).
    // The arguments are copied only then: a call's own host cost is a few thousand instructions.
    std::vector<Tensor> converted;
    for (std::size_t i = 0; i < raw_args.size() && i < inputs.size(); ++i)
        if (raw_args[i].rank() == 0 && inputs[i].rank() == 0 &&
            raw_args[i].dtype() == DType::Float64 && inputs[i].dtype() != DType::Float64) {
            if (converted.empty()) converted = raw_args;
            converted[i] = raw_args[i].astype(inputs[i].dtype());
        }
    const std::vector<Tensor>& args = converted.empty() ? raw_args : converted;
    jit::DimEnv env = bind(args);
    check_extrema(env);

    const jit::Program& p = program;
#ifdef AGNESI_WITH_CUDA
    if (options.device.kind == Device::Kind::Cuda) {
        // Each shared value as the call found it: on the device, or where its host values were.
        struct Given {
            bool on_device;
            const void* host;
        };
        std::vector<Tensor> shared_values;
        shared_values.reserve(shared.size());
        boost::container::small_vector<Given, 8> given;
        for (auto& slot : shared) {
            std::lock_guard sl(slot->mutex);
            const Tensor& v = slot->value;
            shared_values.push_back(v);
            given.push_back(v.device_storage() ? Given{true, nullptr} : Given{false, v.raw()});
        }
        auto& cuda = static_cast<jit::cuda::CudaExecutor&>(*executor);
        std::vector<double> group_ms;
        std::vector<Tensor> all =
            jit::cuda::run_program(cuda, p, args, shared_values, env, !options.asynchronous,
                                   options.profile ? &group_ms : nullptr);
        for (std::size_t gi = 0; gi < group_ms.size(); ++gi) add_profile(gi, group_ms[gi]);
        // Shared values uploaded by this call stay on the device, unless replaced meanwhile.
        for (std::size_t k = 0; k < shared.size(); ++k) {
            if (!shared_values[k].device_storage() || given[k].on_device) continue;
            std::lock_guard sl(shared[k]->mutex);
            if (std::as_const(shared[k]->value).raw() == given[k].host)
                shared[k]->value = shared_values[k];
        }
        for (std::size_t k = 0; k < updates.size(); ++k) {
            auto s = SharedRegistry::get().find(updates[k].variable.node());
            std::lock_guard sl(s->mutex);
            s->value = std::move(all[static_cast<std::size_t>(p.num_outputs) + k]);
        }
        all.erase(all.begin() + p.num_outputs, all.end());  // what is left: the outputs
        return all;
    }
#endif
    // Built in order, not default-constructed: a default Tensor allocates its scalar.
    std::vector<Tensor> values;
    values.reserve(p.buffers.size());
    std::vector<void*> ptrs(p.buffers.size(), nullptr);
    for (std::size_t b = 0; b < p.buffers.size(); ++b) {
        const jit::Buffer& buf = p.buffers[b];
        switch (buf.kind) {
            case jit::BufferKind::Input:
                values.push_back(args[static_cast<std::size_t>(buf.slot)]);
                break;
            case jit::BufferKind::Shared: {
                auto& s = *shared[static_cast<std::size_t>(buf.slot)];
                std::lock_guard sl(s.mutex);
                values.push_back(s.value);
                break;
            }
            case jit::BufferKind::Constant: values.push_back(buf.value); break;
            case jit::BufferKind::Temp:
            case jit::BufferKind::Output:
                values.push_back(acquire(buf.dtype, jit::concrete(buf.shape, env)));
        }
        ptrs[b] = values[b].raw();
    }

    int threads = options.threads > 0 ? options.threads : cpu_count();
    if (prepared.size() != p.groups.size() || env != prepared_env || threads != prepared_threads) {
        prepared.assign(p.groups.size(), PreparedGroup{});
        prepared_env = env;
        prepared_threads = threads;
    }
    jit::GroupCall gc;
    std::vector<char> done(p.groups.size(), 0);
    bool parallel_blocks = executor->name() == "native";
    // Profiling on the CPU: the host's clock around each group's work (a pair of products
    // counts as its first group's).
    auto started = options.profile ? std::chrono::steady_clock::now()
                                   : std::chrono::steady_clock::time_point{};
    auto profile_to = [&](std::size_t gi) {
        if (!options.profile) return;
        auto now = std::chrono::steady_clock::now();
        add_profile(gi, std::chrono::duration<double, std::milli>(now - started).count());
        started = now;
    };
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
        if (done[gi]) continue;
        const jit::Group& g = p.groups[gi];
        struct Profiled {
            decltype(profile_to)& to;
            std::size_t gi;
            ~Profiled() { to(gi); }
        } profiled_group{profile_to, gi};
        if (auto pair = jit::find_gemv_pair(p, gi, env)) {
            jit::run_gemv_pair(p, *pair, ptrs.data(), env, *executor, threads, parallel_blocks);
            for (std::size_t m : pair->members) done[m] = 1;
            done[gi] = 1;
            // The second product is complete; its epilogue (if any) runs now, over all of it.
            // Groups between the two that the pair did not take run after it, in order.
            const jit::Group& g2 = p.groups[pair->second];
            if (!g2.outputs.empty()) {
                jit::prepare_group_call(p, g2, ptrs.data(), env, threads, gc);
                executor->run_group(p, pair->second, gc.args);
            }
            done[pair->second] = 1;
            continue;
        }
        if (g.kind == jit::GroupKind::Matmul) {
            jit::run_gemm(p, g, ptrs.data(), env, threads);
            if (g.outputs.empty() || executor->run_fused_epilogue(p, gi, ptrs.data(), env))
                continue;
        }
        executor->run_group(p, gi, group_args(gi, env, threads, ptrs.data()));
    }

    // Outputs; a buffer returned twice (or also an update value) is copied, so no two results
    // share memory.
    std::vector<Tensor> out;
    std::vector<char> taken(p.buffers.size(), 0);
    auto take = [&](int b) {
        auto ub = static_cast<std::size_t>(b);
        Tensor t = taken[ub] ? values[ub].clone() : values[ub];
        taken[ub] = 1;
        return t;
    };
    for (int k = 0; k < p.num_outputs; ++k)
        out.push_back(take(p.outputs[static_cast<std::size_t>(k)]));
    // Updates: all values are computed; now apply them together.
    std::vector<Tensor> news;
    for (std::size_t k = 0; k < updates.size(); ++k)
        news.push_back(take(p.outputs[static_cast<std::size_t>(p.num_outputs) + k]));
    for (std::size_t k = 0; k < updates.size(); ++k) {
        auto s = SharedRegistry::get().find(updates[k].variable.node());
        std::lock_guard sl(s->mutex);
        lent.push_back(std::move(s->value));
        s->value = news[k];
    }
    for (std::size_t b = 0; b < p.buffers.size(); ++b) {
        auto kind = p.buffers[b].kind;
        if (kind == jit::BufferKind::Temp) pool.push_back(std::move(values[b]));
        bool returned = std::find(p.outputs.begin(), p.outputs.begin() + p.num_outputs,
                                  static_cast<int>(b)) != p.outputs.begin() + p.num_outputs;
        if (kind == jit::BufferKind::Output && returned) lent.push_back(values[b]);
    }
    // Bounded: results a caller keeps for good are forgotten, oldest first.
    std::size_t cap = 2 * p.buffers.size() + 4;
    if (lent.size() > cap) lent.erase(lent.begin(), lent.end() - static_cast<std::ptrdiff_t>(cap));
    if (pool.size() > cap) pool.erase(pool.begin(), pool.end() - static_cast<std::ptrdiff_t>(cap));
    return out;
}

std::vector<Tensor> Function::call(const std::vector<Tensor>& args) const {
    if (!impl_) throw ValueError("calling an empty Function");
    return impl_->call(args);
}

std::vector<Tensor> Function::call(const Bindings& args) const {
    if (!impl_) throw ValueError("calling an empty Function");
    std::vector<Tensor> v;
    for (const Expr& in : impl_->inputs) {
        auto it = args.find(in->name());
        if (it == args.end())
            throw ValueError(
                fmt::format("{}: missing input '{}'", impl_->options.name, in->name()));
        v.push_back(it->second);
    }
    for (const auto& [name, t] : args) {
        (void)t;
        bool known = false;
        for (const Expr& in : impl_->inputs) known = known || in->name() == name;
        if (!known)
            throw ValueError(fmt::format("{}: '{}' is not an input of this function",
                                         impl_->options.name, name));
    }
    return impl_->call(v);
}

const std::vector<Expr>& Function::inputs() const {
    return impl_->inputs;
}
const std::vector<Expr>& Function::outputs() const {
    return impl_->outputs;
}
std::string Function::source() const {
    std::lock_guard lock(impl_->mutex);
    impl_->adopt_pending(false);
    return impl_->executor->source();
}
std::string Function::schedule_text() const {
    return impl_->program.to_string();
}
std::string Function::backend() const {
    std::lock_guard lock(impl_->mutex);
    impl_->adopt_pending(false);
    return impl_->executor->name();
}
const CompileStats& Function::stats() const {
    return impl_->stats;
}
std::vector<GroupProfile> Function::profile() const {
    if (!impl_) throw Error("profile(): the function is empty");
    std::lock_guard lock(impl_->mutex);
    if (!impl_->options.profile)
        throw Error(
            fmt::format("{}: profile() needs the function compiled with "
                        "CompileOptions::profile = true",
                        impl_->options.name));
    std::vector<GroupProfile> out;
    const auto& groups = impl_->program.groups;
    for (std::size_t gi = 0; gi < groups.size(); ++gi) {
        GroupProfile g;
        g.group = gi;
        g.kind = jit::group_kind_name(groups[gi].kind);
        if (gi < impl_->profiled.size()) {
            g.calls = impl_->profiled[gi].first;
            g.ms = impl_->profiled[gi].second;
        }
        out.push_back(std::move(g));
    }
    return out;
}
void Function::wait_ready() const {
    if (!impl_) return;
    std::lock_guard lock(impl_->mutex);
    impl_->adopt_pending(true);
}

void Function::synchronize() const {
    if (!impl_) return;
    std::lock_guard lock(impl_->mutex);
#ifdef AGNESI_WITH_CUDA
    if (impl_->options.device.kind == Device::Kind::Cuda)
        static_cast<jit::cuda::CudaExecutor&>(*impl_->executor).synchronize();
#endif
}

Function compile(const std::vector<Expr>& inputs, const std::vector<Expr>& outputs,
                 const CompileOptions& options) {
    auto t0 = std::chrono::steady_clock::now();
    auto impl = std::make_shared<FunctionImpl>();
    impl->inputs = inputs;
    impl->outputs = outputs;
    impl->updates = options.updates;
    impl->options = options;
    const std::string& fname = options.name;
#ifndef AGNESI_WITH_CUDA
    if (options.device.kind == Device::Kind::Cuda)
        throw Error(fmt::format("{}: the CUDA backend is not available in this build", fname));
#endif

    std::vector<const Node*> input_nodes;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const Expr& v = inputs[i];
        if (!v || !v->is_variable())
            throw ValueError(fmt::format("{}: input {} is not a variable: {}", fname, i,
                                         v ? to_string(v) : std::string("empty Expr")));
        if (is_shared(v))
            throw ValueError(fmt::format(
                "{}: input '{}' is a shared variable; its value is held by the library, so it "
                "cannot also be an argument",
                fname, v->name()));
        if (std::find(input_nodes.begin(), input_nodes.end(), v.node()) != input_nodes.end())
            throw ValueError(fmt::format("{}: input '{}' is listed twice", fname, v->name()));
        input_nodes.push_back(v.node());
    }
    std::vector<Expr> roots;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        if (!outputs[i]) throw ValueError(fmt::format("{}: output {} is an empty Expr", fname, i));
        roots.push_back(outputs[i]);
    }
    std::vector<const Node*> targets;
    for (const Update& u : options.updates) {
        if (!u.variable || !is_shared(u.variable))
            throw ValueError(fmt::format("{}: an update's target {} is not a shared variable",
                                         fname, u.variable ? to_string(u.variable) : "(empty)"));
        if (!u.value)
            throw ValueError(
                fmt::format("{}: the update of '{}' has no value", fname, u.variable->name()));
        if (u.value.dtype() != u.variable.dtype() || u.value.shape() != u.variable.shape())
            throw TypeError(fmt::format(
                "{}: the update of '{}' ({} {}) has a value of {} {}", fname, u.variable->name(),
                dtype_name(u.variable.dtype()), shape_string(u.variable.shape()),
                dtype_name(u.value.dtype()), shape_string(u.value.shape())));
        if (std::find(targets.begin(), targets.end(), u.variable.node()) != targets.end())
            throw ValueError(fmt::format("{}: shared variable '{}' is updated twice", fname,
                                         u.variable->name()));
        targets.push_back(u.variable.node());
        roots.push_back(u.value);
    }
    for (const Expr& v : free_variables(roots)) {
        if (std::find(input_nodes.begin(), input_nodes.end(), v.node()) != input_nodes.end())
            continue;
        if (!is_shared(v))
            throw ValueError(fmt::format(
                "{}: the outputs use variable '{}', which is neither an input nor shared", fname,
                v->name()));
    }
    if (options.simplify) roots = simplify(roots);
    std::vector<const Node*> root_nodes;
    for (const Expr& r : roots) root_nodes.push_back(r.node());
    impl->program =
        jit::schedule(root_nodes, input_nodes, static_cast<int>(outputs.size()), targets);
    for (const Node* s : impl->program.shared)
        impl->shared.push_back(slot_of(Expr(s), fname.c_str()));
    impl->stats.schedule_ms = ms_since(t0);
    impl->stats.groups = static_cast<int>(impl->program.groups.size());
    for (std::size_t gi = 0; gi < impl->program.groups.size(); ++gi)
        for (const jit::Instr& in : impl->program.groups[gi].instrs)
            if (in.kind == jit::InstrKind::Reduce &&
                (in.op == Op::ReduceMax || in.op == Op::ReduceMin)) {
                impl->extrema.push_back(gi);
                break;
            }

#ifdef AGNESI_WITH_CUDA
    if (options.device.kind == Device::Kind::Cuda) {
        auto avail = cuda_availability();
        if (!avail.available)
            throw Error(fmt::format("{}: no CUDA device available: {}", fname, avail.reason));
        impl->executor = jit::cuda::make_cuda_executor(impl->program, options, impl->stats);
        return Function(std::move(impl));
    }
#endif
    if (options.backend == Backend::Auto && options.evaluate_while_compiling) {
        FunctionImpl* raw = impl.get();  // the program outlives the task: get() joins it
        impl->pending = std::async(std::launch::async, [raw, options] {
            CompileStats st;
            auto ex = jit::make_native(raw->program, options, st);
            return std::make_pair(std::move(ex), st);
        });
        impl->executor = jit::make_evaluator(impl->program);
        return Function(std::move(impl));
    }
    if (options.backend == Backend::EmulatedCuda) {
        impl->executor = jit::make_cuda_emulator(impl->program, options);
        return Function(std::move(impl));
    }
    if (options.backend != Backend::Evaluator)
        impl->executor = jit::make_native(impl->program, options, impl->stats);
    if (!impl->executor) {
        if (options.backend == Backend::Native)
            throw Error(fmt::format(
                "{}: no host C++ compiler found for native code (set AGNESI_CXX, or use "
                "Backend::Evaluator)",
                fname));
        impl->executor = jit::make_evaluator(impl->program);
    }
    return Function(std::move(impl));
}

// ---- gemm -------------------------------------------------------------------------------------

namespace jit {
namespace {

// Whether input k of g is read after its reduction (the scheduler keys loads by phase, so all
// of an input's Loads are on one side).
bool input_in_epilogue(const Group& g, std::size_t k) {
    for (std::size_t i = 0; i < g.instrs.size(); ++i)
        if (g.instrs[i].kind == InstrKind::Load && g.instrs[i].input == static_cast<int>(k))
            return g.in_epilogue(static_cast<int>(i));
    return false;
}

#ifdef AGNESI_HAVE_OPENBLAS
// How a strided rows x cols matrix is passed to a row-major BLAS: transposed or not, and its
// leading dimension; false when neither stride is 1 (the caller falls back to Eigen).
bool blas_layout(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs,
                 CBLAS_TRANSPOSE* t, std::int64_t* ld) {
    if (cs == 1 || cols == 1) {
        *t = CblasNoTrans;
        *ld = rows == 1 ? std::max<std::int64_t>(cols, 1) : rs;
        return *ld >= std::max<std::int64_t>(cols, 1);
    }
    if (rs == 1 || rows == 1) {
        *t = CblasTrans;
        *ld = cols == 1 ? std::max<std::int64_t>(rows, 1) : cs;
        return *ld >= std::max<std::int64_t>(rows, 1);
    }
    return false;
}

// The same product where C is a vector (n == 1 or m == 1), as a matrix-vector product: GEMM
// packs its operands first, which for one column costs more than the product itself.
template <class T>
bool blas_gemv(const T* a, std::int64_t ars, std::int64_t acs, const T* b, std::int64_t brs,
               std::int64_t bcs, T* c, std::int64_t m, std::int64_t n, std::int64_t k) {
    if (m == 0 || n == 0 || k == 0 || (n != 1 && m != 1)) return false;
    constexpr std::int64_t kMax = std::numeric_limits<int>::max();
    auto gemv = [&](CBLAS_TRANSPOSE t, std::int64_t rows, std::int64_t cols, const T* A,
                    std::int64_t ld, const T* x, std::int64_t incx) {
        if (rows > kMax || cols > kMax || ld > kMax || incx > kMax) return false;
        auto i = [](std::int64_t v) { return static_cast<blasint>(v); };
        if constexpr (std::is_same_v<T, float>)
            cblas_sgemv(CblasRowMajor, t, i(rows), i(cols), 1.0f, A, i(ld), x, i(incx), 0.0f, c, 1);
        else
            cblas_dgemv(CblasRowMajor, t, i(rows), i(cols), 1.0, A, i(ld), x, i(incx), 0.0, c, 1);
        return true;
    };
    CBLAS_TRANSPOSE t;
    std::int64_t ld;
    if (n == 1) {  // c = A b, b a column of stride brs
        if (brs <= 0 || !blas_layout(m, k, ars, acs, &t, &ld)) return false;
        bool tr = t == CblasTrans;  // A stored as its k x m transpose
        return gemv(t, tr ? k : m, tr ? m : k, a, ld, b, brs);
    }
    // m == 1: c = a B, that is c^T = B^T a^T.
    if (acs <= 0 || !blas_layout(k, n, brs, bcs, &t, &ld)) return false;
    bool tr = t == CblasTrans;  // B stored as its n x k transpose
    return gemv(tr ? CblasNoTrans : CblasTrans, tr ? n : k, tr ? k : n, b, ld, a, acs);
}

// C (m x n, contiguous) = A (m x k) * B (k x n) through OpenBLAS; false if a layout does not fit.
template <class T>
bool blas_gemm(const T* a, std::int64_t ars, std::int64_t acs, const T* b, std::int64_t brs,
               std::int64_t bcs, T* c, std::int64_t m, std::int64_t n, std::int64_t k) {
    CBLAS_TRANSPOSE ta, tb;
    std::int64_t lda, ldb;
    if (m == 0 || n == 0 || k == 0) return false;
    if (!blas_layout(m, k, ars, acs, &ta, &lda) || !blas_layout(k, n, brs, bcs, &tb, &ldb))
        return false;
    constexpr std::int64_t kMax = std::numeric_limits<int>::max();
    if (m > kMax || n > kMax || k > kMax || lda > kMax || ldb > kMax) return false;
    auto i = [](std::int64_t v) { return static_cast<blasint>(v); };
    if constexpr (std::is_same_v<T, float>)
        cblas_sgemm(CblasRowMajor, ta, tb, i(m), i(n), i(k), 1.0f, a, i(lda), b, i(ldb), 0.0f, c,
                    i(n));
    else
        cblas_dgemm(CblasRowMajor, ta, tb, i(m), i(n), i(k), 1.0, a, i(lda), b, i(ldb), 0.0, c,
                    i(n));
    return true;
}
#endif

template <class T>
void gemm_typed(const Program& p, const Group& g, void* const* buffers, const DimEnv& env) {
    GemmLayout l = gemm_layout(p, g, env);
    std::int64_t m = l.m, n = l.n, k = l.k;
    std::size_t rbatch = l.batch.size();
    const auto* pa = static_cast<const T*>(buffers[g.gemm.a.buffer]) + l.a_offset;
    const auto* pb = static_cast<const T*>(buffers[g.gemm.b.buffer]) + l.b_offset;
    auto* pc = static_cast<T*>(buffers[g.gemm.out]);
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Str = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    std::int64_t nb = numel(l.batch);
    std::vector<std::int64_t> idx(rbatch, 0);
    for (std::int64_t bi = 0; bi < nb; ++bi) {
        std::int64_t oa = 0, ob = 0;
        for (std::size_t d = 0; d < rbatch; ++d) {
            oa += idx[d] * l.a_batch[d];
            ob += idx[d] * l.b_batch[d];
        }
#ifdef AGNESI_HAVE_OPENBLAS
        if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            if (blas_gemv(pa + oa, l.a_rs, l.a_cs, pb + ob, l.b_rs, l.b_cs, pc + bi * m * n, m, n,
                          k) ||
                blas_gemm(pa + oa, l.a_rs, l.a_cs, pb + ob, l.b_rs, l.b_cs, pc + bi * m * n, m, n,
                          k)) {
                for (std::size_t d = rbatch; d-- > 0;) {
                    if (++idx[d] < l.batch[d]) break;
                    idx[d] = 0;
                }
                continue;
            }
        }
#endif
        Eigen::Map<const Mat, 0, Str> MA(pa + oa, m, k, Str(l.a_rs, l.a_cs));
        Eigen::Map<const Mat, 0, Str> MB(pb + ob, k, n, Str(l.b_rs, l.b_cs));
        Eigen::Map<Mat> MC(pc + bi * m * n, m, n);
        if (k == 0)
            MC.setZero();
        else
            MC.noalias() = MA * MB;
        for (std::size_t d = rbatch; d-- > 0;) {
            if (++idx[d] < l.batch[d]) break;
            idx[d] = 0;
        }
    }
}

}  // namespace

void run_gemm(const Program& p, const Group& g, void* const* buffers, const DimEnv& env,
              int threads) {
    Eigen::setNbThreads(threads);
#ifdef AGNESI_HAVE_OPENBLAS
    openblas_set_num_threads(threads);
#endif
    DType t = p.buffers[static_cast<std::size_t>(g.gemm.out)].dtype;
    switch (t) {
        case DType::Float32: return gemm_typed<float>(p, g, buffers, env);
        case DType::Float64: return gemm_typed<double>(p, g, buffers, env);
        case DType::Int32: return gemm_typed<std::int32_t>(p, g, buffers, env);
        case DType::Int64: return gemm_typed<std::int64_t>(p, g, buffers, env);
        default:
            throw TypeError(fmt::format(
                "matmul of {} operands is not supported by the CPU backends", dtype_name(t)));
    }
}

void prepare_group_call(const Program& p, const Group& g, void* const* buffers, const DimEnv& env,
                        int threads, GroupCall& c, std::int64_t row0, std::int64_t rows) {
    Shape d = concrete(g.domain, env);
    Shape e = concrete(g.epilogue_domain(), env);
    c.dims.assign(d.begin(), d.end());
    c.edims.assign(e.begin(), e.end());
    if (rows >= 0) {
        AGNESI_ASSERT(c.dims.size() == 1 && g.reduce_at < 0) << "a row block of a rank-1 group";
        c.dims[0] = c.edims[0] = rows;
    }
    c.strides.clear();
    c.ptrs.clear();
    auto add = [&](const Access& a, bool epi) {
        Resolved r = resolve_in_group(p, g, a, epi, env);
        const Buffer& buf = p.buffers[static_cast<std::size_t>(a.buffer)];
        std::int64_t off = r.offset + (rows >= 0 ? row0 * r.strides[0] : 0);
        c.ptrs.push_back(static_cast<char*>(buffers[static_cast<std::size_t>(a.buffer)]) +
                         off * static_cast<std::int64_t>(dtype_size(buf.dtype)));
        c.strides.insert(c.strides.end(), r.strides.begin(), r.strides.end());
    };
    // An input's Loads are all on one side of reduce_at (the scheduler keys loads by phase).
    for (std::size_t k = 0; k < g.inputs.size(); ++k) add(g.inputs[k], input_in_epilogue(g, k));
    for (const auto& o : g.outputs) add(o.target, true);
    agnesi_group_args& a = c.args;
    a = agnesi_group_args{};
    a.rank = static_cast<std::int64_t>(c.dims.size());
    a.dims = c.dims.data();
    a.edims = c.edims.data();
    a.ptrs = c.ptrs.data();
    a.strides = c.strides.data();
    a.num_inputs = static_cast<std::int64_t>(g.inputs.size());
    a.num_outputs = static_cast<std::int64_t>(g.outputs.size());
    a.threads = threads;
}

namespace {

// The vector v of a second product X^T v (as matmul(transpose(X), v) or matmul(v, X)) over the
// matrix of a first one; buffer -1 if g is not such a product.
struct VectorOperand {
    int buffer = -1;
    std::int64_t offset = 0, stride = 0;
};
VectorOperand second_vector(const Group& g, const GemmLayout& l2, int x_buffer,
                            const GemmLayout& l1, std::int64_t rows, std::int64_t cols) {
    if (!l2.batch.empty() || l2.k != rows) return {};
    if (l2.n == 1 && l2.m == cols && g.gemm.a.buffer == x_buffer && l2.a_offset == l1.a_offset &&
        l2.a_rs == 1 && l2.a_cs == l1.a_rs)
        return {g.gemm.b.buffer, l2.b_offset, l2.b_rs};
    if (l2.m == 1 && l2.n == cols && g.gemm.b.buffer == x_buffer && l2.b_offset == l1.a_offset &&
        l2.b_rs == l1.a_rs && l2.b_cs == 1)
        return {g.gemm.a.buffer, l2.a_offset, l2.a_cs};
    return {};
}

}  // namespace

std::optional<GemvPair> find_gemv_pair(const Program& p, std::size_t first, const DimEnv& env) {
    const Group& g1 = p.groups[first];
    if (g1.kind != GroupKind::Matmul) return std::nullopt;
    DType t = p.buffers[static_cast<std::size_t>(g1.gemm.out)].dtype;
    if (t != DType::Float32 && t != DType::Float64) return std::nullopt;
    GemmLayout l1 = gemm_layout(p, g1, env);
    if (!l1.batch.empty() || l1.n != 1 || l1.k < 2 || l1.a_cs != 1 || l1.a_rs < l1.k ||
        l1.b_rs <= 0)
        return std::nullopt;
    const std::int64_t rows = l1.m, cols = l1.k;
    // Below this X stays in the last-level cache and two passes cost little.
    if (rows * cols * static_cast<std::int64_t>(dtype_size(t)) < (8 << 20)) return std::nullopt;
    auto row_pointwise = [&](const Group& g) {
        Shape d = concrete(g.domain, env);
        return g.reduce_at < 0 && d.size() == 1 && d[0] == rows &&
               (g.kind == GroupKind::Pointwise || g.kind == GroupKind::Matmul);
    };
    auto identity = [&](const Group& g, const Access& a, bool epi) {
        Resolved r = resolve_in_group(p, g, a, epi, env);
        return r.offset == 0 && r.strides.size() == 1 && r.strides[0] == 1;
    };
    // Buffers a block computes (only at its own rows), and those written by groups left out.
    std::set<int> block{g1.gemm.out}, later;
    if (!g1.outputs.empty()) {
        if (!row_pointwise(g1)) return std::nullopt;
        for (const auto& o : g1.outputs) {
            if (!identity(g1, o.target, true)) return std::nullopt;
            block.insert(o.target.buffer);
        }
    }
    GemvPair pair;
    pair.first = first;
    for (std::size_t j = first + 1; j < p.groups.size(); ++j) {
        const Group& g = p.groups[j];
        if (g.kind == GroupKind::Matmul) {
            GemmLayout l2 = gemm_layout(p, g, env);
            VectorOperand vo = second_vector(g, l2, g1.gemm.a.buffer, l1, rows, cols);
            if (vo.buffer >= 0 && p.buffers[static_cast<std::size_t>(g.gemm.out)].dtype == t) {
                if (later.count(vo.buffer) || vo.stride <= 0) return std::nullopt;
                if (block.count(vo.buffer) && (vo.offset != 0 || vo.stride != 1))
                    return std::nullopt;
                // Its epilogue runs right after the pair: before the groups left out.
                for (const Access& a : g.inputs)
                    if (later.count(a.buffer)) return std::nullopt;
                pair.second = j;
                return pair;
            }
        }
        bool member = row_pointwise(g) && g.kind == GroupKind::Pointwise;
        for (std::size_t k = 0; member && k < g.inputs.size(); ++k) {
            const Access& a = g.inputs[k];
            if (later.count(a.buffer)) member = false;
            if (block.count(a.buffer) && !identity(g, a, input_in_epilogue(g, k))) member = false;
        }
        for (const auto& o : g.outputs)
            if (member && !identity(g, o.target, true)) member = false;
        if (member) {
            pair.members.push_back(j);
            for (const auto& o : g.outputs) block.insert(o.target.buffer);
            continue;
        }
        // Left out: it runs after the pair, so it must not feed it.
        if (g.kind == GroupKind::Matmul) later.insert(g.gemm.out);
        for (const auto& o : g.outputs) later.insert(o.target.buffer);
        if (later.count(g1.gemm.a.buffer)) return std::nullopt;
    }
    return std::nullopt;
}

namespace {

// y = A x (rows), or y = beta y + A^T x (cols) when `trans`; A row-major with leading dimension
// lda, y contiguous.
template <class T>
void gemv_rows(bool trans, std::int64_t rows, std::int64_t cols, const T* a, std::int64_t lda,
               const T* x, std::int64_t incx, T beta, T* y) {
#ifdef AGNESI_HAVE_OPENBLAS
    constexpr std::int64_t kMax = std::numeric_limits<int>::max();
    if (rows <= kMax && cols <= kMax && lda <= kMax && incx <= kMax) {
        auto i = [](std::int64_t v) { return static_cast<blasint>(v); };
        auto tr = trans ? CblasTrans : CblasNoTrans;
        if constexpr (std::is_same_v<T, float>)
            cblas_sgemv(CblasRowMajor, tr, i(rows), i(cols), 1.0f, a, i(lda), x, i(incx), beta, y,
                        1);
        else
            cblas_dgemv(CblasRowMajor, tr, i(rows), i(cols), 1.0, a, i(lda), x, i(incx), beta, y,
                        1);
        return;
    }
#endif
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    Eigen::Map<const Mat, 0, Eigen::OuterStride<>> A(a, rows, cols, Eigen::OuterStride<>(lda));
    Eigen::Map<const Vec, 0, Eigen::InnerStride<>> X(x, trans ? rows : cols,
                                                     Eigen::InnerStride<>(incx));
    if (trans) {
        Eigen::Map<Vec> Y(y, cols);
        if (beta == T(0)) Y.setZero();
        Y.noalias() += A.transpose() * X;
    } else {
        Eigen::Map<Vec> Y(y, rows);
        Y.noalias() = A * X;
    }
}

template <class T>
void gemv_pair_typed(const Program& p, const GemvPair& pair, void* const* buffers,
                     const DimEnv& env, Executor& ex, int threads) {
    const Group& g1 = p.groups[pair.first];
    const Group& g2 = p.groups[pair.second];
    GemmLayout l1 = gemm_layout(p, g1, env), l2 = gemm_layout(p, g2, env);
    const T* X = static_cast<const T*>(buffers[g1.gemm.a.buffer]) + l1.a_offset;
    const T* w = static_cast<const T*>(buffers[g1.gemm.b.buffer]) + l1.b_offset;
    T* z = static_cast<T*>(buffers[g1.gemm.out]);
    VectorOperand vo = second_vector(g2, l2, g1.gemm.a.buffer, l1, l1.m, l1.k);
    AGNESI_ASSERT(vo.buffer >= 0) << "a product pair whose second product changed";
    const T* v = static_cast<const T*>(buffers[vo.buffer]) + vo.offset;
    T* out = static_cast<T*>(buffers[g2.gemm.out]);
    const std::int64_t n = l1.m, k = l1.k, lda = l1.a_rs;
    // Blocks of about 256 KB of X: they stay in L2 from the first product to the second.
    const std::int64_t block = std::clamp<std::int64_t>(
        (256 << 10) / (k * static_cast<std::int64_t>(sizeof(T))), 16, 4096);
    const std::int64_t nblocks = (n + block - 1) / block;
    const int nt = static_cast<int>(std::clamp<std::int64_t>(threads, 1, nblocks));
    std::vector<T> part(static_cast<std::size_t>(nt * k), T(0));
#ifdef AGNESI_HAVE_OPENBLAS
    openblas_set_num_threads(1);  // each thread runs its own products
#endif
    std::exception_ptr error;
    // The team may be smaller than asked (a call from inside another parallel region gets one
    // thread): blocks are split over the team actually running. Parts of threads that were not
    // started stay zero.
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        GroupCall gc;
        T* acc = part.data() + static_cast<std::ptrdiff_t>(tid) * k;
        bool first_block = true;
        try {
            for (std::int64_t b = nblocks * tid / team; b < nblocks * (tid + 1) / team; ++b) {
                const std::int64_t r0 = b * block, cnt = std::min(block, n - r0);
                gemv_rows<T>(false, cnt, k, X + r0 * lda, lda, w, l1.b_rs, T(0), z + r0);
                if (!g1.outputs.empty()) {
                    prepare_group_call(p, g1, buffers, env, 1, gc, r0, cnt);
                    ex.run_group(p, pair.first, gc.args);
                }
                for (std::size_t m : pair.members) {
                    prepare_group_call(p, p.groups[m], buffers, env, 1, gc, r0, cnt);
                    ex.run_group(p, m, gc.args);
                }
                gemv_rows<T>(true, cnt, k, X + r0 * lda, lda, v + r0 * vo.stride, vo.stride,
                             first_block ? T(0) : T(1), acc);
                first_block = false;
            }
        } catch (...) {
#pragma omp critical(agnesi_gemv_pair)
            error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
    for (std::int64_t j = 0; j < k; ++j) {
        T s = 0;
        for (int t = 0; t < nt; ++t) s += part[static_cast<std::size_t>(t * k + j)];
        out[j] = s;
    }
}

}  // namespace

void run_gemv_pair(const Program& p, const GemvPair& pair, void* const* buffers, const DimEnv& env,
                   Executor& ex, int threads, bool parallel) {
    DType t = p.buffers[static_cast<std::size_t>(p.groups[pair.first].gemm.out)].dtype;
    int nt = parallel ? threads : 1;
    if (t == DType::Float32) return gemv_pair_typed<float>(p, pair, buffers, env, ex, nt);
    return gemv_pair_typed<double>(p, pair, buffers, env, ex, nt);
}

}  // namespace jit
}  // namespace agnesi
