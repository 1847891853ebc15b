"""``medveil seal IN OUT``: encrypt a file or a folder tree into age files.

The output opens with the ``age`` command (``age -d -i key.txt FILE.age``) as well as with
``medveil unseal``. Passphrases come from ``MEDVEIL_PASSPHRASE`` or a prompt.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from tqdm import tqdm

from medveil.cli.console import error
from medveil.crypto import agefile as age
from medveil.errors import AuthenticationError

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "MEDVEIL_PASSPHRASE"
SUFFIX = ".age"


class SealKeys(TypedDict, total=False):
    """Keyword arguments naming who can open a sealed file: recipients or a passphrase."""

    recipients: list[str]
    passphrase: str


def read_passphrase(confirm: bool) -> str:
    """The passphrase from MEDVEIL_PASSPHRASE, else asked twice (once when unsealing)."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        if not env:
            raise ValueError(f"{PASSPHRASE_ENV} is set but empty")
        return env
    first = getpass.getpass("Passphrase: ")
    if not first:
        raise ValueError("the passphrase must not be empty")
    if confirm and getpass.getpass("Confirm passphrase: ") != first:
        raise ValueError("the passphrases do not match")
    return first


def plan(src: Path, dst: Path, to_name: Callable[[str], str | None]) -> Iterator[tuple[Path, Path]]:
    """(input, output) pairs: one for a file, every mapped file of a folder tree otherwise."""
    if src.is_file():
        yield src, dst
        return
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        name = to_name(path.name)
        if name is not None:
            yield path, dst / path.relative_to(src).parent / name


def run_jobs(
    jobs: list[tuple[Path, Path]],
    work: Callable[[Path, Path, Callable[[int], None]], object],
    force: bool,
    verb: str,
) -> int:
    """Run work(src, dst, progress) over every job with one byte-progress bar."""
    clash = [d for _, d in jobs if d.exists()]
    if clash and not force:
        error(
            log,
            f"{verb}: {clash[0]} exists ({len(clash)} output(s) would be replaced); use --force",
        )
        return 2
    total = sum(s.stat().st_size for s, _ in jobs)
    with tqdm(total=total, unit="B", unit_scale=True, desc=verb, disable=None) as bar:
        for src, dst in jobs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                work(src, dst, bar.update)
            except AuthenticationError as exc:
                bar.close()
                error(log, f"{verb}: {src}: {exc}")
                return 1
    return 0


def add_arguments(
    p: argparse.ArgumentParser,
    *,
    input_help: str,
    output_help: str,
    key_flags: tuple[str, str],
    key_options: dict[str, Any],
    passphrase_help: str,
) -> None:
    """Add IN, OUT, the key option (or -p/--passphrase), --threads and --force to p."""
    p.add_argument("input", type=Path, metavar="IN", help=input_help)
    p.add_argument("output", type=Path, metavar="OUT", help=output_help)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(*key_flags, **key_options)
    who.add_argument("-p", "--passphrase", action="store_true", help=passphrase_help)
    p.add_argument("--threads", type=int, default=0, help="worker threads (0: all cores)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")


def recipient_keys(args: argparse.Namespace) -> SealKeys:
    """age.encrypt_* keyword arguments from args.passphrase (asked twice) or args.recipient."""
    if args.passphrase:
        return {"passphrase": read_passphrase(confirm=True)}
    for r in args.recipient:
        age.bech32_decode(r)  # fail before any work on a mistyped key
    return {"recipients": args.recipient}


def run_tree(
    args: argparse.Namespace,
    verb: str,
    keys: Callable[[argparse.Namespace], Mapping[str, object]],
    to_name: Callable[[str], str | None],
    crypt: Callable[..., object],
    usage_errors: tuple[type[Exception], ...],
) -> int:
    """Apply crypt to args.input -> args.output (file or tree); usage_errors report as exit 2."""
    if not args.input.exists():
        error(log, f"{verb}: {args.input} does not exist")
        return 2
    try:
        kwargs = keys(args)
        jobs = list(plan(args.input, args.output, to_name))
        return run_jobs(
            jobs,
            lambda s, d, progress: crypt(s, d, threads=args.threads, progress=progress, **kwargs),
            args.force,
            verb,
        )
    except usage_errors as exc:
        error(log, f"{verb}: {exc}")
        return 2


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``seal`` subcommand."""
    p = sub.add_parser(
        "seal",
        help="encrypt a file or folder tree into age files (X25519 recipient or passphrase)",
        description=(
            "Encrypt IN into the age format (age-encryption.org/v1). A folder is mirrored "
            "into OUT with '.age' added to every file name. Outputs are written under a "
            f"temporary name and renamed when complete. The passphrase is read from "
            f"${PASSPHRASE_ENV} or asked for."
        ),
    )
    add_arguments(
        p,
        input_help="file or folder to encrypt",
        output_help="age file, or folder for a tree",
        key_flags=("-r", "--recipient"),
        key_options={
            "action": "append",
            "metavar": "AGE_PUBLIC_KEY",
            "help": "age1... public key to encrypt to (repeatable)",
        },
        passphrase_help="encrypt to a passphrase",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Seal IN to OUT; returns 0 on success, 1 on a crypto failure, 2 on a usage error."""
    return run_tree(
        args,
        "seal",
        recipient_keys,
        lambda name: name + SUFFIX,
        age.encrypt_file,
        (ValueError,),
    )
