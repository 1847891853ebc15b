"""Project Wycheproof vectors: ChaCha20-Poly1305 on every backend, X25519 through age.

The files and their provenance are described in tests/crypto/data/README.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from medveil import crypto
from medveil.crypto import agefile as age
from medveil.errors import AuthenticationError

DATA = Path(__file__).parent / "data"


def load(name: str) -> list[dict[str, Any]]:
    """Every test of a Wycheproof file, each with its group's parameters under 'group'."""
    doc = json.loads((DATA / name).read_text())
    tests = [
        {**t, "group": {k: v for k, v in g.items() if k != "tests"}}
        for g in doc["testGroups"]
        for t in g["tests"]
    ]
    assert len(tests) == doc["numberOfTests"]
    return tests


AEAD = load("chacha20_poly1305_test.json")
XDH = load("x25519_test.json")


def tc_id(t: dict[str, Any]) -> str:
    return f"tc{t['tcId']}"


def test_vector_counts() -> None:
    assert len(AEAD) == 325
    assert sum(t["result"] == "invalid" for t in AEAD) == 69
    assert len(XDH) == 518


# --- ChaCha20-Poly1305 --------------------------------------------------------------------


@pytest.mark.parametrize("t", AEAD, ids=tc_id)
def test_chacha20_poly1305(backend: str, t: dict[str, Any]) -> None:
    key, iv, aad, msg, ct, tag = (
        bytes.fromhex(t[k]) for k in ("key", "iv", "aad", "msg", "ct", "tag")
    )
    if len(iv) != 12:
        # RFC 8439 takes 96-bit nonces only: every other size is refused, never padded.
        assert t["result"] == "invalid"
        with pytest.raises(ValueError, match="nonce must be 12 bytes"):
            crypto.seal(key, iv, msg, aad)
        with pytest.raises(ValueError, match="nonce must be 12 bytes"):
            crypto.open(key, iv, ct + tag, aad)
        return
    if t["result"] == "valid":
        assert crypto.seal(key, iv, msg, aad) == ct + tag
        assert crypto.open(key, iv, ct + tag, aad) == msg
        out = bytearray(len(ct))
        crypto.open_into(key, iv, ct + tag, out, aad)
        assert out == msg
    else:
        assert t["result"] == "invalid"
        assert crypto.seal(key, iv, msg, aad) != ct + tag
        with pytest.raises(AuthenticationError):
            crypto.open(key, iv, ct + tag, aad)
        out = bytearray(b"\x55" * len(ct))
        with pytest.raises(AuthenticationError):
            crypto.open_into(key, iv, ct + tag, out, aad)
        assert out == bytes(len(ct))  # wiped: no plaintext of a forgery survives


# --- X25519, as the age X25519 recipient uses it -------------------------------------------

LABEL = b"age-encryption.org/v1/X25519"


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def age_file_to(share: bytes, shared: bytes, identity_public: bytes, plain: bytes) -> bytes:
    """An age file whose one X25519 stanza carries `share` as the sender's ephemeral key,
    the file key wrapped under the key derived from `shared` (written here independently
    of medveil's age code, from the age-encryption.org/v1 spec)."""
    file_key = hashlib.sha256(share + shared).digest()[:16]
    wrap_key = hkdf(shared, share + identity_public, LABEL)
    body = crypto.seal(wrap_key, bytes(12), file_key)
    head = b"age-encryption.org/v1\n-> X25519 " + b64(share) + b"\n" + b64(body) + b"\n---"
    mac = hmac.new(hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    nonce = bytes(range(16))
    payload = crypto.seal(hkdf(file_key, nonce, b"payload"), bytes(11) + b"\x01", plain)
    return head + b" " + b64(mac) + b"\n" + nonce + payload


def identity_of(private: bytes) -> str:
    return age.bech32_encode("age-secret-key-", private).upper()


@pytest.mark.parametrize("t", XDH, ids=tc_id)
def test_x25519(t: dict[str, Any]) -> None:
    assert t["group"]["curve"] == "curve25519"
    private, public, shared = (bytes.fromhex(t[k]) for k in ("private", "public", "shared"))
    assert t["result"] in ("valid", "acceptable")
    me = X25519PrivateKey.from_private_bytes(private)
    my_public = me.public_key().public_bytes_raw()
    zero = not any(shared)
    # The X25519 of age's recipient code (cryptography's, i.e. OpenSSL's): the RFC 7748
    # function itself, with the all-zero result of a low-order point refused.
    if zero:
        assert {"ZeroSharedSecret", "LowOrderPublic"} & set(t["flags"])
        with pytest.raises(ValueError):
            me.exchange(X25519PublicKey.from_public_bytes(public))
    else:
        assert me.exchange(X25519PublicKey.from_public_bytes(public)) == shared
    # Through medveil's age decryption: a stanza whose share is the vector's public key
    # opens exactly when the shared secret is not all zero (age: "MUST reject" it).
    plain = b"wycheproof tc" + str(t["tcId"]).encode()
    data = age_file_to(public, shared, my_public, plain)
    if zero:
        with pytest.raises(AuthenticationError, match=r"low order|all-zero"):
            age.decrypt_bytes(data, identities=[identity_of(private)])
    else:
        assert age.decrypt_bytes(data, identities=[identity_of(private)]) == plain
