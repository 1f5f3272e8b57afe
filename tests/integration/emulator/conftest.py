"""Fixtures: an emulator on free loopback ports with a pinned clock, and an HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import ujson

from pipeline.emulator import Emulator, EmulatorConfig

TOKEN = "t0k3n"
NOW = datetime(2024, 1, 10, tzinfo=UTC)

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with test defaults (pinned clock, no auth delay); all closed after."""
    started: list[Emulator] = []

    async def make(**overrides: Any) -> Emulator:
        options: dict[str, Any] = {
            "token": TOKEN,
            "seed": 7,
            "host": "127.0.0.1",
            "onc_port": 0,
            "registry_port": 0,
            "auth_delay": (0.0, 0.0),
            "clock_start": NOW,
            "product_processing_s": 30.0,
        }
        options.update(overrides)
        emu = Emulator(EmulatorConfig(**options))
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        await emu.close()


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    """One emulator with the default test configuration."""
    return await make_emulator()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session; ujson so bare NaN tokens parse."""
    async with aiohttp.ClientSession(json_serialize=ujson.dumps) as session:
        yield session


async def get(session: aiohttp.ClientSession, url: str, **params: Any) -> tuple[int, Any]:
    """GET with the token added; returns (status, parsed JSON or raw bytes)."""
    params.setdefault("token", TOKEN)
    async with session.get(url, params=params) as resp:
        body = await resp.read()
        if resp.content_type == "application/json" and body:
            return resp.status, ujson.loads(body)
        return resp.status, body
