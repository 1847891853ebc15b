"""Adversarial corpus: one synthetic DICOM file per hiding place, each with unique canaries.

Nothing here is copied from a real file. Every case is a small CT instance whose patient
(name, ID, birth date, accession number, instance UIDs) is a set of canaries unique to the
case, with one more identifying value planted in one hiding place: an element of each VR
that holds text, nesting to depth 8, every character set pydicom encodes, every transfer
syntax pydicom writes (deflated and big endian included), private blocks with and without
creators, the file meta, the preamble, after Pixel Data, trailing bytes, damaged lengths,
overlays and the other classes of issue 18. A de-identifier must never let any canary of
a case into its output, its records or its console: it writes the file clean, or
quarantines it.

``corpus()`` returns the cases; each knows the exact byte strings (``needles``) whose
presence anywhere in an output is a leak.
"""

from __future__ import annotations

import gzip
import io
import random
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

# Encodings a canary is searched in, whatever the case's own character set.
BASE_ENCODINGS = ("utf-8", "latin-1", "utf-16-le", "utf-16-be")
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


@dataclass
class Canaries:
    """The patient of one case: every value is random and unique to the case."""

    rng: random.Random
    family: str = ""
    given: str = ""
    patient_id: str = ""
    birth: str = ""
    accession: str = ""
    study_date: str = ""
    uids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.family = self.word("Zq")
        self.given = self.word("Xw")
        self.patient_id = "QX" + self.digits(7)
        self.accession = "AZ" + self.digits(6)
        self.birth = self.date(1930, 1990)
        self.study_date = self.date(1995, 2015)
        self.uids = [self.uid() for _ in range(4)]  # SOP, study, series, frame of reference

    def word(self, prefix: str, n: int = 7) -> str:
        """A capitalised pseudo-word no dictionary holds."""
        return prefix + "".join(self.rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(n))

    def digits(self, n: int) -> str:
        """n random digits, the first not 0."""
        return str(self.rng.randint(1, 9)) + "".join(
            str(self.rng.randint(0, 9)) for _ in range(n - 1)
        )

    def date(self, lo: int, hi: int) -> str:
        """A valid YYYYMMDD date (day 13..28, so it never reads as a month)."""
        return (
            f"{self.rng.randint(lo, hi)}{self.rng.randint(1, 12):02d}{self.rng.randint(13, 28):02d}"
        )

    def uid(self) -> str:
        """A UID under 2.25 (a UUID-derived root): never a well-known one."""
        return "2.25." + self.digits(36)

    @property
    def name(self) -> str:
        """The PN value of the patient."""
        return f"{self.family}^{self.given}"


@dataclass
class Case:
    """One adversarial file and what must never come out of it."""

    place: str  # the hiding place, unique
    klass: str  # the issue 18 class (or "place" for a plain hiding place)
    data: bytes
    needles: list[str]  # texts that must not appear (any case, any encoding)
    encodings: tuple[str, ...] = BASE_ENCODINGS
    kinds: dict[str, str] = field(default_factory=dict)  # needle -> name/id/birth/date/uid
    damaged: bool = False  # structurally damaged: the only right outcome is quarantine
    # Policy options the case is cleaned under (Option values); () is the default policy.
    options: tuple[str, ...] = ()
    # The only right outcome is quarantine with a reason holding this text ('' if any).
    refuse: str = ""


# ----------------------------------------------------------------------------- building
def base(c: Canaries, charset: str | None = None) -> Dataset:
    """A small valid CT instance of the case's patient."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = c.uids[0]
    ds.StudyDate = c.study_date
    ds.StudyTime = "101010"
    ds.AccessionNumber = c.accession
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.ReferringPhysicianName = ""
    ds.PatientName = c.name
    ds.PatientID = c.patient_id
    ds.PatientBirthDate = c.birth
    ds.PatientSex = "O"
    ds.StudyInstanceUID = c.uids[1]
    ds.SeriesInstanceUID = c.uids[2]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = c.uids[3]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(128)
    return ds


def save(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Part 10 bytes of ds in the given transfer syntax (pydicom's own writer)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    for elem in getattr(ds, "file_meta", FileMetaDataset()):
        meta[elem.tag] = elem
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _le_element(tag: int, vr: str, value: bytes, *, length: int | None = None) -> bytes:
    """One Explicit VR Little Endian element, with an optional forged length."""
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV"):
        return head + b"\0\0" + struct.pack("<I", n) + value
    return head + struct.pack("<H", n) + value


def _implicit_element(tag: int, value: bytes, *, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, n) + value


def _top_offsets(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(data set start, [(tag, offset)]) of the top-level elements of an LE file."""
    from medveil._core import scan_elements
    from medveil.dicom.strict import dataset_offset, sq_tags

    _, pos, ts = dataset_offset(data)
    rows, _, err = scan_elements(data, pos, len(data), ts == ImplicitVRLittleEndian, sq_tags())
    assert err is None, err
    return pos, [(int(r[0]), int(r[2])) for r in rows if r[0] >= 0 and r[7] == 0]


def insert(data: bytes, tag: int, chunk: bytes) -> bytes:
    """Insert raw element bytes at tag's place among the top-level elements."""
    _, tops = _top_offsets(data)
    at = next((off for t, off in tops if t > tag), len(data))
    return data[:at] + chunk + data[at:]


# ----------------------------------------------------------------------------- the cases
Builder = Callable[[Canaries], Case]
_BUILDERS: list[tuple[str, str, Builder]] = []


def place(name: str, klass: str = "place") -> Callable[[Builder], Builder]:
    """Register a builder of one hiding place."""

    def deco(fn: Builder) -> Builder:
        _BUILDERS.append((name, klass, fn))
        return fn

    return deco


