"""Archive benchmark: medveil deid vs the disk floor, the Python floor and its peers, in one run.

Run: python bench/archive/run.py [--ct 2000 --dx 20 --us 10] [--repeat 2]
     python bench/archive/run.py --memory 1000,10000

Builds the corpus (``corpus.py``) unless ``--corpus`` points at one, then for each part
(CT, radiographs, ultrasound) warms the page cache by reading every file once and runs every
tool ``--repeat`` times, interleaved, each into a fresh output folder (removed and ``sync``ed
after the run, untimed). The best run (shortest wall time) is reported with the 1-minute
load average taken when it started. Wall time is the whole command, process start included.
CPU is the user + system time of the tool and all its processes (GNU time's %U + %S): on a
shared machine it moves much less than wall time, so the tables also compare files per CPU
second.
Peak memory: "largest process" is the exact peak RSS of the biggest process of the run
(GNU time's %M: for medveil the parent or one worker, whichever is bigger); "tree sum" is the
peak of the RSS summed over the process tree, sampled every 50 ms with psutil (forked
workers share pages, so the sum over-counts them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402

PARTS = {"ct": "CT 512x512 int16", "dx": "radiographs 3000x2500 uint16", "us": "US 60x600x800x3"}
PY_PEERS = ("dicognito", "pydicom/deid", "dicom-anonymizer")


@dataclass
class Run:
    """One timed run of one tool on one part."""

    tool: str
    part: str
    seconds: float
    files: int
    megabytes: float
    load: float
    max_rss_mb: float
    tree_rss_mb: float
    parent_rss_mb: float
    worker_rss_mb: float
    outputs: int
    ok: bool
    note: str = ""
    # User + system CPU of the tool and every process it waited for (GNU time's %U + %S):
    # on a shared machine it varies far less than wall time.
    cpu_seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        """Input files per second."""
        return self.files / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        """Input megabytes (10^6 bytes) per second."""
        return self.megabytes / self.seconds if self.seconds else 0.0

    @property
    def files_per_cpu_s(self) -> float:
        """Input files per CPU second (all of the tool's processes)."""
        return self.files / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def mb_per_cpu_s(self) -> float:
        """Input megabytes per CPU second (all of the tool's processes)."""
        return self.megabytes / self.cpu_seconds if self.cpu_seconds else 0.0


@dataclass
class Tools:
    """The command line of every tool, given the run's files."""

    secret: Path
    policy: Path
    cert: Path
    names: list[str] = field(default_factory=list)

    # With --timeline: a folder for one timeline log per medveil run (timeline.py).
    timelines: Path | None = None
    _logs: int = 0

    def argv(self, tool: str, src: Path, dst: Path) -> list[str]:
        """The command that converts folder src into folder dst."""
        py = sys.executable
        peers = str(HERE / "peers.py")
        medveil = [py, "-m", "medveil", "deid", str(src), str(dst), "--quiet"]
        if self.timelines is not None and tool.startswith("medveil"):
            self._logs += 1
            name = f"{self._logs:03d}-{src.name}-{tool.replace(' ', '-')}.log"
            log = self.timelines / name
            log.unlink(missing_ok=True)
            medveil = [py, str(HERE / "timeline.py"), str(log), "--", *medveil[3:]]
        medveil += ["--secret-file", str(self.secret), "--policy", str(self.policy)]
        return {
            "cp -r": ["cp", "-r", str(src), str(dst)],
            # The floor for durable output: the copy, then its flush to disk.
            "cp -r + sync": ["sh", "-c", 'cp -r "$0" "$1" && sync -f "$1"', str(src), str(dst)],
            "pydicom loop": [py, peers, "pydicom", str(src), str(dst)],
            "medveil 1 worker": [*medveil, "--workers", "1"],
            "medveil all workers": medveil,
            # Atomic renames kept, no flush: what the peers (and cp -r) do.
            "medveil 1 worker no-fsync": [*medveil, "--workers", "1", "--no-fsync"],
            "medveil all workers no-fsync": [*medveil, "--no-fsync"],
            "gdcmanon": [
                *("gdcmanon", "-e", "-c", str(self.cert), "-r", "--continue"),
                *("-i", str(src), "-o", str(dst)),
            ],
            "dicognito": [py, peers, "dicognito", str(src), str(dst)],
            "pydicom/deid": [py, peers, "deid", str(src), str(dst)],
            "dicom-anonymizer": [str(Path(py).parent / "dicom-anonymizer"), str(src), str(dst)],
        }[tool]


ALL_TOOLS = [
    "cp -r",
    "cp -r + sync",
    "pydicom loop",
    "medveil 1 worker",
    "medveil all workers",
    "medveil 1 worker no-fsync",
    "medveil all workers no-fsync",
    "gdcmanon",
    "dicognito",
    "pydicom/deid",
    "dicom-anonymizer",
]


def available(tool: str, tools: Tools) -> bool:
    """True when the tool's program or module is installed."""
    probe = {"gdcmanon": "gdcmanon", "cp -r": "cp", "cp -r + sync": "sync"}
    if tool in probe:
        return shutil.which(probe[tool]) is not None
    mod = {"dicognito": "dicognito", "pydicom/deid": "deid", "dicom-anonymizer": "dicomanonymizer"}
    if tool in mod:
        import importlib.util

        return importlib.util.find_spec(mod[tool]) is not None
    return True


def measure(argv: list[str], timeout: float) -> tuple[float, int, dict[str, float], str]:
    """Run argv under GNU time; wall seconds, exit code, peak RSS figures (MB), stderr tail.

    GNU time's %M is the child's ru_maxrss, which covers the reaped worker processes too
    (the largest one); measuring from this Python process instead would count the RSS the
    child inherited at fork, before exec.
    """
    peaks: dict[int, float] = {}
    tree_peak = 0.0
    tool_pid = 0
    done = threading.Event()
    rss_file = tempfile.NamedTemporaryFile(prefix="rss-", delete=False)
    rss_file.close()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file.name, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def sample() -> None:
        nonlocal tree_peak, tool_pid
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0.0
            try:
                procs = root.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    if p.ppid() == proc.pid:
                        tool_pid = p.pid
                    rss = p.memory_info().rss / 1e6
                except psutil.Error:
                    continue
                total += rss
                peaks[p.pid] = max(peaks.get(p.pid, 0.0), rss)
            tree_peak = max(tree_peak, total)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        _, err = proc.communicate()
        rc = -1
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    try:
        kib, user, system = (float(v) for v in Path(rss_file.name).read_text().split()[-3:])
    except ValueError:
        kib = user = system = 0.0
    largest = kib * 1024 / 1e6
    os.unlink(rss_file.name)
    workers = [v for pid, v in peaks.items() if pid != tool_pid]
    figures = {
        "largest": largest,
        "tree": tree_peak,
        "parent": peaks.get(tool_pid, 0.0),
        "worker": max(workers, default=0.0),
        "cpu": user + system,
    }
    tail = err.decode(errors="replace").strip().splitlines()[-3:]
    return seconds, rc, figures, " | ".join(tail)[:300]


def count_outputs(dst: Path) -> int:
    """Files written under dst, without medveil's run records."""
    n = 0
    for _root, dirs, names in os.walk(dst):
        dirs[:] = [d for d in dirs if d != ".medveil"]
        n += len(names)
    return n


def warm(folder: Path) -> tuple[int, int]:
    """Read every file once (hot page cache); file count and bytes."""
    n = size = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                while chunk := f.read(1 << 24):
                    size += len(chunk)
            n += 1
    return n, size


def run_one(
    tool: str,
    part: str,
    src: Path,
    work: Path,
    tools: Tools,
    nfiles: int,
    nbytes: int,
    timeout: float,
) -> Run:
    """Time one tool on one part into a fresh folder, then remove it."""
    dst = work / "out"
    if dst.exists():
        shutil.rmtree(dst)
    if tool in ("gdcmanon", "dicom-anonymizer"):
        dst.mkdir(parents=True)  # both want an existing output folder
    subprocess.run(["sync"], check=False)
    load = os.getloadavg()[0]
    seconds, rc, rss, err = measure(tools.argv(tool, src, dst), timeout)
    outputs = count_outputs(dst) if dst.exists() else 0
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    ok = rc in (0,) and outputs == nfiles
    note = "" if ok else f"exit {rc}, {outputs}/{nfiles} outputs; {err}"
    return Run(
        tool,
        part,
        seconds,
        nfiles,
        nbytes / 1e6,
        load,
        rss["largest"],
        rss["tree"],
        rss["parent"],
        rss["worker"],
        outputs,
        ok,
        note,
        rss["cpu"],
    )


def fmt_table(best: dict[tuple[str, str], Run], parts: list[str], names: list[str]) -> str:
    """The Markdown results table."""
    lines = [
        "| part | tool | files/s | MB/s | s | CPU s | peak RSS largest process MB "
        "| peak RSS tree sum MB | load avg (1 min) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for part in parts:
        for name in names:
            r = best.get((part, name))
            if r is None:
                continue
            flag = "" if r.ok else f" (failed: {r.note})"
            lines.append(
                f"| {part} | {name}{flag} | {r.files_per_s:.1f} | {r.mb_per_s:.0f} | "
                f"{r.seconds:.2f} | {r.cpu_seconds:.2f} | {r.max_rss_mb:.0f} | "
                f"{r.tree_rss_mb:.0f} | {r.load:.1f} |"
            )
    return "\n".join(lines)


def ratio(a: Run | None, b: Run | None, attr: str) -> str:
    """a/b of an attribute, or '-' when a run is missing or failed."""
    if not a or not b or not a.ok or not b.ok:
        return "-"
    return f"{getattr(a, attr) / getattr(b, attr):.2f}x"


def fmt_ratios(best: dict[tuple[str, str], Run], parts: list[str]) -> str:
    """The goal ratios per part."""
    lines = [
        "| part | 1 worker / fastest Python peer (files/s) | 1 worker / gdcmanon | "
        "1 worker / pydicom loop | all / 1 worker | 1 worker MB/s / cp -r | all MB/s / cp -r | "
        "all MB/s / its floor (cp -r + sync when durable, else cp -r) | "
        "files per CPU s: 1 worker / gdcmanon | 1 worker / fastest Python peer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for part in parts:
        for variant in ("", " no-fsync"):
            one = best.get((part, "medveil 1 worker" + variant))
            allw = best.get((part, "medveil all workers" + variant))
            if one is None and allw is None:
                continue
            peers = [best[(part, p)] for p in PY_PEERS if (part, p) in best and best[(part, p)].ok]
            fastest = max(peers, key=lambda r: r.files_per_s, default=None)
            label = f"{ratio(one, fastest, 'files_per_s')} ({fastest.tool})" if fastest else "-"
            floor = best.get((part, "cp -r + sync" if not variant else "cp -r"))
            lines.append(
                f"| {part}{variant} | {label} | "
                f"{ratio(one, best.get((part, 'gdcmanon')), 'files_per_s')} | "
                f"{ratio(one, best.get((part, 'pydicom loop')), 'files_per_s')} | "
                f"{ratio(allw, one, 'files_per_s')} | "
                f"{ratio(one, best.get((part, 'cp -r')), 'mb_per_s')} | "
                f"{ratio(allw, best.get((part, 'cp -r')), 'mb_per_s')} | "
                f"{ratio(allw, floor, 'mb_per_s')} | "
                f"{ratio(one, best.get((part, 'gdcmanon')), 'files_per_cpu_s')} | "
                f"{ratio(one, fastest, 'files_per_cpu_s')} |"
            )
    return "\n".join(lines)


def fmt_cpu(runs: list[Run], parts: list[str], names: list[str]) -> str:
    """Per CPU second: each tool's least-CPU run, and medveil's ratios to gdcmanon.

    Chosen by CPU, not wall time: on a shared machine the shortest run is not always the
    one that used the least CPU, and CPU time is what the goals compare.
    """
    least: dict[tuple[str, str], Run] = {}
    spread: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if not r.ok or not r.cpu_seconds:
            continue
        key = (r.part, r.tool)
        spread.setdefault(key, []).append(r.cpu_seconds)
        if key not in least or r.cpu_seconds < least[key].cpu_seconds:
            least[key] = r
    lines = [
        "| part | tool | MB per CPU s | files per CPU s | CPU s (least) | CPU s (all runs) "
        "| MB per CPU s / gdcmanon |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for part in parts:
        peer = least.get((part, "gdcmanon"))
        for name in names:
            r = least.get((part, name))
            if r is None:
                continue
            ratio_cell = f"{r.mb_per_cpu_s / peer.mb_per_cpu_s:.2f}x" if peer else "-"
            runs_cell = ", ".join(f"{c:.2f}" for c in spread[(part, name)])
            lines.append(
                f"| {part} | {name} | {r.mb_per_cpu_s:.0f} | {r.files_per_cpu_s:.1f} | "
                f"{r.cpu_seconds:.2f} | {runs_cell} | {ratio_cell} |"
            )
    return "\n".join(lines)


def print_tables(runs: list[Run]) -> None:
    """Print the results table (best run per tool and part), the goal ratios, per CPU s."""
    best: dict[tuple[str, str], Run] = {}
    for r in runs:
        key = (r.part, r.tool)
        cur = best.get(key)
        if cur is None or (r.ok, -r.seconds) > (cur.ok, -cur.seconds):
            best[key] = r
    parts = list(dict.fromkeys(r.part for r in runs))
    names = list(dict.fromkeys(r.tool for r in runs))
    print(fmt_table(best, parts, names))
    print()
    print(fmt_ratios(best, parts))
    print()
    print(fmt_cpu(runs, parts, names))


def setup(work: Path) -> Tools:
    """Secret, policy (with the US pixel rule) and a throw-away certificate for gdcmanon."""
    work.mkdir(parents=True, exist_ok=True)
    secret = work / "secret.bin"
    if not secret.exists():
        secret.write_bytes(os.urandom(32))
        secret.chmod(0o600)
    policy = work / "policy.toml"
    rules = HERE / "us_pixel_rules.toml"
    policy.write_text(f'[pixels]\nrules = ["{rules}"]\n')
    cert = work / "cert.pem"
    if not cert.exists():
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"),
                *("-subj", "/CN=medveil-bench", "-keyout", str(work / "key.pem")),
                *("-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
    return Tools(secret, policy, cert)


def bench(args: argparse.Namespace, tools: Tools, work: Path) -> list[Run]:
    """Every tool on every part, interleaved repeats; all runs."""
    corpus = Path(args.corpus) if args.corpus else work / "corpus"
    if not corpus.exists():
        print(f"building corpus in {corpus} ...", file=sys.stderr)
        corpus_mod.build(corpus, args.ct, args.dx, args.us)
    names = [t for t in (args.tools.split(",") if args.tools else ALL_TOOLS) if available(t, tools)]
    runs: list[Run] = []
    for part in args.parts.split(","):
        src = corpus / part
        nfiles, nbytes = warm(src)
        if not nfiles:
            continue
        for rep in range(args.repeat):
            for name in names if rep % 2 == 0 else names[::-1]:
                r = run_one(name, part, src, work, tools, nfiles, nbytes, args.timeout)
                runs.append(r)
                print(
                    f"{part} {name} #{rep + 1}: {r.seconds:.2f} s, {r.files_per_s:.1f} files/s,"
                    f" {r.mb_per_s:.0f} MB/s, max RSS {r.max_rss_mb:.0f} MB, load {r.load:.1f}"
                    f"{'' if r.ok else ' FAILED ' + r.note}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def memory(args: argparse.Namespace, tools: Tools, work: Path) -> list[Run]:
    """Peak RSS of medveil's parent and workers on small-but-many archives."""
    runs: list[Run] = []
    for n in (int(x) for x in args.memory.split(",")):
        src = work / f"memory-{n}"
        if not src.exists():
            print(f"building {n} small files in {src} ...", file=sys.stderr)
            corpus_mod.build_memory(src, n)
        nfiles, nbytes = warm(src)
        for name in args.memory_tools.split(","):
            r = run_one(name, f"{n} files", src, work, tools, nfiles, nbytes, args.timeout)
            runs.append(r)
            print(
                f"{n} files {name}: {r.seconds:.1f} s, parent {r.parent_rss_mb:.0f} MB, "
                f"worker {r.worker_rss_mb:.0f} MB, largest {r.max_rss_mb:.0f} MB, tree "
                f"{r.tree_rss_mb:.0f} MB, load {r.load:.1f}{'' if r.ok else ' FAILED ' + r.note}",
                file=sys.stderr,
                flush=True,
            )
    return runs


def _compile_medveil(policy: Path) -> None:
    """Byte-compile medveil's modules and build its start-up tables, as a first run would.

    An installed package has its .pyc files; a source checkout run with
    PYTHONDONTWRITEBYTECODE (as some shells set) would compile every module on every run,
    about 0.15 CPU-s each time. The tables medveil keeps between runs
    (medveil.policy.tablecache: ~20 ms of CPU per run) are not written under that
    variable either, so they are built here once, in a process without it.
    """
    import compileall

    import medveil

    compileall.compile_dir(Path(medveil.__file__).parent, quiet=1)
    code = (
        "import sys\n"
        "from medveil.policy.presets import load_policy\n"
        "from medveil.run.archive import _prebuild_engine\n"
        "_prebuild_engine(load_policy(sys.argv[1]), bytes(32))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", code, str(policy)], env=env, check=False)


def main(argv: list[str] | None = None) -> int:
    """Command line: build, run, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ct", type=int, default=2000, help="CT slices (default 2000)")
    ap.add_argument("--dx", type=int, default=20, help="radiographs (default 20)")
    ap.add_argument("--us", type=int, default=10, help="ultrasound cines (default 10)")
    ap.add_argument("--corpus", help="use this corpus folder (ct/, dx/, us/) instead of building")
    ap.add_argument("--work", default="/tmp/medveil-bench-archive", help="scratch folder")
    ap.add_argument("--parts", default="ct,dx,us")
    ap.add_argument("--tools", help=f"comma-separated subset of: {', '.join(ALL_TOOLS)}")
    ap.add_argument("--repeat", type=int, default=2, help="runs per tool (best is reported)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a run is killed")
    ap.add_argument("--memory", help="instead: medveil's peak RSS on N,M small files")
    ap.add_argument(
        "--memory-tools",
        default="medveil all workers",
        help="with --memory: 'medveil 1 worker', 'medveil all workers' or both, comma-separated",
    )
    ap.add_argument("--from-json", help="only re-print the tables of a run saved with --json")
    ap.add_argument("--json", help="also write every run to this JSON file")
    ap.add_argument(
        "--timeline",
        metavar="DIR",
        help="run medveil under timeline.py: one log per run in DIR, summaries printed "
        "(the probes add a little time: for finding waits, not for the tables)",
    )
    args = ap.parse_args(argv)
    if args.from_json:
        saved = [Run(**r) for r in json.loads(Path(args.from_json).read_text())]
        print_tables(saved)
        return 0
    work = Path(args.work)
    tools = setup(work)
    if args.timeline:
        tools.timelines = Path(args.timeline)
        tools.timelines.mkdir(parents=True, exist_ok=True)
    _compile_medveil(tools.policy)
    print(f"start: {time.strftime('%H:%M:%S')}, load {os.getloadavg()}", file=sys.stderr)
    if args.memory:
        runs = memory(args, tools, work)
        print(
            "| files | medveil | s | parent MB | largest worker MB | largest process MB "
            "| tree sum MB | load avg (1 min) |"
        )
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in runs:
            print(
                f"| {r.part} | {r.tool.removeprefix('medveil ')} | {r.seconds:.1f} | "
                f"{r.parent_rss_mb:.0f} | {r.worker_rss_mb:.0f} | {r.max_rss_mb:.0f} | "
                f"{r.tree_rss_mb:.0f} | {r.load:.1f} |"
            )
    else:
        runs = bench(args, tools, work)
        print_tables(runs)
    if tools.timelines is not None:
        import timeline

        for log in sorted(tools.timelines.glob("*.log")):
            print(f"\n{timeline.show(log)}")
    print(f"end: {time.strftime('%H:%M:%S')}, load {os.getloadavg()}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
