"""Builders shared by the contract tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from pipeline.state import ManifestEntry
from tests.contract.conftest import T0


def entry(
    path: str,
    stream: str = "s1",
    *,
    size: int = 100,
    sha: str = "a",
    start: datetime = T0,
    hours: int = 1,
    records: int | None = 10,
) -> ManifestEntry:
    """A manifest entry with plausible defaults; `sha` is repeated to 64 characters."""
    return ManifestEntry(
        path=path,
        stream=stream,
        dataset_id="ds_" + stream,
        size=size,
        sha256=(sha * 64)[:64],
        time_start=start,
        time_end=start + timedelta(hours=hours),
        records=records,
        source="https://data.oceannetworks.ca/api/scalardata/location",
        published_at=T0 + timedelta(days=1),
    )
