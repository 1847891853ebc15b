"""Archive conversion: de-identify a folder tree, .zip or .tar(.gz) into a new archive.

The parent process lists inputs and writes the run records; worker processes read,
de-identify, post-check and write each file under a temporary name. In a durable run the
parent then flushes the finished tasks' files to disk together and gives them their final
names, so that no worker waits for the disk. Inputs are streamed to the workers with a
bounded number in flight, so memory does not grow with the archive. Every input ends up
written, skipped (not DICOM) or quarantined (with a reason); nothing half written ever
carries a final name, and ``resume=True`` continues a killed run to the same output.
"""

from __future__ import annotations

import bz2
import concurrent.futures as cf
import contextlib
import errno
import fcntl
import heapq
import itertools
import json
import logging
import lzma
import multiprocessing
import os
import shutil
import signal
import sqlite3
import stat
import struct
import tarfile
import tempfile
import threading
import time
import warnings
import weakref
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Generic, NamedTuple, Protocol, TypeVar, cast

from medveil.durable import BatchWriter, UnsafePath, die_with_parent, safe_join
from medveil.errors import MedveilError
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from medveil.run.outputs import (
    DICOMDIR_FOLDER,
    IDENTICAL,
    REPLACED,
    TOO_MANY_VARIANTS,
    ExclusiveBatch,
    is_dicomdir,
    settle_variants,
    variant_path,
    write_dicomdir,
)
from medveil.run.refs import output_references

if TYPE_CHECKING:
    from medveil.crypto.vault import Vault

RECORDS = ".medveil"
_T = TypeVar("_T")
# A worker task: up to this many files, or this many bytes of archive members carried to
# the worker; its outputs are made durable with one file-system flush.
CHUNK_FILES = 16
CHUNK_BYTES = 64 << 20
# The smallest task the last ones shrink to (each task ends with one flush to disk).
TAIL_FILES = 4
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
    # Inputs whose output another input had already written, byte for byte (same SOP
    # Instance UID, same content): not written twice. Different content is quarantined.
    duplicates: int = 0
    # DICOMDIR inputs: not released; a new DICOMDIR for the output is written instead.
    replaced: int = 0
    # The new DICOMDIR's path relative to OUTPUT ("" when none was written), and how many
    # released files pydicom's FileSet could not make a directory record of.
    dicomdir: str = ""
    dicomdir_left_out: int = 0
    # References (inside sequences: Referenced SOP Instance, Series, Study, Frame of
    # Reference UIDs) of the released files to a UID that no released file has; and the
    # released files whose references could not be read (not counted in the former).
    unresolved_references: int = 0
    references_unchecked: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    # Folders that could not be listed: their files were not seen (exit 1).
    unreadable: int = 0
    # Retries after failures of the environment (a worker died, disk full, out of memory):
    # attempts, and why (fixed texts).
    retried: int = 0
    retry_reasons: Counter[str] = field(default_factory=Counter)
    # Inputs left undone because such a failure persisted: the run stopped (exit 2) and
    # --resume does them; failure says why.
    failed: int = 0
    failure: str = ""
    actions: Counter[str] = field(default_factory=Counter)
    # Skipped inputs by reason: "not DICOM", "empty file", "not a regular file (FIFO)", ...
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    # Inputs a [filter] rule kept from processing, by the rule: {"exclude[0]": 12}. Not
    # written and not quarantined.
    excluded: Counter[str] = field(default_factory=Counter)
    # Written files per engine: "raw" (bytes scanned directly) or "dataset" (pydicom).
    engines: Counter[str] = field(default_factory=Counter)
    # Inputs this run accounts for (not those an earlier run did) once they are all listed:
    # the progress bar's total and ETA. None until then; a compressed tar is not read
    # twice, so its total is known only at the end.
    total: int | None = None
    # A dry run (``dry_run=True``): every count says what a real run would do, and
    # ``written`` counts files that would be released; nothing was written.
    dry_run: bool = False
    # Released files moved to quarantine by a QA reviewer's rejection (--resume).
    rejected: int = 0
    # Why the raw-byte engine left files to the Dataset engine (fixed texts, no values).
    declined: Counter[str] = field(default_factory=Counter)
    # Why the native road left written files to the Python engines (fixed texts, no values).
    native_declined: Counter[str] = field(default_factory=Counter)

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
        """0 clean; 1 quarantined, unreadable folders or interrupted; 2 stopped by a failure."""
        if self.failed:
            return 2
        return 1 if self.quarantined or self.interrupted or self.unreadable else 0

    def to_json(self) -> dict[str, object]:
        """The summary as a JSON-ready dict."""
        out = asdict(self)
        for name in (
            "actions",
            "engines",
            "declined",
            "native_declined",
            "retry_reasons",
            "skipped_reasons",
            "excluded",
        ):
            out[name] = dict(getattr(self, name))
        out["excluded_total"] = sum(self.excluded.values())
        out["files_per_second"] = round(self.files_per_second, 2)
        out["mb_per_second"] = round(self.mb_per_second, 2)
        return out


@dataclass(frozen=True)
class Item:
    """One input: a display name (may hold PHI: console only), a path or bytes.

    With a path, ``member`` names a zip member and ``size`` >= 0 a byte range of the file
    from ``offset`` (a member of an uncompressed tar, or a compressed tar's member spooled
    to a temporary file): the worker reads them itself, so no file's bytes pass through
    the task pipe.
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
    # An outcome decided while listing, without a worker: ("skipped", why) for what is not
    # a regular file, ("quarantined", why) for a member over the size limit, ("unreadable",
    # why) for a folder that cannot be listed.
    verdict: tuple[str, str] | None = None


# ---------------------------------------------------------------------------- inputs
def _kind(mode: int) -> str:
    """What a file that is not a regular file is, for a skip reason."""
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return name
    return "special file"


def iter_inputs(
    source: str | os.PathLike[str],
    max_size: int | None = None,
    spool: str | os.PathLike[str] | None = None,
) -> Iterator[Item]:
    """Yield every file of a folder tree (sorted), a .zip or a .tar(.gz) archive.

    Only regular files are read: a FIFO, device or socket is yielded with a "skipped"
    verdict (opening a FIFO would block). A folder that cannot be listed is yielded with an
    "unreadable" verdict. ``max_size`` refuses compressed tar members the parent would
    otherwise have to read. A compressed (or sparse) tar member is spooled to a hidden
    temporary file in ``spool`` (default: a private temporary folder), removed once its
    Item is no longer referenced.
    """
    src = Path(source)
    try:
        mode = src.stat().st_mode
    except OSError:
        raise MedveilError(
            f"{src}: input not found (expected a folder, .zip or .tar archive)"
        ) from None
    if stat.S_ISDIR(mode):
        yield from _folder_items(src)
        return
    if not stat.S_ISREG(mode):
        raise MedveilError(f"{src}: the input is a {_kind(mode)}, not a folder or archive")
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
        yield from _tar_items(src, max_size, spool)
        return
    if src.name.lower().endswith(_ARCHIVE_SUFFIXES):
        # Named as an archive, yet neither zipfile nor tarfile can open it.
        raise MedveilError(f"{src}: the archive is damaged or cut short (it cannot be opened)")
    yield Item(name=src.name, path=str(src))


def _folder_items(src: Path) -> Iterator[Item]:
    """The files of a folder tree, sorted; special files and unlistable folders as verdicts."""
    unreadable: list[OSError] = []
    for root, dirs, files in os.walk(src, onerror=unreadable.append):
        while unreadable:
            exc = unreadable.pop()
            name = os.path.relpath(exc.filename, src) if exc.filename else str(src)
            why = f"cannot list folder: {exc.strerror or type(exc).__name__}"
            yield Item(name=name, verdict=("unreadable", why))
        dirs.sort()
        dirs[:] = [d for d in dirs if d != RECORDS]
        # One relpath per folder, not per file (it resolves both paths each time).
        here = os.path.relpath(root, src)
        for f in sorted(files):
            p = os.path.join(root, f)
            name = f if here == "." else os.path.join(here, f)
            try:
                mode = os.stat(p).st_mode  # follows a symbolic link to what it names
            except OSError:
                mode = stat.S_IFREG  # gone or a dangling link: the worker says why
            if stat.S_ISREG(mode):
                yield Item(name=name, path=p)
            else:
                yield Item(name=name, verdict=("skipped", f"not a regular file ({_kind(mode)})"))
    while unreadable:  # the top folder itself
        exc = unreadable.pop()
        why = f"cannot list folder: {exc.strerror or type(exc).__name__}"
        yield Item(name=str(src.name), verdict=("unreadable", why))


_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
# What a damaged or cut tar (or its gzip, bzip2, xz stream) raises while it is read.
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def _tar_kind(member: tarfile.TarInfo) -> str:
    """What a tar member that is not a file is, for a skip reason."""
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    return "special member"


def _tar_items(
    src: Path, max_size: int | None = None, spool: str | os.PathLike[str] | None = None
) -> Iterator[Item]:
    """The files of a tar archive: byte ranges of the archive, or of a spooled copy."""
    with open(src, "rb") as f:
        magic = f.read(6)
        archive_size = os.fstat(f.fileno()).st_size
    compressed = magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00"
    # Stream mode reads members in archive order without seeking or unpacking; on a plain
    # tar the headers are read with seeks and each worker reads its members' bytes itself.
    with tarfile.open(src, mode="r|*" if compressed else "r:") as tf:
        while (member := _next_member(tf, src)) is not None:
            # TarFile keeps every header it read: memory grows otherwise.
            tf.members.clear()  # type: ignore[attr-defined]
            name = f"{src.name}!{member.name}"
            if member.isdir():
                continue
            if not member.isfile():
                # Links and devices are not files of the export; counted, never followed.
                yield Item(name=name, verdict=("skipped", f"tar {_tar_kind(member)} member"))
                continue
            if max_size is not None and member.size > max_size:
                yield Item(name=name, verdict=("quarantined", _too_large(member.size, max_size)))
                continue
            if compressed or member.issparse():
                # Spooled, not read into memory: the worker reads the file like a plain
                # tar member, so the bytes never cross the task pipe (pickled, they cost
                # the worker a second and third copy).
                item = _spooled(tf, member, name, src, spool)
                if item is not None:
                    yield item
            else:
                if member.offset_data + member.size > archive_size:
                    # A header claiming more than the file holds: a lie or a cut archive.
                    yield Item(
                        name=name,
                        verdict=("quarantined", "cannot read: archive member is cut short"),
                    )
                    raise _damaged_tar(src)
                yield Item(name=name, path=str(src), offset=member.offset_data, size=member.size)


def _spooled(
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    name: str,
    src: Path,
    spool: str | os.PathLike[str] | None,
) -> Item | None:
    """A tar member copied to a hidden temporary file, as an Item reading that file.

    The file (``.spool-*.tmp``: the pattern a resumed run removes after a crash) is
    unlinked when the Item is garbage: the run holds each Item until its input is
    accounted for, retries included. None for a member tarfile gives no reader for.
    """
    try:
        reader = tf.extractfile(member)
    except _TAR_ERRORS as exc:
        raise _damaged_tar(src, exc) from None
    if reader is None:
        return None
    try:
        folder = _spool_folder(spool)
        fd, path = tempfile.mkstemp(prefix=".spool-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _spool_failed(exc) from None
    try:
        with open(fd, "wb") as out:
            got = _copy_stream(reader, out, src)
    except BaseException:
        _unlink_spool(path, None)
        raise
    if got != member.size:
        # A cut bzip2 stream just ends: tarfile returns what it had.
        _unlink_spool(path, None)
        raise _damaged_tar(src)
    item = Item(name=name, path=path, offset=0, size=got)
    weakref.finalize(item, _unlink_spool, path, None if spool is not None else folder)
    return item


def _copy_stream(reader: IO[bytes], out: IO[bytes], src: Path) -> int:
    """Copy a tar member's reader to its spool file 1 MB at a time; the bytes copied."""
    got = 0
    while True:
        try:
            chunk = reader.read(1 << 20)
        except _TAR_ERRORS as exc:
            raise _damaged_tar(src, exc) from None
        if not chunk:
            return got
        try:
            out.write(chunk)
        except OSError as exc:
            raise _spool_failed(exc) from None
        got += len(chunk)


