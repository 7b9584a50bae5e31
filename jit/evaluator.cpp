// The group evaluator: runs a schedule without a compiler. Each group runs row by row over its
// domain (a row is a run of the last axis, cut into tiles of kTile elements); every instr of the
// group fills one tile of values, so intermediates live in cache-sized tiles, never in memory.
// Scalars are computed with the op table's functions, in the same dtypes as the reference
// evaluator, so the two agree closely.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "agnesi/detail/convert.hpp"
#include "agnesi/error.hpp"
#include "jit/backend.hpp"

namespace agnesi::jit {
namespace {

constexpr std::int64_t kTile = 256;

// The storage class of a value in a tile: float64, float32 or integer (bool and int32 widened).
enum class Cls : std::uint8_t { F64, F32, I64 };

Cls cls_of(DType t) {
    switch (t) {
        case DType::Float64: return Cls::F64;
        case DType::Float32: return Cls::F32;
        case DType::Bool:
        case DType::Int32:
        case DType::Int64: return Cls::I64;
        default:
            throw TypeError(fmt::format("the CPU backends do not compute in {}", dtype_name(t)));
    }
}

struct Tile {
    Cls cls = Cls::F64;
    double f64[kTile];
    float f32[kTile];
    std::int64_t i64[kTile];
};

// Converts like Tensor::astype.
template <class D, class S>
D convert(S v) {
    return detail::convert_arithmetic<D>(v);
}

// Reads tile `t` as values of type D (converted) into out.
template <class D>
void read_as(const Tile& t, D* out, std::int64_t n) {
    switch (t.cls) {
        case Cls::F64:
            for (std::int64_t j = 0; j < n; ++j) out[j] = convert<D>(t.f64[j]);
            break;
        case Cls::F32:
            for (std::int64_t j = 0; j < n; ++j) out[j] = convert<D>(t.f32[j]);
            break;
        case Cls::I64:
            for (std::int64_t j = 0; j < n; ++j) out[j] = convert<D>(t.i64[j]);
            break;
    }
}

// Stores a tile into a tile of dtype `dt` (the instr's result), converting.
void narrow(Tile& t, DType dt, std::int64_t n) {
    Cls c = cls_of(dt);
    if (dt == DType::Bool) {
        std::int64_t tmp[kTile];
        for (std::int64_t j = 0; j < n; ++j) {
            bool b = t.cls == Cls::F64 ? t.f64[j] != 0
                                       : (t.cls == Cls::F32 ? t.f32[j] != 0 : t.i64[j] != 0);
            tmp[j] = b;
        }
        std::memcpy(t.i64, tmp, static_cast<std::size_t>(n) * sizeof(std::int64_t));
        t.cls = Cls::I64;
        return;
    }
    if (dt == DType::Int32) {
        std::int32_t tmp[kTile];
        read_as<std::int32_t>(t, tmp, n);
        for (std::int64_t j = 0; j < n; ++j) t.i64[j] = tmp[j];
        t.cls = Cls::I64;
        return;
    }
    if (c == t.cls) return;
    switch (c) {
        case Cls::F64: read_as<double>(t, t.f64, n); break;
        case Cls::F32: read_as<float>(t, t.f32, n); break;
        case Cls::I64: read_as<std::int64_t>(t, t.i64, n); break;
    }
    t.cls = c;
}

template <class T>
void load_typed(const T* p, std::int64_t stride, Tile& t, std::int64_t n) {
    if constexpr (std::is_same_v<T, double>) {
        t.cls = Cls::F64;
        for (std::int64_t j = 0; j < n; ++j) t.f64[j] = p[j * stride];
    } else if constexpr (std::is_same_v<T, float>) {
        t.cls = Cls::F32;
        for (std::int64_t j = 0; j < n; ++j) t.f32[j] = p[j * stride];
    } else {
        t.cls = Cls::I64;
        for (std::int64_t j = 0; j < n; ++j) t.i64[j] = static_cast<std::int64_t>(p[j * stride]);
    }
}

void load(DType dt, const void* p, std::int64_t stride, Tile& t, std::int64_t n) {
    switch (dt) {
        case DType::Float64: load_typed(static_cast<const double*>(p), stride, t, n); break;
        case DType::Float32: load_typed(static_cast<const float*>(p), stride, t, n); break;
        case DType::Int64: load_typed(static_cast<const std::int64_t*>(p), stride, t, n); break;
        case DType::Int32: load_typed(static_cast<const std::int32_t*>(p), stride, t, n); break;
        case DType::Bool: load_typed(static_cast<const bool*>(p), stride, t, n); break;
        default: cls_of(dt);
    }
}

template <class T>
void store_typed(const Tile& t, T* p, std::int64_t stride, std::int64_t n) {
    T tmp[kTile];
    read_as<T>(t, tmp, n);
    for (std::int64_t j = 0; j < n; ++j) p[j * stride] = tmp[j];
}

void store(DType dt, const Tile& t, void* p, std::int64_t stride, std::int64_t n) {
    switch (dt) {
        case DType::Float64: store_typed(t, static_cast<double*>(p), stride, n); break;
        case DType::Float32: store_typed(t, static_cast<float*>(p), stride, n); break;
        case DType::Int64: store_typed(t, static_cast<std::int64_t*>(p), stride, n); break;
        case DType::Int32: store_typed(t, static_cast<std::int32_t*>(p), stride, n); break;
        case DType::Bool: store_typed(t, static_cast<bool*>(p), stride, n); break;
        default: cls_of(dt);
    }
}

void fill_const(const Instr& in, Tile& t, std::int64_t n) {
    double v = in.value.to_double();
    t.cls = cls_of(in.dtype);
    switch (t.cls) {
        case Cls::F64: std::fill(t.f64, t.f64 + n, v); break;
        case Cls::F32: std::fill(t.f32, t.f32 + n, static_cast<float>(v)); break;
        case Cls::I64: {
            std::int64_t iv = in.dtype == DType::Bool ? (v != 0) : convert<std::int64_t>(v);
            std::fill(t.i64, t.i64 + n, iv);
            break;
        }
    }
}

class Evaluator final : public Executor {
  public:
    explicit Evaluator(const Program&) {}

