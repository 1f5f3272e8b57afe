"""The statements both state backends run, written once in the qmark (`?`) style.

SQLite takes them as they are (`QMARK`); PostgreSQL's driver wants numbered placeholders
(`$1, $2, ...`), so `NUMBERED` is the same statements with each `?` numbered in order. What
only one backend runs (PRAGMAs, the forward-only cursor, leases) stays in its own module.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, fields, replace

from pipeline.state.base import ManifestEntry, QuarantineRecord, StreamRecord

# The row types' fields are the tables' columns, in order (`from_row`/`to_row` rely on it).
STREAM_FIELDS = tuple(f.name for f in fields(StreamRecord))
MANIFEST_FIELDS = tuple(f.name for f in fields(ManifestEntry))
QUARANTINE_FIELDS = tuple(f.name for f in fields(QuarantineRecord))
STREAM_COLUMNS = ", ".join(STREAM_FIELDS)
MANIFEST_COLUMNS = ", ".join(MANIFEST_FIELDS)
QUARANTINE_COLUMNS = ", ".join(QUARANTINE_FIELDS)


def upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """INSERT one row of `columns`; when a row with the same `key` exists, every other column
    takes the new value. Built from the names once, at import, so a column list is never
    written out (and kept in step) twice; no value ever enters the text.

    `excluded` names the proposed row in both dialects: SQLite took PostgreSQL's upsert syntax
    (https://sqlite.org/lang_upsert.html).
    """
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


@dataclass(frozen=True, slots=True)
class SharedQueries:
    """One field a statement; the defaults are the qmark text."""

    GET_SCHEMA_VERSION: str = "SELECT coalesce(max(version), 0) FROM schema_version"
    RECORD_MIGRATION: str = (
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)"
    )
    GET_STREAM: str = "SELECT " + STREAM_COLUMNS + " FROM streams WHERE name = ?"
    LIST_STREAMS: str = "SELECT " + STREAM_COLUMNS + " FROM streams ORDER BY name"
    ENSURE_STREAM: str = (
        "INSERT INTO streams (name, updated_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
    )
    RECORD_SUCCESS: str = upsert("streams", ("name", "last_success", "updated_at"), key=("name",))
    RECORD_FAILURE: str = upsert(
        "streams", ("name", "last_error", "last_error_at", "updated_at"), key=("name",)
    )
    UPSERT_MANIFEST: str = upsert("manifest", MANIFEST_FIELDS, key=("path",))
    GET_MANIFEST: str = "SELECT " + MANIFEST_COLUMNS + " FROM manifest WHERE path = ?"
    LIST_MANIFEST: str = "SELECT " + MANIFEST_COLUMNS + " FROM manifest ORDER BY path"
    LIST_MANIFEST_OF_STREAM: str = (
        "SELECT " + MANIFEST_COLUMNS + " FROM manifest WHERE stream = ? ORDER BY path"
    )
    # A range of the primary key (the dataset's folder, after a path), then its dataset.
    LIST_MANIFEST_OF_DATASET: str = (
        "SELECT "
        + MANIFEST_COLUMNS
        + " FROM manifest WHERE path > ? AND path < ? AND dataset_id = ? ORDER BY path"
    )
    PUT_INFLIGHT: str = upsert(
        "inflight", ("stream", "key", "payload", "updated_at"), key=("stream", "key")
    )
    GET_INFLIGHT: str = "SELECT key, payload FROM inflight WHERE stream = ? ORDER BY key"
    DELETE_INFLIGHT: str = "DELETE FROM inflight WHERE stream = ? AND key = ?"
    NOTE_ATTEMPT: str = """
        INSERT INTO attempts (stream, item_key, reason, attempts, last_at) VALUES (?, ?, ?, 1, ?)
        ON CONFLICT (stream, item_key) DO UPDATE SET
            reason = excluded.reason,
            attempts = attempts.attempts + 1,
            last_at = excluded.last_at
        RETURNING attempts
    """
    CLEAR_ATTEMPTS: str = "DELETE FROM attempts WHERE stream = ? AND item_key = ?"
    QUARANTINE: str = upsert("quarantine", QUARANTINE_FIELDS, key=("stream", "item_key"))
    LIST_QUARANTINE: str = (
        "SELECT " + QUARANTINE_COLUMNS + " FROM quarantine ORDER BY stream, item_key"
    )
    LIST_QUARANTINE_OF_STREAM: str = (
        "SELECT " + QUARANTINE_COLUMNS + " FROM quarantine WHERE stream = ? ORDER BY item_key"
    )
    RELEASE_QUARANTINE: str = "DELETE FROM quarantine WHERE stream = ? AND item_key = ?"
    GET_META: str = "SELECT value FROM meta WHERE namespace = ? AND key = ?"
    PUT_META: str = upsert(
        "meta", ("namespace", "key", "value", "updated_at"), key=("namespace", "key")
    )

    def numbered(self) -> SharedQueries:
        """The same statements with PostgreSQL's `$n` placeholders."""
        return replace(self, **{f.name: _numbered(getattr(self, f.name)) for f in fields(self)})


def _numbered(sql: str) -> str:
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


QMARK = SharedQueries()
NUMBERED = QMARK.numbered()
