// A sample of float32 inputs for accuracy tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace agnesi::testing {

/// Every 4093rd float bit pattern (all signs and binades, subnormals, infinities, NaNs), then
/// `edges`.
inline std::vector<float> float_sample(std::initializer_list<float> edges) {
    std::vector<float> xs;
    for (std::uint64_t b = 0; b < (1ull << 32); b += 4093) {
        auto bits = static_cast<std::uint32_t>(b);
        float f;
        std::memcpy(&f, &bits, sizeof f);
        xs.push_back(f);
    }
    xs.insert(xs.end(), edges);
    return xs;
}

}  // namespace agnesi::testing
