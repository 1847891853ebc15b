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
from medveil.verify.elements import Scanned, recall_scan, scan_file

# Scanner row columns (cpp/include/medveil/dicomscan.hpp): tag and depth.
_TAG, _DEPTH = 0, 7
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
    found: set[str] = set()
    frame = ""
    vstarts, ends = scanned.bounds()
    for i, nested in _reference_rows(scanned):
        value = bytes(data[vstarts[i] : ends[i]])
        if nested:
            found.update(_uids(value))
        else:
            frame = "\\".join(_uids(value))
    return sorted(found), frame


def _reference_rows(scanned: Scanned) -> list[tuple[int, bool]]:
    """(row, inside a sequence) of each reference read: nested reference tags, top-level FoR.

    Tags and depths are the rows' structure, the same in every file of a series: worked
    out once per Shape (whose key holds both columns) and kept in its memo.
    """
    memo = scanned.shape.memo
    hit: list[tuple[int, bool]] | None = memo.get("references")
    if hit is None:
        rows = scanned.rows  # file meta rows are group 0002: never a reference tag
        tags = rows[:, _TAG]
        # Sorted lookup: np.isin costs more than the rest of this on a few hundred rows.
        at = np.minimum(np.searchsorted(_REFERENCE_TAGS, tags), len(_REFERENCE_TAGS) - 1)
        hit = []
        for i in np.flatnonzero(_REFERENCE_TAGS[at] == tags).tolist():
            if int(rows[i, _DEPTH]) > 0:
                hit.append((i, True))
            elif int(tags[i]) == FRAME_OF_REFERENCE:
                hit.append((i, False))
        memo["references"] = hit
    return hit
