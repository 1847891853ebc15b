"""Sealed files in the age format (age-encryption.org/v1, specified at c2sp.org/age).

The header (X25519 and scrypt recipient stanzas, the header MAC, HKDF) is built and
checked here with the ``cryptography`` package; the payload (64 KiB ChaCha20-Poly1305
chunks with the STREAM nonce: 11-byte big-endian chunk counter || last-chunk flag) is
sealed and opened by medveil's C++ core, several chunks at a time on all cores, reading
and writing a bounded window so memory stays constant for any file size.

Files written here open with the ``age`` command and ``pyrage``, and theirs open here.
Decryption writes to a temporary name next to the destination and renames it only
after the final chunk has verified: a wrong key, a modified, truncated, reordered or
extended file leaves no plaintext behind and raises
:class:`~medveil.errors.AuthenticationError`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hmac
import io
import os
import queue
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from medveil import _core, crypto
from medveil.crypto.keyfile import create_private_file, read_private_file
from medveil.errors import AuthenticationError

__all__ = [
    "DEFAULT_SCRYPT_WORK_FACTOR",
    "bech32_decode",
    "bech32_encode",
    "decrypt",
    "decrypt_bytes",
    "decrypt_file",
    "encrypt",
    "encrypt_bytes",
    "encrypt_file",
    "generate_identity",
    "keygen",
    "load_identities",
    "recipient_from_identity",
]

VERSION_LINE = b"age-encryption.org/v1\n"
CHUNK: int = _core.crypto.AGE_CHUNK
SEALED_CHUNK: int = _core.crypto.AGE_SEALED_CHUNK
DEFAULT_SCRYPT_WORK_FACTOR = 18  # what the age command uses: about a second per file
# Refuse headers that would ask for more: the reference implementation's default maximum
# (2^22 scrypt blocks: 4 GiB and ~15 s). The spec says to apply an upper limit.
MAX_SCRYPT_WORK_FACTOR = 22
X25519_LABEL = b"age-encryption.org/v1/X25519"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
IDENTITY_HRP = "age-secret-key-"
RECIPIENT_HRP = "age"
# Chunks handed to the core per call: 2 MiB of plaintext, so the six pipeline buffers
# (12 MiB) stay in L3 while every thread still gets enough chunks to amortise its start.
BATCH_CHUNKS = 32
PIPELINE_BUFFERS = 3  # windows in flight: one being read, one sealed, one written
# Chunks per batch on the positional path (regular files): each worker reads, seals and
# writes 1 MiB at a time, so a batch stays in that core's caches from read to write.
POSITIONAL_BATCH_CHUNKS = 16
# Header limits of the reference implementation (filippo.io/age internal/format): a header
# of at most 16 MiB, a stanza (argument line and body) of at most 1 MiB, so no line is
# longer. The spec's grammar allows any number of stanzas; every X25519 one costs a scalar
# multiplication per identity before the header MAC can be checked, so medveil also stops
# at MAX_STANZAS, far above any real list of recipients.
MAX_HEADER_BYTES = 16 << 20
MAX_STANZA_BYTES = 1 << 20
MAX_HEADER_LINE = MAX_STANZA_BYTES
MAX_STANZAS = 1000

Progress = Callable[[int], None]


# --- Bech32 (BIP 173, without its 90-character limit, as age uses it) -------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], frm: int, to: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to) - 1
    for v in data:
        acc = (acc << frm) | v
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to - bits)) & maxv)
    elif bits >= frm or (acc << (to - bits)) & maxv:
        raise ValueError("bech32: non-zero padding bits")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Encode bytes as Bech32 with the given human-readable part (lowercase result)."""
    hrp = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    poly = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a Bech32 string into (lowercase hrp, bytes); raises ValueError if invalid."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("bech32: mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise ValueError("bech32: missing separator or checksum")
    hrp, rest = text[:pos], text[pos + 1 :]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ValueError("bech32: invalid character in the prefix")
    try:
        values = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise ValueError("bech32: invalid character") from None
    if _polymod([*_hrp_expand(hrp), *values]) != 1:
        raise ValueError("bech32: checksum mismatch")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))


