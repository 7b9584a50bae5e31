// Generated C++ for the native CPU tier (see codegen.hpp for the shape of the source).
#include "jit/cpu/codegen.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string_view>

#include "agnesi/error.hpp"
#include "agnesi/op.hpp"
#include "jit/cpu/abi_text.hpp"
#include "jit/cpu/prelude.hpp"
#include "jit/scalar_emit.hpp"

namespace agnesi::jit::cpu {

namespace {

bool is_scalar_shape(const Shape& s) {
    for (Dim d : s)
        if (d != 1) return false;
    return true;
}

// Index expression of access k at the current point.
using Index = std::function<std::string(int)>;

class GroupEmitter {
  public:
    GroupEmitter(const Program& p, const Group& g, std::string symbol)
        : p_(p), g_(g), symbol_(std::move(symbol)) {
        ni_ = static_cast<int>(g.inputs.size());
        no_ = static_cast<int>(g.outputs.size());
        rank_ = static_cast<int>(g.domain.size());
        epi_.assign(static_cast<std::size_t>(ni_ + no_), false);
        scalar_.assign(static_cast<std::size_t>(ni_ + no_), false);
        for (int k = 0; k < ni_; ++k)
            scalar_[static_cast<std::size_t>(k)] = is_scalar_shape(g.inputs[k].shape);
        for (std::size_t i = 0; i < g.instrs.size(); ++i) {
            const Instr& in = g.instrs[i];
            if (in.kind == InstrKind::Load && g.in_epilogue(static_cast<int>(i)))
                epi_[static_cast<std::size_t>(in.input)] = true;
        }
        for (int k = 0; k < no_; ++k) epi_[static_cast<std::size_t>(ni_ + k)] = true;
        // Static sizes too small for threads: loops without an OpenMP region.
        long long values = 1;
        serial_ = true;
        for (Dim dk : g.domain) {
            if (is_symbolic(dk) || (values = values * std::max<Dim>(dk, 0)) >= kParMin) {
                serial_ = false;
                break;
            }
        }
        if (g.kind == GroupKind::RowReduce) {
            invariant_.assign(g.instrs.size(), false);
            for (std::size_t i = 0; i < g.instrs.size(); ++i) {
                const Instr& in = g.instrs[i];
                bool inv = in.kind == InstrKind::Const || in.kind == InstrKind::Reduce;
                if (in.kind == InstrKind::Apply) {
                    inv = true;
                    for (int a = 0; a < in.nargs; ++a)
                        inv = inv && invariant_[static_cast<std::size_t>(in.args[a])];
                }
                invariant_[i] = inv;
            }
        }
        // What the layouts are known to be before any call: an access without views is its
        // buffer, contiguous; over an equal shape it is the domain's own layout (flat), and
        // when its last size is the domain's, its inner stride is 1.
        flat_.assign(static_cast<std::size_t>(ni_ + no_), false);
        unit_.assign(static_cast<std::size_t>(ni_ + no_), false);
        for (int k = 0; k < ni_ + no_; ++k) {
            const Access& acc = k < ni_ ? g.inputs[static_cast<std::size_t>(k)]
                                        : g.outputs[static_cast<std::size_t>(k - ni_)].target;
            if (!acc.views.empty() || g.kind == GroupKind::Reduce) continue;
            flat_[static_cast<std::size_t>(k)] = acc.shape == g.domain;
            unit_[static_cast<std::size_t>(k)] =
                !acc.shape.empty() && !g.domain.empty() && acc.shape.back() == g.domain.back();
        }
        // Inputs known to be broadcast along the inner loop's axes (size 1 there, as NumPy aligns
        // shapes): the reduced axes of a reduction's prologue, the last axis otherwise. They are
        // read once per row, not per element (the centred rows of a layer norm read the row's
        // mean this way).
        bcast_.assign(static_cast<std::size_t>(ni_ + no_), false);
        for (int k = 0; k < ni_; ++k) {
            if (scalar_[static_cast<std::size_t>(k)] || rank_ == 0) continue;
            std::vector<int> axes{rank_ - 1};
            if (g.kind == GroupKind::Reduce) {
                if (epi_[static_cast<std::size_t>(k)] || g.axes.empty()) continue;
                axes = g.axes;
            }
            const Shape& sh = g.inputs[static_cast<std::size_t>(k)].shape;
            const int lead = rank_ - static_cast<int>(sh.size());
            bool ones = true;
            for (int a : axes)
                ones = ones && (a < lead || sh[static_cast<std::size_t>(a - lead)] == 1);
            bcast_[static_cast<std::size_t>(k)] = ones;
        }
    }

