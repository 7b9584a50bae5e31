// The reference evaluator: walks the DAG in post-order, computes each node's Tensor with the op
// table's scalar functions, and frees each intermediate after its last use.
#include "agnesi/evaluate.hpp"

#include <fmt/format.h>

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "agnesi/traverse.hpp"

namespace agnesi {

namespace {

using Strides = std::vector<std::int64_t>;

// float16 and bfloat16 compute in float32 on the host and are rounded back after each node.
DType host(DType t) {
    return (t == DType::Float16 || t == DType::BFloat16) ? DType::Float32 : t;
}

template <class T>
struct Tag {
    using type = T;
};

// Calls f(Tag<T>{}) with the C++ type of a host dtype.
template <class F>
decltype(auto) dispatch(DType t, F&& f) {
    switch (t) {
        case DType::Bool: return f(Tag<bool>{});
        case DType::Int32: return f(Tag<std::int32_t>{});
        case DType::Int64: return f(Tag<std::int64_t>{});
        case DType::Float32: return f(Tag<float>{});
        case DType::Float64: return f(Tag<double>{});
        default: break;
    }
    detail::unreachable("evaluate: a half-precision dtype reached a host kernel");
}

Tensor as(const Tensor& t, DType d) {
    return t.dtype() == d ? t : t.astype(d);
}

Strides contiguous_strides(const Shape& s) {
    Strides st(s.size());
    std::int64_t run = 1;
    for (std::size_t d = s.size(); d-- > 0;) st[d] = run, run *= s[d];
    return st;
}

std::int64_t product(const std::vector<std::int64_t>& v) {
    std::int64_t n = 1;
    for (auto x : v) n *= x;
    return n;
}

// Every offset sum(idx[d] * strides[d]) over the indices of `sizes`, in row-major order.
std::vector<std::int64_t> offsets(const std::vector<std::int64_t>& sizes, const Strides& strides) {
    std::vector<std::int64_t> out;
    std::int64_t n = product(sizes);
    if (n == 0) return out;
    out.reserve(static_cast<std::size_t>(n));
    std::vector<std::int64_t> idx(sizes.size(), 0);
    std::int64_t off = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        out.push_back(off);
        for (std::size_t d = sizes.size(); d-- > 0;) {
            off += strides[d];
            if (++idx[d] < sizes[d]) break;
            off -= strides[d] * sizes[d];
            idx[d] = 0;
        }
    }
    return out;
}

// ---- broadcasting elementwise loops -------------------------------------------------------------

// An output shape with N operands broadcast into it. Size-1 output axes are dropped and
// neighbouring axes with the same broadcast pattern merged, so the inner loop runs as long as it
// can: (2, 3, 4) + (3, 4) becomes (2, 12), two runs of 12; equal shapes become one run.
template <std::size_t N>
struct BroadcastPlan {
    std::vector<std::int64_t> sizes;
    std::vector<std::array<std::int64_t, N>> strides;  ///< 0 where an operand is broadcast
};

template <std::size_t N>
BroadcastPlan<N> plan_broadcast(const Shape& out, const std::array<const Shape*, N>& ins) {
    BroadcastPlan<N> p;
    std::vector<std::array<bool, N>> full;
    std::size_t r = out.size();
    for (std::size_t d = 0; d < r; ++d) {
        if (out[d] == 1) continue;
        std::array<bool, N> f;
        for (std::size_t k = 0; k < N; ++k) {
            const Shape& s = *ins[k];
            std::size_t lead = r - s.size();
            f[k] = d >= lead && s[d - lead] != 1;
        }
        if (!p.sizes.empty() && full.back() == f) {
            p.sizes.back() *= out[d];
        } else {
            p.sizes.push_back(out[d]);
            full.push_back(f);
        }
    }
    p.strides.resize(p.sizes.size());
    std::array<std::int64_t, N> run;
    run.fill(1);
    for (std::size_t d = p.sizes.size(); d-- > 0;)
        for (std::size_t k = 0; k < N; ++k) {
            p.strides[d][k] = full[d][k] ? run[k] : 0;
            if (full[d][k]) run[k] *= p.sizes[d];
        }
    return p;
}

// Calls f(out_offset, operand_offsets, inner_strides, count) for each run of the innermost axis;
// the output is contiguous.
template <std::size_t N, class F>
void for_each_run(const BroadcastPlan<N>& p, F&& f) {
    std::array<std::int64_t, N> off{};
    std::size_t r = p.sizes.size();
    if (r == 0) {
        f(0, off, off, 1);
        return;
    }
    std::int64_t inner = p.sizes[r - 1];
    std::int64_t outer = 1;
    for (std::size_t d = 0; d + 1 < r; ++d) outer *= p.sizes[d];
    if (inner == 0 || outer == 0) return;
    std::vector<std::int64_t> idx(r - 1, 0);
    std::int64_t o = 0;
    for (std::int64_t i = 0; i < outer; ++i, o += inner) {
        f(o, off, p.strides[r - 1], inner);
        for (std::size_t d = r - 1; d-- > 0;) {
            for (std::size_t k = 0; k < N; ++k) off[k] += p.strides[d][k];
            if (++idx[d] < p.sizes[d]) break;
            for (std::size_t k = 0; k < N; ++k) off[k] -= p.strides[d][k] * p.sizes[d];
            idx[d] = 0;
        }
    }
}

template <class T, class Fn>
void run_binary(T* o, const T* a, std::int64_t sa, const T* b, std::int64_t sb, std::int64_t n,
                Fn f) {
    if (sa && sb) {
        for (std::int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    } else if (sa) {
        T y = *b;
        for (std::int64_t i = 0; i < n; ++i) o[i] = f(a[i], y);
    } else if (sb) {
        T x = *a;
        for (std::int64_t i = 0; i < n; ++i) o[i] = f(x, b[i]);
    } else {
        std::fill(o, o + n, f(*a, *b));
    }
}

// ---- reductions ---------------------------------------------------------------------------------

// Where each output element's inputs lie: at bases[o] + blocks[j] + i for i < block. Trailing
// reduced axes are contiguous and make up `block`.
struct ReducePlan {
    Shape out_shape;
    std::vector<std::int64_t> bases;
    std::vector<std::int64_t> blocks;
    std::int64_t block = 1;
    std::int64_t count() const { return static_cast<std::int64_t>(blocks.size()) * block; }
};

ReducePlan plan_reduce(const Shape& in, const Ints& axes, bool keepdims) {
    std::size_t r = in.size();
    Strides st = contiguous_strides(in);
    std::vector<bool> reduced(r, false);
    for (auto a : axes) reduced[static_cast<std::size_t>(a)] = true;
    std::size_t tail = r;
    while (tail > 0 && reduced[tail - 1]) --tail;
    ReducePlan p;
    std::vector<std::int64_t> kept_sizes, kept_strides, red_sizes, red_strides;
    for (std::size_t d = 0; d < r; ++d) {
        if (!reduced[d]) {
            kept_sizes.push_back(in[d]);
            kept_strides.push_back(st[d]);
            p.out_shape.push_back(in[d]);
            continue;
        }
        if (keepdims) p.out_shape.push_back(1);
        if (d >= tail) {
            p.block *= in[d];
        } else {
            red_sizes.push_back(in[d]);
            red_strides.push_back(st[d]);
        }
    }
    p.bases = offsets(kept_sizes, kept_strides);
    p.blocks = offsets(red_sizes, red_strides);
    return p;
}

// Sums of float32 accumulate in double and of float64 in long double, rounded once; integer sums
// and products wrap (unsigned arithmetic, so overflow is defined).
template <class T>
using Acc =
    std::conditional_t<std::is_same_v<T, float>, double,
                       std::conditional_t<std::is_same_v<T, double>, long double, std::uint64_t>>;

template <class T>
void reduce_kernel(Op op, const T* x, T* out, const ReducePlan& p) {
    constexpr bool floating = std::is_floating_point_v<T>;
    std::int64_t count = p.count();
    auto each = [&](std::int64_t base, auto&& f) {
        for (std::int64_t b : p.blocks) {
            const T* q = x + base + b;
            for (std::int64_t j = 0; j < p.block; ++j) f(q[j]);
        }
    };
    for (std::size_t o = 0; o < p.bases.size(); ++o) {
        std::int64_t base = p.bases[o];
        switch (op) {
            case Op::Sum:
            case Op::Mean: {
                Acc<T> s = 0;
                each(base, [&](T v) { s += static_cast<Acc<T>>(v); });
                if constexpr (floating) {
                    if (op == Op::Mean)
                        s = count ? s / static_cast<Acc<T>>(count)
                                  : std::numeric_limits<Acc<T>>::quiet_NaN();
                }
                out[o] = static_cast<T>(s);
                break;
            }
            case Op::Prod: {
                Acc<T> s = 1;
                each(base, [&](T v) { s *= static_cast<Acc<T>>(v); });
                out[o] = static_cast<T>(s);
                break;
            }
            case Op::ReduceMax:
            case Op::ReduceMin: {
                if (count == 0)
                    throw ValueError(
                        fmt::format("evaluate: {} of an empty axis", op_info(op).name));
                bool is_max = op == Op::ReduceMax;
                bool nan = false;
                T m = x[base + p.blocks[0]];
                each(base, [&](T v) {
                    if constexpr (floating)
                        if (std::isnan(v)) nan = true;
                    if (is_max ? m < v : v < m) m = v;
                });
                if constexpr (floating)
                    if (nan) m = std::numeric_limits<T>::quiet_NaN();
                out[o] = m;
                break;
            }
            case Op::Logsumexp: {
                if constexpr (floating) {
                    T m = -std::numeric_limits<T>::infinity();
                    bool nan = false;
                    each(base, [&](T v) {
                        if (std::isnan(v))
                            nan = true;
                        else if (v > m)
                            m = v;
                    });
                    if (nan) {
                        out[o] = std::numeric_limits<T>::quiet_NaN();
                    } else if (std::isinf(m)) {
                        out[o] = m;  // all -inf (or empty): -inf; any +inf: +inf
                    } else {
                        Acc<T> s = 0;
                        each(base, [&](T v) { s += std::exp(v - m); });
                        out[o] = m + std::log(static_cast<T>(s));
                    }
                    break;
                }
                [[fallthrough]];
            }
            default: detail::unreachable("evaluate: reduction of a non-float logsumexp");
        }
    }
}

// Softmax and log-softmax along the middle axis of (outer, n, inner), shifted by the maximum so
// exp never overflows; a non-finite maximum is not subtracted (as in JAX).
template <class T>
void normalize_kernel(bool log, const T* x, T* y, std::int64_t outer, std::int64_t n,
                      std::int64_t inner) {
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < inner; ++i) {
            const T* p = x + o * n * inner + i;
            T* q = y + o * n * inner + i;
            T m = -std::numeric_limits<T>::infinity();
            for (std::int64_t k = 0; k < n; ++k)
                if (p[k * inner] > m) m = p[k * inner];
            T shift = std::isfinite(m) ? m : T(0);
            Acc<T> s = 0;
            for (std::int64_t k = 0; k < n; ++k) {
                T e = std::exp(p[k * inner] - shift);
                if (!log) q[k * inner] = e;
                s += e;
            }
            if (log) {
                T ls = std::log(static_cast<T>(s));
                for (std::int64_t k = 0; k < n; ++k) q[k * inner] = (p[k * inner] - shift) - ls;
            } else {
                auto d = static_cast<T>(s);
                for (std::int64_t k = 0; k < n; ++k) q[k * inner] /= d;
            }
        }
}

// ---- shape ops ----------------------------------------------------------------------------------

// Copies src[sum(idx[d] * strides[d])] for every index of `shape`, in row-major order, to dst.
template <class U>
void gather_typed(const U* src, const Strides& st, U* dst, const Shape& shape) {
    std::int64_t n = numel(shape);
    if (n == 0) return;
    std::size_t r = shape.size();
    if (r == 0) {
        *dst = *src;
        return;
    }
    std::int64_t inner = shape[r - 1], is = st[r - 1];
    std::vector<std::int64_t> idx(r - 1, 0);
    std::int64_t off = 0;
    for (std::int64_t o = 0; o < n / inner; ++o, dst += inner) {
        if (is == 1) {
            std::memcpy(dst, src + off, static_cast<std::size_t>(inner) * sizeof(U));
        } else {
            for (std::int64_t j = 0; j < inner; ++j) dst[j] = src[off + j * is];
        }
        for (std::size_t d = r - 1; d-- > 0;) {
            off += st[d];
            if (++idx[d] < shape[d]) break;
            off -= st[d] * shape[d];
            idx[d] = 0;
        }
    }
}

Tensor gather(const Tensor& x, std::int64_t offset, const Strides& st, const Shape& shape) {
    Tensor out(x.dtype(), shape);
    auto run = [&](auto tag) {
        using U = typename decltype(tag)::type;
        gather_typed(static_cast<const U*>(x.raw()) + offset, st, static_cast<U*>(out.raw()),
                     shape);
    };
    switch (dtype_size(x.dtype())) {
        case 1: run(Tag<std::uint8_t>{}); break;
        case 2: run(Tag<std::uint16_t>{}); break;
        case 4: run(Tag<std::uint32_t>{}); break;
        case 8: run(Tag<std::uint64_t>{}); break;
        default: detail::unreachable("evaluate: element size");
    }
    return out;
}

// ---- matmul -------------------------------------------------------------------------------------

template <class T>
void matmul_block(const T* a, const T* b, T* c, std::int64_t m, std::int64_t k, std::int64_t n) {
    if constexpr (std::is_floating_point_v<T>) {
        using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        Eigen::Map<const Mat> A(a, m, k), B(b, k, n);
        Eigen::Map<Mat> C(c, m, n);
        if (k == 0)
            C.setZero();
        else
            C.noalias() = A * B;
    } else {
        // Integers wrap like NumPy's; unsigned arithmetic keeps that defined.
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) {
                std::uint64_t s = 0;
                for (std::int64_t l = 0; l < k; ++l)
                    s += static_cast<std::uint64_t>(a[i * k + l]) *
                         static_cast<std::uint64_t>(b[l * n + j]);
                c[i * n + j] = static_cast<T>(s);
            }
    }
}

