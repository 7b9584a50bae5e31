// Printers: text (parseable infix), LaTeX, Graphviz DOT, and a debug listing.
//
// All printers are iterative and linear in their output. The text form uses the fewest
// parentheses that keep the meaning, and parse() reads it back to the same node. Variables whose
// names are not plain identifiers, or collide with a constant name (pi, e, inf, nan), print in
// backquotes (`my var`). Infix text is a tree: a DAG with much sharing prints large; debug_print
// shows each shared node once.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "agnesi/expr.hpp"

namespace agnesi {

/// Infix text, e.g. "sin(x^2) + exp(-x)/3".
std::string to_string(const Expr& e);
/// LaTeX math (no surrounding $), e.g. "\sin\left(x^{2}\right) + \frac{e^{-x}}{3}".
std::string to_latex(const Expr& e);
/// A Graphviz digraph: one box per distinct node, edges from operands to users.
std::string to_dot(const std::vector<Expr>& roots);
inline std::string to_dot(const Expr& e) {
    return to_dot(std::vector<Expr>{e});
}

struct DebugOptions {
    bool types = false;  ///< show dtype and shape of every line
};
/// One line per shared node (used more than once) and one per root, each shared node named
/// once ($1, $2, ...) and referred to by that name. Linear in the DAG size:
///   $1 = x*x
///   sin($1) + exp($1)
std::string debug_print(const std::vector<Expr>& roots, DebugOptions opts = {});
inline std::string debug_print(const Expr& e, DebugOptions opts = {}) {
    return debug_print(std::vector<Expr>{e}, opts);
}

/// Writes to_string(e); also what test frameworks print for an Expr.
inline std::ostream& operator<<(std::ostream& os, const Expr& e) {
    return os << to_string(e);
}

/// A variable name as the text printer writes it (backquoted where needed).
std::string quote_name(const std::string& name);

}  // namespace agnesi
