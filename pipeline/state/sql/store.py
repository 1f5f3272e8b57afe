"""SqlStateStore: what the SQLite and PostgreSQL stores share above their drivers.

Both run the same statements (`shared_queries`, each in its placeholder style), keep the same
ordered migrations, and open the same way: connect, migrate (or, read-only, check that the
schema is the one this version reads), log one line. That is written here once; each backend
supplies the driver: how rows are fetched, how one statement is written, how a time is stored,
and the transactions that take more than one statement (commit, in-flight work, attempts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict, TypeVar

import structlog

from pipeline.exceptions import StateError
from pipeline.lifecycle import AsyncResource
from pipeline.state.base import (
    ManifestEntry,
    QuarantineRecord,
    StreamRecord,
    dataset_range,
    dump_payload,
    from_row,
    load_payload,
)
from pipeline.state.sql.shared_queries import SharedQueries
from pipeline.state.sql.sqlite_schema import Migration, check_migrations, latest_version
from pipeline.times import Clock, utc_now

log = structlog.get_logger(__name__)

Row = TypeVar("Row", StreamRecord, ManifestEntry, QuarantineRecord)


class StoreOptions(TypedDict, total=False):
    """What either SQL store takes besides where its database is: `clock` stamps the rows,
    `migrations` stands in for the backend's own list (tests), and `read_only` opens without
    taking the database for writing and without migrating (`status` beside a running daemon)."""

    clock: Clock
    migrations: tuple[Migration, ...]
    read_only: bool


class SqlStateStore(AsyncResource):
    """The StateStore methods both SQL backends implement alike, over a few driver hooks."""

    def __init__(
        self, sql: SharedQueries, migrations: tuple[Migration, ...], options: StoreOptions
    ) -> None:
        self._migrations = options.get("migrations", migrations)
        check_migrations(self._migrations)
        self.read_only = options.get("read_only", False)
        self._sql = sql
        self._clock = options.get("clock", utc_now)

    # -- the driver hooks -----------------------------------------------------------------

    def where(self) -> dict[str, str | None]:
        """The log fields that name the database (never a password)."""
        raise NotImplementedError

    async def _connect(self) -> None:
        """Take what the store holds (a thread, a pool); StateError when already open."""
        raise NotImplementedError

    async def _migrate(self) -> int:
        """Bring the schema to the latest version (or check it, read-only); the version found."""
        raise NotImplementedError

    async def _rows(self, sql: str, *params: Any) -> Sequence[Any]:
        """The rows one statement selects."""
        raise NotImplementedError

    async def _execute(self, sql: str, *params: Any) -> None:
        """Run one writing statement in a transaction of its own."""
        raise NotImplementedError

    async def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one writing statement once per row of parameters, all in one transaction."""
        raise NotImplementedError

    def _encode_time(self, value: datetime) -> Any:
        """A datetime as the driver stores it."""
        raise NotImplementedError

    def _decode_time(self, value: Any) -> datetime:
        """Inverse of `_encode_time`."""
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then apply pending migrations (or, read-only, check the version)."""
        await self._connect()
        try:
            found = await self._migrate()
        except BaseException:
            await self.close()
            raise
        version = latest_version(self._migrations)
        # Worth an operator's attention only when the schema moved; every command opens it.
        log.log(
            logging.INFO if found != version else logging.DEBUG,
            "state_store_opened",
            **self.where(),
            schema_version=version,
            **({"migrated_from": found} if found != version else {}),
        )

    def _check_version(self, found: int, name: str) -> None:
        """Refuse a schema this version can't use: newer than it knows, or (read-only, when it
        may not migrate) any other than the latest."""
        known = latest_version(self._migrations)
        if found > known:
            raise StateError(
                f"state database {name} has schema version {found}, newer than the {known} "
                "this version of onc-pipeline knows; upgrade onc-pipeline"
            )
        if self.read_only and found != known:
            raise StateError(
                f"state database {name} has schema version {found}, this onc-pipeline reads "
                f"version {known}; start the daemon once to migrate it, or upgrade"
            )

    def _migrated(self, migration: Migration) -> None:
        log.info(
            "state_migration_applied",
            **self.where(),
            version=migration.version,
            name=migration.name,
        )

    # -- streams --------------------------------------------------------------------------

    async def get_stream(self, name: str) -> StreamRecord | None:
        """The stream's record, or None."""
        return await self._one(StreamRecord, self._sql.GET_STREAM, name)

    async def list_streams(self) -> list[StreamRecord]:
        """Every known stream, by name."""
        return await self._all(StreamRecord, self._sql.LIST_STREAMS)

    async def record_success(self, name: str, at: datetime) -> None:
        """Note a successful run."""
        await self._execute(self._sql.RECORD_SUCCESS, name, self._encode_time(at), self._now())

    async def record_failure(self, name: str, at: datetime, error: str) -> None:
        """Note a failed run."""
        params = (name, error, self._encode_time(at), self._now())
        await self._execute(self._sql.RECORD_FAILURE, *params)

    # -- the manifest ---------------------------------------------------------------------

    async def get_manifest(self, path: str) -> ManifestEntry | None:
        """The entry for `path`, or None."""
        return await self._one(ManifestEntry, self._sql.GET_MANIFEST, path)

    async def list_manifest(self, stream: str | None = None) -> list[ManifestEntry]:
        """Entries by path, optionally of one stream."""
        sql = self._sql
        return await self._list(
            ManifestEntry, sql.LIST_MANIFEST, sql.LIST_MANIFEST_OF_STREAM, stream
        )

    async def list_dataset_manifest(self, dataset_id: str, after: str = "") -> list[ManifestEntry]:
        """The dataset's entries in its folder whose paths sort after `after`, by path."""
        low, high = dataset_range(dataset_id, after)
        sql = self._sql.LIST_MANIFEST_OF_DATASET
        return await self._all(ManifestEntry, sql, low, high, dataset_id)

    # -- in-flight work -------------------------------------------------------------------

    async def get_inflight(self, stream: str) -> dict[str, dict[str, Any]]:
        """Every in-flight record of a stream, by key."""
        rows = await self._rows(self._sql.GET_INFLIGHT, stream)
        return {row[0]: load_payload(row[1]) for row in rows}

    async def delete_inflight(self, stream: str, key: str) -> None:
        """Delete one in-flight record if present."""
        await self._execute(self._sql.DELETE_INFLIGHT, stream, key)

    # -- poison items ---------------------------------------------------------------------

    async def list_quarantine(self, stream: str | None = None) -> list[QuarantineRecord]:
        """Quarantined items by (stream, item_key)."""
        sql = self._sql
        return await self._list(
            QuarantineRecord, sql.LIST_QUARANTINE, sql.LIST_QUARANTINE_OF_STREAM, stream
        )

    async def clear_attempts(self, stream: str, *item_keys: str) -> None:
        """Reset the items' attempt counts, in one transaction (a gathered day's windows)."""
        if item_keys:
            await self._execute_many(self._sql.CLEAR_ATTEMPTS, [(stream, k) for k in item_keys])

    async def release_quarantine(self, stream: str, item_key: str) -> bool:
        """Remove an item's quarantine record and attempt count; see StateStore."""
        held = any(r.item_key == item_key for r in await self.list_quarantine(stream))
        await self._execute(self._sql.CLEAR_ATTEMPTS, stream, item_key)
        await self._execute(self._sql.RELEASE_QUARANTINE, stream, item_key)
        return held

    # -- metadata -------------------------------------------------------------------------

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        """A stored metadata value, or None."""
        rows = await self._rows(self._sql.GET_META, namespace, key)
        return load_payload(rows[0][0]) if rows else None

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace a metadata value."""
        params = (namespace, key, dump_payload(value), self._now())
        await self._execute(self._sql.PUT_META, *params)

    # -- plumbing -------------------------------------------------------------------------

    def _now(self) -> Any:
        return self._encode_time(self._clock())

    async def _all(self, cls: type[Row], sql: str, *params: Any) -> list[Row]:
        """The rows `sql` selects, as `cls`."""
        return [from_row(cls, row, self._decode_time) for row in await self._rows(sql, *params)]

    async def _one(self, cls: type[Row], sql: str, *params: Any) -> Row | None:
        rows = await self._all(cls, sql, *params)
        return rows[0] if rows else None

    async def _list(
        self, cls: type[Row], everything: str, of_stream: str, stream: str | None
    ) -> list[Row]:
        """The rows `everything` selects, or `of_stream` for one stream, as `cls`."""
        if stream is None:
            return await self._all(cls, everything)
        return await self._all(cls, of_stream, stream)