Tensor matmul_kernel(const Tensor& a0, const Tensor& b0, DType od) {
    Tensor a = as(a0, od), b = as(b0, od);
    Shape sa = a.shape(), sb = b.shape();
    bool va = sa.size() == 1, vb = sb.size() == 1;
    if (va) sa.insert(sa.begin(), 1);
    if (vb) sb.push_back(1);
    std::int64_t m = sa[sa.size() - 2], k = sa[sa.size() - 1], n = sb[sb.size() - 1];
    Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
    auto batch = broadcast_shapes(ba, bb);
    if (sb[sb.size() - 2] != k || !batch)
        throw ShapeError(fmt::format("evaluate: matmul of shapes {} and {}",
                                     shape_string(a.shape()), shape_string(b.shape())));
    Shape out_shape = *batch;
    if (!va) out_shape.push_back(m);
    if (!vb) out_shape.push_back(n);
    Tensor out(od, out_shape);

    std::size_t rb = batch->size();
    auto batch_strides = [&](const Shape& bs, std::int64_t mat) {
        Strides st(rb, 0);
        std::size_t lead = rb - bs.size();
        for (std::size_t d = bs.size(); d-- > 0;) {
            st[lead + d] = bs[d] == 1 ? 0 : mat;
            mat *= bs[d];
        }
        return st;
    };
    std::vector<std::int64_t> sizes(batch->begin(), batch->end());
    std::vector<std::int64_t> offa = offsets(sizes, batch_strides(ba, m * k));
    std::vector<std::int64_t> offb = offsets(sizes, batch_strides(bb, k * n));
    dispatch(od, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (std::is_same_v<T, bool>) {
            throw TypeError("evaluate: matmul of bool operands");
        } else {
            const T* pa = a.data<T>();
            const T* pb = b.data<T>();
            T* pc = out.data<T>();
            for (std::size_t i = 0; i < offa.size(); ++i)
                matmul_block(pa + offa[i], pb + offb[i], pc + static_cast<std::int64_t>(i) * m * n,
                             m, k, n);
        }
    });
    return out;
}

