"""Fixtures for tests that need several instances on one PostgreSQL: a throwaway schema and
a factory of independent stores (each its own pool, as separate processes would have)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pipeline.state import PostgresStateStore
from tests.integration.postgres import server

StoreFactory = Callable[..., Awaitable[PostgresStateStore]]


@pytest.fixture
def pg_url() -> str:
    """The server URL (skips locally when unreachable; fails in CI)."""
    return server.postgres_url_or_skip()


@pytest.fixture
async def schema(pg_url: str) -> AsyncIterator[str]:
    """A uniquely named schema, dropped after the test."""
    name = server.unique_schema()
    try:
        yield name
    finally:
        await server.drop_schema(name)


@pytest.fixture
async def open_store(pg_url: str, schema: str) -> AsyncIterator[StoreFactory]:
    """Open independent stores on the test schema; all are closed after the test."""
    opened: list[PostgresStateStore] = []

    async def make(**kwargs: object) -> PostgresStateStore:
        options: dict[str, object] = {"schema": schema, "pool_size": 3, "command_timeout": 10.0}
        options.update(kwargs)
        store = PostgresStateStore(str(options.pop("url", pg_url)), **options)  # type: ignore[arg-type]
        await store.open()
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()


# The registry emulator fixture, for the multi-instance notifier test.
from tests.integration.registry.conftest import start_registry  # noqa: E402, F401
