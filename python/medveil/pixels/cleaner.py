"""Pixel-side de-identification: blank burned-in text by device rules, clear hidden bits.

:class:`PixelCleaner` implements the pixel half of the PS3.15 Clean Pixel Data and Clean
Graphics options. The de-identification engine calls :meth:`PixelCleaner.clean` on each
dataset *before* it changes header values, so rule conditions see the original Manufacturer,
Modality and so on. It fails closed: a file it cannot clean for sure raises
:class:`~medveil.errors.QuarantineError` with the reason.

Native transfer syntaxes are cleaned on the raw PixelData bytes (one copy, the C++ kernels,
one write back); encapsulated ones are decoded through pydicom's pixel handlers (the
``[codecs]`` extra), masked, and re-encoded losslessly to the original syntax when it was
lossless and an encoder is installed, otherwise written as Explicit VR Little Endian.
Files that need no change keep their PixelData object untouched. Clean Graphics clears
bits above BitsStored in every syntax: a compressed file is decoded for it only when a
frame's codestream declares more bits than BitsStored (:func:`codestream_depth`), or
stores whole bytes (RLE), or cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from medveil.dicom.peek import peek
from medveil.dicom.pixelbytes import JPEG_SYNTAXES
from medveil.dicom.pydicom_private import element, elements
from medveil.errors import QuarantineError
from medveil.pixels.masking import fix_unused_bits, mask_regions
from medveil.pixels.rules import PixelRule, RuleSet, parse_attr
from medveil.pixels.sidebytes import clean_side_bytes
from medveil.pixels.text.detect import (
    PIXEL_TEXT_MODES,
    Detection,
    TextDetector,
    frame_runs,
    screen_input,
)
from medveil.pixels.text.match import Identifiers

if TYPE_CHECKING:
    from pydicom.pixels.decoders.base import Decoder

PIXEL_DATA_TAG = BaseTag(0x7FE00010)

#: (row0, row1, col0, col1, frame0, frame1), half-open, clipped to the image.
Region6 = tuple[int, int, int, int, int, int]

NATIVE_LITTLE = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)
NATIVE_BIG = frozenset({ExplicitVRBigEndian})

#: Lossless syntaxes we can write back as they came, with the pydicom encoding plugin to use.
REENCODERS: dict[str, str] = {
    RLELossless: "",  # pydicom's own RLE encoder or pylibjpeg-rle, whichever is there
    JPEGLSLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
}

#: Lossless syntaxes with no encoder in reach (they go out as Explicit VR Little Endian).
LOSSLESS_NO_ENCODER = frozenset(
    {
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    }
)

#: Syntaxes that are (or may be) lossy, and the method code PS3.3 C.7.6.1.1.5 gives them.
LOSSY_METHOD: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG Extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000 (lossy allowed)
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",  # HTJ2K (lossy allowed)
}
#: Of those, the ones that are always lossy whatever the header says.
ALWAYS_LOSSY = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})

#: SOP classes whose images typically carry burned-in text (PS3.4 storage SOP classes):
#: ultrasound, secondary captures (screen and document captures), video/visible light and
#: ophthalmic photography.
BURNED_IN_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.6.1": "US Image",
    "1.2.840.10008.5.1.4.1.1.6": "US Image (retired)",
    "1.2.840.10008.5.1.4.1.1.3.1": "US Multi-frame Image",
    "1.2.840.10008.5.1.4.1.1.3": "US Multi-frame Image (retired)",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit SC Image",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte SC Image",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word SC Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color SC Image",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL Microscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "Video Microscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic Image",
    # Fundus cameras print the patient's name and ID on the photograph, and still write
    # Burned In Annotation NO (Type 1 in the Ophthalmic Photography Image module).
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.5": "Wide Field Ophthalmic Photography Stereographic",
    "1.2.840.10008.5.1.4.1.1.77.1.5.6": "Wide Field Ophthalmic Photography 3D Coordinates",
}
#: Modalities that typically carry burned-in text whatever their SOP class.
BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "XC", "ES", "GM", "DOC", "SC", "OP"})
#: Classes that often carry burned-in text too (angiography and fluoroscopy runs with the
#: patient's name in a corner) but that a device rule alone is not required for: in
#: ``pixel_text = "auto"`` they are screened, in "rules" they are released as rules leave
#: them, as before.
SCREENED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image",
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA Image",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic Image",
    "1.2.840.10008.5.1.4.1.1.12.2.1": "Enhanced XRF Image",
    "1.2.840.10008.5.1.4.1.1.12.3": "X-Ray Angiographic Bi-Plane Image (retired)",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",  # no pixels: listed for the record
}
SCREENED_MODALITIES = frozenset({"XA", "RF"})


@dataclass
class PixelReport:
    """What :meth:`PixelCleaner.clean` did to one dataset."""

    rules_fired: list[str] = field(default_factory=list)
    regions: list[Region6] = field(default_factory=list)
    hidden_bits_cleared: bool = False
    transfer_syntax_in: str = ""
    transfer_syntax_out: str = ""
    reencoded: bool = False
    source: str = ""
    notes: list[str] = field(default_factory=list)
    detected: list[Detection] = field(default_factory=list)  # burned-in text detection
    #: What was removed from beside the image (metadata segments, trailing bytes).
    stripped: list[str] = field(default_factory=list)
    #: True when text detection looked at this file's pixels.
    screened: bool = False
    #: True when PS3.15's Clean Pixel Data option holds for this file (see
    #: :func:`burned_in_annotation`); False for files without pixel data, and for files
    #: that may keep burned-in text because the policy allows unmatched annotation.
    clean_pixel_data: bool = False

    @property
    def modified(self) -> bool:
        """True when the pixel data was rewritten."""
        return (
            bool(self.regions) or self.hidden_bits_cleared or self.reencoded or bool(self.stripped)
        )

    def record(self, path: str) -> dict[str, object]:
        """A JSON-ready line for ``OUTPUT/.medveil/pixels.jsonl`` (read by ``medveil qa``).

        ``path`` is the output file's path relative to OUTPUT; ``source`` (the input name,
        which may hold PHI) is deliberately left out.
        """
        return {
            "path": path,
            "rules": list(self.rules_fired),
            "regions": [list(r) for r in self.regions],
            "hidden_bits_cleared": self.hidden_bits_cleared,
            "transfer_syntax_in": str(self.transfer_syntax_in),
            "transfer_syntax_out": str(self.transfer_syntax_out),
            "reencoded": self.reencoded,
            "stripped": list(self.stripped),
            "notes": list(self.notes),
            "detected": [d.record() for d in self.detected],
            "screened": self.screened,
            "clean_pixel_data": self.clean_pixel_data,
        }


def says_burned_in(ds: pydicom.Dataset) -> bool:
    """True unless Burned In Annotation is absent, empty or exactly NO (fail closed).

    PS3.3 defines YES and NO only. Anything else (``yes``, ``Y``, ``TRUE``, several values
    such as ``YES\\NO``) may come from a device that does burn text in, so it is read as
    YES: the file is screened or held back, never released on the strength of it.
    """
    return _not_no(_get(ds, "BurnedInAnnotation", None))


def specimen_label_reason(ds: pydicom.Dataset) -> str | None:
    """Why ``ds`` shows a slide's specimen label in its pixels, or None (whole slide images).

    A LABEL image (Image Type value 3) is a photograph of the label, and Specimen Label in
    Image (0048,0010) other than NO says an overview or label image shows it: the patient's
    name and ID, the accession number, often as a barcode or handwritten, whatever Burned
    In Annotation says (scanners write NO there for the label).
    """
    if _not_no(_get(ds, "SpecimenLabelInImage", None)):
        return "SpecimenLabelInImage is not NO"
    image_type = _get(ds, "ImageType", None)
    if isinstance(image_type, (bytes, bytearray)):
        values = bytes(image_type).decode("latin-1").split("\\")
    elif isinstance(image_type, str):
        values = image_type.split("\\")
    elif isinstance(image_type, (list, tuple, MultiValue)):
        values = [str(v) for v in image_type]
    else:
        values = []
    if len(values) >= 3 and values[2].strip(" \x00").upper() == "LABEL":
        return "ImageType says LABEL (a photograph of the slide label)"
    return None


def _not_no(value: object) -> bool:
    """True unless a YES/NO flag's value is absent, empty or exactly NO (fail closed)."""
    if value is None:
        return False
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("latin-1")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip(" \x00")
    return text not in ("", "NO")


