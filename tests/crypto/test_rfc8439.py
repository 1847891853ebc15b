"""RFC 8439 known-answer vectors (sections 2.3.2, 2.4.2, 2.5.2, 2.6.2, 2.8.2, Appendix A)."""

from __future__ import annotations

import pytest
from medveil import _core, crypto
from medveil.errors import AuthenticationError


def h(text: str) -> bytes:
    """Bytes from hex written with any spacing or colons, as the RFC prints it."""
    return bytes.fromhex(text.replace(":", "").replace("\n", " "))


KEY_0_31 = bytes(range(32))
IETF_TEXT = (
    b"Any submission to the IETF intended by the Contributor for publication as all or part "
    b"of an IETF Internet-Draft or RFC and any statement made within the context of an IETF "
    b'activity is considered an "IETF Contribution". Such statements include oral statements '
    b"in IETF sessions, as well as written and electronic communications made at any time or "
    b"place, which are addressed to"
)
JABBERWOCKY = (
    b"'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\n"
    b"All mimsy were the borogoves,\nAnd the mome raths outgrabe."
)
SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
KEY_1C92 = h(
    "1c 92 40 a5 eb 55 d3 8a f3 33 88 86 04 f6 b5 f0"
    " 47 39 17 c1 40 2b 80 09 9d ca 5c bc 20 70 75 c0"
)


def test_inputs_have_rfc_lengths() -> None:
    assert (len(IETF_TEXT), len(JABBERWOCKY), len(SUNSCREEN)) == (375, 127, 114)


# --- 2.3.2 and A.1: the block function --------------------------------------------------

BLOCKS = [
    # (key, counter, nonce, serialized block)
    (
        KEY_0_31,
        1,
        h("00 00 00 09 00 00 00 4a 00 00 00 00"),
        h(
            "10 f1 e7 e4 d1 3b 59 15 50 0f dd 1f a3 20 71 c4 c7 d1 f4 c7 33 c0 68 03 04 22 aa 9a"
            " c3 d4 6c 4e d2 82 64 46 07 9f aa 09 14 c2 d7 05 d9 8b 02 a2 b5 12 9c d1 de 16 4e b9"
            " cb d0 83 e8 a2 50 3c 4e"
        ),
    ),
    (  # A.1 #1
        bytes(32),
        0,
        bytes(12),
        h(
            "76 b8 e0 ad a0 f1 3d 90 40 5d 6a e5 53 86 bd 28 bd d2 19 b8 a0 8d ed 1a a8 36 ef cc"
            " 8b 77 0d c7 da 41 59 7c 51 57 48 8d 77 24 e0 3f b8 d8 4a 37 6a 43 b8 f4 15 18 a1 1c"
            " c3 87 b6 69 b2 ee 65 86"
        ),
    ),
    (  # A.1 #4
        b"\x00\xff" + bytes(30),
        2,
        bytes(12),
        h(
            "72 d5 4d fb f1 2e c4 4b 36 26 92 df 94 13 7f 32 8f ea 8d a7 39 90 26 5e c1 bb be a1"
            " ae 9a f0 ca 13 b2 5a a2 6c b4 a6 48 cb 9b 9d 1b e6 5b 2c 09 24 a6 6c 54 d5 45 ec 1b"
            " 73 74 f4 87 2e 99 f0 96"
        ),
    ),
    (  # A.1 #5
        bytes(32),
        0,
        bytes(11) + b"\x02",
        h(
            "c2 c6 4d 37 8c d5 36 37 4a e2 04 b9 ef 93 3f cd 1a 8b 22 88 b3 df a4 96 72 ab 76 5b"
            " 54 ee 27 c7 8a 97 0e 0e 95 5c 14 f3 a8 8e 74 1b 97 c2 86 f7 5f 8f c2 99 e8 14 83 62"
            " fa 19 8a 39 53 1b ed 6d"
        ),
    ),
]


@pytest.mark.parametrize(("key", "counter", "nonce", "block"), BLOCKS)
def test_block_function(backend: str, key: bytes, counter: int, nonce: bytes, block: bytes) -> None:
    assert _core.crypto.chacha20_block(key, counter, nonce) == block
    # The keystream through the dispatched bulk path is the same block.
    assert crypto.chacha20_xor(key, nonce, bytes(64), counter=counter) == block


