"""The test PostgreSQL server: where it is, whether tests may skip, and throwaway schemas.

Rule: with CI set, a test needing PostgreSQL fails when the server is unreachable (it must
never silently skip there); locally it skips, but only when the server is unreachable.
Each test gets its own uniquely named schema, dropped afterwards, so parallel runs on one
server never see each other's tables.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest

from pipeline.state.sql.postgres_connection import quote_ident

T = TypeVar("T")

# Trust auth on loopback; the `test` database exists on this machine and in CI.
POSTGRES_URL = os.environ.get("ONC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2.0):
            return True
    except OSError:
        return False


def postgres_url_or_skip() -> str:
    """The server URL; skip when it is unreachable, unless CI is set (then fail)."""
    if _reachable(POSTGRES_URL):
        return POSTGRES_URL
    message = "PostgreSQL is not reachable at 127.0.0.1:5432"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: PostgreSQL tests must run)")
    pytest.skip(message)


def unique_schema() -> str:
    """A schema name no other test run uses."""
    return f"onc_test_{uuid.uuid4().hex[:12]}"


async def execute(sql: str, *args: Any, schema: str | None = None) -> None:
    """Run one statement on a fresh connection (optionally inside `schema`)."""
    settings = {"search_path": quote_ident(schema)} if schema else None
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5, server_settings=settings)
    try:
        await conn.execute(sql, *args, timeout=10)
    finally:
        await conn.close()


async def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    await execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=30)
