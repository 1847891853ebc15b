"""Soak: many small files through `medveil deid` with faults injected; every input accounted.

Run (as root for the full disk: the output goes to a tmpfs in a private mount namespace):

    python bench/soak.py --files 100000 --workers 2          # the full soak
    python bench/soak.py --files 5000 --kill-every 3         # a scaled-down one

Faults: 1% of the inputs are corrupt (cut to a third: quarantined), a worker is killed
with SIGKILL every --kill-every seconds, or every --kill-every-files inputs recorded (its
files are retried), and the disk fills up once (a filler file leaves room for about half
the outputs; the run stops with exit 2, the filler is removed, --resume goes on). A run
that stops (exit 2: a file whose retries were all killed too, the full disk) is resumed
while resumes make progress. The check: the inputs table holds every input once, the
quarantined inputs are exactly the corrupt ones, every catalog row's file exists with its
SHA-256, no temporary is left, and the output equals an undisturbed run's (--verify, on a
sample of 2,000 inputs).
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

    Returns (all input names, corrupt input names), relative to root. An input made by an
    earlier soak with the same numbers (its listing beside root, soak-input.json) is reused.
    """
    import pydicom

    listing = root.parent / "soak-input.json"
    if listing.is_file():
        made = json.loads(listing.read_text())
        if (made["files"], made["corrupt_every"]) == (files, corrupt_every):
            return made["names"], made["corrupt"]

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
    made = {"files": files, "corrupt_every": corrupt_every, "names": names, "corrupt": corrupt}
    listing.write_text(json.dumps(made))
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


def recorded(out: Path) -> int:
    """How many inputs the run records hold (0 before the catalog exists)."""
    path = out / ".medveil" / "catalog.sqlite"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM inputs").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def run_with_kills(
    cmd: list[str],
    kill_every: float,
    rng: random.Random,
    out: Path | None = None,
    kill_every_files: int = 0,
) -> dict[str, object]:
    """Run cmd, SIGKILL one of its workers every kill_every seconds (or, with out and
    kill_every_files, each time that many more inputs are recorded); rc, kills, stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = 0
    done = threading.Event()

    def kill_one() -> None:
        nonlocal kills
        workers = children(proc.pid)
        if workers and proc.poll() is None:
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass

    def killer() -> None:
        if kill_every_files and out is not None:
            # Faults at a rate per file, whatever the machine's speed (shared cores).
            mark = recorded(out) + kill_every_files
            while not done.wait(0.5):
                if recorded(out) >= mark:
                    kill_one()
                    mark += kill_every_files
            return
        while not done.wait(kill_every):
            kill_one()

    t = threading.Thread(target=killer, daemon=True)
    if kill_every > 0 or kill_every_files > 0:
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
    ap.add_argument(
        "--kill-every-files",
        type=int,
        default=0,
        help="kill a worker each time this many more inputs are recorded (instead of by time)",
    )
    ap.add_argument("--max-runs", type=int, default=100, help="resumes at most")
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

    def one_run(resume: bool) -> dict[str, object]:
        before = recorded(out)
        run = run_with_kills(
            [*cmd, "--resume"] if resume else cmd,
            args.kill_every,
            rng,
            out,
            args.kill_every_files,
        )
        run["recorded"] = recorded(out) - before
        stderr = str(run["stderr"])
        run["stopped_by"] = (
            "disk full"
            if "ENOSPC" in stderr or "cannot write the run records" in stderr
            else "worker kills"
            if "worker process died" in stderr and run["rc"] == 2
            else ""
        )
        return run

    runs = [one_run(False)]
    first = runs[0]
    full_at = None
    stalled = 0
    while runs[-1]["rc"] == 2 and len(runs) < args.max_runs and stalled < 3:
        if filler.exists() and (runs[-1]["stopped_by"] == "disk full" or stalled):
            filler.unlink()  # the full disk was met: room again, --resume goes on
            full_at = len(runs)
        runs.append(one_run(True))
        stalled = stalled + 1 if not runs[-1]["recorded"] else 0
    if filler.exists():
        filler.unlink()
    report: dict[str, object] = {
        "files": args.files,
        "input_mb": round(input_bytes / 1e6, 1),
        "corrupt": len(corrupt),
        "workers": args.workers,
        "kill_every_s": args.kill_every,
        "kill_every_files": args.kill_every_files,
        "disk_full": disk_full,
        "disk_full_met_in_run": full_at,
        "make_input_s": round(made, 1),
        "runs": [
            {k: r[k] for k in ("rc", "seconds", "kills", "recorded", "stopped_by")}
            | {"last_line": _last(r)}
            for r in runs
        ],
        "total_seconds": round(sum(float(str(r["seconds"])) for r in runs), 1),
        "total_kills": sum(int(str(r["kills"])) for r in runs),
        "check": check(out, names, corrupt),
    }
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    report["retries_last_run"] = summary["retried"]
    report["retry_reasons_last_run"] = summary["retry_reasons"]
    report["first_run_stderr_tail"] = str(first["stderr"]).splitlines()[-2:]
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
