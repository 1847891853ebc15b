"""Workers killed, a run killed or stopped: nothing lost, nothing left running, same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pydicom

from .helpers import alive, children, cli, demo_input, reference, tree, wait_until


def _outputs(out: Path) -> int:
    return len(list(out.rglob("*.dcm")))


def test_worker_killed_mid_run_is_retried_and_output_is_identical(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=600)
    ref = reference(src, tmp_path / "ref")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        cli(tmp_path, src, out, "--workers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: _outputs(out) >= 15 and len(children(proc.pid)) == 2)
    victim = children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    _, stderr = proc.communicate(timeout=120)
    # The files the dead worker (and its pool) had in flight are retried, not quarantined.
    assert proc.returncode == 0, stderr
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["quarantined"] == 0 and summary["failed"] == 0
    assert summary["retried"] >= 1 and summary["retry_reasons"] == {
        "a worker process died": summary["retried"]
    }
    assert summary["files_in"] == 615 and "retries after failures" in stderr
    assert tree(out) == ref
    assert not list(out.rglob("*.tmp"))
    # --resume after a complete run: nothing to do, same bytes, and summary.json agrees.
    rc = subprocess.run(cli(tmp_path, src, out, "--resume"), capture_output=True).returncode
    assert rc == 0 and tree(out) == ref
    again = json.loads((out / ".medveil" / "summary.json").read_text())
    assert again["files_in"] == again["resumed"] == 615


def test_kill_9_of_the_run_takes_its_workers_with_it(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=600)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        cli(tmp_path, src, out, "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_until(lambda: _outputs(out) >= 5 and len(children(proc.pid)) == 2)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # PR_SET_PDEATHSIG: the kernel kills them; nothing goes on writing into OUTPUT.
    assert wait_until(lambda: not any(alive(w) for w in workers), timeout=5)
    before = sorted(p.name for p in out.rglob("*"))
    time.sleep(0.5)
    assert sorted(p.name for p in out.rglob("*")) == before
    for p in out.rglob("*.dcm"):
        pydicom.dcmread(p)  # nothing half written under a final name


def test_sigterm_stops_like_ctrl_c_with_a_summary_then_resume(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=600)
    ref = reference(src, tmp_path / "ref")
    out = tmp_path / "out"
    cmd = cli(tmp_path, src, out, "--workers", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: _outputs(out) >= 5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "interrupted" in stdout
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["interrupted"] and summary["files_in"] < 615
    assert summary["quarantined"] == 0
    rc = subprocess.run([*cmd, "--resume"], capture_output=True).returncode
    assert rc == 0 and tree(out) == ref
    final = json.loads((out / ".medveil" / "summary.json").read_text())
    assert final["files_in"] == 615 and final["resumed"] == summary["files_in"]


def test_memory_error_is_retried_alone_not_quarantined(tmp_path: Path, monkeypatch) -> None:
    """Out of memory says nothing about the file: retried, then written; batch unharmed."""
    from medveil.engine import instance
    from medveil.run import archive

    from .helpers import POLICY, SECRET

    real = instance.clean_instance
    marker = tmp_path / "failed-once"

    def oom_once(engine, raw, name="input", **kw):  # type: ignore[no-untyped-def]
        if name.endswith("copy00003.dcm") and not marker.exists():
            marker.touch()  # workers are processes: the file system remembers for them
            try:
                raise MemoryError
            except MemoryError as exc:
                return instance._quarantined(exc, len(raw))  # as clean_instance reports it
        return real(engine, raw, name, **kw)

    monkeypatch.setattr(instance, "clean_instance", oom_once)
    src = demo_input(tmp_path / "in", copies=20)
    reasons: dict[str, str] = {}
    summary = archive.deidentify_archive(
        src,
        tmp_path / "out",
        policy=POLICY,
        secret=SECRET,
        workers=2,
        on_quarantine=lambda n, r: reasons.__setitem__(n, r),
    )
    assert marker.exists() and not reasons
    assert summary.retry_reasons == {"out of memory (MemoryError)": 1}
    assert summary.written == 34 and summary.exit_code == 0
