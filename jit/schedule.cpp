// Scheduling: partitions a DAG into fusion groups (see schedule.hpp).
//
// Nodes are visited consumers first. A node joins the group of its consumers when all of them are
// in one group and it fits that group's index space. A cheap elementwise node used by several
// groups (or both before and after a group's reduction) is computed again in each of them when
// that reads no more than storing it would (it has at most one operand that is not broadcast or
// uniform): `x - mean(x)` in a layer norm is then never written out. Otherwise a node heads a
// group of its own and its value is stored. Joining only ever merges a node into the one group
// that uses it, and an inlined node's operands see every group it is computed in, so the group
// graph stays acyclic. A reduction, a row normalization or a matmul may join a pointwise group
// whose domain is its result's shape: the group's instrs become its epilogue.
#include "jit/schedule.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <queue>
#include <set>

#include "agnesi/error.hpp"
#include "agnesi/evaluate.hpp"
#include "agnesi/print.hpp"
#include "agnesi/traverse.hpp"

namespace agnesi::jit {
namespace {

bool is_view_op(Op op) {
    switch (op) {
        case Op::Reshape:
        case Op::Transpose:
        case Op::BroadcastTo:
        case Op::ExpandDims:
        case Op::Squeeze:
        case Op::Slice: return true;
        default: return false;
    }
}

bool is_suffix(const Ints& axes, std::size_t rank) {
    for (std::size_t i = 0; i < axes.size(); ++i)
        if (axes[i] != static_cast<std::int64_t>(rank - axes.size() + i)) return false;
    return true;
}

// Where m is finite: the shift softmax and logsumexp subtract (a non-finite maximum is not).
Expr finite_shift(const Expr& m) {
    return where(abs(m) < Expr(Number::inf()), m, Expr(0));
}

// The scalar constant a uniform value is made of: a constant, or a broadcast of one.
const Node* uniform_base(const Expr& e) {
    if (e->is_constant()) return e.node();
    if (e.op() == Op::BroadcastTo && e->operand(0)->is_constant()) return e->operand(0);
    return nullptr;
}

Expr uniform(const Node* base, DType dtype, const Shape& shape) {
    Expr c = base->dtype() == dtype ? Expr(base) : constant(base->value(), dtype);
    return shape.empty() ? c : broadcast_to(c, shape);
}

// Rewrites the ops that backends take only in one layout into primitives: softmax and
// log_softmax along an axis other than the last, logsumexp over axes that are not a suffix.
// Views and elementwise ops of uniform values (a constant, broadcast) become uniform values, so
// no group computes or stores a tensor of equal elements.
std::vector<const Node*> lower(const std::vector<const Node*>& roots) {
    std::vector<Expr> exprs;
    for (const Node* r : roots) exprs.emplace_back(r);
    auto out = rewrite_post_order(exprs, [](const Node* n, const std::vector<Expr>& ops) -> Expr {
        const Expr& x = ops.empty() ? Expr() : ops[0];
        if (is_view_op(n->op()) && uniform_base(x))
            return uniform(uniform_base(x), n->dtype(), n->shape());
        if (n->info().kind == OpKind::Elementwise && !ops.empty()) {
            std::vector<Expr> bases;
            for (const Expr& o : ops)
                if (const Node* b = uniform_base(o)) bases.emplace_back(b);
            if (bases.size() == ops.size()) {
                Tensor v = evaluate(rebuild(n, bases), Bindings{});
                // An exact constant has no negative zero: keep the op where one comes out.
                if (v.at(0) == 0 && std::signbit(v.at(0))) return rebuild(n, ops);
                return uniform(constant(Number::from_double(v.at(0)), n->dtype()).node(),
                               n->dtype(), n->shape());
            }
        }
        if ((n->op() == Op::Softmax || n->op() == Op::LogSoftmax) &&
            n->ints()[0] != static_cast<std::int64_t>(n->rank()) - 1) {
            Axes ax{n->ints()[0]};
            Expr m = amax(x, ax, true);
            Expr shift = finite_shift(m);
            Expr z = x - shift;
            Expr s = sum(exp(z), ax, true);
            return n->op() == Op::Softmax ? exp(z) / s : z - log(s);
        }
        if (n->op() == Op::Logsumexp && !is_suffix(n->ints(), x.rank())) {
            Axes ax(n->ints().begin(), n->ints().end());
            Expr m = amax(x, ax, true);
            Expr shift = finite_shift(m);
            Expr r = log(sum(exp(x - shift), ax, true)) + shift;
            return n->keepdims() ? r : squeeze(r, ax);
        }
        if (n->op() == Op::Matmul && (ops[0].dtype() != n->dtype() || ops[1].dtype() != n->dtype()))
            return matmul(ops[0].dtype() == n->dtype() ? ops[0] : cast(ops[0], n->dtype()),
                          ops[1].dtype() == n->dtype() ? ops[1] : cast(ops[1], n->dtype()));
        return rebuild(n, ops);
    });
    std::vector<const Node*> res;
    for (const Expr& e : out) res.push_back(e.node());
    return res;
}

// Where a node's value is computed: a group, and the phase in it: 0 before its (first)
// reduction, k after its k-th (a row reduction with several stages runs a phase per pass over
// each row; the other kinds have phases 0 and 1).
struct Ctx {
    int group = -1;
    int phase = 0;
    bool operator==(const Ctx&) const = default;
};

// Ops cheap enough to compute again in every group that uses them.
bool cheap_to_recompute(Op op) {
    switch (op) {
        case Op::Neg:
        case Op::Abs:
        case Op::Sign:
        case Op::Relu:
        case Op::Floor:
        case Op::Ceil:
        case Op::Not:
        case Op::Cast:
        case Op::Add:
        case Op::Sub:
        case Op::Mul:
        case Op::Div:
        case Op::Minimum:
        case Op::Maximum:
        case Op::Lt:
        case Op::Le:
        case Op::Gt:
        case Op::Ge:
        case Op::Eq:
        case Op::Ne:
        case Op::And:
        case Op::Or:
        case Op::Where: return true;
        default: return false;
    }
}

// At most this many groups compute one inlined value.
constexpr std::size_t kMaxInlineContexts = 8;

// At most this many reductions share the passes over a row (the code grows with each).
constexpr std::size_t kMaxRowStages = 4;

struct Info {
    std::vector<const Node*> consumers;
    std::vector<Ctx> contexts;  // inlined: where it is computed
    bool inlined = false;
    int order = 0;
    int group = -1;
    int phase = 0;        // the phase of its group it is computed in (see Ctx)
    bool forced = false;  // must be stored (read through a view, by a gemm or a concat)
    bool view = false;
    bool copy = false;  // a reshape of a non-contiguous view: copied into its own buffer
    bool contiguous = true;
    bool uniform = false;  // a constant or a broadcast of one: a Const instr wherever it is read
    int root = -1;         // first root index
    int buffer = -1;
    int out_buffer = -1;  // a root's output buffer, when it is not `buffer` (leaves, views)
};

struct G {
    GroupKind kind = GroupKind::Pointwise;
    Shape domain;
    const Node* reducer = nullptr;
    std::vector<const Node*> stages;  // RowReduce: the reductions of the earlier passes, in order
    std::vector<const Node*> members;
    // Copy groups (roots that are leaves or views, concat parts, reshape copies):
    const Node* copy_source = nullptr;
    Access copy_target;
    bool is_copy = false;
};

class Scheduler {
  public:
    Scheduler(const std::vector<const Node*>& roots, const std::vector<const Node*>& inputs,
              int num_outputs, const std::vector<const Node*>& update_targets)
        : roots_(lower(roots)) {
        p_.inputs = inputs;
        p_.num_outputs = num_outputs;
        p_.update_targets = update_targets;
    }