    std::string emit() {
        std::string s = comment_header();
        s += "extern \"C\" void " + symbol_ + "(const agnesi_group_args* a) {\n";
        s += "const int64_t* d = a->dims;\nconst int64_t* e = a->edims;\n";
        s += "const int nt = a->threads > 0 ? a->threads : omp_get_max_threads();\n";
        s += "(void)d; (void)e; (void)nt;\n";
        for (int k = 0; k < ni_ + no_; ++k) {
            bool in = k < ni_;
            const Access& acc = in ? g_.inputs[k] : g_.outputs[k - ni_].target;
            std::string t = c_type(p_.buffers.at(acc.buffer).dtype);
            s += fmt::format("{}{}* p{} = ({}{}*)a->ptrs[{}];\n", in ? "const " : "", t, k,
                             in ? "const " : "", t, k);
            s +=
                fmt::format("const int64_t* s{} = a->strides + {};\n(void)s{};\n", k, k * rank_, k);
        }
        for (std::size_t i = 0; i < g_.instrs.size(); ++i) {
            const Instr& in = g_.instrs[i];
            if (in.kind == InstrKind::Const && !unread_const(g_, static_cast<int>(i)))
                s += emit_instr(g_, static_cast<int>(i)) + "\n";
        }
        s += "int64_t n = 1;\n";
        for (int r = 0; r < rank_; ++r) s += fmt::format("n *= d[{}];\n", r);
        s += "const bool par = nt > 1 && n >= kParMin;\n(void)par;\n";
        switch (g_.kind) {
            case GroupKind::Pointwise:
            case GroupKind::Matmul: s += pointwise(); break;
            case GroupKind::Reduce: s += reduce(); break;
            case GroupKind::RowNormalize: s += row_normalize(); break;
            case GroupKind::RowReduce: s += row_reduce(); break;
        }
        s += "}\n\n";
        return s;
    }

  private:
    std::string comment_header() const {
        std::string s = fmt::format("// group {}: {}, domain rank {}, {}, {}\n", symbol_,
                                    group_kind_name(g_.kind), rank_,
                                    counted(static_cast<std::size_t>(ni_), "input"),
                                    counted(static_cast<std::size_t>(no_), "output"));
        for (int k = 0; k < ni_; ++k) {
            const Buffer& b = p_.buffers.at(g_.inputs[k].buffer);
            std::string what = b.node && b.node->is_variable() ? sanitize(b.node->name()) : "";
            s += fmt::format("//   p{}: buffer {} {}\n", k, g_.inputs[k].buffer, what);
        }
        return s;
    }

    // The instrs in [lo, hi) at the current point (Consts are hoisted, Reduce and Normalize
    // are the caller's).
    std::string body(int lo, int hi, const Index& idx) const {
        std::string s;
        for (int i = lo; i < hi; ++i) {
            if (row_invariant(i)) continue;  // computed once per row, before the loop
            const Instr& in = g_.instrs[static_cast<std::size_t>(i)];
            std::string t = c_type(in.dtype);
            switch (in.kind) {
                case InstrKind::Const: break;
                case InstrKind::Load: {
                    const Access& acc = g_.inputs.at(static_cast<std::size_t>(in.input));
                    DType bt = p_.buffers.at(acc.buffer).dtype;
                    s += fmt::format("const {} v{} = {};\n", t, i,
                                     convert_expr(fmt::format("p{}[{}]", in.input, idx(in.input)),
                                                  bt, in.dtype));
                    break;
                }
                case InstrKind::Apply: s += emit_instr(g_, i) + "\n"; break;
                case InstrKind::Reduce:
                case InstrKind::Normalize:
                    AGNESI_ASSERT(false) << "native CPU code: a reduction inside a loop body";
            }
        }
        return s;
    }

    // RowReduce: whether instr i is the same all along a row (computed from reduced values and
    // constants only); such Apply instrs are computed once per row.
    bool row_invariant(int i) const {
        return !invariant_.empty() && invariant_[static_cast<std::size_t>(i)];
    }

    // The row-invariant Apply instrs in [lo, hi), for the row loop's body before a pass.
    std::string row_invariants(int lo, int hi) const {
        std::string s;
        for (int i = lo; i < hi; ++i)
            if (row_invariant(i) && g_.instrs[static_cast<std::size_t>(i)].kind == InstrKind::Apply)
                s += emit_instr(g_, i) + "\n";
        return s;
    }

    DType dtype_of(int i) const { return g_.instrs.at(static_cast<std::size_t>(i)).dtype; }
    std::string var(int i) const { return fmt::format("v{}", i); }

    std::string stores(const Index& idx) const {
        std::string s;
        for (int k = 0; k < no_; ++k) {
            const Group::Output& o = g_.outputs[static_cast<std::size_t>(k)];
            DType bt = p_.buffers.at(o.target.buffer).dtype;
            s += fmt::format("p{}[{}] = {};\n", ni_ + k, idx(ni_ + k),
                             convert_expr(var(o.instr), dtype_of(o.instr), bt));
        }
        return s;
    }

