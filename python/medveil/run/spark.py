"""Archive conversion on Apache Spark: the same output as one machine, spread over a cluster.

Spark lists the input files (a local folder or any Hadoop file system the session reads:
``hdfs://``, ``s3a://``, ``abfs://``, ...) and reads their bytes on the executors. Each
partition builds one :class:`~medveil.deid.Deidentifier` and sends every file through
:func:`medveil.instance.clean_instance`, the pipeline the local run uses, so every file gets
the same decision and the same output bytes. Keyed pseudonyms and UIDs need no shared state,
so executors never talk to each other.

Outputs are written by the executors themselves, atomically (temporary name, flushed to
disk, renamed), under the same ``<pseudonym>/<study>/<series>/<sop>.dcm`` layout. A task
that Spark retries or runs speculatively rewrites the same bytes under the same names.

The secret: pass ``secret_file``, a path present on every node (read by each executor and
never shipped), or ``secret`` bytes, which travel inside the task closure (never in the
Spark configuration, never printed; but over Spark's RPC, encrypted only when
``spark.network.crypto.enabled`` is on). See docs/spark.md.

Around each output, as the local run does: two inputs whose outputs share a SOP Instance
UID never overwrite each other (identical content: one file, the others counted as
``duplicate``; different content: all written, as ``<uid>.dcm``, ``<uid>~2.dcm``, ... in
the local run's input order, settled on the driver at the end),
a DICOMDIR input is not released (``replaced``) and a new DICOMDIR is written for a local
output, and a ``vault`` receives each written instance's originals from the executor that
read them, sealed there: the originals never enter Spark's rows, cache or shuffle.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import hashlib
import hmac
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from medveil.errors import MedveilError
from medveil.policy.keys import Keyed, load_secret
from medveil.policy.schema import Policy
from medveil.run.archive import (
    CATALOG_COLUMNS,
    RECORDS,
    RunSummary,
    lock_output,
    remove_partial_files,
)
from medveil.run.outputs import (
    IDENTICAL,
    MAX_VARIANTS,
    REPLACED,
    TOO_MANY_VARIANTS,
    VARIANT_MARK,
    ExclusiveBatch,
    base_relpath,
    is_dicomdir,
    settle_variants,
    variant_path,
)

if TYPE_CHECKING:  # pyspark is an optional extra: `pip install medveil[spark]`
    from pyspark.sql import DataFrame, SparkSession

    from medveil.engine.dataset import Deidentifier

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    ("input_key", "TEXT"),
    ("status", "TEXT"),
    ("reason", "TEXT"),
    ("output_path", "TEXT"),
    ("size_in", "INTEGER"),
    ("size_out", "INTEGER"),
)
# Outputs made durable together (one syncfs) per batch on an executor, like the local run.
BATCH_FILES = 64
BATCH_BYTES = 64 << 20
# What one file costs, in bytes of reading, when Spark packs files into tasks.
OPEN_COST = 1 << 20
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


# ---------------------------------------------------------------------------- outputs
def is_local_uri(uri: str) -> bool:
    """True for a plain path or a ``file:`` URI (written with os calls on each executor)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> Path:
    """The local path of a plain path or ``file:`` URI (not %-decoded, as Hadoop prints it)."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    return Path(uri[len("file:") :] if uri.startswith("file:") else uri)


def variant_relpath(relpath: str, n: int) -> str:
    """The n-th name of an output whose SOP Instance UID other outputs share.

    As the local run names it (``<uid>.dcm``, ``<uid>~2.dcm``, ...): ``variant_path``.
    """
    return variant_path(Path(relpath), n).as_posix()


class _LocalSink:
    """Durable outputs on a file system every executor mounts at the same path.

    Named as the local run names them (:class:`~medveil.run.outputs.ExclusiveBatch`): a file
    is never replaced; a different output under a taken name gets the next free variant
    name, and the driver settles each group in input order at the end of the job.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.batch = ExclusiveBatch(root)
        self.root = root
        self.bytes = 0

    def add(self, relpath: str, parts: Sequence[bytes], sha256: str) -> str:
        """Stage one output; the relative name it is staged under (settled by :meth:`commit`).

        Raises FileExistsError when MAX_VARIANTS names of this batch hold other contents.
        """
        from medveil.durable import safe_join

        # Resolved under the root here, on the executor: no symlink inside leads out.
        path = safe_join(self.root, relpath)
        kind, staged = self.batch.add_variant(path, parts, sha256)
        if kind == "new":
            self.bytes += sum(len(p) for p in parts)
        return staged.relative_to(self.root).as_posix()

    def full(self) -> bool:
        """Whether the batch is large enough to be committed."""
        return len(self.batch.pending) >= BATCH_FILES or self.bytes >= BATCH_BYTES

    def commit(self) -> dict[str, tuple[str, str]]:
        """Flush the batch to disk once, then place every file under its first free variant
        name: (kind, final relpath) by staged relpath; kind "refused" when none is free."""
        placed = self.batch.commit_variants()
        self.batch.sha256.clear()
        self.batch.base.clear()
        self.bytes = 0
        return {
            staged.relative_to(self.root).as_posix(): (
                kind,
                final.relative_to(self.root).as_posix(),
            )
            for staged, (kind, final) in placed.items()
        }

    def abort(self) -> None:
        """Remove every staged temporary."""
        self.batch.abort()
        self.batch.sha256.clear()
        self.batch.base.clear()


def arrow_uri(uri: str) -> str:
    """The URI pyarrow.fs understands for a Hadoop one (s3a:// and s3n:// are s3:// there)."""
    scheme, sep, rest = uri.partition("://")
    return f"s3://{rest}" if sep and scheme in ("s3a", "s3n") else uri


