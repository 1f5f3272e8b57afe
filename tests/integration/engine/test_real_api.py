"""The engine against the emulator's real-API behaviours (issue 17): files stored compressed,
files archived hours late, parameters the API does not document, the archive listing's
rowLimit. Each test compares with the emulator's ground truth and its request log.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import ujson
import yaml

from pipeline.daemon import run_backfill, run_once
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.engine.streams.base import PassOutcome
from pipeline.settings import Settings, load_settings
from tests.integration.engine.conftest import T0, TOKEN, SettingsFactory

HOUR = 3600.0


def hydrophone(**extra: Any) -> dict[str, Any]:
    return {
        "name": "hydrophone",
        "kind": "archivefile",
        "location_code": "SEVIP",
        "device_category_code": "HYDROPHONE",
        "file_extensions": ["wav", "mat"],
        **extra,
    }


async def once(settings: Settings, emu: Emulator) -> PassOutcome:
    results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)
    (result,) = results.values()
    assert isinstance(result, PassOutcome), repr(result)
    assert result.ok, result.errors
    return result


def downloads(emu: Emulator) -> Counter[str | None]:
    return Counter(dict(r.query).get("filename") for r in emu.requests.of("archivefile.download"))


def assert_all_once(emu: Emulator, out: Path, date_from: object, date_to: object) -> int:
    """Every truth file in range is on disk once, byte-identical; nothing else is there."""
    truth = emu.truth.archive_files(
        location_code="SEVIP",
        device_category_code="HYDROPHONE",
        date_from=date_from,  # type: ignore[arg-type]
        date_to=date_to,  # type: ignore[arg-type]
    )
    on_disk = [p for p in out.rglob("*") if p.suffix in (".wav", ".mat")]
    names = Counter(p.name for p in on_disk)
    assert [n for n, c in names.items() if c > 1] == []
    assert sorted(names) == sorted(t.filename for t in truth)
    by_name = {p.name: p for p in on_disk}
    for file in truth:
        data = by_name[file.filename].read_bytes()
        assert len(data) == file.size
        assert hashlib.sha256(data).hexdigest() == file.sha256
    assert not list(out.rglob("*.part"))
    return len(truth)


async def test_files_stored_compressed_are_verified_against_their_delivered_size(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Item 1: the listing's stored size is smaller than the bytes a download delivers."""
    listing = await _listing_rows(emu)
    assert any(r["compressedFileSize"] < r["uncompressedFileSize"] for r in listing)
    settings = make_settings([hydrophone(start="2026-11-20T05:30:00Z", safety_lag="1m")])
    result = await once(settings, emu)
    assert result.quarantined == 0
    count = assert_all_once(
        emu, tmp_path / "out", "2026-11-20T05:30:00Z", T0 - timedelta(minutes=1)
    )
    assert count >= 20
    assert set(downloads(emu).values()) == {1}, "no file is fetched twice"


async def _listing_rows(emu: Emulator) -> list[dict[str, Any]]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{emu.onc_url}/api/archivefile/location",
            params={
                "locationCode": "SEVIP",
                "deviceCategoryCode": "HYDROPHONE",
                "dateFrom": "2026-11-20T05:30:00.000Z",
                "dateTo": "2026-11-20T06:00:00.000Z",
                "returnOptions": "all",
                "rowLimit": "80000",
                "token": TOKEN,
            },
        ) as response,
    ):
        assert response.status == 200
        rows: list[dict[str, Any]] = ujson.loads(await response.read())["files"]
        return rows


async def test_archive_listings_ask_for_80000_rows(
    emu: Emulator, make_settings: SettingsFactory
) -> None:
    """Item 5: every ONC example lists with rowLimit=80000; the emulator refuses more."""
    settings = make_settings([hydrophone(start="2026-11-20T06:00:00Z", safety_lag="1m")])
    await once(settings, emu)
    limits = {dict(r.query).get("rowLimit") for r in emu.requests.of("archivefile.location")}
    assert limits == {"80000"}


