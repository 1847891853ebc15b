"""Value representations by how Explicit VR Little Endian encodes their length (PS3.5 7.1.2).

Every reader, writer and scanner of the package measures element headers with these sets,
taken from pydicom's own: a VR missing from one copy would have its 4-byte length read as
a 2-byte one there, and that reader would lose its place in the file.
"""

from __future__ import annotations

from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

# Two reserved bytes and a 4-byte length.
LONG_VRS: frozenset[str] = frozenset(str(vr.value) for vr in EXPLICIT_VR_LENGTH_32)
# A 2-byte length.
SHORT_VRS: frozenset[str] = frozenset(str(vr.value) for vr in EXPLICIT_VR_LENGTH_16)
# The same as they stand in a file's bytes.
LONG_VR_BYTES: frozenset[bytes] = frozenset(vr.encode("ascii") for vr in LONG_VRS)
SHORT_VR_BYTES: frozenset[bytes] = frozenset(vr.encode("ascii") for vr in SHORT_VRS)
