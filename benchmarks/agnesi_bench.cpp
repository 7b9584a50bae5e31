// The CPU (and CUDA) workloads of benchmarks/compare.sh written with Agnesi: each is math built
// from variables, differentiated with `grad` where it needs a gradient, compiled with `compile`,
// and timed through `Function::call` (median of the repetitions after a warm-up).
//
//   agnesi-bench [--quick] [--all] [--filter SUBSTR] [--device cpu|cuda] [--profile]
//
// Prints workload<TAB>implementation<TAB>median_ms<TAB>value<TAB>unit per workload, like the
// peers in benchmarks/peers/, and to stderr `check<TAB>workload<TAB>implementation<TAB>checksum`
// (the inputs are the same formula in every implementation, see fill()). Implementations:
// agnesi-native (generated C++, Backend::Native) and agnesi-evaluator (the group evaluator;
// with --quick, or on the full sizes with --all); with --device cuda, agnesi-cuda on the GPU
// workloads of compare_gpu.sh, whose inputs are shared variables resident on the device (the
// results stay there too). It also prints the compile latency of the MLP training step:
// compile_mlp_step, agnesi-native-cold (empty AGNESI_CACHE_DIR) and agnesi-native-warm (a
// second process on the same cache directory), in ms.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <numbers>
#include <string>
#include <vector>

#include "agnesi/agnesi.hpp"
#include "agnesi/jit.hpp"
#ifdef AGNESI_WITH_CUDA
#include "jit/cuda/driver.hpp"
#include "jit/cuda/nvrtc.hpp"
#endif

namespace po = boost::program_options;
using namespace agnesi;

