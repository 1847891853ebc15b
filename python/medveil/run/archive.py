"""Archive conversion: de-identify a folder tree, .zip or .tar(.gz) into a new archive.

The parent process only lists inputs and writes the run records; worker processes read,
de-identify, post-check and write each file. Inputs are streamed to the workers with a
bounded number in flight, so memory does not grow with the archive. Every input ends up
written, skipped (not DICOM) or quarantined (with a reason); nothing half written ever
carries a final name, and ``resume=True`` continues a killed run to the same output.
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import logging
import lzma
import multiprocessing
import os
import signal
import sqlite3
import struct
import tarfile
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from medveil.errors import MedveilError
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy

if TYPE_CHECKING:
    from medveil.crypto.vault import Vault

RECORDS = ".medveil"
# A worker task: up to this many files, or this many bytes of archive members carried to
# the worker; its outputs are made durable with one file-system flush.
CHUNK_FILES = 16
CHUNK_BYTES = 64 << 20
CATALOG_COLUMNS = (
    ("patient_pseudonym", "TEXT"),
    ("study_uid", "TEXT"),
    ("series_uid", "TEXT"),
    ("sop_uid", "TEXT"),
    ("modality", "TEXT"),
    ("body_part", "TEXT"),
    ("sex", "TEXT"),
    ("age_band", "TEXT"),
    ("study_date", "TEXT"),
    ("manufacturer", "TEXT"),
    ("rows", "INTEGER"),
    ("columns", "INTEGER"),
    ("frames", "INTEGER"),
    ("slice_thickness", "REAL"),
    ("path", "TEXT"),
    ("size", "INTEGER"),
    ("sha256", "TEXT"),
)


@dataclass
class RunSummary:
    """Counts and timing of one archive run (no PHI)."""

    files_in: int = 0
    written: int = 0
    skipped: int = 0
    quarantined: int = 0
    resumed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    actions: Counter[str] = field(default_factory=Counter)
    # Written files per engine: "raw" (bytes scanned directly) or "dataset" (pydicom).
    engines: Counter[str] = field(default_factory=Counter)
    # Why the raw-byte engine left files to the Dataset engine (fixed texts, no values).
    declined: Counter[str] = field(default_factory=Counter)

    @property
    def files_per_second(self) -> float:
        """Throughput in input files per second."""
        return self.files_in / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        """Throughput in input megabytes per second."""
        return self.bytes_in / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def exit_code(self) -> int:
        """0 when everything was clean, 1 when anything was quarantined or interrupted."""
        return 1 if self.quarantined or self.interrupted else 0

    def to_json(self) -> dict[str, object]:
        """The summary as a JSON-ready dict."""
        out = asdict(self)
        out["actions"] = dict(self.actions)
        out["engines"] = dict(self.engines)
        out["declined"] = dict(self.declined)
        out["files_per_second"] = round(self.files_per_second, 2)
        out["mb_per_second"] = round(self.mb_per_second, 2)
        return out


@dataclass(frozen=True)
class Item:
    """One input: a display name (may hold PHI: console only), a path or bytes.

    With a path, ``member`` names a zip member and ``size`` >= 0 a byte range of the file
    from ``offset`` (a member of an uncompressed tar): the worker reads them itself, so an
    archive's bytes never pass through the parent.
    """

    name: str
    path: str | None = None
    data: bytes | None = None
    member: str | None = None
    offset: int = 0
    size: int = -1
    # A zip member's (method, compressed size, CRC-32, flag bits) from the central
    # directory, with offset its local header and size its length: the worker reads it
    # without loading the archive's whole directory again.
    packed: tuple[int, int, int, int] | None = None


# ---------------------------------------------------------------------------- inputs
def iter_inputs(source: str | os.PathLike[str]) -> Iterator[Item]:
    """Yield every file of a folder tree (sorted), a .zip or a .tar(.gz) archive."""
    src = Path(source)
    if not src.exists():
        raise MedveilError(f"{src}: input not found (expected a folder, .zip or .tar archive)")
    if src.is_dir():
        for root, dirs, files in os.walk(src):
            dirs.sort()
            dirs[:] = [d for d in dirs if d != RECORDS]
            for f in sorted(files):
                p = os.path.join(root, f)
                yield Item(name=os.path.relpath(p, src), path=p)
        return
    if zipfile.is_zipfile(src):
        try:
            with zipfile.ZipFile(src) as zf:
                infos = sorted(
                    (i for i in zf.infolist() if not i.is_dir()), key=attrgetter("filename")
                )
        except (zipfile.BadZipFile, OSError) as exc:
            raise MedveilError(f"{src}: cannot list the zip archive: {exc}") from None
        for info in infos:
            # The worker reads (inflates, CRC-checks) the member itself.
            yield Item(
                name=f"{src.name}!{info.filename}",
                path=str(src),
                member=info.filename,
                offset=info.header_offset,
                size=info.file_size,
                packed=(info.compress_type, info.compress_size, info.CRC, info.flag_bits),
            )
        return
    if tarfile.is_tarfile(src):
        yield from _tar_items(src)
        return
    if src.name.lower().endswith(_ARCHIVE_SUFFIXES):
        # Named as an archive, yet neither zipfile nor tarfile can open it.
        raise MedveilError(f"{src}: the archive is damaged or cut short (it cannot be opened)")
    if src.is_file():
        yield Item(name=src.name, path=str(src))
        return
    raise MedveilError(f"{src}: input not found (expected a folder, .zip or .tar archive)")


_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
# What a damaged or cut tar (or its gzip, bzip2, xz stream) raises while it is read.
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def _tar_items(src: Path) -> Iterator[Item]:
    """The files of a tar archive: byte ranges when uncompressed, else streamed bytes."""
    with open(src, "rb") as f:
        magic = f.read(6)
    compressed = magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00"
    # Stream mode reads members in archive order without seeking or unpacking; on a plain
    # tar the headers are read with seeks and each worker reads its members' bytes itself.
    with tarfile.open(src, mode="r|*" if compressed else "r:") as tf:
        while (member := _next_member(tf, src)) is not None:
            tf.members.clear()  # TarFile keeps every header it read: memory grows otherwise
            if not member.isfile():
                continue
            name = f"{src.name}!{member.name}"
            if compressed or member.issparse():
                try:
                    f = tf.extractfile(member)
                    data = f.read() if f is not None else None
                except _TAR_ERRORS as exc:
                    raise _damaged_tar(src, exc) from None
                if data is not None and len(data) != member.size:
                    # A cut bzip2 stream just ends: tarfile returns what it had.
                    raise _damaged_tar(src)
                if data is not None:
                    yield Item(name=name, data=data)
            else:
                yield Item(name=name, path=str(src), offset=member.offset_data, size=member.size)


def _next_member(tf: tarfile.TarFile, src: Path) -> tarfile.TarInfo | None:
    """The next header of a tar archive; a damaged or cut archive is a clear error."""
    try:
        return tf.next()
    except _TAR_ERRORS as exc:
        # Nothing after this point can be found: the run stops here, with its records.
        raise _damaged_tar(src, exc) from None


def _damaged_tar(src: Path, cause: BaseException | None = None) -> MedveilError:
    """The error that stops a run at a damaged or cut tar (the cause's text, if any)."""
    detail = f" ({cause})" if cause is not None else ""
    return MedveilError(f"{src}: the tar archive is damaged or cut short{detail}")


# ---------------------------------------------------------------------------- workers
_ENGINE = None
_OUTPUT: Path | None = None
_CAPTURE = False  # send each instance's identity to the parent, for the vault
_EMBED = None  # OriginalsEmbedder of --embed-originals
_DURABLE = True  # flush each batch to disk before its files get their final names


def _init_worker(
    policy: Policy,
    secret: bytes,
    output: str,
    capture_identity: bool = False,
    embed_cert: str | None = None,
    durable: bool = True,
) -> None:
    """Create one engine per worker process; silence pydicom (its warnings quote values)."""
    global _ENGINE, _OUTPUT, _CAPTURE, _EMBED, _DURABLE
    from medveil.engine.dataset import Deidentifier

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").disabled = True
    _ENGINE = Deidentifier(policy, secret)
    _OUTPUT = Path(output)
    _CAPTURE = capture_identity
    _DURABLE = durable
    if embed_cert:
        from medveil.crypto.vault.embed import OriginalsEmbedder

        _EMBED = OriginalsEmbedder(embed_cert)


_BUFFER = bytearray()  # the worker's read buffer, as large as the largest file so far


_ZIPS: dict[str, zipfile.ZipFile] = {}  # zip archives this worker has open, by path


def _buffer(size: int) -> memoryview:
    """The first size bytes of the worker's read buffer, grown when needed."""
    global _BUFFER
    if size > len(_BUFFER):
        _BUFFER = bytearray(size)
    return memoryview(_BUFFER)[:size]


def _fill(f: BinaryIO, view: memoryview) -> int:
    """Read into view until it is full or the stream ends; the number of bytes read."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _read(item: Item) -> bytes | memoryview:
    """The file's bytes: a view of the worker's one read buffer, valid until the next read.

    Reusing the buffer matters for large images: a fresh one is zero-filled page by page
    before the file is read into it, which costs as much as the read itself. Raises
    OSError (with the reason) when the file or archive member cannot be read whole.
    """
    if item.data is not None:
        return item.data
    assert item.path is not None
    if item.member is not None:
        if item.packed is not None and _direct(item.packed):
            return _read_zip_direct(item.path, item.offset, item.size, item.packed)
        return _read_zip_member(item.path, item.member)
    with open(item.path, "rb", buffering=0) as f:
        if item.size >= 0:
            f.seek(item.offset)
            view = _buffer(item.size)
            got = _fill(f, view)  # type: ignore[arg-type]
            if got < item.size:
                raise OSError(errno.EIO, "archive member is cut short")
            return view
        view = _buffer(os.fstat(f.fileno()).st_size)
        return view[: _fill(f, view)]  # type: ignore[arg-type]


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name and extra lengths


def _direct(packed: tuple[int, int, int, int]) -> bool:
    """Whether _read_zip_direct reads this member: stored or deflated, not encrypted."""
    method, _, _, flags = packed
    return method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and not flags & 1


def _read_zip_direct(
    path: str, header: int, size: int, packed: tuple[int, int, int, int]
) -> memoryview:
    """A stored or deflated zip member from its local header, inflated and CRC-checked.

    The sizes and CRC come from the central directory the parent read, so a worker never
    loads the whole directory (zipfile would, for every archive it opens).
    """
    method, compressed, crc, _ = packed
    view = _buffer(size)
    with open(path, "rb", buffering=0) as f:
        f.seek(header)
        head = f.read(_LOCAL_HEADER.size)
        if len(head) < _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
            raise OSError(errno.EIO, "damaged zip member (no local header)")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(head)
        f.seek(header + _LOCAL_HEADER.size + name_len + extra_len)
        if method == zipfile.ZIP_STORED:
            if compressed != size or _fill(f, view) != size:  # type: ignore[arg-type]
                raise OSError(errno.EIO, "damaged zip member (cut short)")
        else:
            inflate, got, left = zlib.decompressobj(-15), 0, compressed
            try:
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise OSError(errno.EIO, "damaged zip member (cut short)")
                    left -= len(chunk)
                    # At most one byte past the member's size: enough to see it is too long.
                    out = inflate.decompress(chunk, size - got + 1)
                    if got + len(out) > size or inflate.unconsumed_tail:
                        raise OSError(errno.EIO, "damaged zip member (longer than its size)")
                    view[got : got + len(out)] = out
                    got += len(out)
            except zlib.error:
                raise OSError(errno.EIO, "damaged zip member (deflate stream)") from None
            if got != size or not inflate.eof:
                raise OSError(errno.EIO, "damaged zip member (shorter than its size)")
    if zlib.crc32(view) != crc:
        raise OSError(errno.EIO, "damaged zip member (CRC-32 mismatch)")
    return view


class _ZipSize(OSError):
    """A zip member whose inflated length is not the one its header gives."""


def _read_zip_member(path: str, member: str) -> memoryview:
    """A zip member's bytes, inflated and CRC-checked, in the worker's read buffer."""
    zf = _ZIPS.get(path)
    if zf is None:
        if len(_ZIPS) >= 8:
            for old in _ZIPS.values():
                old.close()
            _ZIPS.clear()
        try:
            zf = _ZIPS[path] = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise OSError(errno.EIO, "not a readable zip archive") from None
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise OSError(errno.ENOENT, "zip member no longer in the archive") from None
    try:
        with zf.open(info) as f:
            view = _buffer(info.file_size)
            got = _fill(f, view)  # type: ignore[arg-type]
            if got != info.file_size or f.read(1):
                raise _ZipSize(errno.EIO, "damaged zip member (not the size its header says)")
    except _ZipSize:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError, OSError) as exc:
        # CRC mismatch, damaged deflate/bzip2/lzma stream (bz2 raises OSError), cut archive.
        raise OSError(errno.EIO, f"damaged zip member ({type(exc).__name__})") from None
    except NotImplementedError:
        raise OSError(errno.EIO, "zip member compressed with a method zipfile lacks") from None
    except RuntimeError:
        # zipfile's message names the member, and names may be PHI: a fixed text instead.
        raise OSError(errno.EIO, "encrypted zip member") from None
    return view


def process_chunk(items: list[Item]) -> list[dict[str, object]]:
    """Worker task: clean a few inputs, make their outputs durable together, return records."""
    from medveil.durable import BatchWriter
    from medveil.engine.instance import clean_instance

    assert _ENGINE is not None and _OUTPUT is not None
    batch = BatchWriter(_OUTPUT, durable=_DURABLE)
    out: list[dict[str, object]] = []
    try:
        for item in items:
            try:
                raw = _read(item)
            except OSError as exc:
                out.append(
                    {
                        "status": "quarantined",
                        "reason": f"cannot read: {exc.strerror or type(exc).__name__}",
                        "size_in": 0,
                    }
                )
                continue
            result = clean_instance(
                _ENGINE, raw, item.name, capture_identity=_CAPTURE, embed=_EMBED
            )
            if result.status == "written":
                batch.add(_OUTPUT / result.relpath, result.parts)
            out.append(
                {
                    "status": result.status,
                    "reason": result.reason,
                    "size_in": result.size_in,
                    "row": result.row,
                    "actions": result.actions,
                    "pixels": result.pixels,
                    "identity": result.identity,
                    "engine": result.engine,
                    "declined": result.declined,
                }
            )
        batch.commit()
    except BaseException:
        batch.abort()
        raise
    return out


def _chunks(
    items: Iterator[tuple[str, Item]], max_items: int, max_bytes: int
) -> Iterator[list[tuple[str, Item]]]:
    """Group inputs into worker tasks, bounded by count and by bytes carried."""
    chunk: list[tuple[str, Item]] = []
    size = 0
    try:
        for key, item in items:
            chunk.append((key, item))
            size += len(item.data) if item.data is not None else 0
            if len(chunk) >= max_items or size >= max_bytes:
                yield chunk
                chunk, size = [], 0
    except MedveilError:
        # The input cannot be listed further: what was listed still goes to the workers.
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------- records
class RunRecords:
    """The run's records under OUTPUT/.medveil: catalog, quarantine list, summary."""

    def __init__(self, output: Path, keyed: Keyed) -> None:
        self.dir = output / RECORDS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keyed = keyed
        self.db = sqlite3.connect(self.dir / "catalog.sqlite", timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        cols = ", ".join(f"{n} {t}" for n, t in CATALOG_COLUMNS)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS instances ({cols}, source_key TEXT)")
        # Each record first deletes the input's earlier row (a resumed run may redo it):
        # without an index that is a scan of the whole catalog per file, quadratic in all.
        self.db.execute("CREATE INDEX IF NOT EXISTS instances_source ON instances (source_key)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS inputs"
            " (source_key TEXT PRIMARY KEY, status TEXT, reason TEXT, size_in INTEGER)"
        )
        self.db.commit()
        self._last_commit = time.monotonic()
        # What the pixel cleaner did per written file (no PHI), for `medveil qa`.
        self.pixel_log = open(self.dir / "pixels.jsonl", "a", encoding="utf-8")

    def done_keys(self) -> set[str]:
        """Keys of inputs finished by an earlier (interrupted) run."""
        return {k for (k,) in self.db.execute("SELECT source_key FROM inputs")}

    def record(self, key: str, result: dict[str, object]) -> None:
        """Store one input's outcome; commits in batches (and always at close)."""
        if result["status"] == "written":
            row = result["row"]
            assert isinstance(row, dict)
            names = [n for n, _ in CATALOG_COLUMNS]
            self.db.execute("DELETE FROM instances WHERE source_key = ?", (key,))
            self.db.execute(
                f"INSERT INTO instances ({', '.join(names)}, source_key) VALUES "
                f"({', '.join('?' * (len(names) + 1))})",
                [row[n] for n in names] + [key],
            )
        if result.get("pixels"):
            self.pixel_log.write(json.dumps(result["pixels"]) + "\n")
        self.db.execute(
            "INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)",
            (key, result["status"], result.get("reason"), result.get("size_in", 0)),
        )
        if time.monotonic() - self._last_commit > 1.0:
            self.db.commit()
            self._last_commit = time.monotonic()

    def finish(self, summary: RunSummary) -> None:
        """Commit the catalog and write the quarantine list and the summary (no PHI)."""
        self.db.commit()
        self.pixel_log.close()
        rows = self.db.execute(
            "SELECT source_key, reason FROM inputs WHERE status = 'quarantined' ORDER BY source_key"
        ).fetchall()
        with open(self.dir / "quarantine.jsonl.tmp", "w", encoding="utf-8") as f:
            for key, reason in rows:
                f.write(json.dumps({"input": key, "reason": reason}) + "\n")
        os.replace(self.dir / "quarantine.jsonl.tmp", self.dir / "quarantine.jsonl")
        with open(self.dir / "summary.json.tmp", "w", encoding="utf-8") as f:
            json.dump(summary.to_json(), f, indent=2)
        os.replace(self.dir / "summary.json.tmp", self.dir / "summary.json")
        self.db.close()


def _remove_partial_files(output: Path) -> None:
    for root, _dirs, files in os.walk(output):
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                os.unlink(os.path.join(root, f))


# ---------------------------------------------------------------------------- driver
def deidentify_archive(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    policy: Policy | None = None,
    secret: bytes,
    workers: int | None = None,
    resume: bool = False,
    progress: Callable[[RunSummary], None] | None = None,
    on_quarantine: Callable[[str, str], None] | None = None,
    vault: Vault | None = None,
    embed_originals: str | os.PathLike[str] | None = None,
    durable: bool = True,
) -> RunSummary:
    """De-identify every DICOM file under input into output; returns the run's summary.

    ``durable=False`` skips the flush to disk (renames stay atomic: a killed run still
    leaves no partial file, but a power cut can lose recent ones).
    ``progress`` is called after every file with the running summary; ``on_quarantine``
    with (input name, reason) for each quarantined file (the name may hold PHI: show it,
    do not store it). ``vault`` (a :class:`medveil.vault.Vault`, owned by the caller)
    receives every patient, study and series written; ``embed_originals`` (an X.509
    certificate file) seals each file's replaced originals into it (PS3.15 E.1.1).
    """
    policy = policy or Policy.default()
    out = Path(output)
    src = Path(input)
    if not src.exists():  # before the output folder and its records are made
        raise MedveilError(f"{src}: input not found (expected a folder, .zip or .tar archive)")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise MedveilError(f"{out}: the output must not be the input or inside it")
    if out.exists() and any(p.name != RECORDS for p in out.iterdir()) and not resume:
        raise MedveilError(f"{out}: output folder is not empty (use --resume to continue a run)")
    if vault is not None and vault.uses_key(secret):
        raise MedveilError("the vault key must differ from the pseudonym secret")
    if embed_originals:
        from medveil.crypto.vault.embed import OriginalsEmbedder

        OriginalsEmbedder(embed_originals)  # a bad certificate fails before any work
    out.mkdir(parents=True, exist_ok=True)
    keyed = Keyed(secret)
    records = RunRecords(out, keyed)
    done = records.done_keys() if resume else set()
    if resume:
        _remove_partial_files(out)
    workers = workers or os.cpu_count() or 1
    summary = RunSummary()
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(
            policy,
            secret,
            str(out),
            vault is not None,
            str(embed_originals) if embed_originals else None,
            durable,
        ),
    )
    in_flight: dict[cf.Future[list[dict[str, object]]], list[tuple[str, str]]] = {}
    limit = workers * 2

    def account(key: str, name: str, result: dict[str, object]) -> None:
        summary.bytes_in += int(result.get("size_in", 0) or 0)  # type: ignore[call-overload]
        status = result["status"]
        if status == "written":
            summary.written += 1
            summary.bytes_out += int(result["row"]["size"])  # type: ignore[index]
            summary.actions.update(result.get("actions", {}))  # type: ignore[arg-type]
            summary.engines[str(result.get("engine") or "dataset")] += 1
            if result.get("declined"):
                summary.declined[str(result["declined"])] += 1
        elif status == "skipped":
            summary.skipped += 1
        else:
            summary.quarantined += 1
            if on_quarantine:
                on_quarantine(name, str(result.get("reason")))
        if vault is not None and result.get("identity"):
            # Committed before the input is recorded as done, so a resumed run never
            # skips a file whose identity the vault lacks.
            vault.add(result["identity"])  # type: ignore[arg-type]
            vault.flush()
        records.record(key, result)
        summary.files_in += 1
        if progress:
            summary.seconds = time.perf_counter() - t0
            progress(summary)

    def collect() -> None:
        finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
        for fut in finished:
            names = in_flight.pop(fut)
            if fut.cancelled():
                # Never started (the executor hands tasks to its queue early, so this is
                # rare): left unrecorded, so a resumed run does these inputs.
                continue
            try:
                results = fut.result()
            except Exception as exc:  # a crashed worker: its files are quarantined
                failed = {"status": "quarantined", "reason": f"worker failed: {type(exc).__name__}"}
                results = [dict(failed, size_in=0) for _ in names]
            for (key, name), result in zip(names, results, strict=True):
                account(key, name, result)

    def pending() -> Iterator[tuple[str, Item]]:
        for item in iter_inputs(src):
            key = keyed.path_token(item.name)
            if key in done:
                summary.resumed += 1
                continue
            yield key, item

    listing_error: MedveilError | None = None
    try:
        try:
            for chunk in _chunks(pending(), max_items=CHUNK_FILES, max_bytes=CHUNK_BYTES):
                while len(in_flight) >= limit:
                    collect()
                fut = pool.submit(process_chunk, [item for _key, item in chunk])
                in_flight[fut] = [(key, item.name) for key, item in chunk]
        except MedveilError as exc:
            # A damaged archive: the files listed before the damage are finished and
            # recorded, then the run reports the error.
            listing_error = exc
            summary.interrupted = True  # the summary says the input was not covered
        while in_flight:
            collect()
    except KeyboardInterrupt:
        summary.interrupted = True
        for fut in in_flight:
            fut.cancel()
        while in_flight:
            try:
                collect()
            except KeyboardInterrupt:
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        summary.seconds = time.perf_counter() - t0
        records.finish(summary)
    if listing_error is not None:
        raise listing_error
    if resume:
        summary.files_in += summary.resumed
    return summary
