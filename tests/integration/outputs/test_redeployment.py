"""A redeployment that moves the platform inside the harvested range: the data stays under one
station (the ONC location) whose position never changes, and ERDDAP's rules hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import yaml

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.onc import ClientOptions, OncClient
from pipeline.outputs.csv import CsvWriter
from pipeline.outputs.datasets_xml import render_datasets_xml
from pipeline.outputs.netcdf import NetcdfWriter
from pipeline.records import Window
from pipeline.settings import load_settings
from tests.erddap.checker import check_datasets_xml, format_violations
from tests.integration.outputs.conftest import T0, TOKEN, feed_scalar, meta_for, stream

HOUR = timedelta(hours=1)
START = datetime(2026, 11, 20, 4, tzinfo=UTC)
END = T0 - timedelta(seconds=30)
# Inside the 05:00 window and the 2026-11-20 partition, off any whole second.
MOVE = datetime(2026, 11, 20, 5, 20, 17, 250_000, tzinfo=UTC)

CASES = {
    # By location: the CTD at BACAX is redeployed 50 m away; the station is BACAX.
    "bacax-ctd": ("SBECTD16p7128", {"location_code": "BACAX", "device_category_code": "CTD"}),
    # By device: the BPR itself moves; it stays at location NCBC, its station.
    "folger-bpr": ("BPR-Folger-59", {"device_code": "BPR-Folger-59"}),
}


@pytest.fixture
async def moved() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        token=TOKEN,
        seed=37,
        onc_port=0,
        registry_port=0,
        clock_start=T0,
        auth_delay=(0.0, 0.0),
        redeployments={"SBECTD16p7128": MOVE, "BPR-Folger-59": MOVE},
    )
    async with Emulator(config) as emulator:
        yield emulator


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_moved_platform_keeps_one_station_at_one_position(
    moved: Emulator, tmp_path: Path, name: str
) -> None:
    device, addressing = CASES[name]
    options = ClientOptions(token=TOKEN, base_url=moved.onc_url, max_rate_per_s=500.0)
    async with OncClient(options) as onc:
        deployments = await onc.deployments(device_code=device)
        positions = {(d.lat, d.lon, d.depth) for d in deployments if d.end is None or d.end > START}
        assert len(positions) == 2, "the emulator should have moved the device inside the range"
        ts = stream(name, formats=["netcdf", "csv"], **addressing)
        meta = await meta_for(onc, ts)
        # Hourly files: some before the move, some after, one across it.
        metas = {meta.dataset_id: meta}
        writers = (NetcdfWriter(metas, partition="hourly"), CsvWriter(metas, partition="hourly"))
        start = START
        while start < END:
            window = Window(start, start + HOUR)
            opened = [w.open_window(tmp_path / "out", meta.dataset_id, window) for w in writers]
            await feed_scalar(onc, ts, list(opened), window.start, min(window.end, END))
            for window_writer in opened:
                window_writer.publish()
            start += HOUR

    station = meta.stations[meta.platform_code]
    nc_paths = sorted((tmp_path / "out").rglob("*.nc"))
    assert len(nc_paths) == 3
    moved_at = []
    for path in nc_paths:
        with netCDF4.Dataset(path) as ds:
            assert list(netCDF4.chartostring(ds["station"][:])) == [station.code]
            assert (ds["latitude"][0], ds["longitude"][0], ds["depth"][0]) == (
                station.latitude,
                station.longitude,
                station.depth,
            )
            seconds = np.asarray(ds["time"][:])
            moved_at.append(seconds.min() < MOVE.timestamp() < seconds.max())
            # Where the deployment of the file's first record stood is kept, and it differs.
            deployed = (ds.onc_deployment_latitude, ds.onc_deployment_longitude)
            assert deployed in {(lat, lon) for lat, lon, _ in positions}
    assert moved_at == [False, True, False]
    rows = {
        tuple(line.split(",")[1:5])
        for path in (tmp_path / "out").rglob("*.csv")
        for line in path.read_text().splitlines()[2:]
    }
    assert rows == {
        (station.code, repr(station.latitude), repr(station.longitude), repr(station.depth))
    }

    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "onc": {"token": TOKEN},
                "output": {"root": str(tmp_path / "out")},
                "streams": [
                    {"name": name, "kind": "scalardata", **addressing, "formats": ["netcdf", "csv"]}
                ],
            }
        )
    )
    violations = check_datasets_xml(render_datasets_xml(load_settings(config, environ={})))
    assert not violations, format_violations(violations)
