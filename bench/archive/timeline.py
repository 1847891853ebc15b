"""Timeline of one `medveil deid` run: when the parent is busy, when each worker works.

Run: python bench/archive/timeline.py LOG -- deid INPUT OUTPUT [options]
     python bench/archive/timeline.py --show LOG

The first form runs the command in this process (as the ``medveil`` program does) with
probes on the archive driver's steps: start-up (imports, the policy's compilation, the
records, the engine built before the fork), each worker task (start, end, files, CPU),
each flush to disk (wall time; in a durable run the parent's, when it places the staged
outputs of finished tasks) and the end (the pool's shutdown, variant settling, the
records' finish). Every process appends ``seconds cpu pid event detail`` lines to LOG (seconds
from the start of this script, CPU of the process that wrote the line). The second form
prints a summary: the parent's steps, when each worker started its first task, its busy
time (its CPU and flushes within it), its idle tail at the end, the parent's placements,
and the task sizes. The probes
cost a few microseconds per task; a timeline shows where a run waits, it does not time it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = time.time()
_FD = -1


def event(name: str, detail: object = "") -> None:
    """Append one line to the log (one write: lines of several processes never mix)."""
    if _FD >= 0:
        line = f"{time.time() - T0:.4f} {time.process_time():.3f} {os.getpid()} {name} {detail}\n"
        os.write(_FD, line.encode())


def _runqueue_wait() -> float:
    """Seconds this thread has waited for a CPU while runnable (Linux schedstat), or 0.

    A task's wall time is its CPU, this wait (other processes had the cores: load) and the
    rest, blocked (the disk, a lock): the last does not depend on the machine's load.
    """
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _probe(owner: Any, attr: str, name: str) -> None:
    """Log the start and end of owner.attr (a function or method) under name."""
    inner: Callable[..., Any] = getattr(owner, attr)

    def probed(*args: Any, **kwargs: Any) -> Any:
        event(f"{name}-start")
        try:
            return inner(*args, **kwargs)
        finally:
            event(f"{name}-end")

    setattr(owner, attr, probed)


def _install() -> None:
    """Put the probes on the archive driver (before it forks: the workers inherit them)."""
    import concurrent.futures as cf

    import medveil.run.archive as archive
    from medveil.policy.schema import Policy

    event("archive-imported")
    chunk = archive.process_chunk

    def process_chunk(items: list[Any]) -> Any:
        cpu = time.process_time()
        queued = _runqueue_wait()
        event("task-start", len(items))
        try:
            return chunk(items)
        finally:
            waited = _runqueue_wait() - queued
            event(
                "task-end",
                f"{len(items)} cpu={time.process_time() - cpu:.4f} runqueue={waited:.4f}",
            )

    # The pool sends the task function by name: this one must be found under the name of
    # the one it replaces (the forked workers have the replacement too).
    process_chunk.__module__ = chunk.__module__
    process_chunk.__qualname__ = chunk.__qualname__
    archive.process_chunk = process_chunk
    from medveil.durable import BatchWriter

    flush = BatchWriter.flush

    def flushed(self: Any) -> Any:
        wall = time.time()
        try:
            return flush(self)
        finally:
            if self.durable:
                event("flush", f"wall={time.time() - wall:.4f}")

    BatchWriter.flush = flushed  # type: ignore[method-assign]
    for attr in ("_prebuild_engine", "settle_variants", "_init_worker", "_place_tasks"):
        if hasattr(archive, attr):  # an older tree may lack one (timed against this one)
            _probe(archive, attr, attr.strip("_"))
    _probe(archive.RunRecords, "__init__", "records-open")
    _probe(archive.RunRecords, "finish", "records-finish")
    _probe(Policy, "compile", "policy-compile")
    _probe(cf.ProcessPoolExecutor, "shutdown", "pool-shutdown")
    submit = cf.ProcessPoolExecutor.submit

    def submitted(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        event("submit", len(args[0]) if args else "")
        return submit(self, fn, *args, **kwargs)

    cf.ProcessPoolExecutor.submit = submitted  # type: ignore[method-assign]


def run(log: Path, argv: list[str]) -> int:
    """Run `medveil ARGV` in this process with the probes on; its exit code."""
    global _FD
    _FD = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    event("python-started")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as medveil.cli.main does
    from medveil.cli import main as cli
    from medveil.cli.startup import end_start_up, pause_collection

    pause_collection()
    event("cli-imported")
    _install()
    try:
        code, args = cli._main(argv)
    finally:
        end_start_up()
    event("command-returned")
    if getattr(args, "exit_now", False) and code in (0, 1):
        cli.exit_now(code)
    return code


def show(log: Path) -> str:
    """A summary of a timeline log."""
    rows = []
    for line in log.read_text().splitlines():
        parts = line.split(" ", 4)
        rows.append((float(parts[0]), float(parts[1]), int(parts[2]), parts[3], parts[4]))
    parent = rows[0][2]
    first: dict[int, float] = {}
    busy: dict[int, float] = defaultdict(float)
    last: dict[int, float] = {}
    flush: dict[int, float] = defaultdict(float)
    cpu_of: dict[int, float] = defaultdict(float)
    runqueue: dict[int, float] = defaultdict(float)
    # The parent's flushes and placements of a durable run's staged outputs (see
    # medveil.run.archive._place_tasks): calls and wall time.
    placing: list[float] = []
    place_start = 0.0
    sizes: list[int] = []
    started: dict[int, float] = {}
    end = rows[-1][0]
    phases: list[str] = []
    for t, cpu, pid, name, detail in rows:
        if name == "task-start":
            first.setdefault(pid, t)
            started[pid] = t
        elif name == "task-end":
            busy[pid] += t - started.pop(pid, t)
            last[pid] = t
            sizes.append(int(detail.split()[0]))
            fields = dict(f.split("=") for f in detail.split()[1:] if "=" in f)
            cpu_of[pid] += float(fields.get("cpu", 0.0))
            runqueue[pid] += float(fields.get("runqueue", 0.0))
        elif name == "place_tasks-start":
            place_start = t
        elif name == "place_tasks-end":
            placing.append(t - place_start)
        elif name == "flush":
            flush[pid] += float(detail.split("=")[1])
        elif pid == parent and name != "submit":  # task sizes and placements: below
            phases.append(f"  {t:7.3f} s  cpu {cpu:6.3f}  {name} {detail}".rstrip())
    out = [f"timeline of {log} (parent {parent}):", *phases]
    done = max(last.values(), default=0.0)
    out.append(f"first task started at {min(first.values(), default=0.0):.3f} s")
    for pid in sorted(first):
        span = done - first[pid]
        out.append(
            f"  worker {pid}: first task {first[pid]:.3f} s, last ended {last[pid]:.3f} s, "
            f"busy {busy[pid]:.3f} s of {span:.3f} s (CPU {cpu_of[pid]:.3f} s, waiting for "
            f"a CPU {runqueue[pid]:.3f} s, blocked "
            f"{busy[pid] - cpu_of[pid] - runqueue[pid]:.3f} s of which flush "
            f"{flush[pid]:.3f} s), idle at the end {done - last[pid]:.3f} s"
        )
    if placing:
        out.append(
            f"parent placed staged outputs {len(placing)} times, {sum(placing):.3f} s "
            f"(flush {flush[parent]:.3f} s of it), longest {max(placing):.3f} s"
        )
    out.append(f"last task ended at {done:.3f} s; command done at {end:.3f} s")
    start = min(first.values(), default=0.0)
    if done > start:
        # The workers' own rate, without the command's fixed start and end: what the
        # number of workers scales (the whole command's wall time also holds the rest).
        out.append(
            f"work span {done - start:.3f} s: {sum(sizes) / (done - start):.1f} files/s; "
            f"before it {start:.3f} s, after it {end - done:.3f} s"
        )
    out.append(f"tasks: {len(sizes)}, sizes {sizes}")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Command line: run with a timeline, or show one."""
    if argv[:1] == ["--show"]:
        print(show(Path(argv[1])))
        return 0
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    return run(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