// ---- the evaluator ------------------------------------------------------------------------------

class Evaluator {
  public:
    explicit Evaluator(const Bindings& bindings) : bindings_(bindings) {}

    Tensor eval(const Node* n, const std::vector<const Tensor*>& operands) {
        std::vector<Tensor> xs;
        xs.reserve(operands.size());
        for (const Tensor* t : operands) xs.push_back(as(*t, host(t->dtype())));
        Tensor r = compute(n, xs, host(n->dtype()));
        check_shape(n, r.shape());
        return as(r, n->dtype());
    }

  private:
    Tensor compute(const Node* n, std::vector<Tensor>& xs, DType od) {
        switch (n->info().kind) {
            case OpKind::Leaf:
                if (n->op() == Op::Eye) return identity(n, od);
                return n->is_variable() ? variable(n) : constant(n, od);
            case OpKind::Elementwise:
                if (n->op() == Op::Cast) return as(xs[0], od);
                if (n->op() == Op::Where) return where(xs, od);
                return elementwise(n, xs, od);
            case OpKind::Reduction: return reduction(n, as(xs[0], od), od);
            case OpKind::AxisNormalize: return normalize(n, as(xs[0], od), od);
            case OpKind::Shape: return shape_op(n, xs, od);
            case OpKind::Matmul: return matmul_kernel(xs[0], xs[1], od);
        }
        detail::unreachable("evaluate: op kind");
    }

