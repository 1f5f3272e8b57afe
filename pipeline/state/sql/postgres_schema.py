"""The PostgreSQL state schema as ordered migrations; append, never edit a shipped one.

Pending migrations run in one transaction under an advisory lock, so instances starting
together apply each step exactly once and a failed step leaves the previous version intact
(PostgreSQL DDL is transactional). Text keys use the "C" collation: the contract orders by
code point (`list_streams` puts "Mid" before "alpha"), whatever the database's locale.
"""

from __future__ import annotations

# The Migration record and its numbering check are backend-neutral; SQLite's module owns them.
from pipeline.state.sql.sqlite_schema import Migration, check_migrations, latest_version

__all__ = ["MIGRATIONS", "MIGRATION_LOCK", "Migration", "check_migrations", "latest_version"]

# pg_advisory_xact_lock(classid, objid) keys: 'ONCP' and a small number per purpose, so our
# locks never collide with another application's on a shared database.
LOCK_CLASS = 0x4F4E4350
MIGRATION_LOCK = (LOCK_CLASS, 1)
META_LOCK_CLASS = LOCK_CLASS + 1

V1_INITIAL = Migration(
    version=1,
    name="initial",
    statements=(
        """
        CREATE TABLE streams (
            name           text COLLATE "C" PRIMARY KEY,
            cursor_time    timestamptz,
            cursor_file    text,
            last_success   timestamptz,
            last_error     text,
            last_error_at  timestamptz,
            updated_at     timestamptz NOT NULL
        )
        """,
        # No foreign key to streams: published files outlive a stream removed from config.
        """
        CREATE TABLE manifest (
            path          text COLLATE "C" PRIMARY KEY,
            stream        text COLLATE "C" NOT NULL,
            dataset_id    text NOT NULL,
            size          bigint NOT NULL CHECK (size >= 0),
            sha256        text NOT NULL,
            time_start    timestamptz,
            time_end      timestamptz,
            records       bigint CHECK (records IS NULL OR records >= 0),
            source        text,
            published_at  timestamptz NOT NULL
        )
        """,
        "CREATE INDEX manifest_by_stream ON manifest (stream, path)",
        # Payloads stay JSON text, byte for byte what dump_payload made, as in SQLite: jsonb
        # would reorder keys and refuse escapes (lone surrogates) the other backends accept.
        """
        CREATE TABLE inflight (
            stream      text COLLATE "C" NOT NULL REFERENCES streams (name) ON DELETE CASCADE,
            key         text COLLATE "C" NOT NULL,
            payload     text NOT NULL,
            updated_at  timestamptz NOT NULL,
            PRIMARY KEY (stream, key)
        )
        """,
        """
        CREATE TABLE attempts (
            stream    text COLLATE "C" NOT NULL REFERENCES streams (name) ON DELETE CASCADE,
            item_key  text COLLATE "C" NOT NULL,
            reason    text NOT NULL,
            attempts  integer NOT NULL CHECK (attempts > 0),
            last_at   timestamptz NOT NULL,
            PRIMARY KEY (stream, item_key)
        )
        """,
        """
        CREATE TABLE quarantine (
            stream    text COLLATE "C" NOT NULL REFERENCES streams (name) ON DELETE CASCADE,
            item_key  text COLLATE "C" NOT NULL,
            reason    text NOT NULL,
            detail    text,
            attempts  integer NOT NULL CHECK (attempts >= 0),
            at        timestamptz NOT NULL,
            PRIMARY KEY (stream, item_key)
        )
        """,
        """
        CREATE TABLE meta (
            namespace   text COLLATE "C" NOT NULL,
            key         text COLLATE "C" NOT NULL,
            value       text NOT NULL,
            updated_at  timestamptz NOT NULL,
            PRIMARY KEY (namespace, key)
        )
        """,
        # A released lease keeps its row (expires_at in the past) so the token keeps growing:
        # deleting it would restart the fencing sequence at 1.
        """
        CREATE TABLE leases (
            resource     text COLLATE "C" PRIMARY KEY,
            owner        text NOT NULL,
            token        bigint NOT NULL CHECK (token >= 1),
            ttl          interval NOT NULL,
            acquired_at  timestamptz NOT NULL,
            expires_at   timestamptz NOT NULL
        )
        """,
        # The shared request limiter: one GCRA row per limiter name (the theoretical arrival
        # time of the next request) and one row per concurrency slot.
        """
        CREATE TABLE limiter_buckets (
            name  text COLLATE "C" PRIMARY KEY,
            tat   timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE limiter_slots (
            name        text COLLATE "C" NOT NULL,
            slot        integer NOT NULL CHECK (slot >= 0),
            instance    text,
            grant_id    bigint,
            expires_at  timestamptz NOT NULL,
            PRIMARY KEY (name, slot)
        )
        """,
    ),
)

MIGRATIONS: tuple[Migration, ...] = (V1_INITIAL,)