# --- 2.4.2 and A.2: encryption -----------------------------------------------------------

SUNSCREEN_CT = h(
    "6e 2e 35 9a 25 68 f9 80 41 ba 07 28 dd 0d 69 81 e9 7e 7a ec 1d 43 60 c2 0a 27 af cc fd 9f"
    " ae 0b f9 1b 65 c5 52 47 33 ab 8f 59 3d ab cd 62 b3 57 16 39 d6 24 e6 51 52 ab 8f 53 0c 35"
    " 9f 08 61 d8 07 ca 0d bf 50 0d 6a 61 56 a3 8e 08 8a 22 b6 5e 52 bc 51 4d 16 cc f8 06 81 8c"
    " e9 1a b7 79 37 36 5a f9 0b bf 74 a3 5b e6 b4 0b 8e ed f2 78 5e 42 87 4d"
)
A2_3_CT = h(
    "62 e6 34 7f 95 ed 87 a4 5f fa e7 42 6f 27 a1 df 5f b6 91 10 04 4c 0d 73 11 8e ff a9 5b 01"
    " e5 cf 16 6d 3d f2 d7 21 ca f9 b2 1e 5f b1 4c 61 68 71 fd 84 c5 4f 9d 65 b2 83 19 6c 7f e4"
    " f6 05 53 eb f3 9c 64 02 c4 22 34 e3 2a 35 6b 3e 76 43 12 a6 1a 55 32 05 57 16 ea d6 96 25"
    " 68 f8 7d 3f 3f 77 04 c6 a8 d1 bc d1 bf 4d 50 d6 15 4b 6d a7 31 b1 87 b5 8d fd 72 8a fa 36"
    " 75 7a 79 7a c1 88 d1"
)
A2_2_CT_HEAD = h("a3 fb f0 7d f3 fa 2f de 4f 37 6c a2 3e 82 73 70")
A2_2_CT_TAIL = h("7a c6 1d d2 9c 6f 21 ba 5b 86 2f 37 30 e3 7c fd c4 fd 80 6c 22 f2 21")


def test_encryption_sunscreen(backend: str) -> None:
    nonce = h("00 00 00 00 00 00 00 4a 00 00 00 00")
    assert crypto.chacha20_xor(KEY_0_31, nonce, SUNSCREEN, counter=1) == SUNSCREEN_CT
    assert crypto.chacha20_xor(KEY_0_31, nonce, SUNSCREEN_CT, counter=1) == SUNSCREEN


def test_encryption_appendix_a2(backend: str) -> None:
    ct = crypto.chacha20_xor(bytes(31) + b"\x01", bytes(11) + b"\x02", IETF_TEXT, counter=1)
    assert ct[:16] == A2_2_CT_HEAD and ct[-23:] == A2_2_CT_TAIL and len(ct) == 375
    assert crypto.chacha20_xor(KEY_1C92, bytes(11) + b"\x02", JABBERWOCKY, counter=42) == A2_3_CT


# --- 2.5.2 and A.3: Poly1305 -------------------------------------------------------------

