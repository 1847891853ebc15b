"""Authenticated encryption with ChaCha20-Poly1305 (RFC 8439), from medveil's C++ core.

Why "XOR with a key" is not encryption
--------------------------------------
Tutorials often "encrypt" by XOR-ing the data with a password or a fixed key, repeated
to the length of the data. That fails in two independent ways:

* **The key stream repeats.** XOR-ing two ciphertexts made with the same key stream
  cancels the key and leaves ``plaintext1 XOR plaintext2``; a short repeated key also
  lines up with itself every ``len(key)`` bytes. Files with known structure (a DICOM
  preamble, a PNG header, runs of zero pixels) then hand the key stream to anyone: XOR a
  known plaintext with its ciphertext and the key stream is what remains.
* **There is no integrity.** Flipping a ciphertext bit flips the same plaintext bit, so an
  attacker can change a patient ID, a date or a pixel value without knowing the key and
  without anyone noticing; truncating or reordering a file goes unnoticed as well.

What medveil does instead: ChaCha20 turns a 256-bit key and a 96-bit nonce into a key
stream that never repeats within a message and is unrelated across nonces, so every
(key, nonce) pair is used once; Poly1305, keyed by a one-time key derived from the same
(key, nonce), authenticates the ciphertext and any associated data. :func:`open` checks
the 16-byte tag in constant time *before* decrypting and raises
:class:`~medveil.errors.AuthenticationError` on any change, releasing no plaintext.
Sealed files (:mod:`medveil.age`) use the age format: a fresh random file key per file,
per-file payload keys from HKDF, and the STREAM construction that numbers 64 KiB chunks
and marks the last one, so reordering, dropping, duplicating or truncating chunks is
detected too.

The nonce rule: never seal two messages with the same key and nonce. With random
12-byte nonces, stay well below 2**32 messages per key; :mod:`medveil.age` sidesteps this
by drawing a fresh key for every file.

:func:`chacha20_xor` is the raw stream cipher, for callers that need only a key stream
(the CSPRNG of the noise samplers). It is **unauthenticated**: do not use it to protect
data.
"""

from __future__ import annotations

from typing import Any

from medveil import _core
from medveil.errors import AuthenticationError

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "AuthenticationError",
    "chacha20_xor",
    "chacha20_xor_into",
    "open",
    "open_into",
    "poly1305",
    "seal",
    "seal_into",
]

KEY_BYTES: int = _core.crypto.KEY_BYTES
NONCE_BYTES: int = _core.crypto.NONCE_BYTES
TAG_BYTES: int = _core.crypto.TAG_BYTES

# Anything with the buffer protocol: bytes, bytearray, memoryview, numpy arrays.
Buffer = Any


def seal(key: Buffer, nonce: Buffer, data: Buffer, aad: Buffer = b"") -> bytes:
    """Encrypt and authenticate data; returns ciphertext followed by the 16-byte tag."""
    return _core.crypto.aead_seal(key, nonce, data, aad=aad)


def seal_into(key: Buffer, nonce: Buffer, data: Buffer, out: Buffer, aad: Buffer = b"") -> int:
    """Seal data into the writable buffer out (len(data) + 16 bytes); returns bytes written.

    ``out`` may share its start with ``data`` (sealing in place); reusing one output
    buffer across calls avoids an allocation per message.
    """
    _core.crypto.aead_seal(key, nonce, data, aad=aad, out=out)
    return memoryview(data).nbytes + TAG_BYTES


def open(key: Buffer, nonce: Buffer, ciphertext: Buffer, aad: Buffer = b"") -> bytes:
    """Verify and decrypt ciphertext || tag; raises AuthenticationError on any tampering."""
    return _core.crypto.aead_open(key, nonce, ciphertext, aad=aad)


def open_into(
    key: Buffer, nonce: Buffer, ciphertext: Buffer, out: Buffer, aad: Buffer = b""
) -> int:
    """Verify, then decrypt into out (len(ciphertext) - 16 bytes); returns bytes written.

    Each input byte is read once (a writer racing on ``ciphertext`` cannot get altered
    plaintext accepted). Raises AuthenticationError when the tag does not verify, with
    ``out`` wiped (zeroed; opened in place, it holds the ciphertext again).
    """
    _core.crypto.aead_open(key, nonce, ciphertext, aad=aad, out=out)
    return memoryview(ciphertext).nbytes - TAG_BYTES


def chacha20_xor(key: Buffer, nonce: Buffer, data: Buffer, counter: int = 0) -> bytes:
    """XOR data with the ChaCha20 key stream from block ``counter``: UNAUTHENTICATED.

    Anyone can flip bits of the result undetected, and reusing (key, nonce) leaks the
    XOR of the plaintexts; use :func:`seal` / :func:`open` to protect data.
    """
    return _core.crypto.chacha20_xor(key, nonce, data, counter=counter)


def chacha20_xor_into(
    key: Buffer, nonce: Buffer, data: Buffer, out: Buffer, counter: int = 0
) -> None:
    """Like :func:`chacha20_xor` (UNAUTHENTICATED) but write into out, which may be data."""
    _core.crypto.chacha20_xor(key, nonce, data, counter=counter, out=out)


def poly1305(key: Buffer, data: Buffer) -> bytes:
    """Poly1305 tag of data under a one-time 32-byte key (never reuse the key)."""
    return _core.crypto.poly1305(key, data)
