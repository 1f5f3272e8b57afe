"""Poison items: a window whose pages never parse is quarantined, and the stream goes on."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.streams.base import PassOutcome
from pipeline.state import open_state_store
from tests.integration.engine.conftest import T0, SettingsFactory, read_scalar_jsonl

STREAM = {
    "name": "ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
    "start": "2026-11-20T06:05:00Z",
    "safety_lag": "30s",
    "formats": ["jsonl"],
}


async def test_unparseable_window_is_quarantined_after_bounded_attempts(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings([STREAM], onc={"max_attempts": 2})
    # Every scalardata page is an HTML error page with status 200: it can never be parsed.
    emu.faults = {"rules": [{"kind": "malformed", "endpoint": "scalardata.*", "body": "html"}]}
    for attempt in range(1, POISON_ATTEMPTS + 1):
        results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)
        outcome = results["ctd"]
        if attempt < POISON_ATTEMPTS:
            assert isinstance(outcome, Exception), "the failure is reported, not swallowed"
        else:
            assert isinstance(outcome, PassOutcome)
            assert outcome.quarantined == 1

    async with open_state_store(settings.state.url) as store:
        [record] = await store.list_quarantine("ctd")
        assert record.item_key == "window:20261120T060000Z_20261120T070000Z"
        assert record.reason == "OncMalformedReply"
        stream = await store.get_stream("ctd")
        assert stream is not None
        assert stream.cursor_time == T0 - timedelta(seconds=30)
        assert stream.last_error is not None
        assert "token" not in stream.last_error.lower() or "REDACTED" in stream.last_error

    # The stream goes on: once the upstream heals, new data after the quarantined span lands.
    emu.faults = None
    emu.clock.advance(10 * 60)
    results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)
    outcome = results["ctd"]
    assert isinstance(outcome, PassOutcome)
    assert outcome.ok
    rows = read_scalar_jsonl(tmp_path / "out")
    assert rows
    assert min(t for t, _, _, _ in rows) >= "2026-11-20T06:29:30.000Z"


async def test_product_error_on_download_is_quarantined_without_polling(
    emu: Emulator, make_settings: SettingsFactory
) -> None:
    stream = {
        "name": "tssd",
        "kind": "dataproduct",
        "location_code": "BACAX",
        "device_category_code": "CTD",
        "data_product_code": "TSSD",
        "extension": "csv",
        "period": "1d",
        "start": "2026-11-19T00:00:00Z",
        "safety_lag": "1h",
    }
    # The stream's poll deadline (6 h by default) is far beyond the test's timeout: only the
    # "error" status can end each pass.
    settings = make_settings([stream])
    emu.faults = {"rules": [{"kind": "product-error", "endpoint": "dataProductDelivery.download"}]}

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.02)
            emu.clock.advance(0.2)

    ticker = asyncio.create_task(tick())
    try:
        for attempt in range(1, POISON_ATTEMPTS + 1):
            outcome = (await run_once(settings, asyncio.Event(), clock=emu.clock.now))["tssd"]
            assert isinstance(outcome, PassOutcome)
            if attempt < POISON_ATTEMPTS:
                assert outcome.errors
                assert "failed on the server" in outcome.errors[0]
            else:
                assert outcome.quarantined == 1
    finally:
        ticker.cancel()
    # One download answer per attempt: an "error" 202 is never polled again.
    assert len(emu.requests.of("dataProductDelivery.download")) == POISON_ATTEMPTS
    async with open_state_store(settings.state.url) as store:
        [record] = await store.list_quarantine("tssd")
        assert record.item_key == "product:20261119T000000Z_20261120T000000Z"
        assert record.reason == "OncProductFailedError"
        assert await store.get_inflight("tssd") == {}
