"""Prometheus metrics: definitions on a private registry, and the hooks that feed them.

Three kinds of source feed one `PipelineMetrics`:
- hooks called as things happen: `onc` (the client's OncMetrics), `registry` (the notifier's
  RegistryMetrics), `events` (an EventSink subscribed to the engine's new-data events);
- a snapshot of the state store, refreshed by the ops server just before each scrape, from
  which per-stream lag, last success, in-flight products and quarantine are computed at
  collection time (so lag keeps growing while a stream is stuck);
- the loop monitor and readiness, read at collection time.

Labels hold only an API path, a status code, a stream name, a harvest id or a short reason:
never a URL, a query string or a secret. Each instance has its own CollectorRegistry, so tests
(and two daemons in one process) never share counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline import __version__
from pipeline.ops.health import LoopMonitor
from pipeline.ops.readiness import Snapshot, stream_failing
from pipeline.records import NewDataEvent
from pipeline.registry.outcomes import HarvestOutcome
from pipeline.times import utc_now

NAMESPACE = "onc_pipeline"
# ONC answers range from 10 ms discovery calls to multi-minute product downloads.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_ENDPOINT_RE = re.compile(r"^/[A-Za-z0-9_./-]{1,120}$")
_REASON_RE = re.compile(r"^[a-z0-9_]{1,40}$")


def endpoint_label(endpoint: str) -> str:
    """A safe, bounded endpoint label: the path only; anything odd becomes `other`."""
    path = endpoint.split("?", 1)[0].split("#", 1)[0]
    return path if _ENDPOINT_RE.match(path) else "other"


def _reason_label(reason: str) -> str:
    return reason if _REASON_RE.match(reason) else "other"


class _Define:
    """Metric constructors bound to one registry, every name under the pipeline's namespace."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, namespace=NAMESPACE, registry=self._registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, namespace=NAMESPACE, registry=self._registry)

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str], *, buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(
            name,
            documentation,
            labels,
            namespace=NAMESPACE,
            registry=self._registry,
            buckets=buckets,
        )


class PrometheusOncMetrics:
    """The Oceans API client's metrics hook (pipeline.onc.metrics.OncMetrics).

    It also remembers whether ONC keeps refusing the token: `auth_failing_since` is the time
    of the first 401/403 after the last 2xx, or None; readiness reads it.
    """

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        define = _Define(registry)
        self.auth_failing_since: datetime | None = None
        self.requests = define.counter(
            "onc_requests",
            "Oceans API HTTP exchanges by endpoint path and status (`none`: no HTTP status).",
            ["endpoint", "status"],
        )
        self.retries = define.counter(
            "onc_retries",
            "Oceans API requests retried, by endpoint path and reason (status_503, network...).",
            ["endpoint", "reason"],
        )
        self.bytes = define.counter(
            "onc_response_bytes",
            "Bytes of Oceans API response bodies received, by endpoint path.",
            ["endpoint"],
        )
        self.latency = define.histogram(
            "onc_request_duration_seconds",
            "Duration of one Oceans API HTTP exchange (one attempt), by endpoint path.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
        )

    def request_finished(
        self, endpoint: str, status: int | None, seconds: float, nbytes: int
    ) -> None:
        """One HTTP exchange ended."""
        label = endpoint_label(endpoint)
        self.requests.labels(label, "none" if status is None else str(status)).inc()
        self.latency.labels(label).observe(max(0.0, seconds))
        if nbytes > 0:
            self.bytes.labels(label).inc(nbytes)
        if status in (401, 403):
            if self.auth_failing_since is None:
                self.auth_failing_since = self._clock()
        elif status is not None and 200 <= status < 300:
            self.auth_failing_since = None

    def retry(self, endpoint: str, reason: str) -> None:
        """A request will be retried."""
        self.retries.labels(endpoint_label(endpoint), _reason_label(reason)).inc()


