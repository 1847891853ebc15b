"""A second realistic archive: the other kinds of files a hospital PACS export holds.

:mod:`tests.corpus.realistic` covers single-frame CT/MR/CR, US, SC, XA, a Basic Text SR
and an RT Structure Set. :func:`generate` here writes, for a few patients, the objects
written by other modalities and workstations, as those write them:

- ``ENHCT`` / ``ENHMR``: Enhanced CT and MR multi-frame images with shared and per-frame
  functional groups and a dimension index (stack and in-stack position);
- ``PT``: PET slices with the Radiopharmaceutical Information Sequence and a GE PET
  private block (``GEMS_PETD_01``) that repeats the patient's name, as GE PET exports do;
- ``NM``: a multi-frame NM image with energy window and detector information;
- ``MG`` / ``BTO``: digital mammograms (For Presentation, view and laterality codes) and a
  breast tomosynthesis volume (enhanced multi-frame);
- ``PDF`` / ``CDA``: Encapsulated PDF reports whose text names the patient (drawn plain,
  in kerned pieces or in hex strings, Flate-compressed or not) and an HL7 CDA note;
- ``KO``: Key Object Selection documents that flag images of the study;
- ``PR``: Grayscale Softcopy Presentation States with text annotations naming the patient;
- ``SEG``: binary Segmentations referencing the CT series they were drawn on;
- ``RTPLAN`` / ``RTDOSE``: an RT Plan and its dose grid (32-bit multi-frame);
- ``SM``: a slide scanned as Whole Slide Microscopy (tiled VOLUME, OVERVIEW, LABEL);
- ``OP``: fundus photographs with the camera's caption (name, ID, date) burned in and
  Burned In Annotation NO, as fundus cameras write them;
- ``CSR``: Comprehensive SR with nested containers, numeric and text items, and
  coordinates;
- ``DOSESR``: X-Ray Radiation Dose SRs (TID 10011); ``ECG``: 12-lead ECGs with text
  annotations, one naming the patient;
- ``CSANI`` / ``PHSD``: vendors' private SOP classes (Siemens CSA Non-Image, Philips MR
  Series Data), as every Siemens and Philips MR export holds;
- vendor private groups: Siemens CSA headers (``SIEMENS CSA HEADER``, OB blobs in the
  ``SV10`` format, one whose protocol text names the patient), GE (``GEMS_IDEN_01``,
  ``GEMS_PARM_01``, ``GEMS_PETD_01``), Philips (``Philips Imaging DD 001``, ``Philips MR
  Imaging DD 001``, a private sequence of standard attributes) and Hologic blocks, with
  the patient's name planted in some private text values;
- what PACS exports do to files: a private and a standard sequence re-encoded as UN of
  undefined length, a bare data set (no preamble, no file meta), trailing padding, UTF-8
  sent under a Latin-1 declaration, names in UTF-8 and in ISO 2022 IR 87 (a Japanese
  patient's ideographic and phonetic groups), icon images.

Transfer syntaxes are those the modalities use: Explicit and Implicit VR Little Endian,
Deflated (SR, presentation states, an enhanced MR), RLE, JPEG Lossless SV1 (the most
common in PACS archives; a small encoder here, multi-fragment frames), JPEG 2000 lossless
(with an Extended Offset Table) and JPEG-LS lossless. Every identifying string is in the
returned :class:`~tests.corpus.realistic.Manifest` (``identifiers``, by
:func:`~tests.corpus.realistic.identifier_strings`, plus unaccented and Japanese
spellings; :func:`needle_bytes` gives their byte forms); :func:`pdf_text` gives the text
a PDF shows, for a bench to search released documents. dciodvfy finds no error in any
file but the private SOP classes' (no public IOD).

Deterministic: the same seed gives the same bytes. Small: about 120 files of a few kB
each for four patients, in under a second.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from tests.corpus import realistic
from tests.corpus.realistic import (
    Instance,
    Manifest,
    _code,
    _common,
    _meta,
    _render_lines,
    _set_pixels,
    identifier_strings,
)

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
NM_IMAGE = "1.2.840.10008.5.1.4.1.1.20"
MG_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
BREAST_TOMO = "1.2.840.10008.5.1.4.1.1.13.1.3"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
KEY_OBJECT = "1.2.840.10008.5.1.4.1.1.88.59"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ECG_12LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
ENCAPSULATED_CDA = "1.2.840.10008.5.1.4.1.1.104.2"
#: Siemens' private "CSA Non-Image" SOP class (spectroscopy, raw and protocol objects),
#: in every Siemens MR export; no public IOD describes it.
SIEMENS_CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
OPHTHALMIC_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
#: Philips' private "MR Series Data Storage": one per series in Philips MR exports.
PHILIPS_SERIES_DATA = "1.3.46.670589.11.0.0.12.1"

SYNTAX_NAMES = {**realistic.SYNTAX_NAMES, JPEGLosslessSV1: "jpeg-lossless"}

#: Class name per SOP class, for a bench's table.
CLASS_OF_SOP = {
    ENHANCED_CT: "ENHCT",
    ENHANCED_MR: "ENHMR",
    PET_IMAGE: "PT",
    NM_IMAGE: "NM",
    MG_PRESENTATION: "MG",
    BREAST_TOMO: "BTO",
    ENCAPSULATED_PDF: "PDF",
    KEY_OBJECT: "KO",
    GSPS: "PR",
    SEGMENTATION: "SEG",
    RT_PLAN: "RTPLAN",
    RT_DOSE: "RTDOSE",
    COMPREHENSIVE_SR: "CSR",
    DOSE_SR: "DOSESR",
    ECG_12LEAD: "ECG",
    ENCAPSULATED_CDA: "CDA",
    SIEMENS_CSA_NON_IMAGE: "CSANI",
    PHILIPS_SERIES_DATA: "PHSD",
    WSI: "SM",
    OPHTHALMIC_8BIT: "OP",
}

#: Patients: other people than realistic.py's, so the two archives can share a run.
PATIENTS = [
    ("WIJNGAARDEN", "PETRONELLA", "F", "19570419"),
    ("ABERNATHY", "LUCIUS", "M", "19690927"),
    ("SZCZEPAŃSKA", "KAROLINA", "F", "19830212"),  # written in UTF-8 (ISO_IR 192)
    ("YAMADA", "TARO", "M", "19750707"),  # with ideographic and phonetic names, ISO 2022
]
#: Ideographic and phonetic name groups (PS3.5 6.2.1.2), in ISO 2022 IR 87.
JAPANESE = {"YAMADA": ("山田^太郎", "やまだ^たろう")}


def needle_bytes(text: str) -> list[bytes]:
    """The byte spellings of an identifying string a leak search looks for: UTF-8, and
    ISO 2022 (JIS X 0208, with its escapes) for a Japanese one."""
    out = [text.encode()]
    if not text.isascii():
        try:
            out.append(text.encode("iso2022_jp"))
        except UnicodeEncodeError:
            pass
    return out


RADIOLOGIST = "MONTGOMERY^EVANGELINE"


class _Gen(realistic._Gen):
    """realistic's generator state with its own UID root (the archives never share UIDs)."""

    def uid(self) -> str:
        self.n += 1
        h = hashlib.sha256(f"modalities/{self.seed}/{self.n}".encode()).digest()[:12]
        u = f"1.2.826.0.1.3680043.8.498.7.{int.from_bytes(h, 'big')}"
        self.manifest.uids.append(u)
        return u


def _write(g: _Gen, root: Path, rel: str, ds: Dataset, inst: Instance) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    path.write_bytes(buf.getvalue())
    g.manifest.instances.append(inst)


def _ref(cls_uid: str, sop: str) -> Dataset:
    r = Dataset()
    r.ReferencedSOPClassUID = cls_uid
    r.ReferencedSOPInstanceUID = sop
    return r


def _evidence(study_uid: str, series: list[tuple[str, str, list[str]]]) -> Sequence:
    """A Hierarchical SOP Instance Reference item list: one study, its series and images."""
    st = Dataset()
    st.StudyInstanceUID = study_uid
    items = []
    for series_uid, cls_uid, sops in series:
        se = Dataset()
        se.SeriesInstanceUID = series_uid
        se.ReferencedSOPSequence = Sequence([_ref(cls_uid, u) for u in sops])
        items.append(se)
    st.ReferencedSeriesSequence = Sequence(items)
    return Sequence([st])


def _series(g: _Gen, ds: Dataset, modality: str, number: int, desc: str) -> None:
    ds.Modality = modality
    ds.SeriesInstanceUID = g.uid()
    ds.SeriesNumber = number
    ds.SeriesDescription = desc
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime


