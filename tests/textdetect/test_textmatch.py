"""Fuzzy matching of OCR text against header identifiers: distances, order, case, dates."""

from __future__ import annotations

import datetime as dt
import itertools

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.pixels.text.match import (
    Identifiers,
    date_forms,
    edit_distance,
    normalize,
    substring_distance,
    tokens,
)

ALNUM = st.text(alphabet="ABCDEFGHJKMNPRTUVWXY0123456789", min_size=0, max_size=12)


def _naive_lev(a: str, b: str) -> int:
    """Levenshtein by plain recursion with memo (the textbook definition)."""
    memo: dict[tuple[int, int], int] = {}

    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        if (i, j) not in memo:
            memo[i, j] = min(
                d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1])
            )
        return memo[i, j]

    return d(len(a), len(b))


@settings(max_examples=200, deadline=None)
@given(ALNUM, ALNUM)
def test_edit_distance_is_levenshtein(a: str, b: str) -> None:
    assert edit_distance(a, b) == _naive_lev(a, b)
    assert edit_distance(a, b) == edit_distance(b, a)


@settings(max_examples=200, deadline=None)
@given(ALNUM, ALNUM, st.integers(0, 4))
def test_edit_distance_limit_is_exact_below_and_saturates_above(a: str, b: str, k: int) -> None:
    d = _naive_lev(a, b)
    got = edit_distance(a, b, k)
    assert got == d if d <= k else got == k + 1


@settings(max_examples=150, deadline=None)
@given(ALNUM, ALNUM, ALNUM)
def test_substring_distance_zero_for_embedded_and_bounded_by_whole(
    pre: str, needle: str, post: str
) -> None:
    assert substring_distance(needle, pre + needle + post) == 0
    hay = pre + post
    assert substring_distance(needle, hay) <= _naive_lev(needle, hay)


def test_known_distances() -> None:
    assert edit_distance("KITTEN", "SITTING") == 3
    assert edit_distance("", "ABC") == 3
    assert substring_distance("JANE", "D0EWANE") == 1


def test_normalize_case_accents_lookalikes() -> None:
    assert normalize("Doe") == normalize("DOE") == normalize("D0E")
    assert normalize("Müller") == normalize("MULLER")
    assert normalize("l") == normalize("1") == normalize("I")
    assert tokens("DOE^JANE, 1970-01-31") == ["D0E", "JANE", "19700131"]


NAME = "Doe^Jane^Q"
IDS = Identifiers.from_values(
    names=[NAME],
    ids=["MRN0042917"],
    dates=["19700131"],
    phrases=["Springfield General Hospital"],
)


@pytest.mark.parametrize(
    "text",
    [
        "DOE^JANE",
        "doe jane",
        "Jane Doe",
        "JANE",
        "Patient: DOE, JANE Q",
        "D0E^JANE",  # OCR: O read as 0
        "DOEWANE",  # OCR: the caret read as W
        "Jame Doe",  # one letter wrong: the surname still matches exactly
        "ID: MRN0042917",
        "ID:MRN0042917",
        "MRN 0042917",
        "MRNOO42917",  # O for 0, twice
        "MRN004291",  # one digit lost
        "Springfield General Hospital",
        "GENERAL HOSPITAL SPRINGFIELD",  # words in any order
        "Springfeld Generl Hospita1",  # a letter lost or misread in every word
    ],
)
def test_identifying_texts_match(text: str) -> None:
    assert IDS.matches(text)


@pytest.mark.parametrize(
    "text",
    [
        "19700131",
        "1970-01-31",
        "1970/01/31",
        "31.01.1970",
        "31/01/1970",
        "01/31/1970",
        "1/31/1970",
        "31-Jan-1970",
        "31 JAN 1970",
        "Jan 31 1970",
        "31.01.70",
        "DOB: 31. 01. 1970",  # OCR split the date into tokens
        "B 31-JAN-1970 F",
    ],
)
def test_birth_date_in_common_formats_matches(text: str) -> None:
    assert IDS.matches(text)


