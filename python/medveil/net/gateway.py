"""De-identifying DICOM gateway: a Storage SCP that cleans every instance it receives.

Every received instance is re-encoded to the bytes a Part 10 file would hold (the encoded
dataset exactly as the peer sent it, behind file meta for the negotiated transfer syntax)
and goes through :func:`medveil.instance.clean_instance` in a worker process, so what the
gateway stores is byte-identical to what ``medveil deid`` writes from the same files with
the same secret. (A network transfer carries no file meta: the meta written is the one
pydicom gives a data set without it. A file written by other software keeps its writer's
Implementation Class UID and Version Name through ``medveil deid``, so there those two meta
elements differ; the data set is still byte-identical.) The C-STORE response is sent only
once the instance is durable:

* ``--store DIR``: written to a temporary name, flushed to disk, renamed, and the rename
  flushed too (:class:`GroupCommit` does this for all instances finishing together, so
  concurrent associations share the cost of a flush);
* ``--forward HOST:PORT:AET``: written the same way into a local spool, from which a
  background thread forwards it and deletes it only after the destination accepted it,
  retrying with back-off while the destination is unreachable or busy.

Quarantined instances never reach the output; they are logged by a keyed hash of their SOP
Instance UID and answered with status 0xC000 (see :data:`STATUS_QUARANTINED`). The log is
JSON lines and never holds PHI: no names, no original UIDs, no file content.

Memory is bounded: at most ``max(10, 4 * workers)`` associations at once (pynetdicom holds
each one's current data set), and received instances waiting for a worker share a byte
budget (``max_pending_bytes``); a sender over budget waits, which TCP passes back to it.

Needs pynetdicom (``pip install medveil[net]``).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import ipaddress
import itertools
import json
import logging
import multiprocessing
import os
import socket
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medveil.dicom.pydicom_private import decodable_syntaxes
from medveil.durable import check_relpath
from medveil.engine.instance import scrub_reason
from medveil.errors import MedveilError
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy

try:
    from pynetdicom import AE, AllStoragePresentationContexts, evt
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the DICOM gateway needs pynetdicom: pip install 'medveil[net]'") from exc

#: The Verification SOP Class (C-ECHO), PS3.4 A.4.
VERIFICATION = UID("1.2.840.10008.1.1")
#: C-STORE success.
STATUS_SUCCESS = 0x0000
#: Quarantined by the de-identification pipeline. PS3.4 B.2.3 offers "Refused: Out of
#: Resources" (A7xx) and "Error: Cannot understand" (Cxxx) among the failures. A7xx tells
#: the sender the SCP is short of resources, so retrying later may succeed; a quarantine
#: is a verdict on the content (unreadable, burned-in text without a rule, a leak found by
#: the post-check) that the same instance will get again on every retry, which is what
#: Cxxx says: the SCP could not process this data set.
STATUS_QUARANTINED = 0xC000
#: The gateway could not make the instance durable (disk full, worker crash, shutting
#: down): "Refused: Out of Resources", a transient failure the sender should retry.
STATUS_OUT_OF_RESOURCES = 0xA700

#: Native transfer syntaxes: always cleanable.
NATIVE_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)


def cleanable_transfer_syntaxes() -> list[UID]:
    """Transfer syntaxes the pixel cleaner can handle here: native ones + decodable ones."""
    from pydicom.pixels.decoders.base import get_decoder

    from medveil.pixels.cleaner import LOSSLESS_NO_ENCODER, LOSSY_METHOD, REENCODERS

    known: Iterable[str]
    try:  # every syntax pydicom has a decoder for
        known = decodable_syntaxes()
    except ImportError:  # pragma: no cover - a pydicom that moved it: the ones medveil knows
        known = {**REENCODERS, **LOSSY_METHOD, **dict.fromkeys(LOSSLESS_NO_ENCODER)}
    out = list(NATIVE_SYNTAXES)
    for uid in known:
        ts = UID(uid)
        if ts in out or not ts.is_compressed:
            continue
        try:
            available = get_decoder(ts).is_available
        except Exception:  # a decoder that cannot even be looked up cannot clean
            available = False
        if available:
            out.append(ts)
    # The acceptor's order decides when a sender proposes several: never invite a sender
    # to compress lossily what it could send as it is.
    return sorted(out, key=lambda ts: (ts.is_compressed, ts in LOSSY_METHOD))


def part10_bytes(event: Any) -> bytes:
    """A received C-STORE data set as the Part 10 file pydicom would write for it.

    The data set bytes are exactly those the peer sent (``encoded_dataset``, never decoded
    and re-encoded). The file meta is the one ``Dataset.save_as(enforce_file_format=True)``
    gives a data set that arrives without meta (as a network transfer does): SOP Class and
    Instance from the request, the negotiated transfer syntax, and pydicom's implementation
    identity, rather than pynetdicom's, so the cleaned output matches ``medveil deid`` on
    files written by pydicom byte for byte.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(event.request.AffectedSOPClassUID))
    meta.MediaStorageSOPInstanceUID = UID(str(event.request.AffectedSOPInstanceUID))
    meta.TransferSyntaxUID = UID(str(event.context.transfer_syntax))
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    return b"".join(
        (b"\x00" * 128, b"DICM", buf.getvalue(), event.encoded_dataset(include_meta=False))
    )


