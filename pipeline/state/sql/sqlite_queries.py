"""The statements only SqliteStateStore runs, one named constant each (the ones both backends
run are in shared_queries.py)."""

from __future__ import annotations

# -- housekeeping -------------------------------------------------------------------------

SET_JOURNAL_WAL = "PRAGMA journal_mode = WAL"
SET_PAGE_SIZE = "PRAGMA page_size = 1024"
# FULL: in WAL mode the WAL is fsynced at every commit, so commit_publish is durable on return.
SET_SYNCHRONOUS_FULL = "PRAGMA synchronous = FULL"
SET_FOREIGN_KEYS_ON = "PRAGMA foreign_keys = ON"
QUICK_CHECK = "PRAGMA quick_check"
GET_APPLICATION_ID = "PRAGMA application_id"
LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
HAS_SCHEMA_VERSION = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
BEGIN_WRITE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

# -- streams ------------------------------------------------------------------------------

GET_CURSOR = "SELECT cursor_time, cursor_file FROM streams WHERE name = ?"
# last_success: coalesce(the commit's time when it carries a cursor time, the stored one).
SET_CURSOR = """
    UPDATE streams SET
        cursor_time = ?, cursor_file = ?, last_success = coalesce(?, last_success), updated_at = ?
    WHERE name = ?
"""

# -- the manifest -------------------------------------------------------------------------

# A file the stream already published, updated without naming `path` or `stream` in the SET
# list: SQLite rewrites an index entry (and so the index page) whenever the UPDATE assigns one
# of its columns, equal or not, and `manifest_by_stream` is on (stream, path). An upsert
# assigns every column, so each near-real-time commit wrote that index page too (issue 21).
# The parameters are a manifest row (MANIFEST_FIELDS order) without its first two fields,
# then path and stream.
UPDATE_MANIFEST_OF_STREAM = """
    UPDATE manifest SET
        dataset_id = ?, size = ?, sha256 = ?, time_start = ?, time_end = ?, records = ?,
        source = ?, published_at = ?
    WHERE path = ? AND stream = ?
"""

# -- poison items -------------------------------------------------------------------------

GET_ATTEMPTS = "SELECT attempts FROM attempts WHERE stream = ? AND item_key = ?"
IS_QUARANTINED = "SELECT 1 FROM quarantine WHERE stream = ? AND item_key = ?"
