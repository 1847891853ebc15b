"""Named policies (``--policy basic|research|tcia|safe-harbor``) and the loader every
command uses for ``--policy NAME_OR_FILE``.

The presets are TOML files next to this module, validated like any user file. A policy
file may hold a ``[filter]`` table (written by ``medveil policy import-deid``); until the
schema knows that table it is checked here and set aside, so the rest still validates.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_dict

from medveil.errors import PolicyError
from medveil.policy.presets.toml_write import toml_key, toml_value
from medveil.policy.schema import Policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has the same parser as the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

# Preset name -> one line for `medveil policy show` listings and the policy reference.
PRESETS: dict[str, str] = {
    "basic": "DICOM PS3.15 Basic Profile alone (no options; identifiers emptied)",
    "research": "the built-in default: Basic + longitudinal dates, patient characteristics, "
    "device identity, clean descriptors and pixels; keyed pseudonyms",
    "tcia": "The Cancer Imaging Archive's practice: the options its CTP script declares, "
    "safe private attributes kept",
    "safe-harbor": "HIPAA Safe Harbor: no retain option, no pseudonyms, allow-list mode",
}

FILTER_KINDS = ("include", "exclude", "graylist")
FILTER_OPS = ("contains", "notcontains", "equals", "notequals", "missing", "present", "empty")
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"'-]+)\s*\]\]?\s*(#.*)?$")


def preset_text(name: str) -> str:
    """The TOML text of a named preset."""
    if name not in PRESETS:
        raise PolicyError(f"no preset named {name!r} (presets: {', '.join(PRESETS)})")
    return resources.files(__name__).joinpath(f"{name}.toml").read_text("utf-8")


def load_policy(name_or_path: str | os.PathLike[str] | None) -> Policy:
    """A preset by name, a policy TOML file by path, or the built-in default for None."""
    if name_or_path is None:
        return Policy.default()
    text_name = os.fspath(name_or_path)
    if text_name in PRESETS and not Path(text_name).is_file():
        return policy_from_text(preset_text(text_name), source=f"preset:{text_name}")
    path = Path(text_name)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: no such policy file, and not a preset ({', '.join(PRESETS)})"
        ) from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from None
    return policy_from_text(text, source=str(path))


def policy_from_text(text: str, source: str = "<string>") -> Policy:
    """Validate policy TOML; a [filter] table the schema does not know is checked here."""
    try:
        return Policy.from_toml(text, source=source)
    except PolicyError as exc:
        if "unknown section [filter]" not in str(exc):
            raise
    data = tomllib.loads(text)  # parsed fine above, or the error would not be this one
    check_filters(data.get("filter"), text, source)
    return Policy.from_toml(_without_table(text, "filter"), source=source)


def check_filters(table: Any, text: str, source: str) -> None:
    """Check a [filter] table: include/exclude/graylist lists of labelled tests."""

    def fail(needle: str, problem: str) -> PolicyError:
        line = next((i for i, s in enumerate(text.splitlines(), 1) if needle in s), 0)
        return PolicyError(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")

    if not isinstance(table, dict):
        raise fail("filter", "[filter] must be a table")
    for kind, entries in table.items():
        if kind not in FILTER_KINDS:
            raise fail(kind, f"unknown filter list {kind!r} (known: {', '.join(FILTER_KINDS)})")
        if not isinstance(entries, list):
            raise fail(kind, f"filter.{kind} must be a list of tables ([[filter.{kind}]])")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("tests"), list):
                raise fail(kind, f"each [[filter.{kind}]] needs tests = [...]")
            extra = set(entry) - {"label", "tests", "coordinates"}
            if extra:
                raise fail(kind, f"filter.{kind} takes no {', '.join(sorted(extra))}")
            for test in entry["tests"]:
                if not isinstance(test, dict):
                    raise fail(kind, "each test is a table { field, op, value }")
                fld, op = test.get("field"), test.get("op")
                if op not in FILTER_OPS:
                    raise fail(
                        str(op), f"unknown filter op {op!r} (known: {', '.join(FILTER_OPS)})"
                    )
                if not isinstance(fld, str) or not (
                    fld in keyword_dict
                    or re.fullmatch(r"\(?[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}\)?", fld)
                ):
                    raise fail(str(fld), f"unknown filter field {fld!r}: use a keyword or a tag")
                if test.get("join", "and") not in ("and", "or"):
                    raise fail("join", "join must be 'and' or 'or'")
                if op not in ("missing", "present", "empty") and "value" not in test:
                    raise fail(str(fld), f"filter op {op!r} on {fld} needs a value")


def _without_table(text: str, name: str) -> str:
    """Blank the lines of one table (and its sub-tables), keeping line numbers."""
    out, inside = [], False
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            head = m.group(1).strip("\"'")
            inside = head == name or head.startswith(name + ".")
        out.append("" if inside else line)
    return "\n".join(out) + "\n"


def filters_of(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The [filter] table of a policy file or preset ({} when it has none)."""
    text_name = os.fspath(name_or_path)
    if text_name in PRESETS and not Path(text_name).is_file():
        text = preset_text(text_name)
    else:
        text = Path(text_name).read_text("utf-8")
    table = tomllib.loads(text).get("filter", {})
    return table if isinstance(table, dict) else {}


def policy_to_toml(policy: Policy, filters: dict[str, Any] | None = None) -> str:
    """Every setting of a policy, defaults included, as TOML that loads to the same policy."""
    lines = [f"# resolved policy: {policy.source}", "", "[profile]"]
    lines.append(f"options = {toml_value([o.name.lower() for o in policy.options])}")
    lines.append(f"unknown_elements = {toml_value(policy.unknown_elements)}")
    lines.append(f"combined_codes = {toml_value(policy.combined_codes)}")
    lines.append(f"keep = {toml_value(list(policy.keep))}")
    lines.append(f"pseudonymize = {toml_value(list(policy.pseudonymized))}")
    if policy.secret_file:
        lines += ["", "[secret]", f"file = {toml_value(policy.secret_file)}"]
    lines += ["", "[dates]", f"shift_days = {policy.shift_days}"]
    lines += [
        "",
        "[pseudonyms]",
        f"prefix = {toml_value(policy.pseudonym_prefix)}",
        f"length = {policy.pseudonym_length}",
    ]
    lines += ["", "[clean_descriptors]", "patterns = ["]
    lines += [f"    {toml_value(p)}," for p in policy.clean_patterns]
    lines += ["]", f"replacement = {toml_value(policy.clean_replacement)}"]
    lines += [
        "",
        "[pixels]",
        f"rules = {toml_value(list(policy.pixel_rule_files))}",
        f"allow_unmatched_burned_in = {toml_value(policy.allow_unmatched_burned_in)}",
        f"pixel_text = {toml_value(policy.pixel_text)}",
        f"mask = {toml_value(policy.pixel_mask)}",
    ]
    if policy.overrides:
        lines += ["", "[elements]"]
        for ov in policy.overrides:
            spec: Any = {"action": ov.action, **dict(ov.params)} if ov.params else ov.action
            lines.append(f"{toml_key(ov.selector)} = {toml_value(spec)}")
    for kind, entries in (filters or {}).items():
        for entry in entries:
            lines += ["", f"[[filter.{kind}]]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"
