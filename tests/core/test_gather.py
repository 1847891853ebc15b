"""The core's gather: parts joined into one bytes object, hashed in the same pass.

Checked against b"".join and hashlib on every size class the binding treats apart (with and
without the GIL, with and without the huge-page hint, parts crossing the hash's chunks).
"""

from __future__ import annotations

import hashlib
import itertools
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core


def _expect(parts: list[object]) -> tuple[bytes, str]:
    joined = b"".join(bytes(memoryview(p).cast("B")) for p in parts)  # type: ignore[arg-type]
    return joined, hashlib.sha256(joined).hexdigest()


@pytest.mark.parametrize("hash_", [True, False])
def test_published_vector_split_anyhow(hash_: bool) -> None:
    """FIPS 180-2's one-million-'a' message, cut into uneven parts, gives its digest."""
    message = b"a" * 1_000_000
    cuts = [0, 1, 64, 262_143, 262_144, 600_001, 1_000_000]
    parts = [message[a:b] for a, b in itertools.pairwise(cuts)]
    data, digest = _core.gather(parts, hash_)
    assert type(data) is bytes and data == message
    want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    assert digest == (want if hash_ else None)


def test_empty() -> None:
    """No parts, or only empty ones: empty bytes and the empty message's digest."""
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert _core.gather([]) == (b"", empty)
    assert _core.gather([b"", bytearray(), memoryview(b"")]) == (b"", empty)


@pytest.mark.parametrize(
    "sizes",
    [
        [10, 20],  # with the GIL
        [300, 70_000],  # without it
        [5_000, 4 << 20, 1, 3],  # the huge-page hint, parts off the hash's chunk bounds
        [0, 9 << 20, 0, 777],
    ],
)
def test_matches_join_and_hashlib(sizes: list[int]) -> None:
    """bytes, bytearray, memoryview slices and numpy arrays, joined and hashed as hashlib does."""
    rng = np.random.default_rng(sum(sizes))
    parts: list[object] = []
    for i, n in enumerate(sizes):
        raw = rng.integers(0, 256, n + 8, dtype=np.uint8)
        kind = i % 4
        if kind == 0:
            parts.append(raw[3 : 3 + n].tobytes())
        elif kind == 1:
            parts.append(memoryview(bytearray(raw.tobytes()))[5 : 5 + n])
        elif kind == 2:
            parts.append(bytearray(raw[:n].tobytes()))
        else:
            parts.append(raw[1 : 1 + n])
    want, digest = _expect(parts)
    assert _core.gather(parts) == (want, digest)
    assert _core.gather(parts, False) == (want, None)
    assert _core.gather(tuple(parts), hash=True) == (want, digest)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_any_parts(parts: list[bytes]) -> None:
    """Any list of parts: the join and its SHA-256."""
    assert _core.gather(parts) == _expect(list(parts))


def test_output_is_a_copy() -> None:
    """The result does not share memory with the parts: changing them later changes nothing."""
    src = bytearray(b"x" * 100_000)
    data, digest = _core.gather([memoryview(src)[:50_000], b"tail"])
    src[:10] = b"0123456789"
    assert data == b"x" * 50_000 + b"tail"
    assert digest == hashlib.sha256(data).hexdigest()


def test_rejects_what_is_not_bytes_like() -> None:
    """A part without the buffer protocol, or not contiguous, is refused by name."""
    with pytest.raises(TypeError, match=r"parts\[1\]"):
        _core.gather([b"a", "text"])
    strided = np.arange(100, dtype=np.uint8)[::2]
    with pytest.raises((ValueError, BufferError)):
        _core.gather([strided])
    with pytest.raises(TypeError):
        _core.gather(b"abc" * 3)  # its items are ints, not parts


def test_threads() -> None:
    """Calls in threads (the GIL released) each give their own parts' result."""
    rng = np.random.default_rng(7)
    inputs = [[rng.bytes(200_000 + i), rng.bytes(1000)] for i in range(6)]
    results: dict[int, tuple[bytes, str | None]] = {}

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = _core.gather(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, parts in enumerate(inputs):
        assert results[i] == _expect(list(parts))
