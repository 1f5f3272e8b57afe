"""archivefile over real sockets: listings, paging, streamed downloads, Range, errors."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest
import ujson

from pipeline.emulator import Emulator
from tests.integration.emulator.conftest import TOKEN, EmulatorFactory, get

DAY = {"dateFrom": "2023-12-01T00:00:00.000Z", "dateTo": "2023-12-01T06:00:00.000Z"}


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (
            "/api/archivefile/location",
            {"locationCode": "SEVIP", "deviceCategoryCode": "HYDROPHONE"},
        ),
        ("/api/archivefiles", {"method": "getListByDevice", "deviceCode": "ICLISTENHF1560"}),
    ],
)
async def test_listing_pages_join_without_gap_or_duplicate(
    emu: Emulator, http: aiohttp.ClientSession, path: str, extra: dict[str, str]
) -> None:
    status, body = await get(http, emu.onc_url + path, **extra, **DAY, rowLimit="25")
    assert status == 200
    names: list[str] = list(body["files"])
    while body["next"] is not None:
        assert list(body["next"]["parameters"])[-2:] == ["dateFrom", "token"]
        async with http.get(body["next"]["url"]) as resp:
            body = ujson.loads(await resp.read())
        names += body["files"]
    truth = emu.truth.archive_files(
        device_code="ICLISTENHF1560",
        with_sha256=False,
        date_from=DAY["dateFrom"],
        date_to=DAY["dateTo"],
    )
    assert names == [f.filename for f in truth]
    assert len(names) == 6 * 12 * 2  # a wav and a -spect.mat every 5 minutes


async def test_listing_objects_page_param_and_filters(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    url = emu.onc_url + "/api/archivefile/device"
    _, body = await get(
        http,
        url,
        deviceCode="ICLISTENHF1560",
        **DAY,
        returnOptions="all",
        fileExtension="wav",
        rowLimit="10",
        page="2",
    )
    rows = body["files"]
    assert len(rows) == 10
    assert all(r["filename"].endswith(".wav") for r in rows)
    assert {
        "filename",
        "dateFrom",
        "dateTo",
        "dataProductCode",
        "uncompressedFileSize",
        "fileSize",
        "modifyDate",
    } <= set(rows[0])
    truth = emu.truth.archive_files(
        device_code="ICLISTENHF1560", extension="wav", with_sha256=False, **_dates()
    )
    assert [r["filename"] for r in rows] == [f.filename for f in truth[10:20]]
    assert [r["uncompressedFileSize"] for r in rows] == [f.size for f in truth[10:20]]
    assert body["next"]["parameters"]["page"] == "3"
    _, mats = await get(http, url, deviceCode="ICLISTENHF1560", **DAY, dataProductCode="HSD")
    assert mats["files"]
    assert all(n.endswith("-spect.mat") for n in mats["files"])
    _, latest = await get(http, url, deviceCode="ICLISTENHF1560", getLatest="true")
    recent = emu.truth.archive_files(
        device_code="ICLISTENHF1560",
        with_sha256=False,
        date_from="2024-01-09T23:00:00.000Z",
        date_to="2024-01-10T00:00:00.000Z",
    )
    assert latest["files"] == [recent[-1].filename]


def _dates() -> dict[str, str]:
    return {"date_from": DAY["dateFrom"], "date_to": DAY["dateTo"]}


async def test_listing_no_data(emu: Emulator, http: aiohttp.ClientSession) -> None:
    status, body = await get(
        http,
        emu.onc_url + "/api/archivefile/device",
        deviceCode="ICLISTENHF1560",
        dateFrom="2010-01-01",
        dateTo="2010-01-02",
    )
    assert status == 200
    assert body == {"files": [], "next": None}
    status, body = await get(
        http,
        emu.onc_url + "/api/archivefile/location",
        locationCode="SEVIP",
        deviceCategoryCode="HYDROPHONE",
        dateFrom="2010-01-01",
        dateTo="2010-01-02",
    )
    assert status == 400
    assert body["errors"][0]["errorCode"] == 127


async def test_download_streams_exact_bytes_with_range(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    (f, *_) = emu.truth.archive_files(device_code="ICLISTENHF1560", extension="wav", **_dates())
    url = emu.onc_url + "/api/archivefile/download"
    params = {"filename": f.filename, "token": TOKEN}
    async with http.get(url, params=params) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(f.size)
        assert resp.headers["Accept-Ranges"] == "bytes"
        whole = await resp.read()
    assert hashlib.sha256(whole).hexdigest() == f.sha256
    assert whole[:4] == b"RIFF"
    async with http.get(url, params=params, headers={"Range": "bytes=1048000-1049999"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 1048000-1049999/{f.size}"
        assert await resp.read() == whole[1048000:1050000]
    async with http.get(url, params=params, headers={"Range": "bytes=-100"}) as resp:
        assert resp.status == 206
        assert await resp.read() == whole[-100:]
    async with http.get(url, params=params, headers={"Range": f"bytes={f.size}-"}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{f.size}"
    async with http.head(url, params=params) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(f.size)


async def test_range_switched_off_answers_the_whole_body(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(archive_range=False)
    (f, *_) = emu.truth.archive_files(
        device_code="AXISQ6044PTZACCC8E334C53", extension="jpg", **_dates()
    )
    async with http.get(
        emu.onc_url + "/api/archivefile/download",
        params={"filename": f.filename, "token": TOKEN},
        headers={"Range": "bytes=0-99"},
    ) as resp:
        assert resp.status == 200
        assert "Accept-Ranges" not in resp.headers
        body = await resp.read()
    assert len(body) == f.size
    assert hashlib.sha256(body).hexdigest() == f.sha256


async def test_configured_sizes(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(archive_file_sizes={"ICLISTENHF1560.wav": 3_000_001})
    files = emu.truth.archive_files(
        device_code="ICLISTENHF1560", extension="wav", with_sha256=False, **_dates()
    )
    assert {f.size for f in files} == {3_000_001}
    async with http.get(
        emu.onc_url + "/api/archivefile/download",
        params={"filename": files[3].filename, "token": TOKEN},
    ) as resp:
        assert len(await resp.read()) == 3_000_001


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, 128),
        ({"filename": "ICLISTENHF1560_20231201T000001.000Z.wav"}, 96),  # off the 5-minute grid
        ({"filename": "ICLISTENHF1560_20300101T000000.000Z.wav"}, 96),  # not yet archived
        ({"filename": "NOPE_20231201T000000.000Z.wav"}, 96),
        ({"filename": "whatever.txt"}, 96),
    ],
)
async def test_download_errors(
    emu: Emulator, http: aiohttp.ClientSession, params: dict[str, str], code: int
) -> None:
    status, body = await get(http, emu.onc_url + "/api/archivefile/download", **params)
    assert status == 400
    assert body["errors"][0]["errorCode"] == code


async def test_method_style_get_file(emu: Emulator, http: aiohttp.ClientSession) -> None:
    (f, *_) = emu.truth.archive_files(
        device_code="AXISQ6044PTZACCC8E334C53", extension="jpg", **_dates()
    )
    status, body = await get(
        http, emu.onc_url + "/api/archivefiles", method="getFile", filename=f.filename
    )
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == f.sha256
