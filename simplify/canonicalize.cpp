// Canonical sums and products.
//
// A maximal tree of +, - and unary - (of one float dtype, through nodes used once) becomes a list
// of coefficient * term pairs and a constant; like terms are collected with exact coefficients,
// terms are ordered structurally and the sum is rebuilt with subtraction for negative terms
// (x - 2*y + 1). A maximal tree of *, / and powers becomes a coefficient and base^exponent
// factors; equal bases add their exponents (x*x*y/x is x*y), and the product is rebuilt as a
// numerator over a denominator. Nodes used more than once stay whole, so sharing survives and
// the pass is linear in the DAG. Exponents multiply through a power only when the outer exponent
// is an integer: (x*y)^2 is x^2*y^2, but sqrt(x*y) stays (it is finite where sqrt(x) is not).
#include <algorithm>
#include <array>
#include <map>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "agnesi/detail/node_map.hpp"
#include "agnesi/error.hpp"
#include "agnesi/traverse.hpp"
#include "simplify/internal.hpp"

namespace agnesi {

namespace {

enum class Kind { None, Sum, Product };

// The position of each node in a list of terms or factors: a scan while the list is short (most
// are), a hash map beyond.
class IndexOf {
  public:
    /// The position of `key`, recording `next` for it if absent; and whether it was absent.
    std::pair<std::size_t, bool> emplace(const Node* key, std::size_t next) {
        if (map_) {
            if (const std::size_t* p = map_->find(key)) return {*p, false};
            (*map_)[key] = next;
            return {next, true};
        }
        for (const auto& [k, v] : small_)
            if (k == key) return {v, false};
        small_.emplace_back(key, next);
        if (small_.size() > 16) {
            map_.emplace(64);
            for (const auto& [k, v] : small_) (*map_)[k] = v;
        }
        return {next, true};
    }

