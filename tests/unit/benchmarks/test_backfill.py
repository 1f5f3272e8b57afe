"""Workload 1's contenders, ratios and targets (no process is run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from benchmarks.backfill import (
    CEILING,
    OFFICIAL,
    add_ratios,
    contender_name,
    format_targets,
    output_formats,
    pipeline_config,
    pipeline_contenders,
)
from benchmarks.report import Scenario


def test_formats_are_the_scalar_writers_default_first() -> None:
    formats = output_formats()
    assert formats[:3] == ["netcdf", "jsonl", "csv"]
    assert set(formats) <= {"netcdf", "jsonl", "csv", "parquet"}


def test_every_format_runs_with_the_default_window_and_with_one_day() -> None:
    names = list(pipeline_contenders())
    assert names[:2] == ["netcdf, window 1h", "netcdf, window 1d"]
    assert len(names) == 2 * len(output_formats())


def test_pipeline_config_sets_format_window_and_daily_partitions(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    path = pipeline_config(tmp_path, "http://x", 2, start, fmt="csv", window="1h")
    data = yaml.safe_load(path.read_text())
    assert data["output"]["partition"] == "daily"
    assert {(s["window"], tuple(s["formats"])) for s in data["streams"]} == {("1h", ("csv",))}


def _scenario() -> Scenario:
    scenario = Scenario("s")
    walls = {
        contender_name("netcdf", "1h"): [10.0, 12.0],
        contender_name("netcdf", "1d"): [8.0, 10.0],
        OFFICIAL: [90.0, 96.0],
        CEILING: [9.0, 9.0],
    }
    for name, values in walls.items():
        for wall in values:
            scenario.add(name, {"wall_s": wall, "max_rss_mb": 200.0, "write_amplification": 1.2})
    return scenario


def test_ratios_pair_repetitions_per_format() -> None:
    scenario = _scenario()
    add_ratios(scenario, ["netcdf"])
    ratios = {k: v.median for k, v in scenario.ratios.items()}
    assert ratios["netcdf: official wall / pipeline wall (speed-up)"] == 8.5  # 9 and 8
    assert ratios["netcdf: ceiling wall / pipeline wall (share of ceiling)"] == 0.825
    assert ratios["netcdf: window 1h wall / window 1d wall"] == 1.225  # 1.25 and 1.2


def test_format_targets_are_the_issues() -> None:
    scenario = _scenario()
    add_ratios(scenario, ["netcdf"])
    targets = {t.name: t for t in format_targets(scenario, "netcdf")}
    assert {n: (t.op, t.threshold) for n, t in targets.items()} == {
        "backfill netcdf: share of the ceiling": (">=", 0.85),
        "backfill netcdf: speed-up over the official client": (">=", 8.0),
        "backfill netcdf: window 1h time / window 1d time": ("<=", 1.1),
        "backfill netcdf: peak RSS (process tree)": ("<=", 250.0),
        "backfill netcdf: bytes written / final files": ("<=", 1.5),
    }
    verdicts = {n: t.passed for n, t in targets.items()}
    assert verdicts == {
        "backfill netcdf: share of the ceiling": False,
        "backfill netcdf: speed-up over the official client": True,
        "backfill netcdf: window 1h time / window 1d time": False,
        "backfill netcdf: peak RSS (process tree)": True,
        "backfill netcdf: bytes written / final files": True,
    }
