"""No canary of the adversarial corpus gets out, whichever road a file takes.

Each case of :mod:`tests.adversarial.generator` hides identifying values in one place.
The roads: ``medveil deid`` on a folder and on a zip (every output byte, the records under
OUTPUT/.medveil and the console are searched), the Python API (``Deidentifier.apply`` then
``write_dataset``, and ``apply_bytes``), and ``clean_instance`` (the pipeline every
runner shares) checked by ``medveil verify``. A case passes when nothing of it leaks and
it was written or quarantined with a reason; a damaged file must be quarantined.

Cases of a class another change is still fixing are marked ``xfail(strict=True)`` with
the class named, so they flip to failures (and the mark must go) once fixed.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from medveil.dicom.io import write_dataset
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import MedveilError, QuarantineError
from medveil.policy.schema import Policy
from medveil.verify import verify_archive

from .generator import Case, corpus, leaks

SECRET = bytes(range(32))
CASES = corpus()
BY_PLACE = {c.place: c for c in CASES}

# Cases whose class is not fixed yet, per road: {(road, place): class}. With strict=True, a
# fixed case fails until its entry goes.
KNOWN: dict[tuple[str, str], str] = {}


def _mark(road: str, place: str) -> pytest.MarkDecorator | tuple[()]:
    why = KNOWN.get((road, place))
    if why is None:
        return ()
    return pytest.mark.xfail(strict=True, reason=f"issue 18 class {why}")


def _params(road: str) -> list[object]:
    return [pytest.param(c.place, id=c.place, marks=_mark(road, c.place)) for c in CASES]


def _file_name(i: int) -> str:
    """Input file names carry no canary (the case index only)."""
    return f"case{i:03d}.dcm"


@dataclass
class CliRun:
    """One ``medveil deid`` run: everything it wrote and printed, and its records."""

    blob: bytes = b""  # every output byte (records included) and the console, joined
    quarantined: dict[str, str] = field(default_factory=dict)  # input name -> reason
    summary: dict[str, object] = field(default_factory=dict)
    returncode: int = 0


def _policy_toml(options: tuple[str, ...]) -> str:
    """A policy file naming exactly these options (as an operator would write it)."""
    return "[profile]\noptions = [" + ", ".join(f'"{o}"' for o in options) + "]\n"


def _run_cli(src: Path, out: Path, secret: Path, policy: Path | None = None) -> CliRun:
    cmd = [sys.executable, "-m", "medveil", "deid", str(src), str(out), "--quiet"]
    cmd += ["--secret-file", str(secret), "--workers", "2", "--no-fsync"]
    if policy is not None:
        cmd += ["--policy", str(policy)]
    proc = subprocess.run(cmd, capture_output=True, timeout=900, check=False)
    run = CliRun(returncode=proc.returncode)
    chunks = [proc.stdout, proc.stderr]
    for path in sorted(out.rglob("*")):
        if path.is_file():
            chunks.append(path.read_bytes())
            chunks.append(str(path.relative_to(out)).encode())
    run.blob = b"\0\0".join(chunks)
    records = out / ".medveil"
    q = records / "quarantine.jsonl"
    if q.exists():
        for line in q.read_text().splitlines():
            row = json.loads(line)
            run.quarantined[Path(row["input"]).name] = row["reason"]
    s = records / "summary.json"
    if s.exists():
        run.summary = json.loads(s.read_text())
    return run


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("adversarial-in")
    for i, case in enumerate(CASES):
        (folder / _file_name(i)).write_bytes(case.data)
    return folder


@pytest.fixture(scope="module")
def cli_runs(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliRun]:
    base = tmp_path_factory.mktemp("adversarial-cli")
    secret = base / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    archive = base / "in.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(inputs.iterdir()):
            zf.write(path, path.name)
    runs = {
        "cli-folder": _run_cli(inputs, base / "out-folder", secret),
        "cli-zip": _run_cli(archive, base / "out-zip", secret),
    }
    # The cases cleaned under options of their own (Retain Safe Private, say): one run
    # per set of options, over those cases only.
    for options in sorted({c.options for c in CASES if c.options}):
        name = "cli-" + "+".join(options)
        folder = base / f"in-{name}"
        folder.mkdir()
        for i, case in enumerate(CASES):
            if case.options == options:
                (folder / _file_name(i)).write_bytes(case.data)
        policy = base / f"{name}.toml"
        policy.write_text(_policy_toml(options))
        runs[name] = _run_cli(folder, base / f"out-{name}", secret, policy)
    return runs


class Engines:
    """The API's engine for each case: the default policy, or the case's own options."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, ...], Deidentifier] = {}

    def __call__(self, case: Case) -> Deidentifier:
        """The engine of the case's policy (built once per set of options)."""
        hit = self._by.get(case.options)
        if hit is None:
            policy = Policy.from_toml(_policy_toml(case.options)) if case.options else Policy()
            hit = self._by[case.options] = Deidentifier(policy, SECRET)
        return hit


