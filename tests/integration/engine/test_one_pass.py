"""A process that exits once caught up (`once`, `backfill`) keeps nothing for a next poll;
the daemon (`run`) does."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from pipeline import daemon
from pipeline.emulator import Emulator
from pipeline.engine.describe import OutputFormats
from pipeline.outputs.csv import CsvWriter
from tests.integration.engine.conftest import T0, SettingsFactory
from tests.integration.engine.test_status import STREAM as CTD_STREAM

# The CTD stream of the status tests, written as CSV: the format that keeps tables.
STREAM = {**CTD_STREAM, "formats": ["csv"]}


@pytest.fixture
def polled(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """`polled` of every `OutputFormats` the daemon module builds, checked against what its
    inline CSV writer was given."""
    seen: list[bool] = []

    class Recording(OutputFormats):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            csv = self.writers["csv"]
            assert isinstance(csv, CsvWriter)
            assert csv.polled is self.polled
            seen.append(self.polled)

    monkeypatch.setattr(daemon, "OutputFormats", Recording)
    return seen


async def test_once_and_backfill_keep_nothing_for_a_next_poll(
    emu: Emulator, make_settings: SettingsFactory, polled: list[bool]
) -> None:
    settings = make_settings([STREAM], daemon={"window_workers": 0})
    results = await daemon.run_once(settings, asyncio.Event(), clock=emu.clock.now)
    assert results["ctd"].ok  # type: ignore[union-attr]
    outcome = await daemon.run_backfill(
        settings, asyncio.Event(), "ctd", T0 - timedelta(hours=2), T0 - timedelta(hours=1)
    )
    assert outcome.ok
    assert polled == [False, False]


async def test_the_daemon_keeps_what_its_next_poll_uses(
    emu: Emulator, make_settings: SettingsFactory, polled: list[bool]
) -> None:
    settings = make_settings([STREAM], daemon={"window_workers": 0}, ops={"enabled": False})
    stop = asyncio.Event()
    stop.set()  # starts, then drains at once
    assert await asyncio.wait_for(daemon.run_daemon(settings, stop, clock=emu.clock.now), 30) == 0
    assert polled == [True]
