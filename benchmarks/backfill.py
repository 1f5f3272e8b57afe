"""Workload 1, backfill: N scalardata streams (8 sensors at 1 Hz) over D days each.

Contenders, each against its own freshly started emulator (same seed, 200 ms per request,
cold page cache), in rotating order per repetition:

- `onc-pipeline`: `once` on a config of N streams starting D days ago, window 1d, default
  politeness (max_concurrency 3) and a max_rate_per_s that does not bind;
- `official onc`: the PyPI client, `getScalardataByDevice(allPages=True)` per stream, one after
  another, each result dumped to a JSON file;
- `ceiling`: plain aiohttp GETs of the same pages the official client fetches (found
  beforehand by following `next`), 3 streams at a time, bodies discarded.

Every stream asks for the same device (the catalogue has few 1 Hz x 8-sensor devices) under its
own name and dataset, so the emulator renders each distinct page once and serves repeats from
its page cache; the 200 ms latency stands for the server's work.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ujson
import yaml

from benchmarks.context import BenchContext
from benchmarks.harness import (
    TOKEN,
    EmulatorProcess,
    child_env,
    paired_ratio,
    python_argv,
    run_measured,
)
from benchmarks.report import Scenario, Target, WorkloadResult

DEVICE = "SBECTD16p7128"  # BACAX CTD: 1 Hz, 8 sensors
SAFETY_LAG = timedelta(seconds=30)
PIPELINE, OFFICIAL, CEILING = "onc-pipeline", "official onc", "ceiling (aiohttp)"
# The same `once` with `daemon.window_workers: 0`: everything in one process, for memory.
INLINE = "onc-pipeline, 1 process"
_SUMMARY = re.compile(r"^ok\s+(\S+): (\d+) \w+, (?:(\d+) records, )?(\d+) files, (\d+) bytes", re.M)


def onc_time(when: datetime) -> str:
    """ONC's `yyyy-MM-ddTHH:mm:ss.SSSZ`."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def time_range(days: float) -> tuple[datetime, datetime]:
    """[now - lag - days, now - lag), whole seconds: the range every contender harvests."""
    end = (datetime.now(UTC) - SAFETY_LAG).replace(microsecond=0)
    return end - timedelta(days=days), end


