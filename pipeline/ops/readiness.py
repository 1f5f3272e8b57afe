"""Readiness: what the daemon feeds the ops layer, a snapshot of it, and the verdict of /readyz.

The pipeline is *ready* when its state store answers, its scheduler task runs, and it is not
*failing*. Failing has two concrete forms:

- every enabled stream's latest pass failed and none has succeeded for `failing_after`
  (counted from the later of its last success and the process start, so a restart does not
  inherit yesterday's streak);
- the Oceans API has answered only 401/403 for `auth_grace` (a revoked or mistyped token:
  nothing will succeed until an operator acts).

One stream failing while others succeed is not "failing": that is a per-stream alert
(`onc_pipeline_stream_failing`), not a reason to call the whole process unready. The decision
is a pure function of a snapshot and `now`, tested without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from pipeline.redaction import redact_text
from pipeline.state.base import QuarantineRecord, StreamRecord
from pipeline.times import short_duration

if TYPE_CHECKING:
    from pipeline.coverage.page import CoverageSource

log = structlog.get_logger(__name__)

DEFAULT_FAILING_AFTER = timedelta(minutes=15)
DEFAULT_AUTH_GRACE = timedelta(minutes=1)
SNAPSHOT_TIMEOUT_S = 5.0


class OpsStore(Protocol):
    """The read-only part of the StateStore the ops layer uses (every backend has it)."""

    async def schema_version(self) -> int: ...

    async def list_streams(self) -> list[StreamRecord]: ...

    async def list_quarantine(self, stream: str | None = None) -> list[QuarantineRecord]: ...

    async def get_inflight(self, stream: str) -> dict[str, dict[str, Any]]: ...


def _nothing() -> Collection[str]:
    return ()


@dataclass(frozen=True)
class OpsSources:
    """What the daemon feeds the ops layer; the callables are read at every probe or scrape.

    `streams`: names of the enabled, scheduled streams (`runner.streams`);
    `scheduler_running`: false once the runner task has ended (`not task.done()`);
    `running`: names of streams with a pass in flight (`runner.running`).
    """

    store: OpsStore
    streams: Callable[[], Collection[str]]
    scheduler_running: Callable[[], bool]
    running: Callable[[], Collection[str]] = _nothing
    # The daemon's coverage loop (issue 22): serves /coverage and /status when set.
    coverage: CoverageSource | None = None


@dataclass(frozen=True)
class Snapshot:
    """The pipeline's state read once: what /metrics, /readyz and STATUS= are computed from."""

    taken_at: datetime
    store_ok: bool
    store_error: str | None
    scheduler_running: bool
    enabled: tuple[str, ...]
    running: tuple[str, ...] = ()
    records: Mapping[str, StreamRecord] = field(default_factory=dict)
    quarantined: Mapping[str, int] = field(default_factory=dict)
    inflight: Mapping[str, int] = field(default_factory=dict)


async def take_snapshot(sources: OpsSources, now: datetime) -> Snapshot:
    """Read the store and the runner once; a store that fails or hangs yields store_ok=False."""
    # What the runner says, whatever the store does; store_ok until a read fails.
    runner = Snapshot(
        taken_at=now,
        store_ok=True,
        store_error=None,
        scheduler_running=bool(sources.scheduler_running()),
        enabled=tuple(sorted(sources.streams())),
        running=tuple(sorted(sources.running())),
    )
    store = sources.store
    try:
        async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
            await store.schema_version()
            records = {r.name: r for r in await store.list_streams()}
            quarantined: dict[str, int] = {}
            for item in await store.list_quarantine():
                quarantined[item.stream] = quarantined.get(item.stream, 0) + 1
            inflight = {name: len(await store.get_inflight(name)) for name in runner.enabled}
    except Exception as exc:  # any store failure means "not ready", never a crashed probe
        error = redact_text(f"{type(exc).__name__}: {exc}")[:500]
        log.warning("ops_snapshot_failed", error=error)
        return replace(runner, store_ok=False, store_error=error)
    return replace(runner, records=records, quarantined=quarantined, inflight=inflight)


