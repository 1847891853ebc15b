"""Metadata inside compressed pixel streams never reaches an output (issue 18, F1 and F2).

Each hiding place is planted by hand in a real codestream (Pillow's JPEG and JPEG 2000,
pydicom's JPEG-LS and RLE encoders): EXIF, XMP and other APPn segments, COM segments,
JFIF thumbnails, JPEG 2000 COM segments and JP2 boxes, bytes after EOI / EOC / the last
RLE segment, fragments after the image. The whole pipeline (raw-byte engine first, then
the Dataset engine, post-check) must release the file with no canary in any byte, and
the released frames must decode to exactly the pixels of the input. pydicom's bundled
JPEG, JPEG-LS, JPEG 2000 and RLE files are stripped and decode unchanged too.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.dicom.pixelbytes import (
    PixelParseError,
    j2k_segments,
    jpeg_segments,
    parse_encapsulated,
    rle_segments,
)
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.pixels.sidebytes import clean_side_bytes
from medveil.policy.schema import Policy
from medveil.verify.rawscan import PIXEL_SIDE_TAG, layouts
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

SECRET = bytes(range(32))
CT = "1.2.840.10008.5.1.4.1.1.2"
SURNAME, GIVEN, PID = "Qwzvrt", "Jkplmn", "QZX908172"
CANARIES = [SURNAME, GIVEN, PID, "Xyzzyfotog", "1961:07:13", "Plughdesc"]


def _forms(text: str) -> list[bytes]:
    return [f(t) for t in (text, text.upper(), text.lower()) for f in (_ascii, _utf16)]


def _ascii(t: str) -> bytes:
    return t.encode("ascii")


def _utf16(t: str) -> bytes:
    return t.encode("utf-16-le")


def _leaks(data: bytes) -> list[str]:
    return [c for c in CANARIES if any(f in data for f in _forms(c))]


def _image(samples: int = 1) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (16, 16, 3) if samples == 3 else (16, 16)
    return rng.integers(0, 255, shape, dtype=np.uint8)


def _dataset(
    ts: str,
    frames: list[bytes],
    *,
    samples: int = 1,
    bot: bool = False,
    number_of_frames: int | None = None,
) -> bytes:
    """A CT file of 16 x 16 8-bit frames, with the patient's identity as canaries."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CT, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.PatientName = f"{SURNAME}^{GIVEN}"
    ds.PatientID = PID
    ds.PatientBirthDate = "19610713"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = samples
    if samples == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422" if ts == JPEGBaseline8Bit else "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.PhotometricInterpretation = "MONOCHROME2"
    if (number_of_frames or len(frames)) > 1:
        ds.NumberOfFrames = number_of_frames or len(frames)
    if ts == JPEGBaseline8Bit:
        ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate(frames, has_bot=bot)
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(data))
    return np.asarray(ds.pixel_array)


def _released(data: bytes) -> bytes:
    """The file through the whole pipeline with the default policy; it must be written."""
    result = clean_instance(Deidentifier(Policy.default(), SECRET), data, "t.dcm")
    assert result.status == "written", result.reason
    out = result.data
    assert _leaks(out) == []
    return out


def _jpeg(samples: int = 1, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_image(samples)).save(buf, "JPEG", quality=95, **save)
    return buf.getvalue()


def _after_soi(stream: bytes, *segments: bytes) -> bytes:
    assert stream[:2] == b"\xff\xd8"
    return stream[:2] + b"".join(segments) + stream[2:]


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _exif() -> bytes:
    ex = Image.Exif()
    ex[0x9003] = "1961:07:13 10:10:10"  # DateTimeOriginal
    ex[0x0132] = "1961:07:13 10:10:10"  # DateTime
    ex[0x013B] = "Xyzzyfotog"  # Artist
    ex[0x010E] = f"{SURNAME} {GIVEN} Plughdesc"  # ImageDescription
    return ex.tobytes()


XMP = (
    b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><dc:creator>"
    + SURNAME.encode()
    + b"</dc:creator></x:xmpmeta>"
)


def _jfif_with_thumbnail() -> bytes:
    thumb = bytes([1, 1]) + bytes(GIVEN.encode()[:3])  # 1 x 1 RGB thumbnail holding text
    return _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01" + thumb + PID.encode())


def _with_jfif_thumbnail() -> bytes:
    """Pillow's JPEG with its JFIF segment replaced by one carrying a thumbnail."""
    stream = _jpeg()
    assert stream[2:4] == b"\xff\xe0"
    length = struct.unpack(">H", stream[4:6])[0]
    return stream[:2] + _jfif_with_thumbnail() + stream[4 + length :]


