// Simplification.
//
// fold_constants(e) evaluates every elementwise node whose operands are all constants, exactly:
// integers and rationals stay exact (1/3 + 1/6 is 1/2, 2^10 is 1024), comparisons give 0 or 1,
// and a where() with a constant condition picks its branch. Results that are not exact rationals
// (sin(1), sqrt(2), 1/0) are left as they are. simplify(e) runs the rule sets to a fixpoint;
// today that is constant folding.
#pragma once

#include "agnesi/expr.hpp"

namespace agnesi {

Expr fold_constants(const Expr& e);
Expr simplify(const Expr& e);

}  // namespace agnesi
