"""The tables a run builds at start-up (the compiled policy, Table E.1-1's rows, the
safety net, the scanner's sequence tags) equal what the plain definitions give.

The builders take shortcuts for start-up time (csv.reader by index, VR pre-filters,
inlined mask tests, a dictionary scan without per-tag lookups); each is checked here
against the straightforward computation it replaces, on every bundled preset and on
policies that exercise each option, the safety net, keep-lists, pseudonyms and masks.
"""

from __future__ import annotations

import csv
import itertools
import re
from importlib import resources

import numpy as np
import pytest
from medveil.engine.decide import (
    DATE_PATTERNS,
    PHONE_PATTERN,
    Identity,
    _has_cjk,
    build_cleaner,
    dates_pattern,
    dictionary_vr,
    text_patterns,
)
from medveil.engine.raw import _SQ_TAGS, _sequence_tags
from medveil.policy import net, schema
from medveil.policy.presets import PRESETS, load_policy
from medveil.policy.schema import SUPPLEMENT, BaseTables, CompiledPolicy, MaskRule, Policy
from medveil.policy.standard import (
    Option,
    Rule,
    TableRow,
    option_action,
    parse_tag_pattern,
    table_rows,
)
from pydicom import datadict
from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import tag_for_keyword


def _plain_rows() -> tuple[TableRow, ...]:
    """Table E.1-1 read with csv.DictReader, column by name."""
    text = resources.files("medveil.data").joinpath("ps315_e1_1.csv").read_text("utf-8")
    columns = [o.column for o in Option if o.column]
    return tuple(
        TableRow(
            tag_text=row["tag"],
            keyword=row["keyword"],
            name=row["name"],
            retired=row["retired"] == "Y",
            in_std_comp_iod=row["in_std_comp_iod"] == "Y",
            basic=row["basic_profile"],
            cells={c: row[c] for c in columns if row[c]},
        )
        for row in csv.DictReader(text.splitlines())
    )


def _plain_option_action(row: TableRow, options: list[Option]) -> tuple[str, str]:
    """option_action without its shortcuts: every option asked, its column read anew."""
    action, decided = row.basic, "basic"
    for opt in options:
        cell = row.cells.get(opt.column) if opt.column else None
        if not cell:
            continue
        if decided != "basic" and action == "C" and cell == "K":
            continue
        action, decided = cell, opt.name.lower()
    return action, decided


def _plain_part(s: str) -> tuple[int, int]:
    return (
        int(s.lower().replace("x", "0"), 16),
        int("".join("0" if ch in "xX" else "f" for ch in s), 16),
    )


def _option_sets() -> list[list[Option]]:
    """No option, each alone, growing prefixes, and every pair (in table order)."""
    every = list(Option)
    sets = [[]] + [[o] for o in every] + [every[:k] for k in range(2, len(every) + 1)]
    sets += [list(pair) for pair in itertools.combinations(every, 2)]
    return sets


def test_table_rows_are_the_csv_read_by_column_name() -> None:
    assert table_rows() == _plain_rows()
    assert len(table_rows()) > 600


@pytest.mark.parametrize("options", _option_sets(), ids=lambda s: "+".join(o.name for o in s))
def test_option_action_is_the_plain_rule(options: list[Option]) -> None:
    for row in table_rows():
        assert option_action(row, options) == _plain_option_action(row, options), row.tag_text


def test_tag_patterns_parse_as_before() -> None:
    texts = [r.tag_text for r in table_rows() if not r.tag_text.startswith("(gggg")]
    texts += [
        "(60xx,3000)",
        "(50xx,xxxx)",
        "(0019,10Ab)",
        "(0009,xx10)",
        "(7FE0,0010)",
        "(xxxx,xxxx)",
    ]
    for text in texts:
        g, e = text[1:5], text[6:10]
        assert parse_tag_pattern(text) == (*_plain_part(g), *_plain_part(e)), text