JPEG_CASES = {
    "EXIF APP1": lambda: _jpeg(exif=_exif()),
    "COM": lambda: _jpeg(comment=f"{SURNAME}^{GIVEN} {PID}".encode()),
    "XMP APP1": lambda: _after_soi(_jpeg(), _segment(0xE1, XMP)),
    "APP13 and APP15": lambda: _after_soi(
        _jpeg(), _segment(0xED, b"Photoshop 3.0\x00" + PID.encode()), _segment(0xEF, GIVEN.encode())
    ),
    "JFIF thumbnail": lambda: _with_jfif_thumbnail(),
    "after EOI": lambda: _jpeg() + f"{SURNAME} {PID}".encode("utf-16-le"),
    "colour EXIF": lambda: _jpeg(3, exif=_exif(), comment=PID.encode()),
}


@pytest.mark.parametrize("case", list(JPEG_CASES))
def test_jpeg_metadata_is_stripped_and_pixels_unchanged(case: str) -> None:
    stream = JPEG_CASES[case]()
    samples = 3 if case == "colour EXIF" else 1
    src = _dataset(JPEGBaseline8Bit, [stream], samples=samples)
    assert _leaks(src)  # planted
    out = _released(src)
    assert np.array_equal(_pixels(out), _pixels(src))
    assert b"\xff\xd8" in out and b"\xff\xd9" in out  # still a JPEG: nothing re-encoded


def test_jfif_thumbnail_is_dropped_but_jfif_header_kept() -> None:
    stream = _with_jfif_thumbnail()
    segs = jpeg_segments(stream)
    app0 = [s for s in segs if s.kind == "APP0"]
    assert app0 and app0[0].strip and app0[0].replacement[4:9] == b"JFIF\x00"
    assert app0[0].replacement[-2:] == b"\x00\x00"  # no thumbnail


def test_multiframe_with_offset_table_keeps_frames_apart() -> None:
    frames = [_jpeg(comment=f"{PID} {i}".encode()) for i in range(3)]
    src = _dataset(JPEGBaseline8Bit, frames, bot=True)
    out = _released(src)
    assert np.array_equal(_pixels(out), _pixels(src))
    ds = pydicom.dcmread(io.BytesIO(out))
    parts = list(generate_fragmented_frames(ds.PixelData, number_of_frames=3))
    assert len(parts) == 3 and all(p[0][:2] == b"\xff\xd8" for p in parts)


def test_second_fragment_of_a_single_frame_is_trailing_bytes() -> None:
    src = _dataset(JPEGBaseline8Bit, [_jpeg()])
    ds = pydicom.dcmread(io.BytesIO(src))
    ds.PixelData = encapsulate([_jpeg(), f"{SURNAME} {PID}".encode() + b"\x00"], has_bot=False)
    ds["PixelData"].VR = "OB"
    # encapsulate() makes a frame per fragment; a single frame in two fragments is what a
    # writer that splits frames produces: the second fragment is after EOI.
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out = _released(buf.getvalue())
    assert np.array_equal(_pixels(out), _pixels(src))


def test_extra_frame_beyond_number_of_frames_is_quarantined() -> None:
    """A third JPEG (with text after it) in a two-frame file is beyond the image."""
    frames = [_jpeg(), _jpeg()]
    src = _dataset(JPEGBaseline8Bit, frames)
    ds = pydicom.dcmread(io.BytesIO(src))
    hidden = _jpeg() + f"{SURNAME} {PID}".encode() + b"\x00"
    ds.PixelData = encapsulate([*frames, hidden], has_bot=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    result = clean_instance(Deidentifier(Policy.default(), SECRET), buf.getvalue(), "t.dcm")
    assert result.status == "quarantined"
    assert "bytes beyond the image" in result.reason


def test_rle_fragment_beyond_the_frames_is_quarantined_and_zeros_dropped() -> None:
    frame = _rle(b"")
    text = f"{SURNAME} {PID}".encode() + b"\x00"
    src = _dataset(RLELossless, [frame, frame, text], number_of_frames=2)
    result = clean_instance(Deidentifier(Policy.default(), SECRET), src, "t.dcm")
    # Three fragments, two frames: RLE has one fragment a frame (PS3.5 A.4.2).
    assert result.status == "quarantined" and "bytes beyond the image" in result.reason
    src = _dataset(RLELossless, [frame, frame, bytes(8)], number_of_frames=2)
    assert np.array_equal(_pixels(_released(src)), np.stack([_image(), _image()]))


def _jpegls(payload_segments: list[bytes], trailing: bytes = b"") -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_dataset(ExplicitVRLittleEndian, [b"\x00\x00"])))
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = _image().tobytes()
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls", generate_instance_uid=False)
    frame = next(generate_fragmented_frames(ds.PixelData, number_of_frames=1))[0]
    return _after_soi(bytes(frame).rstrip(b"\x00"), *payload_segments) + trailing


