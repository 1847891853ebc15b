"""Detection on 16-bit radiographs: the core's windowing gives numpy's detections.

``grey_frames`` maps 16-bit samples onto 0..255 with the core's ``window`` kernel; the
numpy float32 code it replaced (``_to_u8_reference``) is the reference. Both grey stacks
must be equal, so the detector finds the same lines, and the rendered text is masked.
"""

from __future__ import annotations

import numpy as np
import pytest
from medveil.pixels.text.detect import TextDetector, _to_u8_reference, grey_frames

from tests.textdetect.render import draw_text


def _radiograph(seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 12-bit 600x500 chest-like frame with three burned-in lines (bright, 4095)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:600, 0:500].astype(np.float32)
    img = 2400 + 600 * np.cos(xx / 500 * 3.1) * np.cos(yy / 600 * 2)
    img[(yy - 270) ** 2 / 150**2 + (xx - 160) ** 2 / 70**2 < 1] -= 1000  # a lung field
    img = np.clip(img + rng.normal(0, 40, img.shape), 0, 4095)
    layer = np.zeros((600, 500), dtype=np.uint8)
    boxes = [
        draw_text(layer, "DOE, JOHN", 12, 14, size=14),
        draw_text(layer, "ID 7300421", 34, 14, size=12),
        draw_text(layer, "L  PA ERECT", 540, 300, size=20),
    ]
    img = np.where(layer > 127, 4095, img)
    return np.rint(img).astype(np.uint16)[np.newaxis], boxes


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("order", ["<", ">"])
def test_core_window_detects_what_numpy_did(backend: str, photometric: str, order: str) -> None:
    img, boxes = _radiograph(3)
    arr = img.astype(f"{order}u2")
    grey = grey_frames(arr, bits_stored=12, photometric=photometric)
    ref = _to_u8_reference(img, 12, False)
    if photometric == "MONOCHROME1":
        ref = 255 - ref
    np.testing.assert_array_equal(grey, ref)
    det = TextDetector()
    got = det.detect(grey)
    assert got == det.detect(ref)
    for r0, r1, c0, c1 in boxes:
        assert any(
            d.masked and d.row0 <= r0 and d.row1 >= r1 and d.col0 <= c0 and d.col1 >= c1
            for d in got
        ), (r0, r1, c0, c1)


def test_flat_radiograph_has_no_lines() -> None:
    # A frame that is flat after clipping to BitsStored (all samples above 4095) maps to
    # zeros: nothing to find, and the cleaner's fail-closed rules then apply.
    img = np.full((1, 200, 300), 5000, dtype=np.uint16)
    img[0, 50:60, 50:200] = 4500
    grey = grey_frames(img, bits_stored=12)
    assert not grey.any()
    assert TextDetector().detect(grey) == []
