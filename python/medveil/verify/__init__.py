"""``medveil verify``: prove that no identifying value of the originals survived.

The verifier is independent of the de-identification engine. It learns the identifying
values of the originals by VR and by its own short keyword list (see
:mod:`medveil.verify.values`, whose docstring states the counting rule: values under 4
characters, :data:`STOP_WORDS`, one-character name components and vendor codes repeated in
private groups are not counted unless ``strict``; well-known UIDs never are), then hunts for
them in every output file, without relying on file names (folders are walked, .zip and
.tar(.gz) archives opened member by member):

1. every parsed element at every depth (file meta, sequences, private elements, UN values
   decoded as text, any specific character set as pydicom decodes it), through one
   automaton over all values; dates count when they appear unshifted in a DA, DT or TM
   element (or a private value that reads as a date);
2. a raw byte search of the whole file in UTF-8, Latin-1 and UTF-16-LE, ``^`` read as a
   space, ASCII case-insensitive, outside the pixel data (located by a raw walker that also
   names the element path of each hit);
3. pixel samples with bits set outside BitsStored/HighBit (native transfer syntaxes);
4. the output's file and folder names (a patient name as a folder name is a leak too).

Findings carry the file, the element path, and the value only as a keyed hash, its ASCII
initial and its length; file and folder names that hold a value are printed as
``[redacted]``. Elements a policy keeps on purpose (``allow=["StationName"]``, e.g.
under Retain Device Identity) are listed as ``allowed`` and do not count; their values are
still hunted everywhere else. The report is clean (exit code 0) when nothing was found,
every output could be read and at least one original was; non-DICOM outputs (run records,
notes) get the byte search.

Example::

    from medveil.verify import verify_archive
    report = verify_archive("originals/", "released/")
    print(report.table()); raise SystemExit(report.exit_code)
"""

from __future__ import annotations

from medveil.verify.report import CATEGORIES, Finding, VerifyReport
from medveil.verify.scan import Scanner, verify_archive
from medveil.verify.values import MIN_LENGTH, STOP_WORDS, learn

__all__ = [
    "CATEGORIES",
    "MIN_LENGTH",
    "STOP_WORDS",
    "Finding",
    "Scanner",
    "VerifyReport",
    "learn",
    "verify_archive",
]
