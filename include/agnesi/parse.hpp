// The parser: text to DAG.
//
// Grammar (lowest binding first):
//   expr    := compare
//   compare := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//   sum     := product (("+" | "-") product)*
//   product := unary (("*" | "/") unary)*
//   unary   := "-" unary | power
//   power   := atom (("^" | "**") unary)?          right-associative: 2^3^2 = 2^(3^2)
//   atom    := number | name | "(" expr ")" | name "(" args ")"
// Numbers are exact (0.1 is 1/10). Two literal rules keep printing and parsing inverse:
// "-" before a bare number makes a negative constant (but -2^2 is -(2^2)), and a bare integer
// divided by a bare integer is a rational constant (1/3). pi, e, inf, nan are constants.
// Undeclared names are float64 scalars. Functions are the op names of the table (sin, sum, amax,
// matmul, ...), plus pow, min, max and cross_entropy. Errors throw ParseError with the column.
#pragma once

#include <string_view>
#include <vector>

#include "agnesi/expr.hpp"

namespace agnesi {

struct ParseOptions {
    /// Declared variables (by name); other names become float64 scalars in `context`.
    std::vector<Expr> variables;
    Context* context = nullptr;  ///< default: the global context
};

Expr parse(std::string_view text, const ParseOptions& options = {});
/// Parses with these declared variables.
Expr parse(std::string_view text, const std::vector<Expr>& variables);

}  // namespace agnesi