class _ArrowSink:
    """Outputs on a remote file system through pyarrow.fs (HDFS, S3, GCS, Azure)."""

    def __init__(self, uri: str) -> None:
        from pyarrow import fs as pafs

        self.fs, self.root = pafs.FileSystem.from_uri(arrow_uri(uri))
        # Object stores publish an object only when its upload completes, so a direct
        # write is already atomic there; HDFS needs the temporary name and a rename.
        self.rename = self.fs.type_name in ("hdfs", "local")

    def add(self, relpath: str, parts: Sequence[bytes], sha256: str) -> str:
        """Write one output now under its first free variant name; the name it got.

        An identical file under one of the names is kept (a retried task or an identical
        duplicate); FileExistsError when MAX_VARIANTS names hold other contents.
        """
        from medveil.durable import check_relpath

        check_relpath(relpath)
        for n in range(1, MAX_VARIANTS + 1):
            rel = variant_relpath(relpath, n)
            final = f"{self.root.rstrip('/')}/{rel}"
            existing = self._sha256(final)
            if existing == sha256:
                return rel
            if existing is None:
                self._write(final, parts)
                return rel
        raise FileExistsError(errno.EEXIST, TOO_MANY_VARIANTS)

    def _sha256(self, final: str) -> str | None:
        """SHA-256 of the file at final, or None when there is none (a check, then a write:
        two tasks racing for one name could both write, as without hard links locally)."""
        from pyarrow import fs as pafs

        if self.fs.get_file_info(final).type == pafs.FileType.NotFound:
            return None
        h = hashlib.sha256()
        with self.fs.open_input_stream(final) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    def _write(self, final: str, parts: Sequence[bytes]) -> None:
        parent, name = final.rsplit("/", 1)
        self.fs.create_dir(parent, recursive=True)
        target = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if self.rename else final
        try:
            with self.fs.open_output_stream(target) as f:
                for part in parts:
                    f.write(part)
            if self.rename:
                self.fs.move(target, final)
        except BaseException:
            if self.rename:
                with contextlib.suppress(Exception):
                    self.fs.delete_file(target)
            raise

    def full(self) -> bool:
        """Never: every file is written at once."""
        return False

    def commit(self) -> dict[str, tuple[str, str]]:
        """Nothing to do: no renames are pending."""
        return {}

    def abort(self) -> None:
        """Nothing to do: no temporaries are pending."""


# ---------------------------------------------------------------------------- executors
@dataclass(frozen=True)
class _Job:
    """What every partition needs; the secret is excluded from repr so it is never printed."""

    policy: Policy
    root: str
    output: str
    secret: bytes | None = field(default=None, repr=False)
    secret_file: str | None = None
    # Input keys a resumed job finds done (its progress files): their rows are not redone.
    done: frozenset[str] = frozenset()
    # Write each task's finished rows to OUTPUT/.medveil/progress (local outputs), so a
    # killed job can be resumed.
    progress: bool = False
    # The re-identification vault each executor records its written instances' originals
    # in (sealed there): its URL (a file every executor reaches, or postgresql://) and its
    # key, as a file present on every node or as bytes travelling in the closure.
    vault_url: str | None = None
    vault_key_file: str | None = None
    vault_key: bytes | None = field(default=None, repr=False)
    # Per-file limits, as the local run's --max-file-size and --file-timeout: bytes (None:
    # a share of the executor's memory per core) and seconds (plus one per 10 MB; 0: none).
    max_file_size: int | None = None
    file_timeout: float = 60.0


PROGRESS = "progress"  # folder of per-task result rows under OUTPUT/.medveil


class _Progress:
    """One task's finished result rows, appended and flushed as their files become durable.

    Rows hold keys, statuses, reasons and the de-identified catalog: no PHI. A line torn by
    a kill is ignored when read back.
    """

    def __init__(self, output: str) -> None:
        folder = local_path(output) / RECORDS / PROGRESS
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{uuid.uuid4().hex}.jsonl"
        self.file = open(self.path, "a", encoding="utf-8")

    def add(self, rows: Sequence[tuple[object, ...]]) -> None:
        """Record rows whose files are durable; flushed to disk before returning."""
        if not rows:
            return
        self.file.write("".join(json.dumps(list(r)) + "\n" for r in rows))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the file (an empty one is removed)."""
        self.file.close()
        if self.path.stat().st_size == 0:
            self.path.unlink()


def read_progress(output: str) -> dict[str, tuple[object, ...]]:
    """The rows a killed job finished (by input key), from its tasks' progress files."""
    folder = local_path(output) / RECORDS / PROGRESS
    rows: dict[str, tuple[object, ...]] = {}
    if not folder.is_dir():
        return rows
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # the last line of a task that was killed while writing it
                rows[str(row[0])] = tuple(row)
    return rows


def relative_name(path: str, root: str) -> str:
    """The input's name as the local run stores it: its path relative to the input root."""
    root = root.rstrip("/")
    if path == root:  # the input is a single file
        return path.rsplit("/", 1)[-1]
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return path  # outside the root (a symlinked tree): the key still identifies it


def _sink(output: str) -> _LocalSink | _ArrowSink:
    return _LocalSink(local_path(output)) if is_local_uri(output) else _ArrowSink(output)


def _open_vault(job: _Job) -> Any:
    """The job's vault opened on this executor, or None when the job records none."""
    if job.vault_url is None:
        return None
    from medveil.crypto.vault import Vault, load_key

    key = job.vault_key if job.vault_key is not None else load_key(job.vault_key_file)  # type: ignore[arg-type]
    # The driver created it and checked the key: an executor only adds rows.
    return Vault(job.vault_url, key, create=False)


def fresh_policy(policy: Policy) -> Policy:
    """A copy of policy without its cached compilation: what a job hands to its executors.

    ``Policy.compile()`` caches its result on the object, and ``dataclasses.replace`` (or
    setting a field) keeps that cache: a policy derived from a compiled one (``retain_uids``
    added, say) would otherwise travel with, and be applied as, the compilation of the
    policy it came from. The copy compiles from its own fields on every executor.
    """
    fresh = copy.copy(policy)  # shallow: fields shared, never changed; no re-validation
    fresh._compiled = None
    return fresh