namespace {

struct Config {
    bool quick = false;
    bool all = false;
    bool cuda = false;
    bool profile = false;
    std::string filter;
};

struct Impl {
    std::string name;
    CompileOptions options;
    int warmup, reps;
};

// Threads for native code: OMP_NUM_THREADS when set (as for the peers), else every core.
int threads() {
    const char* s = std::getenv("OMP_NUM_THREADS");
    return s ? std::max(0, std::atoi(s)) : 0;
}

// The implementations a workload runs under.
std::vector<Impl> impls(const Config& cfg) {
    std::vector<Impl> v;
    if (cfg.cuda) {
        v.push_back({"agnesi-cuda", {.device = Device::cuda()}, 3, 20});
        return v;
    }
    v.push_back({"agnesi-native",
                 {.backend = Backend::Native, .threads = threads()},
                 cfg.quick ? 1 : 2,
                 cfg.quick ? 5 : 10});
    if (cfg.quick || cfg.all)
        v.push_back(
            {"agnesi-evaluator", {.backend = Backend::Evaluator, .threads = threads()}, 1, 5});
    return v;
}

// The input formula every implementation shares: k-th value in [0, 1).
double unit(std::int64_t k) {
    return static_cast<double>((k * 7919) % 10007) / 10007.0;
}

template <class T>
Tensor fill(Shape shape, double scale, double shift, std::int64_t offset = 0) {
    Tensor t(dtype_of<T>(), std::move(shape));
    T* p = t.data<T>();
    for (std::int64_t k = 0; k < t.size(); ++k)
        p[k] = static_cast<T>(scale * unit(k + offset) + shift);
    return t;
}

double sum(const Tensor& t) {
    double s = 0;
    for (std::int64_t i = 0; i < t.size(); ++i) s += t.at(i);
    return s;
}

double median_ms(int warmup, int reps, const std::function<void()>& f) {
    for (int i = 0; i < warmup; ++i) f();
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

void report(const std::string& workload, const std::string& impl, double ms, double value,
            const char* unit_name) {
    std::printf("%s\t%s\t%.4f\t%.3f\t%s\n", workload.c_str(), impl.c_str(), ms, value, unit_name);
    std::fflush(stdout);
}
void check(const std::string& workload, const std::string& impl, double checksum) {
    std::fprintf(stderr, "check\t%s\t%s\t%.9g\n", workload.c_str(), impl.c_str(), checksum);
}

// A workload's inputs: variables passed to each call on the CPU; on CUDA, shared variables
// (initialized once, kept on the device) so that a call does not time their transfer.
class Inputs {
  public:
    /// `prefix` keeps the names of shared variables of different workloads apart.
    Inputs(bool cuda, std::string prefix) : cuda_(cuda), prefix_(std::move(prefix)) {}
    Expr add(const std::string& name, const Tensor& value) {
        if (cuda_) return shared(prefix_ + "_" + name, value);
        Expr v = variable(name, value.shape(), value.dtype());
        vars_.push_back(v);
        args_.push_back(value);
        return v;
    }
    const std::vector<Expr>& vars() const { return vars_; }
    const std::vector<Tensor>& args() const { return args_; }

  private:
    bool cuda_;
    std::string prefix_;
    std::vector<Expr> vars_;
    std::vector<Tensor> args_;
};

// Where a call's time goes, per fusion group, on stderr: a profiled twin of the function (the
// timed one is left as it is), called as often as the timing called it.
void print_profile(const std::string& workload, Impl impl, const Inputs& in,
                   const std::vector<Expr>& outputs) {
    impl.options.profile = true;
    Function f = compile(in.vars(), outputs, impl.options);
    f.wait_ready();
    for (int i = 0; i < impl.warmup; ++i) f.call(in.args());
    std::vector<GroupProfile> before = f.profile();
    for (int i = 0; i < impl.reps; ++i) f.call(in.args());
    std::vector<std::string> lines;  // the schedule's lines of groups ("g3: ...")
    std::string text = f.schedule_text();
    for (std::size_t at = 0, nl; at < text.size(); at = nl + 1) {
        nl = text.find('\n', at);
        if (nl == std::string::npos) nl = text.size();
        if (text[at] == 'g') lines.push_back(text.substr(at, nl - at));
    }
    for (const GroupProfile& g : f.profile()) {
        std::int64_t calls = g.calls - before[g.group].calls;
        if (calls == 0) continue;
        std::fprintf(stderr, "profile\t%s\t%s\t%.4f ms\t%s\n", workload.c_str(), impl.name.c_str(),
                     (g.ms - before[g.group].ms) / static_cast<double>(calls),
                     g.group < lines.size() ? lines[g.group].c_str() : g.kind.c_str());
    }
}

// Compiles `outputs` under each implementation, times its calls and reports `rate(ms)`.
// `checksum` reads the outputs of the first call; `reset` (if any) runs before each
// implementation (to restore shared state).
void run(const Config& cfg, const std::string& workload, const Inputs& in,
         const std::vector<Expr>& outputs, const std::vector<Update>& updates,
         const std::function<double(double)>& rate, const char* unit_name,
         const std::function<double(const std::vector<Tensor>&)>& checksum,
         const std::function<void()>& reset = {}) {
    for (Impl impl : impls(cfg)) {
        if (reset) reset();
        impl.options.updates = updates;
        impl.options.name = workload;
        // A tier that cannot run here (no host compiler, say) is reported and skipped.
        try {
            Function f = compile(in.vars(), outputs, impl.options);
            f.wait_ready();
            std::vector<Tensor> first;
            bool have_first = false;
            double ms = median_ms(impl.warmup, impl.reps, [&] {
                auto r = f.call(in.args());
                if (!have_first) {
                    first = std::move(r);
                    have_first = true;
                }
            });
            report(workload, impl.name, ms, rate(ms), unit_name);
            check(workload, impl.name, checksum(first));
            if (cfg.profile) print_profile(workload, impl, in, outputs);
        } catch (const Error& e) {
            std::fprintf(stderr, "agnesi-bench: %s, %s: %s\n", workload.c_str(), impl.name.c_str(),
                         e.what());
        }
    }
}

double gbps(double bytes, double ms) {
    return bytes / (ms * 1e6);
}

double sum_first(const std::vector<Tensor>& r) {
    return sum(r.at(0));
}

template <class T>
void chain(const Config& cfg, const std::string& name) {
    const std::int64_t n = cfg.quick ? (1 << 20) : (1 << 24);
    Inputs in(cfg.cuda, name);
    Expr x = in.add("x", fill<T>({n}, 8.0, -4.0));
    Expr y = tanh(x * 0.5 + 0.1) * sigmoid(x) + log1p(exp(-abs(x)));
    run(
        cfg, name, in, {y}, {}, [&](double ms) { return gbps(2.0 * n * sizeof(T), ms); }, "GB/s",
        sum_first);
}

void rowwise(const Config& cfg, const std::string& name, double scale, double shift,
             const std::function<Expr(const Expr&)>& f, double bytes_per_row) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Inputs in(cfg.cuda, name);
    Expr x = in.add("x", fill<float>({rows, cols}, scale, shift));
    run(
        cfg, name, in, {f(x)}, {}, [&](double ms) { return gbps(rows * bytes_per_row, ms); },
        "GB/s", sum_first);
}

// Layer norm with gain and bias over rows of 1024 (the bias keeps the checksum away from 0).
void layer_norm(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Inputs in(cfg.cuda, "layer_norm");
    Expr x = in.add("x", fill<float>({rows, cols}, 10.0, -5.0));
    Expr g = in.add("g", fill<float>({cols}, 1.0, 0.5, 3));
    Expr b = in.add("b", fill<float>({cols}, 1.0, -0.5, 4));
    Expr d = x - mean(x, {1}, true);
    run(
        cfg, "layer_norm_f32", in, {d / sqrt(mean(d * d, {1}, true) + 1e-5) * g + b}, {},
        [&](double ms) { return gbps(2.0 * rows * cols * 4, ms); }, "GB/s", sum_first);
}

void bias_relu(const Config& cfg) {
    const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 1024;
    Inputs in(cfg.cuda, "bias_relu");
    Expr x = in.add("X", fill<float>({rows, cols}, 2.0, -1.0));
    Expr b = in.add("b", fill<float>({cols}, 1.0, -0.5, 1));
    run(
        cfg, "bias_relu_f32", in, {relu(x + b)}, {},
        [&](double ms) { return gbps(2.0 * rows * cols * 4, ms); }, "GB/s", sum_first);
}

void logreg(const Config& cfg) {
    const std::int64_t n = cfg.quick ? 8192 : 65536, d = 256;
    Inputs in(cfg.cuda, "logreg");
    Expr X = in.add("X", fill<float>({n, d}, 1.0, -0.5));
    std::vector<float> labels(n);
    for (std::int64_t i = 0; i < n; ++i) labels[i] = i % 3 == 0 ? 1.0f : 0.0f;
    Expr y = in.add("y", Tensor::from_vector<float>({n}, labels));
    Expr w = in.add("w", fill<float>({d}, 0.1, -0.05, 5));
    Expr b = in.add("b", Tensor::scalar<float>(0.1f));
    Expr z = matmul(X, w) + b;
    Expr loss = mean(softplus(z) - y * z);
    auto g = grad(loss, {w, b});
    run(
        cfg, "logreg_f32", in, {loss, g[0], g[1]}, {},
        [&](double ms) { return gbps(n * d * 4.0, ms); }, "GB/s",
        [](const std::vector<Tensor>& r) { return r[0].item() + sum(r[1]) + r[2].item(); });
}

struct Mlp {
    static constexpr std::int64_t kBatch = 512, kIn = 784, kHidden = 1024, kOut = 10;
    Tensor W1_0 = fill<float>({kIn, kHidden}, 0.05, -0.025, 1);
    Tensor W2_0 = fill<float>({kHidden, kOut}, 0.1, -0.05, 2);
    Tensor b1_0 = fill<float>({kHidden}, 0.0, 0.01);
    Tensor b2_0 = fill<float>({kOut}, 0.0, 0.0);
    Expr W1 = shared("W1", W1_0), b1 = shared("b1", b1_0), W2 = shared("W2", W2_0),
         b2 = shared("b2", b2_0);
    Inputs in;
    Expr X, Y, loss;
    std::vector<Update> updates;

