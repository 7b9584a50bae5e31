// One scalar converted between the arithmetic types of the dtypes, with the meaning of
// Tensor::astype: floats to integers truncate toward zero (NaN gives 0, out-of-range values
// saturate, so the conversion is never undefined), anything to bool is "nonzero" (NaN is true,
// as in NumPy). Shared by Tensor::astype and the group evaluator, which must agree bit for bit.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

namespace agnesi::detail {

template <class D, class S>
D convert_arithmetic(S v) {
    if constexpr (std::is_same_v<D, bool>) {
        return v != S(0);
    } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<S>) {
        if (std::isnan(v)) return 0;
        // 2^63 and 2^31 are exact in float and double; the max values may not be.
        constexpr double hi = -static_cast<double>(std::numeric_limits<D>::min());
        if (v >= static_cast<S>(hi)) return std::numeric_limits<D>::max();
        if (v < static_cast<S>(-hi)) return std::numeric_limits<D>::min();
        return static_cast<D>(v);
    } else {
        return static_cast<D>(v);
    }
}

}  // namespace agnesi::detail
