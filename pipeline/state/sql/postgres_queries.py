"""The statements only PostgresStateStore and PostgresLimiter run, one named constant each (the
ones both backends run are in shared_queries.py).

Timestamps the contract lets the caller's clock decide (`updated_at`, `at`) arrive as
parameters; lease and limiter times use the server's clock, so instances with skewed clocks
agree on who holds what.
"""

from __future__ import annotations

# -- housekeeping -------------------------------------------------------------------------

CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"  # identifier quoted by the caller
TAKE_LOCK = "SELECT pg_advisory_xact_lock($1::int, $2::int)"
CREATE_SCHEMA_VERSION = """
    CREATE TABLE IF NOT EXISTS schema_version (
        version     integer PRIMARY KEY,
        name        text NOT NULL,
        applied_at  timestamptz NOT NULL
    )
"""
HAS_SCHEMA_VERSION = "SELECT to_regclass('schema_version') IS NOT NULL"

# -- streams ------------------------------------------------------------------------------

# The forward-only cursor as one conditional update, safe under concurrent instances without
# a read-compare-write: an older time keeps the stored pair whole (cursor_file included), an
# equal or newer time wins, and NULL leaves a field as it is ($2 time, $3 file). A commit that
# carries a time also records a successful run at $5, or $4 when $5 is NULL (see
# StateStore.commit_publish).
ADVANCE_CURSOR = """
    UPDATE streams SET
        cursor_file = CASE
            WHEN $2::timestamptz IS NOT NULL AND cursor_time IS NOT NULL
                 AND $2::timestamptz < cursor_time THEN cursor_file
            ELSE coalesce($3::text, cursor_file)
        END,
        cursor_time = CASE
            WHEN $2::timestamptz IS NULL THEN cursor_time
            ELSE GREATEST(cursor_time, $2::timestamptz)
        END,
        last_success = CASE
            WHEN $2::timestamptz IS NULL THEN last_success
            ELSE coalesce($5::timestamptz, $4)
        END,
        updated_at = $4
    WHERE name = $1
"""

# -- poison items -------------------------------------------------------------------------

# Reads and clears the count in one statement; the quarantine row takes what it returned.
TAKE_ATTEMPTS = "DELETE FROM attempts WHERE stream = $1 AND item_key = $2 RETURNING attempts"
IS_QUARANTINED = "SELECT EXISTS (SELECT 1 FROM quarantine WHERE stream = $1 AND item_key = $2)"

# -- metadata -----------------------------------------------------------------------------

# FOR UPDATE holds off a concurrent put_meta on an existing row; the advisory lock taken
# before it also serialises updaters of a key that does not exist yet (nothing to lock).
GET_META_FOR_UPDATE = "SELECT value FROM meta WHERE namespace = $1 AND key = $2 FOR UPDATE"
META_LOCK = "SELECT pg_advisory_xact_lock($1::int, hashtext($2 || chr(31) || $3))"

# -- leases -------------------------------------------------------------------------------

LEASE_COLUMNS = "resource, owner, token, acquired_at, expires_at, ttl"
# Granted when the resource has no row, or its lease expired or was released; the token
# grows on every grant. One statement, so of many concurrent claimers exactly one wins: the
# others wait on the row lock and then see an unexpired lease. ($3: ttl in seconds.)
CLAIM_LEASE = """
    INSERT INTO leases AS l (resource, owner, token, ttl, acquired_at, expires_at)
    VALUES ($1, $2, 1, make_interval(secs => $3), now(), now() + make_interval(secs => $3))
    ON CONFLICT (resource) DO UPDATE SET
        owner = excluded.owner,
        token = l.token + 1,
        ttl = excluded.ttl,
        acquired_at = excluded.acquired_at,
        expires_at = excluded.expires_at
    WHERE l.expires_at <= now()
    RETURNING resource, owner, token, acquired_at, expires_at, ttl
"""
RENEW_LEASE = """
    UPDATE leases SET expires_at = now() + ttl
    WHERE resource = $1 AND owner = $2 AND token = $3 AND expires_at > now()
    RETURNING resource, owner, token, acquired_at, expires_at, ttl
"""
# '-infinity', not now(): a transaction's now() is its start, and a claim that began a moment
# earlier must still see the released lease as expired.
RELEASE_LEASE = """
    UPDATE leases SET expires_at = '-infinity'
    WHERE resource = $1 AND owner = $2 AND token = $3
"""
LIST_LEASES = (
    "SELECT " + LEASE_COLUMNS + " FROM leases"
    " WHERE starts_with(resource, $1) AND expires_at > now() ORDER BY resource"
)
# Inside commit_publish_fenced: FOR SHARE makes a takeover (an UPDATE of this row) wait
# until the commit is done, so the check cannot go stale before the commit lands.
CHECK_LEASE = """
    SELECT owner, token, expires_at > now() FROM leases WHERE resource = $1 FOR SHARE
"""

# -- shared request limiter ---------------------------------------------------------------

ENSURE_BUCKET = """
    INSERT INTO limiter_buckets (name, tat) VALUES ($1, '-infinity') ON CONFLICT (name) DO NOTHING
"""
ENSURE_SLOTS = """
    INSERT INTO limiter_slots (name, slot, expires_at)
    SELECT $1, s, '-infinity' FROM generate_series(0, $2 - 1) AS s
    ON CONFLICT (name, slot) DO NOTHING
"""
# One round trip per grant: take a free (or expired) slot among the first $2, and only if
# one was taken, reserve the next GCRA emission time. Returns the slot and how long the
# caller must wait before starting. SKIP LOCKED lets concurrent acquirers pass each other.
# $3 instance, $4 grant id, $5 slot ttl (s), $6 interval 1/rate (s), $7 burst tolerance (s).
ACQUIRE_SLOT = """
    WITH taken AS (
        UPDATE limiter_slots SET
            instance = $3, grant_id = $4,
            expires_at = clock_timestamp() + make_interval(secs => $5)
        WHERE (name, slot) = (
            SELECT name, slot FROM limiter_slots
            WHERE name = $1 AND slot < $2 AND expires_at < clock_timestamp()
            ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
        )
        RETURNING slot
    ), reserved AS (
        UPDATE limiter_buckets SET
            tat = GREATEST(tat, clock_timestamp()) + make_interval(secs => $6)
        WHERE name = $1 AND EXISTS (SELECT 1 FROM taken)
        RETURNING tat
    )
    SELECT taken.slot, GREATEST(0, extract(epoch FROM (
        reserved.tat - make_interval(secs => $6) - make_interval(secs => $7)
        - clock_timestamp()
    )))::float8
    FROM taken CROSS JOIN reserved
"""
RELEASE_SLOT = """
    UPDATE limiter_slots SET expires_at = '-infinity', instance = NULL, grant_id = NULL
    WHERE name = $1 AND slot = $2 AND instance = $3 AND grant_id = $4
"""
RENEW_SLOTS = """
    UPDATE limiter_slots SET expires_at = clock_timestamp() + make_interval(secs => $3)
    WHERE name = $1 AND instance = $2 AND grant_id = ANY($4::bigint[])
        AND expires_at > clock_timestamp()
"""
