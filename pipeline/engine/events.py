"""Events the engine emits after publishing data; consumers: registry notifier, ERDDAP flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class NewDataEvent:
    """Data for `dataset_id` covering [time_start, time_end) is published and durable on disk.

    `replaced` is true when at least one file already existed and was rewritten (a metric;
    ERDDAP re-reads changed files on a plain flag); `files` are the final paths, never
    temporary names.
    """

    stream: str
    dataset_id: str
    time_start: datetime
    time_end: datetime
    files: tuple[Path, ...] = field(default=())
    records: int = 0
    replaced: bool = False
