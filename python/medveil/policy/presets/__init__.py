"""Named policies (``--policy basic|research|tcia|safe-harbor``) and the loader every
command uses for ``--policy NAME_OR_FILE``.

The presets are TOML files next to this module, validated like any user file (the
schema validates ``[filter]`` and ``[lookup]`` tables with the rest).
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from medveil.errors import PolicyError
from medveil.policy.presets.toml_write import toml_key, toml_value
from medveil.policy.schema import FILTER_KINDS, FILTER_OPS, Policy

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
    "safe-harbor": "HIPAA Safe Harbor: no retain option, no pseudonyms, allow-list mode; "
    "classes that can show a face or a voice excluded",
}

# Re-exported: the policy reference and the importers name them from here.
__all__ = [
    "FILTER_KINDS",
    "FILTER_OPS",
    "PRESETS",
    "filters_of",
    "load_policy",
    "policy_from_text",
    "policy_to_toml",
    "preset_text",
]


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
    """Validate policy TOML (its [filter] and [lookup] tables too) into a Policy."""
    return Policy.from_toml(text, source=source)


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
    if policy.lookups:
        lines += ["", "[lookup]", f"on_missing = {toml_value(policy.lookups[0].on_missing)}"]
        lines += [f"{toml_key(lk.keyword)} = {toml_value(lk.path)}" for lk in policy.lookups]
    if filters is None:
        filters = {}
        for rule in policy.filters:
            entry: dict[str, Any] = {"label": rule.label} if rule.label else {}
            entry["tests"] = [
                {"field": t.field, "op": t.op, "value": t.value, "join": t.join} for t in rule.tests
            ]
            if rule.coordinates:
                entry["coordinates"] = list(rule.coordinates)
            filters.setdefault(rule.kind, []).append(entry)
    for kind, entries in filters.items():
        for entry in entries:
            lines += ["", f"[[filter.{kind}]]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"