@pytest.mark.parametrize(
    "segments,trailing",
    [
        ([_segment(0xFE, f"{SURNAME}^{GIVEN}".encode())], b""),
        ([_segment(0xE1, b"Exif\x00\x00" + PID.encode())], b""),
        ([], f"{SURNAME} {PID}".encode()),
    ],
    ids=["COM", "APP1", "after EOI"],
)
def test_jpegls_metadata_is_stripped(segments: list[bytes], trailing: bytes) -> None:
    if not get_decoder(JPEGLSLossless).is_available:
        pytest.skip("no JPEG-LS codec installed")
    stream = _jpegls(segments, trailing)
    src = _dataset(JPEGLSLossless, [stream])
    assert _leaks(src)
    out = _released(src)
    assert np.array_equal(_pixels(out), _image())
    assert np.array_equal(_pixels(out), _pixels(src))


def _j2k(comment: bytes | None = None, *, jp2: bool = False) -> bytes:
    buf = io.BytesIO()
    options: dict[str, object] = {"no_jp2": not jp2, "irreversible": False}
    if comment is not None:
        options["comment"] = comment
    Image.fromarray(_image()).save(buf, "JPEG2000", **options)
    return buf.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


J2K_CASES = {
    "COM": lambda: _j2k(f"{SURNAME}^{GIVEN} {PID}".encode()),
    "after EOC": lambda: _j2k() + f"{SURNAME} {PID}".encode(),
    "JP2 xml box": lambda: _j2k(jp2=True) + _box(b"xml ", f"<n>{SURNAME}</n>".encode()),
    "JP2 uuid box first": lambda: (
        lambda s: s[:32] + _box(b"uuid", bytes(16) + PID.encode()) + s[32:]
    )(_j2k(jp2=True)),
}


@pytest.mark.parametrize("case", list(J2K_CASES))
def test_j2k_metadata_is_stripped_and_pixels_unchanged(case: str) -> None:
    if not get_decoder(JPEG2000).is_available:
        pytest.skip("no JPEG 2000 codec installed")
    stream = J2K_CASES[case]()
    src = _dataset(JPEG2000, [stream + b"\x00" * (len(stream) % 2)])
    assert _leaks(src)
    out = _released(src)
    assert np.array_equal(_pixels(out), _image())
    assert b"\xff\x4f\xff\x51" in out  # still a codestream: nothing re-encoded


def _rle(trailing: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_dataset(ExplicitVRLittleEndian, [b"\x00\x00"])))
    del ds.PixelData
    ds.PixelData = _image().tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    frame = bytes(next(generate_fragmented_frames(ds.PixelData, number_of_frames=1))[0])
    return frame + trailing


def test_rle_bytes_after_the_last_segment_are_stripped() -> None:
    src = _dataset(RLELossless, [_rle(f"{SURNAME} {PID}".encode())])
    assert _leaks(src)
    out = _released(src)
    assert np.array_equal(_pixels(out), _image())


def test_rle_segments_are_walked_to_their_plane_end() -> None:
    frame = _rle(b"")
    assert rle_segments(frame, 256, 1) == []
    with pytest.raises(PixelParseError):
        rle_segments(frame, 257, 1)  # the plane is one byte short
    assert [s.kind for s in rle_segments(frame + b"ABCD", 256, 1)] == ["after RLE segment 1"]


def test_unparseable_frame_is_quarantined() -> None:
    stream = _jpeg()
    bad = stream[:2] + b"\xff\xf1\x00\x06" + PID.encode()[:4] + stream[2:]  # reserved marker
    result = clean_instance(
        Deidentifier(Policy.default(), SECRET), _dataset(JPEGBaseline8Bit, [bad]), "t.dcm"
    )
    assert result.status == "quarantined"
    assert "cannot be parsed" in result.reason


