"""Durable, atomic file output: nothing half written ever carries a final name.

Each file goes to a hidden temporary name in its target folder, is flushed to disk, and
is then renamed over the final name. :class:`BatchWriter` amortises the flush: it writes
a batch of temporary files, flushes the whole file system once (``syncfs``), then renames
them all, which keeps the guarantee at a fraction of one fsync per file.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# The C library the interpreter already has loaded (dlopen of the process itself):
# ctypes.util.find_library would run ldconfig in a child process on every start-up.
_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_start_writeback = getattr(os, "sync_file_range", None)


# Folders this process has made (or found): a series' files all go to one, and asking the
# kernel again for each file costs a system call and a path walk.
_MADE: set[Path] = set()


def temp_name(path: Path) -> Path:
    """The hidden temporary name a file is written under before its rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write(tmp: Path, data: bytes | Sequence[bytes], fsync: bool, writeback: bool = True) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        views = [memoryview(c).cast("B") for c in chunks if len(c)]
        while views:
            # One system call for the whole file (header and pixels are separate chunks);
            # a short write resumes where it stopped.
            batch = views[:1024]  # IOV_MAX
            done = os.writev(fd, batch) if len(batch) > 1 else os.write(fd, batch[0])
            while views and done >= len(views[0]):
                done -= len(views[0])
                views.pop(0)
            if views and done:
                views[0] = views[0][done:]
        if fsync:
            os.fsync(fd)
        elif writeback and _start_writeback is not None:
            # Start writing this file to disk now, without waiting: the batch's one
            # flush at commit then finds most of its data already written, and the disk
            # works while the next files are being cleaned.
            _start_writeback(fd, 0, 0, getattr(os, "SYNC_FILE_RANGE_WRITE", 2))
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | Sequence[bytes]) -> None:
    """Write data to a temporary name in the target folder, fsync, then rename over path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        _write(tmp, data, fsync=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class BatchWriter:
    """Collects files as temporaries; commit() flushes them to disk once, then renames."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        # durable=False keeps the atomic renames (no partial file under a final name if
        # the process dies) but not the flush: a power cut may lose recent files.
        self.durable = durable
        # final path -> temporary; a path written twice in one batch (the same instance
        # twice in an export) keeps one temporary, rewritten, like two plain writes would.
        self.pending: dict[Path, Path] = {}

    def add(self, path: Path, data: bytes | Sequence[bytes]) -> None:
        """Write data (bytes, or chunks in order) under a temporary name next to path."""
        parent = path.parent
        if parent not in _MADE:
            parent.mkdir(parents=True, exist_ok=True)
            if len(_MADE) >= 4096:
                _MADE.clear()
            _MADE.add(parent)
        tmp = temp_name(path)
        try:
            try:
                _write(tmp, data, fsync=self.durable and _syncfs is None, writeback=self.durable)
            except FileNotFoundError:
                # The folder went away since this process made it: make it again.
                parent.mkdir(parents=True, exist_ok=True)
                _write(tmp, data, fsync=self.durable and _syncfs is None, writeback=self.durable)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.pending[path] = tmp

    def commit(self) -> None:
        """Make every pending file durable and give it its final name."""
        if not self.pending:
            return
        self.flush()
        for path, tmp in self.pending.items():
            os.replace(tmp, path)
        self.pending.clear()

    def flush(self) -> None:
        """Make every pending temporary durable (one syncfs), without renaming any."""
        if self.durable and _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), str(self.root))
            finally:
                os.close(fd)

    def abort(self) -> None:
        """Remove every pending temporary file."""
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()


# ---------------------------------------------------------------------------- output paths
# A patient folder: a pseudonym (prefix + base32) or a kept ID already filtered to these
# characters; never starting with a dot, so never ".", "..", a hidden temporary or the
# run records folder.
_PATIENT = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z._-]{0,63}")
# Study, series and SOP instance UIDs: digits in dot-separated non-empty groups (PS3.5 9.1,
# leading zeros tolerated), at most 64 characters; "unknown" when the UID is missing.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_LEVELS = ("patient folder", "Study Instance UID", "Series Instance UID", "SOP Instance UID")
# A released file whose SOP Instance UID other released files share: <uid>~2.dcm, ...
_VARIANT = re.compile(r"~(?:[2-9]|[1-9][0-9]{1,2})")


