"""Quarantine reasons: actionable (types, names, code locations), free of file values."""

from __future__ import annotations

import re

from medveil.engine.instance import MAX_REASON, describe_exception, scrub_reason


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_attribute_error_keeps_the_type_and_attribute_names() -> None:
    try:
        memoryview(b"x").read  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        text = describe_exception(exc)
    assert text.startswith("AttributeError: 'memoryview' object has no attribute 'read'")
    assert re.search(r"\(at archive/test_reasons\.py:\d+ in test_attribute", text)


def test_values_in_messages_are_blanked() -> None:
    text = describe_exception(_raise(KeyError("DOE^JOHN")))
    assert "DOE" not in text and "JOHN" not in text
    assert text.startswith("KeyError: '…'")
    assert "19510227" not in describe_exception(_raise(ValueError("bad date 19510227")))


def test_import_error_names_the_module() -> None:
    exc = _raise(ImportError("no module", name="pylibjpeg"))
    assert describe_exception(exc).startswith("ImportError: cannot import 'pylibjpeg'")


def test_long_reasons_are_cut_at_a_word() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    text = scrub_reason(words)
    assert len(text) <= MAX_REASON + 2
    assert text.endswith(" …")
    last = text[: -len(" …")].split(" ")[-1]
    assert last in words.split(" ")  # a whole word, not a cut one


def test_short_reasons_are_unchanged() -> None:
    assert scrub_reason("value of (0010,0010) runs past the end") == (
        "value of (0010,0010) runs past the end"
    )


def test_public_uids_and_their_names_stay() -> None:
    # A transfer syntax or SOP class is what a user acts on; a person's name or a
    # private UID is still blanked in the same message.
    reason = (
        "unsupported transfer syntax 'MPEG-4 AVC/H.264 High Profile / Level 4.1' "
        "(1.2.840.10008.1.2.4.102) for 'Doe^John', instance 1.2.826.0.1.3680043.9.7133.1"
    )
    out = scrub_reason(reason)
    assert "'MPEG-4 AVC/H.264 High Profile / Level 4.1'" in out
    assert "1.2.840.10008.1.2.4.102" in out
    assert "Doe" not in out and "3680043" not in out
    assert scrub_reason("b'1.2.840.10008.1.2.1'") == "b'1.2.840.10008.1.2.1'"