@pytest.mark.parametrize("options", _option_sets(), ids=lambda s: "+".join(o.name for o in s))
def test_net_rules_are_net_action_on_every_dictionary_tag(options: list[Option]) -> None:
    chosen = frozenset(options)
    listed = {t for t in DicomDictionary if t % 7 == 0}  # some tags named by the table
    exempt = set(itertools.islice(net.keep_list(), 5))
    expected = []
    for tag, (vr, _vm, _name, retired, keyword) in DicomDictionary.items():
        if tag in listed or tag in exempt or tag >> 16 in (0x0000, 0xFFFE):
            continue
        found = net.net_action(tag, vr if " " not in vr else "", chosen)
        if found is not None:
            expected.append((tag, found[0], found[1], keyword, not retired))
    got = [
        (tag, r.action, r.why, r.keyword, r.in_std_comp_iod)
        for tag, r in net.net_rules(listed, chosen, exempt)
    ]
    assert got == expected
    assert got  # the net names elements under every option set
    # A compile takes the net for no exemption and leaves the policy's keep-list out.
    everyone = list(net.net_rules(listed, chosen, set()))
    assert [(t, r) for t, r in everyone if t not in exempt] == list(
        net.net_rules(listed, chosen, exempt)
    )


def _plain_base(options: tuple[Option, ...], with_net: bool) -> BaseTables:
    """base_tables the plain way: every option asked per row, masks tested by matches()."""
    by_tag: dict[int, Rule] = {}
    masks: list[MaskRule] = []
    private_default, private_rule = "X", Rule("(gggg,eeee)", "", "X", "basic", False)
    for row in _plain_rows():
        action, decided = _plain_option_action(row, list(options))
        rule = Rule(row.tag_text, row.keyword, action, decided, row.in_std_comp_iod)
        if row.tag_text.startswith("(gggg"):
            private_default, private_rule = action, rule
            continue
        g, gm, e, em = parse_tag_pattern(row.tag_text)
        if gm == 0xFFFF and em == 0xFFFF:
            by_tag[(g << 16) | e] = rule
        else:
            masks.append(MaskRule(g, gm, e, em, rule))
    for name, action in SUPPLEMENT.items():
        tag = tag_for_keyword(name)
        if tag is not None and tag not in by_tag:
            by_tag[tag] = Rule(f"({tag >> 16:04X},{tag & 0xFFFF:04X})", name, action,
                               "medveil-supplement", False)  # fmt: skip
    net_list: list[tuple[int, Rule]] = []
    net_masks: list[MaskRule] = []
    if with_net:
        listed = set(by_tag)
        listed.update(t for t in DicomDictionary if any(m.matches(t) for m in masks))
        net_list = list(net.net_rules(listed, frozenset(options), set()))
        for selector, rule in net.net_mask_rules(frozenset(options)):
            g, gm, e, em = parse_tag_pattern(selector)
            if g & 0xFF00 == 0x6000 and gm == 0xFF00:
                continue
            if any(m.matches((g << 16) | e) for m in masks):
                continue
            net_masks.append(MaskRule(g, gm, e, em, rule))
    return BaseTables(
        by_tag, tuple(masks), private_default, private_rule, tuple(net_list), tuple(net_masks)
    )


def _plain_compile(policy: Policy) -> CompiledPolicy:
    """CompiledPolicy built on the plain base tables (no cache, no shortcut)."""
    saved = schema.base_tables
    schema.base_tables = _plain_base  # type: ignore[assignment]
    try:
        return CompiledPolicy(policy)
    finally:
        schema.base_tables = saved


def _state(c: CompiledPolicy) -> tuple[object, ...]:
    """Everything a compiled policy decides with, in its own order."""
    return (
        list(c.by_tag.items()),
        c.masks,
        c.private_default,
        c.private_rule,
        sorted(c.net_tags),
        c.keep_unknown,
        c.keeps_overlays,
        sorted(c.allow),
        sorted(c.private_overrides.items()),
        sorted(c.lookups),
        (c.retain_safe_private, c.shift_dates, c.full_dates),
    )


