"""Every statement SqliteStateStore runs after the schema exists, one named constant each."""

from __future__ import annotations

# -- housekeeping -------------------------------------------------------------------------

SET_JOURNAL_WAL = "PRAGMA journal_mode = WAL"
# FULL: in WAL mode the WAL is fsynced at every commit, so commit_publish is durable on return.
SET_SYNCHRONOUS_FULL = "PRAGMA synchronous = FULL"
SET_FOREIGN_KEYS_ON = "PRAGMA foreign_keys = ON"
QUICK_CHECK = "PRAGMA quick_check"
GET_APPLICATION_ID = "PRAGMA application_id"
LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
HAS_SCHEMA_VERSION = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
GET_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_version"
RECORD_MIGRATION = "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)"
BEGIN_WRITE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

# -- streams ------------------------------------------------------------------------------

STREAM_COLUMNS = (
    "name, cursor_time, cursor_file, last_success, last_error, last_error_at, updated_at"
)
GET_STREAM = "SELECT " + STREAM_COLUMNS + " FROM streams WHERE name = ?"
LIST_STREAMS = "SELECT " + STREAM_COLUMNS + " FROM streams ORDER BY name"
ENSURE_STREAM = "INSERT INTO streams (name, updated_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
RECORD_SUCCESS = """
    INSERT INTO streams (name, last_success, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET
        last_success = excluded.last_success,
        updated_at = excluded.updated_at
"""
RECORD_FAILURE = """
    INSERT INTO streams (name, last_error, last_error_at, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET
        last_error = excluded.last_error,
        last_error_at = excluded.last_error_at,
        updated_at = excluded.updated_at
"""
# In-flight, attempt and quarantine rows go with it through ON DELETE CASCADE.
GET_CURSOR = "SELECT cursor_time, cursor_file FROM streams WHERE name = ?"
SET_CURSOR = """
    UPDATE streams SET cursor_time = ?, cursor_file = ?, updated_at = ? WHERE name = ?
"""

# -- manifest -----------------------------------------------------------------------------

MANIFEST_COLUMNS = (
    "path, stream, dataset_id, size, sha256, time_start, time_end, records, source, published_at"
)
UPSERT_MANIFEST = """
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
GET_MANIFEST = "SELECT " + MANIFEST_COLUMNS + " FROM manifest WHERE path = ?"
LIST_MANIFEST = "SELECT " + MANIFEST_COLUMNS + " FROM manifest ORDER BY path"
LIST_MANIFEST_OF_STREAM = (
    "SELECT " + MANIFEST_COLUMNS + " FROM manifest WHERE stream = ? ORDER BY path"
)

# -- in-flight work -----------------------------------------------------------------------

PUT_INFLIGHT = """
    INSERT INTO inflight (stream, key, payload, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (stream, key) DO UPDATE SET
        payload = excluded.payload,
        updated_at = excluded.updated_at
"""
GET_INFLIGHT = "SELECT key, payload FROM inflight WHERE stream = ? ORDER BY key"
DELETE_INFLIGHT = "DELETE FROM inflight WHERE stream = ? AND key = ?"

# -- poison items -------------------------------------------------------------------------

NOTE_ATTEMPT = """
    INSERT INTO attempts (stream, item_key, reason, attempts, last_at) VALUES (?, ?, ?, 1, ?)
    ON CONFLICT (stream, item_key) DO UPDATE SET
        reason = excluded.reason,
        attempts = attempts.attempts + 1,
        last_at = excluded.last_at
    RETURNING attempts
"""
GET_ATTEMPTS = "SELECT attempts FROM attempts WHERE stream = ? AND item_key = ?"
CLEAR_ATTEMPTS = "DELETE FROM attempts WHERE stream = ? AND item_key = ?"
QUARANTINE = """
    INSERT INTO quarantine (stream, item_key, reason, detail, attempts, at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (stream, item_key) DO UPDATE SET
        reason = excluded.reason,
        detail = excluded.detail,
        attempts = excluded.attempts,
        at = excluded.at
"""
QUARANTINE_COLUMNS = "stream, item_key, reason, detail, attempts, at"
LIST_QUARANTINE = "SELECT " + QUARANTINE_COLUMNS + " FROM quarantine ORDER BY stream, item_key"
LIST_QUARANTINE_OF_STREAM = (
    "SELECT " + QUARANTINE_COLUMNS + " FROM quarantine WHERE stream = ? ORDER BY item_key"
)
IS_QUARANTINED = "SELECT 1 FROM quarantine WHERE stream = ? AND item_key = ?"

# -- metadata -----------------------------------------------------------------------------

GET_META = "SELECT value FROM meta WHERE namespace = ? AND key = ?"
PUT_META = """
    INSERT INTO meta (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (namespace, key) DO UPDATE SET
        value = excluded.value,
        updated_at = excluded.updated_at
"""
