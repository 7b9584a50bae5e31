// The native CPU tier's entry point: generated C++ compiled by the host compiler.
#include "jit/backend.hpp"

namespace agnesi::jit {

std::unique_ptr<Executor> make_native(const Program&, const CompileOptions&, CompileStats&) {
    return nullptr;
}

}  // namespace agnesi::jit
