"""What an archive run does around each output: exclusive final names, DICOMDIRs, references.

- :class:`ExclusiveBatch` gives outputs their final names without ever replacing a file:
  two inputs whose outputs share a SOP Instance UID (common in real exports) cannot
  overwrite each other, even when two workers finish them at the same moment. With
  :meth:`ExclusiveBatch.add_variant` and :func:`place_variant` a different output under a
  taken name gets the next variant name (``<uid>~2.dcm``); :func:`settle_variants` puts
  each group in the order of its input paths at the end of a run.
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
import sqlite3
import struct
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medveil.dicom.vr import LONG_VR_BYTES
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
        self.base: dict[Path, Path] = {}  # staged variant name -> the name it varies

    def add_checked(self, path: Path, data: Sequence[bytes], sha256: str) -> str:
        """Stage data for path: "new", or "same"/"different" when this batch already has it."""
        if path in self.pending:
            return "same" if self.sha256[path] == sha256 else "different"
        self.add(path, data)
        self.sha256[path] = sha256
        return "new"

    def add_variant(self, path: Path, data: Sequence[bytes], sha256: str) -> tuple[str, Path]:
        """Stage data for path or its next free variant name in this batch.

        ("same", name) when this batch already holds identical content under one of the
        names, else ("new", staged name); the final name is settled by commit_variants.
        """
        for n in range(1, MAX_VARIANTS + 1):
            name = variant_path(path, n)
            if name not in self.pending:
                self.add(name, data)
                self.sha256[name] = sha256
                self.base[name] = path
                return "new", name
            if self.sha256[name] == sha256:
                return "same", name
        raise FileExistsError(TOO_MANY_VARIANTS)

    def commit_variants(self) -> dict[Path, tuple[str, Path]]:
        """Flush the batch, then place every file under its first free variant name.

        Keyed by the name add_variant gave; the value is ("new" or "same", final name)
        or ("refused", name) when MAX_VARIANTS names are taken.
        """
        if not self.pending:
            return {}
        self.flush()  # durable first; the final names come after
        pending = self.pending
        outcome: dict[Path, tuple[str, Path]] = {}
        # Base names first: a batch's own variants keep their order.
        for name in sorted(pending, key=lambda p: (str(self.base.get(p, p)), len(str(p)))):
            tmp = pending.pop(name)
            try:
                outcome[name] = place_variant(tmp, self.base.get(name, name), self.sha256[name])
            except FileExistsError:
                outcome[name] = ("refused", name)
        return outcome

    def commit_exclusive(self) -> dict[Path, str]:
        """Flush the batch to disk, then place every file; its outcome by final path."""
        if not self.pending:
            return {}
        self.flush()  # durable first; the final names come after
        pending = self.pending
        outcome: dict[Path, str] = {}
        for path in list(pending):
            outcome[path] = place_exclusive(pending.pop(path), path, self.sha256[path])
        return outcome


# ---------------------------------------------------------------------------- variants
# Two inputs whose outputs share a SOP Instance UID but differ (the same image exported
# twice in two transfer syntaxes, a re-export with other header values) are both released:
# the first under <uid>.dcm, the others under <uid>~2.dcm, <uid>~3.dcm, ... in the order of
# their input paths (settle_variants, at the end of the run). Identical outputs are written
# once. At most MAX_VARIANTS files share one name's UID; past that the input is refused.
VARIANT_MARK = "~"
MAX_VARIANTS = 64
TOO_MANY_VARIANTS = (
    f"duplicate SOP Instance UID: more than {MAX_VARIANTS} different inputs share this "
    "instance's SOP Instance UID; check the export"
)
#: The catalog column that names, for a file whose UID other released files share, those
#: files (file names in the same folder, ';'-separated); empty for every other file.
SHARES_COLUMN = "shares_uid_with"


def variant_path(path: Path, n: int) -> Path:
    """The n-th name of an output whose UID other outputs share (1: the path itself)."""
    if n <= 1:
        return path
    return path.with_name(f"{path.stem}{VARIANT_MARK}{n}{path.suffix}")


def base_relpath(relpath: str) -> str:
    """The name an output would have without a variant number (<uid>~2.dcm -> <uid>.dcm)."""
    head, sep, name = relpath.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    body, mark, number = stem.rpartition(VARIANT_MARK)
    if mark and number.isdigit() and int(number) >= 2 and body:
        stem = body
    return f"{head}{sep}{stem}{dot}{suffix}"


def place_variant(tmp: Path, path: Path, sha256: str) -> tuple[str, Path]:
    """Give tmp the first free variant name of path: ("new", name) or ("same", name).

    "same" when a file with identical content already has one of the names. Each name is
    taken as :func:`place_exclusive` takes one (a hard link fails when the name exists),
    so two workers never share a name. Raises FileExistsError when MAX_VARIANTS names
    are taken by other contents. tmp is gone afterwards in every case.
    """
    try:
        for n in range(1, MAX_VARIANTS + 1):
            name = variant_path(path, n)
            try:
                os.link(tmp, name)
            except FileExistsError:
                if file_sha256(name) == sha256:
                    return "same", name
                continue
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                # No hard links: check, then rename (see place_exclusive's limitation).
                if os.path.lexists(name):
                    if file_sha256(name) == sha256:
                        return "same", name
                    continue
                os.replace(tmp, name)
            return "new", name
        raise FileExistsError(TOO_MANY_VARIANTS)
    finally:
        tmp.unlink(missing_ok=True)


def settle_variants(
    output: Path, db: sqlite3.Connection, names: Mapping[str, str]
) -> dict[str, str]:
    """Put the outputs that share a UID in the order of their input paths; fill the column.

    ``db`` is the run's catalog (table ``instances`` with ``path``); ``names`` maps an
    output path of this run to its input's name (kept in memory only: names may hold PHI).
    Within each group of <uid>.dcm, <uid>~2.dcm, ... the input sorted first gets <uid>.dcm,
    the next <uid>~2.dcm, and so on (files of an earlier, resumed run sort after, by
    path); files are renamed on disk and in the catalog, and each file of a group names
    the others (file names) in :data:`SHARES_COLUMN`. Returns {old path: new path} of what moved.
    """
    cols = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
    if SHARES_COLUMN not in cols:
        db.execute(f"ALTER TABLE instances ADD COLUMN {SHARES_COLUMN} TEXT DEFAULT ''")
    groups: dict[str, list[str]] = {}
    for (path,) in db.execute(f"SELECT path FROM instances WHERE path LIKE '%{VARIANT_MARK}%'"):
        base = base_relpath(str(path))
        if base != path:
            groups.setdefault(base, [])
    moved: dict[str, str] = {}
    for base in sorted(groups):
        stem = base.rsplit(".", 1)[0]
        members = [
            str(p)
            for (p,) in db.execute(
                "SELECT path FROM instances WHERE path = ? OR path LIKE ?",
                (base, f"{stem}{VARIANT_MARK}%"),
            )
            if base_relpath(str(p)) == base
        ]
        if len(members) < 2:
            db.execute(f"UPDATE instances SET {SHARES_COLUMN} = '' WHERE path = ?", (base,))
            continue
        ordered = sorted(members, key=lambda p: (p not in names, names.get(p, ""), p))
        wanted = {p: str(variant_path(Path(base), i + 1).as_posix()) for i, p in enumerate(ordered)}
        moves = {old: new for old, new in wanted.items() if old != new}
        if moves:
            # Two steps, so that a name another member leaves is free when it is taken.
            staged = {}
            for old in moves:
                # Hidden, so a run killed here leaves a temporary --resume removes.
                tmp = (output / old).with_name(f".{Path(old).name}.settle.tmp")
                os.replace(output / old, tmp)
                staged[old] = tmp
            for old, new in moves.items():
                os.replace(staged[old], output / new)
            for old in moves:
                db.execute("UPDATE instances SET path = ? WHERE path = ?", (f"\0{old}", old))
            for old, new in moves.items():
                db.execute("UPDATE instances SET path = ? WHERE path = ?", (new, f"\0{old}"))
            moved.update(moves)
        final = sorted(wanted.values(), key=lambda p: (len(p), p))
        for p in final:
            # File names: the files of a group share their folder.
            others = ";".join(q.rsplit("/", 1)[-1] for q in final if q != p)
            db.execute(f"UPDATE instances SET {SHARES_COLUMN} = ? WHERE path = ?", (others, p))
    db.commit()
    return moved


# ---------------------------------------------------------------------------- DICOMDIR
_META_ELEMENT = struct.Struct("<HH2s")


def is_dicomdir(raw: bytes | bytearray | memoryview) -> bool:
    """Whether a file's meta header names the Media Storage Directory SOP Class (DICOMDIR)."""
    if len(raw) < 144 or bytes(raw[128:132]) != b"DICM":
        return False
    pos, end = 132, min(len(raw), 132 + 4096)
    while pos + 8 <= end:
        group, elem, vr = _META_ELEMENT.unpack_from(raw, pos)
        if group != 0x0002:
            return False
        if vr in LONG_VR_BYTES:
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
    from pydicom.fileset import FileSet

    target = output / DICOMDIR_FOLDER
    if target.exists() and not (target / "DICOMDIR").exists():
        # A patient folder of that name (a kept patient ID): never touched.
        raise FileExistsError(errno.EEXIST, f"{DICOMDIR_FOLDER}/ exists and holds no DICOMDIR")
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
        try:
            return _fill_file_set(fs, output, relpaths, target)
        finally:
            stage = getattr(fs, "_stage", {}).get("t")
            if stage is not None:
                stage.cleanup()  # pydicom's staging copies: gone now, not at exit