class PrometheusRegistryMetrics:
    """The registry notifier's metrics hook (pipeline.registry.metrics.RegistryMetrics)."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        define = _Define(registry)
        self.triggers = define.counter(
            "registry_triggers",
            "IOOS registry harvest triggers by harvest id and result "
            "(sent, dry_run, failed_auth, failed_unavailable).",
            ["harvest_id", "result"],
        )
        self.outcomes = define.counter(
            "registry_harvests",
            "Finished IOOS registry harvests by harvest id and status (ok, fail, unknown).",
            ["harvest_id", "status"],
        )
        self.last_trigger = define.gauge(
            "registry_last_trigger_timestamp_seconds",
            "Unix time of the last trigger sent, by harvest id.",
            ["harvest_id"],
        )

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None:
        """A trigger went out (or would have, in dry-run mode)."""
        self.triggers.labels(harvest_id, "dry_run" if dry_run else "sent").inc()
        self.last_trigger.labels(harvest_id).set(self._clock().timestamp())

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None:
        """A trigger failed (`auth` or `unavailable`)."""
        self.triggers.labels(harvest_id, f"failed_{_reason_label(reason)}").inc()

    def harvest_finished(self, outcome: HarvestOutcome) -> None:
        """The registry reported the outcome of a harvest."""
        status = outcome.status.value if outcome.status is not None else "unknown"
        self.outcomes.labels(outcome.harvest_id, status).inc()


class PublishMetrics:
    """An EventSink counting what the engine published, per stream."""

    def __init__(self, registry: CollectorRegistry) -> None:
        define = _Define(registry)
        self.records = define.counter(
            "published_records",
            "Records published to output files, by stream.",
            ["stream"],
        )
        self.files = define.counter(
            "published_files",
            "Files published (new or rewritten), by stream.",
            ["stream"],
        )
        self.replaced = define.counter(
            "publish_replacements",
            "Publications that rewrote an existing file (ERDDAP hardFlag case), by stream.",
            ["stream"],
        )
        self.last_publish = define.gauge(
            "last_publish_timestamp_seconds",
            "Unix time of the latest end of published data, by stream.",
            ["stream"],
        )

    async def publish(self, event: NewDataEvent) -> None:
        """Count one new-data event; never raises."""
        self.records.labels(event.stream).inc(max(0, event.records))
        self.files.labels(event.stream).inc(len(event.files))
        if event.replaced:
            self.replaced.labels(event.stream).inc()
        self.last_publish.labels(event.stream).set(event.time_end.timestamp())


class CoverageMetrics:
    """Coverage of each stream against what ONC says exists (issue 22).

    Set by the daemon's coverage loop (`pipeline/coverage/mend.py`) after every check. Gap
    classes are the model's (`pipeline/coverage/model.py`): `not_yet` (ahead of the cursor),
    `upstream_gap` (ONC has nothing), `quarantined`, `missing` (ONC has it, we do not).
    """

    GAP_CLASSES = ("not_yet", "upstream_gap", "quarantined", "missing")

    def __init__(self, registry: CollectorRegistry) -> None:
        define = _Define(registry)
        self.ratio = define.gauge(
            "stream_coverage_ratio",
            "Share (0-1) of what ONC says exists that the stream holds, over its coverage "
            "window up to the cursor; upstream gaps are not counted against it.",
            ["stream"],
        )
        self.gap_seconds = define.gauge(
            "stream_gap_seconds",
            "Seconds of the coverage window in gaps, by stream and class "
            "(not_yet, upstream_gap, quarantined, missing).",
            ["stream", "class"],
        )
        self.checked = define.gauge(
            "stream_coverage_checked_timestamp_seconds",
            "Unix time of the stream's last coverage check.",
            ["stream"],
        )
        self.mended = define.counter(
            "stream_mended_seconds",
            "Seconds of `missing` ranges re-harvested, by stream and result (ok, failed).",
            ["stream", "result"],
        )

    def report(
        self, stream: str, *, ratio: float, gaps: Mapping[str, float], checked_at: datetime
    ) -> None:
        """Record one coverage check of `stream`; classes absent from `gaps` are zero."""
        self.ratio.labels(stream).set(min(1.0, max(0.0, ratio)))
        for gap_class in self.GAP_CLASSES:
            self.gap_seconds.labels(stream, gap_class).set(max(0.0, gaps.get(gap_class, 0.0)))
        self.checked.labels(stream).set(checked_at.timestamp())

    def mend_finished(self, stream: str, seconds: float, *, ok: bool) -> None:
        """A `missing` range of `seconds` was re-harvested (or failed to be)."""
        self.mended.labels(stream, "ok" if ok else "failed").inc(max(0.0, seconds))


class ErddapFlagMetrics:
    """ERDDAP flag signals by dataset and result (`sent`, `failed`).

    The hook the ERDDAP flagger is to call on every signal; wired when the outputs package
    is restructured (issue 20), until then the counter stays empty.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        define = _Define(registry)
        self.flags = define.counter(
            "erddap_flags",
            "ERDDAP flag signals (flag file or setDatasetFlag URL) by dataset id and result.",
            ["dataset", "result"],
        )

    def flag_sent(self, dataset_id: str) -> None:
        """ERDDAP was told that `dataset_id` changed."""
        self.flags.labels(dataset_id, "sent").inc()

    def flag_failed(self, dataset_id: str) -> None:
        """Telling ERDDAP failed (flag folder not writable, URL refused or unreachable)."""
        self.flags.labels(dataset_id, "failed").inc()


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=labels)