    Tensor variable(const Node* n) {
        auto it = bindings_.find(n->name());
        if (it == bindings_.end())
            throw ValueError(fmt::format("evaluate: no value for variable '{}'", n->name()));
        Tensor v = it->second;
        if (n->rank() == 0 && v.rank() == 0 && v.dtype() == DType::Float64) v = as(v, n->dtype());
        if (v.dtype() != n->dtype())
            throw TypeError(
                fmt::format("evaluate: variable '{}' has dtype {}, given a value of dtype {}",
                            n->name(), dtype_name(n->dtype()), dtype_name(v.dtype())));
        const Shape& decl = n->shape();
        bool ok = v.rank() == decl.size();
        std::string bound;  // the earlier binding a symbolic size disagrees with, if any
        for (std::size_t d = 0; ok && d < decl.size(); ++d) {
            if (decl[d] >= 0) {
                ok = decl[d] == v.shape()[d];
            } else if (auto s = sizes_.find(decl[d]); s != sizes_.end()) {
                ok = s->second == v.shape()[d];
                if (!ok) bound = fmt::format(" ({} is {})", dim_name(decl[d]), s->second);
            } else {
                sizes_.emplace(decl[d], v.shape()[d]);
            }
        }
        if (!ok)
            throw ShapeError(fmt::format("evaluate: variable '{}' has shape {}, given shape {}{}",
                                         n->name(), shape_string(decl), shape_string(v.shape()),
                                         bound));
        return v;
    }

