"""PostgresStateStore: the state of several instances in one PostgreSQL database.

Why asyncpg rather than psycopg 3: it is asyncio-native with a built-in pool that has connect,
acquire and per-command timeouts, speaks the binary protocol (timestamptz and interval come
back as aware datetimes and timedeltas with no parsing), needs no libpq on the host, and is
the fastest driver per round trip, which matters for the shared request limiter that asks the
database once per ONC request. Types for mypy come from `asyncpg-stubs`.

Every public method is one pooled round trip or one transaction, so concurrent coroutines
and concurrent instances interleave only at statement boundaries the SQL was written for:
the cursor moves with a conditional UPDATE (never read-compare-write), leases are granted by
one upsert, and `commit_publish_fenced` holds the lease row while it commits. Driver errors,
refused connections and timeouts surface as StateError naming the database without its
password; a server that goes away costs at most `command_timeout`, never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import asyncpg.pool
import structlog

from pipeline.exceptions import LeaseLostError, StateError
from pipeline.lifecycle import AsyncResource
from pipeline.state.base import (
    Lease,
    ManifestEntry,
    MetaUpdate,
    QuarantineRecord,
    StreamRecord,
    check_entries,
    dump_payload,
    from_row,
    load_payload,
    to_row,
)
from pipeline.state.sql import postgres_queries as q
from pipeline.state.sql.postgres_connection import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_POOL_SIZE,
    Connection,
    Pool,
    close_pool,
    create_pool,
    parse_postgres_url,
    translate_errors,
)
from pipeline.state.sql.postgres_schema import (
    META_LOCK_CLASS,
    MIGRATION_LOCK,
    MIGRATIONS,
    Migration,
    check_migrations,
    latest_version,
)
from pipeline.state.sql.shared_queries import NUMBERED as SHARED
from pipeline.times import Clock, as_utc, as_utc_or_none, utc_now

log = structlog.get_logger(__name__)

T = TypeVar("T")
Row = TypeVar("Row", ManifestEntry, QuarantineRecord)


class PostgresStateStore(AsyncResource):
    """A StateStore (and CoordinationStore) in one PostgreSQL schema, shared by instances."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        clock: Clock = utc_now,
        migrations: tuple[Migration, ...] = MIGRATIONS,
        read_only: bool = False,
    ) -> None:
        check_migrations(migrations)
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.target = parse_postgres_url(url, schema=schema)
        self.read_only = read_only
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._clock = clock
        self._migrations = migrations
        self._pool: Pool | None = None

    def __repr__(self) -> str:
        return f"PostgresStateStore({self.target.display!r}, schema={self.target.schema!r})"

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then apply pending migrations (or, read-only, check the version)."""
        if self._pool is not None:
            raise StateError(f"state database {self.target.display} is already open")
        self._pool = await create_pool(
            self.target,
            max_size=self._pool_size,
            connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            read_only=self.read_only,
        )
        try:
            found, version = await self._migrate()
        except BaseException:
            await self.close()
            raise
        # Worth an operator's attention only when the schema moved; every command opens it.
        log.log(
            logging.INFO if found != version else logging.DEBUG,
            "state_store_opened",
            url=self.target.display,
            schema=self.target.schema,
            schema_version=version,
            **({"migrated_from": found} if found != version else {}),
        )

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool, self._connect_timeout)

    async def schema_version(self) -> int:
        """The version recorded in `schema_version`."""
        return await self._run("cannot read the schema version", _read_version)

    # -- streams --------------------------------------------------------------------------

    async def get_stream(self, name: str) -> StreamRecord | None:
        """The stream's record, or None."""
        rows = await self._fetch(SHARED.GET_STREAM, name)
        return from_row(StreamRecord, rows[0]) if rows else None

    async def list_streams(self) -> list[StreamRecord]:
        """Every known stream, by name."""
        return [from_row(StreamRecord, row) for row in await self._fetch(SHARED.LIST_STREAMS)]

    async def record_success(self, name: str, at: datetime) -> None:
        """Note a successful run."""
        await self._execute(SHARED.RECORD_SUCCESS, name, as_utc(at, "at"), self._now())

    async def record_failure(self, name: str, at: datetime, error: str) -> None:
        """Note a failed run."""
        await self._execute(SHARED.RECORD_FAILURE, name, error, as_utc(at, "at"), self._now())

    # -- the exactly-once commit point ----------------------------------------------------

    async def commit_publish(
        self,
        stream: str,
        entries: Sequence[ManifestEntry],
        *,
        cursor_time: datetime | None = None,
        cursor_file: str | None = None,
        clear_inflight: Sequence[str] = (),
    ) -> None:
        """Upsert entries, advance the cursor, clear in-flight keys, in one transaction."""
        commit = self._commit_steps(stream, entries, cursor_time, cursor_file, clear_inflight)
        await self._transaction("cannot commit", commit)

    async def commit_publish_fenced(
        self,
        stream: str,
        entries: Sequence[ManifestEntry],
        *,
        lease: Lease,
        cursor_time: datetime | None = None,
        cursor_file: str | None = None,
        clear_inflight: Sequence[str] = (),
    ) -> None:
        """`commit_publish` in the same transaction as a check that `lease` is still held."""
        commit = self._commit_steps(stream, entries, cursor_time, cursor_file, clear_inflight)

        async def fenced(conn: Connection) -> None:
            row = await conn.fetchrow(q.CHECK_LEASE, lease.resource)
            if row is None or (row[0], row[1]) != (lease.owner, lease.token) or not row[2]:
                raise LeaseLostError(
                    f"lease on {lease.resource!r} (token {lease.token}) was lost; "
                    "nothing was committed",
                    resource=lease.resource,
                    token=lease.token,
                )
            await commit(conn)

        await self._transaction("cannot commit", fenced)

    def _commit_steps(
        self,
        stream: str,
        entries: Sequence[ManifestEntry],
        cursor_time: datetime | None,
        cursor_file: str | None,
        clear_inflight: Sequence[str],
    ) -> Callable[[Connection], Awaitable[None]]:
        # Validation happens here, before any connection is taken: a bad commit writes nothing.
        check_entries(stream, entries)
        cursor_time = as_utc_or_none(cursor_time, "cursor_time")
        rows = [to_row(entry) for entry in entries]
        keys = [(stream, key) for key in clear_inflight]
        now = self._now()

        async def commit(conn: Connection) -> None:
            await conn.execute(SHARED.ENSURE_STREAM, stream, now)
            if rows:
                await conn.executemany(SHARED.UPSERT_MANIFEST, rows)
            await conn.execute(q.ADVANCE_CURSOR, stream, cursor_time, cursor_file, now)
            if keys:
                await conn.executemany(SHARED.DELETE_INFLIGHT, keys)

        return commit

    async def get_manifest(self, path: str) -> ManifestEntry | None:
        """The entry for `path`, or None."""
        rows = await self._fetch(SHARED.GET_MANIFEST, path)
        return from_row(ManifestEntry, rows[0]) if rows else None

    async def list_manifest(self, stream: str | None = None) -> list[ManifestEntry]:
        """Entries by path, optionally of one stream."""
        return await self._list(
            ManifestEntry, SHARED.LIST_MANIFEST, SHARED.LIST_MANIFEST_OF_STREAM, stream
        )

    # -- in-flight work -------------------------------------------------------------------

    async def put_inflight(self, stream: str, key: str, payload: dict[str, Any]) -> None:
        """Create or replace one in-flight record."""
        text = dump_payload(payload)
        now = self._now()

        async def put(conn: Connection) -> None:
            await conn.execute(SHARED.ENSURE_STREAM, stream, now)
            await conn.execute(SHARED.PUT_INFLIGHT, stream, key, text, now)

        await self._transaction("cannot store in-flight work", put)

    async def get_inflight(self, stream: str) -> dict[str, dict[str, Any]]:
        """Every in-flight record of a stream, by key."""
        rows = await self._fetch(SHARED.GET_INFLIGHT, stream)
        return {row[0]: load_payload(row[1]) for row in rows}

    async def delete_inflight(self, stream: str, key: str) -> None:
        """Delete one in-flight record if present."""
        await self._execute(SHARED.DELETE_INFLIGHT, stream, key)

    # -- poison items ---------------------------------------------------------------------

    async def note_attempt(self, stream: str, item_key: str, reason: str) -> int:
        """Count one more failed attempt."""
        now = self._now()

        async def note(conn: Connection) -> int:
            await conn.execute(SHARED.ENSURE_STREAM, stream, now)
            return int(await conn.fetchval(SHARED.NOTE_ATTEMPT, stream, item_key, reason, now))

        return await self._transaction("cannot count an attempt", note)

    async def quarantine(
        self, stream: str, item_key: str, reason: str, detail: str | None = None
    ) -> None:
        """Quarantine an item with its attempt count, then reset the count."""
        now = self._now()

        async def put(conn: Connection) -> None:
            await conn.execute(SHARED.ENSURE_STREAM, stream, now)
            attempts = await conn.fetchval(q.TAKE_ATTEMPTS, stream, item_key)
            params = (stream, item_key, reason, detail, int(attempts or 0), now)
            await conn.execute(SHARED.QUARANTINE, *params)

        await self._transaction("cannot quarantine", put)

    async def list_quarantine(self, stream: str | None = None) -> list[QuarantineRecord]:
        """Quarantined items by (stream, item_key)."""
        return await self._list(
            QuarantineRecord, SHARED.LIST_QUARANTINE, SHARED.LIST_QUARANTINE_OF_STREAM, stream
        )

    async def is_quarantined(self, stream: str, item_key: str) -> bool:
        """True when the item is quarantined."""
        rows = await self._fetch(q.IS_QUARANTINED, stream, item_key)
        return bool(rows[0][0])

    async def clear_attempts(self, stream: str, item_key: str) -> None:
        """Reset an item's attempt count."""
        await self._execute(SHARED.CLEAR_ATTEMPTS, stream, item_key)

    # -- metadata -------------------------------------------------------------------------

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        """A stored metadata value, or None."""
        rows = await self._fetch(SHARED.GET_META, namespace, key)
        return load_payload(rows[0][0]) if rows else None

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace a metadata value."""
        await self._execute(SHARED.PUT_META, namespace, key, dump_payload(value), self._now())

    async def update_meta(self, namespace: str, key: str, fn: MetaUpdate) -> dict[str, Any] | None:
        """Read-modify-write one value under a row lock and a per-key advisory lock."""

        async def update(conn: Connection) -> dict[str, Any] | None:
            await conn.execute(q.META_LOCK, META_LOCK_CLASS, namespace, key)
            text = await conn.fetchval(q.GET_META_FOR_UPDATE, namespace, key)
            current = None if text is None else load_payload(text)
            new = fn(current)
            if new is None:
                return current
            new_text = dump_payload(new)  # TypeError/ValueError roll the transaction back
            await conn.execute(SHARED.PUT_META, namespace, key, new_text, self._now())
            return load_payload(new_text)

        return await self._transaction("cannot update metadata", update)

    # -- leases ---------------------------------------------------------------------------

    async def claim(self, resource: str, owner: str, ttl: timedelta) -> Lease | None:
        """Grant `resource` if free or expired (one upsert, the server's clock)."""
        seconds = _ttl_seconds(ttl)
        rows = await self._fetch(q.CLAIM_LEASE, resource, owner, seconds)
        return from_row(Lease, rows[0]) if rows else None

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend a still-valid lease by its ttl; None when it was lost."""
        rows = await self._fetch(q.RENEW_LEASE, lease.resource, lease.owner, lease.token)
        return from_row(Lease, rows[0]) if rows else None

    async def release(self, lease: Lease) -> None:
        """Give the resource up; ignored when the lease was already lost."""
        await self._execute(q.RELEASE_LEASE, lease.resource, lease.owner, lease.token)

    async def list_leases(self, prefix: str = "") -> list[Lease]:
        """Unexpired leases whose resource starts with `prefix`, by resource."""
        return [from_row(Lease, row) for row in await self._fetch(q.LIST_LEASES, prefix)]

    # -- plumbing -------------------------------------------------------------------------

    def _now(self) -> datetime:
        return as_utc(self._clock(), "clock()")

    def _check_writable(self) -> None:
        if self.read_only:
            raise StateError(f"state database {self.target.display} is open read-only")

    async def _run(self, action: str, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection (no explicit transaction)."""
        pool = self._pool
        if pool is None:
            raise StateError(f"state database {self.target.display} is not open")
        with translate_errors(self.target, action):
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                return await fn(conn)

    async def _transaction(self, action: str, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `fn` inside one transaction: all of it commits, or none of it."""
        self._check_writable()

        async def run(conn: Connection) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self._run(action, run)

    async def _list(
        self, cls: type[Row], everything: str, of_stream: str, stream: str | None
    ) -> list[Row]:
        """The rows `everything` selects, or `of_stream` for one stream, as `cls`."""
        if stream is None:
            rows = await self._fetch(everything)
        else:
            rows = await self._fetch(of_stream, stream)
        return [from_row(cls, row) for row in rows]

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run("query failed", lambda conn: conn.fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> None:
        self._check_writable()
        await self._run("write failed", lambda conn: conn.execute(sql, *args))

    async def _migrate(self) -> tuple[int, int]:
        """Apply pending migrations in one locked transaction; (version found, version now)."""
        known = latest_version(self._migrations)
        if self.read_only:
            found = await self.schema_version()
            if found != known:
                raise StateError(
                    f"state database {self.target.display} has schema version {found}, this "
                    f"onc-pipeline reads version {known}; start the daemon once to migrate it"
                )
            return found, known

        async def migrate(conn: Connection) -> int:
            await conn.execute(q.TAKE_LOCK, *MIGRATION_LOCK)
            await conn.execute(q.CREATE_SCHEMA_VERSION)
            found = int(await conn.fetchval(SHARED.GET_SCHEMA_VERSION))
            if found > known:
                raise StateError(
                    f"state database {self.target.display} has schema version {found}, newer "
                    f"than the {known} this version of onc-pipeline knows; upgrade onc-pipeline"
                )
            for migration in self._migrations[found:]:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    SHARED.RECORD_MIGRATION, migration.version, migration.name, self._now()
                )
                log.info(
                    "state_migration_applied",
                    url=self.target.display,
                    version=migration.version,
                    name=migration.name,
                )
            return found

        return await self._transaction("cannot migrate", migrate), known


async def _read_version(conn: Connection) -> int:
    if not await conn.fetchval(q.HAS_SCHEMA_VERSION):
        return 0
    return int(await conn.fetchval(SHARED.GET_SCHEMA_VERSION))


def _ttl_seconds(ttl: timedelta) -> float:
    seconds = ttl.total_seconds()
    if seconds <= 0:
        raise ValueError(f"lease ttl must be positive, got {ttl}")
    return seconds