# Engines built in this Python worker process, which Spark reuses for later tasks and later
# jobs (spark.python.worker.reuse): by engine_key, so a task only ever finds an engine of
# its own job's policy and secret. Two are kept: one job at a time, and the one before.
_ENGINES: OrderedDict[bytes, Deidentifier] = OrderedDict()
_ENGINES_KEPT = 2


def engine_key(policy: Policy, secret: bytes) -> bytes:
    """HMAC-SHA-256, under the secret, of the policy's fields and its pixel rule files.

    Everything the engine is built from goes in (the fields by repr, the lookup tables
    included; the rule files' bytes, read again each time), nothing of an earlier job.
    """
    # repr, not pickle: equal policies pickle to different bytes when their strings are
    # shared differently (after a round trip). Lookup tables are left out of repr (PHI).
    fields = repr(fresh_policy(policy)).encode("utf-8", "surrogatepass")
    mac = hmac.new(bytes(secret), fields, "sha256")
    for lookup in policy.lookups:
        mac.update(json.dumps(sorted(lookup.table.items())).encode("utf-8", "surrogatepass"))
    for path in policy.pixel_rule_files:
        mac.update(b"\0" + path.encode("utf-8", "surrogateescape") + b"\0")
        try:
            mac.update(hashlib.sha256(Path(path).read_bytes()).digest())
        except OSError:
            mac.update(b"unreadable")  # the engine's build then fails and says why
    return mac.digest()


def engine_for(policy: Policy, secret: bytes) -> Deidentifier:
    """The engine of exactly this policy and secret, built once per Python worker process."""
    from medveil.engine.dataset import Deidentifier

    key = engine_key(policy, secret)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = Deidentifier(fresh_policy(policy), bytes(secret))
        _ENGINES[key] = engine
        while len(_ENGINES) > _ENGINES_KEPT:
            _ENGINES.popitem(last=False)
    _ENGINES.move_to_end(key)
    return engine


def clean_partition(job: _Job, rows: Iterable[Any]) -> Iterator[tuple[object, ...]]:
    """Executor task: clean each (path, content) row, write it, yield its result row.

    A row is yielded (and recorded in the task's progress file) only once its file is
    durable under its final name and, with a vault, its originals are committed there.
    """
    from medveil.durable import UnsafePath
    from medveil.run import archive

    warnings.simplefilter("ignore")  # pydicom's warnings may quote header values (PHI)
    logging.getLogger("pydicom").disabled = True
    secret = job.secret if job.secret is not None else load_secret(job.secret_file)  # type: ignore[arg-type]
    engine = engine_for(job.policy, secret)
    keyed = Keyed(secret)
    sink = _sink(job.output)
    vault = _open_vault(job)
    progress = _Progress(job.output) if job.progress and isinstance(sink, _LocalSink) else None
    names = [n for n, _ in CATALOG_COLUMNS]
    path_at = names.index("path")
    # Rows whose files are staged but not yet placed: their final paths come at commit.
    pending: list[list[object]] = []

    def finish() -> list[tuple[object, ...]]:
        """Commit the staged files (and the vault); the finished rows, recorded as done."""
        placed = sink.commit()
        for row in pending:
            if not row[3] or str(row[3]) not in placed:
                continue
            kind, final = placed[str(row[3])]
            if kind == "refused":  # MAX_VARIANTS other contents hold this UID's names
                row[1:6] = ["quarantined", TOO_MANY_VARIANTS, "", row[4], 0]
                row[len(SUMMARY_COLUMNS) :] = [None] * len(names) + [{}, None]
            else:
                # Its name, or a variant when another input's different output has it.
                row[3] = row[len(SUMMARY_COLUMNS) + path_at] = final
        if vault is not None:
            vault.flush()  # before the rows count as done: a resumed job skips them
        done = [tuple(r) for r in pending]
        pending.clear()
        if progress is not None:
            progress.add(done)
        return done

    # This job's limits, set for every task: a reused Python worker may have run a task
    # of another job. As in the local run, a file over the size limit is refused by its
    # size before it is read, and one not cleaned in time is quarantined.
    limits = archive._MAX_SIZE, archive._TIMEOUT
    archive._MAX_SIZE = job.max_file_size
    if archive._MAX_SIZE is None:
        archive._MAX_SIZE = archive.default_max_file_size(os.cpu_count() or 1)
    saved = _set_alarm()
    archive._TIMEOUT = job.file_timeout if saved is not None else 0.0
    try:
        for row in rows:
            name = relative_name(row[0], job.root)
            if job.done and keyed.path_token(name) in job.done:
                continue  # finished by the job this one resumes
            result = _clean_one(engine, row, name, vault is not None)
            status, reason, relpath, size_out = result.status, result.reason, "", 0
            if status == "written":
                try:
                    # A retained UID of ".." must not lead a write out of the output.
                    relpath = sink.add(result.relpath, result.parts, str(result.row["sha256"]))
                except UnsafePath as exc:
                    status, reason = "quarantined", str(exc)
                except FileExistsError:
                    status, reason = "quarantined", TOO_MANY_VARIANTS
                except OSError as exc:
                    status, reason = "quarantined", f"cannot write: {exc.strerror or exc}"
                else:
                    size_out = result.size_out
                    if vault is not None and result.identity:
                        # Sealed by the vault here: the originals leave this process only
                        # encrypted, never as a row of the job.
                        vault.add(result.identity)
            catalog: list[object] = (
                [result.row[n] for n in names] if relpath else [None] * len(names)
            )
            if relpath:
                catalog[path_at] = relpath
            actions = dict(result.actions) if relpath else {}
            pixels = json.dumps(result.pixels) if relpath and result.pixels else None
            key = keyed.path_token(name)
            sizes = (result.size_in, size_out)
            pending.append([key, status, reason, relpath, *sizes, *catalog, actions, pixels])
            # Results are released only once their files are durable under final names.
            if sink.full() or not sink_pending(sink):
                yield from finish()
        yield from finish()
    except BaseException:
        sink.abort()
        raise
    finally:
        _restore_alarm(saved)
        archive._MAX_SIZE, archive._TIMEOUT = limits
        if progress is not None:
            progress.close()
        if vault is not None:
            # Everything of a finished task is flushed already; after a failure, rows
            # queued for files never placed are harmless in a crosswalk.
            with contextlib.suppress(Exception):
                vault.close()


