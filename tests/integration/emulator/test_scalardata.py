"""scalardata over real sockets: paging exactness, `next`, NaN, both URL styles, errors."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp
import pytest
import ujson

from pipeline.emulator import Emulator
from pipeline.emulator.app import PageCache
from pipeline.emulator.catalogue import iso_ms, ms
from pipeline.emulator.synthetic import GAP_FILL
from tests.integration.emulator.conftest import TOKEN, get


async def _all_pages(http: aiohttp.ClientSession, url: str, **params: Any) -> list[Any]:
    pages = []
    status, body = await get(http, url, **params)
    assert status == 200
    pages.append(body)
    while body["next"] is not None:
        async with http.get(body["next"]["url"]) as resp:
            assert resp.status == 200
            body = ujson.loads(await resp.read())
        pages.append(body)
    return pages


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/api/scalardata/location", {}),
        ("/api/scalardata", {"method": "getByLocation"}),
    ],
)
async def test_pages_join_to_exact_ground_truth(
    emu: Emulator, http: aiohttp.ClientSession, path: str, extra: dict[str, str]
) -> None:
    # BACVP samples at 4 Hz: 2 hours around the first gap-filled outage of a day.
    device = emu.context.catalogue.devices["SBECTD16p7119"]
    day = emu.context.synth.signal(device).rows(
        ms("2023-08-27T00:00:00.000Z"), ms("2023-08-28T00:00:00.000Z"), 10**7, gap_fill=True
    )
    gap = iso_ms(int(day.times[day.kinds == GAP_FILL][0]))
    hour = int(gap[11:13])
    params = {
        **extra,
        "locationCode": "BACVP",
        "deviceCategoryCode": "CTD",
        "dateFrom": f"2023-08-27T{hour:02d}:00:00.000Z",
        "dateTo": f"2023-08-27T{hour + 1:02d}:59:59.999Z",
        "rowLimit": "7000",
    }
    pages = await _all_pages(http, emu.onc_url + path, **params)
    assert len(pages) >= 4
    truth = emu.truth.scalar(
        location_code="BACVP",
        device_category_code="CTD",
        date_from=params["dateFrom"],
        date_to=params["dateTo"],
    )
    for idx, sensor in enumerate(pages[0]["sensorData"]):
        times: list[str] = []
        values: list[float] = []
        flags: list[int] = []
        for page in pages:
            data = page["sensorData"][idx]["data"]
            assert len(data["sampleTimes"]) <= 7000
            times += data["sampleTimes"]
            values += data["values"]
            flags += data["qaqcFlags"]
        expected = truth[sensor["sensorCode"]]
        assert times == [r.time for r in expected]
        assert flags == [r.flag for r in expected]
        assert [None if math.isnan(v) else v for v in values] == [
            None if math.isnan(r.value) else r.value for r in expected
        ]
    gap_rows = [r for r in truth["cond"] if r.flag == 9]
    assert gap_rows
    assert all(math.isnan(r.value) for r in gap_rows)


async def test_next_keeps_params_and_moves_date_from_to_first_row_left_out(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    url = (
        f"{emu.onc_url}/api/scalardata?method=getByDevice&token={TOKEN}"
        "&deviceCode=SBECTD19p7027&dateFrom=2019-02-16T00:06:26.028Z"
        "&dateTo=2019-02-16T02:00:00.010Z&rowLimit=2"
    )
    async with http.get(url) as resp:
        page1 = ujson.loads(await resp.read())
    nxt = page1["next"]
    assert list(nxt["parameters"]) == [
        "method",
        "deviceCode",
        "dateTo",
        "rowLimit",
        "dateFrom",
        "token",
    ]
    assert nxt["parameters"]["rowLimit"] == "2"  # original spelling: a string
    assert nxt["parameters"]["dateTo"] == "2019-02-16T02:00:00.010Z"
    assert nxt["parameters"]["token"] == TOKEN
    assert f"token={TOKEN}" in nxt["url"]
    assert "queryURL" in page1
    assert "queryUrl" not in page1
    three = emu.truth.scalar(
        device_code="SBECTD19p7027",
        date_from="2019-02-16T00:06:26.028Z",
        date_to="2019-02-16T00:10:00.000Z",
    )["cond"][:3]
    assert nxt["parameters"]["dateFrom"] == three[2].time
    assert page1["sensorData"][0]["data"]["sampleTimes"] == [three[0].time, three[1].time]


async def test_bare_nan_tokens_and_flag_9_in_gap_fill_rows(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    truth = emu.truth.scalar(
        device_code="SBECTD16p7128",
        date_from="2023-03-01T00:00:00.000Z",
        date_to="2023-03-03T00:00:00.000Z",
    )["Temperature"]
    first_gap = next(r for r in truth if r.flag == 9)
    async with http.get(
        f"{emu.onc_url}/api/scalardata/device",
        params={
            "deviceCode": "SBECTD16p7128",
            "dateFrom": first_gap.time,
            "rowLimit": "3",
            "dateTo": "2023-03-03T00:00:00.000Z",
            "token": TOKEN,
        },
    ) as resp:
        raw = await resp.read()
    assert b"NaN" in raw
    body = ujson.loads(raw)
    temp = next(s for s in body["sensorData"] if s["sensorCode"] == "Temperature")
    assert temp["data"]["qaqcFlags"][0] == 9
    assert math.isnan(temp["data"]["values"][0])


async def test_output_format_object_and_metadata_full(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(
        http,
        f"{emu.onc_url}/api/scalardata/device",
        deviceCode="SBECTD16p7128",
        dateFrom="2023-03-01",
        dateTo="2023-03-01T00:00:10.000Z",
        outputFormat="object",
        metadata="full",
    )
    assert status == 200
    row = body["sensorData"][0]["data"][0]
    assert set(row) == {"sampleTime", "value", "qaqcFlag"}
    assert body["sensorData"][0]["outputFormat"] == "object"
    assert set(body["qaqcFlagInfo"]) == {"0", "1", "2", "3", "4", "6", "7", "8", "9"}
    assert body["citations"][0]["doi"]
    assert body["parameters"]["metaData"] == "full"


async def test_get_latest_returns_last_row_before_horizon(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(
        http, f"{emu.onc_url}/api/scalardata/device", deviceCode="SBECTD16p7128", getLatest="true"
    )
    assert status == 200
    times = body["sensorData"][0]["data"]["sampleTimes"]
    assert len(times) == 1
    assert body["next"] is None
    truth = emu.truth.scalar(
        device_code="SBECTD16p7128",
        date_from="2024-01-09T23:00:00.000Z",
        date_to="2024-01-10T00:00:00.000Z",
    )["cond"]
    assert times[0] == truth[-1].time


async def test_clock_moves_the_data_horizon(emu: Emulator, http: aiohttp.ClientSession) -> None:
    url = f"{emu.onc_url}/api/scalardata/device"
    window = {
        "deviceCode": "SBECTD16p7128",
        "dateFrom": "2024-01-09T23:59:00.000Z",
        "dateTo": "2024-01-10T00:01:00.000Z",
    }
    _, before = await get(http, url, **window)
    emu.clock.advance(60)
    _, after = await get(http, url, **window)
    n_before = len(before["sensorData"][0]["data"]["sampleTimes"])
    n_after = len(after["sensorData"][0]["data"]["sampleTimes"])
    assert n_after > n_before
    last = after["sensorData"][0]["data"]["sampleTimes"][-1]
    assert last < "2024-01-10T00:00:58.001Z"  # now (00:01) minus the 2 s latency


async def test_no_data_by_location_is_400_127_and_by_device_is_null(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(
        http,
        f"{emu.onc_url}/api/scalardata/location",
        locationCode="BACVP",
        deviceCategoryCode="CTD",
        dateFrom="2009-08-15",
        dateTo="2009-08-18",
    )
    assert status == 400
    assert body["errors"][0]["errorCode"] == 127
    assert "(20090815T000000.000Z to 20090817T235959.999Z)" in body["errors"][0]["errorMessage"]
    status, body = await get(
        http,
        f"{emu.onc_url}/api/scalardata/device",
        deviceCode="SBECTD16p7119",
        dateFrom="2009-08-15",
        dateTo="2009-08-18",
    )
    assert status == 200
    assert body["sensorData"] is None


@pytest.mark.parametrize(
    ("params", "code", "parameter"),
    [
        ({"dateFrom": "2023-01-02", "dateTo": "2023-01-01"}, 23, "dateFrom, dateTo"),
        ({"dateFrom": "2030-01-01", "dateTo": "2030-01-02"}, 25, "dateFrom"),
        ({"dateFrom": "yesterday"}, 127, "dateFrom"),
        ({"dateFrom": "-P1D", "dateTo": "PT5S"}, 127, "dateFrom, dateTo"),
        ({"rowLimit": "-3"}, 127, "rowLimit"),
        ({"outputFormat": "csv"}, 127, "outputFormat"),
        ({"colour": "blue"}, 129, "colour"),
        ({"deviceCode": ""}, 128, "deviceCode"),
    ],
)
async def test_errors(
    emu: Emulator, http: aiohttp.ClientSession, params: dict[str, str], code: int, parameter: str
) -> None:
    query = {"deviceCode": "SBECTD16p7128", **params}
    status, body = await get(http, f"{emu.onc_url}/api/scalardata/device", **query)
    assert status == 400
    assert body["errors"][0]["errorCode"] == code
    assert body["errors"][0]["parameter"] == parameter


async def test_date_forms_and_durations(emu: Emulator, http: aiohttp.ClientSession) -> None:
    url = f"{emu.onc_url}/api/scalardata/device"
    _, day = await get(
        http,
        url,
        deviceCode="SBECTD16p7128",
        dateFrom="2023-03-01",
        dateTo="2023-03-01T00:00:05.000Z",
    )
    _, dur_to = await get(
        http, url, deviceCode="SBECTD16p7128", dateFrom="2023-03-01T00:00:00.000Z", dateTo="PT5S"
    )
    _, dur_from = await get(
        http, url, deviceCode="SBECTD16p7128", dateFrom="-PT5S", dateTo="2023-03-01T00:00:05.000Z"
    )
    times = day["sensorData"][0]["data"]["sampleTimes"]
    assert len(times) == 5
    assert times == dur_to["sensorData"][0]["data"]["sampleTimes"]
    assert times == dur_from["sensorData"][0]["data"]["sampleTimes"]


async def test_row_limit_is_capped_at_100000(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, body = await get(
        http,
        f"{emu.onc_url}/api/scalardata/location",
        locationCode="BACVP",
        deviceCategoryCode="CTD",
        dateFrom="2023-01-01",
        dateTo="2023-01-02",
        rowLimit="250000",
        propertyCode="conductivity",
    )
    assert len(body["sensorData"]) == 1
    assert len(body["sensorData"][0]["data"]["values"]) == 100_000
    assert body["next"]["parameters"]["rowLimit"] == "250000"


async def test_property_and_exclude_scalar_data(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, body = await get(
        http,
        f"{emu.onc_url}/api/scalardata/location",
        locationCode="NCBC",
        deviceCategoryCode="BPR",
        returnOptions="excludeScalarData",
        dateFrom="2023-01-01",
        dateTo="2023-01-01T00:01:00.000Z",
    )
    assert [s["sensorCode"] for s in body["sensorData"]] == [
        "Pressure",
        "Temperature",
        "temperature1",
        "temperature2",
    ]
    assert all("data" not in s for s in body["sensorData"])
    _, body = await get(
        http,
        f"{emu.onc_url}/api/scalardata/location",
        locationCode="NC89",
        deviceCategoryCode="BPR",
        sensorCategoryCodes="dart_pressure_residual",
        dateFrom="2021-01-28",
        dateTo="PT5S",
    )
    (sensor,) = body["sensorData"]
    assert "propertyCode" not in sensor  # derived sensor, as in the 2025 tutorial
    assert sensor["actualSamples"] == len(sensor["data"]["values"])


async def test_wrong_token_gets_the_exact_401_body(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(
        http, f"{emu.onc_url}/api/scalardata/device", deviceCode="SBECTD16p7128", token="nope"
    )
    assert status == 401
    assert body == {
        "errors": [
            {"errorCode": 127, "errorMessage": "Invalid parameter value", "parameter": "token"}
        ]
    }


async def test_same_query_is_served_from_cache(emu: Emulator, http: aiohttp.ClientSession) -> None:
    params = {
        "deviceCode": "SBECTD16p7128",
        "dateFrom": "2023-01-01",
        "dateTo": "2023-01-02",
        "rowLimit": "20000",
    }
    _, first = await get(http, f"{emu.onc_url}/api/scalardata/device", **params)
    _, second = await get(http, f"{emu.onc_url}/api/scalardata/device", **params)
    assert emu.context.cache.hits == 1
    assert ujson.dumps(first) == ujson.dumps(second)


async def test_a_page_asked_for_at_once_is_rendered_once(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    # A day at 1 Hz: rendered in a thread, so the second request arrives while it renders.
    params = {
        "deviceCode": "SBECTD16p7128",
        "dateFrom": "2023-01-01",
        "dateTo": "2023-01-02",
        "rowLimit": "100000",
    }
    url = f"{emu.onc_url}/api/scalardata/device"
    (_, first), (_, second) = await asyncio.gather(
        get(http, url, **params), get(http, url, **params)
    )
    # The second took the first's page from its renderer (render counts are checked in
    # tests/unit/emulator/test_page_renders.py); the page is then in the cache.
    assert ujson.dumps(first) == ujson.dumps(second)
    assert not emu.context.rendering
    _, third = await get(http, url, **params)
    assert emu.context.cache.hits == 1
    assert ujson.dumps(third) == ujson.dumps(first)


async def test_requests_that_select_the_same_rows_share_their_sensor_data(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    # Streams asking for one device a millisecond apart (each pass's `dateTo` is its own
    # clock's) select the same samples: the emulator renders their `sensorData` once.
    device = emu.context.catalogue.devices["SBECTD16p7128"]
    start = ms("2023-01-01T00:00:00.000Z")
    sample = int(
        emu.context.synth.signal(device)
        .rows(start, start + 3_600_000, 10**6, gap_fill=True)
        .times[1_800]
    )
    url = f"{emu.onc_url}/api/scalardata/device"
    bodies = []
    for end in (sample - 2, sample - 1, sample + 1):
        params = {"deviceCode": device.code, "dateFrom": iso_ms(start), "dateTo": iso_ms(end)}
        status, body = await get(http, url, **params, metaData="full")
        assert status == 200
        bodies.append(body)
    first, second, third = bodies
    assert first["parameters"]["dateTo"] != second["parameters"]["dateTo"]
    assert ujson.dumps(first["sensorData"]) == ujson.dumps(second["sensorData"])  # NaN too
    assert len(third["sensorData"][0]["data"]["values"]) == (
        len(first["sensorData"][0]["data"]["values"]) + 1
    )
    assert emu.context.cache.hits == 0
    assert emu.context.sensor_data.hits == 1
    # The members ONC writes after `sensorData` with metaData=full keep their place.
    assert list(first) == [
        "messages", "next", "parameters", "queryUrl", "sensorData",
        "citations", "qaqcFlagInfo", "metadata",
    ]  # fmt: skip


async def test_a_page_from_the_sensor_data_cache_is_the_rendered_pages_bytes(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    # Two hours around a gap-filled outage of BACVP's 4 Hz CTD (NaN in its values).
    device = emu.context.catalogue.devices["SBECTD16p7119"]
    day = emu.context.synth.signal(device).rows(
        ms("2023-08-27T00:00:00.000Z"), ms("2023-08-28T00:00:00.000Z"), 10**7, gap_fill=True
    )
    gap = int(day.times[day.kinds == GAP_FILL][0])
    params = {
        "deviceCode": device.code,
        "dateFrom": iso_ms(gap - 3_600_000),
        "dateTo": iso_ms(gap + 3_600_000),
        "rowLimit": "20000",
        "token": TOKEN,
    }
    url = f"{emu.onc_url}/api/scalardata/device"
    bodies = []
    for _ in range(2):
        emu.context.cache = PageCache(8)  # the page itself rendered again, its data not
        async with http.get(url, params=params) as resp:
            assert resp.status == 200
            bodies.append(await resp.read())
    assert emu.context.sensor_data.hits == 1
    assert bodies[0] == bodies[1]
    assert b"NaN" in bodies[0]