# ---------------------------------------------------------------------------- logging
class JsonLog:
    """Thread-safe JSON-lines event log; callers pass only PHI-free fields."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: object) -> None:
        """Write one event line: {"ts": ..., "event": event, **fields}."""
        record = {
            "ts": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "event": event,
            **fields,
        }
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # a closed log stream must not stop the service
                pass


# ---------------------------------------------------------------------------- access
@dataclass(frozen=True)
class AllowRule:
    """One allow-list entry: a calling AE title ('*' any) from a network ('*' any)."""

    aet: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        """Parse 'AET@HOST' where HOST is an address, a CIDR network, a host name or '*'."""
        aet, sep, host = text.rpartition("@")
        if not sep or not aet.strip() or not host.strip():
            raise MedveilError(f"--allow {text!r}: expected AET@HOST (either may be '*')")
        aet, host = aet.strip(), host.strip()
        if len(aet) > 16:
            raise MedveilError(f"--allow {text!r}: AE titles have at most 16 characters")
        if host == "*":
            return cls(aet, ())
        try:
            return cls(aet, (ipaddress.ip_network(host, strict=False),))
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError as exc:
            raise MedveilError(f"--allow {text!r}: cannot resolve {host}: {exc}") from None
        nets = {ipaddress.ip_network(info[4][0]) for info in infos}
        return cls(aet, tuple(sorted(nets, key=str)))

    def matches(self, aet: str, address: str) -> bool:
        """True when this rule admits a caller with this AE title from this address."""
        if self.aet != "*" and self.aet != aet.strip():
            return False
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


def parse_forward(text: str) -> tuple[str, int, str]:
    """Parse HOST:PORT:AET (HOST may be a bracketed IPv6 address)."""
    host_port, sep, aet = text.rpartition(":")
    host, sep2, port = host_port.rpartition(":")
    if not sep or not sep2 or not host or not aet:
        raise MedveilError(f"--forward {text!r}: expected HOST:PORT:AET")
    try:
        port_no = int(port)
    except ValueError:
        raise MedveilError(f"--forward {text!r}: the port must be a number") from None
    if not 0 < port_no < 65536 or len(aet) > 16:
        raise MedveilError(f"--forward {text!r}: bad port or AE title longer than 16")
    return host.strip("[]"), port_no, aet


def server_tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """TLS context for the listener; with ``ca`` clients must present a certificate it signed."""
    ctx = _HandshakeLater(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _HandshakeLater(ssl.SSLContext):
    """Wraps accepted sockets without a handshake: pynetdicom wraps them on the thread that
    accepts connections, so a client that stalls its handshake would block every caller.
    The gateway does the handshake on the connection's own thread instead."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """Wrap like SSLContext.wrap_socket but defer the handshake."""
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


