#include "agnesi/context.hpp"

#include <new>

#include <vector>

#include "agnesi/error.hpp"

namespace agnesi {

struct Context::Shard {
    mutable std::mutex mu;
    // An intrusive chained hash table: buckets point at nodes, nodes link through
    // Node::chain_. Nodes live in fixed-size chunks that never move; the destructor frees them
    // by iteration, not recursion, whatever the depth of the DAG.
    std::vector<const Node*> buckets;
    std::vector<Node*> chunks;
    std::size_t count = 0;  // nodes in all chunks
    unsigned bits = 0;
    static constexpr std::size_t kChunk = 256;

    ~Shard() {
        for (std::size_t c = 0; c < chunks.size(); ++c) {
            std::size_t n = c + 1 < chunks.size() ? kChunk : count - c * kChunk;
            for (std::size_t i = 0; i < n; ++i) chunks[c][i].~Node();
            ::operator delete(static_cast<void*>(chunks[c]), std::align_val_t(alignof(Node)));
        }
    }
    Node* allocate() {
        if (count == chunks.size() * kChunk)
            chunks.push_back(static_cast<Node*>(
                ::operator new(kChunk * sizeof(Node), std::align_val_t(alignof(Node)))));
        return chunks.back() + (count % kChunk);
    }
    template <class F>
    void for_each(F&& f) const {
        for (std::size_t i = 0; i < count; ++i) f(chunks[i / kChunk][i % kChunk]);
    }
    std::size_t slot(std::size_t h) const {
        // Fibonacci hashing spreads structural hashes whose low bits are alike.
        return (h * 0x9e3779b97f4a7c15ull) >> (64 - bits);
    }
    void grow() {
        bits = buckets.empty() ? 10 : bits + 1;
        std::vector<const Node*> next(std::size_t(1) << bits, nullptr);
        for_each([&](const Node& n) {
            std::size_t i = slot(n.hash());
            n.chain_ = next[i];
            next[i] = &n;
        });
        buckets = std::move(next);
    }
};

Context::Context() {
    for (auto& s : shards_) s = std::make_unique<Shard>();
}
Context::~Context() = default;

Context& Context::global() {
    static Context* ctx = new Context;  // never destroyed: nodes may be used during teardown
    return *ctx;
}

const Node* Context::intern(NodeDesc&& desc) {
    for (const Node* o : desc.operands)
        AGNESI_ASSERT(&o->context() == this) << "operand from another context";
    std::size_t h = structural_hash(desc);
    Shard& s = *shards_[(h >> 59) % kShards];
    std::lock_guard lock(s.mu);
    if (s.count >= s.buckets.size()) s.grow();
    std::size_t i = s.slot(h);
    for (const Node* n = s.buckets[i]; n; n = n->chain_)
        if (n->hash() == h && same_content(*n, desc)) return n;
    Node* n = new (s.allocate()) Node(std::move(desc), h, this);
    ++s.count;
    n->chain_ = s.buckets[i];
    s.buckets[i] = n;
    return n;
}

std::size_t Context::size() const {
    std::size_t n = 0;
    for (const auto& s : shards_) {
        std::lock_guard lock(s->mu);
        n += s->count;
    }
    return n;
}

}  // namespace agnesi
