"""The UID references of a written output, read from the core scanner's rows.

The archive run records, for every released file, the UIDs it refers to from inside its
sequences and its Frame of Reference UID, to report references left pointing at nothing.
Reading them back with pydicom cost more than a third of a CT slice's whole cleaning;
the written file is well formed (the post-check scanned it), so the element scanner's
rows give the same answer for a fraction of it. Anything the scanner road does not read
(big endian, deflated) still goes through :func:`medveil.run.outputs.references`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medveil.run.outputs import FRAME_OF_REFERENCE, REFERENCE_TAGS, references
from medveil.verify.elements import recall_scan, scan_file

# Scanner row columns (cpp/include/medveil/dicomscan.hpp): tag, vr, start, value start,
# length field, end, items, depth.
_TAG, _VSTART, _END, _DEPTH = 0, 3, 5, 7
_REFERENCE_TAGS = np.array(sorted(REFERENCE_TAGS), dtype=np.int64)


def _uids(value: bytes) -> list[str]:
    """The non-empty UIDs of a UI value (backslash-separated, NUL or space padded)."""
    text = value.decode("ascii", "replace")
    return [u.strip(" \x00") for u in text.split("\\") if u.strip(" \x00")]


def output_references(parts: Sequence[bytes | bytearray | memoryview]) -> tuple[list[str], str]:
    """(UIDs the output refers to from inside its sequences, its Frame of Reference UID)."""
    # The post-check scanned these very bytes just before (compared, not assumed).
    scanned = recall_scan(parts)
    if scanned is None:
        scanned = scan_file(parts[0] if len(parts) == 1 else b"".join(parts))
    if scanned is None:
        return references([bytes(p) for p in parts])
    data = scanned.data
    rows = scanned.rows  # file meta rows are group 0002: never a reference tag
    tags = rows[:, _TAG]
    found: set[str] = set()
    frame = ""
    # Sorted lookup: np.isin costs more than the rest of this on a file's few hundred rows.
    at = np.minimum(np.searchsorted(_REFERENCE_TAGS, tags), len(_REFERENCE_TAGS) - 1)
    for i in np.flatnonzero(_REFERENCE_TAGS[at] == tags).tolist():
        value = bytes(data[int(rows[i, _VSTART]) : int(rows[i, _END])])
        if int(rows[i, _DEPTH]) > 0:
            found.update(_uids(value))
        elif int(tags[i]) == FRAME_OF_REFERENCE:
            frame = "\\".join(_uids(value))
    return sorted(found), frame