# ---------------------------------------------------------------------------- workers
_ENGINE = None
_OUT: Path | None = None


def _init_worker(policy: Policy, secret: bytes, out: str, gateway: int | None = None) -> None:
    """One engine per worker process; pydicom's warnings may quote values: silence them."""
    global _ENGINE, _OUT
    import signal

    from medveil.durable import die_with_parent, exit_with
    from medveil.engine.dataset import Deidentifier

    # kill -9 of the gateway leaves no worker behind: our parent is the forkserver, which
    # outlives the gateway while any worker holds its pipe, so the gateway is watched too.
    die_with_parent()
    if gateway is not None:
        exit_with(gateway)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent drains, then shuts us down
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").disabled = True
    _ENGINE = Deidentifier(policy, secret)
    _OUT = Path(out)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Any:
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return getattr(libc, "syncfs", None)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None


_SYNCFS = _load_syncfs()
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_TMP_SEQ = itertools.count()


def sync_filesystem(root: Path) -> None:
    """Flush every dirty file and directory of root's file system to disk (syncfs)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(root))
    finally:
        os.close(fd)


def write_temporary(path: Path, data: bytes) -> Path:
    """Write data to a unique hidden temporary next to path; fsync it unless syncfs exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per write: the same instance received twice at once gets two temporaries.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_TMP_SEQ)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if _SYNCFS is None:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


class GroupCommit:
    """Makes written temporaries durable under their final names, many at a time.

    One fsync per instance (file and folder) costs more than cleaning a small instance;
    instances that finish while a flush runs are committed together by the next one:
    flush the file system (the temporaries' data), rename, flush again (the renames).
    ``commit`` returns only when its file is durable under its final name.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cond = threading.Condition()
        self._queue: list[tuple[Path, Path, threading.Event, list[BaseException]]] = []
        self._closed = False
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="medveil-commit", daemon=True)
        self._thread.start()

    def commit(self, tmp: Path, final: Path) -> None:
        """Rename tmp to final durably; raises OSError when that failed (tmp removed)."""
        done = threading.Event()
        errors: list[BaseException] = []
        with self._cond:
            if self._closed:
                raise OSError("the gateway is shutting down")
            self._queue.append((tmp, final, done, errors))
            self._cond.notify()
        done.wait()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch and self._closed:
                    return
            try:
                self._flush(batch)
            except BaseException as exc:  # every waiter learns it failed; nothing acked
                for tmp, _final, _done, errors in batch:
                    errors.append(exc)
                    tmp.unlink(missing_ok=True)
            for _tmp, _final, done, _errors in batch:
                done.set()

    def _flush(self, batch: list[tuple[Path, Path, threading.Event, list[BaseException]]]) -> None:
        if _SYNCFS is not None:
            sync_filesystem(self.root)  # the temporaries' data and the new folders
        for tmp, final, _done, _errors in batch:
            os.replace(tmp, final)
        if _SYNCFS is not None:
            sync_filesystem(self.root)  # the renames
        else:
            # Each file was fsynced by its writer; the folders hold the renames and any
            # folder created for them.
            dirs: set[Path] = set()
            for _tmp, final, _done, _errors in batch:
                d = final.parent
                while d != self.root and d not in dirs and self.root in d.parents:
                    dirs.add(d)
                    d = d.parent
            for d in (*dirs, self.root):
                _fsync_dir(d)
        self.batches += 1


class VaultWriter:
    """Records identities in the re-identification vault from one thread, many at a time.

    The vault's SQLite connection belongs to the thread that opened it, and a commit per
    instance would cost more than its cleaning: identities that arrive while a batch is
    written go together in the next. ``record`` returns once its identity is committed.
    """

    def __init__(self, url: str, key: bytes) -> None:
        from medveil.crypto.vault import Vault

        Vault(url, key).close()  # a wrong key or an unreachable database fails here, at start
        self._url, self._key = url, key
        self._cond = threading.Condition()
        self._queue: list[tuple[dict[str, object], threading.Event, list[BaseException]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="medveil-vault", daemon=True)
        self._thread.start()

    def record(self, identity: dict[str, object]) -> None:
        """Commit one instance's identity to the vault; raises when that failed."""
        done = threading.Event()
        errors: list[BaseException] = []
        with self._cond:
            if self._closed:
                raise OSError("the gateway is shutting down")
            self._queue.append((identity, done, errors))
            self._cond.notify()
        done.wait()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Record what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        from medveil.crypto.vault import Vault

        vault: Vault | None = None
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closed:
                        self._cond.wait()
                    batch, self._queue = self._queue, []
                    if not batch and self._closed:
                        return
                try:
                    if vault is None:
                        vault = Vault(self._url, self._key)
                    for identity, _done, _errors in batch:
                        vault.add(identity)
                    vault.flush()
                except BaseException as exc:  # every waiter learns it failed; nothing acked
                    for _identity, _done, errors in batch:
                        errors.append(exc)
                for _identity, done, _errors in batch:
                    done.set()
        finally:
            if vault is not None:
                vault.close()


