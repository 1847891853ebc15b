"""Converters from other de-identification tools' rule files into medveil policies.

:mod:`.ctp` reads RSNA CTP DicomAnonymizer scripts, :mod:`.deid` reads pydicom/deid
recipes. Both build a :class:`PolicyDraft`: the policy as TOML-ready tables, plus a note
for every rule that has no exact equivalent, so a reviewer sees what changed in meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medveil.policy.presets.toml_write import toml_key, toml_value
from medveil.policy.schema import Policy
from medveil.policy.standard import Option


@dataclass(frozen=True)
class Note:
    """A source rule that medveil can only approximate (or not carry at all)."""

    where: str  # "file:line"
    rule: str  # the source rule, as written (scripts and recipes hold no patient data)
    medveil: str  # what the converted policy does instead
    why: str  # how that differs from the source tool

    def text(self) -> str:
        """One console line for this note."""
        return f"{self.where}: {self.rule}\n    -> {self.medveil}: {self.why}"


@dataclass
class PolicyDraft:
    """A converted policy before it is written: tables, notes and conformance differences."""

    source: str
    options: list[Option] = field(default_factory=list)
    unknown_elements: str = "keep"
    keep: list[str] = field(default_factory=list)
    pseudonymize: list[str] = field(default_factory=list)
    shift_days: int | None = None
    elements: dict[str, Any] = field(default_factory=dict)
    filters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    claimed: tuple[Option, ...] | None = None  # PS3.15 options the source says it applies

    def note(self, where: str, rule: str, medveil: str, why: str) -> None:
        """Record a rule without an exact equivalent."""
        self.notes.append(Note(where, rule, medveil, why))

    def to_toml(self) -> str:
        """The draft as a policy TOML file (comments first, then the tables)."""
        out = [f"# {line}" if line else "#" for line in self.header]
        if out:
            out.append("")
        out.append("[profile]")
        out.append(f"options = {toml_value([o.name.lower() for o in self.options])}")
        out.append(f"unknown_elements = {toml_value(self.unknown_elements)}")
        out.append(f"pseudonymize = {toml_value(self.pseudonymize)}")
        if self.keep:
            out.append(f"keep = {_list_lines(self.keep)}")
        if self.shift_days is not None:
            out += ["", "[dates]", f"shift_days = {self.shift_days}"]
        if self.elements:
            out += ["", "[elements]"]
            for selector, spec in self.elements.items():
                out.append(f"{toml_key(selector)} = {toml_value(spec)}")
        if self.filters:
            out += [
                "",
                "# [filter]: instances an include rule does not match, or an exclude rule",
                "# matches, are not processed (counted as excluded); graylist is a note.",
            ]
            for kind, entries in self.filters.items():
                for entry in entries:
                    out += ["", f"[[filter.{kind}]]"]
                    for key, value in entry.items():
                        if isinstance(value, list) and len(value) > 1:
                            rows = "".join(f"    {toml_value(v)},\n" for v in value)
                            out.append(f"{toml_key(key)} = [\n{rows}]")
                        else:
                            out.append(f"{toml_key(key)} = {toml_value(value)}")
        return "\n".join(out) + "\n"

    def policy(self) -> Policy:
        """Parse the written TOML back with medveil's validator (raises PolicyError)."""
        from medveil.policy.presets import policy_from_text

        return policy_from_text(self.to_toml(), source=self.source)

    def report(self) -> str:
        """Console text: every rule without an exact equivalent, then the differences."""
        lines = []
        if self.notes:
            lines.append(f"{len(self.notes)} rule(s) without an exact equivalent:")
            groups: dict[tuple[str, str], list[Note]] = {}
            for n in self.notes:
                groups.setdefault((n.medveil, n.why), []).append(n)
            for (medveil, why), notes in groups.items():
                lines.append(f"- medveil: {medveil} -- {why}")
                lines += [f"    {n.where}: {n.rule}" for n in notes]
        else:
            lines.append("every rule has an exact equivalent")
        if self.claimed is not None:
            names = ", ".join(o.name.lower() for o in self.claimed) or "none"
            lines.append(
                f"the source claims DICOM PS3.15 conformance (Basic Profile; options: {names}); "
                f"{len(self.differences)} rule(s) differ from medveil's profile for those options:"
            )
            lines += [f"  {d}" for d in self.differences]
        return "\n".join(lines)


def _list_lines(values: list[str]) -> str:
    """A long list, a few values per line, so the file stays readable."""
    if len(values) <= 6:
        return toml_value(values)
    rows = [values[i : i + 4] for i in range(0, len(values), 4)]
    return "[\n" + "".join("    " + ", ".join(toml_value(v) for v in r) + ",\n" for r in rows) + "]"
