"""``medveil spark-deid INPUT OUTPUT --master URL``: de-identify an archive on Apache Spark.

Also reached as ``medveil deid --engine spark``. Needs the ``spark`` extra (pyspark) and a
Java runtime; on a cluster, submit it with spark-submit (see docs/spark.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from medveil.cli.console import error, warning
from medveil.cli.options import add_output_options
from medveil.errors import MedveilError, PolicyError
from medveil.policy.keys import default_secret_path
from medveil.policy.presets import load_policy
from medveil.policy.schema import Policy

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``spark-deid`` subcommand."""
    p = sub.add_parser(
        "spark-deid",
        help="de-identify an archive on Apache Spark (same output as `medveil deid`)",
        description=(
            "List INPUT (a folder or a Hadoop file system URI such as hdfs://...) with Spark, "
            "de-identify every file on the executors and write OUTPUT with the same layout and "
            "bytes as `medveil deid`. The secret file must exist at the same path on every node."
        ),
    )
    p.add_argument("input", help="input folder or URI (hdfs://, s3a://, file://, ...)")
    p.add_argument("output", help="output folder or URI (local/NFS; others through pyarrow)")
    add_spark_options(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed job into OUTPUT (local outputs): finished files are kept",
    )
    p.add_argument(
        "--policy",
        help="preset (basic, research, tcia, safe-harbor) or policy TOML file (default: research)",
    )
    p.add_argument(
        "--secret-file", help="32-byte project secret, present at this path on every node"
    )
    p.add_argument(
        "--vault",
        metavar="URL",
        help="record the crosswalk in a re-identification vault every executor reaches: "
        "postgresql://... on a cluster, a file path or sqlite:///path with a local master "
        "or a shared folder (needs --vault-key)",
    )
    p.add_argument(
        "--vault-key",
        metavar="FILE",
        help="vault key file, present at this path on every node (`medveil vault keygen`)",
    )
    add_output_options(p, "executor core")
    p.set_defaults(func=run)


def add_spark_options(p: argparse.ArgumentParser) -> None:
    """The Spark-only options (shared with ``medveil deid --engine spark``)."""
    p.add_argument(
        "--master",
        help="Spark master URL, e.g. local[4], spark://host:7077, yarn "
        "(default: the one spark-submit gives)",
    )
    p.add_argument("--partitions", type=int, help="Spark tasks to split the files into")
    p.add_argument(
        "--sqlite", action="store_true", help="also merge the catalog into catalog.sqlite"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty OUTPUT (same bytes)"
    )


def _secret_file(args: argparse.Namespace, policy: Policy) -> str:
    path = getattr(args, "secret_file", None) or policy.secret_file
    if path:
        return str(path)
    default = default_secret_path()
    if default.exists():
        return str(default)
    raise MedveilError(
        "give --secret-file (a 32-byte secret present at the same path on every Spark node); "
        "the Spark engine never creates one"
    )