    std::string name() const override { return "evaluator"; }

    void run_group(const Program& p, std::size_t gi, const agnesi_group_args& a) override {
        const Group& g = p.groups[gi];
        group_ = &g;
        args_ = &a;
        rank_ = static_cast<std::size_t>(a.rank);
        tiles_.resize(g.instrs.size());
        switch (g.kind) {
            case GroupKind::Pointwise:
            case GroupKind::Matmul:
                if (g.outputs.empty()) return;
                for_rows(a.dims, [&](const std::int64_t* idx, std::int64_t start, std::int64_t n) {
                    run(0, static_cast<int>(g.instrs.size()), idx, start, n);
                    write_outputs(idx, start, n);
                });
                return;
            case GroupKind::Reduce: return reduce(false);
            case GroupKind::RowReduce: return reduce(true);
            case GroupKind::RowNormalize: return normalize();
        }
    }

  private:
    // Calls f(outer index, start, count) for tiles of each row of `dims`.
    template <class F>
    void for_rows(const std::int64_t* dims, F&& f) {
        std::int64_t total = 1;
        for (std::size_t d = 0; d < rank_; ++d) total *= dims[d];
        if (total == 0) return;
        std::int64_t inner = rank_ ? dims[rank_ - 1] : 1;
        std::vector<std::int64_t> idx(rank_ ? rank_ : 1, 0);
        for (std::int64_t row = 0; row < total / inner; ++row) {
            for (std::int64_t s = 0; s < inner; s += kTile)
                f(idx.data(), s, std::min(kTile, inner - s));
            for (std::size_t d = rank_ ? rank_ - 1 : 0; d-- > 0;) {
                if (++idx[d] < dims[d]) break;
                idx[d] = 0;
            }
        }
    }

    const std::int64_t* strides_of(std::size_t slot) const { return args_->strides + slot * rank_; }

    // The address of element (idx[0..r-1), start) of argument `slot`, and its inner stride.
    const char* address(std::size_t slot, DType dt, const std::int64_t* idx, std::int64_t start,
                        std::int64_t* inner) const {
        const std::int64_t* st = strides_of(slot);
        std::int64_t off = 0;
        for (std::size_t d = 0; d + 1 < rank_; ++d) off += idx[d] * st[d];
        *inner = rank_ ? st[rank_ - 1] : 0;
        off += start * *inner;
        return static_cast<const char*>(args_->ptrs[slot]) +
               off * static_cast<std::int64_t>(dtype_size(dt));
    }