    // `&&` of cond(k) over the non-scalar accesses in `which`; "true" when none.
    std::string all_of(const std::function<bool(int)>& which,
                       const std::function<std::string(int)>& cond) const {
        std::string s;
        for (int k = 0; k < ni_ + no_; ++k) {
            if (!which(k) || scalar_[static_cast<std::size_t>(k)]) continue;
            if (!s.empty()) s += " && ";
            s += cond(k);
        }
        return s.empty() ? "true" : s;
    }
    bool is_scalar(int k) const { return scalar_[static_cast<std::size_t>(k)]; }
    bool is_bcast(int k) const { return bcast_[static_cast<std::size_t>(k)]; }
    bool is_epi(int k) const { return epi_[static_cast<std::size_t>(k)]; }

    // Offsets o<k> of every access at point `var` of the axes `axes` (sizes from `sizes`).
    std::string offsets(const std::string& v, const std::vector<int>& axes,
                        const std::string& prefix = "o") const {
        std::string s;
        for (int k = 0; k < ni_ + no_; ++k) s += fmt::format("int64_t {}{} = 0;\n", prefix, k);
        if (axes.empty()) return s;
        s += fmt::format("{{ int64_t q = {};\n", v);
        for (auto it = axes.rbegin(); it != axes.rend(); ++it) {
            s += fmt::format("{{ const int64_t ix = q % d[{0}]; q /= d[{0}];\n", *it);
            for (int k = 0; k < ni_ + no_; ++k)
                if (!is_scalar(k)) s += fmt::format("{0}{1} += ix * s{1}[{2}];\n", prefix, k, *it);
            s += "}\n";
        }
        return s + "}\n";
    }

    Index flat_index(const std::string& i) const {
        return [this, i](int k) { return is_scalar(k) ? std::string("0") : i; };
    }
    Index strided_index(const std::string& base, const std::string& j, bool unit) const {
        return [=, this](int k) {
            if (is_scalar(k)) return std::string("0");
            if (unit && is_bcast(k)) return fmt::format("{}{}", base, k);
            if (unit) return fmt::format("{}{} + {}", base, k, j);
            return fmt::format("{}{} + {} * t{}", base, k, j, k);
        };
    }
    // Access k at element j of the current row (offsets o<k>): unit inner strides where they are
    // known statically, the argument's inner stride t<k> otherwise.
    Index row_index() const {
        return [this](int k) {
            if (is_scalar(k)) return std::string("0");
            if (is_bcast(k)) return fmt::format("o{}", k);
            if (unit_[static_cast<std::size_t>(k)]) return fmt::format("o{} + j", k);
            return fmt::format("o{0} + j * t{0}", k);
        };
    }
    std::string inner_strides(int axis) const {
        std::string s;
        for (int k = 0; k < ni_ + no_; ++k)
            s += fmt::format("const int64_t t{0} = s{0}[{1}]; (void)t{0};\n", k, axis);
        return s;
    }

    int num_instrs() const { return static_cast<int>(g_.instrs.size()); }

    // ---- pointwise (and a matmul's epilogue) ---------------------------------------------

    // One loop nest per group, chosen from the layouts known statically: a flat loop when every
    // access is the domain's own layout (or a scalar), else rows of the last axis with each
    // access's inner stride (1 where known, from the arguments otherwise). Fewer variants keep
    // the compiler run short.
    std::string pointwise() const {
        std::string all = body(0, num_instrs(), flat_index("i")) + stores(flat_index("i"));
        if (rank_ == 0) return "if (n == 0) return;\n{ const int64_t i = 0;\n" + all + "}\n";
        std::string s = "if (n == 0) return;\n";
        bool all_flat = true;
        for (int k = 0; k < ni_ + no_; ++k)
            all_flat = all_flat && (is_scalar(k) || flat_[static_cast<std::size_t>(k)]);
        if (all_flat) {
            s += "{\n";
            s += "const int64_t nc = (n + kChunk - 1) / kChunk;\n";
            s += parallel_for();
            s += "for (int64_t c = 0; c < nc; ++c) {\n";
            s += "const int64_t lo = c * kChunk, hi = lo + kChunk < n ? lo + kChunk : n;\n";
            s += "#pragma omp simd\nfor (int64_t i = lo; i < hi; ++i) {\n" + all +
                 "}\n}\nreturn;\n}\n";
            return s;
        }
        // Strided: one row of the last axis at a time.
        int last = rank_ - 1;
        std::vector<int> outer;
        for (int r = 0; r < last; ++r) outer.push_back(r);
        s += fmt::format("const int64_t len = d[{}], rows = n / len;\n", last);
        s += inner_strides(last);
        s += parallel_for();
        s += "for (int64_t r = 0; r < rows; ++r) {\n" + offsets("r", outer);
        Index ix = row_index();
        s += "#pragma omp simd\nfor (int64_t j = 0; j < len; ++j) {\n" + body(0, num_instrs(), ix) +
             stores(ix) + "}\n";
        return s + "}\n";
    }

