"""The safety net: rules for the standard elements Table E.1-1 does not list.

Table E.1-1 lists the attributes the standard knows to carry identity; every other
standard element is kept by the Basic Profile (``unknown_elements = "keep"``). Many of
those hold names, free text, instance UIDs or dates all the same (SecondaryReviewerName,
DocumentTitle, RetrieveURL, SOPInstanceUIDOfConcatenationSource, ...). The net, built from
pydicom's data dictionary, gives each such element a rule by its VR:

- PN: X/Z;
- UI: U (replaced; UIDs in pydicom's UID dictionary stay), unless the keep-list names it
  (class and transfer syntax UIDs);
- free text (AE, LO, LT, SH, ST, UC, UR, UT): X/Z, unless the keep-list names it;
- DA/DT: shifted under Retain Longitudinal Modified Dates, kept under Full Dates, else X/Z;
  TM: kept when dates are shifted or kept (a whole-day shift leaves the time), else X/Z.

X/Z is resolved as for the table (:func:`medveil.policy.standard.resolve_combined`): the
value is emptied, so a Type 2 attribute stays valid, and removed for retired attributes
(in no IOD) or under ``combined_codes = "minimal"``. Either way no value is left.

Other VRs (codes, numbers, binary, sequences) are left to the unknown-element path. The
keep-list is data (``medveil/data/safety_net_keep.csv``, one reason per entry).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# pydicom.datadict imports these two without re-exporting them; their home is _dicom_dict.
from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary
from pydicom.datadict import tag_for_keyword

from medveil.policy.standard import Option, Rule, parse_tag_pattern

FREE_TEXT_VRS = frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UR", "UT"})
DATE_VRS = frozenset({"DA", "DT"})
NET_VRS = FREE_TEXT_VRS | DATE_VRS | {"PN", "UI", "TM"}
DECIDED_BY = "safety-net"


@dataclass(frozen=True)
class KeepEntry:
    """One row of the safety net's keep-list."""

    keyword: str
    tag: int
    when: Option | None  # kept only when the policy selects this option (None: always)
    reason: str


@lru_cache(maxsize=1)
def keep_list() -> dict[int, KeepEntry]:
    """The curated keep-list (coded and technical attributes), by tag."""
    text = resources.files("medveil.data").joinpath("safety_net_keep.csv").read_text("utf-8")
    out: dict[int, KeepEntry] = {}
    for row in csv.DictReader(text.splitlines()):
        tag = tag_for_keyword(row["keyword"])
        if tag is None:
            raise ValueError(f"safety_net_keep.csv: unknown keyword {row['keyword']!r}")
        when = Option.from_name(row["when"]) if row["when"] else None
        out[tag] = KeepEntry(row["keyword"], tag, when, row["reason"])
    return out


def net_action(tag: int, vr: str, options: frozenset[Option]) -> tuple[str, str] | None:
    """(action, why) for a standard element no table row names, or None to leave it be."""
    if vr == "PN":
        return "X/Z", "person name not in Table E.1-1: emptied"
    if vr == "UI" or vr in FREE_TEXT_VRS:
        entry = keep_list().get(tag)
        if entry is not None and (entry.when is None or entry.when in options):
            return "K", f"keep-list: {entry.reason}"
        if vr == "UI":
            return "U", "UID not in Table E.1-1: replaced unless in pydicom's UID dictionary"
        if entry is not None and entry.when is not None:
            return "X/Z", f"free text not in Table E.1-1; kept only with {entry.when.name.lower()}"
        return "X/Z", "free text not in Table E.1-1 and not on the keep-list: emptied"
    shifted = Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
    full = Option.RETAIN_LONGITUDINAL_FULL_DATES in options
    if vr in DATE_VRS:
        if shifted:
            return "C", "date not in Table E.1-1: shifted with the patient's offset"
        if full:
            return "K", "date not in Table E.1-1: kept (retain_longitudinal_full_dates)"
        return "X/Z", "date not in Table E.1-1: emptied (no date option)"
    if vr == "TM":
        if shifted or full:
            return "K", "time not in Table E.1-1: kept (a whole-day shift leaves the time)"
        return "X/Z", "time not in Table E.1-1: emptied (no date option)"
    return None


def _entry_vr(vr: str) -> str:
    # "US or SS" and the like are binary numbers: never in the net.
    return vr if " " not in vr else ""


def net_rules(
    listed: set[int], options: frozenset[Option], exempt: set[int]
) -> Iterator[tuple[int, Rule]]:
    """Rules for every dictionary tag not in ``listed`` nor ``exempt`` (tag -> rule)."""
    keep = keep_list()
    for tag, (vr, _vm, _name, retired, keyword) in DicomDictionary.items():
        if vr not in NET_VRS:
            continue  # net_action leaves every other VR be ("US or SS" included)
        if tag in listed or tag in exempt or tag >> 16 in (0x0000, 0xFFFE):
            continue  # command fields and item delimiters are never in a file's data set
        found = net_action(tag, _entry_vr(vr), options)
        if found is None:
            continue
        action, why = found
        entry = keep.get(tag)
        # A device identifier kept because the policy retains device identity is that
        # option's decision (as the table's own rows under it), not the net's.
        decided = entry.when.name.lower() if action == "K" and entry and entry.when else DECIDED_BY
        yield (
            tag,
            Rule(
                f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                keyword,
                action,
                decided,
                not retired,
                (),
                why,
            ),
        )


def net_mask_rules(options: frozenset[Option]) -> Iterator[tuple[str, Rule]]:
    """Rules for the repeating groups of the dictionary (masks such as '(50xx,0022)')."""
    for key, (vr, _vm, _name, retired, keyword) in RepeatersDictionary.items():
        selector = f"({key[:4]},{key[4:]})".replace("X", "x")
        found = net_action(-1, _entry_vr(vr), options)
        if found is None:
            continue
        parse_tag_pattern(selector)  # every repeater key is a valid mask
        action, why = found
        yield selector, Rule(selector, keyword, action, DECIDED_BY, not retired, (), why)