# Type 1 keys of PS3.3 F.5's directory records that a de-identification policy empties or
# removes (Study ID, dates, numbers). The records get these placeholders so that a
# de-identified file set still has a DICOMDIR; the released files are never changed.
_RECORD_PLACEHOLDERS: dict[str, object] = {
    "PatientID": "UNKNOWN",
    "StudyDate": "19000101",
    "StudyTime": "000000",
    "StudyID": "1",
    "Modality": "OT",
    "SeriesNumber": 1,
    "InstanceNumber": 1,
    "ContentDate": "19000101",
    "ContentTime": "000000",
}


def _with_record_keys(ds: Any) -> Any:
    """Give ds the directory records' Type 1 keys it lacks or has empty (placeholders)."""
    for keyword, value in _RECORD_PLACEHOLDERS.items():
        if keyword not in ds or ds[keyword].is_empty:
            setattr(ds, keyword, value)
    return ds


def _fill_file_set(fs: Any, output: Path, relpaths: Iterable[str], target: Path) -> tuple[str, int]:
    """Add the released files' records to fs and write it as OUTPUT/dicomdir/."""
    import pydicom

    left_out = 0
    released: dict[str, Path] = {}
    fs.adding = True
    for rel in relpaths:
        try:
            ds = pydicom.dcmread(output / rel, stop_before_pixels=True)
            uid = str(ds.SOPInstanceUID)
            if uid in released:
                # One record per SOP Instance UID: variants (<uid>~2.dcm) and other
                # studies or patients holding the UID are left out, counted.
                left_out += 1
                continue
            fs.add(_with_record_keys(ds))
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
