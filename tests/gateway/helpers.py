"""Helpers of the gateway tests: a captured log, free ports, the demo policy, PHI checks."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

from medveil.net.gateway import JsonLog
from medveil.policy.schema import Policy
from medveil.run.demo import with_demo_rules, write_copies

SECRET = bytes(range(32))

write_burst = write_copies  # the name the load tests use


class CapturedLog(JsonLog):
    """A JsonLog kept in memory, with helpers to read and wait for events."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__(self.buffer)

    @property
    def text(self) -> str:
        """Everything logged so far."""
        with self._lock:
            return self.buffer.getvalue()

    def events(self, name: str | None = None) -> list[dict[str, object]]:
        """Parsed log lines, optionally only those of one event."""
        out = [json.loads(line) for line in self.text.splitlines()]
        return [e for e in out if name is None or e["event"] == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict]:
        """Wait until at least count events of this name were logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {count} {name!r} events within {timeout} s: {self.text[-2000:]}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_policy() -> Policy:
    """The default policy plus the demo ultrasound's pixel rule."""
    return with_demo_rules(Policy.default())


def tree(root: Path) -> dict[str, bytes]:
    """Every finished .dcm file under root by relative path (temporaries excluded)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.dcm"))
        if not p.name.startswith(".") and ".rejected" not in p.parts
    }


def phi_strings(files: list[Path]) -> set[str]:
    """Identifying values planted in the demo files (names, IDs, original UIDs)."""
    import pydicom

    out: set[str] = set()
    for f in files:
        ds = pydicom.dcmread(f)
        for kw in ("PatientName", "PatientID", "AccessionNumber", "SOPInstanceUID"):
            out.add(str(ds.get(kw)))
        out.add(str(ds.StudyInstanceUID))
    out.add("Fakename")
    out.add("Placeholder")
    return out


def assert_no_phi(text: str, files: list[Path]) -> None:
    """Fail when any planted identifying value appears in text."""
    for value in phi_strings(files):
        assert value not in text, "an identifying value reached the gateway log"
