"""Backfill progress: a one-line bar with ETA on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

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
            line = f"\r{stream} [{bar}] {done}/{total} {share:4.0%} ETA {format_eta(eta)}"
            self._out.write(line + ("\n" if done >= total else ""))
            self._out.flush()
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
