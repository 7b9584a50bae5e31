// emit_source: the generated source of an expression list, as `agnesi emit` prints it.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "agnesi/error.hpp"
#include "agnesi/jit.hpp"
#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/cuda/plan.hpp"
#ifdef AGNESI_WITH_CUDA
#include "jit/cuda/nvrtc.hpp"
#endif
#include "jit/schedule.hpp"
#if __has_include("jit/cpu/codegen.hpp")
#include "jit/cpu/codegen.hpp"
#define AGNESI_HAVE_CPU_CODEGEN 1
#endif

namespace agnesi {

namespace {

// The program emit_source prints, for `who` (named in errors).
jit::Program emitted_program(const std::vector<Expr>& outputs, bool simplify_first,
                             const char* who) {
    if (outputs.empty()) throw ValueError(fmt::format("{}: no outputs", who));
    for (const Expr& e : outputs)
        if (!e) throw ValueError(fmt::format("{}: an output is an empty Expr", who));
    std::vector<Expr> roots = outputs;
    std::vector<Expr> vars = free_variables(roots);
    // Only scalar variables: read them as arrays of one common length n, so an elementwise
    // expression becomes one kernel over n elements rather than a kernel over one element.
    bool all_scalar = !vars.empty() && std::all_of(vars.begin(), vars.end(),
                                                   [](const Expr& v) { return v.rank() == 0; });
    if (all_scalar) {
        Dim n = sym_dim("n");
        std::unordered_map<const Node*, Expr> arrays;
        for (Expr& v : vars) {
            Expr a = variable(v->name(), {n}, v.dtype(), v->assumptions());
            arrays.emplace(v.node(), a);
            v = a;
        }
        for (Expr& r : roots) r = substitute(r, arrays);
    }
    if (simplify_first) roots = simplify(roots);
    std::vector<const Node*> root_nodes, inputs;
    for (const Expr& r : roots) root_nodes.push_back(r.node());
    for (const Expr& v : vars) inputs.push_back(v.node());
    return jit::schedule(root_nodes, inputs, static_cast<int>(roots.size()), {});
}

#ifdef AGNESI_WITH_CUDA
// ptxas's figure `what` ("registers", "bytes smem", ...) in its -v report `log`: the number
// before it on the line, 0 when absent.
int ptxas_figure(const std::string& log, const std::string& what) {
    for (std::size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) {
        std::size_t end = at;
        while (end > 0 && log[end - 1] == ' ') --end;
        std::size_t begin = end;
        while (begin > 0 && std::isdigit(static_cast<unsigned char>(log[begin - 1]))) --begin;
        if (begin < end) return std::stoi(log.substr(begin, end - begin));
    }
    return 0;
}
#endif

}  // namespace

std::vector<CudaKernelStats> cuda_kernel_stats(const std::vector<Expr>& outputs,
                                               const std::string& arch, bool simplify_first) {
    jit::Program p = emitted_program(outputs, simplify_first, "cuda_kernel_stats");
#ifdef AGNESI_WITH_CUDA
    std::vector<std::string> sources;
    std::vector<std::vector<std::string>> extra;
    std::vector<CudaKernelStats> stats;
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
        std::string src = jit::cuda::generate_cuda_group_source(p, "f", gi);
        if (src.empty()) continue;
        for (int dense : {0, 1}) {
            sources.push_back(src);
            extra.push_back(jit::cuda::variant_options(dense));
            extra.back().push_back("--ptxas-options=-v");
            CudaKernelStats k;
            k.group = gi;
            k.kernel = jit::cuda::cuda_kernel_name("f", gi);
            k.kind = jit::group_kind_name(p.groups[gi].kind);
            k.dense = dense != 0;
            stats.push_back(std::move(k));
        }
    }
    jit::cuda::NvrtcOptions o;
    o.arch = arch;
    o.use_cache = false;  // a cached kernel has no ptxas report
    std::vector<jit::cuda::CompileResult> rs =
        jit::cuda::nvrtc_compile_all(sources, "f", o, 0, extra);
    for (std::size_t i = 0; i < stats.size(); ++i) {
        const std::string& log = rs[i].log;
        CudaKernelStats& k = stats[i];
        k.registers = ptxas_figure(log, "registers");
        k.stack_bytes = ptxas_figure(log, "bytes stack frame");
        k.spill_store_bytes = ptxas_figure(log, "bytes spill stores");
        k.spill_load_bytes = ptxas_figure(log, "bytes spill loads");
        k.shared_bytes = ptxas_figure(log, "bytes smem");
        k.cubin_bytes = rs[i].cubin ? rs[i].cubin->size() : 0;
        k.compile_ms = rs[i].compile_ms;
    }
    return stats;
#else
    (void)p;
    (void)arch;
    throw Error(
        "cuda_kernel_stats: this build of Agnesi has no CUDA backend (no CUDA toolkit was found "
        "when it was built)");
#endif
}

std::string emit_source(const std::vector<Expr>& outputs, Target target, bool simplify_first) {
    jit::Program p = emitted_program(outputs, simplify_first, "emit_source");
    if (target == Target::Cuda) return jit::cuda::generate_cuda_source(p, "f");
#ifdef AGNESI_HAVE_CPU_CODEGEN
    return jit::cpu::generate_source(p, "f");
#else
    throw Error("emit_source: this build has no C++ code generator for the CPU target");
#endif
}

}  // namespace agnesi
