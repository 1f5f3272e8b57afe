"""Readiness: the pure verdict over snapshots, the status line, and snapshots of a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.exceptions import StateError
from pipeline.ops.readiness import (
    OpsSources,
    Snapshot,
    evaluate,
    status_line,
    stream_failing,
    take_snapshot,
)
from pipeline.state.base import Commit, QuarantineRecord, StreamRecord
from pipeline.state.memory import InMemoryStateStore

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def record(
    name: str,
    *,
    success: datetime | None = None,
    error_at: datetime | None = None,
    cursor: datetime | None = None,
) -> StreamRecord:
    return StreamRecord(
        name=name,
        cursor_time=cursor,
        cursor_file=None,
        last_success=success,
        last_error="OncUnavailable: 503" if error_at else None,
        last_error_at=error_at,
        updated_at=T0,
    )


def snap(*records: StreamRecord, enabled: tuple[str, ...] | None = None, **kw: Any) -> Snapshot:
    names = enabled if enabled is not None else tuple(r.name for r in records)
    values: dict[str, Any] = {
        "taken_at": T0,
        "store_ok": True,
        "store_error": None,
        "scheduler_running": True,
        "enabled": names,
        "records": {r.name: r for r in records},
    }
    values.update(kw)
    return Snapshot(**values)


def test_stream_failing_compares_error_and_success() -> None:
    assert not stream_failing(None)
    assert not stream_failing(record("a", success=T0))
    assert stream_failing(record("a", error_at=T0))
    assert stream_failing(record("a", success=T0, error_at=T0 + timedelta(seconds=1)))
    assert not stream_failing(record("a", success=T0 + timedelta(seconds=1), error_at=T0))


def test_fresh_pipeline_is_ready() -> None:
    verdict = evaluate(snap(enabled=("a", "b")), T0, started_at=T0)
    assert verdict.ready
    assert verdict.as_json()["status"] == "ready"
    assert set(verdict.as_json()["checks"]) == {"state_store", "scheduler", "streams", "onc_auth"}


def test_store_down_or_scheduler_stopped_is_not_ready() -> None:
    down = evaluate(snap(store_ok=False, store_error="StateError: closed"), T0, started_at=T0)
    assert not down.ready
    assert "StateError: closed" in down.as_json()["checks"]["state_store"]["detail"]
    stopped = evaluate(snap(scheduler_running=False), T0, started_at=T0)
    assert not stopped.ready
    assert not stopped.as_json()["checks"]["scheduler"]["ok"]


def test_all_streams_failing_long_enough_is_not_ready() -> None:
    start = T0 - timedelta(hours=1)
    a = record("a", success=T0 - timedelta(minutes=20), error_at=T0 - timedelta(minutes=1))
    b = record("b", error_at=T0 - timedelta(minutes=1))  # never succeeded: since start
    verdict = evaluate(snap(a, b), T0, started_at=start, failing_after=timedelta(minutes=15))
    assert not verdict.ready
    assert "every stream (2)" in verdict.as_json()["checks"]["streams"]["detail"]


def test_one_healthy_stream_keeps_it_ready() -> None:
    start = T0 - timedelta(hours=1)
    a = record("a", error_at=T0 - timedelta(minutes=1))
    b = record("b", success=T0 - timedelta(minutes=1))
    verdict = evaluate(snap(a, b), T0, started_at=start)
    assert verdict.ready
    assert verdict.as_json()["checks"]["streams"]["detail"].startswith("1 of 2 streams failing;")


def test_every_stream_failing_briefly_says_when_it_stops_being_ready() -> None:
    """Issue 19 item 6: `"ok": true` beside "2 of 2 streams failing" needs its reason."""
    a = record("a", error_at=T0 - timedelta(minutes=1))
    b = record("b", error_at=T0 - timedelta(minutes=2))
    verdict = evaluate(snap(a, b), T0, started_at=T0 - timedelta(minutes=3))
    assert verdict.ready
    detail = verdict.as_json()["checks"]["streams"]["detail"]
    assert detail.startswith("2 of 2 streams failing; not ready once every stream has failed")


def test_failure_streak_is_counted_from_process_start() -> None:
    # Last success yesterday, restarted five minutes ago: failing for 5 min, not for a day.
    start = T0 - timedelta(minutes=5)
    a = record("a", success=T0 - timedelta(days=1), error_at=T0 - timedelta(minutes=1))
    assert evaluate(snap(a), T0, started_at=start, failing_after=timedelta(minutes=15)).ready
    later = T0 + timedelta(minutes=11)
    assert not evaluate(snap(a), later, started_at=start, failing_after=timedelta(minutes=15)).ready


def test_disabled_streams_do_not_count() -> None:
    start = T0 - timedelta(hours=1)
    gone = record("gone", error_at=T0 - timedelta(minutes=30))
    verdict = evaluate(snap(gone, enabled=("live",)), T0, started_at=start)
    assert verdict.ready


def test_persistent_auth_refusal_is_not_ready_after_grace() -> None:
    since = T0 - timedelta(seconds=30)
    grace = timedelta(minutes=1)
    assert evaluate(snap(), T0, started_at=T0, auth_failing_since=since, auth_grace=grace).ready
    later = T0 + timedelta(seconds=31)
    verdict = evaluate(snap(), later, started_at=T0, auth_failing_since=since, auth_grace=grace)
    assert not verdict.ready
    assert "401/403" in verdict.as_json()["checks"]["onc_auth"]["detail"]


def test_status_line_summarises_streams() -> None:
    a = record("a", cursor=T0 - timedelta(minutes=3), success=T0)
    b = record("b", error_at=T0)
    line = status_line(snap(a, b, running=("a",), quarantined={"a": 2, "other": 9}), T0)
    assert line == "harvesting: 2 streams, 1 running, 1 failing, max lag 3.0m, 2 quarantined"
    assert "\n" not in line
    assert status_line(snap(), T0) == "harvesting: 0 streams, 0 running, 0 failing, no cursor yet"
    down = status_line(snap(store_ok=False, store_error="StateError: gone"), T0)
    assert down == "state store unavailable: StateError: gone"


async def test_snapshot_reads_a_real_store() -> None:
    async with InMemoryStateStore(clock=lambda: T0) as store:
        await store.record_success("a", T0)
        await store.commit_publish(Commit("a", [], cursor_time=T0 - timedelta(minutes=2)))
        await store.put_inflight("p", "2026-11-19", {"dp_request_id": 7})
        await store.quarantine("a", "window-1", "malformed", "bad page")
        await store.quarantine("a", "window-2", "malformed", None)
        sources = OpsSources(
            store=store,
            streams=lambda: ["p", "a"],
            scheduler_running=lambda: True,
            running=lambda: {"p"},
        )
        shot = await take_snapshot(sources, T0)
    assert shot.store_ok
    assert shot.enabled == ("a", "p")
    assert shot.running == ("p",)
    assert shot.records["a"].cursor_time == T0 - timedelta(minutes=2)
    assert shot.quarantined == {"a": 2}
    assert shot.inflight == {"a": 0, "p": 1}


async def test_snapshot_of_a_closed_store_is_not_ok() -> None:
    store = InMemoryStateStore()
    sources = OpsSources(store=store, streams=lambda: ["a"], scheduler_running=lambda: True)
    shot = await take_snapshot(sources, T0)
    assert not shot.store_ok
    assert shot.store_error is not None
    assert shot.store_error.startswith("StateError")
    assert not evaluate(shot, T0, started_at=T0).ready


class _TokenLeakingStore:
    """A store whose error message carries a URL with a token (it must be redacted)."""

    async def schema_version(self) -> int:
        raise StateError("cannot reach https://x/api?token=s3cr3t-value")

    async def list_streams(self) -> list[StreamRecord]:
        return []

    async def list_quarantine(self, stream: str | None = None) -> list[QuarantineRecord]:
        return []

    async def get_inflight(self, stream: str) -> dict[str, dict[str, Any]]:
        return {}


async def test_snapshot_error_is_redacted() -> None:
    sources = OpsSources(
        store=_TokenLeakingStore(), streams=lambda: [], scheduler_running=lambda: True
    )
    shot = await take_snapshot(sources, T0)
    assert shot.store_error is not None
    assert "s3cr3t-value" not in shot.store_error
    assert "token=" in shot.store_error