class UnsafePath(ValueError):
    """An output path that could leave the output folder or name something it must not."""


def check_relpath(relpath: str) -> None:
    """Raise UnsafePath unless relpath is <patient>/<study UID>/<series UID>/<SOP UID>.dcm.

    The file name may carry a variant number (<SOP UID>~2.dcm: outputs sharing a UID).
    """
    parts = relpath.split("/")
    if len(parts) != 4 or not parts[3].endswith(".dcm"):
        raise UnsafePath("unsafe output path: not patient/study/series/instance.dcm")
    parts[3] = parts[3][: -len(".dcm")]
    uid, mark, number = parts[3].partition("~")
    if mark and _VARIANT.fullmatch(mark + number):
        parts[3] = uid
    for level, part in zip(_LEVELS, parts, strict=True):
        if level == _LEVELS[0]:
            ok = _PATIENT.fullmatch(part) is not None
        else:
            ok = part == "unknown" or (len(part) <= 64 and _UID.fullmatch(part) is not None)
        if not ok:
            # The message names the level, never the value (it may be PHI).
            raise UnsafePath(f"unsafe output path: the {level} is not a valid path component")


# OUTPUT resolved, by the path given and the folder it leads to: a run writes thousands
# of files under one folder, and resolving it costs more than the rest of safe_join.
_REAL_ROOTS: dict[tuple[str, int, int], str] = {}


def _real_root(root: Path) -> str:
    """os.path.realpath(root), resolved again only when root leads to another folder.

    One stat tells (a folder has one inode: no hard links to folders); a root swapped
    for a link elsewhere, or removed and made again, is resolved anew.
    """
    try:
        st = os.stat(root)
    except OSError:
        return os.path.realpath(root)
    key = (os.fspath(root), st.st_dev, st.st_ino)
    found = _REAL_ROOTS.get(key)
    if found is None:
        if len(_REAL_ROOTS) >= 64:
            _REAL_ROOTS.clear()
        found = _REAL_ROOTS[key] = os.path.realpath(root)
    return found


def safe_join(root: Path, relpath: str) -> Path:
    """root/relpath after check_relpath, and only if it resolves inside root (no symlink out)."""
    check_relpath(relpath)
    path = root / relpath
    real_root = _real_root(root)
    # A folder inside OUTPUT replaced by a symbolic link would lead the write elsewhere.
    # check_relpath refused "..", "." and separators in the parts, so only a link among
    # them can: one lstat per part finds out, and only a link costs the full resolution.
    at = real_root
    for part in relpath.split("/"):
        at = os.path.join(at, part)
        try:
            if stat.S_ISLNK(os.lstat(at).st_mode):
                break
        except FileNotFoundError:
            return path  # nothing exists below a missing part: no link either
        except OSError:
            break
    else:
        return path
    if not os.path.realpath(path).startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafePath("unsafe output path: it resolves outside the output folder")
    return path


# ---------------------------------------------------------------------------- workers
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to kill this (worker) process when its parent dies, so no orphan writes on.

    ``parent`` is the pid the caller expects as parent: if it already died (between the
    fork and this call), the worker exits at once.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid() if parent is None else parent
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except AttributeError:  # pragma: no cover - a libc without prctl
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def exit_with(pid: int, poll_seconds: float = 1.0) -> None:
    """Watchdog: exit this process as soon as process pid is gone.

    For workers whose parent is not the process they serve (a forkserver's children):
    PR_SET_PDEATHSIG watches only the direct parent. A daemon thread waits on a pidfd
    (Linux 5.3+), else checks every poll_seconds.
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
        except (AttributeError, OSError):
            fd = -1
        if fd >= 0:
            select.select([fd], [], [])  # readable once the process has exited
            os._exit(1)
        while True:
            time.sleep(poll_seconds)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # alive, another user's: cannot happen for our own parent

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        os._exit(1)
    threading.Thread(target=watch, name="medveil-exit-with", daemon=True).start()
