"""The StateStore Protocol every backend implements, and the row types it speaks in.

The store is the pipeline's memory across crashes: per stream a cursor, in-flight work, a
manifest of every published file, error and quarantine records, and a small metadata area.
`commit_publish` is the exactly-once commit point; everything else is bookkeeping around it.
Backends: `InMemoryStateStore` (fast engine tests), `SqliteStateStore` (the embedded
default) and `PostgresStateStore` (several instances), the two SQL ones over one base,
`SqlStateStore` (state/sql/store.py); one contract suite (tests/contract/) holds them all to
the same behaviour.

Scale-out (PostgreSQL, several instances) adds `CoordinationStore` beside this Protocol
rather than inside it: claim/renew/release of leases on work units, `commit_publish_fenced`
checking the lease in the same transaction that records the output and moves the cursor,
and an atomic `update_meta`. Nothing here assumes a single writer except the SQLite
backend's file lock.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pipeline.exceptions import LeaseLostError
from pipeline.times import as_utc, as_utc_or_none

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def dump_payload(payload: dict[str, Any]) -> str:
    """Serialise an in-flight or metadata payload as strict JSON.

    NaN and infinities are refused (ValueError) and non-JSON types raise TypeError, the same
    on every backend: PostgreSQL's jsonb would reject them, so the fast backends must too.
    Non-ASCII is escaped so a lone surrogate can't break a database's UTF-8 encoding.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    return json.dumps(payload, allow_nan=False, sort_keys=True, separators=(",", ":"))


def load_payload(text: str) -> dict[str, Any]:
    """Inverse of `dump_payload`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"stored payload is not a JSON object: {text[:80]!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamRecord:
    """Per-stream progress and health, as `status` shows it.

    `cursor_time` is the end of the last harvested time range (exclusive); `cursor_file` the
    last archive file taken. `last_error` keeps the most recent failure even after a later
    success, so compare `last_error_at` with `last_success` to tell whether it is current.
    `last_success` is whichever was written last: the end of a successful pass, or a commit
    that carried a cursor time (its `succeeded_at`).
    What a stream has not done yet is None, so a new stream's record names only its name and
    `updated_at`. The fields are in column order: `from_row` reads them so.
    """

    name: str
    cursor_time: datetime | None = None
    cursor_file: str | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_times(self)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One published file. `path` is relative to the output root and unique in the manifest."""

    path: str
    stream: str
    dataset_id: str
    size: int
    sha256: str
    time_start: datetime | None
    time_end: datetime | None
    records: int | None
    source: str | None
    published_at: datetime

    def __post_init__(self) -> None:
        if not self.path or self.path.startswith("/"):
            raise ValueError(f"manifest path must be relative to the output root: {self.path!r}")
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        if self.records is not None and self.records < 0:
            raise ValueError(f"records must be >= 0, got {self.records}")
        _check_times(self)


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """An item (page, file, product run) given up on after repeated failures."""

    stream: str
    item_key: str
    reason: str
    detail: str | None
    attempts: int
    at: datetime

    def __post_init__(self) -> None:
        _check_times(self)


@dataclass(frozen=True, slots=True)
class Commit:
    """What one exactly-once commit applies: manifest entries upserted by path, the cursor
    moved to `cursor_time`/`cursor_file` (None leaves a field as it is), and the in-flight
    keys it finishes.

    Checked when it is built, so every backend receives only a commit it can apply whole:
    each entry belongs to `stream` and no path repeats (ValueError), and `cursor_time` is
    aware (converted to UTC).
    """

    stream: str
    entries: Sequence[ManifestEntry] = ()
    cursor_time: datetime | None = None
    cursor_file: str | None = None
    clear_inflight: Sequence[str] = ()
    #: When the pass that commits succeeded, on the pass's clock (the clock `record_failure`
    #: is given, so readiness compares like with like); None: the store's own clock.
    succeeded_at: datetime | None = None

    def __post_init__(self) -> None:
        # Tuples, so the caller's lists can't change a commit after it was checked.
        _set(self, "entries", tuple(self.entries))
        _set(self, "clear_inflight", tuple(self.clear_inflight))
        check_entries(self.stream, self.entries)
        _check_times(self)


_R = TypeVar("_R", bound="DataclassInstance")


def _same(value: Any) -> Any:
    return value


@functools.cache
def _time_fields(cls: type[DataclassInstance]) -> dict[str, bool]:
    """The datetime fields of a row type, each with whether it may be None."""
    return {
        f.name: str(f.type).endswith("| None")
        for f in fields(cls)
        if str(f.type).startswith("datetime")
    }


def _check_times(record: DataclassInstance) -> None:
    # Every datetime field converted to UTC; a naive one is refused by name.
    for name, optional in _time_fields(type(record)).items():
        value = getattr(record, name)
        _set(record, name, as_utc_or_none(value, name) if optional else as_utc(value, name))