def test_dataset_road_strips_too() -> None:
    src = _dataset(JPEGBaseline8Bit, [_jpeg(exif=_exif(), comment=PID.encode())])
    ds = pydicom.dcmread(io.BytesIO(src))
    report = Deidentifier(Policy.default(), SECRET).apply(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    assert _leaks(buf.getvalue()) == []
    assert report.pixels is not None
    assert any("APP1" in s for s in report.pixels.stripped)  # type: ignore[attr-defined]
    assert "stripped" in report.pixels.record("x.dcm")  # type: ignore[attr-defined]


def test_verify_walk_searches_metadata_segments() -> None:
    """rawscan gives metadata and trailing bytes spans and leaves them out of pixel_ranges."""
    src = _dataset(JPEGBaseline8Bit, [_jpeg(comment=PID.encode()) + b"tail bytes"])
    (lay,) = layouts(src)
    kinds = sorted(sp.path.split(": ")[-1] for sp in lay.side_spans)
    assert kinds == ["APP0", "COM", "after EOI"]
    assert all(sp.tag == PIXEL_SIDE_TAG for sp in lay.side_spans)
    at = src.rindex(PID.encode())
    assert not any(a <= at < b for a, b in lay.pixel_ranges)
    assert lay.element_at(at, at + 4).path.endswith("frame 1: COM")  # type: ignore[union-attr]


def test_verify_finds_metadata_left_in_an_output(tmp_path: Path) -> None:
    from medveil.verify import verify_archive

    src = _dataset(JPEGBaseline8Bit, [_jpeg(comment=f"{SURNAME}^{GIVEN} {PID}".encode())])
    (tmp_path / "o").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "o" / "f.dcm").write_bytes(src)
    ds = pydicom.dcmread(io.BytesIO(src))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "X", "Y", ""
    ds.PatientIdentityRemoved = "YES"
    ds.save_as(tmp_path / "d" / "f.dcm")
    report = verify_archive(tmp_path / "o", tmp_path / "d")
    assert any("COM" in (f.path or "") for f in report.findings), report.table()


# -- pydicom's own files: stripped, decoded unchanged ------------------------------------------

BUNDLED = [
    "SC_rgb_jpeg.dcm",
    "JPEG-lossy.dcm",
    "JPGExtended.dcm",
    "JPEG-LL.dcm",
    "SC_rgb_jls_lossy_sample.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "JPEG2000.dcm",
    "examples_jpeg2k.dcm",
    "MR_small_jp2klossless.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "693_J2KI.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle_2frame.dcm",
    "rtdose_rle.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_jpeg_app14_dcmd.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_files_decode_unchanged_after_stripping(name: str) -> None:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    ds = pydicom.dcmread(path)
    ts = ds.file_meta.TransferSyntaxUID
    if not get_decoder(ts).is_available:
        pytest.skip(f"no decoder for {ts.name}")
    try:
        before = np.asarray(ds.pixel_array).copy()
    except Exception:
        pytest.skip("pydicom's own decoders cannot read it")
    ds2 = pydicom.dcmread(path)  # a fresh read: nothing decoded is cached on it
    stripped = clean_side_bytes(ds2, ts)
    assert np.array_equal(np.asarray(ds2.pixel_array), before)
    if stripped:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        layout = parse_encapsulated(
            ds2.PixelData,
            ts,
            frames,
            rows=ds.Rows,
            columns=ds.Columns,
            samples=ds.SamplesPerPixel,
            bits_allocated=ds.BitsAllocated,
        )
        assert layout.stripped == []  # a second pass finds nothing more


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "rtdose_rle.dcm"]
)
def test_bundled_files_still_released_with_the_same_pixels(name: str) -> None:
    path = get_testdata_file(name)
    data = Path(path).read_bytes()
    ts = pydicom.dcmread(path).file_meta.TransferSyntaxUID
    if not get_decoder(ts).is_available:
        pytest.skip(f"no decoder for {ts.name}")
    result = clean_instance(Deidentifier(Policy.default(), SECRET), data, name)
    assert result.status == "written", result.reason
    assert np.array_equal(_pixels(result.data), _pixels(data))


# -- the parser: strict and bounded ------------------------------------------------------------


def test_parser_fails_only_with_its_own_error_on_damaged_streams() -> None:
    """Random damage never crashes or hangs the parser: it parses or says it cannot."""
    rng = random.Random(18)
    streams = [(_jpeg(exif=_exif()), jpeg_segments)]
    if get_decoder(JPEG2000).is_available:
        streams.append((_j2k(b"c", jp2=True), j2k_segments))
    for stream, parse in streams:
        for _ in range(300):
            data = bytearray(stream)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            cut = rng.choice([len(data), rng.randrange(1, len(data))])
            try:
                parse(bytes(data[:cut]))
            except PixelParseError:
                pass


