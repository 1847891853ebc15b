"""Encryption: the ChaCha20-Poly1305 AEAD, age files, key files and the re-identification vault.

``medveil.crypto`` itself is the AEAD's public face (``crypto.seal``, ``crypto.open``); the
age format, key files and the vault are its submodules.
"""

from medveil.crypto.aead import (
    KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    AuthenticationError,
    chacha20_xor,
    chacha20_xor_into,
    open,
    open_into,
    poly1305,
    seal,
    seal_into,
)

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
