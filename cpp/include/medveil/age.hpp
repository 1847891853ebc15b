// The payload of an age file (age-encryption.org/v1): STREAM over ChaCha20-Poly1305.
//
// The plaintext is cut into 64 KiB chunks; chunk i is sealed with the payload key and the
// nonce  big-endian 11-byte i || flag, where flag is 1 on the last chunk only. Every chunk
// depends only on its own index, so a run of chunks is sealed or opened on several threads.
// The header (recipients, file key, HKDF of the payload key) is handled by the caller.
#pragma once

#include <cstddef>
#include <cstdint>

namespace medveil {

constexpr std::size_t kAgeChunk = 65536;
constexpr std::size_t kAgeSealedChunk = kAgeChunk + 16;

// Sealed size of `len` plaintext bytes as chunks; a final run always has at least one
// chunk (an empty payload is one empty, flagged chunk).
std::size_t age_sealed_size(std::size_t len, bool final) noexcept;

// Seals in[0..len) as chunks first_index, first_index + 1, ... into out, which must hold
// age_sealed_size(len, final) bytes. If !final, len must be a multiple of kAgeChunk and
// no chunk is flagged; if final, the last chunk is flagged. threads == 0 means one per
// core. Returns the bytes written. Throws std::invalid_argument on a bad length.
std::size_t age_seal_chunks(const std::uint8_t key[32], std::uint64_t first_index,
                            const std::uint8_t* in, std::size_t len, bool final,
                            std::uint8_t* out, unsigned threads);

struct AgeOpenResult {
    bool ok;                  // every chunk authenticated
    std::size_t plain_len;    // bytes written to out when ok
    std::uint64_t bad_chunk;  // index of the first chunk that failed, when !ok
};

// Opens in[0..len) as sealed chunks first_index, ... into out (room for len bytes is
// enough). If !final, len must be a multiple of kAgeSealedChunk; if final, the last chunk
// must carry the flag and may be shorter, but must not be empty unless it is chunk 0.
// Each chunk is opened by aead_open, which reads its ciphertext once (a writer racing on
// `in` cannot get altered plaintext accepted); if any chunk fails, the whole plaintext
// area of out (plain length bytes) is wiped before returning. Throws std::invalid_argument
// on a length that cannot be a run of chunks.
AgeOpenResult age_open_chunks(const std::uint8_t key[32], std::uint64_t first_index,
                              const std::uint8_t* in, std::size_t len, bool final,
                              std::uint8_t* out, unsigned threads);

}  // namespace medveil