    // ---- reductions ------------------------------------------------------------------------

    // The code of one reduction op: declarations, one or two passes over the reduced values
    // (x is the prologue's value converted to the result dtype), and the result.
    struct Reducer {
        std::string acc_type, value_type;
        std::string init;  // with {s} for the subscript ("" or "[jj]")
        std::string clause1, step1;
        std::string clause2, step2;  // empty: one pass
        std::string result;
        // Float sums: the addend of pass 1 or 2 (empty: not a float sum). A row adds it in its
        // own dtype within blocks of kSumBlock values and the blocks' sums in double.
        std::string addend1, addend2;
    };

    Reducer reducer(const Instr& red) const {
        DType t = red.dtype;
        std::string T = c_type(t);
        bool fl = is_float(t);
        std::string A = fl ? "double" : "int64_t";
        Reducer r{A, T, "", "", "", "", "", "", "", ""};
        std::string lowest =
            fl ? "(-INFINITY)" : fmt::format("(({})INT{}_MIN)", T, t == DType::Int32 ? 32 : 64);
        std::string highest =
            fl ? "INFINITY" : fmt::format("(({})INT{}_MAX)", T, t == DType::Int32 ? 32 : 64);
        if (t == DType::Bool) lowest = "false", highest = "true";
        switch (red.op) {
            case Op::Sum:
            case Op::Mean:
                r.init = "acc{s} = 0;";
                r.clause1 = "reduction(+:acc)";
                r.step1 = "acc{s} += (" + A + ")x;";
                if (fl) r.addend1 = "x";
                r.result = "(" + T + ")acc{s}";
                if (red.op == Op::Mean && fl)
                    r.result = "(" + T + ")(cnt ? acc{s} / (double)cnt : NAN)";
                break;
            case Op::Prod:
                r.init = "acc{s} = 1;";
                r.clause1 = "reduction(*:acc)";
                r.step1 = "acc{s} *= (" + A + ")x;";
                r.result = "(" + T + ")acc{s}";
                break;
            case Op::ReduceMax:
            case Op::ReduceMin: {
                bool mx = red.op == Op::ReduceMax;
                r.init = "mx{s} = " + (mx ? lowest : highest) + "; nan{s} = 0;";
                r.clause1 = mx ? "reduction(max:mx) reduction(|:nan)"
                               : "reduction(min:mx) reduction(|:nan)";
                r.step1 = mx ? "mx{s} = mx{s} < x ? x : mx{s};" : "mx{s} = x < mx{s} ? x : mx{s};";
                if (fl) r.step1 += " nan{s} |= x != x;";
                r.result = fl ? "(nan{s} ? (" + T + ")NAN : mx{s})" : "mx{s}";
                break;
            }
            case Op::Logsumexp:
                AGNESI_ASSERT(fl) << "native CPU code: logsumexp of " << dtype_name(t);
                r.init = "mx{s} = -INFINITY; nan{s} = 0; acc{s} = 0;";
                r.clause1 = "reduction(max:mx) reduction(|:nan)";
                r.step1 = "mx{s} = x > mx{s} ? x : mx{s}; nan{s} |= x != x;";
                r.clause2 = "reduction(+:acc)";
                r.step2 = "acc{s} += (double)exp(x - mx{s});";
                r.addend2 = "exp(x - mx{s})";
                r.result = "(nan{s} ? (" + T +
                           ")NAN : __builtin_isinf(mx{s}) ? mx{s} : mx{s} + log((" + T +
                           ")acc{s}))";
                break;
            default: AGNESI_ASSERT(false) << "native CPU code: reduction " << op_info(red.op).name;
        }
        return r;
    }

    static std::string sub(std::string s, const std::string& subscript) {
        for (std::size_t at; (at = s.find("{s}")) != std::string::npos;)
            s.replace(at, 3, subscript);
        return s;
    }

    // The prologue of Reduce instr `at` (instrs [lo, at)) at one reduced point and the
    // conversion of its value to x.
    std::string prologue(const Index& idx, int lo = 0, int at = -1) const {
        if (at < 0) at = g_.reduce_at;
        const Instr& red = g_.instrs.at(static_cast<std::size_t>(at));
        return body(lo, at, idx) +
               fmt::format("const {} x = {};\n", c_type(red.dtype),
                           convert_expr(var(red.args[0]), dtype_of(red.args[0]), red.dtype));
    }

    using PassFn =
        std::function<std::string(const std::string&, const std::string&, const std::string&)>;