    void run(int lo, int hi, const std::int64_t* idx, std::int64_t start, std::int64_t n) {
        const Group& g = *group_;
        for (int i = lo; i < hi; ++i) {
            const Instr& in = g.instrs[static_cast<std::size_t>(i)];
            Tile& t = tiles_[static_cast<std::size_t>(i)];
            switch (in.kind) {
                case InstrKind::Load: {
                    std::int64_t inner = 0;
                    const char* ptr =
                        address(static_cast<std::size_t>(in.input), in.dtype, idx, start, &inner);
                    load(in.dtype, ptr, inner, t, n);
                    break;
                }
                case InstrKind::Const: fill_const(in, t, n); break;
                case InstrKind::Apply: apply_op(in, t, n); break;
                case InstrKind::Reduce:
                case InstrKind::Normalize: break;  // filled by the caller
            }
        }
    }

    void apply_op(const Instr& in, Tile& out, std::int64_t n) {
        auto arg = [&](int k) -> Tile& { return tiles_[static_cast<std::size_t>(in.args[k])]; };
        if (in.op == Op::Where) {
            Tile c = arg(0), x = arg(1), y = arg(2);
            narrow(c, DType::Bool, n);
            narrow(x, in.dtype, n);
            narrow(y, in.dtype, n);
            out.cls = x.cls;
            for (std::int64_t j = 0; j < n; ++j) {
                bool b = c.i64[j] != 0;
                out.f64[j] = b ? x.f64[j] : y.f64[j];
                out.f32[j] = b ? x.f32[j] : y.f32[j];
                out.i64[j] = b ? x.i64[j] : y.i64[j];
            }
            return;
        }
        if (in.op == Op::Cast) {
            out = arg(0);
            narrow(out, in.dtype, n);
            return;
        }
        const OpInfo& info = op_info(in.op);
        Cls kc = is_float(in.compute) ? cls_of(in.compute) : Cls::I64;
        Tile x = arg(0);
        Tile y;
        if (in.nargs > 1) y = arg(1);
        auto missing = [&] {
            return InternalError(fmt::format("evaluator: {} has no {} scalar function", info.name,
                                             dtype_name(in.compute)));
        };
        out.cls = kc;
        switch (kc) {
            case Cls::F64:
                read_as<double>(x, x.f64, n);
                if (in.nargs == 1) {
                    if (!info.eval.u64) throw missing();
                    for (std::int64_t j = 0; j < n; ++j) out.f64[j] = info.eval.u64(x.f64[j]);
                } else {
                    if (!info.eval.b64) throw missing();
                    read_as<double>(y, y.f64, n);
                    for (std::int64_t j = 0; j < n; ++j)
                        out.f64[j] = info.eval.b64(x.f64[j], y.f64[j]);
                }
                break;
            case Cls::F32:
                read_as<float>(x, x.f32, n);
                if (in.nargs == 1) {
                    if (!info.eval.u32) throw missing();
                    for (std::int64_t j = 0; j < n; ++j) out.f32[j] = info.eval.u32(x.f32[j]);
                } else {
                    if (!info.eval.b32) throw missing();
                    read_as<float>(y, y.f32, n);
                    for (std::int64_t j = 0; j < n; ++j)
                        out.f32[j] = info.eval.b32(x.f32[j], y.f32[j]);
                }
                break;
            case Cls::I64:
                read_as<std::int64_t>(x, x.i64, n);
                if (in.nargs == 1) {
                    if (!info.eval.ui) throw missing();
                    for (std::int64_t j = 0; j < n; ++j) out.i64[j] = info.eval.ui(x.i64[j]);
                } else {
                    if (!info.eval.bi) throw missing();
                    read_as<std::int64_t>(y, y.i64, n);
                    for (std::int64_t j = 0; j < n; ++j)
                        out.i64[j] = info.eval.bi(x.i64[j], y.i64[j]);
                }
                break;
        }
        narrow(out, in.dtype, n);
    }

    void write_outputs(const std::int64_t* idx, std::int64_t start, std::int64_t n) {
        const Group& g = *group_;
        for (std::size_t k = 0; k < g.outputs.size(); ++k) {
            const auto& o = g.outputs[k];
            const Instr& in = g.instrs[static_cast<std::size_t>(o.instr)];
            std::size_t slot = static_cast<std::size_t>(args_->num_inputs) + k;
            std::int64_t inner = 0;
            char* ptr = const_cast<char*>(address(slot, in.dtype, idx, start, &inner));
            store(in.dtype, tiles_[static_cast<std::size_t>(o.instr)], ptr, inner, n);
        }
    }

    // The reduced values of one reduction, one per epilogue index, in the Reduce instr's dtype
    // (floats held as double, rounded once to the dtype when a tile reads them).
    struct Reduced {
        std::vector<double> f;
        std::vector<std::int64_t> i;
    };

