"""Workload 2, archive: one 1 GB file, then 200 files of 5 MB.

Contenders, each against its own emulator (200 ms per request, file sizes set through the
launcher because the CLI has no flag for them), in rotating order per repetition:
`onc-pipeline once` on one archivefile stream (parallel_downloads 3 = max_concurrency), the
official client's `downloadArchivefile` per file, and `curl` with 3 transfers in parallel (the
ceiling). Every contender writes the files to disk.

The stream's `start` and `safety_lag` are chosen per run so that its listing window holds
exactly the chosen files: both ends sit half a file period away from any file's start.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from benchmarks.backfill import onc_time, parse_once_summary
from benchmarks.context import BenchContext
from benchmarks.harness import (
    TOKEN,
    EmulatorProcess,
    RunResult,
    child_env,
    io_metrics,
    paired_ratio,
    python_argv,
    run_measured,
)
from benchmarks.report import Scenario, Target, WorkloadResult

VIDEO, HYDROPHONE = "AXISQ6044PTZACCC8E334C53", "ICLISTENHF1560"
PIPELINE, OFFICIAL, CURL = "onc-pipeline", "official onc", "curl (ceiling)"
PARALLEL = 3


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def choose_files(listing: list[dict[str, Any]], count: int) -> tuple[list[str], datetime, datetime]:
    """The `count` files before the last one, and a [start, end) holding exactly them.

    Both bounds are midpoints between neighbouring files' starts, so a listing by start time
    cannot pick up a neighbour even if the end moves a little while the run goes on.
    """
    if len(listing) < count + 2:
        raise ValueError(f"need {count + 2} files in the listing, got {len(listing)}")
    before, chosen, after = listing[-count - 2], listing[-count - 1 : -1], listing[-1]
    times = [_parse(f["dateFrom"]) for f in (before, chosen[0], chosen[-1], after)]
    start = times[0] + (times[1] - times[0]) / 2
    end = times[2] + (times[3] - times[2]) / 2
    return [f["filename"] for f in chosen], start, end


def _listing(emu: EmulatorProcess, device: str, ext: str, days: float) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    query = urllib.parse.urlencode(
        {
            "deviceCode": device,
            "fileExtension": ext,
            "sha256": "false",
            "dateFrom": onc_time(now - timedelta(days=days)),
            "dateTo": onc_time(now - timedelta(hours=1)),
        }
    )
    listing: list[dict[str, Any]] = emu.get_json(f"/_emulator/truth/archive?{query}")
    return listing


def pipeline_config(
    root: Path, base_url: str, device: str, ext: str, start: datetime, end: datetime
) -> Path:
    """One archivefile stream whose listing window is [start, now - safety_lag = end)."""
    lag = int((datetime.now(UTC) - end).total_seconds())
    data = {
        "onc": {"base_url": base_url, "token": TOKEN, "max_concurrency": 3, "max_rate_per_s": 50},
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": False},
        "logging": {"format": "json", "level": "info"},
        "streams": [
            {
                "name": "files",
                "kind": "archivefile",
                "device_code": device,
                "dataset_id": "bench_files",
                "file_extensions": [ext],
                "start": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "safety_lag": f"{lag}s",
                "parallel_downloads": PARALLEL,
            }
        ],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _metrics(result: RunResult, size: int, transfer_s: float | None) -> dict[str, float]:
    if not result.ok:
        raise RuntimeError(
            f"{result.argv[:4]} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    metrics = {
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "max_rss_mb": result.max_rss_mb,
        "bytes": float(size),
        "mb_per_s": size / result.wall_s / 1e6,
    }
    if transfer_s:
        metrics["transfer_mb_per_s"] = size / transfer_s / 1e6
    return metrics | io_metrics(result.io, size)


def pipeline_transfer_s(stderr: str) -> float | None:
    """Seconds from the first body byte to the last, summed over `onc_file_downloaded` lines
    (their `transfer_ms`); None when the log has none."""
    total = 0.0
    for line in stderr.splitlines():
        if '"onc_file_downloaded"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            total += float(json.loads(line)["transfer_ms"]) / 1000
    return total or None


def curl_transfer_s(stdout: str) -> float | None:
    """time_total - time_starttransfer of a single transfer (curl's `--write-out`)."""
    rows = [line.split() for line in stdout.splitlines() if line.strip()]
    if len(rows) != 1:
        return None  # parallel transfers overlap: no single figure
    start, total = (float(v) for v in rows[0][:2])
    return total - start


def run_contender(
    ctx: BenchContext, name: str, spec: tuple[str, str, int, int], tag: str
) -> dict[str, float]:
    """One run of one contender against a fresh emulator."""
    device, ext, count, size = spec
    root = ctx.scratch("archive", tag)
    sizes = {f"{device}.{ext}": size}
    try:
        with EmulatorProcess(root / "emu", archive_file_sizes=sizes) as emu:
            files, start, end = choose_files(_listing(emu, device, ext, 3.0), count)
            out = root / "out"
            if name == PIPELINE:
                config = pipeline_config(root, emu.url, device, ext, start, end)
                argv = python_argv("-m", "pipeline", "once", "--config", str(config))
            elif name == OFFICIAL:
                (root / "files.json").write_text(json.dumps(files))
                argv = python_argv(
                    "-m",
                    "benchmarks.official_client",
                    "archive",
                    "--base",
                    emu.url,
                    "--token",
                    TOKEN,
                    "--files",
                    str(root / "files.json"),
                    "--out",
                    str(out),
                )
            else:
                out.mkdir()
                lines = [
                    f"--parallel\n--parallel-max {PARALLEL}\n--fail\n--silent\n--show-error\n",
                    'write-out = "%{time_starttransfer} %{time_total}\\n"\n',
                ]
                for f in files:
                    q = urllib.parse.urlencode({"filename": f, "token": TOKEN})
                    lines.append(f'url = "{emu.url}/api/archivefile/download?{q}"\n')
                    lines.append(f'output = "{out / f}"\n')
                (root / "curl.cfg").write_text("".join(lines))
                argv = ["curl", "--config", str(root / "curl.cfg")]
            result = run_measured(argv, env=child_env(), log_dir=root, name="run")
            got = (
                sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.exists() else 0
            )
            transfer = None
            if name == PIPELINE:
                got = parse_once_summary(result.stdout)["bytes"] or got
                transfer = pipeline_transfer_s(result.stderr) if count == 1 else None
            elif name == CURL:
                transfer = curl_transfer_s(result.stdout)
            if got != count * size:
                raise RuntimeError(f"{name} wrote {got} bytes, expected {count * size}")
            return _metrics(result, got, transfer)
    finally:
        # Gigabytes per run: do not keep them around (the logs stay for a post-mortem).
        shutil.rmtree(root / "out", ignore_errors=True)


def run_scenario(ctx: BenchContext, label: str, spec: tuple[str, str, int, int]) -> Scenario:
    """Every contender `ctx.reps` times, order rotated per repetition."""
    _, ext, count, size = spec
    scenario = Scenario(label, {"files": count, "file_mb": size / 1e6, "parallel": PARALLEL})
    names = [PIPELINE, OFFICIAL, CURL]
    for rep in range(ctx.reps):
        order = names[rep % 3 :] + names[: rep % 3]
        for name in order:
            print(f"  archive {label} rep {rep + 1}/{ctx.reps}: {name}", flush=True)
            tag = f"{ext}-{name.split()[0]}-{rep}"
            scenario.add(name, run_contender(ctx, name, spec, tag))
    mbps = {n: scenario.series(n, "mb_per_s") for n in names}
    scenario.ratios["pipeline MB/s / curl MB/s"] = paired_ratio(mbps[PIPELINE], mbps[CURL])
    scenario.ratios["pipeline MB/s / official MB/s"] = paired_ratio(mbps[PIPELINE], mbps[OFFICIAL])
    if count == 1:
        moving = {n: scenario.series(n, "transfer_mb_per_s") for n in (PIPELINE, CURL)}
        scenario.ratios["transfer phase (first to last body byte): pipeline / curl"] = paired_ratio(
            moving[PIPELINE], moving[CURL]
        )
    return scenario


def run(ctx: BenchContext) -> WorkloadResult:
    """The big file, then the many small ones; targets on both."""
    big_size, small_count = (20_000_000, 10) if ctx.quick else (1_000_000_000, 200)
    result = WorkloadResult("archive", "Workload 2 - archive files")
    big = run_scenario(ctx, f"1 file of {big_size / 1e6:g} MB", (VIDEO, "mp4", 1, big_size))
    many = run_scenario(
        ctx, f"{small_count} files of 5 MB", (HYDROPHONE, "wav", small_count, 5_000_000)
    )
    result.scenarios += [big, many]
    # The goals: the big file judged over the transfer (first to last body byte:
    # the pipeline's start-up and listing are fixed costs curl does not have), many files
    # end to end.
    transfer = "transfer phase (first to last body byte): pipeline / curl"
    result.targets += [
        Target(
            "archive (one big file): share of curl over the transfer",
            big.ratios[transfer].median,
            ">=",
            0.8,
        ),
        Target(
            "archive (one big file): pipeline peak RSS",
            big.median(PIPELINE, "max_rss_mb"),
            "<=",
            100.0,
            "MB",
        ),
        Target(
            "archive (many files): share of curl's throughput",
            many.ratios["pipeline MB/s / curl MB/s"].median,
            ">=",
            0.95,
        ),
        Target(
            "archive (many files): pipeline peak RSS",
            many.median(PIPELINE, "max_rss_mb"),
            "<=",
            100.0,
            "MB",
        ),
    ]
    return result