    Program run() {
        order_ = post_order(roots_);
        for (std::size_t i = 0; i < order_.size(); ++i) {
            const Node* n = order_[i];
            Info& in = info_[n];
            in.order = static_cast<int>(i);
            for (const Node* o : n->operands()) info_[o].consumers.push_back(n);
        }
        for (std::size_t r = 0; r < roots_.size(); ++r)
            if (info_[roots_[r]].root < 0) info_[roots_[r]].root = static_cast<int>(r);
        mark_views();
        assign();
        merge_row_reductions();
        make_buffers();
        build_groups();
        sort_groups();
        for (const Node* r : roots_) {
            const Info& in = info_[r];
            p_.outputs.push_back(in.out_buffer >= 0 ? in.out_buffer : in.buffer);
        }
        return std::move(p_);
    }

  private:
    // Views read their operand's storage; a reshape needs it contiguous, else it copies.
    void mark_views() {
        for (const Node* n : order_) {
            Info& in = info_[n];
            in.uniform = uniform_base(Expr(n)) != nullptr;
            if (in.uniform) continue;
            if (!is_view_op(n->op())) continue;
            const Info& src = info_[n->operand(0)];
            bool src_contig = !src.view || src.contiguous;
            if (n->op() == Op::Reshape && !src_contig) {
                in.copy = true;
                continue;
            }
            in.view = true;
            in.contiguous = src_contig && (n->op() == Op::Reshape || n->op() == Op::ExpandDims ||
                                           n->op() == Op::Squeeze);
        }
    }

    bool stored_leaf(const Node* n) const {
        const Info& in = info_.at(n);
        return n->is_variable() || in.view;
    }

    void assign() {
        for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
            const Node* n = *it;
            Info& in = info_[n];
            if (n->is_variable() || in.uniform || in.view || n->op() == Op::Eye) continue;
            if (in.copy || n->op() == Op::Concat) continue;  // stored, written by copy groups
            bool forced = false;
            std::vector<Ctx> ctxs;
            auto add = [&](Ctx c) {
                if (std::find(ctxs.begin(), ctxs.end(), c) == ctxs.end()) ctxs.push_back(c);
            };
            for (const Node* c : in.consumers) {
                const Info& ci = info_[c];
                if (ci.view || ci.copy || c->op() == Op::Concat || c->op() == Op::Matmul) {
                    forced = true;
                    break;
                }
                if (ci.inlined) {
                    for (Ctx x : ci.contexts) add(x);
                } else {
                    // A reducer reads its operands before the reduction.
                    add({ci.group, groups_[ci.group].reducer == c ? ci.phase - 1 : ci.phase});
                }
            }
            if (!forced && ctxs.size() == 1 && try_join(n, ctxs[0].group, ctxs[0].phase)) continue;
            if (!forced && ctxs.size() > 1 && try_inline(n, ctxs)) continue;
            start_group(n);
        }
    }

