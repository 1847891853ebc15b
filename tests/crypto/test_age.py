"""age-format sealed files: Bech32 keys, round trips, tampering, and interop with age/pyrage."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core
from medveil.crypto import agefile as age
from medveil.errors import AuthenticationError

from .conftest import needs_age, run_age

CHUNK = age.CHUNK
SEALED = age.SEALED_CHUNK
FAST_SCRYPT = 10  # tests that do not interoperate use a cheap work factor


@pytest.fixture(scope="module")
def identity() -> tuple[str, str]:
    return age.generate_identity()


def rand(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


# --- Bech32 --------------------------------------------------------------------------

SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def test_bech32_age_spec_example() -> None:
    hrp, secret = age.bech32_decode(SPEC_IDENTITY)
    assert (hrp, secret) == ("age-secret-key-", b"\x42" * 32)
    assert age.bech32_encode(hrp, secret).upper() == SPEC_IDENTITY
    assert age.recipient_from_identity(SPEC_IDENTITY) == SPEC_RECIPIENT
    hrp, public = age.bech32_decode(SPEC_RECIPIENT)
    assert hrp == "age" and len(public) == 32
    assert age.bech32_encode("age", public) == SPEC_RECIPIENT


@pytest.mark.parametrize(
    "text",
    [
        "A12UEL5L",
        "a12uel5l",
        "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        "?1ezyfcl",
    ],
)
def test_bech32_bip173_valid(text: str) -> None:
    hrp, data = age.bech32_decode(text)
    assert age.bech32_encode(hrp, data) == text.lower()


@pytest.mark.parametrize(
    "text",
    [
        *("pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "A1G7SGD8", "10a06t8"),
        *("1qzzfhee", "A12uEL5L", SPEC_RECIPIENT[:-1] + "k"),
        SPEC_RECIPIENT.replace("zvky", "zvkz"),
    ],
)
def test_bech32_invalid_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="bech32"):
        age.bech32_decode(text)


def test_generated_keys_match_age_keygen_derivation(tmp_path: Path) -> None:
    path = tmp_path / "key.txt"
    recipient = age.keygen(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (ident,) = age.load_identities(path)
    assert age.recipient_from_identity(ident) == recipient
    assert f"# public key: {recipient}" in path.read_text()
    with pytest.raises(FileExistsError):
        age.keygen(path)  # never overwrite a key


@needs_age
def test_keygen_agrees_with_age_keygen(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "key.txt"
    recipient = age.keygen(path)
    out = subprocess.run(
        ["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == recipient


# --- round trips ---------------------------------------------------------------------

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_x25519(backend: str, identity: tuple[str, str], size: int) -> None:
    ident, recipient = identity
    data = rand(size, size)
    sealed = age.encrypt_bytes(data, recipients=[recipient])
    chunks = max(1, -(-size // CHUNK))
    assert len(sealed) - sealed.index(b"\n---") > size + 16 * chunks + 16
    assert age.decrypt_bytes(sealed, identities=[ident]) == data


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1])
def test_round_trip_passphrase(size: int) -> None:
    data = rand(size, size)
    sealed = age.encrypt_bytes(data, passphrase="pw \u00e9", work_factor=FAST_SCRYPT)
    assert age.decrypt_bytes(sealed, passphrase="pw \u00e9") == data


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 2 * CHUNK, 5 * CHUNK, 7 * CHUNK + 5])
def test_batches_and_threads(
    monkeypatch: pytest.MonkeyPatch, identity: tuple[str, str], size: int, threads: int
) -> None:
    # Small batches exercise the carried-over last chunk at every window boundary.
    monkeypatch.setattr(age, "BATCH_CHUNKS", 2)
    ident, recipient = identity
    data = rand(size, threads)
    sealed = age.encrypt_bytes(data, recipients=[recipient], threads=threads)
    assert age.decrypt_bytes(sealed, identities=[ident], threads=4 - threads) == data


def test_multiple_recipients(identity: tuple[str, str]) -> None:
    other = age.generate_identity()
    sealed = age.encrypt_bytes(b"key table", recipients=[identity[1], other[1]])
    assert age.decrypt_bytes(sealed, identities=[other[0]]) == b"key table"
    assert age.decrypt_bytes(sealed, identities=[identity[0]]) == b"key table"


def test_files_round_trip_and_no_partial_output(tmp_path: Path, identity: tuple[str, str]) -> None:
    ident, recipient = identity
    src = tmp_path / "original.dcm"
    src.write_bytes(rand(3 * CHUNK + 5))
    age.encrypt_file(src, tmp_path / "x.age", recipients=[recipient])
    age.decrypt_file(tmp_path / "x.age", tmp_path / "back.dcm", identities=[ident])
    assert (tmp_path / "back.dcm").read_bytes() == src.read_bytes()
    assert stat.S_IMODE((tmp_path / "back.dcm").stat().st_mode) == 0o600
    # Tamper with the last chunk: earlier chunks verify, but nothing may be released.
    blob = bytearray((tmp_path / "x.age").read_bytes())
    blob[-3] ^= 0x10
    (tmp_path / "bad.age").write_bytes(blob)
    with pytest.raises(AuthenticationError, match="chunk 3"):
        age.decrypt_file(tmp_path / "bad.age", tmp_path / "out.dcm", identities=[ident])
    assert not (tmp_path / "out.dcm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "back.dcm",
        "bad.age",
        "original.dcm",
        "x.age",
    ]


# --- the positional path for regular files --------------------------------------------


@pytest.fixture
def positional_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the worker count asked of every positional run, with 2-chunk batches."""
    calls: list[int] = []
    real = age._run_positional

    def spy(*args: object, **kwargs: object) -> int:
        calls.append(args[6])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(age, "_run_positional", spy)
    monkeypatch.setattr(age, "POSITIONAL_BATCH_CHUNKS", 2)
    return calls


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [2 * CHUNK + 1, 4 * CHUNK, 5 * CHUNK, 7 * CHUNK + 5])
def test_positional_files_match_the_stream_path(
    tmp_path: Path,
    identity: tuple[str, str],
    positional_calls: list[int],
    size: int,
    threads: int,
) -> None:
    # Regular files go through pread/seal/pwrite workers; batches of 2 chunks put batch
    # boundaries (and the final chunk) at every position, and the result must be a file
    # the stream path opens, and vice versa.
    ident, recipient = identity
    data = rand(size, size + threads)
    src = tmp_path / "plain"
    src.write_bytes(data)
    age.encrypt_file(src, tmp_path / "x.age", recipients=[recipient], threads=threads)
    assert positional_calls == [threads]
    sealed = (tmp_path / "x.age").read_bytes()
    assert age.decrypt_bytes(sealed, identities=[ident]) == data
    (tmp_path / "s.age").write_bytes(age.encrypt_bytes(data, recipients=[recipient]))
    age.decrypt_file(tmp_path / "s.age", tmp_path / "back", identities=[ident], threads=threads)
    assert positional_calls == [threads, threads]
    assert (tmp_path / "back").read_bytes() == data


