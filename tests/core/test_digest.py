"""SHA-256 and HMAC-SHA256 of the core (OpenSSL libcrypto): published vectors, hashlib/hmac."""

from __future__ import annotations

import hashlib
import hmac
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core

# FIPS 180-2 / NIST CSRC examples (SHA256.pdf, SHA2_Additional.pdf).
SHA256_VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        b"klmnopqrlmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
    (b"\xbd", "68325720aabd7c82f30f554b313d0570c95accbb7dc4b5aae11204c08ffe732b"),
    (b"\xc9\x8c\x8e\x55", "7abc22c0ae5af26ce93dbb94433a0e0b2e119d014f8e7f65bd56c61ccccd9504"),
    (b"\x00" * 55, "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7"),
    (b"\x00" * 56, "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb"),
    (b"\x00" * 1000, "541b3e9daa09b20bf85fa273e5cbd3e80185aa4ec298e765db87742b70138a53"),
]

# RFC 4231 section 4: (key, data, HMAC-SHA-256, compared bytes); case 5 is truncated.
HMAC_VECTORS = [
    (
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        32,
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        32,
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        32,
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        32,
    ),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b", 16),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        32,
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size "
        b"data. The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        32,
    ),
]


@pytest.mark.parametrize(("msg", "hexdigest"), SHA256_VECTORS)
def test_sha256_nist_vectors(msg: bytes, hexdigest: str) -> None:
    assert _core.sha256(msg).hex() == hexdigest


@pytest.mark.parametrize(("key", "data", "hexmac", "n"), HMAC_VECTORS)
def test_hmac_sha256_rfc4231_vectors(key: bytes, data: bytes, hexmac: str, n: int) -> None:
    assert _core.hmac_sha256(key, data)[:n].hex() == hexmac


def test_sha256_of_parts_is_sha256_of_the_join() -> None:
    msg = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    want = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    for cut in range(len(msg) + 1):
        assert _core.sha256([msg[:cut], msg[cut:]]).hex() == want
        assert _core.sha256((msg[:cut], b"", msg[cut:])).hex() == want
    assert _core.sha256([]).hex() == SHA256_VECTORS[0][1]


def test_every_buffer_kind_is_hashed_as_its_bytes() -> None:
    data = bytes(range(256)) * 40
    want = hashlib.sha256(data).digest()
    arr = np.frombuffer(data, dtype=np.uint16)
    for obj in (data, bytearray(data), memoryview(data), arr, arr.reshape(64, -1)):
        assert _core.sha256(obj) == want
    assert _core.hmac_sha256(memoryview(b"k"), bytearray(data)) == hmac.digest(b"k", data, "sha256")


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        _core.sha256("abc")
    with pytest.raises(TypeError, match=r"data\[1\] must be bytes-like"):
        _core.sha256([b"a", "b"])
    with pytest.raises(TypeError, match="key must be bytes-like"):
        _core.hmac_sha256("k", b"")
    with pytest.raises(TypeError, match="data must be bytes-like"):
        _core.hmac_sha256(b"k", None)
    strided = np.arange(64, dtype=np.uint8)[::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.sha256(strided)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_sha256_matches_hashlib(parts: list[bytes]) -> None:
    want = hashlib.sha256(b"".join(parts)).digest()
    assert _core.sha256(parts) == want
    assert _core.sha256(b"".join(parts)) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=5000))
def test_hmac_sha256_matches_hmac(key: bytes, data: bytes) -> None:
    assert _core.hmac_sha256(key, data) == hmac.digest(key, data, "sha256")


def test_threads_hash_concurrently_and_correctly() -> None:
    # Large inputs run without the GIL: several threads at once must not disturb each other.
    blobs = [bytes([i]) * (1 << 20) + bytes(range(i)) for i in range(8)]
    want = [hashlib.sha256(b).digest() for b in blobs]
    got: list[bytes | None] = [None] * len(blobs)

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = _core.sha256(blobs[i])
            assert _core.hmac_sha256(blobs[i][:64], blobs[i]) == hmac.digest(
                blobs[i][:64], blobs[i], "sha256"
            )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