    // A reduction along the last axis whose values (its epilogue's too) are used only by one
    // pointwise group over its own domain joins that group: each row is reduced, then the
    // group's work on the row follows while the row is in cache. sqrt(mean(x*x) + eps) scaling x
    // (an RMS norm) is then one pass that reads each row twice, the second time from cache,
    // where it was two groups and a stored row value. A group so made takes in further row
    // reductions its passes use, each as a pass of its own before the others: a layer norm's
    // mean, then its variance, then the normalized row, is one group reading each row from
    // memory once.
    void merge_row_reductions() {
        for (std::size_t si = 0; si < groups_.size(); ++si) {
            G& S = groups_[si];
            if (S.is_copy || S.kind != GroupKind::Reduce || S.domain.empty()) continue;
            const Ints& ax = S.reducer->ints();
            if (ax.size() != 1 || ax[0] != static_cast<std::int64_t>(S.domain.size()) - 1) continue;
            int target = -1;
            bool ok = true;
            auto use = [&](int gi) {
                if (gi == static_cast<int>(si)) return;
                if (target >= 0 && gi != target) ok = false;
                target = gi;
            };
            for (const Node* m : S.members) {
                const Info& mi = info_[m];
                if (mi.root >= 0) ok = false;
                for (const Node* c : mi.consumers) {
                    const Info& ci = info_[c];
                    if (ci.view || ci.copy || c->op() == Op::Concat || c->op() == Op::Matmul) {
                        ok = false;
                    } else if (ci.inlined) {
                        for (Ctx x : ci.contexts) use(x.group);
                    } else {
                        use(ci.group);
                    }
                }
                if (!ok) break;
            }
            if (!ok || target < 0) continue;
            G& T = groups_[static_cast<std::size_t>(target)];
            bool row = T.kind == GroupKind::RowReduce;
            if (T.is_copy || (T.kind != GroupKind::Pointwise && !row) || T.domain != S.domain)
                continue;
            if (row && T.stages.size() + 1 >= kMaxRowStages) continue;
            // T's work moves a phase later; S's keeps its place, first.
            for (const Node* m : T.members) info_[m].phase += 1;
            for (const Node* m : S.members) info_[m].group = target;
            for (const Node* n : inlined_) {
                std::vector<Ctx> cs;
                for (Ctx c : info_[n].contexts) {
                    if (c.group == target) c.phase += 1;
                    if (c.group == static_cast<int>(si)) c.group = target;
                    if (std::find(cs.begin(), cs.end(), c) == cs.end()) cs.push_back(c);
                }
                info_[n].contexts = std::move(cs);
            }
            std::vector<const Node*> reds{S.reducer};
            if (row) {
                reds.insert(reds.end(), T.stages.begin(), T.stages.end());
                reds.push_back(T.reducer);
            }
            T.kind = GroupKind::RowReduce;
            T.reducer = reds.back();
            reds.pop_back();
            T.stages = std::move(reds);
            T.members.insert(T.members.begin(), S.members.begin(), S.members.end());
            S.members.clear();
            S.reducer = nullptr;
            S.kind = GroupKind::Pointwise;  // empty: builds nothing
        }
    }

    Shape epilogue_shape(const G& g) const {
        return g.kind == GroupKind::Reduce ? g.reducer->shape() : g.domain;
    }

    // Whether operand `o` of `n` is read through a broadcast (implicit, or a view): a read that
    // costs far less than n's elements.
    bool broadcast_read(const Node* n, const Node* o) const {
        if (o->shape() != n->shape()) return true;
        for (; info_.at(o).view; o = o->operand(0))
            if (o->op() == Op::BroadcastTo) return true;
        return false;
    }

    bool try_inline(const Node* n, const std::vector<Ctx>& ctxs) {
        Info& in = info_[n];
        if (n->info().kind != OpKind::Elementwise || in.root >= 0 || !cheap_to_recompute(n->op()) ||
            ctxs.size() > kMaxInlineContexts)
            return false;
        for (Ctx c : ctxs) {
            const G& g = groups_[static_cast<std::size_t>(c.group)];
            if (n->shape() != (c.phase ? epilogue_shape(g) : g.domain)) return false;
        }
        // Each group then reads the one full operand instead of the stored value.
        int full = 0;
        for (const Node* o : n->operands())
            if (!info_[o].uniform && !broadcast_read(n, o)) ++full;
        if (full > 1) return false;
        in.inlined = true;
        in.contexts = ctxs;
        inlined_.push_back(n);
        return true;
    }

    bool try_join(const Node* n, int gi, int phase) {
        G& g = groups_[gi];
        Info& in = info_[n];
        OpKind k = n->info().kind;
        if (k == OpKind::Elementwise) {
            if (n->shape() != (phase ? epilogue_shape(g) : g.domain)) return false;
            // A group stores values only in its epilogue: a root before a reduction is stored
            // by a group of its own.
            if (!phase && g.kind != GroupKind::Pointwise && in.root >= 0) return false;
            in.group = gi;
            in.phase = g.kind != GroupKind::Pointwise ? phase : 0;
            g.members.push_back(n);
            return true;
        }
        if (phase || g.kind != GroupKind::Pointwise || n->shape() != g.domain) return false;
        if (k == OpKind::Reduction) {
            g.kind = GroupKind::Reduce;
            g.domain = n->operand(0)->shape();
        } else if (k == OpKind::AxisNormalize) {
            g.kind = GroupKind::RowNormalize;
        } else if (k == OpKind::Matmul) {
            g.kind = GroupKind::Matmul;
        } else {
            return false;
        }
        for (const Node* m : g.members) info_[m].phase = 1;
        for (const Node* m : inlined_)
            for (Ctx& c : info_[m].contexts)
                if (c.group == gi) c.phase = 1;
        g.reducer = n;
        in.group = gi;
        in.phase = 1;
        g.members.push_back(n);
        return true;
    }

