"""A small harvest touching every kind of call, checked against the emulator's ground truth."""

from __future__ import annotations

from pathlib import Path

from pipeline.emulator import Emulator
from pipeline.onc import ArchiveQuery, DataSource, OncClient, RawQuery, ScalarQuery
from tests.downloads import download
from tests.integration.onc.conftest import assert_same_columns, merge_scalar, truth_columns

FROM = "2020-01-01T00:00:00.000Z"
SCALAR_TO = "2020-01-01T01:00:00.000Z"
RAW_TO = "2020-01-01T00:40:00.000Z"
FILES_TO = "2020-01-01T00:20:00.000Z"


async def harvest_and_verify(emu: Emulator, onc: OncClient, dest: Path) -> None:
    """Scalar pages, raw pages, an archive list and downloads: all must equal the truth."""
    ctd = DataSource(location_code="BACAX", device_category_code="CTD")
    pages = [p async for p in onc.scalar_pages(ScalarQuery(ctd, FROM, SCALAR_TO), row_limit=300)]
    truth = emu.truth.scalar(
        date_from=FROM, date_to=SCALAR_TO, location_code="BACAX", device_category_code="CTD"
    )
    assert len(pages) >= 8
    assert_same_columns(merge_scalar(pages), truth_columns(truth))

    bpr = DataSource(device_code="BPR_889")
    times: list[str] = []
    readings: list[str] = []
    async for page in onc.raw_pages(RawQuery(bpr, FROM, RAW_TO), row_limit=200):
        times.extend(page.times)
        readings.extend(page.readings)
    raw_truth = emu.truth.raw(date_from=FROM, date_to=RAW_TO, device_code="BPR_889")
    assert times == [r.time for r in raw_truth]
    assert readings == [r.reading for r in raw_truth]

    hydrophone = DataSource(device_code="ICLISTENHF1560")
    files = [f async for f in onc.archive_files(ArchiveQuery(hydrophone, FROM, FILES_TO))]
    file_truth = emu.truth.archive_files(
        date_from=FROM, date_to=FILES_TO, device_code="ICLISTENHF1560"
    )
    assert [f.filename for f in files] == [t.filename for t in file_truth]
    for info, want in zip(files[:3], file_truth[:3], strict=True):
        got = await download(onc, info.filename, dest, expected_size=info.size)
        assert got.sha256 == want.sha256
        assert got.size == want.size
    assert hidden_files(dest) == []


def hidden_files(directory: Path) -> list[str]:
    """Names of temporary (dot) files left in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))
