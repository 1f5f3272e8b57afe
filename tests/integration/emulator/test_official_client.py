"""The official ONC client (PyPI `onc`), unmodified, completes against the emulator."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import Emulator
from tests.integration.emulator.conftest import TOKEN, EmulatorFactory

onc = pytest.importorskip("onc")


def _client(emu: Emulator, out: Path) -> Any:
    client = onc.ONC(TOKEN, showInfo=False, showWarning=False, outPath=out, timeout=60)
    client.baseUrl = emu.onc_url + "/"  # the documented way to point it elsewhere
    return client


async def test_scalar_and_raw_all_pages(emu: Emulator, tmp_path: Path) -> None:
    client = _client(emu, tmp_path)
    window = {"dateFrom": "2023-05-01T00:00:00.000Z", "dateTo": "2023-05-01T00:20:00.000Z"}
    scalar = await asyncio.to_thread(
        client.getScalardataByLocation,
        {
            "locationCode": "BACAX",
            "deviceCategoryCode": "CTD",
            "rowLimit": 300,
            **window,
        },
        allPages=True,
    )
    truth = emu.truth.scalar(
        location_code="BACAX",
        device_category_code="CTD",
        date_from=window["dateFrom"],
        date_to=window["dateTo"],
    )
    assert len(emu.requests.of("scalardata.location")) >= 4
    assert len(scalar["sensorData"]) == 8
    for sensor in scalar["sensorData"]:
        assert sensor["data"]["sampleTimes"] == [r.time for r in truth[sensor["sensorCode"]]]
    raw = await asyncio.to_thread(
        client.getRawdataByDevice,
        {
            "deviceCode": "BPR_889",
            "rowLimit": 250,
            **{**window, "dateFrom": "2020-01-28"},
            "dateTo": "2020-01-28T00:20:00.000Z",
        },
        allPages=True,
    )
    raw_truth = emu.truth.raw(
        device_code="BPR_889", date_from="2020-01-28", date_to="2020-01-28T00:20:00.000Z"
    )
    assert raw["data"]["readings"] == [r.reading for r in raw_truth]
    assert len(emu.requests.of("rawdata.device")) >= 4


async def test_archive_list_and_download(emu: Emulator, tmp_path: Path) -> None:
    client = _client(emu, tmp_path)
    listing = await asyncio.to_thread(
        client.getArchivefile,
        {
            "deviceCode": "AXISQ6044PTZACCC8E334C53",
            "dateFrom": "2023-12-01T00:00:00.000Z",
            "dateTo": "2023-12-01T03:00:00.000Z",
            "rowLimit": 5,
        },
        allPages=True,
    )
    truth = emu.truth.archive_files(
        device_code="AXISQ6044PTZACCC8E334C53",
        date_from="2023-12-01T00:00:00.000Z",
        date_to="2023-12-01T03:00:00.000Z",
    )
    assert listing["files"] == [f.filename for f in truth]
    assert len(emu.requests.of("archivefile.device")) >= 5
    jpg = next(f for f in truth if f.filename.endswith(".jpg"))
    result = await asyncio.to_thread(client.downloadArchivefile, jpg.filename)
    assert result["status"] == "completed"
    assert result["size"] == jpg.size
    assert hashlib.sha256((tmp_path / jpg.filename).read_bytes()).hexdigest() == jpg.sha256


async def test_order_data_product(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    # Real clock and a short processing time: the client sees 202 and polls (1 s minimum).
    emu = await make_emulator(clock_start=None, product_processing_s=1.0)
    client = _client(emu, tmp_path)
    result = await asyncio.to_thread(
        client.orderDataProduct,
        {
            "locationCode": "NC89",
            "deviceCategoryCode": "CTD",
            "dataProductCode": "TSSD",
            "extension": "csv",
            "dateFrom": "2023-01-19T00:00:00.000Z",
            "dateTo": "2023-01-19T00:30:00.000Z",
            "dpo_qualityControl": 1,
            "dpo_resample": "none",
            "dpo_dataGaps": 0,
        },
    )
    files = result["downloadResults"]
    assert [f["index"] for f in files] == ["1", "meta"]
    assert all(f["status"] == "complete" and f["downloaded"] for f in files)
    csv = (tmp_path / files[0]["file"]).read_text()
    assert csv.startswith('#"Ocean Networks Canada Data Archive"')
    assert files[1]["file"].endswith("_META.xml")
    assert any(r.status == 202 for r in emu.requests.of("dataProductDelivery.download"))
