"""SqliteStateStore: the embedded default, one SQLite file under the state directory.

Why stdlib sqlite3 on one dedicated thread rather than aiosqlite: every public method runs
as ONE function on that thread, from BEGIN to COMMIT. A transaction therefore can't be
interleaved with another coroutine's statements, and cancelling the awaiting coroutine can't
leave a transaction half-open on the shared connection: a job not yet started is withdrawn,
one already running finishes (COMMIT or ROLLBACK) on the thread while the caller stops
waiting. Either way a commit applies whole or not at all. The thread also serialises
writers, so no asyncio lock is needed, and there is no extra dependency.

Safety: WAL with synchronous=FULL (a returned commit is on disk), foreign keys on, a busy
timeout, `PRAGMA quick_check` on open (a damaged file is reported, never reset), ordered
migrations recorded in `schema_version`, and an exclusive `flock` on `<db>.lock` so two
daemons can't share one file. The lock is advisory and local: keep the state directory on a
local filesystem, not NFS. `read_only=True` opens without the lock and without migrating,
so `onc-pipeline status` can read the state of a running daemon (WAL lets it read while the
daemon writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, Unpack

from pipeline.exceptions import StateError
from pipeline.state.base import Commit, advance_cursor, dump_payload, to_row
from pipeline.state.sql import sqlite_queries as q
from pipeline.state.sql.shared_queries import QMARK as SHARED
from pipeline.state.sql.sqlite_schema import APPLICATION_ID, MIGRATIONS, Migration
from pipeline.state.sql.store import SqlStateStore, StoreOptions
from pipeline.times import as_utc

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT = 10.0


def encode_time(value: datetime) -> str:
    """ISO-8601 UTC with microseconds and Z: fixed width, so text order is time order."""
    return as_utc(value, "datetime").replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def encode_time_or_none(value: datetime | None) -> str | None:
    """`encode_time` that lets None through."""
    return None if value is None else encode_time(value)


def decode_time(text: str) -> datetime:
    """Inverse of `encode_time`."""
    return datetime.fromisoformat(text).astimezone(UTC)


def decode_time_or_none(text: str | None) -> datetime | None:
    """`decode_time` that lets None through."""
    return None if text is None else decode_time(text)


class SqliteStateStore(SqlStateStore):
    """A StateStore in one SQLite file, driven from a dedicated thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(SHARED, MIGRATIONS, options)
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        # Only ever touched on the executor thread.
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def where(self) -> dict[str, str | None]:
        """The database file, for log lines."""
        return {"path": str(self.path)}

    # -- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._executor is not None:
            raise StateError(f"state database {self.path} is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-state")

    async def _migrate(self) -> int:
        # Lock, connect, check and migrate, all on the store's thread.
        return await self._submit(self._open_sync)

    async def close(self) -> None:
        """Close after every queued job has finished; safe to call twice."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # The executor runs jobs in order, so this lands after any job a cancelled caller
        # left behind: no transaction is cut short by closing. Shielded, so cancelling a
        # shutdown can't withdraw the close and leak the connection and the file lock.
        loop = asyncio.get_running_loop()
        try:
            await asyncio.shield(loop.run_in_executor(executor, self._close_sync))
        finally:
            executor.shutdown(wait=False)  # queued jobs still run; the thread then exits

    async def schema_version(self) -> int:
        """The version recorded in `schema_version`."""
        return await self._submit(self._read_version)

    # -- the exactly-once commit point ----------------------------------------------------

    async def commit_publish(self, commit: Commit) -> None:
        """Upsert entries, advance the cursor, clear in-flight keys, in one transaction."""
        stream = commit.stream
        rows = [to_row(entry, encode_time) for entry in commit.entries]
        keys = [(stream, key) for key in commit.clear_inflight]
        now = self._now()

        def apply(conn: sqlite3.Connection) -> None:
            conn.execute(SHARED.ENSURE_STREAM, (stream, now))
            for row in rows:
                # A row leads with path and stream (tests/unit/state/test_sqlite.py checks it).
                updated = conn.execute(q.UPDATE_MANIFEST_OF_STREAM, (*row[2:], *row[:2]))
                if updated.rowcount == 0:  # a new file, or one another stream published
                    conn.execute(SHARED.UPSERT_MANIFEST, row)
            # Read-compare-write is safe: BEGIN IMMEDIATE made us the only writer.
            stored_time, stored_file = conn.execute(q.GET_CURSOR, (stream,)).fetchone()
            new_time, new_file = advance_cursor(
                decode_time_or_none(stored_time),
                stored_file,
                commit.cursor_time,
                commit.cursor_file,
            )
            success = None
            if commit.cursor_time is not None:
                succeeded = commit.succeeded_at
                success = now if succeeded is None else encode_time(succeeded)
            params = (encode_time_or_none(new_time), new_file, success, now, stream)
            conn.execute(q.SET_CURSOR, params)
            conn.executemany(SHARED.DELETE_INFLIGHT, keys)

        await self._write(apply)

    # -- in-flight work -------------------------------------------------------------------

    async def put_inflight(self, stream: str, key: str, payload: dict[str, Any]) -> None:
        """Create or replace one in-flight record."""
        text = dump_payload(payload)
        now = self._now()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(SHARED.ENSURE_STREAM, (stream, now))
            conn.execute(SHARED.PUT_INFLIGHT, (stream, key, text, now))

        await self._write(put)

    # -- poison items ---------------------------------------------------------------------

    async def note_attempt(self, stream: str, item_key: str, reason: str) -> int:
        """Count one more failed attempt."""
        now = self._now()

        def note(conn: sqlite3.Connection) -> int:
            conn.execute(SHARED.ENSURE_STREAM, (stream, now))
            (count,) = conn.execute(SHARED.NOTE_ATTEMPT, (stream, item_key, reason, now)).fetchone()
            return int(count)

        return await self._write(note)

    async def quarantine(
        self, stream: str, item_key: str, reason: str, detail: str | None = None
    ) -> None:
        """Quarantine an item with its attempt count, then reset the count."""
        now = self._now()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(SHARED.ENSURE_STREAM, (stream, now))
            row = conn.execute(q.GET_ATTEMPTS, (stream, item_key)).fetchone()
            attempts = 0 if row is None else int(row[0])
            conn.execute(SHARED.QUARANTINE, (stream, item_key, reason, detail, attempts, now))
            conn.execute(SHARED.CLEAR_ATTEMPTS, (stream, item_key))

        await self._write(put)

    async def is_quarantined(self, stream: str, item_key: str) -> bool:
        """True when the item is quarantined."""
        return bool(await self._rows(q.IS_QUARANTINED, stream, item_key))

    # -- metadata -------------------------------------------------------------------------

    # -- plumbing: everything below runs on the executor thread unless it says otherwise --

    def _encode_time(self, value: datetime) -> str:
        return encode_time(value)

    def _decode_time(self, value: Any) -> datetime:
        return decode_time(value)

    async def _rows(self, sql: str, *params: Any) -> list[Any]:
        return await self._submit(lambda: self._connection().execute(sql, params).fetchall())

    async def _execute(self, sql: str, *params: Any) -> None:
        await self._write(lambda conn: conn.execute(sql, params))

    async def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._write(lambda conn: conn.executemany(sql, rows))

    async def _submit(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the store's thread (called on the event loop)."""
        if self._executor is None:
            raise StateError(f"state database {self.path} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._translated, fn))

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.read_only:
            raise StateError(f"state database {self.path} is open read-only")
        return await self._submit(lambda: self._transaction(fn))

    def _translated(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {_describe(exc)}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"state database {self.path} is not open")
        return self._conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        # IMMEDIATE takes the write lock up front, so SQLite's busy handler waits for it;
        # a deferred transaction upgrading later can fail at once with SQLITE_BUSY.
        conn.execute(q.BEGIN_WRITE)
        try:
            result = fn(conn)
            conn.execute(q.COMMIT)
        except BaseException:
            if conn.in_transaction:
                conn.execute(q.ROLLBACK)
            raise
        return result

    def _open_sync(self) -> int:
        """Lock, connect, check, migrate; returns the version found."""
        if self.read_only:
            return self._open_read_only_sync()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the state directory {self.path.parent}: {exc}"
            raise StateError(message) from exc
        self._lock_fd = _take_lock(self.lock_path, self.path)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit: we issue BEGIN/COMMIT ourselves
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        self._conn = conn
        try:
            self._check_file(conn)
            return self._migrate_sync()
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {_describe(exc)}") from exc

    def _open_read_only_sync(self) -> int:
        if not self.path.is_file():
            raise StateError(
                f"there is no state database at {self.path}: nothing was harvested with this "
                "state.url yet (`once` or `run` creates it)"
            )
        try:
            # A URI, so mode=ro applies; as_uri() percent-encodes any '?' or '#' in the path.
            uri = self.path.resolve().as_uri() + "?mode=ro"
            self._conn = conn = sqlite3.connect(
                uri, uri=True, timeout=self._busy_timeout, isolation_level=None
            )
            self._check_file(conn)
            found = self._read_version()
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {_describe(exc)}") from exc
        self._check_version(found, str(self.path))
        return found

    def _check_file(self, conn: sqlite3.Connection) -> None:
        # Identify and check the file before anything writes to it: switching to WAL rewrites
        # the header, which must never happen to a damaged or someone else's database.
        conn.execute(q.SET_FOREIGN_KEYS_ON)
        problems = [str(row[0]) for row in conn.execute(q.QUICK_CHECK).fetchall()]
        if problems != ["ok"]:
            raise StateError(
                f"state database {self.path} is corrupt (quick_check: {'; '.join(problems[:5])});"
                " it was left untouched: restore it from a backup or move it aside"
            )
        (app_id,) = conn.execute(q.GET_APPLICATION_ID).fetchone()
        tables = {row[0] for row in conn.execute(q.LIST_TABLES).fetchall()}
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise StateError(
                f"{self.path} is an SQLite database but not an onc-pipeline state store"
            )
        if not self.read_only and not tables:
            # A new database: small pages, set before the first table and before WAL. Every
            # commit appends each page it changed to the WAL and a checkpoint copies it back;
            # a near-real-time poll's commit changes two (the stream's row, the file's
            # manifest row), against a few kB of new data per poll (issue 21).
            conn.execute(q.SET_PAGE_SIZE)
        if not self.read_only:
            (mode,) = conn.execute(q.SET_JOURNAL_WAL).fetchone()
            if str(mode).lower() != "wal":
                message = f"state database {self.path}: WAL is not available (mode {mode})"
                raise StateError(message)
            conn.execute(q.SET_SYNCHRONOUS_FULL)

    def _read_version(self) -> int:
        conn = self._connection()
        if conn.execute(q.HAS_SCHEMA_VERSION).fetchone() is None:
            return 0
        (version,) = conn.execute(SHARED.GET_SCHEMA_VERSION).fetchone()
        return int(version)

    def _migrate_sync(self) -> int:
        found = self._read_version()
        self._check_version(found, str(self.path))
        for migration in self._migrations[found:]:

            def apply(conn: sqlite3.Connection, migration: Migration = migration) -> None:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    SHARED.RECORD_MIGRATION, (migration.version, migration.name, self._now())
                )

            self._transaction(apply)
            self._migrated(migration)
        return found

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            if conn is not None:
                conn.close()
        finally:
            if lock_fd is not None:
                # Closing the descriptor releases the flock; the file stays, because
                # unlinking a lock file races with the next process opening it.
                os.close(lock_fd)


def _take_lock(lock_path: Path, db_path: Path) -> int:
    """Hold an exclusive flock on `lock_path` and write our pid in it; StateError if taken."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise StateError(
            f"state database {db_path} is in use by {who} (lock {lock_path}); "
            "two pipelines cannot share one SQLite state file"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StateError(f"cannot lock state database {db_path}: {exc}") from exc
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
    return ""


def _describe(exc: sqlite3.Error) -> str:
    """The driver's message plus a plain-words hint for the errors operators meet."""
    name = getattr(exc, "sqlite_errorname", "")
    hints = {
        "SQLITE_NOTADB": "not an SQLite database (corrupt or a different file)",
        "SQLITE_CORRUPT": "the database file is corrupt",
        "SQLITE_BUSY": "locked by another connection beyond the busy timeout",
        "SQLITE_READONLY": "the database file is read-only",
        "SQLITE_FULL": "the disk is full",
    }
    hint = hints.get(name)
    return f"{exc} ({hint})" if hint else str(exc)
