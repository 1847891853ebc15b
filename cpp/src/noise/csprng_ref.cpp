// The ChaCha20 fast-key-erasure generator (see csprng.hpp for the construction).
#include "medveil/csprng.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "medveil/chacha20.hpp"

#if defined(__linux__)
#include <sys/random.h>
#endif

namespace medveil {
namespace {

// Reads n bytes of OS entropy; getrandom blocks only until the pool is first seeded.
void os_entropy(std::uint8_t* out, std::size_t n) {
#if defined(__linux__)
    while (n > 0) {
        const ssize_t got = ::getrandom(out, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOSYS) break;  // very old kernel: fall through to /dev/urandom
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        out += got;
        n -= static_cast<std::size_t>(got);
    }
    if (n == 0) return;
#endif
    const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "open /dev/urandom");
    while (n > 0) {
        const ssize_t got = ::read(fd, out, n);
        if (got <= 0) {
            if (got < 0 && errno == EINTR) continue;
            const int err = got < 0 ? errno : EIO;
            ::close(fd);
            throw std::system_error(err, std::generic_category(), "read /dev/urandom");
        }
        out += got;
        n -= static_cast<std::size_t>(got);
    }
    ::close(fd);
}

constexpr std::uint8_t kZeroNonce[12] = {};

}  // namespace

Csprng::Csprng() { seed_from_os(); }

Csprng::Csprng(const std::uint8_t seed[kKeyBytes], bool deterministic_for_tests) {
    if (!deterministic_for_tests) {
        seed_from_os();
        return;
    }
    std::memcpy(key_, seed, kKeyBytes);
    deterministic_ = true;
    pid_ = static_cast<long>(::getpid());
}

Csprng::~Csprng() {
    secure_wipe(buf_, sizeof buf_);
    secure_wipe(key_, sizeof key_);
}

void Csprng::seed_from_os() {
    os_entropy(key_, kKeyBytes);
    secure_wipe(buf_, sizeof buf_);
    pos_ = end_ = kBufferBytes;
    deterministic_ = false;
    pid_ = static_cast<long>(::getpid());
}

void Csprng::reseed_if_forked() {
    const long pid = static_cast<long>(::getpid());
    if (pid == pid_) return;
    if (deterministic_) {
        pid_ = pid;  // reproducibility was asked for; the caller accepted the replay
        return;
    }
    seed_from_os();
}

void Csprng::refill() {
    chacha20_xor(key_, kZeroNonce, 0, nullptr, buf_, kBufferBytes);
    std::memcpy(key_, buf_, kKeyBytes);
    secure_wipe(buf_, kKeyBytes);
    pos_ = kKeyBytes;
    end_ = kBufferBytes;
    ++refills_;
}

void Csprng::fill(std::uint8_t* out, std::size_t n) {
    while (n > 0) {
        if (pos_ == end_) refill();
        std::size_t take = end_ - pos_;
        if (take > n) take = n;
        std::memcpy(out, buf_ + pos_, take);
        // Handed-out bytes must not linger for a later memory disclosure.
        secure_wipe(buf_ + pos_, take);
        pos_ += take;
        out += take;
        n -= take;
    }
}

void chacha20_keystream(const std::uint8_t key[32], const std::uint8_t nonce[12],
                        std::uint32_t counter, std::uint8_t* out, std::size_t len) {
    chacha20_xor(key, nonce, counter, nullptr, out, len);
}

}  // namespace medveil