async def test_a_device_stream_with_property_codes_sends_no_property_code(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Item 5: `propertyCode` is not documented on /scalardata/device (error 129 there);
    the properties are picked from the answer instead."""
    stream = {
        "name": "ctd",
        "kind": "scalardata",
        "device_code": "SBECTD16p7128",
        "property_codes": ["conductivity", "seawatertemperature"],
        "start": "2026-11-20T05:00:00Z",
        "window": "1h",
        "formats": ["jsonl"],  # read back below, record by record
    }
    settings = make_settings([stream])
    await once(settings, emu)
    sent = [dict(r.query) for r in emu.requests.of("scalardata.device")]
    assert sent
    assert all("propertyCode" not in q for q in sent)
    sensors = set()
    for path in (tmp_path / "out").rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            sensors.add(ujson.loads(line)["sensorCode"])
    truth = emu.truth.scalar(
        device_code="SBECTD16p7128",
        date_from="2026-11-20T05:00:00Z",
        date_to="2026-11-20T06:00:00Z",
    )
    wanted = {
        s.code
        for s in emu.context.catalogue.devices["SBECTD16p7128"].sensors
        if s.property_code in ("conductivity", "seawatertemperature")
    }
    assert wanted
    assert wanted <= set(truth)
    assert sensors == wanted


@pytest.fixture
async def late_emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        token=TOKEN,
        seed=41,
        onc_port=0,
        registry_port=0,
        clock_start=T0,
        auth_delay=(0.0, 0.0),
        archive_file_sizes={"ICLISTENHF1560.wav": 20_000, "ICLISTENHF1560.mat": 3_000},
        archive_delay_s=6 * HOUR,
    )
    async with Emulator(config) as emulator:
        yield emulator


async def test_backfill_and_live_passes_take_every_late_file_once(
    late_emu: Emulator, tmp_path: Path
) -> None:
    """Item 4 and the issue's end-to-end check: files stored compressed and archived up to
    6 h late; a backfill, then live passes every 20 minutes for 7 hours, then one more pass
    and the backfill again once every file is archived. Every file ends on disk once,
    verified, and no file is downloaded twice (from the emulator's request log)."""
    emu = late_emu
    data = {
        "onc": {"base_url": emu.onc_url, "token": TOKEN, "max_rate_per_s": 50},
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "output": {"root": str(tmp_path / "out")},
        "streams": [hydrophone(start="2026-11-20T03:00:00Z", safety_lag="1m")],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    settings = load_settings(tmp_path / "config.yaml", environ={}, secrets_dirs=[])
    backfill_from = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    outcome = await run_backfill(
        settings, asyncio.Event(), "hydrophone", backfill_from, T0, clock=emu.clock.now
    )
    assert outcome.ok, outcome.errors
    archived_at_start = len(
        emu.truth.archive_files(
            location_code="SEVIP",
            device_category_code="HYDROPHONE",
            date_from=backfill_from,
            date_to=T0,
        )
    )
    for _ in range(21):
        await once(settings, emu)
        emu.clock.advance(20 * 60)
    emu.clock.advance(7 * HOUR)  # every file that began before the loop's end is archived
    await once(settings, emu)
    await run_backfill(
        settings, asyncio.Event(), "hydrophone", backfill_from, T0, clock=emu.clock.now
    )
    end = emu.clock.now() - timedelta(minutes=1)
    count = assert_all_once(emu, tmp_path / "out", backfill_from, end)
    in_backfill = emu.truth.archive_files(
        location_code="SEVIP",
        device_category_code="HYDROPHONE",
        date_from=backfill_from,
        date_to=T0,
    )
    assert len(in_backfill) - archived_at_start > 10, "many were archived after the backfill"
    assert count > len(in_backfill)
    counts = downloads(emu)
    assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1][:5]
    assert sum(counts.values()) == count
