"""The SQLite state schema as an ordered list of migrations; append, never edit a shipped one.

Each migration runs in its own transaction together with the row that records it in
`schema_version`, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

from dataclasses import dataclass

# 'ONCP' in the file header: lets `open` tell our database from someone else's SQLite file.
APPLICATION_ID = 0x4F4E4350


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: `statements` run in order, in one transaction, taking us to `version`."""

    version: int
    name: str
    statements: tuple[str, ...]


# Datetimes are ISO-8601 UTC text with microseconds and a trailing Z
# ("2026-11-24T00:00:00.000000Z"): fixed width, so text order is time order.
V1_INITIAL = Migration(
    version=1,
    name="initial",
    statements=(
        """
        CREATE TABLE schema_version (
            version     INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            applied_at  TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE streams (
            name           TEXT PRIMARY KEY,
            cursor_time    TEXT,
            cursor_file    TEXT,
            last_success   TEXT,
            last_error     TEXT,
            last_error_at  TEXT,
            updated_at     TEXT NOT NULL
        )
        """,
        # No foreign key to streams: published files outlive a stream removed from config.
        """
        CREATE TABLE manifest (
            path          TEXT PRIMARY KEY,
            stream        TEXT NOT NULL,
            dataset_id    TEXT NOT NULL,
            size          INTEGER NOT NULL CHECK (size >= 0),
            sha256        TEXT NOT NULL,
            time_start    TEXT,
            time_end      TEXT,
            records       INTEGER CHECK (records IS NULL OR records >= 0),
            source        TEXT,
            published_at  TEXT NOT NULL
        )
        """,
        "CREATE INDEX manifest_by_stream ON manifest (stream, path)",
        """
        CREATE TABLE inflight (
            stream      TEXT NOT NULL REFERENCES streams (name) ON DELETE CASCADE,
            key         TEXT NOT NULL,
            payload     TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (stream, key)
        )
        """,
        """
        CREATE TABLE attempts (
            stream    TEXT NOT NULL REFERENCES streams (name) ON DELETE CASCADE,
            item_key  TEXT NOT NULL,
            reason    TEXT NOT NULL,
            attempts  INTEGER NOT NULL CHECK (attempts > 0),
            last_at   TEXT NOT NULL,
            PRIMARY KEY (stream, item_key)
        )
        """,
        """
        CREATE TABLE quarantine (
            stream    TEXT NOT NULL REFERENCES streams (name) ON DELETE CASCADE,
            item_key  TEXT NOT NULL,
            reason    TEXT NOT NULL,
            detail    TEXT,
            attempts  INTEGER NOT NULL CHECK (attempts >= 0),
            at        TEXT NOT NULL,
            PRIMARY KEY (stream, item_key)
        )
        """,
        """
        CREATE TABLE meta (
            namespace   TEXT NOT NULL,
            key         TEXT NOT NULL,
            value       TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (namespace, key)
        )
        """,
        "PRAGMA application_id = 1330529104",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (V1_INITIAL,)


def latest_version(migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """The version a fully migrated database reports."""
    return migrations[-1].version if migrations else 0


def check_migrations(migrations: tuple[Migration, ...]) -> None:
    """Refuse a migration list that is not numbered 1, 2, 3, ... in order."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}, expected {expected}"
            )
