"""Durable, atomic file output: nothing half written ever carries a final name.

Each file goes to a hidden temporary name in its target folder, is flushed to disk, and
is then renamed over the final name. :class:`BatchWriter` amortises the flush: it writes
a batch of temporary files, flushes the whole file system once (``syncfs``), then renames
them all, which keeps the guarantee at a fraction of one fsync per file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_start_writeback = getattr(os, "sync_file_range", None)


def temp_name(path: Path) -> Path:
    """The hidden temporary name a file is written under before its rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write(tmp: Path, data: bytes | Sequence[bytes], fsync: bool, writeback: bool = True) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
        elif writeback and _start_writeback is not None:
            # Start writing this file to disk now, without waiting: the batch's one
            # flush at commit then finds most of its data already written, and the disk
            # works while the next files are being cleaned.
            _start_writeback(fd, 0, 0, os.SYNC_FILE_RANGE_WRITE)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(path)
        try:
            _write(tmp, data, fsync=self.durable and _syncfs is None, writeback=self.durable)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.pending[path] = tmp

    def commit(self) -> None:
        """Make every pending file durable and give it its final name."""
        if not self.pending:
            return
        if self.durable and _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), str(self.root))
            finally:
                os.close(fd)
        for path, tmp in self.pending.items():
            os.replace(tmp, path)
        self.pending.clear()

    def abort(self) -> None:
        """Remove every pending temporary file."""
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()