def pipeline_config(
    root: Path, base_url: str, streams: int, start: datetime, workers: int | str = "auto"
) -> Path:
    """A config of `streams` identical CTD streams, each its own dataset."""
    data: dict[str, Any] = {
        "daemon": {"window_workers": workers},
        "onc": {"base_url": base_url, "token": TOKEN, "max_concurrency": 3, "max_rate_per_s": 50},
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": False},
        "logging": {"format": "json", "level": "info"},
        "streams": [
            {
                "name": f"ctd-{i:02d}",
                "kind": "scalardata",
                "device_code": DEVICE,
                "dataset_id": f"bench_ctd_{i:02d}",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "window": "1d",
                "safety_lag": f"{int(SAFETY_LAG.total_seconds())}s",
                "formats": ["jsonl"],
            }
            for i in range(streams)
        ],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def parse_once_summary(stdout: str) -> dict[str, int]:
    """Totals of the `ok NAME: U windows, [R records, ]F files, B bytes` lines of `once`."""
    totals = {"streams": 0, "records": 0, "files": 0, "bytes": 0}
    for match in _SUMMARY.finditer(stdout):
        totals["streams"] += 1
        totals["records"] += int(match.group(3) or 0)
        totals["files"] += int(match.group(4))
        totals["bytes"] += int(match.group(5))
    return totals


def first_page_path(date_from: datetime, date_to: datetime) -> str:
    """The first page's path and query, spelled as the official client spells it."""
    query = urllib.parse.urlencode(
        {
            "deviceCode": DEVICE,
            "dateFrom": onc_time(date_from),
            "dateTo": onc_time(date_to),
            "rowLimit": 100_000,
            "token": TOKEN,
        }
    )
    return f"/api/scalardata/device?{query}"


def discover_pages(base_url: str, first: str) -> tuple[list[str], int]:
    """Follow `next` from `first`; return every page's path+query and the values they hold."""
    pages, values, path = [], 0, first
    while path:
        pages.append(path)
        with urllib.request.urlopen(base_url + path, timeout=600) as resp:
            body = ujson.loads(resp.read())
        values += sum(len(s["data"]["values"]) for s in body.get("sensorData") or [])
        nxt = body.get("next")
        if not nxt:
            break
        url = urllib.parse.urlsplit(nxt["url"])
        path = f"{url.path}?{url.query}"
    return pages, values


def _requests(emu: EmulatorProcess) -> float:
    return float(emu.get_json("/_emulator/counts")["total"])


def _measure(result: Any, values: int, emu: EmulatorProcess) -> dict[str, float]:
    if not result.ok:
        raise RuntimeError(
            f"{result.argv[:4]} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return {
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "max_rss_mb": result.max_rss_mb,
        "values": float(values),
        "values_per_s": values / result.wall_s,
        "requests": _requests(emu),
    }


def run_pipeline(
    ctx: BenchContext, streams: int, days: float, tag: str, workers: int | str = "auto"
) -> dict[str, float]:
    """`onc-pipeline once` over `streams` streams of `days` days."""
    root = ctx.scratch("backfill", tag)
    with EmulatorProcess(root / "emu") as emu:
        start, _ = time_range(days)
        config = pipeline_config(root, emu.url, streams, start, workers)
        result = run_measured(
            python_argv("-m", "pipeline", "once", "--config", str(config)),
            env=child_env(),
            log_dir=root,
            name="once",
        )
        totals = parse_once_summary(result.stdout)
        if totals["streams"] != streams:
            raise RuntimeError(
                f"once harvested {totals['streams']}/{streams} streams: {result.stderr[-2000:]}"
            )
        return _measure(result, totals["records"], emu)


def run_official(ctx: BenchContext, streams: int, days: float, tag: str) -> dict[str, float]:
    """The official client, stream after stream."""
    root = ctx.scratch("backfill", tag)
    date_from, date_to = time_range(days)
    spec = [
        {
            "name": f"ctd-{i:02d}",
            "deviceCode": DEVICE,
            "dateFrom": onc_time(date_from),
            "dateTo": onc_time(date_to),
        }
        for i in range(streams)
    ]
    (root / "spec.json").write_text(json.dumps(spec))
    with EmulatorProcess(root / "emu") as emu:
        result = run_measured(
            python_argv(
                "-m",
                "benchmarks.official_client",
                "scalar",
                "--base",
                emu.url,
                "--token",
                TOKEN,
                "--spec",
                str(root / "spec.json"),
                "--out",
                str(root / "out"),
            ),
            env=child_env(),
            log_dir=root,
            name="official",
        )
        values = json.loads(result.stdout)["values"] if result.ok else 0
        return _measure(result, values, emu)


def run_ceiling(ctx: BenchContext, streams: int, days: float, tag: str) -> dict[str, float]:
    """Discover the pages on one emulator, then time plain GETs of them on a fresh one."""
    root = ctx.scratch("backfill", tag)
    date_from, date_to = time_range(days)
    with EmulatorProcess(root / "discovery", latency_s=0.0) as emu:
        pages, values = discover_pages(emu.url, first_page_path(date_from, date_to))
    (root / "pages.json").write_text(json.dumps([pages] * streams))
    with EmulatorProcess(root / "emu") as emu:
        result = run_measured(
            python_argv(
                "-m",
                "benchmarks.ceiling",
                "--base",
                emu.url,
                "--pages",
                str(root / "pages.json"),
                "--concurrency",
                "3",
            ),
            env=child_env(),
            log_dir=root,
            name="ceiling",
        )
        return _measure(result, values * streams, emu)


def run_inline(ctx: BenchContext, streams: int, days: float, tag: str) -> dict[str, float]:
    """`once` with no window worker processes."""
    return run_pipeline(ctx, streams, days, tag, workers=0)


CONTENDERS = {
    PIPELINE: run_pipeline,
    INLINE: run_inline,
    OFFICIAL: run_official,
    CEILING: run_ceiling,
}


def run_scenario(ctx: BenchContext, streams: int, days: float) -> Scenario:
    """Every contender `ctx.reps` times, order rotated per repetition."""
    scenario = Scenario(f"{streams} streams x {days:g} days", {"streams": streams, "days": days})
    names = list(CONTENDERS)
    for rep in range(ctx.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            tag = f"{days:g}d-{list(CONTENDERS).index(name)}-{rep}"
            print(f"  backfill {streams}x{days:g}d rep {rep + 1}/{ctx.reps}: {name}", flush=True)
            scenario.add(name, CONTENDERS[name](ctx, streams, days, tag))
    wall = {n: scenario.series(n, "wall_s") for n in names}
    scenario.ratios["official wall / pipeline wall (speed-up)"] = paired_ratio(
        wall[OFFICIAL], wall[PIPELINE]
    )
    scenario.ratios["ceiling wall / pipeline wall (share of ceiling)"] = paired_ratio(
        wall[CEILING], wall[PIPELINE]
    )
    scenario.ratios["official wall / 1-process pipeline wall"] = paired_ratio(
        wall[OFFICIAL], wall[INLINE]
    )
    return scenario


def run(ctx: BenchContext) -> WorkloadResult:
    """Base volume and twice the data; targets on the base volume and the growth."""
    streams, days = (2, 0.25) if ctx.quick else (10, 2.0)
    result = WorkloadResult("backfill", "Workload 1 - backfill (scalardata, 8 sensors at 1 Hz)")
    base = run_scenario(ctx, streams, days)
    double = run_scenario(ctx, streams, days * 2)
    result.scenarios += [base, double]
    speedup = base.ratios["official wall / pipeline wall (speed-up)"].median
    share = base.ratios["ceiling wall / pipeline wall (share of ceiling)"].median
    rss = base.median(PIPELINE, "max_rss_mb")
    growth = double.median(PIPELINE, "max_rss_mb") / rss
    time_growth = double.median(PIPELINE, "wall_s") / base.median(PIPELINE, "wall_s")
    result.targets += [
        Target("backfill: speed-up over the official client", speedup, ">=", 5.0, "x"),
        Target("backfill: share of the ceiling", share, ">=", 0.85),
        Target("backfill: pipeline peak RSS", rss, "<=", 300.0, "MB"),
        Target("backfill: peak RSS growth at 2 x data", growth, "<=", 1.1, "x"),
    ]
    result.notes.append(
        f"Doubling the data multiplied the pipeline's wall time by {time_growth:.2f} and its "
        f"peak RSS by {growth:.2f}."
    )
    result.notes.append(
        f"Peak RSS is the whole process tree (the daemon and its window workers). With "
        f"`window_workers: 0` the pipeline peaked at {base.median(INLINE, 'max_rss_mb'):.0f} MB "
        f"({double.median(INLINE, 'max_rss_mb'):.0f} MB at twice the data)."
    )
    return result