FF16 = "FF " * 16
POLY = [
    (  # 2.5.2
        h(
            "85:d6:be:78:57:55:6d:33:7f:44:52:fe:42:d5:06:a8:01:03:80:8a:fb:0d:b2:fd:4a:bf:f6:af"
            ":41:49:f5:1b"
        ),
        b"Cryptographic Forum Research Group",
        h("a8:06:1d:c1:30:51:36:c6:c2:2b:8b:af:0c:01:27:a9"),
    ),
    (bytes(32), bytes(64), bytes(16)),  # A.3 #1
    (  # A.3 #2
        bytes(16) + h("36 e5 f6 b5 c5 e0 60 70 f0 ef ca 96 22 7a 86 3e"),
        IETF_TEXT,
        h("36 e5 f6 b5 c5 e0 60 70 f0 ef ca 96 22 7a 86 3e"),
    ),
    (  # A.3 #3
        h("36 e5 f6 b5 c5 e0 60 70 f0 ef ca 96 22 7a 86 3e") + bytes(16),
        IETF_TEXT,
        h("f3 47 7e 7c d9 54 17 af 89 a6 b8 79 4c 31 0c f0"),
    ),
    (KEY_1C92, JABBERWOCKY, h("45 41 66 9a 7e aa ee 61 e7 08 dc 7c bc c5 eb 62")),  # A.3 #4
    (b"\x02" + bytes(31), h(FF16), b"\x03" + bytes(15)),  # A.3 #5
    (b"\x02" + bytes(15) + h(FF16), b"\x02" + bytes(15), b"\x03" + bytes(15)),  # A.3 #6
    (  # A.3 #7
        b"\x01" + bytes(31),
        h(FF16 + "F0" + " FF" * 15 + " 11" + " 00" * 15),
        b"\x05" + bytes(15),
    ),
    (  # A.3 #8
        b"\x01" + bytes(31),
        h(FF16 + "FB" + " FE" * 15 + " 01" * 16),
        bytes(16),
    ),
    (b"\x02" + bytes(31), h("FD" + " FF" * 15), h("FA" + " FF" * 15)),  # A.3 #9
    (  # A.3 #10
        h("01 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00") + bytes(16),
        h(
            "E3 35 94 D7 50 5E 43 B9 00 00 00 00 00 00 00 00 33 94 D7 50 5E 43 79 CD 01 00 00 00"
            " 00 00 00 00" + " 00" * 16 + " 01" + " 00" * 15
        ),
        h("14 00 00 00 00 00 00 00 55 00 00 00 00 00 00 00"),
    ),
    (  # A.3 #11
        h("01 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00") + bytes(16),
        h(
            "E3 35 94 D7 50 5E 43 B9 00 00 00 00 00 00 00 00 33 94 D7 50 5E 43 79 CD 01 00 00 00"
            " 00 00 00 00" + " 00" * 16
        ),
        b"\x13" + bytes(15),
    ),
]


@pytest.mark.parametrize(("key", "msg", "tag"), POLY)
def test_poly1305(backend: str, key: bytes, msg: bytes, tag: bytes) -> None:
    assert crypto.poly1305(key, msg) == tag


# --- 2.6.2 and A.4: Poly1305 key generation ----------------------------------------------

KEYGEN = [
    (
        bytes(range(0x80, 0xA0)),
        h("00 00 00 00 00 01 02 03 04 05 06 07"),
        h(
            "8a d5 a0 8b 90 5f 81 cc 81 50 40 27 4a b2 94 71 a8 33 b6 37 e3 fd 0d a5 08 db b8 e2"
            " fd d1 a6 46"
        ),
    ),
    (
        bytes(32),
        bytes(12),
        h(
            "76 b8 e0 ad a0 f1 3d 90 40 5d 6a e5 53 86 bd 28 bd d2 19 b8 a0 8d ed 1a a8 36 ef cc"
            " 8b 77 0d c7"
        ),
    ),
    (
        bytes(31) + b"\x01",
        bytes(11) + b"\x02",
        h(
            "ec fa 25 4f 84 5f 64 74 73 d3 cb 14 0d a9 e8 76 06 cb 33 06 6c 44 7b 87 bc 26 66 dd"
            " e3 fb b7 39"
        ),
    ),
    (
        KEY_1C92,
        bytes(11) + b"\x02",
        h(
            "96 5e 3b c6 f9 ec 7e d9 56 08 08 f4 d2 29 f9 4b 13 7f f2 75 ca 9b 3f cb dd 59 de aa"
            " d2 33 10 ae"
        ),
    ),
]


@pytest.mark.parametrize(("key", "nonce", "otk"), KEYGEN)
def test_poly1305_key_generation(backend: str, key: bytes, nonce: bytes, otk: bytes) -> None:
    assert crypto.chacha20_xor(key, nonce, bytes(32), counter=0) == otk
    # The AEAD's tag over empty input is Poly1305(otk, le64(0) || le64(0)).
    assert crypto.seal(key, nonce, b"") == crypto.poly1305(otk, bytes(16))