@needs_age
def test_positional_files_open_with_the_age_command(
    tmp_path: Path, positional_calls: list[int]
) -> None:
    data = rand(9 * CHUNK + 100, 11)
    (tmp_path / "pt").write_bytes(data)
    key = tmp_path / "key.txt"
    recipient = age.keygen(key)
    age.encrypt_file(tmp_path / "pt", tmp_path / "m.age", recipients=[recipient], threads=2)
    assert run_age(["-d", "-i", str(key), str(tmp_path / "m.age")]) == data
    run_age(["-e", "-r", recipient, "-o", str(tmp_path / "a.age"), str(tmp_path / "pt")])
    age.decrypt_file(
        tmp_path / "a.age", tmp_path / "a.out", identities=age.load_identities(key), threads=2
    )
    assert (tmp_path / "a.out").read_bytes() == data
    assert positional_calls == [2, 2]


@pytest.mark.parametrize("threads", [1, 2])
def test_positional_tampering_releases_nothing(
    tmp_path: Path, identity: tuple[str, str], positional_calls: list[int], threads: int
) -> None:
    ident, recipient = identity
    (tmp_path / "pt").write_bytes(rand(8 * CHUNK + 1, 12))
    age.encrypt_file(tmp_path / "pt", tmp_path / "x.age", recipients=[recipient])
    blob = bytearray((tmp_path / "x.age").read_bytes())
    header, _, chunks = split(bytes(blob))
    blob[len(header) + 16 + 5 * SEALED + 7] ^= 1  # a byte of chunk 5, in the third batch
    (tmp_path / "bad.age").write_bytes(blob)
    with pytest.raises(AuthenticationError, match="chunk 5"):
        age.decrypt_file(
            tmp_path / "bad.age", tmp_path / "out", identities=[ident], threads=threads
        )
    # Dropping the last chunk makes chunk 7 a non-final chunk where the end is expected.
    (tmp_path / "cut.age").write_bytes(bytes(blob[: len(header) + 16 + 8 * SEALED]))
    with pytest.raises(AuthenticationError):
        age.decrypt_file(
            tmp_path / "cut.age", tmp_path / "out", identities=[ident], threads=threads
        )
    assert not (tmp_path / "out").exists()
    assert len(chunks) == 9
    assert positional_calls == [0, threads, threads]