    void start_group(const Node* n) {
        G g;
        g.domain = n->shape();
        g.members.push_back(n);
        Info& in = info_[n];
        in.group = static_cast<int>(groups_.size());
        switch (n->info().kind) {
            case OpKind::Elementwise: break;
            case OpKind::Reduction:
                g.kind = GroupKind::Reduce;
                g.domain = n->operand(0)->shape();
                g.reducer = n;
                in.phase = 1;
                break;
            case OpKind::AxisNormalize:
                g.kind = GroupKind::RowNormalize;
                g.reducer = n;
                in.phase = 1;
                break;
            case OpKind::Matmul:
                g.kind = GroupKind::Matmul;
                g.reducer = n;
                in.phase = 1;
                break;
            default:
                throw InternalError(
                    fmt::format("schedule: cannot place a {} node", n->info().name));
        }
        groups_.push_back(std::move(g));
    }

    int new_buffer(BufferKind kind, const Node* n, int slot = -1) {
        Buffer b;
        b.kind = kind;
        b.dtype = n->dtype();
        b.shape = n->shape();
        b.slot = slot;
        b.node = n;
        p_.buffers.push_back(std::move(b));
        return static_cast<int>(p_.buffers.size()) - 1;
    }

    int stored_kind_buffer(const Node* n) {
        Info& in = info_[n];
        if (in.buffer < 0)
            in.buffer = in.root >= 0 ? new_buffer(BufferKind::Output, n, in.root)
                                     : new_buffer(BufferKind::Temp, n);
        return in.buffer;
    }

    bool has_outside_use(const Node* n) const {
        const Info& in = info_.at(n);
        if (in.root >= 0) return true;
        for (const Node* c : in.consumers) {
            const Info& ci = info_.at(c);
            if (ci.view || ci.copy || c->op() == Op::Concat) return true;
            if (ci.inlined) {
                for (Ctx x : ci.contexts)
                    if (x.group != in.group) return true;
            } else if (ci.group != in.group) {
                return true;
            }
        }
        return false;
    }

    void make_buffers() {
        for (const Node* n : order_) {
            Info& in = info_[n];
            if (n->is_variable()) {
                auto pos = std::find(p_.inputs.begin(), p_.inputs.end(), n);
                if (pos != p_.inputs.end()) {
                    in.buffer =
                        new_buffer(BufferKind::Input, n, static_cast<int>(pos - p_.inputs.begin()));
                } else {
                    auto sp = std::find(p_.shared.begin(), p_.shared.end(), n);
                    int slot = static_cast<int>(sp - p_.shared.begin());
                    if (sp == p_.shared.end()) p_.shared.push_back(n);
                    in.buffer = new_buffer(BufferKind::Shared, n, slot);
                }
            } else if (n->op() == Op::Eye) {
                // The identity is made once, here: a constant buffer (its size is static).
                in.buffer = new_buffer(BufferKind::Constant, n);
                p_.buffers[static_cast<std::size_t>(in.buffer)].value = evaluate(Expr(n), {});
            } else if (in.uniform) {
                // A uniform value read by a gemm is filled into a buffer.
                bool stored = false;
                for (const Node* c : in.consumers) stored = stored || c->op() == Op::Matmul;
                if (stored) {
                    in.buffer = new_buffer(BufferKind::Temp, n);
                    add_copy_group(n, Access{in.buffer, {}, n->shape()});
                }
            } else if (in.copy || n->op() == Op::Concat) {
                stored_kind_buffer(n);
            } else if (in.group >= 0 && has_outside_use(n)) {
                stored_kind_buffer(n);
            } else if (in.group >= 0 && n == groups_[in.group].reducer &&
                       groups_[in.group].kind == GroupKind::Matmul) {
                in.buffer = new_buffer(BufferKind::Temp, n);  // the gemm's own result
            }
        }
        // Roots that are leaves or views are copied (or filled) into their output buffer.
        for (const Node* r : roots_) {
            Info& in = info_[r];
            if (in.out_buffer >= 0 || in.group >= 0 || in.copy || r->op() == Op::Concat) continue;
            // (variables, uniform values, eye and views are copied into the output buffer)
            in.out_buffer = new_buffer(BufferKind::Output, r, in.root);
            add_copy_group(r, Access{in.out_buffer, {}, r->shape()});
        }
    }

    void add_copy_group(const Node* src, Access target) {
        G g;
        g.is_copy = true;
        g.domain = target.shape;
        g.copy_source = src;
        g.copy_target = std::move(target);
        groups_.push_back(std::move(g));
    }