    // Declarations, passes and the reduced value v<at> (at: reduce_at by default) for one output
    // point, reductions as scalars. loop(clause, step, addend) emits one pass.
    std::string reduced_value(const PassFn& loop, int at = -1) const {
        if (at < 0) at = g_.reduce_at;
        const Instr& red = g_.instrs.at(static_cast<std::size_t>(at));
        Reducer r = reducer(red);
        // A row's earlier reductions keep their accumulators in a scope of their own.
        bool scoped = at != g_.reduce_at;
        std::string s = scoped ? fmt::format("{} v{};\n{{\n", r.value_type, at) : std::string();
        s += fmt::format("{} acc; {} mx; int nan;\n(void)acc; (void)mx; (void)nan;\n", r.acc_type,
                         r.value_type);
        s += sub(r.init, "") + "\n";
        s += loop(r.clause1, sub(r.step1, ""), sub(r.addend1, ""));
        if (!r.step2.empty()) s += loop(r.clause2, sub(r.step2, ""), sub(r.addend2, ""));
        if (scoped)
            s += fmt::format("v{} = {};\n}}\n", at, sub(r.result, ""));
        else
            s += fmt::format("const {} v{} = {};\n", r.value_type, at, sub(r.result, ""));
        return s;
    }

    // The reduced value, then the epilogue at that point.
    std::string reduce_point(const PassFn& loop, const Index& epi_idx) const {
        return reduced_value(loop) + body(g_.reduce_at + 1, num_instrs(), epi_idx) +
               stores(epi_idx);
    }

