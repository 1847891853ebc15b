"""Console output of the ``medveil`` command: logging setup, error lines, progress.

Everything the command says on stderr goes through the ``medveil`` logger (modules log to
child loggers such as ``medveil.cli.deid``), so ``-v``, ``-q`` and ``--log-format json``
apply to all of it. Messages carry what they carried before (input paths, counts); records
of the run are written elsewhere and are not logged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

LOGGER = logging.getLogger("medveil")

# The progress bar being drawn, if any: log lines are written above it, not through it.
_active_bar: tqdm[Any] | None = None


class ConsoleHandler(logging.Handler):
    """Write records to the current ``sys.stderr``, above an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write one formatted record."""
        try:
            line = self.format(record)
            if _active_bar is not None:
                _active_bar.write(line, file=sys.stderr)
            else:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:
            self.handleError(record)


# Control characters shown escaped: an input's name (chosen by whoever made the archive)
# must not start a console line of its own or send terminal escape sequences.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})
# What JSON leaves raw but readers may take for a line break (str.splitlines does).
_JSON_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """text as one printable console line: control characters and lone surrogates escaped."""
    if text.isprintable():
        return text
    text = text.translate(_ESCAPES)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class TextFormatter(logging.Formatter):
    """``medveil: message``; records logged with ``extra={"bare": True}`` keep no prefix."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's console line."""
        message = one_line(record.getMessage())
        return message if getattr(record, "bare", False) else f"medveil: {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line = json.dumps(entry, ensure_ascii=False).translate(_JSON_BREAKS)
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


def setup_logging(verbose: int = 0, quiet: bool = False, log_format: str = "text") -> None:
    """Send the ``medveil`` logger to stderr: INFO by default, DEBUG with -v, WARNING with -q."""
    for old in list(LOGGER.handlers):
        if isinstance(old, ConsoleHandler):
            LOGGER.removeHandler(old)
    handler = ConsoleHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    # The command owns its console: records are not repeated by a root handler.
    LOGGER.propagate = False


def _ensure_setup() -> None:
    """Default console logging when a subcommand runs without ``main`` (the Python API)."""
    if not any(isinstance(h, ConsoleHandler) for h in LOGGER.handlers):
        setup_logging()


def error(logger: logging.Logger, message: str) -> None:
    """Log one error line (``medveil: message`` on the text console)."""
    _ensure_setup()
    logger.error("%s", message)


def warning(logger: logging.Logger, message: str, *, bare: bool = False) -> None:
    """Log one warning line (kept by -q); ``bare`` drops the ``medveil:`` prefix."""
    _ensure_setup()
    logger.warning("%s", message, extra={"bare": bare})


def debug(logger: logging.Logger, message: str) -> None:
    """Log one debug line (shown with -v)."""
    _ensure_setup()
    logger.debug("%s", message)


def info(logger: logging.Logger, message: str, *, bare: bool = False) -> None:
    """Log one informational line (silenced by -q); ``bare`` drops the ``medveil:`` prefix."""
    _ensure_setup()
    logger.info("%s", message, extra={"bare": bare})


def say(line: str) -> None:
    """Print one line of the command's output on stdout, above an active progress bar."""
    line = one_line(line)
    if _active_bar is not None:
        _active_bar.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


class Progress:
    """Progress of a run: a tqdm bar on a terminal, else one log line every few seconds.

    Nothing is shown before the first file is done, so a run that fails on its inputs
    prints no empty bar. The bar shows an ETA whenever the total is known.
    """

    def __init__(
        self,
        logger: logging.Logger,
        unit: str = "file",
        interval: float = 5.0,
        enabled: bool = True,
        tty: bool | None = None,
    ) -> None:
        """Report to logger (non-TTY) or a bar on stderr (TTY); enabled=False shows nothing."""
        self.logger = logger
        self.unit = unit
        self.interval = interval
        self.enabled = enabled and LOGGER.isEnabledFor(logging.INFO)
        self.tty = _stderr_is_tty() if tty is None else tty
        self.bar: tqdm[Any] | None = None
        self.started = time.monotonic()
        self.last_line = self.started
        self.last_draw = 0.0
        # The latest update not drawn yet (a bar is drawn at most every DRAW_INTERVAL).
        self.undrawn: tuple[int, int | None, str] | None = None

    # Seconds between two draws of the bar: a run reports every file, far more often than
    # a terminal can show, and each draw costs the run's parent process time.
    DRAW_INTERVAL = 0.1

    def update(self, done: int, total: int | None = None, status: str = "") -> None:
        """Show that done of total (None: unknown) units are done; status is appended."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if self.bar is not None and now - self.last_draw < self.DRAW_INTERVAL and done != total:
                self.undrawn = (done, total, status)
                return
            self.last_draw, self.undrawn = now, None
            self._draw(done, total, status)
            return
        if now - self.last_line >= self.interval:
            self.last_line = now
            info(self.logger, self.line(done, total, status, now - self.started))

    def line(self, done: int, total: int | None, status: str, elapsed: float) -> str:
        """'120 of 400 files done, 2 quarantined; 31 s, ETA 72 s' (a non-TTY progress line)."""
        count = f"{done} of {total}" if total else f"{done}"
        eta = ""
        if total and done and total > done:
            eta = f", ETA {elapsed / done * (total - done):.0f} s"
        return f"{count} {self.unit}s done{f', {status}' if status else ''}; {elapsed:.0f} s{eta}"

    def _draw(self, done: int, total: int | None, status: str) -> None:
        global _active_bar
        if self.bar is None:
            from tqdm import tqdm

            # Drawn first at the count already done: never a "0/N" or "0file" state.
            self.bar = tqdm(
                total=total, initial=done, unit=self.unit, dynamic_ncols=True, file=sys.stderr
            )
            _active_bar = self.bar
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if status:
            self.bar.set_postfix_str(status, refresh=False)

    def close(self) -> None:
        """Finish the bar, if one was drawn."""
        global _active_bar
        if self.bar is not None:
            if self.undrawn is not None:
                self._draw(*self.undrawn)  # the bar ends where the run did
                self.undrawn = None
            self.bar.close()
            if _active_bar is self.bar:
                _active_bar = None
            self.bar = None


def _stderr_is_tty() -> bool:
    """Whether stderr is a terminal (a bar would be drawn, not logged)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
