"""What an archive run does around each output: exclusive final names, DICOMDIRs, references.

- :class:`ExclusiveBatch` gives outputs their final names without ever replacing a file:
  two inputs whose outputs share a SOP Instance UID (common in real exports) cannot
  overwrite each other, even when two workers finish them at the same moment.
- :func:`is_dicomdir` spots a Media Storage Directory (DICOMDIR) input, which is not an
  instance to release; :func:`write_dicomdir` writes a new one for the output tree.
- :func:`references` lists the UIDs an output refers to, for the run's count of
  references left unresolved.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medveil.durable import BatchWriter

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# The folder of OUTPUT the new DICOMDIR and its file set go to (see write_dicomdir).
DICOMDIR_FOLDER = "dicomdir"
# Reasons of the archive records (fixed texts: no values, no paths).
DIFFERENT_CONTENT = (
    "duplicate SOP Instance UID with different content: another input was already "
    "released under the same new SOP Instance UID, and a release cannot hold two different "
    "instances with one UID; check the export for two different files sharing a SOP "
    "Instance UID (the same image in two transfer syntaxes, say)"
)
IDENTICAL = "duplicate: another input gave the identical output (same SOP Instance UID)"
REPLACED = "DICOMDIR: not released; a new one is written for the output"


# ---------------------------------------------------------------------------- final names
def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Errors of os.link that mean the file system has no hard links (FAT, some network ones).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def place_exclusive(tmp: Path, path: Path, sha256: str) -> str:
    """Give tmp the final name path unless a file has it: "new", "same" or "different".

    A hard link fails when the name exists, atomically, so of two workers placing one
    name at once exactly one wins; the other compares contents. The temporary is gone
    afterwards in every case.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _existing(tmp, path, sha256)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # No hard links here: check, then rename. Two workers racing for one name on such
        # a file system could still both rename; the parent then counts the second as a
        # duplicate (documented limitation).
        if os.path.lexists(path):
            return _existing(tmp, path, sha256)
        os.replace(tmp, path)
        return "new"
    os.unlink(tmp)
    return "new"


def _existing(tmp: Path, path: Path, sha256: str) -> str:
    """Compare the file already at path with ours (by SHA-256), then drop ours."""
    try:
        same = file_sha256(path) == sha256
    finally:
        tmp.unlink(missing_ok=True)
    return "same" if same else "different"