def test_positional_refuses_a_file_that_changed_size(tmp_path: Path) -> None:
    key = bytes(32)
    src = tmp_path / "pt"
    src.write_bytes(rand(3 * CHUNK, 13))
    with open(src, "rb") as fi, open(tmp_path / "o", "wb") as fo:
        # The size was taken as one byte less than the file holds: it grew.
        with pytest.raises(OSError, match="grew"):
            age._run_positional(fi.fileno(), 0, 3 * CHUNK - 1, fo.fileno(), 0, key, 1, None, True)
        # ... or one byte more: it shrank under the last batch.
        with pytest.raises(OSError, match="shrank"):
            age._run_positional(fi.fileno(), 0, 3 * CHUNK + 1, fo.fileno(), 0, key, 2, None, True)


def test_appending_writer_takes_the_stream_path(
    tmp_path: Path, identity: tuple[str, str], positional_calls: list[int]
) -> None:
    # pwrite on an O_APPEND descriptor ignores its offset: such writers are streamed.
    ident, recipient = identity
    data = rand(5 * CHUNK, 14)
    (tmp_path / "out.age").write_bytes(b"")
    with io.BytesIO(data) as src, open(tmp_path / "out.age", "ab") as dst:
        age.encrypt(src, dst, recipients=[recipient])
    with open(tmp_path / "pt", "wb") as fh:
        fh.write(data)
    with open(tmp_path / "pt", "rb") as src, open(tmp_path / "out2.age", "ab") as dst:
        age.encrypt(src, dst, recipients=[recipient])
    assert positional_calls == []
    for name in ("out.age", "out2.age"):
        assert age.decrypt_bytes((tmp_path / name).read_bytes(), identities=[ident]) == data


# --- tampering -----------------------------------------------------------------------