def test_raw_road_writes_stripped_fragments_like_the_dataset_road() -> None:
    """Stripping is no reason to leave the raw-byte engine: both roads give the same bytes."""
    src = _dataset(JPEGBaseline8Bit, [_jpeg(exif=_exif(), comment=PID.encode())])
    engine = Deidentifier(Policy.default(), SECRET)
    result = clean_instance(engine, src, "t.dcm")
    assert result.status == "written" and result.engine == "raw", result.reason
    assert _leaks(result.data) == []
    out, _ = engine.apply_bytes(src)
    assert out == result.data


@pytest.mark.parametrize("road", ["raw", "dataset"])
def test_stripped_without_clean_pixel_data_too(road: str) -> None:
    """A policy that leaves the image alone still drops what lies beside it."""
    policy = Policy.from_toml('[profile]\noptions = ["clean_descriptors"]\n')
    engine = Deidentifier(policy, SECRET)
    src = _dataset(JPEGBaseline8Bit, [_jpeg(exif=_exif(), comment=PID.encode()) + b"tail!!"])
    if road == "raw":
        result = clean_instance(engine, src, "t.dcm")
        assert result.status == "written" and result.engine == "raw", result.reason
        out = result.data
    else:
        out, _ = engine.apply_bytes(src)
    assert _leaks(out) == [] and b"tail!!" not in out
    assert np.array_equal(_pixels(out), _pixels(src))


def test_extended_offset_table_is_rewritten() -> None:
    from pydicom.encaps import encapsulate_extended

    frames = [_jpeg(comment=f"{PID} {i}".encode()) for i in range(2)]
    src = pydicom.dcmread(io.BytesIO(_dataset(JPEGBaseline8Bit, frames)))
    src.PixelData, src.ExtendedOffsetTable, src.ExtendedOffsetTableLengths = encapsulate_extended(
        frames
    )
    src["PixelData"].VR = "OB"
    buf = io.BytesIO()
    src.save_as(buf, enforce_file_format=True)
    out = _released(buf.getvalue())
    ds = pydicom.dcmread(io.BytesIO(out))
    offsets = struct.unpack("<2Q", ds.ExtendedOffsetTable)
    lengths = struct.unpack("<2Q", ds.ExtendedOffsetTableLengths)
    value = ds.PixelData
    for off, n in zip(offsets, lengths, strict=True):
        at = 8 + off  # the empty Basic Offset Table item comes first
        assert value[at : at + 4] == b"\xfe\xff\x00\xe0"
        assert struct.unpack("<I", value[at + 4 : at + 8])[0] == n
        assert value[at + 8 : at + 10] == b"\xff\xd8"
    assert np.array_equal(_pixels(out), _pixels(buf.getvalue()))


@pytest.mark.parametrize(
    ("comment", "kept"),
    [
        (b"Created by OpenJPEG version 2.5.0", True),
        (b"Creator: JasPer Version 1.701.0", True),
        (b"Created by OpenJPEG version 2.5.0 " + SURNAME.encode(), False),
        (SURNAME.encode() + b" Kakadu-2.2", False),
    ],
)
def test_only_exact_encoder_signatures_stay(comment: bytes, kept: bool) -> None:
    if not get_decoder(JPEG2000).is_available:
        pytest.skip("no JPEG 2000 codec installed")
    coms = [s for s in j2k_segments(_j2k(comment)) if s.kind == "J2K COM"]
    assert [not s.strip for s in coms] == [kept]


def test_post_check_catches_metadata_the_cleaner_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: with the stripping switched off, the post-check finds the name."""
    from medveil.engine import dataset, native, raw
    from medveil.pixels import cleaner, sidebytes

    monkeypatch.setattr(cleaner, "clean_side_bytes", lambda ds, ts: [])
    for module in (sidebytes, dataset, native, raw):
        if hasattr(module, "strip_beside_image"):
            monkeypatch.setattr(module, "strip_beside_image", lambda ds: [])
    monkeypatch.setattr(sidebytes, "strip_beside_image", lambda ds: [])
    stream = _jpeg(comment=f"{SURNAME}^{GIVEN} {PID}".encode())
    src = _dataset(JPEGBaseline8Bit, [stream])
    result = clean_instance(Deidentifier(Policy(), SECRET), src, "t.dcm")
    assert result.status == "quarantined", result.reason
    assert "post-check" in result.reason and "(7FE0,0010) frame 1" in result.reason
