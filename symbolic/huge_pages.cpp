// The one system call behind detail::HugePageAllocator, kept out of the header.
#include <sys/mman.h>

#include <cstddef>

#include "agnesi/detail/node_map.hpp"

namespace agnesi::detail {

void huge_page_hint(void* p, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

}  // namespace agnesi::detail