# --- keys --------------------------------------------------------------------------------


def _x25519_public(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def _parse_x25519(text: str, want_hrp: str, kind: str, form: str) -> bytes:
    try:
        hrp, data = bech32_decode(text.strip())
    except ValueError as exc:
        raise ValueError(f"not an age X25519 {kind} ({form}): {exc}") from None
    if hrp != want_hrp or len(data) != 32:
        raise ValueError(f"not an age X25519 {kind} (expected {form} of 32 bytes)")
    return data


def _parse_identity(identity: str) -> bytes:
    return _parse_x25519(identity, IDENTITY_HRP, "identity", "AGE-SECRET-KEY-1...")


def _parse_recipient(recipient: str) -> bytes:
    return _parse_x25519(recipient, RECIPIENT_HRP, "recipient", "age1...")


def generate_identity() -> tuple[str, str]:
    """Create a new X25519 identity; returns (AGE-SECRET-KEY-1..., age1... recipient)."""
    secret = secrets.token_bytes(32)
    return bech32_encode(IDENTITY_HRP, secret).upper(), bech32_encode(
        RECIPIENT_HRP, _x25519_public(secret)
    )


def recipient_from_identity(identity: str) -> str:
    """The age1... public recipient of an AGE-SECRET-KEY-1... identity."""
    return bech32_encode(RECIPIENT_HRP, _x25519_public(_parse_identity(identity)))


def keygen(path: str | os.PathLike[str]) -> str:
    """Write a new identity file (mode 0600, never overwriting); returns its recipient."""
    identity, recipient = generate_identity()
    created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    # O_EXCL|O_NOFOLLOW, 0600 from the start, folders 0700: see medveil.crypto.keyfile.
    create_private_file(path, text.encode("ascii"))
    return recipient


def load_identities(path: str | os.PathLike[str]) -> list[str]:
    """Read the AGE-SECRET-KEY-1... lines of an identity file (comments are skipped).

    The file must be private to its owner (see medveil.crypto.keyfile): MedveilError else.
    """
    try:
        text = read_private_file(path, "age identity").decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not an age identity file (not UTF-8 text)") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            _parse_identity(line)
            out.append(line)
    if not out:
        raise ValueError(f"{path}: no AGE-SECRET-KEY-1... identity found")
    return out


# --- header ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


_B64_RE = re.compile(r"[A-Za-z0-9+/]*")


def _unb64(text: str) -> bytes:
    """Strict unpadded base64: canonical encodings only, as the spec requires."""
    if not _B64_RE.fullmatch(text) or len(text) % 4 == 1:
        raise AuthenticationError("age header: invalid base64")
    data = base64.b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise AuthenticationError("age header: non-canonical base64")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


@dataclass
class _Stanza:
    args: list[str]
    body: bytes

    def encode(self) -> bytes:
        body = _b64(self.body)
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        if not lines or len(lines[-1]) == 64:
            lines.append("")  # the body always ends with a line shorter than 64 columns
        return ("-> " + " ".join(self.args) + "\n" + "\n".join(lines) + "\n").encode()


def _wrap(key: bytes, file_key: bytes) -> bytes:
    return crypto.seal(key, bytes(12), file_key)


def _x25519_stanza(recipient: bytes, file_key: bytes) -> _Stanza:
    eph = X25519PrivateKey.generate()
    share = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient))
    wrap_key = _hkdf(shared, share + recipient, X25519_LABEL)
    return _Stanza(["X25519", _b64(share)], _wrap(wrap_key, file_key))


def _scrypt_key(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase)


def _scrypt_stanza(passphrase: bytes, file_key: bytes, work_factor: int) -> _Stanza:
    salt = secrets.token_bytes(16)
    key = _scrypt_key(passphrase, salt, work_factor)
    return _Stanza(["scrypt", _b64(salt), str(work_factor)], _wrap(key, file_key))


