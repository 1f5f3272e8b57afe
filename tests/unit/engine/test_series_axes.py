"""A request series over sensors on different time axes, on an in-memory scalardata twin
that pages as ONC does: `rowLimit` counts rows per sensor (docs/dev/emulator.md: py
`tests/scalar_data/test_scalardata_device.py`), and `next.dateFrom` is the first row that did
not fit. A slow sensor's rows then run past the fast sensor's continuation: they must not
make the series take the groups they fall in for fetched."""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.engine.context import HarvestContext
from pipeline.engine.runner import harvest_pass
from pipeline.onc import ScalarPage, ScalarQuery
from pipeline.onc.models.common import NextPage
from pipeline.onc.models.data import ScalarSeries, TimeAxis
from pipeline.outputs.pool import InlineWindowBuilder
from pipeline.outputs.writers import LazyWriters
from pipeline.records import NewDataEvent
from pipeline.settings import TimeSeriesStream
from pipeline.state.memory import InMemoryStateStore
from pipeline.times import format_onc_time
from tests.clocks import FakeClock

T0 = datetime(2026, 11, 18, tzinfo=UTC)
HOUR = timedelta(hours=1)
HORIZON = T0 + 6 * HOUR
STREAM = TimeSeriesStream(
    name="ctd",
    kind="scalardata",
    device_code="CTD1",
    start=T0,
    window=HOUR,
    safety_lag=timedelta(seconds=30),
    formats=["jsonl"],
)
# A fast sensor (a row a minute) and a slow one (every ten minutes).
STEPS = {"fast": timedelta(minutes=1), "slow": timedelta(minutes=10)}


@dataclass
class ScalarTwin:
    """scalardata of the STEPS sensors, at most `row_limit` rows a sensor a page."""

    row_limit: int = 50
    requests: list[datetime] = field(default_factory=list)

    async def scalar_pages(
        self, query: ScalarQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[ScalarPage]:
        assert isinstance(query.date_from, datetime)
        assert isinstance(query.date_to, datetime)
        at, end = query.date_from, query.date_to
        while True:
            self.requests.append(at)
            sensors, left_out = [], []
            for code in STEPS:
                times = expected(code, at, end)
                if len(times) > self.row_limit:
                    left_out.append(times[self.row_limit])
                    times = times[: self.row_limit]
                sensors.append(
                    ScalarSeries(
                        code,
                        code,
                        "m",
                        None,
                        None,
                        TimeAxis.of([format_onc_time(t) for t in times]),
                        array("d", [1.0] * len(times)),
                        array("q", [1] * len(times)),
                    )
                )
            following = min(left_out, default=None)
            more = None
            if following is not None:
                more = NextPage({"dateFrom": format_onc_time(following), "dateTo": ""})
            yield ScalarPage(sensors, next=more)
            if following is None:
                return
            at = following


def expected(code: str, start: datetime, end: datetime) -> list[datetime]:
    """The sample times of sensor `code` in [start, end)."""
    step = STEPS[code]
    at = T0 + -((T0 - start) // step) * step  # the first on the sensor's grid at or after start
    times = []
    while at < end:
        times.append(at)
        at += step
    return times


class Events:
    async def publish(self, event: NewDataEvent) -> None:
        pass


@pytest.fixture
async def ctx(tmp_path: Path) -> HarvestContext:
    clock = FakeClock(HORIZON + timedelta(seconds=30))
    store = InMemoryStateStore(clock=clock)
    await store.open()
    return HarvestContext(
        client=ScalarTwin(),  # type: ignore[arg-type]
        store=store,
        output_root=tmp_path,
        inline=InlineWindowBuilder(LazyWriters({}, "hourly"), tmp_path),
        events=Events(),
        clock=clock,
        partition="hourly",
    )


def harvested(root: Path) -> Counter[tuple[str, str]]:
    """(sensor, sample time) of every record in the JSON Lines files, with its count."""
    rows: Counter[tuple[str, str]] = Counter()
    for path in root.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            rows[(record["sensorCode"], record["sampleTime"])] += 1
    return rows


def temporaries(root: Path) -> list[Path]:
    return list(root.rglob("*.tmp"))


def every_row() -> Counter[tuple[str, str]]:
    return Counter(
        (code, format_onc_time(t)) for code in STEPS for t in expected(code, T0, HORIZON)
    )


async def cursor(ctx: HarvestContext) -> datetime | None:
    record = await ctx.store.get_stream("ctd")
    assert record is not None
    return record.cursor_time


async def test_a_slow_sensor_past_the_continuation_costs_no_rows_of_the_fast_one(
    ctx: HarvestContext, tmp_path: Path
) -> None:
    outcome = await harvest_pass(ctx, STREAM, max_pages=None)

    assert outcome.caught_up
    assert await cursor(ctx) == HORIZON
    assert harvested(tmp_path) == every_row()  # each row once, none missing
    # The fast sensor's 360 rows at 50 a page: the series follows every `next`.
    assert ctx.client.requests == [T0 + n * 50 * STEPS["fast"] for n in range(8)]  # type: ignore[attr-defined]


async def test_a_budget_cut_commits_the_cursor_at_the_continuation_and_leaves_no_temporaries(
    ctx: HarvestContext, tmp_path: Path
) -> None:
    outcome = await harvest_pass(ctx, STREAM, max_pages=1)

    assert not outcome.caught_up
    assert await cursor(ctx) == T0 + 50 * STEPS["fast"]  # the first page's next.dateFrom
    assert not temporaries(tmp_path)
    # Only rows before the continuation were written; the slow sensor's later rows are
    # left to the requests that go on from there.
    assert all(time < "2026-11-18T00:50" for _, time in harvested(tmp_path))

    for _ in range(10):
        if (await harvest_pass(ctx, STREAM, max_pages=1)).caught_up:
            break
    assert await cursor(ctx) == HORIZON
    assert harvested(tmp_path) == every_row()
    assert not temporaries(tmp_path)