    Access access_of(const Node* n) {
        const Info& in = info_.at(n);
        if (in.view) {
            Access a = access_of(n->operand(0));
            a.views.push_back(n);
            a.shape = n->shape();
            return a;
        }
        if (in.buffer < 0)
            throw InternalError(fmt::format("schedule: {} node has no storage", n->info().name));
        return Access{in.buffer, {}, n->shape()};
    }

    struct Builder {
        Group g;
        int gi = -1;                                        // the scheduler's group it builds
        std::map<std::pair<const Node*, int>, int> values;  // (node, phase) -> instr
        std::map<std::pair<const Node*, int>, int> loads;
    };

    int push(Builder& b, Instr in) {
        b.g.instrs.push_back(std::move(in));
        return static_cast<int>(b.g.instrs.size()) - 1;
    }

    // Whether n is computed in group gi (as a member, or inlined there).
    bool computed_in(const Node* n, int gi) const {
        const Info& in = info_.at(n);
        if (!in.inlined) return in.group == gi;
        for (Ctx c : in.contexts)
            if (c.group == gi) return true;
        return false;
    }

    int value_of(Builder& b, const Node* m, int phase) {
        auto v = b.values.find({m, phase});
        if (v != b.values.end()) return v->second;
        auto l = b.loads.find({m, phase});
        if (l != b.loads.end()) return l->second;
        // In a row reduction's later pass, a value of an earlier one: a reduced value is read
        // as it is (it is the same all along the row); another is computed again in this pass.
        if (phase > 0 && b.gi >= 0 && b.g.kind == GroupKind::RowReduce && computed_in(m, b.gi)) {
            const G& gg = groups_[static_cast<std::size_t>(b.gi)];
            if (m == gg.reducer || std::count(gg.stages.begin(), gg.stages.end(), m)) {
                auto r = b.values.find({m, info_.at(m).phase});
                AGNESI_ASSERT(r != b.values.end() && info_.at(m).phase <= phase)
                    << "schedule: a reduced value read before its pass";
                return r->second;
            }
            return emit_member(b, m, phase);
        }
        Instr in;
        in.node = m;
        in.dtype = m->dtype();
        // A uniform value is a constant wherever it is read: its buffer, if any, is what a
        // copy group fills with it for a gemm (reading the buffer there would copy it onto
        // itself).
        if (info_.at(m).uniform) {
            in.kind = InstrKind::Const;
            in.value = uniform_base(Expr(m))->value();
        } else {
            in.kind = InstrKind::Load;
            b.g.inputs.push_back(access_of(m));
            in.input = static_cast<int>(b.g.inputs.size()) - 1;
        }
        int idx = push(b, std::move(in));
        b.loads[{m, phase}] = idx;
        return idx;
    }

    // a / c with a constant c becomes a * (1/c): a vector division costs ten times a product,
    // and the result moves by at most an ulp. Only where 1/c is a normal number, so that
    // overflow, underflow, zeros and infinities keep the quotient's meaning.
    void reciprocal_of_constant(Builder& b, Instr& in) {
        const Instr& c = b.g.instrs[static_cast<std::size_t>(in.args[1])];
        if (c.kind != InstrKind::Const || !is_float(in.compute)) return;
        double r = 0;
        if (in.compute == DType::Float32) {
            float cf = c.value.to_float();
            float rf = 1.0f / cf;
            if (!std::isfinite(cf) || !std::isnormal(rf)) return;
            r = rf;
        } else {
            double cd = c.value.to_double();
            r = 1.0 / cd;
            if (!std::isfinite(cd) || !std::isnormal(r)) return;
        }
        Instr k;
        k.kind = InstrKind::Const;
        k.node = c.node;
        k.dtype = in.compute;
        k.compute = in.compute;
        k.value = Number::from_double(r);
        in.args[1] = push(b, std::move(k));
        in.op = Op::Mul;
    }

    // Emits n computed in `phase`; its operands are computed in the same phase, a reducer's in
    // the one before.
    int emit_member(Builder& b, const Node* n, int phase) {
        Instr in;
        in.node = n;
        in.dtype = n->dtype();
        const OpInfo& info = n->info();
        int operands_phase = info.kind == OpKind::Elementwise ? phase : phase - 1;
        if (info.kind == OpKind::Matmul) {
            b.g.gemm.a = access_of(n->operand(0));
            b.g.gemm.b = access_of(n->operand(1));
            b.g.gemm.out = info_.at(n).buffer;
            in.kind = InstrKind::Load;
            b.g.inputs.push_back(Access{b.g.gemm.out, {}, n->shape()});
            in.input = static_cast<int>(b.g.inputs.size()) - 1;
        } else {
            for (const Node* o : n->operands()) {
                if (in.nargs >= 3) throw InternalError("schedule: more than three operands");
                in.args[in.nargs++] = value_of(b, o, operands_phase);
            }
            if (info.kind == OpKind::Elementwise) {
                in.kind = InstrKind::Apply;
                in.op = n->op();
                in.compute = compute_dtype(n);
                if (in.op == Op::Div) reciprocal_of_constant(b, in);
            } else if (info.kind == OpKind::Reduction) {
                in.kind = InstrKind::Reduce;
                in.op = n->op();
                b.g.axes.clear();
                for (auto a : n->ints()) b.g.axes.push_back(static_cast<int>(a));
                b.g.reduced_shape = n->shape();
            } else {
                in.kind = InstrKind::Normalize;
                in.op = n->op();
            }
        }
        int idx = push(b, std::move(in));
        if (info.kind != OpKind::Elementwise) {
            if (b.g.reduce_at >= 0) b.g.stages.push_back(b.g.reduce_at);
            b.g.reduce_at = b.g.kind == GroupKind::Matmul ? -1 : idx;
        }
        b.values[{n, phase}] = idx;
        return idx;
    }

