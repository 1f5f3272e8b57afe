"""Pure logic of the scale-out workload: configs, completion, log and request-log arithmetic."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from benchmarks.scale_out import (
    RAISED_CAPS,
    SHARED_CAP,
    Plan,
    caught_up,
    contender,
    daemon_config,
    max_starts_within,
    new_records,
    passes_per_instance,
    peak_concurrency,
    proc_stat,
    request_stats,
    state_url,
    unique_schema,
)
from pipeline.settings import TimeSeriesStream, load_settings

START = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("streams", "instances", "passes"), [(12, 1, 12), (12, 2, 6), (12, 3, 4), (6, 4, 2), (1, 3, 1)]
)
def test_each_instance_may_run_its_share_of_the_streams(
    streams: int, instances: int, passes: int
) -> None:
    assert passes_per_instance(streams, instances) == passes
    # Together the instances can always run every stream at once.
    assert passes * instances >= streams


def test_passes_per_instance_refuses_nothing_to_share() -> None:
    with pytest.raises(ValueError, match="at least one"):
        passes_per_instance(0, 2)


def test_state_url_names_the_schema() -> None:
    schema = unique_schema()
    url = state_url(schema, base="postgresql://postgres@127.0.0.1:5432/test")
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "postgresql",
        "127.0.0.1",
        5432,
        "/test",
    )
    assert parse_qs(parts.query) == {"schema": [schema]}
    assert schema != unique_schema()


@pytest.mark.parametrize("caps", [SHARED_CAP, RAISED_CAPS])
def test_daemon_config_is_accepted_by_the_pipeline(tmp_path: Path, caps: object) -> None:
    plan = Plan(streams=5, hours=3, row_limit=1200)
    data = daemon_config(
        base_url="http://127.0.0.1:9",
        url="postgresql://postgres@127.0.0.1:5432/test?schema=onc_bench_x",
        out=tmp_path / "out",
        plan=plan,
        caps=caps,  # type: ignore[arg-type]
        instances=2,
        start=START,
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = load_settings(path, environ={})
    assert settings.onc.max_concurrency == caps.max_concurrency  # type: ignore[attr-defined]
    assert settings.onc.max_rate_per_s == caps.max_rate_per_s  # type: ignore[attr-defined]
    assert settings.daemon.max_concurrent_passes == 3
    assert settings.state.url.endswith("?schema=onc_bench_x")
    assert not settings.ops.enabled
    streams = settings.streams
    assert [s.name for s in streams] == [f"ctd-{i:02d}" for i in range(5)]
    assert len({s.resolved_dataset_id for s in streams}) == 5
    for stream in streams:
        assert isinstance(stream, TimeSeriesStream)
        assert stream.row_limit == 1200
        assert stream.start == START
        assert stream.window == timedelta(hours=1)
        # One pass covers the range (at most 24 windows): no bulk-lane slots involved.
        assert plan.hours * 3600 / stream.window.total_seconds() < 24


def test_caught_up_needs_every_named_cursor_at_the_end() -> None:
    end = START + timedelta(hours=2)
    names = ["a", "b"]
    assert caught_up({"a": end, "b": end + timedelta(seconds=1)}, names, end)
    assert not caught_up({"a": end, "b": end - timedelta(seconds=1)}, names, end)
    assert not caught_up({"a": end, "b": None}, names, end)
    assert not caught_up({"a": end}, names, end)


def test_new_records_sums_window_harvested_events_only() -> None:
    lines = [
        json.dumps({"event": "window_harvested", "new_records": 28800, "records": 28800}),
        json.dumps({"event": "stream_pass_finished", "new_records": 99, "records": 99}),
        "not json mentioning window_harvested",
        json.dumps({"event": "window_harvested", "new_records": 12, "records": 28812}),
        '{"event": "window_harvested", "new_records": 5',  # torn last line of a killed writer
    ]
    assert new_records("\n".join(lines)) == 28812


def test_peak_concurrency_counts_overlaps_and_not_touching_ends() -> None:
    assert peak_concurrency([]) == 0
    assert peak_concurrency([(0.0, 1.0), (0.5, 1.5), (0.7, 0.8)]) == 3
    # One request ending when the next starts is not two in flight.
    assert peak_concurrency([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) == 1


def test_max_starts_within_a_span() -> None:
    starts = [0.0, 0.1, 0.2, 1.15, 1.2, 5.0]
    assert max_starts_within(starts, 1.0) == 3  # 0.2, 1.15, 1.2 or 0.0, 0.1, 0.2
    assert max_starts_within(starts, 1.2) == 5
    assert max_starts_within([], 1.0) == 0


def _record(start: float, end: float, wall: datetime) -> dict[str, object]:
    return {"started_monotonic": start, "ended_monotonic": end, "started_wall": wall.isoformat()}


def test_request_stats_over_the_run_only() -> None:
    wall = START
    records = [
        _record(10.0, 10.2, wall),
        _record(10.1, 10.3, wall + timedelta(seconds=0.1)),
        _record(10.5, 12.0, wall + timedelta(seconds=0.5)),
        _record(30.0, 30.2, wall + timedelta(seconds=20)),  # a poll during shutdown
    ]
    stats = request_stats(records, until=wall + timedelta(seconds=1))
    assert stats == {
        "requests": 3.0,
        "peak_in_flight": 2.0,
        "req_per_s": pytest.approx(3 / 2.0),
        "peak_req_per_s": 3.0,
    }
    assert request_stats(records)["requests"] == 4.0
    assert request_stats([])["requests"] == 0.0


def test_contender_labels() -> None:
    assert [contender(n) for n in (1, 2, 3)] == ["1 instance", "2 instances", "3 instances"]


def test_stat_reads_this_process() -> None:
    comm, fields = proc_stat(os.getpid())
    assert comm.startswith("python") or comm.startswith("pytest")
    assert int(fields[1]) == os.getppid()
