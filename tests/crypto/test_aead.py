"""ChaCha20-Poly1305 and ChaCha20 against cryptography-vectors and OpenSSL, on every backend."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil import crypto
from medveil.errors import AuthenticationError

try:
    import cryptography_vectors

    VECTOR_DIR: Path | None = Path(cryptography_vectors.__file__).parent / "ciphers"
except ImportError:  # the vector tests skip; the differential tests still run
    VECTOR_DIR = None
needs_vectors = pytest.mark.skipif(
    VECTOR_DIR is None, reason="the cryptography-vectors package is not installed"
)

# Hypothesis with a module-scoped fixture: the backend is fixed for the whole test.
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def parse_vector_file(path: Path | None) -> list[dict[str, str]]:
    """Records of 'NAME = value' lines separated by blank lines (NIST-style vector files)."""
    records: list[dict[str, str]] = []
    if path is None:
        return records
    current: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            if current:
                records.append(current)
                current = {}
            continue
        name, _, value = line.partition("=")
        current[name.strip().upper()] = value.strip()
    if current:
        records.append(current)
    return records


def value(text: str) -> bytes:
    """A vector value: hex, or a quoted ASCII string (boringssl's format)."""
    if text.startswith('"'):
        return text[1:-1].encode()
    return bytes.fromhex(text)


def vector_file(*parts: str) -> Path | None:
    return None if VECTOR_DIR is None else VECTOR_DIR.joinpath(*parts)


def boringssl_vectors() -> list[dict[str, str]]:
    return parse_vector_file(vector_file("ChaCha20Poly1305", "boringssl.txt"))


def openssl_vectors() -> list[dict[str, str]]:
    return parse_vector_file(vector_file("ChaCha20Poly1305", "openssl.txt"))


@needs_vectors
def test_vector_files_found() -> None:
    assert len(boringssl_vectors()) == 66
    assert len(openssl_vectors()) == 5


@pytest.mark.parametrize("vec", boringssl_vectors(), ids=lambda v: v["COUNT"])
def test_boringssl_vectors(backend: str, vec: dict[str, str]) -> None:
    key, nonce, pt, aad = (value(vec[k]) for k in ("KEY", "NONCE", "IN", "AD"))
    expected = value(vec["CT"]) + value(vec["TAG"])
    assert crypto.seal(key, nonce, pt, aad=aad) == expected
    assert crypto.open(key, nonce, expected, aad=aad) == pt


@pytest.mark.parametrize("vec", openssl_vectors(), ids=lambda v: v["COUNT"])
def test_openssl_vectors(backend: str, vec: dict[str, str]) -> None:
    key, nonce, pt, aad, ct, tag = (
        value(vec[k]) for k in ("KEY", "IV", "PLAINTEXT", "AAD", "CIPHERTEXT", "TAG")
    )
    if vec.get("RESULT") == "CIPHERFINAL_ERROR":
        with pytest.raises(AuthenticationError):
            crypto.open(key, nonce, ct + tag, aad=aad)
    else:
        assert crypto.seal(key, nonce, pt, aad=aad) == ct + tag
        assert crypto.open(key, nonce, ct + tag, aad=aad) == pt


@pytest.mark.parametrize(
    "vec", parse_vector_file(vector_file("ChaCha20", "rfc7539.txt")), ids=lambda v: v["COUNT"]
)
def test_chacha20_vector_file(backend: str, vec: dict[str, str]) -> None:
    out = crypto.chacha20_xor(
        value(vec["KEY"]),
        value(vec["NONCE"]),
        value(vec["PLAINTEXT"]),
        counter=int(vec["INITIAL_BLOCK_COUNTER"]),
    )
    assert out == value(vec["CIPHERTEXT"])


# --- differential tests against OpenSSL (through cryptography) ------------------------

lengths = st.one_of(
    st.integers(0, 1100), st.integers(0, 100_000), st.sampled_from([511, 512, 513, 8191, 8193])
)


@PROPERTY
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    n=lengths,
    aad=st.binary(max_size=300),
    seed=st.integers(0, 2**32 - 1),
)
def test_seal_open_match_openssl(
    backend: str, key: bytes, nonce: bytes, n: int, aad: bytes, seed: int
) -> None:
    data = np.random.default_rng(seed).bytes(n)
    expected = ChaCha20Poly1305(key).encrypt(nonce, data, aad)
    assert crypto.seal(key, nonce, data, aad) == expected
    assert crypto.open(key, nonce, expected, aad) == data
    # The caller's-buffer variants, including in place.
    out = bytearray(n + 16)
    assert crypto.seal_into(key, nonce, data, out, aad) == n + 16
    assert bytes(out) == expected
    buf = bytearray(data) + bytearray(16)
    crypto.seal_into(key, nonce, memoryview(buf)[:n], buf, aad)
    assert bytes(buf) == expected
    crypto.open_into(key, nonce, buf, memoryview(buf)[:n], aad)
    assert bytes(buf[:n]) == data