def _spool_failed(exc: OSError) -> MedveilError:
    """The error that stops a run whose spool cannot be written (a full disk, most likely)."""
    return MedveilError(
        f"cannot spool a compressed tar member to disk: {_env_reason(exc)}; free space and "
        "run again with --resume"
    )


_SPOOL_FOLDER: str | None = None  # the private spool folder of this process, made once


def _spool_folder(spool: str | os.PathLike[str] | None) -> str:
    """Where spooled members go: the given folder, else a private temporary one."""
    global _SPOOL_FOLDER
    if spool is not None:
        os.makedirs(spool, exist_ok=True)
        return os.fspath(spool)
    if _SPOOL_FOLDER is None or not os.path.isdir(_SPOOL_FOLDER):
        _remove_stale_spools()
        _SPOOL_FOLDER = tempfile.mkdtemp(prefix=f"medveil-spool-{os.getpid()}-")
    return _SPOOL_FOLDER  # removed by the finalizer of its last member


def _remove_stale_spools() -> None:
    """Remove the private spool folders of runs that died (kill -9) before emptying them."""
    base = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(base) if n.startswith("medveil-spool-")]
    except OSError:
        return
    for n in names:
        pid = n.split("-")[2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(base, n), ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _unlink_spool(path: str, folder: str | None) -> None:
    """Remove a spooled member (gone already is fine), and its private folder once empty."""
    try:
        os.unlink(path)
    except OSError:
        pass
    if folder is not None:
        try:
            os.rmdir(folder)  # fails while other members are spooled there: kept
        except OSError:
            pass


def _too_large(size: int, limit: int) -> str:
    """The quarantine reason of a file over the per-file size limit."""
    return (
        f"too large: {size / 1e6:.1f} MB over the per-file limit of {limit / 1e6:.1f} MB"
        " (--max-file-size)"
    )


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
# The parent flushes and places this worker's outputs (a durable run, not a dry one): the
# worker never waits for the disk, and one flush covers the tasks of every worker.
_DEFER = False
_MAX_SIZE: int | None = None  # per-file size limit (bytes); None: no limit
_TIMEOUT = 0.0  # per-file time limit before the size-proportional part; 0: none
_DRY = False  # a dry run: every file is cleaned and checked, none is written
# (policy, secret, engine) the parent built before forking its workers (see _prebuild_engine)
_PREBUILT: tuple[Policy, bytes, Any] | None = None
# The time limit grows with the file: this many bytes per second are allowed on top of the
# base (far slower than any real file is cleaned; DICM followed by zeros is slower still).
TIMEOUT_BYTES_PER_SECOND = 10e6


def _init_worker(
    policy: Policy,
    secret: bytes,
    output: str,
    capture_identity: bool = False,
    embed_cert: str | None = None,
    durable: bool = True,
    max_size: int | None = None,
    timeout: float = 0.0,
    parent: int | None = None,
    dry_run: bool = False,
) -> None:
    """Create one engine per worker process; silence pydicom (its warnings quote values)."""
    global _ENGINE, _OUTPUT, _CAPTURE, _EMBED, _DURABLE, _MAX_SIZE, _TIMEOUT, _DRY, _DEFER
    # Signals first: whatever fails below, the pool's SIGTERM must end this process.
    die_with_parent(parent)  # kill -9 of the run must not leave workers writing on
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's SIGTERM handler is not ours
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGVTALRM, signal.SIG_DFL)  # the CPU backstop of _arm ends us
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").disabled = True
    prebuilt = _PREBUILT
    if prebuilt is not None and prebuilt[0] is policy and prebuilt[1] == secret:
        _ENGINE = prebuilt[2]  # made by the parent before the fork: shared, not rebuilt
    else:
        from medveil.engine.dataset import Deidentifier

        _ENGINE = Deidentifier(policy, secret)
    _OUTPUT = Path(output)
    _CAPTURE = capture_identity
    _DURABLE = durable
    _MAX_SIZE = max_size
    _TIMEOUT = timeout
    _DRY = dry_run
    _DEFER = durable and not dry_run
    if embed_cert:
        from medveil.crypto.vault.embed import OriginalsEmbedder

        _EMBED = OriginalsEmbedder(embed_cert)


def _prebuild_engine(policy: Policy, secret: bytes) -> None:
    """Import the engine and build it in the parent, for forked workers to inherit.

    Each worker would otherwise import the engine's modules and compile the policy
    itself: done once before the fork, the work (and its memory pages) is shared by
    every worker of the run and of any pool that replaces a broken one.
    """
    global _PREBUILT
    try:
        from medveil.engine.dataset import Deidentifier
        from medveil.engine.instance import native_engine_of

        engine = Deidentifier(policy, secret)
        native_engine_of(engine)  # the native road's table, which a first file would make
    except Exception:  # the workers build it themselves, and report what fails there
        _PREBUILT = None
        return
    _PREBUILT = (policy, secret, engine)


class _Background(threading.Thread, Generic[_T]):
    """A call run in a thread from now on; result() waits for it and returns (or raises)."""

    def __init__(self, call: Callable[[], _T]) -> None:
        super().__init__(name="medveil-background", daemon=True)
        self._call = call
        self._value: _T | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        """Run the call, keeping what it returns or raises."""
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to result()'s caller
            self._error = exc

    def result(self) -> _T:
        """Wait for the call; its value, or its exception raised here."""
        self.join()
        if self._error is not None:
            raise self._error
        return cast(_T, self._value)


class _Timeout(BaseException):
    """A file took longer than its time limit (a BaseException: clean_instance lets it by)."""


def _on_alarm(_signum: int, _frame: object) -> None:
    raise _Timeout


def timeout_reason(limit: float, size: int) -> str:
    """The quarantine reason of a file over its time limit (every road says it alike)."""
    return f"timed out: over {limit:.1f} s for {size / 1e6:.1f} MB (--file-timeout)"


def _time_limit(size: int) -> float:
    """The time limit of a file of this many bytes: the base plus a size-proportional part."""
    return _TIMEOUT + size / TIMEOUT_BYTES_PER_SECOND if _TIMEOUT > 0 else 0.0


def _arm(seconds: float) -> None:
    """Raise _Timeout in this worker after seconds (0 disarms); kill it if that cannot work.

    The Python handler runs only between bytecodes: code that spins in C (a native loop
    that never returns) would never see it. A second timer counts this process's CPU time
    and, at twice the limit plus a second, delivers SIGVTALRM, whose default action ends
    the worker; the parent sees why (the exit signal) and quarantines the file.
    """
    seconds = max(seconds, 0.0)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_VIRTUAL, 2 * seconds + CPU_GRACE if seconds else 0.0)


# Seconds of CPU time beyond twice a file's limit before its worker is ended.
CPU_GRACE = 1.0


class _Verdict(OSError):
    """A read that tells something about the file itself: quarantined (or skipped), no retry."""

    status = "quarantined"


class _Damaged(_Verdict):
    """An archive member that is damaged or cut short."""


class _TooLarge(_Verdict):
    """A file over the per-file size limit."""


class _NotRegular(_Verdict):
    """Not a regular file (a FIFO, a device): skipped, never opened for reading."""

    status = "skipped"


# Errors of a read that say the file is what it is (gone, not allowed, ...), not that the
# machine failed: quarantined at once. Any other OSError (EIO, ENOMEM, ...) is retried.
_FILE_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ELOOP,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.ENXIO,
}


def _check_size(size: int) -> None:
    """Refuse a file over the per-file limit before a byte of it is read."""
    if _MAX_SIZE is not None and size > _MAX_SIZE:
        raise _TooLarge(errno.EFBIG, _too_large(size, _MAX_SIZE))


_BUFFER = bytearray()  # the worker's read buffer, as large as the largest file so far


_ZIPS: dict[str, zipfile.ZipFile] = {}  # zip archives this worker has open, by path


def _buffer(size: int) -> memoryview:
    """The first size bytes of the worker's read buffer, grown when needed."""
    global _BUFFER
    if size > len(_BUFFER):
        _BUFFER = bytearray(0)  # free the old one first: never two at once
        _BUFFER = bytearray(size)
    return memoryview(_BUFFER)[:size]


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _fill(f: _ReadInto | int, view: memoryview) -> int:
    """Read into view until it is full or the stream ends; the number of bytes read.

    ``f``: a stream, or a file descriptor read directly (a file object over it would
    fstat it once more and cost an object per file).
    """
    got = 0
    while got < len(view):
        # os.readv retries on EINTR (PEP 475), as readinto does.
        n = os.readv(f, [view[got:]]) if isinstance(f, int) else f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _open_regular(path: str) -> tuple[int, int]:
    """Open path for reading without ever blocking; (fd, size). A non-file is _NotRegular."""
    # O_NONBLOCK: opening a FIFO with no writer would wait forever; fstat then tells what
    # was opened (no race with a file swapped after the listing).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegular(errno.EINVAL, f"not a regular file ({_kind(st.st_mode)})")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _read(item: Item) -> bytes | memoryview:
    """The file's bytes: a view of the worker's one read buffer, valid until the next read.

    Reusing the buffer matters for large images: a fresh one is zero-filled page by page
    before the file is read into it, which costs as much as the read itself. Raises
    OSError (with the reason) when the file or archive member cannot be read whole; a
    size is checked against the limit, and against the bytes really there, before any
    buffer is sized from it.
    """
    return _inflated(_read_whole(item))


