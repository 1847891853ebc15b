"""A realistic mixed DICOM archive with planted identifiers, for issue 19's release bench.

:func:`generate` writes a few hundred instances for several patients with several studies
each: CT, MR and CR series, ultrasound cines, secondary captures and XA runs with text
burned into their pixels, a Basic Text SR and an RT Structure Set that reference the
images, in Explicit / Implicit VR Little Endian, Explicit VR Big Endian, Deflated, RLE,
JPEG baseline, JPEG-LS and JPEG 2000, with overlays (group 60xx and in unused high bits),
private tags, and a DICOMDIR for one patient's exported CD. Every identifying value the
archive holds (names in several spellings, IDs, accession numbers, birth dates) is listed
in the :class:`Manifest`, with each burned-in text line's ink box, so a bench can search
the outputs for what should have gone.

Deterministic: the same seed gives the same files, byte for byte. Fast: about two seconds
for the default size on one core.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"

SYNTAX_NAMES = {
    ExplicitVRLittleEndian: "explicit",
    ImplicitVRLittleEndian: "implicit",
    ExplicitVRBigEndian: "big-endian",
    DeflatedExplicitVRLittleEndian: "deflated",
    RLELossless: "rle",
    JPEGBaseline8Bit: "jpeg-baseline",
    JPEGLSLossless: "jpeg-ls",
    JPEG2000Lossless: "jpeg2000",
}

#: Patients: (family, given, sex, birth date). Surnames long enough that finding one in
#: an output header by chance (in a base32 pseudonym, say) is negligible; DOE^JOHN is the
#: issue's own example.
PATIENTS = [
    ("DOE", "JOHN", "M", "19610314"),
    ("QUIMBY", "HORATIO", "M", "19480822"),
    ("ZANETTI", "MARGUERITE", "F", "19790105"),
    ("OKONKWO", "CHIDINMA", "F", "19920630"),
    ("VANDERMEER", "ISOLDE", "F", "19551111"),
    ("HALVORSEN", "BJORNAR", "M", "20010209"),
]
INSTITUTION = "ST BARNABAS GENERAL HOSPITAL"
PHYSICIANS = ["KOWALCZYK^AGNIESZKA", "FEATHERSTONE^ROLAND", "IBARGUEN^TOMAS"]


@dataclass
class Instance:
    """One generated file: where, what class and syntax, and its burned-in text lines."""

    path: str  # relative to the archive root
    cls: str  # modality class: CT, MR, CR, US, SC, XA, SR, RTSTRUCT
    syntax: str  # SYNTAX_NAMES value
    sop_instance_uid: str
    patient: int
    #: Burned-in text ink boxes (frame0, frame1, r0, r1, c0, c1), half-open.
    text_boxes: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    #: Rows, columns and frames of the image (0 when there are no pixels).
    shape: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Manifest:
    """What :func:`generate` wrote and what must not survive de-identification."""

    seed: int
    instances: list[Instance] = field(default_factory=list)
    #: Per patient index: identifying strings (upper case) no output header may contain.
    identifiers: dict[int, list[str]] = field(default_factory=dict)
    #: Every UID of the input (SOP instance, series, study, frame of reference).
    uids: list[str] = field(default_factory=list)
    dicomdir: str = ""

    def all_identifiers(self) -> list[str]:
        """Every patient's identifying strings, longest first."""
        out = {s for v in self.identifiers.values() for s in v}
        return sorted(out, key=lambda s: (-len(s), s))

    def save(self, path: str | Path) -> None:
        """Write the manifest as JSON (outside the archive: it is not DICOM)."""
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`save`."""
        d = json.loads(Path(path).read_text())
        m = cls(seed=d["seed"], uids=d["uids"], dicomdir=d["dicomdir"])
        m.identifiers = {int(k): v for k, v in d["identifiers"].items()}
        for i in d["instances"]:
            i["text_boxes"] = [tuple(b) for b in i["text_boxes"]]
            i["shape"] = tuple(i["shape"])
            m.instances.append(Instance(**i))
        return m


def identifier_strings(family: str, given: str, pid: str, birth: str, acc: list[str]) -> list[str]:
    """The spellings of one patient's identity a leak search looks for (upper case)."""
    names = [f"{family}^{given}", f"{family}_{given}", f"{given} {family}", f"{family}, {given}"]
    words = [w for w in (family, given) if len(w) >= 4]  # 3-letter words match by chance
    dates = [
        birth,
        f"{birth[4:6]}/{birth[6:]}/{birth[:4]}",
        f"{birth[:4]}-{birth[4:6]}-{birth[6:]}",
    ]
    return sorted({s.upper() for s in names + words + dates + [pid] + acc})


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    import glob

    found = sorted(glob.glob("/usr/share/fonts/**/DejaVuSansMono.ttf", recursive=True))
    return ImageFont.truetype(found[0], size) if found else ImageFont.load_default(size=size)