  private:
    boost::container::small_vector<std::pair<const Node*, std::size_t>, 8> small_;
    std::optional<detail::NodeMap<std::size_t>> map_;
};

bool rational_constant(const Node* n) {
    return n->is_constant() && n->value().is_rational();
}

// A number broadcast to a shape acts as the number inside sums and products; the shape comes
// back when the result is fitted to the original node.
const Node* filled_number(const Node* n) {
    if (n->op() == Op::BroadcastTo && rational_constant(n->operand(0))) return n->operand(0);
    return rational_constant(n) ? n : nullptr;
}

Kind kind_of(const Node* n) {
    if (!is_float(n->dtype())) return Kind::None;
    switch (n->op()) {
        case Op::Add:
        case Op::Sub:
        case Op::Neg: return Kind::Sum;
        case Op::Mul:
        case Op::Div:
        case Op::Sqrt: return Kind::Product;
        case Op::Pow: return Kind::Product;
        default: return Kind::None;
    }
}

bool integer_pow(const Node* n) {
    return n->op() == Op::Pow && rational_constant(n->operand(1)) &&
           n->operand(1)->value().is_integer();
}

// Whether `o`, used once by `user`, is flattened into user's sum or product.
bool joins(const Node* user, const Node* o) {
    Kind k = kind_of(o);
    if (k == Kind::None || kind_of(user) != k || user->dtype() != o->dtype()) return false;
    if (k == Kind::Sum) return true;
    return user->op() == Op::Mul || user->op() == Op::Div || integer_pow(user);
}

// Terms order by base, and powers of one base by falling exponent: x^2 + 2*x + 1.
bool term_order(const Expr& a, const Expr& b) {
    auto base = [](const Expr& m) {
        return m.op() == Op::Pow && rational_constant(m->operand(1)) ? m->operand(0) : m.node();
    };
    const Node* ba = base(a);
    const Node* bb = base(b);
    if (int c = structural_compare(ba, bb)) return c < 0;
    static const Number kOne(1);
    const Number& ka = ba == a.node() ? kOne : a->operand(1)->value();
    const Number& kb = bb == b.node() ? kOne : b->operand(1)->value();
    return *exact_compare(ka, kb) > 0;
}

// Sorts nearly sorted ranges fast. A sum rebuilt by an earlier pass comes back in order except
// for the terms a rule rewrote: a longest ordered subsequence stays where it is and the rest are
// sorted alone and merged in, which costs about one comparison a term in order instead of
// log2(terms).
template <class It, class Less>
void sort_nearly_sorted(It first, It last, Less less) {
    using T = typename std::iterator_traits<It>::value_type;
    const auto n = static_cast<std::size_t>(last - first);
    auto at = [&](std::size_t i) -> const auto& {
        return first[static_cast<std::ptrdiff_t>(i)];
    };
    // Patience sorting: tails[k] ends the best ordered subsequence of length k + 1 found so far.
    constexpr std::size_t kNone = SIZE_MAX;
    std::vector<std::size_t> tails, prev(n, kNone);
    std::size_t displaced = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (tails.empty() || !less(at(i), at(tails.back()))) {
            prev[i] = tails.empty() ? kNone : tails.back();
            tails.push_back(i);
            continue;
        }
        if (++displaced * 4 > n) {  // far from sorted: sort it all
            std::sort(first, last, less);
            return;
        }
        auto p = std::upper_bound(tails.begin(), tails.end(), i,
                                  [&](std::size_t x, std::size_t t) { return less(at(x), at(t)); });
        prev[i] = p == tails.begin() ? kNone : *(p - 1);
        *p = i;
    }
    if (tails.size() == n) return;
    std::vector<bool> in_order(n, false);
    for (std::size_t i = tails.back(); i != kNone; i = prev[i]) in_order[i] = true;
    std::vector<T> kept, aside;
    kept.reserve(tails.size());
    for (std::size_t i = 0; i < n; ++i)
        (in_order[i] ? kept : aside).push_back(std::move(first[static_cast<std::ptrdiff_t>(i)]));
    std::sort(aside.begin(), aside.end(), less);
    std::merge(std::make_move_iterator(kept.begin()), std::make_move_iterator(kept.end()),
               std::make_move_iterator(aside.begin()), std::make_move_iterator(aside.end()), first,
               less);
}

// The start of a node's place in structural_compare's order, as numbers compared in sequence:
// one per node in pre-order (rank, height, op, dtype, weak, arity), and after a variable its
// name when short. The sequence stops at the first node whose payload it cannot hold (a number,
// a long name, a shape, attributes) and after kTokens numbers. Two sequences that differ where
// both go decide the order; otherwise structural_compare does.
constexpr std::size_t kTokens = 6;
struct NodeKey {
    std::array<std::uint64_t, kTokens> tokens;
    std::size_t size = 0;
};

NodeKey node_key(const Node* root) {
    NodeKey k;
    boost::container::small_vector<const Node*, 8> stack{root};
    while (!stack.empty() && k.size < kTokens) {
        const Node* x = stack.back();
        stack.pop_back();
        if (x->height() >= (1u << 30) || x->arity() >= (1u << 15)) break;
        std::uint64_t rank = x->is_constant() ? 0 : x->is_variable() ? 1 : 2;
        k.tokens[k.size++] = rank << 62 | std::uint64_t{x->height()} << 32 |
                             std::uint64_t{static_cast<std::uint8_t>(x->op())} << 24 |
                             std::uint64_t{static_cast<std::uint8_t>(x->dtype())} << 16 |
                             std::uint64_t{x->weak()} << 15 | x->arity();
        if (x->is_constant() || x->keepdims() || !x->shape().empty() ||
            (x->has_attributes() && !x->ints().empty()))
            break;
        if (x->is_variable()) {
            const std::string& name = x->name();
            if (name.size() > 7 || name.find('\0') != std::string::npos || k.size == kTokens) break;
            std::uint64_t v = 0;
            for (std::size_t i = 0; i < 7; ++i)
                v = v << 8 | (i < name.size() ? static_cast<unsigned char>(name[i]) : 0u);
            k.tokens[k.size++] = v << 8 | x->assumptions();
        }
        for (std::size_t i = x->arity(); i-- > 0;) stack.push_back(x->operand(i));
    }
    return k;
}

// A term's place in term order, with the start of its base's place read once: most
// comparisons in a long sum end there without reading the nodes again.
struct TermKey {
    NodeKey key;
    const Node* base;
    const Number* exponent;
    std::uint32_t index;
};

TermKey term_key(const Expr& m, std::uint32_t index) {
    static const Number kOne(1);
    bool power = m.op() == Op::Pow && rational_constant(m->operand(1));
    const Node* b = power ? m->operand(0) : m.node();
    return {node_key(b), b, power ? &m->operand(1)->value() : &kOne, index};
}

bool key_order(const TermKey& a, const TermKey& b) {
    if (a.base != b.base) {
        std::size_t n = std::min(a.key.size, b.key.size);
        for (std::size_t i = 0; i < n; ++i)
            if (a.key.tokens[i] != b.key.tokens[i]) return a.key.tokens[i] < b.key.tokens[i];
        if (int c = structural_compare(a.base, b.base)) return c < 0;
    }
    return *exact_compare(*a.exponent, *b.exponent) > 0;
}

// Sorts a sum's terms (of one sign) in term order. Terms order totally, so any sort gives the
// same result.
void sort_terms(std::vector<std::pair<Number, Expr>>::iterator first,
                std::vector<std::pair<Number, Expr>>::iterator last) {
    const auto n = static_cast<std::size_t>(last - first);
    if (n < 64) {
        std::sort(first, last,
                  [](const auto& x, const auto& y) { return term_order(x.second, y.second); });
        return;
    }
    std::vector<TermKey> keys;
    keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        keys.push_back(
            term_key(first[static_cast<std::ptrdiff_t>(i)].second, static_cast<std::uint32_t>(i)));
    sort_nearly_sorted(keys.begin(), keys.end(), key_order);
    std::vector<std::pair<Number, Expr>> sorted;
    sorted.reserve(n);
    for (const TermKey& k : keys) sorted.push_back(std::move(first[k.index]));
    std::move(sorted.begin(), sorted.end(), first);
}

// An exponent: a rational part and, for x^y with y not a number, a symbolic part.
struct Exponent {
    Number r;
    Expr s;
    bool zero() const { return r.is_zero() && !s; }
    bool in_numerator() const { return s || r.sign() > 0; }
    Exponent times(const Number& k) const {
        Exponent out{*exact_mul(r, k), s};
        if (s && !k.is_one()) out.s = literal(k, s->context()) * s;
        return out;
    }
    Exponent plus(const Exponent& o) const {
        Exponent out{*exact_add(r, o.r), s};
        if (o.s) out.s = s ? s + o.s : o.s;
        return out;
    }
};

struct ProductForm {
    Number coef{1};
    // base, exponent (nonzero), ordered; most products have few factors: no allocation then
    boost::container::small_vector<std::pair<Expr, Exponent>, 2> factors;
};

int order(const Expr& a, const Expr& b) {
    return structural_compare(a.node(), b.node());
}

bool same_form(const ProductForm& a, const ProductForm& b) {
    if (!(a.coef == b.coef) || a.factors.size() != b.factors.size()) return false;
    for (std::size_t i = 0; i < a.factors.size(); ++i) {
        const auto& [ba, ea] = a.factors[i];
        const auto& [bb, eb] = b.factors[i];
        if (ba != bb || !(ea.r == eb.r) || ea.s != eb.s) return false;
    }
    return true;
}

// One read a visit made of the canonicalizer's state (besides the immutable DAG), or one product
// form it recorded. A visit is a function of these reads.
// 16 bytes, as logs hold several a node: the kind and flag sit in the low bits of the key
// (nodes are 64-byte aligned), and a read has a value or a form, not both.
class Read {
  public:
    enum Kind : std::uint8_t { Memo, Shared, Interior, Form, Write };
    /// `flag`: Shared, Interior: the answer; Form: read loosely (see form_of). `form`: Form,
    /// Write: 1 + index into the visit's forms, 0: no form. `value`: Memo: the memoized node,
    /// or null.
    Read(Kind kind, bool flag, std::uint32_t form, const Node* key, const Node* value)
        : key_(reinterpret_cast<std::uintptr_t>(key) | kind | (flag ? kFlag : 0)),
          payload_(value ? reinterpret_cast<std::uintptr_t>(value) : form) {}
    Kind kind() const { return static_cast<Kind>(key_ & kKind); }
    bool flag() const { return key_ & kFlag; }
    std::uint32_t form() const { return static_cast<std::uint32_t>(payload_); }
    const Node* key() const { return reinterpret_cast<const Node*>(key_ & ~kTags); }
    const Node* value() const { return reinterpret_cast<const Node*>(payload_); }

  private:
    static constexpr std::uintptr_t kKind = 7, kFlag = 8, kTags = 15;
    static_assert(alignof(Node) > kTags);
    std::uintptr_t key_;
    std::uintptr_t payload_;
};

// What the visits of one run read, back to back: one allocation for a run rather than two a
// visit.
struct VisitLog {
    std::vector<Read, detail::HugePageAllocator<Read>> reads;
    std::vector<std::shared_ptr<const ProductForm>> forms;
};

// A visit of one node as recorded in a run: what it read (ranges of the run's log), and what
// it returned.
struct CachedVisit {
    Expr result;
    std::uint32_t reads_begin = 0, reads_end = 0;
    std::uint32_t forms_begin = 0, forms_end = 0;
};

// A recorded product form, and which recorded visit built it (0: none of this run's).
struct FormEntry {
    std::shared_ptr<const ProductForm> form;
    std::uint32_t owner = 0;
};

// Per node of the DAG: its users, whether it is flattened into its one user, and its result.
// 16 bytes: the maps of these are the largest a run touches.
struct NodeState {
    static constexpr std::uint32_t kNoRecord = UINT32_MAX;
    std::uint32_t uses : 31 = 0;
    std::uint32_t interior : 1 = 0;
    std::uint32_t record = kNoRecord;  // this run's record of the node's visit, if any
    Expr memo;
};
static_assert(sizeof(NodeState) == 16);

}  // namespace