# --- 2.8.2 and A.5: the AEAD -------------------------------------------------------------

AEAD_282 = dict(
    key=bytes(range(0x80, 0xA0)),
    nonce=h("07 00 00 00 40 41 42 43 44 45 46 47"),
    aad=h("50 51 52 53 c0 c1 c2 c3 c4 c5 c6 c7"),
    ct=h(
        "d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2 a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36"
        " ee 62 d6 3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b 1a 71 de 0a 9e 06 0b 29 05 d6"
        " a5 b6 7e cd 3b 36 92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58 fa b3 24 e4 fa d6 75"
        " 94 55 85 80 8b 48 31 d7 bc 3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b 61 16"
    ),
    tag=h("1a:e1:0b:59:4f:09:e2:6a:7e:90:2e:cb:d0:60:06:91"),
)

A5_CT = h(
    "64 a0 86 15 75 86 1a f4 60 f0 62 c7 9b e6 43 bd 5e 80 5c fd 34 5c f3 89 f1 08 67 0a c7 6c"
    " 8c b2 4c 6c fc 18 75 5d 43 ee a0 9e e9 4e 38 2d 26 b0 bd b7 b7 3c 32 1b 01 00 d4 f0 3b 7f"
    " 35 58 94 cf 33 2f 83 0e 71 0b 97 ce 98 c8 a8 4a bd 0b 94 81 14 ad 17 6e 00 8d 33 bd 60 f9"
    " 82 b1 ff 37 c8 55 97 97 a0 6e f4 f0 ef 61 c1 86 32 4e 2b 35 06 38 36 06 90 7b 6a 7c 02 b0"
    " f9 f6 15 7b 53 c8 67 e4 b9 16 6c 76 7b 80 4d 46 a5 9b 52 16 cd e7 a4 e9 90 40 c5 a4 04 33"
    " 22 5e e2 82 a1 b0 a0 6c 52 3e af 45 34 d7 f8 3f a1 15 5b 00 47 71 8c bc 54 6a 0d 07 2b 04"
    " b3 56 4e ea 1b 42 22 73 f5 48 27 1a 0b b2 31 60 53 fa 76 99 19 55 eb d6 31 59 43 4e ce bb"
    " 4e 46 6d ae 5a 10 73 a6 72 76 27 09 7a 10 49 e6 17 d9 1d 36 10 94 fa 68 f0 ff 77 98 71 30"
    " 30 5b ea ba 2e da 04 df 99 7b 71 4d 6c 6f 2c 29 a6 ad 5c b4 02 2b 02 70 9b"
)
A5_PT = (
    b"Internet-Drafts are draft documents valid for a maximum of six months and may be "
    b"updated, replaced, or obsoleted by other documents at any time. It is inappropriate to "
    b"use Internet-Drafts as reference material or to cite them other than as "
    b"/\xe2\x80\x9cwork in progress./\xe2\x80\x9d"
)


def test_aead_section_2_8_2(backend: str) -> None:
    v = AEAD_282
    sealed = crypto.seal(v["key"], v["nonce"], SUNSCREEN, aad=v["aad"])
    assert sealed == v["ct"] + v["tag"]
    assert crypto.open(v["key"], v["nonce"], sealed, aad=v["aad"]) == SUNSCREEN


def test_aead_decryption_appendix_a5(backend: str) -> None:
    nonce = h("00 00 00 00 01 02 03 04 05 06 07 08")
    aad = h("f3 33 88 86 00 00 00 00 00 00 4e 91")
    tag = h("ee ad 9d 67 89 0c bb 22 39 23 36 fe a1 85 1f 38")
    assert len(A5_CT) == 265
    assert crypto.open(KEY_1C92, nonce, A5_CT + tag, aad=aad) == A5_PT
    assert crypto.seal(KEY_1C92, nonce, A5_PT, aad=aad) == A5_CT + tag
    with pytest.raises(AuthenticationError):
        crypto.open(KEY_1C92, nonce, A5_CT + tag[:-1] + bytes([tag[-1] ^ 1]), aad=aad)
