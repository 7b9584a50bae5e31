// check_grad: the symbolic gradient against central finite differences, component by component.
//
// The numeric derivative is the 4-point central stencil (f(-2h) - 8f(-h) + 8f(h) - f(2h))/12h,
// accurate to O(h^4). With skip_nonsmooth, the two 2-point estimates at h and 2h must agree; when
// they do not, or a much smaller step disagrees, a kink or a jump lies near the point and the
// component is skipped.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "agnesi/diff.hpp"
#include "agnesi/error.hpp"
#include "agnesi/traverse.hpp"

namespace agnesi {

namespace {

void set_component(Tensor& t, std::int64_t i, double v) {
    if (t.dtype() == DType::Float32)
        t.data<float>()[i] = static_cast<float>(v);
    else
        t.data<double>()[i] = v;
}

std::vector<std::int64_t> unravel(std::int64_t i, const Shape& shape) {
    std::vector<std::int64_t> idx(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        idx[d] = shape[d] ? i % shape[d] : 0;
        i = shape[d] ? i / shape[d] : 0;
    }
    return idx;
}

std::string index_string(const std::vector<std::int64_t>& idx) {
    if (idx.empty()) return "";
    return fmt::format("[{}]", fmt::join(idx, ", "));
}

}  // namespace

CheckGradReport check_grad(const Expr& f, const Bindings& at, const std::vector<Expr>& inputs,
                           const CheckGradOptions& options) {
    std::vector<Expr> xs = inputs;
    if (xs.empty())
        for (const Expr& v : free_variables({f}))
            if (is_float(v.dtype())) xs.push_back(v);
    bool single = false;
    for (const Expr& x : xs) single = single || x.dtype() == DType::Float32;
    double step = options.step > 0 ? options.step : single ? 3e-2 : 1e-3;
    double rtol = options.rtol > 0 ? options.rtol : single ? 1e-2 : 1e-6;
    double atol = options.atol > 0 ? options.atol : single ? 1e-2 : 1e-6;

    Bindings b = at;
    Expr y = f;
    if (f.rank() != 0) {
        // Project onto a fixed random direction, so one gradient checks every output.
        Tensor fv = evaluate(f, b);
        Tensor r(DType::Float64, fv.shape());
        std::mt19937 rng(options.seed);
        std::uniform_real_distribution<double> u(0.5, 1.5);
        for (std::int64_t i = 0; i < r.size(); ++i)
            r.data<double>()[i] = (rng() % 2 ? 1 : -1) * u(rng);
        Expr rv = variable("%check_grad_direction", f.shape(), DType::Float64, kNone, f->context());
        b[rv->name()] = r;
        y = sum(f * rv);
    }
    std::vector<Expr> grads = grad(y, xs);
    std::vector<Tensor> sym = evaluate(grads, b);

    CheckGradReport rep;
    double worst = -1;
    auto value = [&] { return evaluate(y, b).item(); };
    for (std::size_t k = 0; k < xs.size(); ++k) {
        const std::string& name = xs[k]->name();
        auto it = b.find(name);
        if (it == b.end()) throw ValueError("check_grad: no value for input '" + name + "'");
        Tensor t = it->second.clone();
        it->second = t;  // shares t's buffer: writes to t are what evaluate() sees
        for (std::int64_t i = 0; i < t.size(); ++i) {
            double x0 = t.at(i);
            double h = step * std::max(1.0, std::fabs(x0));
            auto at_offset = [&](double d) {
                set_component(t, i, x0 + d);
                return value();
            };
            double fp1 = at_offset(h), fm1 = at_offset(-h), fp2 = at_offset(2 * h),
                   fm2 = at_offset(-2 * h);
            set_component(t, i, x0);
            double num = (8 * (fp1 - fm1) - (fp2 - fm2)) / (12 * h);
            double s = sym[k].at(i);
            if (options.skip_nonsmooth) {
                // A step 64 times smaller sees a staircase (floor of a steep function) as flat.
                double c1 = (fp1 - fm1) / (2 * h), c2 = (fp2 - fm2) / (4 * h);
                double c0 = (at_offset(h / 64) - at_offset(-h / 64)) / (h / 32);
                set_component(t, i, x0);
                auto apart = [](double p, double q, double tol) {
                    return !std::isfinite(p - q) || std::fabs(p - q) > tol * (1 + std::fabs(p));
                };
                if (!std::isfinite(num) || apart(c1, c2, 1e-5) || apart(num, c0, 1e-4)) {
                    ++rep.nonsmooth;
                    continue;
                }
            }
            ++rep.checked;
            double err = std::fabs(s - num);
            double tol = atol + rtol * std::max(std::fabs(s), std::fabs(num));
            double ratio = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / tol;
            if (ratio > worst) {
                worst = ratio;
                rep.variable = name;
                rep.index = unravel(i, t.shape());
                rep.symbolic = s;
                rep.numeric = num;
                rep.abs_error = err;
                rep.rel_error = err / std::max(std::fabs(num), 1e-300);
            }
        }
    }
    rep.ok = worst <= 1;
    if (rep.checked == 0) {
        rep.message = fmt::format(
            "check_grad: ok, no components checked ({} skipped as "
            "non-smooth)",
            rep.nonsmooth);
        return rep;
    }
    rep.message = fmt::format(
        "check_grad: {}: {} components ({} skipped), worst d/d{}{}: symbolic {}, finite "
        "difference {} (abs error {:.3g}, rel error {:.3g}; rtol {:.3g}, atol {:.3g})",
        rep.ok ? "ok" : "FAILED", rep.checked, rep.nonsmooth, rep.variable, index_string(rep.index),
        format_value(rep.symbolic), format_value(rep.numeric), rep.abs_error, rep.rel_error, rtol,
        atol);
    return rep;
}

}  // namespace agnesi
