#include "agnesi/context.hpp"

#include <atomic>
#include <new>
#include <thread>

#include <vector>

#include "agnesi/error.hpp"

namespace agnesi {

namespace {
// The lock around one probe of a shard's table. With 16 shards it is nearly always free, and
// there a pthread mutex's lock and unlock cost more instructions than the probe; a waiter
// yields rather than spins, since the holder may be growing the table.
class ShardLock {
  public:
    void lock() noexcept {
        while (held_.exchange(true, std::memory_order_acquire))
            while (held_.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
    void unlock() noexcept { held_.store(false, std::memory_order_release); }

  private:
    std::atomic<bool> held_{false};
};
}  // namespace

struct Context::Shard {
    mutable ShardLock mu;
    // Open addressing with linear probing over (hash, node) pairs: a probe compares hashes in
    // this contiguous array and touches a node only when the hash matches, which keeps interning
    // cheap at millions of nodes. Nodes live in fixed-size chunks that never move; the destructor
    // frees them by iteration, not recursion, whatever the depth of the DAG.
    std::vector<std::pair<std::size_t, const Node*>> table;
    std::vector<Node*> chunks;
    std::size_t count = 0;  // nodes in all chunks
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
    std::size_t start(std::size_t h) const {
        // Fibonacci hashing spreads structural hashes whose low bits are alike.
        return (h * 0x9e3779b97f4a7c15ull) >> 20 & (table.size() - 1);
    }
    void grow() {
        std::vector<std::pair<std::size_t, const Node*>> old(table.empty() ? 1024
                                                                           : table.size() * 2);
        old.swap(table);
        for (const auto& [h, n] : old) {
            if (!n) continue;
            std::size_t i = start(h);
            while (table[i].second) i = (i + 1) & (table.size() - 1);
            table[i] = {h, n};
        }
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
    if ((s.count + 1) * 4 > s.table.size() * 3) s.grow();
    std::size_t mask = s.table.size() - 1;
    std::size_t i = s.start(h);
    for (; s.table[i].second; i = (i + 1) & mask)
        if (s.table[i].first == h && same_content(*s.table[i].second, desc))
            return s.table[i].second;
    Node* n = new (s.allocate()) Node(std::move(desc), h, this);
    ++s.count;
    s.table[i] = {h, n};
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
