"""The Writer seam: an output format turns one window of records into one published file.

Output names are a pure function of (dataset, window, format), so a re-run after a crash
rewrites the same file instead of adding a second one. A window writer merges what the file
already holds with what was fetched again (lookback, near-real-time growth), keyed by time
(and sensor), so a record is never written twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pipeline.records import PublishedFile, SensorInfo, Window
from pipeline.times import format_onc_time


class WindowWriter(Protocol):
    """Collects the records of one window, then publishes them atomically in one file."""

    def add_scalar(
        self,
        sensor: SensorInfo,
        times: Sequence[str],
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """Add scalar readings of one sensor; returns how many fell inside the window."""
        ...

    def add_raw(
        self, times: Sequence[str], readings: Sequence[str], line_types: Sequence[str]
    ) -> int:
        """Add raw instrument lines; returns how many fell inside the window."""
        ...

    @property
    def record_count(self) -> int:
        """Distinct records the file will hold (existing ones included)."""
        ...

    def publish(self) -> PublishedFile | None:
        """Write the merged window durably under its final name; None when there is nothing."""
        ...


@runtime_checkable
class PartitionedWindowWriter(WindowWriter, Protocol):
    """A window writer whose file covers a whole partition (NetCDF, CSV, raw text).

    The engine records `time_start`/`time_end` (the partition's range) in the manifest
    instead of the window's, since the file holds every window of its partition.
    """

    @property
    def time_start(self) -> datetime:
        """Start of the partition the file covers."""
        ...

    @property
    def time_end(self) -> datetime:
        """End of the partition the file covers."""
        ...


@runtime_checkable
class ScalarPageSink(Protocol):
    """A window writer that takes a whole scalar page at once (to stream it in time order)."""

    def add_scalar_page(
        self, series: Sequence[tuple[SensorInfo, Sequence[str], Sequence[float], Sequence[int]]]
    ) -> int:
        """Add every sensor of one page; returns the records kept."""
        ...


@runtime_checkable
class PageMetadataSink(Protocol):
    """A window writer that also wants a page's metadata (qaqcFlagInfo with metadata=full)."""

    def note_page(self, qaqc_flag_info: Mapping[str, str]) -> None:
        """Use the flag table of the page just added."""
        ...


class Writer(Protocol):
    """An output format (JSON Lines, NetCDF, CSV, raw text)."""

    name: str

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """Where the file for (dataset, window) lives, relative to the output root."""
        ...

    def open_window(self, root: Path, dataset_id: str, window: Window) -> WindowWriter:
        """Start collecting one window; reads the existing file, if any, to merge with it."""
        ...


def iso_bounds(window: Window) -> tuple[str, str]:
    """The window's bounds in ONC's fixed-width time format, for fast string comparison.

    ONC always answers `yyyy-MM-ddTHH:mm:ss.SSSZ`; strings of that one width sort like times.
    """
    return format_onc_time(window.start), format_onc_time(window.end)