class ExclusiveBatch(BatchWriter):
    """A BatchWriter whose final names never replace a file (see :func:`place_exclusive`)."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        super().__init__(root, durable=durable)
        self.sha256: dict[Path, str] = {}

    def add_checked(self, path: Path, data: Sequence[bytes], sha256: str) -> str:
        """Stage data for path: "new", or "same"/"different" when this batch already has it."""
        if path in self.pending:
            return "same" if self.sha256[path] == sha256 else "different"
        self.add(path, data)
        self.sha256[path] = sha256
        return "new"

    def commit_exclusive(self) -> dict[Path, str]:
        """Flush the batch to disk, then place every file; its outcome by final path."""
        if not self.pending:
            return {}
        pending = self.pending
        # BatchWriter.commit flushes the file system once, then renames; with every
        # temporary renamed onto itself (a no-op) it only flushes.
        self.pending = {tmp: tmp for tmp in pending.values()}
        try:
            super().commit()
        finally:
            self.pending = pending
        outcome: dict[Path, str] = {}
        for path in list(pending):
            outcome[path] = place_exclusive(pending.pop(path), path, self.sha256[path])
        return outcome


# ---------------------------------------------------------------------------- DICOMDIR
_META_ELEMENT = struct.Struct("<HH2s")
_LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"}


def is_dicomdir(raw: bytes | bytearray | memoryview) -> bool:
    """Whether a file's meta header names the Media Storage Directory SOP Class (DICOMDIR)."""
    if len(raw) < 144 or bytes(raw[128:132]) != b"DICM":
        return False
    pos, end = 132, min(len(raw), 132 + 4096)
    while pos + 8 <= end:
        group, elem, vr = _META_ELEMENT.unpack_from(raw, pos)
        if group != 0x0002:
            return False
        if vr in _LONG_VRS:
            if pos + 12 > end:
                return False
            (length,) = struct.unpack_from("<I", raw, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", raw, pos + 6)
            start = pos + 8
        if elem == 0x0002:  # Media Storage SOP Class UID
            value = bytes(raw[start : start + length]).rstrip(b"\x00 ")
            return value == MEDIA_STORAGE_DIRECTORY.encode()
        pos = start + length
    return False


def write_dicomdir(output: Path, relpaths: Iterable[str]) -> tuple[str, int]:
    """Write OUTPUT/dicomdir/ (a DICOMDIR and its file set) from the released outputs.

    PS3.10 file IDs have at most 8 characters per component, and the output tree's
    (pseudonym/UID/UID/UID.dcm) do not fit, so pydicom's FileSet lays out the file set
    under its own IDs (PT000000/ST000000/SE000000/IM000000) next to the DICOMDIR. Its
    records are made from the de-identified files' headers only (pixels are not read);
    each file ID is then a hard link to the released file (a copy where the file system
    has no hard links), so the file set costs no space twice. Returns the
    DICOMDIR's path relative to OUTPUT ("" when there was nothing to put in it) and how
    many outputs FileSet could not make a record of (left out, counted).
    """
    import pydicom
    from pydicom.fileset import FileSet

    target = output / DICOMDIR_FOLDER
    if target.exists() and not (target / "DICOMDIR").exists():
        # A patient folder of that name (a kept patient ID): never touched.
        raise FileExistsError(errno.EEXIST, f"{DICOMDIR_FOLDER}/ exists and holds no DICOMDIR")
    left_out = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings may quote values

        class _FileSet(FileSet):
            # FileSet.add first looks for the instance among all those added, which makes
            # a file set of n files cost n² (minutes at 10,000). Each SOP Instance UID is
            # added once here (checked below), so the search is skipped while adding.
            adding = False

            def __iter__(self) -> Iterator[Any]:
                return iter(()) if self.adding else super().__iter__()

        fs = _FileSet()
        fs.ID = "MEDVEIL"
        released: dict[str, Path] = {}
        fs.adding = True
        for rel in relpaths:
            try:
                ds = pydicom.dcmread(output / rel, stop_before_pixels=True)
                uid = str(ds.SOPInstanceUID)
                if uid in released:
                    # Two studies or patients holding one SOP Instance UID: one record.
                    left_out += 1
                    continue
                fs.add(ds)
            except (ValueError, KeyError, AttributeError, TypeError, OSError):
                # A record type FileSet cannot make for it (a required key missing).
                left_out += 1
                continue
            released[uid] = output / rel
        fs.adding = False
        if not len(fs):
            return "", left_out
        # Written beside, then swapped in: a killed run never leaves half a file set.
        staging = Path(tempfile.mkdtemp(prefix=".dicomdir.", suffix=".tmp", dir=output))
        try:
            fs.write(staging)
            for instance in fs:
                # FileSet wrote the header it was given: the released file takes its place.
                _link_or_copy(released[str(instance.SOPInstanceUID)], Path(instance.path))
            old = output / f".{DICOMDIR_FOLDER}.old.tmp"
            if target.exists():
                os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            stage = getattr(fs, "_stage", {}).get("t")
            if stage is not None:
                stage.cleanup()  # pydicom's staging copies: gone now, not at exit
    return f"{DICOMDIR_FOLDER}/DICOMDIR", left_out


def _link_or_copy(src: Path, dst: Path) -> None:
    """Replace dst by a hard link to src (a copy where links are not possible)."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# ---------------------------------------------------------------------------- references
# Attributes inside sequences that point at another instance, series, study or frame of
# reference: Referenced SOP Instance UID (Source Image, Referenced Image/Series/Study,
# SR and RT references), Series/Study Instance UID and Frame of Reference UID in a
# reference item, and RT's Referenced and Related Frame of Reference UIDs.
REFERENCE_TAGS = frozenset({0x00081155, 0x0020000D, 0x0020000E, 0x00200052, 0x30060024, 0x300600C2})
FRAME_OF_REFERENCE = 0x00200052


class _Parts(io.RawIOBase):
    """The output's parts read as one seekable stream, without joining them (no copy)."""

    name = "<output>"  # pydicom's FileDataset asks a file object for its name

    def __init__(self, parts: Sequence[bytes]) -> None:
        self.parts = [memoryview(p).cast("B") for p in parts]
        self.starts: list[int] = []
        total = 0
        for p in self.parts:
            self.starts.append(total)
            total += len(p)
        self.size, self.pos = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.size)[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        for start, p in zip(self.starts, self.parts, strict=True):
            if done >= len(out) or self.pos >= self.size:
                break
            if self.pos >= start + len(p) or self.pos < start:
                continue
            at = self.pos - start
            n = min(len(p) - at, len(out) - done)
            out[done : done + n] = p[at : at + n]
            done += n
            self.pos += n
        return done


def references(parts: Sequence[bytes]) -> tuple[list[str], str]:
    """(UIDs the output refers to from inside its sequences, its Frame of Reference UID).

    Reads the output's header only (pixel data is not read).
    """
    import pydicom
    from pydicom.datadict import dictionary_VR

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(_Parts(parts), stop_before_pixels=True)
    found: set[str] = set()

    def walk(d: pydicom.Dataset, nested: bool) -> None:
        # Only sequences and reference attributes are decoded: converting every value
        # would cost more than the rest of the check.
        for tag in list(d.keys()):
            if nested and tag in REFERENCE_TAGS:
                value = d[tag].value
                vals = value if isinstance(value, list) else [value]
                found.update(str(v).strip() for v in vals if v and str(v).strip())
                continue
            vr = d.get_item(tag).VR
            if vr is None:  # implicit VR: the dictionary's (private ones are not references)
                try:
                    vr = dictionary_VR(tag)
                except KeyError:
                    continue
            if vr == "SQ":
                for item in d[tag].value or ():
                    walk(item, True)

    walk(ds, False)
    frame = ds.get(FRAME_OF_REFERENCE)
    return sorted(found), str(frame.value).strip() if frame is not None and frame.value else ""
