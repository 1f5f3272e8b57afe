"""Paging follows `next.parameters` against our own base URL, one page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from pipeline.exceptions import OncRequestError
from pipeline.onc import DataSource, OncClient, RawQuery, ScalarQuery
from pipeline.onc.errors import OncSchemaError
from pipeline.onc.options import ClientOptions
from tests.unit.onc.conftest import TOKEN, sample, sample_bytes
from tests.unit.onc.scripted import Reply, ScriptedServer

SCALAR = "/api/scalardata/location"
RAW = "/api/rawdata/device"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


def scalar_query() -> ScalarQuery:
    return ScalarQuery(
        DataSource(location_code="BACVP", device_category_code="CTD"),
        date_from="2009-08-27T00:00:00.000Z",
        date_to="2009-08-29T23:59:59.999Z",
    )


async def test_scalar_pages_follow_next_parameters_not_next_url(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    # Page 1 is the real NaN page; its `next` carries method=getByLocation and a token; we
    # point its url at a foreign host to prove it is never followed.
    page1 = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json").replace(
        b'"url": "(not captured', b'"url": "http://evil.example/steal?token=x&(not captured'
    )
    page2 = sample("scalardata_location_NC89_BPR_tutorial.json")
    server.add(SCALAR, Reply(body=page1), Reply(json=page2))
    async with OncClient(options_factory(base_url=server.url, row_limit=10)) as onc:
        pages = [p async for p in onc.scalar_pages(scalar_query())]
    assert [len(p.series) for p in pages] == [6, 1]
    first, second = server.seen
    assert first.query["rowLimit"] == "10"
    assert first.query["token"] == TOKEN
    assert second.query["dateFrom"] == "2009-08-27T00:53:32.289Z"
    assert second.query["rowLimit"] == "10"
    assert second.query["token"] == TOKEN  # ours, not the REDACTED one in next.parameters
    assert "method" not in second.query


async def test_no_data_400_127_is_an_empty_result(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    server.add(SCALAR, Reply(status=400, json=sample("error_400_errorCode127_reconstructed.json")))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        pages = [p async for p in onc.scalar_pages(scalar_query())]
    assert pages == []


async def test_other_400_127_is_still_an_error(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    bad = {"errors": [{"errorCode": 127, "errorMessage": "Invalid", "parameter": "locationCode"}]}
    server.add(SCALAR, Reply(status=400, json=bad))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OncRequestError):
            _ = [p async for p in onc.scalar_pages(scalar_query())]


async def test_raw_pages_and_repeating_next_is_refused(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    body = sample("rawdata_device_BPR_889_tutorial.json")
    body["next"] = {
        "parameters": {
            "deviceCode": "BPR_889",
            "dateFrom": "a",
            "dateTo": "b",
            "rowLimit": "100000",
            "token": "t",
        },
        "url": "x",
    }
    server.add(RAW, Reply(json=body))
    query = RawQuery(DataSource(device_code="BPR_889"), date_from="a", date_to="b")
    got: list[int] = []

    async def consume(onc: OncClient) -> None:
        async for page in onc.raw_pages(query):
            got.append(len(page))

    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OncSchemaError, match="repeats") as info:
            await consume(onc)
    assert got == [5]  # the repeated request is refused before it is sent
    assert server.count(RAW) == 1
    assert info.value.url is not None
    assert TOKEN not in info.value.url


async def test_schema_drift_error_carries_redacted_url(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    server.add(SCALAR, Reply(json={"sensorData": [{"sensorCode": "c", "data": {"values": 3}}]}))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OncSchemaError) as info:
            _ = [p async for p in onc.scalar_pages(scalar_query())]
    assert "sensorData[0].data" in str(info.value)
    assert info.value.url is not None
    assert "token=REDACTED" in info.value.url


async def test_discovery_404_is_empty_and_string_booleans_normalised(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    server.add("/api/locations", Reply(json=sample("locations_NC89_raw_string_booleans.json")))
    server.add(
        "/api/devices", Reply(status=404, json=sample("error_404_no_data_reconstructed.json"))
    )
    server.add("/api/deployments", Reply(json=sample("deployments_NC89_BPR_tutorial.json")))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        (loc,) = await onc.locations(location_code="NC89")
        assert await onc.devices(location_code="NOPE") == []
        deps = await onc.deployments(location_code="NC89", device_category_code="BPR")
    assert loc.has_device_data is True
    assert [d.device_code for d in deps] == ["BPR_889", "RBRQUARTZ3BPR203659"]
    assert server.seen[0].query["locationCode"] == "NC89"
