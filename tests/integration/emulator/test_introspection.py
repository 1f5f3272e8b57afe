"""/_emulator/: request log, counts, peak concurrency, ground truth, clock, registry triggers."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import ujson

from pipeline.emulator import Emulator
from tests.integration.emulator.conftest import TOKEN, get


async def test_request_log_redacts_the_token_and_counts(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await get(http, emu.onc_url + "/api/locations", locationCode="NC89")
    await get(
        http,
        emu.onc_url + "/api/scalardata",
        method="getByDevice",
        deviceCode="SBECTD16p7128",
        dateFrom="2023-01-01",
        dateTo="PT1S",
    )
    async with http.get(emu.onc_url + "/_emulator/requests") as resp:
        rows = await resp.json()
    assert [r["endpoint"] for r in rows] == ["locations", "scalardata.device"]
    assert TOKEN not in ujson.dumps(rows)
    assert ["token", "REDACTED"] in rows[0]["query"]
    assert rows[1]["status"] == 200
    assert rows[1]["ended_monotonic"] >= rows[1]["started_monotonic"]
    assert rows[1]["started_wall"].endswith("+00:00")
    async with http.get(emu.onc_url + "/_emulator/counts") as resp:
        counts = await resp.json()
    assert counts["counts"] == {"locations": 1, "scalardata.device": 1}
    async with http.delete(emu.onc_url + "/_emulator/requests") as resp:
        assert resp.status == 200
    assert len(emu.requests) == 0


async def test_peak_in_flight(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.faults = {"rules": [{"kind": "latency", "endpoint": "locations", "seconds": 0.3}]}
    await asyncio.gather(*(get(http, emu.onc_url + "/api/locations") for _ in range(5)))
    assert emu.requests.peak_in_flight == 5
    async with http.get(emu.onc_url + "/_emulator/counts") as resp:
        assert (await resp.json())["peak_in_flight"] == 5


async def test_truth_endpoints_match_the_python_accessors(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    window = {"dateFrom": "2023-03-01T00:00:00.000Z", "dateTo": "2023-03-01T00:00:10.000Z"}
    async with http.get(
        emu.onc_url + "/_emulator/truth/scalar", params={"deviceCode": "SBECTD16p7128", **window}
    ) as resp:
        scalar = ujson.loads(await resp.read())
    expected = emu.truth.scalar(
        device_code="SBECTD16p7128", date_from=window["dateFrom"], date_to=window["dateTo"]
    )
    assert [row[0] for row in scalar["cond"]] == [r.time for r in expected["cond"]]
    assert all(
        math.isclose(a[1], b.value) for a, b in zip(scalar["cond"], expected["cond"], strict=True)
    )
    async with http.get(
        emu.onc_url + "/_emulator/truth/raw",
        params={"locationCode": "NC89", "deviceCategoryCode": "BPR", **window},
    ) as resp:
        raw = await resp.json()
    assert len(raw) == 10
    async with http.get(
        emu.onc_url + "/_emulator/truth/archive",
        params={
            "deviceCode": "AXISQ6044PTZACCC8E334C53",
            "dateFrom": "2023-12-01",
            "dateTo": "2023-12-01T01:00:00.000Z",
            "fileExtension": "jpg",
        },
    ) as resp:
        files = await resp.json()
    assert len(files) == 4
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in files)
    async with http.get(
        emu.onc_url + "/_emulator/truth/archive",
        params={"dateFrom": "2023-12-01", "dateTo": "2023-12-02"},
    ) as resp:
        assert resp.status == 400


async def test_clock_control(emu: Emulator, http: aiohttp.ClientSession) -> None:
    url = emu.onc_url + "/_emulator/clock"
    async with http.post(url, json={"advance": 90}) as resp:
        assert (await resp.json()) == {"now": "2024-01-10T00:01:30+00:00", "pinned": True}
    async with http.post(url, json={"pin": "2024-02-01T00:00:00Z"}) as resp:
        assert (await resp.json())["now"] == "2024-02-01T00:00:00+00:00"
    async with http.post(url, json={"real": True}) as resp:
        body = await resp.json()
    assert body["pinned"] is False
    assert body["now"] > "2025"
    assert not emu.clock.pinned


async def test_registry_triggers_are_proxied(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.get(emu.onc_url + "/_emulator/registry/triggers") as resp:
        assert await resp.json() == []
    harvest_id = next(iter(emu.registry.harvests))
    emu.registry.queue_harvest(harvest_id)
    async with http.get(emu.onc_url + "/_emulator/registry/triggers") as resp:
        (row,) = await resp.json()
    assert row["harvest_id"] == harvest_id
