"""The stream ledger under the archive stream kind, on the in-memory Oceans API twin and the
in-memory state store: no socket, no emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.runner import harvest_pass
from pipeline.exceptions import OncRequestError
from pipeline.outputs.manifest import render_manifest
from pipeline.outputs.pool import InlineWindowBuilder
from pipeline.records import NewDataEvent
from pipeline.settings import ArchiveFileStream
from pipeline.state.base import ManifestEntry
from pipeline.state.memory import InMemoryStateStore
from tests.clocks import FakeClock
from tests.fake_onc import ArchivedFile, FakeOnc

T0 = datetime(2026, 11, 20, tzinfo=UTC)
STREAM = ArchiveFileStream(
    name="hydrophone",
    kind="archivefile",
    location_code="BACAX",
    device_category_code="HYDROPHONE",
    start=T0,
    safety_lag=timedelta(minutes=10),
)

DATASET = STREAM.resolved_dataset_id


class Events:
    def __init__(self) -> None:
        self.seen: list[NewDataEvent] = []

    async def publish(self, event: NewDataEvent) -> None:
        self.seen.append(event)


def archived(name: str, hour: int, content: bytes) -> tuple[str, ArchivedFile]:
    start = T0 + timedelta(hours=hour)
    return name, ArchivedFile(
        content, start, start + timedelta(hours=1), start + timedelta(hours=2)
    )


@pytest.fixture
def clock() -> FakeClock[datetime]:
    return FakeClock(T0 + timedelta(hours=6))


async def context(
    tmp_path: Path,
    onc: FakeOnc,
    clock: FakeClock[datetime],
    events: Events,
    store: InMemoryStateStore | None = None,
) -> HarvestContext:
    store = store or InMemoryStateStore(clock=clock)
    await store.open()
    return HarvestContext(
        client=onc,
        store=store,
        output_root=tmp_path,
        inline=InlineWindowBuilder({}, tmp_path),
        events=events,
        clock=clock,
    )


async def test_a_pass_publishes_records_and_announces_every_file(
    tmp_path: Path, clock: FakeClock[datetime]
) -> None:
    onc = FakeOnc(files=dict([archived("a.wav", 0, b"one"), archived("b.wav", 1, b"second")]))
    events = Events()
    ctx = await context(tmp_path, onc, clock, events)

    outcome = await harvest_pass(ctx, STREAM)

    assert (outcome.units, outcome.files, outcome.bytes) == (2, 2, 9)
    assert outcome.ok
    assert outcome.caught_up
    on_disk = tmp_path / DATASET / "2026" / "11" / "20"
    assert (on_disk / "a.wav").read_bytes() == b"one"
    assert not list(on_disk.glob("*.part"))
    manifest = await ctx.store.list_manifest("hydrophone")
    assert sorted(e.path for e in manifest) == [
        f"{DATASET}/2026/11/20/a.wav",
        f"{DATASET}/2026/11/20/b.wav",
    ]
    assert {e.source for e in manifest} == {"archivefile:a.wav", "archivefile:b.wav"}
    assert (tmp_path / DATASET / "manifest.tsv").is_file()
    record = await ctx.store.get_stream("hydrophone")
    assert record is not None
    assert record.cursor_time == clock()
    assert sorted(e.files[0].name for e in events.seen) == ["a.wav", "b.wav"]
    # A second pass finds both published and downloads nothing again.
    again = await harvest_pass(ctx, STREAM)
    assert again.files == 0
    assert sorted(onc.downloads) == ["a.wav", "b.wav"]


async def test_a_file_failing_every_time_is_quarantined_after_the_limit(
    tmp_path: Path, clock: FakeClock[datetime]
) -> None:
    onc = FakeOnc(files=dict([archived("bad.wav", 0, b"x")]))
    onc.failures["bad.wav"] = [OncRequestError("refused") for _ in range(POISON_ATTEMPTS)]
    ctx = await context(tmp_path, onc, clock, Events())

    for attempt in range(1, POISON_ATTEMPTS + 1):
        outcome = await harvest_pass(ctx, STREAM)
        record = await ctx.store.get_stream("hydrophone")
        if attempt < POISON_ATTEMPTS:
            # Not yet: the pass fails and the cursor stays, so the next pass tries again.
            assert outcome.errors
            assert not outcome.caught_up
            assert record is None or record.cursor_time is None
        else:
            assert outcome.ok
            assert outcome.quarantined == 1
            assert record is not None
            assert record.cursor_time == clock()
    quarantined = await ctx.store.list_quarantine("hydrophone")
    assert [(q.item_key, q.attempts) for q in quarantined] == [
        (f"{DATASET}/2026/11/20/bad.wav", POISON_ATTEMPTS)
    ]


async def test_a_backfill_neither_reads_nor_moves_the_cursor(
    tmp_path: Path, clock: FakeClock[datetime]
) -> None:
    onc = FakeOnc(files=dict([archived("a.wav", 0, b"one"), archived("b.wav", 3, b"two")]))
    ctx = await context(tmp_path, onc, clock, Events())

    outcome = await harvest_pass(ctx, STREAM, date_from=T0, date_to=T0 + timedelta(hours=2))

    assert outcome.files == 1
    assert onc.downloads == ["a.wav"]
    assert onc.listings[0].archived_from is None, "a backfill lists by data time"
    record = await ctx.store.get_stream("hydrophone")
    assert record is None or record.cursor_time is None


class ReadCounting(InMemoryStateStore):
    """Notes the manifest reads: after which path ("" for every entry)."""

    def __init__(self, clock: FakeClock[datetime]) -> None:
        super().__init__(clock=clock)
        self.reads: list[str] = []

    async def list_dataset_manifest(self, dataset_id: str, after: str = "") -> list[ManifestEntry]:
        self.reads.append(after)
        return await super().list_dataset_manifest(dataset_id, after)


async def test_later_passes_append_to_the_manifest_and_read_only_what_comes_after(
    tmp_path: Path, clock: FakeClock[datetime]
) -> None:
    onc = FakeOnc(files=dict([archived("a.wav", 0, b"one"), archived("c.wav", 1, b"three")]))
    store = ReadCounting(clock)
    ctx = await context(tmp_path, onc, clock, Events(), store)
    target = tmp_path / DATASET / "manifest.tsv"

    async def pass_adding(name: str, data_hour: int, archived_hour: int) -> None:
        start = T0 + timedelta(hours=data_hour)
        onc.files[name] = ArchivedFile(
            name.encode(), start, start + timedelta(hours=1), T0 + timedelta(hours=archived_hour)
        )
        clock.now = T0 + timedelta(hours=archived_hour + 1)
        assert (await harvest_pass(ctx, STREAM)).files == 1

    async def held() -> str:
        return render_manifest(DATASET, await store.list_manifest())

    assert (await harvest_pass(ctx, STREAM)).files == 2
    assert store.reads == [""]
    await pass_adding("d.wav", 5, 7)
    assert store.reads[1:] == [f"{DATASET}/2026/11/20/c.wav"]
    assert target.read_text() == await held()
    # A file ONC archived late whose name sorts before the manifest's last line: the file
    # is rendered whole (appended, its line would be out of order).
    await pass_adding("0.wav", 2, 9)
    assert store.reads[-1] == ""
    assert target.read_text() == await held()
    await pass_adding("e.wav", 9, 11)
    assert store.reads[-1] == f"{DATASET}/2026/11/20/d.wav"
    assert target.read_text() == await held()