struct detail::CanonicalCache::Impl {
    // Visits of the last run, found through its node states, and of the current run.
    std::vector<CachedVisit> previous, current;
    detail::NodeMap<NodeState> previous_state;
    VisitLog previous_log, current_log;
    // Maps kept for the next run to reuse.
    detail::NodeMap<NodeState> state;
    detail::NodeMap<FormEntry> forms;
    std::size_t nodes = 16;  // the last run's DAG size, to size the next run's maps
};

namespace {

class Canonicalizer {
  public:
    // How many nodes ahead the walks prefetch: enough to cover a miss, few enough to stay
    // in L1 until used.
    static constexpr std::size_t kAhead = 8;

    explicit Canonicalizer(Context& ctx) : ctx_(ctx) {}

    std::vector<Expr> run(const std::vector<Expr>& roots,
                          detail::CanonicalCache::Impl* cache = nullptr) {
        std::vector<const Node*> rs;
        for (const Expr& r : roots) rs.push_back(r.node());
        // The DAG in the order post_order gives, counting uses on the way: one lookup per edge
        // instead of a traversal and then a count. Every node gets a state here, so the lookups
        // below never insert. Maps are sized from the last run's DAG: growing maps of 10^5
        // entries rehashed most of a run's lookups.
        if (cache) {
            state_ = std::move(cache->state);
            forms_ = std::move(cache->forms);
        }
        state_.reset(cache ? cache->nodes : 16);
        std::vector<const Node*> order;
        std::vector<std::pair<const Node*, std::size_t>> stack;  // node, next operand
        for (const Node* r : rs) {
            if (state_[r].uses++ > 0) continue;
            stack.emplace_back(r, 0);
            while (!stack.empty()) {
                auto& [n, i] = stack.back();
                if (i < n->arity()) {
                    const Node* c = n->operand(i++);
                    if (state_[c].uses++ == 0) stack.emplace_back(c, 0);
                } else {
                    order.push_back(n);
                    stack.pop_back();
                }
            }
        }
        if (cache) cache->nodes = order.size();
        forms_.reset(order.size() / 4);
        // Nothing is inserted from here on, so the states stay where they are.
        std::vector<NodeState*> states;
        states.reserve(order.size());
        // The loops over `order` read nodes and map slots in no order the caches can guess:
        // they prefetch ahead (the nodes two steps ahead, their slots one step).
        for (std::size_t k = 0; k < order.size(); ++k) {
            const Node* n = order[k];
            if (k + 2 * kAhead < order.size()) __builtin_prefetch(order[k + 2 * kAhead]);
            if (k + kAhead < order.size())
                for (const Node* o : order[k + kAhead]->operands()) state_.prefetch(o);
            states.push_back(state_.find(n));
            for (const Node* o : n->operands()) {
                NodeState& so = *state_.find(o);
                if (so.uses == 1 && joins(n, o)) so.interior = 1;
            }
        }
        if (cache) {
            cache->current.clear();
            cache->current.reserve(cache->previous.size());
            cache->current_log.reads.clear();
            cache->current_log.forms.clear();
            // Reserved generously: pages are touched only when written, and a log that grows
            // by copying faults in fresh pages for every copy.
            cache->current_log.reads.reserve(
                std::max(2 * cache->previous_log.reads.size(), 8 * order.size()));
            cache->current_log.forms.reserve(
                std::max(2 * cache->previous_log.forms.size(), 2 * order.size()));
            previous_log_ = &cache->previous_log;
        }
        for (std::size_t k = 0; k < order.size(); ++k) {
            const Node* n = order[k];
            if (k + kAhead < order.size()) {
                __builtin_prefetch(states[k + kAhead]);
                if (cache) cache->previous_state.prefetch(order[k + kAhead]);
            }
            NodeState& state = *states[k];
            if (state.interior) continue;
            if (cache) {
                const NodeState* p = cache->previous_state.find(n);
                if (p && p->record != NodeState::kNoRecord && replay(cache->previous[p->record])) {
                    state.memo = cache->previous[p->record].result;
                    state.record = static_cast<std::uint32_t>(cache->current.size());
                    cache->current.push_back(keep(cache->previous[p->record], cache->current_log));
                    continue;
                }
            }
            CachedVisit record;
            if (cache) {
                log_ = &cache->current_log;
                record.reads_begin = static_cast<std::uint32_t>(log_->reads.size());
                record.forms_begin = static_cast<std::uint32_t>(log_->forms.size());
                forms_begin_ = record.forms_begin;
                ++visit_;
            }
            Expr v = visit(n);
            state.memo = v;
            if (cache) {
                record.result = v;
                record.reads_end = static_cast<std::uint32_t>(log_->reads.size());
                record.forms_end = static_cast<std::uint32_t>(log_->forms.size());
                state.record = static_cast<std::uint32_t>(cache->current.size());
                cache->current.push_back(record);
            }
            log_ = nullptr;
        }
        if (cache) {
            std::swap(cache->previous, cache->current);
            std::swap(cache->previous_log, cache->current_log);
        }
        std::vector<Expr> out;
        for (const Node* r : rs) out.push_back(state_.find(r)->memo);
        if (cache) {
            // This run's states find its records in the next run; the last run's map is reused.
            cache->state = std::move(cache->previous_state);
            cache->previous_state = std::move(state_);
            cache->forms = std::move(forms_);
        }
        return out;
    }

    Expr build_sum(const detail::SumForm& f);

  private:
    Expr visit(const Node* n) {
        Kind k = kind_of(n);
        std::optional<Expr> out;
        try {
            if (k == Kind::Sum)
                out = build_sum(flatten_sum(n));
            else if (k == Kind::Product)
                out = build_product(flatten_product(n));
        } catch (const Error&) {
            out.reset();  // a form that does not build (shapes): keep the node as it is
        }
        if (out) {
            if (auto fitted = detail::fit_to(*out, n)) return *fitted;
        }
        std::vector<Expr> ops;
        bool changed = false;
        for (const Node* o : n->operands()) {
            // An operand folded into this node has no value of its own: it stays as it was.
            const Expr* v = memo_find(o);
            ops.push_back(v ? *v : Expr(o));
            changed = changed || ops.back().node() != o;
        }
        return changed ? detail::rebuild_same_type(n, ops) : Expr(n);
    }

    // ---- sums ----