def split(sealed: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """(header, payload nonce, sealed chunks) of an age file."""
    end = sealed.index(b"\n---")
    end = sealed.index(b"\n", end + 1) + 1
    nonce, payload = sealed[end : end + 16], sealed[end + 16 :]
    chunks = [payload[i : i + SEALED] for i in range(0, len(payload), SEALED)]
    return sealed[:end], nonce, chunks


def rejects(blob: bytes, ident: str) -> bool:
    try:
        age.decrypt_bytes(blob, identities=[ident])
    except AuthenticationError:
        return True
    return False


def test_every_header_bit_flip_rejected(identity: tuple[str, str]) -> None:
    ident, recipient = identity
    sealed = age.encrypt_bytes(b"x" * 100, recipients=[recipient])
    header, _, _ = split(sealed)
    for bit in range(8 * (len(header) + 16)):  # the header and the payload nonce
        blob = bytearray(sealed)
        blob[bit // 8] ^= 1 << (bit % 8)
        assert rejects(bytes(blob), ident), f"bit {bit} of the header accepted"


def test_payload_bit_flips_rejected(identity: tuple[str, str]) -> None:
    ident, recipient = identity
    sealed = age.encrypt_bytes(rand(2 * CHUNK + 40), recipients=[recipient])
    header, _, chunks = split(sealed)
    start = len(header) + 16
    # Every bit of the first and last 24 bytes of each chunk (ciphertext and tag), and of
    # a sample across the middle.
    offsets = []
    pos = start
    for c in chunks:
        offsets += list(range(pos, pos + 24)) + list(range(pos + len(c) - 24, pos + len(c)))
        offsets += list(range(pos + 1000, pos + len(c) - 1000, 7919))
        pos += len(c)
    for off in offsets:
        for bit in range(8):
            blob = bytearray(sealed)
            blob[off] ^= 1 << bit
            assert rejects(bytes(blob), ident), f"flip at byte {off} accepted"


def test_chunk_reorder_drop_duplicate_truncate_extend(identity: tuple[str, str]) -> None:
    ident, recipient = identity
    sealed = age.encrypt_bytes(rand(3 * CHUNK + 100), recipients=[recipient])
    header, nonce, c = split(sealed)
    assert len(c) == 4
    head = header + nonce
    variants = {
        "swap 0,1": [c[1], c[0], c[2], c[3]],
        "swap 2,3": [c[0], c[1], c[3], c[2]],
        "drop middle": [c[0], c[2], c[3]],
        "drop last": [c[0], c[1], c[2]],
        "drop first": [c[1], c[2], c[3]],
        "duplicate": [c[0], c[0], c[1], c[2], c[3]],
        "duplicate last": [c[0], c[1], c[2], c[3], c[3]],
        "only last": [c[3]],
        "empty payload": [],
    }
    for name, chunks in variants.items():
        assert rejects(head + b"".join(chunks), ident), name
    body = b"".join(c)
    for cut in (1, 15, 16, 17, 100, SEALED, SEALED + 1, len(body) - 1):
        assert rejects(head + body[: len(body) - cut], ident), f"truncated by {cut}"
    for extra in (b"\0", b"x" * 16, c[3]):
        assert rejects(head + body + extra, ident), "extended"
    assert rejects(header + nonce[:10], ident)
    assert rejects(header, ident)
    assert age.decrypt_bytes(head + body, identities=[ident]) == rand(3 * CHUNK + 100)


def test_empty_final_chunk_after_full_chunks_rejected() -> None:
    # An encoder must not end a payload with an empty chunk after full ones: age rejects
    # it (it lets a file of whole chunks be re-cut), and so does medveil.
    key = os.urandom(32)
    full = bytearray(SEALED)
    _core.crypto.age_seal_chunks(key, 0, bytes(CHUNK), full, final=False)
    empty = bytearray(16)
    _core.crypto.age_seal_chunks(key, 1, b"", empty, final=True)
    out = bytearray(2 * SEALED)
    with pytest.raises(AuthenticationError, match="chunk 1"):
        _core.crypto.age_open_chunks(key, 0, bytes(full + empty), out, final=True)
    # The same chunk 0 flagged final opens.
    last = bytearray(SEALED)
    _core.crypto.age_seal_chunks(key, 0, bytes(CHUNK), last, final=True)
    assert _core.crypto.age_open_chunks(key, 0, bytes(last), out, final=True) == CHUNK


def test_wrong_key_and_passphrase_rejected(identity: tuple[str, str]) -> None:
    sealed = age.encrypt_bytes(b"secret", recipients=[identity[1]])
    with pytest.raises(AuthenticationError, match="none of the given keys"):
        age.decrypt_bytes(sealed, identities=[age.generate_identity()[0]])
    with pytest.raises(AuthenticationError):
        age.decrypt_bytes(sealed, passphrase="secret")
    sealed = age.encrypt_bytes(b"secret", passphrase="right", work_factor=FAST_SCRYPT)
    with pytest.raises(AuthenticationError, match="wrong passphrase"):
        age.decrypt_bytes(sealed, passphrase="wrong")
    with pytest.raises(AuthenticationError):
        age.decrypt_bytes(sealed, identities=[identity[0]])


def test_scrypt_mixed_with_other_stanzas_rejected(identity: tuple[str, str]) -> None:
    sealed = age.encrypt_bytes(b"data", passphrase="pw", work_factor=FAST_SCRYPT)
    other = age.encrypt_bytes(b"data", recipients=[identity[1]])
    scrypt_stanza = sealed.split(b"\n", 1)[1].split(b"\n---")[0] + b"\n"
    x_header = other.split(b"\n---")[0] + b"\n"
    forged = x_header + scrypt_stanza + b"---" + other.split(b"\n---", 1)[1]
    with pytest.raises(AuthenticationError, match="only stanza"):
        age.decrypt_bytes(forged, passphrase="pw")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="either recipients or a passphrase"):
        age.encrypt_bytes(b"x")
    with pytest.raises(ValueError, match="X25519 recipient"):
        age.encrypt_bytes(b"x", recipients=["age1notakey"])
    with pytest.raises(ValueError, match="identity"):
        age.decrypt_bytes(b"x", identities=[SPEC_RECIPIENT])
    with pytest.raises(AuthenticationError, match="not an age v1 file"):
        age.decrypt_bytes(b"-----BEGIN AGE ENCRYPTED FILE-----\n", identities=[SPEC_IDENTITY])


# --- interoperability ----------------------------------------------------------------

INTEROP_SIZES = [0, 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3]


@needs_age
@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_age_command_x25519_both_ways(tmp_path: Path, size: int) -> None:
    data = rand(size, 7)
    (tmp_path / "pt").write_bytes(data)
    key = tmp_path / "key.txt"
    recipient = age.keygen(key)
    age.encrypt_file(tmp_path / "pt", tmp_path / "m.age", recipients=[recipient])
    # To stdout: age creates an -o file only once it has a byte to write.
    assert run_age(["-d", "-i", str(key), str(tmp_path / "m.age")]) == data
    run_age(["-e", "-r", recipient, "-o", str(tmp_path / "a.age"), str(tmp_path / "pt")])
    age.decrypt_file(tmp_path / "a.age", tmp_path / "a.out", identities=age.load_identities(key))
    assert (tmp_path / "a.out").read_bytes() == data


@needs_age
@pytest.mark.parametrize("size", [0, CHUNK + 1])
def test_age_command_passphrase_both_ways(tmp_path: Path, size: int) -> None:
    data = rand(size, 8)
    (tmp_path / "pt").write_bytes(data)
    age.encrypt_file(tmp_path / "pt", tmp_path / "m.age", passphrase="correct horse")
    run_age(["-d", "-o", str(tmp_path / "m.out"), str(tmp_path / "m.age")], "correct horse")
    out = tmp_path / "m.out"  # age creates it only once it has a byte to write
    assert (out.read_bytes() if out.exists() else b"") == data
    run_age(["-p", "-o", str(tmp_path / "a.age"), str(tmp_path / "pt")], "battery staple")
    age.decrypt_file(tmp_path / "a.age", tmp_path / "a.out", passphrase="battery staple")
    assert (tmp_path / "a.out").read_bytes() == data
    with pytest.raises(AuthenticationError, match="wrong passphrase"):
        age.decrypt_file(tmp_path / "a.age", tmp_path / "b.out", passphrase="battery")
    assert not (tmp_path / "b.out").exists()


@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_pyrage_x25519_both_ways(size: int) -> None:
    pyrage = pytest.importorskip("pyrage")
    data = rand(size, 9)
    ident, recipient = age.generate_identity()
    theirs_id = pyrage.x25519.Identity.from_str(ident)
    theirs_rcpt = pyrage.x25519.Recipient.from_str(recipient)
    assert str(theirs_id.to_public()) == recipient
    assert pyrage.decrypt(age.encrypt_bytes(data, recipients=[recipient]), [theirs_id]) == data
    assert age.decrypt_bytes(pyrage.encrypt(data, [theirs_rcpt]), identities=[ident]) == data


@pytest.mark.parametrize("size", [1, CHUNK + 1])
def test_pyrage_passphrase_both_ways(size: int) -> None:
    pyrage = pytest.importorskip("pyrage")
    data = rand(size, 10)
    sealed = age.encrypt_bytes(data, passphrase="pw", work_factor=FAST_SCRYPT)
    assert pyrage.passphrase.decrypt(sealed, "pw") == data
    assert age.decrypt_bytes(pyrage.passphrase.encrypt(data, "pw"), passphrase="pw") == data


# --- large files ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("MEDVEIL_SLOW_TESTS") != "1", reason="set MEDVEIL_SLOW_TESTS=1 to run"
)
def test_round_trip_over_1_gib(tmp_path: Path) -> None:
    size = (1 << 30) + 12345
    src, sealed, back = tmp_path / "big", tmp_path / "big.age", tmp_path / "big.out"
    digest = hashlib.sha256()
    rng = np.random.default_rng(1)
    with open(src, "wb") as fh:
        left = size
        while left:
            block = rng.bytes(min(left, 64 << 20))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    key = tmp_path / "key.txt"
    recipient = age.keygen(key)
    age.encrypt_file(src, sealed, recipients=[recipient])
    age.decrypt_file(sealed, back, identities=age.load_identities(key))
    assert back.stat().st_size == size
    assert file_sha256(back) == digest.hexdigest()
    if needs_age.args[0] is False:  # the age command is installed: it must agree
        back.unlink()
        run_age(["-d", "-i", str(key), "-o", str(back), str(sealed)], timeout=600)
        assert file_sha256(back) == digest.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def test_streams_accept_pipes_and_short_reads(identity: tuple[str, str]) -> None:
    class Trickle(io.RawIOBase):
        """A reader that returns at most 1000 bytes per call, like a pipe."""

        def __init__(self, data: bytes) -> None:
            self.buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self.buf.read(min(len(b), 1000))
            b[: len(chunk)] = chunk
            return len(chunk)

    ident, recipient = identity
    data = rand(2 * CHUNK + 3)
    out = io.BytesIO()
    age.encrypt(Trickle(data), out, recipients=[recipient])  # type: ignore[arg-type]
    back = io.BytesIO()
    age.decrypt(io.BufferedReader(Trickle(out.getvalue())), back, identities=[ident])
    assert back.getvalue() == data