@pytest.fixture(scope="module")
def engine() -> Engines:
    return Engines()


def test_corpus_is_broad_and_its_canaries_unique() -> None:
    assert len(CASES) >= 60
    seen: dict[str, str] = {}
    for case in CASES:
        assert leaks(case, case.data), f"{case.place}: nothing planted in the input"
        for needle in case.needles:
            assert seen.setdefault(needle, case.place) == case.place, f"{needle!r} reused"


@pytest.mark.parametrize("road", ["cli-folder", "cli-zip"])
def test_cli_accounts_for_every_input(cli_runs: dict[str, CliRun], road: str) -> None:
    run = cli_runs[road]
    summary = run.summary
    assert summary, "the run wrote no summary"
    written, quarantined = summary.get("written"), summary.get("quarantined")
    assert written is not None and quarantined is not None
    assert written + quarantined == len(CASES), summary
    for name, other in cli_runs.items():
        if name.startswith("cli-") and name not in ("cli-folder", "cli-zip"):
            mine = [c for c in CASES if "cli-" + "+".join(c.options) == name]
            done = other.summary.get("written", 0) + other.summary.get("quarantined", 0)  # type: ignore[operator]
            assert done == len(mine), (name, other.summary)
            # A case that must be refused is quarantined under its own options too.
            assert other.summary.get("quarantined", 0) >= sum(bool(c.refuse) for c in mine)  # type: ignore[operator]
    assert all(reason.strip() for reason in run.quarantined.values())
    assert len(run.quarantined) == quarantined
    assert quarantined >= sum(c.damaged for c in CASES)


@pytest.mark.parametrize("place", _params("cli-folder"))
def test_cli_folder_leaks_nothing(cli_runs: dict[str, CliRun], place: str) -> None:
    _assert_cli(cli_runs["cli-folder"], place)


@pytest.mark.parametrize("place", _params("cli-zip"))
def test_cli_zip_leaks_nothing(cli_runs: dict[str, CliRun], place: str) -> None:
    _assert_cli(cli_runs["cli-zip"], place)


@pytest.mark.parametrize("place", [c.place for c in CASES if c.options])
def test_cli_with_the_cases_options_leaks_nothing(cli_runs: dict[str, CliRun], place: str) -> None:
    _assert_cli(cli_runs["cli-" + "+".join(BY_PLACE[place].options)], place)


def _assert_cli(run: CliRun, place: str) -> None:
    case = BY_PLACE[place]
    # The records name inputs by a keyed hash (names may be PHI), so a damaged file's
    # quarantine is counted in test_cli_accounts_for_every_input, and checked by name on
    # the pipeline road.
    assert leaks(case, run.blob) == [], f"{place}: canaries in the output, records or console"


def _api_outputs(engines: Engines, case: Case) -> list[bytes]:
    """What the Python API writes for the case (nothing when it refuses the file)."""
    import pydicom

    engine = engines(case)

    outputs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A damaged file read tolerantly by the caller is beyond apply()'s reach: only the
        # byte-level API can refuse it.
        try:
            if not case.damaged:
                ds = pydicom.dcmread(io.BytesIO(case.data))
                engine.apply(ds, source="input")
                outputs.append(write_dataset(ds))
        except (MedveilError, QuarantineError):
            pass
        try:
            data, _ = engine.apply_bytes(case.data, source="input")
            outputs.append(data)
        except (MedveilError, QuarantineError):
            pass
    return outputs


