// Random expressions from the op table, simplified: the value is unchanged wherever every
// subexpression of the original is finite and the sample is well conditioned, simplify is
// idempotent, and the result prints and parses back.
// (in_rewrite_domain says which samples count, and why). A sample is ill-conditioned when a
// relative nudge of about 1e-13 to the inputs, up or down, moves the original's value by more
// than 1e-9 relative: rounding could explain any difference there.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

#include "support/random_expr.hpp"

using namespace agnesi;
using agnesi::testing::RandomExpr;

namespace {

// Each input moved by a relative step of its own (so that a function of ratios, atan2(y, x),
// moves too), zeros by the same step absolutely (cos(acos(0)) is 6e-17, not 0).
Bindings nudged(const Bindings& at, double rel) {
    Bindings out;
    double step = rel;
    for (const auto& [k, v] : at) {
        Tensor t = v.clone();
        for (std::int64_t i = 0; i < t.size(); ++i) {
            double& x = t.data<double>()[i];
            x = x == 0 ? step : x * (1 + step);
        }
        out[k] = t;
        step *= 1.25;
    }
    return out;
}

void check_corpus(unsigned seed, int iters, agnesi::testing::RandomExprOptions opts) {
    RandomExpr gen(seed, opts);
    int compared = 0;
    for (int i = 0; i < iters; ++i) {
        Expr e = gen();
        Expr s;
        try {
            s = simplify(e);
        } catch (const Error& err) {
            FAIL() << "seed " << seed << " iteration " << i << ": " << to_string(e) << "\n"
                   << err.what();
        }
        ASSERT_EQ(s.shape(), e.shape()) << to_string(e);
        ASSERT_EQ(s.dtype(), e.dtype()) << to_string(e) << " -> " << to_string(s);
        ASSERT_EQ(simplify(s), s) << "not idempotent: " << to_string(e) << " -> " << to_string(s)
                                  << " -> " << to_string(simplify(s));
        ASSERT_EQ(parse(to_string(s), gen.variables()), s) << to_string(s);
        for (int k = 0; k < 3; ++k) {
            Bindings at = gen.values();
            if (!agnesi::testing::in_rewrite_domain(e, at)) continue;
            Tensor a = evaluate(e, at), b = evaluate(s, at), up = evaluate(e, nudged(at, 1e-13)),
                   down = evaluate(e, nudged(at, -1e-13));
            for (std::int64_t j = 0; j < a.size(); ++j) {
                double x = a.at(j), y = b.at(j), x2 = up.at(j), x3 = down.at(j);
                if (!std::isfinite(x) || !std::isfinite(x2) || !std::isfinite(x3)) continue;
                double scale = std::max(1.0, std::fabs(x));
                // Ill-conditioned here (or near a step of floor, ceil or a comparison).
                if (std::fabs(x2 - x) > 1e-9 * scale || std::fabs(x3 - x) > 1e-9 * scale) continue;
                ++compared;
                ASSERT_LE(std::fabs(x - y), 1e-12 * std::max(scale, std::fabs(y)))
                    << "seed " << seed << " iteration " << i << "\n  original:   " << to_string(e)
                    << "\n  simplified: " << to_string(s) << "\n  element " << j << ": " << x
                    << " vs " << y;
            }
        }
    }
    EXPECT_GT(compared, iters / 4);
}

// Ops whose value can round to 0 where the exact one is not.
bool may_underflow(Op op) {
    switch (op) {
        case Op::Exp:
        case Op::Pow:
        case Op::Mul:
        case Op::Div:
        case Op::Sigmoid:
        case Op::Softplus:
        case Op::Softmax:
        case Op::Erfc: return true;
        default: return false;
    }
}

// Whether every value of a node (`t`) is finite and, unless 0, between 1e-150 and 1e150 in
// magnitude, with no 0 that may be rounded, and its operands are tame too: a node of tame
// operands cannot overflow, nor underflow but through its own exp, product or power.
bool tame(const Node* n, const Tensor& t, const std::unordered_map<const Node*, bool>& known) {
    for (const Node* o : n->operands())
        if (!known.at(o)) return false;
    for (std::int64_t j = 0; j < t.size(); ++j) {
        double a = std::fabs(t.at(j));
        if (!std::isfinite(a) || (a != 0 && (a < 1e-150 || a > 1e150))) return false;
        if (a == 0 && may_underflow(n->op())) return false;
    }
    return true;
}

struct FactCounts {
    int positive = 0, nonnegative = 0, negative = 0, nonpositive = 0, nonzero = 0, integer = 0;
};

// Checks the facts of every node of e whose operands are tame at `at`, against its value there.
void check_facts(const Expr& e, const Bindings& at, FactCounts& seen, const std::string& where) {
    std::vector<Expr> parts;
    for (const Node* n : post_order(e)) parts.emplace_back(n);
    std::vector<Tensor> values = evaluate(parts, at);
    std::unordered_map<const Node*, bool> is_tame;
    for (std::size_t p = 0; p < parts.size(); ++p)  // operands first: post order
        is_tame[parts[p].node()] = tame(parts[p].node(), values[p], is_tame);
    for (std::size_t p = 0; p < parts.size(); ++p) {
        const Node* n = parts[p].node();
        bool checkable = true;
        for (const Node* o : n->operands()) checkable = checkable && is_tame.at(o);
        if (!checkable) continue;
        const bool pos = known_positive(n), nonneg = known_nonnegative(n), neg = known_negative(n),
                   nonpos = known_nonpositive(n), nonzero = known_nonzero(n),
                   integer = known_integer(n);
        const Tensor& t = values[p];
        for (std::int64_t j = 0; j < t.size(); ++j) {
            const double v = t.at(j);
            // The facts hold where values are finite (x^-1 is -inf at x = -0, which is >= 0).
            if (!std::isfinite(v)) continue;
            const bool rounded_to_zero = v == 0 && may_underflow(n->op());
            auto fail = [&](const char* fact) {
                return ::testing::AssertionFailure()
                       << where << ": " << to_string(parts[p]) << " is known " << fact << " but is "
                       << v << " (element " << j << ")";
            };
            if (pos && !(v > 0) && !rounded_to_zero) {
                ASSERT_TRUE(fail("positive"));
            }
            if (neg && !(v < 0) && !rounded_to_zero) {
                ASSERT_TRUE(fail("negative"));
            }
            if (nonneg && !(v >= 0)) {
                ASSERT_TRUE(fail("nonnegative"));
            }
            if (nonpos && !(v <= 0)) {
                ASSERT_TRUE(fail("nonpositive"));
            }
            if (nonzero && v == 0 && !rounded_to_zero) {
                ASSERT_TRUE(fail("nonzero"));
            }
            if (integer && v != std::floor(v)) {
                ASSERT_TRUE(fail("an integer"));
            }
            seen.positive += pos;
            seen.nonnegative += nonneg;
            seen.negative += neg;
            seen.nonpositive += nonpos;
            seen.nonzero += nonzero;
            seen.integer += integer;
        }
    }
}

}  // namespace

