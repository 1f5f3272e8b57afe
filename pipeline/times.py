"""UTC time: the epoch, the current time, and the conversions every package shares.

Everything inside the pipeline is an aware UTC `datetime`; a naive one is a programming error,
refused rather than guessed at. Files and state count in integer milliseconds since the epoch,
and the Oceans API speaks one text format, `yyyy-MM-ddTHH:mm:ss.SSSZ`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

#: What components take instead of calling `utc_now` themselves, so tests can set the time.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (every component's default clock)."""
    return datetime.now(UTC)


def as_utc(value: datetime, name: str) -> datetime:
    """`value` converted to UTC; a naive datetime is refused with a ValueError naming `name`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def as_utc_or_none(value: datetime | None, name: str) -> datetime | None:
    """`as_utc` that lets None through."""
    return None if value is None else as_utc(value, name)


def epoch_ms(instant: datetime) -> int:
    """An aware datetime as integer milliseconds since 1970-01-01T00:00:00Z (floored)."""
    return (instant.astimezone(UTC) - EPOCH) // _MS


def from_epoch_ms(ms: int) -> datetime:
    """Integer milliseconds since the epoch as an aware UTC datetime (exact: no float seconds)."""
    return EPOCH + timedelta(milliseconds=ms)


def format_onc_time(value: datetime) -> str:
    """An aware datetime as the Oceans API writes it: `2026-11-25T12:00:00.000Z` (UTC, ms)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def short_duration(seconds: float | None) -> str:
    """`90` -> `1.5m`, `7200` -> `2.0h`, `None` -> `-`: a lag or age for an operator's table."""
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