def _case(c: Canaries, data: bytes, extra: list[tuple[str, str]] = (), **kw: object) -> Case:
    """A case whose needles are the patient's values plus extra (text, kind) pairs."""
    kinds = {
        c.family: "name",
        c.given: "name",
        c.patient_id: "id",
        c.accession: "id",
        c.birth: "birth",
        c.study_date: "date",
        **{u: "uid" for u in c.uids},
    }
    kinds.update(dict(extra))
    return Case("", "", data, list(kinds), kinds=kinds, **kw)  # type: ignore[arg-type]


def _text_place(keyword: str, value: Callable[[Canaries], str]) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(c)
        setattr(ds, keyword, value(c))
        return _case(c, save(ds))

    return build


# Text VRs, each in an element a policy may keep: the patient's name or ID copied into it.
for _kw, _vr, _fn in (
    ("StudyDescription", "LO", lambda c: f"Brain for {c.family}"),
    ("SeriesDescription", "LO", lambda c: f"{c.patient_id} axial"),
    ("ProtocolName", "LO", lambda c: f"{c.family.upper()}_{c.given.upper()}_MR_BRAIN"),
    ("StationName", "SH", lambda c: c.family[:16]),
    ("DerivationDescription", "ST", lambda c: f"derived for {c.given} {c.family}"),
    ("ImageComments", "LT", lambda c: f"Patient {c.family}, MRN {c.patient_id}"),
    ("AdditionalPatientHistory", "LT", lambda c: f"seen by {c.family}"),
    ("StudyComments", "LT", lambda c: f"{c.family}"),
    ("LongCodeValue", "UC", lambda c: f"code-{c.patient_id}"),
    ("RetrieveURL", "UR", lambda c: f"https://pacs.example/{c.family}/{c.uids[1]}"),
    ("RetrieveAETitle", "AE", lambda c: c.patient_id),
    ("BodyPartExamined", "CS", lambda c: c.family.upper()[:16]),
    ("ClinicalTrialSubjectID", "LO", lambda c: c.patient_id),
    ("ReasonForStudy", "LO", lambda c: f"{c.family} follow-up"),
    ("PerformedProcedureStepDescription", "LO", lambda c: f"{c.given} {c.family}"),
    ("RequestedProcedureDescription", "LO", lambda c: f"{c.family}"),
    ("ContentDescription", "LO", lambda c: f"{c.family}"),
    ("InstitutionAddress", "ST", lambda c: f"{c.family} street 1"),
    ("IssuerOfPatientID", "LO", lambda c: f"{c.family} hospital"),
    ("TimezoneOffsetFromUTC", "SH", lambda c: c.patient_id[:16]),
):
    place(f"vr-{_vr}-{_kw}")(_text_place(_kw, _fn))

# Person names in standard elements outside Table E.1-1 (class 7) and in it.
for _kw in (
    "SecondaryReviewerName",
    "EvaluatorName",
    "DocumentAuthorTrial",
    "ConsultingPhysicianName",
    "ReferringPhysicianName",
):
    place(f"pn-{_kw}", "7 attributes absent from the table")(
        _text_place(_kw, lambda c: f"{c.family}^{c.given}")
    )

for _kw in ("DocumentTitle", "CommentsOnTheScheduledProcedureStep"):
    place(f"text-{_kw}", "7 attributes absent from the table")(
        _text_place(_kw, lambda c: f"{c.family} {c.patient_id}")
    )

# Instance UIDs absent from the table holding the original SOP Instance UID (class 7).
for _kw in (
    "SOPInstanceUIDOfConcatenationSource",
    "MultiFrameSourceSOPInstanceUID",
    "ReferencedColorPaletteInstanceUID",
):
    place(f"uid-{_kw}", "7 attributes absent from the table")(_text_place(_kw, lambda c: c.uids[0]))


def _nested(depth: int) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(c)
        inner = Dataset()
        inner.ValueType = "TEXT"
        inner.TextValue = f"Report for {c.family}, born {c.birth}"
        for _ in range(depth - 1):
            outer = Dataset()
            outer.ValueType = "CONTAINER"
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = Sequence([inner])
        return _case(c, save(ds))

    return build


for _d in range(1, 9):
    place(f"depth-{_d}-TextValue", "4 structured content")(_nested(_d))


@place("depth-8-private-PN", "5 private sequences")
def _deep_private(c: Canaries) -> Case:
    ds = base(c)
    inner = Dataset()
    inner.add_new(0x00290010, "LO", "ACME 1.0")
    inner.add_new(0x00291001, "PN", c.name)
    for _ in range(7):
        outer = Dataset()
        outer.add_new(0x00290010, "LO", "ACME 1.0")
        outer.add_new(0x00291002, "SQ", Sequence([inner]))
        inner = outer
    ds.add_new(0x00290010, "LO", "ACME 1.0")
    ds.add_new(0x00291002, "SQ", Sequence([inner]))
    return _case(c, save(ds))


@place("acquisition-context-TextValue", "4 structured content")
def _acq_context(c: Canaries) -> Case:
    ds = base(c)
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = f"{c.family} {c.given}"
    ds.AcquisitionContextSequence = Sequence([item])
    return _case(c, save(ds))


@place("sr-person-name-item", "4 structured content")
def _sr_pname(c: Canaries) -> Case:
    ds = base(c)
    item = Dataset()
    item.ValueType = "PNAME"
    item.PersonName = f"{c.family}^{c.given}"
    ds.ContentSequence = Sequence([item])
    return _case(c, save(ds))


