"""Reporting logic of the benchmark suite: targets, tables, parsing of contender output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.archive import choose_files
from benchmarks.backfill import onc_time, parse_once_summary
from benchmarks.nrt import percentile
from benchmarks.report import Scenario, Target, WorkloadResult, render_markdown, write_results

MACHINE = {
    "cpu": "Test CPU",
    "cores": 2,
    "ram_gb": 4.0,
    "python": "3.11.0",
    "os": "Linux",
    "load_avg_at_start": [0.1, 0.2, 0.3],
}


@pytest.mark.parametrize(
    ("measured", "op", "threshold", "passed"),
    [
        (5.0, ">=", 5.0, True),
        (4.9, ">=", 5.0, False),
        (300.0, "<=", 300.0, True),
        (301, "<=", 300, False),
    ],
)
def test_target_verdict(measured: float, op: str, threshold: float, passed: bool) -> None:
    assert Target("t", measured, op, threshold).passed is passed


def test_target_rejects_unknown_operator() -> None:
    with pytest.raises(ValueError, match="operator"):
        _ = Target("t", 1.0, "==", 1.0).passed


def _scenario() -> Scenario:
    scenario = Scenario("s", {"streams": 2})
    scenario.add("a", {"wall_s": 2.0, "max_rss_mb": 100.0})
    scenario.add("a", {"wall_s": 4.0, "max_rss_mb": 120.0})
    scenario.add("a", {"wall_s": 3.0, "max_rss_mb": 110.0})
    scenario.add("b", {"wall_s": 10.0})
    return scenario


def test_scenario_summaries() -> None:
    scenario = _scenario()
    assert scenario.median("a", "wall_s") == 3.0
    assert scenario.median("b", "max_rss_mb") != scenario.median("b", "max_rss_mb")  # NaN
    summary = scenario.to_json()["summary"]
    assert summary["a"]["wall_s"] == {
        "median": 3.0,
        "min": 2.0,
        "max": 4.0,
        "n": 3,
        "spread_pct": pytest.approx(200 / 3),
    }
    assert "max_rss_mb" not in summary["b"]


def test_markdown_table_shows_medians_spread_and_verdicts() -> None:
    result = WorkloadResult(
        "w", "Workload X", [_scenario()], [Target("fast", 3.0, "<=", 2.0, "s")], ["a note"]
    )
    text = render_markdown([result], MACHINE, "20260101T000000Z")
    assert "Test CPU, 2 cores, 4.0 GB RAM" in text
    assert "| a | 3.00 ±67% | 110 ±18% | 3 |" in text
    assert "| b | 10.00 | - | 1 |" in text
    assert "| fast | 3 s | <= 2 s | FAIL |" in text
    assert "- a note" in text


def test_write_results_writes_json_and_markdown(tmp_path: Path) -> None:
    result = WorkloadResult("w", "Workload X", [_scenario()])
    json_path, md_path, markdown = write_results([result], MACHINE, {"quick": True}, tmp_path)
    data = json.loads(json_path.read_text())
    assert data["machine"] == MACHINE
    assert data["workloads"][0]["scenarios"][0]["runs"]["a"][1]["wall_s"] == 4.0
    assert md_path.read_text() == markdown


def test_parse_once_summary_sums_ok_lines_only() -> None:
    stdout = (
        "ok      ctd-00: 3 windows, 1000 records, 3 files, 5000 bytes\n"
        "ok      ctd-01: 2 windows, 24 records, 2 files, 10 bytes, 1 quarantined\n"
        "ok      wav: 2 downloads, 2 files, 7 bytes\n"
        "FAILED  ctd-02: boom\n"
    )
    assert parse_once_summary(stdout) == {"streams": 3, "records": 1024, "files": 7, "bytes": 5017}


def test_onc_time_has_milliseconds_and_z() -> None:
    assert onc_time(datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"


def test_choose_files_bounds_sit_between_neighbours() -> None:
    listing = [
        {"filename": f"f{i}", "dateFrom": f"2026-01-01T00:{i * 5:02d}:00.000Z"} for i in range(6)
    ]
    names, start, end = choose_files(listing, 3)
    assert names == ["f2", "f3", "f4"]
    assert start == datetime(2026, 1, 1, 0, 7, 30, tzinfo=UTC)
    assert end == datetime(2026, 1, 1, 0, 22, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="need 7 files"):
        choose_files(listing, 5)


def test_percentile_interpolates() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
