// ChaCha20 CSPRNG: the one random source of every noise sampler.
//
// Construction ("fast key erasure", Bernstein 2017): each refill runs ChaCha20 under the
// current key from block 0 with a zero nonce into an 8 KiB buffer; the first 32 bytes of
// that keystream become the next key and are wiped from the buffer, the rest is handed
// out. A key is therefore used for exactly one buffer (128 blocks, far below the 2^32
// blocks a 32-bit counter allows), no (key, nonce, counter) block is ever produced twice,
// and a later memory disclosure cannot reproduce noise that was already drawn.
//
// Words taken with next_u16/u32/u64 stay in the buffer until the next refill overwrites
// it (at most 8 KiB of history); fill() wipes what it hands out.
//
// Seeding: from the operating system (getrandom, or /dev/urandom where it is missing).
// An explicit seed exists only so tests and benchmarks are reproducible; such a generator
// reports deterministic() == true and must never be used for a release.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace medveil {

class Csprng {
public:
    static constexpr std::size_t kBufferBytes = 8192;
    static constexpr std::size_t kKeyBytes = 32;

    // Seeded from the operating system. Throws std::system_error if it has no entropy.
    Csprng();
    // NOT PRIVATE: a fixed seed gives the same noise every time; for tests only.
    Csprng(const std::uint8_t seed[kKeyBytes], bool deterministic_for_tests);
    ~Csprng();
    Csprng(const Csprng&) = delete;
    Csprng& operator=(const Csprng&) = delete;

    bool deterministic() const noexcept { return deterministic_; }

    // After fork() a child would replay its parent's noise; an OS-seeded generator
    // notices the new process id and reseeds from the OS. Call before each batch.
    void reseed_if_forked();

    inline std::uint64_t next_u64() {
        if (end_ - pos_ < 8) refill();
        std::uint64_t v;
        std::memcpy(&v, buf_ + pos_, 8);
        pos_ += 8;
        return from_le(v);
    }
    inline std::uint32_t next_u32() {
        if (end_ - pos_ < 4) refill();
        std::uint32_t v;
        std::memcpy(&v, buf_ + pos_, 4);
        pos_ += 4;
        return from_le32(v);
    }
    inline std::uint16_t next_u16() {
        if (end_ - pos_ < 2) refill();
        std::uint16_t v;
        std::memcpy(&v, buf_ + pos_, 2);
        pos_ += 2;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap16(v);
#endif
        return v;
    }
    // The next 8 bytes as a little-endian word, without consuming them; skip(n) then
    // consumes the first n <= 8 of them. Lets a sampler look at four 16-bit chunks at once
    // and consume only those whose values it used (the rest stay fresh).
    inline std::uint64_t peek_u64() {
        if (end_ - pos_ < 8) refill();
        std::uint64_t v;
        std::memcpy(&v, buf_ + pos_, 8);
        return from_le(v);
    }
    inline void skip(std::size_t n) noexcept { pos_ += n; }

    // Copies n keystream bytes into out.
    void fill(std::uint8_t* out, std::size_t n);

    // Keystream bytes handed out or discarded so far (a diagnostic for the benchmarks:
    // how many random bytes a sampler spends per sample).
    std::uint64_t bytes_used() const noexcept {
        return refills_ * (kBufferBytes - kKeyBytes) - (end_ - pos_);
    }

    // Held by the bindings while a kernel runs without the GIL, so two Python threads
    // sharing a generator cannot hand out the same bytes twice.
    std::mutex& mutex() noexcept { return mutex_; }

private:
    void refill();
    void seed_from_os();
    static std::uint64_t from_le(std::uint64_t v) noexcept {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return __builtin_bswap64(v);
#else
        return v;
#endif
    }
    static std::uint32_t from_le32(std::uint32_t v) noexcept {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return __builtin_bswap32(v);
#else
        return v;
#endif
    }

    alignas(64) std::uint8_t buf_[kBufferBytes];
    std::uint8_t key_[kKeyBytes];
    std::size_t pos_ = kBufferBytes;
    std::size_t end_ = kBufferBytes;
    std::uint64_t refills_ = 0;
    long pid_ = 0;
    bool deterministic_ = false;
    std::mutex mutex_;
};

// Fills out[0..len) with the raw ChaCha20 keystream of (key, nonce) from block `counter`:
// the primitive the generator is built on, exposed for the known-answer tests.
void chacha20_keystream(const std::uint8_t key[32], const std::uint8_t nonce[12],
                        std::uint32_t counter, std::uint8_t* out, std::size_t len);

}  // namespace medveil