def _plain(text: str) -> str:
    """``text`` without accents (as a PDF font or an old system spells a name)."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _base(
    g: _Gen, sop_class: str, modality: str, pat: dict[str, str], study: dict[str, str]
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = g.uid()
    ds.Modality = modality
    _common(g, ds, pat, study)
    if "=" in pat["PatientName"]:
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    elif not pat["PatientName"].isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = study["StudyDate"]
    ds.InstanceCreationTime = study["StudyTime"]
    return ds


# -- vendor private groups ------------------------------------------------------------------


def csa_header(entries: list[tuple[str, str, list[str]]]) -> bytes:
    """A Siemens CSA header blob (``SV10`` format): (name, VR, values) entries."""
    out = [b"SV10\x04\x03\x02\x01", struct.pack("<II", len(entries), 77)]
    for name, vr, values in entries:
        out.append(name.encode().ljust(64, b"\0"))
        out.append(struct.pack("<i", len(values) or 1))
        out.append(vr.encode().ljust(4, b"\0"))
        out.append(struct.pack("<iii", 0, len(values), 77 if values else 205))
        for v in values:
            raw = v.encode() + b"\0"
            out.append(struct.pack("<iiii", len(raw), len(raw), 77, len(raw)))
            out.append(raw + b"\0" * (-len(raw) % 4))
    data = b"".join(out)
    return data + b"\0" * (len(data) % 2)


def _siemens(ds: Dataset, family: str, given: str, named: bool) -> None:
    """Siemens syngo private groups: the CSA image and series headers, as MR/CT write them."""
    ds.Manufacturer = "SIEMENS"
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    block.add_new(0x09, "LO", "20100114")
    block.add_new(
        0x10,
        "OB",
        csa_header(
            [
                ("EchoLinePosition", "IS", ["32"]),
                ("SliceNormalVector", "FD", ["0.0", "0.0", "1.0"]),
                ("ImaCoilString", "LO", ["HE1-4"]),
                ("SliceMeasurementDuration", "DS", ["60200.0"]),
            ]
        ),
    )
    block.add_new(0x18, "CS", "MR")
    block.add_new(0x19, "LO", "20100114")
    protocol = f"{family}_{given}_BRAIN" if named else "BRAIN_ROUTINE"
    phoenix = (
        "### ASCCONV BEGIN ###\n"
        f'tProtocolName\t = \t""{protocol}""\n'
        'sProtConsistencyInfo.tBaselineString\t = \t""N4_VE11C_LATEST_20160120""\n'
        "sRXSPEC.alDwellTime[0]\t = \t7800\n"
        "### ASCCONV END ###"
    )
    block.add_new(
        0x20,
        "OB",
        csa_header(
            [
                ("UsedPatientWeight", "IS", ["72"]),
                ("MrPhoenixProtocol", "UN", [phoenix]),
                ("CoilForGradient", "SH", ["void"]),
            ]
        ),
    )
    med = ds.private_block(0x0029, "SIEMENS MEDCOM HEADER2", create=True)
    med.add_new(0x60, "LO", "com")


def _ge(ds: Dataset, family: str, given: str, pid: str) -> None:
    """GE private creators as GE CT writes them, with text the technologist typed planted."""
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    iden = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
    iden.add_new(0x01, "LO", "GE_GENESIS_FF")
    iden.add_new(0x02, "SH", "CT01")
    iden.add_new(0x04, "SH", "DISCOVERY CT750")
    iden.add_new(0x27, "SL", 1679390400)
    pati = ds.private_block(0x0011, "GEMS_PATI_01", create=True)
    pati.add_new(0x10, "SS", 0)
    parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    parm.add_new(0x10, "US", 0)
    parm.add_new(0x27, "SH", "/1.0:1")
    parm.add_new(0x2D, "SH", f"{family[:8]}")  # scan comment field, typed by the tech
    acqu = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    acqu.add_new(0x9E, "LO", f"{pid} {given}")  # internal sequence name reused as a note


def _philips(ds: Dataset, family: str, given: str) -> None:
    """Philips private creators as Philips MR writes them, one text value naming the patient."""
    ds.Manufacturer = "Philips Medical Systems"
    dd = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    dd.add_new(0x01, "FL", 0.0)
    dd.add_new(0x03, "FL", 0.0)
    dd.add_new(0x0B, "CS", "TRANSVERSAL")
    dd.add_new(0x20, "LO", f"{family}^{given}")  # scanning technique text the operator typed
    mr = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
    mr.add_new(0x0D, "FL", 0.0)
    mr.add_new(0x0E, "FL", 1.0)
    # Philips' private sequence of standard attributes (2005,140F), one item per frame.
    dd5 = ds.private_block(0x2005, "Philips MR Imaging DD 005", create=True)
    inner = _item(
        InstanceCreationDate=ds.StudyDate,
        InstanceCreationTime=ds.StudyTime,
        InstanceCreatorUID="1.3.46.670589.11.0.1",
        MagneticFieldStrength=3.0,
        ImagedNucleus="1H",
    )
    dd5.add_new(0x0F, "SQ", Sequence([inner]))
    # Through a PACS that did not know the private VR: UN of undefined length.
    as_un(ds, dd5.get_tag(0x0F))


def as_un(ds: Dataset, tag: int) -> None:
    """Rewrite sequence ``tag`` as a PACS that lacks it in its dictionary does: VR UN,
    undefined length, the items in Implicit VR Little Endian (PS3.5 6.2.2)."""
    tmp = Dataset()
    tmp[tag] = ds[tag]
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, tmp)
    raw = buf.getvalue()
    body = raw[8:]
    if struct.unpack_from("<I", raw, 4)[0] == 0xFFFFFFFF:
        body = body[:-8]  # the sequence delimiter: the writer adds it back
    ds[tag] = RawDataElement(BaseTag(tag), "UN", 0xFFFFFFFF, body, 0, False, True)


def _item(**kw: object) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def _ct_macros(shared: Dataset, event_uid: str) -> None:
    """The Enhanced CT functional groups a scanner fills in for a helical acquisition."""
    shared.CTAcquisitionTypeSequence = Sequence(
        [_item(AcquisitionType="SPIRAL", ConstantVolumeFlag="NO", FluoroscopyFlag="NO")]
    )
    shared.CTAcquisitionDetailsSequence = Sequence(
        [
            _item(
                DataCollectionDiameter=500,
                GantryDetectorTilt=0,
                TableHeight=150,
                RotationDirection="CW",
                RevolutionTime=0.5,
                SingleCollimationWidth=0.625,
                TotalCollimationWidth=40,
            )
        ]
    )
    shared.CTTableDynamicsSequence = Sequence(
        [_item(TableSpeed=80, TableFeedPerRotation=40, SpiralPitchFactor=1.0)]
    )
    shared.CTGeometrySequence = Sequence(
        [_item(DistanceSourceToDetector=1085.6, DistanceSourceToDataCollectionCenter=595)]
    )
    shared.CTReconstructionSequence = Sequence(
        [
            _item(
                ReconstructionAlgorithm="ITERATIVE",
                ConvolutionKernel="STANDARD",
                ConvolutionKernelGroup="SOFT_TISSUE",
                ReconstructionDiameter=38.4,
                ReconstructionPixelSpacing=[0.8, 0.8],
                ReconstructionAngle=360,
                ImageFilter="SOFT",
            )
        ]
    )
    shared.CTExposureSequence = Sequence(
        [
            _item(
                ExposureTimeInms=500,
                XRayTubeCurrentInmA=200,
                ExposureInmAs=100,
                ExposureModulationType="NONE",
                CTDIvol=10.2,
            )
        ]
    )
    shared.CTPositionSequence = Sequence(
        [
            _item(
                TablePosition=-100,
                ReconstructionTargetCenterPatient=[0.0, 0.0, 0.0],
                DataCollectionCenterPatient=[0.0, 0.0, 0.0],
            )
        ]
    )
    shared.CTXRayDetailsSequence = Sequence(
        [_item(KVP=120, FilterType="FLAT", FilterMaterial="ALUMINUM", FocalSpots=[0.7])]
    )
    shared.IrradiationEventIdentificationSequence = Sequence([_item(IrradiationEventUID=event_uid)])


def _mr_macros(ds: Dataset, shared: Dataset) -> None:
    """The Enhanced MR image-level attributes and functional groups of a 3D T1 gradient echo."""
    for k, v in dict(
        PixelPresentation="MONOCHROME",
        ComplexImageComponent="MAGNITUDE",
        AcquisitionContrast="T1",
        ResonantNucleus="1H",
        KSpaceFiltering="NONE",
        MagneticFieldStrength=3.0,
        ApplicableSafetyStandardAgency="IEC",
        PulseSequenceName="tfl3d1",
        MRAcquisitionType="3D",
        EchoPulseSequence="GRADIENT",
        MultiPlanarExcitation="NO",
        PhaseContrast="NO",
        TimeOfFlightContrast="NO",
        SteadyStatePulseSequence="NONE",
        EchoPlanarPulseSequence="NO",
        SaturationRecovery="NO",
        SpectrallySelectedSuppression="NONE",
        OversamplingPhase="NONE",
        GeometryOfKSpaceTraversal="RECTILINEAR",
        SegmentedKSpaceTraversal="SINGLE",
        RectilinearPhaseEncodeReordering="LINEAR",
        NumberOfKSpaceTrajectories=1,
        CoverageOfKSpace="FULL",
    ).items():
        setattr(ds, k, v)
    shared.MRTimingAndRelatedParametersSequence = Sequence(
        [
            _item(
                RepetitionTime=2300.0,
                FlipAngle=9.0,
                EchoTrainLength=1,
                RFEchoTrainLength=1,
                GradientEchoTrainLength=1,
                SpecificAbsorptionRateSequence=Sequence(
                    [
                        _item(
                            SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                            SpecificAbsorptionRateValue=0.05,
                        )
                    ]
                ),
                GradientOutputType="DB_DT",
                GradientOutput=20.0,
                OperatingModeSequence=Sequence(
                    [_item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL")]
                ),
            )
        ]
    )
    shared.MREchoSequence = Sequence([_item(EffectiveEchoTime=2.98)])
    shared.MRModifierSequence = Sequence(
        [
            _item(
                InversionRecovery="YES",
                InversionTimes=[900.0],
                FlowCompensation="NONE",
                Spoiling="RF",
                T2Preparation="NO",
                SpectrallySelectedExcitation="NONE",
                SpatialPresaturation="NONE",
                PartialFourier="NO",
                ParallelAcquisition="YES",
                ParallelAcquisitionTechnique="SENSE",
                ParallelReductionFactorInPlane=2.0,
                ParallelReductionFactorOutOfPlane=1.0,
                ParallelReductionFactorSecondInPlane=1.0,
            )
        ]
    )
    shared.MRImagingModifierSequence = Sequence(
        [
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=123.2,
                PixelBandwidth=240.0,
            )
        ]
    )
    shared.MRReceiveCoilSequence = Sequence(
        [
            _item(
                ReceiveCoilName="HEAD 32",
                ReceiveCoilManufacturerName="",
                ReceiveCoilType="MULTICOIL",
                QuadratureReceiveCoil="NO",
                MultiCoilDefinitionSequence=Sequence(
                    [_item(MultiCoilElementName="H1", MultiCoilElementUsed="YES")]
                ),
            )
        ]
    )
    shared.MRTransmitCoilSequence = Sequence(
        [
            _item(
                TransmitCoilName="BODY",
                TransmitCoilManufacturerName="",
                TransmitCoilType="BODY",
            )
        ]
    )
    shared.MRFOVGeometrySequence = Sequence(
        [
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=48,
                MRAcquisitionPhaseEncodingStepsInPlane=48,
                MRAcquisitionPhaseEncodingStepsOutOfPlane=6,
                PercentSampling=100.0,
                PercentPhaseFieldOfView=100.0,
            )
        ]
    )
    shared.MRAveragesSequence = Sequence([_item(NumberOfAverages=1.0)])


def jpeg_lossless(img: np.ndarray, precision: int) -> bytes:
    """One grayscale frame as JPEG Lossless, Non-Hierarchical, First-Order Prediction (SV1).

    pydicom has no encoder for the syntax PACS archives hold most (1.2.840.10008.1.2.4.70):
    a small one here, every difference category coded in 5 bits (a valid table, not an
    optimal one), as ITU T.81 H.1 describes.
    """
    x = img.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[1:, 1:] = x[1:, :-1]
    diff = (x - pred) & 0xFFFF
    diff = np.where(diff >= 0x8000, diff - 0x10000, diff).ravel()
    out = bytearray()
    acc, nbits = 0, 0

    def put(value: int, n: int) -> None:
        nonlocal acc, nbits
        acc = (acc << n) | (value & ((1 << n) - 1))
        nbits += n
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0)  # byte stuffing
        acc &= (1 << nbits) - 1

    for d in diff.tolist():
        ssss = 16 if abs(d) == 32768 else abs(d).bit_length()
        put(ssss, 5)
        if 0 < ssss < 16:
            put(d if d > 0 else d + (1 << ssss) - 1, ssss)
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)
    rows, cols = img.shape
    sof = struct.pack(">HBHHBBBB", 11, precision, rows, cols, 1, 1, 0x11, 0)
    lengths = bytes([0, 0, 0, 0, 17] + [0] * 11)
    dht = struct.pack(">HB", 2 + 1 + 16 + 17, 0) + lengths + bytes(range(17))
    sos = struct.pack(">HBBBBBB", 8, 1, 1, 0, 1, 0, 0)
    return b"".join(
        [b"\xff\xd8\xff\xc3", sof, b"\xff\xc4", dht, b"\xff\xda", sos, bytes(out), b"\xff\xd9"]
    )


def _dimensions(ds: Dataset, dim_uid: str, rows: list[tuple[int, int, str | None]]) -> None:
    """The multi-frame Dimension module: one organization, an index row per (pointer,
    functional group, label or None)."""
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    dims = []
    for pointer, group, label in rows:
        d = Dataset()
        d.DimensionOrganizationUID = dim_uid
        d.DimensionIndexPointer = pointer
        d.FunctionalGroupPointer = group
        if label is not None:
            d.DimensionDescriptionLabel = label
        dims.append(d)
    ds.DimensionIndexSequence = Sequence(dims)


def _shared_geometry() -> Dataset:
    """A Shared Functional Groups item with axial pixel measures and plane orientation."""
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [0.8, 0.8]
    pm.SliceThickness = 3.0
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([po])
    return shared


def _pixels(ds: Dataset, arr: np.ndarray, ts: str, extended: bool = False) -> None:
    """realistic's _set_pixels, plus JPEG Lossless SV1 (grayscale frames, each in two
    fragments when there are several) and the Extended Offset Table (``extended``)."""
    if ts != JPEGLosslessSV1:
        _set_pixels(ds, arr, ts)
        if extended:
            frames = list(generate_frames(ds.PixelData, number_of_frames=len(arr)))
            out = encapsulate_extended(frames)
            ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = out
            ds["PixelData"].VR = "OB"
        return
    _set_pixels(ds, arr, ExplicitVRLittleEndian)  # the image pixel attributes
    frames = [jpeg_lossless(f.astype(np.uint16), int(ds.BitsStored)) for f in arr]
    ds.PixelData = encapsulate(frames, fragments_per_frame=2 if len(frames) > 1 else 1)
    ds["PixelData"].VR = "OB"
    _meta(ds, ts)


# -- PDF ------------------------------------------------------------------------------------


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(lines: list[str], compress: bool, style: str = "plain") -> bytes:
    """A one-page PDF showing ``lines`` (Helvetica), its content stream Flate-compressed or not.

    ``style``: how the text is drawn, as PDF writers do it: ``plain`` (one string per line,
    ``Tj``), ``kerned`` (a ``TJ`` array of pieces of three letters with kerning between
    them: word processors' output) or ``hex`` (hexadecimal strings). Only ``plain`` keeps
    a line's letters together in the file's bytes.
    """
    text = ["BT", "/F1 11 Tf", "14 TL", "56 780 Td"]
    for line in lines:
        raw = line.encode("latin-1")
        if style == "kerned":
            pieces = [_pdf_string(line[i : i + 3]) for i in range(0, len(line), 3)]
            text.append("[" + " -12 ".join(pieces) + "] TJ T*")
        elif style == "hex":
            text.append(f"<{raw.hex().upper()}> Tj T*")
        else:
            text.append(f"{_pdf_string(line)} Tj T*")
    text.append("ET")
    content = "\n".join(text).encode("latin-1")
    stream_dict = f"<< /Length {len(content)} >>"
    if compress:
        content = zlib.compress(content, 9)
        stream_dict = f"<< /Length {len(content)} /Filter /FlateDecode >>"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        stream_dict.encode() + b"\nstream\n" + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


_STREAM = re.compile(rb"<<(.*?)>>\s*stream\r?\n(.*?)\r?\nendstream", re.S)


_SHOWN = re.compile(rb"\[(.*?)\]\s*TJ|(\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f\s]*>)\s*Tj", re.S)
_PIECE = re.compile(rb"\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f\s]*>")


def _decode_piece(piece: bytes) -> bytes:
    if piece.startswith(b"<"):
        return bytes.fromhex(piece[1:-1].decode())
    return re.sub(rb"\\(.)", rb"\1", piece[1:-1])


def pdf_text(data: bytes) -> bytes:
    """The PDF's bytes, then every Flate stream inflated, then the text its content streams
    show (``Tj`` and ``TJ`` strings, literal or hex, pieces joined): for a leak search."""
    streams = [data]
    for m in _STREAM.finditer(data):
        body = m.group(2)
        if b"FlateDecode" in m.group(1):
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = b""
            streams.append(body)
    shown = []
    for body in streams:
        for m in _SHOWN.finditer(body):
            parts = _PIECE.findall(m.group(1)) if m.group(1) is not None else [m.group(2)]
            shown.append(b"".join(_decode_piece(p) for p in parts))
    return b"\n".join([*streams, *shown])


# -- generation -----------------------------------------------------------------------------


def generate(root: str | Path, *, seed: int = 0, patients: int = 2) -> Manifest:
    """Write the archive under ``root`` (created) and return its manifest (``patients`` 1..4)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    g = _Gen(seed)
    for p in range(min(patients, len(PATIENTS))):
        _patient(g, root, p)
    return g.manifest


def _patient(g: _Gen, root: Path, p: int) -> None:
    family, given, sex, birth = PATIENTS[p]
    pid = f"MRN{5520113 + 4211 * p}"
    ideographic = "=".join(JAPANESE.get(family, ()))
    pat = {
        "PatientName": f"{family}^{given}" + (f"={ideographic}" if ideographic else ""),
        "PatientID": pid,
        "PatientBirthDate": birth,
        "PatientSex": sex,
        "OtherPatientIDs": f"INS{88120034 + p}",
        "PatientAddress": f"{40 + p} QUARRY LANE, SPRINGFIELD",
    }
    accs = [f"X{2025020100 + 11 * p + s}" for s in range(3)]
    plain = _plain(family)
    g.manifest.identifiers[p] = identifier_strings(
        family, given, pid, birth, [*accs, pat["OtherPatientIDs"]]
    ) + ([plain, f"{plain}, {given}", f"{given} {plain}"] if plain != family else [])
    for group in JAPANESE.get(family, ()):
        g.manifest.identifiers[p] += [group, *group.split("^")]
    folder = f"pacs/{pid}"
    ctx = _Philips(g, root, p, pat, family, given)

    def study(s: int, desc: str) -> dict[str, str]:
        return {
            "StudyInstanceUID": g.uid(),
            "StudyDate": f"{2023 + s}{(p + 2 * s) % 12 + 1:02d}{12 + s:02d}",
            "StudyTime": f"{10 + s:02d}1500",
            "AccessionNumber": accs[s],
            "StudyID": f"{700 + 10 * p + s}",
            "ReferringPhysicianName": realistic.PHYSICIANS[(p + s) % 3],
            "PatientAge": f"{2023 + s - int(birth[:4]):03d}Y",
            "StudyDescription": desc,
        }

    # Study 1: oncology CT + PET, with a segmentation, RT plan and dose, and reports.
    st = study(0, "PET CT WHOLE BODY")
    sd = f"{folder}/study1"
    ct = ctx.enhanced(st, f"{sd}/01_ENHCT", "CT")
    pt = ctx.pet(st, f"{sd}/02_PT")
    ctx.seg(st, f"{sd}/03_SEG", ct)
    plan = ctx.rtplan(st, f"{sd}/04_RTPLAN", ct)
    ctx.rtdose(st, f"{sd}/05_RTDOSE", ct, plan)
    ctx.ko(st, f"{sd}/06_KO", [ct, pt])
    ctx.gsps(st, f"{sd}/07_PR", pt)
    ctx.csr(st, f"{sd}/08_CSR", [ct, pt])
    ctx.pdf(st, f"{sd}/09_PDF", compress=True, style="kerned")
    ctx.dose_sr(st, f"{sd}/10_DOSE", ct)
    ctx.slide(st, f"{sd}/12_SM")
    ctx.ecg(st, f"{sd}/11_ECG")
    # Study 2: MR brain (enhanced) and an NM bone scan.
    st = study(1, "MR BRAIN")
    sd = f"{folder}/study2"
    mr = ctx.enhanced(st, f"{sd}/01_ENHMR", "MR")
    ctx.nm(st, f"{sd}/02_NM")
    ctx.gsps(st, f"{sd}/03_PR", mr)
    ctx.pdf(st, f"{sd}/04_PDF", compress=False, style="plain" if p == 0 else "hex")
    if p % 2 == 0:
        ctx.csa_non_image(st, f"{sd}/05_SPEC", mr)
    else:
        ctx.philips_series_data(st, f"{sd}/05_PHSD", mr)
    ctx.cda(st, f"{sd}/06_CDA")
    ctx.fundus(st, f"{sd}/07_OP")
    # Study 3: breast screening (women) or a second CT (men).
    st = study(2, "MAMMO SCREENING BILATERAL" if sex == "F" else "CT FOLLOW UP")
    sd = f"{folder}/study3"
    if sex == "F":
        mg = ctx.mammo(st, f"{sd}/01_MG")
        ctx.tomo(st, f"{sd}/02_BTO")
        ctx.ko(st, f"{sd}/03_KO", [mg])
    else:
        ct2 = ctx.enhanced(st, f"{sd}/01_ENHCT", "CT")
        ctx.csr(st, f"{sd}/02_CSR", [ct2])


#: (series UID, SOP class UID, SOP instance UIDs, frame of reference UID)
Ref = tuple[str, str, list[str], str]


class _Ctx:
    """One patient's writer: shared arguments of every kind's method."""

    def __init__(
        self, g: _Gen, root: Path, p: int, pat: dict[str, str], family: str, given: str
    ) -> None:
        self.g, self.root, self.p, self.pat = g, root, p, pat
        self.family, self.given = family, given

    def write(
        self,
        rel: str,
        ds: Dataset,
        cls: str,
        ts: str,
        shape: tuple[int, int, int],
        bare: bool = False,
    ) -> None:
        """Save ``ds`` and list it in the manifest; ``bare``: no preamble nor file meta."""
        inst = Instance(rel, cls, SYNTAX_NAMES[ts], ds.SOPInstanceUID, self.p, [], shape)
        if not bare:
            _write(self.g, self.root, rel, ds, inst)
            return
        # Old PACS exports (and DICOM over a pipe) hold bare Implicit VR LE data sets.
        assert ts == ImplicitVRLittleEndian
        del ds.file_meta
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=False)
        path.write_bytes(buf.getvalue())
        self.g.manifest.instances.append(inst)

    def syntax(self, kind: str, options: list[str]) -> str:
        """The next transfer syntax for ``kind`` (each kind cycles through its own list)."""
        return realistic._syntax_cycle(self.g, kind, options)

    # -- images -----------------------------------------------------------------------------

    def enhanced(self, st: dict[str, str], sd: str, kind: str) -> Ref:
        """An Enhanced CT or MR: one multi-frame instance with functional groups."""
        g, ct = self.g, kind == "CT"
        ts = self.syntax(
            "ENH" + kind,
            [ExplicitVRLittleEndian, JPEGLosslessSV1, JPEG2000Lossless, RLELossless]
            if ct
            else [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEGLSLossless],
        )
        ds = _base(g, ENHANCED_CT if ct else ENHANCED_MR, kind, self.pat, st)
        _series(g, ds, kind, 1, "AX 3MM" if ct else "T1 MPRAGE")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.AcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
        ds.AcquisitionNumber = 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        ds.FrameOfReferenceUID = g.uid()
        ds.PositionReferenceIndicator = ""
        ds.ProtocolName = "CHEST ROUTINE" if ct else "BRAIN ROUTINE"
        ds.PatientPosition = "HFS"
        ds.ContentQualification = "PRODUCT"
        ds.BurnedInAnnotation = "NO"
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.DimensionOrganizationType = "3D"
        ds.PixelPresentation = "MONOCHROME"
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.AcquisitionDuration = 3.0
        ds.AcquisitionContextSequence = Sequence()
        ds.ImageComments = f"pt {self.family} cooperative" if self.p % 2 == 0 else "cooperative"
        frames, size = 6, 48
        _dimensions(
            ds,
            g.uid(),
            [
                (0x00209056, 0x00209111, "Stack ID"),
                (0x00209057, 0x00209111, "In-Stack Position Number"),
            ],
        )
        shared = _shared_geometry()
        anat = Dataset()
        anat.AnatomicRegionSequence = Sequence(
            [_code("T-D3000" if ct else "T-A0100", "SRT", "Chest" if ct else "Brain")]
        )
        anat.FrameLaterality = "U"
        shared.FrameAnatomySequence = Sequence([anat])
        if ct:
            ft = Dataset()
            ft.FrameType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
            ft.PixelPresentation = "MONOCHROME"
            ft.VolumetricProperties = "VOLUME"
            ft.VolumeBasedCalculationTechnique = "NONE"
            shared.CTImageFrameTypeSequence = Sequence([ft])
            pvt = Dataset()
            pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = -1024, 1, "HU"
            shared.PixelValueTransformationSequence = Sequence([pvt])
            _ct_macros(shared, g.uid())
        else:
            ft = Dataset()
            ft.FrameType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
            ft.PixelPresentation = "MONOCHROME"
            ft.VolumetricProperties = "VOLUME"
            ft.VolumeBasedCalculationTechnique = "NONE"
            ft.ComplexImageComponent = "MAGNITUDE"
            ft.AcquisitionContrast = "T1"
            shared.MRImageFrameTypeSequence = Sequence([ft])
            pvt = Dataset()
            pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = 0, 1, "US"
            shared.PixelValueTransformationSequence = Sequence([pvt])
            _mr_macros(ds, shared)
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = (40, 400) if ct else (600, 1200)
        shared.FrameVOILUTSequence = Sequence([voi])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        per = []
        stack = []
        for f in range(frames):
            item = Dataset()
            fc = Dataset()
            fc.StackID = "1"
            fc.InStackPositionNumber = f + 1
            fc.DimensionIndexValues = [1, f + 1]
            fc.FrameAcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
            fc.FrameReferenceDateTime = st["StudyDate"] + st["StudyTime"]
            fc.FrameAcquisitionDuration = 500.0
            item.FrameContentSequence = Sequence([fc])
            pp = Dataset()
            pp.ImagePositionPatient = [-19.2, -19.2, -9.0 + 3.0 * f]
            item.PlanePositionSequence = Sequence([pp])
            per.append(item)
            if ct:
                stack.append((g.ct_slice(f, size) + 1024).astype(np.uint16))
            else:
                stack.append(g.mr_slice(size))
        ds.PerFrameFunctionalGroupsSequence = Sequence(per)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        arr = np.clip(np.stack(stack), 0, 4095).astype(np.uint16)
        ds.NumberOfFrames = frames
        if ct:
            _ge(ds, self.family, self.given, self.pat["PatientID"])
            # GE pads some data sets after the pixel data (PS3.5 7.2).
            ds.add_new(0xFFFCFFFC, "OB", b"\0" * 64)
        elif self.p % 2 == 0:
            _siemens(ds, self.family, self.given, named=True)
        else:
            _philips(ds, self.family, self.given)
        _pixels(ds, arr, ts, extended=ts == JPEG2000Lossless)
        if ct and ts == JPEGLosslessSV1:
            # An old PACS in between: functional groups it has no dictionary entry for.
            as_un(ds, 0x52009229)
        self.write(f"{sd}/EN0001.dcm", ds, "ENH" + kind, ts, (size, size, frames))
        return ds.SeriesInstanceUID, ds.SOPClassUID, [ds.SOPInstanceUID], ds.FrameOfReferenceUID

    def pet(self, st: dict[str, str], sd: str) -> Ref:
        """Four PET slices, with the radiopharmaceutical and GE's PET private block."""
        g = self.g
        series, frame_ref = g.uid(), g.uid()
        sops = []
        size = 32
        for i in range(4):
            ts = self.syntax(
                "PT", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLosslessSV1]
            )
            ds = _base(g, PET_IMAGE, "PT", self.pat, st)
            ds.Manufacturer = "GE MEDICAL SYSTEMS"
            ds.SeriesInstanceUID = series
            ds.SeriesNumber = 2
            ds.SeriesDescription = "PET WB AC"
            ds.SeriesDate, ds.SeriesTime = st["StudyDate"], st["StudyTime"]
            ds.InstanceNumber = i + 1
            ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
            ds.AcquisitionDate, ds.AcquisitionTime = st["StudyDate"], st["StudyTime"]
            ds.FrameOfReferenceUID = frame_ref
            ds.PositionReferenceIndicator = ""
            ds.PatientWeight, ds.PatientSize = 72.5, 1.68
            ds.ImageType = ["ORIGINAL", "PRIMARY"]
            ds.SeriesType = ["WHOLE BODY", "IMAGE"]
            ds.Units = "BQML"
            ds.CountsSource = "EMISSION"
            ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
            ds.DecayCorrection = "START"
            ds.RandomsCorrectionMethod = "DLYD"
            ds.ReconstructionMethod = "OSEM"
            ds.AttenuationCorrectionMethod = "CT"
            ds.DecayFactor = 1.0
            ds.DoseCalibrationFactor = 1.0
            ds.ScatterFractionFactor = 0.3
            ds.DeadTimeFactor = 1.0
            ds.NumberOfSlices = 4
            ds.ImageIndex = i + 1
            ds.AcquisitionStartCondition = "MANU"
            ds.FrameReferenceTime = 0.0
            ds.ActualFrameDuration = 120000
            ds.PrimaryPromptsCountsAccumulated = 1000000
            ds.SliceSensitivityFactor = 1.0
            ds.CollimatorType = "NONE"
            ds.PatientGantryRelationshipCodeSequence = Sequence(
                [_code("F-10470", "SRT", "headfirst")]
            )
            ds.PatientOrientationCodeSequence = Sequence([_code("F-10450", "SRT", "recumbent")])
            ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = Sequence(
                [_code("F-10340", "SRT", "supine")]
            )
            ds.Laterality = ""
            rp = Dataset()
            rp.Radiopharmaceutical = "Fluorodeoxyglucose"
            rp.RadiopharmaceuticalStartTime = "093000"
            rp.RadiopharmaceuticalStartDateTime = st["StudyDate"] + "093000"
            rp.RadionuclideTotalDose = 370000000
            rp.RadionuclideHalfLife = 6586.2
            rp.RadionuclidePositronFraction = 0.97
            rp.RadionuclideCodeSequence = Sequence([_code("C-111A1", "SRT", "^18^Fluorine")])
            rp.RadiopharmaceuticalCodeSequence = Sequence(
                [_code("C-B1031", "SRT", "Fluorodeoxyglucose F^18^")]
            )
            ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
            ds.SliceThickness = 3.27
            ds.PixelSpacing = [4.0, 4.0]
            ds.ImagePositionPatient = [-64.0, -64.0, -100.0 + 3.27 * i]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.SliceLocation = -100.0 + 3.27 * i
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = 0, 0.25
            ds.LossyImageCompression = "00"
            yy, xx = np.mgrid[0:size, 0:size]
            img = 400 * np.exp(-((yy - 16) ** 2 + (xx - 14 - i) ** 2) / 30.0)
            arr = (img + g.rng.poisson(20, img.shape)).astype(np.int16)
            petd = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
            petd.add_new(0x02, "LO", f"{self.family}, {self.given}")  # GE PET patient name
            petd.add_new(0x05, "DT", st["StudyDate"] + "093000")
            petd.add_new(0x0D, "DT", st["StudyDate"] + st["StudyTime"])
            _pixels(ds, arr[None], ts)
            if self.p == 2 and i == 1:
                # A modality that sends UTF-8 but declares Latin-1 (the bytes are as sent).
                ds.SpecificCharacterSet = "ISO_IR 100"
                for elem in ds.iterall():
                    text = str(elem.value) if elem.VR in ("PN", "LO", "SH") else ""
                    if not text.isascii():
                        elem.value = text.encode()
            bare = i == 3 and ts == ImplicitVRLittleEndian
            self.write(f"{sd}/PT{i + 1:04d}.dcm", ds, "PT", ts, (size, size, 1), bare)
            sops.append(ds.SOPInstanceUID)
        return series, PET_IMAGE, sops, frame_ref

    def nm(self, st: dict[str, str], sd: str) -> Ref:
        """A two-detector NM whole-body image (multi-frame, energy window and detector)."""
        g = self.g
        ts = self.syntax("NM", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, NM_IMAGE, "NM", self.pat, st)
        _series(g, ds, "NM", 2, "BONE WB")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.AcquisitionDate, ds.AcquisitionTime = st["StudyDate"], st["StudyTime"]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]
        ds.PatientOrientation = ""
        ds.Laterality = ""
        ds.FrameOfReferenceUID = g.uid()
        ds.PositionReferenceIndicator = ""
        ds.BurnedInAnnotation = "NO"
        ds.PatientOrientationCodeSequence = Sequence([_code("F-10450", "SRT", "recumbent")])
        ds.PatientGantryRelationshipCodeSequence = Sequence([_code("F-10470", "SRT", "headfirst")])
        ds.CountsAccumulated = 2400000
        ds.PixelSpacing = [2.4, 2.4]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.NumberOfFrames = 2
        ds.FrameIncrementPointer = [0x00540010, 0x00540020]
        ds.EnergyWindowVector = [1, 1]
        ds.NumberOfEnergyWindows = 1
        ds.DetectorVector = [1, 2]
        ds.NumberOfDetectors = 2
        ew = Dataset()
        rng = Dataset()
        rng.EnergyWindowLowerLimit, rng.EnergyWindowUpperLimit = 126.45, 154.55
        ew.EnergyWindowRangeSequence = Sequence([rng])
        ew.EnergyWindowName = "TC99M"
        ds.EnergyWindowInformationSequence = Sequence([ew])
        rp = Dataset()
        rp.Radiopharmaceutical = "Tc99m MDP"
        rp.RadionuclideCodeSequence = Sequence([_code("C-163A8", "SRT", "^99m^Technetium")])
        rp.RadionuclideTotalDose = 740.0
        rp.RadiopharmaceuticalStartTime = "073000"
        ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
        dets = []
        for d in range(2):
            it = Dataset()
            it.CollimatorGridName = "LEHR"
            it.CollimatorType = "PARA"
            it.ImagePositionPatient = [0.0, 0.0, 0.0]
            it.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            it.ViewCodeSequence = Sequence(
                [_code("R-10224" if d == 0 else "R-10226", "SRT", ["anterior", "posterior"][d])]
            )
            dets.append(it)
        ds.DetectorInformationSequence = Sequence(dets)
        ds.RotationVector = None
        del ds.RotationVector
        ds.ScanVelocity, ds.WholeBodyTechnique, ds.ScanLength = 12.0, ["1PS", "2PS"], 2000
        ds.ActualFrameDuration = 900000
        rows, cols = 96, 32
        yy, xx = np.mgrid[0:rows, 0:cols]
        body = (np.abs(xx - cols / 2) < 8 - 4 * np.cos(yy / rows * 6)).astype(float)
        arr = np.stack([g.rng.poisson(40 * body + 2) for _ in range(2)]).astype(np.uint16)
        _pixels(ds, arr, ts)
        self.write(f"{sd}/NM0001.dcm", ds, "NM", ts, (rows, cols, 2))
        return ds.SeriesInstanceUID, NM_IMAGE, [ds.SOPInstanceUID], ds.FrameOfReferenceUID

    def mammo(self, st: dict[str, str], sd: str) -> Ref:
        """The four screening views (R/L CC, R/L MLO) For Presentation."""
        g = self.g
        series = g.uid()
        sops = []
        rows, cols = 80, 64
        views = [
            ("R", "CC", "R-10242", "cranio-caudal"),
            ("L", "CC", "R-10242", "cranio-caudal"),
            ("R", "MLO", "R-10226", "medio-lateral oblique"),
            ("L", "MLO", "R-10226", "medio-lateral oblique"),
        ]
        for i, (lat, view, code, meaning) in enumerate(views):
            ts = self.syntax(
                "MG", [JPEGLosslessSV1, JPEG2000Lossless, ExplicitVRLittleEndian, JPEGLSLossless]
            )
            ds = _base(g, MG_PRESENTATION, "MG", self.pat, st)
            ds.Manufacturer = "HOLOGIC, Inc."
            ds.SeriesInstanceUID = series
            ds.SeriesNumber = 1
            ds.SeriesDescription = "SCREENING"
            ds.InstanceNumber = i + 1
            ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
            ds.AcquisitionDate, ds.AcquisitionTime = st["StudyDate"], st["StudyTime"]
            ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
            ds.PresentationIntentType = "FOR PRESENTATION"
            ds.ImageLaterality = lat
            ds.AcquisitionContextSequence = Sequence()
            ds.PositionerType = "MAMMOGRAPHIC"
            ds.OrganExposed = "BREAST"
            ds.ViewPosition = view
            ds.PatientOrientation = ["A", "R" if lat == "L" else "L"]
            ds.ViewCodeSequence = Sequence([_code(code, "SRT", meaning)])
            ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
            ds.AnatomicRegionSequence = Sequence([_code("T-04000", "SRT", "Breast")])
            ds.BodyPartExamined = "BREAST"
            ds.BurnedInAnnotation = "NO"
            ds.PresentationLUTShape = "IDENTITY"
            ds.PixelIntensityRelationship = "LOG"
            ds.PixelIntensityRelationshipSign = -1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
            ds.WindowCenter, ds.WindowWidth = 2048, 4096
            ds.ImagerPixelSpacing = [0.07, 0.07]
            ds.PixelSpacing = [0.07, 0.07]
            ds.DetectorType = "DIRECT"
            ds.KVP, ds.ExposureTime, ds.XRayTubeCurrent, ds.Exposure = 29, 1200, 100, 120
            ds.DistanceSourceToDetector = 700
            ds.DistanceSourceToPatient = 640
            ds.BodyPartThickness = 48
            ds.CompressionForce = 98
            ds.PositionerPrimaryAngle = 0 if view == "CC" else 45
            ds.OrganDose = 1.1
            ds.EntranceDoseInmGy = 4.2
            ds.BreastImplantPresent = "NO"
            ds.QualityControlImage = "NO"
            ds.LossyImageCompression = "00"
            ds.OperatorsName = "LINDQVIST^MARIT"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            yy, xx = np.mgrid[0:rows, 0:cols]
            edge = xx if lat == "R" else cols - 1 - xx
            breast = np.hypot(yy - rows / 2, edge) < rows * 0.45
            img = np.where(breast, 2600 - 8 * edge, 300) + g.rng.normal(0, 20, (rows, cols))
            arr = np.clip(img, 0, 4095).astype(np.uint16)
            # A thumbnail for the PACS browser (Icon Image Sequence, 8-bit).
            icon = _item(
                SamplesPerPixel=1,
                PhotometricInterpretation="MONOCHROME2",
                Rows=rows // 4,
                Columns=cols // 4,
                BitsAllocated=8,
                BitsStored=8,
                HighBit=7,
                PixelRepresentation=0,
            )
            icon.PixelData = (arr[::4, ::4] >> 4).astype(np.uint8).tobytes()
            ds.IconImageSequence = Sequence([icon])
            holo = ds.private_block(0x0019, "HOLOGIC, Inc.", create=True)
            holo.add_new(0x06, "LO", "SBGH-MG01")
            holo.add_new(0x07, "CS", "CC" if view == "CC" else "MLO")
            _pixels(ds, arr[None], ts)
            self.write(f"{sd}/MG{i + 1:04d}.dcm", ds, "MG", ts, (rows, cols, 1))
            sops.append(ds.SOPInstanceUID)
        return series, MG_PRESENTATION, sops, ""

    def tomo(self, st: dict[str, str], sd: str) -> Ref:
        """A breast tomosynthesis volume: enhanced multi-frame, one plane per frame."""
        g = self.g
        ts = self.syntax("BTO", [ExplicitVRLittleEndian, JPEG2000Lossless])
        ds = _base(g, BREAST_TOMO, "MG", self.pat, st)
        ds.Manufacturer = "HOLOGIC, Inc."
        _series(g, ds, "MG", 2, "R CC TOMO")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.AcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"]
        ds.FrameOfReferenceUID = g.uid()
        ds.PositionReferenceIndicator = ""
        ds.ContentQualification = "PRODUCT"
        ds.BurnedInAnnotation = "NO"
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "R"
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "TOMOSYNTHESIS"
        ds.PixelPresentation = "MONOCHROME"
        ds.BreastImplantPresent = "NO"
        ds.AcquisitionContextSequence = Sequence()
        ds.DimensionOrganizationType = "3D"
        dim_uid = g.uid()
        org = Dataset()
        org.DimensionOrganizationUID = dim_uid
        ds.DimensionOrganizationSequence = Sequence([org])
        d = Dataset()
        d.DimensionOrganizationUID = dim_uid
        d.DimensionIndexPointer = 0x00200032
        d.FunctionalGroupPointer = 0x00209113
        ds.DimensionIndexSequence = Sequence([d])
        shared = Dataset()
        pm = Dataset()
        pm.PixelSpacing = [0.1, 0.1]
        pm.SliceThickness = 1.0
        shared.PixelMeasuresSequence = Sequence([pm])
        po = Dataset()
        po.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        shared.PlaneOrientationSequence = Sequence([po])
        anat = Dataset()
        anat.AnatomicRegionSequence = Sequence([_code("T-04000", "SRT", "Breast")])
        anat.FrameLaterality = "R"
        shared.FrameAnatomySequence = Sequence([anat])
        view = Dataset()
        view.ViewCodeSequence = Sequence([_code("R-10242", "SRT", "cranio-caudal")])
        view.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
        shared.PixelValueTransformationSequence = Sequence(
            [_item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")]
        )
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        ds.ViewCodeSequence = view.ViewCodeSequence
        frames, rows, cols = 5, 48, 40
        per = []
        for f in range(frames):
            it = Dataset()
            fc = Dataset()
            fc.DimensionIndexValues = [f + 1]
            fc.FrameAcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
            fc.FrameReferenceDateTime = st["StudyDate"] + st["StudyTime"]
            fc.FrameAcquisitionDuration = 100.0
            it.FrameContentSequence = Sequence([fc])
            it.XRay3DFrameTypeSequence = Sequence(
                [
                    _item(
                        FrameType=["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"],
                        PixelPresentation="MONOCHROME",
                        VolumetricProperties="VOLUME",
                        VolumeBasedCalculationTechnique="TOMOSYNTHESIS",
                    )
                ]
            )
            pp = Dataset()
            pp.ImagePositionPatient = [float(f), 0.0, 0.0]
            it.PlanePositionSequence = Sequence([pp])
            per.append(it)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 10, 9, 0
        arr = g.rng.integers(100, 1000, (frames, rows, cols)).astype(np.uint16)
        ds.NumberOfFrames = frames
        _pixels(ds, arr, ts)
        self.write(f"{sd}/BT0001.dcm", ds, "BTO", ts, (rows, cols, frames))
        return ds.SeriesInstanceUID, BREAST_TOMO, [ds.SOPInstanceUID], ds.FrameOfReferenceUID

    def seg(self, st: dict[str, str], sd: str, src: Ref) -> None:
        """A binary Segmentation of the first frames of ``src`` (one segment: a lesion)."""
        g = self.g
        ts = self.syntax("SEG", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, SEGMENTATION, "SEG", self.pat, st)
        ds.Manufacturer = "QIICR"
        ds.ManufacturerModelName = "dcmqi"
        _series(g, ds, "SEG", 3, "LESION SEG")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.ContentLabel = "LESION"
        ds.ContentDescription = f"lesion of {self.family}" if self.p % 2 == 0 else "lesion"
        ds.ContentCreatorName = RADIOLOGIST
        ds.ImageType = ["DERIVED", "PRIMARY"]
        ds.FrameOfReferenceUID = src[3]
        ds.PositionReferenceIndicator = ""
        ds.SegmentationType = "BINARY"
        ds.LossyImageCompression = "00"
        ds.ReferencedSeriesSequence = Sequence()
        rs = Dataset()
        rs.SeriesInstanceUID = src[0]
        rs.ReferencedInstanceSequence = Sequence([_ref(src[1], u) for u in src[2]])
        ds.ReferencedSeriesSequence = Sequence([rs])
        seg = Dataset()
        seg.SegmentNumber = 1
        seg.SegmentLabel = "Lesion"
        seg.SegmentAlgorithmType = "MANUAL"
        seg.SegmentedPropertyCategoryCodeSequence = Sequence(
            [_code("M-01000", "SRT", "Morphologically Altered Structure")]
        )
        seg.SegmentedPropertyTypeCodeSequence = Sequence([_code("M-03000", "SRT", "Mass")])
        ds.SegmentSequence = Sequence([seg])
        _dimensions(ds, g.uid(), [(0x0062000B, 0x0062000A, None), (0x00200032, 0x00209113, None)])
        shared = _shared_geometry()
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames, size = 3, 48
        per = []
        for f in range(frames):
            it = Dataset()
            fc = Dataset()
            fc.DimensionIndexValues = [1, f + 1]
            it.FrameContentSequence = Sequence([fc])
            der = Dataset()
            srcimg = _ref(src[1], src[2][0])
            srcimg.ReferencedFrameNumber = f + 2
            srcimg.PurposeOfReferenceCodeSequence = Sequence(
                [_code("121322", "DCM", "Source image for image processing operation")]
            )
            der.SourceImageSequence = Sequence([srcimg])
            der.DerivationCodeSequence = Sequence([_code("113076", "DCM", "Segmentation")])
            it.DerivationImageSequence = Sequence([der])
            pp = Dataset()
            pp.ImagePositionPatient = [-19.2, -19.2, -9.0 + 3.0 * (f + 1)]
            it.PlanePositionSequence = Sequence([pp])
            si = Dataset()
            si.ReferencedSegmentNumber = 1
            it.SegmentIdentificationSequence = Sequence([si])
            per.append(it)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
        ds.NumberOfFrames = frames
        yy, xx = np.mgrid[0:size, 0:size]
        masks = [(np.hypot(yy - 26, xx - 20) < 5 + f).astype(np.uint8) for f in range(frames)]
        bits = np.packbits(np.concatenate([m.ravel() for m in masks]), bitorder="little")
        raw = bits.tobytes()
        ds.PixelData = raw + b"\0" * (len(raw) % 2)
        ds["PixelData"].VR = "OB" if ts == ExplicitVRLittleEndian else "OW"
        _meta(ds, ts)
        self.write(f"{sd}/SEG0001.dcm", ds, "SEG", ts, (size, size, frames))

    # -- RT -----------------------------------------------------------------------------------

    def rtplan(self, st: dict[str, str], sd: str, ct: Ref) -> tuple[str, str]:
        """A one-beam photon RT Plan on the CT's frame of reference."""
        g = self.g
        ts = self.syntax("RTPLAN", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
        ds = _base(g, RT_PLAN, "RTPLAN", self.pat, st)
        ds.Manufacturer = "Varian Medical Systems"
        _series(g, ds, "RTPLAN", 4, "ARIA RadOnc Plan")
        ds.OperatorsName = "HOLLINGSWORTH^DAGMAR"
        ds.InstanceNumber = 1
        ds.FrameOfReferenceUID = ct[3]
        ds.PositionReferenceIndicator = ""
        ds.RTPlanLabel = f"{self.family[:6]} LUNG" if self.p % 2 == 0 else "LUNG RT"
        ds.RTPlanName = "LUNG 60GY"
        ds.RTPlanDate, ds.RTPlanTime = st["StudyDate"], "140000"
        ds.PlanIntent = "CURATIVE"
        ds.RTPlanGeometry = "PATIENT"
        ds.ApprovalStatus = "APPROVED"
        ds.ReviewDate, ds.ReviewTime = st["StudyDate"], "150000"
        ds.ReviewerName = RADIOLOGIST
        ds.PrescriptionDescription = "60 Gy in 30 fx"
        # The structure set the plan was made on (not part of this export, as is common).
        ds.ReferencedStructureSetSequence = Sequence(
            [_ref("1.2.840.10008.5.1.4.1.1.481.3", g.uid())]
        )
        fg = Dataset()
        fg.FractionGroupNumber = 1
        fg.NumberOfFractionsPlanned = 30
        fg.NumberOfBeams = 1
        fg.NumberOfBrachyApplicationSetups = 0
        rb = Dataset()
        rb.ReferencedBeamNumber = 1
        rb.BeamMeterset = 212.5
        fg.ReferencedBeamSequence = Sequence([rb])
        ds.FractionGroupSequence = Sequence([fg])
        beam = Dataset()
        beam.BeamNumber = 1
        beam.BeamName = "AP"
        beam.BeamType = "STATIC"
        beam.RadiationType = "PHOTON"
        beam.TreatmentMachineName = "TRUEBEAM1"
        beam.PrimaryDosimeterUnit = "MU"
        beam.SourceAxisDistance = 1000
        beam.TreatmentDeliveryType = "TREATMENT"
        beam.NumberOfWedges = beam.NumberOfCompensators = beam.NumberOfBoli = 0
        beam.NumberOfBlocks = 0
        beam.FinalCumulativeMetersetWeight = 1
        beam.NumberOfControlPoints = 2
        lims = []
        for t in ("ASYMX", "ASYMY"):
            lim = Dataset()
            lim.RTBeamLimitingDeviceType = t
            lim.NumberOfLeafJawPairs = 1
            lims.append(lim)
        beam.BeamLimitingDeviceSequence = Sequence(lims)
        cps = []
        for i in range(2):
            cp = Dataset()
            cp.ControlPointIndex = i
            cp.CumulativeMetersetWeight = i
            if i == 0:
                cp.NominalBeamEnergy = 6
                cp.GantryAngle = 0
                cp.GantryRotationDirection = "NONE"
                cp.BeamLimitingDeviceAngle = 0
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = 0
                cp.PatientSupportRotationDirection = "NONE"
                cp.TableTopEccentricAngle = 0
                cp.TableTopEccentricRotationDirection = "NONE"
                cp.IsocenterPosition = [0.0, 0.0, 0.0]
                cp.SourceToSurfaceDistance = 920.0
                pos = []
                for t in ("ASYMX", "ASYMY"):
                    bp = Dataset()
                    bp.RTBeamLimitingDeviceType = t
                    bp.LeafJawPositions = [-50.0, 50.0]
                    pos.append(bp)
                cp.BeamLimitingDevicePositionSequence = Sequence(pos)
            cps.append(cp)
        beam.ControlPointSequence = Sequence(cps)
        ds.BeamSequence = Sequence([beam])
        ps = Dataset()
        ps.PatientSetupNumber = 1
        ps.PatientPosition = "HFS"
        ds.PatientSetupSequence = Sequence([ps])
        _meta(ds, ts)
        self.write(f"{sd}/RP0001.dcm", ds, "RTPLAN", ts, (0, 0, 0))
        return ds.SOPInstanceUID, ds.SeriesInstanceUID

    def rtdose(self, st: dict[str, str], sd: str, ct: Ref, plan: tuple[str, str]) -> None:
        """The plan's dose grid: a 32-bit multi-frame image, one frame per plane."""
        g = self.g
        ts = self.syntax("RTDOSE", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, RT_DOSE, "RTDOSE", self.pat, st)
        ds.Manufacturer = "Varian Medical Systems"
        _series(g, ds, "RTDOSE", 5, "ARIA RadOnc Dose")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], "141000"
        ds.FrameOfReferenceUID = ct[3]
        ds.PositionReferenceIndicator = ""
        ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
        ds.ReferencedRTPlanSequence = Sequence([_ref(RT_PLAN, plan[0])])
        frames, rows, cols = 4, 24, 24
        ds.GridFrameOffsetVector = [3.0 * f for f in range(frames)]
        ds.DoseGridScaling = 1e-5
        ds.FrameIncrementPointer = 0x3004000C
        ds.ImagePositionPatient = [-19.2, -19.2, -9.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.6, 1.6]
        ds.SliceThickness = 3.0
        ds.NumberOfFrames = frames
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
        yy, xx = np.mgrid[0:rows, 0:cols]
        plane = 6e6 * np.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / 40.0)
        arr = np.stack([plane * (1 - 0.1 * f) for f in range(frames)]).astype(np.uint32)
        _pixels(ds, arr, ts)
        ds.ImageType = None
        del ds.ImageType
        self.write(f"{sd}/RD0001.dcm", ds, "RTDOSE", ts, (rows, cols, frames))

    # -- documents ----------------------------------------------------------------------------

    def pdf(self, st: dict[str, str], sd: str, compress: bool, style: str) -> None:
        """An Encapsulated PDF report whose text names the patient, with ID and birth date."""
        g = self.g
        ts = self.syntax("PDF", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, ENCAPSULATED_PDF, "DOC", self.pat, st)
        _series(g, ds, "DOC", 99, "REPORT")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], "170000"
        ds.AcquisitionDateTime = st["StudyDate"] + "170000"
        ds.ConversionType = "WSD"
        ds.BurnedInAnnotation = "YES"
        ds.DocumentTitle = "Radiology Report"
        ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        birth = self.pat["PatientBirthDate"]
        lines = [
            "ST BARNABAS GENERAL HOSPITAL - DEPARTMENT OF RADIOLOGY",
            f"Patient: {_plain(self.family)}, {self.given}    MRN: {self.pat['PatientID']}",
            f"DOB: {birth[4:6]}/{birth[6:]}/{birth[:4]}    Accession: {st['AccessionNumber']}",
            f"Exam: {st['StudyDescription']}",
            "Findings: no acute abnormality.",
            f"Signed: {RADIOLOGIST.replace('^', ', ')}",
        ]
        doc = make_pdf(lines, compress, style)
        ds.EncapsulatedDocument = doc + b"\0" * (len(doc) % 2)
        ds.EncapsulatedDocumentLength = len(doc)
        _meta(ds, ts)
        self.write(f"{sd}/DOC0001.dcm", ds, "PDF", ts, (0, 0, 0))

    def ko(self, st: dict[str, str], sd: str, refs: list[Ref]) -> None:
        """A Key Object Selection ("For Teaching") flagging the referenced images."""
        g = self.g
        ts = self.syntax("KO", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, KEY_OBJECT, "KO", self.pat, st)
        _series(g, ds, "KO", 98, "KEY IMAGES")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], "160500"
        ds.ReferencedPerformedProcedureStepSequence = Sequence()
        ds.ValueType = "CONTAINER"
        ds.ConceptNameCodeSequence = Sequence([_code("113004", "DCM", "For Teaching")])
        ds.ContinuityOfContent = "SEPARATE"
        tmpl = Dataset()
        tmpl.MappingResource = "DCMR"
        tmpl.TemplateIdentifier = "2010"
        ds.ContentTemplateSequence = Sequence([tmpl])
        ds.CurrentRequestedProcedureEvidenceSequence = _evidence(
            st["StudyInstanceUID"], [(r[0], r[1], r[2]) for r in refs]
        )
        items = []
        desc = Dataset()
        desc.RelationshipType = "CONTAINS"
        desc.ValueType = "TEXT"
        desc.ConceptNameCodeSequence = Sequence([_code("113012", "DCM", "Key Object Description")])
        desc.TextValue = f"teaching case, {self.given} {self.family}"
        items.append(desc)
        for r in refs:
            it = Dataset()
            it.RelationshipType = "CONTAINS"
            it.ValueType = "IMAGE"
            it.ReferencedSOPSequence = Sequence([_ref(r[1], r[2][0])])
            items.append(it)
        ds.ContentSequence = Sequence(items)
        _meta(ds, ts)
        self.write(f"{sd}/KO0001.dcm", ds, "KO", ts, (0, 0, 0))

    def gsps(self, st: dict[str, str], sd: str, ref: Ref) -> None:
        """A Grayscale Softcopy Presentation State with an annotation that names the patient."""
        g = self.g
        ts = self.syntax("PR", [DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian])
        ds = _base(g, GSPS, "PR", self.pat, st)
        _series(g, ds, "PR", 97, "ANNOTATIONS")
        ds.Laterality = ""
        ds.InstanceNumber = 1
        ds.ContentLabel = "MEASUREMENTS"
        ds.ContentDescription = f"measurements {self.family}"
        ds.PresentationCreationDate, ds.PresentationCreationTime = st["StudyDate"], "161000"
        ds.ContentCreatorName = RADIOLOGIST
        rs = Dataset()
        rs.SeriesInstanceUID = ref[0]
        rs.ReferencedImageSequence = Sequence([_ref(ref[1], u) for u in ref[2]])
        ds.ReferencedSeriesSequence = Sequence([rs])
        layer = Dataset()
        layer.GraphicLayer = "ANNOTATION"
        layer.GraphicLayerOrder = 1
        ds.GraphicLayerSequence = Sequence([layer])
        ann = Dataset()
        ann.GraphicLayer = "ANNOTATION"
        ann.ReferencedImageSequence = Sequence([_ref(ref[1], ref[2][0])])
        txt = Dataset()
        txt.UnformattedTextValue = f"{self.family}, {self.given} {self.pat['PatientID']}"
        txt.AnchorPointAnnotationUnits = "PIXEL"
        txt.AnchorPoint = [4.0, 4.0]
        txt.AnchorPointVisibility = "Y"
        txt2 = Dataset()
        txt2.UnformattedTextValue = "SUV max 7.2"
        txt2.BoundingBoxAnnotationUnits = "PIXEL"
        txt2.BoundingBoxTopLeftHandCorner = [10.0, 10.0]
        txt2.BoundingBoxBottomRightHandCorner = [30.0, 16.0]
        txt2.BoundingBoxTextHorizontalJustification = "LEFT"
        ann.TextObjectSequence = Sequence([txt, txt2])
        gr = Dataset()
        gr.GraphicAnnotationUnits = "PIXEL"
        gr.GraphicDimensions = 2
        gr.NumberOfGraphicPoints = 2
        gr.GraphicData = [12.0, 12.0, 20.0, 20.0]
        gr.GraphicType = "POLYLINE"
        gr.GraphicFilled = "N"
        ann.GraphicObjectSequence = Sequence([gr])
        ds.GraphicAnnotationSequence = Sequence([ann])
        da = Dataset()
        da.PixelOriginInterpretation = "FRAME"
        da.DisplayedAreaTopLeftHandCorner = [1, 1]
        da.DisplayedAreaBottomRightHandCorner = [48, 48]
        da.PresentationSizeMode = "SCALE TO FIT"
        da.PresentationPixelSpacing = [0.8, 0.8]
        ds.DisplayedAreaSelectionSequence = Sequence([da])
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 300, 800
        ds.SoftcopyVOILUTSequence = Sequence([voi])
        ds.PresentationLUTShape = "IDENTITY"
        ds.ImageHorizontalFlip = "N"
        ds.ImageRotation = 0
        _meta(ds, ts)
        self.write(f"{sd}/PR0001.dcm", ds, "PR", ts, (0, 0, 0))

    def csr(self, st: dict[str, str], sd: str, refs: list[Ref]) -> None:
        """A Comprehensive SR: nested findings with numbers, text, coordinates and images."""
        g = self.g
        ts = self.syntax("CSR", [DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian])
        ds = _base(g, COMPREHENSIVE_SR, "SR", self.pat, st)
        _series(g, ds, "SR", 96, "MEASUREMENT REPORT")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], "163000"
        ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
        ds.ReferencedPerformedProcedureStepSequence = Sequence()
        ds.PerformedProcedureCodeSequence = Sequence()
        ds.CurrentRequestedProcedureEvidenceSequence = _evidence(
            st["StudyInstanceUID"], [(r[0], r[1], r[2]) for r in refs]
        )
        ds.ValueType = "CONTAINER"
        ds.ConceptNameCodeSequence = Sequence(
            [_code("126000", "DCM", "Imaging Measurement Report")]
        )
        ds.ContinuityOfContent = "SEPARATE"

        def item(rel: str, vt: str, name: Dataset) -> Dataset:
            it = Dataset()
            it.RelationshipType = rel
            it.ValueType = vt
            it.ConceptNameCodeSequence = Sequence([name])
            return it

        observer = item("HAS OBS CONTEXT", "PNAME", _code("121008", "DCM", "Person Observer Name"))
        observer.PersonName = RADIOLOGIST
        subject = item("HAS OBS CONTEXT", "PNAME", _code("121029", "DCM", "Subject Name"))
        subject.PersonName = self.pat["PatientName"]
        subj_id = item("HAS OBS CONTEXT", "TEXT", _code("121030", "DCM", "Subject ID"))
        subj_id.TextValue = self.pat["PatientID"]
        dob = item("HAS OBS CONTEXT", "DATE", _code("121031", "DCM", "Subject Birth Date"))
        dob.Date = self.pat["PatientBirthDate"]
        group = item("CONTAINS", "CONTAINER", _code("125007", "DCM", "Measurement Group"))
        group.ContinuityOfContent = "SEPARATE"
        size = item("CONTAINS", "NUM", _code("410668003", "SCT", "Length"))
        mv = Dataset()
        mv.NumericValue = 23.5
        mv.MeasurementUnitsCodeSequence = Sequence([_code("mm", "UCUM", "millimeter")])
        size.MeasuredValueSequence = Sequence([mv])
        coord = item("INFERRED FROM", "SCOORD", _code("111030", "DCM", "Image Region"))
        coord.GraphicType = "POLYLINE"
        coord.GraphicData = [10.0, 10.0, 30.0, 22.0]
        img = Dataset()
        img.RelationshipType = "SELECTED FROM"
        img.ValueType = "IMAGE"
        img.ReferencedSOPSequence = Sequence([_ref(refs[0][1], refs[0][2][0])])
        coord.ContentSequence = Sequence([img])
        size.ContentSequence = Sequence([coord])
        note = item("CONTAINS", "TEXT", _code("121106", "DCM", "Comment"))
        note.TextValue = (
            f"Compared with prior exam of {self.given} {self.family} ({self.pat['PatientID']})."
        )
        group.ContentSequence = Sequence([size, note])
        impression = item("CONTAINS", "CODE", _code("121073", "DCM", "Impression"))
        impression.ConceptCodeSequence = Sequence([_code("RID3874", "RADLEX", "stable")])
        ds.ContentSequence = Sequence([observer, subject, subj_id, dob, group, impression])
        _meta(ds, ts)
        self.write(f"{sd}/SR0001.dcm", ds, "CSR", ts, (0, 0, 0))


