// Pixel masking kernels: blank rectangles and clear the bits above BitsStored.
//
// Callers (the bindings) check dtypes, shapes and contiguity; these functions trust
// their arguments and never allocate per pixel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "medveil/dispatch.hpp"

namespace medveil {

// A half-open rectangle [r0, r1) x [c0, c1) on frames [f0, f1); any values are allowed:
// the kernel clips to the image and treats r1 <= r0 (etc.) as empty.
struct Region {
    std::int64_t r0, r1, c0, c1, f0, f1;
};

// A C-contiguous image stack viewed as frames x planes x rows x (row_elems) elements.
// Interleaved samples: planes = 1, row_elems = cols * samples, col_scale = samples.
// Planar samples:      planes = samples, row_elems = cols, col_scale = 1.
struct PixelLayout {
    std::uint8_t* data;
    std::size_t itemsize;  // 1, 2, 4 or 8
    std::size_t frames, planes, rows, row_elems, col_scale;
};

// Sets every element inside any region to the element whose bytes are
// `pattern[0..itemsize)` and writes no byte outside them. Overlapping regions are merged
// before filling, so no area is filled twice (a run's vector stores may overlap by a few
// bytes, with the same value). `px.data` must be aligned to the itemsize.
void mask_regions(const PixelLayout& px, const Region* regions, std::size_t n_regions,
                  const std::uint8_t* pattern);
void mask_regions(Backend backend, const PixelLayout& px, const Region* regions,
                  std::size_t n_regions, const std::uint8_t* pattern);

// For itemsize 2 or 4 and 1 <= bits_stored <= 8 * itemsize: keep the low bits_stored bits
// and set the rest to zero (unsigned) or to copies of bit bits_stored-1 (signed).
void fix_unused_bits(void* data, std::size_t count, std::size_t itemsize,
                     unsigned bits_stored, bool is_signed);
void fix_unused_bits(Backend backend, void* data, std::size_t count, std::size_t itemsize,
                     unsigned bits_stored, bool is_signed);

namespace detail {
// True when every byte of the 8-byte pattern is the same (0, -1, 0x7f7f...).
bool byte_uniform(std::uint64_t pattern8) noexcept;
// Per-backend primitives: fill `nbytes` (a multiple of itemsize) with the pattern, whose
// 8 bytes hold the element repeated; fix bits on `count` elements.
void fill_ref(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8, std::size_t itemsize);
void fix_bits_ref(void* data, std::size_t count, std::size_t itemsize, unsigned bits_stored,
                  bool is_signed);
#ifdef MEDVEIL_HAVE_AVX2
void fill_avx2(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8, std::size_t itemsize);
// Same result with non-temporal stores (the written lines bypass the caches), fenced
// before returning; for long runs of calls that write more than the caches hold.
void fill_stream_avx2(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8,
                      std::size_t itemsize);
void fix_bits_avx2(void* data, std::size_t count, std::size_t itemsize, unsigned bits_stored,
                   bool is_signed);
#endif
}  // namespace detail

}  // namespace medveil
