// Gather a file's output parts into one buffer and hash it in the same pass.
//
// The raw-byte engine's output is a few parts (the re-encoded header, the pixel data as a
// view of the read buffer, maybe a tail); the post-check, the write and the catalog's
// SHA-256 want one buffer. Joining and then hashing reads a cine's 86 MB twice from memory;
// hashing each chunk right after copying it reads it from cache.
#pragma once

#include <cstddef>
#include <cstdint>

namespace medveil::gather {

struct Part {
    const uint8_t* data;
    size_t size;
};

// Copies parts[0..n) in order into dst (which holds their total size and overlaps none of
// them); when digest is not null, writes the SHA-256 of dst into it (OpenSSL), computed
// chunk by chunk on dst's bytes just after they were copied.
void gather(const Part* parts, size_t n, uint8_t* dst, uint8_t* digest);

// Asks the kernel to back the 2 MiB-aligned interior of [p, p + n) with huge pages, before
// it is first written: one fault per 2 MiB instead of per 4 KiB. A hint only (false: not
// taken, e.g. not Linux, or the range holds no whole huge page).
bool advise_huge_pages(uint8_t* p, size_t n);

}  // namespace medveil::gather
