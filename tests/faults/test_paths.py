"""OUTPUT is the run's alone: locked, never the input's parent, never left by a path.

Also: every command answers an expected error in one line (exit 2) and an unexpected one
with one line and a traceback file without PHI.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import subprocess
import time
import warnings
from pathlib import Path

import pydicom
import pytest
from medveil.cli.main import main
from medveil.durable import UnsafePath, check_relpath, safe_join
from medveil.errors import MedveilError
from medveil.policy.standard import Option
from medveil.run import archive
from medveil.run.archive import deidentify_archive, lock_output

from .helpers import POLICY, SECRET, cli, demo_input, reference, tree, wait_until

RETAIN_UIDS = dataclasses.replace(POLICY, options=(*POLICY.options, Option.RETAIN_UIDS))


# ---------------------------------------------------------------------------- the lock
def test_a_second_run_into_the_same_output_is_refused_at_once(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=600)
    ref = reference(src, tmp_path / "ref")
    out = tmp_path / "out"
    first = subprocess.Popen(
        cli(tmp_path, src, out, "--workers", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: len(list(out.rglob("*.dcm"))) >= 5)
    t0 = time.monotonic()
    # --resume during a run would delete the run's temporaries: refused, like a plain run.
    second = subprocess.run(
        cli(tmp_path, src, out, "--resume"), capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2
    assert "another medveil run is using this output folder" in second.stderr
    assert "Traceback" not in second.stderr and time.monotonic() - t0 < 15
    assert first.poll() is None, "the first run ended before the second was tried"
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert tree(out) == ref


def test_lock_is_held_for_the_run_and_released_after(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=1)
    out = tmp_path / "out"
    out.mkdir()
    held = lock_output(out)
    try:
        with pytest.raises(MedveilError, match="another medveil run"):
            deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1)
    finally:
        os.close(held)
    deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1)
    fd = os.open(out / ".medveil" / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once the run is over
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- overlaps
def test_input_inside_output_is_refused_even_with_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = demo_input(out / "originals", copies=1)
    with pytest.raises(MedveilError, match="input must not be inside the output"):
        deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1, resume=True)
    assert tree(out) == tree(out)  # and nothing was written into it
    assert not list(out.rglob("MV*"))


def test_output_that_is_a_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=1)
    target = tmp_path / "out"
    target.write_text("not a folder")
    proc = subprocess.run(cli(tmp_path, src, target), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"medveil: {target}: the output exists and is not a folder"
    ]


# ---------------------------------------------------------------------------- traversal
def _with_uids(template: Path, dest: Path, **uids: str) -> Path:
    ds = pydicom.dcmread(template)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about each invalid UI value
        for keyword, value in uids.items():
            setattr(ds, keyword, value)
        ds.save_as(buf, enforce_file_format=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(buf.getvalue())
    return dest


HOSTILE = {
    "study_dotdot.dcm": {"StudyInstanceUID": "..", "SeriesInstanceUID": ".."},
    "series_dotdot.dcm": {"SeriesInstanceUID": ".."},
    "sop_dotdot.dcm": {"SOPInstanceUID": ".."},
    "study_dot.dcm": {"StudyInstanceUID": "."},
    "slashes.dcm": {"SeriesInstanceUID": "../../../../etc"},
    "letters.dcm": {"StudyInstanceUID": "1.2.evil"},
}


def _files_outside(root: Path, inside: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and inside not in p.parents}


def test_dotdot_uids_write_nothing_outside_output_in_an_archive_run(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=1)
    template = src / "copies" / "copy00000.dcm"
    for name, uids in HOSTILE.items():
        _with_uids(template, src / "hostile" / name, **uids)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "a" / "b" / "out"
    before = _files_outside(tmp_path, out)
    reasons: dict[str, str] = {}
    summary = deidentify_archive(
        src,
        out,
        policy=RETAIN_UIDS,
        secret=SECRET,
        workers=2,
        on_quarantine=lambda n, r: reasons.__setitem__(n, r),
    )
    assert _files_outside(tmp_path, out) == before  # nothing new anywhere else
    assert {Path(n).name for n in reasons} == set(HOSTILE)
    assert all(r.startswith("unsafe output path: ") for r in reasons.values())
    assert summary.written == 15 and summary.quarantined == len(HOSTILE)
    for p in out.rglob("*.dcm"):
        check_relpath(p.relative_to(out).as_posix())


def test_symlink_planted_in_output_is_not_followed_out(tmp_path: Path) -> None:
    src = demo_input(tmp_path / "in", copies=2)
    ref = tmp_path / "ref"
    deidentify_archive(src, ref, policy=POLICY, secret=SECRET, workers=1)
    patient = next(p for p in ref.iterdir() if p.name != ".medveil")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / patient.name).symlink_to(outside, target_is_directory=True)
    reasons: dict[str, str] = {}
    deidentify_archive(
        src,
        out,
        policy=POLICY,
        secret=SECRET,
        workers=1,
        resume=True,
        on_quarantine=lambda n, r: reasons.__setitem__(n, r),
    )
    assert not list(outside.rglob("*"))
    assert reasons and set(reasons.values()) == {
        "unsafe output path: it resolves outside the output folder"
    }


@pytest.mark.parametrize(
    "relpath",
    [
        "../x/y/z.dcm",
        "p/../y/z.dcm",
        "p/1.2/3.4/...dcm",
        "p/1.2/3.4/5\0.dcm",
        ".medveil/1.2/3.4/5.dcm",
        "p/1.2/3.4",
        "p/1.2/3.4/5.6.dcm/x",
        "p/1..2/3/4.dcm",
        "p/" + "1." * 40 + "1/3/4.dcm",
        "/abs/1/2/3.dcm",
    ],
)
def test_unsafe_relative_paths_are_refused(tmp_path: Path, relpath: str) -> None:
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, relpath)


def test_safe_relative_paths_pass(tmp_path: Path) -> None:
    path = safe_join(tmp_path, "MVABC234/1.2.840.10008/unknown/2.25.123.dcm")
    assert path == tmp_path / "MVABC234/1.2.840.10008/unknown/2.25.123.dcm"


def test_dotdot_uids_through_the_gateway_write_nothing_outside(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    from medveil.net.gateway import STATUS_QUARANTINED, Gateway, GatewayConfig

    from ..gateway.test_store import send

    src = demo_input(tmp_path / "in", copies=1)
    template = src / "copies" / "copy00000.dcm"
    files = [_with_uids(template, tmp_path / "h" / n, **u) for n, u in HOSTILE.items()]
    store = tmp_path / "deep" / "er" / "store"
    before = _files_outside(tmp_path, store)
    cfg = GatewayConfig(policy=RETAIN_UIDS, secret=SECRET, store=store, port=0, workers=1)
    with Gateway(cfg) as gw, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sender reads the invalid UIDs too
        statuses = send(gw.port, [*files, template])
    assert statuses == [STATUS_QUARANTINED] * len(files) + [0]
    assert _files_outside(tmp_path, store) == before
    assert len(tree(store)) == 1


# ---------------------------------------------------------------------------- records
def test_unreadable_subfolder_is_reported_and_exit_1(tmp_path: Path, monkeypatch) -> None:
    src = demo_input(tmp_path / "in", copies=2)
    locked = src / "copies"
    problems: list[tuple[str, str]] = []
    if os.geteuid() == 0:
        # Root lists any folder: make this one fail as it would for a user without rights.
        real = os.scandir

        def scandir(path=".") -> object:  # type: ignore[no-untyped-def]
            if os.fspath(path) == os.fspath(locked):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        locked.chmod(0)
    try:
        summary = deidentify_archive(
            src,
            tmp_path / "out",
            policy=POLICY,
            secret=SECRET,
            workers=1,
            on_problem=lambda n, r: problems.append((n, r)),
        )
    finally:
        locked.chmod(0o755)
    assert problems == [("copies", "cannot list folder: Permission denied")]
    assert summary.unreadable == 1 and summary.exit_code == 1
    assert summary.written == 14  # the rest of the input is done


def test_unexpected_error_is_one_line_and_a_report_without_phi(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    src = demo_input(tmp_path / "in", copies=1)
    out = tmp_path / "out"
    out.mkdir()

    def boom(*_a: object, **_k: object) -> None:
        raise ValueError("Fakename^Patient 1.2.840.99999.1234567")

    monkeypatch.setattr(archive, "deidentify_archive", boom)
    argv = cli(tmp_path, src, out)[3:]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unexpected error (ValueError)" in lines[0]
    (report,) = (out / ".medveil").glob("crash-*.txt")
    text = report.read_text()
    assert "builtins.ValueError" in text and "in boom" in text
    assert "Fakename" not in text and "99999" not in text and "Fakename" not in err


def test_serve_needs_an_allow_list_or_allow_any(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pynetdicom")
    from medveil.cli.main import build_parser

    secret = tmp_path / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    rc = main(["serve", "--secret-file", str(secret), "--store", str(tmp_path / "s")])
    assert rc == 2 and "--allow-any" in capsys.readouterr().err
    args = build_parser().parse_args(["serve", "--secret-file", "x", "--store", "s"])
    assert args.host == "127.0.0.1"
