"""Every transfer syntax family arrives cleaned as `medveil deid` cleans the same file."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pynetdicom")

from medveil.net.gateway import STATUS_QUARANTINED
from medveil.run.archive import deidentify_archive
from pydicom.data import get_testdata_file
from pynetdicom import AE

from .helpers import SECRET, demo_policy, tree

#: pydicom's bundled files, written by other software (their own Implementation Class UID).
FILES = [
    "CT_small.dcm",  # Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "MR_small_RLE.dcm",  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "JPEG2000.dcm",  # JPEG 2000, a Secondary Capture: decoded and screened for burned-in text
]
#: Meta elements that name the software that wrote a file: a network transfer carries none.
WRITER_IDENTITY = {0x00020000, 0x00020012, 0x00020013, 0x00020016}


def split(data: bytes) -> tuple[pydicom.dataset.FileMetaDataset, bytes]:
    """A Part 10 file's meta and the bytes of its data set."""
    meta_len = int.from_bytes(data[140:144], "little")
    meta = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True).file_meta
    return meta, data[144 + meta_len :]


def test_each_syntax_is_cleaned_like_the_file(start_gateway, tmp_path: Path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if not get_decoder(JPEGLSLossless).is_available:
        # Without a JPEG-LS decoder (the [codecs] extra) the gateway rightly refuses it.
        pytest.skip("no JPEG-LS decoder installed: pip install medveil[codecs]")
    src = tmp_path / "in"
    src.mkdir()
    paths = []
    for name in FILES:
        found = get_testdata_file(name)
        if found is None:
            pytest.skip(f"pydicom test file {name} missing")
        # Several are the same MR image in different syntaxes: give each its own instance.
        ds = pydicom.dcmread(found)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
            f"{ds.SOPInstanceUID}.{len(paths) + 1}"
        )
        ds.save_as(src / name)
        paths.append(src / name)
    summary = deidentify_archive(src, tmp_path / "ref", policy=demo_policy(), secret=SECRET)
    reference = tree(tmp_path / "ref")
    # Both roads must agree file by file, whatever each file's verdict is.
    assert summary.written == len(reference) >= 4

    gw, log = start_gateway()
    ae = AE(ae_title="SYNTAX")
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", gw.port, ae_title="MEDVEIL")
    assert assoc.is_established
    # Each file goes in its own syntax: every proposed context must have been accepted.
    assert len(assoc.accepted_contexts) == len(paths)
    statuses = [int(assoc.send_c_store(p).Status) for p in paths]
    assoc.release()
    assert statuses.count(0) == summary.written
    assert statuses.count(STATUS_QUARANTINED) == summary.quarantined

    stored = tree(gw.config.store)
    assert stored.keys() == reference.keys()
    for rel, data in reference.items():
        ref_meta, ref_body = split(data)
        got_meta, got_body = split(stored[rel])
        # The data set is byte-identical; so is the meta, but for the writer's identity.
        assert got_body == ref_body, rel
        keep = [t for t in ref_meta.keys() if t not in WRITER_IDENTITY]
        assert [t for t in got_meta.keys() if t not in WRITER_IDENTITY] == keep
        assert all(got_meta[t].value == ref_meta[t].value for t in keep)
    assert len(log.events("quarantined")) == summary.quarantined