    Tensor identity(const Node* n, DType od) {
        std::int64_t k = n->shape()[0];
        Tensor t(od, n->shape());
        dispatch(od, [&](auto tag) {
            using T = typename decltype(tag)::type;
            T* p = t.data<T>();
            for (std::int64_t i = 0; i < k * k; ++i) p[i] = static_cast<T>(i % (k + 1) == 0);
        });
        return t;
    }

    Tensor constant(const Node* n, DType od) {
        const Number& v = n->value();
        Tensor t(od, resolve(n->shape()));
        dispatch(od, [&](auto tag) {
            using T = typename decltype(tag)::type;
            T x;
            if constexpr (std::is_same_v<T, double>) {
                x = v.to_double();
            } else if constexpr (std::is_same_v<T, float>) {
                x = v.to_float();
            } else if constexpr (std::is_same_v<T, bool>) {
                x = v.kind() == Number::Kind::NaN || !v.is_zero();
            } else if (auto i = v.to_int64()) {
                x = static_cast<T>(*i);
            } else {
                x = Tensor(v.to_double()).astype(od).data<T>()[0];  // truncates, saturates
            }
            std::fill(t.data<T>(), t.data<T>() + t.size(), x);
        });
        return t;
    }

    Tensor elementwise(const Node* n, std::vector<Tensor>& xs, DType od) {
        const OpInfo& info = n->info();
        DType cd = host(compute_dtype(n));
        DType kd = is_float(cd) ? cd : DType::Int64;  // integer and bool ops compute in int64
        Shape shape = broadcast(info, xs);
        for (Tensor& x : xs) x = as(x, kd);
        Tensor out(kd, shape);
        auto missing = [&] {
            return InternalError(
                fmt::format("internal error: {} has no {} evaluation", info.name, dtype_name(kd)));
        };
        auto apply = [&](auto tag, auto unary, auto binary) {
            using T = typename decltype(tag)::type;
            T* o = out.data<T>();
            if (xs.size() == 1) {
                if (!unary) throw missing();
                const T* a = xs[0].data<T>();
                for (std::int64_t i = 0, m = out.size(); i < m; ++i) o[i] = unary(a[i]);
                return;
            }
            if (!binary) throw missing();
            const T* a = xs[0].data<T>();
            const T* b = xs[1].data<T>();
            auto plan = plan_broadcast<2>(shape, {&xs[0].shape(), &xs[1].shape()});
            for_each_run(plan,
                         [&](std::int64_t oo, const auto& off, const auto& st, std::int64_t cnt) {
                             run_binary(o + oo, a + off[0], st[0], b + off[1], st[1], cnt, binary);
                         });
        };
        switch (kd) {
            case DType::Float64: apply(Tag<double>{}, info.eval.u64, info.eval.b64); break;
            case DType::Float32: apply(Tag<float>{}, info.eval.u32, info.eval.b32); break;
            case DType::Int64: apply(Tag<std::int64_t>{}, info.eval.ui, info.eval.bi); break;
            default: detail::unreachable("evaluate: elementwise compute dtype");
        }
        return as(out, od);
    }

