"""A backfill with hour windows into daily partitions, against the emulator: the hours of a
day are fetched as one range and each day's file is published once, with the same content as a
backfill with day windows (NetCDF, CSV, JSON Lines)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import pytest

import pipeline.outputs.jsonl
import pipeline.outputs.publish
from pipeline.daemon import run_backfill
from pipeline.emulator import Emulator
from tests.integration.engine.conftest import SettingsFactory, read_scalar_jsonl

DAY1 = datetime(2026, 11, 17, tzinfo=UTC)
DAY3 = datetime(2026, 11, 19, tzinfo=UTC)


# Global attributes that hold the wall-clock time a file was written.
WRITTEN_AT = {"date_created", "date_modified", "date_issued", "history"}


def netcdf_content(path: Path) -> tuple[dict[str, str], dict[str, tuple[bytes, str]]]:
    """A NetCDF file's global attributes (but when it was written) and each variable's
    values (as bytes, fill values included) with its attributes."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        attrs = {k: str(ds.getncattr(k)) for k in ds.ncattrs() if k not in WRITTEN_AT}
        variables = {
            name: (var[:].tobytes(), str({k: str(var.getncattr(k)) for k in var.ncattrs()}))
            for name, var in ds.variables.items()
        }
    return attrs, variables


def stream(window: str) -> dict[str, object]:
    return {
        "name": "bacax-ctd",
        "kind": "scalardata",
        "location_code": "BACAX",
        "device_category_code": "CTD",
        "window": window,
        "formats": ["netcdf", "csv", "jsonl"],
    }


async def test_an_hourly_backfill_fetches_a_day_at_a_time_and_publishes_each_day_once(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: Counter[str] = Counter()
    for module in (pipeline.outputs.publish, pipeline.outputs.jsonl):
        original = module.rename_durably

        def counted(tmp: Path, final: Path, rename=original) -> None:  # type: ignore[no-untyped-def]
            renames[final.name] += 1
            rename(tmp, final)

        monkeypatch.setattr(module, "rename_durably", counted)

    outcomes = {}
    requests = {}
    for window in ("1h", "1d"):
        settings = make_settings(
            [stream(window)],
            output={"root": str(tmp_path / window)},
            daemon={"window_workers": 0},  # built in this process, where renames are counted
            state={"url": f"sqlite:///{tmp_path / window / 'state.db'}"},
        )
        emu.requests.clear()
        outcomes[window] = await run_backfill(
            settings, asyncio.Event(), "bacax-ctd", DAY1, DAY3, clock=emu.clock.now
        )
        requests[window] = len(emu.requests.of("scalardata.location"))
        assert outcomes[window].ok

    # 48 hour windows counted as 48 units, fetched as two ranges of a day: one request each
    # at 1 Hz (86,400 rows a sensor, under the 100,000-row page), as with day windows.
    assert outcomes["1h"].units == 48
    assert outcomes["1d"].units == 2
    assert requests == {"1h": 2, "1d": 2}

    csv_names = sorted(p.name for p in (tmp_path / "1h").rglob("*.csv"))
    assert len(csv_names) == 2
    # Each daily file renamed into place once in each run: not once per hour.
    assert {name: renames[name] for name in csv_names} == {name: 2 for name in csv_names}
    hourly_jsonl = sorted((tmp_path / "1h").rglob("*.jsonl"))
    assert len(hourly_jsonl) == 48
    assert all(renames[p.name] == 1 for p in hourly_jsonl)

    # The same records as a backfill with day windows: CSV byte for byte, JSON Lines by line.
    for name in csv_names:
        [hourly] = (tmp_path / "1h").rglob(name)
        [daily] = (tmp_path / "1d").rglob(name)
        assert hourly.read_bytes() == daily.read_bytes(), name
    # NetCDF: the same variables and attributes, but for when each file was written.
    nc_names = sorted(p.name for p in (tmp_path / "1h").rglob("*.nc"))
    assert len(nc_names) == 2
    for name in nc_names:
        [hourly] = (tmp_path / "1h").rglob(name)
        [daily] = (tmp_path / "1d").rglob(name)
        assert netcdf_content(hourly) == netcdf_content(daily), name
    lines = {
        window: "".join(p.read_text() for p in sorted((tmp_path / window).rglob("*.jsonl")))
        for window in ("1h", "1d")
    }
    assert lines["1h"] == lines["1d"]
    assert len(read_scalar_jsonl(tmp_path / "1h")) > 2 * 86_400


async def test_a_backfill_ending_mid_hour_builds_its_last_day_once(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The open hour at the end joins its day's group: the day is fetched and its partition
    # files written once, as a backfill with day windows does, not again for the open hour.
    renames: Counter[str] = Counter()
    original = pipeline.outputs.publish.rename_durably

    def counted(tmp: Path, final: Path) -> None:
        renames[f"{final.parent.parent.parent.name}/{final.name}"] += 1
        original(tmp, final)

    monkeypatch.setattr(pipeline.outputs.publish, "rename_durably", counted)
    end = DAY1 + timedelta(days=1, hours=9, minutes=40)
    requests = {}
    for window in ("1h", "1d"):
        settings = make_settings(
            [{**stream(window), "formats": ["csv", "parquet"]}],
            output={"root": str(tmp_path / window)},
            daemon={"window_workers": 0},  # built in this process, where renames are counted
            state={"url": f"sqlite:///{tmp_path / window / 'state.db'}"},
        )
        emu.requests.clear()
        outcome = await run_backfill(
            settings, asyncio.Event(), "bacax-ctd", DAY1, end, clock=emu.clock.now
        )
        assert outcome.ok
        requests[window] = len(emu.requests.of("scalardata.location"))

    assert requests == {"1h": 2, "1d": 2}
    assert sorted(renames.items()) == sorted(
        (f"{window}/onc_bacax_ctd_{day}{suffix}", 1)
        for window in ("1h", "1d")
        for day in ("20261117", "20261118")
        for suffix in (".csv", ".parquet")
    )
    for name in ("20261117", "20261118"):
        [hourly] = (tmp_path / "1h").rglob(f"*{name}.csv")
        [daily] = (tmp_path / "1d").rglob(f"*{name}.csv")
        assert hourly.read_bytes() == daily.read_bytes(), name
