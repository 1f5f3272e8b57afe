"""A PostgreSQL that goes away mid-run, or was never there, gives StateError, never a hang,
and never shows the password."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest

from pipeline.coordination import PostgresLimiter
from pipeline.exceptions import StateError
from pipeline.onc.politeness import LocalLimiter
from pipeline.state import Commit, PostgresStateStore, open_state_store
from tests.integration.postgres.conftest import StoreFactory
from tests.integration.postgres.proxy import PgProxy

pytestmark = pytest.mark.postgres

SECRET = "s3cret-pw"
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_server_killed_mid_run_gives_state_error(
    open_store: StoreFactory, schema: str
) -> None:
    await open_store()  # migrate directly, then work through the proxy
    async with PgProxy() as proxy:
        store = await open_store(url=proxy.url(password=SECRET), connect_timeout=1.0)
        await store.record_success("ctd", T0)
        await proxy.cut()
        async with asyncio.timeout(10):  # a hang fails here, not at the suite's timeout
            with pytest.raises(StateError) as caught:
                await store.get_stream("ctd")
            with pytest.raises(StateError):
                await store.commit_publish(Commit("ctd", []))
    assert SECRET not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


async def test_black_holed_server_times_out_as_state_error(open_store: StoreFactory) -> None:
    await open_store()
    async with PgProxy() as proxy:
        store = await open_store(
            url=proxy.url(), connect_timeout=0.5, command_timeout=0.5, pool_size=1
        )
        await store.record_success("ctd", T0)
        proxy.freeze()
        async with asyncio.timeout(10):
            with pytest.raises(StateError, match=r"no answer in time|connection"):
                await store.get_stream("ctd")
            await store.close()  # closing a store whose server is gone must not hang either


async def test_unreachable_server_at_open_is_a_state_error_without_the_password() -> None:
    url = f"postgresql://pipeline:{SECRET}@127.0.0.1:{closed_port()}/onc"
    store = open_state_store(url)
    assert isinstance(store, PostgresStateStore)
    assert SECRET not in repr(store)
    async with asyncio.timeout(10):
        with pytest.raises(StateError) as caught:
            await store.open()
    assert SECRET not in str(caught.value)
    assert "postgresql://pipeline@127.0.0.1" in str(caught.value)
    with pytest.raises(StateError, match="not open"):
        await store.get_stream("x")


async def test_limiter_without_a_database_fails_clearly_or_falls_back(
    pg_url: str, schema: str, open_store: StoreFactory
) -> None:
    await open_store()
    unreachable = f"postgresql://u:{SECRET}@127.0.0.1:{closed_port()}/test"
    limiter = PostgresLimiter(unreachable, max_concurrency=2, max_rate_per_s=100)
    with pytest.raises(StateError) as caught:
        await limiter.open()
    assert SECRET not in str(caught.value)

    fallback = LocalLimiter(1, 1000.0)
    async with PgProxy() as proxy:
        shared = PostgresLimiter(
            proxy.url(),
            schema=schema,
            max_concurrency=2,
            max_rate_per_s=1000,
            connect_timeout=0.5,
            command_timeout=0.5,
            fallback=fallback,
        )
        strict = PostgresLimiter(
            proxy.url(),
            schema=schema,
            max_concurrency=2,
            max_rate_per_s=1000,
            connect_timeout=0.5,
            command_timeout=0.5,
        )
        async with shared, strict:
            async with shared.slot():
                assert shared.in_flight == 1
            await proxy.cut()
            async with asyncio.timeout(10):
                with pytest.raises(StateError, match="limiter"):
                    async with strict.slot():
                        pytest.fail("a slot was granted without the database")
                async with shared.slot():
                    assert fallback.in_flight == 1  # degraded to the local caps
                    assert shared.in_flight == 0
