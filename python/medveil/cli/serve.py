"""``medveil serve``: a de-identifying DICOM Storage SCP (store or forward)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from medveil.cli.console import error
from medveil.errors import MedveilError, PolicyError
from medveil.policy.presets import load_policy

if TYPE_CHECKING:
    from medveil.net.gateway import GatewayConfig

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="run a DICOM gateway that de-identifies every instance it receives",
        description=(
            "Accept C-ECHO and C-STORE, de-identify each instance exactly as `medveil deid` "
            "would, and acknowledge it only once it is written durably (--store) or spooled "
            "for forwarding (--forward). Quarantined instances get status 0xC000 and are "
            "logged by a keyed hash; instances a [filter] rule excludes are accepted "
            "(0x0000), not stored, and logged as excluded. Logs are JSON lines on stderr, "
            "without PHI. SIGTERM finishes the instances in flight, then exits. Needs medveil[net]."
        ),
    )
    p.add_argument("--port", type=int, default=11112, help="TCP port (default 11112)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for all)",
    )
    p.add_argument("--ae-title", default="MEDVEIL", help="our AE title (default MEDVEIL)")
    p.add_argument(
        "--policy",
        help="preset (basic, research, tcia, safe-harbor) or policy TOML file (default: research)",
    )
    p.add_argument("--secret-file", required=True, help="32-byte project secret")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--store", metavar="DIR", help="write cleaned instances under DIR")
    out.add_argument(
        "--forward", metavar="HOST:PORT:AET", help="forward cleaned instances to a DICOM node"
    )
    p.add_argument(
        "--spool",
        metavar="DIR",
        help="with --forward: where instances wait for the destination (default ./medveil-spool)",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="AET@HOST",
        help="allowed caller: AE title at an address, network or host ('*' for any); "
        "repeatable; required unless --allow-any",
    )
    p.add_argument(
        "--allow-any",
        action="store_true",
        help="accept any calling AE title from any address (only on a trusted network)",
    )
    p.add_argument(
        "--vault",
        metavar="URL",
        help="record every stored instance's crosswalk in a re-identification vault "
        "(sqlite:///path, a file path, or postgresql://...) before acknowledging it; needs "
        "--vault-key",
    )
    p.add_argument(
        "--vault-key", metavar="FILE", help="vault key file (create with `medveil vault keygen`)"
    )
    p.add_argument("--tls-cert", help="server certificate (PEM) to listen with TLS")
    p.add_argument("--tls-key", help="private key (PEM) of --tls-cert")
    p.add_argument("--tls-ca", help="CA bundle (PEM): require client certificates it signed")
    p.add_argument("--workers", type=int, default=None, help="cleaning processes (default: cores)")
    p.add_argument(
        "--max-pending-mb",
        type=int,
        default=512,
        help="received bytes waiting for a worker before senders are slowed (default 512)",
    )
    p.add_argument(
        "--retry-max-seconds",
        type=float,
        default=30.0,
        help="longest back-off between forwarding attempts (default 30)",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """Build the gateway configuration from parsed arguments."""
    from medveil.net.gateway import AllowRule, GatewayConfig, parse_forward
    from medveil.policy.keys import load_secret

    if not args.allow and not getattr(args, "allow_any", False):
        raise MedveilError(
            "give at least one --allow AET@HOST (who may send), or --allow-any to accept any caller"
        )
    vault = None
    url, key_file = getattr(args, "vault", None), getattr(args, "vault_key", None)
    if bool(url) != bool(key_file):
        raise MedveilError(
            "--vault and --vault-key go together (create a key with `medveil vault keygen FILE`)"
        )
    if url and key_file:
        from medveil.crypto.vault import load_key

        vault = (str(url), load_key(key_file))
    policy = load_policy(args.policy)
    return GatewayConfig(
        policy=policy,
        secret=load_secret(args.secret_file),
        store=Path(args.store) if args.store else None,
        forward=parse_forward(args.forward) if args.forward else None,
        spool=Path(args.spool) if args.spool else None,
        port=args.port,
        host=args.host,
        ae_title=args.ae_title,
        allow=[AllowRule.parse(a) for a in args.allow],
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        workers=args.workers,
        max_pending_bytes=args.max_pending_mb << 20,
        retry_max=args.retry_max_seconds,
        vault=vault,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; exit 0 after a clean shutdown, 2 on a setup error."""
    try:
        from medveil.net.gateway import Gateway
    except ImportError as exc:
        error(log, f"serve needs medveil[net] ({exc})")
        return 2
    try:
        gateway = Gateway(config_from_args(args))
        gateway.start()
    except (MedveilError, PolicyError, OSError) as exc:
        error(log, str(exc))
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):
        pass
    gateway.stop()
    return 0
