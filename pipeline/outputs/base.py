"""The Writer seam: an output format turns one window of records into one published file.

One contract per window: `Writer.open_window` -> `WindowWriter.add` batches -> `publish` or
`discard`. Each format declares the batch kinds it writes (`Writer.kinds`) and its window
writer takes only those: the assembly refuses a batch of another kind before it reaches the
format, so no format carries code that exists only to refuse one.

Output names are a pure function of (dataset, window, format), so a re-run after a crash
rewrites the same file instead of adding a second one. A window writer merges what the file
already holds with what was fetched again (lookback, near-real-time growth), keyed by time
(and sensor), so a record is never written twice. A window that only adds records after the
file's last one is appended in place (NetCDF, CSV, JSON Lines, JSON Lines CSV, raw text;
`growth.py`); any other change rewrites the file atomically.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pipeline.records import BatchKind, PublishedFile, RawBatch, ScalarBatch, Window
from pipeline.times import format_onc_time

B = TypeVar("B", bound=ScalarBatch | RawBatch, contravariant=True)


class WindowWriter(Protocol[B]):
    """Collects the records of one window, then publishes them in one file (appended in
    place, or the file rewritten atomically)."""

    def add(self, batch: B) -> int:
        """Merge one page (of a kind the format declares); returns the records kept."""
        ...

    @property
    def record_count(self) -> int:
        """Distinct records the file will hold (existing ones included)."""
        ...

    @property
    def covers(self) -> tuple[datetime, datetime] | None:
        """The time range the file covers when it is more than the window (the partition of
        a NetCDF, CSV or raw-text file): the manifest records it instead of the window's.
        None: the file holds the window alone."""
        ...

    def publish(self) -> PublishedFile | None:
        """Make the merged window durable in its final file (appended, or rewritten under a
        temporary name and renamed; inside `durable.folder_flushes_gathered`, durable when
        that block ends); None when there is nothing."""
        ...

    def discard(self) -> None:
        """Drop whatever the window wrote so far; the final file stays as it was."""
        ...


class Writer(Protocol):
    """An output format (JSON Lines, NetCDF, CSV, raw text)."""

    name: str
    kinds: frozenset[BatchKind]

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """Where the file for (dataset, window) lives, relative to the output root."""
        ...

    def open_window(self, root: Path, dataset_id: str, window: Window) -> WindowWriter[Any]:
        """Start collecting one window; reads the existing file, if any, to merge with it."""
        ...


def iso_bounds(window: Window) -> tuple[str, str]:
    """The window's bounds in ONC's fixed-width time format, for fast string comparison.

    ONC always answers `yyyy-MM-ddTHH:mm:ss.SSSZ`; strings of that one width sort like times.
    """
    return format_onc_time(window.start), format_onc_time(window.end)