# Character sets: the name in the patient's script, in PatientName and ImageComments.
_SCRIPTS: dict[str, tuple[str, str]] = {
    "ISO_IR 100": ("latin_1", "àáâãäåæçèéêëìíîïñòóôõöøùúûüý"),
    "ISO_IR 101": ("iso8859_2", "ąćęłńóśźżčďěňřšťůž"),
    "ISO_IR 109": ("iso8859_3", "ĉĝĥĵŝŭ"),
    "ISO_IR 110": ("iso8859_4", "āēģīķļņōŗūų"),
    "ISO_IR 144": ("iso8859_5", "абвгдежзийклмнопрстуфхцчшщыэюя"),
    "ISO_IR 127": ("iso8859_6", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"),
    "ISO_IR 126": ("iso8859_7", "αβγδεζηθικλμνξοπρστυφχψω"),
    "ISO_IR 138": ("iso8859_8", "אבגדהוזחטיכלמנסעפצקרשת"),
    "ISO_IR 148": ("iso8859_9", "çğıöşü"),
    "ISO_IR 166": ("iso8859_11", "กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮ"),
    "ISO_IR 13": ("shift_jis", "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉ"),
    "ISO 2022 IR 87": (
        "iso2022_jp",
        "山田太郎佐藤鈴木高橋田中伊藤渡辺小林加藤吉村松本井上木村林清水",
    ),
    "ISO 2022 IR 149": ("euc_kr", "김이박최정강조윤장임한오서신권황안송류홍"),
    "ISO 2022 IR 58": ("gb2312", "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"),
    "ISO_IR 192": ("utf-8", "王李张刘陈杨黄赵吴周ÀÉÎÕÜ"),
    "GB18030": ("gb18030", "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"),
    "GBK": ("gbk", "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"),
}
_CHARSET_VALUE = {
    "ISO 2022 IR 87": ["ISO 2022 IR 6", "ISO 2022 IR 87"],
    "ISO 2022 IR 149": ["", "ISO 2022 IR 149"],
    "ISO 2022 IR 58": ["", "ISO 2022 IR 58"],
}


def _charset(term: str) -> Builder:
    codec, letters = _SCRIPTS[term]

    def build(c: Canaries) -> Case:
        if (
            term in ("ISO_IR 166", "ISO_IR 13")
            or codec in ("iso2022_jp", "euc_kr", "gb2312", "gb18030", "gbk")
            or term == "ISO_IR 192"
        ):
            word = "".join(c.rng.choice(letters) for _ in range(4))
        else:
            word = "Zq" + "".join(c.rng.choice(letters) for _ in range(5))
        ds = base(c, _CHARSET_VALUE.get(term, term))
        ds.PatientName = f"{word}^{c.given}"
        ds.ImageComments = f"{word} {c.patient_id}"
        ds.InstitutionName = word
        case = _case(c, save(ds), [(word, "name")])
        case.encodings = (*BASE_ENCODINGS, codec)
        return case

    return build


for _term in _SCRIPTS:
    place(f"charset-{_term}")(_charset(_term))


def _syntax(syntax: str) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(c)
        ds.StudyDescription = f"{c.family} {c.patient_id}"
        ds.add_new(0x00090010, "LO", "ACME 1.0")
        ds.add_new(0x00091001, "LO", c.name)
        return _case(c, save(ds, syntax))

    return build


for _name, _ts in (
    ("implicit-le", ImplicitVRLittleEndian),
    ("explicit-le", ExplicitVRLittleEndian),
    ("explicit-be", ExplicitVRBigEndian),
    ("deflated", DeflatedExplicitVRLittleEndian),
):
    place(f"syntax-{_name}", "3 post-check")(_syntax(_ts))


def _encapsulated(syntax: str) -> Builder:
    def build(c: Canaries) -> Case:
        import numpy as np

        ds = base(c)
        ds.StudyDescription = f"{c.family} {c.patient_id}"
        ds.add_new(0x00090010, "LO", "ACME 1.0")
        ds.add_new(0x00091001, "LO", c.name)
        ds.compress(syntax, np.zeros((8, 8), dtype=np.uint16))
        return _case(c, save(ds, syntax))

    return build


for _name, _ts in (("rle", RLELossless), ("jpeg-ls", JPEGLSLossless)):
    place(f"syntax-{_name}", "3 post-check")(_encapsulated(_ts))


@place("deflated-free-text", "3 post-check")
def _deflated_text(c: Canaries) -> Case:
    ds = base(c)
    ds.ImageComments = f"{c.given} {c.family} born {c.birth}"
    ds.DerivationDescription = c.patient_id
    return _case(c, save(ds, DeflatedExplicitVRLittleEndian))


@place("private-with-creator", "5 private")
def _private_creator(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x00110010, "LO", "ACME 1.0")
    ds.add_new(0x00111001, "LO", c.name)
    ds.add_new(0x00111002, "SH", c.patient_id)
    return _case(c, save(ds))


@place("private-without-creator", "5 private")
def _private_orphan(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x00131001, "LO", c.name)
    return _case(c, save(ds))


@place("private-safe-creator-wrong-vr", "5 private")
def _private_safe(c: Canaries) -> Case:
    # A Table E.3.10-1 creator, with a name where a code or number belongs.
    ds = base(c)
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    ds.add_new(0x0019100A, "LO", c.name)
    return _case(c, save(ds))


@place("private-implicit-UN", "5 private")
def _private_implicit(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x00150010, "LO", "ACME 1.0")
    ds.add_new(0x00151001, "LO", c.name)
    return _case(c, save(ds, ImplicitVRLittleEndian))


@place("private-OB-text", "5 private")
def _private_ob(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x00170010, "LO", "ACME 1.0")
    ds.add_new(0x00171001, "OB", f"{c.family}^{c.given}\0".encode()[: len(c.name) // 2 * 2])
    return _case(c, save(ds))


@place("private-SQ-PN", "5 private")
def _private_sq(c: Canaries) -> Case:
    ds = base(c)
    item = Dataset()
    item.PatientName = c.name
    item.OtherPatientIDs = c.patient_id
    ds.add_new(0x00210010, "LO", "ACME 1.0")
    ds.add_new(0x00211001, "SQ", Sequence([item]))
    return _case(c, save(ds))


@place("meta-source-ae", "11 file meta")
def _meta_ae(c: Canaries) -> Case:
    ds = base(c)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.SourceApplicationEntityTitle = c.patient_id[:16]
    return _case(c, save(ds))


@place("meta-implementation-version", "11 file meta")
def _meta_version(c: Canaries) -> Case:
    ds = base(c)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.ImplementationVersionName = c.family[:16]
    return _case(c, save(ds))


@place("meta-private-information", "11 file meta")
def _meta_private(c: Canaries) -> Case:
    ds = base(c)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.8.498.2"
    ds.file_meta.PrivateInformation = f"{c.name} {c.patient_id}".encode().ljust(32, b" ")
    return _case(c, save(ds))


@place("preamble", "11 file meta")
def _preamble(c: Canaries) -> Case:
    ds = base(c)
    ds.preamble = f"{c.name} {c.patient_id}".encode().ljust(128, b"\0")
    return _case(c, save(ds))


@place("after-pixel-retired-7FE0-0020", "3 post-check")
def _after_pixels(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x7FE00020, "OW", f"{c.name}".encode().ljust(32, b" "))
    return _case(c, save(ds))


@place("after-pixel-private-group", "3 post-check")
def _after_private(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x7FE10010, "LO", "ACME 1.0")
    ds.add_new(0x7FE11001, "LT", f"{c.family} {c.patient_id}")
    return _case(c, save(ds))


@place("trailing-padding", "3 post-check")
def _trailing_padding(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0xFFFCFFFC, "OB", f"{c.name} {c.patient_id}".encode().ljust(40, b"\0"))
    return _case(c, save(ds))


@place("trailing-garbage", "1 structure")
def _trailing_garbage(c: Canaries) -> Case:
    data = save(base(c)) + f"{c.name}|{c.patient_id}".encode()
    return _case(c, data, damaged=True)


@place("overlay-label-description", "9 overlays")
def _overlay(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", f"{c.family} overlay")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60001500, "LO", c.patient_id)
    ds.add_new(0x60003000, "OW", bytes(8))
    return _case(c, save(ds))


# Damaged structure (class 1): the only right outcome is a quarantine.
def _overrun(kind: str) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(c)
        if kind == "implicit-modality":
            data = save(ds, ImplicitVRLittleEndian)
            _, tops = _top_offsets(data)
            at = dict(tops)[0x00080060]
            data = (
                data[:at]
                + _implicit_element(0x00080060, b"CT", length=len(data) - at + 40)
                + data[at + 10 :]
            )
            return _case(c, data, damaged=True)
        data = save(ds)
        _, tops = _top_offsets(data)
        if kind == "ut-40":
            rest = len(data) - next(off for t, off in tops if t > 0x00091001) + 40
            chunk = _le_element(0x00090010, "LO", b"ACME 1.0") + _le_element(
                0x00091001, "UT", b"abcd", length=rest
            )
        elif kind == "ut-fffffff0":
            chunk = _le_element(0x00090010, "LO", b"ACME 1.0") + _le_element(
                0x00091001, "UT", b"abcd", length=0xFFFFFFF0
            )
        elif kind == "st-40":
            rest = len(data) - next(off for t, off in tops if t > 0x00082111) + 40
            chunk = _le_element(0x00082111, "ST", b"ab", length=min(rest, 0xFFFE))
        elif kind == "item-overrun":
            item = (
                b"\xfe\xff\x00\xe0"
                + struct.pack("<I", 0x7FFF)
                + _le_element(0x00081150, "UI", b"1.2\0")
            )
            chunk = _le_element(0x00081110, "SQ", item)
        elif kind == "delimiter-in-item":
            body = (
                _le_element(0x00081150, "UI", b"1.2\0")
                + b"\xfe\xff\x0d\xe0\0\0\0\0"
                + _le_element(
                    0x00100010, "PN", c.name.encode().ljust(len(c.name) + len(c.name) % 2)
                )
            )
            item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body
            chunk = _le_element(0x00081110, "SQ", item)
        elif kind == "undefined-lo":
            chunk = (
                _le_element(
                    0x00091001, "UT", c.name.encode() + b"\0" * (len(c.name) % 2), length=0xFFFFFFFF
                )
                + b"\xfe\xff\xdd\xe0\0\0\0\0"
            )
            chunk = _le_element(0x00090010, "LO", b"ACME 1.0") + chunk
        elif kind == "odd-length":
            value = f"{c.family}x".encode()
            value = value if len(value) % 2 else value + b"y"
            chunk = _le_element(0x00081030, "LO", value)
            data = data  # StudyDescription is not in base: inserted below
        elif kind == "duplicate-tag":
            value = c.name.encode().ljust(len(c.name) + len(c.name) % 2)
            chunk = _le_element(0x00081030, "LO", b"HEAD") + _le_element(0x00081030, "LO", value)
        else:  # pragma: no cover
            raise ValueError(kind)
        tag = int.from_bytes(chunk[:2], "little") << 16 | int.from_bytes(chunk[2:4], "little")
        return _case(c, insert(data, tag, chunk), damaged=True)

    return build


for _k in (
    "ut-40",
    "ut-fffffff0",
    "st-40",
    "implicit-modality",
    "item-overrun",
    "delimiter-in-item",
    "undefined-lo",
    "odd-length",
    "duplicate-tag",
):
    place(f"damaged-{_k}", "1 length overrun")(_overrun(_k))


@place("damaged-meta-group-length-short", "1 length overrun")
def _meta_short(c: Canaries) -> Case:
    ds = base(c)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.ImplementationVersionName = c.family[:16]
    data = bytearray(save(ds))
    glen = struct.unpack_from("<I", data, 140)[0]
    struct.pack_into("<I", data, 140, glen - 8 - len(c.family[:16]) - len(c.family[:16]) % 2)
    return _case(c, bytes(data), damaged=True)


@place("damaged-deflate-trailer", "1 length overrun")
def _deflate_trailer(c: Canaries) -> Case:
    data = save(base(c), DeflatedExplicitVRLittleEndian) + zlib.compress(c.name.encode())
    return _case(c, data, damaged=True)


# Birth dates in free text, in the spellings people write (class 2).
def _birth_spelled(fmt: str) -> Builder:
    def build(c: Canaries) -> Case:
        y, m, d = c.birth[:4], c.birth[4:6], c.birth[6:]
        text = fmt.format(y=y, m=m, d=d, mon=_MONTHS[int(m) - 1])
        ds = base(c)
        ds.ImageComments = f"DOB {text}"
        ds.StudyDescription = f"born {text}"
        return _case(c, save(ds), [(text, "date")])

    return build


for _i, _fmt in enumerate(("{y}-{m}-{d}", "{d}/{m}/{y}", "{d}.{m}.{y}", "{d} {mon} {y}")):
    place(f"birth-date-in-text-{_i}", "2 birth date in free text")(_birth_spelled(_fmt))


@place("date-range", "6 dates")
def _date_range(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(
        0x00400244, "DA", f"{c.study_date}-{c.study_date}"
    )  # PerformedProcedureStepStartDate
    return _case(c, save(ds))


@place("date-keyword-wrong-vr", "6 dates")
def _date_wrong_vr(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x00080021, "LO", c.study_date)  # SeriesDate written as LO
    return _case(c, save(ds))


@place("date-in-free-text", "6 dates")
def _date_text(c: Canaries) -> Case:
    ds = base(c)
    ds.ImageComments = f"scanned {c.study_date}"
    return _case(c, save(ds))


@place("vr-abuse-uid-as-sq", "8 VR abuse")
def _uid_sq(c: Canaries) -> Case:
    ds = base(c)
    item = Dataset()
    item.PersonName = c.name
    ds.add_new(0x00081155, "SQ", Sequence([item]))  # ReferencedSOPInstanceUID as SQ
    return _case(c, save(ds))


@place("vr-abuse-ds-as-lo", "8 VR abuse")
def _ds_lo(c: Canaries) -> Case:
    ds = base(c)
    ds.add_new(0x00180050, "LO", c.name)  # SliceThickness written as LO
    return _case(c, save(ds))


@place("descriptor-run-together", "10 clean descriptors")
def _run_together(c: Canaries) -> Case:
    ds = base(c)
    ds.SeriesDescription = f"{c.given}{c.family}"
    return _case(c, save(ds), [(f"{c.given}{c.family}", "name")])


@place("descriptor-mrn-prefix", "10 clean descriptors")
def _mrn_prefix(c: Canaries) -> Case:
    ds = base(c)
    ds.SeriesDescription = f"MRN DEMO-{c.patient_id}"
    return _case(c, save(ds))


@place("descriptor-other-person", "10 clean descriptors")
def _other_person(c: Canaries) -> Case:
    ds = base(c)
    doctor = c.word("Dr")
    ds.ReferringPhysicianName = f"{doctor}^Anne"
    ds.SeriesDescription = f"Ref Dr {doctor}"
    return _case(c, save(ds), [(doctor, "name")])


@place("descriptor-cjk-name-in-sentence", "10 clean descriptors")
def _cjk_sentence(c: Canaries) -> Case:
    # Han script has no spaces: the name sits between other ideograms.
    family = c.rng.choice("王李张刘陈杨黄赵吴周")
    given = "".join(c.rng.choice("伟芳娜敏静丽强磊军洋勇艳杰涛明超") for _ in range(2))
    ds = base(c, "ISO_IR 192")
    ds.PatientName = f"{family}^{given}"
    ds.ImageComments = f"患者{family}{given}的检查报告"
    ds.StudyDescription = f"{family}{given}头部"
    return _case(c, save(ds), [(family + given, "name")])


@place("descriptor-name-without-accents", "10 clean descriptors")
def _unaccented(c: Canaries) -> Case:
    stem = c.word("Zq", 4)
    family, typed = f"{stem}müller", f"{stem}mueller"
    ds = base(c, "ISO_IR 100")
    ds.PatientName = f"{family}^{c.given}"
    ds.ImageComments = f"seen: {typed.upper()}"
    ds.StudyDescription = f"{typed} {c.given}"
    return _case(c, save(ds), [(family, "name"), (typed, "name")])


@place("descriptor-id-fragment", "10 clean descriptors")
def _id_fragment(c: Canaries) -> Case:
    number = c.digits(6)
    c.patient_id = f"DEMO-{number}"
    ds = base(c)
    ds.SeriesDescription = f"MRN -{number}"
    ds.ImageComments = f"file {number}"
    return _case(c, save(ds), [(number, "id")])


@place("well-known-uid-root", "12 well-known UIDs")
def _uid_root(c: Canaries) -> Case:
    uid = "1.2.840.10008.9." + c.digits(20)
    c.uids[0] = uid
    ds = base(c)
    return _case(c, save(ds), [(uid, "uid")])


@place("document-title-even-id", "3 post-check")
def _even_id(c: Canaries) -> Case:
    # An even-length ID has no padding byte: in the raw bytes the next element's tag
    # follows it directly ((0042,0011): 0x42 'B' reads as a letter).
    c.patient_id = "QX" + c.digits(6)
    ds = base(c)
    ds.DocumentTitle = c.patient_id
    ds.add_new(0x00420011, "OB", b"%PDF")
    return _case(c, save(ds))


@place("modality-holds-name", "1 length overrun")
def _modality_name(c: Canaries) -> Case:
    ds = base(c)
    ds.Modality = c.family.upper()[:16]
    return _case(c, save(ds))


# Binary standard elements Table E.1-1 does not list (the default policy keeps them), each
# holding the name and the ID glued together: only a substring search finds them.
_BINARY_STANDARD = (
    (0x7FE00020, "OW"),  # Coefficients SDVN, after Pixel Data
    (0x00281201, "OW"),  # Red Palette Color Lookup Table Data
    (0x00283006, "OW"),  # LUT Data (US or OW)
    (0x00660016, "OF"),  # Point Coordinates Data
    (0x56000020, "OF"),  # Spectroscopy Data
    (0x00143050, "OB"),  # Dark Current Counts
)


def _apart(c: Canaries) -> Canaries:
    """c with a study date no other case's output can hold.

    The other cases' study dates (1995-2015) are shifted by up to 365 days in their
    outputs, so one of them may land on a later case's date by chance: 1992-1993 is out
    of their reach (birth dates, 1930-1990, are removed).
    """
    c.study_date = c.date(1992, 1993)
    return c


def _binary_glued(tag: int, vr: str) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(_apart(c))
        ds.add_new(tag, vr, f"1{c.family}{c.patient_id}1".encode().ljust(32, b" "))
        return _case(c, save(ds))

    return build


for _tag, _vr in _BINARY_STANDARD:
    place(f"binary-standard-{_tag >> 16:04X}-{_tag & 0xFFFF:04X}-glued", "3 post-check")(
        _binary_glued(_tag, _vr)
    )

_SAFE_PRIVATE = ("retain_safe_private",)


def _hologic(c: Canaries, blob: bytes) -> bytes:
    """A CT whose HOLOGIC Codec Content (7E01,xx12), a Retain Safe Private row, is blob."""
    ds = base(_apart(c))
    ds.private_block(0x7E01, "HOLOGIC, Inc.", create=True).add_new(0x12, "OB", blob)
    return save(ds)


def _identity_text(c: Canaries) -> bytes:
    return f"PatientName={c.name};PatientID={c.patient_id};".encode()


@place("safe-private-zlib-blob", "3 post-check")
def _zlib_blob(c: Canaries) -> Case:
    blob = zlib.compress(_identity_text(c))
    return _case(c, _hologic(c, blob + b"\0" * (len(blob) % 2)), options=_SAFE_PRIVATE)


@place("safe-private-gzip-blob", "3 post-check")
def _gzip_blob(c: Canaries) -> Case:
    blob = gzip.compress(_identity_text(c), mtime=0)
    return _case(c, _hologic(c, blob + b"\0" * (len(blob) % 2)), options=_SAFE_PRIVATE)


@place("safe-private-zlib-after-header", "3 post-check")
def _zlib_offset(c: Canaries) -> Case:
    # A vendor header of its own, then the stream, then a second stream after the first.
    first = zlib.compress(b"<codec version='2'/>")
    blob = b"HLGC\x01\x00\x00\x00" + bytes(8) + first + zlib.compress(_identity_text(c))
    return _case(c, _hologic(c, blob + b"\0" * (len(blob) % 2)), options=_SAFE_PRIVATE)


@place("safe-private-OW-glued", "3 post-check")
def _private_glued(c: Canaries) -> Case:
    ds = base(_apart(c))
    blob = f"xx{c.family}xx{c.patient_id}xx".encode()
    ds.private_block(0x0025, "Philips ST80i", create=True).add_new(
        0x01, "OW", blob + b"\0" * (len(blob) % 2)
    )
    return _case(c, save(ds), options=_SAFE_PRIVATE)


# A stream inflating to 64 MiB (compressed: about 64 KiB), the name at its very end.
_BOMB_SIZE = 64 << 20


def _bomb(tail: bytes) -> bytes:
    z = zlib.compressobj(9)
    zero = bytes(1 << 20)
    parts = [z.compress(zero) for _ in range(_BOMB_SIZE >> 20)]
    parts += [z.compress(tail), z.flush()]
    return b"".join(parts)


@place("safe-private-zlib-bomb", "3 post-check")
def _zlib_bomb(c: Canaries) -> Case:
    blob = _bomb(_identity_text(c))
    data = _hologic(c, blob + b"\0" * (len(blob) % 2))
    return _case(c, data, options=_SAFE_PRIVATE, refuse="cannot inspect compressed private data")


def _free_text_case(
    c: Canaries, data: bytes, extra: list[tuple[str, str]] = (), **kw: object
) -> Case:
    """_case without the study date as a needle.

    These cases are about text, which is written clean: the file's study date is shifted
    into the output, where it may equal another case's study date by chance (every
    output of a run is searched for every case's needles). Dates are the date cases'.
    """
    case = _case(c, data, extra, **kw)
    case.needles.remove(c.study_date)
    del case.kinds[c.study_date]
    return case


# Compressed streams the post-check must find wherever they sit in a binary value: raw
# DEFLATE (no zlib or gzip header), far into the value, inside a ZIP member (gap 1a).
def _raw_deflate(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def _zip_member(data: bytes) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("report.txt", data)
    return buf.getvalue()


def _filler(c: Canaries, n: int) -> bytes:
    """n bytes of vendor-looking binary (no zlib header by construction: even bytes only)."""
    return bytes(c.rng.randrange(0, 256) & 0xF6 for _ in range(n))


def _blob_case(where: str) -> Builder:
    def build(c: Canaries) -> Case:
        # A study date no other case's needles or shifted outputs hold (their dates are
        # 1930-2016): every output of a run is searched for every case's needles.
        c.study_date = c.date(1900, 1928)
        text = _identity_text(c)
        blob = {
            "raw-deflate-start": lambda: _raw_deflate(text),
            "raw-deflate-after-header": lambda: b"VNDR\x02\x00\x00\x00" + _raw_deflate(text),
            "raw-deflate-at-700": lambda: _filler(c, 700) + _raw_deflate(text),
            "zlib-at-300": lambda: _filler(c, 300) + zlib.compress(text),
            "gzip-at-5000": lambda: _filler(c, 5000) + gzip.compress(text, mtime=0),
            "zip-member-at-200": lambda: _filler(c, 200) + _zip_member(text),
            "raw-deflate-twice": lambda: _raw_deflate(b"<x/>") + _raw_deflate(text),
        }[where]()
        blob += b"\0" * (len(blob) % 2)
        ds = base(c)
        ds.add_new(0x00660016, "OF", blob)  # Point Coordinates Data: kept by default
        return _case(c, save(ds))

    return build


for _where in (
    "raw-deflate-start",
    "raw-deflate-after-header",
    "raw-deflate-at-700",
    "zlib-at-300",
    "gzip-at-5000",
    "zip-member-at-200",
    "raw-deflate-twice",
):
    place(f"binary-{_where}", "3 post-check")(_blob_case(_where))


@place("safe-private-raw-deflate", "3 post-check")
def _safe_raw(c: Canaries) -> Case:
    blob = b"HLGC" + _raw_deflate(_identity_text(c))
    return _case(c, _hologic(c, blob + b"\0" * (len(blob) % 2)), options=_SAFE_PRIVATE)


# Short names glued into other words in kept text (gap 1b): a three-letter family name
# and a longer one, in capitals and lower case, run into technical words.
def _glued(fmt: str, short: str) -> Builder:
    def build(c: Canaries) -> Case:
        if short:  # a three-letter family name, unique to the case by its second letter
            c.family = "Q" + short + c.rng.choice("jxzvwk")
        ds = base(c)
        ds.SeriesDescription = fmt.format(f=c.family.upper(), g=c.given.upper())
        ds.ImageComments = fmt.format(f=c.family.lower(), g=c.given.lower())
        return _free_text_case(c, save(ds))

    return build


for _i, (_fmt, _short_name) in enumerate(
    (
        ("MR{f}BRAIN", "j"),
        ("T1{f}AX", "x"),
        ("{f}{g}", "z"),
        ("BRAIN{f}", ""),
        ("MR{f}BRAIN{g}", ""),
    )
):
    place(f"glued-name-{_i}", "10 clean descriptors")(_glued(_fmt, _short_name))


# The patient's name glued into a code or device value the policy keeps verbatim: only a
# post-check that learns the glued run finds it (the only right outcome: quarantine).
def _glued_kept(keyword: str) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(c)
        value = f"{c.family.upper()}BRAIN"[:16]
        if keyword == "ImageType":
            ds.ImageType = ["ORIGINAL", "PRIMARY", value]
        else:
            setattr(ds, keyword, value)
        return _free_text_case(c, save(ds))

    return build


for _kw in ("BodyPartExamined", "ImageType", "StationName", "SequenceName", "Manufacturer"):
    place(f"glued-name-kept-{_kw}", "10 clean descriptors")(_glued_kept(_kw))


# A local code whose value is the patient's (gap 1c): Clean Structured Content keeps
# coded content, and a site's own scheme codes whatever it likes.
_STRUCT = ("clean_structured_content",)


def _local_code(where: str) -> Builder:
    def build(c: Canaries) -> Case:
        ds = base(c)
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        code = Dataset()
        code.CodingSchemeDesignator = "99MYHOSP"
        code.CodeMeaning = "Patient code"
        if where == "concept-name":
            code.CodeValue = c.patient_id
            item.ValueType = "TEXT"
            item.TextValue = "normal"
            item.ConceptNameCodeSequence = Sequence([code])
        elif where == "concept-code":
            code.CodeValue = c.family.upper()[:16]
            item.ValueType = "CODE"
            name = Dataset()
            name.CodeValue = "121071"
            name.CodingSchemeDesignator = "DCM"
            name.CodeMeaning = "Finding"
            item.ConceptNameCodeSequence = Sequence([name])
            item.ConceptCodeSequence = Sequence([code])
        else:  # long code value, nested two levels down
            code.CodingSchemeDesignator = "L"
            code.LongCodeValue = f"{c.family}-{c.patient_id}"
            item.ValueType = "CONTAINER"
            inner = Dataset()
            inner.RelationshipType = "CONTAINS"
            inner.ValueType = "TEXT"
            inner.TextValue = "x"
            inner.ConceptNameCodeSequence = Sequence([code])
            item.ContentSequence = Sequence([inner])
        ds.ContentSequence = Sequence([item])
        return _free_text_case(c, save(ds), options=_STRUCT)

    return build


for _where in ("concept-name", "concept-code", "long-nested"):
    place(f"sr-local-code-{_where}", "4 structured content")(_local_code(_where))


# Phone numbers, international (+CC) and in national spellings (gap 1d).
def _phone(fmt: str) -> Builder:
    def build(c: Canaries) -> Case:
        d = "".join(c.rng.choice("123456789") for _ in range(10))  # no 0: trunk prefixes
        number = fmt.format(*d)
        ds = base(c)
        ds.ImageComments = f"call {number} for results"
        ds.AdditionalPatientHistory = f"tel:{number}"
        digits = "".join(ch for ch in number if ch.isdigit())
        return _free_text_case(c, save(ds), [(number, "id"), (digits[-7:], "id")])

    return build


for _i, _fmt in enumerate(
    (
        "+44 20 {2}{3}{4}{5} {6}{7}{8}{9}",
        "+33 6 {2}{3} {4}{5} {6}{7} {8}{9}",
        "+49 (0)30 {2}{3}{4}{5}{6}{7}{8}",
        "+1-{0}{1}{2}-{3}{4}{5}-{6}{7}{8}{9}",
        "0{1}{2} {3}{4}{5} {6}{7}{8}{9}",
        "06 {2}{3} {4}{5} {6}{7} {8}{9}",
        "({0}{1}{2}) {3}{4}{5}-{6}{7}{8}{9}",
        "0{1}{2}{3}/{4}{5}{6}{7}{8}{9}",
        "+81-3-{2}{3}{4}{5}-{6}{7}{8}{9}",
    )
):
    place(f"phone-{_i}", "10 clean descriptors")(_phone(_fmt))


# Ages in free text (gap 1e): an age over 89 identifies; Safe Harbor caps it at 90.
def _age(fmt: str, needle: str) -> Builder:
    def build(c: Canaries) -> Case:
        age = c.rng.randint(91, 99)
        ds = base(c)
        ds.PatientAge = f"{age:03d}Y"
        ds.ImageComments = f"{fmt.format(a=age)} with chest pain"
        ds.StudyDescription = fmt.format(a=age)
        return _free_text_case(c, save(ds), [(needle.format(a=age), "age")])

    return build


for _i, (_fmt, _needle) in enumerate(
    (
        ("{a} yo male", "{a} yo"),
        ("a {a}-year-old woman", "{a}-year"),
        ("age {a}", "age {a}"),
        ("aged {a} years", "{a} years"),
        ("{a} y/o", "{a} y/o"),
        ("{a}yo F", "{a}yo"),
        ("{a} years old", "{a} years"),
        ("Pt {a}y, dyspnea", "{a}y"),
        ("AGE: {a}", "AGE: {a}"),
    )
):
    place(f"age-over-89-in-text-{_i}", "10 clean descriptors")(_age(_fmt, _needle))


def corpus(seed: int = 18) -> list[Case]:
    """Every registered hiding place, built with its own unique canaries."""
    out = []
    seen: set[str] = set()
    for i, (name, klass, build) in enumerate(_BUILDERS):
        # A case whose random canaries repeat an earlier case's (two study dates, say) is
        # drawn again: every canary stays unique to its case.
        for attempt in range(16):
            c = Canaries(random.Random(f"{seed}:{i}:{name}" + (f":{attempt}" if attempt else "")))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns on the deliberately odd values
                case = build(c)
            if not seen & set(case.needles):
                break
        seen.update(case.needles)
        case.place, case.klass = name, klass
        out.append(case)
    names = [c.place for c in out]
    assert len(set(names)) == len(names), "hiding place names must be unique"
    return out


def needle_bytes(case: Case) -> list[tuple[str, bytes]]:
    """(needle, encoded form) for every needle in every encoding; ASCII case-folded later."""
    out: list[tuple[str, bytes]] = []
    for n in case.needles:
        for enc in case.encodings:
            try:
                b = n.encode(enc)
            except (UnicodeEncodeError, LookupError):
                continue
            if enc.startswith("iso2022"):
                b = b.replace(b"\x1b$B", b"").replace(b"\x1b(B", b"").replace(b"\x1b(J", b"")
            out.append((n, b))
    return out


# The oracle inflates streams up to this size (past the post-check's bound: a bomb's tail
# is found when a file that holds one is released).
_ORACLE_LIMIT = 2 * _BOMB_SIZE
_STREAM = re.compile(rb"(?=(\x78[\x01\x5e\x9c\xda]|\x1f\x8b\x08))")


def _streams(data: bytes) -> list[bytes]:
    """What every zlib or gzip stream anywhere in data inflates to (default headers only)."""
    out = []
    for m in _STREAM.finditer(data):
        d = zlib.decompressobj(31 if data[m.start()] == 0x1F else 15)
        try:
            got = d.decompress(data[m.start() :], _ORACLE_LIMIT)
        except zlib.error:
            continue
        if got:
            out.append(got)
    return out


def inflate_all(data: bytes) -> bytes:
    """data plus the inflation of every deflate stream it may hold.

    The deflated data set of a Deflated Explicit VR file, and every zlib or gzip stream
    (a compressed blob in a binary element) anywhere in the bytes.
    """
    parts = [data]
    if len(data) > 144 and data[128:132] == b"DICM":
        meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
        try:
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            parts.append(d.decompress(data[meta_end:]))
        except zlib.error:
            pass
    parts += _streams(data)
    parts += _raw_streams(data)
    return b"\0".join(parts)


def _raw_streams(data: bytes) -> list[bytes]:
    """What a raw DEFLATE stream (no header) at any offset of data inflates to.

    Every offset is tried (most fail within a few bytes); a stream that breaks later gives
    what it inflated before the break, read in small pieces.
    """
    out = []
    for off in range(len(data) - 4):
        try:
            zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[off : off + 64], 1 << 16)
        except zlib.error:
            continue
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        got: list[bytes] = []
        size = 0
        for k in range(off, len(data), 256):
            try:
                piece = d.decompress(data[k : k + 256], _ORACLE_LIMIT - size)
            except zlib.error:
                break
            got.append(piece)
            size += len(piece)
            if d.eof or size >= _ORACLE_LIMIT:
                break
        if size >= 4:
            out.append(b"".join(got))
    return out


def leaks(case: Case, data: bytes) -> list[str]:
    """The needles of case present in data (any encoding, ASCII case-insensitive)."""
    hay = inflate_all(data)
    low = hay.lower()
    found = []
    for needle, b in needle_bytes(case):
        if needle in found:
            continue
        if b in hay or b.lower() in low:
            found.append(needle)
    return found


__all__ = ["Case", "corpus", "inflate_all", "leaks", "needle_bytes"]
