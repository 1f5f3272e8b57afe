"""The statements both state backends run, written once in the qmark (`?`) style.

SQLite takes them as they are (`QMARK`); PostgreSQL's driver wants numbered placeholders
(`$1, $2, ...`), so `NUMBERED` is the same statements with each `?` numbered in order. What
only one backend runs (PRAGMAs, the forward-only cursor, leases) stays in its own module.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, fields, replace

STREAM_COLUMNS = (
    "name, cursor_time, cursor_file, last_success, last_error, last_error_at, updated_at"
)
MANIFEST_COLUMNS = (
    "path, stream, dataset_id, size, sha256, time_start, time_end, records, source, published_at"
)
QUARANTINE_COLUMNS = "stream, item_key, reason, detail, attempts, at"


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
    RECORD_SUCCESS: str = """
        INSERT INTO streams (name, last_success, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET
            last_success = excluded.last_success,
            updated_at = excluded.updated_at
    """
    RECORD_FAILURE: str = """
        INSERT INTO streams (name, last_error, last_error_at, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET
            last_error = excluded.last_error,
            last_error_at = excluded.last_error_at,
            updated_at = excluded.updated_at
    """
    UPSERT_MANIFEST: str = """
        INSERT INTO manifest (
            path, stream, dataset_id, size, sha256, time_start, time_end, records, source,
            published_at
        ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (path) DO UPDATE SET
            stream = excluded.stream,
            dataset_id = excluded.dataset_id,
            size = excluded.size,
            sha256 = excluded.sha256,
            time_start = excluded.time_start,
            time_end = excluded.time_end,
            records = excluded.records,
            source = excluded.source,
            published_at = excluded.published_at
    """
    GET_MANIFEST: str = "SELECT " + MANIFEST_COLUMNS + " FROM manifest WHERE path = ?"
    LIST_MANIFEST: str = "SELECT " + MANIFEST_COLUMNS + " FROM manifest ORDER BY path"
    LIST_MANIFEST_OF_STREAM: str = (
        "SELECT " + MANIFEST_COLUMNS + " FROM manifest WHERE stream = ? ORDER BY path"
    )
    PUT_INFLIGHT: str = """
        INSERT INTO inflight (stream, key, payload, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (stream, key) DO UPDATE SET
            payload = excluded.payload,
            updated_at = excluded.updated_at
    """
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
    QUARANTINE: str = """
        INSERT INTO quarantine (stream, item_key, reason, detail, attempts, at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (stream, item_key) DO UPDATE SET
            reason = excluded.reason,
            detail = excluded.detail,
            attempts = excluded.attempts,
            at = excluded.at
    """
    LIST_QUARANTINE: str = (
        "SELECT " + QUARANTINE_COLUMNS + " FROM quarantine ORDER BY stream, item_key"
    )
    LIST_QUARANTINE_OF_STREAM: str = (
        "SELECT " + QUARANTINE_COLUMNS + " FROM quarantine WHERE stream = ? ORDER BY item_key"
    )
    GET_META: str = "SELECT value FROM meta WHERE namespace = ? AND key = ?"
    PUT_META: str = """
        INSERT INTO meta (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (namespace, key) DO UPDATE SET
            value = excluded.value,
            updated_at = excluded.updated_at
    """

    def numbered(self) -> SharedQueries:
        """The same statements with PostgreSQL's `$n` placeholders."""
        return replace(self, **{f.name: _numbered(getattr(self, f.name)) for f in fields(self)})


def _numbered(sql: str) -> str:
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


QMARK = SharedQueries()
NUMBERED = QMARK.numbered()
