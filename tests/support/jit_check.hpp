// Compares a compiled function's outputs with the reference evaluator's.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "agnesi/agnesi.hpp"

namespace agnesi::testing {

/// Whether a and b agree: same dtype and shape, every element within `rel` relative (absolute
/// near zero), NaN where the other is NaN, equal infinities.
inline ::testing::AssertionResult tensors_close(const Tensor& got, const Tensor& want, double rel) {
    if (got.dtype() != want.dtype())
        return ::testing::AssertionFailure()
               << "dtype " << dtype_name(got.dtype()) << " vs " << dtype_name(want.dtype());
    if (got.shape() != want.shape())
        return ::testing::AssertionFailure()
               << "shape " << shape_string(got.shape()) << " vs " << shape_string(want.shape());
    for (std::int64_t i = 0; i < got.size(); ++i) {
        double g = got.at(i), w = want.at(i);
        if (std::isnan(w) || std::isnan(g)) {
            if (std::isnan(w) && std::isnan(g)) continue;
        } else if (std::isinf(w) || std::isinf(g)) {
            if (g == w) continue;
        } else if (std::abs(g - w) <= rel * std::max(1.0, std::abs(w))) {
            continue;
        }
        return ::testing::AssertionFailure()
               << "element " << i << ": got " << format_value(g) << ", want " << format_value(w);
    }
    return ::testing::AssertionSuccess();
}

/// Where a test's functions run: a CPU tier, or the CUDA device.
struct Tier {
    Backend backend = Backend::Auto;
    bool cuda = false;
    bool asynchronous = false;       ///< CUDA calls that return before their kernels finish
    Tier(Backend b) : backend(b) {}  // NOLINT(google-explicit-constructor)
    Tier(Backend b, bool on_cuda, bool async = false)
        : backend(b), cuda(on_cuda), asynchronous(async) {}
    Device device() const { return cuda ? Device::cuda() : Device::cpu(); }
    std::string name() const {
        if (cuda) return asynchronous ? "CudaAsync" : "Cuda";
        return backend == Backend::Evaluator      ? "Evaluator"
               : backend == Backend::Native       ? "Native"
               : backend == Backend::EmulatedCuda ? "EmulatedCuda"
                                                  : "Auto";
    }
};

/// Compiles `outputs` over `inputs` and checks every output against evaluate(); an output that
/// differs is let pass where `excused(i)` says so.
inline void expect_matches_reference(const std::vector<Expr>& inputs,
                                     const std::vector<Expr>& outputs, const Bindings& at,
                                     Tier tier, double rel = 1e-12, bool simplify = false,
                                     const std::function<bool(std::size_t)>& excused = {}) {
    Function f = compile(inputs, outputs,
                         {.device = tier.device(),
                          .backend = tier.backend,
                          .simplify = simplify,
                          .asynchronous = tier.asynchronous});
    std::vector<Tensor> args;
    for (const Expr& v : inputs) args.push_back(at.at(v->name()));
    std::vector<Tensor> got = f.call(args);
    std::vector<Tensor> want = evaluate(outputs, at);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        auto close = tensors_close(got[i], want[i], rel);
        if (!close && excused && excused(i)) continue;
        EXPECT_TRUE(close) << "output " << i << ": " << to_string(outputs[i]) << "\nschedule:\n"
                           << f.schedule_text();
    }
}

}  // namespace agnesi::testing
