// A seeded generator of random expressions for the fuzz tests: it draws ops from the op table,
// over a few variables of small broadcastable shapes, to a given depth.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "agnesi/agnesi.hpp"

namespace agnesi::testing {

/// The seed for fuzz tests: AGNESI_FUZZ_SEED if set, else the given default.
inline unsigned fuzz_seed(unsigned fallback) {
    if (const char* s = std::getenv("AGNESI_FUZZ_SEED"))
        return static_cast<unsigned>(std::strtoul(s, nullptr, 10));
    return fallback;
}
/// The number of iterations: AGNESI_FUZZ_ITERS if set, else the given default.
inline int fuzz_iters(int fallback) {
    if (const char* s = std::getenv("AGNESI_FUZZ_ITERS")) return std::atoi(s);
    return fallback;
}

/// Whether, at `at`, a floor, ceil or sign in `e` has a float argument within rounding (1e-9
/// relative) of its step, or a comparison of floats is within rounding of a tie: the last bit of
/// a value decides the result there, and two correct evaluations may differ.
inline bool near_a_step(const Expr& e, const Bindings& at) {
    for (const Node* n : post_order(e)) {
        const Expr part(n);
        const Op op = part.op();
        const bool steps = op == Op::Floor || op == Op::Ceil || op == Op::Sign;
        if (steps && is_float(part.operand(0).dtype())) {
            const Tensor a = evaluate(part.operand(0), at);
            for (std::int64_t j = 0; j < a.size(); ++j) {
                const double x = a.at(j), step = op == Op::Sign ? 0.0 : std::round(x);
                if (std::fabs(x - step) <= 1e-9 * std::max(1.0, std::fabs(x))) return true;
            }
        }
        const bool compares = op == Op::Lt || op == Op::Le || op == Op::Gt || op == Op::Ge ||
                              op == Op::Eq || op == Op::Ne;
        if (compares && (is_float(part.operand(0).dtype()) || is_float(part.operand(1).dtype()))) {
            Expr a = cast(part.operand(0), f64), b = cast(part.operand(1), f64);
            Tensor gap = evaluate(abs(a - b) - 1e-9 * (1.0 + abs(a) + abs(b)), at);
            for (std::int64_t j = 0; j < gap.size(); ++j)
                if (gap.at(j) <= 0) return true;  // NaN: no tie, the comparison is false
        }
    }
    return false;
}

/// Whether a sample is inside the domain where rewrites keep values: every subexpression of `e`
/// is finite there, none that is positive has underflowed to 0, and no atan2 sits on its branch
/// cut (y = +-0, where the sign of a zero, which exact constants do not keep, decides the
/// result). Outside it, x*0 -> 0 turns inf*0 into 0, a/(-b) -> -a/b flips the sign of a
/// division by zero, which a comparison could then see, and sign(erfc(x)) -> 1 is 0 where
/// erfc(x) is. Nor may a comparison of floats be within rounding of a tie, or floor, ceil or
/// sign within rounding of a step: reassociating `t + (pi - t)` into `pi + t - t` can decide
/// `== pi` the other way, and floor(tan(atan(2))) is 1 where floor(2) is 2.
inline bool in_rewrite_domain(const Expr& e, const Bindings& at) {
    std::vector<Expr> parts;
    for (const Node* n : post_order(e)) parts.emplace_back(n);
    std::vector<Tensor> values = evaluate(parts, at);
    std::unordered_map<const Node*, std::size_t> index;
    for (std::size_t i = 0; i < parts.size(); ++i) index[parts[i].node()] = i;
    for (std::size_t p = 0; p < parts.size(); ++p) {
        const Tensor& t = values[p];
        // exp, erfc, sigmoid, softplus and softmax are positive: a 0 is rounded (underflow),
        // which rewrites that rely on their sign do not keep.
        const Op op = parts[p].op();
        const bool positive = op == Op::Exp || op == Op::Erfc || op == Op::Sigmoid ||
                              op == Op::Softplus || op == Op::Softmax;
        for (std::int64_t j = 0; j < t.size(); ++j)
            if (!std::isfinite(t.at(j)) || (positive && t.at(j) == 0)) return false;
        if (op == Op::Atan2) {
            const Tensor& y = values[index.at(parts[p]->operand(0))];
            for (std::int64_t j = 0; j < y.size(); ++j)
                if (y.at(j) == 0) return false;
        }
    }
    return !near_a_step(e, at);
}

struct RandomExprOptions {
    int max_depth = 4;
    bool tensors = true;           ///< use tensor variables and tensor ops
    bool comparisons = true;       ///< use comparisons, where and logical ops
    DType dtype = DType::Float64;  ///< the variables' type
    /// Scalars with assumptions: x positive, y nonnegative, n negative, m nonpositive, k integer
    /// (z has none); values() honours them and draws the bounds (0 for y, m and z) often.
    bool assumptions = false;
    /// With assumptions: draw zeros often (the bound of y, m and z). Off for finite
    /// differences, which a kink at the bound would mislead.
    bool zeros = true;
};

class RandomExpr {
  public:
    RandomExpr(unsigned seed, RandomExprOptions opts = {}) : rng_(seed), opts_(opts) {
        const DType t = opts_.dtype;
        if (opts_.assumptions)
            vars_ = {scalar("x", t, positive), scalar("y", t, nonnegative),
                     scalar("n", t, negative), scalar("m", t, nonpositive),
                     scalar("z", t),           scalar("k", t, integer)};
        else
            vars_ = {scalar("x", t), scalar("y", t), scalar("z", t)};
        if (opts_.tensors) {
            vars_.push_back(vector("v", 3, t));
            vars_.push_back(matrix("M", 2, 3, t));
            vars_.push_back(tensor("T", {4, 1, 3}, t));
        }
    }