    std::string reduce() const {
        std::vector<bool> red(static_cast<std::size_t>(rank_), false);
        for (int ax : g_.axes) red[static_cast<std::size_t>(ax)] = true;
        std::vector<int> kept, reduced;
        for (int r = 0; r < rank_; ++r)
            (red[static_cast<std::size_t>(r)] ? reduced : kept).push_back(r);
        std::string s = "int64_t m = 1, cnt = 1;\n";
        for (int r : kept) s += fmt::format("m *= d[{}];\n", r);
        for (int r : reduced) s += fmt::format("cnt *= d[{}];\n", r);
        s += "if (m == 0) return;\n";
        auto pro = [this](int k) { return k < ni_ && !is_epi(k); };
        // A broadcast prologue input is read at the row's offset in the suffix loops below.
        auto pro_read = [&](int k) { return pro(k) && !is_bcast(k); };
        int nk = static_cast<int>(kept.size());
        bool suffix = !reduced.empty() && reduced.front() == nk;
        bool prefix =
            !reduced.empty() && !kept.empty() && kept.front() == static_cast<int>(reduced.size());

        // What is known before any call: an input without views is its buffer, contiguous, so
        // over the domain's shape its rows and columns are too; and the number of outputs when the
        // kept sizes are static. Code for the other cases is not generated: it was most of a cold
        // compile.
        // The suffix loops read broadcast inputs at the row's offset; the others need rows.
        bool contiguous = true, rows_contiguous = true;
        for (int k = 0; k < ni_; ++k) {
            const Access& acc = g_.inputs[static_cast<std::size_t>(k)];
            if (pro(k) && !is_scalar(k) && (!acc.views.empty() || acc.shape != g_.domain)) {
                contiguous = false;
                if (!is_bcast(k)) rows_contiguous = false;
            }
        }
        std::int64_t outputs = 1;  // -1: not known before the call
        for (int r : kept) {
            Dim dk = g_.domain[static_cast<std::size_t>(r)];
            outputs = is_symbolic(dk) || outputs < 0 ? -1 : outputs * dk;
        }
        const bool may_be_one = outputs < 0 || outputs == 1, may_be_more = outputs != 1;
        const DType red_dtype = g_.instrs.at(static_cast<std::size_t>(g_.reduce_at)).dtype;

        if (suffix) {
            // Reduced axes are the last ones: each output reduces one contiguous row.
            if (!rows_contiguous)
                s += fmt::format("if ({}) {{\n", all_of(pro_read, [&](int k) {
                                     return fmt::format("agnesi_contig(s{0} + {1}, d + {1}, {2})",
                                                        k, nk, rank_ - nk);
                                 }));
            // One output: the row itself is split across threads.
            if (may_be_one) {
                s += "if (m == 1) {\n" + offsets("0", {});
                s += reduce_point(
                    [&](const std::string& clause, const std::string& step, const std::string&) {
                        return (serial_
                                    ? "#pragma omp simd "
                                    : "#pragma omp parallel for simd num_threads(nt) if(par) ") +
                               clause + "\nfor (int64_t j = 0; j < cnt; ++j) {\n" +
                               prologue(strided_index("o", "j", true)) + step + "\n}\n";
                    },
                    strided_index("o", "0", true));
                s += "return;\n}\n";
            }
        }
        if (suffix && may_be_more) {
            s += parallel_for();
            s += "for (int64_t o = 0; o < m; ++o) {\n" + offsets("o", kept);
            std::string fetch;
            for (int k = 0; k < ni_; ++k)
                if (pro_read(k) && !is_scalar(k)) fetch += prefetch_block(k, "n", false);
            if (!fetch.empty()) s += offsets("o + 1 < m ? o + 1 : o", kept, "n");
            s += reduce_point(
                [&](const std::string& clause, const std::string& step, const std::string& addend) {
                    std::string pro = prologue(strided_index("o", "j", true));
                    if (!addend.empty())
                        return blocked_sum("cnt", c_type(red_dtype), pro, addend, "acc", "", fetch);
                    return "#pragma omp simd " + clause +
                           "\nfor (int64_t j = 0; j < cnt; ++j) {\n" + pro + step + "\n}\n";
                },
                strided_index("o", "0", true));
            s += "}\nreturn;\n";
        }
        if (suffix) {
            if (rows_contiguous) return s;
            s += "}\n";
        }
        if (prefix) {
            // Leading axes reduced (column sums): vectorize over a block of kept columns.
            if (!contiguous)
                s += fmt::format("if ({}) {{\n", all_of(pro, [&](int k) {
                                     return fmt::format("agnesi_contig(s{}, d, {})", k, rank_);
                                 }));
            const Instr& ri = g_.instrs.at(static_cast<std::size_t>(g_.reduce_at));
            Reducer r = reducer(ri);
            s += "const int64_t nb = (m + kCol - 1) / kCol;\n";
            s += parallel_for();
            s += "for (int64_t b = 0; b < nb; ++b) {\n";
            s += "const int64_t j0 = b * kCol, w = m - j0 < kCol ? m - j0 : kCol;\n";
            s += fmt::format(
                "{} acc[kCol]; {} mx[kCol]; int nan[kCol];\n(void)acc; (void)mx; (void)nan;\n",
                r.acc_type, r.value_type);
            s += "for (int64_t jj = 0; jj < w; ++jj) { " + sub(r.init, "[jj]") + " }\n";
            Index ix = [this](int k) {
                return is_scalar(k) ? std::string("0") : std::string("r * m + j0 + jj");
            };
            for (const std::string* step : {&r.step1, &r.step2}) {
                if (step->empty()) continue;
                s += "for (int64_t r = 0; r < cnt; ++r) {\n#pragma omp simd\n";
                s += "for (int64_t jj = 0; jj < w; ++jj) {\n" + prologue(ix) + sub(*step, "[jj]") +
                     "\n}\n}\n";
            }
            s += "for (int64_t jj = 0; jj < w; ++jj) {\n";
            s += fmt::format("const {} v{} = {};\n", r.value_type, g_.reduce_at,
                             sub(r.result, "[jj]"));
            s += offsets("j0 + jj", kept);
            Index eix = strided_index("o", "0", true);
            s += body(g_.reduce_at + 1, num_instrs(), eix) + stores(eix);
            s += "}\n}\nreturn;\n";
            if (contiguous) return s;
            s += "}\n";
        }
        // Any axes: per output, the last reduced axis is the inner loop.
        std::string inner_len = "1";
        std::vector<int> outer_red = reduced;
        if (!reduced.empty()) {
            int last = reduced.back();
            outer_red.pop_back();
            s += inner_strides(last);
            inner_len = fmt::format("d[{}]", last);
        } else {
            for (int k = 0; k < ni_ + no_; ++k) s += fmt::format("const int64_t t{} = 0;\n", k);
        }
        s += "int64_t cnt_outer = 1;\n";
        for (int r : outer_red) s += fmt::format("cnt_outer *= d[{}];\n", r);
        s += parallel_for();
        s += "for (int64_t o = 0; o < m; ++o) {\n" + offsets("o", kept);
        s += reduce_point(
            [&](const std::string& clause, const std::string& step, const std::string&) {
                std::string l = "for (int64_t qo = 0; qo < cnt_outer; ++qo) {\n";
                l += offsets("qo", outer_red, "u");
                for (int k = 0; k < ni_ + no_; ++k) l += fmt::format("u{0} += o{0};\n", k);
                l += "#pragma omp simd " + clause + "\nfor (int64_t j = 0; j < " + inner_len +
                     "; ++j) {\n" + prologue(strided_index("u", "j", false)) + step + "\n}\n}\n";
                return l;
            },
            strided_index("o", "0", true));
        return s + "}\n";
    }

    // acc += `addend` (of C type T) over j < len: in T within blocks of kSumBlock values (a
    // float32 vector lane adds kSumBlock / 8 terms) and in double across blocks. Converting
    // every float32 term to double cost a fifth of a row softmax; the blocks keep the error near
    // NumPy's pairwise sums. `fetch` runs once per block, with j0 and j1 its bounds.
    static std::string blocked_sum(const std::string& len, const std::string& T,
                                   const std::string& pro, const std::string& addend,
                                   const std::string& acc, const std::string& extra,
                                   const std::string& fetch) {
        return "for (int64_t j0 = 0; j0 < " + len + "; j0 += kSumBlock) {\n" +
               "const int64_t j1 = " + len + " - j0 < kSumBlock ? " + len + " : j0 + kSumBlock;\n" +
               fetch + T + " facc = 0;\n#pragma omp simd reduction(+:facc)\n" +
               "for (int64_t j = j0; j < j1; ++j) {\n" + pro + extra + "facc += " + addend +
               ";\n}\n" + acc + " += (double)facc;\n}\n";
    }

