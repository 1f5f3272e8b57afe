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
SET_CURSOR = """
    UPDATE streams SET cursor_time = ?, cursor_file = ?, updated_at = ? WHERE name = ?
"""

# -- poison items -------------------------------------------------------------------------

GET_ATTEMPTS = "SELECT attempts FROM attempts WHERE stream = ? AND item_key = ?"
IS_QUARANTINED = "SELECT 1 FROM quarantine WHERE stream = ? AND item_key = ?"
