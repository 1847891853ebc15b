"""Key files: 32 random bytes stored as 64 hex characters, readable by their owner only.

The pseudonym secret, the vault key and age identity files follow the same rules:

- created with ``O_EXCL | O_NOFOLLOW`` (an existing key, or a link planted where the key
  goes, is never written through) and mode 0600 from the start (never a chmod after the
  key is on disk); folders created on the way get mode 0700;
- refused when read if the group or others have any access to them (mode & 0o077), with
  the ``chmod`` to run: a key others could read must be treated as disclosed, and one they
  could write may have been swapped. The check is on the opened file (``fstat``), so it
  is the file actually read that is checked, links included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from medveil.errors import MedveilError

__all__ = [
    "check_private",
    "create_key_file",
    "create_private_file",
    "make_private_dirs",
    "read_key_file",
    "read_private_file",
    "write_private_file",
]

# O_NOFOLLOW / O_CLOEXEC do not exist everywhere (Windows); there the rest still applies.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation of key bytes
_CHECK_MODES = os.name == "posix"  # Windows has no group/other mode bits to check


class KeyFilePermissionError(MedveilError):
    """A secret or identity file is open to the group or to others."""


def make_private_dirs(folder: str | os.PathLike[str]) -> None:
    """Create folder and any missing parents with mode 0700 (existing ones are left alone)."""
    p = Path(folder)
    missing: list[Path] = []
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        # mkdir's mode is masked by the umask, which can only remove bits: at most 0700.
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)


def check_private(fd: int, path: str | os.PathLike[str], what: str) -> None:
    """Raise KeyFilePermissionError if the open file fd grants the group or others access."""
    if not _CHECK_MODES:
        return
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o077:
        p = os.fspath(path)
        raise KeyFilePermissionError(
            f"the {what} file {p} is open to other users (mode {mode:04o}); refusing to use "
            f"it. Run `chmod 600 {p}`, and if others could read it, treat the key as "
            "disclosed and replace it"
        )


def read_private_file(path: str | os.PathLike[str], what: str, limit: int = 1 << 20) -> bytes:
    """Read a secret file (at most `limit` bytes) after checking only its owner can use it."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | _CLOEXEC | _BINARY)
    except OSError as exc:
        raise MedveilError(f"cannot read the {what} file {p}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        check_private(fh.fileno(), p, what)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise MedveilError(f"the {what} file {p} is larger than {limit} bytes; not a key file")
    return data


def create_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Create a new file holding data: mode 0600, O_EXCL|O_NOFOLLOW, parents made 0700.

    Raises FileExistsError if anything (a file, a link) is already at path.
    """
    p = Path(path)
    make_private_dirs(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
    fd = os.open(p, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # a key lost in a crash would orphan what it protects
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(p)
        raise


def write_private_file(path: str | os.PathLike[str], data: bytes, *, replace: bool) -> None:
    """Write data to path through a new temporary file, then rename it into place.

    The temporary file has a random name in the same folder and is opened with
    ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, so a file or link planted there is
    never written through; rename replaces a link at ``path`` itself, not its target. With
    ``replace=False`` an existing ``path`` is kept and FileExistsError raised (a hard link
    claims the name atomically).
    """
    dst = Path(path)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(8)}.partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, dst)
        else:
            try:
                os.link(tmp, dst, follow_symlinks=False)  # FileExistsError if dst exists
            except FileExistsError:
                raise
            except OSError:
                # No hard links on this file system: check, then rename (a small window).
                if os.path.lexists(dst):
                    raise FileExistsError(errno.EEXIST, "File exists", os.fspath(dst)) from None
                os.replace(tmp, dst)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def create_key_file(path: str | os.PathLike[str], nbytes: int = 32) -> bytes:
    """Create a new key file of `nbytes` random bytes (hex, mode 0600) and return the key."""
    key = secrets.token_bytes(nbytes)
    create_private_file(path, (key.hex() + "\n").encode("ascii"))
    return key


def read_key_file(path: str | os.PathLike[str], nbytes: int, what: str, create_hint: str) -> bytes:
    """Read a key file holding `nbytes` raw bytes or 2*`nbytes` hex characters."""
    p = Path(path)
    data = read_private_file(p, what, limit=1 << 16)
    text = data.strip()
    if len(text) == 2 * nbytes:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == nbytes:
        return data
    raise MedveilError(
        f"the {what} file {p} must hold {2 * nbytes} hex characters or {nbytes} raw bytes "
        f"(create one with `{create_hint}`)"
    )
