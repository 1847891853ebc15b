"""Encapsulated documents (PDF, CDA): replaced or removed, never kept, never half-described.

A PDF's text is not in its bytes as a header's is: word processors draw it in kerned
pieces (``[(WIJ) -12 (NGA) ...] TJ``), in hex strings or in font glyph codes, mostly
Flate-compressed. The post-check cannot find a name there, so a policy that kept the
document would release it unchecked: such a policy is refused.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from medveil import Policy
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import PolicyError
from medveil.policy.schema import CompiledPolicy
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.adversarial.generator import save
from tests.corpus import modalities

SECRET = bytes(range(32))
NAME = "WIJNGAARDEN"


def _pdf_instance(style: str) -> bytes:
    """An Encapsulated PDF instance whose document (only) names the patient."""
    ds = Dataset()
    ds.SOPClassUID = modalities.ENCAPSULATED_PDF
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = f"{NAME}^PETRONELLA", "MRN5520113"
    ds.Modality, ds.ConversionType, ds.BurnedInAnnotation = "DOC", "WSD", "YES"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    doc = modalities.make_pdf([f"Patient: {NAME}, PETRONELLA  MRN5520113"], True, style)
    ds.EncapsulatedDocument = doc + b"\0" * (len(doc) % 2)
    ds.EncapsulatedDocumentLength = len(doc)
    return save(ds)


@pytest.mark.parametrize("style", ["kerned", "hex"])
def test_kept_pdf_text_is_not_in_its_bytes(style: str) -> None:
    """Why keeping is refused: the name is shown by the PDF, yet absent from its bytes."""
    doc = bytes(pydicom.dcmread(io.BytesIO(_pdf_instance(style))).EncapsulatedDocument)
    assert NAME.encode() not in doc and b"MRN5520113" not in doc
    assert NAME.encode() in modalities.pdf_text(doc)


@pytest.mark.parametrize(
    "toml",
    [
        '[elements]\nEncapsulatedDocument = "K"\n',
        '[elements]\n"(0042,0011)" = "C"\n',
        '[elements]\n"(0042,xxxx)" = "K"\n',
    ],
)
def test_a_policy_that_keeps_the_document_is_refused(toml: str) -> None:
    with pytest.raises(PolicyError, match="EncapsulatedDocument"):
        CompiledPolicy(Policy.from_toml(toml))


@pytest.mark.parametrize("toml", ['[elements]\nEncapsulatedDocument = "X"\n', ""])
def test_replacing_or_removing_it_is_allowed(toml: str) -> None:
    compiled = CompiledPolicy(Policy.from_toml(toml))
    assert compiled.by_tag[0x00420011].action in ("X", "D")


@pytest.mark.parametrize("style", ["plain", "kerned", "hex"])
def test_default_policy_releases_the_pdf_without_its_text_or_stale_length(style: str) -> None:
    eng = Deidentifier(Policy.default(), SECRET)
    result = clean_instance(eng, _pdf_instance(style), "doc.dcm")
    assert result.status == "written", result.reason
    out = pydicom.dcmread(io.BytesIO(b"".join(result.parts)))
    doc = bytes(out.EncapsulatedDocument)
    assert NAME.encode() not in modalities.pdf_text(doc).upper()
    assert not doc.strip(b"\0")  # a dummy: no byte of the document is left
    # The length of the original document would describe a document that is gone.
    assert "EncapsulatedDocumentLength" not in out


def test_the_refusal_comes_at_load_naming_the_line() -> None:
    """Before any worker compiles the policy (a refusal there killed every worker)."""
    with pytest.raises(PolicyError, match=r"^p.toml:3: EncapsulatedDocument = 'K': not allowed"):
        Policy.from_toml('[elements]\nPatientName = "X"\nEncapsulatedDocument = "K"\n', "p.toml")
