"""Fixtures: an emulator on a pinned clock, a client of it, and discovery metadata."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.engine.describe import discover_dataset_meta
from pipeline.onc import ClientOptions, DataSource, OncClient, ScalarQuery
from pipeline.outputs.base import WindowWriter
from pipeline.outputs.metadata import DatasetMeta
from pipeline.records import SensorInfo
from pipeline.settings import OutputSettings, TimeSeriesStream

TOKEN = "outputs-test-token-5c1d"
# A pinned instant: every run sees the same data.
T0 = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        token=TOKEN,
        seed=37,  # the engine tests' seed: the hours before T0 hold gap-fill runs and gaps
        onc_port=0,
        registry_port=0,
        clock_start=T0,
        auth_delay=(0.0, 0.0),
    )
    async with Emulator(config) as emulator:
        yield emulator


@pytest.fixture
async def onc(emu: Emulator) -> AsyncIterator[OncClient]:
    options = ClientOptions(
        token=TOKEN,
        base_url=emu.onc_url,
        backoff_base=0.01,
        backoff_max=0.2,
        max_rate_per_s=500.0,
        read_timeout=10.0,
    )
    async with OncClient(options) as client:
        yield client


def stream(name: str, **fields: object) -> TimeSeriesStream:
    """A scalardata stream with the given addressing."""
    return TimeSeriesStream.model_validate({"name": name, "kind": "scalardata", **fields})


async def meta_for(onc: OncClient, ts: TimeSeriesStream, **attributes: str) -> DatasetMeta:
    """Discovery metadata of a stream, as the daemon builds it."""
    return await discover_dataset_meta(onc, ts, OutputSettings(attributes=attributes))


async def feed_scalar(
    onc: OncClient,
    ts: TimeSeriesStream,
    writers: list[WindowWriter],
    date_from: datetime,
    date_to: datetime,
    *,
    row_limit: int | None = None,
) -> int:
    """Fetch [date_from, date_to) with the real client and add every page to the writers, the
    way the engine does; returns the pages fetched."""
    query = ScalarQuery(
        source=DataSource(
            location_code=ts.location_code,
            device_category_code=ts.device_category_code,
            device_code=ts.device_code,
        ),
        date_from=date_from,
        date_to=date_to,
    )
    pages = 0
    async for page in onc.scalar_pages(query, row_limit=row_limit):
        pages += 1
        for series in page.series:
            sensor = SensorInfo(
                code=series.sensor_code,
                name=series.sensor_name,
                unit=series.unit,
                property_code=series.property_code,
            )
            for writer in writers:
                writer.add_scalar(
                    sensor, list(series.sample_times), series.values, series.qaqc_flags
                )
    return pages


def same_value(a: float, b: float) -> bool:
    """Equal, with NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b
