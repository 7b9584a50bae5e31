// Dtypes and shapes.
//
// Dtypes: bool, int32, int64, float32, float64 (float16 and bfloat16 exist for the GPU and are
// evaluated in float32 on the host). Shapes are row-major lists of dimensions. A dimension is a
// non-negative size, or a symbolic size (a name such as "n") bound when a compiled function is
// called; symbolic sizes are kept as negative numbers, one per distinct name, process-wide.
//
// Broadcasting follows NumPy: shapes are aligned on the right, and a size 1 stretches to the
// other size. A symbolic size only broadcasts with 1 or with itself.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace agnesi {

enum class DType : std::uint8_t { Bool, Int32, Int64, Float32, Float64, Float16, BFloat16 };

inline constexpr DType boolean = DType::Bool;
inline constexpr DType i32 = DType::Int32;
inline constexpr DType i64 = DType::Int64;
inline constexpr DType f16 = DType::Float16;
inline constexpr DType bf16 = DType::BFloat16;
inline constexpr DType f32 = DType::Float32;
inline constexpr DType f64 = DType::Float64;

/// "float32", "int64", ...
std::string_view dtype_name(DType t);
/// Parses "float32" / "f32" and the like; nullopt if unknown.
std::optional<DType> parse_dtype(std::string_view s);
/// Bytes per element on the host.
std::size_t dtype_size(DType t);
constexpr bool is_float(DType t) {
    return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 ||
           t == DType::BFloat16;
}
constexpr bool is_integer(DType t) {
    return t == DType::Int32 || t == DType::Int64;
}

/// A dimension: >= 0 is a size, < 0 a symbolic size (see sym_dim).
using Dim = std::int64_t;
using Shape = boost::container::small_vector<Dim, 4>;

/// The symbolic dimension named `name` (the same value for the same name, process-wide).
Dim sym_dim(std::string_view name);
/// Name of a symbolic dimension, or its decimal size.
std::string dim_name(Dim d);
constexpr bool is_symbolic(Dim d) {
    return d < 0;
}

/// "(3, 4)", "()" for a scalar, "(n, 4)" with a symbolic size.
std::string shape_string(const Shape& s);
/// Number of elements; requires a static shape.
std::int64_t numel(const Shape& s);
bool is_static(const Shape& s);

/// The NumPy broadcast of two shapes, or nullopt if they do not broadcast.
std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace agnesi