def _burned_in_reason(ds: pydicom.Dataset) -> str:
    """How the reason names the flag; an unusual value is not repeated (it is file text)."""
    value = _get(ds, "BurnedInAnnotation", None)
    if isinstance(value, str) and value.strip(" \x00") == "YES":
        return "BurnedInAnnotation is YES"
    return "BurnedInAnnotation is not NO (a value other than YES or NO is read as YES)"


def burned_in_reasons(ds: pydicom.Dataset) -> list[str]:
    """Say why ``ds`` probably has text burned into its pixels (empty when no reason).

    BurnedInAnnotation = NO does not clear a class-based reason: devices of these classes
    are known to set it wrongly, and quarantine is the safe side.
    """
    reasons = []
    if says_burned_in(ds):
        reasons.append(_burned_in_reason(ds))
    label = specimen_label_reason(ds)
    if label:
        reasons.append(label)
    sop = str(_get(ds, "SOPClassUID", ""))
    if sop in BURNED_IN_SOP_CLASSES:
        reasons.append(f"SOP class {BURNED_IN_SOP_CLASSES[sop]} typically has burned-in text")
    modality = str(_get(ds, "Modality", "")).strip().upper()
    if modality in BURNED_IN_MODALITIES:
        reasons.append(f"modality {modality} typically has burned-in text")
    return reasons


def text_classes(ds: pydicom.Dataset, burned_in: list[str] | None = None) -> list[str]:
    """Why ``pixel_text = "auto"`` screens ``ds`` for burned-in text (empty: rules only).

    The classes of :func:`burned_in_reasons` (US, SC, visible light and video, documents,
    BurnedInAnnotation YES) plus angiography and fluoroscopy. ``burned_in``: those
    reasons when the caller already has them (not changed here).
    """
    reasons = burned_in_reasons(ds) if burned_in is None else list(burned_in)
    sop = str(_get(ds, "SOPClassUID", ""))
    if sop in SCREENED_SOP_CLASSES:
        reasons.append(f"SOP class {SCREENED_SOP_CLASSES[sop]} often has burned-in text")
    modality = str(_get(ds, "Modality", "")).strip().upper()
    if modality in SCREENED_MODALITIES:
        reasons.append(f"modality {modality} often has burned-in text")
    return reasons


def burned_in_annotation(report: PixelReport) -> str | None:
    """The Burned In Annotation (0028,0301) value to write after cleaning; None: leave it.

    PS3.15 E.3.1 (Clean Pixel Data Option): the attribute "shall be added to the Dataset
    with a value of NO". Table E.1-1 has no row for (0028,0301), so the profile itself
    never changes it. "NO" is returned only when the option holds for this file
    (``report.clean_pixel_data``): the pixels were cleaned by a rule or screened by text
    detection, or the file is of a class that does not carry burned-in text and does not
    say it does. A file let through by ``allow_unmatched_burned_in`` with nothing masked
    keeps its value (YES stays YES), and its De-identification Method Code Sequence must
    then not list 113101 (see :func:`deidentification_codes`).
    """
    return "NO" if report.clean_pixel_data else None


#: PS3.16 CID 7050 code of the option (DCM scheme).
CLEAN_PIXEL_DATA_CODE = ("113101", "DCM", "Clean Pixel Data Option")


def deidentification_codes(report: PixelReport | None) -> list[tuple[str, str, str]]:
    """The pixel side's items for the De-identification Method Code Sequence (0012,0064).

    [(113101, DCM, Clean Pixel Data Option)] when the option holds for the file, else [].
    """
    return [CLEAN_PIXEL_DATA_CODE] if report is not None and report.clean_pixel_data else []


def _transfer_syntax(ds: pydicom.Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(ts)
    # A dataset without file meta: fall back to how it was read, as pydicom records it in
    # (implicit VR, little endian); one built in memory is taken as implicit little endian.
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        return ExplicitVRBigEndian
    return ExplicitVRLittleEndian if implicit is False else ImplicitVRLittleEndian


def _pixel_bytes(ds: pydicom.Dataset) -> bytes | memoryview:
    """The Pixel Data value; a raw element's bytes as they are (pydicom would return them too)."""
    elem = element(ds, PIXEL_DATA_TAG)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, (bytes, memoryview)):
        return elem.value
    return ds.PixelData  # type: ignore[no-any-return]


def _get(ds: pydicom.Dataset, kw: str, default: object = None) -> object:
    # Looking must not decode the element in place, or the writer has to re-encode it.
    tag = tag_for_keyword(kw)
    return default if tag is None else peek(ds, tag, default)


def _int(ds: pydicom.Dataset, kw: str, default: int | None = None) -> int:
    v = _get(ds, kw, default)
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = v[0] if len(v) else default  # type: ignore[index,arg-type]
    if v is None or v == "":
        if default is None:
            raise QuarantineError(f"{kw} is missing; cannot locate the pixels to clean")
        return default
    # The reason names the element and why; the value itself is quoted last, so that the
    # records (which blank quoted file values) keep the rest of the sentence.
    where = f"{kw} {BaseTag(tag_for_keyword(kw) or 0)}"
    if not isinstance(v, (int, float, str, bytes)):
        raise QuarantineError(
            f"{where} is not a whole number but a {type(v).__name__}, so the pixel layout "
            "is unknown and the pixels cannot be cleaned"
        )
    try:
        return int(v)
    except (TypeError, ValueError) as exc:
        raise QuarantineError(
            f"{where} is not a whole number, so the pixel layout is unknown and the pixels "
            f"cannot be cleaned (value {v!r})"
        ) from exc


