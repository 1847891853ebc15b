"""Soak: many small files through `medveil deid` with faults injected; every input accounted.

Run (as root for the full disk: the output goes to a tmpfs in a private mount namespace):

    python bench/soak.py --files 100000 --workers 2          # the full soak
    python bench/soak.py --files 5000 --kill-every 3         # a scaled-down one

Faults: 1% of the inputs are corrupt (cut to a third: quarantined), a worker is killed
with SIGKILL every --kill-every seconds (its files are retried), and the disk fills up once
(a filler file leaves room for about half the outputs; the run stops with exit 2, the
filler is removed, --resume finishes). The check: the inputs table holds every input once,
the quarantined inputs are exactly the corrupt ones, every catalog row's file exists with
its SHA-256, no temporary is left, and the output equals an undisturbed run's (--verify,
on a sample of 2,000 inputs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from medveil.policy.keys import Keyed
from medveil.run.demo import demo_rule_file, write_demo_archive

SECRET = bytes(range(32))
PER_FOLDER = 1000


def make_input(root: Path, files: int, corrupt_every: int) -> tuple[list[str], list[str]]:
    """`files` distinct CT instances in folders of 1,000; every corrupt_every-th one cut.

    Returns (all input names, corrupt input names), relative to root.
    """
    import pydicom

    demo = Path(tempfile.mkdtemp(prefix="soak-demo-"))
    ct = next(p for p in write_demo_archive(demo) if p.parent.name == "ct")
    ds = pydicom.dcmread(ct)
    shutil.rmtree(demo)
    names, corrupt = [], []
    for n in range(files):
        uid = f"{ds.SeriesInstanceUID}.9{n}"  # no demo instance uses .9<n>
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = n + 1
        name = f"f{n // PER_FOLDER:04d}/i{n:06d}.dcm"
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(p, enforce_file_format=True)
        names.append(name)
        if n % corrupt_every == corrupt_every - 1:
            data = p.read_bytes()
            p.write_bytes(data[: len(data) // 3])
            corrupt.append(name)
    return names, corrupt


def command(src: Path, out: Path, workers: int, secret: Path, policy: Path) -> list[str]:
    """The `medveil deid` command line of the soak."""
    return [
        sys.executable,
        "-m",
        "medveil",
        "deid",
        str(src),
        str(out),
        "--quiet",
        "--workers",
        str(workers),
        "--secret-file",
        str(secret),
        "--policy",
        str(policy),
    ]


def children(pid: int) -> list[int]:
    """The pids of pid's child processes (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def run_with_kills(cmd: list[str], kill_every: float, rng: random.Random) -> dict[str, object]:
    """Run cmd, SIGKILL one of its workers every kill_every seconds; rc, kills, stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = 0
    done = threading.Event()

    def killer() -> None:
        nonlocal kills
        while not done.wait(kill_every):
            workers = children(proc.pid)
            if workers and proc.poll() is None:
                try:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass

    t = threading.Thread(target=killer, daemon=True)
    if kill_every > 0:
        t.start()
    t0 = time.perf_counter()
    stdout, stderr = proc.communicate()
    done.set()
    return {
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "kills": kills,
        "stdout": stdout.strip(),
        "stderr": stderr.strip()[-2000:],
    }


def check(out: Path, names: list[str], corrupt: list[str]) -> dict[str, object]:
    """Every input accounted once; quarantined == corrupt; catalog rows match the files."""
    keyed = Keyed(SECRET)
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    inputs = dict(db.execute("SELECT source_key, status FROM inputs"))
    keys = {keyed.path_token(n): n for n in names}
    missing = [k for k in keys if k not in inputs]
    quarantined = {keys[k] for k, s in inputs.items() if s == "quarantined" and k in keys}
    rows = db.execute("SELECT path, sha256 FROM instances").fetchall()
    bad_rows = 0
    for rel, digest in rows:
        p = out / rel
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            bad_rows += 1
    files = [p for p in out.rglob("*.dcm")]
    temporaries = [p for p in out.rglob("*.tmp")]
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    return {
        "inputs": len(names),
        "recorded": len(inputs),
        "unaccounted": len(missing),
        "extra_records": len(set(inputs) - set(keys)),
        "written": sum(s == "written" for s in inputs.values()),
        "quarantined": len(quarantined),
        "quarantined_are_the_corrupt": quarantined == set(corrupt),
        "catalog_rows": len(rows),
        "catalog_rows_bad": bad_rows,
        "output_files": len(files),
        "temporaries_left": len(temporaries),
        "summary_files_in": summary["files_in"],
    }


def mount_tmpfs(path: Path, size: int) -> bool:
    """Mount a tmpfs of size bytes at path (in this process's private mount namespace)."""
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size >> 10}k", "tmpfs", str(path)],
        capture_output=True,
    )
    return r.returncode == 0


