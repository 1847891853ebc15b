"""Hidden-bit detection against a bit-by-bit reference, for every layout DICOM allows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.verify.scan import Scanner
from medveil.verify.values import ValueIndex

from tests.verify import factory as f


def reference_count(samples: list[int], ba: int, bs: int, hb: int, signed: bool) -> int:
    """Samples with a bit outside the stored field, or (signed) not sign-extended."""
    low = hb - bs + 1
    bad = 0
    for v in samples:
        bits = [(v >> k) & 1 for k in range(ba)]
        below = any(bits[:low])
        above = bits[hb + 1 :]
        if signed:
            wrong_above = any(b != bits[hb] for b in above)
        else:
            wrong_above = any(above)
        bad += below or wrong_above
    return bad


@st.composite
def layouts(draw):
    ba = draw(st.sampled_from([8, 16, 32]))
    bs = draw(st.integers(1, ba))
    hb = draw(st.integers(bs - 1, ba - 1))
    signed = draw(st.booleans())
    big = draw(st.booleans())
    samples = draw(st.lists(st.integers(0, (1 << ba) - 1), min_size=1, max_size=24))
    return ba, bs, hb, signed, big, samples


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_hidden_bits_match_reference(layout) -> None:
    ba, bs, hb, signed, big, samples = layout
    ds = f.clean_output()
    if big:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = ba, bs, hb
    ds.PixelRepresentation = int(signed)
    dtype = np.dtype(f"{'>' if big else '<'}u{ba // 8}")
    ds.PixelData = np.array(samples, dtype=dtype).tobytes()
    found = Scanner(ValueIndex()).scan_pixels("x", ds)
    expected = reference_count(samples, ba, bs, hb, signed)
    if expected == 0:
        assert found == []
    else:
        (hit,) = found
        assert hit.category == "hidden_bits" and hit.path == "(7FE0,0010)"
        assert hit.detail.startswith(f"{expected} of {len(samples)} samples")


def test_compressed_pixel_data_is_not_inspected() -> None:
    ds = f.clean_output()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.PixelData = b"\xff" * 32
    assert Scanner(ValueIndex()).scan_pixels("x", ds) == []