    Tensor where(std::vector<Tensor>& xs, DType od) {
        Shape shape = broadcast(op_info(Op::Where), xs);
        Tensor c = as(xs[0], DType::Bool), a = as(xs[1], od), b = as(xs[2], od);
        Tensor out(od, shape);
        auto plan = plan_broadcast<3>(shape, {&c.shape(), &a.shape(), &b.shape()});
        dispatch(od, [&](auto tag) {
            using T = typename decltype(tag)::type;
            const bool* pc = c.data<bool>();
            const T* pa = a.data<T>();
            const T* pb = b.data<T>();
            T* o = out.data<T>();
            for_each_run(plan,
                         [&](std::int64_t oo, const auto& off, const auto& st, std::int64_t cnt) {
                             for (std::int64_t i = 0; i < cnt; ++i)
                                 o[oo + i] = pc[off[0] + i * st[0]] ? pa[off[1] + i * st[1]]
                                                                    : pb[off[2] + i * st[2]];
                         });
        });
        return out;
    }

    Tensor reduction(const Node* n, const Tensor& x, DType od) {
        ReducePlan p = plan_reduce(x.shape(), n->ints(), n->keepdims());
        Tensor out(od, p.out_shape);
        dispatch(od, [&](auto tag) {
            using T = typename decltype(tag)::type;
            reduce_kernel<T>(n->op(), x.data<T>(), out.data<T>(), p);
        });
        return out;
    }

    Tensor normalize(const Node* n, const Tensor& x, DType od) {
        auto ax = static_cast<std::size_t>(n->ints()[0]);
        const Shape& s = x.shape();
        std::int64_t outer = 1, inner = 1;
        for (std::size_t d = 0; d < ax; ++d) outer *= s[d];
        for (std::size_t d = ax + 1; d < s.size(); ++d) inner *= s[d];
        Tensor out(od, s);
        bool log = n->op() == Op::LogSoftmax;
        if (od == DType::Float32)
            normalize_kernel(log, x.data<float>(), out.data<float>(), outer, s[ax], inner);
        else if (od == DType::Float64)
            normalize_kernel(log, x.data<double>(), out.data<double>(), outer, s[ax], inner);
        else
            detail::unreachable("evaluate: softmax of a non-float dtype");
        return out;
    }