    // Sets the tile of Reduce instr `at` to n reduced values from offset o by `step`.
    void fill_reduced(int at, const Reduced& r, std::int64_t o, std::int64_t step, std::int64_t n) {
        const Instr& red = group_->instrs[static_cast<std::size_t>(at)];
        Tile& t = tiles_[static_cast<std::size_t>(at)];
        if (is_float(red.dtype)) {
            t.cls = Cls::F64;
            for (std::int64_t j = 0; j < n; ++j)
                t.f64[j] = r.f[static_cast<std::size_t>(o + j * step)];
        } else {
            t.cls = Cls::I64;
            for (std::int64_t j = 0; j < n; ++j)
                t.i64[j] = r.i[static_cast<std::size_t>(o + j * step)];
        }
        narrow(t, red.dtype, n);
    }

    // Reduce: the prologue over the domain is combined into one accumulator per epilogue index
    // (long double for float64 and double for float32, as the reference evaluator does), then the
    // epilogue runs over the epilogue domain. A row reduce (`row`) reduces the last axis in one
    // pass per Reduce instr, each pass reading the rows' values reduced before, and runs its
    // epilogue over the whole domain, each row reading its row's values.
    void reduce(bool row) {
        const Group& g = *group_;
        const std::int64_t* dims = args_->dims;
        std::vector<std::int64_t> row_dims(dims, dims + rank_);
        if (row && rank_) row_dims[rank_ - 1] = 1;
        const std::int64_t* edims = row ? row_dims.data() : args_->edims;
        std::int64_t eout = 1, count = 1;
        for (std::size_t d = 0; d < rank_; ++d) {
            eout *= edims[d];
            count *= dims[d] / std::max<std::int64_t>(edims[d], 1);
        }
        if (dims_empty(dims)) count = 0;
        // Accumulator strides over the domain: contiguous over edims, 0 on the reduced axes.
        std::vector<std::int64_t> ast(rank_, 0);
        std::int64_t acc = 1;
        for (std::size_t d = rank_; d-- > 0;) {
            ast[d] = edims[d] == 1 && dims[d] != 1 ? 0 : acc;
            acc *= edims[d];
        }
        auto acc_index = [&](const std::int64_t* idx, std::int64_t j) {
            std::int64_t o = 0;
            for (std::size_t d = 0; d + 1 < rank_; ++d) o += idx[d] * ast[d];
            return o + (rank_ ? j * ast[rank_ - 1] : 0);
        };
        std::vector<int> reds = row ? g.passes() : std::vector<int>{g.reduce_at};
        std::vector<Reduced> values;
        for (std::size_t k = 0; k < reds.size(); ++k) {
            const int lo = row ? g.pass_begin(k) : 0;
            // The values this pass reduces, at n points of a row.
            auto prologue = [&](const std::int64_t* idx, std::int64_t start, std::int64_t n) {
                for (std::size_t j = 0; j < k; ++j)
                    fill_reduced(reds[j], values[j], acc_index(idx, 0), 0, n);
                run(lo, reds[k], idx, start, n);
            };
            values.push_back(accumulate(g.instrs[static_cast<std::size_t>(reds[k])], eout, count,
                                        prologue, acc_index));
        }
        // Epilogue over edims: the Reduce instrs read the reduced values.
        std::vector<std::int64_t> est(rank_);
        std::int64_t e = 1;
        for (std::size_t d = rank_; d-- > 0;) {
            est[d] = e;
            e *= edims[d];
        }
        for_rows(row ? dims : edims,
                 [&](const std::int64_t* idx, std::int64_t start, std::int64_t n) {
                     std::int64_t o = 0;
                     for (std::size_t d = 0; d + 1 < rank_; ++d) o += idx[d] * est[d];
                     const std::int64_t step = row ? 0 : 1;  // a row's value all along it
                     o += start * step;
                     for (std::size_t k = 0; k < reds.size(); ++k)
                         fill_reduced(reds[k], values[k], o, step, n);
                     run(g.reduce_at + 1, static_cast<int>(g.instrs.size()), idx, start, n);
                     write_outputs(idx, start, n);
                 });
    }

