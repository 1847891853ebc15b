"""Shared pieces of the fault tests: a demo input, its reference output, the CLI command."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive
from medveil.run.demo import demo_rule_file, write_copies, write_demo_archive

SECRET = bytes(range(32))
POLICY = Policy(pixel_rule_files=(str(demo_rule_file()),))


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file (run records excluded)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".medveil" not in p.parts
    }


def demo_input(folder: Path, copies: int) -> Path:
    """The demo archive (15 files: 14 DICOM, 1 text) and `copies` distinct CT instances."""
    files = write_demo_archive(folder / "demo")
    ct = next(p for p in files if p.suffix == ".dcm" and "ct" in p.parts[-2].lower())
    write_copies(folder / "copies", ct, copies)
    return folder


def reference(src: Path, out: Path) -> dict[str, str]:
    """The output tree of an undisturbed run of src."""
    deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1)
    return tree(out)


def cli(tmp: Path, src: Path, out: Path, *extra: str) -> list[str]:
    """The `medveil deid` command line for src -> out with the test policy and secret."""
    secret_file = tmp / "secret"
    if not secret_file.exists():
        secret_file.write_text(SECRET.hex())
        secret_file.chmod(0o600)
    policy_file = tmp / "policy.toml"
    policy_file.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    return [
        sys.executable,
        "-m",
        "medveil",
        "deid",
        str(src),
        str(out),
        "--quiet",
        "--policy",
        str(policy_file),
        "--secret-file",
        str(secret_file),
        *extra,
    ]


def wait_until(check: Callable[[], bool], timeout: float = 60.0, step: float = 0.01) -> bool:
    """Poll check until it is true or timeout seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


def children(pid: int) -> list[int]:
    """The pids of pid's direct child processes (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    """Whether pid is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