class _ScrapeCollector(Collector):
    """Gauges computed at collection time from the latest snapshot, the monitor and `now`."""

    def __init__(self, owner: PipelineMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        owner = self._owner
        now = owner.clock()
        if owner.monitor is not None:
            report = owner.monitor.report()
            lag = _gauge("event_loop_lag_seconds", "Last measured lateness of the loop heartbeat.")
            lag.add_metric([], report.lag_s)
            yield lag
            healthy = _gauge("healthy", "1 while the event loop is responsive (/healthz).")
            healthy.add_metric([], 1.0 if report.healthy else 0.0)
            yield healthy
        if owner.ready is not None:
            ready = _gauge("ready", "1 while /readyz would answer 200.")
            ready.add_metric([], 1.0 if owner.ready() else 0.0)
            yield ready
        snap = owner.snapshot
        if snap is None:
            return
        store = _gauge("state_store_up", "1 when the last read of the state store succeeded.")
        store.add_metric([], 1.0 if snap.store_ok else 0.0)
        yield store
        running = _gauge("scheduler_running", "1 while the scheduler task runs.")
        running.add_metric([], 1.0 if snap.scheduler_running else 0.0)
        yield running
        yield from self._streams(snap, now)

    def _streams(self, snap: Snapshot, now: datetime) -> Iterator[Metric]:
        lag = _gauge(
            "stream_lag_seconds", "Seconds between now and the stream's cursor.", ["stream"]
        )
        cursor = _gauge(
            "stream_cursor_timestamp_seconds", "Unix time of the stream's cursor.", ["stream"]
        )
        success = _gauge(
            "stream_last_success_timestamp_seconds",
            "Unix time of the stream's last successful pass.",
            ["stream"],
        )
        failing = _gauge(
            "stream_failing", "1 when the stream's most recent pass failed.", ["stream"]
        )
        in_pass = _gauge("stream_pass_running", "1 while a pass of the stream runs.", ["stream"])
        inflight = _gauge(
            "inflight_products",
            "Data product requests started and not yet delivered, by stream.",
            ["stream"],
        )
        quarantined = _gauge(
            "quarantined_items", "Items set aside after repeated failures, by stream.", ["stream"]
        )
        for name in snap.enabled:
            record = snap.records.get(name)
            if record is not None and record.cursor_time is not None:
                lag.add_metric([name], max(0.0, (now - record.cursor_time).total_seconds()))
                cursor.add_metric([name], record.cursor_time.timestamp())
            if record is not None and record.last_success is not None:
                success.add_metric([name], record.last_success.timestamp())
            failing.add_metric([name], 1.0 if stream_failing(record) else 0.0)
            in_pass.add_metric([name], 1.0 if name in snap.running else 0.0)
            inflight.add_metric([name], float(snap.inflight.get(name, 0)))
            quarantined.add_metric([name], float(snap.quarantined.get(name, 0)))
        yield from (lag, cursor, success, failing, in_pass, inflight, quarantined)


class PipelineMetrics:
    """Every metric of one process, on its own CollectorRegistry."""

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        define = _Define(self.registry)
        self.onc = PrometheusOncMetrics(self.registry, clock)
        self.registry_hook = PrometheusRegistryMetrics(self.registry, clock)
        self.events = PublishMetrics(self.registry)
        self.coverage = CoverageMetrics(self.registry)
        self.erddap = ErddapFlagMetrics(self.registry)
        self.scrape_errors = define.counter(
            "state_snapshot_errors",
            "Failed reads of the state store while preparing a scrape or a probe.",
        )
        info = define.gauge(
            "build_info",
            "Always 1; the version of onc-pipeline as a label.",
            ["version"],
        )
        info.labels(__version__).set(1)
        self.monitor: LoopMonitor | None = None
        self.ready: Callable[[], bool] | None = None
        self.snapshot: Snapshot | None = None
        self.registry.register(_ScrapeCollector(self))

    def update(self, snapshot: Snapshot) -> None:
        """Adopt a fresh snapshot; a failed read keeps the previous stream figures."""
        if not snapshot.store_ok:
            self.scrape_errors.inc()
            if self.snapshot is not None:
                # Keep the last good per-stream figures but report the store as down.
                previous = self.snapshot
                snapshot = replace(
                    snapshot,
                    records=previous.records,
                    quarantined=previous.quarantined,
                    inflight=previous.inflight,
                )
        self.snapshot = snapshot

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
