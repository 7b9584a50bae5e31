#include "agnesi/types.hpp"

#include <fmt/format.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "agnesi/error.hpp"

namespace agnesi {

std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::Bool: return "bool";
        case DType::Int32: return "int32";
        case DType::Int64: return "int64";
        case DType::Float32: return "float32";
        case DType::Float64: return "float64";
        case DType::Float16: return "float16";
        case DType::BFloat16: return "bfloat16";
    }
    detail::unreachable("dtype_name");
}

std::optional<DType> parse_dtype(std::string_view s) {
    static const std::unordered_map<std::string_view, DType> names = {
        {"bool", DType::Bool},       {"int32", DType::Int32},     {"i32", DType::Int32},
        {"int64", DType::Int64},     {"i64", DType::Int64},       {"float32", DType::Float32},
        {"f32", DType::Float32},     {"float64", DType::Float64}, {"f64", DType::Float64},
        {"float16", DType::Float16}, {"f16", DType::Float16},     {"bfloat16", DType::BFloat16},
        {"bf16", DType::BFloat16}};
    auto it = names.find(s);
    if (it == names.end()) return std::nullopt;
    return it->second;
}

std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::Bool: return 1;
        case DType::Int32: return 4;
        case DType::Int64: return 8;
        case DType::Float32: return 4;
        case DType::Float64: return 8;
        case DType::Float16: return 2;
        case DType::BFloat16: return 2;
    }
    detail::unreachable("dtype_size");
}

namespace {
struct SymbolTable {
    std::mutex mu;
    std::unordered_map<std::string, Dim> ids;
    std::vector<std::string> names;
};
SymbolTable& symbols() {
    static SymbolTable* t = new SymbolTable;  // never destroyed: dims outlive static teardown
    return *t;
}
}  // namespace

Dim sym_dim(std::string_view name) {
    auto& t = symbols();
    std::lock_guard lock(t.mu);
    auto [it, fresh] = t.ids.try_emplace(std::string(name), 0);
    if (fresh) {
        t.names.emplace_back(name);
        it->second = -static_cast<Dim>(t.names.size());
    }
    return it->second;
}

std::string dim_name(Dim d) {
    if (d >= 0) return std::to_string(d);
    auto& t = symbols();
    std::lock_guard lock(t.mu);
    auto i = static_cast<std::size_t>(-d - 1);
    AGNESI_ASSERT(i < t.names.size()) << "unknown symbolic dimension " << d;
    return t.names[i];
}

std::string shape_string(const Shape& s) {
    std::string out = "(";
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += dim_name(s[i]);
    }
    if (s.size() == 1) out += ",";
    return out + ")";
}

bool is_static(const Shape& s) {
    for (Dim d : s)
        if (d < 0) return false;
    return true;
}

std::int64_t numel(const Shape& s) {
    std::int64_t n = 1;
    for (Dim d : s) {
        AGNESI_ASSERT(d >= 0) << "numel of symbolic shape " << shape_string(s);
        n *= d;
    }
    return n;
}

std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
    std::size_t r = std::max(a.size(), b.size());
    Shape out(r);
    for (std::size_t i = 0; i < r; ++i) {
        Dim da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        Dim db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        if (da == db || db == 1)
            out[i] = da;
        else if (da == 1)
            out[i] = db;
        else
            return std::nullopt;
    }
    return out;
}

}  // namespace agnesi