@pytest.mark.parametrize(
    "text",
    [
        "L",
        "R",
        "5 cm",
        "10 cm",
        "MI 1.1 TIS 0.4",
        "LIVER",
        "GAIN 45 DR 60",
        "2024-06-12",  # some other date
        "General",  # one word of the institution is not the institution
        "",
        "   ",
        "MRN",
    ],
)
def test_non_identifying_texts_do_not_match(text: str) -> None:
    assert not IDS.matches(text)


def test_short_name_components_need_an_exact_token() -> None:
    ids = Identifiers.from_values(names=["Li^Wu"])
    assert ids.matches("WU LI")
    assert not ids.matches("LIVER")  # "LI" inside a word is not the name
    assert not ids.matches("L")


@settings(max_examples=100, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_every_rendering_of_a_date_matches_it(day: dt.date) -> None:
    da = day.strftime("%Y%m%d")
    ids = Identifiers.from_values(dates=[da])
    for form in date_forms(da):
        assert ids.matches(form), form
    assert ids.matches(day.strftime("%d-%b-%Y").upper())
    assert ids.matches(day.strftime("%m/%d/%Y"))


def test_invalid_dates_give_no_forms() -> None:
    assert date_forms("19701301") == []
    assert date_forms("1970") == []
    assert date_forms("") == []


WORD = st.text(alphabet="ABCDEFGHKMNPRTUVWXYZ", min_size=4, max_size=10)


@settings(max_examples=100, deadline=None)
@given(st.lists(WORD, min_size=2, max_size=4, unique=True), st.randoms(use_true_random=False))
def test_phrase_matches_in_any_order_and_case(words: list[str], rnd) -> None:
    ids = Identifiers.from_values(phrases=[" ".join(words)])
    shuffled = list(words)
    rnd.shuffle(shuffled)
    text = " ".join(w.lower() if i % 2 else w for i, w in enumerate(shuffled))
    assert ids.matches(text)
    assert ids.matches("Site: " + text + " 12:30")


@settings(max_examples=100, deadline=None)
@given(WORD, WORD, st.integers(0, 100), st.sampled_from("ACEHKMNPRTUVWXY"))
def test_one_misread_letter_in_a_name_still_matches(
    last: str, first: str, pos: int, letter: str
) -> None:
    ids = Identifiers.from_values(names=[f"{last}^{first}"])
    i = pos % len(first)
    misread = first[:i] + letter + first[i + 1 :]
    assert ids.matches(f"{last.lower()}, {misread}")
    assert ids.matches(misread)  # one edit in a name of 4+ letters


@settings(max_examples=60, deadline=None)
@given(st.lists(WORD, min_size=2, max_size=3, unique=True))
def test_name_components_match_in_every_order(parts: list[str]) -> None:
    ids = Identifiers.from_values(names=["^".join(parts)])
    for perm in itertools.permutations(parts):
        assert ids.matches(" ".join(perm))


def test_from_dataset_reads_names_ids_dates_institution() -> None:
    ds = pydicom.Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN0042917"
    ds.PatientBirthDate = "19700131"
    ds.InstitutionName = "Springfield General Hospital"
    ds.ReferringPhysicianName = "House^Gregory"
    ids = Identifiers.from_dataset(ds)
    assert ids.matches("JANE DOE")
    assert ids.matches("MRN0042917")
    assert ids.matches("31/01/1970")
    assert ids.matches("springfield general hospital")
    assert ids.matches("Dr. Gregory House")
    assert not ids.matches("5 cm")
    assert "Doe" not in repr(ids) and "MRN" not in repr(ids)


def test_empty_dataset_matches_nothing() -> None:
    ids = Identifiers.from_dataset(pydicom.Dataset())
    assert not ids
    assert not ids.matches("DOE JANE 19700131")
