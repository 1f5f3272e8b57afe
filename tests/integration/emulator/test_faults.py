"""Every fault kind over real sockets, on JSON pages, streamed downloads and the registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp
import pytest

from pipeline.emulator import Emulator
from pipeline.emulator.faults import PROFILES
from pipeline.exceptions import ConfigError
from tests.integration.emulator.conftest import TOKEN, EmulatorFactory, get

LOCS = "/api/locations"


async def _statuses(emu: Emulator, http: aiohttp.ClientSession, n: int) -> list[int]:
    out = []
    for _ in range(n):
        async with http.get(emu.onc_url + LOCS, params={"token": TOKEN}) as resp:
            await resp.read()
            out.append(resp.status)
    return out


async def test_status_rate_is_deterministic_under_seed(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    plan = {
        "rules": [
            {
                "kind": "status",
                "endpoint": "locations",
                "rate": 0.5,
                "statuses": [500, 502, 503, 504],
            }
        ]
    }
    first = await make_emulator(faults=plan)
    second = await make_emulator(faults=plan)
    other = await make_emulator(faults=plan, seed=8)
    a = await _statuses(first, http, 40)
    b = await _statuses(second, http, 40)
    c = await _statuses(other, http, 40)
    assert a == b
    assert a != c
    assert set(a) == {200, 500, 502, 503, 504}
    # Other endpoints are untouched by a rule scoped to `locations`.
    status, _ = await get(http, first.onc_url + "/api/deployments", locationCode="NC89")
    assert status == 200


async def test_n_failures_then_success_per_query(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    emu.faults = {
        "rules": [
            {
                "kind": "status",
                "endpoint": "scalardata.*",
                "status": 503,
                "times": 2,
                "per_query": True,
                "retry_after": 3,
            }
        ]
    }
    url = emu.onc_url + "/api/scalardata/device"
    seen = []
    for date in (
        "2023-01-01",
        "2023-01-01",
        "2023-01-01",
        "2023-01-02",
        "2023-01-02",
        "2023-01-02",
    ):
        async with http.get(
            url,
            params={
                "deviceCode": "SBECTD16p7128",
                "dateFrom": date,
                "dateTo": "PT2S",
                "token": TOKEN,
            },
        ) as resp:
            await resp.read()
            seen.append((resp.status, resp.headers.get("Retry-After")))
    assert seen == [(503, "3"), (503, "3"), (200, None)] * 2


async def test_429_with_retry_after(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.faults = {"rules": [{"kind": "status", "status": 429, "retry_after": 1.5, "times": 1}]}
    async with http.get(emu.onc_url + LOCS, params={"token": TOKEN}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1.5"
    assert await _statuses(emu, http, 1) == [200]


async def test_latency_is_applied(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.faults = {
        "rules": [{"kind": "latency", "endpoint": "locations", "seconds": 0.2, "jitter": 0.05}]
    }
    await _statuses(emu, http, 2)
    for record in emu.requests.of("locations"):
        # A lower bound only: sleeping guarantees at least the configured latency.
        assert record.ended_monotonic - record.started_monotonic >= 0.2


@pytest.mark.parametrize("kind", ["reset", "truncate"])
async def test_body_cut_on_json_and_streamed_download(
    emu: Emulator, http: aiohttp.ClientSession, kind: str
) -> None:
    (f, *_) = emu.truth.archive_files(
        device_code="ICLISTENHF1560", extension="wav", date_from="2023-12-01", date_to="2023-12-02"
    )
    emu.faults = {"rules": [{"kind": kind, "endpoint": "*", "fraction": 0.4, "times": 2}]}
    async with http.get(
        emu.onc_url + "/api/archivefile/download",
        params={"filename": f.filename, "token": TOKEN},
    ) as resp:
        assert resp.headers["Content-Length"] == str(f.size)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(
            emu.onc_url + "/api/scalardata/device",
            params={
                "deviceCode": "SBECTD16p7128",
                "dateFrom": "2023-01-01",
                "dateTo": "PT1H",
                "token": TOKEN,
            },
        ) as resp:
            await resp.read()
    # `times: 2` used up: the third download is whole again.
    async with http.get(
        emu.onc_url + "/api/archivefile/download", params={"filename": f.filename, "token": TOKEN}
    ) as resp:
        assert hashlib.sha256(await resp.read()).hexdigest() == f.sha256
    statuses = [r.status for r in emu.requests.of("archivefile.download")]
    assert statuses == [200, 200]


async def test_slow_drip_still_delivers_every_byte(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    (f, *_) = emu.truth.archive_files(
        device_code="AXISQ6044PTZACCC8E334C53",
        extension="jpg",
        date_from="2023-12-01",
        date_to="2023-12-02",
    )
    emu.faults = {
        "rules": [
            {
                "kind": "drip",
                "endpoint": "archivefile.download",
                "chunk_bytes": 16384,
                "interval_s": 0.001,
            }
        ]
    }
    async with http.get(
        emu.onc_url + "/api/archivefile/download", params={"filename": f.filename, "token": TOKEN}
    ) as resp:
        chunks = [c async for c in resp.content.iter_any()]
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == f.sha256
    assert len(chunks) > 3


async def test_maintenance_window_on_the_emulator_clock(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    emu.faults = {
        "rules": [
            {
                "kind": "maintenance",
                "start": "2024-01-10T00:00:00Z",
                "end": "2024-01-10T00:10:00Z",
                "retry_after": 600,
            }
        ]
    }
    async with http.get(emu.onc_url + LOCS, params={"token": TOKEN}) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "600"
        assert resp.content_type == "text/html"
    emu.clock.advance(600)
    assert await _statuses(emu, http, 1) == [200]


async def test_maintenance_window_relative_to_install(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    emu.faults = {"rules": [{"kind": "maintenance", "start_after": 0, "duration": 3600}]}
    assert await _statuses(emu, http, 2) == [503, 503]
    emu.faults = {"rules": [{"kind": "maintenance", "start_after": 3600, "duration": 60}]}
    assert await _statuses(emu, http, 1) == [200]


async def test_gone_on_product_downloads(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(faults="expired-downloads", product_processing_s=0.0)
    base = emu.onc_url + "/api/dataProductDelivery"
    _, req = await get(
        http,
        base + "/request",
        deviceCode="SBECTD16p7128",
        dataProductCode="TSSD",
        extension="csv",
        dateFrom="2023-01-01",
        dateTo="2023-01-01T01:00:00.000Z",
    )
    _, run = await get(http, base + "/run", dpRequestId=str(req["dpRequestId"]))
    status, _ = await get(http, base + "/download", dpRunId=str(run[0]["dpRunId"]))
    assert status == 410


async def test_faults_reach_the_registry(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.faults = {"rules": [{"kind": "status", "endpoint": "registry:*", "status": 502}]}
    async with http.get(emu.registry_url + "/api/v1/Harvests") as resp:
        assert resp.status == 502
    emu.faults = {"rules": [{"kind": "truncate", "endpoint": "registry:*", "fraction": 0.5}]}
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(emu.registry_url + "/api/v1/Harvests") as resp:
            await resp.read()
    assert emu.requests.counts["registry:/api/v1/Harvests"] == 2


async def test_fault_file_yaml_and_json_and_runtime_change(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    yaml_file = tmp_path / "faults.yaml"
    yaml_file.write_text(
        "seed: 3\nrules:\n  - kind: status\n    endpoint: locations\n"
        "    status: 500\n    times: 1\n"
    )
    emu = await make_emulator(faults=str(yaml_file))
    assert await _statuses(emu, http, 2) == [500, 200]
    json_file = tmp_path / "faults.json"
    json_file.write_text(json.dumps({"rules": [{"kind": "status", "status": 504}]}))
    emu.faults = str(json_file)
    assert await _statuses(emu, http, 1) == [504]
    async with http.put(emu.onc_url + "/_emulator/faults", json={"profile": "none"}) as resp:
        assert (await resp.json())["name"] == "none"
    assert await _statuses(emu, http, 1) == [200]
    async with http.put(
        emu.onc_url + "/_emulator/faults",
        json={"rules": [{"kind": "gone", "endpoint": "locations"}]},
    ) as resp:
        assert (await resp.json())["rules"][0]["kind"] == "gone"
    assert await _statuses(emu, http, 1) == [410]


async def test_every_profile_loads_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    from pipeline.emulator.faults import FaultPlan

    for name in PROFILES:
        assert FaultPlan.load(name).name == name
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - kind: explode\n    colour: red\n")
    with pytest.raises(ConfigError) as info:
        FaultPlan.load(str(bad))
    paths = [p for p, _ in info.value.problems]
    assert "rules[0]" in paths
    assert "rules[0].kind" in paths
    with pytest.raises(ConfigError):
        FaultPlan.load("no-such-profile")


async def test_flaky_profile_is_reproducible(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    runs = []
    for _ in range(2):
        emu = await make_emulator(faults="flaky")
        runs.append(await _statuses(emu, http, 100))
    assert runs[0] == runs[1]
    assert set(runs[0]) - {200}