    // Prefetches of elements [j0, j1) of rows that later passes read or write: a row's second
    // pass runs from L1 and would leave the memory idle while it computes. `base` is the row's
    // offset variable prefix (n: the next row, o: this one).
    static std::string prefetch_block(int k, const std::string& base, bool write) {
        return fmt::format(
            "for (int64_t l = 0; l < (j1 - j0) * (int64_t)sizeof(*p{0}); l += 64) "
            "__builtin_prefetch((const char*)(p{0} + {1}{0} + j0) + l{2});\n",
            k, base, write ? ", 1" : "");
    }

    // ---- a reduction along the last axis, then work on the same row --------------------------

    // A row at a time: its reductions, a pass each (float sums in blocks, as a suffix reduction
    // adds them), then the epilogue along the row; the passes after the first read the row from
    // cache.
    std::string row_reduce() const {
        AGNESI_ASSERT(rank_ >= 1) << "native CPU code: a row reduction over a rank-0 domain";
        int last = rank_ - 1;
        std::vector<int> outer;
        for (int d = 0; d < last; ++d) outer.push_back(d);
        std::string s = "if (n == 0) return;\n";
        s += fmt::format("const int64_t len = d[{}], rows = n / len, cnt = len;\n(void)cnt;\n",
                         last);
        s += inner_strides(last);
        s += parallel_for();
        s += "for (int64_t r = 0; r < rows; ++r) {\n" + offsets("r", outer);
        Index ix = row_index();
        std::vector<int> passes = g_.passes();
        for (std::size_t k = 0; k < passes.size(); ++k) {
            const Instr& red = g_.instrs.at(static_cast<std::size_t>(passes[k]));
            s += row_invariants(g_.pass_begin(k), passes[k]);
            std::string pro = prologue(ix, g_.pass_begin(k), passes[k]);
            s += reduced_value(
                [&](const std::string& clause, const std::string& step, const std::string& addend) {
                    if (!addend.empty())
                        return blocked_sum("len", c_type(red.dtype), pro, addend, "acc", "", "");
                    return "#pragma omp simd " + clause +
                           "\nfor (int64_t j = 0; j < len; ++j) {\n" + pro + step + "\n}\n";
                },
                passes[k]);
        }
        s += row_invariants(g_.reduce_at + 1, num_instrs());
        s += "#pragma omp simd\nfor (int64_t j = 0; j < len; ++j) {\n" +
             body(g_.reduce_at + 1, num_instrs(), ix) + stores(ix) + "}\n";
        return s + "}\n";
    }

    // ---- softmax and log-softmax along the last axis ----------------------------------------

    std::string row_normalize() const {
        AGNESI_ASSERT(rank_ >= 1) << "native CPU code: a normalization over a rank-0 domain";
        const Instr& nz = g_.instrs.at(static_cast<std::size_t>(g_.reduce_at));
        std::string T = c_type(nz.dtype);
        bool log = nz.op == Op::LogSoftmax;
        int last = rank_ - 1;
        std::vector<int> outer;
        for (int r = 0; r < last; ++r) outer.push_back(r);
        std::string s = "if (n == 0) return;\n";
        s += fmt::format("const int64_t len = d[{}], rows = n / len;\n", last);
        s += inner_strides(last);
        s += serial_ ? "{\n" : "#pragma omp parallel num_threads(nt) if(par)\n{\n";
        s += fmt::format("{0}* buf = ({0}*)malloc((size_t)len * sizeof({0}));\n", T);
        if (!serial_) s += "#pragma omp for schedule(static)\n";
        s += "for (int64_t r = 0; r < rows; ++r) {\n";
        s += offsets("r", outer);
        s += fmt::format("{} mx = -INFINITY;\n", T);
        // Pass 1: the prologue into the row buffer, and the row's maximum (NaN never is). When
        // the row is one input as it is (softmax(x)), the passes read the input in place.
        Index ix = row_index();
        std::string row = "buf[j]";
        const Instr& first = g_.instrs.front();
        if (g_.reduce_at == 1 && first.kind == InstrKind::Load && nz.args[0] == 0) {
            DType bt =
                p_.buffers.at(g_.inputs.at(static_cast<std::size_t>(first.input)).buffer).dtype;
            row = convert_expr(fmt::format("p{}[{}]", first.input, ix(first.input)), bt, nz.dtype);
            s += "#pragma omp simd reduction(max:mx)\nfor (int64_t j = 0; j < len; ++j) {\n" +
                 fmt::format("const {} x = {};\n", T, row) + "mx = x > mx ? x : mx;\n}\n";
        } else {
            s += "#pragma omp simd reduction(max:mx)\nfor (int64_t j = 0; j < len; ++j) {\n" +
                 prologue(ix) + "buf[j] = x;\nmx = x > mx ? x : mx;\n}\n";
        }
        // A non-finite maximum is not subtracted (as the reference evaluator, and JAX).
        s += fmt::format("const {0} shift = __builtin_isfinite(mx) ? mx : ({0})0;\n", T);
        s += "double sum = 0;\n";
        // While a row's exps run: the next row's inputs, and this row's epilogue inputs and
        // outputs, are fetched.
        std::string fetch;
        for (int k = 0; k < ni_ + no_; ++k)
            if (!is_scalar(k) && unit_[static_cast<std::size_t>(k)])
                fetch += prefetch_block(k, k < ni_ && !is_epi(k) ? "n" : "o", k >= ni_);
        if (!fetch.empty()) s += offsets("r + 1 < rows ? r + 1 : r", outer, "n");
        if (log) {
            s += blocked_sum("len", T, "", "exp(" + row + " - shift)", "sum", "", fetch);
            s += fmt::format("const {0} ls = log(({0})sum);\n", T);
        } else {
            s += blocked_sum("len", T, "", "ex", "sum",
                             fmt::format("const {} ex = exp({} - shift);\nbuf[j] = ex;\n", T, row),
                             fetch);
            // One reciprocal and a product per element (within an ulp of the quotient): a
            // vector division costs more than the exp before it.
            s += fmt::format("const {0} inv = ({0})(1.0 / sum);\n", T);
        }
        std::string value = log ? "(" + row + " - shift) - ls" : "buf[j] * inv";
        s += "#pragma omp simd\nfor (int64_t j = 0; j < len; ++j) {\n";
        s += fmt::format("const {} v{} = {};\n", T, g_.reduce_at, value);
        s += body(g_.reduce_at + 1, num_instrs(), ix) + stores(ix) + "}\n";
        s += "}\nfree(buf);\n}\n";
        return s;
    }

