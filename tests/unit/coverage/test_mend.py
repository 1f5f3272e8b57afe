"""The mender re-harvests under the stream's lease: never beside a live pass of the same
stream (here or in another instance), which would rebuild the same partition file at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.coordination.leases import coordination_for, stream_resource
from pipeline.coverage.mend import Mender, mend_key
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
