// SHA-256 and HMAC-SHA256 through OpenSSL 3's EVP interfaces.
//
// The algorithms are fetched once per process: an implicit fetch (EVP_sha256() in a call)
// looks the provider up on every use, which costs more than hashing a UID.
#include "medveil/digest.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <stdexcept>
#include <string>

namespace medveil::digest {
namespace {

[[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("OpenSSL ") + what + " failed");
}

const EVP_MD* md_sha256() {
    // Thread-safe static initialisation; the fetched object lives until exit.
    static const EVP_MD* md = [] {
        EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        if (m == nullptr) fail("EVP_MD_fetch(SHA256)");
        return m;
    }();
    return md;
}

EVP_MAC* mac_hmac() {
    static EVP_MAC* mac = [] {
        EVP_MAC* m = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        if (m == nullptr) fail("EVP_MAC_fetch(HMAC)");
        return m;
    }();
    return mac;
}

// OpenSSL takes a non-null pointer even for an empty message or key.
const uint8_t* nonnull(const uint8_t* p) {
    static const uint8_t empty = 0;
    return p != nullptr ? p : &empty;
}

}  // namespace

void sha256(const uint8_t* p, size_t n, uint8_t out[32]) {
    unsigned int len = 0;
    if (EVP_Digest(nonnull(p), n, out, &len, md_sha256(), nullptr) != 1 || len != 32)
        fail("EVP_Digest");
}

void hmac_sha256(const uint8_t* key, size_t klen, const uint8_t* p, size_t n, uint8_t out[32]) {
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac_hmac());
    if (ctx == nullptr) fail("EVP_MAC_CTX_new");
    char digest_name[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end()};
    size_t len = 0;
    const bool ok = EVP_MAC_init(ctx, nonnull(key), klen, params) == 1 &&
                    EVP_MAC_update(ctx, nonnull(p), n) == 1 &&
                    EVP_MAC_final(ctx, out, &len, 32) == 1 && len == 32;
    EVP_MAC_CTX_free(ctx);
    if (!ok) fail("HMAC-SHA256");
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr) fail("EVP_MD_CTX_new");
    if (EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), md_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
        fail("EVP_DigestInit_ex");
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

Sha256::Sha256(Sha256&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }

Sha256& Sha256::operator=(Sha256&& other) noexcept {
    if (this != &other) {
        EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
        ctx_ = other.ctx_;
        other.ctx_ = nullptr;
    }
    return *this;
}

void Sha256::update(const uint8_t* p, size_t n) {
    if (ctx_ == nullptr) throw std::logic_error("Sha256 used after being moved from");
    if (n != 0 && EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, n) != 1)
        fail("EVP_DigestUpdate");
}

void Sha256::final(uint8_t out[32]) {
    if (ctx_ == nullptr) throw std::logic_error("Sha256 used after being moved from");
    auto* ctx = static_cast<EVP_MD_CTX*>(ctx_);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 32) fail("EVP_DigestFinal_ex");
    if (EVP_DigestInit_ex(ctx, md_sha256(), nullptr) != 1) fail("EVP_DigestInit_ex");
}

}  // namespace medveil::digest