def _header_mac(file_key: bytes, header_up_to_dashes: bytes) -> bytes:
    mac = crypto_hmac.HMAC(_hkdf(file_key, b"", b"header"), hashes.SHA256())
    mac.update(header_up_to_dashes)
    return mac.finalize()


def _write_header(writer: BinaryIO, file_key: bytes, stanzas: Sequence[_Stanza]) -> None:
    head = VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
    writer.write(head + b" " + _b64(_header_mac(file_key, head)).encode() + b"\n")


def _readline(reader: BinaryIO, limit: int = MAX_HEADER_LINE) -> bytes:
    """One header line of at most `limit` bytes (newline included), or AuthenticationError."""
    line = reader.readline(limit)
    if not line.endswith(b"\n"):
        if len(line) >= limit:
            raise AuthenticationError(f"age header: a line is longer than {limit} bytes")
        raise AuthenticationError("age header: truncated or not an age file")
    return line


def _read_header(reader: BinaryIO) -> tuple[list[_Stanza], bytes, bytes]:
    """Parse the header; returns (stanzas, bytes covered by the MAC, the MAC)."""
    first = reader.readline(len(VERSION_LINE))
    if first != VERSION_LINE:
        raise AuthenticationError(
            "not an age v1 file (the first line is not 'age-encryption.org/v1'); "
            "ASCII-armored files are not supported: decode them with `age -d` first"
        )
    raw = [first]
    stanzas: list[_Stanza] = []
    size = len(first)
    while True:
        line = _readline(reader)
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise AuthenticationError(f"age header: longer than {MAX_HEADER_BYTES} bytes")
        if line.startswith(b"--- "):
            raw.append(b"---")
            try:
                mac = _unb64(line[4:-1].decode("ascii"))
            except UnicodeDecodeError:
                raise AuthenticationError("age header: invalid MAC line") from None
            if len(mac) != 32:
                raise AuthenticationError("age header: the MAC must be 32 bytes")
            if not stanzas:
                raise AuthenticationError("age header: no recipient stanza")
            return stanzas, b"".join(raw), mac
        if not line.startswith(b"-> "):
            raise AuthenticationError("age header: expected a stanza or the MAC line")
        if len(stanzas) == MAX_STANZAS:
            raise AuthenticationError(
                f"age header: more than {MAX_STANZAS} recipient stanzas; refusing to try them"
            )
        raw.append(line)
        stanza_size = len(line)
        try:
            args = line[3:-1].decode("ascii").split(" ")
        except UnicodeDecodeError:
            raise AuthenticationError("age header: non-ASCII stanza arguments") from None
        if any(not a or any(not 33 <= ord(c) <= 126 for c in a) for a in args):
            raise AuthenticationError("age header: malformed stanza arguments")
        body_parts = []
        while True:
            bline = _readline(reader)
            stanza_size += len(bline)
            size += len(bline)
            if stanza_size > MAX_STANZA_BYTES:
                raise AuthenticationError(
                    f"age header: a stanza is longer than {MAX_STANZA_BYTES} bytes"
                )
            if size > MAX_HEADER_BYTES:
                raise AuthenticationError(f"age header: longer than {MAX_HEADER_BYTES} bytes")
            raw.append(bline)
            text = bline[:-1]
            if len(text) > 64:
                raise AuthenticationError("age header: stanza body line longer than 64 columns")
            body_parts.append(text.decode("ascii", errors="replace"))
            if len(text) < 64:
                break
        stanzas.append(_Stanza(args, _unb64("".join(body_parts))))


