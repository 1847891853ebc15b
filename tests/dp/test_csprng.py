"""The ChaCha20 generator: RFC 8439 vectors, agreement with `cryptography`, construction."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from medveil import _core
from medveil.privacy import dp

N = _core.noise

# RFC 8439 section 2.3.2: key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, counter 1.
RFC_KEY = bytes(range(32))
RFC_NONCE = bytes.fromhex("000000090000004a00000000")
RFC_BLOCK = bytes.fromhex(
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
)
# RFC 8439 section 2.4.2 uses the same key with nonce 00:00:00:00:00:00:00:4a:00:00:00:00;
# its first keystream block (counter 1) is the XOR of the published plaintext and ciphertext.
RFC_SUNSCREEN_PT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
RFC_SUNSCREEN_CT = bytes.fromhex(
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
    "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)


def cryptography_keystream(key: bytes, nonce: bytes, counter: int, n: int) -> bytes:
    """ChaCha20 keystream from the `cryptography` package (OpenSSL), the independent peer."""
    full_nonce = counter.to_bytes(4, "little") + nonce
    enc = Cipher(algorithms.ChaCha20(key, full_nonce), mode=None).encryptor()
    return enc.update(bytes(n))


def test_rfc8439_block_function(backend: str) -> None:
    assert N.keystream(RFC_KEY, RFC_NONCE, 1, 64) == RFC_BLOCK


def test_rfc8439_encryption_vector(backend: str) -> None:
    nonce = bytes.fromhex("000000000000004a00000000")
    ks = N.keystream(RFC_KEY, nonce, 1, len(RFC_SUNSCREEN_PT))
    assert bytes(a ^ b for a, b in zip(ks, RFC_SUNSCREEN_PT, strict=True)) == RFC_SUNSCREEN_CT


@pytest.mark.parametrize("n", [1, 63, 64, 65, 511, 4096, 8192 + 17])
def test_keystream_matches_cryptography(backend: str, n: int) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    for counter in (0, 7, 2**32 - 1 - (n + 63) // 64):
        assert N.keystream(key, nonce, counter, n) == cryptography_keystream(key, nonce, counter, n)


def test_keystream_refuses_counter_wrap() -> None:
    with pytest.raises(Exception, match="32-bit block counter"):
        N.keystream(bytes(32), bytes(12), 2**32 - 1, 128)


def fast_key_erasure_reference(seed: bytes, n: int) -> bytes:
    """The documented construction, rebuilt on `cryptography`: 8 KiB per key, the first
    32 bytes of each buffer become the next key, the other 8160 bytes are output."""
    out, key = b"", seed
    while len(out) < n:
        buf = cryptography_keystream(key, bytes(12), 0, 8192)
        key, out = buf[:32], out + buf[32:]
    return out[:n]


def test_seeded_generator_is_fast_key_erasure_chacha20(backend: str) -> None:
    seed = bytes(range(100, 132))
    rng = N.Rng.insecure_from_seed(seed)
    assert rng.deterministic
    got = rng.bytes(5) + rng.bytes(20000) + rng.bytes(30000)
    assert got == fast_key_erasure_reference(seed, len(got))


def test_seeded_samples_identical_on_every_backend() -> None:
    """The keystream, hence every sample, must not depend on the SIMD path."""
    results = []
    before = _core.dispatch.active()
    try:
        for b in _core.dispatch.available():
            _core.dispatch.set_backend(b)
            rng = dp.insecure_rng(42)
            results.append((N.discrete_laplace(rng, 7, 2, 5000).tobytes(), rng.bytes(100_000)))
    finally:
        _core.dispatch.set_backend(before)
    assert all(r == results[0] for r in results)


def test_os_seeded_generators_differ() -> None:
    a, b = N.Rng(), N.Rng()
    assert not a.deterministic
    assert a.bytes(64) != b.bytes(64)
    assert dp.insecure_rng(1).bytes(64) == dp.insecure_rng(1).bytes(64)


def test_seed_length_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        N.Rng.insecure_from_seed(b"short")


FORK_SCRIPT = r"""
import os, sys
from medveil.privacy import dp
rng = dp.default_rng()
rng.bytes(10)                       # buffer filled before the fork
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, rng.bytes(32))
    os._exit(0)
os.waitpid(pid, 0)
child = os.read(r, 32)
parent = rng.bytes(32)
sys.stdout.write("same" if child == parent else "differ")
"""


def test_forked_child_does_not_replay_parent_noise() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, check=True
    )
    assert out.stdout == "differ"
