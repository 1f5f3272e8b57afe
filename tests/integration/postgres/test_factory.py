"""`open_state_store` builds a PostgresStateStore from a postgresql:// URL, schema included,
and never echoes the password."""

from __future__ import annotations

import pytest

from pipeline.exceptions import StateError
from pipeline.state import PostgresStateStore, open_state_store
from pipeline.state.sql.postgres_connection import parse_postgres_url

pytestmark = pytest.mark.postgres


def test_urls_are_parsed_and_the_password_is_kept_out_of_sight() -> None:
    target = parse_postgres_url(
        "postgresql://pipe%40line:p%40ss@db.example:6543/onc?schema=harvest&sslmode=disable"
    )
    assert target.schema == "harvest"
    assert target.display == "postgresql://pipe%40line@db.example:6543/onc"
    assert "schema" not in target.dsn
    assert "sslmode=disable" in target.dsn
    assert target.redact("failed for p@ss and p%40ss") == "failed for *** and ***"

    store = open_state_store("postgres://u:hunter2@127.0.0.1/onc", read_only=True)
    assert isinstance(store, PostgresStateStore)
    assert store.read_only
    assert "hunter2" not in repr(store)
    with pytest.raises(StateError, match="empty"):
        parse_postgres_url("postgresql://127.0.0.1/onc?schema=")


async def test_a_url_with_a_schema_opens_a_working_store(pg_url: str, schema: str) -> None:
    async with open_state_store(f"{pg_url}?schema={schema}") as store:
        assert isinstance(store, PostgresStateStore)
        await store.put_meta("ns", "k", {"v": 1})
        assert await store.schema_version() >= 1
    async with PostgresStateStore(pg_url, schema=schema) as again:
        assert await again.get_meta("ns", "k") == {"v": 1}