def clean_and_write(raw: bytes, token: str, capture: bool = False) -> dict[str, object]:
    """Worker task: clean one received instance and write it under a temporary name.

    The parent makes it durable under its final name (:class:`GroupCommit`) before it
    acknowledges the instance.
    """
    from medveil.durable import UnsafePath, safe_join
    from medveil.engine.instance import clean_instance

    assert _ENGINE is not None and _OUT is not None
    result = clean_instance(_ENGINE, raw, token, capture_identity=capture)
    tmp = ""
    reason = result.reason
    if result.status == "written":
        try:
            # A sender controls retained UIDs: the path must stay inside the store.
            path = safe_join(_OUT, result.relpath)
        except UnsafePath as exc:
            result.status, reason = "quarantined", str(exc)
        else:
            tmp = str(write_temporary(path, result.data))
    return {
        "status": result.status,
        "reason": scrub_reason(reason),
        "relpath": result.relpath,
        "tmp": tmp,
        "size_in": result.size_in,
        "size_out": len(result.data),
        # With a vault: the originals and their replacements (PHI; memory only, never logged).
        "identity": result.identity if tmp else {},
    }


# ---------------------------------------------------------------------------- memory
class ByteBudget:
    """Bounds the bytes of received instances waiting for or in de-identification."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        """Wait until n more bytes fit (one instance is always let through alone)."""
        with self._cond:
            while self.used and self.used + n > self.limit:
                self._cond.wait()
            self.used += n

    def release(self, n: int) -> None:
        """Give n bytes back."""
        with self._cond:
            self.used -= n
            self._cond.notify_all()


# ---------------------------------------------------------------------------- forwarding
def _permanent_failure(status: int) -> bool:
    """True for destination statuses after which resending the same instance cannot help."""
    if (status & 0xFF00) == 0xA700 or status in (0x0213, 0xFE00):
        return False  # out of resources, resource limitation, cancel: try again later
    return (status & 0xF000) in (0xA000, 0xC000) or status in (
        0x0122,  # SOP class not supported
        0x0124,  # not authorised
        0x0211,  # unrecognised operation
    )


def _is_success(status: int) -> bool:
    # Warnings (B000 coercion, B006 elements discarded, B007 mismatch) are acceptance.
    return status == 0x0000 or (status & 0xF000) == 0xB000


def iter_spool(spool: Path) -> Iterator[Path]:
    """Finished spool files, oldest first (hidden temporary and rejected files excluded)."""
    found = []
    for root, dirs, files in os.walk(spool):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if f.startswith(".") or not f.endswith(".dcm"):
                continue
            p = Path(root) / f
            try:
                found.append((p.stat().st_mtime_ns, str(p)))
            except FileNotFoundError:
                continue
    for _mtime, name in sorted(found):
        yield Path(name)


class Forwarder(threading.Thread):
    """Sends spooled instances to the destination; deletes each only once it is accepted."""

    def __init__(
        self,
        spool: Path,
        destination: tuple[str, int, str],
        *,
        ae_title: str,
        log: JsonLog,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        batch: int = 64,
    ) -> None:
        super().__init__(name="medveil-forwarder", daemon=True)
        self.spool = spool
        self.host, self.port, self.aet = destination
        self.ae_title = ae_title
        self.log = log
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.batch = batch
        self.wake = threading.Event()
        self._halt = threading.Event()
        self.forwarded = 0
        self.rejected_dir = spool / ".rejected"

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop after the instance it is sending, and wait for it."""
        self._halt.set()
        self.wake.set()
        self.join(timeout)

    def run(self) -> None:
        """Forward until stopped, backing off exponentially while the destination fails."""
        delay = 0.0
        while not self._halt.is_set():
            if delay:
                self._halt.wait(delay)
                if self._halt.is_set():
                    break
            self.wake.clear()
            pending = list(_take(iter_spool(self.spool), self.batch))
            if not pending:
                delay = 0.0
                self.wake.wait(5.0)
                continue
            try:
                sent, transient = self._send(pending)
            except Exception as exc:  # never let the thread die: log, back off, retry
                self.log("forward-error", error=f"{type(exc).__name__}: {exc}"[:200])
                sent, transient = 0, True
            if transient and not sent:
                delay = min(self.retry_max, max(self.retry_min, delay * 2))
                self.log(
                    "forward-retry",
                    pending=sum(1 for _ in iter_spool(self.spool)),
                    retry_in_s=round(delay, 2),
                )
            else:
                delay = 0.0

    def _send(self, files: list[Path]) -> tuple[int, bool]:
        """Send files over one association; return (accepted count, transient failure seen)."""
        from pydicom.filereader import read_file_meta_info

        metas: dict[Path, tuple[str, str, tuple[int, int]]] = {}
        for p in files:
            try:
                st = p.stat()
                meta = read_file_meta_info(p)
                metas[p] = (
                    str(meta.MediaStorageSOPClassUID),
                    str(meta.TransferSyntaxUID),
                    (st.st_ino, st.st_mtime_ns),
                )
            except FileNotFoundError:
                continue
        pairs = sorted({(c, t) for c, t, _ in metas.values()})[:128]
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for sop_class, ts in pairs:
            ae.add_requested_context(sop_class, ts)
        # pynetdicom leaves its socket unclosed when the connection is refused: look first.
        try:
            socket.create_connection((self.host, self.port), timeout=10).close()
        except OSError:
            self.log("forward-unreachable", destination=f"{self.host}:{self.port}:{self.aet}")
            return 0, True
        assoc = ae.associate(self.host, self.port, ae_title=self.aet)
        if not assoc.is_established:
            self.log("forward-unreachable", destination=f"{self.host}:{self.port}:{self.aet}")
            return 0, True
        sent = 0
        transient = False
        try:
            accepted = {
                (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                for cx in assoc.accepted_contexts
            }
            for p, (sop_class, ts, ident) in metas.items():
                if self._halt.is_set() or not assoc.is_established:
                    transient = transient or not assoc.is_established
                    break
                if (sop_class, ts) not in accepted:
                    if (sop_class, ts) in pairs:
                        self._reject(p, "destination did not accept the SOP class/syntax")
                    continue
                rsp = assoc.send_c_store(p)
                status = int(rsp.Status) if rsp is not None and "Status" in rsp else None
                if status is None:
                    transient = True  # no answer: the destination may not have it
                    break
                if _is_success(status):
                    self._remove_if_unchanged(p, ident)
                    sent += 1
                elif _permanent_failure(status):
                    self._reject(p, f"destination status 0x{status:04X}")
                else:
                    transient = True
                    break
        finally:
            if assoc.is_established:
                assoc.release()
        if sent:
            self.forwarded += sent
            self.log("forwarded", count=sent, total=self.forwarded)
        return sent, transient

    @staticmethod
    def _remove_if_unchanged(path: Path, ident: tuple[int, int]) -> None:
        # A newer copy received while this one was being sent keeps its place in the spool.
        try:
            st = path.stat()
            if (st.st_ino, st.st_mtime_ns) == ident:
                path.unlink()
        except FileNotFoundError:
            pass

    def _reject(self, path: Path, reason: str) -> None:
        rel = path.relative_to(self.spool)
        target = self.rejected_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        self.log("forward-rejected", path=str(rel), reason=reason)


def _take(it: Iterator[Path], n: int) -> Iterator[Path]:
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


# ---------------------------------------------------------------------------- gateway
@dataclass
class GatewayConfig:
    """Everything ``medveil serve`` is configured with."""

    policy: Policy
    secret: bytes
    store: Path | None = None
    forward: tuple[str, int, str] | None = None
    spool: Path | None = None
    port: int = 11112
    host: str = "127.0.0.1"
    ae_title: str = "MEDVEIL"
    allow: list[AllowRule] = field(default_factory=list)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    workers: int | None = None
    max_pending_bytes: int = 512 << 20
    retry_min: float = 0.5
    retry_max: float = 30.0
    # Re-identification vault: (URL, vault key); every stored instance's identity is
    # committed there before the instance is acknowledged.
    vault: tuple[str, bytes] | None = None
    drain_timeout: float = 60.0


class Gateway:
    """The Storage SCP: access control, cleaning in a process pool, durable store/forward."""

    def __init__(self, config: GatewayConfig, log: JsonLog | None = None) -> None:
        if (config.store is None) == (config.forward is None):
            raise MedveilError("give exactly one of --store DIR or --forward HOST:PORT:AET")
        if bool(config.tls_cert) != bool(config.tls_key):
            raise MedveilError("--tls-cert and --tls-key go together")
        if config.tls_ca and not config.tls_cert:
            raise MedveilError("--tls-ca needs --tls-cert and --tls-key")
        self.config = config
        self.log = log or JsonLog()
        self.keyed = Keyed(config.secret)
        if config.store is not None:
            self.out = Path(config.store)
        else:
            self.out = Path(config.spool or "medveil-spool")
        self.out.mkdir(parents=True, exist_ok=True)
        self.syntaxes = cleanable_transfer_syntaxes()
        self.workers = config.workers or os.cpu_count() or 1
        self.budget = ByteBudget(config.max_pending_bytes)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._draining = False
        self._server: Any = None
        self._ae: Any = None
        self._pool: cf.ProcessPoolExecutor | None = None
        self.forwarder: Forwarder | None = None
        self._commit: GroupCommit | None = None
        self._vault: VaultWriter | None = None
        if config.vault is not None:
            import hmac

            if hmac.compare_digest(config.vault[1], config.secret):
                raise MedveilError("the vault key must differ from the pseudonym secret")
        self.counts = {
            "written": 0,
            "quarantined": 0,
            "excluded": 0,
            "refused": 0,
            "rejected": 0,
        }
        self.ssl_context = (
            server_tls_context(config.tls_cert, config.tls_key, config.tls_ca)
            if config.tls_cert and config.tls_key
            else None
        )

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        return int(self._server.server_address[1]) if self._server else self.config.port

    def start(self) -> None:
        """Start the worker pool, the forwarder and the listener; returns at once."""
        cfg = self.config
        _remove_temporaries(self.out)
        self._commit = GroupCommit(self.out)
        if cfg.vault is not None:
            self._vault = VaultWriter(*cfg.vault)
        self._pool = self._new_pool()
        if cfg.forward is not None:
            self.forwarder = Forwarder(
                self.out,
                cfg.forward,
                ae_title=cfg.ae_title,
                log=self.log,
                retry_min=cfg.retry_min,
                retry_max=cfg.retry_max,
            )
            self.forwarder.start()
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = max(10, 4 * self.workers)
        ae.network_timeout = ae.acse_timeout = 30
        ae.dimse_timeout = 300  # a large instance may wait its turn for a worker
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, self.syntaxes)
        ae.add_supported_context(VERIFICATION, NATIVE_SYNTAXES[:2])
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_connect),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_PDU_RECV, self._on_pdu),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
        ]
        self._ae = ae
        self._server = ae.start_server(
            (cfg.host, cfg.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=self.ssl_context,
        )
        self.log(
            "listening",
            host=cfg.host,
            port=self.port,
            ae_title=cfg.ae_title,
            tls=self.ssl_context is not None,
            client_certificates=bool(cfg.tls_ca),
            mode="store" if cfg.store is not None else "forward",
            workers=self.workers,
            transfer_syntaxes=len(self.syntaxes),
            allow=[r.aet + "@" + (",".join(map(str, r.networks)) or "*") for r in cfg.allow],
        )
        if not cfg.allow:
            self.log("warning", message="no --allow list: any calling AE title is accepted")

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # forkserver: the listener's threads are never forked into a worker.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(
                self.config.policy,  # pickled without its compiled cache
                self.config.secret,
                str(self.out),
                os.getpid(),
            ),
        )

    def _clean(self, raw: bytes, token: str) -> dict[str, object]:
        """Run clean_and_write in the pool; a pool broken by a dead worker is replaced once."""
        pool = self._pool
        assert pool is not None
        try:
            return pool.submit(clean_and_write, raw, token, self._vault is not None).result()
        except cf.process.BrokenProcessPool:
            with self._lock:
                if self._pool is pool and not self._draining:
                    self._pool = self._new_pool()
                    self.log("worker-pool-restarted", reason="a worker process died")
                    pool.shutdown(wait=False)
                fresh = self._pool
            assert fresh is not None
            # Every instance in flight in the dead pool failed with it; each gets one more
            # try (an instance that kills its worker again is refused with 0xA700).
            return fresh.submit(clean_and_write, raw, token, self._vault is not None).result()

    def stop(self) -> None:
        """Clean shutdown: refuse new work, finish in-flight instances, then stop everything."""
        with self._lock:
            if self._draining:
                return
            self._draining = True
        self.log("shutdown", stage="draining", in_flight=self._in_flight)
        if self._server is not None:
            self._server.shutdown()  # no new connections from here on
        deadline = time.monotonic() + self.config.drain_timeout
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(0.1)
        # Callers get 0xA700 for anything new and usually release; give them a moment
        # before cutting the associations that are left.
        grace = time.monotonic() + min(10.0, max(0.0, deadline - time.monotonic()))

        def active() -> list[Any]:
            return list(self._ae.active_associations) if self._ae else []

        while time.monotonic() < grace and any(a.is_established for a in active()):
            time.sleep(0.05)
        for assoc in active():
            assoc.abort()
        if self.forwarder is not None:
            self.forwarder.stop(timeout=self.config.drain_timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._commit is not None:
            self._commit.close()
        if self._vault is not None:
            self._vault.close()
        self.log("shutdown", stage="done", **self.counts)

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers (association threads) --------------------------------------------------------
    @staticmethod
    def _address(event: Any) -> str:
        try:
            return str(event.assoc.requestor.address)
        except Exception:
            return ""

    def _on_connect(self, event: Any) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is None:
            return
        try:
            # As DCMTK does: a response's small PDUs go out at once, not after an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if not isinstance(sock, ssl.SSLSocket):
            return
        address = str(event.address[0]) if event.address else ""
        try:
            sock.settimeout(self._ae.network_timeout)
            sock.do_handshake()
            sock.settimeout(None)
        except (OSError, ValueError) as exc:
            with self._lock:
                self.counts["rejected"] += 1
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self.log("tls-rejected", address=address, reason=str(reason))
            # Closed here, not just shut down: pynetdicom skips close() when its own
            # shutdown() of a failed TLS socket raises, which would leak the descriptor.
            sock.close()
            # Nothing will arrive: let the association thread give up at once instead of
            # waiting the ACSE timeout for an A-ASSOCIATE-RQ.
            event.assoc.acse_timeout = 0.001

    @staticmethod
    def _on_pdu(event: Any) -> None:
        # A sender with Nagle's algorithm on holds the data set PDU until the command PDU
        # is acknowledged, and Linux delays that ACK by 40 ms: acknowledge at once instead
        # (quick-ACK mode does not stick, so it is renewed on every PDU).
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None and _TCP_QUICKACK is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                pass

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        aet = str(getattr(rq, "calling_ae_title", "") or "").strip()
        address = self._address(event)
        if self._draining:
            self.log("association-rejected", calling_aet=aet, address=address, reason="draining")
            assoc.acse.send_reject(0x02, 0x03, 0x01)  # transient: temporary congestion
            assoc.kill()
            return
        rules = self.config.allow
        if rules and not any(r.matches(aet, address) for r in rules):
            with self._lock:
                self.counts["rejected"] += 1
            self.log("association-rejected", calling_aet=aet, address=address, reason="not allowed")
            # Permanent, "calling AE title not recognised": the nearest reason PS3.8 has,
            # also for a known title calling from an address it is not allowed from.
            assoc.acse.send_reject(0x01, 0x01, 0x03)
            assoc.kill()
            return
        self.log("association", calling_aet=aet, address=address)

    def _on_released(self, event: Any) -> None:
        self.log("released", calling_aet=str(event.assoc.requestor.ae_title).strip())

    def _on_aborted(self, event: Any) -> None:
        self.log("aborted", calling_aet=str(event.assoc.requestor.ae_title).strip())

    def _on_echo(self, event: Any) -> int:
        return STATUS_SUCCESS

    def _refuse(self, token: str, why: str, status: int) -> Dataset:
        with self._lock:
            self.counts["refused"] += 1
        self.log("refused", instance=token, reason=why, status=f"0x{status:04X}")
        rsp = Dataset()
        rsp.Status = status
        rsp.ErrorComment = why[:64]
        return rsp

    def _on_store(self, event: Any) -> Dataset | int:
        t0 = time.perf_counter()
        token = self.keyed.path_token(str(event.request.AffectedSOPInstanceUID))
        with self._lock:
            if self._draining:
                draining = True
            else:
                draining = False
                self._in_flight += 1
        if draining:
            return self._refuse(token, "gateway shutting down", STATUS_OUT_OF_RESOURCES)
        try:
            raw = part10_bytes(event)
            self.budget.acquire(len(raw))
            try:
                outcome = self._clean(raw, token)
            finally:
                self.budget.release(len(raw))
            if outcome["tmp"] and self._vault is not None:
                # The crosswalk first: an acknowledged instance always has its identity.
                try:
                    self._vault.record(outcome["identity"])  # type: ignore[arg-type]
                except BaseException:
                    Path(str(outcome["tmp"])).unlink(missing_ok=True)
                    raise
            if outcome["tmp"]:
                assert self._commit is not None
                relpath = str(outcome["relpath"])
                check_relpath(relpath)  # the worker checked it too; never trust one place
                self._commit.commit(Path(str(outcome["tmp"])), self.out / relpath)
        except Exception as exc:  # worker died, disk full, ...: not durable, so not accepted
            return self._refuse(
                token, f"not stored: {type(exc).__name__}"[:64], STATUS_OUT_OF_RESOURCES
            )
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
        ms = round((time.perf_counter() - t0) * 1000, 1)
        if outcome["status"] == "written":
            with self._lock:
                self.counts["written"] += 1
            if self.forwarder is not None:
                self.forwarder.wake.set()
            self.log("stored", instance=token, path=outcome["relpath"], ms=ms)
            return STATUS_SUCCESS
        if outcome["status"] == "excluded":
            # A [filter] rule said not to process it: accepted and dropped, as CTP's filter
            # stage does (a failure status would make the sender retry it for ever).
            with self._lock:
                self.counts["excluded"] += 1
            self.log("excluded", instance=token, rule=outcome["reason"], ms=ms)
            return STATUS_SUCCESS
        with self._lock:
            self.counts["quarantined"] += 1
        self.log("quarantined", instance=token, reason=outcome["reason"], ms=ms)
        rsp = Dataset()
        rsp.Status = STATUS_QUARANTINED
        rsp.ErrorComment = "quarantined by de-identification; see gateway log"
        return rsp


def _remove_temporaries(root: Path) -> None:
    """Drop half-written temporaries left by a killed run (they were never acknowledged)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(dirpath, f))
                except OSError:
                    pass
