"""A 2 GB archive file: memory stays flat, a mid-way reset is resumed with Range, sha256 exact."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from pipeline.onc import ArchiveQuery, DataSource
from tests.downloads import download
from tests.integration.onc.conftest import client, running_emulator
from tests.unit.onc.recording import RecordingMetrics

CAMERA = "AXISQ6044PTZACCC8E334C53"
TWO_GB = 2 << 30
# The camera's first file (one every 15 minutes).
FIRST_VIDEO = ArchiveQuery(
    DataSource(device_code=CAMERA),
    "2020-01-01T00:00:00.000Z",
    "2020-01-01T00:15:00.000Z",
    file_extension="mp4",
)
RESET_HALFWAY = {
    "rules": [{"kind": "reset", "endpoint": "archivefile.download", "times": 1, "fraction": 0.5}]
}


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1)) * 1024


class PeakRss:
    """Samples RSS every few ms while running; `peak` is the highest value seen."""

    def __init__(self) -> None:
        self.start = rss_bytes()
        self.peak = self.start
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes())


@pytest.mark.slow
async def test_two_gb_download_is_flat_in_memory_and_resumed_with_range(tmp_path: Path) -> None:
    config = {"archive_file_sizes": {CAMERA: TWO_GB}, "faults": RESET_HALFWAY}
    metrics = RecordingMetrics()
    async with running_emulator(**config) as emu, client(emu, metrics=metrics) as onc:
        (info,) = [f async for f in onc.archive_files(FIRST_VIDEO)]
        (truth,) = emu.truth.archive_files(
            date_from="2020-01-01T00:00:00.000Z",
            date_to="2020-01-01T00:15:00.000Z",
            device_code=CAMERA,
            extension="mp4",
        )
        assert info.size is not None
        assert info.size > 1_800_000_000
        with PeakRss() as rss:
            got = await download(
                onc, info.filename, tmp_path, expected_size=info.size, expected_sha256=truth.sha256
            )
        downloads = [r for r in emu.requests if r.endpoint == "archivefile.download"]
        ranged = [r for r in downloads if r.status == 206]
    assert got.size == truth.size
    assert got.sha256 == truth.sha256
    assert got.resumed_from > 0.3 * truth.size  # the second request continued, not restarted
    assert len(downloads) == 2
    assert len(ranged) == 1
    assert metrics.retries == [("/api/archivefile/download", "network")]
    growth = rss.peak - rss.start
    assert growth < 100 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB"
    assert listing(tmp_path) == [info.filename]


async def test_a_whole_part_file_left_before_its_rename_is_published_without_downloading(
    tmp_path: Path,
) -> None:
    """A process that died after the last byte but before the rename left a whole temp
    file: the next attempt's Range starts at its end, the emulator answers 416 with the full
    size, and the file is verified and published from disk, not fetched again."""
    size = 3_000_000
    (tmp_path / "once").mkdir()
    async with running_emulator(archive_file_sizes={CAMERA: size}) as emu:
        async with client(emu) as onc:
            (info,) = [f async for f in onc.archive_files(FIRST_VIDEO)]
            first = await download(onc, info.filename, tmp_path / "once")
            # As if the first run had stopped just before publishing: the whole temp file.
            part = tmp_path / f".{info.filename}.part"
            part.write_bytes(first.path.read_bytes())
            got = await download(
                onc, info.filename, tmp_path, expected_size=size, expected_sha256=first.sha256
            )
        downloads = [r for r in emu.requests if r.endpoint == "archivefile.download"]
    assert [r.status for r in downloads] == [200, 416]
    assert got.sha256 == first.sha256
    assert got.resumed_from == size
    assert got.path.read_bytes() == first.path.read_bytes()
    assert listing(tmp_path) == sorted([info.filename, "once"])
