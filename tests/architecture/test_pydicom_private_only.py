"""pydicom's internals are touched only in medveil.dicom.pydicom_private (issue 17).

That module says why each is needed and its tests fail on a pydicom that changes them;
a use anywhere else would escape both.
"""

from __future__ import annotations

import re
from pathlib import Path

import medveil

PACKAGE = Path(medveil.__file__).parent
ALLOWED = PACKAGE / "dicom" / "pydicom_private.py"
# The element store, positional RawDataElement construction, the decoder registry and
# the character set property (the patterns of issue 17's grep), and the private block cache.
INTERNALS = re.compile(
    r'\._dict\b|RawDataElement\(|_PIXEL_DATA_DECODERS|\._character_set|[."]_private_blocks\b'
)


def _hits(root: Path) -> list[str]:
    """Every line of a module under root (but the allowed one) that uses an internal."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNALS.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_internals_only_in_pydicom_private() -> None:
    assert _hits(PACKAGE) == []


def test_the_check_sees_each_pattern(tmp_path: Path) -> None:
    uses = [
        "ds._dict[tag]",
        "RawDataElement(tag, vr)",
        "_PIXEL_DATA_DECODERS",
        "ds._character_set",
        'getattr(ds, "_private_blocks")',
    ]
    for i, use in enumerate(uses):
        (tmp_path / f"m{i}.py").write_text(f"x = {use}\n", encoding="utf-8")
    (tmp_path / "clean.py").write_text("x = elements(ds)[tag]  # forget_private_blocks(ds)\n")
    assert [hit.split(":")[0] for hit in _hits(tmp_path)] == [f"m{i}.py" for i in range(len(uses))]
    # The allowed module is skipped, not missed: it does use them.
    assert INTERNALS.search(ALLOWED.read_text(encoding="utf-8"))
    assert _hits(ALLOWED.parent) == []
