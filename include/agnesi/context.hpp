// The interning context.
//
// A Context owns every node built in it; nodes live exactly as long as their Context and are
// destroyed with it (without recursion, whatever the depth). Interning is thread-safe: many
// threads may build nodes in one Context at once. `Context::global()` is the default context
// that the builders use when no operand names one; it lives until the program exits.
#pragma once

#include <array>
#include <cstddef>
#include <memory>

#include "agnesi/node.hpp"

namespace agnesi {

class Context {
  public:
    Context();
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    /// The process-wide default context.
    static Context& global();

    /// The unique node with this content, created if new. The description must already be
    /// type-checked (builders do that).
    const Node* intern(NodeDesc&& desc);
    /// Number of distinct nodes in the context.
    std::size_t size() const;

  private:
    static constexpr std::size_t kShards = 16;
    struct Shard;
    std::array<std::unique_ptr<Shard>, kShards> shards_;
};

}  // namespace agnesi
