"""dataProductDelivery driver: polling, 202/204/404/410, failure statuses, restart, resume."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from pipeline.exceptions import OutputError
from pipeline.onc import (
    DataSource,
    OncClient,
    OncProductFailedError,
    OncProductGoneError,
    OncProductTimeout,
    ProductOrder,
)
from pipeline.onc.options import ClientOptions
from tests.unit.onc.conftest import sample
from tests.unit.onc.scripted import Reply, ScriptedServer

BASE = "/api/dataProductDelivery"
RUN_ID = 56070469
CSV = b"time,temperature\n2017-01-19T00:00:00.000Z,5.8\n"
META = b"<?xml version='1.0'?><meta/>"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def order() -> ProductOrder:
    return ProductOrder(
        DataSource(location_code="NC89", device_category_code="CTD"),
        data_product_code="TSSD",
        extension="csv",
        date_from="2017-01-19T00:00:00.000Z",
        date_to="2017-01-19T00:30:00.000Z",
        options={"qualityControl": "1", "dpo_resample": "none"},
    )


def running(status: str = "data product running") -> Reply:
    return Reply(status=202, json=[{"dpRunId": RUN_ID, "fileCount": 0, "status": status}])


COMPLETE = Reply(json=[{"dpRunId": RUN_ID, "fileCount": 1, "status": "complete"}])


class Downloads:
    """Scripted `download` answers per index: a list of statuses consumed in order."""

    def __init__(self, script: dict[str, list[int]], name: str = "NC89_CTD_20170119.csv") -> None:
        self.script = script
        self.name = name
        self.seen: Counter[str] = Counter()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        index = request.query["index"]
        self.seen[index] += 1
        statuses = self.script.get(index, [404])
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if status == 202:
            return web.json_response(sample("dpd_download_202_running_wiki.json"), status=202)
        if status == 200:
            body, name = (META, self.name + "_META.xml") if index == "meta" else (CSV, self.name)
            headers = {"Content-Disposition": f"attachment; filename={name}"}
            return web.Response(body=body, headers=headers)
        return web.Response(status=status)


def script_request(server: ScriptedServer) -> None:
    server.add(f"{BASE}/request", Reply(json=sample("dpd_request_response_NC89_CTD_TSSP.json")))


async def test_order_through_202s(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    script_request(server)
    server.add(f"{BASE}/run", running("queued"), running(), COMPLETE)
    downloads = Downloads({"1": [202, 202, 200], "2": [404], "meta": [200]})
    server.add(f"{BASE}/download", Reply(custom=downloads))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        result = await onc.products.order(order(), tmp_path)
    assert (result.dp_request_id, result.dp_run_ids) == (28892274, (RUN_ID,))
    assert [f.index for f in result.files] == ["1", "meta"]
    assert result.files[0].file.path.read_bytes() == CSV
    assert result.files[0].file.path.name == "NC89_CTD_20170119.csv"
    assert result.files[1].file.path.read_bytes() == META
    assert not result.no_data
    assert server.count(f"{BASE}/run") == 3
    assert downloads.seen == Counter({"1": 3, "meta": 1})  # fileCount 1: no index 2
    request = server.seen[0].query
    assert request["dpo_qualityControl"] == "1"
    assert request["dpo_resample"] == "none"
    assert listing(tmp_path) == [
        "NC89_CTD_20170119.csv",
        "NC89_CTD_20170119.csv_META.xml",
    ]


@pytest.mark.parametrize("status", ["error", "cancelled"])
async def test_failed_run_status_ends_with_typed_error(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, status: str
) -> None:
    server.add(
        f"{BASE}/run", running("queued"), Reply(json=[{"dpRunId": RUN_ID, "status": status}])
    )
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OncProductFailedError) as info:
            await onc.products.wait_for_runs(28892274)
    assert (info.value.dp_request_id, info.value.dp_run_id) == (28892274, RUN_ID)
    assert info.value.run_status == status
    assert server.count(f"{BASE}/run") == 2


async def test_run_that_never_completes_hits_the_deadline(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    server.add(f"{BASE}/run", running())
    opts = options_factory(base_url=server.url, product_deadline=0.05)
    async with OncClient(opts) as onc:
        with pytest.raises(OncProductTimeout) as info:
            await onc.products.wait_for_runs(28892274)
    assert info.value.dp_run_id == RUN_ID


async def test_gone_download_is_restarted_once(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    script_request(server)
    server.add(f"{BASE}/run", COMPLETE)
    server.add(f"{BASE}/restart", Reply(json=[{"dpRunId": RUN_ID, "status": "queued"}]))
    downloads = Downloads({"1": [410, 200], "2": [404], "meta": [200]})
    server.add(f"{BASE}/download", Reply(custom=downloads))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        result = await onc.products.order(order(), tmp_path)
    assert server.count(f"{BASE}/restart") == 1
    assert [f.index for f in result.files] == ["1", "meta"]


async def test_gone_twice_raises_gone(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    script_request(server)
    server.add(f"{BASE}/run", COMPLETE)
    server.add(f"{BASE}/restart", Reply(json=[{"dpRunId": RUN_ID, "status": "queued"}]))
    server.add(f"{BASE}/download", Reply(custom=Downloads({"1": [410]})))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OncProductGoneError) as info:
            await onc.products.order(order(), tmp_path)
    assert (info.value.dp_run_id, info.value.index, info.value.status) == (RUN_ID, "1", 410)


async def test_no_data_204(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    script_request(server)
    server.add(f"{BASE}/run", COMPLETE)
    server.add(f"{BASE}/download", Reply(custom=Downloads({"1": [204], "meta": [404]})))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        result = await onc.products.order(order(), tmp_path)
    assert result.no_data
    assert result.files == ()


async def test_resume_download_with_ids_only_and_skip(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    downloads = Downloads({"1": [200], "2": [200], "3": [404], "meta": [200]})
    server.add(f"{BASE}/download", Reply(custom=downloads))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        files = await onc.products.download_run(RUN_ID, tmp_path, skip={"1"}, file_count=2)
    assert [f.index for f in files] == ["2", "meta"]
    assert downloads.seen == Counter({"2": 1, "meta": 1})


async def test_unsafe_disposition_name_is_refused(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    downloads = Downloads({"1": [200]}, name="../../escaped.csv")
    server.add(f"{BASE}/download", Reply(custom=downloads))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OutputError, match="escaped"):
            await onc.products.download_run(RUN_ID, dest)
    assert not (tmp_path / "escaped.csv").exists()
    assert list(dest.iterdir()) == []


def test_poll_interval_clamps_the_estimate(options_factory: Callable[..., ClientOptions]) -> None:
    onc = OncClient(options_factory(product_poll_min=1.0, product_poll_max=10.0))
    driver = onc.products
    assert driver.poll_interval(20.0) == 1.0
    assert driver.poll_interval(250.0) == 5.0
    assert driver.poll_interval(3600.0) == 10.0
    assert driver.poll_interval(None) == 1.0
