// The native CPU tier's entry point: generated C++ compiled by the host compiler.
#include <chrono>

#include "jit/backend.hpp"
#include "jit/cpu/codegen.hpp"
#include "jit/cpu/compiler.hpp"

namespace agnesi::jit {

namespace {

class NativeExecutor : public Executor {
  public:
    NativeExecutor(std::shared_ptr<cpu::Module> module, std::vector<cpu::GroupFn> fns,
                   std::string source)
        : module_(std::move(module)), fns_(std::move(fns)), source_(std::move(source)) {}

    void run_group(const Program&, std::size_t gi, const agnesi_group_args& args) override {
        fns_.at(gi)(&args);
    }
    std::string name() const override { return "native"; }
    std::string source() const override { return source_; }

  private:
    std::shared_ptr<cpu::Module> module_;  // keeps the functions loaded
    std::vector<cpu::GroupFn> fns_;
    std::string source_;
};

}  // namespace

std::unique_ptr<Executor> make_native(const Program& p, const CompileOptions& options,
                                      CompileStats& stats) {
    auto compiler = cpu::find_compiler();
    if (!compiler) return nullptr;
    auto t0 = std::chrono::steady_clock::now();
    std::string source = cpu::generate_source(p, options.name);
    stats.codegen_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    cpu::BuildResult b = cpu::build(source, *compiler);
    stats.compile_ms = b.stats.compile_ms;
    stats.load_ms = b.stats.load_ms;
    stats.cache_hit = b.stats.cache_hit;
    std::vector<cpu::GroupFn> fns;
    for (std::size_t i = 0; i < p.groups.size(); ++i)
        fns.push_back(b.module->function(cpu::group_symbol(options.name, static_cast<int>(i))));
    return std::make_unique<NativeExecutor>(std::move(b.module), std::move(fns), std::move(source));
}

}  // namespace agnesi::jit