    detail::SumForm flatten_sum(const Node* root) {
        Accumulator acc;
        boost::container::small_vector<std::pair<const Node*, Number>, 16> stack{{root, Number(1)}};
        while (!stack.empty()) {
            auto [m, c] = stack.back();
            stack.pop_back();
            prefetch_terms(stack);
            // Only a node of the sum's own ops can be interior: others need no read.
            if (m == root || (kind_of(m) == Kind::Sum && interior(m))) {
                switch (m->op()) {
                    case Op::Add:
                        stack.emplace_back(m->operand(1), c);
                        stack.emplace_back(m->operand(0), c);
                        continue;
                    case Op::Sub:
                        stack.emplace_back(m->operand(1), -c);
                        stack.emplace_back(m->operand(0), c);
                        continue;
                    case Op::Neg: stack.emplace_back(m->operand(0), -c); continue;
                    default: break;
                }
            }
            Expr t = at(m);
            // A term that became a sum here (a product with a negative coefficient, -(x + z))
            // joins this sum; a sum that was already there is shared and stays whole.
            if (kind_of(m) != Kind::Sum && kind_of(t.node()) == Kind::Sum && !shared(m)) {
                detail::SumForm inner = terms_of(t);
                for (const auto& [k, mono] : inner.terms) add_term(acc, mono, *exact_mul(c, k));
                add_term(acc, literal(inner.constant, ctx_), c);
                continue;
            }
            add_term(acc, t, c);
        }
        return acc.form();
    }

    // A long sum's terms wait on the stack, the next on top: their nodes and states are loaded
    // ahead, and then what a term's visit gave and its form.
    template <class Stack>
    void prefetch_terms(const Stack& stack) {
        if (stack.size() > 2 * kAhead) {
            const Node* far = stack[stack.size() - 1 - 2 * kAhead].first;
            __builtin_prefetch(far);
            state_.prefetch(far);
        }
        if (stack.size() > kAhead) {
            const NodeState* s = state_.find(stack[stack.size() - 1 - kAhead].first);
            if (s && s->memo) {
                __builtin_prefetch(s->memo.node());
                forms_.prefetch(s->memo.node());
            }
        }
    }

    struct Accumulator {
        std::vector<std::pair<Number, Expr>> terms;
        IndexOf index;
        Number constant{0};
        bool exact = true;
        detail::SumForm form() {
            detail::SumForm f;
            f.constant = constant;
            for (auto& [c, m] : terms)
                if (!c.is_zero()) f.terms.emplace_back(c, m);
            return f;
        }
    };

    void add_term(Accumulator& acc, const Expr& t, const Number& c) {
        auto [k, mono] = split(t);
        // c*(1 - y) is the term -c*(y - 1), and so is a shared (1 - y) standing alone: a product
        // that has it as a factor orients it the same way, so every user shares one node.
        if (mono && leads_negative(mono)) {
            mono = negate(mono);
            k = -k;
        }
        auto coef = exact_mul(c, k);
        if (!coef) {  // too large to stay exact: keep the product as its own term
            coef = c;
            mono = t;
        }
        if (!mono) {
            auto s = exact_add(acc.constant, *coef);
            if (s) {
                acc.constant = *s;
                return;
            }
            mono = literal(*coef, ctx_);
            coef = Number(1);
        }
        auto [pos, fresh] = acc.index.emplace(mono.node(), acc.terms.size());
        if (fresh) {
            acc.terms.emplace_back(*coef, mono);
            return;
        }
        auto s = exact_add(acc.terms[pos].first, *coef);
        if (s)
            acc.terms[pos].first = *s;
        else
            acc.terms.emplace_back(*coef, mono);
    }

    // coefficient * monomial; an empty monomial means a rational constant.
    // Without `forms`, by the structure alone: 2*x*y, x*y*2, x/2, -x.
    std::pair<Number, Expr> split(const Expr& t, bool forms = true) {
        if (const Node* c = filled_number(t.node())) return {c->value(), Expr()};
        // Past the cases below, no form reads as {1, t}, the same as a form of t alone.
        bool loose = t.op() != Op::Neg && t.op() != Op::Div && t.op() != Op::Mul;
        if (const ProductForm* it = forms ? form_of(t.node(), loose) : nullptr) {
            const ProductForm& f = *it;
            if (f.coef.is_one()) return {Number(1), t};
            ProductForm unit{Number(1), f.factors};
            return {f.coef, build_product(unit)};
        }
        if (t.op() == Op::Neg) {
            auto [k, m] = split(t.operand(0), forms);
            return {-k, m};
        }
        // Products from earlier passes: x/2, 5*x*y, x*-2.5.
        if (t.op() == Op::Div && rational_constant(t->operand(1)) &&
            !t->operand(1)->value().is_zero()) {
            auto [k, m] = split(t.operand(0), forms);
            if (auto q = exact_div(k, t->operand(1)->value())) return {*q, m};
        }
        if (t.op() == Op::Mul) {
            if (rational_constant(t->operand(1))) {
                auto [k, m] = split(t.operand(0), forms);
                if (auto q = exact_mul(k, t->operand(1)->value())) return {*q, m};
            }
            // The leftmost factor of a chain ((c*a)*b)*d.
            if (!rational_constant(leftmost(t.node()))) return {Number(1), t};
            boost::container::small_vector<Expr, 4> right;
            Expr left = t;
            while (left.op() == Op::Mul) {
                right.push_back(left.operand(1));
                left = left.operand(0);
            }
            if (rational_constant(left.node()) && !right.empty()) {
                Expr rest = right.back();
                for (std::size_t i = right.size() - 1; i-- > 0;) rest = rest * right[i];
                auto [k, m] = split(rest, forms);
                if (auto q = exact_mul(k, left->value())) return {*q, m};
            }
        }
        return {Number(1), t};
    }

    // A sum's terms with their full coefficients (2*x/3 is x with 2/3).
    detail::SumForm terms_of(const Expr& x) {
        detail::SumForm f = detail::sum_form(x), out;
        out.constant = f.constant;
        for (const auto& [c, t] : f.terms) {
            auto [k, m] = split(t);
            auto ck = exact_mul(c, k);
            if (!ck) {
                out.terms.emplace_back(c, t);
            } else if (!m) {
                if (auto s = exact_add(out.constant, *ck))
                    out.constant = *s;
                else
                    out.terms.emplace_back(c, t);
            } else {
                out.terms.emplace_back(*ck, m);
            }
        }
        return out;
    }

    // ---- products ----

