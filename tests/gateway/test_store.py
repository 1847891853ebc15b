"""Store mode over a real network on 127.0.0.1: what arrives equals `medveil deid` output."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pynetdicom")

from medveil.net.gateway import (
    STATUS_QUARANTINED,
    cleanable_transfer_syntaxes,
    part10_bytes,
)
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import Verification

from .helpers import SECRET, assert_no_phi, tree


def scu(aet: str = "TESTSCU") -> AE:
    """A storage SCU proposing every storage class (default syntaxes) and Verification."""
    ae = AE(ae_title=aet)
    for cx in StoragePresentationContexts[:120]:
        ae.add_requested_context(cx.abstract_syntax)
    ae.add_requested_context(Verification)
    return ae


def send(port: int, files: list[Path], aet: str = "TESTSCU") -> list[int]:
    """C-STORE every file over one association; the statuses in order."""
    assoc = scu(aet).associate("127.0.0.1", port, ae_title="MEDVEIL")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(f).Status) for f in files]
    finally:
        assoc.release()


def test_pynetdicom_scu_study_arrives_identical_to_file_based_run(start_gateway, demo):
    files, reference = demo
    gw, log = start_gateway()
    assert send(gw.port, files) == [0] * len(files)
    stored = tree(gw.config.store)
    assert stored.keys() == reference.keys()
    for rel, data in reference.items():
        assert stored[rel] == data, rel
    for data in stored.values():
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        assert ds.PatientIdentityRemoved == "YES"
    assert len(log.events("stored")) == len(files)
    assert_no_phi(log.text, files)


def test_c_echo_is_the_health_check(start_gateway):
    gw, _log = start_gateway()
    assoc = scu().associate("127.0.0.1", gw.port, ae_title="MEDVEIL")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()


def test_quarantined_instance_is_refused_logged_by_keyed_hash_and_kept_out(start_gateway, demo):
    files, _reference = demo
    # Rules only and no demo pixel rule: the ultrasound with burned-in text must quarantine
    # (the default, pixel_text = "auto", would screen it and release it masked).
    gw, log = start_gateway(policy=Policy(pixel_text="rules"))
    statuses = send(gw.port, files)
    us = [i for i, f in enumerate(files) if f.name == "cine.dcm"]
    assert us and all(statuses[i] == STATUS_QUARANTINED for i in us)
    assert all(s == 0 for i, s in enumerate(statuses) if i not in us)
    stored = tree(gw.config.store)
    assert len(stored) == len(files) - len(us)
    assert all(
        pydicom.dcmread(pydicom.filebase.DicomBytesIO(d)).Modality != "US" for d in stored.values()
    )
    events = log.events("quarantined")
    keyed = Keyed(SECRET)
    expected = {keyed.path_token(str(pydicom.dcmread(files[i]).SOPInstanceUID)) for i in us}
    assert {e["instance"] for e in events} == expected
    assert all("burned-in" in str(e["reason"]) or "pixel rule" in str(e["reason"]) for e in events)
    assert_no_phi(log.text, files)


def test_unsupported_transfer_syntax_is_rejected_at_negotiation(start_gateway):
    gw, _log = start_gateway()
    ae = AE(ae_title="TESTSCU")
    # MPEG-2 video is not something the pixel cleaner can decode.
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.4.100")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", gw.port, ae_title="MEDVEIL")
    assert assoc.is_established
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    rejected = {str(cx.abstract_syntax) for cx in assoc.rejected_contexts}
    assoc.release()
    assert accepted == {"1.2.840.10008.5.1.4.1.1.2"}
    assert rejected == {"1.2.840.10008.5.1.4.1.1.7"}


def test_cleanable_syntaxes_prefer_native_then_lossless():
    syntaxes = cleanable_transfer_syntaxes()
    assert syntaxes[0] == "1.2.840.10008.1.2.1"
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5"} <= set(syntaxes)
    lossy = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"]
    lossless = ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80"]
    for a in lossless:
        for b in lossy:
            if a in syntaxes and b in syntaxes:
                assert syntaxes.index(a) < syntaxes.index(b)


def test_part10_bytes_equal_pydicom_save_of_the_received_dataset(demo):
    """The gateway's re-encoding is what pydicom writes for the same dataset without meta."""
    import io
    from types import SimpleNamespace

    files, _ = demo
    for f in files:
        raw = f.read_bytes()
        ds = pydicom.dcmread(f)
        start = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
        event = SimpleNamespace(
            request=SimpleNamespace(
                AffectedSOPClassUID=ds.SOPClassUID, AffectedSOPInstanceUID=ds.SOPInstanceUID
            ),
            context=SimpleNamespace(transfer_syntax=ds.file_meta.TransferSyntaxUID),
            encoded_dataset=lambda include_meta, _raw=raw, _s=start: _raw[_s:],
        )
        out = io.BytesIO()
        ds.file_meta = pydicom.dataset.FileMetaDataset(
            {k: v for k, v in ds.file_meta.items() if k.element in (2, 3, 0x10)}
        )
        ds.save_as(out, enforce_file_format=True)
        assert part10_bytes(event) == out.getvalue() == raw


@pytest.mark.skipif(
    shutil.which("storescu") is None, reason="DCMTK storescu not installed (apt-get install dcmtk)"
)
def test_dcmtk_storescu_study_arrives_identical_to_file_based_run(start_gateway, demo, tmp_path):
    files, reference = demo
    gw, log = start_gateway()
    proc = subprocess.run(
        ["storescu", "-aet", "DCMTKSCU", "-aec", "MEDVEIL", "127.0.0.1", str(gw.port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stored = tree(gw.config.store)
    assert stored.keys() == reference.keys()
    for rel, data in reference.items():
        assert stored[rel] == data, rel
    assert {e["calling_aet"] for e in log.events("association")} == {"DCMTKSCU"}
    assert_no_phi(log.text, files)


@pytest.mark.parametrize(
    ("reason", "kept", "gone"),
    [
        ("ValueError: bad DA value '19580704'", "ValueError", "19580704"),
        ('KeyError: "Fakename^Alice"', "KeyError", "Fakename"),
        ("uid 1.2.826.0.1.3680043.10.1311.1.2 invalid", "invalid", "1311"),
        ("post-check: PatientIdentityRemoved is not YES", "PatientIdentityRemoved", "\x00"),
    ],
)
def test_quarantine_reasons_are_scrubbed_of_values(reason, kept, gone):
    from medveil.net.gateway import scrub_reason

    out = scrub_reason(reason)
    assert kept in out and gone not in out
