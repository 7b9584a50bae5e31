// CUDA entry points in a build without the CUDA toolkit (the CUDA backend is off).
#include <fmt/format.h>

#include "agnesi/error.hpp"
#include "agnesi/jit.hpp"

namespace agnesi {

CudaAvailability cuda_availability() {
    return {
        false,
        "this build of Agnesi has no CUDA backend (no CUDA toolkit was found when it was built)"};
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

}  // namespace agnesi
