"""Emulator pages of every scalar device decode to exactly the values a plain ujson parse gives."""

from __future__ import annotations

from array import array
from datetime import datetime, timedelta

import aiohttp
import pytest
import ujson

from pipeline.emulator.catalogue import DEPLOYMENTS, DEVICES
from pipeline.onc.models import ScalarPage, TimeAxis
from pipeline.onc.parsing import decode_scalardata
from tests.integration.onc.conftest import TOKEN, running_emulator

SCALAR_DEVICES = sorted(code for code, device in DEVICES.items() if device.sensors)


def _a_deployed_day(device: str) -> datetime:
    """The day after the device's first deployment began: it has data then."""
    begin = min(d.begin for d in DEPLOYMENTS if d.device == device)
    return datetime.fromisoformat(begin[:10]) + timedelta(days=1)


@pytest.mark.parametrize("device", SCALAR_DEVICES)
async def test_emulator_pages_decode_bit_identical(device: str) -> None:
    day = _a_deployed_day(device)
    params = {
        "deviceCode": device,
        "dateFrom": f"{day:%Y-%m-%d}T00:00:00.000Z",
        "dateTo": f"{day:%Y-%m-%d}T06:00:00.000Z",
        "rowLimit": "20000",
        "token": TOKEN,
    }
    async with (
        running_emulator() as emu,
        aiohttp.ClientSession(emu.onc_url) as session,
        session.get("/api/scalardata/device", params=params) as resp,
    ):
        resp.raise_for_status()
        body = await resp.read()
    data = decode_scalardata(body, url="u")
    given = [item["data"]["values"] for item in data["sensorData"]]
    assert given
    assert all(isinstance(v, array) and v.typecode == "d" for v in given)
    # The axis as text, straight from the body, one object for every sensor holding it.
    axes = [item["data"]["sampleTimes"] for item in data["sensorData"]]
    assert all(isinstance(axis, TimeAxis) for axis in axes)
    assert len({id(axis) for axis in axes}) == 1
    got = ScalarPage.from_api(data)
    want = ScalarPage.from_api(ujson.loads(body))
    assert sum(len(s) for s in got.series) > 10_000
    assert [s.values.tobytes() for s in got.series] == [s.values.tobytes() for s in want.series]
    assert [s.sample_times for s in got.series] == [s.sample_times for s in want.series]
    assert [s.qaqc_flags.tobytes() for s in got.series] == [
        s.qaqc_flags.tobytes() for s in want.series
    ]
