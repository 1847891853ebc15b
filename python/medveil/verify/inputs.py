"""The files to read: a file, a folder tree, and the members of .zip/.tar(.gz) archives.

Archives are opened, never trusted as opaque blobs: a compressed archive of originals would
otherwise teach nothing, and a compressed release would hide everything from the byte
search. One level of archive is expanded (an archive inside an archive is searched as bytes).
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Item:
    """One file to read: on disk, or a member of an archive (then its bytes are loaded)."""

    path: Path
    member: str | None = None
    data: bytes | None = None
    error: str | None = None  # why the archive could not be opened or the member read

    @property
    def name(self) -> str:
        """Printable location: the path, with ``!member`` for archive members."""
        return f"{self.path}!{self.member}" if self.member is not None else str(self.path)

    def read(self) -> bytes:
        """The file's bytes (OSError when it cannot be read)."""
        if self.error is not None:
            raise OSError(self.error)
        return self.data if self.data is not None else self.path.read_bytes()


_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def archive_members(path: Path) -> Iterator[Item]:
    """Members of a zip or tar archive with their bytes; one error item if it is broken."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in sorted(zf.infolist(), key=lambda i: i.filename):
                    if not info.is_dir():
                        yield Item(path, info.filename, zf.read(info))
            return
        with tarfile.open(path, "r:*") as tf:
            for m in sorted(tf.getmembers(), key=lambda m: m.name):
                if m.isfile():
                    fh = tf.extractfile(m)
                    if fh is not None:
                        yield Item(path, m.name, fh.read())
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        yield Item(path, error=type(exc).__name__)


def _is_dicom(path: Path) -> bool:
    """Whether a file has the Part 10 preamble and DICM prefix."""
    with path.open("rb") as f:
        return f.read(132)[128:132] == b"DICM"


def iter_items(root: Path) -> Iterator[Item]:
    """Every file under ``root`` (or ``root`` itself), archives expanded, in a stable order."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        try:
            # Named like an archive (a broken one is then reported), or any zip whatever its
            # name (.docx/.xlsx reports keep their text compressed). A DICOM file stays one:
            # a ZIP in its last value makes zipfile see an archive (its end record is there).
            archive = not _is_dicom(path) and (
                path.name.lower().endswith(_ARCHIVE_SUFFIXES) or zipfile.is_zipfile(path)
            )
        except OSError:
            archive = False
        if archive:
            yield from archive_members(path)
        else:
            yield Item(path)