    // One reduction `red` of the values `prologue` computes, into eout accumulators (acc_index
    // maps a point of the domain to its own).
    template <class Prologue, class AccIndex>
    Reduced accumulate(const Instr& red, std::int64_t eout, std::int64_t count,
                       const Prologue& prologue, const AccIndex& acc_index) {
        int val = red.args[0];
        const std::int64_t* dims = args_->dims;
        bool floating = is_float(red.dtype);
        Op op = red.op;
        std::vector<long double> sum(static_cast<std::size_t>(eout), 0.0L);
        std::vector<long double> mx(static_cast<std::size_t>(eout),
                                    -std::numeric_limits<long double>::infinity());
        std::vector<std::uint64_t> isum(static_cast<std::size_t>(eout), op == Op::Prod ? 1u : 0u);
        std::vector<std::int64_t> imx(static_cast<std::size_t>(eout), 0);
        std::vector<char> seen(static_cast<std::size_t>(eout), 0), nan(seen);
        bool is_max = op == Op::ReduceMax || op == Op::Logsumexp;
        bool minmax = op == Op::ReduceMax || op == Op::ReduceMin;
        Cls c = floating ? Cls::F64 : Cls::I64;
        // Pass 1: sums, products, max/min (and the max for logsumexp).
        for_rows(dims, [&](const std::int64_t* idx, std::int64_t start, std::int64_t n) {
            prologue(idx, start, n);
            Tile t = tiles_[static_cast<std::size_t>(val)];
            if (c == Cls::F64) {
                bool f32 = red.dtype == DType::Float32;
                if (f32) narrow(t, DType::Float32, n);
                read_as<double>(t, t.f64, n);
                for (std::int64_t j = 0; j < n; ++j) {
                    auto o = static_cast<std::size_t>(acc_index(idx, start + j));
                    long double v = t.f64[j];
                    if (minmax || op == Op::Logsumexp) {
                        if (std::isnan(v)) nan[o] = 1;
                        bool better = !seen[o] || (is_max ? mx[o] < v : v < mx[o]);
                        if (op == Op::Logsumexp) better = !std::isnan(v) && v > mx[o];
                        if (better) mx[o] = v;
                        seen[o] = 1;
                    } else if (op == Op::Prod) {
                        if (!seen[o]) sum[o] = 1;
                        seen[o] = 1;
                        sum[o] *= f32 ? static_cast<long double>(static_cast<double>(v)) : v;
                    } else {
                        sum[o] += v;
                    }
                }
            } else {
                read_as<std::int64_t>(t, t.i64, n);
                for (std::int64_t j = 0; j < n; ++j) {
                    auto o = static_cast<std::size_t>(acc_index(idx, start + j));
                    std::int64_t v = t.i64[j];
                    if (minmax) {
                        if (!seen[o] || (is_max ? imx[o] < v : v < imx[o])) imx[o] = v;
                        seen[o] = 1;
                    } else if (op == Op::Prod) {
                        isum[o] *= static_cast<std::uint64_t>(v);
                    } else {
                        isum[o] += static_cast<std::uint64_t>(v);
                    }
                }
            }
        });
        if (minmax && count == 0 && eout > 0)
            throw ValueError(fmt::format("{} of an empty axis", op_info(op).name));
        // Pass 2 (logsumexp): the sum of exp(x - max) where the max is finite.
        if (op == Op::Logsumexp) {
            for_rows(dims, [&](const std::int64_t* idx, std::int64_t start, std::int64_t n) {
                prologue(idx, start, n);
                Tile t = tiles_[static_cast<std::size_t>(val)];
                narrow(t, red.dtype, n);
                for (std::int64_t j = 0; j < n; ++j) {
                    auto o = static_cast<std::size_t>(acc_index(idx, start + j));
                    if (nan[o] || std::isinf(mx[o])) continue;
                    if (red.dtype == DType::Float32)
                        sum[o] +=
                            static_cast<double>(std::exp(t.f32[j] - static_cast<float>(mx[o])));
                    else
                        sum[o] += std::exp(t.f64[j] - static_cast<double>(mx[o]));
                }
            });
        }
        // The reduced values, in the Reduce instr's dtype.
        Reduced r;
        r.f.resize(static_cast<std::size_t>(eout));
        r.i.resize(static_cast<std::size_t>(eout));
        for (std::size_t o = 0; o < static_cast<std::size_t>(eout); ++o) {
            if (!floating) {
                r.i[o] = minmax ? imx[o] : static_cast<std::int64_t>(isum[o]);
                continue;
            }
            bool f32 = red.dtype == DType::Float32;
            double v = 0;
            switch (op) {
                case Op::Sum: v = static_cast<double>(sum[o]); break;
                case Op::Prod: v = static_cast<double>(sum[o]); break;
                case Op::Mean:
                    v = count ? static_cast<double>(sum[o] / static_cast<long double>(count))
                              : std::numeric_limits<double>::quiet_NaN();
                    break;
                case Op::ReduceMax:
                case Op::ReduceMin:
                    v = nan[o] ? std::numeric_limits<double>::quiet_NaN()
                               : static_cast<double>(mx[o]);
                    break;
                case Op::Logsumexp:
                    if (nan[o])
                        v = std::numeric_limits<double>::quiet_NaN();
                    else if (std::isinf(mx[o]))
                        v = static_cast<double>(mx[o]);
                    else if (f32)
                        v = static_cast<float>(mx[o]) +
                            std::log(static_cast<float>(static_cast<double>(sum[o])));
                    else
                        v = static_cast<double>(mx[o]) + std::log(static_cast<double>(sum[o]));
                    break;
                default: throw InternalError("evaluator: unknown reduction");
            }
            r.f[o] = v;  // rounded once to the dtype when the epilogue reads it
        }
        return r;
    }

