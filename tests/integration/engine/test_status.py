"""`once` announces what it published to the registry; `status` shows streams and harvests."""

from __future__ import annotations

import asyncio
import json

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.emulator.registry import DEFAULT_HARVEST_IDS, DEFAULT_PASSWORD
from pipeline.status import collect_status, render_status
from tests.integration.engine.conftest import SettingsFactory

STREAM = {
    "name": "ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
    "start": "2026-11-20T05:00:00Z",
    "formats": ["jsonl"],
}


async def test_once_triggers_the_registry_and_status_reports_it(
    emu: Emulator, make_settings: SettingsFactory
) -> None:
    harvest = DEFAULT_HARVEST_IDS[0]
    settings = make_settings(
        [STREAM],
        registry={
            "enabled": True,
            "base_url": emu.registry_url,
            "email": "harvester@example.org",
            "password": DEFAULT_PASSWORD,
            "harvests": {"onc_bacax_ctd": harvest},
            "debounce": "10m",  # `once` must not wait for it
        },
    )
    results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)
    assert results["ctd"].ok  # type: ignore[union-attr]
    assert [h for h, _ in emu.registry.triggers] == [harvest]

    report = await collect_status(settings, now=emu.clock.now())
    [row] = report.streams
    assert row.name == "ctd"
    assert row.files == 2
    assert row.lag_s is not None
    assert 0 < row.lag_s < 120
    [registry] = report.harvests
    assert registry.harvest_id == harvest
    assert registry.datasets == ["onc_bacax_ctd"]
    assert registry.pending is False
    assert registry.last_trigger is not None

    table = render_status(report)
    assert "ctd" in table
    assert f"registry     {harvest}" in table
    as_json = json.loads(render_status(report, as_json=True))
    assert as_json["registry"][0]["harvest_id"] == harvest
    for text in (table, json.dumps(as_json)):
        assert DEFAULT_PASSWORD not in text