def stream_failing(record: StreamRecord | None) -> bool:
    """True when the stream's most recent pass failed (an error newer than any success)."""
    if record is None or record.last_error_at is None:
        return False
    return record.last_success is None or record.last_error_at > record.last_success


def failing_since(record: StreamRecord, started_at: datetime) -> datetime:
    """Start of the current failure streak as far as this process can tell."""
    if record.last_success is None:
        return started_at
    return max(record.last_success, started_at)


@dataclass(frozen=True, slots=True)
class Check:
    """One named readiness condition."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Readiness:
    """The /readyz verdict: ready when every check passes."""

    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        """The /readyz body."""
        return {
            "status": "ready" if self.ready else "not_ready",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }


def evaluate(
    snapshot: Snapshot,
    now: datetime,
    *,
    started_at: datetime,
    auth_failing_since: datetime | None = None,
    failing_after: timedelta = DEFAULT_FAILING_AFTER,
    auth_grace: timedelta = DEFAULT_AUTH_GRACE,
) -> Readiness:
    """Decide readiness from a snapshot; pure."""
    checks = [
        Check(
            "state_store",
            snapshot.store_ok,
            "open" if snapshot.store_ok else f"unavailable: {snapshot.store_error}",
        ),
        Check(
            "scheduler",
            snapshot.scheduler_running,
            "running" if snapshot.scheduler_running else "the scheduler task has stopped",
        ),
    ]
    failing = {
        name: failing_since(record, started_at)
        for name in snapshot.enabled
        if stream_failing(record := snapshot.records.get(name))
        and record is not None  # for mypy: stream_failing already excludes None
    }
    long_failing = {n for n, since in failing.items() if now - since >= failing_after}
    if snapshot.enabled and len(long_failing) == len(snapshot.enabled):
        detail = (
            f"every stream ({len(snapshot.enabled)}) has failed for over "
            f"{failing_after.total_seconds():g}s"
        )
        checks.append(Check("streams", False, detail))
    else:
        detail = f"{len(failing)} of {len(snapshot.enabled)} streams failing"
        if failing:
            # Still "ok": a short outage is not a reason to pull the instance; say until when.
            detail += (
                f"; not ready once every stream has failed for "
                f"{failing_after.total_seconds():g}s (see `onc-pipeline status`)"
            )
        checks.append(Check("streams", True, detail))
    if auth_failing_since is not None and now - auth_failing_since >= auth_grace:
        checks.append(
            Check(
                "onc_auth",
                False,
                f"the Oceans API has refused the token (401/403) since "
                f"{auth_failing_since.isoformat()}",
            )
        )
    else:
        checks.append(Check("onc_auth", True, "no persistent 401/403"))
    return Readiness(tuple(checks))


def status_line(snapshot: Snapshot, now: datetime) -> str:
    """A one-line summary for systemd's STATUS= (shown by `systemctl status`)."""
    if not snapshot.store_ok:
        return f"state store unavailable: {snapshot.store_error}"[:200]
    lags = [
        (now - r.cursor_time).total_seconds()
        for name in snapshot.enabled
        if (r := snapshot.records.get(name)) is not None and r.cursor_time is not None
    ]
    failing = sum(1 for n in snapshot.enabled if stream_failing(snapshot.records.get(n)))
    parts = [
        f"{len(snapshot.enabled)} streams",
        f"{len(snapshot.running)} running",
        f"{failing} failing",
        f"max lag {short_duration(max(lags))}" if lags else "no cursor yet",
    ]
    quarantined = sum(snapshot.quarantined.get(n, 0) for n in snapshot.enabled)
    if quarantined:
        parts.append(f"{quarantined} quarantined")
    return "harvesting: " + ", ".join(parts)