    bool dims_empty(const std::int64_t* dims) const {
        for (std::size_t d = 0; d < rank_; ++d)
            if (dims[d] == 0) return true;
        return false;
    }

    // RowNormalize: per row, the prologue into a row buffer, its max and sum of exp, then the
    // normalized values and the epilogue.
    void normalize() {
        const Group& g = *group_;
        const Instr& nz = g.instrs[static_cast<std::size_t>(g.reduce_at)];
        bool f32 = nz.dtype == DType::Float32;
        bool log = nz.op == Op::LogSoftmax;
        std::int64_t inner = rank_ ? args_->dims[rank_ - 1] : 1;
        std::vector<double> row(static_cast<std::size_t>(inner));
        std::int64_t total = 1;
        for (std::size_t d = 0; d < rank_; ++d) total *= args_->dims[d];
        if (total == 0) return;
        std::vector<std::int64_t> idx(rank_ ? rank_ : 1, 0);
        for (std::int64_t r = 0; r < total / inner; ++r) {
            for (std::int64_t s = 0; s < inner; s += kTile) {
                std::int64_t n = std::min(kTile, inner - s);
                run(0, g.reduce_at, idx.data(), s, n);
                Tile t = tiles_[static_cast<std::size_t>(nz.args[0])];
                narrow(t, nz.dtype, n);
                for (std::int64_t j = 0; j < n; ++j)
                    row[static_cast<std::size_t>(s + j)] = f32 ? t.f32[j] : t.f64[j];
            }
            double m = -std::numeric_limits<double>::infinity();
            for (double v : row)
                if (v > m) m = v;
            double shift = std::isfinite(m) ? m : 0.0;
            long double sum = 0;
            for (double v : row) {
                if (f32)
                    sum += static_cast<double>(
                        std::exp(static_cast<float>(v) - static_cast<float>(shift)));
                else
                    sum += std::exp(v - shift);
            }
            for (std::int64_t s = 0; s < inner; s += kTile) {
                std::int64_t n = std::min(kTile, inner - s);
                Tile& t = tiles_[static_cast<std::size_t>(g.reduce_at)];
                t.cls = f32 ? Cls::F32 : Cls::F64;
                for (std::int64_t j = 0; j < n; ++j) {
                    double v = row[static_cast<std::size_t>(s + j)];
                    if (f32) {
                        auto fs = static_cast<float>(static_cast<double>(sum));
                        float z = static_cast<float>(v) - static_cast<float>(shift);
                        t.f32[j] = log ? z - std::log(fs) : std::exp(z) / fs;
                    } else {
                        auto ds = static_cast<double>(sum);
                        double z = v - shift;
                        t.f64[j] = log ? z - std::log(ds) : std::exp(z) / ds;
                    }
                }
                run(g.reduce_at + 1, static_cast<int>(g.instrs.size()), idx.data(), s, n);
                write_outputs(idx.data(), s, n);
            }
            for (std::size_t d = rank_ ? rank_ - 1 : 0; d-- > 0;) {
                if (++idx[d] < args_->dims[d]) break;
                idx[d] = 0;
            }
        }
    }

    const Group* group_ = nullptr;
    const agnesi_group_args* args_ = nullptr;
    std::size_t rank_ = 0;
    std::vector<Tile> tiles_;
};

}  // namespace

std::unique_ptr<Executor> make_evaluator(const Program& p) {
    return std::make_unique<Evaluator>(p);
}

}  // namespace agnesi::jit
