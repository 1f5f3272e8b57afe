"""dataProductDelivery over real sockets, driven by the emulator clock (no sleeping)."""

from __future__ import annotations

import aiohttp

from pipeline.emulator import Emulator
from tests.integration.emulator.conftest import TOKEN, EmulatorFactory, get

ORDER = {
    "locationCode": "NC89",
    "deviceCategoryCode": "CTD",
    "dataProductCode": "TSSD",
    "extension": "csv",
    "dateFrom": "2023-01-19T20:00:00.000Z",
    "dateTo": "2023-01-20T02:00:00.000Z",
    "dpo_qualityControl": "1",
    "dpo_resample": "none",
}


async def _order(emu: Emulator, http: aiohttp.ClientSession, **overrides: str) -> int:
    status, body = await get(
        http, emu.onc_url + "/api/dataProductDelivery/request", **{**ORDER, **overrides}
    )
    assert status == 200, body
    assert body["estimatedFileSize"].split(" ")[1] in ("B", "kB", "MB", "GB")
    seconds = emu.config.product_processing_s
    assert body["estimatedProcessingTime"] == f"{int(seconds)} s"
    return int(body["dpRequestId"])


async def test_lifecycle_request_run_status_download(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    base = emu.onc_url + "/api/dataProductDelivery"
    req_id = await _order(emu, http)
    status, run = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 202
    assert run[0]["status"] == "queued"
    assert run[0]["fileCount"] == 0
    run_id = run[0]["dpRunId"]
    status, dl = await get(http, base + "/download", dpRunId=str(run_id), index="1")
    assert status == 202
    assert dl["status"] == "running"
    emu.clock.advance(15)
    status, run = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 202
    assert run[0]["status"] == "data product running"
    _, st = await get(http, base + "/status", dpRequestId=str(req_id))
    assert st["searchHdrStatus"] == "OPEN"
    emu.clock.advance(15)
    status, run = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 200
    assert run == [{"dpRunId": run_id, "fileCount": 2, "status": "complete"}]
    _, st = await get(http, base + "/status", dpRequestId=str(req_id))
    assert st["searchHdrStatus"] == "COMPLETED"
    params = {"dpRunId": str(run_id), "token": TOKEN}
    async with http.get(base + "/download", params={**params, "index": "1"}) as resp:
        assert resp.status == 200
        disposition = resp.headers["Content-Disposition"]
        csv = (await resp.read()).decode()
    assert disposition == (
        "attachment; filename=ClayoquotSlope_Bullseye_"
        "ConductivityTemperatureDepth_20230119T200000Z_20230120T000000Z"
        "-clean.csv"
    )
    data_lines = [x for x in csv.splitlines() if not x.startswith("#")]
    truth = emu.truth.scalar(
        device_code="SBECTD19p7027", date_from="2023-01-19T20:00:00.000Z", date_to="2023-01-20"
    )["cond"]
    assert len(data_lines) == len(truth)
    assert data_lines[0].split(", ")[:2] == [truth[0].time, str(truth[0].value)]
    async with http.head(base + "/download", params={**params, "index": "2"}) as resp:
        assert resp.status == 200
    async with http.get(base + "/download", params={**params, "index": "3"}) as resp:
        assert resp.status == 404
    async with http.get(base + "/download", params={**params, "index": "meta"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/xml"
        assert resp.headers["Content-Disposition"].endswith("_CSV_META.xml")
        assert b"<dataProductCode>TSSD</dataProductCode>" in await resp.read()


async def test_expiry_gives_410(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(product_processing_s=0.0, product_expiry_s=60.0)
    req_id = await _order(emu, http, dataProductCode="TSSP", extension="png")
    base = emu.onc_url + "/api/dataProductDelivery"
    status, run = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 200
    assert run[0]["status"] == "complete"
    status, body = await get(http, base + "/download", dpRunId=str(run[0]["dpRunId"]))
    assert status == 200
    assert body[:8] == body[:8]
    emu.clock.advance(61)
    status, _ = await get(http, base + "/download", dpRunId=str(run[0]["dpRunId"]))
    assert status == 410


async def test_no_data_gives_204(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(product_processing_s=0.0)
    req_id = await _order(
        emu,
        http,
        locationCode="",
        deviceCategoryCode="",
        deviceCode="SBECTD16p7119",
        dateFrom="2009-08-01",
        dateTo="2009-08-02",
    )
    base = emu.onc_url + "/api/dataProductDelivery"
    _, run = await get(http, base + "/run", dpRequestId=str(req_id))
    assert run[0]["fileCount"] == 0
    status, body = await get(http, base + "/download", dpRunId=str(run[0]["dpRunId"]))
    assert status == 204
    assert body == b""


async def test_cancel_and_restart_keep_the_run_id(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    base = emu.onc_url + "/api/dataProductDelivery"
    req_id = await _order(emu, http)
    _, run = await get(http, base + "/run", dpRequestId=str(req_id))
    run_id = run[0]["dpRunId"]
    status, body = await get(http, base + "/cancel", dpRequestId=str(req_id))
    assert status == 200
    assert body == [{"dpRunId": run_id, "status": "cancelled"}]
    status, body = await get(http, base + "/cancel", dpRequestId=str(req_id))
    assert status == 400
    assert "errors" not in body
    status, body = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 200
    assert body[0]["status"] == "cancelled"
    status, body = await get(http, base + "/download", dpRunId=str(run_id))
    assert status == 400
    status, body = await get(http, base + "/restart", dpRequestId=str(req_id))
    assert status == 200
    assert body == [{"dpRunId": run_id, "status": "queued"}]
    emu.clock.advance(30)
    status, body = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 200
    assert body[0]["dpRunId"] == run_id
    assert body[0]["status"] == "complete"


async def test_request_errors(emu: Emulator, http: aiohttp.ClientSession) -> None:
    base = emu.onc_url + "/api/dataProductDelivery"
    cases = [
        ({**ORDER, "dataProductCode": "NOPE"}, 127),
        ({**ORDER, "extension": "exe"}, 127),
        ({k: v for k, v in ORDER.items() if k != "dateTo"}, 128),
        ({**ORDER, "dateFrom": "2009-01-01", "dateTo": "2009-01-02"}, 127),
    ]
    for params, code in cases:
        status, body = await get(http, base + "/request", **params)
        assert status == 400, params
        assert body["errors"][0]["errorCode"] == code, params
    for action in ("run", "status", "cancel", "restart"):
        status, body = await get(http, f"{base}/{action}", dpRequestId="1")
        assert status == 400
        assert body["errors"][0]["parameter"] == "dpRequestId"
    status, body = await get(http, base + "/download", dpRunId="1")
    assert status == 400
    assert body["errors"][0]["errorCode"] == 127


async def test_method_style(make_emulator: EmulatorFactory, http: aiohttp.ClientSession) -> None:
    emu = await make_emulator(product_processing_s=0.0)
    url = emu.onc_url + "/api/dataProductDelivery"
    _, body = await get(http, url, method="request", **ORDER)
    _, run = await get(http, url, method="run", dpRequestId=str(body["dpRequestId"]))
    status, data = await get(
        http, url, method="download", dpRunId=str(run[0]["dpRunId"]), index="1"
    )
    assert status == 200
    assert data.startswith(b'#"Ocean Networks Canada')


async def _complete_runs(
    emu: Emulator, http: aiohttp.ClientSession, req_id: int
) -> list[dict[str, int | str]]:
    base = emu.onc_url + "/api/dataProductDelivery"
    status, runs = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 202
    emu.clock.advance(emu.config.product_processing_s * (len(runs) + 1))
    status, runs = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 200
    assert all(run["status"] == "complete" for run in runs)
    return list(runs)


async def _names(
    emu: Emulator, http: aiohttp.ClientSession, run_id: object, count: int
) -> list[str]:
    names = []
    for index in [*map(str, range(1, count + 1)), "meta"]:
        async with http.head(
            emu.onc_url + "/api/dataProductDelivery/download",
            params={"dpRunId": str(run_id), "index": index, "token": TOKEN},
        ) as resp:
            assert resp.status == 200
            names.append(resp.headers["Content-Disposition"].split("filename=")[1])
    return names


async def test_a_request_across_a_device_change_has_one_run_per_device(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    # BACAX's CTD was replaced on 2015-09-17/18: a request over both devices has two runs.
    req_id = await _order(
        emu,
        http,
        locationCode="BACAX",
        dateFrom="2015-09-16T00:00:00.000Z",
        dateTo="2015-09-19T00:00:00.000Z",
    )
    runs = await _complete_runs(emu, http, req_id)
    assert [run["fileCount"] for run in runs] == [2, 1]
    assert len({run["dpRunId"] for run in runs}) == 2
    _, st = await get(
        http, emu.onc_url + "/api/dataProductDelivery/status", dpRequestId=str(req_id)
    )
    assert st["dpRunIds"] == [run["dpRunId"] for run in runs]
    names = [
        name
        for run in runs
        for name in await _names(emu, http, run["dpRunId"], int(run["fileCount"]))
    ]
    assert len(names) == len(set(names)) == 5  # three days of data, a metadata file per run


async def test_files_per_run_splits_a_product_and_runs_finish_in_turn(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await make_emulator(product_processing_s=10.0, product_files_per_run=1)
    req_id = await _order(
        emu, http, dateFrom="2023-01-10T00:00:00.000Z", dateTo="2023-01-13T00:00:00.000Z"
    )
    base = emu.onc_url + "/api/dataProductDelivery"
    await get(http, base + "/run", dpRequestId=str(req_id))
    emu.clock.advance(10)
    status, runs = await get(http, base + "/run", dpRequestId=str(req_id))
    # The first run is complete, the others are not: the answer stays 202.
    assert status == 202
    assert [run["status"] for run in runs] == [
        "complete",
        "data product running",
        "data product running",
    ]
    assert [run["fileCount"] for run in runs] == [1, 0, 0]
    emu.clock.advance(20)
    status, runs = await get(http, base + "/run", dpRequestId=str(req_id))
    assert status == 200
    assert [run["fileCount"] for run in runs] == [1, 1, 1]
    days = [await _names(emu, http, run["dpRunId"], 1) for run in runs]
    assert [name[0].split("_")[3][:8] for name in days] == ["20230110", "20230111", "20230112"]
