"""The daemon's process hands the free pages inside its heap back every few seconds
(`pipeline/allocator.py`): started with its components, whatever the command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline import daemon
from pipeline.daemon import components
from tests.integration.engine.conftest import SettingsFactory


async def test_the_daemon_starts_trimming_its_heap_with_its_components(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(daemon, "trim_periodically", lambda: started.append("trim"))
    settings = make_settings(
        [
            {
                "name": "ctd",
                "kind": "scalardata",
                "location_code": "BACAX",
                "device_category_code": "CTD",
                "formats": ["jsonl"],
            }
        ],
        daemon={"window_workers": 0},
    )
    async with components(settings, stop=asyncio.Event()):
        assert started == ["trim"]