    const std::vector<Expr>& variables() const { return vars_; }

    Expr operator()() { return gen(opts_.max_depth); }

    /// Values for every variable, uniform in [lo, hi].
    Bindings values(double lo = -2.0, double hi = 2.0) {
        std::uniform_real_distribution<double> u(lo, hi);
        Bindings b;
        for (const Expr& v : vars_) {
            Tensor t(f64, v.shape());
            const std::uint8_t a = v->assumptions();
            for (std::int64_t i = 0; i < t.size(); ++i) {
                double& x = t.data<double>()[i];
                x = u(rng_);
                if (!opts_.assumptions) continue;
                if (a & kInteger) x = std::round(x * 2);
                if (a & kNonnegative) x = std::fabs(x);
                if (a & kNonpositive) x = -std::fabs(x);
                if ((a & kPositive) && x == 0) x = hi;
                if ((a & kNegative) && x == 0) x = -hi;
                if (opts_.zeros && !(a & kNonzero) && pick(5) == 0) x = 0;
            }
            b[v->name()] = t.astype(v.dtype());
        }
        return b;
    }

    std::mt19937& rng() { return rng_; }

  private:
    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

    Expr leaf() {
        if (pick(4) == 0) {
            static const Number consts[] = {Number(0),
                                            Number(1),
                                            Number(2),
                                            Number(-1),
                                            Number::rational(1, 3),
                                            Number::rational(-5, 2),
                                            Number::from_double(0.25),
                                            Number::pi()};
            const Number& c = consts[pick(8)];
            return pick(3) == 0 && c.is_integer() ? literal(c, f64) : literal(c);
        }
        return vars_[static_cast<std::size_t>(pick(static_cast<int>(vars_.size())))];
    }

    Expr gen(int depth) {
        if (depth <= 0 || pick(5) == 0) return leaf();
        for (int attempt = 0; attempt < 20; ++attempt) {
            try {
                return step(depth);
            } catch (const ShapeError&) {
                // Shapes that do not fit: draw again.
            }
        }
        return leaf();
    }

    Expr step(int depth) {
        int kind = pick(opts_.tensors ? 10 : 7);
        if (kind < 3) {  // unary elementwise
            static const Op unary[] = {
                Op::Neg,   Op::Exp,     Op::Log,      Op::Sqrt, Op::Sin,   Op::Cos,   Op::Tan,
                Op::Asin,  Op::Acos,    Op::Atan,     Op::Sinh, Op::Cosh,  Op::Tanh,  Op::Asinh,
                Op::Acosh, Op::Atanh,   Op::Abs,      Op::Sign, Op::Log1p, Op::Expm1, Op::Erf,
                Op::Erfc,  Op::Sigmoid, Op::Softplus, Op::Relu, Op::Floor, Op::Ceil};
            return elementwise(unary[pick(27)], {gen(depth - 1)});
        }
        if (kind < 6) {  // binary elementwise
            static const Op binary[] = {Op::Add, Op::Sub,     Op::Mul,     Op::Div,
                                        Op::Pow, Op::Minimum, Op::Maximum, Op::Atan2};
            return elementwise(binary[pick(8)], {gen(depth - 1), gen(depth - 1)});
        }
        if (kind == 6) {
            if (!opts_.comparisons) return gen(depth - 1) + gen(depth - 1);
            static const Op cmp[] = {Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq, Op::Ne};
            Expr c = elementwise(cmp[pick(6)], {gen(depth - 1), gen(depth - 1)});
            return where(c, gen(depth - 1), gen(depth - 1));
        }
        Expr a = gen(depth - 1);
        if (a.rank() == 0) return a * gen(depth - 1);
        auto axis = static_cast<std::int64_t>(pick(static_cast<int>(a.rank())));
        switch (kind) {
            case 7: {
                static const Op red[] = {Op::Sum,       Op::Prod, Op::ReduceMax,
                                         Op::ReduceMin, Op::Mean, Op::Logsumexp};
                return reduce(red[pick(6)], a, {axis}, pick(2) == 0);
            }
            case 8:
                switch (pick(4)) {
                    case 0: return softmax(a, axis);
                    case 1: return log_softmax(a, axis);
                    case 2: return transpose(a);
                    default: return expand_dims(a, axis);
                }
            default:
                if (a.rank() == 2 && a.shape()[1] == 3 && pick(2) == 0) return matmul(a, vars_[3]);
                return sum(a);
        }
    }

    std::mt19937 rng_;
    RandomExprOptions opts_;
    std::vector<Expr> vars_;
};

}  // namespace agnesi::testing
