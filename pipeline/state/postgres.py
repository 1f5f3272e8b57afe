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

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack

import asyncpg
import asyncpg.pool

from pipeline.exceptions import StateError
from pipeline.state.base import (
    Commit,
    Lease,
    MetaUpdate,
    dump_payload,
    from_row,
    lease_lost,
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
)
from pipeline.state.sql.shared_queries import NUMBERED as SHARED
from pipeline.state.sql.store import SqlStateStore, StoreOptions
from pipeline.times import as_utc

T = TypeVar("T")


class PostgresStateStore(SqlStateStore):
    """A StateStore (and CoordinationStore) in one PostgreSQL schema, shared by instances."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(SHARED, MIGRATIONS, options)
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.target = parse_postgres_url(url, schema=schema)
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: Pool | None = None

    def __repr__(self) -> str:
        return f"PostgresStateStore({self.target.display!r}, schema={self.target.schema!r})"

    def where(self) -> dict[str, str | None]:
        """The database without its password, and the schema, for log lines."""
        return {"url": self.target.display, "schema": self.target.schema}

    # -- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._pool is not None:
            raise StateError(f"state database {self.target.display} is already open")
        self._pool = await create_pool(
            self.target,
            max_size=self._pool_size,
            connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            read_only=self.read_only,
        )

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool, self._connect_timeout)

    async def schema_version(self) -> int:
        """The version recorded in `schema_version`."""
        return await self._run("cannot read the schema version", _read_version)

    # -- the exactly-once commit point ----------------------------------------------------

    async def commit_publish(self, commit: Commit) -> None:
        """Upsert entries, advance the cursor, clear in-flight keys, in one transaction."""
        await self._transaction("cannot commit", self._commit_steps(commit))

    async def commit_publish_fenced(self, commit: Commit, lease: Lease) -> None:
        """`commit_publish` in the same transaction as a check that `lease` is still held."""
        apply = self._commit_steps(commit)

        async def fenced(conn: Connection) -> None:
            row = await conn.fetchrow(q.CHECK_LEASE, lease.resource)
            if row is None or (row[0], row[1]) != (lease.owner, lease.token) or not row[2]:
                raise lease_lost(lease)
            await apply(conn)

        await self._transaction("cannot commit", fenced)

    def _commit_steps(self, commit: Commit) -> Callable[[Connection], Awaitable[None]]:
        stream = commit.stream
        rows = [to_row(entry) for entry in commit.entries]
        keys = [(stream, key) for key in commit.clear_inflight]
        now = self._now()

        async def apply(conn: Connection) -> None:
            await conn.execute(SHARED.ENSURE_STREAM, stream, now)
            if rows:
                await conn.executemany(SHARED.UPSERT_MANIFEST, rows)
            await conn.execute(
                q.ADVANCE_CURSOR,
                stream,
                commit.cursor_time,
                commit.cursor_file,
                now,
                commit.succeeded_at,
            )
            if keys:
                await conn.executemany(SHARED.DELETE_INFLIGHT, keys)

        return apply

    # -- in-flight work -------------------------------------------------------------------

    async def put_inflight(self, stream: str, key: str, payload: dict[str, Any]) -> None:
        """Create or replace one in-flight record."""
        text = dump_payload(payload)
        now = self._now()

        async def put(conn: Connection) -> None:
            await conn.execute(SHARED.ENSURE_STREAM, stream, now)
            await conn.execute(SHARED.PUT_INFLIGHT, stream, key, text, now)

        await self._transaction("cannot store in-flight work", put)

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

    async def is_quarantined(self, stream: str, item_key: str) -> bool:
        """True when the item is quarantined."""
        rows = await self._rows(q.IS_QUARANTINED, stream, item_key)
        return bool(rows[0][0])

    # -- metadata -------------------------------------------------------------------------

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
        rows = await self._rows(q.CLAIM_LEASE, resource, owner, seconds)
        return from_row(Lease, rows[0]) if rows else None

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend a still-valid lease by its ttl; None when it was lost."""
        rows = await self._rows(q.RENEW_LEASE, lease.resource, lease.owner, lease.token)
        return from_row(Lease, rows[0]) if rows else None

    async def release(self, lease: Lease) -> None:
        """Give the resource up; ignored when the lease was already lost."""
        await self._execute(q.RELEASE_LEASE, lease.resource, lease.owner, lease.token)

    async def list_leases(self, prefix: str = "") -> list[Lease]:
        """Unexpired leases whose resource starts with `prefix`, by resource."""
        return [from_row(Lease, row) for row in await self._rows(q.LIST_LEASES, prefix)]

    # -- plumbing -------------------------------------------------------------------------

    def _encode_time(self, value: datetime) -> datetime:
        return as_utc(value, "datetime")

    def _decode_time(self, value: Any) -> datetime:
        # asyncpg hands timestamptz back as an aware datetime already.
        return value  # type: ignore[no-any-return]

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

    async def _rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run("query failed", lambda conn: conn.fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> None:
        self._check_writable()
        await self._run("write failed", lambda conn: conn.execute(sql, *args))

    async def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._transaction("write failed", lambda conn: conn.executemany(sql, rows))

    async def _migrate(self) -> int:
        """Apply pending migrations in one locked transaction; the version found."""
        if self.read_only:
            found = await self.schema_version()
            self._check_version(found, self.target.display)
            return found

        async def migrate(conn: Connection) -> int:
            await conn.execute(q.TAKE_LOCK, *MIGRATION_LOCK)
            await conn.execute(q.CREATE_SCHEMA_VERSION)
            found = int(await conn.fetchval(SHARED.GET_SCHEMA_VERSION))
            self._check_version(found, self.target.display)
            for migration in self._migrations[found:]:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    SHARED.RECORD_MIGRATION, migration.version, migration.name, self._now()
                )
                self._migrated(migration)
            return found

        return await self._transaction("cannot migrate", migrate)


async def _read_version(conn: Connection) -> int:
    if not await conn.fetchval(q.HAS_SCHEMA_VERSION):
        return 0
    return int(await conn.fetchval(SHARED.GET_SCHEMA_VERSION))


def _ttl_seconds(ttl: timedelta) -> float:
    seconds = ttl.total_seconds()
    if seconds <= 0:
        raise ValueError(f"lease ttl must be positive, got {ttl}")
    return seconds
