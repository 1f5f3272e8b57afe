"""A process that ends after one pass (`once`, `backfill`) keeps nothing for a next poll."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from pipeline import daemon
from pipeline.emulator import Emulator
from pipeline.engine.describe import OutputFormats
from tests.integration.engine.conftest import T0, SettingsFactory

STREAM = {
    "name": "ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
    "start": "2026-11-20T05:00:00Z",
    "formats": ["csv"],
}


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """`keep_tables` of every `OutputFormats` the daemon module builds."""
    seen: list[bool] = []

    class Recording(OutputFormats):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(self.keep_tables)

    monkeypatch.setattr(daemon, "OutputFormats", Recording)
    return seen


async def test_once_and_backfill_keep_no_tables(
    emu: Emulator, make_settings: SettingsFactory, kept: list[bool]
) -> None:
    settings = make_settings([STREAM], daemon={"window_workers": 0})
    results = await daemon.run_once(settings, asyncio.Event(), clock=emu.clock.now)
    assert results["ctd"].ok  # type: ignore[union-attr]
    outcome = await daemon.run_backfill(
        settings, asyncio.Event(), "ctd", T0 - timedelta(hours=2), T0 - timedelta(hours=1)
    )
    assert outcome.ok
    assert kept == [False, False]


async def test_the_daemon_keeps_tables(
    emu: Emulator, make_settings: SettingsFactory, kept: list[bool]
) -> None:
    settings = make_settings([STREAM], daemon={"window_workers": 0})
    async with daemon.components(settings, stop=asyncio.Event(), clock=emu.clock.now):
        pass
    assert kept == [True]