    explicit Mlp(bool cuda) : in(cuda, "mlp") {
        X = in.add("X", fill<float>({kBatch, kIn}, 1.0, 0.0));
        std::vector<float> onehot(kBatch * kOut, 0.0f);
        for (std::int64_t i = 0; i < kBatch; ++i) onehot[i * kOut + i % kOut] = 1.0f;
        Y = in.add("Y", Tensor::from_vector<float>({kBatch, kOut}, onehot));
        Expr h = relu(matmul(X, W1) + b1);
        Expr logits = matmul(h, W2) + b2;
        loss = mean(cross_entropy(softmax(logits), Y));
        auto g = grad(loss, {W1, b1, W2, b2});
        const double lr = 0.01;
        updates = {
            {W1, W1 - lr * g[0]}, {b1, b1 - lr * g[1]}, {W2, W2 - lr * g[2]}, {b2, b2 - lr * g[3]}};
    }
    void reset() const {
        set_value(W1, W1_0);
        set_value(b1, b1_0);
        set_value(W2, W2_0);
        set_value(b2, b2_0);
    }
};

void mlp_step(const Config& cfg) {
    Mlp m(cfg.cuda);
    // Forward and the two backward products of each layer, as the peers count them (the first
    // layer's input gradient is not needed, so no implementation computes it).
    const double flops =
        2.0 * (Mlp::kBatch * Mlp::kIn * Mlp::kHidden + Mlp::kBatch * Mlp::kHidden * Mlp::kOut) * 3;
    run(
        cfg, "mlp_step_f32", m.in, {m.loss}, m.updates,
        [&](double ms) { return flops / (ms * 1e6); }, "GFLOP/s",
        [](const std::vector<Tensor>& r) { return r[0].item(); }, [&] { m.reset(); });
}

// ---- the GPU workloads of benchmarks/compare_gpu.sh: names, sizes and rates as in
// benchmarks/peers/gpu_workloads.py; inputs are shared variables, resident on the device.

void gpu_pointwise(const Config& cfg, const std::string& name,
                   const std::function<Expr(const Expr&)>& f) {
    const std::int64_t n = cfg.quick ? (1 << 22) : (1 << 26);
    Inputs in(true, "gpu_" + name);
    Expr x = in.add("x", fill<float>({n}, 8.0, -4.0));
    run(
        cfg, name, in, {f(x)}, {}, [&](double ms) { return gbps(8.0 * n, ms); }, "GB/s", sum_first);
}

void gpu_rows(const Config& cfg, const std::string& name, double bytes_per_value,
              const std::function<Expr(const Expr&, Inputs&)>& f) {
    const std::int64_t rows = cfg.quick ? 1024 : 16384, cols = 4096;
    Inputs in(true, "gpu_" + name);
    Expr x = in.add("x", fill<float>({rows, cols}, 10.0, -5.0));
    Expr y = f(x, in);
    run(
        cfg, name, in, {y}, {}, [&](double ms) { return gbps(bytes_per_value * rows * cols, ms); },
        "GB/s", sum_first);
}

// A layer's forward pass, relu(X W + b): one cuBLASLt call with its bias and ReLU epilogue.
void gpu_linear_relu(const Config& cfg) {
    const std::int64_t m = cfg.quick ? 512 : 8192, k = 1024, n = 1024;
    Inputs in(true, "gpu_linear_relu");
    Expr X = in.add("X", fill<float>({m, k}, 1.0, -0.5));
    Expr W = in.add("W", fill<float>({k, n}, 0.06, -0.03, 7));
    Expr b = in.add("b", fill<float>({n}, 1.0, -0.5, 8));
    const double flops = 2.0 * m * k * n;
    run(
        cfg, "linear_relu", in, {relu(matmul(X, W) + b)}, {},
        [&](double ms) { return flops / (ms * 1e6); }, "GFLOP/s", sum_first);
}

void gpu_logreg(const Config& cfg) {
    const std::int64_t n = cfg.quick ? (1 << 16) : (1 << 20), d = 256;
    Inputs in(true, "gpu_logreg");
    Expr X = in.add("X", fill<float>({n, d}, 1.0, -0.5));
    std::vector<float> labels(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % 3 ? -1.0f : 1.0f;
    Expr y = in.add("y", Tensor::from_vector<float>({n}, labels));
    Expr w = in.add("w", fill<float>({d}, 0.1, -0.05, 5));
    Expr loss = mean(softplus(-y * matmul(X, w)));
    run(
        cfg, "logreg", in, {loss, grad(loss, w)}, {},
        [&](double ms) { return gbps(n * d * 4.0, ms); }, "GB/s",
        [](const std::vector<Tensor>& r) { return r[0].item() + sum(r[1]); });
}

void gpu_mlp(const Config& cfg) {
    const std::int64_t batch = cfg.quick ? 256 : 4096;
    Inputs in(true, "gpu_mlp");
    Expr X = in.add("X", fill<float>({batch, 784}, 1.0, 0.0));
    std::vector<float> onehot(static_cast<std::size_t>(batch * 10), 0.0f);
    for (std::int64_t i = 0; i < batch; ++i) onehot[static_cast<std::size_t>(i * 10 + i % 10)] = 1;
    Expr Y = in.add("Y", Tensor::from_vector<float>({batch, 10}, onehot));
    Tensor W1_0 = fill<float>({784, 1024}, 0.05, -0.025, 1),
           W2_0 = fill<float>({1024, 10}, 0.1, -0.05, 2);
    Tensor b1_0(f32, {1024}), b2_0(f32, {10});
    Expr W1 = in.add("W1", W1_0), b1 = in.add("b1", b1_0), W2 = in.add("W2", W2_0),
         b2 = in.add("b2", b2_0);
    Expr h = relu(matmul(X, W1) + b1);
    Expr logits = matmul(h, W2) + b2;
    Expr loss = -sum(Y * log_softmax(logits)) / double(batch);
    auto g = grad(loss, {W1, b1, W2, b2});
    std::vector<Update> updates{
        {W1, W1 - 0.1 * g[0]}, {b1, b1 - 0.1 * g[1]}, {W2, W2 - 0.1 * g[2]}, {b2, b2 - 0.1 * g[3]}};
    const double flops = 6.0 * batch * (784 * 1024 + 1024 * 10);
    run(
        cfg, "mlp_step", in, {loss}, updates, [&](double ms) { return flops / (ms * 1e6); },
        "GFLOP/s", [](const std::vector<Tensor>& r) { return r[0].item(); },
        [&] {
            set_value(W1, W1_0);
            set_value(b1, b1_0);
            set_value(W2, W2_0);
            set_value(b2, b2_0);
        });
}

// The time of one call of a tiny function (1024 values): the host's cost per call (on the GPU,
// launch and synchronization included).
// On the GPU also with calls that return once their kernels are launched
// (agnesi-cuda-async): each block of calls then ends with one wait for all of them.
void call_overhead(const Config& cfg) {
    Inputs in(cfg.cuda, "call_overhead");
    Expr x = in.add("x", fill<float>({1024}, 1.0, 0.0));
    std::vector<Impl> all = impls(cfg);
    if (cfg.cuda) {
        Impl async = all.front();
        async.name = "agnesi-cuda-async";
        async.options.asynchronous = true;
        all.push_back(async);
    }
    for (Impl impl : all) {
        impl.options.name = "call_overhead";
        Function f = compile(in.vars(), {x * 2 + 1}, impl.options);
        f.wait_ready();
        // Blocks of calls, each timed as a whole: one call is too short for the clock alone.
        const int calls = cfg.quick ? 200 : 2000;
        double ms = median_ms(1, cfg.quick ? 3 : 7,
                              [&] {
                                  for (int i = 0; i < calls; ++i) f.call(in.args());
                                  f.synchronize();
                              }) /
                    calls;
        report("call_overhead", impl.name, ms, ms * 1000, "us");
        check("call_overhead", impl.name, sum_first(f.call(in.args())));
    }
}

// The floor under that: one launch of an empty kernel and a wait for it, through the driver.
void gpu_launch_floor(const Config& cfg) {
#ifdef AGNESI_WITH_CUDA
    namespace cu = jit::cuda;
    cu::CudaDevice& dev = cu::CudaDevice::get(0);
    cu::NvrtcOptions o;
    o.arch = dev.arch();
    auto r = cu::nvrtc_compile("extern \"C\" __global__ void empty() {}\n", "floor", o);
    cu::Kernel k = dev.kernel(dev.load_module(*r.cubin), "empty");
    cu::Stream s = dev.create_stream();
    double ms = median_ms(3, cfg.quick ? 20 : 200, [&] {
        dev.launch(k, 1, 32, s, nullptr);
        dev.synchronize(s);
    });
    dev.destroy_stream(s);
    report("launch_floor", "driver", ms, ms * 1000, "us");
#else
    (void)cfg;
#endif
}

void gpu_workloads(const Config& cfg) {
    auto want = [&](const std::string& name) { return name.find(cfg.filter) != std::string::npos; };
    if (want("chain"))
        gpu_pointwise(cfg, "chain", [](const Expr& x) {
            return tanh(x * 0.5 + 0.25) * sigmoid(x) + log1p(exp(-abs(x)));
        });
    if (want("gelu"))
        gpu_pointwise(cfg, "gelu", [](const Expr& x) {
            return 0.5 * x * (1.0 + tanh(0.7978845608 * (x + 0.044715 * x * x * x)));
        });
    if (want("softmax"))
        gpu_rows(cfg, "softmax", 8, [](const Expr& x, Inputs&) { return softmax(x, -1); });
    if (want("logsumexp"))
        gpu_rows(cfg, "logsumexp", 4, [](const Expr& x, Inputs&) { return logsumexp(x, {1}); });
    if (want("layer_norm"))
        gpu_rows(cfg, "layer_norm", 8, [](const Expr& x, Inputs& in) {
            Expr g = in.add("g", fill<float>({4096}, 1.0, 0.5, 3));
            Expr b = in.add("b", fill<float>({4096}, 1.0, -0.5, 4));
            Expr m = mean(x, {1}, true);
            Expr v = mean((x - m) * (x - m), {1}, true);
            return (x - m) / sqrt(v + 1e-5) * g + b;
        });
    if (want("bias_act"))
        gpu_rows(cfg, "bias_act", 8, [](const Expr& x, Inputs& in) {
            return relu(x + in.add("b", fill<float>({4096}, 1.0, -0.5, 1)));
        });
    if (want("linear_relu")) gpu_linear_relu(cfg);
    if (want("logreg")) gpu_logreg(cfg);
    if (want("mlp_step")) gpu_mlp(cfg);
    if (want("call_overhead")) call_overhead(cfg);
    if (want("launch_floor")) gpu_launch_floor(cfg);
}

// One native compile of the MLP step in this process, in ms (the cache directory comes from
// the environment).
double compile_mlp_once() {
    Mlp m(false);
    auto t0 = std::chrono::steady_clock::now();
    Function f = compile(m.in.vars(), {m.loss},
                         {.updates = m.updates,
                          .backend = Backend::Native,
                          .threads = threads(),
                          .name = "mlp_step"});
    f.wait_ready();
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const CompileStats& s = f.stats();
    std::fprintf(stderr,
                 "# compile_mlp_step: schedule %.1f ms, codegen %.1f ms, compiler %.1f ms, "
                 "load %.1f ms, cache hit %s, %d groups\n",
                 s.schedule_ms, s.codegen_ms, s.compile_ms, s.load_ms, s.cache_hit ? "yes" : "no",
                 s.groups);
    return ms;
}

// Cold and warm compile latency, each in a fresh process of this program: the first on an
// empty cache directory, the second on the cache the first left.
void compile_latency() {
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    std::string dir = (std::filesystem::temp_directory_path() / "agnesi-bench-XXXXXX").string();
    if (!mkdtemp(dir.data())) {
        std::perror("agnesi-bench: mkdtemp");
        return;
    }
    for (const char* impl : {"agnesi-native-cold", "agnesi-native-warm"}) {
        std::string cmd = "AGNESI_CACHE_DIR='" + dir + "' '" + self + "' --compile-once";
        FILE* p = popen(cmd.c_str(), "r");
        double ms = -1;
        if (p) {
            if (std::fscanf(p, "%lf", &ms) != 1) ms = -1;
            pclose(p);
        }
        if (ms < 0) {
            std::fprintf(stderr, "agnesi-bench: %s compile failed\n", impl);
            break;
        }
        report("compile_mlp_step", impl, ms, ms, "ms");
    }
    std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    std::string device = "cpu";
    po::options_description desc("agnesi-bench: Agnesi on the CPU benchmark workloads");
    desc.add_options()("help,h", "this help")("quick", po::bool_switch(&cfg.quick),
                                              "smaller sizes and fewer repetitions")(
        "all", po::bool_switch(&cfg.all), "the evaluator tier on the full sizes too")(
        "filter", po::value(&cfg.filter), "only workloads whose name contains this")(
        "device", po::value(&device), "cpu or cuda")(
        "profile", po::bool_switch(&cfg.profile),
        "each workload's time per fusion group, on stderr")("compile-once", "(internal)");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, desc), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "agnesi-bench: " << e.what() << "\n";
        return 2;
    }
    if (vm.count("help")) {
        std::cout << desc;
        return 0;
    }
    try {
        if (vm.count("compile-once")) {
            std::printf("%.4f\n", compile_mlp_once());
            return 0;
        }
        if (device != "cpu" && device != "cuda") {
            std::cerr << "agnesi-bench: --device must be cpu or cuda, not " << device << "\n";
            return 2;
        }
        cfg.cuda = device == "cuda";
        if (cfg.cuda) {
            CudaAvailability a = cuda_availability();
            if (!a.available) {
                std::cerr << "agnesi-bench: no CUDA device (" << a.reason
                          << "); nothing measured\n";
                return 0;
            }
        }
        if (cfg.cuda) {
            gpu_workloads(cfg);
            return 0;
        }
        auto want = [&](const std::string& name) {
            return name.find(cfg.filter) != std::string::npos;
        };
        if (want("chain_f32")) chain<float>(cfg, "chain_f32");
        if (want("chain_f64")) chain<double>(cfg, "chain_f64");
        if (want("gelu_f32"))
            rowwise(
                cfg, "gelu_f32", 6.0, -3.0,
                [](const Expr& x) {
                    return 0.5 * x * (1.0 + erf(x * (1.0 / std::numbers::sqrt2)));
                },
                2.0 * 1024 * 4);
        if (want("softmax_f32"))
            rowwise(
                cfg, "softmax_f32", 10.0, -5.0, [](const Expr& x) { return softmax(x, -1); },
                2.0 * 1024 * 4);
        if (want("logsumexp_f32"))
            rowwise(
                cfg, "logsumexp_f32", 10.0, -5.0, [](const Expr& x) { return logsumexp(x, {1}); },
                1024 * 4.0 + 4.0);
        if (want("layer_norm_f32")) layer_norm(cfg);
        if (want("bias_relu_f32")) bias_relu(cfg);
        if (want("logreg_f32")) logreg(cfg);
        if (want("mlp_step_f32")) mlp_step(cfg);
        if (want("call_overhead")) call_overhead(cfg);
        if (!cfg.cuda && want("compile_mlp_step")) compile_latency();
    } catch (const Error& e) {
        std::cerr << "agnesi-bench: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
