"""Fixtures: the registry emulator app served on a free loopback port, plus a movable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from pipeline.emulator.registry import RegistryState, build_registry_app, default_registry_state
from tests.clocks import FakeClock


@dataclass
class RegistryServer:
    """A running registry emulator: its base URL and the state behind it."""

    base_url: str
    state: RegistryState


class StartRegistry(Protocol):
    """Signature of the `start_registry` factory fixture."""

    async def __call__(
        self,
        state: RegistryState | None = None,
        *,
        auth_delay: tuple[float, float] = (0.0, 0.0),
        middlewares: Sequence[Middleware] = (),
    ) -> RegistryServer: ...


@pytest.fixture
async def start_registry() -> AsyncIterator[StartRegistry]:
    """Factory: start a registry app on 127.0.0.1 with a free port; every runner is cleaned up."""
    runners: list[web.AppRunner] = []

    async def start(
        state: RegistryState | None = None,
        *,
        auth_delay: tuple[float, float] = (0.0, 0.0),
        middlewares: Sequence[Middleware] = (),
    ) -> RegistryServer:
        state = state if state is not None else default_registry_state()
        app = build_registry_app(state, auth_delay=auth_delay, middlewares=middlewares)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return RegistryServer(f"http://{host}:{port}", state)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock[datetime]:
    """A hand-moved clock starting at 2026-01-01T00:00Z."""
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
async def registry(start_registry: StartRegistry) -> RegistryServer:
    """The default registry state served with no auth delay."""
    return await start_registry()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session for driving routes by hand."""
    async with aiohttp.ClientSession() as session:
        yield session
