"""How fast coverage is on 1,000 streams: the state read, the classification, the status page.

Run: `.venv/bin/python benchmarks/coverage_bench.py [--streams 1000] [--files 24] [--lines 50]`.
Prints one JSON object per measurement (median of `--repeat` runs, and the range).

Builds a SQLite state store with `--streams` JSON Lines streams of `--files` hourly files each
(every tenth file deleted from disk, one window quarantined per stream), then measures:
- `held_stat`: what `check_streams` does (one `list_manifest`, one `stat` per file, each
  scalardata file's sensors read once) + classify, cold: what `onc-pipeline coverage` costs;
- `held_warm`: the same with the sensors remembered from the last check (a daemon's rounds
  after its first: a file is read again only when its size or mtime changed);
- `held_read`: the alternative of reading every file to count its records (the per-record
  truth the manifest does not carry), to show what that would cost;
- `page_render` and `page_http`: the status page from the last check, rendered, and fetched
  over a real socket from the ops routes (what a browser waits for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from pipeline.coverage.check import StreamCoverage, check_streams
from pipeline.coverage.held import forget_sensors
from pipeline.coverage.model import Span
from pipeline.coverage.page import add_coverage_routes, render_page
from pipeline.settings import TimeSeriesStream
from pipeline.state.base import Commit, ManifestEntry
from pipeline.state.sqlite import SqliteStateStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def report(**fields: Any) -> None:
    """One JSON line per measurement."""
    print(json.dumps(fields), flush=True)


async def measure(
    name: str, repeat: int, fn: Callable[[], Awaitable[object]], **extra: Any
) -> None:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    report(
        measure=name,
        median_ms=round(statistics.median(times), 1),
        min_ms=round(min(times), 1),
        max_ms=round(max(times), 1),
        n=repeat,
        **extra,
    )


async def build(root: Path, streams: int, files: int, lines: int) -> list[TimeSeriesStream]:
    start = NOW - timedelta(hours=files + 2)
    settings = []
    line = json.dumps({"sampleTime": NOW.isoformat(), "sensorCode": "t", "value": 1.0}) + "\n"
    async with SqliteStateStore(root / "state.db") as store:
        for i in range(streams):
            name = f"s{i:04d}"
            settings.append(
                TimeSeriesStream(
                    name=name,
                    kind="scalardata",
                    device_code=f"DEV{i}",
                    start=start,
                    window=timedelta(hours=1),
                    formats=["jsonl"],
                )
            )
            folder = root / "out" / name
            folder.mkdir(parents=True)
            entries = []
            for k in range(files):
                begin = start + timedelta(hours=k)
                path = folder / f"{k:03d}.jsonl"
                if k % 10 != 5:
                    path.write_text(line * lines)
                entries.append(
                    ManifestEntry(
                        path=str(path.relative_to(root / "out")),
                        stream=name,
                        dataset_id=name,
                        size=len(line) * lines,
                        sha256="0" * 64,
                        time_start=begin,
                        time_end=begin + timedelta(hours=1),
                        records=lines,
                        source="scalardata",
                        published_at=NOW,
                    )
                )
            await store.commit_publish(
                Commit(name, entries, cursor_time=start + timedelta(hours=files))
            )
            label = f"{start + timedelta(hours=files):%Y%m%dT%H%M%SZ}"
            await store.quarantine(name, f"window:{label}_{label}", "OncMalformedReply", None)
    return settings


class Last:
    """The mender's view the ops routes read."""

    def __init__(self, last: list[StreamCoverage]) -> None:
        self.last = last
        self.mending: set[tuple[str, Span]] = set()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        streams = await build(root, args.streams, args.files, args.lines)
        out = root / "out"
        shape = {"streams": args.streams, "files": args.streams * args.files}
        async with SqliteStateStore(root / "state.db", read_only=True) as store:
            result: list[StreamCoverage] = []

            async def held_stat() -> None:
                nonlocal result
                forget_sensors()
                result = await check_streams(streams, store, out, NOW)

            async def held_warm() -> None:
                await check_streams(streams, store, out, NOW)

            async def held_read() -> None:
                def count() -> int:
                    return sum(p.read_bytes().count(b"\n") for p in out.rglob("*.jsonl"))

                await asyncio.to_thread(count)

            await measure("held_stat", args.repeat, held_stat, **shape)
            await measure("held_warm", args.repeat, held_warm, **shape)
            await measure("held_read", args.repeat, held_read, lines=args.lines, **shape)
        gaps = sum(len(r.coverage.gaps) for r in result)

        async def render() -> None:
            render_page(result, set())

        await measure("page_render", args.repeat, render, gaps=gaps, **shape)
        app = web.Application()
        add_coverage_routes(app, Last(result))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            size = 0

            async def fetch() -> None:
                nonlocal size
                async with http.get(f"http://127.0.0.1:{port}/status") as response:
                    size = len(await response.read())

            await measure("page_http", args.repeat * 4, fetch, **shape)
            report(measure="page_bytes", bytes=size, **shape)
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
