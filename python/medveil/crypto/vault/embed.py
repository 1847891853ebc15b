"""The standard's reversible de-identification: originals in the Encrypted Attributes Sequence.

DICOM PS3.15 E.1.1 (and PS3.3 C.12.1.1.4): the original values of the attributes that
de-identification replaced or removed go into one item of the Modified Attributes
Sequence (0400,0550), inside a small dataset encoded in Explicit VR Little Endian. That
dataset is encrypted as CMS EnvelopedData (RFC 5652, content type id-data) for an X.509
recipient (RSA key transport, AES-256-CBC) and stored as Encrypted Content (0400,0520) in
an item of the Encrypted Attributes Sequence (0400,0500), next to the Encrypted Content
Transfer Syntax UID (0400,0510). Whoever holds the recipient's private key can restore
the original header (``openssl cms -decrypt -inform DER -binary`` opens it too); nobody
else learns anything from it.

Pixel data is never embedded: burned-in text removed from the pixels stays removed.
EnvelopedData with AES-CBC keeps the originals secret but does not authenticate them: a
modified Encrypted Content may fail to open or open to altered values. Where that
matters, sign the files (Digital Signatures Sequence) or keep the vault as the reference.
"""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from medveil.errors import AuthenticationError, MedveilError

if TYPE_CHECKING:  # cryptography is imported lazily at run time
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.x509 import Certificate

ENCRYPTED_ATTRIBUTES_SEQUENCE = 0x04000500
ENCRYPTED_CONTENT_TRANSFER_SYNTAX = 0x04000510
ENCRYPTED_CONTENT = 0x04000520
MODIFIED_ATTRIBUTES_SEQUENCE = 0x04000550
# Marks that de-identification adds: restored to their original state (absent if absent).
_MARKS = (0x00120062, 0x00120063, 0x00120064)
_SPECIFIC_CHARACTER_SET = 0x00080005


def _never_embedded(tag: int) -> bool:
    # Pixel data and its kin would carry burned-in PHI back in and double the file size.
    group = tag >> 16
    return (
        group == 0x7FE0
        or 0x6000 <= group <= 0x60FF
        or tag in (ENCRYPTED_ATTRIBUTES_SEQUENCE, MODIFIED_ATTRIBUTES_SEQUENCE)
    )