@dataclass(frozen=True)
class _Geometry:
    frames: int
    rows: int
    cols: int
    samples: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    signed: bool
    planar: bool
    photometric: str

    @classmethod
    def of(cls, ds: pydicom.Dataset) -> _Geometry:
        """The image geometry of ds; QuarantineError when it has none that makes sense.

        A series repeats the same attributes file after file: a geometry read from raw
        elements is kept by their exact fields (bounded), so the next file's costs a
        lookup, not ten conversions.
        """
        key = _geometry_key(ds)
        if key is not None:
            hit = _GEOMETRIES.get(key)
            if hit is not None:
                return hit
        geo = cls._read(ds)
        if key is not None:
            if len(_GEOMETRIES) >= 1024:
                _GEOMETRIES.clear()
            _GEOMETRIES[key] = geo
        return geo

    @classmethod
    def _read(cls, ds: pydicom.Dataset) -> _Geometry:
        ba = _int(ds, "BitsAllocated")
        bs = _int(ds, "BitsStored", ba)
        spp = _int(ds, "SamplesPerPixel", 1)
        geo = cls(
            frames=max(1, _int(ds, "NumberOfFrames", 1)),
            rows=_int(ds, "Rows"),
            cols=_int(ds, "Columns"),
            samples=spp,
            bits_allocated=ba,
            bits_stored=bs,
            high_bit=_int(ds, "HighBit", bs - 1),
            signed=_int(ds, "PixelRepresentation", 0) == 1,
            planar=spp > 1 and _int(ds, "PlanarConfiguration", 0) == 1,
            photometric=str(_get(ds, "PhotometricInterpretation", "")).strip().upper(),
        )
        if geo.rows <= 0 or geo.cols <= 0 or spp <= 0:
            raise QuarantineError(f"image of {geo.rows} x {geo.cols} x {spp} has no pixels")
        if not 1 <= bs <= ba:
            raise QuarantineError(f"BitsStored {bs} is outside 1..BitsAllocated ({ba})")
        return geo

    @property
    def subsampled(self) -> bool:
        """True for 4:2:2 YBR, stored as Y Y Cb Cr per pair of pixels."""
        return self.photometric in ("YBR_FULL_422", "YBR_PARTIAL_422")

    def dtype(self, big_endian: bool = False) -> np.dtype:
        if self.bits_allocated not in (8, 16, 32):
            raise QuarantineError(
                f"BitsAllocated {self.bits_allocated} is not supported for pixel cleaning"
            )
        dt = np.dtype(f"{'i' if self.signed else 'u'}{self.bits_allocated // 8}")
        out: np.dtype = dt.newbyteorder(">" if big_endian else "<")
        return out

    def shape(self) -> tuple[int, ...]:
        if self.subsampled:
            return (self.frames, self.rows, self.cols // 2, 4)
        if self.samples == 1:
            return (self.frames, self.rows, self.cols)
        if self.planar:
            return (self.frames, self.samples, self.rows, self.cols)
        return (self.frames, self.rows, self.cols, self.samples)

    def nbytes(self) -> int:
        return int(np.prod(self.shape())) * (self.bits_allocated // 8)


# What _Geometry._read reads (the character set too: a value pydicom decodes uses it).
_GEOMETRY_TAGS = tuple(
    BaseTag(tag_for_keyword(kw) or 0)
    for kw in (
        "BitsAllocated",
        "BitsStored",
        "SamplesPerPixel",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PhotometricInterpretation",
        "SpecificCharacterSet",
    )
)
_GEOMETRIES: dict[tuple[object, ...], _Geometry] = {}
_CHARSET = BaseTag(0x00080005)


def _geometry_key(ds: pydicom.Dataset) -> tuple[object, ...] | None:
    """The exact raw fields _Geometry._read depends on, or None when one is not raw bytes."""
    store = elements(ds)
    key: list[object] = [pydicom.config.settings.reading_validation_mode]
    for tag in _GEOMETRY_TAGS:
        elem = store.get(tag)
        if elem is None:
            key.append(None)
            continue
        if tag == _CHARSET and not isinstance(elem, RawDataElement):
            # pydicom decodes the character set as soon as any text is read: by its value.
            value = elem.value
            key.append(
                ("decoded", tuple(value) if isinstance(value, (list, MultiValue)) else value)
            )
            continue
        if not isinstance(elem, RawDataElement) or type(elem.value) is not bytes:
            return None  # decoded already, or a view: read it as it is
        key.append((elem.VR, elem.is_implicit_VR, elem.is_little_endian, elem.value))
    return tuple(key)


def _clip_regions(rules: list[PixelRule], geo: _Geometry) -> dict[int, list[Region6]]:
    """Resolve every rule rectangle to image coordinates, grouped by fill value."""
    out: dict[int, list[Region6]] = {}
    for rule in rules:
        for r0, r1, c0, c1, f0, f1 in rule.regions:
            reg = (
                min(r0, geo.rows),
                min(r1, geo.rows),
                min(c0, geo.cols),
                min(c1, geo.cols),
                min(f0, geo.frames),
                geo.frames if f1 is None else min(f1, geo.frames),
            )
            if reg[0] < reg[1] and reg[2] < reg[3] and reg[4] < reg[5]:
                out.setdefault(rule.fill, []).append(reg)
    return out


def _check_fill(fill: int, geo: _Geometry) -> None:
    bs = geo.bits_stored
    lo, hi = (-(1 << (bs - 1)), (1 << (bs - 1)) - 1) if geo.signed else (0, (1 << bs) - 1)
    if not lo <= fill <= hi:
        raise QuarantineError(
            f"fill value {fill} does not fit {bs}-bit {'signed' if geo.signed else 'unsigned'} "
            "pixels; fix the rule's 'fill'"
        )


def _fix_bits_8(arr: np.ndarray, bits_stored: int, signed: bool) -> None:
    # The core kernel covers 16/32-bit samples; 8-bit with BitsStored < 8 is rare, do it here.
    shift = 8 - bits_stored
    if signed:
        v = arr.view(np.int8)
        np.right_shift(np.left_shift(v, shift), shift, out=v)
    else:
        np.bitwise_and(arr, (1 << bits_stored) - 1, out=arr)


def _has_hidden_bits(arr: np.ndarray, geo: _Geometry) -> bool:
    """True when some sample has bits above BitsStored that are not zero / sign copies.

    A sample's unused bits are all zero (unsigned) or all copies of bit BitsStored-1 (signed)
    exactly when its value lies in the BitsStored range, so two read-only reductions tell,
    with no copy of the pixels.
    """
    if arr.size == 0:
        return False
    bs = geo.bits_stored
    lo, hi = (-(1 << (bs - 1)), (1 << (bs - 1)) - 1) if geo.signed else (0, (1 << bs) - 1)
    return bool(arr.max() > hi or (geo.signed and arr.min() < lo))


def _apply(
    arr: np.ndarray,
    groups: dict[int, list[Region6]],
    geo: _Geometry,
    *,
    planar: bool,
    subsampled: bool,
) -> list[Region6]:
    """Mask ``arr`` (in the kernel's layout) and return the regions as pixel coordinates."""
    done: list[Region6] = []
    for fill, regs in groups.items():
        _check_fill(fill, geo)
        if subsampled:
            # Each Y Y Cb Cr quadruple covers two pixels: widen to whole pairs, never narrower.
            regs = [
                (a, b, c // 2 * 2, min(geo.cols, (d + 1) // 2 * 2), e, f)
                for a, b, c, d, e, f in regs
            ]
            kernel = [(a, b, c // 2, d // 2, e, f) for a, b, c, d, e, f in regs]
        else:
            kernel = regs
        mask_regions(arr, kernel, fill, planar=planar)
        done.extend(regs)
    return done


def _byte_spans(regs: list[Region6], geo: _Geometry, itemsize: int) -> np.ndarray:
    """Byte ranges [start, stop) of the samples inside ``regs``, sorted and merged."""
    s = geo.samples
    if geo.planar:
        plane = geo.rows * geo.cols * itemsize
        frame, row, px, planes = s * plane, geo.cols * itemsize, itemsize, range(s)
    else:
        frame = geo.rows * geo.cols * s * itemsize
        row, px, planes, plane = geo.cols * s * itemsize, s * itemsize, range(1), 0
    chunks = []
    for r0, r1, c0, c1, f0, f1 in regs:
        fr = np.arange(f0, f1, dtype=np.int64)[:, None, None] * frame
        pl = np.array(planes, dtype=np.int64)[None, :, None] * plane
        if c0 == 0 and c1 == geo.cols:
            rows = np.array([r0], dtype=np.int64)[None, None, :] * row  # whole rows: one span
            length = (r1 - r0) * row
        else:
            rows = np.arange(r0, r1, dtype=np.int64)[None, None, :] * row
            length = (c1 - c0) * px
        starts = (fr + pl + rows).ravel() + c0 * px
        chunks.append(np.stack([starts, starts + length], axis=1))
    spans = np.concatenate(chunks)
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    # Merge overlapping or touching spans: a new group starts where a start passes every
    # earlier stop.
    reach = np.maximum.accumulate(spans[:, 1])
    new = np.ones(len(spans), dtype=bool)
    new[1:] = spans[1:, 0] > reach[:-1]
    idx = np.flatnonzero(new)
    ends = np.append(reach[idx[1:] - 1], reach[-1])
    return np.stack([spans[idx, 0], ends], axis=1)


def _splice(
    raw: bytes | memoryview, groups: dict[int, list[Region6]], geo: _Geometry, dt: np.dtype
) -> tuple[list[Region6], bytes]:
    """Return the regions and ``raw`` with every region's samples set to its fill value."""
    done: list[Region6] = []
    out = raw if isinstance(raw, bytes) else bytes(raw) if not groups else b""
    src_buf: bytes | memoryview = raw
    for fill, regs in groups.items():
        _check_fill(fill, geo)
        spans = _byte_spans(regs, geo, dt.itemsize)
        longest = int((spans[:, 1] - spans[:, 0]).max())
        pattern = memoryview(np.full(longest // dt.itemsize, fill, dtype=dt).tobytes())
        src = memoryview(src_buf)
        pieces: list[memoryview] = []
        pos = 0
        for a, b in spans.tolist():
            pieces.append(src[pos:a])
            pieces.append(pattern[: b - a])
            pos = b
        pieces.append(src[pos:])
        out = src_buf = b"".join(pieces)
        done.extend(regs)
    return done, out


#: Transfer syntaxes whose frames are ISO 15444 (JPEG 2000 / HTJ2K) codestreams.
J2K_FAMILY = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)
#: JPEG start-of-frame markers (ISO 10918-1 B.1.1.3) and JPEG-LS SOF55 (ISO 14495-1).
_JPEG_SOF = frozenset(
    {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF, 0xF7}
)


def _jpeg_depth(data: bytes | memoryview) -> int | None:
    """Sample precision of a JPEG / JPEG-LS codestream's frame header; None: cannot tell.

    The markers up to the first scan are walked. A JPEG-LS preset (LSE id 1) declares a
    MAXVAL, which bounds the samples too; mapping tables (LSE ids 2 and 3, or a table
    selected in the scan header), which widen decoded samples, a hierarchical frame (DHP),
    or anything malformed give None, and the caller decodes.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i, depth, maxval, jls, components = 2, 0, 0, False, 0
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            i += 2
            continue
        if marker in (0xD8, 0xD9, 0xDE):  # a second SOI, EOI before any scan, DHP
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        body = data[i + 4 : i + 2 + length]
        if marker == 0xDA:  # SOS: the frame header came before it
            if not depth:
                return None
            if jls:
                # JPEG-LS scan header: Ns, then (Ci, Tmi) per component; Tm != 0 maps the
                # samples through a table. A scan of fewer components than the frame is
                # followed by others, whose headers and presets are not read here.
                ns = body[0] if body else 0
                if ns < components or len(body) < 1 + 2 * ns or any(body[2 : 1 + 2 * ns : 2]):
                    return None
            return max(depth, maxval.bit_length())
        if marker in _JPEG_SOF:
            if depth or len(body) < 6:
                return None  # two frame headers: not a plain codestream
            depth, jls, components = body[0], marker == 0xF7, body[5]
        elif marker == 0xF8:  # JPEG-LS LSE
            if len(body) < 1 or body[0] != 1 or len(body) < 3:
                return None  # mapping tables or an unknown extension
            maxval = max(maxval, (body[1] << 8) | body[2])
        i += 2 + length
    return None


def _jp2_codestream(data: bytes | memoryview) -> bytes | memoryview:
    """The contiguous codestream box (jp2c) of a JP2 file; empty when there is none."""
    pos, n = 0, len(data)
    while pos + 8 <= n:
        size = int.from_bytes(data[pos : pos + 4], "big")
        head = 8
        if size == 1 and pos + 16 <= n:  # a 64-bit box length follows the type
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:  # the last box runs to the end
            size = n - pos
        if bytes(data[pos + 4 : pos + 8]) == b"jp2c":
            return data[pos + head : pos + size]
        if size < head:
            break
        pos += size
    return b""


def _j2k_depth(data: bytes | memoryview, signed: bool) -> int | None:
    """Largest component precision of a JPEG 2000 codestream's SIZ segment; None: cannot tell.

    A component whose signedness differs from PixelRepresentation counts one bit deeper
    (unsigned samples read as signed need a bit more), and a signed one under an unsigned
    header gives None: its negative samples come back with the high bits set.
    """
    if bytes(data[:8]) == b"\x00\x00\x00\x0c\x6a\x50\x20\x20":
        data = _jp2_codestream(data)  # a JP2 file (not conformant in DICOM, but seen)
    if len(data) < 42 or bytes(data[:4]) != b"\xff\x4f\xff\x51":
        return None  # no codestream where one should be: decode to be sure
    lsiz = (data[4] << 8) | data[5]
    if data[6] & 0x80:
        return None  # Part 2 extensions (Rsiz bit 15) may transform the samples
    csiz = (data[40] << 8) | data[41]
    if csiz == 0 or lsiz != 38 + 3 * csiz or len(data) < 42 + 3 * csiz:
        return None
    depth = 0
    for k in range(csiz):
        ssiz = data[42 + 3 * k]
        is_signed = bool(ssiz & 0x80)
        if is_signed and not signed:
            return None
        depth = max(depth, (ssiz & 0x7F) + 1 + (is_signed != signed))
    return depth


def codestream_depth(
    ts: str, pixel_data: bytes | memoryview, frames: int, signed: bool = False
) -> int | None:
    """The largest sample depth any frame's codestream declares; None when it cannot be read.

    Frames are split as pydicom's decoders split them (Basic Offset Table, or one frame per
    fragment / the whole run when it has none), and every fragment that itself starts
    with a codestream is read too, so no split a reader could make is left out. Only the
    JPEG, JPEG-LS and JPEG 2000 families have a depth to read; other syntaxes give None.
    """
    from pydicom.encaps import generate_fragmented_frames, generate_fragments

    read: Callable[[bytes], int | None]
    if ts in JPEG_SYNTAXES:
        read, magic = _jpeg_depth, b"\xff\xd8"
    elif ts in J2K_FAMILY:
        read, magic = (lambda head: _j2k_depth(head, signed)), b"\xff\x4f"
    else:
        return None
    buf = bytes(pixel_data)  # pydicom's parsers read bytes or a file, not a memoryview
    try:
        heads: list[bytes] = []
        for parts in generate_fragmented_frames(buf, number_of_frames=frames):
            # A header cut across fragments is read from the whole frame.
            heads.append(parts[0] if read(parts[0]) is not None else b"".join(parts))
        if len(heads) < frames:
            return None
        # generate_fragments starts at the Basic Offset Table item: skip it.
        heads.extend(f for f in islice(generate_fragments(buf), 1, None) if f[:2] == magic)
    except Exception:
        return None
    depths = [read(h) for h in heads]
    if not depths or any(d is None for d in depths):
        return None
    return max(cast("list[int]", depths))


def _as_array(
    decoder: Decoder, ds: pydicom.Dataset, **options: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """``decoder.as_array(ds, **options)``; pydicom annotates each option as a whole
    DecodeOptions mapping, so the call is typed here once."""
    as_array = cast("Callable[..., tuple[np.ndarray, dict[str, Any]]]", decoder.as_array)
    return as_array(ds, **options)


@contextmanager
def _bytes_pixel_data(ds: pydicom.Dataset) -> Iterator[None]:
    """Let pydicom decode a Pixel Data value held as a memoryview (the raw-byte engine's).

    pydicom's encapsulated-frame parser wraps a non-bytes value in nothing and calls
    ``.read`` on it (issue 19 item 1: ``AttributeError: 'memoryview' object has no
    attribute 'read'``), so the compressed bytes are copied for the decode (they are small
    next to the decoded frames) and the original element is put back afterwards, so the
    caller still sees its own, untouched, object.
    """
    elem = element(ds, PIXEL_DATA_TAG)
    if not (isinstance(elem, RawDataElement) and isinstance(elem.value, memoryview)):
        yield
        return
    elements(ds)[elem.tag] = elem._replace(value=bytes(elem.value))
    try:
        yield
    finally:
        elements(ds)[elem.tag] = elem


def _write_native(ds: pydicom.Dataset, arr: np.ndarray, photometric: str) -> None:
    """Store decoded pixels as Explicit VR Little Endian, interleaved, header to match."""
    data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\x00"
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in ds:
            del ds[kw]  # they describe encapsulated frames only
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = data
    elem = ds["PixelData"]
    elem.VR = "OB" if arr.dtype.itemsize == 1 else "OW"
    elem.is_undefined_length = False
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = arr.dtype.itemsize * 8
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        ds.PlanarConfiguration = 0


#: Top-level attributes :meth:`PixelCleaner.clean` (with the rules it runs) and
#: :func:`medveil.dicom.io.check_pixel_length` read besides the rules' own attributes and
#: the pixel elements, when no rule fires and no detector runs: burned-in annotation, the
#: classes, the geometry, the character set the values decode with.
VERDICT_KEYWORDS = (
    "BurnedInAnnotation",
    # A slide's label (specimen_label_reason): a LABEL image of a series whose VOLUME
    # images were released must not reuse their verdict.
    "SpecimenLabelInImage",
    "ImageType",
    "SOPClassUID",
    "Modality",
    "SpecificCharacterSet",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PlanarConfiguration",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
)
#: Elements whose presence alone changes clean()'s course (float pixels are checked
#: against the file's identity, offset tables describe encapsulated frames).
VERDICT_PRESENCE = (0x7FE00008, 0x7FE00009, 0x7FE00001, 0x7FE00002)


@dataclass(frozen=True)
class PlainVerdict:
    """What clean() made of a file whose pixels it left alone, reusable for its series.

    Everything but the samples' hidden bits follows from the file's verdict attributes
    (:meth:`PixelCleaner.verdict_tags`) and its Pixel Data length: a file with the same
    ones gets the same report unless its samples have bits above BitsStored (``check``).
    """

    transfer_syntax: str
    clean_pixel_data: bool
    #: (dtype, bytes, shape, geometry) of the hidden-bits check; None when none is made.
    check: tuple[np.dtype, int, tuple[int, ...], _Geometry] | None


class PixelCleaner:
    """Blank burned-in text by device rules and/or detection, clear hidden overlay bits.

    ``pixel_text`` is "rules" (device rules only), "detect" (text detection only),
    "detect+rules" (both) or "auto" (both on the classes :func:`text_classes` names, rules
    only on the rest); ``text_mask`` is "all-text" or "identifiers" (see
    :mod:`medveil.pixels.text.detect`).
    """

    #: See :data:`VERDICT_PRESENCE`.
    verdict_presence = VERDICT_PRESENCE

    def __init__(
        self,
        rules: RuleSet | None = None,
        *,
        allow_unmatched_burned_in: bool = False,
        clean_graphics: bool = True,
        pixel_text: str = "rules",
        text_mask: str = "all-text",
        detector: TextDetector | None = None,
    ) -> None:
        """Use ``rules`` (default: the shipped CTP-derived set); fail closed unless allowed."""
        if pixel_text not in PIXEL_TEXT_MODES:
            raise ValueError(f"pixel_text must be one of {PIXEL_TEXT_MODES}, got {pixel_text!r}")
        self.rules = RuleSet.default() if rules is None else rules
        self.allow_unmatched_burned_in = allow_unmatched_burned_in
        self.clean_graphics = clean_graphics
        self.pixel_text = pixel_text
        self.use_rules = pixel_text != "detect"
        if detector is None and pixel_text != "rules":
            detector = TextDetector(text_mask)  # type: ignore[arg-type]
        self.detector = detector if pixel_text != "rules" else None
        self._verdict_tags: tuple[RuleSet, frozenset[int]] | None = None

    def clean(self, ds: pydicom.Dataset, *, source: str = "") -> PixelReport:
        """Clean pixel data of ds in place (masks, hidden bits).

        Raises :class:`medveil.errors.QuarantineError` (with the reason) when it cannot be sure.
        """
        ts = _transfer_syntax(ds)
        report = PixelReport(transfer_syntax_in=ts, transfer_syntax_out=ts, source=source)
        fired = self.rules.matching(ds) if self.use_rules else []
        report.rules_fired = [r.id for r in fired]
        has_pixels = "PixelData" in ds
        # Before anything decodes the frames: metadata beside the image never reaches the
        # output, whatever else happens to the pixels (issue 18, F1/F2).
        side_error: QuarantineError | None = None
        try:
            report.stripped = clean_side_bytes(ds, ts)
        except QuarantineError as exc:
            # Said after the pixel work: its own reason (a header that does not describe
            # the pixels, an undecodable frame) comes first, and a frame rebuilt from its
            # decoded samples no longer holds what could not be parsed.
            side_error = exc
        if has_pixels:
            label = specimen_label_reason(ds)
            if label and not fired:
                # Text detection reads printed text; a label's barcode or handwriting holds
                # the same identity and is not text it finds. Only a rule that masks the
                # label where this scanner puts it can clean it.
                raise QuarantineError(
                    f"{label}: the specimen label's barcode or handwriting cannot be found "
                    "for sure; add a pixel rule masking the label for this scanner"
                )
            # Read once, before anything changes (the reasons and whether the option holds
            # depend on the input's attributes, which cleaning the pixels does not touch).
            reasons = burned_in_reasons(ds)
            detector = self._detector_for(ds, reasons)
            says_yes = says_burned_in(ds)
            expected = bool(reasons)
            self._clean(ds, ts, fired, detector, report, reasons)
            masked = bool(report.regions)
            report.clean_pixel_data = (
                masked if says_yes else masked or report.screened or not expected
            )
        if side_error is not None and not report.reencoded:
            raise side_error
        elif fired and ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds):
            raise QuarantineError(
                f"rule {fired[0].id} requires masking but float pixel data is not supported"
            )
        return report

    def verdict_tags(self) -> frozenset[int]:
        """The attributes whose raw values (with the Pixel Data length) decide a plain verdict.

        The rules' attributes (group 0002 ones are the file meta's) and
        :data:`VERDICT_KEYWORDS`; tests/native/test_verdict_cache.py records what clean()
        reads and checks that it is no more than these and :data:`VERDICT_PRESENCE`.
        """
        found = self._verdict_tags
        if found is None or found[0] is not self.rules:
            tags = {int(parse_attr(a)) for r in self.rules.rules for a in r.match.attrs()}
            tags.update(tag_for_keyword(kw) or 0 for kw in VERDICT_KEYWORDS)
            tags.add(0x00020010)  # Transfer Syntax UID
            found = self._verdict_tags = (self.rules, frozenset(tags))
        return found[1]

    def config(self) -> tuple[object, ...]:
        """The options a verdict depends on (a cache keyed by them never mixes cleaners)."""
        return (
            id(self.rules),
            self.allow_unmatched_burned_in,
            self.clean_graphics,
            self.pixel_text,
            self.use_rules,
            self.detector is None,
        )

    def plain_verdict(self, ds: pydicom.Dataset, report: PixelReport) -> PlainVerdict | None:
        """The verdict of clean(ds) (just made: ``report``) when it can be reused, else None.

        Only the plain case: native little-endian pixel data, no float pixels, no rule
        fired, no detection, nothing stripped, noted or changed.
        """
        plain = PixelReport(
            transfer_syntax_in=report.transfer_syntax_in,
            transfer_syntax_out=report.transfer_syntax_in,
            source=report.source,
            clean_pixel_data=report.clean_pixel_data,
        )
        ts = report.transfer_syntax_in
        if report != plain or ts not in NATIVE_LITTLE or "PixelData" not in ds:
            return None
        if any(element(ds, t) is not None for t in VERDICT_PRESENCE):
            return None
        if self._detector_for(ds) is not None:
            return None
        geo = _Geometry.of(ds)
        check = None
        if self._hidden_bits(geo) and geo.bits_allocated != 1:
            check = (geo.dtype(False), geo.nbytes(), geo.shape(), geo)
        return PlainVerdict(ts, report.clean_pixel_data, check)

    @staticmethod
    def clean_plain(
        verdict: PlainVerdict, pixel_data: bytes | memoryview, source: str = ""
    ) -> PixelReport | None:
        """clean()'s report for a file of this verdict; None when its samples need cleaning.

        ``pixel_data``: the file's Pixel Data value (its length is part of the verdict's key).
        """
        check = verdict.check
        if check is not None:
            dt, n, shape, geo = check
            view = np.frombuffer(pixel_data, dtype=dt, count=n // dt.itemsize).reshape(shape)
            if _has_hidden_bits(view, geo):
                return None
        ts = verdict.transfer_syntax
        return PixelReport(
            transfer_syntax_in=ts,
            transfer_syntax_out=ts,
            source=source,
            clean_pixel_data=verdict.clean_pixel_data,
        )

    def _detector_for(
        self, ds: pydicom.Dataset, reasons: list[str] | None = None
    ) -> TextDetector | None:
        """The detector to run on ``ds``: always, never, or by class in "auto" mode.

        ``reasons``: burned_in_reasons(ds), when the caller has it.
        """
        if self.pixel_text == "auto" and not text_classes(ds, reasons):
            return None
        return self.detector

    def _clean(
        self,
        ds: pydicom.Dataset,
        ts: UID,
        fired: list[PixelRule],
        detector: TextDetector | None,
        report: PixelReport,
        reasons: list[str] | None = None,
    ) -> None:
        """Mask, screen and clear hidden bits of a dataset with pixel data (see clean).

        ``reasons``: burned_in_reasons(ds) of the input, when the caller has it.
        """
        geo = _Geometry.of(ds)
        groups = _clip_regions(fired, geo)
        if fired and not groups:
            report.notes.append("matching rules' rectangles all lie outside the image")
        # Read before the header is de-identified (the engine cleans pixels first).
        ids = (
            Identifiers.from_dataset(ds)
            if detector is not None and detector.mask == "identifiers"
            else None
        )
        if detector is None and not groups and not self.allow_unmatched_burned_in:
            reasons = burned_in_reasons(ds) if reasons is None else reasons
            if reasons:
                raise QuarantineError(
                    "; ".join(reasons)
                    + ", and no pixel rule masks anything in this image; add a rule for this "
                    "device or allow unmatched burned-in annotation in the policy"
                )
        if ts in NATIVE_LITTLE or ts in NATIVE_BIG:
            self._clean_native(
                ds,
                geo,
                groups,
                big_endian=ts in NATIVE_BIG,
                report=report,
                ids=ids,
                detector=detector,
            )
        elif ts.is_transfer_syntax and ts.is_compressed:
            self._clean_encapsulated(ds, ts, geo, groups, report, ids, detector)
        else:
            raise QuarantineError(
                f"unknown transfer syntax {ts}; cannot tell how the pixels are stored"
            )

    # -- text detection ----------------------------------------------------------------------

    def _detect(
        self,
        ds: pydicom.Dataset,
        arr: np.ndarray | None,
        geo: _Geometry,
        groups: dict[int, list[Region6]],
        report: PixelReport,
        ids: Identifiers | None,
        detector: TextDetector,
    ) -> dict[int, list[Region6]]:
        """Add the masked text boxes of ``arr`` (kernel layout) to ``groups``; fail closed.

        A file that says BurnedInAnnotation YES, where neither a rule nor detection found
        any text, is quarantined unless the policy allows unmatched burned-in annotation;
        so is a file of a burned-in text class whose pixels cannot be screened (1-bit).
        """
        if arr is not None:
            # Interleaved 8-bit RGB goes to the screen as it is (luma is computed in the
            # core, a frame at a time); other layouts become a grey stack first.
            frames = screen_input(
                arr,
                planar=geo.planar,
                subsampled=geo.subsampled,
                photometric=geo.photometric,
                bits_stored=geo.bits_stored,
                signed=geo.signed,
            )
            report.detected = detector.detect(frames, ids)
            report.screened = True
        else:
            reasons = text_classes(ds)
            if reasons and not groups and not self.allow_unmatched_burned_in:
                raise QuarantineError(
                    "; ".join(reasons) + ", but text detection cannot screen 1-bit (packed) "
                    "pixels; add a rule for this device or allow unmatched burned-in "
                    "annotation in the policy"
                )
            report.notes.append("1-bit pixels are not screened for burned-in text")
        runs = frame_runs(report.detected)
        if runs:
            groups = {k: list(v) for k, v in groups.items()}
            groups.setdefault(0, []).extend(runs)
        if report.detected:
            masked = sum(d.masked for d in report.detected)
            report.notes.append(
                f"text detection: {len(report.detected)} line(s) found, {masked} masked"
            )
        elif not groups and not self.allow_unmatched_burned_in:
            if says_burned_in(ds):
                raise QuarantineError(
                    f"{_burned_in_reason(ds)}, but no pixel rule matched and text detection "
                    "found no text; add a rule for this device or allow unmatched burned-in "
                    "annotation in the policy"
                )
        return groups

    # -- native ------------------------------------------------------------------------------

    def _hidden_bits(self, geo: _Geometry) -> bool:
        if not self.clean_graphics or geo.bits_stored >= geo.bits_allocated:
            return False
        if geo.high_bit != geo.bits_stored - 1:
            raise QuarantineError(
                f"HighBit {geo.high_bit} with BitsStored {geo.bits_stored}: pixel values not "
                "aligned to bit 0 are not supported for Clean Graphics"
            )
        return True

    def _fix_bits(self, arr: np.ndarray, geo: _Geometry) -> None:
        if geo.bits_allocated == 8:
            _fix_bits_8(arr, geo.bits_stored, geo.signed)
        else:
            fix_unused_bits(arr, geo.bits_stored, geo.signed)

    def _clean_native(
        self,
        ds: pydicom.Dataset,
        geo: _Geometry,
        groups: dict[int, list[Region6]],
        *,
        big_endian: bool,
        report: PixelReport,
        ids: Identifiers | None = None,
        detector: TextDetector | None = None,
    ) -> None:
        want_bits = self._hidden_bits(geo)
        detecting = detector is not None
        if not groups and not want_bits and not detecting:
            return
        if geo.bits_allocated == 1:
            if groups:
                raise QuarantineError("masking 1-bit (packed) pixel data is not supported")
            if detector is not None:
                self._detect(ds, None, geo, groups, report, ids, detector)
            return
        if geo.subsampled and (geo.bits_allocated != 8 or geo.cols % 2):
            raise QuarantineError(f"{geo.photometric} needs 8-bit samples and an even width")
        raw = _pixel_bytes(ds)
        n = geo.nbytes()
        if len(raw) < n:
            raise QuarantineError(f"PixelData holds {len(raw)} bytes, the header implies {n}")
        dt = geo.dtype(big_endian)
        view = np.frombuffer(raw, dtype=dt, count=n // dt.itemsize).reshape(geo.shape())
        if detector is not None:
            groups = self._detect(ds, view, geo, groups, report, ids, detector)
        dirty_bits = want_bits and _has_hidden_bits(view, geo)
        if not groups and not dirty_bits:
            return  # nothing to change: PixelData stays the very same object
        if isinstance(raw, memoryview) and not raw.readonly:
            # PixelData is a view of the caller's writable input buffer: clean it in place
            # with the core's kernels, so a large image is never copied. Big-endian samples
            # are swapped to native order there for the kernels, and swapped back.
            native = dt.newbyteorder("=")
            inplace = np.frombuffer(raw, dtype=native, count=n // dt.itemsize)
            inplace = inplace.reshape(geo.shape())
            if inplace.flags.aligned and inplace.flags.writeable:
                swap = big_endian and native.itemsize > 1 and dt != native
                if swap:
                    inplace.byteswap(inplace=True)
                try:
                    if dirty_bits:
                        self._fix_bits(inplace, geo)
                        report.hidden_bits_cleared = True
                    if groups:
                        report.regions = _apply(
                            inplace, groups, geo, planar=geo.planar, subsampled=geo.subsampled
                        )
                finally:
                    if swap:
                        inplace.byteswap(inplace=True)
                return
        if not dirty_bits and not geo.subsampled:
            # Masks only: splice the fill into a copy of the original bytes, so the output
            # is built in a single pass (one allocation), whatever the size of the image.
            report.regions, out = _splice(raw, groups, geo, dt)
            ds.PixelData = out
            return
        # One aligned, writable, native-order copy for the kernels.
        arr = view.astype(dt.newbyteorder("="), copy=True)
        if dirty_bits:
            self._fix_bits(arr, geo)
            report.hidden_bits_cleared = True
        if groups:
            report.regions = _apply(arr, groups, geo, planar=geo.planar, subsampled=geo.subsampled)
        if not report.regions and not report.hidden_bits_cleared:
            return
        if big_endian:
            arr.byteswap(inplace=True)  # back to the file's byte order; arr is not used after
        out = arr.tobytes()
        ds.PixelData = out + raw[n:] if len(raw) > n else out  # keep a trailing pad byte

    # -- encapsulated ------------------------------------------------------------------------

    def _clean_encapsulated(
        self,
        ds: pydicom.Dataset,
        ts: UID,
        geo: _Geometry,
        groups: dict[int, list[Region6]],
        report: PixelReport,
        ids: Identifiers | None = None,
        detector: TextDetector | None = None,
    ) -> None:
        detecting = detector is not None
        if not groups and not detecting:
            if not self._hidden_bits(geo):
                return  # nothing to do: the compressed pixels stay byte-identical
            # Bits above BitsStored can hide an overlay in any syntax whose samples are
            # wider than BitsStored: RLE stores whole bytes, and a JPEG or JPEG 2000
            # codestream may be 16 bits deep under a 12-bit header. Decoding costs tens of
            # milliseconds a frame, reading each frame's declared depth microseconds, so
            # only a codestream deeper than BitsStored (or one we cannot read) is decoded.
            depth = codestream_depth(ts, _pixel_bytes(ds), geo.frames, geo.signed)
            if depth is not None and depth <= geo.bits_stored:
                return  # no sample can have a bit above BitsStored: byte-identical
        from pydicom.pixels.decoders.base import get_decoder

        lossy = ts in LOSSY_METHOD
        hint = "no decoder for this transfer syntax is available to medveil"
        try:
            decoder = get_decoder(ts)
            hint = "install medveil[codecs]"
            if not decoder.is_available:
                raise RuntimeError(f"no decoder plugin installed for {ts.name}")
            hint = "the data may be damaged or use a variant no installed decoder supports"
            # Lossy sources go out as RGB (what the issue asks for YBR_FULL_422); lossless ones
            # keep their colour space so that the values round-trip exactly.
            # Unused bits are left as stored so that Clean Graphics sees (and reports) them.
            with _bytes_pixel_data(ds):
                arr, meta = _as_array(decoder, ds, as_rgb=lossy, correct_unused_bits=False)
        except Exception as exc:
            # Why the pixels had to be decoded comes first, and the decoders' several-line
            # message is made one line: the records shorten long reasons at the end.
            why = (
                "a pixel rule requires masking"
                if groups
                else "text detection must look at the pixels"
                if detecting
                else "Clean Graphics must check the bits above BitsStored"
            )
            detail = " ".join(str(exc).split())
            raise QuarantineError(
                f"{why}, but cannot decode {ts.name} pixel data: {hint} "
                f"({type(exc).__name__}: {detail})"
            ) from exc
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:
            arr = arr.copy()
        photometric = str(meta.get("photometric_interpretation", geo.photometric))
        dgeo = _Geometry(
            frames=geo.frames,
            rows=geo.rows,
            cols=geo.cols,
            samples=geo.samples,
            bits_allocated=arr.dtype.itemsize * 8,
            bits_stored=geo.bits_stored,
            high_bit=geo.bits_stored - 1,
            signed=arr.dtype.kind == "i",
            planar=False,
            photometric=photometric,
        )
        if dgeo.subsampled:
            raise QuarantineError(f"decoder returned subsampled {photometric}; cannot mask it")
        if arr.size != int(np.prod(dgeo.shape())):
            raise QuarantineError(
                f"decoded {arr.shape} pixels, the header implies {dgeo.shape()}; cannot mask"
            )
        karr = arr.reshape(dgeo.shape())
        if detector is not None:
            groups = self._detect(ds, karr, dgeo, groups, report, ids, detector)
        if self._hidden_bits(dgeo) and _has_hidden_bits(karr, dgeo):
            self._fix_bits(karr, dgeo)
            report.hidden_bits_cleared = True
        elif not groups:
            return  # decoded only to look for hidden bits, and there are none
        report.regions = _apply(karr, groups, dgeo, planar=False, subsampled=False)
        out_arr = karr.reshape(arr.shape)
        if photometric != geo.photometric:
            report.notes.append(f"photometric interpretation {geo.photometric} -> {photometric}")
        ds.PhotometricInterpretation = photometric
        if ts in REENCODERS and self._reencode(ds, ts, out_arr, report):
            return
        _write_native(ds, out_arr, photometric)
        report.transfer_syntax_out = ExplicitVRLittleEndian
        report.reencoded = True
        if lossy:
            self._mark_lossy(ds, ts)

    @staticmethod
    def _reencode(ds: pydicom.Dataset, ts: UID, arr: np.ndarray, report: PixelReport) -> bool:
        """Compress back to ``ts`` losslessly; True only if the result decodes to ``arr``."""
        from pydicom.pixels.decoders.base import get_decoder
        from pydicom.pixels.encoders.base import get_encoder

        plugin = REENCODERS[ts]
        enc = get_encoder(ts)
        if not enc.is_available or (plugin and plugin not in enc.available_plugins):
            report.notes.append(f"no {ts.name} encoder installed; wrote Explicit VR Little Endian")
            return False
        saved = {
            kw: ds[kw].value
            for kw in ("PixelData", "PlanarConfiguration", "PhotometricInterpretation")
            if kw in ds
        }
        saved_ts = ds.file_meta.get("TransferSyntaxUID")
        try:
            if "PlanarConfiguration" in ds:
                ds.PlanarConfiguration = 0
            ds.compress(ts, arr, encoding_plugin=plugin, generate_instance_uid=False)
            back, _ = _as_array(get_decoder(ts), ds, as_rgb=False, correct_unused_bits=False)
            if back.dtype != arr.dtype or back.shape != arr.shape or not np.array_equal(back, arr):
                raise ValueError("re-encoded pixels do not decode to the masked pixels")
        except Exception as exc:
            for kw, v in saved.items():
                setattr(ds, kw, v)
            if saved_ts is not None:
                ds.file_meta.TransferSyntaxUID = saved_ts
            first = (str(exc).splitlines() or [""])[0]
            report.notes.append(
                f"{ts.name} re-encode failed ({type(exc).__name__}: {first}); "
                "wrote Explicit VR Little Endian"
            )
            return False
        report.reencoded = True
        report.transfer_syntax_out = ts
        return True

    @staticmethod
    def _mark_lossy(ds: pydicom.Dataset, ts: UID) -> None:
        """Keep the record that these pixels went through lossy compression (PS3.3 C.7.6.1.1.5)."""
        if ts not in ALWAYS_LOSSY and str(ds.get("LossyImageCompression", "")) != "01":
            return  # e.g. JPEG 2000 that the header says was lossless
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = LOSSY_METHOD[ts]
