// The scalar expression emitter shared by the generated-code backends (C++ for the CPU, CUDA C++
// for NVRTC): one C statement per Instr of a group, so the numerics the CPU tests check are the
// ones the GPU runs. Each target has its own prelude of the helpers the statements call.
//
// Values are named v<i> after their instr index. Every statement converts its operands to the
// instr's compute dtype first and its result to the instr's dtype, with the conversions of
// Tensor::astype (to bool: nonzero; float to integer: truncate, saturate, NaN gives 0). Integer
// and boolean arithmetic is done in int64, as the group evaluator does, so both agree bit for bit
// on integers. Constants are printed exactly in their dtype.
//
// This module knows nothing about loops, memory or launches; a code generator emits the loads and
// stores around the statements.
#pragma once

#include <string>

#include "jit/schedule.hpp"

namespace agnesi::jit {

/// The C type holding a dtype: "double", "float", "int64_t", "int32_t", "bool". Throws TypeError
/// for dtypes generated code does not compute in (float16, bfloat16).
std::string c_type(DType t);

/// The C type values of compute dtype `t` are computed in: integers and bool widen to int64_t.
std::string compute_type(DType t);

/// `expr` (a C expression of dtype `from`) converted to dtype `to` like Tensor::astype.
std::string convert_expr(const std::string& expr, DType from, DType to);

/// The exact C literal of `v` in dtype `t`: "0x1.8p+1" style hex for floats (exact, no
/// decimal rounding), helper calls for infinities and NaN, "(int64_t)5" for integers.
std::string constant_literal(const Number& v, DType t);

/// The statement defining value v<i> of group `g` for a Const or Apply instr, e.g.
/// "const float v3 = agnesi_sigmoid(v1);". Loads, reductions and normalizations are the code
/// generator's; asking for one throws InternalError.
std::string emit_instr(const Group& g, int i);

/// Whether instr i of `g` is a Const that no emitted statement reads (the exponent of x^2 or x^3,
/// which are emitted as products): the code generators leave it out.
bool unread_const(const Group& g, int i);

/// The CUDA helper functions the statements call (agnesi_sigmoid, agnesi_min, agnesi_to_i64, ...)
/// as `__device__ __forceinline__` source. The CPU generator's helpers, written to vectorize,
/// are in jit/cpu/prelude.hpp; both implement the op table's scalar semantics.
std::string cuda_scalar_prelude();

}  // namespace agnesi::jit