def from_row(cls: type[_R], row: Iterable[Any], decode_time: Callable[[Any], Any] = _same) -> _R:
    """A row type from a database row whose columns are its fields, in order; a backend that
    stores times as text passes its `decode_time` (NULL stays None)."""
    times = _time_fields(cls)
    names = [f.name for f in fields(cls)]
    values = {
        name: decode_time(value) if name in times and value is not None else value
        for name, value in zip(names, row, strict=True)
    }
    return cls(**values)


def to_row(
    record: DataclassInstance, encode_time: Callable[[datetime], Any] = _same
) -> tuple[Any, ...]:
    """A row type's fields as query parameters, in order (the inverse of `from_row`)."""
    times = _time_fields(type(record))
    row = []
    for spec in fields(record):
        value = getattr(record, spec.name)
        row.append(encode_time(value) if spec.name in times and value is not None else value)
    return tuple(row)


def _set(obj: object, name: str, value: object) -> None:
    # Frozen dataclasses normalise their own fields here, so every row a backend hands out
    # carries aware UTC datetimes whatever offset the caller used.
    object.__setattr__(obj, name, value)


# typing lets a Protocol extend contextlib's AbstractAsyncContextManager (CPython
# Lib/typing.py, _PROTO_ALLOWLIST), so `async with store:` is declared once, there.
@runtime_checkable
class StateStore(AbstractAsyncContextManager["StateStore", None], Protocol):
    """Durable pipeline state, used as `async with store:` (opens, and always closes).

    Every method is a coroutine; calls on a closed store raise StateError, and driver errors
    surface as StateError with the driver error as cause.

    Ordering is part of the contract: `list_streams` by name, `list_manifest` by path,
    `list_quarantine` by (stream, item_key), `get_inflight` by key.
    """

    async def open(self) -> None:
        """Connect, check integrity, take the single-instance lock, apply migrations."""

    async def close(self) -> None:
        """Finish queued work and release every resource; safe to call twice."""

    async def schema_version(self) -> int:
        """The schema version of the open store (0 for backends without a schema)."""

    # -- streams --------------------------------------------------------------------------

    async def get_stream(self, name: str) -> StreamRecord | None:
        """The stream's record, or None if the store has never heard of it."""

    async def list_streams(self) -> list[StreamRecord]:
        """Every stream the store knows, by name."""

    async def record_success(self, name: str, at: datetime) -> None:
        """Note a successful run that ended at `at`."""

    async def record_failure(self, name: str, at: datetime, error: str) -> None:
        """Note a failed run; `error` is stored as given (the caller redacts secrets)."""

    # -- the exactly-once commit point ----------------------------------------------------

    async def commit_publish(self, commit: Commit) -> None:
        """In one transaction: upsert the commit's entries by path, advance the cursor, delete
        the in-flight keys it clears. Durable once it returns.

        The cursor only moves forward: a `cursor_time` earlier than the stored one is ignored
        (the stored cursor, including its `cursor_file`, is kept) while the rest of the commit
        still applies; an equal time is accepted. None leaves a cursor field unchanged.

        A commit that carries a `cursor_time` (older or not) also records a successful run at
        its `succeeded_at` (the store's clock when None), in the same row write: the stream
        made progress. The runner then needs no `record_success` of its own after a pass that
        committed, which in near-real-time is one state write less per poll (issue 21).
        """

    async def get_manifest(self, path: str) -> ManifestEntry | None:
        """The manifest entry for a published path, or None."""

    async def list_manifest(self, stream: str | None = None) -> list[ManifestEntry]:
        """Manifest entries (of one stream, or all), by path."""

    async def list_dataset_manifest(self, dataset_id: str, after: str = "") -> list[ManifestEntry]:
        """The manifest entries of a dataset under its folder (`<dataset_id>/...`), whatever
        stream published them, whose paths sort after `after` in code point order (as Python
        compares text; the stores' text order), by path: a dataset's `manifest.tsv`, or
        what one ending at `after` lacks."""

    # -- in-flight work -------------------------------------------------------------------

    async def put_inflight(self, stream: str, key: str, payload: dict[str, Any]) -> None:
        """Create or replace one in-flight record (a JSON-able dict)."""

    async def get_inflight(self, stream: str) -> dict[str, dict[str, Any]]:
        """Every in-flight record of a stream, key -> payload."""

    async def delete_inflight(self, stream: str, key: str) -> None:
        """Delete one in-flight record; deleting a missing key is not an error."""

    # -- poison items ---------------------------------------------------------------------

    async def note_attempt(self, stream: str, item_key: str, reason: str) -> int:
        """Count one more failed attempt at an item; returns the new count."""

    async def quarantine(
        self, stream: str, item_key: str, reason: str, detail: str | None = None
    ) -> None:
        """Give up on an item: record it with its attempt count, which is then reset."""

    async def list_quarantine(self, stream: str | None = None) -> list[QuarantineRecord]:
        """Quarantined items (of one stream, or all), by (stream, item_key)."""

    async def is_quarantined(self, stream: str, item_key: str) -> bool:
        """True when the item is quarantined."""

    async def clear_attempts(self, stream: str, *item_keys: str) -> None:
        """Reset the attempt counts of items that succeeded, all in one transaction;
        quarantine records are untouched."""

    async def release_quarantine(self, stream: str, item_key: str) -> bool:
        """Give a quarantined item another chance (an operator's decision): its record and
        attempt count are removed. False when it was not quarantined."""

    # -- metadata -------------------------------------------------------------------------

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        """A stored metadata value, or None."""

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace a metadata value (a JSON-able dict)."""


def advance_cursor(
    stored_time: datetime | None,
    stored_file: str | None,
    cursor_time: datetime | None,
    cursor_file: str | None,
) -> tuple[datetime | None, str | None]:
    """The cursor after a commit: it only moves forward, and None leaves a field unchanged.

    An older `cursor_time` keeps the stored pair whole, `cursor_file` included: a file cursor
    belongs with its time, and a late commit from a superseded run must not rewind either.
    """
    if cursor_time is not None and stored_time is not None and cursor_time < stored_time:
        return stored_time, stored_file
    return (
        stored_time if cursor_time is None else cursor_time,
        stored_file if cursor_file is None else cursor_file,
    )


def dataset_range(dataset_id: str, after: str = "") -> tuple[str, str]:
    """The bounds, both excluded, of the store paths `list_dataset_manifest` reads: after
    `after` and after the folder's own name `<dataset_id>/`, before `<dataset_id>0` (the
    character after `/`), so every path below the folder and nothing else."""
    return max(after, dataset_id + "/"), dataset_id + "0"


def check_entries(stream: str, entries: Sequence[ManifestEntry]) -> None:
    """Refuse a commit whose entries belong to another stream or repeat a path."""
    seen: set[str] = set()
    for entry in entries:
        if entry.stream != stream:
            raise ValueError(
                f"manifest entry {entry.path!r} belongs to {entry.stream!r}, not {stream!r}"
            )
        if entry.path in seen:
            raise ValueError(f"manifest path {entry.path!r} appears twice in one commit")
        seen.add(entry.path)


# -- scale-out: leases, fenced commits, compare-and-set metadata -----------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """A time-limited exclusive claim on one resource (`stream:<name>`, `<stream>/window:...`).

    `token` is the fencing token: it grows by one on every grant of the resource, so a holder
    whose lease expired and was re-granted carries a smaller token than the new holder, and
    its fenced commit is refused. Times come from the store's clock (PostgreSQL's `now()`),
    never the caller's, so instances with skewed clocks agree on expiry.
    """

    resource: str
    owner: str
    token: int
    acquired_at: datetime
    expires_at: datetime
    ttl: timedelta

    def __post_init__(self) -> None:
        if self.token < 1:
            raise ValueError(f"lease token must be >= 1, got {self.token}")
        if self.ttl <= timedelta(0):
            raise ValueError(f"lease ttl must be positive, got {self.ttl}")
        _check_times(self)


def lease_lost(lease: Lease) -> LeaseLostError:
    """The error of a fenced commit refused because `lease` is no longer held."""
    return LeaseLostError(
        f"lease on {lease.resource!r} (token {lease.token}) was lost; nothing was committed",
        resource=lease.resource,
        token=lease.token,
    )


MetaUpdate = Callable[[dict[str, Any] | None], dict[str, Any] | None]


@runtime_checkable
class CoordinationStore(Protocol):
    """What several instances sharing one store need beyond `StateStore`.

    `PostgresStateStore` implements it natively (shared by every instance on the database);
    `pipeline.coordination.coordination_for(store)` wraps a single-process store (memory,
    SQLite) in an in-process implementation with the same semantics.
    """

    async def claim(self, resource: str, owner: str, ttl: timedelta) -> Lease | None:
        """Grant `resource` to `owner` for `ttl` if it is free, released or expired; None when
        someone (this owner included) holds it. Atomic: of many concurrent claimers, at most
        one gets a lease. Every grant carries a larger token than the one before."""

    async def renew(self, lease: Lease) -> Lease | None:
        """Heartbeat: extend a still-valid lease by its ttl. None when it was lost (expired,
        released or taken over): the holder must stop work on the resource."""

    async def release(self, lease: Lease) -> None:
        """Give the resource up at once; a lost lease is ignored (it is someone else's now)."""

    async def list_leases(self, prefix: str = "") -> list[Lease]:
        """Unexpired leases whose resource starts with `prefix`, by resource (for status)."""

    async def commit_publish_fenced(self, commit: Commit, lease: Lease) -> None:
        """`StateStore.commit_publish`, applied only while `lease` is still held: the check
        and the commit are one transaction, and a takeover waits for it. LeaseLostError (nothing
        written) when the lease expired or another owner holds a newer token."""

    async def update_meta(self, namespace: str, key: str, fn: MetaUpdate) -> dict[str, Any] | None:
        """Read-modify-write one metadata value atomically across instances.

        `fn` gets the current value (None if absent) and returns the new one, or None to
        leave it as it is; it runs once, inside the transaction, so it must be quick, pure and
        must not await. Returns the value stored afterwards.
        """
