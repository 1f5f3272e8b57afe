"""Backfill progress: a one-line bar with ETA on a terminal, periodic log lines elsewhere.

On a terminal the bar and the log lines share stderr: log lines go through `log_stream()`,
which clears the bar, writes the line and draws the bar again below it, so neither breaks
the other.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TextIO, cast

import structlog

log = structlog.get_logger(__name__)

_BAR = 30


def format_eta(seconds: float | None) -> str:
    """`1h02m`, `3m12s`, `45s`, or `?` while unknown."""
    if seconds is None:
        return "?"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressReporter:
    """Called as (stream, done, total) by the engine after each unit of a backfill."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool,
        log_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._tty = tty
        self._log_every = log_every
        self._clock = clock
        self._started = clock()
        self._last_log = float("-inf")
        self._bar = ""  # the unfinished bar on screen, drawn again after each log line

    def log_stream(self) -> TextIO:
        """A stream for log lines that keeps them off the bar's line."""
        # io.TextIOBase is what the logging handler needs (write, flush, isatty).
        return cast(TextIO, _AboveTheBar(self))

    def write_above(self, text: str) -> None:
        """Write log text on its own line(s), then draw the bar again."""
        if self._bar:
            self._out.write("\r\x1b[K")  # back to column 0 and clear the bar
        self._out.write(text)
        if self._bar and text.endswith("\n"):
            self._out.write(self._bar)
        self._out.flush()

    def close(self) -> None:
        """End an unfinished bar's line (an interrupted backfill), so what follows starts
        on a line of its own."""
        if self._bar:
            self._out.write("\n")
            self._out.flush()
            self._bar = ""

    def eta(self, done: int, total: int) -> float | None:
        """Seconds left at the average pace so far."""
        elapsed = self._clock() - self._started
        if done <= 0 or elapsed <= 0:
            return None
        return (total - done) * elapsed / done

    def __call__(self, stream: str, done: int, total: int) -> None:
        """Render (TTY) or log (elsewhere) the progress of one stream."""
        total = max(total, 1)
        share = min(done / total, 1.0)
        eta = self.eta(done, total)
        if self._tty:
            filled = int(share * _BAR)
            bar = "#" * filled + "." * (_BAR - filled)
            line = f"{stream} [{bar}] {done}/{total} {share:4.0%} ETA {format_eta(eta)}"
            self._out.write("\r" + line + ("\n" if done >= total else ""))
            self._out.flush()
            self._bar = "" if done >= total else line
            return
        now = self._clock()
        if done >= total or now - self._last_log >= self._log_every:
            self._last_log = now
            log.info(
                "backfill_progress",
                stream=stream,
                done=done,
                total=total,
                percent=round(share * 100, 1),
                eta_s=None if eta is None else round(eta),
            )


class _AboveTheBar(io.TextIOBase):
    """The log handler's stream while a bar may be on screen."""

    def __init__(self, reporter: ProgressReporter) -> None:
        super().__init__()
        self._reporter = reporter

    def write(self, text: str) -> int:
        self._reporter.write_above(text)
        return len(text)

    def flush(self) -> None:
        self._reporter._out.flush()

    def isatty(self) -> bool:
        return self._reporter._out.isatty()
