// Symbolic differentiation: reverse mode (grad, vjp), forward mode (jvp), jacobian, hessian,
// and check_grad, which compares a symbolic gradient with finite differences.
//
// Every result is an ordinary DAG: it prints, simplifies, evaluates, and can be differentiated
// again. Reverse mode walks the DAG once, so the gradient of a DAG of n nodes has O(n) nodes.
// Each op's derivative is its op table entry's vjp rule (include/agnesi/vjp.hpp).
//
// Conventions:
// - Kinks take the value 0: abs'(0) = 0, relu'(0) = 0; at a tie, min and max give half of the
//   gradient to each operand, and amax/amin share it equally among the tied elements.
// - floor, ceil and sign have zero gradient; comparisons, logical ops, a where's condition and
//   casts to integers carry none. prod's gradient (prod/x) is not finite where an element is 0.
// - Integer and boolean nodes carry no gradient; asking for the gradient with respect to one
//   is a TypeError naming it. A float32 input gets a float32 gradient.
// - A variable that the output does not depend on gets a zero of its shape and dtype.
#pragma once

#include <string>
#include <vector>

#include "agnesi/evaluate.hpp"
#include "agnesi/expr.hpp"

namespace agnesi {

/// The gradient of a scalar `y` with respect to each of `wrt`, each of its input's shape.
///   grad(sin(pow(x, 2)), {x})[0] prints 1.0*cos(x^2)*2*x (2*x*cos(x^2) once simplified)
std::vector<Expr> grad(const Expr& y, const std::vector<Expr>& wrt);
/// The gradient with respect to one input.
Expr grad(const Expr& y, const Expr& x);

/// Vector-Jacobian product: the cotangent of each of `wrt`, given the cotangent `ct` of `y`
/// (same shape as y). grad(y, wrt) is vjp(y, wrt, 1).
std::vector<Expr> vjp(const Expr& y, const std::vector<Expr>& wrt, const Expr& ct);

/// Jacobian-vector product (forward mode): the directional derivative of `y` along the
/// tangents `tangents` of `wrt` (one per input, same shapes). Shape of y.
Expr jvp(const Expr& y, const std::vector<Expr>& wrt, const std::vector<Expr>& tangents);

/// The Jacobian of y (shape S) with respect to x (shape T): shape S + T.
Expr jacobian(const Expr& y, const Expr& x);
/// The Hessian of a scalar y with respect to x (shape T): shape T + T.
Expr hessian(const Expr& y, const Expr& x);
/// The n-th derivative of y with respect to x (n >= 0); y must be a scalar when n >= 1 and
/// each derivative is differentiated again (x a scalar for n >= 2).
Expr derivative(const Expr& y, const Expr& x, int n = 1);

struct CheckGradOptions {
    /// Relative finite-difference step; the step for a value v is step * max(1, |v|).
    /// 0 picks 1e-3 for float64 inputs and 3e-2 when any input is float32.
    double step = 0;
    /// A component passes when |symbolic - numeric| <= atol + rtol * max(|symbolic|, |numeric|).
    /// 0 picks 1e-6 / 1e-6 for float64 and 1e-2 / 1e-2 with float32 inputs.
    double rtol = 0, atol = 0;
    /// Seed of the random projection used when f is not a scalar.
    unsigned seed = 1234;
    /// Skip components whose finite differences at two step sizes disagree (a kink or a
    /// discontinuity near the point); they are counted in `nonsmooth`. For fuzzing.
    bool skip_nonsmooth = false;
};

struct CheckGradReport {
    bool ok = true;
    std::size_t checked = 0;    ///< components compared
    std::size_t nonsmooth = 0;  ///< components skipped (skip_nonsmooth)
    // The worst component (largest error relative to its tolerance).
    std::string variable;             ///< its variable's name
    std::vector<std::int64_t> index;  ///< its index in that variable
    double symbolic = 0, numeric = 0;
    double abs_error = 0, rel_error = 0;
    /// One line: "check_grad: ok ..." or "check_grad: FAILED at W[1, 2]: symbolic ..., ...".
    std::string message;
};

/// Compares the symbolic gradient of `f` with central finite differences (4-point stencil) at
/// the point `at`, component by component, for each of `inputs` (default: every float variable
/// of f). A non-scalar f is first reduced to sum(f * r) with a fixed random r. Like Theano's
/// verify_grad and JAX's check_grads. Returns a report; never throws for a mismatch.
CheckGradReport check_grad(const Expr& f, const Bindings& at, const std::vector<Expr>& inputs = {},
                           const CheckGradOptions& options = {});

}  // namespace agnesi