    ProductForm flatten_product(const Node* root) {
        boost::container::small_vector<std::pair<Expr, Exponent>, 4> factors;
        IndexOf index;
        Number coef{1};
        auto add_factor = [&](Expr base, const Exponent& e) {
            // A sum factor to an integer power has one orientation: (z - y) is -(y - z), so
            // (y - z)/(z - y) meets as one base.
            if (!e.s && e.r.is_integer() && leads_negative(base)) {
                base = negate(base);
                coef = *exact_mul(coef, *exact_pow(Number(-1), e.r));
            }
            if (const Node* c = filled_number(base.node()); c && !e.s) {
                if (auto p = exact_pow(c->value(), e.r)) {
                    if (auto c = exact_mul(coef, *p)) {
                        coef = *c;
                        return;
                    }
                }
            }
            auto [pos, fresh] = index.emplace(base.node(), factors.size());
            if (fresh) {
                factors.emplace_back(base, e);
                return;
            }
            auto& slot = factors[pos].second;
            if (exact_add(slot.r, e.r))
                slot = slot.plus(e);
            else
                factors.emplace_back(base, e);
        };
        boost::container::small_vector<std::pair<const Node*, Number>, 8> stack{{root, Number(1)}};
        while (!stack.empty()) {
            auto [m, e] = stack.back();
            stack.pop_back();
            if (m == root || (kind_of(m) == Kind::Product && interior(m))) {
                switch (m->op()) {
                    case Op::Mul:
                        stack.emplace_back(m->operand(1), e);
                        stack.emplace_back(m->operand(0), e);
                        continue;
                    case Op::Div:
                        stack.emplace_back(m->operand(1), -e);
                        stack.emplace_back(m->operand(0), e);
                        continue;
                    case Op::Sqrt:
                        add_atom(at(m->operand(0)),
                                 Exponent{*exact_mul(e, Number::rational(1, 2)), {}}, add_factor,
                                 coef, m->operand(0));
                        continue;
                    case Op::Pow: {
                        const Node* b = m->operand(0);
                        const Node* y = m->operand(1);
                        if (!rational_constant(y)) {
                            // An exponent that sums to a number is a number: x^(2*3) is x^6.
                            detail::SumForm ey = terms_of(at(y));
                            if (!ey.terms.empty()) {
                                add_factor(at(b), Exponent{Number(0), at(y)}.times(e));
                                continue;
                            }
                            auto k = exact_mul(e, ey.constant);
                            if (!k) throw ValueError("exponent too large to stay exact");
                            add_atom(at(b), Exponent{*k, {}}, add_factor, coef, b);
                            continue;
                        }
                        auto k = exact_mul(e, y->value());
                        if (!k) throw ValueError("exponent too large to stay exact");
                        if (y->value().is_integer() && interior(b))
                            stack.emplace_back(b, *k);
                        else
                            add_atom(at(b), Exponent{*k, {}}, add_factor, coef, b);
                        continue;
                    }
                    default: break;
                }
            }
            add_atom(at(m), Exponent{e, {}}, add_factor, coef, m);
        }
        ProductForm f;
        f.coef = coef;
        for (auto& [b, e] : factors) {
            if (e.s) {
                // A symbolic exponent in normal form; one that sums to a number becomes one.
                detail::SumForm ef = terms_of(e.s);
                auto r = exact_add(e.r, ef.constant);
                if (!r) throw ValueError("exponent too large to stay exact");
                ef.constant = Number(0);
                e.r = *r;
                e.s = ef.terms.empty() ? Expr() : build_sum(ef);
            }
            if (e.zero()) continue;
            // sqrt(3)*sqrt(3): a number whose exponents add up to an integer joins the coefficient.
            if (rational_constant(b.node()) && !e.s && e.r.is_integer())
                if (auto p = exact_pow(b->value(), e.r))
                    if (auto c = exact_mul(f.coef, *p)) {
                        f.coef = *c;
                        continue;
                    }
            f.factors.emplace_back(b, e);
        }
        std::sort(f.factors.begin(), f.factors.end(),
                  [](const auto& a, const auto& b) { return order(a.first, b.first) < 0; });
        return f;
    }

    // An already canonical operand (the result for `src`): its own factors join when the
    // exponent is an integer, unless src is shared: copying a shared product's factors into
    // every user would grow the DAG quadratically (the adjoints of a deep chain are such
    // products). Sharing is read only where it matters, so that a replay does not miss on it.
    template <class AddFactor>
    void add_atom(const Expr& a, const Exponent& e, AddFactor& add_factor, Number& coef,
                  const Node* src) {
        if (!e.s && e.r.is_integer()) {
            if (a.op() == Op::Neg) {
                coef = *exact_mul(coef, *exact_pow(Number(-1), e.r));
                add_atom(a.operand(0), e, add_factor, coef, src);
                return;
            }
            const ProductForm* it = form_of(a.node(), true);
            // A product of one factor (2*x) is copied even when shared: a copy adds at most one
            // node, and the product built begins with the shared node when its factor comes
            // first, so the next run sees the same sharing.
            if (it && !alone(*it, a.node()) && (it->factors.size() == 1 || !shared(src))) {
                const ProductForm f = *it;
                auto p = exact_pow(f.coef, e.r);
                auto c = p ? exact_mul(coef, *p) : std::nullopt;
                if (c) {
                    coef = *c;
                    for (const auto& [b, k] : f.factors) add_factor(b, k.times(e.r));
                    return;
                }
            }
        }
        add_factor(a, e);
    }

    // Whether a sum's leading term (in term order) has a negative coefficient: the orientation
    // of a sum as a factor or term. It is read from the structure alone, one node at a time
    // (the lead of x + y is the lesser of the leads of x and y), so the answer for a node is
    // computed once and is the same in every visit and run: collecting the terms of every
    // sum nested in it, in every visit, made the gradients of deep residual chains cubic.
    // A sum of more than kOrientTerms terms is left as it is: turning it builds all its terms
    // again, and long sums nest in gradients (the adjoint of a residual chain holds the next
    // one), which made turning them quadratic.
    bool leads_negative(const Expr& b) {
        if (!(b.op() == Op::Add || b.op() == Op::Sub || b.op() == Op::Neg)) return false;
        const Lead& lead = lead_of(b.node());
        return lead.sign < 0 && lead.terms <= kOrientTerms;
    }

    static constexpr std::uint32_t kOrientTerms = 32;
    struct Lead {
        Expr mono;                // the least monomial, in term order
        int sign = 0;             // the sign of its coefficient; 0: no term but numbers
        std::uint32_t terms = 0;  // terms counted with repeats, up to kOrientTerms + 1
    };

    // The parts of a node as a sum, with their signs: x - y is x and -y, 2*(x + y) is x + y.
    static int sum_parts(const Node* m, std::array<std::pair<const Node*, int>, 2>& parts) {
        if (!is_float(m->dtype())) return 0;
        switch (m->op()) {
            case Op::Add: parts = {{{m->operand(0), 1}, {m->operand(1), 1}}}; return 2;
            case Op::Sub: parts = {{{m->operand(0), 1}, {m->operand(1), -1}}}; return 2;
            case Op::Neg: parts[0] = {m->operand(0), -1}; return 1;
            case Op::Mul:
                if (rational_constant(m->operand(0)) && !m->operand(0)->value().is_zero()) {
                    parts[0] = {m->operand(1), m->operand(0)->value().sign()};
                    return 1;
                }
                return 0;
            default: return 0;
        }
    }

