// age STREAM payload: chunk nonces, lengths and the split of a run of chunks over threads.
// The cipher itself is the dispatched ChaCha20-Poly1305.
#include "medveil/age.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "medveil/aead.hpp"
#include "medveil/chacha20.hpp"

namespace medveil {
namespace {

void chunk_nonce(std::uint64_t index, bool last, std::uint8_t nonce[12]) noexcept {
    // 11-byte big-endian counter: three leading zero bytes, then the 64-bit index.
    nonce[0] = nonce[1] = nonce[2] = 0;
    for (int i = 0; i < 8; ++i) nonce[3 + i] = static_cast<std::uint8_t>(index >> (56 - 8 * i));
    nonce[11] = last ? 1 : 0;
}

unsigned pick_threads(unsigned wanted, std::size_t chunks) {
    if (wanted == 0) wanted = std::max(1U, std::thread::hardware_concurrency());
    // A thread below ~4 chunks costs more to start than it saves.
    const std::size_t useful = std::max<std::size_t>(1, chunks / 4);
    return static_cast<unsigned>(std::min<std::size_t>(wanted, useful));
}

// Runs job(first, last) over [0, n) split into `threads` contiguous ranges, the calling
// thread taking the first one.
template <class Job>
void parallel_ranges(std::size_t n, unsigned threads, const Job& job) {
    if (threads <= 1) {
        job(0, n);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    const std::size_t per = (n + threads - 1) / threads;
    for (unsigned t = 1; t < threads; ++t) {
        const std::size_t a = std::min(n, t * per), b = std::min(n, a + per);
        if (a >= b) continue;
        try {
            pool.emplace_back([&job, a, b] { job(a, b); });
        } catch (const std::system_error&) {
            job(a, b);  // no thread to be had: do this range here
        }
    }
    job(0, std::min(n, per));
    for (auto& th : pool) th.join();
}

}  // namespace

std::size_t age_sealed_size(std::size_t len, bool final) noexcept {
    std::size_t chunks = (len + kAgeChunk - 1) / kAgeChunk;
    if (final && chunks == 0) chunks = 1;
    return len + 16 * chunks;
}

std::size_t age_seal_chunks(const std::uint8_t key[32], std::uint64_t first_index,
                            const std::uint8_t* in, std::size_t len, bool final,
                            std::uint8_t* out, unsigned threads) {
    if (!final && len % kAgeChunk != 0)
        throw std::invalid_argument("age: a non-final run of chunks must be whole 64 KiB chunks");
    std::size_t chunks = (len + kAgeChunk - 1) / kAgeChunk;
    if (final && chunks == 0) chunks = 1;
    const Backend backend = active_backend();  // one backend for the whole run
    parallel_ranges(chunks, pick_threads(threads, chunks), [&](std::size_t a, std::size_t b) {
        std::uint8_t nonce[12];
        for (std::size_t i = a; i < b; ++i) {
            const std::size_t off = i * kAgeChunk;
            const std::size_t n = std::min(kAgeChunk, len - off);
            std::uint8_t* dst = out + i * kAgeSealedChunk;
            chunk_nonce(first_index + i, final && i + 1 == chunks, nonce);
            aead_seal(backend, key, nonce, nullptr, 0, in + off, n, dst, dst + n);
        }
    });
    return age_sealed_size(len, final);
}

AgeOpenResult age_open_chunks(const std::uint8_t key[32], std::uint64_t first_index,
                              const std::uint8_t* in, std::size_t len, bool final,
                              std::uint8_t* out, unsigned threads) {
    std::size_t chunks;
    if (!final) {
        if (len % kAgeSealedChunk != 0)
            throw std::invalid_argument("age: a non-final run must be whole sealed chunks");
        chunks = len / kAgeSealedChunk;
    } else {
        chunks = std::max<std::size_t>(1, (len + kAgeSealedChunk - 1) / kAgeSealedChunk);
        const std::size_t last = len - (chunks - 1) * kAgeSealedChunk;
        // A truncated tag, or an empty last chunk after others (age forbids it: it would
        // let a chunk boundary be moved), cannot be a valid final run.
        if (last < 16 || (last == 16 && (chunks > 1 || first_index > 0)))
            return AgeOpenResult{false, 0, first_index + chunks - 1};
    }
    std::atomic<std::uint64_t> bad{~std::uint64_t(0)};
    const Backend backend = active_backend();
    parallel_ranges(chunks, pick_threads(threads, chunks), [&](std::size_t a, std::size_t b) {
        std::uint8_t nonce[12];
        for (std::size_t i = a; i < b; ++i) {
            const std::size_t off = i * kAgeSealedChunk;
            const std::size_t n = std::min(kAgeSealedChunk, len - off) - 16;
            chunk_nonce(first_index + i, final && i + 1 == chunks, nonce);
            if (!aead_open(backend, key, nonce, nullptr, 0, in + off, n, in + off + n,
                           out + i * kAgeChunk)) {
                std::uint64_t seen = bad.load();
                while (i < seen && !bad.compare_exchange_weak(seen, i)) {
                }
                return;
            }
        }
    });
    const std::size_t plain = len - 16 * chunks;
    const std::uint64_t b = bad.load();
    if (b != ~std::uint64_t(0)) {
        // Chunks that verified hold plaintext the caller must not use: no plaintext of a
        // run that failed leaves the core (aead_open already wiped the bad chunk).
        secure_wipe(out, plain);
        return AgeOpenResult{false, 0, first_index + b};
    }
    return AgeOpenResult{true, plain, 0};
}

}  // namespace medveil
