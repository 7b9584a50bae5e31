// C++ source for the native CPU tier: one translation unit per Function, one extern "C" entry
// point per fusion group, called with the arguments of jit/abi.h.
//
// The source is small on purpose (a prelude over <math.h> and <stdint.h>, no Eigen): a whole
// training step compiles in one compiler run well under a second. Loops are chosen at run time
// from the strides: a flat 1-D loop when every access is contiguous or a broadcast scalar, a
// row-wise strided loop otherwise; OpenMP splits large domains across threads, and the inner
// loops are `omp simd` so that GCC calls libmvec's vector exp, log, tanh, ... (the prelude
// declares them `simd`, which keeps full accuracy: no -ffast-math).
//
// User names (variables, the function's name) reach the source only inside comments and
// symbols, with every character outside [A-Za-z0-9_] replaced by '_'.
#pragma once

#include <string>

#include "jit/schedule.hpp"

namespace agnesi::jit::cpu {

/// The complete C++ source computing every group of `p`; `name` only labels it.
std::string generate_source(const Program& p, const std::string& name);

/// The symbol of group `group` in the source generated for a function called `name`:
/// "agnesi_<name>_<group>" with `name` reduced to [A-Za-z0-9_].
std::string group_symbol(const std::string& name, int group);

/// `s` with every character outside [A-Za-z0-9_] replaced by '_' (safe in comments and
/// identifiers), cut to `max_len` characters.
std::string sanitize(const std::string& s, std::size_t max_len = 64);

}  // namespace agnesi::jit::cpu
