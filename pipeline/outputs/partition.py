"""Output partitions: the hourly, daily or monthly file a harvest window's records belong to.

Engine windows (the unit of fetching) are never larger than a day and divide a day evenly, so
every window lies inside exactly one partition. Partition files are named by a fixed-width UTC
label (`2026112006`, `20261120`, `202611`): a pure function of the instant, so a re-run after a
crash rewrites the same file, and names of one dataset sort like their times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pipeline.records import Window
from pipeline.times import epoch_ms

PartitionKind = Literal["hourly", "daily", "monthly"]
PARTITION_KINDS: tuple[PartitionKind, ...] = ("hourly", "daily", "monthly")


@dataclass(frozen=True, slots=True)
class Partition:
    """A half-open UTC range [start, end) that one output file covers, with its file label."""

    kind: PartitionKind
    start: datetime
    end: datetime

    @classmethod
    def containing(cls, instant: datetime, kind: PartitionKind) -> Partition:
        """The partition of `kind` that holds `instant` (an aware datetime)."""
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"instant must be timezone-aware, got naive {instant!r}")
        at = instant.astimezone(UTC)
        if kind == "hourly":
            start = at.replace(minute=0, second=0, microsecond=0)
            return cls(kind, start, start + timedelta(hours=1))
        if kind == "daily":
            start = at.replace(hour=0, minute=0, second=0, microsecond=0)
            return cls(kind, start, start + timedelta(days=1))
        if kind == "monthly":
            start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            following = start.replace(
                year=start.year + start.month // 12, month=start.month % 12 + 1
            )
            return cls(kind, start, following)
        raise ValueError(f"unknown partition kind {kind!r}; expected one of {PARTITION_KINDS}")

    @classmethod
    def of_window(cls, window: Window, kind: PartitionKind) -> Partition:
        """The partition holding `window`; ValueError when the window straddles two."""
        partition = cls.containing(window.start, kind)
        if window.end > partition.end:
            raise ValueError(
                f"window {window.label()} is larger than a {kind} partition; "
                "use a coarser output.partition or a smaller stream window"
            )
        return partition

    def label(self) -> str:
        """Fixed-width UTC label: `2026112006` (hourly), `20261120` (daily), `202611` (monthly)."""
        start = self.start
        if self.kind == "hourly":
            return f"{start.year:04d}{start:%m%d%H}"
        if self.kind == "daily":
            return f"{start.year:04d}{start:%m%d}"
        return f"{start.year:04d}{start:%m}"

    def relative_path(self, dataset_id: str, suffix: str) -> Path:
        """`<dataset>/<yyyy>/<dataset>_<label><suffix>`, relative to the output root."""
        return Path(dataset_id) / f"{self.start.year:04d}" / f"{dataset_id}_{self.label()}{suffix}"

    @property
    def start_ms(self) -> int:
        """Start as integer milliseconds since the epoch."""
        return epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        """End as integer milliseconds since the epoch."""
        return epoch_ms(self.end)


class PartitionFile:
    """What every partitioned window writer tells the engine about its file.

    Subclasses set `_path` (the final file) and `_partition` in their constructor.
    """

    _path: Path
    _partition: Partition

    @property
    def path(self) -> Path:
        """The partition file this writer publishes."""
        return self._path

    @property
    def time_start(self) -> datetime:
        """Start of the partition the file covers (for the manifest)."""
        return self._partition.start

    @property
    def time_end(self) -> datetime:
        """End of the partition the file covers (for the manifest)."""
        return self._partition.end

    @property
    def covers(self) -> tuple[datetime, datetime]:
        """The partition the file covers: the manifest records it instead of the window."""
        return self._partition.start, self._partition.end

    def discard(self) -> None:
        """Nothing to drop: a partition file is written only by `publish`, which removes its
        own temporary when it fails."""