    void build_groups() {
        // The inlined values each group computes, and in which phase.
        std::vector<std::vector<std::pair<const Node*, int>>> inl(groups_.size());
        for (const Node* n : inlined_)
            for (Ctx c : info_[n].contexts)
                inl[static_cast<std::size_t>(c.group)].push_back({n, c.phase});
        for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
            G& gg = groups_[gi];
            if (!gg.is_copy && gg.members.empty()) continue;  // merged into another group
            Builder b;
            b.gi = static_cast<int>(gi);
            b.g.kind = gg.kind;
            b.g.domain = gg.domain;
            if (gg.is_copy) {
                const Node* s = gg.copy_source;
                int v = value_of(b, s, 0);
                b.g.outputs.push_back({v, gg.copy_target});
                built_.push_back(std::move(b.g));
                continue;
            }
            // Phase k's values, then the k-th reduction (which ends phase k), and so on.
            std::vector<const Node*> reds = gg.stages;
            if (gg.reducer) reds.push_back(gg.reducer);
            std::vector<std::vector<const Node*>> phases(reds.size() + 1);
            auto place = [&](const Node* m, int ph) {
                AGNESI_ASSERT(ph >= 0 && static_cast<std::size_t>(ph) < phases.size())
                    << "schedule: a value in phase " << ph;
                phases[static_cast<std::size_t>(ph)].push_back(m);
            };
            for (const Node* m : gg.members)
                if (std::find(reds.begin(), reds.end(), m) == reds.end()) place(m, info_[m].phase);
            for (auto [m, ph] : inl[gi]) place(m, ph);
            auto by_order = [&](const Node* x, const Node* y) {
                return info_[x].order < info_[y].order;
            };
            for (std::size_t ph = 0; ph < phases.size(); ++ph) {
                std::sort(phases[ph].begin(), phases[ph].end(), by_order);
                for (const Node* m : phases[ph])
                    if (!b.values.count({m, static_cast<int>(ph)}))
                        emit_member(b, m, static_cast<int>(ph));
                if (ph < reds.size()) emit_member(b, reds[ph], static_cast<int>(ph) + 1);
            }
            for (const Node* m : gg.members) {
                const Info& mi = info_[m];
                if (mi.buffer < 0) continue;
                if (m == gg.reducer && gg.kind == GroupKind::Matmul) continue;  // gemm writes it
                AGNESI_ASSERT(static_cast<std::size_t>(mi.phase) + 1 == phases.size())
                    << "schedule: a stored value before the group's last phase";
                b.g.outputs.push_back(
                    {b.values.at({m, mi.phase}), Access{mi.buffer, {}, m->shape()}});
            }
            built_.push_back(std::move(b.g));
        }
        // Reshape copies and concatenations: copy groups writing views of the stored node.
        for (const Node* n : order_) {
            const Info& in = info_[n];
            if (in.copy) {
                const Node* src = n->operand(0);
                Expr back = reshape(Expr(n), src->shape());
                add_built_copy(src, Access{in.buffer, {back.node()}, src->shape()});
            } else if (n->op() == Op::Concat) {
                auto ax = n->ints()[0];
                std::int64_t start = 0;
                for (const Node* part : n->operands()) {
                    Dim len = part->shape()[static_cast<std::size_t>(ax)];
                    if (is_symbolic(len))
                        throw ValueError(fmt::format(
                            "compile: concat along axis {} of a symbolic size ({}) is not "
                            "supported",
                            ax, shape_string(part->shape())));
                    Expr sl = slice(Expr(n), ax, start, start + len);
                    add_built_copy(part, Access{in.buffer, {sl.node()}, part->shape()});
                    start += len;
                }
            }
        }
    }

    void add_built_copy(const Node* src, Access target) {
        Builder b;
        b.g.kind = GroupKind::Pointwise;
        b.g.domain = target.shape;
        int v = value_of(b, src, 0);
        b.g.outputs.push_back({v, std::move(target)});
        built_.push_back(std::move(b.g));
    }

