"""dataAvailability/dataproducts against the real sample, and injected gaps on every endpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import aiohttp
import ujson

from tests.integration.emulator.conftest import EmulatorFactory, get

SAMPLE = (
    Path(__file__).resolve().parents[3]
    / "tests/fixtures/onc-samples/dataAvailability_NCBC_BPR_docstring.json"
)
# The sample's own query, and an outage of the day its answer reports with coverage 0.0.
QUERY = {
    "locationCode": "NCBC",
    "deviceCategoryCode": "BPR",
    "dateFrom": "2019-11-23",
    "dateTo": "2019-11-30",
}
NOV30 = {
    "device": "BPR-Folger-59",
    "from": "2019-11-30T00:00:00Z",
    "to": "2019-12-01T00:00:00Z",
}


async def test_answer_matches_the_sample(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator()
    status, body = await get(http, f"{emu.onc_url}/api/dataAvailability/dataproducts", **QUERY)
    assert status == 200, body
    sample = ujson.loads(SAMPLE.read_text())
    assert set(body) == set(sample)
    assert body["next"] is None
    assert body["messages"] == []
    [row] = body["availableDataProducts"]
    [want] = sample["availableDataProducts"]
    assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in want.items()}
    # Every field the sample fixes (all but the sizes, which depend on the synthetic files).
    for key in set(want) - {"totalFileSize", "totalUncompressedFileSize"}:
        assert row[key] == want[key], key
    # Sizes agree with what archivefile lists for the same files.
    status, listing = await get(
        http,
        f"{emu.onc_url}/api/archivefile/location",
        locationCode="NCBC",
        deviceCategoryCode="BPR",
        dateFrom="2019-11-23",
        dateTo="2019-11-30",
        returnOptions="all",
    )
    assert status == 200
    files = listing["files"]
    assert len(files) == row["fileCount"]
    assert row["totalUncompressedFileSize"] == sum(f["uncompressedFileSize"] for f in files)
    assert row["totalFileSize"] == sum(f["fileSize"] for f in files)
    assert row["totalFileSize"] < row["totalUncompressedFileSize"]


async def test_filters_and_errors(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator()
    url = f"{emu.onc_url}/api/dataAvailability/dataproducts"
    status, body = await get(http, url, **QUERY, rowLimit="5")
    assert status == 400
    assert body["errors"][0]["errorCode"] == 129
    status, body = await get(http, url, **{**QUERY, "locationCode": "INVALID"})
    assert status == 400
    assert body["errors"][0]["errorCode"] == 127
    status, body = await get(
        http,
        url,
        deviceCode="ICLISTENHF1560",
        extension="mat",
        dateFrom="2024-01-09T00:00:00.000Z",
        dateTo="2024-01-09T01:00:00.000Z",
    )
    assert status == 200
    [row] = body["availableDataProducts"]
    assert (row["extension"], row["dataProductCode"]) == ("mat", "HSD")
    # 5-minute files offset by 3 s: 13 periods overlap the hour, the first by 3 s only.
    assert row["fileCount"] == 13
    assert row["maxFileCoverage"] == 1.0
    assert row["minFileCoverage"] == 3 / 300
    assert row["minFileCoverageDate"] == "2024-01-08T23:55:03.000Z"
    status, body = await get(http, url, **QUERY, dataProductCode="AD")
    assert status == 404


async def test_outage_is_the_same_hole_everywhere(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    outage = {
        "device": "BPR-Folger-59",
        "from": "2024-01-08T06:00:00Z",
        "to": "2024-01-08T18:00:00Z",
    }
    emu = await make_emulator(gaps={"outages": [outage]})
    window = {"dateFrom": "2024-01-08T07:00:00.000Z", "dateTo": "2024-01-08T07:01:00.000Z"}
    status, page = await get(
        http, f"{emu.onc_url}/api/scalardata/device", deviceCode="BPR-Folger-59", **window
    )
    assert status == 200
    for sensor in page["sensorData"]:
        assert sensor["data"]["qaqcFlags"]
        assert set(sensor["data"]["qaqcFlags"]) == {9}
        assert all(math.isnan(v) for v in sensor["data"]["values"])
    status, page = await get(
        http,
        f"{emu.onc_url}/api/scalardata/device",
        deviceCode="BPR-Folger-59",
        fillGaps="false",
        **window,
    )
    # No rows at all: ONC then answers `sensorData: null`.
    assert status == 200
    assert page["sensorData"] is None
    status, raw = await get(
        http, f"{emu.onc_url}/api/rawdata/device", deviceCode="BPR-Folger-59", **window
    )
    assert status == 200
    assert not (raw["data"] or {}).get("times")
    # Half the day is missing: the day file exists with coverage 0.5 (and the next day's
    # period, beginning at dateTo, is reported with 0.0 as in the sample).
    day = {"dateFrom": "2024-01-08T00:00:00.000Z", "dateTo": "2024-01-09T00:00:00.000Z"}
    status, body = await get(
        http, f"{emu.onc_url}/api/dataAvailability/dataproducts", deviceCode="BPR-Folger-59", **day
    )
    [row] = body["availableDataProducts"]
    assert row["fileCount"] == 1
    assert row["maxFileCoverage"] == 0.5
    assert row["averageFileCoverage"] == 0.25
    truth = await _truth(http, emu.onc_url, deviceCode="BPR-Folger-59", **day)
    assert truth["outages"] == [
        {"dateFrom": "2024-01-08T06:00:00.000Z", "dateTo": "2024-01-08T18:00:00.000Z"}
    ]
    assert [f["coverage"] for f in truth["files"]] == [0.5, 0.0]
    assert truth["availableDataProducts"] == body["availableDataProducts"]


async def test_whole_file_outage_leaves_no_file(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(gaps={"outages": [NOV30]})
    status, listing = await get(
        http,
        f"{emu.onc_url}/api/archivefile/device",
        deviceCode="BPR-Folger-59",
        dateFrom="2019-11-29",
        dateTo="2019-12-02",
    )
    assert status == 200
    assert [name[14:22] for name in listing["files"]] == ["20191129", "20191201"]
    status, _ = await get(
        http,
        f"{emu.onc_url}/api/archivefile/download",
        filename="BPR-Folger-59_20191130T000000.000Z.txt",
    )
    assert status == 400


async def test_late_file_appears_only_after_its_delay(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    late = {
        "device": "ICLISTENHF1560",
        "at": "2024-01-09T12:02:00Z",
        "delay_s": 7200,
        "extension": "wav",
    }
    emu = await make_emulator(gaps={"late_files": [late]}, clock_start=_dt("2024-01-09T13:00:00"))
    window = {"dateFrom": "2024-01-09T11:55:00.000Z", "dateTo": "2024-01-09T12:10:00.000Z"}

    async def wav_files() -> list[str]:
        status, listing = await get(
            http,
            f"{emu.onc_url}/api/archivefile/device",
            deviceCode="ICLISTENHF1560",
            fileExtension="wav",
            **window,
        )
        assert status == 200
        return [str(f) for f in listing["files"]]

    async def wav_count() -> int:
        status, body = await get(
            http,
            f"{emu.onc_url}/api/dataAvailability/dataproducts",
            deviceCode="ICLISTENHF1560",
            extension="wav",
            **window,
        )
        assert status == 200
        return int(body["availableDataProducts"][0]["fileCount"])

    assert len(await wav_files()) == 2
    assert await wav_count() == 2
    truth = await _truth(http, emu.onc_url, deviceCode="ICLISTENHF1560", **window)
    late_row = [f for f in truth["files"] if f["extension"] == "wav" and f["filename"] is None]
    assert [f["dateFrom"] for f in late_row] == ["2024-01-09T12:00:00.000Z"]
    emu.clock.advance(2 * 3600)
    assert len(await wav_files()) == 3
    assert await wav_count() == 3


async def test_gaps_are_replaced_and_checked_at_run_time(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator()
    nov25 = {**NOV30, "from": "2019-11-25T00:00:00Z", "to": "2019-11-26T00:00:00Z"}
    async with http.put(f"{emu.onc_url}/_emulator/gaps", json={"outages": [nov25]}) as resp:
        assert resp.status == 200
        assert (await resp.json())["outages"] == [
            {
                "deviceCode": "BPR-Folger-59",
                "dateFrom": "2019-11-25T00:00:00.000Z",
                "dateTo": "2019-11-26T00:00:00.000Z",
            }
        ]
    _status, body = await get(http, f"{emu.onc_url}/api/dataAvailability/dataproducts", **QUERY)
    [row] = body["availableDataProducts"]
    assert row["fileCount"] == 6
    assert row["minFileCoverageDate"] == "2019-11-25T00:00:00.000Z"
    bad = {"outages": [{"device": "X", "from": "2019-12-01T00:00:00Z", "to": "2019-11-01"}]}
    async with http.put(f"{emu.onc_url}/_emulator/gaps", json=bad) as resp:
        assert resp.status == 400
        problems = (await resp.json())["problems"]
    assert problems
    assert problems[0]["path"] == "gaps.outages[0]"


async def _truth(http: aiohttp.ClientSession, base: str, **params: str) -> Any:
    async with http.get(f"{base}/_emulator/truth/availability", params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def _dt(text: str) -> Any:
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC)