@PROPERTY
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    counter=st.one_of(st.integers(0, 2**20), st.integers(2**32 - 2000, 2**32 - 1)),
    n=lengths,
    seed=st.integers(0, 2**32 - 1),
)
def test_chacha20_matches_openssl(
    backend: str, key: bytes, nonce: bytes, counter: int, n: int, seed: int
) -> None:
    n = min(n, (2**32 - counter) * 64)  # stay within the 32-bit block counter
    data = np.random.default_rng(seed).bytes(n)
    # cryptography's ChaCha20 takes a 16-byte nonce: 4-byte little-endian counter + nonce.
    # OpenSSL carries the counter into the nonce past 2**32; RFC 8439 forbids that and so
    # does medveil, so lengths above stay below the wrap.
    enc = Cipher(algorithms.ChaCha20(key, counter.to_bytes(4, "little") + nonce), None)
    expected = enc.encryptor().update(data)
    assert crypto.chacha20_xor(key, nonce, data, counter=counter) == expected
    arr = np.frombuffer(bytearray(data), dtype=np.uint8)
    crypto.chacha20_xor_into(key, nonce, arr, arr, counter=counter)  # in place, numpy
    assert arr.tobytes() == expected


def test_keystream_when_data_is_zero(backend: str) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    ks = crypto.chacha20_xor(key, nonce, bytes(1000), counter=5)
    enc = Cipher(algorithms.ChaCha20(key, (5).to_bytes(4, "little") + nonce), None)
    assert ks == enc.encryptor().update(bytes(1000))


@pytest.mark.parametrize("n", [0, 1, 64, 193, 511, 512, 513, 4099, 100_000])
def test_keystream_without_input(backend: str, n: int) -> None:
    # The in == nullptr path of the core, which the noise CSPRNG uses.
    from medveil import _core

    key, nonce = os.urandom(32), os.urandom(12)
    ks = _core.crypto.chacha20_keystream(key, nonce, n, counter=7)
    assert ks == crypto.chacha20_xor(key, nonce, bytes(n), counter=7)
    enc = Cipher(algorithms.ChaCha20(key, (7).to_bytes(4, "little") + nonce), None)
    assert ks == enc.encryptor().update(bytes(n))


@pytest.mark.parametrize(
    "n",
    [512, 1024, 1023, 1536 + 15, 4096 + 193, 131072 + 512, 3 * 131072 + 17, 2**20 + 7 * 64 + 5],
)
@pytest.mark.parametrize("aad_len", [0, 5, 16, 33])
@pytest.mark.parametrize("shift", [0, 3])
def test_seal_step_boundaries_match_openssl(backend: str, n: int, aad_len: int, shift: int) -> None:
    # The AVX2 seal runs whole 512-byte steps stitched (ChaCha20 of a step with Poly1305 of
    # the previous one) and the rest through the slice loop: one step, two, a partial step
    # after them, with and without associated data, on buffers that start off alignment.
    rng = np.random.default_rng(n * 131 + aad_len * 7 + shift)
    key, nonce, aad = rng.bytes(32), rng.bytes(12), rng.bytes(aad_len)
    data = rng.bytes(n)
    expected = ChaCha20Poly1305(key).encrypt(nonce, data, aad)
    src = bytearray(shift) + bytearray(data)
    out = bytearray(shift + n + 16)
    crypto.seal_into(key, nonce, memoryview(src)[shift:], memoryview(out)[shift:], aad)
    assert bytes(out[shift:]) == expected
    view = memoryview(out)[shift:]
    crypto.seal_into(key, nonce, view[:n], view, aad)
    # In place: out[shift:] now holds data's ciphertext sealed again (ChaCha20 is its own
    # inverse, so compare against OpenSSL on the same input).
    assert bytes(out[shift:]) == ChaCha20Poly1305(key).encrypt(nonce, expected[:n], aad)