    // The first factor of a chain of products ((c*a)*b)*d, kept for every node of the chain:
    // walking the chain from each of its nodes is quadratic in its length.
    const Node* leftmost(const Node* t) {
        boost::container::small_vector<const Node*, 8> path;
        const Node* m = t;
        const Node* found = nullptr;
        while (m->op() == Op::Mul) {
            if (const Node* const* l = leftmost_.find(m)) {
                found = *l;
                break;
            }
            path.push_back(m);
            m = m->operand(0);
        }
        if (!found) found = m;
        for (const Node* p : path) leftmost_.insert(p, found);
        return found;
    }

    const Lead& lead_of(const Node* b) {
        if (const Lead* l = leads_.find(b)) return *l;
        // Post-order without recursion: sums nest as deep as the DAG.
        boost::container::small_vector<std::pair<const Node*, bool>, 16> stack{{b, false}};
        std::array<std::pair<const Node*, int>, 2> parts;
        while (!stack.empty()) {
            auto [m, expanded] = stack.back();
            if (leads_.find(m)) {
                stack.pop_back();
                continue;
            }
            int n = sum_parts(m, parts);
            if (n > 0 && !expanded) {
                stack.back().second = true;
                for (int i = 0; i < n; ++i)
                    if (!leads_.find(parts[i].first)) stack.emplace_back(parts[i].first, false);
                continue;
            }
            stack.pop_back();
            Lead out;
            if (n == 0) {
                auto [k, mono] = split(Expr(m), false);
                if (mono && !k.is_zero()) out = {mono, k.sign(), 1};
            }
            std::uint32_t terms = out.terms;
            for (int i = 0; i < n; ++i) {
                Lead part = *leads_.find(parts[i].first);
                terms = std::min(terms + part.terms, kOrientTerms + 1);
                part.sign *= parts[i].second;
                if (part.sign != 0 && (out.sign == 0 || term_order(part.mono, out.mono)))
                    out = part;
            }
            out.terms = terms;
            leads_.insert(m, out);
        }
        return *leads_.find(b);
    }

    // A sum factor to an integer power has one orientation, its leading term positive:
    // 2*(1 - y) is -2*(y - 1), so that (y - 1)/(1 - y) meets as one base.
    // Copies the form only when a factor turns (most need not).
    std::optional<ProductForm> oriented(const ProductForm& in) {
        std::optional<ProductForm> out;
        for (std::size_t i = 0; i < in.factors.size(); ++i) {
            const auto& [b, e] = in.factors[i];
            if (e.s || !e.r.is_integer() || !leads_negative(b)) continue;
            if (!out) out = in;
            out->factors[i].first = negate(b);
            out->coef = *exact_mul(out->coef, *exact_pow(Number(-1), e.r));
        }
        if (out)
            std::sort(out->factors.begin(), out->factors.end(),
                      [](const auto& x, const auto& y) { return order(x.first, y.first) < 0; });
        return out;
    }

    // -x, with a sum negated term by term (a negated sum is not a normal form).
    Expr negate(const Expr& x) {
        if (x.op() != Op::Add && x.op() != Op::Sub && x.op() != Op::Neg) return -x;
        detail::SumForm f = terms_of(x);
        for (auto& [c, m] : f.terms) c = -c;
        f.constant = -f.constant;
        return build_sum(f);
    }

    Expr power(const Expr& base, const Exponent& k) {
        if (k.s) {
            if (k.r.is_zero()) return pow(base, k.s);
            detail::SumForm f = terms_of(k.s);
            f.constant = *exact_add(f.constant, k.r);
            return pow(base, build_sum(f));
        }
        if (k.r.is_one()) return base;
        if (k.r == Number::rational(1, 2)) return sqrt(base);
        return pow(base, literal(k.r, ctx_));
    }

  public:
    Expr build_product(const ProductForm& given) {
        if (given.coef.is_zero()) return literal(Number(0), ctx_);
        std::optional<ProductForm> turned = oriented(given);
        const ProductForm& form = turned ? *turned : given;
        const auto& factors = form.factors;
        Number coef = form.coef;
        auto is_sum = [](const Expr& b) {
            return b.op() == Op::Add || b.op() == Op::Sub || b.op() == Op::Neg;
        };
        // A factor that prints as a sum: a sum base to the first power.
        auto sum_factor = [&](const auto& fe) {
            return is_sum(fe.first) && !fe.second.s && fe.second.r.is_one();
        };
        auto plain = [&](const auto& fe) { return fe.second.in_numerator() && !sum_factor(fe); };
        // -x*y reads better than -1*x*y: a coefficient of -1 negates a factor that is not a sum.
        // A lone sum is negated term by term (z - y); a product of sums is negated whole.
        bool negate_first = false, negate_all = false;
        if (coef == Number(-1)) {
            if (std::any_of(factors.begin(), factors.end(), plain))
                negate_first = true;
            else if (factors.size() == 1 && sum_factor(factors[0]))
                return negate(factors[0].first);
            else
                negate_all = true, coef = Number(1);
        }
        Expr num, den;
        auto times = [](Expr& acc, const Expr& x) { acc = acc ? acc * x : x; };
        Number p = coef.numerator(), q = coef.denominator();
        // A fraction of small integers reads as one (3*x/4, x/(2*y)). Any other coefficient,
        // a decimal such as 0.7071067811865476 above all, stays one number: its numerator
        // times x would overflow where the product does not, and would print unreadably.
        auto within = [](const Number& k, int bound) {
            auto hi = exact_compare(k, Number(bound)), lo = exact_compare(k, Number(-bound));
            return hi && *hi <= 0 && lo && *lo >= 0;
        };
        if (!q.is_one() && !(within(p, 16) && within(q, 1024))) p = coef, q = Number(1);
        bool has_num = std::any_of(factors.begin(), factors.end(),
                                   [](const auto& fe) { return fe.second.in_numerator(); });
        if (!has_num || !(p.is_one() || negate_first)) num = literal(p, ctx_);
        for (const auto& fe : factors) {
            if (!fe.second.in_numerator()) continue;
            Expr x = power(fe.first, fe.second);
            if (negate_first && plain(fe)) x = -x, negate_first = false;
            times(num, x);
        }
        if (!q.is_one()) den = literal(q, ctx_);
        for (const auto& [b, e] : factors)
            if (!e.in_numerator()) times(den, power(b, e.times(Number(-1))));
        Expr out = den ? num / den : num;
        if (negate_all) {
            // The product inside the negation has a form too: a later term or factor that is
            // this product copies its factors rather than nesting it.
            ProductForm positive = form;
            positive.coef = Number(1);
            record_form(out.node(), positive);
            return -out;
        }
        record_form(out.node(), form);
        return out;
    }

