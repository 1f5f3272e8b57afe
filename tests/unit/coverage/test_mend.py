"""The mender re-harvests under the stream's lease: never beside a live pass of the same
stream (here or in another instance), which would rebuild the same partition file at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.coordination.leases import coordination_for, stream_resource
from pipeline.coverage.mend import (
    Mender,
    _found_nothing_upstream,
    _mend_error,
    mend_chunks,
    mend_key,
)
from pipeline.coverage.model import Span
from pipeline.engine.context import HarvestContext
from pipeline.outputs.pool import InlineWindowBuilder
from pipeline.records import NewDataEvent
from pipeline.settings import ArchiveFileStream
from pipeline.state.memory import InMemoryStateStore
from tests.clocks import FakeClock
from tests.fake_onc import ArchivedFile, FakeOnc

T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)
STREAM = ArchiveFileStream(
    name="hydrophone",
    kind="archivefile",
    location_code="BACAX",
    device_category_code="HYDROPHONE",
    start=T0,
)


class Events:
    async def publish(self, event: NewDataEvent) -> None:
        pass


async def test_a_mend_waits_while_the_stream_is_held_and_runs_once_it_is_free(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0 + 6 * HOUR)
    store = InMemoryStateStore(clock=clock)
    await store.open()
    onc = FakeOnc(files={"a.wav": ArchivedFile(b"one", T0, T0 + HOUR, T0 + 2 * HOUR)})
    coordination = coordination_for(store)
    ctx = HarvestContext(
        client=onc,
        store=store,
        output_root=tmp_path,
        inline=InlineWindowBuilder({}, tmp_path),
        events=Events(),
        clock=clock,
        coordination=coordination,
        owner="this-instance",
    )
    mender = Mender(ctx, lambda: {STREAM.name: STREAM})
    mender._slots = asyncio.Semaphore(1)
    span = Span(T0, T0 + HOUR)

    # A live pass (here or elsewhere) holds the stream: the mend is deferred, not failed.
    live = await coordination.claim(stream_resource(STREAM.name), "live-pass", timedelta(minutes=1))
    assert live is not None
    await mender._mend(STREAM, span)
    assert onc.downloads == []
    assert await store.note_attempt(STREAM.name, mend_key(span), "probe") == 1, "no attempt noted"
    await store.clear_attempts(STREAM.name, mend_key(span))

    # Once the stream is free, the same mend runs and publishes the file.
    await coordination.release(live)
    await mender._mend(STREAM, span)
    assert onc.downloads == ["a.wav"]
    assert (
        tmp_path / STREAM.resolved_dataset_id / "2026" / "11" / "20" / "a.wav"
    ).read_bytes() == b"one"
    await store.close()


def test_mend_chunks_widen_to_whole_seconds_so_the_key_names_the_same_span() -> None:
    from pipeline.coverage.held import quarantined_span
    from pipeline.state.base import QuarantineRecord

    # The availability probe halves spans: bounds like 56.25 s are what it finds.
    missing = Span(T0 + timedelta(seconds=56.25), T0 + timedelta(seconds=57.5))
    [chunk] = mend_chunks(STREAM, missing)
    assert chunk == Span(T0 + timedelta(seconds=56), T0 + timedelta(seconds=58))
    record = QuarantineRecord(
        stream=STREAM.name,
        item_key=mend_key(chunk),
        reason="mend_failed",
        detail="",
        attempts=3,
        at=T0,
    )
    found = quarantined_span(record, [])
    assert found is not None
    assert found.span == chunk


def test_product_mends_cover_whole_periods_on_the_grid() -> None:
    from pipeline.settings import DataProductStream

    stream = DataProductStream.model_validate(
        {
            "name": "ctd-product",
            "kind": "dataproduct",
            "location_code": "BACAX",
            "device_category_code": "CTD",
            "data_product_code": "TSSD",
            "extension": "csv",
            "start": T0,
        }
    )
    assert stream.period == timedelta(days=1)
    # Half a day inside one period and a sliver of the next: the two whole periods.
    got = mend_chunks(stream, Span(T0 + 6 * HOUR, T0 + timedelta(days=1, hours=1)))
    assert got == [
        Span(T0, T0 + timedelta(days=1)),
        Span(T0 + timedelta(days=1), T0 + timedelta(days=2)),
    ]


def test_a_time_series_mend_that_adds_no_record_is_onc_saying_nothing_is_there() -> None:
    from pipeline.engine.streams.base import PassOutcome
    from pipeline.settings import TimeSeriesStream

    series = TimeSeriesStream.model_validate(
        {
            "name": "ctd",
            "kind": "scalardata",
            "location_code": "BACAX",
            "device_category_code": "CTD",
            "start": T0,
        }
    )
    # Re-harvesting republishes the unchanged files: files > 0 says nothing; no new record is
    # ONC's answer (an outage), remembered as an upstream gap instead of mended forever.
    empty = PassOutcome(series.name, files=2, records=0)
    assert _mend_error(series, empty) is None
    assert _found_nothing_upstream(series, empty)
    assert not _found_nothing_upstream(series, PassOutcome(series.name, files=2, records=5))
    assert not _found_nothing_upstream(series, PassOutcome(series.name, errors=["boom"]))
    # A pass stopped early, or one that quarantined a window, did not hear ONC's answer.
    assert not _found_nothing_upstream(series, PassOutcome(series.name, caught_up=False))
    assert not _found_nothing_upstream(series, PassOutcome(series.name, quarantined=1))
    assert _mend_error(STREAM, PassOutcome(STREAM.name, files=1)) is None
    assert not _found_nothing_upstream(STREAM, PassOutcome(STREAM.name))
    assert _mend_error(STREAM, PassOutcome(STREAM.name)) == "nothing published"
    failed = PassOutcome(STREAM.name, files=1, errors=["boom"])
    assert _mend_error(STREAM, failed) == "boom"


async def bare_context(tmp_path: Path) -> HarvestContext:
    """A context over an open in-memory store and a fake ONC with no files."""
    clock = FakeClock(T0 + 6 * HOUR)
    store = InMemoryStateStore(clock=clock)
    await store.open()
    return HarvestContext(
        client=FakeOnc(),
        store=store,
        output_root=tmp_path,
        inline=InlineWindowBuilder({}, tmp_path),
        events=Events(),
        clock=clock,
    )


async def test_a_stop_cancels_a_round_still_asking_onc(tmp_path: Path) -> None:
    ctx = await bare_context(tmp_path)
    store = ctx.store
    mender = Mender(ctx, lambda: {STREAM.name: STREAM}, interval=3600)
    entered = asyncio.Event()
    cancelled = []

    async def slow_round() -> list[object]:
        entered.set()
        try:
            await asyncio.Event().wait()  # ONC's maintenance: availability answers take hours
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return []

    mender.round = slow_round  # type: ignore[method-assign,assignment]
    runner = asyncio.create_task(mender.run())
    await entered.wait()
    ctx.stop.set()
    # A guard against a hang, not a timing claim: without the fix `run` never returns.
    await asyncio.wait_for(runner, timeout=30)
    assert cancelled == [True]
    await store.close()


async def test_a_crashed_mend_is_logged_not_left_to_asyncio(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    ctx = await bare_context(tmp_path)
    store = ctx.store
    mender = Mender(ctx, lambda: {STREAM.name: STREAM})

    async def crash(stream: object, span: object) -> None:
        raise RuntimeError("state store refused the attempt")

    mender._mend = crash  # type: ignore[method-assign,assignment]
    with capture_logs() as logs:
        mender._start(STREAM, Span(T0, T0 + HOUR))
        await asyncio.gather(*mender._tasks, return_exceptions=True)
        await asyncio.sleep(0)
    [crashed] = [e for e in logs if e["event"] == "mend_crashed"]
    assert "state store refused the attempt" in crashed["error"]
    assert not mender._tasks
    await store.close()