def _policies() -> dict[str, Policy]:
    found = {name: load_policy(name) for name in PRESETS}
    for i, options in enumerate(_option_sets()[:14]):
        names = [o.name.lower() for o in options]
        if "retain_longitudinal_modified_dates" in names:
            names = [n for n in names if n != "retain_longitudinal_full_dates"]
        for unknown in ("keep", "remove"):
            listed = ", ".join(f'"{n}"' for n in names)
            text = f'[profile]\noptions = [{listed}]\nunknown_elements = "{unknown}"\n'
            if i % 3 == 0:
                text += 'keep = ["StationName", "SeriesDescription", "DocumentTitle"]\n'
            if i % 4 == 1:
                text += 'pseudonymize = ["PatientID", "AccessionNumber"]\n'
            if i % 5 == 2:
                text += (
                    '[elements]\n"(60xx,3000)" = "K"\n"ACME:(0009,xx10)" = "X"\n'
                    '"(0008,0080)" = "K"\n"(50xx,2000)" = "X"\nStationName = "X"\n'
                )
            found[f"{'+'.join(names) or 'none'}-{unknown}"] = Policy.from_toml(text)
    return found


@pytest.mark.parametrize("name", sorted(_policies()))
def test_compiled_policy_is_the_plain_compilation(name: str) -> None:
    policy = _policies()[name]
    compiled = CompiledPolicy(policy)
    assert _state(compiled) == _state(_plain_compile(policy))
    assert all(isinstance(r, Rule) for r in compiled.by_tag.values())


def test_every_preset_compiles_with_its_safety_net() -> None:
    # The comparison above must not pass on empty tables.
    for name in PRESETS:
        compiled = CompiledPolicy(load_policy(name))
        assert len(compiled.by_tag) > 600, name
        assert bool(compiled.net_tags) == compiled.keep_unknown, name


def test_sequence_tags_are_the_dictionary_vr_of_each_tag() -> None:
    tags = {t for t in datadict.DicomDictionary if dictionary_vr(t) == "SQ"}  # type: ignore[attr-defined]
    for mask, entry in datadict.RepeatersDictionary.items():  # type: ignore[attr-defined]
        if entry[0].split(" or ")[0] != "SQ":
            continue
        for digits in itertools.product("0123456789abcdef", repeat=mask.count("x")):
            text = mask
            for d in digits:
                text = text.replace("x", d, 1)
            if dictionary_vr(int(text, 16)) == "SQ":
                tags.add(int(text, 16))
    expected = np.array(sorted(tags), dtype=np.uint32)
    assert np.array_equal(_sequence_tags(), expected)
    assert np.array_equal(_SQ_TAGS, expected)
    assert 0x00081140 in tags and 0x50002600 in tags  # ReferencedImageSequence; a repeater


def test_cjk_test_is_the_character_class_it_replaces() -> None:
    # The ranges the cleaner's CJK test used as a regex class, checked on every BMP
    # character and on a few beyond it.
    old = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")
    for code in (*range(0x10000), 0x1F600, 0x20000, 0x2F800, 0x10FFFF):
        c = chr(code)
        assert _has_cjk(c) == bool(old.search(c)), hex(code)
    assert _has_cjk("Lee 李") and not _has_cjk("Müller-Lüdenscheidt")


def test_shared_text_patterns_are_the_ones_each_cleaner_compiled() -> None:
    clean = ("MRN", r"\bID\d+")
    widened = [f"(?:{p})(?:[-/#.:]*[^\\W_]+)*" for p in clean] + [PHONE_PATTERN]
    assert text_patterns(clean).pattern == "|".join(widened)
    assert text_patterns(()).pattern == PHONE_PATTERN
    assert text_patterns(clean).flags & re.IGNORECASE
    assert dates_pattern().pattern == "|".join(DATE_PATTERNS)
    assert dates_pattern().flags & re.IGNORECASE
    cleaner = build_cleaner(Identity((), ()), clean, "", True)
    assert cleaner.patterns is text_patterns(clean) and cleaner.dates is dates_pattern()
    assert build_cleaner(Identity((), ()), clean, "", False).dates is None