@pytest.mark.parametrize("place", _params("api"))
def test_api_leaks_nothing(engine: Engines, place: str) -> None:
    case = BY_PLACE[place]
    for out in _api_outputs(engine, case):
        assert leaks(case, out) == [], f"{place}: canaries in the API's output"


@pytest.mark.parametrize("place", _params("pipeline"))
def test_pipeline_and_verify_agree(engine: Engines, place: str, tmp_path: Path) -> None:
    case = BY_PLACE[place]
    result = clean_instance(engine(case), bytearray(case.data), "input")
    assert result.status in ("written", "quarantined"), result.status
    if case.refuse:
        assert result.status == "quarantined", f"{place}: must be refused, was written"
        assert case.refuse in result.reason, result.reason
    if result.status == "quarantined":
        assert result.reason.strip()
        assert leaks(case, result.reason.encode()) == []
        return
    assert not case.damaged, f"{place}: a damaged file was written"
    assert leaks(case, result.data) == [], f"{place}: canaries in the written file"
    row = json.dumps(result.row, default=str) + result.relpath
    assert leaks(case, row.encode()) == [], f"{place}: canaries in the catalog row or path"
    (tmp_path / "orig").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "orig" / "a.dcm").write_bytes(case.data)
    (tmp_path / "out" / "b.dcm").write_bytes(result.data)
    report = verify_archive(tmp_path / "orig", tmp_path / "out")
    assert report.findings == [], f"{place}: verify disagrees\n{report.table()}"


@pytest.mark.parametrize("place", _params("verify"))
def test_verify_catches_what_leaks(engine: Engines, place: str, tmp_path: Path) -> None:
    """verify alone finds every leak of the API's unchecked output; damaged: cannot verify.

    The API writes without the pipeline's post-check, so its outputs still hold what the
    engine missed: the generator's truth says which canaries are there, and verify,
    knowing nothing of the generator, must report those files.
    """
    case = BY_PLACE[place]
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "a.dcm").write_bytes(case.data)
    if case.damaged:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "b.dcm").write_bytes(case.data)
        report = verify_archive(tmp_path / "orig", tmp_path / "out")
        assert report.damaged_originals and report.exit_code != 0
        assert report.table().splitlines()[-1] != "CLEAN"
        return
    for i, out in enumerate(_api_outputs(engine, case)):
        folder = tmp_path / f"out{i}"
        folder.mkdir()
        (folder / "b.dcm").write_bytes(out)
        truth = leaks(case, out)
        report = verify_archive(tmp_path / "orig", folder)
        if truth:
            assert report.findings, f"{place}: verify missed {len(truth)} leaked canaries"


def _naive(data: bytes) -> bytes:
    """A de-identifier that only replaces the patient's name, IDs, dates and UIDs."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        for kw, value in (
            ("PatientName", "ANON"),
            ("PatientID", "ANON"),
            ("PatientBirthDate", ""),
            ("AccessionNumber", ""),
            ("StudyDate", "20000101"),
            ("SOPInstanceUID", "2.25.1"),
            ("StudyInstanceUID", "2.25.2"),
            ("SeriesInstanceUID", "2.25.3"),
            ("FrameOfReferenceUID", "2.25.4"),
        ):
            if kw in ds:
                setattr(ds, kw, value)
        ds.file_meta.MediaStorageSOPInstanceUID = "2.25.1"
        buf = io.BytesIO()
        ds.save_as(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "place", [p for p in _params("verify-naive") if not BY_PLACE[p.values[0]].damaged]
)  # type: ignore[attr-defined]
def test_verify_catches_every_hiding_place(place: str, tmp_path: Path) -> None:
    """verify alone finds what a naive de-identifier leaves in each hiding place."""
    case = BY_PLACE[place]
    out = _naive(case.data)
    truth = leaks(case, out)
    if not truth:
        pytest.skip("the naive cleaning left nothing of this case")
    (tmp_path / "orig").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "orig" / "a.dcm").write_bytes(case.data)
    (tmp_path / "out" / "b.dcm").write_bytes(out)
    report = verify_archive(tmp_path / "orig", tmp_path / "out")
    assert report.exit_code == 1
    if case.refuse:  # what it hides cannot be inspected: reported, never called clean
        assert report.unreadable_outputs, f"{place}: verify called it readable"
        return
    assert report.findings, f"{place}: verify missed {len(truth)} leaked canaries"
