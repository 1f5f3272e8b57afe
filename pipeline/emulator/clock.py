"""The emulator's clock: real UTC time by default, pinnable and movable by tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class EmulatorClock:
    """Wall clock that tests can pin, advance and release; `now()` is always aware UTC."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._pinned: datetime | None = _aware(start) if start is not None else None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """The emulator's current time."""
        with self._lock:
            if self._pinned is not None:
                return self._pinned
            return datetime.now(UTC) + self._offset

    def now_ms(self) -> int:
        """The current time in integer milliseconds since the epoch."""
        return int(self.now().timestamp() * 1000)

    def pin(self, when: datetime) -> None:
        """Freeze the clock at `when`."""
        with self._lock:
            self._pinned = _aware(when)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative), pinned or not."""
        delta = timedelta(seconds=seconds)
        with self._lock:
            if self._pinned is not None:
                self._pinned += delta
            else:
                self._offset += delta

    def resume_real(self) -> None:
        """Follow real time again, with no offset."""
        with self._lock:
            self._pinned = None
            self._offset = timedelta(0)

    @property
    def pinned(self) -> bool:
        """True while the clock is frozen."""
        return self._pinned is not None


def _aware(when: datetime) -> datetime:
    # Naive datetimes are taken as UTC, like every date in the Oceans API.
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