def test_backends_agree_on_large_input() -> None:
    from medveil import _core, set_backend

    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(3 * 2**20 + 77)
    before = _core.dispatch.active()
    try:
        outs = []
        for name in _core.dispatch.available():
            set_backend(name)
            outs.append(crypto.seal(key, nonce, data, b"ad"))
    finally:
        set_backend(before)
    assert all(o == outs[0] for o in outs)
    assert outs[0] == ChaCha20Poly1305(key).encrypt(nonce, data, b"ad")


@PROPERTY
@given(
    n=st.one_of(st.integers(0, 5000), st.sampled_from([1023, 1024, 1025, 2047, 2048, 3073])),
    aad_len=st.integers(0, 40),
    src_off=st.integers(0, 63),
    dst_off=st.integers(0, 63),
    seed=st.integers(0, 2**32 - 1),
)
def test_odd_offsets_and_block_boundaries_match_openssl(
    backend: str, n: int, aad_len: int, src_off: int, dst_off: int, seed: int
) -> None:
    # Every length from 0 to several KiB crosses each kernel's boundaries (16-byte Poly1305
    # blocks, 64-byte ChaCha20 blocks, 512-byte AVX2 and 1024-byte AVX-512 steps, the
    # 128-byte IFMA groups), on buffers starting at any offset from a 64-byte line.
    rng = np.random.default_rng(seed)
    key, nonce, aad, data = rng.bytes(32), rng.bytes(12), rng.bytes(aad_len), rng.bytes(n)
    expected = ChaCha20Poly1305(key).encrypt(nonce, data, aad)
    src = np.zeros(n + 64, np.uint8)[src_off : src_off + n]
    src[:] = np.frombuffer(data, np.uint8)
    dst = np.zeros(n + 16 + 64, np.uint8)[dst_off : dst_off + n + 16]
    crypto.seal_into(key, nonce, src, dst, aad)
    assert dst.tobytes() == expected
    back = np.zeros(n + 64, np.uint8)[src_off : src_off + n]
    crypto.open_into(key, nonce, dst, back, aad)
    assert back.tobytes() == data
    assert crypto.open(key, nonce, dst, aad) == data
    if n:
        dst[seed % n] ^= 0x80
        with pytest.raises(AuthenticationError):
            crypto.open_into(key, nonce, dst, back, aad)
        assert not back.any()  # wiped


# --- tampering -------------------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_every_bit_flip_rejected(backend: str) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    pt, aad = os.urandom(45), os.urandom(21)
    sealed = crypto.seal(key, nonce, pt, aad)
    for bit in range(8 * len(sealed)):  # ciphertext and tag
        with pytest.raises(AuthenticationError):
            crypto.open(key, nonce, flip(sealed, bit), aad)
    for bit in range(8 * len(aad)):
        with pytest.raises(AuthenticationError):
            crypto.open(key, nonce, sealed, flip(aad, bit))
    for bit in range(8 * 12):
        with pytest.raises(AuthenticationError):
            crypto.open(key, flip(nonce, bit), sealed, aad)
    assert crypto.open(key, nonce, sealed, aad) == pt


def test_wrong_key_truncation_and_extension_rejected(backend: str) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = crypto.seal(key, nonce, b"patient 12345", b"hdr")
    for bad in (os.urandom(32), flip(key, 0), flip(key, 255)):
        with pytest.raises(AuthenticationError):
            crypto.open(bad, nonce, sealed, b"hdr")
    for cut in (1, 5, 16):
        with pytest.raises(AuthenticationError):
            crypto.open(key, nonce, sealed[:-cut], b"hdr")
    with pytest.raises(AuthenticationError):
        crypto.open(key, nonce, sealed + b"\0", b"hdr")
    with pytest.raises(AuthenticationError):
        crypto.open(key, nonce, sealed, b"")


def test_failed_open_leaves_no_plaintext(backend: str) -> None:
    # Open decrypts as it authenticates (each byte read once), so a failure wipes `out`,
    # and in place puts the ciphertext back.
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = bytearray(crypto.seal(key, nonce, b"x" * 100))
    sealed[3] ^= 1
    out = bytearray(b"\xaa" * 100)
    with pytest.raises(AuthenticationError):
        crypto.open_into(key, nonce, sealed, out)
    assert out == bytes(100)
    before = bytes(sealed)
    with pytest.raises(AuthenticationError):
        crypto.open_into(key, nonce, sealed, memoryview(sealed)[:100])  # in place
    assert bytes(sealed) == before


