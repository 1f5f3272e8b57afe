"""`once` against the emulator: every stream kind, output compared with the ground truth."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import ujson

from pipeline.daemon import run_backfill, run_once
from pipeline.emulator import Emulator
from pipeline.engine.streams.base import PassOutcome
from pipeline.state import open_state_store
from tests.integration.engine.conftest import T0, SettingsFactory, read_scalar_jsonl, same_value

BACAX = {
    "name": "bacax-ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
    "window": "1h",
    "safety_lag": "30s",
    "start": "2026-11-20T03:10:00Z",
    "formats": ["jsonl"],
}


async def once(settings: object, emu: Emulator) -> dict[str, PassOutcome | Exception]:
    results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)  # type: ignore[arg-type]
    for name, result in results.items():
        assert isinstance(result, PassOutcome), f"{name}: {result!r}"
        assert result.ok, result.errors
    return results


def assert_scalar_equals_truth(emu: Emulator, out: Path, start: str, end: object) -> int:
    rows = read_scalar_jsonl(out)
    keys = Counter((t, s) for t, s, _, _ in rows)
    doubled = [k for k, n in keys.items() if n > 1]
    assert not doubled, f"records written twice: {doubled[:5]}"
    truth = emu.truth.scalar(
        location_code="BACAX", device_category_code="CTD", date_from=start, date_to=end
    )
    expected = {(r.time, sensor): r for sensor, records in truth.items() for r in records}
    got = {(t, s): (v, f) for t, s, v, f in rows}
    assert got.keys() == expected.keys()
    mismatched = [
        k
        for k, (v, f) in got.items()
        if not same_value(v, expected[k].value) or f != expected[k].flag
    ]
    assert not mismatched, mismatched[:5]
    assert any(f == 9 for _, f in got.values()), "the range should include gap-fill rows"
    return len(rows)


async def test_scalar_once_equals_ground_truth_then_grows_without_duplicates(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings([{**BACAX, "row_limit": 1000}])
    await once(settings, emu)
    first = assert_scalar_equals_truth(
        emu, tmp_path / "out", BACAX["start"], T0 - timedelta(seconds=30)
    )
    pages = len(emu.requests.of("scalardata.location"))
    assert pages > 4, "a 1,000-row limit over 3 h of 1 Hz data must page"

    # Near-real-time: the clock moves on, the open window's file grows, nothing doubles.
    for _ in range(3):
        emu.clock.advance(7 * 60)
        await once(settings, emu)
    now = emu.clock.now()
    total = assert_scalar_equals_truth(
        emu, tmp_path / "out", BACAX["start"], now - timedelta(seconds=30)
    )
    assert total > first
    files = sorted(p.name for p in (tmp_path / "out").rglob("*.jsonl"))
    assert len(files) == len(set(files)) == 4  # 03:00, 04:00, 05:00, 06:00 windows


async def test_lookback_rereads_without_duplicating(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings([{**BACAX, "lookback": "20m"}])
    await once(settings, emu)
    emu.clock.advance(5 * 60)
    await once(settings, emu)
    assert_scalar_equals_truth(
        emu, tmp_path / "out", BACAX["start"], emu.clock.now() - timedelta(seconds=30)
    )


async def test_rawdata_by_device_equals_truth(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    stream = {
        "name": "bpr-raw",
        "kind": "rawdata",
        "device_code": "RBRQUARTZ3BPR203659",
        "start": "2026-11-20T05:00:00Z",
        "row_limit": 1000,
        "safety_lag": "30s",
        "formats": ["jsonl"],
    }
    await once(make_settings([stream]), emu)
    lines = [
        ujson.loads(line)
        for path in sorted((tmp_path / "out").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    truth = emu.truth.raw(
        device_code="RBRQUARTZ3BPR203659",
        date_from="2026-11-20T05:00:00.000Z",
        date_to=T0 - timedelta(seconds=30),
    )
    assert [(r["time"], r["reading"]) for r in lines] == [(t.time, t.reading) for t in truth]
    assert len(truth) > 3000


async def test_archive_files_byte_identical_and_not_downloaded_twice(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    stream = {
        "name": "hydrophone",
        "kind": "archivefile",
        "location_code": "SEVIP",
        "device_category_code": "HYDROPHONE",
        "file_extensions": ["wav"],
        "start": "2026-11-20T05:40:00Z",
        "safety_lag": "1m",
    }
    settings = make_settings([stream])
    await once(settings, emu)
    await once(settings, emu)
    truth = emu.truth.archive_files(
        location_code="SEVIP",
        device_category_code="HYDROPHONE",
        date_from="2026-11-20T05:40:00.000Z",
        date_to=T0 - timedelta(minutes=1),
        extension="wav",
    )
    assert len(truth) >= 8
    on_disk = {p.name: p for p in (tmp_path / "out").rglob("*.wav")}
    assert sorted(on_disk) == sorted(t.filename for t in truth)
    for file in truth:
        assert hashlib.sha256(on_disk[file.filename].read_bytes()).hexdigest() == file.sha256
    downloads = Counter(
        dict(r.query).get("filename") for r in emu.requests.of("archivefile.download")
    )
    assert set(downloads.values()) == {1}, "each file is downloaded once across two runs"
    assert not list((tmp_path / "out").rglob("*.part"))
    assert not list((tmp_path / "out").rglob("*.tmp"))


async def test_dataproduct_ordered_once_and_downloaded(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    stream = {
        "name": "tssd",
        "kind": "dataproduct",
        "location_code": "BACAX",
        "device_category_code": "CTD",
        "data_product_code": "TSSD",
        "extension": "csv",
        "period": "1d",
        "start": "2026-11-18T00:00:00Z",
        "safety_lag": "1h",
    }
    settings = make_settings([stream])

    async def tick() -> None:
        # The emulator runs products on its (pinned) clock: let emulated time flow.
        while True:
            await asyncio.sleep(0.02)
            emu.clock.advance(0.2)

    ticker = asyncio.create_task(tick())
    try:
        await once(settings, emu)
        await once(settings, emu)
    finally:
        ticker.cancel()
    assert len(emu.requests.of("dataProductDelivery.run")) > 2, "runs were polled through 202"
    folder = tmp_path / "out" / "onc_bacax_ctd_tssd" / "products"
    periods = sorted(p.name for p in folder.iterdir())
    assert periods == [
        "20261118T000000Z_20261119T000000Z",
        "20261119T000000Z_20261120T000000Z",
    ]
    for period in periods:
        names = [p.name for p in (folder / period).iterdir()]
        assert any(n.endswith(".csv") for n in names)
        assert any(n.endswith(".xml") for n in names)
    assert len(emu.requests.of("dataProductDelivery.request")) == 2
    async with open_state_store(settings.state.url) as store:
        assert await store.get_inflight("tssd") == {}
        record = await store.get_stream("tssd")
        assert record is not None
        assert record.cursor_time is not None
        assert record.cursor_time.isoformat() == "2026-11-20T00:00:00+00:00"


async def test_backfill_leaves_the_cursor_alone(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings([BACAX])
    outcome = await run_backfill(
        settings,
        asyncio.Event(),
        "bacax-ctd",
        T0 - timedelta(days=2),
        T0 - timedelta(days=2) + timedelta(hours=2),
        clock=emu.clock.now,
    )
    assert outcome.ok
    assert outcome.units == 3  # 06:30-08:30 touches the 06:00, 07:00 and 08:00 windows
    async with open_state_store(settings.state.url) as store:
        record = await store.get_stream("bacax-ctd")
        assert record is None or record.cursor_time is None
        assert len(await store.list_manifest("bacax-ctd")) == 3


async def test_a_lookback_pass_that_only_adds_records_touches_flag_never_hard_flag(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    flags = tmp_path / "erddap"
    settings = make_settings(
        [{**BACAX, "lookback": "20m", "formats": ["netcdf", "csv"]}],
        output={"erddap_flag_dir": str(flags)},
    )
    await once(settings, emu)
    assert sorted(p.name for p in (flags / "flag").iterdir()) == [
        "onc_bacax_ctd",
        "onc_bacax_ctd_csv",
    ]
    for path in (flags / "flag").iterdir():
        path.unlink()  # ERDDAP deletes a flag when it reads it
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.nc")}

    # The next pass re-reads 20 minutes it already has and adds the 5 new ones: the open
    # partition files are rewritten (changed files), which a plain flag makes ERDDAP re-read.
    emu.clock.advance(5 * 60)
    await once(settings, emu)
    rewritten = [p for p, mtime in before.items() if p.stat().st_mtime_ns != mtime]
    assert rewritten, "the pass should have rewritten the open partition"
    assert sorted(p.name for p in (flags / "flag").iterdir()) == [
        "onc_bacax_ctd",
        "onc_bacax_ctd_csv",
    ]
    assert not (flags / "hardFlag").exists()


async def test_backfill_migrates_files_from_before_stations_at_constant_positions(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings([{**BACAX, "formats": ["netcdf", "csv"]}])
    await once(settings, emu)
    out = tmp_path / "out" / "onc_bacax_ctd"
    (nc,) = out.rglob("*.nc")
    (csv,) = out.rglob("*.csv")
    with netCDF4.Dataset(nc) as ds:
        station_lat = float(ds["latitude"][0])
    # Make them look like files of the previous version: the deployment's position in the
    # NetCDF station variables, no station column in the CSV.
    with netCDF4.Dataset(nc, "a") as ds:
        ds["latitude"][:] = [station_lat + 0.01]
    lines = csv.read_text().splitlines()
    csv.write_text(
        "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 1) for line in lines)
        + "\n"
    )
    # The documented migration: a backfill over the range the files hold.
    outcome = await run_backfill(
        settings,
        asyncio.Event(),
        "bacax-ctd",
        datetime(2026, 11, 20, 3, tzinfo=UTC),
        T0 - timedelta(seconds=30),
        clock=emu.clock.now,
    )
    assert outcome.ok, outcome.errors
    with netCDF4.Dataset(nc) as ds:
        assert float(ds["latitude"][0]) == station_lat
    migrated = csv.read_text().splitlines()
    assert migrated[:2] == lines[:2]
    assert set(lines[2:]) <= set(migrated[2:])  # every record kept, now with its station
