// Simplification: rewrite rules over the DAG, run to a fixpoint.
//
// simplify(e) returns an equal, simpler DAG. The rule sets run each pass, until nothing changes
// (a bounded number of passes); folding shares one bottom-up traversal with the rule sets:
//   fold          constants folded exactly: 1/3 + 1/6 is 1/2, 2^10 is 1024, sqrt(8) is 2*sqrt(2);
//   canonicalize  sums and products flattened, ordered and collected: 2*x + 3*x is 5*x,
//                 x*x*y/x is x*y, x^a*x^b is x^(a+b); sin(x)^2 + cos(x)^2 is 1;
//   algebra       identities with their domain conditions (log(exp(x)) is x; log(x*y) is
//                 log(x) + log(y) only when x and y are known positive);
//   stabilize     numerically stable forms: log(1 + x) is log1p(x), log(1 + exp(x)) is
//                 softplus(x), log(sum(exp(x))) is logsumexp(x), ...;
//   tensor        transpose(transpose(x)), reshape chains, sums of broadcasts, ...
//
// Soundness: wherever the original has a finite value, the result has the same value (up to
// rounding). A rewrite that is only true on part of the domain fires only when its condition is
// known: from constants, from structure (exp(t) is positive), or from a variable's assumptions
// (scalar("x", positive)). Rewrites that need more are behind SimplifyOptions::unsafe.
//
// Terminates on every input: fold and algebra reduce size, canonicalize moves to a normal form,
// stabilize never re-creates its own left side, and passes are capped (InternalError past it).
#pragma once

#include <boost/container/small_vector.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agnesi/error.hpp"
#include "agnesi/expr.hpp"

namespace agnesi {

// ---- patterns and rules ------------------------------------------------------------------------

/// A pattern variable: matches any subexpression (the same one wherever it appears in a rule).
/// Patterns are built with the ordinary operators: rule(log(exp(x)), x).
Expr wildcard(const std::string& name);

/// What a pattern bound: wildcard node -> matched expression.
class Match {
  public:
    /// The expression bound to a wildcard.
    Expr operator[](const Expr& wild) const;
    /// Wildcard node and what it matched (a few entries; searched linearly).
    boost::container::small_vector<std::pair<const Node*, Expr>, 4> bound;
};

/// A condition on a match: when(positive(x)).
using Condition = std::function<bool(const Match&)>;
/// Known facts about a bound expression (from constants, structure and assumptions) are
/// positive(x), nonnegative(x), nonzero(x) and integer(x): the Assumption constants, called.
Condition integer_valued(const Expr& wild);
Condition operator&&(Condition a, Condition b);
inline Condition when(Condition c) {
    return c;
}

struct Rule {
    std::string name;                                       ///< "lhs -> rhs" unless given
    Expr lhs, rhs;                                          ///< a pattern rule, or
    std::function<std::optional<Expr>(const Node*)> apply;  ///< a rule written as code
    Condition condition;
    /// The ops of the nodes a code rule can rewrite; empty: every node. A pass offers a rule
    /// only the nodes it can rewrite, so a rule that names its ops costs nothing elsewhere.
    std::vector<Op> ops;
};

/// A pattern rule: rule(log(1 + x), log1p(x)), rule(x / x, 1, when(nonzero(x))).
Rule rule(const Expr& lhs, const Expr& rhs, Condition condition = {});
/// A rule written as code: returns the replacement of a node, or nullopt. With `ops`, it is
/// offered only nodes of those ops.
Rule rule(std::string name, std::function<std::optional<Expr>(const Node*)> apply);
Rule rule(std::string name, std::vector<Op> ops,
          std::function<std::optional<Expr>(const Node*)> apply);
/// The ops of one kind (OpKind::Shape, OpKind::Reduction, ...), for a code rule's `ops`.
std::vector<Op> ops_of_kind(OpKind kind);

struct RuleSet {
    std::string name;
    std::vector<Rule> rules;
};

/// The built-in rule sets by name: "algebra", "stabilize", "tensor" (fold and canonicalize are
/// passes, named "fold" and "canonicalize" in SimplifyOptions::sets).
const RuleSet& builtin_rule_set(const std::string& name);
/// Adds a rule set that simplify() runs after the built-in ones (by default) or by name.
void register_rule_set(RuleSet set);

// ---- simplify ----------------------------------------------------------------------------------

struct SimplifyOptions {
    /// Which sets run, in order; the default is every built-in set, then registered ones.
    std::vector<std::string> sets;
    /// Print each rule as it fires (to stderr).
    bool trace = false;
    /// Allow rewrites that may change a finite value somewhere (asin(sin(x)) -> x, ...).
    bool unsafe = false;
    int max_passes = 64;
};

Expr simplify(const Expr& e, const SimplifyOptions& options = {});
std::vector<Expr> simplify(const std::vector<Expr>& roots, const SimplifyOptions& options = {});
/// Runs exactly these rule sets (with fold and canonicalize) to a fixpoint.
Expr simplify(const Expr& e, const std::vector<RuleSet>& sets);

/// Constant folding alone.
Expr fold_constants(const Expr& e);
/// Sums and products in normal form, alone.
Expr canonicalize(const Expr& e);

/// Rewrites bottom-up with one rule set, once (no fixpoint).
Expr apply_rules(const Expr& e, const RuleSet& set, bool trace = false);

/// Known facts, as the rules see them: all at once as Assume bits (positive, nonnegative,
/// negative, nonpositive, nonzero, integer), or one at a time.
std::uint8_t known_facts(const Node* n);
bool known_positive(const Node* n);
bool known_nonnegative(const Node* n);
bool known_negative(const Node* n);
bool known_nonpositive(const Node* n);
bool known_nonzero(const Node* n);
bool known_integer(const Node* n);

}  // namespace agnesi