def _inflated(view: bytes | memoryview) -> bytes | memoryview:
    """A deflated-syntax file inflated (bounded by the size limit) into the next read buffer.

    The compressed bytes stay in the old buffer until the inflated file is in the new
    one, which then becomes the worker's read buffer: the peak is the two, never a third
    copy (pydicom's whole-file inflation and its reads cost eight times the file).
    """
    global _BUFFER
    from medveil.dicom.io import InflatedTooLarge, inflate_file
    from medveil.dicom.strict import StructureError

    try:
        out = inflate_file(view, _MAX_SIZE)
    except InflatedTooLarge as exc:
        raise _TooLarge(errno.EFBIG, str(exc)) from None
    except StructureError:
        return view  # the strict check in clean_instance quarantines it, with the reason
    if out is None:
        return view
    # The old buffer goes with the caller's last view of it; the next read reuses this one.
    _BUFFER = cast(bytearray, out.obj)
    return out


def _read_whole(item: Item) -> bytes | memoryview:
    """The file's bytes as stored (see _read)."""
    if item.data is not None:
        _check_size(len(item.data))
        return item.data
    assert item.path is not None
    if item.member is not None:
        _check_size(item.size)
        if item.packed is not None and _direct(item.packed):
            return _read_zip_direct(item.path, item.offset, item.size, item.packed)
        return _read_zip_member(item.path, item.member)
    fd, file_size = _open_regular(item.path)
    try:
        if item.size >= 0:
            _check_size(item.size)
            if item.offset + item.size > file_size:
                raise _Damaged(errno.EIO, "archive member is cut short")
            os.lseek(fd, item.offset, os.SEEK_SET)
            view = _buffer(item.size)
            got = _fill(fd, view)
            if got < item.size:
                raise _Damaged(errno.EIO, "archive member is cut short")
            return view
        _check_size(file_size)  # a sparse or huge file is refused before it is read
        view = _buffer(file_size)
        return view[: _fill(fd, view)]
    finally:
        os.close(fd)


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name and extra lengths
# Deflate cannot expand more than 1032:1: a member's true size is at most this many times
# its compressed size, whatever its header claims.
_DEFLATE_RATIO = 1032


def _direct(packed: tuple[int, int, int, int]) -> bool:
    """Whether _read_zip_direct reads this member: stored, deflated, bzip2 or LZMA, clear."""
    method, _, _, flags = packed
    return method in _DIRECT_METHODS and not flags & 1


_DIRECT_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _decompressor(method: int, f: BinaryIO) -> tuple[Any, int]:
    """A decompressor for a zip member's data at f, and how many header bytes it took."""
    if method == zipfile.ZIP_DEFLATED:
        return zlib.decompressobj(-15), 0
    if method == zipfile.ZIP_BZIP2:
        return bz2.BZ2Decompressor(), 0
    # LZMA in zip: a 4-byte version and properties length, then the LZMA1 properties.
    head = f.read(4)
    if len(head) < 4:
        raise _Damaged(errno.EIO, "damaged zip member (cut short)")
    (props_len,) = struct.unpack("<H", head[2:4])
    props = f.read(props_len)
    decode = lzma._decode_filter_properties  # type: ignore[attr-defined]  # as zipfile does
    try:
        filters = [decode(lzma.FILTER_LZMA1, props)]
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters), 4 + props_len
    except (lzma.LZMAError, ValueError):
        raise _Damaged(errno.EIO, "damaged zip member (LZMA properties)") from None


def _read_zip_direct(
    path: str, header: int, size: int, packed: tuple[int, int, int, int]
) -> memoryview:
    """A zip member from its local header, inflated with a bound and CRC-checked.

    The sizes and CRC come from the central directory the parent read, so a worker never
    loads the whole directory (zipfile would, for every archive it opens). No buffer is
    sized from a claim the compressed bytes cannot back: a 15 KB member claiming 4 GB
    costs at most 1032 x 15 KB (deflate's limit), and the output never grows past its
    claimed size (a zip bomb stops there).
    """
    method, compressed, crc, _ = packed
    fd, file_size = _open_regular(path)
    with open(fd, "rb", buffering=0) as f:
        f.seek(header)
        head = f.read(_LOCAL_HEADER.size)
        if len(head) < _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
            raise _Damaged(errno.EIO, "damaged zip member (no local header)")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(head)
        start = header + _LOCAL_HEADER.size + name_len + extra_len
        if start + compressed > file_size:
            raise _Damaged(errno.EIO, "damaged zip member (cut short)")
        f.seek(start)
        if method == zipfile.ZIP_STORED:
            if compressed != size:
                raise _Damaged(errno.EIO, "damaged zip member (cut short)")
            view = _buffer(size)
            if _fill(f, view) != size:
                raise _Damaged(errno.EIO, "damaged zip member (cut short)")
        else:
            view = _inflate(f, method, compressed, size)
    if zlib.crc32(view) != crc:
        raise _Damaged(errno.EIO, "damaged zip member (CRC-32 mismatch)")
    return view


def _inflate(f: BinaryIO, method: int, compressed: int, size: int) -> memoryview:
    """Decompress a zip member's data into the read buffer, never past its claimed size."""
    dec, used = _decompressor(method, f)
    left = compressed - used
    deflate = method == zipfile.ZIP_DEFLATED
    # Sized from what the compressed bytes can back; grown (doubling) only as real output
    # arrives, so memory follows the data, not the header.
    view = _buffer(min(size, (_DEFLATE_RATIO if deflate else 4) * left + 65536))
    got = 0
    try:
        while not dec.eof:
            if deflate and dec.unconsumed_tail:
                data = dec.unconsumed_tail
            elif (deflate or dec.needs_input) and left > 0:
                data = f.read(min(left, 1 << 20))
                if not data:
                    raise _Damaged(errno.EIO, "damaged zip member (cut short)")
                left -= len(data)
            elif deflate or dec.needs_input:
                data = b""  # all input given: what the decompressor still holds, if any
            else:
                data = b""  # bzip2/LZMA hold input back: ask for the rest of its output
            # At most one byte past the member's size (enough to see it is too long), and
            # 1 MB at a time: the output goes into the buffer, not a second full copy.
            out = dec.decompress(data, min(size - got + 1, _OUT_CHUNK))
            if got + len(out) > size:
                raise _Damaged(errno.EIO, "damaged zip member (longer than its size)")
            view = _place(view, got, out, size)
            got += len(out)
            if not data and not out:
                break  # nothing more comes: the stream ends here (short, unless LZMA)
    except (zlib.error, EOFError, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, _Verdict):
            raise
        raise _Damaged(errno.EIO, f"damaged zip member ({_METHOD_NAMES.get(method)})") from None
    # LZMA in zip may end without an end marker: its length is the only end it has.
    if got != size or (not dec.eof and method != zipfile.ZIP_LZMA):
        raise _Damaged(errno.EIO, "damaged zip member (shorter than its size)")
    return view[:size]


_OUT_CHUNK = 1 << 20

_METHOD_NAMES = {
    zipfile.ZIP_DEFLATED: "deflate stream",
    zipfile.ZIP_BZIP2: "bzip2 stream",
    zipfile.ZIP_LZMA: "LZMA stream",
}


def _place(view: memoryview, at: int, data: bytes, size: int) -> memoryview:
    """Copy data into view at offset at, growing the read buffer (doubling, <= size) first."""
    end = at + len(data)
    if end > len(view):
        grown = min(size, max(end, 2 * len(view)))
        if grown <= len(_BUFFER):
            view = memoryview(_BUFFER)[:grown]  # the buffer is large enough already
        else:
            keep = bytes(view[:at])
            view.release()
            view = _buffer(grown)
            view[:at] = keep
    view[at:end] = data
    return view


def _read_zip_member(path: str, member: str) -> memoryview:
    """A zip member zipfile must read (an encrypted one, an unusual method), size-checked."""
    zf = _ZIPS.get(path)
    if zf is None:
        if len(_ZIPS) >= 8:
            for old in _ZIPS.values():
                old.close()
            _ZIPS.clear()
        try:
            zf = _ZIPS[path] = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise _Damaged(errno.EIO, "not a readable zip archive") from None
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise _Damaged(errno.ENOENT, "zip member no longer in the archive") from None
    _check_size(info.file_size)
    try:
        with zf.open(info) as f:  # an encrypted or unknown-method member fails here
            view = _buffer(info.file_size)
            got = _fill(cast(_ReadInto, f), view)
            if got != info.file_size or f.read(1):
                raise _Damaged(errno.EIO, "damaged zip member (not the size its header says)")
    except _Verdict:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError, OSError) as exc:
        # CRC mismatch, damaged stream, cut archive.
        raise _Damaged(errno.EIO, f"damaged zip member ({type(exc).__name__})") from None
    except NotImplementedError:
        raise _Damaged(errno.EIO, "zip member compressed with a method zipfile lacks") from None
    except RuntimeError:
        # zipfile's message names the member, and names may be PHI: a fixed text instead.
        raise _Damaged(errno.EIO, "encrypted zip member") from None
    return view


def _env_reason(exc: BaseException) -> str:
    """A fixed text for a failure of the environment (no path, no value)."""
    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError)"
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{os.strerror(exc.errno)} ({name})"
    return f"worker failed ({type(exc).__name__})"


