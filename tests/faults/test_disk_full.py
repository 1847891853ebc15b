"""A disk that fills up mid-run: exit 2, nothing partial, --resume completes to the same bytes.

The output goes to a small tmpfs mounted in a private mount namespace (`unshare -m`, as
root: CI runs as root). Where the kernel or the container refuses, the test is skipped
with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import cli, demo_input, reference

# Runs inside the private mount namespace: mount, fill, run, free, resume; report as JSON.
INNER = r"""
import hashlib, json, os, subprocess, sys
args = json.loads(sys.argv[1])
mnt, cmd = args["mnt"], args["cmd"]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk" % args["size_kb"], "tmpfs", mnt],
               check=True)
filler = os.path.join(mnt, "filler")
with open(filler, "wb") as f:
    f.write(b"\0" * args["fill"])
out = os.path.join(mnt, "out")

def tree():
    found = {}
    for root, _dirs, files in os.walk(out):
        if ".medveil" in root:
            continue
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                found[os.path.relpath(p, out)] = hashlib.sha256(f.read()).hexdigest()
    return found

cmd = [out if a == "@OUT@" else a for a in cmd]
first = subprocess.run(cmd, capture_output=True, text=True)
after_first = tree()
os.unlink(filler)
second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
summary = os.path.join(out, ".medveil", "summary.json")
print(json.dumps({
    "rc1": first.returncode, "err1": first.stderr, "tree1": after_first,
    "rc2": second.returncode, "err2": second.stderr, "tree2": tree(),
    "summary": json.load(open(summary)) if os.path.exists(summary) else None,
}))
"""


def _can_mount_tmpfs(tmp: Path) -> str:
    """'' when this process may mount a tmpfs in a private namespace, else why not."""
    if os.geteuid() != 0:
        return "needs root (CI runs as root) to mount a tmpfs"
    if not shutil.which("unshare"):
        return "no unshare(1)"
    probe = tmp / "probe"
    probe.mkdir()
    r = subprocess.run(
        ["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
        capture_output=True,
        text=True,
    )
    return "" if r.returncode == 0 else f"the kernel refused a tmpfs mount: {r.stderr.strip()}"


def test_disk_full_stops_with_exit_2_and_resume_completes(tmp_path: Path) -> None:
    why = _can_mount_tmpfs(tmp_path)
    if why:
        pytest.skip(why)
    src = demo_input(tmp_path / "in", copies=250)
    ref = reference(src, tmp_path / "ref")
    need = sum(p.stat().st_size for p in (tmp_path / "ref").rglob("*.dcm"))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # Room for the run records and about a third of the outputs.
    size = 8 << 20
    fill = size - (1 << 20) - need // 3
    cmd = cli(tmp_path, src, Path("@OUT@"), "--workers", "2")
    args = {"mnt": str(mnt), "cmd": cmd, "size_kb": size >> 10, "fill": fill}
    proc = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", INNER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # The first run stops, says why and how to go on, with exit 2 and no traceback.
    assert report["rc1"] == 2, report["err1"]
    # Which write meets the full disk first (an output, or the run records) decides the words.
    full = ("No space left on device", "cannot write the run records")
    assert any(w in report["err1"] for w in full) and "--resume" in report["err1"]
    assert "Traceback" not in report["err1"]
    # Nothing partial: every file under a final name is the reference's, byte for byte;
    # no temporaries are left.
    tree1 = report["tree1"]
    assert 0 < len(tree1) < len(ref)
    assert all(ref.get(rel) == digest for rel, digest in tree1.items()), "a partial file"
    # Space freed: --resume completes to the very bytes of an undisturbed run.
    assert report["rc2"] == 0, report["err2"]
    assert report["tree2"] == ref
    assert report["summary"]["files_in"] == 265 and report["summary"]["failed"] == 0
