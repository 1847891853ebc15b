// ChaCha20-Poly1305 (RFC 8439 section 2.8) on top of the dispatched ChaCha20 and Poly1305.
//
// On AVX2 and AVX-512, sealing and opening are one stitched pass (aead_avx2.cpp,
// aead_avx512.cpp) over the whole 512- or 1024-byte steps, then the same slice loop as
// the portable path for the tail. The portable path seals in
// slices of kSlice bytes: encrypt a slice, then MAC it while it is still in L2 (128 KiB:
// measured 1.09x over 8 KiB slices), so a large message is read from memory once, not
// twice. Open reads each ciphertext byte once (see aead_open): a writer racing on the
// input cannot get altered plaintext accepted.
#include "medveil/aead.hpp"

#include <atomic>
#include <cstring>
#include <stdexcept>

#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace medveil {
namespace {

constexpr std::size_t kSlice = 131072;  // a multiple of 64: slices start on block boundaries
static_assert(kSlice % 64 == 0, "slices must start on ChaCha20 block boundaries");
// Open copies the ciphertext through a stack buffer of this size, small enough to stay in
// L1/L2 between its MAC and its decryption.
constexpr std::size_t kStage = 16384;
static_assert(kStage % 64 == 0, "stages must start on ChaCha20 block boundaries");

// memcpy, then a compiler barrier: the compiler may not replace later reads of dst by
// fresh reads of src (legal under the as-if rule without it, and exactly the double read
// a concurrent writer to src could exploit).
inline void copy_once(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) noexcept {
    std::memcpy(dst, src, n);
#if defined(__GNUC__)
    __asm__ __volatile__("" : : "r"(dst) : "memory");
#else
    std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

void check_length(std::size_t len) {
    if (static_cast<std::uint64_t>(len) > kAeadMaxBytes)
        throw std::length_error("chacha20-poly1305: message longer than 274,877,906,880 bytes "
                                "(the 32-bit block counter would wrap); split it");
}

// Poly1305 key from block 0, wiped with the rest of the block.
void start_mac(Backend backend, Poly1305& mac, const std::uint8_t key[32],
               const std::uint8_t nonce[12], const std::uint8_t* aad, std::size_t aad_len) {
    std::uint8_t block0[64] = {};
    chacha20_xor(backend, key, nonce, 0, nullptr, block0, 64);
    poly1305_init(mac, block0);
    secure_wipe(block0, sizeof block0);
    static const std::uint8_t zeros[16] = {};
    poly1305_update(backend, mac, aad, aad_len);
    if (aad_len % 16 != 0) poly1305_update(mac, zeros, 16 - aad_len % 16);
}

void finish_mac(Poly1305& mac, std::size_t aad_len, std::size_t len, std::uint8_t tag[16]) {
    static const std::uint8_t zeros[16] = {};
    if (len % 16 != 0) poly1305_update(mac, zeros, 16 - len % 16);
    std::uint8_t lens[16];
    for (int i = 0; i < 8; ++i) {
        lens[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(aad_len) >> (8 * i));
        lens[8 + i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(len) >> (8 * i));
    }
    poly1305_update(mac, lens, 16);
    poly1305_final(mac, tag);
}

enum class Direction { seal, open };

// Runs the backend's stitched cipher + MAC pass over the message's whole steps (512 bytes
// on AVX2, 1024 on AVX-512), advances counter past them and returns the bytes covered; the
// slice loops of seal and open finish the tail. start_mac left the MAC buffer empty, as
// the kernels require.
std::size_t stitched(Backend backend, Direction dir, const std::uint8_t key[32],
                     const std::uint8_t nonce[12], std::uint32_t& counter,
                     const std::uint8_t* in, std::uint8_t* out, std::size_t len, Poly1305& mac) {
#ifdef MEDVEIL_HAVE_AVX512
    if (backend == Backend::avx512) {
        const std::size_t steps = len / 1024;
        (dir == Direction::seal ? detail::aead_seal_stitched_avx512
                                : detail::aead_open_stitched_avx512)(key, nonce, counter, in, out,
                                                                     steps, mac);
        counter += static_cast<std::uint32_t>(steps * 16);
        return steps * 1024;
    }
#endif
#ifdef MEDVEIL_HAVE_AVX2
    if (backend == Backend::avx2) {
        const std::size_t steps = len / 512;
        (dir == Direction::seal ? detail::aead_seal_stitched_avx2
                                : detail::aead_open_stitched_avx2)(key, nonce, counter, in, out,
                                                                   steps, mac);
        counter += static_cast<std::uint32_t>(steps * 8);
        return steps * 512;
    }
#endif
    (void)backend, (void)dir, (void)key, (void)nonce, (void)counter, (void)in, (void)out,
        (void)len, (void)mac;
    return 0;
}

}  // namespace

void aead_seal(Backend backend, const std::uint8_t key[32], const std::uint8_t nonce[12],
               const std::uint8_t* aad, std::size_t aad_len, const std::uint8_t* in,
               std::size_t len, std::uint8_t* out, std::uint8_t tag[16]) {
    check_length(len);
    Poly1305 mac;
    start_mac(backend, mac, key, nonce, aad, aad_len);
    std::uint32_t counter = 1;
    std::size_t off = stitched(backend, Direction::seal, key, nonce, counter, in, out, len, mac);
    for (; off < len; off += kSlice) {
        const std::size_t n = len - off < kSlice ? len - off : kSlice;
        chacha20_xor(backend, key, nonce, counter, in + off, out + off, n);
        poly1305_update(backend, mac, out + off, n);
        counter += static_cast<std::uint32_t>(kSlice / 64);
    }
    finish_mac(mac, aad_len, len, tag);
}

bool aead_open(Backend backend, const std::uint8_t key[32], const std::uint8_t nonce[12],
               const std::uint8_t* aad, std::size_t aad_len, const std::uint8_t* in,
               std::size_t len, const std::uint8_t tag[16], std::uint8_t* out) {
    check_length(len);
    // The caller's buffers may be shared with a writer running while the GIL is released
    // (an mmap, shared memory): every input byte is read exactly once, into a local copy
    // that both the MAC and the decryption then use, so the plaintext released is the
    // decryption of exactly the bytes that were authenticated.
    std::uint8_t want[16];
    copy_once(want, tag, 16);
    Poly1305 mac;
    start_mac(backend, mac, key, nonce, aad, aad_len);
    std::uint32_t counter = 1;
    // The stitched kernels stage each step through their own local buffer.
    std::size_t off = stitched(backend, Direction::open, key, nonce, counter, in, out, len, mac);
    alignas(64) std::uint8_t stage[kStage];
    for (; off < len; off += kStage) {
        const std::size_t n = len - off < kStage ? len - off : kStage;
        copy_once(stage, in + off, n);
        poly1305_update(backend, mac, stage, n);
        chacha20_xor(backend, key, nonce, counter, stage, out + off, n);
        counter += static_cast<std::uint32_t>(kStage / 64);
    }
    std::uint8_t expected[16];
    finish_mac(mac, aad_len, len, expected);
    const bool ok = verify16(expected, want);
    secure_wipe(expected, sizeof expected);
    // stage holds ciphertext only (the plaintext goes straight to out): nothing to wipe.
    if (!ok && len > 0) {
        if (in == out)
            // In place: encrypting the plaintext again gives the caller back the ciphertext
            // it passed, and removes the plaintext.
            chacha20_xor(backend, key, nonce, 1, out, out, len);
        else
            secure_wipe(out, len);
    }
    return ok;
}

void aead_seal(const std::uint8_t key[32], const std::uint8_t nonce[12], const std::uint8_t* aad,
               std::size_t aad_len, const std::uint8_t* in, std::size_t len, std::uint8_t* out,
               std::uint8_t tag[16]) {
    aead_seal(active_backend(), key, nonce, aad, aad_len, in, len, out, tag);
}

bool aead_open(const std::uint8_t key[32], const std::uint8_t nonce[12], const std::uint8_t* aad,
               std::size_t aad_len, const std::uint8_t* in, std::size_t len,
               const std::uint8_t tag[16], std::uint8_t* out) {
    return aead_open(active_backend(), key, nonce, aad, aad_len, in, len, tag, out);
}

}  // namespace medveil