def run(args: argparse.Namespace) -> int:
    """Run the Spark job and print a summary; exit 0 clean, 1 quarantined, 2 error."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        error(log, "the Spark engine needs pyspark: pip install 'medveil[spark]'")
        return 2
    from medveil.run.spark import deidentify_archive, is_local_uri, read_progress

    # Reached from `medveil deid --engine spark`: its local-engine options do not apply.
    local_only = [
        f"--{name.replace('_', '-')}"
        for name in ("demo", "workers", "embed_originals")
        if getattr(args, name, None) not in (None, False)
    ]
    if local_only:
        error(log, f"{', '.join(local_only)}: not available with the Spark engine")
        return 2
    if not args.input or not args.output:
        error(log, "give INPUT and OUTPUT")
        return 2
    vault_url, vault_key = getattr(args, "vault", None), getattr(args, "vault_key", None)
    if bool(vault_url) != bool(vault_key):
        error(log, "--vault and --vault-key go together (`medveil vault keygen FILE`)")
        return 2
    try:
        policy = load_policy(args.policy)
        secret_file = _secret_file(args, policy)
    except (PolicyError, MedveilError) as exc:
        error(log, str(exc))
        return 2

    resume = bool(getattr(args, "resume", False))
    # Rows a killed job finished (counted before this job adds its own).
    resumed = len(read_progress(args.output)) if resume and is_local_uri(args.output) else 0
    # A session already running in this process (a notebook, a test) is used and left open.
    running = SparkSession.getActiveSession()
    builder = SparkSession.builder.appName("medveil deid")
    if args.master:
        builder = builder.master(args.master)
    if running is None:
        default_executor_python(args.master)
    spark = running or builder.getOrCreate()
    try:
        check_executor_python(spark)
        df = deidentify_archive(
            spark,
            args.input,
            args.output,
            policy=policy,
            secret_file=secret_file,
            partitions=getattr(args, "partitions", None),
            sqlite=getattr(args, "sqlite", False),
            overwrite=getattr(args, "overwrite", False),
            resume=resume,
            vault_url=vault_url or None,
            vault_key_file=vault_key or None,
            dicomdir=bool(getattr(args, "dicomdir", False)),
            # As in the local run (`medveil deid` takes both options for either engine).
            max_file_size=getattr(args, "max_file_size", None),
            file_timeout=float(getattr(args, "file_timeout", 60.0)),
        )
        counts = {r["status"]: r["count"] for r in df.groupBy("status").count().collect()}
    except MedveilError as exc:
        error(log, str(exc))
        return 2
    finally:
        if running is None:
            spark.stop()
    written, skipped, quarantined, excluded, duplicates, replaced = (
        counts.get(k, 0)
        for k in ("written", "skipped", "quarantined", "excluded", "duplicate", "replaced")
    )
    print(
        f"medveil deid (spark) done: {sum(counts.values())} files in, {written} written, "
        f"{skipped} skipped (not DICOM), {quarantined} quarantined"
        f"{f', {excluded} excluded' if excluded else ''}"
        f"{f', {duplicates} duplicates' if duplicates else ''}"
        f"{f', {replaced} DICOMDIR replaced' if replaced else ''}"
        f"{f', {resumed} already done' if resumed else ''}. "
        f"Records: {args.output.rstrip('/')}/.medveil"
    )
    if is_local_uri(args.output):
        _print_dicomdir(args.output)
    return 1 if quarantined else 0


def _print_dicomdir(output: str) -> None:
    """The line about the new DICOMDIR (or why none was written), from summary.json."""
    import json

    from medveil.run.spark import local_path

    try:
        summary = json.loads((local_path(output) / ".medveil" / "summary.json").read_text())
    except (OSError, ValueError):
        return
    if summary.get("dicomdir"):
        left = int(summary.get("dicomdir_left_out") or 0)
        where = f"{output.rstrip('/')}/{summary['dicomdir']}"
        print(
            f"medveil: DICOMDIR for the output written to {where}"
            f"{f' ({left} files it has no record type for left out)' if left else ''}"
        )
    elif summary.get("failure"):
        warning(log, str(summary["failure"]))
    elif summary.get("dicomdir_left_out"):
        warning(
            log,
            f"no DICOMDIR written: pydicom has no record type for any of the "
            f"{summary['dicomdir_left_out']} released files (a required key such as "
            "Study ID removed by the policy)",
        )


DOCS = "docs/spark.md"


def _is_local(master: str | None) -> bool:
    """Whether a Spark master runs its executors on this machine (local, local[N], ...)."""
    master = master or os.environ.get("MASTER") or "local[*]"
    return master.startswith("local")


def default_executor_python(master: str | None) -> None:
    """Executors of a local master run this interpreter (the venv medveil is installed in).

    Spark otherwise starts the ``python3`` on PATH, which lacks medveil when it was
    installed into a virtual environment. An explicit PYSPARK_PYTHON is kept.
    """
    if _is_local(master) and not os.environ.get("PYSPARK_PYTHON"):
        os.environ["PYSPARK_PYTHON"] = sys.executable


def check_executor_python(spark: Any) -> None:
    """Fail before the job, in one line, when the executors' Python lacks medveil."""
    where = "PYSPARK_PYTHON=" + os.environ.get("PYSPARK_PYTHON", "(unset: python3 on PATH)")
    import importlib.util

    # A lambda: cloudpickle ships it by value, so the executor need not import medveil to
    # run it (a module function would be unpickled from medveil and fail with a traceback).
    probe = lambda _: importlib.util.find_spec("medveil") is not None  # noqa: E731
    try:
        ok = all(spark.sparkContext.parallelize([0], 1).map(probe).collect())
    except Exception as exc:  # a Python the executors cannot start, a version mismatch
        raise MedveilError(
            f"the Spark executors cannot run Python ({type(exc).__name__}; {where}): set "
            f"PYSPARK_PYTHON to a Python with medveil installed on every node (see {DOCS})"
        ) from None
    if not ok:
        raise MedveilError(
            f"the Spark executors' Python cannot import medveil ({where}): set PYSPARK_PYTHON "
            f"to a Python with medveil installed on every node (see {DOCS})"
        )