class Record(NamedTuple):
    """One input's outcome, as a worker sends it to the parent (a compact tuple, no PHI
    but the identity for the vault).

    ``row`` holds the catalog columns in CATALOG_COLUMNS order; ``pixels`` the pixel
    cleaner's JSON line for pixels.jsonl; ``refs`` the UIDs a written file refers to
    (None: they could not be read).
    """

    status: str
    reason: str = ""
    size_in: int = 0
    row: tuple[Any, ...] | None = None
    actions: dict[str, int] | None = None
    pixels: str = ""
    identity: dict[str, object] | None = None
    engine: str = ""
    declined: str = ""
    native_declined: str = ""
    refs: tuple[str, ...] | list[str] | None = ()
    frame: str = ""
    # A durable run's written file not yet placed: (staged name, its temporary, the name
    # it varies), all under OUTPUT; the parent flushes and places it (see _place_tasks).
    staged: tuple[str, str, str] | None = None

    @property
    def path(self) -> str:
        """The output path of a written record (relative to OUTPUT)."""
        assert self.row is not None
        return str(self.row[_PATH])

    def with_path(self, path: str) -> Record:
        """This record with its catalog row naming another output path."""
        assert self.row is not None
        return self._replace(row=(*self.row[:_PATH], path, *self.row[_PATH + 1 :]))


_COLUMNS = tuple(name for name, _type in CATALOG_COLUMNS)
_PATH, _SIZE, _SHA256 = (_COLUMNS.index(n) for n in ("path", "size", "sha256"))


def _retry(reason: str) -> Record:
    """A worker record for a file to try again: the failure was not the file's doing."""
    return Record("retry", reason)


def _process_one(item: Item, batch: ExclusiveBatch) -> tuple[Record, Path | None]:
    """Read, clean, post-check and stage one input: its record, and where it was staged."""
    from medveil.engine.instance import clean_instance

    assert _ENGINE is not None and _OUTPUT is not None
    limit, size = _time_limit(0), 0
    try:
        _arm(limit)
        try:
            raw = _read(item)
            size = len(raw)
            if is_dicomdir(raw):
                # A directory of the input's files, not an instance: its records name
                # patients and point at the input's file IDs. Replaced at the end.
                return Record("replaced", REPLACED, size), None
            limit = _time_limit(size)
            _arm(limit)
            result = clean_instance(
                _ENGINE, raw, item.name, capture_identity=_CAPTURE, embed=_EMBED
            )
        finally:
            _arm(0)
    except _Timeout:
        return Record("quarantined", timeout_reason(limit, size), size), None
    except _Verdict as exc:
        prefix = "cannot read: " if exc.status == "quarantined" and exc.errno != errno.EFBIG else ""
        return Record(exc.status, prefix + str(exc.strerror)), None
    except MemoryError as exc:
        return _retry(_env_reason(exc)), None
    except OSError as exc:
        if exc.errno in _FILE_ERRNOS:
            why = f"cannot read: {exc.strerror or type(exc).__name__}"
            return Record("quarantined", why), None
        return _retry(_env_reason(exc)), None
    if result.status == "quarantined" and result.reason.startswith("MemoryError"):
        # clean_instance keeps any exception from the output; running out of memory says
        # nothing about the file, so it is tried again rather than quarantined.
        return _retry(_env_reason(MemoryError())), None
    written = result.status == "written"
    row = result.row
    record = Record(
        result.status,
        result.reason,
        result.size_in,
        tuple(row[n] for n in _COLUMNS) if written else None,
        result.actions or None,
        # Serialized here, not in the parent: one string crosses the pipe, not a dict.
        json.dumps(result.pixels) if result.pixels else "",
        result.identity or None,
        result.engine,
        result.declined,
        result.native_declined,
    )
    if not written:
        return record, None
    try:
        # Whatever the engine put in the path (a retained UID of "..", a kept patient
        # ID), it must name a file inside OUTPUT.
        path = safe_join(_OUTPUT, result.relpath)
    except UnsafePath as exc:
        return Record("quarantined", str(exc), result.size_in), None
    try:
        refs, frame = output_references(result.parts)
        record = record._replace(refs=tuple(refs), frame=frame or "")
    except Exception:  # a header pydicom cannot read back: counted as unchecked
        record = record._replace(refs=None)
    if _DRY:
        # Nothing is staged: the parent tells duplicates apart by path and SHA-256.
        return record, None
    try:
        # Outputs sharing a SOP Instance UID with different content are all released,
        # under <uid>~2.dcm, ... (settled in input order at the end of the run).
        _kind, staged = batch.add_variant(path, result.parts, str(row["sha256"]))
    except FileExistsError:
        return Record("quarantined", TOO_MANY_VARIANTS, size), None
    except (OSError, MemoryError) as exc:
        return _retry(_env_reason(exc)), None
    return record, staged


# Per worker process: each task's temporaries get a name of their own, since a task's
# files wait for the parent to place them while the worker writes the next task's.
_TASKS = itertools.count()


class _TaskBatch(ExclusiveBatch):
    """An ExclusiveBatch whose temporaries no other task of this process can name."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        super().__init__(root, durable=durable)
        self.tag = next(_TASKS)

    def add(self, path: Path, data: bytes | Sequence[bytes]) -> None:
        """Write data under a temporary named for path and this task (.NAME.TAG.PID.tmp)."""
        tagged = path.with_name(f"{path.name}.{self.tag}")
        super().add(tagged, data)
        self.pending[path] = self.pending.pop(tagged)


def process_chunk(items: list[Item]) -> list[Record]:
    """Worker task: clean a few inputs, make their outputs durable together, return records.

    A record's status is "written", "skipped", "quarantined" (a verdict on the file) or
    "retry" (the environment failed: disk full, out of memory; the parent tries again).
    In a durable run the written files are left staged (``Record.staged``): the parent
    flushes them to disk and gives them their final names (:func:`_place_tasks`).
    """
    assert _OUTPUT is not None
    batch = _TaskBatch(_OUTPUT, durable=_DURABLE)
    try:
        done = [_process_one(item, batch) for item in items]
        if _DEFER:
            return [_staged_record(r, staged, batch) for r, staged in done]
        try:
            placed = batch.commit_variants()
        except (OSError, MemoryError) as exc:
            # Not durable, so not done: every file of the batch is tried again (a file
            # already placed is then found identical and kept: see ExclusiveBatch).
            batch.abort()
            why = _env_reason(exc)
            return [_retry(why) if r.status == "written" else r for r, _staged in done]
    except BaseException:
        batch.abort()
        raise
    return [_placed_record(r, staged, placed, _OUTPUT) for r, staged in done]


def _staged_record(r: Record, staged: Path | None, batch: ExclusiveBatch) -> Record:
    """A worker's record of a file it staged, with what the parent needs to place it."""
    if r.status != "written" or staged is None:
        return r
    base = batch.base.get(staged, staged)
    return r._replace(staged=(str(staged), str(batch.pending[staged]), str(base)))


def _placed_record(
    r: Record, staged: Path | None, placed: Mapping[Path, tuple[str, Path]], root: Path
) -> Record:
    """A written record once its file is placed: its final path, or refused (quarantined)."""
    if r.status != "written" or staged is None:
        return r
    kind, final = placed[staged]
    if kind == "refused":
        return Record("quarantined", TOO_MANY_VARIANTS, r.size_in)
    # The name it got: its own, or a variant when another file holds that UID's name
    # ("same": an identical file is there, which the parent counts as a duplicate).
    return r._replace(staged=None).with_path(final.relative_to(root).as_posix())


def _has_staged(records: list[Record]) -> bool:
    """Whether a task's records hold a file the parent has still to place."""
    return any(r.staged is not None for r in records)


def _place_tasks(out: Path, tasks: list[list[Record]]) -> list[list[Record] | str]:
    """Make the staged outputs of finished tasks durable (one flush), then place them.

    Per task, in order: its records with their final paths, or why its files could not
    be flushed or placed (a failure of the environment: its written inputs are tried
    again, and a file already placed is then found identical and kept).
    """
    batches: list[ExclusiveBatch] = []
    for records in tasks:
        batch = ExclusiveBatch(out, durable=False)  # flushed below, all at once
        for r in records:
            if r.staged is not None:
                name, tmp, base = (Path(p) for p in r.staged)
                batch.pending[name] = tmp
                batch.base[name] = base
                batch.sha256[name] = str(cast("tuple[Any, ...]", r.row)[_SHA256])
        batches.append(batch)
    try:
        BatchWriter(out).flush()
    except (OSError, MemoryError) as exc:
        for batch in batches:
            batch.abort()
        return [_env_reason(exc)] * len(tasks)
    out_tasks: list[list[Record] | str] = []
    for records, batch in zip(tasks, batches, strict=True):
        try:
            placed = batch.commit_variants()
        except (OSError, MemoryError) as exc:
            batch.abort()
            out_tasks.append(_env_reason(exc))
            continue
        out_tasks.append(
            [
                _placed_record(r, Path(r.staged[0]) if r.staged else None, placed, out)
                for r in records
            ]
        )
    return out_tasks


