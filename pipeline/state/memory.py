"""InMemoryStateStore: the StateStore contract held in dicts, for fast engine tests.

Nothing survives the process, but the data does survive `close()`/`open()` on the same
object, so an engine test can "restart" against the state a previous run left behind.
Methods never await between reading and writing, so each call is atomic on the event loop,
which is what makes `commit_publish` all-or-nothing here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from pipeline.exceptions import StateError
from pipeline.lifecycle import AsyncResource
from pipeline.state.base import (
    Commit,
    ManifestEntry,
    QuarantineRecord,
    StreamRecord,
    advance_cursor,
    dataset_range,
    dump_payload,
    load_payload,
)
from pipeline.times import Clock, as_utc, utc_now


class InMemoryStateStore(AsyncResource):
    """A StateStore in process memory; payloads are stored as JSON text, as on disk."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._open = False
        self._streams: dict[str, StreamRecord] = {}
        self._manifest: dict[str, ManifestEntry] = {}
        # Payloads are kept serialised so callers can't mutate stored state through a
        # reference, and so a non-JSON payload fails here exactly as it would in SQLite.
        self._inflight: dict[tuple[str, str], str] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._quarantine: dict[tuple[str, str], QuarantineRecord] = {}
        self._meta: dict[tuple[str, str], str] = {}

    async def open(self) -> None:
        """Mark the store open (the data of an earlier open is kept)."""
        self._open = True

    async def close(self) -> None:
        """Mark the store closed."""
        self._open = False

    async def schema_version(self) -> int:
        """Always 0: there is no schema to migrate."""
        self._check_open()
        return 0

    # -- streams --------------------------------------------------------------------------

    async def get_stream(self, name: str) -> StreamRecord | None:
        """The stream's record, or None."""
        self._check_open()
        return self._streams.get(name)

    async def list_streams(self) -> list[StreamRecord]:
        """Every known stream, by name."""
        self._check_open()
        return [self._streams[name] for name in sorted(self._streams)]

    async def record_success(self, name: str, at: datetime) -> None:
        """Note a successful run."""
        self._check_open()
        at = as_utc(at, "at")
        self._streams[name] = replace(self._ensure(name), last_success=at, updated_at=self._now())

    async def record_failure(self, name: str, at: datetime, error: str) -> None:
        """Note a failed run."""
        self._check_open()
        at = as_utc(at, "at")
        self._streams[name] = replace(
            self._ensure(name), last_error=error, last_error_at=at, updated_at=self._now()
        )

    # -- the exactly-once commit point ----------------------------------------------------

    async def commit_publish(self, commit: Commit) -> None:
        """Upsert entries, advance the cursor, clear in-flight keys; see StateStore."""
        self._check_open()
        # The commit was checked when it was built and no await follows, so it cannot be
        # interleaved with another coroutine and cannot half-apply.
        record = self._ensure(commit.stream)
        new_time, new_file = advance_cursor(
            record.cursor_time, record.cursor_file, commit.cursor_time, commit.cursor_file
        )
        for entry in commit.entries:
            self._manifest[entry.path] = entry
        now = self._now()
        success = record.last_success if commit.cursor_time is None else commit.succeeded_at or now
        self._streams[commit.stream] = replace(
            record, cursor_time=new_time, cursor_file=new_file, last_success=success, updated_at=now
        )
        for key in commit.clear_inflight:
            self._inflight.pop((commit.stream, key), None)

    async def get_manifest(self, path: str) -> ManifestEntry | None:
        """The entry for `path`, or None."""
        self._check_open()
        return self._manifest.get(path)

    async def list_manifest(self, stream: str | None = None) -> list[ManifestEntry]:
        """Entries by path, optionally of one stream."""
        self._check_open()
        return [
            self._manifest[path]
            for path in sorted(self._manifest)
            if stream is None or self._manifest[path].stream == stream
        ]

    async def list_dataset_manifest(self, dataset_id: str, after: str = "") -> list[ManifestEntry]:
        """The dataset's entries in its folder whose paths sort after `after`, by path."""
        self._check_open()
        low, high = dataset_range(dataset_id, after)
        return [
            self._manifest[path]
            for path in sorted(p for p in self._manifest if low < p < high)
            if self._manifest[path].dataset_id == dataset_id
        ]

    # -- in-flight work -------------------------------------------------------------------

    async def put_inflight(self, stream: str, key: str, payload: dict[str, Any]) -> None:
        """Create or replace one in-flight record."""
        self._check_open()
        text = dump_payload(payload)
        self._ensure_stored(stream)
        self._inflight[(stream, key)] = text

    async def get_inflight(self, stream: str) -> dict[str, dict[str, Any]]:
        """Every in-flight record of a stream, by key."""
        self._check_open()
        return {
            key: load_payload(self._inflight[(s, key)])
            for (s, key) in sorted(self._inflight)
            if s == stream
        }

    async def delete_inflight(self, stream: str, key: str) -> None:
        """Delete one in-flight record if present."""
        self._check_open()
        self._inflight.pop((stream, key), None)

    # -- poison items ---------------------------------------------------------------------

    async def note_attempt(self, stream: str, item_key: str, reason: str) -> int:
        """Count one more failed attempt."""
        self._check_open()
        self._ensure_stored(stream)
        count = self._attempts.get((stream, item_key), 0) + 1
        self._attempts[(stream, item_key)] = count
        return count

    async def quarantine(
        self, stream: str, item_key: str, reason: str, detail: str | None = None
    ) -> None:
        """Quarantine an item with its attempt count, then reset the count."""
        self._check_open()
        self._ensure_stored(stream)
        attempts = self._attempts.pop((stream, item_key), 0)
        self._quarantine[(stream, item_key)] = QuarantineRecord(
            stream=stream,
            item_key=item_key,
            reason=reason,
            detail=detail,
            attempts=attempts,
            at=self._now(),
        )

    async def list_quarantine(self, stream: str | None = None) -> list[QuarantineRecord]:
        """Quarantined items by (stream, item_key)."""
        self._check_open()
        return [
            self._quarantine[key]
            for key in sorted(self._quarantine)
            if stream is None or key[0] == stream
        ]

    async def is_quarantined(self, stream: str, item_key: str) -> bool:
        """True when the item is quarantined."""
        self._check_open()
        return (stream, item_key) in self._quarantine

    async def clear_attempts(self, stream: str, *item_keys: str) -> None:
        """Reset the items' attempt counts."""
        self._check_open()
        for key in item_keys:
            self._attempts.pop((stream, key), None)

    async def release_quarantine(self, stream: str, item_key: str) -> bool:
        """Remove an item's quarantine record and attempt count; see StateStore."""
        self._check_open()
        self._attempts.pop((stream, item_key), None)
        return self._quarantine.pop((stream, item_key), None) is not None

    # -- metadata -------------------------------------------------------------------------

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        """A stored metadata value, or None."""
        self._check_open()
        text = self._meta.get((namespace, key))
        return None if text is None else load_payload(text)

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace a metadata value."""
        self._check_open()
        self._meta[(namespace, key)] = dump_payload(value)

    # -- helpers --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise StateError("the in-memory state store is not open")

    def _now(self) -> datetime:
        return as_utc(self._clock(), "clock()")

    def _ensure(self, name: str) -> StreamRecord:
        """The stream's record, or a fresh empty one (not yet stored)."""
        record = self._streams.get(name)
        if record is None:
            record = StreamRecord(name=name, updated_at=self._now())
        return record

    def _ensure_stored(self, name: str) -> None:
        # Mirrors SQLite, where in-flight, attempt and quarantine rows reference the stream
        # row: touching any of them makes the stream known.
        if name not in self._streams:
            self._streams[name] = self._ensure(name)
