"""Open cannot be raced: a writer changing the input during open never gets altered plaintext
accepted (issue 23, item 4).

The kernels run without the GIL, so a Python thread can write into the input buffer (a
bytearray, a numpy array, an mmap: memory another process may share) while open runs. An
open that read its input twice (once for the MAC, once to decrypt) could authenticate the
original bytes and decrypt modified ones. Each try below must either raise
AuthenticationError or return exactly the original plaintext.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable

import numpy as np
import pytest
from medveil import _core, crypto
from medveil.errors import AuthenticationError

MIB = 1 << 20
SIZE = 64 * MIB
# Tries per buffer kind; the scalar backend is ~10x slower, so it gets fewer.
TRIES = {"scalar": 3}
DEFAULT_TRIES = 12


def make_buffer(kind: str, data: bytes) -> tuple[object, Callable[[int], None]]:
    """A buffer of `kind` holding data, and a function flipping bit 0 of one of its bytes."""
    if kind == "bytearray":
        buf: object = bytearray(data)
    elif kind == "numpy":
        buf = np.frombuffer(bytearray(data), dtype=np.uint8)
    elif kind == "mmap":
        m = mmap.mmap(-1, len(data))
        m[:] = data
        buf = m
    else:  # a memoryview of a bytearray, as a caller slicing its buffer passes it
        buf = memoryview(bytearray(data))
    view = memoryview(buf)  # type: ignore[arg-type]

    def flip(i: int) -> None:
        view[i] ^= 1

    return buf, flip


class Writer(threading.Thread):
    """Flips bytes of the sealed input, and flips them back, until stopped.

    Flipping back matters: the bytes are then the original ones part of the time, the
    pattern that let a two-pass open MAC the original and decrypt the modified bytes.
    """

    def __init__(self, flip: Callable[[int], None], size: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.flip, self.size, self.seed = flip, size, seed
        self.stop = threading.Event()
        self.flips = 0

    def run(self) -> None:
        rng = np.random.default_rng(self.seed)
        while not self.stop.is_set():
            # Positions spread over the whole buffer, in batches to keep the loop cheap.
            for i in rng.integers(0, self.size, 256).tolist():
                self.flip(i)
                self.flip(i)
                self.flips += 2


def race(
    opener: Callable[[], bytes], flip: Callable[[int], None], size: int, plain: bytes, tries: int
) -> tuple[int, int]:
    """Run opener `tries` times against a writer; returns (accepted, rejected)."""
    accepted = rejected = 0
    for t in range(tries):
        writer = Writer(flip, size, seed=t)
        writer.start()
        try:
            try:
                got = opener()
            except AuthenticationError:
                rejected += 1
                continue
        finally:
            writer.stop.set()
            writer.join()
        # Whatever open accepted must be exactly the original plaintext.
        assert got == plain, "open returned altered plaintext as authenticated"
        accepted += 1
    return accepted, rejected


@pytest.fixture(scope="module")
def sealed() -> tuple[bytes, bytes, bytes, bytes]:
    key, nonce = os.urandom(32), os.urandom(12)
    plain = np.random.default_rng(23).bytes(SIZE)
    return key, nonce, plain, crypto.seal(key, nonce, plain, b"hdr")


@pytest.mark.parametrize("kind", ["bytearray", "numpy", "mmap", "memoryview"])
@pytest.mark.parametrize("into", [False, True], ids=["returned", "into"])
def test_open_racing_writer(
    backend: str, sealed: tuple[bytes, bytes, bytes, bytes], kind: str, into: bool
) -> None:
    key, nonce, plain, ct = sealed
    buf, flip = make_buffer(kind, ct)
    out = bytearray(SIZE)

    def opener() -> bytes:
        if into:
            out[:16] = b"\xa5" * 16  # a failed open must not leave stale plaintext either
            try:
                crypto.open_into(key, nonce, buf, out, b"hdr")  # type: ignore[arg-type]
            except AuthenticationError:
                # Wiped: no byte of the failed open's plaintext is left in out.
                assert not any(out[::4096]), "a failed open left bytes in out"
                raise
            return bytes(out)
        return crypto.open(key, nonce, buf, b"hdr")  # type: ignore[arg-type]

    tries = TRIES.get(backend, DEFAULT_TRIES)
    accepted, rejected = race(opener, flip, len(ct), plain, tries)
    assert accepted + rejected == tries
    # The buffer is intact again (every flip was undone), so a quiet open succeeds.
    assert crypto.open(key, nonce, buf, b"hdr") == plain  # type: ignore[arg-type]


def test_age_chunks_racing_writer(backend: str) -> None:
    key = os.urandom(32)
    plain = np.random.default_rng(5).bytes(16 * MIB + 1234)
    size = _core.crypto.age_sealed_size(len(plain), True)
    sealed_buf = bytearray(size)
    _core.crypto.age_seal_chunks(key, 0, plain, sealed_buf, final=True, threads=1)
    buf, flip = make_buffer("mmap", bytes(sealed_buf))
    out = bytearray(size)

    def opener() -> bytes:
        n = _core.crypto.age_open_chunks(key, 0, buf, out, final=True, threads=2)
        return bytes(out[:n])

    def checked() -> bytes:
        try:
            return opener()
        except AuthenticationError:
            # Every chunk's plaintext is wiped when any chunk fails.
            assert not any(out[: len(plain)]), "a failed age open left plaintext in out"
            raise

    tries = TRIES.get(backend, DEFAULT_TRIES)
    accepted, rejected = race(checked, flip, size, plain, tries)
    assert accepted + rejected == tries
    assert opener() == plain


def test_failed_open_wipes_out_and_restores_in_place(backend: str) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    plain = os.urandom(100_000)
    ct = bytearray(crypto.seal(key, nonce, plain))
    ct[-1] ^= 1  # bad tag: the whole message is decrypted before the tag is checked
    out = bytearray(b"\xaa" * len(plain))
    with pytest.raises(AuthenticationError):
        crypto.open_into(key, nonce, ct, out)
    assert out == bytes(len(plain))
    before = bytes(ct)
    with pytest.raises(AuthenticationError):
        crypto.open_into(key, nonce, ct, memoryview(ct)[: len(plain)])  # in place
    assert bytes(ct) == before
