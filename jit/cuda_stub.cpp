// CUDA entry points in a build without the CUDA backend.
#include <fmt/format.h>

#include "agnesi/error.hpp"
#include "agnesi/jit.hpp"

namespace agnesi {

CudaAvailability cuda_availability() {
    return {false, "this build of Agnesi has no CUDA backend"};
}

Device Device::cuda(int ordinal) {
    auto a = cuda_availability();
    if (!a.available)
        throw Error(
            fmt::format("Device::cuda({}): no CUDA device available: {}", ordinal, a.reason));
    Device d;
    d.kind = Kind::Cuda;
    d.ordinal = ordinal;
    return d;
}

std::string emit_source(const std::vector<Expr>&, Target, bool) {
    throw Error("emit_source: no code generator in this build");
}

}  // namespace agnesi