# --- header limits (c2sp.org/age; the reference implementation's limits) ---------------


def _sealed_header(identity: tuple[str, str]) -> tuple[bytes, bytes]:
    """(header up to and including '---', the rest) of a real file."""
    sealed = age.encrypt_bytes(b"payload", recipients=[identity[1]])
    head, rest = sealed.split(b"\n---", 1)
    return head + b"\n---", rest


def test_huge_scrypt_work_factor_is_a_header_error() -> None:
    sealed = age.encrypt_bytes(b"data", passphrase="pw", work_factor=FAST_SCRYPT)
    for factor in (b"9" * 5000, b"1" + b"0" * 4400, b"23", b"100", b"010", b"0", b"-1", b"1e3"):
        forged = sealed.replace(b" 10\n", b" " + factor + b"\n", 1)
        assert forged != sealed
        with pytest.raises(AuthenticationError, match="work factor"):
            age.decrypt_bytes(forged, passphrase="pw")


def test_stanza_count_is_capped_quickly(identity: tuple[str, str]) -> None:
    import time

    head, rest = _sealed_header(identity)
    flood = b"age-encryption.org/v1\n" + b"-> a\n\n" * 200_000 + head.split(b"\n", 1)[1] + rest
    t0 = time.perf_counter()
    with pytest.raises(AuthenticationError, match=f"more than {age.MAX_STANZAS} recipient"):
        age.decrypt_bytes(flood, identities=[identity[0]])
    assert time.perf_counter() - t0 < 0.5  # stops at stanza 1001, not after 200k