    // Orders groups so that every buffer is written (by all its writers) before it is read.
    void sort_groups() {
        std::size_t ng = built_.size();
        std::map<int, std::vector<std::size_t>> writers;
        for (std::size_t i = 0; i < ng; ++i) {
            for (const auto& o : built_[i].outputs) writers[o.target.buffer].push_back(i);
            if (built_[i].kind == GroupKind::Matmul) writers[built_[i].gemm.out].push_back(i);
        }
        std::vector<std::set<std::size_t>> deps(ng);
        auto need = [&](std::size_t i, int buf) {
            auto w = writers.find(buf);
            if (w == writers.end()) return;
            for (std::size_t j : w->second)
                if (j != i) deps[i].insert(j);
        };
        for (std::size_t i = 0; i < ng; ++i) {
            for (const Access& a : built_[i].inputs) need(i, a.buffer);
            if (built_[i].kind == GroupKind::Matmul) {
                need(i, built_[i].gemm.a.buffer);
                need(i, built_[i].gemm.b.buffer);
            }
        }
        std::vector<std::vector<std::size_t>> users(ng);
        std::vector<std::size_t> pending(ng);
        for (std::size_t i = 0; i < ng; ++i) {
            pending[i] = deps[i].size();
            for (std::size_t j : deps[i]) users[j].push_back(i);
        }
        std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> ready;
        for (std::size_t i = 0; i < ng; ++i)
            if (pending[i] == 0) ready.push(i);
        while (!ready.empty()) {
            std::size_t i = ready.top();
            ready.pop();
            p_.groups.push_back(std::move(built_[i]));
            for (std::size_t u : users[i])
                if (--pending[u] == 0) ready.push(u);
        }
        AGNESI_ASSERT(p_.groups.size() == ng);  // the group graph is acyclic
    }

    std::vector<const Node*> roots_;
    std::vector<const Node*> order_;
    std::unordered_map<const Node*, Info> info_;
    std::vector<const Node*> inlined_;
    std::vector<G> groups_;
    std::vector<Group> built_;
    Program p_;
};

std::vector<std::int64_t> contiguous(const Shape& s) {
    std::vector<std::int64_t> st(s.size());
    std::int64_t acc = 1;
    for (std::size_t d = s.size(); d-- > 0;) {
        st[d] = acc;
        acc *= s[d];
    }
    return st;
}

}  // namespace

std::vector<int> Group::passes() const {
    std::vector<int> r = stages;
    r.push_back(reduce_at);
    return r;
}

int Group::pass_begin(std::size_t k) const {
    return k == 0 ? 0 : passes().at(k - 1) + 1;
}

Shape Group::epilogue_domain() const {
    if (kind != GroupKind::Reduce) return domain;
    Shape s = domain;
    for (int a : axes) s[static_cast<std::size_t>(a)] = 1;
    return s;
}

Program schedule(const std::vector<const Node*>& roots, const std::vector<const Node*>& inputs,
                 int num_outputs, const std::vector<const Node*>& update_targets) {
    return Scheduler(roots, inputs, num_outputs, update_targets).run();
}

Shape concrete(const Shape& s, const DimEnv& env) {
    Shape out = s;
    for (auto& d : out) {
        if (!is_symbolic(d)) continue;
        auto it = env.find(d);
        if (it == env.end())
            throw ValueError(fmt::format("symbolic size '{}' of shape {} is not bound by any input",
                                         dim_name(d), shape_string(s)));
        d = it->second;
    }
    return out;
}

Resolved resolve(const Program& p, const Access& a, const Shape& domain, const DimEnv& env) {
    const Buffer& buf = p.buffers.at(static_cast<std::size_t>(a.buffer));
    Shape shape = concrete(buf.shape, env);
    std::vector<std::int64_t> st = contiguous(shape);
    std::int64_t offset = 0;
    for (const Node* v : a.views) {
        const Ints& ints = v->ints();
        switch (v->op()) {
            case Op::Transpose: {
                Shape s2;
                std::vector<std::int64_t> t2;
                for (auto q : ints) {
                    s2.push_back(shape[static_cast<std::size_t>(q)]);
                    t2.push_back(st[static_cast<std::size_t>(q)]);
                }
                shape = s2;
                st = t2;
                break;
            }
            case Op::BroadcastTo: {
                Shape target = concrete(v->shape(), env);
                std::vector<std::int64_t> t2(target.size(), 0);
                std::size_t lead = target.size() - shape.size();
                for (std::size_t d = 0; d < shape.size(); ++d)
                    t2[lead + d] = (shape[d] == 1 && target[lead + d] != 1) ? 0 : st[d];
                shape = target;
                st = t2;
                break;
            }
            case Op::ExpandDims: {
                auto ax = static_cast<std::size_t>(ints[0]);
                shape.insert(shape.begin() + static_cast<std::ptrdiff_t>(ax), 1);
                st.insert(st.begin() + static_cast<std::ptrdiff_t>(ax), 0);
                break;
            }
            case Op::Squeeze: {
                Shape s2;
                std::vector<std::int64_t> t2;
                for (std::size_t d = 0; d < shape.size(); ++d) {
                    if (std::find(ints.begin(), ints.end(), static_cast<std::int64_t>(d)) !=
                        ints.end())
                        continue;
                    s2.push_back(shape[d]);
                    t2.push_back(st[d]);
                }
                shape = s2;
                st = t2;
                break;
            }
            case Op::Slice: {
                auto ax = static_cast<std::size_t>(ints[0]);
                std::int64_t start = ints[1], stop = ints[2], step = ints[3];
                std::int64_t len = std::max<std::int64_t>(0, (stop - start + step - 1) / step);
                if (len > 0) offset += start * st[ax];
                shape[ax] = len;
                st[ax] *= step;
                break;
            }
            case Op::Reshape: {
                std::int64_t total = numel(shape);
                Shape target = v->shape();
                std::int64_t known = 1;
                int unknown = -1;
                for (std::size_t d = 0; d < target.size(); ++d) {
                    if (is_symbolic(target[d])) {
                        auto it = env.find(target[d]);
                        if (it == env.end()) {
                            unknown = static_cast<int>(d);
                            continue;
                        }
                        target[d] = it->second;
                    }
                    known *= target[d];
                }
                if (unknown >= 0)
                    target[static_cast<std::size_t>(unknown)] = known ? total / known : 0;
                shape = target;
                st = contiguous(shape);
                break;
            }
            default: throw InternalError("resolve: not a view op");
        }
    }
    Resolved r;
    r.offset = offset;
    r.strides.assign(domain.size(), 0);
    if (shape.size() > domain.size())
        throw InternalError(fmt::format("resolve: access of shape {} over a domain of shape {}",
                                        shape_string(shape), shape_string(domain)));
    std::size_t lead = domain.size() - shape.size();
    for (std::size_t d = 0; d < shape.size(); ++d)
        r.strides[lead + d] = (shape[d] == 1 && domain[lead + d] != 1) ? 0 : st[d];
    return r;
}

