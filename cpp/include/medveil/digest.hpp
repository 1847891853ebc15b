// SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto (the library hashlib and `cryptography`
// already load): no hash code of our own to get wrong.
#pragma once

#include <cstddef>
#include <cstdint>

namespace medveil::digest {

// SHA-256 of p[0:n] into out.
void sha256(const uint8_t* p, size_t n, uint8_t out[32]);

// HMAC-SHA256 (RFC 2104) of p[0:n] under key[0:klen] into out.
void hmac_sha256(const uint8_t* key, size_t klen, const uint8_t* p, size_t n, uint8_t out[32]);

// Incremental SHA-256: hash a file's parts as they are written, without joining them.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    Sha256(Sha256&& other) noexcept;
    Sha256& operator=(Sha256&& other) noexcept;

    void update(const uint8_t* p, size_t n);
    // Writes the digest and starts over (the object hashes a new message next).
    void final(uint8_t out[32]);

private:
    void* ctx_;  // EVP_MD_CTX, kept opaque so users need no OpenSSL headers
};

}  // namespace medveil::digest
