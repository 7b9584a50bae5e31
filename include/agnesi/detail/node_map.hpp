// A hash map keyed by node pointers, open addressing with linear probing: the passes look up
// every node several times, and std::unordered_map's allocation per entry dominated them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

namespace agnesi {
class Node;
}

namespace agnesi::detail {

/// madvise(MADV_HUGEPAGE) where there is one; a hint, whose failure changes nothing.
void huge_page_hint(void* p, std::size_t bytes);

/// An allocator that asks for huge pages for blocks of 2 MiB and more (rounded up and aligned
/// to 2 MiB): the maps and logs of a large simplify are read all over, and with 4 KiB pages
/// most of those reads also miss the TLB.
template <class T>
struct HugePageAllocator {
    using value_type = T;
    static constexpr std::size_t kHuge = std::size_t{2} << 20;
    HugePageAllocator() = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding
    static std::size_t rounded(std::size_t bytes) { return (bytes + kHuge - 1) / kHuge * kHuge; }
    T* allocate(std::size_t n) {
        std::size_t bytes = n * sizeof(T);
        if (bytes < kHuge)
            return static_cast<T*>(::operator new(bytes, std::align_val_t(alignof(T))));
        void* p = ::operator new(rounded(bytes), std::align_val_t(kHuge));
        huge_page_hint(p, rounded(bytes));
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) {
        std::size_t bytes = n * sizeof(T);
        if (bytes < kHuge)
            ::operator delete(p, std::align_val_t(alignof(T)));
        else
            ::operator delete(p, std::align_val_t(kHuge));
    }
    template <class U>
    bool operator==(const HugePageAllocator<U>&) const {
        return true;
    }
};

template <class V>
class NodeMap {
  public:
    explicit NodeMap(std::size_t expected = 16) { rehash(capacity_for(expected)); }

    /// The value for `key`, default-constructed and inserted if absent.
    V& operator[](const Node* key) {
        std::size_t i = find_slot(key);
        if (!slots_[i].first) {
            if ((size_ + 1) * 5 > slots_.size() * 4) {
                rehash(slots_.size() * 2);
                i = find_slot(key);
            }
            slots_[i].first = key;
            ++size_;
        }
        return slots_[i].second;
    }
    /// The value for `key`, or null.
    V* find(const Node* key) {
        std::size_t i = find_slot(key);
        return slots_[i].first ? &slots_[i].second : nullptr;
    }
    const V* find(const Node* key) const {
        std::size_t i = find_slot(key);
        return slots_[i].first ? &slots_[i].second : nullptr;
    }
    bool contains(const Node* key) const { return find(key) != nullptr; }
    /// Starts loading the line where a lookup of `key` begins: walks over lists of nodes
    /// prefetch a few keys ahead, as the maps are larger than the caches.
    void prefetch(const Node* key) const { __builtin_prefetch(&slots_[home(key)]); }
    /// Inserts if absent; returns whether it was absent.
    bool insert(const Node* key, V value = V()) {
        std::size_t before = size_;
        V& v = (*this)[key];
        if (size_ == before) return false;
        v = std::move(value);
        return true;
    }
    std::size_t size() const { return size_; }
    /// Empties the map for about `expected` entries, keeping its memory if that is enough: a
    /// pass that runs again reuses pages it has already touched.
    void reset(std::size_t expected) {
        std::size_t c = capacity_for(expected);
        if (c > slots_.size() || c * 4 < slots_.size()) {
            slots_.clear();
            rehash(c);
        } else {
            std::fill(slots_.begin(), slots_.end(), std::pair<const Node*, V>());
        }
        size_ = 0;
    }

  private:
    static std::size_t capacity_for(std::size_t n) {
        std::size_t c = 16;
        while (c * 4 < n * 5) c *= 2;
        return c;
    }
    std::size_t home(const Node* key) const {
        auto h = reinterpret_cast<std::uintptr_t>(key);
        return (h * 0x9e3779b97f4a7c15ull) >> 20 & (slots_.size() - 1);
    }
    std::size_t find_slot(const Node* key) const {
        std::size_t mask = slots_.size() - 1;
        std::size_t i = home(key);
        while (slots_[i].first && slots_[i].first != key) i = (i + 1) & mask;
        return i;
    }
    void rehash(std::size_t capacity) {
        Slots old(capacity);
        old.swap(slots_);
        for (auto& [k, v] : old) {
            if (!k) continue;
            std::size_t i = find_slot(k);
            slots_[i].first = k;
            slots_[i].second = std::move(v);
        }
    }
    using Slots =
        std::vector<std::pair<const Node*, V>, HugePageAllocator<std::pair<const Node*, V>>>;
    Slots slots_;
    std::size_t size_ = 0;
};

}  // namespace agnesi::detail
