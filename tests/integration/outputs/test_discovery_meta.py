"""DatasetMeta built from the emulator's discovery endpoints through the real client."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.onc import OncClient
from tests.integration.outputs.conftest import meta_for, stream


async def test_location_stream_gets_every_deployment_and_its_doi(onc: OncClient) -> None:
    meta = await meta_for(onc, stream("ctd", location_code="BACAX", device_category_code="CTD"))
    assert meta.dataset_id == "onc_bacax_ctd"
    assert meta.platform_name == "Barkley Canyon Axis"
    assert meta.instrument == "Conductivity Temperature Depth"
    assert [p.device_code for p in meta.positions] == ["SBECTD16p6002", "SBECTD16p7128"]
    now = meta.position_at(datetime(2026, 11, 20, tzinfo=UTC))
    assert (now.latitude, now.longitude, now.depth) == (48.316585, -126.050798, 985.0)
    assert now.doi == "10.80242/8f1e2d3c-1111-4a2b-9c3d-5e6f7a8b9c0d"
    assert meta.properties["seawatertemperature"].uom == "C"
    assert meta.base_url.startswith("http://127.0.0.1:")


async def test_device_stream_finds_its_location_and_category(onc: OncClient) -> None:
    meta = await meta_for(onc, stream("bpr", device_code="BPR-Folger-59"), title="Folger BPR")
    assert meta.dataset_id == "onc_bprfolger59"
    assert meta.platform_code == "NCBC"
    assert meta.instrument == "Bottom Pressure Recorder"
    assert meta.endpoint == "/api/scalardata/device"
    assert meta.attributes["title"] == "Folger BPR"
    assert meta.positions[0].depth == 2660.0