    const Program& p_;
    const Group& g_;
    std::string symbol_;
    int ni_ = 0, no_ = 0, rank_ = 0;
    std::vector<bool> epi_, scalar_, invariant_;
    std::vector<bool> flat_, unit_, bcast_;  // statically known layouts (see the constructor)
    bool serial_ = false;                    // never more than one thread (see the constructor)

    // The OpenMP directive that spreads the loop after it over the threads, if any may run it.
    std::string parallel_for() const {
        return serial_ ? "" : "#pragma omp parallel for num_threads(nt) if(par) schedule(static)\n";
    }
};

std::string prelude() {
    std::string s = kAbiText;
    s += kPreludeHead;
    s += "extern \"C\" {\n";
    for (const char* f : kVectorUnary)
        s += fmt::format(
            "double {0}(double) noexcept AGNESI_SIMD;\nfloat {0}f(float) noexcept "
            "AGNESI_SIMD;\n",
            f);
    for (const char* f : kVectorBinary)
        s += fmt::format(
            "double {0}(double, double) noexcept AGNESI_SIMD;\nfloat {0}f(float, "
            "float) noexcept AGNESI_SIMD;\n",
            f);
    s += "}\nnamespace agnesi_k {\n";
    s += kPreludeFloatMath;
    s += fmt::format("static const int64_t kParMin = {};\n", kParMin);
    for (const char* f : kVectorUnary) {
        bool own =
            std::ranges::any_of(kOwnFloat, [&](const char* o) { return o == std::string_view(f); });
        s += fmt::format(
            "AGNESI_INLINE double {0}(double x) {{ return ::{0}(x); }}\nAGNESI_INLINE "
            "float {0}(float x) {{ return {1}{0}f(x); }}\n",
            f, own ? "agnesi_" : "::");
    }
    for (const char* f : kVectorBinary)
        s += fmt::format(
            "AGNESI_INLINE double {0}(double x, double y) {{ return ::{0}(x, y); }}\n"
            "AGNESI_INLINE float {0}(float x, float y) {{ return ::{0}f(x, y); }}\n",
            f);
    s += kPreludeHelpers;
    return s;
}

}  // namespace

std::string sanitize(const std::string& s, std::size_t max_len) {
    std::string out;
    for (char c : s) {
        if (out.size() >= max_len) break;
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out += ok ? c : '_';
    }
    return out;
}

std::string group_symbol(const std::string& name, int group) {
    return fmt::format("agnesi_{}_{}", sanitize(name, 48), group);
}

std::string generate_source(const Program& p, const std::string& name) {
    std::string s = fmt::format("// Agnesi native CPU code for function {}: {}.\n", sanitize(name),
                                counted(p.groups.size(), "group"));
    s += prelude();
    for (std::size_t i = 0; i < p.groups.size(); ++i)
        s += GroupEmitter(p, p.groups[i], group_symbol(name, static_cast<int>(i))).emit();
    s += "}  // namespace agnesi_k\n";
    return s;
}

}  // namespace agnesi::jit::cpu