  private:
    Context& ctx_;

    // Everything a visit reads besides the immutable DAG goes through these accessors, which
    // log the read while a visit is being recorded for the cache.
    void note(Read::Kind k, const Node* key, const Node* value, bool flag = false) {
        if (log_) log_->reads.emplace_back(k, flag, 0, key, value);
    }
    const Expr* memo_lookup(const Node* n) const {
        const NodeState* s = state_.find(n);
        return s && s->memo ? &s->memo : nullptr;
    }
    Expr at(const Node* n) {
        const Expr* v = memo_lookup(n);
        note(Read::Memo, n, v->node());
        return *v;
    }
    const Expr* memo_find(const Node* n) {
        const Expr* v = memo_lookup(n);
        note(Read::Memo, n, v ? v->node() : nullptr);
        return v;
    }
    bool is_shared(const Node* n) const {
        const NodeState* s = state_.find(n);
        return s && s->uses > 1;
    }
    bool is_interior(const Node* n) const {
        const NodeState* s = state_.find(n);
        return s && s->interior;
    }
    bool shared(const Node* n) {
        bool s = is_shared(n);
        note(Read::Shared, n, nullptr, s);
        return s;
    }
    bool interior(const Node* n) {
        bool i = is_interior(n);
        note(Read::Interior, n, nullptr, i);
        return i;
    }
    static bool may_have_form(const Node* n) {
        switch (n->op()) {
            case Op::Mul:
            case Op::Div:
            case Op::Sqrt:
            case Op::Pow:
            case Op::Neg:
            case Op::Constant: return true;
            default: return false;
        }
    }
    // Whether a form says only that n is its own single factor: {1, n^1}.
    static bool alone(const ProductForm& f, const Node* n) {
        if (!f.coef.is_one() || f.factors.size() != 1) return false;
        const auto& [b, e] = f.factors[0];
        return b.node() == n && !e.s && e.r.is_one();
    }
    /// `loose`: the caller treats a form of n alone like no form. A node built as a product
    /// of one factor (x*y/y is y) records such a form, and the next run, which no longer
    /// builds it, would otherwise miss every recorded visit that read one.
    const ProductForm* form_of(const Node* n, bool loose) {
        const FormEntry* entry = forms_.find(n);
        const std::shared_ptr<const ProductForm>* f = entry ? &entry->form : nullptr;
        // A form this visit recorded itself is part of the visit, not something it depends on.
        if (log_ && !(entry && entry->owner == visit_)) {
            if (loose && (!f || alone(**f, n))) {
                // Only a product, power, negation or number is built with a form other than
                // itself alone (see build_product): a loose read of anything else always holds.
                if (may_have_form(n)) log_->reads.push_back(Read{Read::Form, true, 0, n, nullptr});
            } else {
                std::uint32_t slot = 0;
                if (f) {
                    log_->forms.push_back(*f);  // shared, not copied: forms are immutable
                    slot = static_cast<std::uint32_t>(log_->forms.size()) - forms_begin_;
                }
                log_->reads.push_back(Read{Read::Form, false, slot, n, nullptr});
            }
        }
        return f ? f->get() : nullptr;
    }
    void record_form(const Node* n, const ProductForm& f) {
        FormEntry& entry = forms_[n];
        if (entry.form) {
            // The first form recorded for a node stays. The visit still logs its own: where a
            // replay finds no form recorded before it, it must record this one.
            if (log_ && entry.owner != visit_) {
                log_->forms.push_back(same_form(*entry.form, f)
                                          ? entry.form
                                          : std::make_shared<const ProductForm>(f));
                log_->reads.push_back(Read{
                    Read::Write, false,
                    static_cast<std::uint32_t>(log_->forms.size()) - forms_begin_, n, nullptr});
            }
            return;
        }
        entry.form = std::make_shared<const ProductForm>(f);
        if (log_) {
            entry.owner = visit_;
            log_->forms.push_back(entry.form);
            log_->reads.push_back(
                Read{Read::Write, false,
                     static_cast<std::uint32_t>(log_->forms.size()) - forms_begin_, n, nullptr});
        }
    }

    // Whether a recorded visit would read the same state now; if so, its writes are applied and
    // its result stands for the visit.
    bool replay(const CachedVisit& c) {
        const VisitLog& log = *previous_log_;
        auto reads = std::span(log.reads).subspan(c.reads_begin, c.reads_end - c.reads_begin);
        auto form = [&](const Read& r) -> const auto& {
            return log.forms[c.forms_begin + r.form() - 1];
        };
        for (const Read& r : reads) {
            if (r.kind() == Read::Form || r.kind() == Read::Write)
                forms_.prefetch(r.key());
            else
                state_.prefetch(r.key());
        }
        for (const Read& r : reads) {
            switch (r.kind()) {
                case Read::Memo: {
                    const Expr* v = memo_lookup(r.key());
                    if ((v ? v->node() : nullptr) != r.value()) return false;
                    break;
                }
                case Read::Shared:
                    if (is_shared(r.key()) != r.flag()) return false;
                    break;
                case Read::Interior:
                    if (is_interior(r.key()) != r.flag()) return false;
                    break;
                case Read::Form: {
                    const FormEntry* entry = forms_.find(r.key());
                    const std::shared_ptr<const ProductForm>* f = entry ? &entry->form : nullptr;
                    if (r.flag()) {
                        if (f && !alone(**f, r.key())) return false;
                        break;
                    }
                    if (!f != !r.form()) return false;
                    if (f && *f != form(r) && !same_form(**f, *form(r))) return false;
                    break;
                }
                case Read::Write: {
                    // A form already there replays if it is the one the visit recorded.
                    const FormEntry* entry = forms_.find(r.key());
                    const std::shared_ptr<const ProductForm>* f = entry ? &entry->form : nullptr;
                    if (f && !same_form(**f, *form(r))) return false;
                    break;
                }
            }
        }
        for (const Read& r : reads)
            if (r.kind() == Read::Write) forms_.insert(r.key(), FormEntry{form(r), 0});
        return true;
    }
    // A replayed visit's record, moved to this run's log.
    CachedVisit keep(const CachedVisit& c, VisitLog& to) {
        VisitLog& from = *previous_log_;
        CachedVisit out = c;
        out.reads_begin = static_cast<std::uint32_t>(to.reads.size());
        out.forms_begin = static_cast<std::uint32_t>(to.forms.size());
        to.reads.insert(to.reads.end(), from.reads.begin() + c.reads_begin,
                        from.reads.begin() + c.reads_end);
        to.forms.insert(to.forms.end(), std::make_move_iterator(from.forms.begin() + c.forms_begin),
                        std::make_move_iterator(from.forms.begin() + c.forms_end));
        out.reads_end = static_cast<std::uint32_t>(to.reads.size());
        out.forms_end = static_cast<std::uint32_t>(to.forms.size());
        return out;
    }