def test_max_stanzas_still_open_and_one_more_does_not() -> None:
    ids = [age.generate_identity() for _ in range(age.MAX_STANZAS + 1)]
    fits = age.encrypt_bytes(b"many", recipients=[r for _, r in ids[: age.MAX_STANZAS]])
    assert age.decrypt_bytes(fits, identities=[ids[age.MAX_STANZAS - 1][0]]) == b"many"
    over = age.encrypt_bytes(b"many", recipients=[r for _, r in ids])
    with pytest.raises(AuthenticationError, match="recipient stanzas"):
        age.decrypt_bytes(over, identities=[ids[0][0]])


def test_long_lines_stanzas_and_headers_are_refused(identity: tuple[str, str]) -> None:
    head, rest = _sealed_header(identity)
    version, stanzas = head.split(b"\n", 1)
    line = b"-> x " + b"a" * age.MAX_HEADER_LINE + b"\n\n"
    with pytest.raises(AuthenticationError, match="line is longer than"):
        age.decrypt_bytes(version + b"\n" + line + stanzas + rest, identities=[identity[0]])
    body = (b"A" * 64 + b"\n") * (age.MAX_STANZA_BYTES // 65 + 1) + b"\n"
    with pytest.raises(AuthenticationError, match="stanza is longer than"):
        age.decrypt_bytes(version + b"\n-> x\n" + body + stanzas + rest, identities=[identity[0]])
    big = b"-> x\n" + (b"A" * 64 + b"\n") * (age.MAX_STANZA_BYTES // 65 - 10) + b"\n"
    n = age.MAX_HEADER_BYTES // len(big) + 1
    assert n < age.MAX_STANZAS
    with pytest.raises(AuthenticationError, match="longer than 16777216 bytes"):
        age.decrypt_bytes(version + b"\n" + big * n + stanzas + rest, identities=[identity[0]])


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_arg = st.one_of(
    st.sampled_from(["X25519", "scrypt", "", "1", "10", "22", "23", "0" * 3, "9" * 5000]),
    st.text(B64, max_size=50),
    st.text(st.characters(codec="latin-1"), max_size=8),
)
_line = st.one_of(
    st.lists(_arg, min_size=1, max_size=4).map(lambda a: ("-> " + " ".join(a)).encode("latin-1")),
    st.text(B64, max_size=70).map(str.encode),
    st.just(b""),
    st.text(B64, min_size=40, max_size=46).map(lambda t: b"--- " + t.encode()),
    st.binary(max_size=40),
)
_header = st.lists(_line, max_size=12).map(
    lambda lines: b"age-encryption.org/v1\n" + b"".join(x + b"\n" for x in lines)
)


@settings(max_examples=400, deadline=None)
@given(_header, st.binary(max_size=80))
def test_fuzzed_headers_raise_only_the_format_error(
    identity: tuple[str, str], header: bytes, tail: bytes
) -> None:
    """Any header, however malformed, fails with AuthenticationError and nothing else."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(age, "MAX_SCRYPT_WORK_FACTOR", 8)  # keep accepted scrypt stanzas cheap
        for keys in ({"identities": [identity[0]]}, {"passphrase": "pw"}):
            with pytest.raises(AuthenticationError):
                age.decrypt_bytes(header + tail, **keys)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_headers_raise_only_the_format_error(
    identity: tuple[str, str], data: st.DataObject
) -> None:
    sealed = age.encrypt_bytes(b"payload", recipients=[identity[1]])
    end = sealed.index(b"\n---") + 48  # the whole header, MAC line included
    buf = bytearray(sealed)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, end - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            buf[i] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        else:
            del buf[i]
    try:
        out = age.decrypt_bytes(bytes(buf), identities=[identity[0]])
    except AuthenticationError:
        return
    assert out == b"payload"  # only a change the format ignores may still open
