"""PipelineMetrics: every hook feeds the exposition, scrape-time gauges come from a snapshot."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pipeline.ops.health import LoopMonitor
from pipeline.ops.metrics import PipelineMetrics, endpoint_label
from pipeline.ops.readiness import Snapshot
from pipeline.records import NewDataEvent
from pipeline.registry.models import HarvestStatus
from pipeline.registry.outcomes import HarvestOutcome
from pipeline.state.base import StreamRecord
from tests.clocks import FakeClock

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def samples(metrics: PipelineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_endpoint_label_keeps_the_path_only() -> None:
    assert endpoint_label("/api/scalardata/location") == "/api/scalardata/location"
    assert endpoint_label("/api/scalardata/location?token=abc") == "/api/scalardata/location"
    assert endpoint_label("https://data.oceannetworks.ca/api/x") == "other"
    assert endpoint_label("/api/" + "x" * 300) == "other"


def test_onc_hooks_count_requests_bytes_latency_and_retries() -> None:
    metrics = PipelineMetrics(clock=FakeClock(T0))
    onc = metrics.onc
    onc.request_finished("/api/scalardata/location", 200, 0.3, 1500)
    onc.request_finished("/api/scalardata/location", 200, 0.02, 500)
    onc.request_finished("/api/scalardata/location", 503, 1.2, 0)
    onc.request_finished("/api/archivefile/download?filename=a.wav&token=SECRETTOKEN", None, 9, 0)
    onc.retry("/api/scalardata/location", "status_503")
    onc.retry("/api/scalardata/location", "Weird Reason!")
    got = samples(metrics)
    ep = ("endpoint", "/api/scalardata/location")
    assert got[("onc_pipeline_onc_requests_total", (ep, ("status", "200")))] == 2
    assert got[("onc_pipeline_onc_requests_total", (ep, ("status", "503")))] == 1
    dl = ("endpoint", "/api/archivefile/download")
    assert got[("onc_pipeline_onc_requests_total", (dl, ("status", "none")))] == 1
    assert got[("onc_pipeline_onc_response_bytes_total", (ep,))] == 2000
    assert got[("onc_pipeline_onc_request_duration_seconds_count", (ep,))] == 3
    assert got[("onc_pipeline_onc_request_duration_seconds_bucket", (ep, ("le", "0.025")))] == 1
    assert got[("onc_pipeline_onc_retries_total", (ep, ("reason", "status_503")))] == 1
    assert got[("onc_pipeline_onc_retries_total", (ep, ("reason", "other")))] == 1
    assert "SECRETTOKEN" not in metrics.render().decode()


def test_auth_failure_streak_starts_at_first_refusal_and_ends_on_success() -> None:
    clock = FakeClock(T0)
    onc = PipelineMetrics(clock=clock).onc
    onc.request_finished("/api/locations", 401, 0.1, 0)
    first = clock.now
    clock.now += timedelta(seconds=30)
    onc.request_finished("/api/locations", 401, 0.1, 0)
    onc.request_finished("/api/locations", 503, 0.1, 0)  # not a verdict on the token
    onc.request_finished("/api/locations", None, 0.1, 0)
    assert onc.auth_failing_since == first
    onc.request_finished("/api/locations", 200, 0.1, 10)
    assert onc.auth_failing_since is None


def test_registry_and_publish_hooks() -> None:
    clock = FakeClock(T0)
    metrics = PipelineMetrics(clock=clock)
    hook = metrics.registry_hook
    hook.trigger_sent("h1", dry_run=False)
    hook.trigger_sent("h1", dry_run=True)
    hook.trigger_failed("h1", reason="auth")
    outcome = HarvestOutcome("h1", HarvestStatus.OK, T0, 10, 10, 0)
    hook.harvest_finished(outcome)
    hook.harvest_finished(HarvestOutcome("h1", None, None, None, None, None))
    got = samples(metrics)
    h1 = ("harvest_id", "h1")
    assert got[("onc_pipeline_registry_triggers_total", (h1, ("result", "sent")))] == 1
    assert got[("onc_pipeline_registry_triggers_total", (h1, ("result", "dry_run")))] == 1
    assert got[("onc_pipeline_registry_triggers_total", (h1, ("result", "failed_auth")))] == 1
    assert got[("onc_pipeline_registry_harvests_total", (h1, ("status", "ok")))] == 1
    assert got[("onc_pipeline_registry_harvests_total", (h1, ("status", "unknown")))] == 1
    assert got[("onc_pipeline_registry_last_trigger_timestamp_seconds", (h1,))] == T0.timestamp()


async def test_publish_events_count_records_and_files() -> None:
    metrics = PipelineMetrics(clock=FakeClock(T0))
    event = NewDataEvent(
        stream="ctd",
        dataset_id="onc_bacax_ctd",
        time_start=T0 - timedelta(hours=1),
        time_end=T0,
        files=(Path("a.jsonl"), Path("b.jsonl")),
        records=120,
    )
    await metrics.events.publish(event)
    await metrics.events.publish(
        NewDataEvent("ctd", "onc_bacax_ctd", T0, T0, (Path("b.jsonl"),), 3, replaced=True)
    )
    got = samples(metrics)
    s = (("stream", "ctd"),)
    assert got[("onc_pipeline_published_records_total", s)] == 123
    assert got[("onc_pipeline_published_files_total", s)] == 3
    assert got[("onc_pipeline_publish_replacements_total", s)] == 1
    assert got[("onc_pipeline_last_publish_timestamp_seconds", s)] == T0.timestamp()


def _record(name: str, **kw: datetime | None) -> StreamRecord:
    return StreamRecord(
        name=name,
        cursor_time=kw.get("cursor"),
        cursor_file=None,
        last_success=kw.get("success"),
        last_error="boom" if kw.get("error_at") else None,
        last_error_at=kw.get("error_at"),
        updated_at=T0,
    )


def test_stream_gauges_are_computed_at_scrape_time() -> None:
    clock = FakeClock(T0)
    metrics = PipelineMetrics(clock=clock)
    metrics.update(
        Snapshot(
            taken_at=T0,
            store_ok=True,
            store_error=None,
            scheduler_running=True,
            enabled=("ctd", "dp"),
            running=("dp",),
            records={
                "ctd": _record("ctd", cursor=T0 - timedelta(minutes=5), success=T0),
                "dp": _record("dp", error_at=T0),
                "old": _record("old", cursor=T0),  # not enabled: not exported
            },
            quarantined={"ctd": 2},
            inflight={"dp": 1},
        )
    )
    got = samples(metrics)
    ctd, dp = (("stream", "ctd"),), (("stream", "dp"),)
    assert got[("onc_pipeline_stream_lag_seconds", ctd)] == 300
    assert ("onc_pipeline_stream_lag_seconds", dp) not in got  # no cursor yet
    assert ("onc_pipeline_stream_lag_seconds", (("stream", "old"),)) not in got
    assert (
        got[("onc_pipeline_stream_cursor_timestamp_seconds", ctd)]
        == (T0 - timedelta(minutes=5)).timestamp()
    )
    assert got[("onc_pipeline_stream_last_success_timestamp_seconds", ctd)] == T0.timestamp()
    assert got[("onc_pipeline_stream_failing", ctd)] == 0
    assert got[("onc_pipeline_stream_failing", dp)] == 1
    assert got[("onc_pipeline_stream_pass_running", dp)] == 1
    assert got[("onc_pipeline_inflight_products", dp)] == 1
    assert got[("onc_pipeline_quarantined_items", ctd)] == 2
    assert got[("onc_pipeline_state_store_up", ())] == 1
    # Lag grows with time even without a new snapshot: it is computed at collection time.
    clock.now += timedelta(minutes=1)
    assert samples(metrics)[("onc_pipeline_stream_lag_seconds", ctd)] == 360


def test_failed_snapshot_keeps_stream_figures_and_reports_store_down() -> None:
    metrics = PipelineMetrics(clock=FakeClock(T0))
    good = Snapshot(
        taken_at=T0,
        store_ok=True,
        store_error=None,
        scheduler_running=True,
        enabled=("ctd",),
        records={"ctd": _record("ctd", cursor=T0)},
    )
    metrics.update(good)
    metrics.update(
        Snapshot(
            taken_at=T0,
            store_ok=False,
            store_error="StateError: locked",
            scheduler_running=True,
            enabled=("ctd",),
        )
    )
    got = samples(metrics)
    assert got[("onc_pipeline_state_store_up", ())] == 0
    assert got[("onc_pipeline_state_snapshot_errors_total", ())] == 1
    assert got[("onc_pipeline_stream_lag_seconds", (("stream", "ctd"),))] == 0


def test_loop_lag_build_info_and_isolated_registries() -> None:
    metrics = PipelineMetrics(clock=FakeClock(T0))
    monitor = LoopMonitor(interval=1, threshold=5)
    monitor.beat(0.25, now=time.monotonic())
    metrics.monitor = monitor
    got = samples(metrics)
    assert got[("onc_pipeline_event_loop_lag_seconds", ())] == 0.25
    assert got[("onc_pipeline_healthy", ())] == 1
    assert got[("onc_pipeline_build_info", (("version", "0.1.0"),))] == 1
    # A second instance does not see the first one's counters (no global registry).
    metrics.onc.request_finished("/api/locations", 200, 0.1, 1)
    other = PipelineMetrics(clock=FakeClock(T0))
    assert not any(name == "onc_pipeline_onc_requests_total" for name, _ in samples(other))


def test_coverage_and_erddap_hooks_feed_the_exposition() -> None:
    metrics = PipelineMetrics(clock=FakeClock(T0))
    metrics.coverage.report(
        "nc89_ctd", ratio=1.2, gaps={"missing": 120.0, "upstream_gap": 30.0}, checked_at=T0
    )
    metrics.coverage.mend_finished("nc89_ctd", 120.0, ok=True)
    metrics.erddap.flag_sent("onc_nc89_ctd")
    metrics.erddap.flag_failed("onc_nc89_ctd")
    metrics.erddap.flag_failed("onc_nc89_ctd")
    got = samples(metrics)
    stream = (("stream", "nc89_ctd"),)
    assert got[("onc_pipeline_stream_coverage_ratio", stream)] == 1.0  # clamped to [0, 1]
    gap = "onc_pipeline_stream_gap_seconds"
    assert got[(gap, (("class", "missing"), ("stream", "nc89_ctd")))] == 120.0
    assert got[(gap, (("class", "upstream_gap"), ("stream", "nc89_ctd")))] == 30.0
    assert got[(gap, (("class", "quarantined"), ("stream", "nc89_ctd")))] == 0.0
    assert got[("onc_pipeline_stream_coverage_checked_timestamp_seconds", stream)] == (
        T0.timestamp()
    )
    mended = (("result", "ok"), ("stream", "nc89_ctd"))
    assert got[("onc_pipeline_stream_mended_seconds_total", mended)] == 120.0
    flags = "onc_pipeline_erddap_flags_total"
    assert got[(flags, (("dataset", "onc_nc89_ctd"), ("result", "failed")))] == 2.0
    assert got[(flags, (("dataset", "onc_nc89_ctd"), ("result", "sent")))] == 1.0
