"""Findings and the verification report: counts per category, JSON and a table, no values.

A finding names the output file, the element path (``(0008,1111)[0]/(0008,1155)``) or byte
offset, how it was found, and the value only as a keyed hash plus its first character and
length, so the report itself can be shared without re-leaking what it found.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Report categories, in display order.
CATEGORIES: tuple[str, ...] = (
    "names",
    "ids",
    "dates",
    "uids",
    "free_text",
    "private",
    "meta",
    "hidden_bits",
)


@dataclass(frozen=True)
class Finding:
    """One surviving identifier (or hidden pixel bits) in one output file."""

    file: str
    category: str
    path: str  # element path, or '@OFFSET' / 'preamble@OFFSET' for unmapped bytes
    how: str  # 'element', 'bytes:utf-8', 'bytes:latin-1', 'bytes:utf-16-le', 'pixels'
    kind: str = ""  # kind of the learned value (names, ids, ...); '' for hidden bits
    value_hash: str = ""  # keyed BLAKE2b of the normalised value, never the value
    first: str = ""  # first character of the value if ASCII, else '*'
    length: int = 0  # length of the normalised value
    sources: tuple[str, ...] = ()  # originals the value was learned from (at most 3)
    detail: str = ""

    def hint(self) -> str:
        """Non-revealing label of the value: first character and length."""
        return f"{self.first}… ({self.length})" if self.length else ""


@dataclass
class VerifyReport:
    """Result of :func:`medveil.verify.verify_archive`."""

    originals: int = 0
    outputs: int = 0
    values: int = 0
    dates: int = 0
    skipped_values: int = 0
    strict: bool = False
    engine: str = ""
    findings: list[Finding] = field(default_factory=list)
    allowed: list[Finding] = field(default_factory=list)  # in elements the policy keeps
    unreadable_originals: list[tuple[str, str]] = field(default_factory=list)
    unreadable_outputs: list[tuple[str, str]] = field(default_factory=list)
    # Originals whose structure is damaged: what they hide cannot be learned for sure.
    damaged_originals: list[tuple[str, str]] = field(default_factory=list)
    not_dicom: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of findings per category (every category present, zeros included)."""
        out = dict.fromkeys(CATEGORIES, 0)
        for f in self.findings:
            out[f.category] += 1
        return out

    @property
    def clean(self) -> bool:
        """True when nothing was found, every output could be read, and originals were read.

        With no readable original there is nothing to search for: that proves nothing. A
        structurally damaged original cannot be verified (a tolerant reader may not see
        what its overrun lengths hide), so it makes the report not clean either.
        """
        return (
            not self.findings
            and not self.unreadable_outputs
            and not self.damaged_originals
            and self.originals > 0
        )

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 otherwise (the CLI's exit status)."""
        return 0 if self.clean else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the whole report."""
        return {
            "clean": self.clean,
            "strict": self.strict,
            "engine": self.engine,
            "originals": self.originals,
            "outputs": self.outputs,
            "values_searched": self.values,
            "dates_searched": self.dates,
            "values_not_counted": self.skipped_values,
            "counts": self.counts(),
            # Equal hashes mean equal values within this report; the key is random per run.
            "value_hash": "keyed BLAKE2b-64 of the normalised value (key random per run "
            "unless the API caller passed hash_key)",
            "findings": [_finding_dict(f) for f in self.findings],
            "allowed": [_finding_dict(f) for f in self.allowed],
            "unreadable_originals": [{"file": p, "error": e} for p, e in self.unreadable_originals],
            "unreadable_outputs": [{"file": p, "error": e} for p, e in self.unreadable_outputs],
            "damaged_originals": [{"file": p, "error": e} for p, e in self.damaged_originals],
            "not_dicom_outputs": self.not_dicom,
            "incompletely_parsed_outputs": self.incomplete,
        }

    def to_json(self) -> str:
        """The report as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def table(self, max_rows: int = 200) -> str:
        """Human-readable summary: counts per category, then one line per finding."""
        lines = [
            f"medveil verify: {self.originals} originals, {self.outputs} outputs, "
            f"{self.values} values + {self.dates} dates searched "
            f"({self.skipped_values} not counted{', strict' if self.strict else ''}; "
            f"engine {self.engine})",
            "",
            f"{'category':<12} {'findings':>8}",
        ]
        lines += [f"{c:<12} {n:>8}" for c, n in self.counts().items()]
        if self.findings:
            lines += ["", f"{'category':<12} {'how':<16} {'value':<12} file  path"]
            for f in self.findings[:max_rows]:
                extra = f"  ({f.detail})" if f.detail else ""
                lines.append(
                    f"{f.category:<12} {f.how:<16} {f.hint() or '-':<12} {f.file}  {f.path}{extra}"
                )
            if len(self.findings) > max_rows:
                lines.append(f"... {len(self.findings) - max_rows} more (see --report)")
        if self.allowed:
            lines.append(
                f"allowed (kept on purpose by the policy, not counted): {len(self.allowed)}"
            )
            for f in self.allowed[:max_rows]:
                lines.append(f"  allowed {f.category:<12} {f.hint():<12} {f.file}  {f.path}")
        for title, items in (
            ("unreadable output", self.unreadable_outputs),
            ("unreadable original", self.unreadable_originals),
            ("cannot verify: damaged original", self.damaged_originals),
        ):
            lines += [f"{title}: {p} ({e})" for p, e in items]
        lines += [f"not DICOM (byte search only): {p}" for p in self.not_dicom]
        lines += [f"partly parsed (byte search covers the rest): {p}" for p in self.incomplete]
        if self.originals == 0:
            lines.append("no original could be read: there was nothing to search for")
        if self.clean:
            lines += ["", "CLEAN"]
        elif self.damaged_originals and not self.findings:
            lines += ["", "CANNOT VERIFY: an original is structurally damaged"]
        elif self.findings or self.unreadable_outputs:
            lines += ["", "FOUND: identifying values survived, or outputs could not be read"]
        else:
            lines += ["", "NOT VERIFIED"]
        return "\n".join(lines)


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(f).items()}
