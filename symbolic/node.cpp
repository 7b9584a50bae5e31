#include "agnesi/node.hpp"

#include <boost/functional/hash.hpp>
#include <string_view>
#include <vector>

#include "agnesi/context.hpp"
#include "agnesi/error.hpp"

namespace agnesi {

// Simplify's large DAGs are bound by memory traffic: a node takes four cache lines, not five.
static_assert(sizeof(Node) <= 256, "a node outgrew four cache lines");

std::size_t structural_hash(const NodeDesc& d) {
    std::size_t h = static_cast<std::size_t>(d.op) + 0x51ed27;
    boost::hash_combine(h, static_cast<int>(d.dtype));
    boost::hash_combine(h, d.weak);
    boost::hash_combine(h, boost::hash_range(d.shape.begin(), d.shape.end()));
    for (const Node* o : d.operands) boost::hash_combine(h, o->hash());
    if (d.op == Op::Constant) boost::hash_combine(h, d.value.hash());
    if (d.op == Op::Variable) {
        boost::hash_combine(h, boost::hash_range(d.name.begin(), d.name.end()));
        boost::hash_combine(h, d.assume);
    }
    boost::hash_combine(h, boost::hash_range(d.ints.begin(), d.ints.end()));
    boost::hash_combine(h, d.keepdims);
    return h;
}

bool same_content(const Node& n, const NodeDesc& d) {
    // The fields in the node's first cache line first; a payload only where the op has one.
    if (!(n.op() == d.op && n.dtype() == d.dtype && n.weak() == d.weak &&
          n.keepdims() == d.keepdims && n.operands() == d.operands))
        return false;
    // An elementwise node is its op, dtype and operands: its shape is theirs broadcast, and it
    // has no attributes (the constructor checks). Its other lines are not read: finding a node
    // that exists is most of what interning does while simplifying, and each line is a miss.
    if (op_info(d.op).kind == OpKind::Elementwise) return true;
    return n.shape() == d.shape && n.ints() == d.ints &&
           (d.op != Op::Constant || n.value() == d.value) && n.name() == d.name &&
           n.assumptions() == d.assume;
}

Node::Node(NodeDesc&& d, std::size_t hash, Context* ctx)
    : op_(d.op),
      dtype_(d.dtype),
      weak_(d.weak),
      keepdims_(d.keepdims),
      height_(0),
      hash_(hash),
      operands_(std::move(d.operands)),
      ctx_(ctx),
      assume_(d.assume),
      shape_(std::move(d.shape)),
      value_(std::move(d.value)),
      name_(std::move(d.name)),
      ints_(std::move(d.ints)) {
    for (const Node* o : operands_) height_ = std::max(height_, o->height() + 1);
    AGNESI_ASSERT(has_attributes() || (ints_.empty() && !keepdims_))
        << "a node of " << info().name << " with attributes";
    AGNESI_ASSERT(info().kind != OpKind::Elementwise || (name_.empty() && assume_ == kNone))
        << "an elementwise node with a name: " << info().name;
}

namespace {
// Compares the payload of two nodes, ignoring operands.
int compare_payload(const Node* a, const Node* b) {
    auto cmp = [](auto x, auto y) { return (x > y) - (x < y); };
    if (int c = cmp(a->op(), b->op())) return c;
    if (int c = cmp(a->dtype(), b->dtype())) return c;
    if (int c = cmp(a->weak(), b->weak())) return c;
    if (int c = cmp(a->arity(), b->arity())) return c;
    if (a->is_constant()) {
        if (auto c = exact_compare(a->value(), b->value())) {
            if (*c) return *c;
        } else if (int k = cmp(a->value().kind(), b->value().kind())) {
            return k;
        }
    }
    if (a->is_variable()) {
        if (int c = a->name().compare(b->name())) return c < 0 ? -1 : 1;
        if (int c = cmp(a->assumptions(), b->assumptions())) return c;
    }
    if (a->shape() != b->shape())
        return std::lexicographical_compare(a->shape().begin(), a->shape().end(),
                                            b->shape().begin(), b->shape().end())
                   ? -1
                   : 1;
    if (a->has_attributes() && a->ints() != b->ints())
        return std::lexicographical_compare(a->ints().begin(), a->ints().end(), b->ints().begin(),
                                            b->ints().end())
                   ? -1
                   : 1;
    return cmp(a->keepdims(), b->keepdims());
}
}  // namespace

int structural_compare(const Node* a, const Node* b) {
    // Constants first (by value), then variables by name, then by height and structure; this
    // puts numbers first and reads naturally: 2*x, x + y.
    if (a == b) return 0;
    boost::container::small_vector<std::pair<const Node*, const Node*>, 16> work{{a, b}};
    while (!work.empty()) {
        auto [x, y] = work.back();
        work.pop_back();
        if (x == y) continue;
        auto rank = [](const Node* n) { return n->is_constant() ? 0 : n->is_variable() ? 1 : 2; };
        if (int c = rank(x) - rank(y)) return c < 0 ? -1 : 1;
        if (x->height() != y->height()) return x->height() < y->height() ? -1 : 1;
        if (int c = compare_payload(x, y)) return c;
        for (std::size_t i = x->arity(); i-- > 0;) work.emplace_back(x->operand(i), y->operand(i));
    }
    return 0;
}

}  // namespace agnesi
