"""Workload 4, parse and write: values per CPU-second for a NaN-bearing page into each format.

The page is one day of BACAX CTD scalardata (8 sensors at 1 Hz, gap-filled outages as bare
`NaN`), rendered by the emulator in this process and fetched once over loopback before any
timing. The timed part has no network: raw `ujson.loads` (the ceiling of the JSON library the
client uses), the stdlib `json.loads` for reference, the client's parse into a `ScalarPage`,
and parse + merge + atomic publish through each output writer that exists.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import ujson

from benchmarks.context import BenchContext
from benchmarks.report import Scenario, WorkloadResult
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.engine.batches import batch_of
from pipeline.onc.models.data import ScalarPage
from pipeline.onc.parsing import decode_scalardata
from pipeline.outputs.base import Writer
from pipeline.records import Window

DEVICE = "SBECTD16p7128"
RAW = "ujson.loads (raw parse)"


async def _fetch_page(day: datetime, hours: int) -> bytes:
    config = EmulatorConfig(token="bench", onc_port=0, registry_port=0, auth_delay=(0.0, 0.0))
    params = {
        "deviceCode": DEVICE,
        "dateFrom": day.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "dateTo": (day + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "rowLimit": "100000",
        "token": "bench",
    }
    url = "/api/scalardata/device"
    async with Emulator(config) as emu, aiohttp.ClientSession(emu.onc_url) as session:  # noqa: SIM117
        async with session.get(url, params=params) as resp:
            resp.raise_for_status()
            return await resp.read()


def nan_page(hours: int) -> tuple[bytes, Window]:
    """The first recent day (or part of it) whose page holds bare NaN values."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(2, 30):
        day = today - timedelta(days=back)
        body = asyncio.run(_fetch_page(day, hours))
        if b"NaN" in body:
            return body, Window(day, day + timedelta(days=1))
    raise RuntimeError("no NaN-bearing day in the last four weeks")


def count_values(body: bytes) -> tuple[int, int]:
    """Values in the page and how many of them are NaN."""
    page = ujson.loads(body)
    values = [v for s in page["sensorData"] for v in s["data"]["values"]]
    return len(values), sum(1 for v in values if v != v)


def writers() -> tuple[dict[str, Writer], list[str]]:
    """Every scalar output writer that exists in pipeline/outputs today, and notes on others."""
    from pipeline.outputs.jsonl import JsonlWriter
    from pipeline.outputs.metadata import DatasetMeta, Position

    found: dict[str, Writer] = {"jsonl": JsonlWriter()}
    notes = ["rawtext writer not measured: it holds rawdata only, this page is scalardata"]
    meta = DatasetMeta(
        dataset_id="bench_ctd",
        kind="scalardata",
        endpoint="/api/scalardata/device",
        source_params={"deviceCode": DEVICE},
        base_url="http://127.0.0.1",
        platform_code="BACAX",
        platform_name="Barkley Canyon Axis",
        instrument="CTD",
        positions=(Position(DEVICE, None, None, 48.316585, -126.050798, 985.0),),
        attributes={},
    )
    for module, cls in (
        ("netcdf", "NetcdfWriter"),
        ("csv", "CsvWriter"),
        ("parquet", "ParquetWriter"),
    ):
        try:
            mod = __import__(f"pipeline.outputs.{module}", fromlist=[cls])
            found[module] = getattr(mod, cls)({"bench_ctd": meta})
        except (ImportError, AttributeError, TypeError) as exc:
            notes.append(f"{module} writer not measured: {type(exc).__name__}: {exc}")
    return found, notes


def parse(body: bytes) -> ScalarPage:
    """The client's parse: bytes -> ScalarPage (ujson with the flags packed, as
    `OncClient.scalar_pages` decodes, then the typed model)."""
    return ScalarPage.from_api(decode_scalardata(body, url="/api/scalardata/device", status=200))


def write_page(writer: Writer, body: bytes, window: Window, root: Path) -> int:
    """Parse, merge and publish one page through one writer, as the engine does."""
    page = parse(body)
    ww = writer.open_window(root, "bench_ctd", window)
    # As the engine does: the page packed into a batch, the batch to the window writer.
    kept = ww.add(batch_of(page))
    ww.publish()
    return kept


def timed(task: Callable[[], Any], values: int) -> dict[str, float]:
    """CPU and wall seconds of `task`, as values per second."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    task()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "values_per_s": values / wall,
        "values_per_cpu_s": values / cpu if cpu else float("nan"),
    }


def peak_traced_mb(task: Callable[[], Any]) -> float:
    """The most memory Python allocated at once while `task` ran (tracemalloc; untimed)."""
    tracemalloc.start()
    try:
        task()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def run(ctx: BenchContext) -> WorkloadResult:
    """Each contender `ctx.reps` times (at least 3: these runs are short)."""
    hours = 6 if ctx.quick else 24
    body, window = nan_page(hours)
    values, nans = count_values(body)
    found, notes = writers()
    result = WorkloadResult("parse_write", "Workload 4 - parse and write (in process, no network)")
    scenario = Scenario(
        f"one {hours} h page, 8 sensors at 1 Hz",
        {"values": values, "nan_values": nans, "page_mb": round(len(body) / 1e6, 1)},
    )
    tasks: dict[str, Callable[[], Any]] = {
        RAW: lambda: ujson.loads(body),
        "json.loads (stdlib)": lambda: json.loads(body),
        "pipeline parse (ScalarPage)": lambda: parse(body),
    }
    for _ in range(max(ctx.reps, 3)):
        for name, task in tasks.items():
            scenario.add(name, timed(task, values))
        for fmt, writer in found.items():
            root = Path(tempfile.mkdtemp(dir=ctx.workdir))
            try:
                scenario.add(
                    f"parse + write {fmt}",
                    timed(partial(write_page, writer, body, window, root), values),
                )
            finally:
                shutil.rmtree(root, ignore_errors=True)
    raw = scenario.median(RAW, "values_per_cpu_s")
    for name in scenario.runs:
        if name != RAW:
            share = scenario.median(name, "values_per_cpu_s") / raw
            notes.append(f"{name}: {share:.2f} of raw ujson parse speed (values/s/core)")
    # What a page costs in memory while the daemon decodes it, beside what ujson alone builds.
    for name in (RAW, "pipeline parse (ScalarPage)"):
        notes.append(
            f"{name}: peak traced memory {peak_traced_mb(tasks[name]):.1f} MB "
            f"for the {len(body) / 1e6:.1f} MB page (tracemalloc, one untimed run)"
        )
    result.scenarios.append(scenario)
    result.notes += notes
    return result