def _set_alarm() -> tuple[Any, Any] | None:
    """Let the local run's per-file timer (archive._arm) work in this Python worker; the
    handlers it replaced (for :func:`_restore_alarm`), or None where no timer can work.

    SIGALRM raises the timeout; SIGVTALRM (the CPU backstop for code spinning in C) ends
    the worker, which Spark then reports as a failed task. Signals work only in the main
    thread: elsewhere (an in-process call from a thread) no time limit applies.
    """
    import signal
    import threading

    from medveil.run import archive

    if threading.current_thread() is not threading.main_thread():
        return None
    old = signal.getsignal(signal.SIGALRM), signal.getsignal(signal.SIGVTALRM)
    signal.signal(signal.SIGALRM, archive._on_alarm)
    signal.signal(signal.SIGVTALRM, signal.SIG_DFL)
    return old


def _restore_alarm(saved: tuple[Any, Any] | None) -> None:
    """Put back the signal handlers _set_alarm replaced (an in-process caller keeps its own)."""
    import signal

    if saved is not None:
        signal.signal(signal.SIGALRM, saved[0] if saved[0] is not None else signal.SIG_DFL)
        signal.signal(signal.SIGVTALRM, saved[1] if saved[1] is not None else signal.SIG_DFL)


def _clean_one(engine: Deidentifier, row: Any, name: str, capture: bool) -> Any:
    """Read (or take Spark's bytes), check the size and clean one input within its time
    limit, as the local run's worker does (archive._process_one): its CleanResult."""
    from medveil.engine.instance import CleanResult, clean_instance
    from medveil.run import archive
    from medveil.run.archive import Item
    from medveil.run.archive import _read as read_item

    limit, size = archive._time_limit(0), 0
    try:
        archive._arm(limit)
        try:
            if len(row) > 1:  # bytes read by Spark (HDFS, object stores): a bytearray
                raw: Any = row[1] or b""
                archive._check_size(len(raw))
            else:  # a local/NFS input: read here into one buffer, as the local run does
                raw = read_item(Item(name=name, path=str(local_path(row[0]))))
            size = len(raw)
            if is_dicomdir(raw):
                # A directory of the input's files (its records name patients): not
                # released; the driver writes a new one for the output.
                return CleanResult("replaced", REPLACED, size)
            limit = archive._time_limit(size)
            archive._arm(limit)
            return clean_instance(engine, raw, name, capture_identity=capture)
        finally:
            archive._arm(0)
    except archive._Timeout:
        return CleanResult("quarantined", archive.timeout_reason(limit, size), size)
    except archive._NotRegular as exc:
        return CleanResult("skipped", str(exc.strerror))
    except OSError as exc:
        return CleanResult("quarantined", _read_reason(exc))


def _read_reason(exc: OSError) -> str:
    """The quarantine reason of a file that cannot be read, as the local run gives it."""
    from medveil.run import archive

    if isinstance(exc, archive._TooLarge):
        return str(exc.strerror)
    return f"cannot read: {exc.strerror}"


def sink_pending(sink: _LocalSink | _ArrowSink) -> bool:
    """True while a sink holds files not yet renamed to their final names."""
    return isinstance(sink, _LocalSink) and bool(sink.batch.pending)


# ---------------------------------------------------------------------------- driver
def _schema() -> Any:
    from pyspark.sql import types as T

    kinds = {"TEXT": T.StringType(), "INTEGER": T.LongType(), "REAL": T.DoubleType()}
    fields = [T.StructField(n, kinds[t], True) for n, t in SUMMARY_COLUMNS]
    fields += [T.StructField(n, kinds[t], True) for n, t in CATALOG_COLUMNS]
    fields.append(T.StructField("actions", T.MapType(T.StringType(), T.LongType()), True))
    fields.append(T.StructField("pixels", T.StringType(), True))  # a pixels.jsonl line
    return T.StructType(fields)


