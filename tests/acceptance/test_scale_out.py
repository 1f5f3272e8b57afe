"""Three daemons on one PostgreSQL share the work: one is killed, nothing is lost or doubled.

Checks, from the outputs, the daemons' logs and the emulator's request log: every record
exactly once, no window harvested by two instances at the same time, no product period run
twice, and the combined request rate and concurrency within the shared caps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.emulator import Emulator
from pipeline.state import PostgresStateStore
from tests.acceptance.conftest import Harness, wait_exit, wait_for, write_config
from tests.acceptance.test_crash_restart import check_archive, check_products, jsonl_records
from tests.integration.postgres import server

MAX_CONCURRENCY = 3
MAX_RATE = 15.0
COPIES = 4  # scalar streams reading the same platform into separate datasets


@pytest.fixture
async def pg_schema() -> Any:
    server.postgres_url_or_skip()
    name = server.unique_schema()
    try:
        yield name
    finally:
        await server.drop_schema(name)


def scale_out_config(harness: Harness, url: str) -> None:
    config = yaml.safe_load(harness.config.read_text())
    config["state"]["url"] = url
    config["onc"]["max_concurrency"] = MAX_CONCURRENCY
    config["onc"]["max_rate_per_s"] = MAX_RATE
    config["daemon"]["lease_ttl"] = "3s"
    config["daemon"]["max_concurrent_passes"] = 3
    streams = {s["name"]: s for s in config["streams"]}
    ctd = streams.pop("ctd")
    config["streams"] = [
        {**ctd, "name": f"ctd-{i}", "dataset_id": f"onc_bacax_ctd_{i}"} for i in range(COPIES)
    ] + list(streams.values())
    harness.config.write_text(yaml.safe_dump(config))


def log_events(path: Path, name: str) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        if f'"{name}"' in line:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def overlaps(intervals: list[tuple[float, float, int]]) -> list[tuple[int, int]]:
    """Pairs of instances whose [start, end] intervals on one window intersect."""
    found = []
    ordered = sorted(intervals)
    for (_, e1, i1), (s2, _, i2) in itertools.pairwise(ordered):
        if i1 != i2 and s2 < e1:
            found.append((i1, i2))
    return found


def max_overlap(emu: Emulator) -> int:
    edges = []
    for record in emu.requests:
        edges += [(record.started_monotonic, 1), (record.ended_monotonic, -1)]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def max_starts_within(emu: Emulator, seconds: float) -> int:
    """The most requests the emulator saw begin within any `seconds`-long span."""
    starts = sorted(r.started_monotonic for r in emu.requests)
    best = 0
    lo = 0
    for hi, t in enumerate(starts):
        while starts[lo] < t - seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_three_instances_one_killed_every_record_once(
    live_emulator: Emulator, tmp_path: Path, reap: list[object], pg_schema: str
) -> None:
    emu = live_emulator
    harness = write_config(tmp_path, emu, datetime.now(UTC))
    url = f"{server.POSTGRES_URL}?schema={pg_schema}"
    scale_out_config(harness, url)

    procs = [harness.spawn(log_name=f"daemon-{i}.log") for i in range(3)]
    reap.extend(procs)
    first = tmp_path / "daemon-0.log"
    await wait_for(
        lambda: first.exists() and '"window_harvested"' in first.read_text(),
        60,
        "instance 0 to publish its first window",
    )
    procs[0].send_signal(signal.SIGKILL)  # mid-work: its leases must expire and move
    await wait_exit(procs[0], 10)
    await asyncio.sleep(8)  # > lease_ttl: the survivors take its streams over
    for proc in procs[1:]:
        proc.send_signal(signal.SIGTERM)
    for proc in procs[1:]:
        assert await wait_exit(proc, 20) == 0

    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 120) == 0, (tmp_path / "once.log").read_text()[-3000:]

    store = PostgresStateStore(url, read_only=True)
    async with store:
        cursors = {r.name: r.cursor_time for r in await store.list_streams()}
    assert all(cursors.values()), cursors

    # Every record exactly once, in every copy.
    for i in range(COPIES):
        until = cursors[f"ctd-{i}"]
        assert until is not None
        records = jsonl_records(harness.out / f"onc_bacax_ctd_{i}")
        keys = [(r["sampleTime"], r["sensorCode"]) for r in records]
        assert len(keys) == len(set(keys)), f"copy {i}: a record was written twice"
        truth = emu.truth.scalar(
            location_code="BACAX",
            device_category_code="CTD",
            date_from=harness.starts["ctd"],
            date_to=until,
        )
        expected = {(r.time, s) for s, rows in truth.items() for r in rows}
        assert set(keys) == expected, f"copy {i}: records lost or invented"
    check_archive(emu, harness, cursors["wav"])  # type: ignore[arg-type]
    check_products(emu, harness, cursors["tssd"])  # type: ignore[arg-type]

    # Every instance did some of the work, and no window was in two hands at once. Work is
    # a window harvested (instance 0 is killed after its first, before its pass ends) or a
    # pass finished: with 7 streams and 3 passes an instance the first two cannot hold them
    # all, but which kind of stream the third gets (one with windows or not) is a race.
    by_window: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    workers = set()
    for i in range(3):
        log = tmp_path / f"daemon-{i}.log"
        if log_events(log, "stream_pass_finished"):
            workers.add(i)
        for event in log_events(log, "window_harvested"):
            end = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
            start = end - event["elapsed_ms"] / 1000
            by_window[(event["stream"], event["window"])].append((start, end, i))
            workers.add(i)
    assert workers == {0, 1, 2}, f"only instances {workers} harvested"
    clashes = {k: overlaps(v) for k, v in by_window.items() if overlaps(v)}
    assert clashes == {}, f"windows harvested by two instances at once: {clashes}"

    # The politeness budget was shared, not tripled.
    assert max_overlap(emu) <= MAX_CONCURRENCY
    # Starts are seen where the emulator receives them, after a grant's trip through three
    # processes and a socket: allow one request of arrival jitter on top of rate x span + burst.
    for span in (1.0, 5.0):
        seen = max_starts_within(emu, span)
        assert seen <= MAX_RATE * span + 1 + 1, f"{seen} requests began within {span} s"
    assert not list(harness.out.rglob("*.tmp"))
