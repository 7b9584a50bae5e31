// emit_source: the generated source of an expression list, as `agnesi emit` prints it.
#include <fmt/format.h>

#include <algorithm>

#include "agnesi/error.hpp"
#include "agnesi/jit.hpp"
#include "agnesi/simplify.hpp"
#include "agnesi/traverse.hpp"
#include "jit/cuda/codegen.hpp"
#include "jit/schedule.hpp"
#if __has_include("jit/cpu/codegen.hpp")
#include "jit/cpu/codegen.hpp"
#define AGNESI_HAVE_CPU_CODEGEN 1
#endif

namespace agnesi {

std::string emit_source(const std::vector<Expr>& outputs, Target target, bool simplify_first) {
    if (outputs.empty()) throw ValueError("emit_source: no outputs");
    for (const Expr& e : outputs)
        if (!e) throw ValueError("emit_source: an output is an empty Expr");
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
    jit::Program p = jit::schedule(root_nodes, inputs, static_cast<int>(roots.size()), {});
    if (target == Target::Cuda) return jit::cuda::generate_cuda_source(p, "f");
#ifdef AGNESI_HAVE_CPU_CODEGEN
    return jit::cpu::generate_source(p, "f");
#else
    throw Error("emit_source: this build has no C++ code generator for the CPU target");
#endif
}

}  // namespace agnesi