class _More(_Ctx):
    """The kinds of the second batch: dose SR, ECG, CDA, Siemens non-image objects."""

    def dose_sr(self, st: dict[str, str], sd: str, ct: Ref) -> None:
        """An X-Ray Radiation Dose SR (TID 10011), as every CT scanner sends one per study."""
        g = self.g
        ts = self.syntax("DOSESR", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, DOSE_SR, "SR", self.pat, st)
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        _series(g, ds, "SR", 999, "Dose Report")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
        ds.ReferencedPerformedProcedureStepSequence = Sequence()
        ds.PerformedProcedureCodeSequence = Sequence()
        ds.ValueType = "CONTAINER"
        ds.ConceptNameCodeSequence = Sequence(
            [_code("113701", "DCM", "X-Ray Radiation Dose Report")]
        )
        ds.ContinuityOfContent = "SEPARATE"
        ds.ContentTemplateSequence = Sequence(
            [_item(MappingResource="DCMR", TemplateIdentifier="10011")]
        )
        ds.CurrentRequestedProcedureEvidenceSequence = _evidence(
            st["StudyInstanceUID"], [(ct[0], ct[1], ct[2])]
        )

        def item(rel: str, vt: str, code: tuple[str, str, str], **values: object) -> Dataset:
            it = _item(RelationshipType=rel, ValueType=vt, **values)
            it.ConceptNameCodeSequence = Sequence([_code(*code)])
            return it

        def num(code: tuple[str, str, str], value: float, unit: str) -> Dataset:
            it = item("CONTAINS", "NUM", code)
            it.MeasuredValueSequence = Sequence(
                [
                    _item(
                        NumericValue=value,
                        MeasurementUnitsCodeSequence=Sequence([_code(unit, "UCUM", unit)]),
                    )
                ]
            )
            return it

        proc = item("HAS CONCEPT MOD", "CODE", ("121058", "DCM", "Procedure reported"))
        proc.ConceptCodeSequence = Sequence([_code("77477000", "SCT", "Computed Tomography X-Ray")])
        device = item("HAS OBS CONTEXT", "UIDREF", ("121012", "DCM", "Device Observer UID"))
        device.UID = "1.2.840.113619.2.55.3.2831164355.4"  # the scanner's own UID
        if device.UID not in g.manifest.uids:
            g.manifest.uids.append(device.UID)  # an input UID: mapped like the others
        dev_name = item("HAS OBS CONTEXT", "TEXT", ("121013", "DCM", "Device Observer Name"))
        dev_name.TextValue = "SBGHCT01"
        start = item("CONTAINS", "DATETIME", ("113809", "DCM", "Start of X-Ray Irradiation"))
        start.DateTime = st["StudyDate"] + st["StudyTime"]
        accum = item("CONTAINS", "CONTAINER", ("113811", "DCM", "CT Accumulated Dose Data"))
        accum.ContinuityOfContent = "SEPARATE"
        accum.ContentSequence = Sequence(
            [
                num(("113812", "DCM", "Total Number of Irradiation Events"), 2, "{events}"),
                num(("113813", "DCM", "CT Dose Length Product Total"), 512.3, "mGy.cm"),
            ]
        )
        acq = item("CONTAINS", "CONTAINER", ("113819", "DCM", "CT Acquisition"))
        acq.ContinuityOfContent = "SEPARATE"
        protocol = item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"))
        # The technologist's protocol name, with the patient's name in it (it happens).
        protocol.TextValue = f"{self.family} CHEST ABD" if self.p % 2 == 0 else "CHEST ABD"
        event = item("CONTAINS", "UIDREF", ("113769", "DCM", "Irradiation Event UID"))
        event.UID = g.uid()
        ctdi = num(("113830", "DCM", "Mean CTDIvol"), 10.2, "mGy")
        acq.ContentSequence = Sequence([protocol, event, ctdi])
        ds.ContentSequence = Sequence([proc, device, dev_name, start, accum, acq])
        _meta(ds, ts)
        self.write(f"{sd}/SR0001.dcm", ds, "DOSESR", ts, (0, 0, 0))

    def ecg(self, st: dict[str, str], sd: str) -> None:
        """A 12-lead resting ECG (GE MUSE style) with annotations, one naming the patient."""
        g = self.g
        ts = self.syntax("ECG", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, ECG_12LEAD, "ECG", self.pat, st)
        ds.Manufacturer = "GE Healthcare"
        _series(g, ds, "ECG", 1, "RESTING ECG")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.AcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
        ds.AcquisitionContextSequence = Sequence()
        n, leads = 500, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        mdc = [
            "2:1",
            "2:2",
            "2:61",
            "2:62",
            "2:63",
            "2:64",
            "2:3",
            "2:4",
            "2:5",
            "2:6",
            "2:7",
            "2:8",
        ]
        t = np.arange(n) / 500.0
        beat = np.exp(-(((t % 0.8) - 0.3) ** 2) / 0.0004)
        data = np.stack(
            [(800 * beat * (1 + 0.1 * i) + g.rng.normal(0, 10, n)) for i in range(12)], axis=1
        ).astype("<i2")
        chans = []
        for i, (lead, code) in enumerate(zip(leads, mdc, strict=True)):
            ch = Dataset()
            ch.ChannelSourceSequence = Sequence([_code(code, "MDC", f"Lead {lead}")])
            ch.ChannelSensitivity = 2.5
            ch.ChannelSensitivityUnitsSequence = Sequence([_code("uV", "UCUM", "microvolt")])
            ch.ChannelSensitivityCorrectionFactor = 1
            ch.ChannelBaseline = 0
            ch.ChannelSampleSkew = 0
            ch.WaveformBitsStored = 16
            ch.FilterLowFrequency = 0.05
            ch.FilterHighFrequency = 150
            ch.ChannelLabel = lead
            ch.ChannelNumber = i + 1
            chans.append(ch)
        wf = Dataset()
        wf.WaveformOriginality = "ORIGINAL"
        wf.NumberOfWaveformChannels = 12
        wf.NumberOfWaveformSamples = n
        wf.SamplingFrequency = 500
        wf.MultiplexGroupLabel = "RHYTHM"
        wf.ChannelDefinitionSequence = Sequence(chans)
        wf.WaveformBitsAllocated = 16
        wf.WaveformSampleInterpretation = "SS"
        wf.WaveformData = data.tobytes()
        ds.WaveformSequence = Sequence([wf])
        notes = [
            "Sinus rhythm",
            "Normal ECG",
            f"Confirmed by {RADIOLOGIST.replace('^', ', ')}",
            f"Pt {self.family} {self.given}, ID {self.pat['PatientID']}",
        ]
        ann = []
        for text in notes:
            a = Dataset()
            a.UnformattedTextValue = text
            a.ReferencedWaveformChannels = [1, 0]
            ann.append(a)
        hr = Dataset()
        hr.ConceptNameCodeSequence = Sequence([_code("8867-4", "LN", "Heart rate")])
        hr.NumericValue = 75
        hr.MeasurementUnitsCodeSequence = Sequence([_code("/min", "UCUM", "/min")])
        hr.ReferencedWaveformChannels = [1, 0]
        ann.append(hr)
        ds.WaveformAnnotationSequence = Sequence(ann)
        _meta(ds, ts)
        self.write(f"{sd}/ECG0001.dcm", ds, "ECG", ts, (0, 0, 0))

    def cda(self, st: dict[str, str], sd: str) -> None:
        """An Encapsulated CDA discharge note: HL7 XML with the patient's name and ID."""
        g = self.g
        ts = self.syntax("CDA", [ExplicitVRLittleEndian])
        ds = _base(g, ENCAPSULATED_CDA, "DOC", self.pat, st)
        _series(g, ds, "DOC", 98, "CDA")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], "180000"
        ds.AcquisitionDateTime = st["StudyDate"] + "180000"
        ds.ConversionType = "WSD"
        ds.BurnedInAnnotation = "YES"
        ds.DocumentTitle = "Discharge Summary"
        ds.ConceptNameCodeSequence = Sequence([_code("18842-5", "LN", "Discharge summary")])
        ds.MIMETypeOfEncapsulatedDocument = "text/XML"
        ds.HL7InstanceIdentifier = f"{g.uid()}^"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patientRole>'
            f'<id extension="{self.pat["PatientID"]}" root="2.16.840.1.113883.19.5"/>'
            f"<patient><name><given>{self.given}</given><family>{self.family}</family></name>"
            f'<birthTime value="{self.pat["PatientBirthDate"]}"/></patient>'
            "</patientRole></recordTarget><component><structuredBody><component><section>"
            "<text>Discharged home in good condition.</text>"
            "</section></component></structuredBody></component></ClinicalDocument>"
        ).encode()
        ds.EncapsulatedDocument = xml + b" " * (len(xml) % 2)
        ds.EncapsulatedDocumentLength = len(xml)
        _meta(ds, ts)
        self.write(f"{sd}/CDA0001.dcm", ds, "CDA", ts, (0, 0, 0))

    def csa_non_image(self, st: dict[str, str], sd: str, mr: Ref) -> None:
        """A Siemens CSA Non-Image object (single-voxel spectroscopy) of the MR study."""
        g = self.g
        ts = self.syntax("CSANI", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ds = _base(g, SIEMENS_CSA_NON_IMAGE, "MR", self.pat, st)
        _series(g, ds, "MR", 3, "SVS_SE_30")
        ds.InstanceNumber = 1
        ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
        ds.AcquisitionDate, ds.AcquisitionTime = st["StudyDate"], st["StudyTime"]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "SPECTROSCOPY", "NONE"]
        ds.FrameOfReferenceUID = mr[3]
        ds.ReferencedImageSequence = Sequence([_ref(mr[1], mr[2][0])])
        _siemens(ds, self.family, self.given, named=self.p % 2 == 0)
        block = ds.private_block(0x0029, "SIEMENS CSA NON-IMAGE", create=True)
        block.add_new(0x08, "CS", "SPEC NUM 4")
        block.add_new(0x09, "LO", "20100114")
        block.add_new(0x10, "OB", csa_header([("DataPointColumns", "IS", ["1024"])]))
        data = ds.private_block(0x7FE1, "SIEMENS CSA NON-IMAGE", create=True)
        fid = (g.rng.normal(0, 1, 2048) * 1000).astype("<f4")
        data.add_new(0x10, "OB", fid.tobytes())
        _meta(ds, ts)
        self.write(f"{sd}/SPEC0001.dcm", ds, "CSANI", ts, (0, 0, 0))


