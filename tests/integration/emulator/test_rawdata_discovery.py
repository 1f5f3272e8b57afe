"""rawdata and the discovery services over real sockets."""

from __future__ import annotations

import aiohttp
import pytest
import ujson

from pipeline.emulator import Emulator
from tests.integration.emulator.conftest import TOKEN, get


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/api/rawdata/location", {"locationCode": "NC89", "deviceCategoryCode": "BPR"}),
        (
            "/api/rawdata",
            {"method": "getByLocation", "locationCode": "NC89", "deviceCategoryCode": "BPR"},
        ),
        ("/api/rawdata/device", {"deviceCode": "BPR_889"}),
        ("/api/rawdata", {"method": "getByDevice", "deviceCode": "BPR_889"}),
    ],
)
async def test_raw_pages_join_exactly_and_next_is_last_plus_1ms(
    emu: Emulator, http: aiohttp.ClientSession, path: str, extra: dict[str, str]
) -> None:
    window = {"dateFrom": "2020-01-28T00:00:00.000Z", "dateTo": "2020-01-28T01:00:00.000Z"}
    status, body = await get(http, emu.onc_url + path, **extra, **window, rowLimit="1000")
    assert status == 200
    times, readings, pages = [], [], 0
    while True:
        pages += 1
        data = body["data"]
        assert data["lineTypes"] == [" "] * len(data["times"])
        times += data["times"]
        readings += data["readings"]
        if body["next"] is None:
            break
        last = data["times"][-1]
        nxt = body["next"]["parameters"]["dateFrom"]
        assert nxt[:20] == last[:20]
        assert int(nxt[20:23]) == (int(last[20:23]) + 1) % 1000
        async with http.get(body["next"]["url"]) as resp:
            body = ujson.loads(await resp.read())
    assert pages >= 3
    truth = emu.truth.raw(
        device_code="BPR_889", **{"date_from": window["dateFrom"], "date_to": window["dateTo"]}
    )
    assert times == [r.time for r in truth]
    assert readings == [r.reading for r in truth]
    assert all(len(r) == 26 for r in readings)  # 13-byte hex frames, like the tutorial


async def test_raw_shapes_no_data_and_row_limit_quirk(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    url = emu.onc_url + "/api/rawdata/device"
    status, body = await get(
        http, url, deviceCode="BPR_889", dateFrom="2008-01-01", dateTo="2008-01-02"
    )
    assert status == 200
    assert body["data"] == {"lineTypes": [], "readings": [], "times": []}
    assert set(body) == {"data", "next", "outputFormat", "queryUrl"}
    for limit in ("0", "-5", "100001"):
        _, page = await get(
            http,
            url,
            deviceCode="BPR_889",
            dateFrom="2020-01-01",
            dateTo="2020-01-03",
            rowLimit=limit,
        )
        assert len(page["data"]["times"]) == 100_000
    status, body = await get(
        http,
        emu.onc_url + "/api/rawdata/location",
        locationCode="NC89",
        deviceCategoryCode="BPR",
        dateFrom="2008-01-01",
        dateTo="2008-01-02",
    )
    assert status == 400
    assert body["errors"][0]["errorCode"] == 127
    _, obj = await get(
        http,
        url,
        deviceCode="SBECTD16p7128",
        dateFrom="2023-01-01",
        dateTo="PT3S",
        outputFormat="object",
        convertHexToDecimal="true",
    )
    assert obj["outputFormat"] == "object"
    assert obj["data"][0]["rawData"].startswith("#")
    _, dec = await get(
        http,
        url,
        deviceCode="BPR_889",
        dateFrom="2020-01-01",
        dateTo="PT3S",
        convertHexToDecimal="true",
    )
    assert dec["data"]["readings"][0].isdigit()


async def test_raw_get_latest(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, body = await get(
        http,
        emu.onc_url + "/api/rawdata/device",
        deviceCode="RBRQUARTZ3BPR203659",
        getLatest="true",
    )
    (last,) = body["data"]["times"]
    truth = emu.truth.raw(
        device_code="RBRQUARTZ3BPR203659",
        date_from="2024-01-09T23:00:00.000Z",
        date_to="2024-01-10T00:00:00.000Z",
    )
    assert last == truth[-1].time


@pytest.mark.parametrize("style", ["path", "method"])
async def test_discovery_endpoints(emu: Emulator, http: aiohttp.ClientSession, style: str) -> None:
    def url(service: str) -> str:
        return f"{emu.onc_url}/api/{service}"

    extra = {"method": "get"} if style == "method" else {}
    status, locs = await get(http, url("locations"), **extra, locationCode="NC89")
    assert status == 200
    assert locs[0]["hasDeviceData"] == "true"
    assert locs[0]["hasPropertyData"] in ("true", "false")
    _, deps = await get(
        http, url("deployments"), **extra, locationCode="NC89", deviceCategoryCode="BPR"
    )
    assert [d["deviceCode"] for d in deps] == ["BPR_889", "RBRQUARTZ3BPR203659"]
    assert deps[1]["end"] is None
    assert deps[0]["hasDeviceData"] is True
    _, devices = await get(http, url("devices"), **extra, deviceCode="BPR_889")
    assert devices[0]["deviceName"] == "NRCan Bottom Pressure Recorder 88"
    _, cats = await get(http, url("deviceCategories"), **extra, locationCode="BACAX")
    assert [c["deviceCategoryCode"] for c in cats] == ["CTD"]
    _, props = await get(
        http,
        url("properties"),
        **extra,
        locationCode="BACAX",
        deviceCategoryCode="CTD",
        propertyCode="conductivity",
    )
    assert props[0]["uom"] == "S/m"
    assert props[0]["hasPropertyData"] is True
    _, products = await get(http, url("dataProducts"), **extra, dataProductCode="TSSD")
    assert {p["extension"] for p in products} == {"csv", "mat", "json"}
    status, body = await get(http, url("locations"), **extra, locationCode="NOWHERE")
    assert status == 404
    assert body["message"].startswith("No metadata/data found")
    status, body = await get(http, url("locations"), **extra, bogus="1")
    assert status == 400
    assert body["errors"][0]["errorCode"] == 129


async def test_deployments_in_a_time_range_and_availability(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    _, deps = await get(
        http,
        emu.onc_url + "/api/deployments",
        locationCode="NC89",
        deviceCategoryCode="BPR",
        dateFrom="2023-01-01",
    )
    assert [d["deviceCode"] for d in deps] == ["RBRQUARTZ3BPR203659"]
    status, avail = await get(
        http,
        emu.onc_url + "/api/dataAvailability/dataproducts",
        locationCode="NCBC",
        deviceCategoryCode="BPR",
        dateFrom="2023-11-23",
        dateTo="2023-11-30",
    )
    assert status == 200
    (row,) = avail["availableDataProducts"]
    assert row["fileCount"] == 7
    assert row["dataProductCode"] == "LF"


async def test_unknown_method_and_missing_method(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, emu.onc_url + "/api/scalardata", method="getEverything")
    assert status == 400
    assert body["errors"][0] == {
        "errorCode": 127,
        "errorMessage": "Invalid parameter value",
        "parameter": "method",
    }
    status, body = await get(http, emu.onc_url + "/api/scalardata")
    assert status == 400
    assert body["errors"][0]["errorCode"] == 128
    async with http.get(emu.onc_url + f"/api/nothing/here?token={TOKEN}") as resp:
        assert resp.status == 404