Resolved resolve_in_group(const Program& p, const Group& g, const Access& a, bool epilogue,
                          const DimEnv& env) {
    if (!epilogue || g.kind != GroupKind::Reduce)
        return resolve(p, a, concrete(epilogue ? g.epilogue_domain() : g.domain, env), env);
    // The access has the reduced logical shape: resolve it there, then spread its strides onto
    // the full-rank epilogue domain (stride 0 on the reduced axes).
    Shape logical = concrete(g.reduced_shape, env);
    Resolved r = resolve(p, a, logical, env);
    std::size_t rank = g.domain.size();
    if (logical.size() == rank) return r;  // keepdims
    Resolved out;
    out.offset = r.offset;
    out.strides.assign(rank, 0);
    std::size_t k = 0;
    for (std::size_t d = 0; d < rank; ++d) {
        if (std::find(g.axes.begin(), g.axes.end(), static_cast<int>(d)) != g.axes.end()) continue;
        out.strides[d] = r.strides[k++];
    }
    return out;
}

GemmLayout gemm_layout(const Program& p, const Group& g, const DimEnv& env) {
    const Access& A = g.gemm.a;
    const Access& B = g.gemm.b;
    Shape sa = concrete(A.shape, env), sb = concrete(B.shape, env);
    Resolved ra = resolve(p, A, sa, env), rb = resolve(p, B, sb, env);
    std::vector<std::int64_t> sta = ra.strides, stb = rb.strides;
    if (sa.size() == 1) {
        sa.insert(sa.begin(), 1);
        sta.insert(sta.begin(), 0);
    }
    if (sb.size() == 1) {
        sb.push_back(1);
        stb.push_back(0);
    }
    GemmLayout l;
    std::size_t na = sa.size() - 2, nb = sb.size() - 2, r = std::max(na, nb);
    l.m = sa[na];
    l.k = sa[na + 1];
    l.n = sb[nb + 1];
    l.a_offset = ra.offset;
    l.b_offset = rb.offset;
    l.a_rs = sta[na];
    l.a_cs = sta[na + 1];
    l.b_rs = stb[nb];
    l.b_cs = stb[nb + 1];
    l.batch.assign(r, 1);
    l.a_batch.assign(r, 0);
    l.b_batch.assign(r, 0);
    for (std::size_t d = 0; d < na; ++d) {
        l.batch[r - na + d] = sa[d];
        if (sa[d] != 1) l.a_batch[r - na + d] = sta[d];
    }
    for (std::size_t d = 0; d < nb; ++d) {
        std::int64_t& size = l.batch[r - nb + d];  // broadcast: a 1 takes the other's (even 0)
        if (size == 1) size = sb[d];
        if (sb[d] != 1) l.b_batch[r - nb + d] = stb[d];
    }
    return l;
}

const char* group_kind_name(GroupKind k) {
    static const char* kinds[] = {"pointwise", "reduce", "row-normalize", "matmul", "row-reduce"};
    return kinds[static_cast<int>(k)];
}

std::string counted(std::size_t n, std::string_view noun) {
    return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

std::string Program::to_string() const {
    std::string s;
    static const char* bkinds[] = {"input", "shared", "constant", "temp", "output"};
    for (std::size_t i = 0; i < buffers.size(); ++i) {
        const Buffer& b = buffers[i];
        s += fmt::format("b{}: {} {}{}", i, bkinds[static_cast<int>(b.kind)], dtype_name(b.dtype),
                         shape_string(b.shape));
        if (b.node && b.node->is_variable()) s += " " + b.node->name();
        s += "\n";
    }
    for (std::size_t i = 0; i < groups.size(); ++i) {
        const Group& g = groups[i];
        s += fmt::format("g{}: {} over {}", i, group_kind_name(g.kind), shape_string(g.domain));
        if (g.kind == GroupKind::Matmul)
            s +=
                fmt::format(" gemm(b{}, b{}) -> b{}", g.gemm.a.buffer, g.gemm.b.buffer, g.gemm.out);
        if (!g.stages.empty()) s += fmt::format(" ({} reductions per row)", g.stages.size() + 1);
        s += fmt::format(", {}, reads", counted(g.instrs.size(), "instr"));
        for (const Access& a : g.inputs) s += fmt::format(" b{}", a.buffer);
        s += ", writes";
        for (const auto& o : g.outputs) s += fmt::format(" b{}", o.target.buffer);
        s += "\n";
    }
    return s;
}

}  // namespace agnesi::jit