def main() -> int:
    """Build the input, run with faults until done, check the accounting, print a report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--corrupt-every", type=int, default=100, help="1 in N inputs is corrupt")
    ap.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    ap.add_argument("--no-disk-full", action="store_true", help="skip the full-disk fault")
    ap.add_argument("--verify", action="store_true", help="compare with an undisturbed run")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--json", help="write the report here too")
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args()

    if not args.no_disk_full and os.geteuid() == 0 and not os.environ.get("SOAK_UNSHARED"):
        # Re-run in a private mount namespace, where a tmpfs can be mounted for OUTPUT.
        env = dict(os.environ, SOAK_UNSHARED="1")
        return subprocess.run(["unshare", "-m", sys.executable, *sys.argv], env=env).returncode

    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="medveil-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "in"
    t0 = time.perf_counter()
    names, corrupt = make_input(src, args.files, args.corrupt_every)
    input_bytes = sum((src / n).stat().st_size for n in names)
    made = time.perf_counter() - t0
    secret = work / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    policy = work / "policy.toml"
    policy.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')

    outdir = work / "outfs"
    outdir.mkdir(exist_ok=True)
    disk_full = False
    filler = outdir / "filler"
    if not args.no_disk_full and os.environ.get("SOAK_UNSHARED"):
        # Outputs are about the inputs' size, records under 1 KB per input: the filler
        # leaves room for about half the run.
        size = 2 * input_bytes + args.files * 2048 + (64 << 20)
        room = input_bytes // 2 + args.files * 512 + (2 << 20)
        if mount_tmpfs(outdir, size):
            disk_full = True
            with open(filler, "wb") as f:
                f.write(b"\0" * (size - room))
    out = outdir / "out"
    cmd = command(src, out, args.workers, secret, policy)

    runs = []
    first = run_with_kills(cmd, args.kill_every, rng)
    runs.append(first)
    if disk_full:
        filler.unlink()
    while runs[-1]["rc"] == 2 and len(runs) < 5:
        runs.append(run_with_kills([*cmd, "--resume"], args.kill_every, rng))
    report: dict[str, object] = {
        "files": args.files,
        "input_mb": round(input_bytes / 1e6, 1),
        "corrupt": len(corrupt),
        "workers": args.workers,
        "kill_every_s": args.kill_every,
        "disk_full": disk_full,
        "make_input_s": round(made, 1),
        "runs": [
            {k: r[k] for k in ("rc", "seconds", "kills")} | {"last_line": _last(r)} for r in runs
        ],
        "check": check(out, names, corrupt),
    }
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    report["retries_last_run"] = summary["retried"]
    report["retry_reasons_last_run"] = summary["retry_reasons"]
    report["first_run_stderr_tail"] = first["stderr"].splitlines()[-2:]
    if args.verify:
        report["identical_to_undisturbed"] = verify(src, out, names, work, secret, policy)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    c = report["check"]
    ok = (
        runs[-1]["rc"] == 1  # 1: the corrupt files are quarantined
        and c["unaccounted"] == 0  # type: ignore[index]
        and c["quarantined_are_the_corrupt"]  # type: ignore[index]
        and c["catalog_rows_bad"] == 0  # type: ignore[index]
        and c["temporaries_left"] == 0  # type: ignore[index]
        and c["output_files"] == c["catalog_rows"]  # type: ignore[index]
    )
    print("soak:", "PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


def _last(run: dict[str, object]) -> str:
    lines = str(run["stdout"]).splitlines()
    return lines[-1][:200] if lines else ""


def verify(src: Path, out: Path, names: list[str], work: Path, secret: Path, policy: Path) -> bool:
    """An undisturbed run over a sample of the inputs writes the same bytes as the soak."""
    sample = work / "sample"
    for name in random.Random(1).sample(names, min(2000, len(names))):
        (sample / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / name, sample / name)
    ref = work / "ref"
    subprocess.run(command(sample, ref, 2, secret, policy), capture_output=True)
    for p in ref.rglob("*.dcm"):
        rel = p.relative_to(ref)
        if not (out / rel).is_file() or (out / rel).read_bytes() != p.read_bytes():
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