def _unwrap(
    stanzas: Sequence[_Stanza], identities: Sequence[bytes], passphrase: bytes | None
) -> bytes:
    """Recover the file key from the first stanza an identity or passphrase opens."""
    if any(s.args[0] == "scrypt" for s in stanzas) and len(stanzas) != 1:
        raise AuthenticationError("age header: an scrypt stanza must be the only stanza")
    for s in stanzas:
        if s.args[0] == "X25519":
            if len(s.args) != 2:
                raise AuthenticationError("age header: X25519 stanza needs one argument")
            share = _unb64(s.args[1])
            if len(share) != 32 or len(s.body) != 32:
                raise AuthenticationError("age header: malformed X25519 stanza")
            for secret in identities:
                try:
                    shared = X25519PrivateKey.from_private_bytes(secret).exchange(
                        X25519PublicKey.from_public_bytes(share)
                    )
                except ValueError:
                    raise AuthenticationError("age header: X25519 share of low order") from None
                if not any(shared):
                    raise AuthenticationError("age header: all-zero X25519 shared secret")
                wrap_key = _hkdf(shared, share + _x25519_public(secret), X25519_LABEL)
                with contextlib.suppress(AuthenticationError):
                    return crypto.open(wrap_key, bytes(12), s.body)
        elif s.args[0] == "scrypt" and passphrase is not None:
            # The spec's form (no leading zero), and at most two digits before int(): a
            # 5,000-digit factor would otherwise hit Python's integer-parsing limit.
            if (
                len(s.args) != 3
                or len(s.args[2]) > 2
                or not re.fullmatch(r"[1-9][0-9]*", s.args[2])
            ):
                raise AuthenticationError(
                    "age header: malformed scrypt stanza (the work factor must be a decimal "
                    f"from 1 to {MAX_SCRYPT_WORK_FACTOR})"
                )
            salt, wf = _unb64(s.args[1]), int(s.args[2])
            if len(salt) != 16 or len(s.body) != 32:
                raise AuthenticationError("age header: malformed scrypt stanza")
            if wf > MAX_SCRYPT_WORK_FACTOR:
                raise AuthenticationError(
                    f"age header: scrypt work factor {wf} is above the limit "
                    f"{MAX_SCRYPT_WORK_FACTOR}"
                )
            try:
                return crypto.open(_scrypt_key(passphrase, salt, wf), bytes(12), s.body)
            except AuthenticationError:
                raise AuthenticationError("wrong passphrase (or the header was modified)") from None
    kinds = sorted({s.args[0] for s in stanzas})
    raise AuthenticationError(
        f"none of the given keys opens this file (its recipient stanzas: {', '.join(kinds)}); "
        "check the identity file or passphrase"
    )


# --- payload -----------------------------------------------------------------------------


def _read_full(reader: BinaryIO, buf: memoryview) -> int:
    """Fill buf from reader until it is full or the input ends; returns bytes read."""
    # Every binary stream accepted (files, BytesIO, buffered readers) has readinto;
    # typing.BinaryIO just does not declare it.
    readinto = cast(io.BufferedIOBase, reader).readinto
    got = 0
    while got < len(buf):
        n = readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _file_fd(stream: Any, writing: bool) -> int | None:
    """The descriptor of a regular, seekable file behind stream, else None.

    Positional I/O needs a regular file (not a pipe or terminal) and, for writing, one not
    opened for appending (pwrite would ignore the offset there).
    """
    if not (hasattr(os, "preadv") and hasattr(os, "pwrite")):
        return None  # platforms without positional I/O keep the stream path
    try:
        fd = int(stream.fileno())
        if not stream.seekable() or not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if writing:
            import fcntl  # POSIX only: elsewhere the ImportError keeps the stream path

            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
                return None
    except (AttributeError, OSError, ValueError, ImportError):
        return None
    return fd