def _qualify(spark: SparkSession, uri: str) -> tuple[str, bool]:
    """The fully qualified URI Spark lists files under, and whether it is a single file."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a live session's gateway to its JVM
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        raise MedveilError(f"{uri}: input not found")
    return str(fs.makeQualified(path).toString()), bool(fs.getFileStatus(path).isFile())


@contextlib.contextmanager
def _file_partitioning(spark: SparkSession, partitions: int | None) -> Iterator[None]:
    """Spark's file packing while the scan is planned: more files per task, `partitions`.

    Spark packs files into tasks counting each as its size plus
    ``spark.sql.files.openCostInBytes``, up to ``spark.sql.files.maxPartitionBytes``
    (128 MB), so tasks hold about equal work whether files are many and small or few and
    large. Its 4 MB open cost puts only ~28 CT slices in a task, where Spark's per-task cost
    (~50 ms) is a third of the work: unless the session sets its own, 1 MB is used here.
    ``partitions`` raises the minimum number of tasks.
    """
    wanted: dict[str, str] = {}
    if spark.conf.get("spark.sql.files.openCostInBytes", None) is None:
        wanted["spark.sql.files.openCostInBytes"] = str(OPEN_COST)
    if partitions:
        wanted["spark.sql.files.minPartitionNum"] = str(partitions)
    before = {k: spark.conf.get(k, None) for k in wanted}
    for k, v in wanted.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def _check_output(output_uri: str, input_root: str, overwrite: bool) -> None:
    if is_local_uri(output_uri):
        out = local_path(output_uri).resolve()
        if input_root.startswith("file:"):
            src = local_path(input_root).resolve()
            if out == src or src in out.parents:
                raise MedveilError(f"{output_uri}: the output must not be the input or inside it")
            if out in src.parents:
                # The release would then hold the identified originals.
                raise MedveilError(f"{output_uri}: the input must not lie inside the output")
        if out.exists() and any(p.name != RECORDS for p in out.iterdir()) and not overwrite:
            raise MedveilError(
                f"{output_uri}: output folder is not empty (overwrite=True rewrites it; "
                "the same inputs give the same files)"
            )
        out.mkdir(parents=True, exist_ok=True)
        return
    try:
        from pyarrow import fs as pafs
    except ImportError:
        raise MedveilError(
            f"{output_uri}: executors write non-local outputs through pyarrow.fs; install "
            "pyarrow on every node, or write to a file system mounted on every node"
        ) from None
    try:
        pafs.FileSystem.from_uri(arrow_uri(output_uri))
    except Exception as exc:
        raise MedveilError(f"{output_uri}: pyarrow cannot open this output ({exc})") from None


def deidentify_archive(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    *,
    policy: Policy | None = None,
    secret: bytes | None = None,
    secret_file: str | None = None,
    partitions: int | None = None,
    sqlite: bool = False,
    overwrite: bool = False,
    spark_reads: bool | None = None,
    resume: bool = False,
    vault_url: str | None = None,
    vault_key_file: str | None = None,
    vault_key: bytes | None = None,
    dicomdir: bool = False,
    max_file_size: int | None = None,
    file_timeout: float = 60.0,
) -> DataFrame:
    """De-identify every file under input_uri into output_uri on Spark; returns per-file results.

    The returned DataFrame (cached) has one row per input file: ``input_key`` (the keyed
    hash of its relative name, as the local run records it), ``status``
    (written/skipped/quarantined), ``reason``, ``output_path`` (relative to output_uri),
    ``size_in`` and ``size_out``. The catalog goes to ``OUTPUT/.medveil/catalog.parquet``,
    the per-file results to ``OUTPUT/.medveil/inputs.parquet``; for a local output also
    ``quarantine.jsonl`` and ``summary.json``, and with ``sqlite=True`` the local run's
    ``catalog.sqlite`` (merged into an existing one). ``partitions`` asks Spark for at least
    that many tasks (default: Spark's packing of the files, see _file_partitioning).
    ``spark_reads``: Spark reads the file bytes (default for non-local inputs) or the Python
    workers open the files themselves (default for local inputs).
    ``resume`` (local outputs) continues a killed job: the rows its tasks recorded as done
    (OUTPUT/.medveil/progress) are kept and those inputs are not redone; the output is
    the same as an uninterrupted job's.
    ``vault_url`` with ``vault_key_file`` (present at that path on every node) or
    ``vault_key`` (bytes, sent in the task closure like ``secret``): each executor seals
    the originals of the instances it writes into that vault (a file every executor
    reaches, or ``postgresql://``), committed before the file counts as done; the originals
    never enter the job's rows. ``dicomdir``: write OUTPUT/dicomdir/ even when the input
    holds no DICOMDIR (it is written whenever the input has one; local outputs only).
    ``max_file_size`` (bytes; default: a share of each executor's memory per core) and
    ``file_timeout`` (seconds, plus one per 10 MB; 0 for none) bound each file as in the
    local run: a file over either is quarantined with the local run's reason.
    Status ``duplicate``: the input's output is byte for byte another input's (one file);
    ``replaced``: a DICOMDIR input; ``excluded``: a [filter] rule kept it from processing.
    """
    policy = policy or Policy.default()
    policy.compile()  # refused on the driver, not in every executor's task
    if secret is not None and secret_file is not None:
        raise MedveilError("give either secret or secret_file, not both")
    if secret is None and secret_file is None:
        secret_file = policy.secret_file or None
    if secret is not None:
        Keyed(secret)  # checks the length here rather than on every executor
        secret = bytes(secret)
    elif secret_file is None:
        raise MedveilError("a project secret is needed: secret_file (on every node) or secret")
    elif os.path.exists(secret_file):
        load_secret(secret_file)  # fail early on a bad file when the driver has it too
    if sqlite and not is_local_uri(output_uri):
        raise MedveilError("sqlite=True needs a local output; copy catalog.parquet instead")
    if max_file_size is not None and max_file_size <= 0:
        raise MedveilError("max_file_size must be a positive number of bytes")
    if file_timeout < 0:
        raise MedveilError("file_timeout must be 0 (no limit) or a number of seconds")
    vault_url = _check_vault(vault_url, vault_key_file, vault_key, secret, secret_file)

    root, single = _qualify(spark, input_uri)
    if single and root.lower().endswith(_ARCHIVE_SUFFIXES):
        raise MedveilError(
            f"{input_uri}: Spark reads folders of files; unpack .zip/.tar archives first"
        )
    if resume and not is_local_uri(output_uri):
        raise MedveilError("resume needs a local output; re-run with overwrite instead")
    _check_output(output_uri, root, overwrite or resume)
    # One job per OUTPUT, as for the local run: a second one fails at once.
    lock = lock_output(local_path(output_uri)) if is_local_uri(output_uri) else None
    try:
        return _run_job(
            spark,
            input_uri,
            output_uri,
            root,
            policy,
            secret,
            secret_file,
            partitions,
            sqlite,
            spark_reads,
            resume,
            vault_url,
            vault_key_file,
            vault_key,
            dicomdir,
            max_file_size,
            file_timeout,
        )
    finally:
        if lock is not None:
            os.close(lock)


def _run_job(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    root: str,
    policy: Policy,
    secret: bytes | None,
    secret_file: str | None,
    partitions: int | None,
    sqlite: bool,
    spark_reads: bool | None,
    resume: bool,
    vault_url: str | None,
    vault_key_file: str | None,
    vault_key: bytes | None,
    dicomdir: bool,
    max_file_size: int | None = None,
    file_timeout: float = 60.0,
) -> DataFrame:
    """deidentify_archive once its checks pass (and, for a local output, its lock is held)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    finished = read_progress(output_uri) if resume else {}
    if is_local_uri(output_uri) and resume:
        # A killed job's executors leave temporaries (.NAME.PID.tmp) they never renamed.
        remove_partial_files(local_path(output_uri))
    if is_local_uri(output_uri) and not resume:
        # Rows of an earlier, different job must not be taken for this one's.
        shutil.rmtree(local_path(output_uri) / RECORDS / PROGRESS, ignore_errors=True)
    records = output_uri.rstrip("/") + "/" + RECORDS

    t0 = time.perf_counter()
    listing = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(input_uri)
    with _file_partitioning(spark, partitions):
        # The scan is planned here (partition boundaries are fixed once the RDD exists).
        # Local inputs are read by the Python workers themselves: file bytes then never pass
        # through the JVM heap and the JVM-to-Python pipe (less memory, less copying).
        if spark_reads is None:
            spark_reads = not root.startswith("file:")
        columns = ["path", "content"] if spark_reads else ["path"]
        rdd = listing.select(*columns).rdd
    job = _Job(
        policy=fresh_policy(policy),
        root=root,
        output=output_uri,
        secret=secret,
        secret_file=secret_file,
        done=frozenset(finished),
        progress=is_local_uri(output_uri),
        vault_url=vault_url,
        vault_key_file=vault_key_file if vault_key is None else None,
        vault_key=bytes(vault_key) if vault_key is not None else None,
        max_file_size=max_file_size,
        file_timeout=file_timeout,
    )
    results = rdd.mapPartitions(functools.partial(clean_partition, job))
    cleaned = spark.createDataFrame(results, _schema())
    if finished:
        earlier = [_typed_row(r) for r in finished.values()]
        cleaned = cleaned.union(spark.createDataFrame(earlier, _schema()))
    cleaned = cleaned.persist(StorageLevel.MEMORY_AND_DISK)

    # This job runs the de-identification, one task per input partition, and fills the
    # cache. The record jobs then read the cache in a few large tasks: a Parquet writer and
    # a commit per task would otherwise cost more than cleaning a partition's files.
    cleaned.count()
    settled = cleaned
    if is_local_uri(output_uri):
        # Outputs sharing a SOP Instance UID: <uid>.dcm, <uid>~2.dcm, ... in the order the
        # local run lists their inputs, whichever task placed them first.
        settled = _settle_variants(cleaned, listing.select("path"), job, output_uri)
    full = _mark_duplicates(settled).persist(StorageLevel.MEMORY_AND_DISK)
    full.count()
    cleaned.unpersist()
    few = max(1, spark.sparkContext.defaultParallelism)
    names = [n for n, _ in CATALOG_COLUMNS]
    catalog = full.filter(F.col("status") == "written").select(*names, F.col("input_key"))
    catalog = catalog.withColumnRenamed("input_key", "source_key").coalesce(few)
    catalog.write.mode("overwrite").parquet(records + "/catalog.parquet")
    summary_df = full.select(*[n for n, _ in SUMMARY_COLUMNS])
    summary_df.coalesce(few).write.mode("overwrite").parquet(records + "/inputs.parquet")
    summary = RunSummary()
    quarantined: list[tuple[str, str]] = []
    tally = full.select("input_key", "status", "reason", "size_in", "size_out", "actions")
    for part in tally.coalesce(few).rdd.mapPartitions(_tally).collect():
        summary.files_in += part.files_in
        summary.written += part.written
        summary.skipped += part.skipped
        summary.quarantined += part.quarantined
        summary.duplicates += part.duplicates
        summary.replaced += part.replaced
        summary.excluded.update(part.excluded)
        summary.skipped_reasons.update(part.skipped_reasons)
        summary.bytes_in += part.bytes_in
        summary.bytes_out += part.bytes_out
        summary.actions.update(part.actions)
        quarantined.extend(part.quarantine)
    summary.resumed = len(finished)
    if dicomdir or summary.replaced:
        _new_dicomdir(full, output_uri, summary)
    summary.seconds = time.perf_counter() - t0
    if is_local_uri(output_uri):
        folder = local_path(output_uri) / RECORDS
        _write_local_records(folder, sorted(quarantined), summary)
        _write_pixel_log(folder / "pixels.jsonl", full.select("pixels").coalesce(few))
        if sqlite:
            merge_sqlite(folder / "catalog.sqlite", full)
    return summary_df


def _check_vault(
    url: str | None,
    key_file: str | None,
    key: bytes | None,
    secret: bytes | None,
    secret_file: str | None,
) -> str | None:
    """Create (or check) the job's vault on the driver; its URL as the executors open it.

    A missing half, a key file and key bytes both, or a vault key equal to the pseudonym
    secret is an error before any task runs.
    """
    if url is None and key_file is None and key is None:
        return None
    if url is None or (key_file is None) == (key is None):
        raise MedveilError(
            "a vault needs its URL and its key (a key file on every node, or key bytes); "
            "create a key with `medveil vault keygen FILE`"
        )
    from medveil.crypto.vault import Vault, load_key

    if key is None:
        assert key_file is not None
        if not os.path.exists(key_file):
            raise MedveilError(f"{key_file}: vault key file not found on the driver")
        key = load_key(key_file)
    if secret is None and secret_file is not None and os.path.exists(secret_file):
        secret = load_secret(secret_file)
    if secret is not None and hmac.compare_digest(bytes(key), bytes(secret)):
        raise MedveilError(
            "the vault key must differ from the pseudonym secret (`medveil vault keygen FILE`)"
        )
    if "://" not in url and not url.startswith("sqlite:"):
        # A plain path: absolute, so executors whose working folder differs find it.
        url = os.path.abspath(url)
    Vault(url, bytes(key)).close()  # creates it, or checks the key of an existing one
    return url


def walk_order(name: str) -> tuple[tuple[int, str], ...]:
    """Where the local run lists an input of this relative name: ``os.walk`` order, sorted.

    A folder's files come before its sub-folders, each group sorted by name.
    """
    parts = name.split("/")
    return (*((1, d) for d in parts[:-1]), (0, parts[-1]))


def _names_for(job: _Job, wanted: frozenset[str], rows: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """Executor task: (input key, relative name) of the listed inputs whose keys are wanted.

    The names (which may hold PHI) go only to the driver's memory, as the local run keeps
    them, never into the job's rows, cache or records.
    """
    secret = job.secret if job.secret is not None else load_secret(job.secret_file)  # type: ignore[arg-type]
    keyed = Keyed(secret)
    for row in rows:
        name = relative_name(row[0], job.root)
        key = keyed.path_token(name)
        if key in wanted:
            yield key, name


def _settle_variants(cleaned: DataFrame, listing: DataFrame, job: _Job, output: str) -> DataFrame:
    """Rename each group of outputs sharing a UID into the local run's order; cleaned with
    the new names (output_path and the catalog's path).

    The executors placed the different contents under the first free names
    (``<uid>.dcm``, ``<uid>~2.dcm``, ...) in whatever order their tasks ran; here, on the
    driver, :func:`~medveil.run.outputs.settle_variants` gives ``<uid>.dcm`` to the output
    of the input the local run lists first, ``~2`` to the next, and so on (an output made
    by several inputs, identical copies, counts at its first-listed one). Moved rows are
    appended to the progress records, so a resumed job starts from the names on disk.
    """
    from pyspark.sql import functions as F

    written = cleaned.filter(F.col("status") == "written")
    marked = written.filter(F.col("output_path").contains(VARIANT_MARK)).select("output_path")
    variants = {str(r[0]) for r in marked.toLocalIterator()}
    bases = {base_relpath(p) for p in variants} - variants
    if not bases:
        return cleaned
    members: dict[str, list[str]] = {}  # output path -> the input keys that gave it
    group = written.filter(F.col("output_path").isin(sorted(bases | variants)))
    for key, path in group.select("input_key", "output_path").toLocalIterator():
        if base_relpath(str(path)) in bases:
            members.setdefault(str(path), []).append(str(key))
    wanted = frozenset(k for keys in members.values() for k in keys)
    names = dict(listing.rdd.mapPartitions(functools.partial(_names_for, job, wanted)).collect())
    first = {
        path: min((walk_order(names[k]) for k in keys if k in names), default=None)
        for path, keys in members.items()
    }
    ordered = sorted(members, key=lambda p: (first[p] is None, first[p] or (), p))
    order = {path: f"{i:015d}" for i, path in enumerate(ordered)}
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE instances (path TEXT)")
        db.executemany("INSERT INTO instances VALUES (?)", [(p,) for p in members])
        moved = settle_variants(local_path(output), db, order)
    finally:
        db.close()
    if not moved:
        return cleaned
    new = F.create_map(*[F.lit(x) for pair in sorted(moved.items()) for x in pair])
    for column in ("output_path", "path"):
        cleaned = cleaned.withColumn(column, F.coalesce(new[F.col(column)], F.col(column)))
    if job.progress:
        # Read after the tasks' own files (sorted by name): the names on disk now win.
        rows = cleaned.filter(F.col("output_path").isin(sorted(set(moved.values()))))
        _append_progress(output, [tuple(r) for r in rows.toLocalIterator()])
    return cleaned


SETTLED = "settled.jsonl"  # sorts after the tasks' <uuid hex>.jsonl progress files


def _append_progress(output: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Append rows to the progress records' last file, flushed to disk."""
    path = local_path(output) / RECORDS / PROGRESS / SETTLED
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            "".join(
                json.dumps([dict(v) if isinstance(v, dict) else v for v in r]) + "\n" for r in rows
            )
        )
        f.flush()
        os.fsync(f.fileno())


def _mark_duplicates(cleaned: DataFrame) -> DataFrame:
    """Rows of inputs whose written output is byte for byte another input's: "duplicate".

    Executors never place a file over a different one, so inputs sharing an output path
    wrote the same bytes there; the smallest input key keeps the row (and the catalog
    entry), whichever task came first, so the result does not depend on timing.
    """
    from pyspark.sql import functions as F

    written = cleaned.filter(F.col("status") == "written")
    shared = (
        written.groupBy("output_path")
        .agg(F.min("input_key").alias("_first"), F.count("*").alias("_n"))
        .filter(F.col("_n") > 1)
        .select("output_path", "_first")
    )
    joined = cleaned.join(shared, on="output_path", how="left")
    dup = (F.col("status") == "written") & F.col("_first").isNotNull()
    dup = dup & (F.col("input_key") != F.col("_first"))
    blank = {
        "status": F.lit("duplicate"),
        "reason": F.lit(IDENTICAL),
        "output_path": F.lit(""),
        "size_out": F.lit(0).cast("long"),
    }
    columns = []
    for f in _schema().fields:
        if f.name in blank:
            value = blank[f.name]
        elif f.name in ("input_key", "size_in"):
            value = F.col(f.name)
        else:
            value = F.lit(None).cast(f.dataType)  # no catalog row, no actions, no pixel log
        columns.append(F.when(dup, value).otherwise(F.col(f.name)).alias(f.name))
    return joined.select(*columns)


def _new_dicomdir(full: DataFrame, output_uri: str, summary: RunSummary) -> None:
    """Write OUTPUT/dicomdir/ for the released files (local outputs), as the local run does."""
    from pyspark.sql import functions as F

    from medveil.run.outputs import write_dicomdir

    if not is_local_uri(output_uri):
        summary.failure = "no DICOMDIR written: the output is not a local folder"
        log.warning("medveil: %s", summary.failure)
        return
    rows = full.filter(F.col("status") == "written").select("output_path").orderBy("output_path")
    paths = (str(r[0]) for r in rows.toLocalIterator())
    try:
        summary.dicomdir, summary.dicomdir_left_out = write_dicomdir(local_path(output_uri), paths)
    except (OSError, ValueError) as exc:
        summary.failure = f"cannot write the DICOMDIR ({type(exc).__name__})"
        log.warning("medveil: %s", summary.failure)


def _typed_row(row: tuple[object, ...]) -> tuple[object, ...]:
    """A progress row as the schema wants it (JSON gives floats back as ints)."""
    kinds = [t for _, t in SUMMARY_COLUMNS] + [t for _, t in CATALOG_COLUMNS]
    out = list(row)
    for i, kind in enumerate(kinds):
        if kind == "REAL" and out[i] is not None:
            out[i] = float(out[i])  # type: ignore[arg-type]
    return tuple(out)


@dataclass
class _Tally(RunSummary):
    """One partition's counts, and its quarantined (input key, reason) pairs."""

    quarantine: list[tuple[str, str]] = field(default_factory=list)


def _tally(rows: Iterable[Any]) -> Iterator[_Tally]:
    """Executor task: count one partition's results (a single small object per partition)."""
    t = _Tally()
    for key, status, reason, size_in, size_out, actions in rows:
        t.files_in += 1
        t.bytes_in += size_in or 0
        t.bytes_out += size_out or 0
        if status == "written":
            t.written += 1
            t.actions.update(actions or {})
        elif status == "skipped":
            t.skipped += 1
            t.skipped_reasons[reason or "not DICOM"] += 1
        elif status == "excluded":
            t.excluded[reason or "filter"] += 1  # a [filter] rule's verdict, not a quarantine
        elif status == "duplicate":
            t.duplicates += 1
        elif status == "replaced":
            t.replaced += 1
        else:
            t.quarantined += 1
            t.quarantine.append((key, reason))
    yield t


def _write_local_records(
    folder: Path, quarantined: list[tuple[str, str]], summary: RunSummary
) -> None:
    """quarantine.jsonl and summary.json, as the local run writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "quarantine.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for key, reason in quarantined:
            f.write(json.dumps({"input": key, "reason": reason}) + "\n")
    os.replace(tmp, folder / "quarantine.jsonl")
    tmp = folder / "summary.json.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dict(summary.to_json(), engine="spark"), f, indent=2)
    os.replace(tmp, folder / "summary.json")


def _write_pixel_log(path: Path, pixels: DataFrame) -> None:
    """pixels.jsonl (what the pixel cleaner did per written file, no PHI) for `medveil qa`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for (line,) in pixels.toLocalIterator():
            if line:
                f.write(line + "\n")
    os.replace(tmp, path)


def merge_sqlite(db_path: Path, full: DataFrame) -> None:
    """Merge the run's results into a local catalog.sqlite with the local run's tables."""
    from medveil.run.outputs import SHARES_COLUMN

    names = [n for n, _ in CATALOG_COLUMNS]
    db = sqlite3.connect(db_path, timeout=60)
    try:
        cols = ", ".join(f"{n} {t}" for n, t in CATALOG_COLUMNS)
        db.execute(f"CREATE TABLE IF NOT EXISTS instances ({cols}, source_key TEXT)")
        if SHARES_COLUMN not in {row[1] for row in db.execute("PRAGMA table_info(instances)")}:
            # The local run's column naming the other files that share a file's UID.
            db.execute(f"ALTER TABLE instances ADD COLUMN {SHARES_COLUMN} TEXT DEFAULT ''")
        db.execute(
            "CREATE TABLE IF NOT EXISTS inputs"
            " (source_key TEXT PRIMARY KEY, status TEXT, reason TEXT, size_in INTEGER)"
        )
        insert = (
            f"INSERT INTO instances ({', '.join(names)}, source_key) VALUES "
            f"({', '.join('?' * (len(names) + 1))})"
        )
        rows = full.select("input_key", "status", "reason", "size_in", *names).toLocalIterator()
        for row in rows:
            key, status, reason, size_in = row[0], row[1], row[2], row[3]
            db.execute("DELETE FROM instances WHERE source_key = ?", (key,))
            if status == "written":
                db.execute(insert, [*row[4:], key])
            db.execute(
                "INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)", (key, status, reason, size_in)
            )
        _fill_shares(db, SHARES_COLUMN)
        db.commit()
    finally:
        db.close()


def _fill_shares(db: sqlite3.Connection, column: str) -> None:
    """Name, for each file whose SOP Instance UID other released files share, those files
    (file names, ';'-separated, as the local run does); '' for every other file."""
    groups: dict[str, list[str]] = {}
    for (path,) in db.execute("SELECT path FROM instances"):
        groups.setdefault(base_relpath(str(path)), []).append(str(path))
    db.execute(f"UPDATE instances SET {column} = ''")
    for members in groups.values():
        if len(members) < 2:
            continue
        final = sorted(members, key=lambda p: (len(p), p))
        for p in final:
            others = ";".join(q.rsplit("/", 1)[-1] for q in final if q != p)
            db.execute(f"UPDATE instances SET {column} = ? WHERE path = ?", (others, p))