// The sign and integer facts that conditional rules rely on (simplify/facts.cpp) hold at random
// points, for every node of random expressions and of their simplified forms, over variables
// with assumptions and at their bounds.
TEST(FuzzSimplify, FactsHoldAtRandomPoints) {
    const unsigned seed = agnesi::testing::fuzz_seed(13);
    const int iters = agnesi::testing::fuzz_iters(1500);
    RandomExpr gen(seed, {.max_depth = 5, .assumptions = true});
    FactCounts seen;
    for (int i = 0; i < iters; ++i) {
        Expr e = gen();
        Expr s = simplify(e);
        for (int k = 0; k < 3; ++k) {
            Bindings at = gen.values();
            const std::string where = fmt::format("seed {} iteration {}", seed, i);
            ASSERT_NO_FATAL_FAILURE(check_facts(e, at, seen, where));
            ASSERT_NO_FATAL_FAILURE(check_facts(s, at, seen, where + " (simplified)"));
        }
    }
    // Each fact was claimed, and checked, often.
    EXPECT_GT(seen.positive, iters);
    EXPECT_GT(seen.nonnegative, iters);
    EXPECT_GT(seen.negative, iters / 10);
    EXPECT_GT(seen.nonpositive, iters / 10);
    EXPECT_GT(seen.nonzero, iters);
    EXPECT_GT(seen.integer, iters / 10);
}

// Rules conditioned on those facts keep values over variables with assumptions.
TEST(FuzzSimplify, ExpressionsOfAssumedVariablesKeepTheirValue) {
    check_corpus(agnesi::testing::fuzz_seed(14), agnesi::testing::fuzz_iters(1500),
                 {.max_depth = 5, .assumptions = true});
}

TEST(FuzzSimplify, ScalarExpressionsKeepTheirValue) {
    check_corpus(agnesi::testing::fuzz_seed(11), agnesi::testing::fuzz_iters(2000),
                 {.max_depth = 5, .tensors = false});
}

TEST(FuzzSimplify, TensorExpressionsKeepTheirValue) {
    check_corpus(agnesi::testing::fuzz_seed(12), agnesi::testing::fuzz_iters(1500),
                 {.max_depth = 4});
}
