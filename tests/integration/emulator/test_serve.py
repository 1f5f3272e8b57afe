"""`serve()`, the CLI's entry point: logs both URLs, serves, and returns when told to stop."""

from __future__ import annotations

import asyncio

import aiohttp
from structlog.testing import capture_logs

from pipeline.emulator import EmulatorConfig, serve
from tests.integration.emulator.conftest import TOKEN


async def test_serve_until_stop() -> None:
    config = EmulatorConfig(token=TOKEN, onc_port=0, registry_port=0, auth_delay=(0.0, 0.0))
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(serve(config, stop))
        for _ in range(200):
            if any(e["event"] == "emulator_started" for e in logs):
                break
            await asyncio.sleep(0.01)
        started = next(e for e in logs if e["event"] == "emulator_started")
        async with aiohttp.ClientSession() as session:
            async with session.get(
                started["onc_url"] + "/api/locations", params={"token": TOKEN}
            ) as resp:
                assert resp.status == 200
            async with session.get(started["registry_url"] + "/api/v1/Harvests") as resp:
                assert resp.status == 200
        stop.set()
        await asyncio.wait_for(task, 10)
    assert started["onc_url"].startswith("http://127.0.0.1:")
    assert any(e["event"] == "emulator_stopped" for e in logs)