def _render_lines(
    rows: int, cols: int, lines: list[tuple[str, int, int]], size: int
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Alpha (0..1) of ``lines`` (text, row, col) and each line's ink box (r0, r1, c0, c1)."""
    layer = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(layer)
    boxes = []
    for text, r, c in lines:
        one = Image.new("L", (cols, rows), 0)
        ImageDraw.Draw(one).text((c, r), text, fill=255, font=_font(size))
        a = np.asarray(one)
        ys, xs = np.nonzero(a >= 64)  # ink: anti-aliasing coverage >= 25 %
        boxes.append((int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1))
        draw.text((c, r), text, fill=255, font=_font(size))
    return np.asarray(layer).astype(np.float32) / 255.0, boxes


class _Gen:
    """The generator's state: one seeded random stream, deterministic UIDs."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.manifest = Manifest(seed=seed)
        self.counters: dict[str, int] = {}
        self.kept_text = True

    def kept(self, named: str, plain: str) -> str:
        """``named`` (text that holds the patient's name) unless kept text is turned off."""
        return named if self.kept_text else plain

    def uid(self) -> str:
        self.n += 1
        h = int.from_bytes(hashlib.sha256(f"{self.seed}/{self.n}".encode()).digest()[:12], "big")
        u = f"1.2.826.0.1.3680043.8.498.{h}"
        self.manifest.uids.append(u)
        return u

    # -- pixels ------------------------------------------------------------------------------

    def ct_slice(self, n: int, size: int) -> np.ndarray:
        yy, xx = np.mgrid[0:size, 0:size]
        r = np.hypot(yy - size / 2, xx - size / 2)
        img = np.where(r < size * 0.42, 40, -1000).astype(np.int16)
        img += self.rng.normal(0, 12, img.shape).astype(np.int16)
        bone = np.hypot(yy - size * 0.6, xx - size * (0.4 + 0.01 * n)) < size * 0.06
        img[bone] = 900
        return img

    def mr_slice(self, size: int) -> np.ndarray:
        yy, xx = np.mgrid[0:size, 0:size]
        r = np.hypot((yy - size / 2) / 1.2, xx - size / 2)
        img = np.where(r < size * 0.38, 600 + 300 * np.cos(r / 6), 0)
        img = img + self.rng.rayleigh(20, img.shape)
        return np.clip(img, 0, 4095).astype(np.uint16)

    def speckle(self, rows: int, cols: int) -> np.ndarray:
        yy, xx = np.mgrid[0:rows, 0:cols]
        ang = np.arctan2(xx - cols / 2, yy + 20)
        rad = np.hypot(xx - cols / 2, yy + 20)
        sector = (np.abs(ang) < 0.6) & (rad > 60) & (rad < rows - 10)
        sp = np.clip(self.rng.rayleigh(28.0, size=(rows, cols)), 0, 255)
        return np.where(sector, sp, 0).astype(np.float32)


def _meta(ds: Dataset, ts: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.ImplementationVersionName = "REALISTIC_1"
    ds.file_meta = meta


def _set_pixels(ds: Dataset, arr: np.ndarray, ts: str) -> None:
    """Store ``arr`` (frames, rows, cols[, 3]) in ``ds`` in syntax ``ts``."""
    frames = arr.shape[0]
    if frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
    colour = arr.ndim == 4
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    one = arr if frames > 1 else arr[0]
    if ts == JPEGBaseline8Bit:
        parts = []
        for f in arr:
            buf = io.BytesIO()
            img = Image.fromarray(f, "RGB" if colour else "L")
            img.save(buf, "JPEG", quality=92, subsampling=1)  # 4:2:2
            parts.append(buf.getvalue())
        ds.PixelData = encapsulate(parts)
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL_422" if colour else "MONOCHROME2"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = 8.0
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        _meta(ds, ts)
        return
    if ts in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        _meta(ds, ExplicitVRLittleEndian)
        plugin = {RLELossless: "pydicom", JPEGLSLossless: "pyjpegls"}.get(ts, "pylibjpeg")
        ds.compress(ts, one, encoding_plugin=plugin, generate_instance_uid=False)
        return
    data = one.astype(one.dtype.newbyteorder(">" if ts == ExplicitVRBigEndian else "<"))
    raw = data.tobytes()
    ds.PixelData = raw + (b"\0" if len(raw) % 2 else b"")
    ds["PixelData"].VR = "OB" if arr.dtype.itemsize == 1 else "OW"
    _meta(ds, ts)


def _common(g: _Gen, ds: Dataset, pat: dict[str, str], study: dict[str, str]) -> None:
    for k, v in pat.items():
        setattr(ds, k, v)
    for k, v in study.items():
        setattr(ds, k, v)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "1400 HARBOUR ROAD, SPRINGFIELD"
    ds.StationName = "SBGH-" + ds.Modality + "01"
    ds.Manufacturer = {"US": "SONORA MEDICAL", "XA": "ANGIOTEC"}.get(ds.Modality, "GENERIC MED")
    ds.ManufacturerModelName = "MODEL " + ds.Modality
    ds.DeviceSerialNumber = f"SN{int(g.rng.integers(10000, 99999))}"
    ds.SoftwareVersions = "4.2.1"
    ds.OperatorsName = "PRZYBYLSKI^WANDA"


def _image_common(ds: Dataset, number: int) -> None:
    ds.InstanceNumber = number
    ds.AcquisitionNumber = 1
    if ds.Modality in ("CT", "MR"):
        ds.PatientPosition = "HFS"
    elif ds.Modality != "CR":
        ds.Laterality = ""  # Type 2C: empty, as most devices send it
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.PatientOrientation = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"


def _private_block(ds: Dataset, family: str, given: str, pid: str) -> None:
    # A vendor block that repeats the patient's name and ID (as real exports do).
    block = ds.private_block(0x0009, "SBGH_IDEN_01", create=True)
    block.add_new(0x10, "LO", f"{family}^{given}")
    block.add_new(0x11, "LO", pid)
    block.add_new(0x12, "DS", "1.5")


def _write(g: _Gen, root: Path, rel: str, ds: Dataset, inst: Instance) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    path.write_bytes(data)
    g.manifest.instances.append(inst)


def _syntax_cycle(g: _Gen, kind: str, options: list[str]) -> str:
    """The next syntax of ``options`` for ``kind``: each kind cycles through its own list."""
    i = g.counters.get(kind, 0)
    g.counters[kind] = i + 1
    return options[i % len(options)]


def generate(
    root: str | Path, *, seed: int = 0, patients: int = 6, scale: int = 1, kept_text: bool = True
) -> Manifest:
    """Write the archive under ``root`` (created) and return its manifest.

    ``patients`` (1..6) and ``scale`` (slices per CT/MR series multiplier) set the size:
    the defaults give about 380 instances. ``kept_text=False`` leaves the patient's name
    out of the text attributes a policy usually keeps (ProtocolName, StudyDescription,
    ImageComments, OverlayLabel, SR text, RT labels), to measure the rest on its own.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    g = _Gen(seed)
    g.kept_text = kept_text
    for p in range(min(patients, len(PATIENTS))):
        _patient(g, root, p, scale)
    _dicomdir(g, root)
    return g.manifest


def _patient(g: _Gen, root: Path, p: int, scale: int) -> None:
    family, given, sex, birth = PATIENTS[p]
    pid = f"SB{7300421 + 7919 * p}"
    pat = {
        "PatientName": f"{family}^{given}",
        "PatientID": pid,
        "PatientBirthDate": birth,
        "PatientSex": sex,
        "OtherPatientIDs": f"NHS{4857773456 + p}",
        "PatientAddress": f"{12 + p} ELM STREET, SPRINGFIELD",
        "PatientTelephoneNumbers": f"555-01{p:02d}-4477",
    }
    n_studies = 2 + p % 2
    accs = [f"A{2024110500 + 37 * p + s}" for s in range(n_studies)]
    g.manifest.identifiers[p] = identifier_strings(
        family, given, pid, birth, [*accs, pat["OtherPatientIDs"]]
    )
    folder = f"export/{family.lower()}_{pid}"
    for s in range(n_studies):
        year = 2022 + s
        study = {
            "StudyInstanceUID": g.uid(),
            "StudyDate": f"{year}{(3 + p) % 12 + 1:02d}{10 + s:02d}",
            "StudyTime": f"{9 + s:02d}3015",
            "AccessionNumber": accs[s],
            "StudyID": f"{400 + 10 * p + s}",
            "ReferringPhysicianName": PHYSICIANS[(p + s) % 3],
            "PatientAge": f"{year - int(birth[:4]):03d}Y",
        }
        kinds = [("CT", "MR", "CR", "US", "SC"), ("MR", "US", "XA", "SC"), ("CT", "CR", "US")][
            (p + s) % 3
        ]
        ct_refs: list[tuple[str, str, str, list[str]]] = []  # (series, FoR, class, sops)
        for k, kind in enumerate(kinds):
            sd = f"{folder}/study{s + 1}/{k + 1:02d}_{kind}"
            if kind in ("CT", "MR"):
                ct_refs.append(_tomo(g, root, sd, p, s, k, kind, pat, study, family, given, scale))
            elif kind == "CR":
                _cr(g, root, sd, p, s, k, pat, study, family, given)
            elif kind in ("US", "SC", "XA"):
                _burned(g, root, sd, p, s, k, kind, pat, study, family, given)
        if ct_refs:
            _sr(g, root, f"{folder}/study{s + 1}/90_SR", p, s, pat, study, family, given, ct_refs)
            if ct_refs[0][2] == CT_IMAGE:
                _rtstruct(g, root, f"{folder}/study{s + 1}/91_RT", p, s, pat, study, ct_refs[0])


def _tomo(
    g: _Gen,
    root: Path,
    sd: str,
    p: int,
    s: int,
    k: int,
    kind: str,
    pat: dict[str, str],
    study: dict[str, str],
    family: str,
    given: str,
    scale: int,
) -> tuple[str, str, str, list[str]]:
    """One CT or MR series; return (series UID, frame of reference, SOP class, SOP UIDs)."""
    ct = kind == "CT"
    opts = (
        [
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
            RLELossless,
            JPEGLSLossless,
            JPEG2000Lossless,
        ]
        if ct
        else [
            ExplicitVRLittleEndian,
            ExplicitVRBigEndian,
            DeflatedExplicitVRLittleEndian,
            JPEG2000Lossless,
            ImplicitVRLittleEndian,
        ]
    )
    ts = _syntax_cycle(g, kind, opts)
    series, frame_ref = g.uid(), g.uid()
    n = (14 if ct else 12) * scale
    size = 96
    sops: list[str] = []
    desc = "CHEST W CONTRAST" if ct else "BRAIN W/WO"
    organ = "CHEST" if ct else "BRAIN"
    protocol = g.kept(f"{family}_{given}_{kind}_{organ}", f"{kind}_{organ}_ROUTINE")
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = CT_IMAGE if ct else MR_IMAGE
        ds.SOPInstanceUID = g.uid()
        ds.Modality = kind
        _common(g, ds, pat, study)
        _image_common(ds, i + 1)
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = k + 1
        ds.FrameOfReferenceUID = frame_ref
        ds.PositionReferenceIndicator = ""
        ds.StudyDescription = desc if p % 2 else g.kept(f"{desc} - {given} {family}", desc)
        ds.SeriesDescription = f"AX {'SOFT TISSUE' if ct else 'T2 FLAIR'}"
        ds.ProtocolName = protocol
        ds.BodyPartExamined = "CHEST" if ct else "HEAD"
        ds.ImageComments = g.kept(f"pt {family} {given} tolerated well", "tolerated well")
        ds.SliceThickness = 3.0
        ds.PixelSpacing = [0.8, 0.8]
        ds.ImagePositionPatient = [-38.4, -38.4, -60.0 + 3.0 * i]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = -60.0 + 3.0 * i
        ds.BitsAllocated = 16
        if ct:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
            ds.KVP = 120
            ds.WindowCenter, ds.WindowWidth = 40, 400
            arr = g.ct_slice(i, size)[None]
        else:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
            ds.ScanningSequence, ds.SequenceVariant = "SE", "NONE"
            ds.ScanOptions, ds.MRAcquisitionType = "", "2D"
            ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 9000.0, 120.0, 16
            ds.MagneticFieldStrength = 3.0
            arr = g.mr_slice(size)[None]
        if i > 0:
            # Source-image style reference to the first slice of the series.
            ref = Dataset()
            ref.ReferencedSOPClassUID = ds.SOPClassUID
            ref.ReferencedSOPInstanceUID = sops[0]
            ds.ReferencedImageSequence = Sequence([ref])
        if i == 0:
            _private_block(ds, family, given, pat["PatientID"])
        ds.RequestAttributesSequence = Sequence([_request(study, g.kept(family, "CT"))])
        _set_pixels(ds, arr, ts)
        rel = f"{sd}/IM{i + 1:04d}.dcm"
        sops.append(ds.SOPInstanceUID)
        _write(
            g,
            root,
            rel,
            ds,
            Instance(rel, kind, SYNTAX_NAMES[ts], ds.SOPInstanceUID, p, [], (size, size, 1)),
        )
    return series, frame_ref, CT_IMAGE if ct else MR_IMAGE, sops


def _request(study: dict[str, str], family: str) -> Dataset:
    item = Dataset()
    item.RequestedProcedureID = study["AccessionNumber"]
    item.ScheduledProcedureStepID = "SPS" + study["AccessionNumber"][-4:]
    item.ScheduledProcedureStepDescription = f"FOLLOW UP {family}"
    return item


def _cr(
    g: _Gen,
    root: Path,
    sd: str,
    p: int,
    s: int,
    k: int,
    pat: dict[str, str],
    study: dict[str, str],
    family: str,
    given: str,
) -> None:
    """Two radiographs: one with a 60xx overlay, one with an overlay in unused high bits."""
    opts = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless, JPEG2000Lossless]
    series = g.uid()
    rows, cols = 320, 256
    for i in range(2):
        ts = _syntax_cycle(g, "CR", opts)
        ds = Dataset()
        ds.SOPClassUID = CR_IMAGE
        ds.SOPInstanceUID = g.uid()
        ds.Modality = "CR"
        _common(g, ds, pat, study)
        _image_common(ds, i + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = k + 1
        ds.StudyDescription = "XR CHEST 2 VIEWS"
        ds.SeriesDescription = ["PA", "LAT"][i]
        ds.ProtocolName = f"CHEST_{['PA', 'LAT'][i]}"
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = ["PA", "LL"][i]
        ds.PatientOrientation = ["L", "F"]
        ds.ImagerPixelSpacing = [0.15, 0.15]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        yy, xx = np.mgrid[0:rows, 0:cols]
        img = 1800 + 900 * np.cos(xx / cols * 3.1) * np.cos(yy / rows * 2)
        img = np.clip(img + g.rng.normal(0, 30, img.shape), 0, 4095).astype(np.uint16)
        if i == 0:
            bits = np.zeros((rows, cols), dtype=np.uint8)
            bits[20:40, 20:120] = 1
            ds.add_new(0x60000010, "US", rows)
            ds.add_new(0x60000011, "US", cols)
            ds.add_new(0x60000040, "CS", "G")
            ds.add_new(0x60000050, "SS", [1, 1])
            ds.add_new(0x60000100, "US", 1)
            ds.add_new(0x60000102, "US", 0)
            ds.add_new(0x60001500, "LO", g.kept(f"{family} {given} PA", "PA"))  # OverlayLabel
            ds.add_new(0x60003000, "OW", np.packbits(bits.ravel(), bitorder="little").tobytes())
        elif ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            # An old-style overlay: a graphic in bit 15, above BitsStored.
            img[rows - 40 : rows - 20, 30:140] |= 0x8000
            ds.add_new(0x60000010, "US", rows)
            ds.add_new(0x60000011, "US", cols)
            ds.add_new(0x60000040, "CS", "G")
            ds.add_new(0x60000050, "SS", [1, 1])
            ds.add_new(0x60000100, "US", 16)
            ds.add_new(0x60000102, "US", 15)
        _set_pixels(ds, img[None], ts)
        rel = f"{sd}/CR{i + 1:04d}.dcm"
        _write(
            g,
            root,
            rel,
            ds,
            Instance(rel, "CR", SYNTAX_NAMES[ts], ds.SOPInstanceUID, p, [], (rows, cols, 1)),
        )


def _burned(
    g: _Gen,
    root: Path,
    sd: str,
    p: int,
    s: int,
    k: int,
    kind: str,
    pat: dict[str, str],
    study: dict[str, str],
    family: str,
    given: str,
) -> None:
    """Ultrasound cines, secondary captures or XA runs with text burned into the pixels."""
    birth = pat["PatientBirthDate"]
    date = study["StudyDate"]
    clock = f"{study['StudyTime'][:2]}:{study['StudyTime'][2:4]}"
    if kind == "US":
        opts = [ExplicitVRLittleEndian, RLELossless, JPEGBaseline8Bit]
        count, frames, rows, cols, colour = 3, 6, 240, 320, True
        sop = US_MULTIFRAME
    elif kind == "SC":
        opts = [ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, ImplicitVRLittleEndian]
        count, frames, rows, cols, colour = 2, 1, 256, 320, True
        sop = SC_IMAGE
    else:
        opts = [ExplicitVRLittleEndian, JPEGLSLossless, JPEGBaseline8Bit]
        count, frames, rows, cols, colour = 2, 5, 256, 256, False
        sop = XA_IMAGE
    series = g.uid()
    for i in range(count):
        ts = _syntax_cycle(g, kind, opts)
        lines = [
            (f"{family}, {given}", 4, 6),
            (f"ID {pat['PatientID']}  DOB {birth[4:6]}/{birth[6:]}/{birth[:4]}", 18, 6),
            (
                f"{date[:4]}-{date[4:6]}-{date[6:]} {clock}",
                4,
                cols - 120,
            ),
            ("SBGH", 18, cols - 60),
        ]
        if kind == "US":
            lines += [("GAIN 45  DR 60", rows - 30, 6), ("C5-1  FR 32Hz", rows - 16, 6)]
            lines += [("LIVER RT", rows // 2, cols // 2 - 30)]  # a label on the speckle
        elif kind == "XA":
            lines += [("LAO 30 CRA 15", rows - 16, 6)]
        else:
            lines += [("Report page 1/1", rows - 18, cols - 130)]
        # 10, 12 or 14 px: devices differ, and small text is the hard case.
        alpha, boxes = _render_lines(rows, cols, lines, 10 + 2 * (i % 3))
        stack = []
        for f in range(frames):
            if kind == "US":
                base = g.speckle(rows, cols)
            elif kind == "XA":
                yy, xx = np.mgrid[0:rows, 0:cols]
                base = 140 + 50 * np.sin((xx + 7 * f) / 23.0) + g.rng.normal(0, 6, (rows, cols))
                base[np.abs(yy - xx + 10 * f) < 3] = 60  # a vessel
            else:
                base = np.full((rows, cols), 235.0)
                base[60:200, 40:280] = 255 - 80 * (np.arange(240)[None, :] % 40 < 20)
            val = 255.0 if kind != "SC" else 10.0
            frame = base * (1 - alpha) + val * alpha
            frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            if colour:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
                frame[..., 2] = np.clip(frame[..., 2].astype(int) + 8, 0, 255).astype(np.uint8)
            stack.append(frame)
        arr = np.stack(stack)
        ds = Dataset()
        ds.SOPClassUID = sop
        ds.SOPInstanceUID = g.uid()
        ds.Modality = "OT" if kind == "SC" and i % 2 else kind
        if kind == "SC":
            ds.ConversionType = "WSD"
        _common(g, ds, pat, study)
        _image_common(ds, i + 1)
        ds.ImageType = ["DERIVED", "SECONDARY"] if kind == "SC" else ["ORIGINAL", "PRIMARY"]
        ds.BurnedInAnnotation = "YES" if (kind != "US" or i % 2) else "NO"
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = k + 1
        ds.StudyDescription = {"US": "US ABDOMEN", "SC": "OUTSIDE FILM", "XA": "CORONARY ANGIO"}[
            kind
        ]
        ds.SeriesDescription = f"{kind} {given[0]}{family[0]} {i + 1}"
        ds.ProtocolName = g.kept(f"{family}_{kind}", f"{kind}_ROUTINE")
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        if frames > 1:
            ds.FrameTime = 33.3
            ds.FrameIncrementPointer = 0x00181063
            ds.CineRate = 30
        if kind == "XA":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
            ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = 30.0, 15.0
            ds.PositionerMotion = "STATIC"
            ds.KVP, ds.RadiationSetting = 80, "GR"
            ds.XRayTubeCurrent, ds.ExposureTime, ds.Exposure = 400, 8, 3
            ds.PixelIntensityRelationship = "LIN"
        _set_pixels(ds, arr, ts)
        rel = f"{sd}/{kind}{i + 1:04d}.dcm"
        tb = [(0, frames, *b) for b in boxes]
        _write(
            g,
            root,
            rel,
            ds,
            Instance(rel, kind, SYNTAX_NAMES[ts], ds.SOPInstanceUID, p, tb, (rows, cols, frames)),
        )


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _sr(
    g: _Gen,
    root: Path,
    sd: str,
    p: int,
    s: int,
    pat: dict[str, str],
    study: dict[str, str],
    family: str,
    given: str,
    refs: list[tuple[str, str, str, list[str]]],
) -> None:
    """A Basic Text SR whose findings name the patient and reference the images."""
    ts = _syntax_cycle(
        g, "SR", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
    )
    ds = Dataset()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = g.uid()
    ds.Modality = "SR"
    _common(g, ds, pat, study)
    ds.SeriesInstanceUID = g.uid()
    ds.SeriesNumber = 90
    ds.InstanceNumber = 1
    ds.StudyDescription = "CT CHEST REPORT"
    ds.ContentDate, ds.ContentTime = study["StudyDate"], "160000"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    obs = Dataset()
    obs.VerifyingObserverName = PHYSICIANS[(p + 1) % 3]
    obs.VerificationDateTime = study["StudyDate"] + "170000"
    obs.VerifyingOrganization = INSTITUTION
    obs.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([obs])
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    text.TextValue = g.kept(
        f"{given} {family} (MRN {pat['PatientID']}, DOB {pat['PatientBirthDate']}): ", ""
    ) + ("no focal consolidation. Stable 4 mm nodule right upper lobe.")
    img = Dataset()
    img.RelationshipType = "CONTAINS"
    img.ValueType = "IMAGE"
    ref = Dataset()
    ref.ReferencedSOPClassUID = refs[0][2]
    ref.ReferencedSOPInstanceUID = refs[0][3][1]  # one of the evidence list's images
    img.ReferencedSOPSequence = Sequence([ref])
    ds.ContentSequence = Sequence([text, img])
    evid = Dataset()
    evid.StudyInstanceUID = study["StudyInstanceUID"]
    series_items = []
    for series, _, cls_uid, sops in refs:
        se = Dataset()
        se.SeriesInstanceUID = series
        items = []
        for u in sops[:4]:
            r = Dataset()
            r.ReferencedSOPClassUID = cls_uid
            r.ReferencedSOPInstanceUID = u
            items.append(r)
        se.ReferencedSOPSequence = Sequence(items)
        series_items.append(se)
    evid.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evid])
    _meta(ds, ts)
    rel = f"{sd}/SR0001.dcm"
    _write(g, root, rel, ds, Instance(rel, "SR", SYNTAX_NAMES[ts], ds.SOPInstanceUID, p))


def _rtstruct(
    g: _Gen,
    root: Path,
    sd: str,
    p: int,
    s: int,
    pat: dict[str, str],
    study: dict[str, str],
    ref: tuple[str, str, str, list[str]],
) -> None:
    """An RT Structure Set with one contour per referenced CT slice."""
    series, frame_ref, cls_uid, sops = ref
    ts = _syntax_cycle(g, "RT", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ds = Dataset()
    ds.SOPClassUID = RT_STRUCT
    ds.SOPInstanceUID = g.uid()
    ds.Modality = "RTSTRUCT"
    _common(g, ds, pat, study)
    ds.SeriesInstanceUID = g.uid()
    ds.SeriesNumber = 91
    ds.InstanceNumber = 1
    ds.StudyDescription = "RT PLANNING"
    family, given = PATIENTS[p][0], PATIENTS[p][1]
    ds.StructureSetLabel = g.kept(f"{family[:6]}_PLAN1", "PLAN1")
    ds.StructureSetName = g.kept(f"{given} {family} GTV", "GTV")
    ds.StructureSetDate, ds.StructureSetTime = study["StudyDate"], "120000"
    ds.FrameOfReferenceUID = frame_ref  # the CT's: the structures are drawn on it
    ds.PositionReferenceIndicator = ""
    contour_images = []
    for u in sops:
        ci = Dataset()
        ci.ReferencedSOPClassUID = cls_uid
        ci.ReferencedSOPInstanceUID = u
        contour_images.append(ci)
    rse = Dataset()
    rse.SeriesInstanceUID = series
    rse.ContourImageSequence = Sequence(contour_images)
    rst = Dataset()
    rst.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired)
    rst.ReferencedSOPInstanceUID = study["StudyInstanceUID"]
    rst.RTReferencedSeriesSequence = Sequence([rse])
    rfor = Dataset()
    rfor.FrameOfReferenceUID = frame_ref
    rfor.RTReferencedStudySequence = Sequence([rst])
    ds.ReferencedFrameOfReferenceSequence = Sequence([rfor])
    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = frame_ref
    roi.ROIName = "GTV"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for i, u in enumerate(sops[4:8]):
        c = Dataset()
        ci = Dataset()
        ci.ReferencedSOPClassUID = cls_uid
        ci.ReferencedSOPInstanceUID = u
        c.ContourImageSequence = Sequence([ci])
        c.ContourGeometricType = "CLOSED_PLANAR"
        z = -60.0 + 3.0 * (i + 4)
        c.NumberOfContourPoints = 4
        c.ContourData = [0, 0, z, 10, 0, z, 10, 10, z, 0, 10, z]
        contours.append(c)
    rc = Dataset()
    rc.ReferencedROINumber = 1
    rc.ROIDisplayColor = [255, 0, 0]
    rc.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([rc])
    obs = Dataset()
    obs.ObservationNumber = 1
    obs.ReferencedROINumber = 1
    obs.RTROIInterpretedType = "GTV"
    obs.ROIInterpreter = PHYSICIANS[p % 3]
    ds.RTROIObservationsSequence = Sequence([obs])
    ds.ApprovalStatus = "UNAPPROVED"
    _meta(ds, ts)
    rel = f"{sd}/RS0001.dcm"
    _write(g, root, rel, ds, Instance(rel, "RTSTRUCT", SYNTAX_NAMES[ts], ds.SOPInstanceUID, p))


def _dicomdir(g: _Gen, root: Path) -> None:
    """Move the first patient's files into a CD layout with a DICOMDIR (pydicom's FileSet)."""
    from pydicom.fileset import FileSet

    first = [i for i in g.manifest.instances if i.patient == 0]
    if not first:
        return
    fs = FileSet()
    fs.ID = "SBGH_CD_0001"
    fs.UID = UID(g.uid())  # pydicom would pick a random one
    staged = []
    for inst in first:
        src = root / inst.path
        ds = pydicom.dcmread(src)
        staged.append((inst, fs.add(ds)))
    cd = root / "cd"
    fs.write(cd)
    fs._stage["t"].cleanup()  # pydicom's staging folder: gone now, not at garbage collection
    for inst, rec in staged:
        (root / inst.path).unlink()
        inst.path = str(Path("cd") / Path(*rec.ReferencedFileID))
    for d in sorted(root.glob("export/doe_*/**"), reverse=True):
        if d.is_dir():
            d.rmdir()
    if (root / "export" / f"doe_SB{7300421}").exists():
        (root / "export" / f"doe_SB{7300421}").rmdir()
    g.manifest.dicomdir = "cd/DICOMDIR"


def iter_files(root: str | Path) -> Iterator[Path]:
    """Every file of a generated archive, sorted."""
    return iter(sorted(p for p in Path(root).rglob("*") if p.is_file()))


def digest(root: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes (for the determinism test)."""
    h = hashlib.sha256()
    for p in iter_files(root):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


__all__ = ["Instance", "Manifest", "digest", "generate", "identifier_strings", "iter_files"]