def load_certificate(path: str | os.PathLike[str]) -> Certificate:
    """Read a PEM or DER X.509 certificate with an RSA public key (the recipient)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = Path(path).read_bytes()
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError as exc:
        raise MedveilError(f"{path}: not an X.509 certificate ({exc})") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise MedveilError(
            f"{path}: the certificate's key is not RSA; CMS key transport here needs RSA"
        )
    return cert


class OriginalsEmbedder:
    """Seals the replaced originals of each dataset for one X.509 recipient.

    Use :meth:`snapshot` before the engine changes a dataset and :meth:`embed` after.
    """

    def __init__(self, certificate: object) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import pkcs7

        if isinstance(certificate, (str, os.PathLike)):
            certificate = load_certificate(certificate)
        if not isinstance(certificate, x509.Certificate):
            raise TypeError("certificate must be an X.509 certificate or a path to one")
        if not hasattr(pkcs7.PKCS7EnvelopeBuilder, "set_content_encryption_algorithm"):
            raise MedveilError(
                "--embed-originals needs cryptography >= 45 (AES-256 content encryption)"
            )
        self.certificate = certificate

    def snapshot(self, ds: Dataset) -> Dataset:
        """A deep copy of ds's top-level header elements (no pixel data), taken before."""
        out = Dataset()
        for elem in ds:
            if not _never_embedded(elem.tag):
                out.add(_copy(elem))
        return out

    def modified(self, before: Dataset, after: Dataset) -> Dataset:
        """One Modified Attributes item: every element of before that after changed or lost."""
        item = Dataset()
        for elem in before:
            tag = int(elem.tag)
            now = after.get(tag)
            if now is None or tag in _MARKS or _changed(elem, now):
                item.add(copy.deepcopy(elem))
        return item

    def embed(self, before: Dataset, after: Dataset) -> int:
        """Add the Encrypted Attributes Sequence to after; returns attributes embedded."""
        from cryptography.hazmat.primitives.ciphers import algorithms
        from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

        item = self.modified(before, after)
        payload = Dataset()
        if _SPECIFIC_CHARACTER_SET in before:
            # The originals are decoded with the character set they were written in.
            payload.add(copy.deepcopy(before[_SPECIFIC_CHARACTER_SET]))
        payload.ModifiedAttributesSequence = Sequence([item])
        plain = encode_dataset(payload)
        envelope = (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(plain)
            .set_content_encryption_algorithm(algorithms.AES256)
            .add_recipient(self.certificate)
            # Binary: without it the builder converts line endings as for S/MIME text,
            # which corrupts a binary DICOM payload.
            .encrypt(Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
        enc = Dataset()
        enc.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
        enc.EncryptedContent = envelope
        after.EncryptedAttributesSequence = Sequence([enc])
        return len(item)


def _copy(elem: DataElement) -> DataElement:
    """A deep copy that owns its bytes: large values read zero-copy are views of a buffer
    that the pixel cleaner and the writer go on to reuse (and views cannot be deep-copied).
    """
    if elem.VR == "SQ":
        items = []
        for item in elem.value:
            new = Dataset()
            for sub in item:
                new.add(_copy(sub))
            items.append(new)
        return DataElement(elem.tag, "SQ", Sequence(items))
    value = elem.value
    if isinstance(value, memoryview):
        value = bytes(value)
    return DataElement(elem.tag, elem.VR, copy.deepcopy(value))


def _changed(a: DataElement, b: DataElement) -> bool:
    try:
        return a.VR != b.VR or a.value != b.value
    except Exception:  # values that do not compare (raw, undecoded): treat as changed
        return True


def encode_dataset(ds: Dataset) -> bytes:
    """ds encoded in Explicit VR Little Endian, without preamble or file meta."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def decode_dataset(data: bytes) -> Dataset:
    """Parse bytes written by :func:`encode_dataset`."""
    return read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def decrypt_originals(
    ds: Dataset, private_key: RSAPrivateKey, certificate: Certificate
) -> list[Dataset]:
    """The Modified Attributes items sealed in ds, opened with the recipient's key."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    seq = ds.get(ENCRYPTED_ATTRIBUTES_SEQUENCE)
    if seq is None or not seq.value:
        raise MedveilError("the dataset has no Encrypted Attributes Sequence (0400,0500)")
    items: list[Dataset] = []
    for enc in seq.value:
        ts = str(enc.get("EncryptedContentTransferSyntaxUID", ""))
        if ts != ExplicitVRLittleEndian:
            raise MedveilError(f"unsupported Encrypted Content Transfer Syntax UID {ts!r}")
        try:
            plain = pkcs7.pkcs7_decrypt_der(
                bytes(enc.EncryptedContent), certificate, private_key, []
            )
        except ValueError as exc:
            raise AuthenticationError(
                f"cannot open the Encrypted Attributes: not for this key or modified ({exc})"
            ) from None
        payload = decode_dataset(plain)
        items.extend(payload.get("ModifiedAttributesSequence", []))
    return items


def restore_originals(ds: Dataset, private_key: RSAPrivateKey, certificate: Certificate) -> Dataset:
    """Put the sealed original values back into ds (in place) and drop the sealed copy.

    Attributes the de-identification only added (the de-identification marks) are
    removed unless the original had them; other added attributes are left alone.
    """
    items = decrypt_originals(ds, private_key, certificate)
    restored_tags: set[int] = set()
    for item in items:
        for elem in item:
            ds[elem.tag] = copy.deepcopy(elem)
            restored_tags.add(int(elem.tag))
    for tag in _MARKS:
        if tag not in restored_tags and tag in ds:
            del ds[tag]
    del ds[ENCRYPTED_ATTRIBUTES_SEQUENCE]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
