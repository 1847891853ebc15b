// Gather and hash in one pass (see gather.hpp).
#include "medveil/gather.hpp"

#include <cstring>

#include "medveil/digest.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace medveil::gather {
namespace {

// Small enough to stay in L2 between the copy and the hash, large enough that the
// per-call cost of the hash update is nothing.
constexpr size_t kChunk = size_t{256} << 10;
constexpr uintptr_t kHuge = uintptr_t{2} << 20;

}  // namespace

void gather(const Part* parts, size_t n, uint8_t* dst, uint8_t* digest) {
    if (digest == nullptr) {
        for (size_t i = 0; i < n; ++i) {
            if (parts[i].size != 0) std::memcpy(dst, parts[i].data, parts[i].size);
            dst += parts[i].size;
        }
        return;
    }
    digest::Sha256 h;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* src = parts[i].data;
        size_t left = parts[i].size;
        while (left != 0) {
            const size_t k = left < kChunk ? left : kChunk;
            std::memcpy(dst, src, k);
            h.update(dst, k);  // the bytes written, not the source: what the caller keeps
            dst += k;
            src += k;
            left -= k;
        }
    }
    h.final(digest);
}

bool advise_huge_pages(uint8_t* p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t start = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(kHuge - 1);
    if (end <= start) return false;
    return madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE) == 0;
#else
    (void)p;
    (void)n;
    return false;
#endif
}

}  // namespace medveil::gather