    Tensor shape_op(const Node* n, std::vector<Tensor>& xs, DType od) {
        const Ints& ints = n->ints();
        const Tensor& x = xs[0];
        const Shape& s = x.shape();
        Strides st = contiguous_strides(s);
        switch (n->op()) {
            case Op::Reshape: return x.reshaped(resolve(n->shape(), x.size()));
            case Op::ExpandDims: {
                Shape out = s;
                out.insert(out.begin() + ints[0], 1);
                return x.reshaped(out);
            }
            case Op::Squeeze: {
                Shape out;
                for (std::size_t d = 0; d < s.size(); ++d)
                    if (std::find(ints.begin(), ints.end(), static_cast<std::int64_t>(d)) ==
                        ints.end())
                        out.push_back(s[d]);
                return x.reshaped(out);
            }
            case Op::Transpose: {
                Shape out;
                Strides ps;
                for (auto p : ints) {
                    out.push_back(s[static_cast<std::size_t>(p)]);
                    ps.push_back(st[static_cast<std::size_t>(p)]);
                }
                return gather(x, 0, ps, out);
            }
            case Op::BroadcastTo: {
                Shape out = resolve(n->shape());
                Strides bs(out.size(), 0);
                std::size_t lead = out.size() - s.size();
                for (std::size_t d = 0; d < s.size(); ++d) bs[lead + d] = s[d] == 1 ? 0 : st[d];
                return gather(x, 0, bs, out);
            }
            case Op::Slice: {
                auto ax = static_cast<std::size_t>(ints[0]);
                std::int64_t start = ints[1], stop = ints[2], step = ints[3];
                Shape out = s;
                out[ax] = (stop - start + step - 1) / step;
                Strides ss = st;
                ss[ax] *= step;
                return gather(x, out[ax] ? start * st[ax] : 0, ss, out);
            }
            case Op::Concat: return concat(xs, static_cast<std::size_t>(ints[0]), od);
            default: break;
        }
        detail::unreachable("evaluate: unknown shape op");
    }

    Tensor concat(std::vector<Tensor>& xs, std::size_t ax, DType od) {
        Shape shape = xs[0].shape();
        shape[ax] = 0;
        for (Tensor& x : xs) {
            x = as(x, od);
            shape[ax] += x.shape()[ax];
        }
        Tensor out(od, shape);
        std::int64_t outer = 1;
        for (std::size_t d = 0; d < ax; ++d) outer *= shape[d];
        std::size_t es = dtype_size(od);
        auto row = static_cast<std::size_t>(out.size() / std::max<std::int64_t>(outer, 1)) * es;
        char* dst = static_cast<char*>(out.raw());
        std::size_t at = 0;
        for (const Tensor& x : xs) {
            auto chunk = static_cast<std::size_t>(x.size() / std::max<std::int64_t>(outer, 1)) * es;
            const char* src = static_cast<const char*>(x.raw());
            for (std::int64_t o = 0; o < outer; ++o)
                std::memcpy(dst + static_cast<std::size_t>(o) * row + at,
                            src + static_cast<std::size_t>(o) * chunk, chunk);
            at += chunk;
        }
        return out;
    }

    Shape broadcast(const OpInfo& info, const std::vector<Tensor>& xs) {
        Shape shape = xs[0].shape();
        for (std::size_t i = 1; i < xs.size(); ++i) {
            auto b = broadcast_shapes(shape, xs[i].shape());
            if (!b)
                throw ShapeError(fmt::format("evaluate: {}: cannot broadcast shapes {} and {}",
                                             info.name, shape_string(shape),
                                             shape_string(xs[i].shape())));
            shape = *b;
        }
        return shape;
    }

