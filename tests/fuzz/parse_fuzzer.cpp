// libFuzzer entry: any bytes either parse (and then print and parse back to the same node) or
// raise agnesi::Error; nothing else may happen.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "agnesi/agnesi.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    static agnesi::Context* ctx = new agnesi::Context;
    agnesi::ParseOptions opts;
    opts.context = ctx;
    agnesi::Expr e;
    try {
        e = agnesi::parse(text, opts);
    } catch (const agnesi::Error&) {
        return 0;
    }
    std::string printed = agnesi::to_string(e);
    std::vector<agnesi::Expr> vars = agnesi::free_variables({e});
    opts.variables = vars;
    if (agnesi::parse(printed, opts) != e) std::abort();
    (void)agnesi::to_latex(e);
    (void)agnesi::debug_print(e);
    return 0;
}