# --- argument checks -------------------------------------------------------------------


def test_bad_lengths_give_clear_errors() -> None:
    key, nonce = bytes(32), bytes(12)
    with pytest.raises(ValueError, match="key must be 32 bytes, got 31"):
        crypto.seal(bytes(31), nonce, b"x")
    with pytest.raises(ValueError, match="nonce must be 12 bytes, got 16"):
        crypto.seal(key, bytes(16), b"x")
    with pytest.raises(AuthenticationError, match="shorter than the 16-byte tag"):
        crypto.open(key, nonce, bytes(15))
    with pytest.raises(ValueError, match=r"len\(data\) \+ 16"):
        crypto.seal_into(key, nonce, b"abc", bytearray(18))
    with pytest.raises(ValueError, match=r"len\(ciphertext\) - 16"):
        crypto.open_into(key, nonce, bytes(20), bytearray(5))
    with pytest.raises(ValueError, match="exactly len"):
        crypto.chacha20_xor_into(key, nonce, b"abc", bytearray(4))
    with pytest.raises(ValueError, match="counter"):
        crypto.chacha20_xor(key, nonce, b"abc", counter=2**32)
    with pytest.raises(ValueError, match="counter"):
        crypto.chacha20_xor(key, nonce, b"abc", counter=-1)
    # The 32-bit block counter must not wrap: 65 bytes from the last block is one too many.
    with pytest.raises(ValueError, match="32-bit block counter"):
        crypto.chacha20_xor(key, nonce, bytes(65), counter=2**32 - 1)
    assert len(crypto.chacha20_xor(key, nonce, bytes(64), counter=2**32 - 1)) == 64


def test_bad_buffers_give_clear_errors() -> None:
    key, nonce = bytes(32), bytes(12)
    with pytest.raises(TypeError, match="bytes-like"):
        crypto.seal(key, nonce, "text")
    with pytest.raises(TypeError, match="writable"):
        crypto.seal_into(key, nonce, b"abc", bytes(19))
    with pytest.raises(ValueError, match="C-contiguous"):
        crypto.seal(key, nonce, np.zeros(64, np.uint8)[::2])
    buf = bytearray(100)
    with pytest.raises(ValueError, match="overlaps"):
        crypto.chacha20_xor_into(key, nonce, memoryview(buf)[:50], memoryview(buf)[10:60])


def test_numpy_and_memoryview_inputs(backend: str) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    arr = np.arange(1000, dtype=np.uint16)
    sealed = crypto.seal(key, nonce, arr)
    assert sealed == crypto.seal(key, nonce, arr.tobytes())
    out = np.empty(2000, np.uint8)
    crypto.open_into(key, nonce, memoryview(sealed), out)
    assert np.array_equal(out.view(np.uint16), arr)


# --- Poly1305 on its own, against OpenSSL ------------------------------------------------


@PROPERTY
@given(
    key=st.binary(min_size=32, max_size=32),
    n=st.one_of(st.integers(0, 2000), st.integers(0, 100_000)),
    seed=st.integers(0, 2**32 - 1),
    fill=st.sampled_from([None, 0x00, 0xFF]),
)
def test_poly1305_matches_openssl(
    backend: str, key: bytes, n: int, seed: int, fill: int | None
) -> None:
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    data = np.random.default_rng(seed).bytes(n) if fill is None else bytes([fill]) * n
    assert crypto.poly1305(key, data) == Poly1305.generate_tag(key, data)


@pytest.mark.parametrize("n", [512, 513, 4096 + 15, 65536, 100_003])
def test_poly1305_extreme_keys(backend: str, n: int) -> None:
    # The largest clamped r and all-ones blocks give the largest limbs and carries; all
    # zeros and r = 0 the smallest.
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    for key in (b"\xff" * 32, b"\xff" * 16 + bytes(16), bytes(32), bytes(16) + b"\xff" * 16):
        for data in (b"\xff" * n, bytes(n), b"\xfb" + b"\xff" * (n - 1)):
            assert crypto.poly1305(key, data) == Poly1305.generate_tag(key, data)
