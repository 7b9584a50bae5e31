// jacobian, hessian and higher derivatives, built on reverse mode.
//
// The Jacobian of y (shape S) is assembled row by row: one reverse pass per element of y, each
// giving the gradient of that element, stacked into shape S + T. This is reverse mode's natural
// cost (numel(S) passes); it suits the few-outputs case that gradients are about.
#include <fmt/format.h>

#include "agnesi/diff.hpp"
#include "agnesi/error.hpp"

namespace agnesi {

Expr jacobian(const Expr& y, const Expr& x) {
    if (!y || !x) throw ValueError("jacobian: an empty Expr");
    if (y.rank() == 0) return grad(y, x);
    if (!is_static(y.shape()) || !is_static(x.shape()))
        throw ShapeError(fmt::format("jacobian: needs static shapes, got {} and {}",
                                     shape_string(y.shape()), shape_string(x.shape())));
    std::int64_t m = numel(y.shape()), n = numel(x.shape());
    Expr flat = reshape(y, {m});
    std::vector<Expr> rows;
    rows.reserve(static_cast<std::size_t>(m));
    for (std::int64_t k = 0; k < m; ++k) {
        Expr yk = reshape(slice(flat, 0, k, k + 1), {});
        rows.push_back(reshape(grad(yk, x), {1, n}));
    }
    Shape shape = y.shape();
    shape.insert(shape.end(), x.shape().begin(), x.shape().end());
    return reshape(concat(rows, 0), shape);
}

Expr hessian(const Expr& y, const Expr& x) {
    return jacobian(grad(y, x), x);
}

Expr derivative(const Expr& y, const Expr& x, int n) {
    if (n < 0) throw ValueError(fmt::format("derivative: the order must be >= 0, got {}", n));
    Expr d = y;
    for (int i = 0; i < n; ++i) d = grad(d, x);
    return d;
}

}  // namespace agnesi
