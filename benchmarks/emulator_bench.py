"""How fast the emulator serves a 100,000-row x 8-sensor scalardata page and a 1 GB file.

Run: `.venv/bin/python benchmarks/emulator_bench.py [--file-mb 1024] [--many 200x5]`.
Prints one JSON object per measurement. The client is aiohttp on the same machine, so numbers
are a lower bound of what the emulator can serve (client and server share the CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from pipeline.emulator import Emulator, EmulatorConfig

TOKEN = "bench"
NOW = datetime(2024, 1, 10, tzinfo=UTC)
VIDEO = "AXISQ6044PTZACCC8E334C53"
HYDROPHONE = "ICLISTENHF1560"


def report(**fields: Any) -> None:
    """One JSON line per measurement."""
    print(json.dumps(fields), flush=True)


async def bench_scalar_page(emu: Emulator, session: aiohttp.ClientSession, repeat: int) -> None:
    """Cold (rendered) and warm (cached) 100,000-row x 8-sensor pages."""
    params = {
        "deviceCode": "SBECTD16p7128",
        "dateFrom": "2023-03-01",
        "dateTo": "2023-03-03",
        "rowLimit": "100000",
        "token": TOKEN,
    }
    url = emu.onc_url + "/api/scalardata/device"
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        async with session.get(url, params=params) as resp:
            body = await resp.read()
            assert resp.status == 200
        elapsed = time.perf_counter() - started
        report(
            bench="scalardata_page",
            cache="cold" if attempt == 0 else "warm",
            rows=100_000,
            sensors=8,
            bytes=len(body),
            seconds=round(elapsed, 4),
            mb_per_s=round(len(body) / elapsed / 1e6, 1),
        )


async def _download(session: aiohttp.ClientSession, url: str, name: str) -> int:
    total = 0
    async with session.get(url, params={"filename": name, "token": TOKEN}) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(1 << 20):
            total += len(chunk)
    return total


async def bench_big_file(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """One large mp4, streamed."""
    (f,) = emu.truth.archive_files(
        device_code=VIDEO,
        extension="mp4",
        with_sha256=False,
        date_from="2023-12-01T00:00:00.000Z",
        date_to="2023-12-01T00:15:00.000Z",
    )
    started = time.perf_counter()
    got = await _download(session, emu.onc_url + "/api/archivefile/download", f.filename)
    elapsed = time.perf_counter() - started
    assert got == f.size
    report(
        bench="archive_file",
        files=1,
        bytes=got,
        seconds=round(elapsed, 3),
        mb_per_s=round(got / elapsed / 1e6, 1),
    )


async def bench_many_files(
    emu: Emulator, session: aiohttp.ClientSession, count: int, parallel: int
) -> None:
    """`count` hydrophone files, `parallel` at a time (a polite harvester uses about 3)."""
    files = emu.truth.archive_files(
        device_code=HYDROPHONE,
        extension="wav",
        with_sha256=False,
        date_from="2023-12-01T00:00:00.000Z",
        date_to="2023-12-03T00:00:00.000Z",
    )[:count]
    gate = asyncio.Semaphore(parallel)
    url = emu.onc_url + "/api/archivefile/download"

    async def one(name: str) -> int:
        async with gate:
            return await _download(session, url, name)

    started = time.perf_counter()
    sizes = await asyncio.gather(*(one(f.filename) for f in files))
    elapsed = time.perf_counter() - started
    report(
        bench="archive_files",
        files=len(files),
        parallel=parallel,
        bytes=sum(sizes),
        seconds=round(elapsed, 3),
        mb_per_s=round(sum(sizes) / elapsed / 1e6, 1),
        files_per_s=round(len(files) / elapsed, 1),
    )


async def main() -> None:
    """Start an emulator sized by the arguments and run every benchmark against it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file-mb", type=int, default=1024, help="size of the big file (MiB)")
    parser.add_argument("--many", default="200x5", help="COUNTxMB small files")
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="warm scalardata repeats")
    args = parser.parse_args()
    count, mb = (int(x) for x in args.many.split("x"))
    config = EmulatorConfig(
        token=TOKEN,
        onc_port=0,
        registry_port=0,
        auth_delay=(0.0, 0.0),
        clock_start=NOW,
        archive_file_sizes={
            f"{VIDEO}.mp4": args.file_mb << 20,
            f"{HYDROPHONE}.wav": mb * 1_000_000,
        },
        download_chunk_bytes=1 << 20,
    )
    async with Emulator(config) as emu, aiohttp.ClientSession() as session:
        await bench_scalar_page(emu, session, args.repeat)
        await bench_big_file(emu, session)
        await bench_many_files(emu, session, count, args.parallel)


if __name__ == "__main__":
    asyncio.run(main())
