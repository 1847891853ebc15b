"""``medveil vault keygen|export|rotate|audit``: manage the re-identification vault."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medveil.cli.console import error, info
from medveil.errors import AuthenticationError, MedveilError

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``vault`` subcommand and its actions."""
    p = sub.add_parser(
        "vault",
        help="re-identification vault: create a key, export the crosswalk, rotate the key",
        description=(
            "Manage the vault that `medveil deid --vault URL --vault-key FILE` fills: the "
            "crosswalk from pseudonyms and new UIDs to the original values, each sealed "
            "with ChaCha20-Poly1305 under the vault key."
        ),
    )
    acts = p.add_subparsers(dest="vault_command", metavar="ACTION")

    k = acts.add_parser(
        "keygen",
        help="create a vault key file (mode 0600, never overwriting)",
        description=(
            "Write 32 random bytes as hex to FILE with mode 0600. Keep it apart from the "
            "pseudonym secret and backed up: without it the vault cannot be read."
        ),
    )
    k.add_argument("file", type=Path, metavar="FILE")
    k.set_defaults(func=run_keygen)

    e = acts.add_parser(
        "export",
        help="write the crosswalk (CSV) for a site as an age file",
        description=(
            "Decrypt the whole crosswalk (or the patients listed with --only) and write it "
            "as CSV inside an age file sealed to the site's age1... public key or a "
            "passphrase ($MEDVEIL_PASSPHRASE or asked). The export is audited."
        ),
    )
    _vault_args(e)
    e.add_argument("--key-file", required=True, metavar="K", help="the vault key file")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "-r", "--recipient", action="append", metavar="AGE_PUBLIC_KEY", help="age1... (repeatable)"
    )
    who.add_argument("-p", "--passphrase", action="store_true", help="seal to a passphrase")
    e.add_argument(
        "--only", type=Path, metavar="FILE", help="file of patient pseudonyms, one per line"
    )
    e.add_argument("--force", action="store_true", help="replace OUT if it exists")
    e.add_argument("output", type=Path, metavar="OUT", help="age file to write")
    e.set_defaults(func=run_export)

    r = acts.add_parser(
        "rotate",
        help="re-seal every row under a new vault key, in one transaction",
        description=(
            "Open every sealed value with the old key and seal it again with the new one "
            "(create it first with `medveil vault keygen`), all in one transaction: if any "
            "value fails to open, nothing changes. Writers still using the old key fail."
        ),
    )
    _vault_args(r)
    r.add_argument("--old-key", required=True, metavar="K", help="the current vault key file")
    r.add_argument("--new-key", required=True, metavar="K", help="the new vault key file")
    r.set_defaults(func=run_rotate)

    a = acts.add_parser(
        "audit",
        help="print the audit log (who asked what, when; no key needed, no PHI)",
    )
    _vault_args(a)
    a.set_defaults(func=run_audit)

    def usage(args: argparse.Namespace) -> int:
        """No action given: print the help, exit 2."""
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _vault_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vault",
        required=True,
        metavar="URL",
        help="sqlite:///path, a file path, or postgresql://",
    )


def run_keygen(args: argparse.Namespace) -> int:
    """Create the key file; returns 2 if it exists."""
    from medveil.cli.secret import create_key_file_reporting
    from medveil.crypto.vault import keygen

    return create_key_file_reporting(
        keygen,
        args.file,
        exists="vault keygen: {path} exists; not overwriting a key",
        failed="vault keygen: {path}: {error}",
        done="vault keygen: wrote {path} (mode 0600)",
        done_to_stderr=True,
    )


def run_export(args: argparse.Namespace) -> int:
    """Export the crosswalk sealed for a site; 0 on success, 2 on any error."""
    from medveil.cli.seal import recipient_keys
    from medveil.crypto.vault import Vault

    if args.output.exists() and not args.force:
        error(log, f"vault export: {args.output} exists; use --force")
        return 2
    try:
        keys = recipient_keys(args)  # a mistyped key fails before anything is decrypted
        only = None
        if args.only:
            only = [x.strip() for x in args.only.read_text().splitlines() if x.strip()]
        with Vault.open(args.vault, args.key_file, create=False) as vault:
            n = vault.export(args.output, only=only, replace=args.force, **keys)
    except FileExistsError:
        error(log, f"vault export: {args.output} exists; use --force")
        return 2
    except (AuthenticationError, MedveilError, ValueError, OSError) as exc:
        error(log, f"vault export: {exc}")
        return 2
    info(log, f"vault export: {n} rows sealed into {args.output}")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """Re-seal the vault under the new key; 0 on success, 2 on any error (nothing changed)."""
    from medveil.crypto.vault import Vault, load_key

    try:
        new_key = load_key(args.new_key)
        with Vault.open(args.vault, args.old_key, create=False) as vault:
            n = vault.rotate(new_key)
    except (AuthenticationError, MedveilError, ValueError) as exc:
        error(log, f"vault rotate: {exc}; the vault is unchanged")
        return 2
    info(log, f"vault rotate: {n} values re-sealed; the old key no longer opens the vault")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """Print the audit log as tab-separated lines."""
    from medveil.crypto.vault import Vault

    try:
        # The audit log holds no PHI and is readable without the key (any 32 bytes do).
        with Vault(args.vault, bytes(32), create=False, check_key=False) as vault:
            rows = vault.audit_log()
    except MedveilError as exc:
        error(log, f"vault audit: {exc}")
        return 2
    for row in rows:
        print("\t".join(row[k] for k in ("at", "os_user", "host", "action", "query", "outcome")))
    return 0
