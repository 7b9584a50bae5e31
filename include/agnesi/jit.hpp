// Compilation: `compile(inputs, outputs, options)` turns expressions into a `Function`, in the
// manner of Theano's `function`.
//
//   Expr w = shared("w", Tensor(f32, {256}));
//   auto step = compile({X, y}, {loss, grad_w}, {.updates = {{w, w - 0.1 * grad_w}}});
//   auto [l, g] = step(Xb, yb);   // outputs first, then w is replaced by w - 0.1 * grad_w
//
// Shared variables keep their value between calls; updates are computed together with the
// outputs and applied after all of them succeeded, so a failed call changes no shared variable.
// Symbolic sizes are bound from the arguments at each call.
//
// A Function is scheduled once into fusion groups (jit/schedule.hpp) and runs them on one of two
// CPU tiers: the group evaluator (no compiler, runs at once) or native code generated from the
// groups, compiled by the host compiler and cached on disk. On CUDA the same groups become NVRTC
// kernels.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agnesi/evaluate.hpp"
#include "agnesi/expr.hpp"
#include "agnesi/tensor.hpp"

namespace agnesi {

// ---- shared variables ------------------------------------------------------------------------

/// A variable whose value lives with the library (on the function's device when compiled) and
/// persists between calls. Its dtype and shape are the initial value's.
Expr shared(std::string name, const Tensor& initial, Context& ctx = Context::global());
/// Whether `v` is a shared variable.
bool is_shared(const Expr& v);
/// The current value of a shared variable (a copy the caller may keep).
Tensor get_value(const Expr& v);
/// Replaces the value of a shared variable (same dtype and shape).
void set_value(const Expr& v, const Tensor& value);

// ---- devices ---------------------------------------------------------------------------------

struct Device {
    enum class Kind : std::uint8_t { Cpu, Cuda };
    Kind kind = Kind::Cpu;
    int ordinal = 0;

    static Device cpu() { return {}; }
    /// The CUDA device `ordinal`; throws a clear Error when no CUDA device or driver is present.
    static Device cuda(int ordinal = 0);
    std::string name() const;
};

/// Whether a CUDA device can be used here (driver present, at least one device), and if not why.
struct CudaAvailability {
    bool available = false;
    std::string reason;
};
CudaAvailability cuda_availability();

// ---- compile ---------------------------------------------------------------------------------

/// Which CPU tier runs a function.
enum class Backend : std::uint8_t {
    Auto,       ///< native code when a host compiler is found, else the evaluator
    Evaluator,  ///< the fusion-group evaluator: no compiler, runs at once
    Native,     ///< generated C++ compiled by the host compiler (an error if there is none)
    /// The CUDA kernels the GPU would run, compiled by the host compiler and launched as on the
    /// GPU, one thread block at a time with a fiber per thread (matrix products on the CPU). Slow:
    /// for checking generated kernels on a machine without a GPU.
    EmulatedCuda,
};

struct Update {
    Expr variable;  ///< a shared variable
    Expr value;     ///< its new value, same dtype and shape
};

struct CompileOptions {
    std::vector<Update> updates = {};
    Device device = Device::cpu();
    Backend backend = Backend::Auto;
    /// Run the default simplification before scheduling.
    bool simplify = true;
    /// With Backend::Auto: answer calls with the evaluator while native code compiles in the
    /// background, then switch.
    bool evaluate_while_compiling = false;
    /// Threads for native code (0: the machine's cores).
    int threads = 0;
    /// CUDA: a call returns once its kernels are launched, without waiting for them. Reading a
    /// result or a shared variable on the host waits for the work that wrote it, as does a
    /// call of another function that uses it; `Function::synchronize()` waits for all of it.
    /// An error inside a kernel is then reported by a later call or read.
    bool asynchronous = false;
    /// Time each fusion group's work in every call (Function::profile): on a GPU with CUDA
    /// events around its kernel or products (the call then waits for its work), on the CPU
    /// with the host's clock.
    bool profile = false;
    /// Name used in generated source and error messages.
    std::string name = "f";
};

struct CompileStats {
    double schedule_ms = 0;  ///< simplification and scheduling
    double codegen_ms = 0;   ///< generating source
    double compile_ms = 0;   ///< the host compiler or NVRTC (0 on a cache hit)
    double load_ms = 0;      ///< loading the compiled code
    bool cache_hit = false;
    int groups = 0;  ///< fusion groups (kernels)
};

/// One fusion group's share of a function's calls (CompileOptions::profile).
struct GroupProfile {
    std::size_t group = 0;  ///< its line in Function::schedule_text()
    std::string kind;       ///< pointwise, reduce, row-normalize, matmul or row-reduce
    std::int64_t calls = 0;
    double ms = 0;  ///< in all: device time on a GPU, host time on the CPU
};

class FunctionImpl;

class Function {
  public:
    Function() = default;
    explicit Function(std::shared_ptr<FunctionImpl> impl) : impl_(std::move(impl)) {}

