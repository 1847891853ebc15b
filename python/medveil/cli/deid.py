"""``medveil deid INPUT OUTPUT``: de-identify a whole archive (or the bundled demo)."""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from medveil.cli.console import Progress, debug, error, info, say, warning
from medveil.cli.options import add_output_options
from medveil.cli.startup import end_start_up
from medveil.errors import MedveilError, PolicyError
from medveil.policy.keys import create_secret, default_secret_path, load_secret
from medveil.policy.presets import load_policy
from medveil.policy.schema import Policy

if TYPE_CHECKING:
    from medveil.run.archive import RunSummary

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``deid`` subcommand."""
    p = sub.add_parser(
        "deid", help="de-identify a folder, .zip or .tar(.gz) archive of DICOM files"
    )
    p.add_argument("input", nargs="?", help="folder tree, .zip or .tar(.gz) archive")
    p.add_argument(
        "output", nargs="?", help="output folder (created; must be empty unless --resume)"
    )
    p.add_argument(
        "--demo", metavar="OUT", help="run on a bundled synthetic archive, writing to OUT"
    )
    p.add_argument(
        "--policy",
        help="preset (basic, research, tcia, safe-harbor) or policy TOML file (default: research)",
    )
    p.add_argument("--secret-file", help="32-byte project secret (default: created once per user)")
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into OUTPUT; also quarantines the files a QA "
        "reviewer rejected in OUTPUT/qa-signoff.json",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run the whole pipeline but write no DICOM file: print what would be released "
        "and what quarantined, with reasons (report: OUTPUT/.medveil/dry-run.json)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="skip flushing outputs to disk (renames stay atomic; a power cut may lose "
        "recent files): for scratch outputs",
    )
    p.add_argument(
        "--vault",
        metavar="URL",
        help="record the crosswalk in a re-identification vault: sqlite:///path, a file "
        "path, or postgresql://... (needs --vault-key)",
    )
    p.add_argument(
        "--vault-key", metavar="FILE", help="vault key file (create with `medveil vault keygen`)"
    )
    p.add_argument(
        "--embed-originals",
        metavar="CERT",
        help="seal each file's replaced originals for this X.509 (RSA) recipient into the "
        "Encrypted Attributes Sequence (PS3.15 E.1.1 reversible de-identification)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="worker processes on this machine, or Apache Spark (as `medveil spark-deid`)",
    )
    p.add_argument("--master", help="Spark master URL with --engine spark, e.g. local[4], yarn")
    add_output_options(p, "worker")
    p.set_defaults(func=run, ends_start_up=True)


def _secret(args: argparse.Namespace, policy: Policy) -> bytes:
    path = args.secret_file or policy.secret_file
    if path:
        return load_secret(path)
    default = default_secret_path()
    if default.exists():
        return load_secret(default)
    secret = create_secret(default)
    warning(
        log,
        f"created a new project secret at {default} (mode 0600); keep it safe and "
        "reuse it so that pseudonyms stay the same across runs",
    )
    return secret


def _open_vault(args: argparse.Namespace, secret: bytes):  # type: ignore[no-untyped-def]
    """The vault of --vault/--vault-key, or None; a missing half or a reused key is an error."""
    url, key_file = getattr(args, "vault", None), getattr(args, "vault_key", None)
    if not url and not key_file:
        return None
    if not url or not key_file:
        raise MedveilError(
            "--vault and --vault-key go together (create a key with `medveil vault keygen FILE`)"
        )
    from medveil.crypto.vault import Vault, load_key

    key = load_key(key_file)
    if hmac.compare_digest(key, secret):
        raise MedveilError(
            "the vault key must differ from the pseudonym secret (`medveil vault keygen FILE`)"
        )
    return Vault(url, key)


def run(args: argparse.Namespace) -> int:
    """Run the archive conversion and print a summary; exit 0 clean, 1 quarantined, 2 error."""
    if getattr(args, "engine", "local") == "spark":
        end_start_up()
        from medveil.cli.spark_deid import run as run_spark

        if getattr(args, "dry_run", False):
            # The Spark job has no dry run: it would write the release.
            error(log, "--dry-run runs on this machine only: leave out --engine spark")
            return 2

        return run_spark(args)
    from medveil.run.archive import deidentify_archive

    try:
        policy = load_policy(args.policy)
        if args.demo:
            from medveil.run.demo import with_demo_rules, write_demo_archive

            source = Path(tempfile.mkdtemp(prefix="medveil-demo-"))
            write_demo_archive(source)
            policy = with_demo_rules(policy)
            args.input, args.output = str(source), args.demo
            info(log, f"demo archive with fake PHI written to {source}")
        if not args.input or not args.output:
            error(log, "give INPUT and OUTPUT to deid, or --demo OUT")
            return 2
        secret = _secret(args, policy)
        vault = _open_vault(args, secret)
        debug(
            log,
            f"policy {args.policy or 'research'}, workers {args.workers or 'all cores'}, "
            f"resume {bool(args.resume)}, vault {'on' if vault is not None else 'off'}",
        )
    except (PolicyError, MedveilError) as exc:
        error(log, str(exc))
        return 2

    # Created only now that the inputs are checked; drawn (or logged, off a terminal) from
    # the first file done, with an ETA once the archive reports a total.
    bar = Progress(log, unit="file", enabled=not args.quiet)

    def progress(summary: RunSummary) -> None:
        bar.update(
            summary.files_in,
            getattr(summary, "total", None),
            f"{summary.mb_per_second:.1f} MB/s, {summary.quarantined} quarantined",
        )

    def quarantined(name: str, reason: str) -> None:
        # A warning, so that -q keeps it; written above the bar by the console handler.
        warning(log, f"quarantined: {name}: {reason}", bare=True)

    labels = {rule.name: rule.label for rule in policy.filters if rule.label}

    def verdict(name: str, status: str, detail: str) -> None:
        # A dry run's listing, on stdout: one line per input (names may hold PHI: shown
        # here only; the report file names inputs by keyed token).
        if status == "excluded":
            detail = _rule(detail, labels)
        say(f"{_VERDICT_WORDS.get(status, status):16} {name}{_ARROW.get(status, ': ')}{detail}")

    dry_run = bool(getattr(args, "dry_run", False))

    def problem(name: str, reason: str) -> None:
        warning(log, f"{name}: {reason}")

    if hasattr(os, "fork"):
        # The rest of start-up: the engine's modules and the policy's compilation (kept
        # on the policy), which the run builds its engine from before it forks workers.
        import medveil.engine.instance  # noqa: F401

        try:
            policy.compile()
        except Exception:  # the run builds its engine again, and reports what fails there
            pass
    end_start_up()
    try:
        summary = deidentify_archive(
            args.input,
            args.output,
            policy=policy,
            secret=secret,
            workers=args.workers,
            resume=args.resume,
            # Without a bar (--quiet), no call per file and no second listing for a total.
            progress=progress if bar.enabled else None,
            on_quarantine=None if dry_run else quarantined,
            on_problem=problem,
            vault=vault,
            embed_originals=getattr(args, "embed_originals", None),
            durable=not args.no_fsync,
            max_file_size=getattr(args, "max_file_size", None),
            file_timeout=getattr(args, "file_timeout", 60.0),
            dicomdir=getattr(args, "dicomdir", False),
            dry_run=dry_run,
            on_verdict=verdict if dry_run else None,
        )
    except MedveilError as exc:
        error(log, str(exc))
        return 2
    finally:
        bar.close()
        if vault is not None:
            vault.close()
    state = "stopped" if summary.failed else "interrupted" if summary.interrupted else "done"
    # The run's records are written and closed, its workers joined, the vault closed: the
    # program may end without the interpreter's teardown (see medveil.cli.main.command).
    args.exit_now = True
    if dry_run:
        _print_dry_run(summary, state, Path(args.output), labels)
        return summary.exit_code
    print(
        f"medveil deid {state}: {summary.files_in} files in, {summary.written} written, "
        f"{summary.skipped} skipped ({_reasons(summary.skipped_reasons) or 'not DICOM'}), "
        f"{summary.quarantined} quarantined"
        f"{f' ({summary.rejected} rejected in QA review)' if summary.rejected else ''}"
        f"{_excluded(summary, labels)}"
        f"{f', {summary.duplicates} duplicates' if summary.duplicates else ''}"
        f"{f', {summary.replaced} DICOMDIR replaced' if summary.replaced else ''}"
        f"{f', {summary.resumed} already done' if summary.resumed else ''}"
        f"{f', {summary.unreadable} folders unreadable' if summary.unreadable else ''}; "
        f"{summary.seconds:.1f} s, {summary.files_per_second:.0f} files/s, "
        f"{summary.mb_per_second:.1f} MB/s{_engines(summary)}. "
        f"Records: {Path(args.output) / '.medveil'}"
    )
    if summary.dicomdir:
        left = summary.dicomdir_left_out
        print(
            f"medveil: DICOMDIR for the output written to {Path(args.output) / summary.dicomdir}"
            f"{f' ({left} files it has no record type for left out)' if left else ''}"
        )
    if summary.unresolved_references or summary.references_unchecked:
        unchecked = summary.references_unchecked
        warning(
            log,
            f"{summary.unresolved_references} references of released files point "
            "at no released instance, series, study or frame of reference"
            f"{f'; {unchecked} files not checked' if unchecked else ''}",
        )
    if summary.retried:
        warning(
            log,
            f"{summary.retried} retries after failures outside the files "
            f"({_reasons(summary.retry_reasons)})",
        )
    if summary.failed:
        error(
            log,
            f"stopped with {summary.failed} files not done: {summary.failure}; "
            "fix the cause, then run again with --resume",
        )
    return summary.exit_code


# How a dry run's listing names each verdict, and what joins the name to its detail.
_VERDICT_WORDS = {
    "written": "would release",
    "quarantined": "would quarantine",
    "duplicate": "duplicate",
    "replaced": "DICOMDIR",
}
_ARROW = {"written": " -> "}


def _rule(name: str, labels: dict[str, str]) -> str:
    """A [filter] rule as the console names it: 'exclude[0] (photographs)'."""
    label = labels.get(name)
    return f"{name} ({label})" if label else name


def _excluded(summary: RunSummary, labels: dict[str, str]) -> str:
    """', 5 excluded (3 by exclude[0] (photographs), 2 by include)', or '' when none."""
    n = sum(summary.excluded.values())
    if not n:
        return ""
    by = ", ".join(f"{k} by {_rule(r, labels)}" for r, k in summary.excluded.most_common(4))
    return f", {n} excluded ({by})"


def _print_dry_run(summary: RunSummary, state: str, output: Path, labels: dict[str, str]) -> None:
    """The last lines of a dry run: what a real run would do; nothing was written."""
    print(
        f"medveil deid dry run {state}: {summary.files_in} files in, {summary.written} "
        f"would be released, {summary.quarantined} would be quarantined"
        f"{_excluded(summary, labels)}"
        f", {summary.skipped} skipped"
        f"{f' ({_reasons(summary.skipped_reasons)})' if summary.skipped else ''}"
        f"{f', {summary.duplicates} duplicates' if summary.duplicates else ''}"
        f"{f', {summary.replaced} DICOMDIR replaced' if summary.replaced else ''}"
        f"; {summary.seconds:.1f} s. No DICOM file was written; report: "
        f"{output / '.medveil' / 'dry-run.json'}"
    )


def _reasons(counts: Counter[str]) -> str:
    """'3 not DICOM, 1 not a regular file (FIFO)': the commonest reasons with counts."""
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common(4))


def _engines(summary: RunSummary) -> str:
    """' (1900 native, 90 by the raw-byte engine, 10 by the Dataset engine: why)', or ''."""
    native = summary.engines.get("native", 0)
    raw, dataset = summary.engines.get("raw", 0), summary.engines.get("dataset", 0)
    if not native + raw + dataset:
        return ""
    why = "; ".join(f"{n} {reason}" for reason, n in summary.declined.most_common(3))
    return f" ({native} native, {raw} by the raw-byte engine, {dataset} by the Dataset engine" + (
        f": {why})" if why else ")"
    )
