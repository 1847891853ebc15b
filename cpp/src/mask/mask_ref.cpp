// Portable kernels: plain loops the compiler may vectorise for the baseline ISA.
#include <algorithm>
#include <cstring>

#include "medveil/mask.hpp"

namespace medveil::detail {
namespace {

template <typename T>
void fill_typed(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8) {
    T v;
    std::memcpy(&v, &pattern8, sizeof(T));
    // The bindings only pass aligned numpy buffers, so typed stores are valid.
    std::fill_n(reinterpret_cast<T*>(dst), nbytes / sizeof(T), v);
}

// Unsigned arithmetic throughout: (x & m) ^ s) - s sign-extends without any shift of a
// negative value, so there is no undefined or implementation-defined behaviour.
template <typename U>
void fix_typed(U* p, std::size_t count, unsigned bits_stored, bool is_signed) {
    const U mask = static_cast<U>((U(1) << bits_stored) - 1U);
    const U sign = is_signed ? static_cast<U>(U(1) << (bits_stored - 1)) : U(0);
    for (std::size_t i = 0; i < count; ++i) {
        U v = static_cast<U>(p[i] & mask);
        p[i] = static_cast<U>(static_cast<U>(v ^ sign) - sign);
    }
}

}  // namespace

bool byte_uniform(std::uint64_t pattern8) noexcept {
    return pattern8 == (pattern8 & 0xFFU) * 0x0101010101010101ULL;
}

void fill_ref(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8, std::size_t itemsize) {
    if (byte_uniform(pattern8)) itemsize = 1;  // libc's memset is the fastest fill there is
    switch (itemsize) {
        case 1: std::memset(dst, static_cast<int>(pattern8 & 0xFF), nbytes); break;
        case 2: fill_typed<std::uint16_t>(dst, nbytes, pattern8); break;
        case 4: fill_typed<std::uint32_t>(dst, nbytes, pattern8); break;
        default: fill_typed<std::uint64_t>(dst, nbytes, pattern8); break;
    }
}

void fix_bits_ref(void* data, std::size_t count, std::size_t itemsize, unsigned bits_stored,
                  bool is_signed) {
    if (itemsize == 2)
        fix_typed(static_cast<std::uint16_t*>(data), count, bits_stored, is_signed);
    else
        fix_typed(static_cast<std::uint32_t*>(data), count, bits_stored, is_signed);
}

}  // namespace medveil::detail