    detail::NodeMap<NodeState> state_;
    detail::NodeMap<FormEntry> forms_;

    detail::NodeMap<Lead> leads_;            // leads of sums, by node
    detail::NodeMap<const Node*> leftmost_;  // first factors of product chains
    VisitLog* log_ = nullptr;                // where the visit being recorded, if any, goes
    std::uint32_t forms_begin_ = 0;          // the recorded visit's first form in log_
    VisitLog* previous_log_ = nullptr;
    std::uint32_t visit_ = 0;
};

bool is_square_of(const Expr& m, Op fn, const Node*& arg) {
    if (m.op() != Op::Pow || !m.operand(1)->is_constant() || !(m.operand(1)->value() == Number(2)))
        return false;
    if (m.operand(0).op() != fn) return false;
    arg = m.operand(0)->operand(0);
    return true;
}

// sin(u)^2 + cos(u)^2 = 1 and cosh(u)^2 - sinh(u)^2 = 1, with equal coefficients.
void pythagoras(detail::SumForm& f) {
    for (auto [a, b, sign] :
         {std::tuple{Op::Sin, Op::Cos, 1}, std::tuple{Op::Cosh, Op::Sinh, -1}}) {
        for (std::size_t i = 0; i < f.terms.size(); ++i) {
            const Node* u = nullptr;
            if (!is_square_of(f.terms[i].second, a, u)) continue;
            for (std::size_t j = 0; j < f.terms.size(); ++j) {
                const Node* v = nullptr;
                if (j == i || !is_square_of(f.terms[j].second, b, v) || v != u) continue;
                Number ci = f.terms[i].first, cj = f.terms[j].first;
                if (!(sign > 0 ? ci == cj : ci == -cj)) continue;
                f.constant = *exact_add(f.constant, ci);
                f.terms[i].first = Number(0);
                f.terms[j].first = Number(0);
            }
        }
    }
    std::erase_if(f.terms, [](const auto& t) { return t.first.is_zero(); });
}

}  // namespace

Expr Canonicalizer::build_sum(const detail::SumForm& form) {
    detail::SumForm f = form;
    pythagoras(f);
    // A sum term with a coefficient other than 1 or -1 is built as a product, which orients the
    // sum (2*(1 - y) is -2*(y - 1)): oriented here, the term also goes with the terms of its sign.
    for (auto& [c, m] : f.terms) {
        if ((m.op() == Op::Add || m.op() == Op::Sub) && !c.is_one() && !(c == Number(-1)) &&
            leads_negative(m)) {
            m = negate(m);
            c = -c;
        }
    }
    // y - x rather than -x + y: positive terms lead, each group in term order.
    auto negative = std::stable_partition(f.terms.begin(), f.terms.end(),
                                          [](const auto& t) { return t.first.sign() > 0; });
    sort_terms(f.terms.begin(), negative);
    sort_terms(negative, f.terms.end());
    auto term = [&](const Number& c, const Expr& m) -> Expr {
        if (c.is_one()) return m;
        // Only -1 builds differently with and without a form of m alone: -m, or m negated.
        if (const ProductForm* it = form_of(m.node(), !(c == Number(-1)))) {
            ProductForm g = *it;
            if (auto k = exact_mul(g.coef, c)) {
                g.coef = *k;
                return build_product(g);
            }
        }
        if (c == Number(-1)) return -m;
        return build_product(ProductForm{c, {{m, Exponent{Number(1), {}}}}});
    };
    Expr acc;
    // 1 - y rather than -y + 1: a positive constant leads when every term is negative.
    bool constant_first =
        f.constant.sign() > 0 && !f.terms.empty() && f.terms.front().first.sign() < 0;
    if (constant_first) acc = literal(f.constant, ctx_);
    for (const auto& [c, m] : f.terms) {
        if (!acc)
            acc = term(c, m);
        else if (c.sign() < 0)
            acc = acc - term(-c, m);
        else
            acc = acc + term(c, m);
    }
    if (!acc) return literal(f.constant, ctx_);
    if (f.constant.sign() > 0 && !constant_first) acc = acc + literal(f.constant, ctx_);
    if (f.constant.sign() < 0) acc = acc - literal(-f.constant, ctx_);
    return acc;
}

Expr canonicalize(const Expr& e) {
    Canonicalizer c(e->context());
    return c.run({e})[0];
}

namespace detail {

CanonicalCache::CanonicalCache() : impl_(std::make_unique<Impl>()) {}
CanonicalCache::~CanonicalCache() = default;
std::size_t CanonicalCache::dag_size() const {
    return impl_->nodes;
}

Expr canonicalize(const Expr& e, CanonicalCache& cache) {
    Canonicalizer c(e->context());
    return c.run({e}, cache.impl_.get())[0];
}

SumForm sum_form(const Expr& e) {
    SumForm f;
    boost::container::small_vector<std::pair<Expr, Number>, 8> stack{{e, Number(1)}};
    IndexOf index;
    while (!stack.empty()) {
        auto [m, c] = stack.back();
        stack.pop_back();
        switch (m.op()) {
            case Op::Add:
                stack.emplace_back(m.operand(1), c);
                stack.emplace_back(m.operand(0), c);
                continue;
            case Op::Sub:
                stack.emplace_back(m.operand(1), -c);
                stack.emplace_back(m.operand(0), c);
                continue;
            case Op::Neg: stack.emplace_back(m.operand(0), -c); continue;
            default: break;
        }
        if (rational_constant(m.node())) {
            if (auto s = exact_mul(c, m->value()))
                if (auto t = exact_add(f.constant, *s)) {
                    f.constant = *t;
                    continue;
                }
        }
        Number k = c;
        Expr mono = m;
        // 2*x is the term x with coefficient 2 (and 2*(x + y) the terms 2*x and 2*y).
        if (m.op() == Op::Mul && rational_constant(m->operand(0))) {
            if (auto p = exact_mul(c, m->operand(0)->value())) {
                stack.emplace_back(m.operand(1), *p);
                continue;
            }
        }
        if (rational_constant(mono.node())) {  // 2*3 is a number
            if (auto s = exact_mul(k, mono->value()))
                if (auto t = exact_add(f.constant, *s)) {
                    f.constant = *t;
                    continue;
                }
        }
        auto [pos, fresh] = index.emplace(mono.node(), f.terms.size());
        if (fresh)
            f.terms.emplace_back(k, mono);
        else if (auto s = exact_add(f.terms[pos].first, k))
            f.terms[pos].first = *s;
    }
    std::erase_if(f.terms, [](const auto& t) { return t.first.is_zero(); });
    return f;
}

Expr build_sum(const SumForm& f, Context& ctx) {
    Canonicalizer c(ctx);
    return c.build_sum(f);
}

}  // namespace detail

}  // namespace agnesi
