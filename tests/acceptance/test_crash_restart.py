"""kill -9 at random moments, restart, and find every record once and every file intact.

The daemon runs as a subprocess against the emulator (real time, real sockets). It is killed
with SIGKILL at seeded random moments while it pages, writes, downloads and polls products,
restarted each time, and finally `once` brings every stream up to date. Then the output is
compared with the emulator's ground truth over exactly the range each cursor covers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import ujson

from pipeline.emulator import Emulator
from pipeline.state.sqlite import SqliteStateStore
from tests.acceptance.conftest import Harness, wait_exit, wait_for, write_config

KILLS = int(os.environ.get("ONC_PIPELINE_TEST_KILLS", "20"))
SEED = int(os.environ.get("ONC_PIPELINE_TEST_SEED", "20261125"))


def jsonl_records(folder: Path) -> list[dict[str, object]]:
    return [
        ujson.loads(line)
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def cursors(harness: Harness) -> dict[str, datetime | None]:
    store = SqliteStateStore(harness.root / "state.db", read_only=True)
    async with store:
        return {r.name: r.cursor_time for r in await store.list_streams()}


def check_scalar(emu: Emulator, harness: Harness, until: datetime) -> int:
    records = jsonl_records(harness.out / "onc_bacax_ctd")
    keys = Counter((r["sampleTime"], r["sensorCode"]) for r in records)
    assert [k for k, n in keys.items() if n > 1] == [], "a scalar record was written twice"
    truth = emu.truth.scalar(
        location_code="BACAX",
        device_category_code="CTD",
        date_from=harness.starts["ctd"],
        date_to=until,
    )
    expected = {(r.time, sensor) for sensor, rows in truth.items() for r in rows}
    assert set(keys) == expected, "scalar records lost or invented"
    return len(records)


def check_raw(emu: Emulator, harness: Harness, until: datetime) -> int:
    records = jsonl_records(harness.out / "onc_rbrquartz3bpr203659")
    truth = emu.truth.raw(
        device_code="RBRQUARTZ3BPR203659", date_from=harness.starts["bpr"], date_to=until
    )
    assert [(r["time"], r["reading"]) for r in records] == [(t.time, t.reading) for t in truth]
    return len(records)


def check_archive(emu: Emulator, harness: Harness, cursor: datetime) -> int:
    date_to, archived_before = harness.archive_window(cursor)
    truth = emu.truth.archive_files(
        location_code="SEVIP",
        device_category_code="HYDROPHONE",
        date_from=harness.starts["wav"],
        date_to=date_to,
        extension="wav",
        archived_before=archived_before,
    )
    on_disk = {p.name: p for p in (harness.out / "onc_sevip_hydrophone").rglob("*.wav")}
    assert sorted(on_disk) == sorted(t.filename for t in truth)
    for file in truth:
        digest = hashlib.sha256(on_disk[file.filename].read_bytes()).hexdigest()
        assert digest == file.sha256, f"{file.filename} differs from the archive"
    return len(truth)


def check_products(emu: Emulator, harness: Harness, until: datetime) -> int:
    # A request id is "ordered" once its run is started; ids are persisted before `run`, so
    # a period must never have two request ids that were run.
    runs_per_period: dict[int, set[str]] = defaultdict(set)
    request_period = _request_periods(emu)
    for record in emu.requests.of("dataProductDelivery.run"):
        request_id = dict(record.query)["dpRequestId"]
        runs_per_period[request_period[request_id]].add(request_id)
    doubled = {p: ids for p, ids in runs_per_period.items() if len(ids) > 1}
    assert doubled == {}, f"product periods ordered twice: {doubled}"
    folders = sorted(p.name for p in (harness.out / "onc_bacax_ctd_tssd" / "products").iterdir())
    days = (until - harness.starts["tssd"]).days
    assert len(folders) == days
    return len(folders)


def _request_periods(emu: Emulator) -> dict[str, int]:
    """dpRequestId -> the start (epoch ms) of the period it asks for, from the emulator."""
    return {str(rid): req.start for rid, req in emu.context.products.requests.items()}


def assert_no_leftovers(harness: Harness) -> None:
    leftovers = [p for p in harness.out.rglob("*") if p.name.endswith((".tmp", ".part"))]
    assert leftovers == [], leftovers


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    live_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = live_emulator
    harness = write_config(tmp_path, emu, datetime.now(UTC))
    rng = random.Random(SEED)
    kills = 0
    for _ in range(KILLS):
        proc = harness.spawn()
        reap.append(proc)
        await asyncio.sleep(rng.uniform(0.4, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        await wait_exit(proc, 10)
    assert kills == KILLS

    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 120) == 0, (tmp_path / "once.log").read_text()[-3000:]

    marks = await cursors(harness)
    assert all(marks.values()), marks
    counts = {
        "scalar": check_scalar(emu, harness, marks["ctd"]),  # type: ignore[arg-type]
        "raw": check_raw(emu, harness, marks["bpr"]),  # type: ignore[arg-type]
        "archive": check_archive(emu, harness, marks["wav"]),  # type: ignore[arg-type]
        "products": check_products(emu, harness, marks["tssd"]),  # type: ignore[arg-type]
    }
    assert counts["scalar"] > 100_000
    assert counts["archive"] >= 8
    assert_no_leftovers(harness)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigterm_drains_and_exits_zero_with_consistent_state(
    live_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = live_emulator
    harness = write_config(tmp_path, emu, datetime.now(UTC))
    proc = harness.spawn()
    reap.append(proc)
    # Stop it mid-harvest: once the first files have landed, long before it has caught up.
    await wait_for(lambda: any(harness.out.rglob("*.jsonl")), 30, "the first published window")
    proc.send_signal(signal.SIGTERM)
    started = asyncio.get_running_loop().time()
    assert await wait_exit(proc, 15) == 0
    assert asyncio.get_running_loop().time() - started < 10 + 2  # the configured grace
    log = (tmp_path / "daemon.log").read_text()
    assert '"daemon_stopped"' in log

    # Consistent: every manifest entry is on disk with its recorded size and digest, and
    # the output below each cursor matches the truth.
    store = SqliteStateStore(harness.root / "state.db", read_only=True)
    async with store:
        entries = await store.list_manifest()
    assert entries
    for entry in entries:
        path = harness.out / entry.path
        assert path.stat().st_size == entry.size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    assert not [p for p in harness.out.rglob("*.tmp")]

    # The next start resumes and catches up.
    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 120) == 0
    marks = await cursors(harness)
    check_scalar(emu, harness, marks["ctd"])  # type: ignore[arg-type]
    check_archive(emu, harness, marks["wav"])  # type: ignore[arg-type]
