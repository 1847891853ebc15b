"""--embed-originals: the Encrypted Attributes Sequence (PS3.15 E.1.1) round trip."""

from __future__ import annotations

import datetime
import io
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from medveil.crypto.vault.embed import (
    ENCRYPTED_ATTRIBUTES_SEQUENCE,
    OriginalsEmbedder,
    decode_dataset,
    decrypt_originals,
    restore_originals,
)
from medveil.engine.dataset import Deidentifier
from medveil.errors import AuthenticationError
from medveil.policy.schema import Policy
from medveil.run.demo import write_demo_archive


def make_recipient(
    tmp_path: Path, name: str = "site"
) -> tuple[object, x509.Certificate, Path, Path]:
    """An RSA key and a self-signed certificate, written as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"medveil test {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key, cert, cert_path, key_path


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CT file of the demo archive (fake PHI)."""
    folder = tmp_path_factory.mktemp("demo")
    files = write_demo_archive(folder)
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except Exception:
            continue
        if ds.get("Modality") == "CT":
            return f
    raise AssertionError("the demo archive has no CT file")


def deidentify_with_originals(
    path: Path, embedder: OriginalsEmbedder
) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """(original dataset, de-identified dataset with the originals sealed, re-read)."""
    original = pydicom.dcmread(path)
    ds = pydicom.dcmread(path)
    engine = Deidentifier(Policy.default(), b"\x01" * 32)
    before = embedder.snapshot(ds)
    engine.apply(ds)
    n = embedder.embed(before, ds)
    assert n > 5
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return original, pydicom.dcmread(io.BytesIO(out.getvalue()))


def test_restore_gives_back_the_original_header(tmp_path: Path, demo_file: Path) -> None:
    key, cert, cert_path, _ = make_recipient(tmp_path)
    original, cleaned = deidentify_with_originals(demo_file, OriginalsEmbedder(cert_path))
    assert cleaned.PatientName != original.PatientName
    assert cleaned.PatientID != original.PatientID
    assert cleaned.StudyInstanceUID != original.StudyInstanceUID
    # The sealed bytes do not show the originals.
    blob = bytes(cleaned[ENCRYPTED_ATTRIBUTES_SEQUENCE].value[0].EncryptedContent)
    for v in (str(original.PatientName), original.PatientID, original.AccessionNumber):
        assert v.encode() not in blob
    restored = restore_originals(cleaned, key, cert)
    for elem in original:
        if elem.tag.group == 0x7FE0:
            continue
        assert restored[elem.tag] == elem, elem.keyword
    assert ENCRYPTED_ATTRIBUTES_SEQUENCE not in restored
    assert "PatientIdentityRemoved" not in restored  # the original had no such mark
    assert restored.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID


def test_wrong_key_cannot_restore(tmp_path: Path, demo_file: Path) -> None:
    _, _, cert_path, _ = make_recipient(tmp_path, "site")
    other_key, other_cert, _, _ = make_recipient(tmp_path, "other")
    _, cleaned = deidentify_with_originals(demo_file, OriginalsEmbedder(cert_path))
    with pytest.raises(AuthenticationError, match="not for this key"):
        decrypt_originals(cleaned, other_key, other_cert)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command (Debian openssl)")
def test_openssl_cms_decrypts_it(tmp_path: Path, demo_file: Path) -> None:
    _, _, cert_path, key_path = make_recipient(tmp_path)
    original, cleaned = deidentify_with_originals(demo_file, OriginalsEmbedder(cert_path))
    item = cleaned[ENCRYPTED_ATTRIBUTES_SEQUENCE].value[0]
    assert item.EncryptedContentTransferSyntaxUID == "1.2.840.10008.1.2.1"
    der = tmp_path / "content.der"
    der.write_bytes(bytes(item.EncryptedContent))
    info = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(der)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pkcs7-envelopedData" in info or "envelopedData" in info
    assert "aes-256-cbc" in info.lower()
    assert "rsaEncryption" in info
    plain = tmp_path / "plain.bin"
    subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(der),
            "-inkey",
            str(key_path),
            "-recip",
            str(cert_path),
            "-out",
            str(plain),
        ],
        capture_output=True,
        check=True,
    )
    payload = decode_dataset(plain.read_bytes())
    (mod,) = payload.ModifiedAttributesSequence
    assert mod.PatientName == original.PatientName
    assert mod.PatientID == original.PatientID
    assert mod.StudyInstanceUID == original.StudyInstanceUID
    assert "PixelData" not in mod


def test_archive_run_embeds_originals(tmp_path: Path) -> None:
    from medveil.run.archive import RECORDS, deidentify_archive

    from tests.vault.test_archive_vault import demo_policy, source_datasets

    key, cert, cert_path, _ = make_recipient(tmp_path)
    src, out = tmp_path / "in", tmp_path / "out"
    write_demo_archive(src)
    summary = deidentify_archive(
        src, out, policy=demo_policy(), secret=b"\x02" * 32, workers=1, embed_originals=cert_path
    )
    assert summary.quarantined == 0 and summary.written > 0
    by_sop = {str(ds.SOPInstanceUID): ds for ds in source_datasets(src)}
    files = [p for p in out.rglob("*.dcm") if RECORDS not in p.parts]
    assert len(files) == summary.written
    for path in files:
        cleaned = pydicom.dcmread(path)
        assert ENCRYPTED_ATTRIBUTES_SEQUENCE in cleaned
        restored = restore_originals(cleaned, key, cert)
        original = by_sop[str(restored.SOPInstanceUID)]
        for kw in (
            "PatientID",
            "PatientName",
            "PatientBirthDate",
            "AccessionNumber",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "StudyDate",
            "InstitutionName",
        ):
            assert restored[kw] == original[kw], kw


def test_bad_certificate_fails_before_any_work(tmp_path: Path) -> None:
    from medveil.errors import MedveilError
    from medveil.run.archive import deidentify_archive

    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    src = tmp_path / "in"
    write_demo_archive(src)
    with pytest.raises(MedveilError, match=r"not an X\.509 certificate"):
        deidentify_archive(src, tmp_path / "out", secret=b"\x02" * 32, embed_originals=bad)
    assert not (tmp_path / "out").exists()


def test_deid_cli_embed_originals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medveil.cli.main import main

    key, cert, cert_path, _ = make_recipient(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("ab" * 32 + "\n")
    secret.chmod(0o600)  # key files open to others are refused
    out = tmp_path / "out"
    args = ["deid", "--demo", str(out), "--secret-file", str(secret), "--quiet", "--workers", "1"]
    assert main([*args, "--embed-originals", str(cert_path)]) == 0
    (first, *_) = sorted(out.rglob("*.dcm"))
    restored = restore_originals(pydicom.dcmread(first), key, cert)
    assert str(restored.PatientID).startswith("DEMO-")