def _chunks(
    items: Iterator[tuple[str, Item]], max_items: int, max_bytes: int, workers: int = 1
) -> Iterator[list[tuple[str, Item]]]:
    """Group inputs into worker tasks, bounded by count and by bytes carried.

    The listing is read a little ahead (up to ``workers`` tasks' worth): once it ends,
    each task left takes a worker's share of what remains (at least TAIL_FILES), so that
    the workers run out of work together instead of one finishing a whole task alone.
    """
    ahead: deque[tuple[str, Item]] = deque()
    ahead_bytes = 0
    # One worker has no one to finish with: its tasks keep their size.
    window = max_items * workers if workers > 1 else 0
    # Read ahead one task more each time, up to the window: the first task waits for
    # few more inputs than it holds (a compressed tar spools each one it lists), enough
    # to know that no task of a file or two would follow it.
    target = max_items + (TAIL_FILES if window else 0)
    ended = False
    error: MedveilError | None = None
    while True:
        while not ended and len(ahead) < target and ahead_bytes < max_bytes:
            try:
                key, item = next(items)
            except StopIteration:
                ended = True
            except MedveilError as exc:
                # The input cannot be listed further: what was listed still goes to the
                # workers, then the error is raised.
                ended, error = True, exc
            else:
                ahead.append((key, item))
                ahead_bytes += _carried(item)
        if not ahead:
            break
        size = max_items
        if ended and window:
            size = min(max_items, max(TAIL_FILES, -(-len(ahead) // workers)))
            if len(ahead) - size < TAIL_FILES and len(ahead) <= max_items:
                size = len(ahead)  # no task of a file or two after this one
        chunk: list[tuple[str, Item]] = []
        carried = 0
        while ahead and len(chunk) < size and carried < max_bytes:
            key, item = ahead.popleft()
            chunk.append((key, item))
            carried += _carried(item)
        ahead_bytes -= carried
        target = min(window + max_items, target + max_items)
        yield chunk
    if error is not None:
        raise error


def _carried(item: Item) -> int:
    """The bytes of an input that travel to its worker with the task (its data, if any)."""
    return len(item.data) if item.data is not None else 0


# ---------------------------------------------------------------------------- records
# The one file a dry run writes (under OUTPUT/.medveil): its summary and every verdict.
DRY_RUN_REPORT = "dry-run.json"


class _ListingOrder(Mapping[str, str]):
    """settle_variants' order of this run's outputs, read from the records on demand."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __getitem__(self, relpath: str) -> str:
        found = self.db.execute("SELECT seq FROM listed WHERE path = ?", (relpath,)).fetchone()
        if found is None:
            raise KeyError(relpath)
        return f"{int(found[0]):015d}"

    def __iter__(self) -> Iterator[str]:
        for (path,) in self.db.execute("SELECT path FROM listed"):
            yield str(path)

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM listed").fetchone()[0])


# Parameters per SQL statement of a batch lookup (SQLite's oldest limit is 999).
_SQL_PARAMS = 500


class RunRecords:
    """The run's records under OUTPUT/.medveil: catalog, quarantine list, summary.

    A dry run keeps its catalog in memory (a later real run into the same folder must
    not take its inputs for done) and writes only OUTPUT/.medveil/dry-run.json.
    """

    def __init__(self, output: Path, keyed: Keyed, dry_run: bool = False) -> None:
        self.dir = output / RECORDS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keyed = keyed
        self.dry_run = dry_run
        # Made in one thread and used in another (see _open_records), never by two at once.
        if dry_run:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            self.db = sqlite3.connect(
                self.dir / "catalog.sqlite", timeout=60, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
        # The schema in one transaction: each statement on its own is a commit, and each
        # commit a flush of the journal to disk (a dozen of them cost a run ~30 ms).
        self.db.execute("BEGIN")
        cols = ", ".join(f"{n} {t}" for n, t in CATALOG_COLUMNS)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS instances ({cols}, source_key TEXT)")
        # Each record first deletes the input's earlier row (a resumed run may redo it):
        # without an index that is a scan of the whole catalog per file, quadratic in all.
        self.db.execute("CREATE INDEX IF NOT EXISTS instances_source ON instances (source_key)")
        # Which input owns an output path: asked once per written file (duplicates).
        self.db.execute("CREATE INDEX IF NOT EXISTS instances_path ON instances (path)")
        # The UIDs each released file refers to, and its Frame of Reference UID: the
        # unresolved references are counted from them at the end (resumed runs included).
        self.db.execute("CREATE TABLE IF NOT EXISTS refs (source_key TEXT, uid TEXT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS refs_source ON refs (source_key)")
        self.db.execute("CREATE TABLE IF NOT EXISTS frames (source_key TEXT, uid TEXT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS frames_source ON frames (source_key)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS inputs"
            " (source_key TEXT PRIMARY KEY, status TEXT, reason TEXT, size_in INTEGER)"
        )
        # This run's written paths in the order their inputs were listed (a number, never
        # the name): outputs sharing a SOP Instance UID are put in that order at the end.
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS listed (path TEXT PRIMARY KEY, seq INT)")
        # Output paths a QA reviewer rejected (moved to quarantine by a --resume).
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS rejections (path TEXT PRIMARY KEY, source_key TEXT)"
        )
        self.db.commit()
        self._last_commit = time.monotonic()
        # What the pixel cleaner did per written file (no PHI), for `medveil qa`.
        pixel_log = os.devnull if dry_run else self.dir / "pixels.jsonl"
        self.pixel_log = open(pixel_log, "a", encoding="utf-8")

    def done_keys(self) -> set[str]:
        """Keys of inputs finished by an earlier (interrupted) run."""
        return {k for (k,) in self.db.execute("SELECT source_key FROM inputs")}

    def owner(self, relpath: str) -> str | None:
        """The input key whose catalog row holds this output path, if any."""
        found = self.db.execute(
            "SELECT source_key FROM instances WHERE path = ? LIMIT 1", (relpath,)
        ).fetchone()
        return None if found is None else str(found[0])

    def owners(self, relpaths: list[str]) -> dict[str, str]:
        """{output path: the input key whose catalog row holds it} for those that have one."""
        found: dict[str, str] = {}
        for at in range(0, len(relpaths), _SQL_PARAMS):
            part = relpaths[at : at + _SQL_PARAMS]
            marks = ", ".join("?" * len(part))
            for path, key in self.db.execute(
                f"SELECT path, source_key FROM instances WHERE path IN ({marks})", part
            ):
                found.setdefault(str(path), str(key))
        return found

    def note_listed(self, listed: list[tuple[str, int]]) -> None:
        """Remember where this run listed the inputs of written output paths (path, seq)."""
        self.db.executemany(
            "INSERT INTO listed VALUES (?, ?) ON CONFLICT(path) DO UPDATE SET seq = "
            "MIN(seq, excluded.seq)",
            listed,
        )

    def listing_order(self) -> Mapping[str, str]:
        """This run's written paths -> a key that sorts as their inputs were listed."""
        return _ListingOrder(self.db)

    def has_path(self, relpath: str) -> bool:
        """Whether a catalog row holds this output path."""
        return self.owner(relpath) is not None

    def released(self) -> int:
        """How many outputs the catalog holds."""
        (n,) = self.db.execute("SELECT COUNT(*) FROM instances").fetchone()
        return int(n)

    def paths(self) -> Iterator[str]:
        """Every released output path, in catalog order."""
        for (path,) in self.db.execute("SELECT path FROM instances ORDER BY path"):
            yield str(path)

    def reason_of(self, key: str) -> str:
        """The recorded reason of an input ('' when it has none)."""
        found = self.db.execute("SELECT reason FROM inputs WHERE source_key = ?", (key,)).fetchone()
        return "" if found is None or found[0] is None else str(found[0])

    def unrelease(self, key: str, relpath: str, reason: str) -> None:
        """Turn a released input into a quarantined one (its catalog rows go), committed."""
        for table in ("instances", "refs", "frames"):
            self.db.execute(f"DELETE FROM {table} WHERE source_key = ?", (key,))
        self.db.execute(
            "UPDATE inputs SET status = 'quarantined', reason = ? WHERE source_key = ?",
            (reason, key),
        )
        self.db.execute("INSERT OR REPLACE INTO rejections VALUES (?, ?)", (relpath, key))
        self.db.commit()

    def rejected_paths(self) -> set[str]:
        """Every output path a QA rejection moved to quarantine."""
        return {str(p) for (p,) in self.db.execute("SELECT path FROM rejections")}

    def was_rejected(self, relpath: str) -> bool:
        """Whether a QA rejection already moved this output path to quarantine."""
        found = self.db.execute(
            "SELECT 1 FROM rejections WHERE path = ? LIMIT 1", (relpath,)
        ).fetchone()
        return found is not None

    def count(self, status: str) -> int:
        """How many inputs (this run and earlier ones) have this status."""
        (n,) = self.db.execute("SELECT COUNT(*) FROM inputs WHERE status = ?", (status,)).fetchone()
        return int(n)

    def unresolved_references(self) -> int:
        """References of released files to a UID no released file has (as instance,
        series, study or frame of reference)."""
        (n,) = self.db.execute(
            "SELECT COUNT(*) FROM refs WHERE uid NOT IN ("
            " SELECT sop_uid FROM instances UNION SELECT series_uid FROM instances"
            " UNION SELECT study_uid FROM instances UNION SELECT uid FROM frames)"
        ).fetchone()
        return int(n)

    def record(self, batch: list[tuple[str, Record]]) -> None:
        """Store the outcomes of a batch of inputs; commits now and then (always at close).

        One statement per table for the whole batch: a worker task's inputs are stored
        together, once their outputs are durable (and their identities in the vault).
        """
        keys = [key for key, _r in batch]
        if len(set(keys)) < len(keys):
            # One input twice in a batch (an archive may hold a name twice): each in turn,
            # the later one replacing the earlier one's rows, as they come.
            for one in batch:
                self.record([one])
            return
        redone = self._recorded(keys)
        if redone:
            # A resumed run may redo an input: its earlier rows go first.
            for table in ("instances", "refs", "frames"):
                self.db.executemany(
                    f"DELETE FROM {table} WHERE source_key = ?", [(k,) for k in redone]
                )
        written = [(key, r) for key, r in batch if r.status == "written"]
        if written:
            marks = ", ".join("?" * (len(_COLUMNS) + 1))
            self.db.executemany(
                f"INSERT INTO instances ({', '.join(_COLUMNS)}, source_key) VALUES ({marks})",
                [(*cast("tuple[Any, ...]", r.row), key) for key, r in written],
            )
            refs = [(key, uid) for key, r in written if r.refs for uid in r.refs]
            if refs:
                self.db.executemany("INSERT INTO refs VALUES (?, ?)", refs)
            frames = [(key, r.frame) for key, r in written if r.frame]
            if frames:
                self.db.executemany("INSERT INTO frames VALUES (?, ?)", frames)
        pixels = "".join(r.pixels + "\n" for _key, r in batch if r.pixels)
        if pixels:
            self.pixel_log.write(pixels)
        self.db.executemany(
            "INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)",
            [(key, r.status, r.reason, r.size_in) for key, r in batch],
        )
        if time.monotonic() - self._last_commit > 1.0:
            self.db.commit()
            self._last_commit = time.monotonic()

    def _recorded(self, keys: list[str]) -> list[str]:
        """Those of keys that have a record already (of an earlier run, or of this one)."""
        found: list[str] = []
        for at in range(0, len(keys), _SQL_PARAMS):
            part = keys[at : at + _SQL_PARAMS]
            marks = ", ".join("?" * len(part))
            found += [
                str(k)
                for (k,) in self.db.execute(
                    f"SELECT source_key FROM inputs WHERE source_key IN ({marks})", part
                )
            ]
        return found

    def finish(self, summary: RunSummary) -> None:
        """Commit the catalog and write the quarantine list and the summary (no PHI)."""
        self.db.commit()
        summary.unresolved_references = self.unresolved_references()
        self.pixel_log.close()
        if self.dry_run:
            self._write_dry_run_report(summary)
            self.db.close()
            return
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

    def close(self) -> None:
        """Close the records without writing the quarantine list or the summary."""
        self.pixel_log.close()
        self.db.close()

    def _write_dry_run_report(self, summary: RunSummary) -> None:
        """OUTPUT/.medveil/dry-run.json: the summary and each input's verdict (no PHI).

        Inputs are named by their keyed token, as in a real run's records; a file that
        would be released has the output path it would get.
        """
        verdicts = [
            {"input": key, "status": status, "reason": reason, "path": path}
            for key, status, reason, path in self.db.execute(
                "SELECT i.source_key, i.status, i.reason, c.path FROM inputs i"
                " LEFT JOIN instances c ON c.source_key = i.source_key ORDER BY i.source_key"
            )
        ]
        tmp = self.dir / f"{DRY_RUN_REPORT}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"summary": summary.to_json(), "inputs": verdicts}, f, indent=1)
        os.replace(tmp, self.dir / DRY_RUN_REPORT)


def remove_partial_files(output: Path) -> None:
    """Remove the hidden temporaries a killed worker or run left (never under a final name)."""
    for root, _dirs, files in os.walk(output):
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(root, f))
                except FileNotFoundError:
                    pass


def _remove_unrecorded_outputs(output: Path, records: RunRecords) -> None:
    """Remove the outputs (patient/study/series/instance.dcm) no catalog row holds."""
    for root, dirs, files in os.walk(output):
        rel_root = os.path.relpath(root, output)
        depth = 0 if rel_root == "." else rel_root.count(os.sep) + 1
        if depth == 0:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        if depth != 3:
            continue
        for f in files:
            if f.endswith(".dcm") and not f.startswith("."):
                rel = f"{rel_root.replace(os.sep, '/')}/{f}"
                if not records.has_path(rel):
                    try:
                        os.unlink(os.path.join(root, f))
                    except FileNotFoundError:
                        pass


def _apply_qa_rejections(
    output: Path,
    records: RunRecords,
    on_problem: Callable[[str, str], None] | None = None,
) -> dict[str, str]:
    """Quarantine the released files a QA reviewer rejected; {input key: output path}.

    Each rejected file is unlinked from the release tree (and from the DICOMDIR's file
    set, whose files are hard links to released ones) before its catalog row turns into
    a quarantine record, so a run killed in between leaves a catalog row without a file,
    and the next --resume finishes the move. A sign-off naming a path that is not a
    released file of this output (moved already, or mistyped) is reported, not fatal.
    """
    try:
        from medveil.pixels.qa import (
            IMAGE_MARKER,
            SignoffError,
            known_paths,
            parse_signoff,
            read_signoff,
        )
    except ImportError as exc:  # a partial install: a sign-off is never silently ignored
        if (output / "qa-signoff.json").exists():
            raise MedveilError(f"{output}: cannot read qa-signoff.json ({exc})") from None
        return {}
    try:
        signoff = read_signoff(output)
    except SignoffError:
        # The sign-off may name files an earlier --resume moved to quarantine (they left
        # the catalog): those paths are known too. Anything else is still refused.
        done_before = records.rejected_paths()
        if not done_before:
            raise
        path = output / "qa-signoff.json"
        signoff = parse_signoff(
            path.read_bytes(), known_paths(output) | done_before, source=str(path)
        )
    if signoff is None or not signoff.rejected:
        return {}
    reason = f"rejected in QA review by {signoff.reviewer} at {signoff.time}"
    chosen: list[tuple[str, str, Path]] = []
    for relpath in sorted(signoff.rejected):
        key = records.owner(relpath)
        if key is None:
            if not records.was_rejected(relpath) and on_problem:
                on_problem(relpath, "qa-signoff.json rejects it, but it is not a released file")
            continue
        try:
            path = safe_join(output, relpath)
        except UnsafePath as exc:
            if on_problem:
                on_problem(relpath, f"qa-signoff.json names a path outside the output: {exc}")
            continue
        chosen.append((key, relpath, path))
    # The DICOMDIR's links to the rejected files first (one walk for all), then the files,
    # then each row: a stop in between leaves rows whose files are gone, moved next time.
    _unlink_links_to([p for _k, _r, p in chosen], output / DICOMDIR_FOLDER)
    moved: dict[str, str] = {}
    for key, relpath, path in chosen:
        path.unlink(missing_ok=True)
        records.unrelease(key, relpath, reason)
        moved[key] = relpath
    if moved:
        # The QA page's full-resolution renderings of the rejected images go too (only a
        # folder medveil qa marked as its own); the next page is built without them.
        img = output / RECORDS / "qa" / "img"
        if not img.is_symlink() and (img / IMAGE_MARKER).is_file():
            shutil.rmtree(img)
    return moved


def _unlink_links_to(paths: list[Path], linked_under: Path) -> None:
    """Remove the hard links to any of paths found under linked_under (a DICOMDIR's set)."""
    targets: set[tuple[int, int]] = set()
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_nlink > 1:
            targets.add((st.st_dev, st.st_ino))
    if not targets or not linked_under.is_dir():
        return
    for root, _dirs, files in os.walk(linked_under):
        for f in files:
            other = Path(root) / f
            try:
                st = other.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in targets:
                other.unlink(missing_ok=True)


def lock_output(output: Path) -> int:
    """Take the run's exclusive lock on OUTPUT (a descriptor to keep open), or fail at once.

    Two runs into one OUTPUT would overwrite each other's files, and a --resume would
    delete a live run's temporaries. The lock is an flock on OUTPUT/.medveil/lock: the
    kernel drops it when the run (and its workers, which inherit it) are gone, so a
    killed run never leaves a stale lock.
    """
    records = output / RECORDS
    records.mkdir(parents=True, exist_ok=True)
    fd = os.open(records / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MedveilError(
            f"{output}: another medveil run is using this output folder; wait for it to "
            "finish (or stop it) before running again, with --resume to continue it"
        ) from None
    return fd


def default_max_file_size(workers: int) -> int:
    """The per-file size limit when none is given: a share of available memory per worker.

    A worker holds about twice its file at peak (the read buffer and the output), so
    four times the limit per worker keeps every worker's peak within available memory.
    """
    available = _available_memory()
    return int(min(4 << 30, max(64 << 20, available // (4 * max(workers, 1)))))


def _available_memory() -> int:
    """Bytes of memory available to new work (MemAvailable), or all physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


# An input whose environment failure recurs this many times stops the run (exit 2).
MAX_TRIES = 4
# Pause before a retry, by attempt: a worker that died is retried at once; a full disk or
# exhausted memory gets a moment to recover.
_BACKOFF = (0.0, 0.0, 0.5, 1.0)


@dataclass(order=True)
class _Retry:
    ready: float
    seq: int
    key: str = field(compare=False)
    item: Item = field(compare=False)
    tries: int = field(compare=False)


class _SignalStop:
    """While active, SIGTERM in the main thread stops the run as Ctrl-C does (summary too).

    Either signal is held off while a task's outcomes are recorded and counted
    (:meth:`held`), so that the summary of an interrupted run counts exactly the inputs
    its records hold as done.
    """

    def __init__(self) -> None:
        self.old: dict[int, Any] = {}
        self.holding = 0
        self.pending = False

    def __enter__(self) -> _SignalStop:
        if threading.current_thread() is threading.main_thread():
            self.old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._stop)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.old[signal.SIGINT] = signal.signal(signal.SIGINT, self._stop)
        return self

    def _stop(self, _signum: int, _frame: object) -> None:
        if self.holding:
            self.pending = True  # raised when the section ends (see held)
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A section that SIGTERM and Ctrl-C do not cut short: they stop the run after it."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if not self.holding and self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.old.items():
            signal.signal(signum, handler)
        self.old.clear()


def check_paths(src: Path, out: Path, resume: bool) -> None:
    """Refuse an input and output that overlap, an output that is a file or not empty."""
    if not src.exists():  # before the output folder and its records are made
        raise MedveilError(f"{src}: input not found (expected a folder, .zip or .tar archive)")
    if out.exists() and not out.is_dir():
        raise MedveilError(f"{out}: the output exists and is not a folder")
    real_src, real_out = src.resolve(), out.resolve()
    if real_out == real_src or real_src in real_out.parents:
        raise MedveilError(f"{out}: the output must not be the input or inside it")
    if real_out in real_src.parents:
        # The release folder would end up holding the identified originals.
        raise MedveilError(f"{src}: the input must not be inside the output folder")
    if out.exists() and not resume and any(p.name != RECORDS for p in out.iterdir()):
        raise MedveilError(f"{out}: output folder is not empty (use --resume to continue a run)")


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
    on_problem: Callable[[str, str], None] | None = None,
    vault: Vault | None = None,
    embed_originals: str | os.PathLike[str] | None = None,
    durable: bool = True,
    max_file_size: int | None = None,
    file_timeout: float = 60.0,
    dicomdir: bool = False,
    dry_run: bool = False,
    on_verdict: Callable[[str, str, str], None] | None = None,
) -> RunSummary:
    """De-identify every DICOM file under input into output; returns the run's summary.

    ``durable=False`` skips the flush to disk (renames stay atomic: a killed run still
    leaves no partial file, but a power cut can lose recent ones).
    ``progress`` is called after every file with the running summary; ``on_quarantine``
    with (input name, reason) for each quarantined file, ``on_problem`` likewise for a
    folder that cannot be listed or a failure that stops the run (names may hold PHI:
    show them, do not store them). ``vault`` (a :class:`medveil.vault.Vault`, owned by
    the caller) receives every patient, study and series written; ``embed_originals``
    (an X.509 certificate file) seals each file's replaced originals into it (PS3.15
    E.1.1). ``max_file_size`` (bytes; default from available memory and workers) and
    ``file_timeout`` (seconds, plus one per 10 MB; 0 for none) bound each file.

    Two inputs with one output path (the same SOP Instance UID): identical outputs are
    written once (the second counts as ``duplicates``), a different second one is
    quarantined. A DICOMDIR input is not released (``replaced``); when the input had one,
    or with ``dicomdir=True``, a new DICOMDIR is written under OUTPUT/dicomdir/.

    Failures of the environment (a worker killed, disk full, out of memory) are retried,
    one file at a time, up to MAX_TRIES; when one persists the run stops: ``failed``
    counts the inputs left undone (exit code 2) and ``resume=True`` does them later.

    ``dry_run=True`` runs the whole pipeline (strict check, engine, post-check, duplicate
    UIDs, references) but writes no DICOM file: the summary counts what a real run would
    release (``written``) and quarantine, and the only file written is
    OUTPUT/.medveil/dry-run.json (the summary and each input's verdict, inputs named by
    keyed token). It cannot be combined with ``resume`` or a ``vault``.
    ``on_verdict`` is called with (input name, status, detail) for every input: status
    "written" (detail: the output path), "quarantined", "skipped", "excluded",
    "duplicate" or "replaced" (detail: the reason or the [filter] rule).

    With ``resume=True``, a QA reviewer's rejections (OUTPUT/qa-signoff.json, written by
    ``medveil qa``) are applied first: each rejected released file leaves the release
    tree (and any DICOMDIR) and its catalog row, and is quarantined with the reason
    "rejected in QA review by <reviewer> at <time>" (counted in ``rejected`` and
    ``quarantined``).
    """
    policy = policy or Policy.default()
    out = Path(output)
    src = Path(input)
    if dry_run and resume:
        raise MedveilError("--dry-run previews a new run: it cannot be combined with --resume")
    if dry_run and vault is not None:
        raise MedveilError("--dry-run writes nothing: it cannot record into a vault")
    check_paths(src, out, resume)
    if vault is not None and vault.uses_key(secret):
        raise MedveilError("the vault key must differ from the pseudonym secret")
    if embed_originals:
        from medveil.crypto.vault.embed import OriginalsEmbedder

        OriginalsEmbedder(embed_originals)  # a bad certificate fails before any work
    # A policy built in code skips the load's checks: refused here, it is one clear
    # PolicyError; refused in each worker, it was "a worker process died", retried.
    policy.compile()
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_output(out)
    try:
        return _run(
            src,
            out,
            policy,
            secret,
            workers or os.cpu_count() or 1,
            resume,
            progress,
            on_quarantine,
            on_problem,
            vault,
            str(embed_originals) if embed_originals else None,
            durable,
            max_file_size,
            file_timeout,
            dicomdir,
            dry_run,
            on_verdict,
        )
    finally:
        os.close(lock)


def _run(
    src: Path,
    out: Path,
    policy: Policy,
    secret: bytes,
    workers: int,
    resume: bool,
    progress: Callable[[RunSummary], None] | None,
    on_quarantine: Callable[[str, str], None] | None,
    on_problem: Callable[[str, str], None] | None,
    vault: Vault | None,
    embed_originals: str | None,
    durable: bool,
    max_file_size: int | None,
    file_timeout: float,
    dicomdir: bool = False,
    dry_run: bool = False,
    on_verdict: Callable[[str, str, str], None] | None = None,
) -> RunSummary:
    """deidentify_archive once its checks pass and its lock is held."""
    keyed = Keyed(secret)
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    # The records are opened (their disk flushes) while the engine is built for the
    # workers to inherit: both are done before any worker starts.
    opening = _Background(lambda: RunRecords(out, keyed, dry_run=dry_run))
    if ctx.get_start_method() == "fork":
        # Measured on 600 CT slices: the same CPU with one worker, about 0.1 s less with
        # two (one build instead of two). gc.freeze() before the fork saved nothing.
        _prebuild_engine(policy, secret)
    records = opening.result()
    summary = RunSummary(dry_run=dry_run)
    rejected: dict[str, str] = {}
    if resume:
        # Before anything else: the reviewer's rejections leave the release tree. A bad
        # sign-off stops the run here, with nothing moved.
        try:
            rejected = _apply_qa_rejections(out, records, on_problem)
        except BaseException:
            records.close()
            raise
    done = records.done_keys() if resume else set()
    if resume:
        remove_partial_files(out)
        # Outputs placed by a killed run whose records it never wrote: redone now (kept,
        # a redo would take them for another input's duplicates).
        _remove_unrecorded_outputs(out, records)
    max_size = max_file_size if max_file_size is not None else default_max_file_size(workers)
    t0 = time.perf_counter()
    # Each rejected file is a quarantined input of this run (not a resumed one).
    for key, relpath in sorted(rejected.items()):
        summary.rejected += 1
        summary.quarantined += 1
        summary.files_in += 1
        if on_quarantine:
            on_quarantine(relpath, records.reason_of(key))
        if on_verdict:
            on_verdict(relpath, "quarantined", records.reason_of(key))
    # In a dry run, the output path and SHA-256 of each file that would be released: a
    # second input with the same path is a duplicate, or quarantined, as on disk.
    would_write: dict[str, list[str]] = {}
    # Where each input in flight was listed (popped when it is accounted for).
    listed: dict[str, int] = {}
    listing = itertools.count()
    initargs = (
        policy,
        secret,
        str(out),
        vault is not None,
        embed_originals,
        durable,
        max_size,
        file_timeout,
        os.getpid(),
        dry_run,
    )

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=initargs
        )

    pool = new_pool()
    pools_broken = 0
    # Per task: the pool it went to, its (key, item, tries) entries, whether it ran alone.
    in_flight: dict[
        cf.Future[list[Record]],
        tuple[cf.ProcessPoolExecutor, list[tuple[str, Item, int]], bool],
    ] = {}
    retries: list[_Retry] = []
    # Inputs that were in flight when a worker was ended by the CPU backstop: one of them
    # spins in native code. Each is run alone, so the one that does it again is known.
    suspects: list[tuple[str, Item, int]] = []
    cpu_killed: dict[cf.ProcessPoolExecutor, bool] = {}
    seq = 0
    limit = workers * 2
    stop = False
    # SIGTERM stops the run as Ctrl-C does; neither cuts a task's accounting short.
    signals = _SignalStop()

    def fail(key: str, name: str, reason: str) -> None:
        """An input whose environment failure persisted: the run stops; --resume redoes it."""
        nonlocal stop
        summary.failed += 1
        if not stop:
            summary.failure = reason
            if on_problem:
                on_problem(name, f"{reason}; stopping (run again with --resume)")
        stop = True

    def retry(key: str, item: Item, tries: int, reason: str, suspect: bool = False) -> None:
        nonlocal seq
        summary.retried += 1
        summary.retry_reasons[reason] += 1
        if tries + 1 >= MAX_TRIES or stop:
            fail(key, item.name, reason)
            return
        if suspect:
            suspects.append((key, item, tries + 1))
            return
        seq += 1
        wait = _BACKOFF[min(tries + 1, len(_BACKOFF) - 1)]
        heapq.heappush(retries, _Retry(time.monotonic() + wait, seq, key, item, tries + 1))

    def account(key: str, name: str, result: Record) -> None:
        account_batch([(key, name, result)])

    def account_batch(batch: list[tuple[str, str, Record]]) -> None:
        """Record a worker task's outcomes together, then count and report each in turn."""
        if dry_run:
            batch = [(key, name, would_be(r)) for key, name, r in batch]
        paths = [r.path for _k, _n, r in batch if r.status == "written"]
        owners = records.owners(paths) if paths else {}
        decided: list[tuple[str, str, Record]] = []
        # Every output path this batch's inputs lead to, duplicates included: a shared
        # file sorts among its UID's variants by the first input listed that gave it,
        # whichever worker wrote it first (else the variant names depend on the workers).
        led_to: list[tuple[str, str]] = []
        for key, name, r in batch:
            if r.status == "written":
                led_to.append((key, r.path))
                owner = owners.setdefault(r.path, key)
                if owner != key:
                    # Its file is on disk already, written for another input (this run or
                    # an earlier one), byte for byte: the one file, the one catalog row.
                    r = Record("duplicate", IDENTICAL, r.size_in)
            decided.append((key, name, r))

        def unrecorded(exc: BaseException) -> None:
            # The records (or the vault) cannot be written: a disk full, most likely. The
            # inputs stay unrecorded, so --resume does them again.
            reason = f"cannot write the run records: {_env_reason(exc)}"
            if isinstance(exc, sqlite3.Error):
                reason = f"cannot write the run records ({type(exc).__name__})"
            for key, name, _r in decided:
                listed.pop(key, None)
                fail(key, name, reason)

        if vault is not None:
            identities = [r.identity for _k, _n, r in decided if r.identity]
            try:
                if identities:
                    # Committed before the inputs are recorded as done, so a resumed run
                    # never skips a file whose identity the vault lacks.
                    for identity in identities:
                        vault.add(identity)
                    vault.flush()
            except (sqlite3.Error, OSError, MemoryError) as exc:
                unrecorded(exc)
                return
        # Recorded, then counted, without a stop between: an interrupted run's summary
        # counts exactly the inputs its records hold as done (a resumed run skips them).
        with signals.held():
            try:
                records.record([(key, r) for key, _n, r in decided])
                seqs = {key: listed.pop(key, None) for key, _n, _r in decided}
                notes = [(path, seq) for key, path in led_to if (seq := seqs[key]) is not None]
                if notes:
                    records.note_listed(notes)
            except (sqlite3.Error, OSError, MemoryError) as exc:
                unrecorded(exc)
                return
            for _key, name, r in decided:
                count(name, r)

    def would_be(r: Record) -> Record:
        """A dry run's record as place_variant would leave it on disk: identical content is
        one file (a duplicate), different content the next variant name."""
        if r.status != "written":
            return r
        assert r.row is not None
        shas = would_write.setdefault(r.path, [])
        sha = str(r.row[_SHA256])
        if sha in shas:
            return Record("duplicate", IDENTICAL, r.size_in)
        shas.append(sha)
        return r.with_path(variant_path(Path(r.path), len(shas)).as_posix())

    def count(name: str, r: Record) -> None:
        """Add one recorded input to the summary and tell the callbacks."""
        status = r.status
        summary.bytes_in += r.size_in
        if status == "written":
            summary.written += 1
            summary.bytes_out += int(cast("tuple[Any, ...]", r.row)[_SIZE])
            if r.actions:
                summary.actions.update(r.actions)
            summary.engines[r.engine or "dataset"] += 1
            if r.declined:
                summary.declined[r.declined] += 1
            if r.native_declined:
                summary.native_declined[r.native_declined] += 1
            if r.refs is None:
                summary.references_unchecked += 1
        elif status == "skipped":
            summary.skipped += 1
            summary.skipped_reasons[r.reason or "not DICOM"] += 1
        elif status == "excluded":
            summary.excluded[r.reason or "filter"] += 1
        elif status == "duplicate":
            summary.duplicates += 1
        elif status == "replaced":
            summary.replaced += 1
        else:
            summary.quarantined += 1
            if on_quarantine:
                on_quarantine(name, r.reason)
        if on_verdict:
            on_verdict(name, status, r.path if status == "written" else r.reason)
        summary.files_in += 1
        if progress:
            summary.seconds = time.perf_counter() - t0
            progress(summary)

    def replace_pool() -> None:
        nonlocal pool, pools_broken
        pools_broken += 1
        # Before shutdown forgets them: did the CPU backstop end one of its workers?
        cpu_killed[pool] = _ended_by_cpu_limit(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        pool = new_pool()

    def collect(timeout: float | None = None) -> None:
        finished, _ = cf.wait(in_flight, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        # The tasks that returned records, in the order they finished.
        returned: list[tuple[list[tuple[str, Item, int]], list[Record]]] = []
        for fut in finished:
            source, entries, alone = in_flight.pop(fut)
            if fut.cancelled():
                # Never started (the executor hands tasks to its queue early, so this is
                # rare): left unrecorded, so a resumed run does these inputs.
                continue
            try:
                results = fut.result()
            except Exception as exc:
                # A worker died (killed, out of memory) or the task failed outside any one
                # file: every file of the task is tried again, one at a time.
                broken = isinstance(exc, cf.process.BrokenProcessPool)
                reason = "a worker process died" if broken else _env_reason(exc)
                if broken and source is pool and _is_broken(pool):
                    replace_pool()
                spun = broken and cpu_killed.get(source, False)
                if spun and alone:
                    # Run alone, it kept its worker busy in native code past the limit.
                    (key, item, _tries) = entries[0]
                    cpu = 2 * _time_limit_of(item) + CPU_GRACE
                    why = f"timed out: its worker was ended after {cpu:.1f} s of CPU"
                    why += " (--file-timeout)"
                    account(key, item.name, Record("quarantined", why))
                    continue
                for key, item, tries in entries:
                    retry(key, item, tries, reason, suspect=spun)
                continue
            returned.append((entries, results))
        staged = [i for i, (_e, results) in enumerate(returned) if _has_staged(results)]
        if staged:
            # A durable run's outputs, staged by the workers: flushed once for all these
            # tasks, then placed, before any is recorded.
            placed = _place_tasks(out, [returned[i][1] for i in staged])
            for i, task in zip(staged, placed, strict=True):
                entries, results = returned[i]
                if isinstance(task, str):
                    task = [_retry(task) if r.status == "written" else r for r in results]
                returned[i] = (entries, task)
        for entries, results in returned:
            done: list[tuple[str, str, Record]] = []
            for (key, item, tries), result in zip(entries, results, strict=True):
                if result.status == "retry":
                    retry(key, item, tries, result.reason)
                else:
                    done.append((key, item.name, result))
            if done:
                account_batch(done)

    def pending() -> Iterator[tuple[str, Item]]:
        # Spooled tar.gz members live under OUTPUT: same file system, and a --resume
        # removes what a killed run left (remove_partial_files).
        for item in iter_inputs(src, max_size, spool=out / RECORDS):
            if item.verdict is not None and item.verdict[0] == "unreadable":
                summary.unreadable += 1  # not recorded: a resumed run lists it again
                if on_problem:
                    on_problem(item.name, item.verdict[1])
                continue
            key = keyed.path_token(item.name)
            if key in done:
                # A rejected input is accounted for above, as quarantined by this run.
                summary.resumed += key not in rejected
                continue
            if item.verdict is not None:
                status, why = item.verdict
                account(key, item.name, Record(status, why))
                continue
            listed[key] = next(listing)
            yield key, item

    def submit(entries: list[tuple[str, Item, int]], alone: bool = False) -> None:
        items = [item for _key, item, _tries in entries]
        try:
            fut = pool.submit(process_chunk, items)
        except cf.process.BrokenProcessPool:
            # A worker died since the last collect: its tasks fail on their own.
            replace_pool()
            fut = pool.submit(process_chunk, items)
        in_flight[fut] = (pool, entries, alone)

    def _time_limit_of(item: Item) -> float:
        size = item.size if item.size >= 0 else len(item.data or b"")
        if item.path is not None and item.size < 0 and item.member is None:
            try:
                size = os.stat(item.path).st_size
            except OSError:
                size = 0
        return file_timeout + size / TIMEOUT_BYTES_PER_SECOND if file_timeout > 0 else 0.0

    listing_error: MedveilError | None = None
    counted = threading.Event()  # set to stop the counting thread early
    if progress is not None and _cheap_to_list(src):
        threading.Thread(
            target=_count_inputs,
            args=(src, max_size, done, keyed, summary, counted, len(rejected)),
            name="medveil-count",
            daemon=True,
        ).start()
    chunks = _chunks(pending(), max_items=CHUNK_FILES, max_bytes=CHUNK_BYTES, workers=workers)
    exhausted = False
    try:
        with signals:
            try:
                while not stop:
                    now = time.monotonic()
                    if suspects:
                        # One at a time, with nothing else running beside it.
                        if in_flight:
                            collect()
                            continue
                        submit([suspects.pop(0)], alone=True)
                        while in_flight:
                            collect()
                        continue
                    if retries and retries[0].ready <= now:
                        r = heapq.heappop(retries)
                        submit([(r.key, r.item, r.tries)])
                    elif not exhausted:
                        try:
                            chunk = next(chunks, None)
                        except MedveilError as exc:
                            # A damaged archive: the files listed before the damage are
                            # finished and recorded, then the run reports the error.
                            listing_error = exc
                            summary.interrupted = True  # the input was not covered
                            chunk = None
                        if chunk is None:
                            exhausted = True
                            continue
                        submit([(key, item, 0) for key, item in chunk])
                    elif in_flight:
                        collect(retries[0].ready - now if retries else None)
                        continue
                    elif retries:
                        time.sleep(max(0.0, retries[0].ready - now))
                        continue
                    else:
                        break
                    while len(in_flight) >= limit and not stop:
                        collect()
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
        counted.set()
        # Inputs still waiting for a retry when the run stopped are undone, like failed ones.
        summary.failed += len(retries) + len(suspects)
        # With every task accounted for, the workers are idle: they end while the records
        # are finished (joined below). Otherwise a task may still be running: it ends
        # first, and a killed worker's temporaries are removed once every worker is gone.
        ending = None if in_flight or pools_broken else _manager_of(pool)
        pool.shutdown(wait=ending is None, cancel_futures=True)
        try:
            if pools_broken or (
                durable and not dry_run and (summary.interrupted or summary.failed or stop)
            ):
                # A worker killed mid-task, or staged outputs the parent did not place (an
                # interrupted or stopped durable run): their temporaries go now.
                remove_partial_files(out)
            if exhausted and not (summary.interrupted or summary.failed):
                summary.total = summary.files_in  # every input of this run is accounted for
            summary.files_in += summary.resumed
            if not dry_run:
                try:
                    # Outputs sharing a SOP Instance UID: <uid>.dcm, <uid>~2.dcm, ... in the
                    # order their inputs were listed, whichever worker placed them first.
                    settle_variants(out, records.db, records.listing_order())
                except (OSError, sqlite3.Error) as exc:
                    summary.failure = summary.failure or f"cannot name shared-UID outputs: {exc}"
            # A resumed run rewrites an existing DICOMDIR: QA rejections (this run's or those of
            # a resume that was stopped) may have taken files out of its file set.
            had_dicomdir = (out / DICOMDIR_FOLDER / "DICOMDIR").is_file()
            try:
                if (
                    (dicomdir or records.count("replaced") or (resume and had_dicomdir))
                    and not (summary.interrupted or summary.failed)
                    and not dry_run
                ):
                    if records.released():
                        summary.dicomdir, summary.dicomdir_left_out = write_dicomdir(
                            out, records.paths()
                        )
                    if not summary.dicomdir and had_dicomdir:
                        # Nothing left to list: no DICOMDIR rather than one naming gone files.
                        shutil.rmtree(out / DICOMDIR_FOLDER)
            except (OSError, ValueError, sqlite3.Error) as exc:
                summary.failure = (
                    summary.failure or f"cannot write the DICOMDIR: {_env_reason(exc)}"
                )
                if on_problem:
                    on_problem("DICOMDIR", f"cannot write the DICOMDIR: {_env_reason(exc)}")
            summary.seconds = time.perf_counter() - t0
            try:
                records.finish(summary)
            except (sqlite3.Error, OSError) as exc:
                if listing_error is None:
                    summary.failed = summary.failed or 1
                    listing_error = MedveilError(
                        f"{out}: cannot write the run records ({type(exc).__name__}); free "
                        "space and run again with --resume"
                    )
        finally:
            if ending is not None:
                ending.join()  # the pool's own thread, which joins its workers
    if listing_error is not None:
        raise listing_error
    return summary


def _cheap_to_list(src: Path) -> bool:
    """Whether the inputs can be listed a second time cheaply (not a compressed tar).

    A folder, a zip (its central directory) and a plain tar (its headers) are; a
    compressed tar would be decompressed twice, so its total stays unknown.
    """
    try:
        if src.is_dir() or not src.is_file():
            return src.is_dir()
        with open(src, "rb") as f:
            magic = f.read(6)
    except OSError:
        return False
    return not (magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00")


def _count_inputs(
    src: Path,
    max_size: int,
    done: set[str],
    keyed: Keyed,
    summary: RunSummary,
    stop: threading.Event,
    extra: int = 0,
) -> None:
    """Set summary.total to the inputs this run will account for (a thread's task).

    The run streams its inputs to the workers as it lists them, so the total is known
    only once a second listing (this one) is through: until then the progress shows a
    count without an ETA. Inputs done by an earlier run and unreadable folders are left
    out, as the running count leaves them out; ``extra`` inputs (QA rejections) are
    added.
    """
    n = 0
    try:
        for item in iter_inputs(src, max_size):
            if stop.is_set():
                return
            if item.verdict is not None and item.verdict[0] == "unreadable":
                continue
            if done and keyed.path_token(item.name) in done:
                continue
            n += 1
    except (MedveilError, OSError, ValueError):
        return  # the run itself reports a damaged input
    summary.total = n + extra


def _ended_by_cpu_limit(pool: cf.ProcessPoolExecutor, wait: float = 2.0) -> bool:
    """Whether a worker of a broken pool was ended by the CPU backstop (SIGVTALRM).

    The pool terminates its other workers when one dies; their exit codes are waited for
    (briefly) so that the one that died first can be told apart.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    deadline = time.monotonic() + wait
    while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.01)
    return any(p.exitcode == -signal.SIGVTALRM for p in processes)


def _manager_of(pool: cf.ProcessPoolExecutor) -> threading.Thread | None:
    """The pool's management thread (it joins the workers once the pool is shut down)."""
    thread = getattr(pool, "_executor_manager_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


def _is_broken(pool: cf.ProcessPoolExecutor) -> bool:
    """Whether a process pool is broken (a worker died): it must be replaced."""
    return bool(getattr(pool, "_broken", False))