def _pread_full(fd: int, buf: memoryview, offset: int) -> int:
    """Read len(buf) bytes at offset (fewer only at end of file); returns bytes read."""
    got = 0
    while got < len(buf):
        n = os.preadv(fd, [buf[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def _pwrite_full(fd: int, buf: memoryview, offset: int) -> None:
    """Write all of buf at offset."""
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


def _run_positional(
    fd_in: int,
    in_base: int,
    in_len: int,
    fd_out: int,
    out_base: int,
    key: bytes,
    threads: int,
    progress: Progress | None,
    sealing: bool,
) -> int:
    """Seal or open in_len payload bytes of a regular file with positional reads and writes.

    Every chunk's place in both files follows from its index, so the input is cut into
    batches and each worker thread reads a batch (pread), runs the core on it and writes
    the result (pwrite) itself: no hand-over between threads, the batch stays in that
    core's caches, and with threads=1 everything runs on the calling thread. Returns the
    bytes written.
    """
    unit_in, unit_out = (CHUNK, SEALED_CHUNK) if sealing else (SEALED_CHUNK, CHUNK)
    kernel = _core.crypto.age_seal_chunks if sealing else _core.crypto.age_open_chunks
    chunks = max(1, -(-in_len // unit_in))
    per = POSITIONAL_BATCH_CHUNKS
    batches = -(-chunks // per)
    if threads == 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        threads = threads or os.cpu_count() or 1
    workers = max(1, min(threads, batches))
    if hasattr(os, "posix_fadvise"):
        # Two workers read interleaved batches, still one forward sweep: ask for the larger
        # read-ahead window of sequential access (a hint; no effect on tmpfs).
        os.posix_fadvise(fd_in, in_base, in_len, os.POSIX_FADV_SEQUENTIAL)
    claim = iter(range(batches))
    claim_lock = threading.Lock()
    progress_lock = threading.Lock()
    write_lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []
    written = [0] * batches

    def work() -> None:
        try:
            inbuf = np.empty(per * unit_in, np.uint8).data
            outbuf = np.empty(per * SEALED_CHUNK, np.uint8)
            while not stop.is_set():
                with claim_lock:
                    b = next(claim, None)
                if b is None:
                    return
                first = b * per
                offset = first * unit_in
                want = min(per * unit_in, in_len - offset)
                got = _pread_full(fd_in, inbuf[:want], in_base + offset)
                if got != want:
                    raise OSError("the input file shrank while it was being processed")
                w = kernel(key, first, inbuf[:want], outbuf, final=b == batches - 1, threads=1)
                # Writes to one file serialise on the kernel's inode lock anyway; waiting
                # here sleeps, where a writer blocked in the kernel may spin on the lock.
                with write_lock:
                    _pwrite_full(fd_out, outbuf.data[:w], out_base + first * unit_out)
                written[b] = w
                if progress:
                    with progress_lock:
                        progress(want)
        except BaseException as exc:  # re-raised by the caller
            failures.append(exc)
            stop.set()

    helpers = [
        threading.Thread(target=work, name=f"medveil-age-{i}", daemon=True)
        for i in range(workers - 1)
    ]
    for t in helpers:
        t.start()
    try:
        work()  # returns once every batch is claimed, or on the first failure anywhere
    finally:
        stop.set()
        for t in helpers:
            t.join()
    if failures:
        # A worker stopped by another's failure may add its own error: report the cause,
        # an authentication failure before anything else.
        auth = [f for f in failures if isinstance(f, AuthenticationError)]
        raise (auth or failures)[0]
    if os.pread(fd_in, 1, in_base + in_len):
        raise OSError("the input file grew while it was being processed")
    return sum(written)


def _run_payload(
    reader: BinaryIO,
    writer: BinaryIO,
    key: bytes,
    threads: int,
    progress: Progress | None,
    sealing: bool,
) -> None:
    """Seal or open the payload through bounded windows of whole chunks.

    A full window is processed except its last chunk, which is carried into the next
    window: only the next read can tell whether it is the final chunk. Inputs of at most
    one chunk are done inline; larger ones run as a pipeline (a reader thread, the core
    on all cores in this thread, a writer thread) over a fixed set of buffers, so memory
    stays constant and the disk works while the cores compute.
    """
    unit = CHUNK if sealing else SEALED_CHUNK
    kernel = _core.crypto.age_seal_chunks if sealing else _core.crypto.age_open_chunks
    fd_in, fd_out = _file_fd(reader, False), _file_fd(writer, True)
    if fd_in is not None and fd_out is not None:
        in_base = reader.tell()
        in_len = os.fstat(fd_in).st_size - in_base
        if in_len > 2 * unit:
            writer.flush()
            out_base = writer.tell()
            w = _run_positional(
                fd_in, in_base, in_len, fd_out, out_base, key, threads, progress, sealing
            )
            reader.seek(in_base + in_len)
            writer.seek(out_base + w)
            return
    first = bytearray(2 * unit)
    n = _read_full(reader, memoryview(first))
    if n < len(first):
        out = bytearray(2 * SEALED_CHUNK)
        w = kernel(key, 0, memoryview(first)[:n], out, final=True, threads=threads)
        writer.write(memoryview(out)[:w])
        if progress:
            progress(n)
        return

    # The queues are unbounded: the fixed pools of buffers bound the memory, and puts
    # never block, so stopping on an error only has to wake the blocked gets.
    size = unit * (BATCH_CHUNKS + 1)
    # None in a queue is the stop signal.
    free_in: queue.SimpleQueue[Any] = queue.SimpleQueue()  # arrays (put back as view.obj)
    free_out: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
    for _ in range(PIPELINE_BUFFERS):
        # np.empty, not bytearray: no up-front zeroing, so a file of a few chunks only
        # touches the pages it uses.
        free_in.put(np.empty(size, np.uint8))
        free_out.put(np.empty(SEALED_CHUNK * (BATCH_CHUNKS + 1), np.uint8))
    work: queue.SimpleQueue[tuple[memoryview, int, bool] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[np.ndarray, int, int] | None] = queue.SimpleQueue()
    stop = threading.Event()
    failures: list[BaseException] = []

    def read_loop() -> None:
        try:
            buf = free_in.get()
            if buf is None or stop.is_set():
                return
            view = memoryview(buf)
            view[: 2 * unit] = first
            carry = 2 * unit
            while True:
                n = carry + _read_full(reader, view[carry:])
                if n < size:
                    work.put((view, n, True))
                    return
                body = n - unit
                work.put((view, body, False))
                nxt = free_in.get()
                if nxt is None or stop.is_set():
                    return
                nview = memoryview(nxt)
                nview[:unit] = view[body:n]  # the consumer only reads view[:body]
                view, carry = nview, unit
        except BaseException as exc:  # re-raised by the caller
            failures.append(exc)
            work.put(None)

    def write_loop() -> None:
        try:
            while True:
                item = done.get()
                if item is None or stop.is_set():
                    return
                sealed, w, consumed = item
                writer.write(sealed.data[:w])
                if progress:
                    progress(consumed)
                free_out.put(sealed)
        except BaseException as exc:
            failures.append(exc)
            free_out.put(None)

    reading = threading.Thread(target=read_loop, name="medveil-age-read", daemon=True)
    writing = threading.Thread(target=write_loop, name="medveil-age-write", daemon=True)
    reading.start()
    writing.start()
    try:
        index = 0
        while True:
            item = work.get()
            if item is None:
                break
            view, length, final = item
            obuf = free_out.get()
            if obuf is None:
                break
            w = kernel(key, index, view[:length], obuf, final=final, threads=threads)
            index += length // unit
            free_in.put(view.obj)
            done.put((obuf, w, length))
            if final:
                break
        done.put(None)  # after the last window: the writer drains and returns
        writing.join()
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        free_in.put(None)
        done.put(None)
        reading.join()
        writing.join()
    if failures:
        raise failures[0]


# --- public API --------------------------------------------------------------------------


def _as_bytes(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None:
        return None
    return passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)


def encrypt(
    reader: BinaryIO,
    writer: BinaryIO,
    *,
    recipients: Sequence[str] = (),
    passphrase: str | bytes | None = None,
    work_factor: int = DEFAULT_SCRYPT_WORK_FACTOR,
    threads: int = 0,
    progress: Progress | None = None,
) -> None:
    """Encrypt a binary stream to age recipients (age1...) or to a passphrase."""
    if threads < 0:
        raise ValueError("threads must be >= 0 (0: one per core)")
    if bool(recipients) == (passphrase is not None):
        raise ValueError("give either recipients or a passphrase (age allows no mix)")
    if not 1 <= work_factor <= MAX_SCRYPT_WORK_FACTOR:
        raise ValueError(f"work_factor must be in 1..{MAX_SCRYPT_WORK_FACTOR}")
    file_key = secrets.token_bytes(16)
    pw = _as_bytes(passphrase)
    if pw is not None:
        if not pw:
            raise ValueError("the passphrase must not be empty")
        stanzas = [_scrypt_stanza(pw, file_key, work_factor)]
    else:
        stanzas = [_x25519_stanza(_parse_recipient(r), file_key) for r in recipients]
    _write_header(writer, file_key, stanzas)
    nonce = secrets.token_bytes(16)
    writer.write(nonce)
    _run_payload(reader, writer, _hkdf(file_key, nonce, b"payload"), threads, progress, True)


def decrypt(
    reader: BinaryIO,
    writer: BinaryIO,
    *,
    identities: Sequence[str] = (),
    passphrase: str | bytes | None = None,
    threads: int = 0,
    progress: Progress | None = None,
) -> None:
    """Decrypt an age stream; raises AuthenticationError on a wrong key or any tampering.

    Plaintext of verified chunks reaches ``writer`` before the end is verified; callers
    writing to a file should use :func:`decrypt_file`, which releases nothing on failure.
    """
    if threads < 0:
        raise ValueError("threads must be >= 0 (0: one per core)")
    if not identities and passphrase is None:
        raise ValueError("give identities or a passphrase")
    secrets_ = [_parse_identity(i) for i in identities]
    stanzas, covered, mac = _read_header(reader)
    file_key = _unwrap(stanzas, secrets_, _as_bytes(passphrase))
    if not hmac.compare_digest(_header_mac(file_key, covered), mac):
        raise AuthenticationError("age header MAC mismatch: the header was modified")
    nonce_buf = bytearray(16)
    if _read_full(reader, memoryview(nonce_buf)) != 16:
        raise AuthenticationError("age payload truncated: no payload nonce")
    nonce = bytes(nonce_buf)
    _run_payload(reader, writer, _hkdf(file_key, nonce, b"payload"), threads, progress, False)


def encrypt_bytes(data: bytes, **kwargs: Any) -> bytes:
    """Encrypt bytes in memory; keyword arguments as for :func:`encrypt`."""
    out = io.BytesIO()
    encrypt(io.BytesIO(data), out, **kwargs)
    return out.getvalue()


def decrypt_bytes(data: bytes, **kwargs: Any) -> bytes:
    """Decrypt bytes in memory; keyword arguments as for :func:`decrypt`."""
    out = io.BytesIO()
    decrypt(io.BytesIO(data), out, **kwargs)
    return out.getvalue()


@contextlib.contextmanager
def _atomic_output(dst: Path) -> Iterator[BinaryIO]:
    """A temporary file next to dst, renamed onto dst only if the block succeeds."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    **kwargs: Any,
) -> None:
    """Encrypt the file src to dst (written under a temporary name, then renamed)."""
    with open(src, "rb") as reader, _atomic_output(Path(dst)) as writer:
        encrypt(reader, writer, **kwargs)


def decrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    **kwargs: Any,
) -> None:
    """Decrypt src to dst; dst appears only after the final chunk verified (mode 0600)."""
    with open(src, "rb") as reader, _atomic_output(Path(dst)) as writer:
        decrypt(reader, writer, **kwargs)