    /// Calls with one tensor per input, in the order of `inputs`.
    std::vector<Tensor> call(const std::vector<Tensor>& args) const;
    /// Calls with the inputs by variable name.
    std::vector<Tensor> call(const Bindings& args) const;
    template <class... T>
    std::vector<Tensor> operator()(const T&... args) const {
        return call(std::vector<Tensor>{Tensor(args)...});
    }

    const std::vector<Expr>& inputs() const;
    const std::vector<Expr>& outputs() const;
    /// The generated source (C++ or CUDA), empty for the evaluator tier.
    std::string source() const;
    /// The fusion groups, one line each (kind, domain, what it computes).
    std::string schedule_text() const;
    /// Which tier answers calls now: "evaluator", "native" or "cuda".
    std::string backend() const;
    const CompileStats& stats() const;
    /// Where the calls so far spent their time, one entry per fusion group. Needs
    /// CompileOptions::profile (throws otherwise).
    std::vector<GroupProfile> profile() const;
    /// Waits until the work of every call so far has finished (CUDA; see
    /// CompileOptions::asynchronous), and reports an error it met.
    void synchronize() const;
    /// Waits until background native compilation (if any) finished.
    void wait_ready() const;

  private:
    std::shared_ptr<FunctionImpl> impl_;
};

/// A function whose number of outputs is known at compile time, so its results can be bound
/// with structured bindings: `auto [loss, g] = f(x, y);`.
template <std::size_t N>
class FixedFunction : public Function {
  public:
    using Function::Function;
    explicit FixedFunction(Function f) : Function(std::move(f)) {}
    template <class... T>
    std::array<Tensor, N> operator()(const T&... args) const {
        auto v = call(std::vector<Tensor>{Tensor(args)...});
        std::array<Tensor, N> out;
        for (std::size_t i = 0; i < N; ++i) out[i] = std::move(v[i]);
        return out;
    }
};

Function compile(const std::vector<Expr>& inputs, const std::vector<Expr>& outputs,
                 const CompileOptions& options = {});

template <std::size_t N>
FixedFunction<N> compile(const std::vector<Expr>& inputs, const Expr (&outputs)[N],
                         const CompileOptions& options = {}) {
    return FixedFunction<N>(compile(inputs, std::vector<Expr>(outputs, outputs + N), options));
}

// ---- emitting source -------------------------------------------------------------------------

enum class Target : std::uint8_t { Cpu, Cuda };

/// The complete generated source of a function computing `outputs` from their free variables
/// (in the order free_variables gives), as `agnesi emit` prints it.
std::string emit_source(const std::vector<Expr>& outputs, Target target, bool simplify = true);

/// What NVRTC and its ptxas make of one CUDA kernel of emit_source's source (`agnesi emit
/// --format stats`): the figures ptxas reports, per thread unless said otherwise.
struct CudaKernelStats {
    std::size_t group = 0;
    std::string kernel;  ///< its name in the source
    std::string kind;    ///< the group's kind: "pointwise", "row-normalize", ...
    bool dense = false;  ///< the variant for dense launches (-DAGNESI_DENSE_LAYOUT), else general
    int registers = 0;
    int stack_bytes = 0;
    int spill_store_bytes = 0, spill_load_bytes = 0;
    int shared_bytes = 0;  ///< static shared memory, per block
    std::size_t cubin_bytes = 0;
    double compile_ms = 0;  ///< NVRTC's time for the kernel alone, without its cache
};

/// Compiles each CUDA kernel of emit_source(outputs, Target::Cuda, simplify), in its general and
/// its dense variant, for architecture `arch` ("sm_90"), and returns what ptxas reports of each.
/// Needs NVRTC, not a GPU; throws Error saying why when NVRTC cannot be loaded.
std::vector<CudaKernelStats> cuda_kernel_stats(const std::vector<Expr>& outputs,
                                               const std::string& arch = "sm_90",
                                               bool simplify = true);

}  // namespace agnesi