    // A node's shape with its symbolic sizes replaced by their bound values; one unbound size
    // is inferred from `total` elements when given.
    Shape resolve(const Shape& s, std::int64_t total = -1) {
        Shape out = s;
        std::optional<std::size_t> unknown;
        std::int64_t known = 1;
        for (std::size_t d = 0; d < out.size(); ++d) {
            if (out[d] < 0) {
                auto it = sizes_.find(out[d]);
                if (it != sizes_.end()) {
                    out[d] = it->second;
                } else if (!unknown && total >= 0) {
                    unknown = d;
                    continue;
                } else {
                    throw ValueError(fmt::format(
                        "evaluate: symbolic size '{}' of shape {} is not bound by any variable",
                        dim_name(out[d]), shape_string(s)));
                }
            }
            known *= out[d];
        }
        if (unknown) {
            if (known == 0 || total % known != 0)
                throw ShapeError(fmt::format("evaluate: cannot fit {} elements into shape {}",
                                             total, shape_string(s)));
            out[*unknown] = total / known;
            sizes_.emplace(s[*unknown], out[*unknown]);
        }
        return out;
    }

    // Checks a computed shape against the node's, binding symbolic sizes seen for the first time.
    void check_shape(const Node* n, const Shape& got) {
        const Shape& want = n->shape();
        bool ok = want.size() == got.size();
        for (std::size_t d = 0; ok && d < want.size(); ++d) {
            if (want[d] >= 0)
                ok = want[d] == got[d];
            else
                ok = sizes_.try_emplace(want[d], got[d]).first->second == got[d];
        }
        AGNESI_ASSERT(ok) << "evaluate: " << n->info().name << " computed shape "
                          << shape_string(got) << ", node has " << shape_string(want);
    }

    const Bindings& bindings_;
    std::unordered_map<Dim, std::int64_t> sizes_;
};

}  // namespace

Tensor evaluate(const Expr& e, const Bindings& values) {
    return evaluate(std::vector<Expr>{e}, values)[0];
}

std::vector<Tensor> evaluate(const std::vector<Expr>& roots, const Bindings& values) {
    std::vector<const Node*> rs;
    for (const Expr& e : roots) {
        if (!e) throw ValueError("evaluate: a root is an empty Expr");
        rs.push_back(e.node());
    }
    std::vector<const Node*> order = post_order(rs);
    std::unordered_map<const Node*, std::size_t> index;
    index.reserve(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) index.emplace(order[i], i);

    // Operand positions per node, and how many uses each value has left (roots are never freed).
    std::vector<std::size_t> first(order.size() + 1, 0), operands, uses(order.size(), 0);
    for (std::size_t i = 0; i < order.size(); ++i) {
        for (const Node* o : order[i]->operands()) {
            std::size_t j = index.at(o);
            operands.push_back(j);
            ++uses[j];
        }
        first[i + 1] = operands.size();
    }
    for (const Node* r : rs) ++uses[index.at(r)];
    index.clear();

    std::vector<std::optional<Tensor>> vals(order.size());
    Evaluator ev(values);
    std::vector<const Tensor*> args;
    for (std::size_t i = 0; i < order.size(); ++i) {
        args.clear();
        for (std::size_t k = first[i]; k < first[i + 1]; ++k) args.push_back(&*vals[operands[k]]);
        vals[i] = ev.eval(order[i], args);
        for (std::size_t k = first[i]; k < first[i + 1]; ++k)
            if (--uses[operands[k]] == 0) vals[operands[k]].reset();
    }

    // A result may share its buffer with a binding (a variable, or a reshape of one): copy it,
    // so writing to the result never changes the caller's input.
    std::unordered_set<const void*> inputs;
    for (const auto& [name, t] : values) inputs.insert(t.raw());
    std::unordered_map<const Node*, std::size_t> pos;
    for (std::size_t i = 0; i < order.size(); ++i)
        if (vals[i]) pos.emplace(order[i], i);
    std::vector<Tensor> out;
    out.reserve(rs.size());
    for (const Node* r : rs) {
        const Tensor& v = *vals[pos.at(r)];
        out.push_back(inputs.count(v.raw()) ? v.clone() : v);
    }
    return out;
}

}  // namespace agnesi
