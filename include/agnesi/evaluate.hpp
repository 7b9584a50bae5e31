// The reference evaluator: the oracle every backend is tested against.
//
// It computes each node in the node's own dtype (float32 ops in float32, with the C++ standard
// library's functions), except that sums, products and means accumulate float32 in double and
// round once, and matmul accumulates in the dtype through Eigen. It handles every op, any shape,
// and DAGs of any depth (no recursion), freeing each intermediate after its last use.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "agnesi/expr.hpp"
#include "agnesi/tensor.hpp"

namespace agnesi {

/// Values of variables by name. A float64 scalar value converts to a scalar variable's dtype;
/// tensors must match the variable's dtype and shape (symbolic sizes bind consistently).
using Bindings = std::unordered_map<std::string, Tensor>;

Tensor evaluate(const Expr& e, const Bindings& values);
std::vector<Tensor> evaluate(const std::vector<Expr>& roots, const Bindings& values);

}  // namespace agnesi
