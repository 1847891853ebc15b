"""--max-file-size and --file-timeout on Spark tasks, as in the local run (no Spark needed).

clean_partition is what every Spark task runs; here it runs in this process (its main
thread, as in a PySpark worker), so the engine can be patched to spin on one file.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from medveil.run import archive
from medveil.run import spark as mspark
from medveil.run.archive import deidentify_archive as local_deidentify_archive
from medveil.run.demo import demo_rule_file, write_demo_archive

SECRET = bytes(range(32))
POLICY = Policy(pixel_rule_files=(str(demo_rule_file()),))


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """The demo archive plus slow.dcm, a copy of one of its CT files."""
    root = tmp_path_factory.mktemp("limits") / "in"
    files = write_demo_archive(root)
    ct = next(p for p in files if p.parent.name == "ct")
    (root / "slow.dcm").write_bytes(ct.read_bytes())
    return root


def _run(src: Path, out: Path, **limits: object) -> dict[str, tuple[str, str]]:
    """clean_partition over every file of src in this process: relative name -> verdict."""
    job = mspark._Job(policy=POLICY, root=f"file:{src}", output=str(out), secret=SECRET, **limits)  # type: ignore[arg-type]
    names = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    keys = {Keyed(SECRET).path_token(n): n for n in names}
    rows = mspark.clean_partition(job, [(f"file:{src}/{n}",) for n in names])
    return {keys[str(r[0])]: (str(r[1]), str(r[2] or "")) for r in rows}


def test_a_slow_file_is_quarantined_with_the_local_runs_reason(src, tmp_path, monkeypatch):
    """A file not cleaned within its limit: quarantined "timed out: ...", the task goes on,
    and the caller's signal handlers and the archive limits are left as they were."""
    from medveil.engine import instance

    real = instance.clean_instance

    def slow_on_one(engine, raw, name="input", **kw):  # type: ignore[no-untyped-def]
        if name.endswith("slow.dcm"):  # pure Python busy work, like a parser's loop
            while True:
                sum(range(1000))
        return real(engine, raw, name, **kw)

    monkeypatch.setattr(instance, "clean_instance", slow_on_one)
    monkeypatch.setattr(archive, "TIMEOUT_BYTES_PER_SECOND", 1e6)
    before = signal.getsignal(signal.SIGALRM), signal.getsignal(signal.SIGVTALRM)
    limits = archive._MAX_SIZE, archive._TIMEOUT
    t0 = time.monotonic()
    verdicts = _run(src, tmp_path / "out", file_timeout=0.5)
    assert time.monotonic() - t0 < 60
    size = (src / "slow.dcm").stat().st_size
    limit = 0.5 + size / 1e6
    # The words of the local run's worker (tests/faults/test_hostile.py checks them there).
    assert verdicts.pop("slow.dcm") == (
        "quarantined",
        f"timed out: over {limit:.1f} s for {size / 1e6:.1f} MB (--file-timeout)",
    )
    assert sorted(s for s, _ in verdicts.values()).count("written") == 14
    assert (signal.getsignal(signal.SIGALRM), signal.getsignal(signal.SIGVTALRM)) == before
    assert (archive._MAX_SIZE, archive._TIMEOUT) == limits
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_size_limit_as_local_and_each_task_takes_its_own_jobs_limits(tmp_path) -> None:
    """--max-file-size: the same verdicts and reasons as the local run; a later task in the
    same worker process applies its own job's limit, not the first one's."""
    src = tmp_path / "in"
    write_demo_archive(src)
    sizes = sorted(p.stat().st_size for p in src.rglob("*.dcm"))
    limit = sizes[len(sizes) // 2]
    local = tmp_path / "local"
    local_deidentify_archive(
        src, local, policy=POLICY, secret=SECRET, workers=1, max_file_size=limit
    )
    import sqlite3

    db = sqlite3.connect(local / ".medveil" / "catalog.sqlite")
    keyed = Keyed(SECRET)
    names = {
        keyed.path_token(p.relative_to(src).as_posix()): p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file()
    }
    expected = {
        names[k]: (s, r or "")
        for k, s, r in db.execute("SELECT source_key, status, reason FROM inputs")
    }
    db.close()
    limited = _run(src, tmp_path / "limited", max_file_size=limit)
    assert limited == expected
    too_large = [r for s, r in limited.values() if s == "quarantined"]
    assert len(too_large) >= 5
    assert all(r.startswith("too large: ") and r.endswith(" (--max-file-size)") for r in too_large)
    # The next job in this process: no limit given, so the default (far above these files).
    free = _run(src, tmp_path / "free")
    assert [s for s, _ in free.values()].count("written") == 14


def test_cli_takes_the_limits_for_spark() -> None:
    """spark-deid (and deid --engine spark) parse --max-file-size and --file-timeout."""
    from medveil.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["spark-deid", "in", "out", "--max-file-size", "2M"])
    assert (args.max_file_size, args.file_timeout) == (2 << 20, 60.0)
    args = parser.parse_args(["deid", "in", "out", "--engine", "spark", "--file-timeout", "5"])
    assert (args.max_file_size, args.file_timeout) == (None, 5.0)