#: A minimal ICC profile header (display class, RGB, XYZ connection space): colour
#: microscopy images must carry one; its tags do not matter here.
_SRGB_ICC = (
    struct.pack(">I", 128)
    + b"none"
    + bytes([2, 0x10, 0, 0])
    + b"mntrRGB XYZ "
    + bytes(12)
    + b"acsp"
    + bytes(128 - 40)
)


class _Philips(_More):
    """Philips' private objects, and a pathology slide."""

    def fundus(self, st: dict[str, str], sd: str) -> None:
        """Both eyes' fundus photographs, the camera's caption (name, ID, date) printed on
        them, Burned In Annotation NO as such cameras write it."""
        g = self.g
        rows, cols = 192, 256
        for n, lat in enumerate(("R", "L")):
            ts = self.syntax("OP", [ExplicitVRLittleEndian, JPEGBaseline8Bit])
            ds = _base(g, OPHTHALMIC_8BIT, "OP", self.pat, st)
            ds.Manufacturer = "TOPCON"
            if n == 0:
                series = g.uid()
            ds.SeriesInstanceUID, ds.SeriesNumber = series, 7
            ds.InstanceNumber = n + 1
            ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
            ds.AcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
            ds.ImageType = ["ORIGINAL", "PRIMARY"]
            ds.ImageLaterality = lat
            ds.PatientOrientation = ""
            ds.BurnedInAnnotation = "NO"
            ds.PixelSpacing = [0.01, 0.01]
            ds.AnatomicRegionSequence = Sequence([_code("T-AA610", "SRT", "Retina")])
            ds.AcquisitionContextSequence = Sequence()
            ds.PatientEyeMovementCommanded = "NO"
            ds.HorizontalFieldOfView = 45
            ds.RefractiveStateSequence = Sequence()
            ds.EmmetropicMagnification = 1.0
            ds.IntraOcularPressure = 15
            ds.PupilDilated = "YES"
            ds.MydriaticAgentSequence = Sequence()
            ds.DegreeOfDilation = 6.0
            ds.SynchronizationFrameOfReferenceUID = "1.2.840.10008.15.1.1"  # UTC
            ds.SynchronizationTrigger, ds.AcquisitionTimeSynchronized = "NO TRIGGER", "N"
            ds.NumberOfFrames = 1
            ds.FrameIncrementPointer = 0x00181063  # FrameTime
            ds.FrameTime = 0.0
            ds.DetectorType = "CCD"
            ds.AcquisitionDeviceTypeCodeSequence = Sequence(
                [_code("R-1021A", "SRT", "Fundus Camera")]
            )
            ds.IlluminationTypeCodeSequence = Sequence()
            ds.LightPathFilterTypeStackCodeSequence = Sequence()
            ds.ImagePathFilterTypeStackCodeSequence = Sequence()
            ds.LensesCodeSequence = Sequence()
            ds.DepthSpatialResolution = 0.0
            ds.MaximumDepthDistortion = 0.0
            ds.AlongScanSpatialResolution = 0.0
            ds.MaximumAlongScanDistortion = 0.0
            ds.AcrossScanSpatialResolution = 0.0
            ds.MaximumAcrossScanDistortion = 0.0
            yy, xx = np.mgrid[0:rows, 0:cols]
            disc = np.hypot(yy - rows / 2, xx - cols / 2) < 88
            base = np.where(disc, 120 + 40 * np.cos((xx + 30 * n) / 9.0), 0.0)
            base = base + disc * g.rng.normal(0, 4, (rows, cols))
            date = st["StudyDate"]
            lines = [
                (f"{_plain(self.family)}, {self.given}", rows - 30, 4),
                (f"{self.pat['PatientID']}  {date[:4]}-{date[4:6]}-{date[6:]}", rows - 16, 4),
            ]
            alpha, boxes = _render_lines(rows, cols, lines, 11)
            grey = np.clip(base * (1 - alpha) + 250 * alpha, 0, 255)
            rgb = np.stack([grey, grey * 0.6, grey * 0.3], axis=2).astype(np.uint8)
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            _pixels(ds, rgb[None], ts)
            if ts == ExplicitVRLittleEndian:
                ds.LossyImageCompression = "00"
            rel = f"{sd}/OP{n + 1:04d}.dcm"
            inst = Instance(
                rel,
                "OP",
                SYNTAX_NAMES[ts],
                ds.SOPInstanceUID,
                self.p,
                [(0, 1, *b) for b in boxes],
                (rows, cols, 1),
            )
            _write(g, self.root, rel, ds, inst)

    def slide(self, st: dict[str, str], sd: str) -> None:
        """A biopsy slide scanned as Whole Slide Microscopy: a tiled VOLUME image, the
        OVERVIEW (label not in it) and the LABEL (name, ID, accession number, a barcode)."""
        g = self.g
        series, frame_ref, dim_uid = g.uid(), g.uid(), g.uid()
        container = f"S{st['AccessionNumber'][-6:]}-A1"
        for n, flavour in enumerate(("VOLUME", "OVERVIEW", "LABEL")):
            ts = self.syntax("SM", [ExplicitVRLittleEndian])
            ds = _base(g, WSI, "SM", self.pat, st)
            ds.Manufacturer = "Leica Biosystems"
            ds.SeriesInstanceUID, ds.SeriesNumber = series, 12
            ds.InstanceNumber = n + 1
            ds.ContentDate, ds.ContentTime = st["StudyDate"], st["StudyTime"]
            ds.AcquisitionDateTime = st["StudyDate"] + st["StudyTime"]
            ds.ImageType = ["ORIGINAL", "PRIMARY", flavour, "NONE"]
            ds.FrameOfReferenceUID = frame_ref
            ds.PositionReferenceIndicator = "SLIDE_CORNER"
            ds.VolumetricProperties = "VOLUME"
            ds.BurnedInAnnotation = "NO"  # what scanners write, label included
            # PS3.3 asks YES for OVERVIEW and LABEL images: the label is in them.
            ds.SpecimenLabelInImage = "NO" if flavour == "VOLUME" else "YES"
            ds.AcquisitionContextSequence = Sequence()
            if flavour == "LABEL":
                # The scanner's reading of the label (Slide Label module, Type 2).
                ds.LabelText = f"{_plain(self.family)}, {self.given} {self.pat['PatientID']}"
                ds.BarcodeValue = st["AccessionNumber"]
            ds.FocusMethod, ds.ExtendedDepthOfField = "AUTO", "NO"
            ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth = 15.0, 15.0, 1.0
            ds.ContainerIdentifier = container
            ds.IssuerOfTheContainerIdentifierSequence = Sequence()
            ds.ContainerTypeCodeSequence = Sequence([_code("433466003", "SCT", "Microscope slide")])
            spec = _item(
                SpecimenIdentifier=f"{container}-1",
                SpecimenUID=g.uid(),
                IssuerOfTheSpecimenIdentifierSequence=Sequence(),
                SpecimenPreparationSequence=Sequence(),
            )
            ds.SpecimenDescriptionSequence = Sequence([spec])
            ds.DimensionOrganizationType = "TILED_FULL"
            ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=dim_uid)])
            ds.OpticalPathSequence = Sequence(
                [
                    _item(
                        OpticalPathIdentifier="1",
                        IlluminationTypeCodeSequence=Sequence(
                            [_code("111744", "DCM", "Brightfield illumination")]
                        ),
                        IlluminationColorCodeSequence=Sequence(
                            [_code("414298005", "SCT", "Full Spectrum")]
                        ),
                        ICCProfile=_SRGB_ICC,
                    )
                ]
            )
            ds.NumberOfOpticalPaths = 1
            ds.TotalPixelMatrixFocalPlanes = 1
            rows = cols = 32
            if flavour == "VOLUME":
                total_rows, total_cols = 32, 64
                yy, xx = np.mgrid[0:rows, 0:cols]
                tiles = []
                for t in range(2):
                    tissue = np.hypot(yy - 16, xx - 16 + 8 * t) < 12
                    tile = np.where(tissue, 170, 235) + g.rng.normal(0, 6, (rows, cols))
                    tiles.append(np.clip(tile, 0, 255).astype(np.uint8))
                arr = np.repeat(np.stack(tiles)[..., None], 3, axis=3)
                arr[..., 0] = np.clip(arr[..., 0].astype(int) + 20, 0, 255)
                boxes: list[tuple[int, int, int, int, int, int]] = []
            else:
                rows, cols = 64, 160
                total_rows, total_cols = rows, cols
                lines = (
                    [
                        (f"{_plain(self.family)}, {self.given}", 4, 4),
                        (self.pat["PatientID"], 22, 4),
                        (st["AccessionNumber"], 40, 4),
                    ]
                    if flavour == "LABEL"
                    else []
                )
                alpha, found = _render_lines(rows, cols, lines, 12) if lines else (0.0, [])
                base = np.full((rows, cols), 238.0)
                if flavour == "LABEL":
                    # A 2D barcode beside the text: the accession number, machine-readable.
                    code = g.rng.integers(0, 2, (12, 12)).astype(bool)
                    base[8:56, 108:156] = np.where(np.kron(code, np.ones((4, 4))), 20, 238)
                else:
                    base[16:48, 20:140] = 190  # the tissue under the cover slip
                grey = np.clip(base * (1 - alpha) + 10 * alpha, 0, 255).astype(np.uint8)
                arr = np.repeat(grey[None, :, :, None], 3, axis=3)
                boxes = [(0, 1, *b) for b in found]
            ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = total_rows, total_cols
            ds.TotalPixelMatrixOriginSequence = Sequence(
                [_item(XOffsetInSlideCoordinateSystem=0.0, YOffsetInSlideCoordinateSystem=0.0)]
            )
            ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
            shared = Dataset()
            shared.PixelMeasuresSequence = Sequence(
                [_item(PixelSpacing=[0.25, 0.25], SliceThickness=0.004)]
            )
            shared.WholeSlideMicroscopyImageFrameTypeSequence = Sequence(
                [_item(FrameType=["ORIGINAL", "PRIMARY", flavour, "NONE"])]
            )
            shared.OpticalPathIdentificationSequence = Sequence([_item(OpticalPathIdentifier="1")])
            ds.SharedFunctionalGroupsSequence = Sequence([shared])
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.NumberOfFrames = len(arr)
            _pixels(ds, arr, ts)
            ds.LossyImageCompression = "00"
            rel = f"{sd}/SM{n + 1:04d}.dcm"
            inst = Instance(
                rel,
                "SM",
                SYNTAX_NAMES[ts],
                ds.SOPInstanceUID,
                self.p,
                boxes,
                (rows, cols, len(arr)),
            )
            _write(g, self.root, rel, ds, inst)

    def philips_series_data(self, st: dict[str, str], sd: str, mr: Ref) -> None:
        """A Philips MR Series Data object: a standard header, the rest private."""
        g = self.g
        ts = self.syntax("PHSD", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
        ds = _base(g, PHILIPS_SERIES_DATA, "MR", self.pat, st)
        ds.SeriesInstanceUID = mr[0]  # it belongs to the image series
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.FrameOfReferenceUID = mr[3]
        _philips(ds, self.family, self.given)
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x20, "SL", 3)  # number of chemical shifts
        block.add_new(0x31, "CS", ["NO", "NO"])
        _meta(ds, ts)
        self.write(f"{sd}/PHSD0001.dcm", ds, "PHSD", ts, (0, 0, 0))


def pdf_identifier_check(data: bytes, needles: list[bytes]) -> list[int]:
    """Indexes of ``needles`` found in a PDF's text (streams inflated, upper-cased)."""
    text = pdf_text(data).upper()
    return [i for i, n in enumerate(needles) if n in text]


__all__ = [
    "CLASS_OF_SOP",
    "csa_header",
    "generate",
    "make_pdf",
    "needle_bytes",
    "pdf_identifier_check",
    "pdf_text",
]
