"""Paging follows `next.parameters` against our own base URL, one page at a time."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest

from pipeline.exceptions import OncRequestError
from pipeline.onc import AvailabilityQuery, DataSource, OncClient, RawQuery, ScalarQuery
from pipeline.onc.errors import OncSchemaError
from pipeline.onc.http import JsonReply, OncHttp
from pipeline.onc.options import ClientOptions
from pipeline.onc.paging import iter_pages
from tests.unit.onc.conftest import TOKEN, sample, sample_bytes
from tests.unit.onc.scripted import Reply, ScriptedTransport

SCALAR = "/api/scalardata/location"
RAW = "/api/rawdata/device"
AVAILABILITY = "/api/dataAvailability/dataproducts"


@pytest.fixture
def server() -> ScriptedTransport:
    return ScriptedTransport()


def scalar_query() -> ScalarQuery:
    return ScalarQuery(
        DataSource(location_code="BACVP", device_category_code="CTD"),
        date_from="2009-08-27T00:00:00.000Z",
        date_to="2009-08-29T23:59:59.999Z",
    )


async def test_scalar_pages_follow_next_parameters_not_next_url(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    # Page 1 is the real NaN page; its `next` carries method=getByLocation and a token; we
    # point its url at a foreign host to prove it is never followed.
    page1 = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json").replace(
        b'"url": "(not captured', b'"url": "http://evil.example/steal?token=x&(not captured'
    )
    page2 = sample("scalardata_location_NC89_BPR_tutorial.json")
    server.add(SCALAR, Reply(body=page1), Reply(json=page2))
    async with OncClient(
        options_factory(base_url=server.url, row_limit=10), transport=server.transport
    ) as onc:
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
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(SCALAR, Reply(status=400, json=sample("error_400_errorCode127_reconstructed.json")))
    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        pages = [p async for p in onc.scalar_pages(scalar_query())]
    assert pages == []


async def test_other_400_127_is_still_an_error(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    bad = {"errors": [{"errorCode": 127, "errorMessage": "Invalid", "parameter": "locationCode"}]}
    server.add(SCALAR, Reply(status=400, json=bad))
    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        with pytest.raises(OncRequestError):
            _ = [p async for p in onc.scalar_pages(scalar_query())]


async def test_raw_pages_and_repeating_next_is_refused(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
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

    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        with pytest.raises(OncSchemaError, match="repeats") as info:
            await consume(onc)
    assert got == [5]  # the repeated request is refused before it is sent
    assert server.count(RAW) == 1
    assert info.value.url is not None
    assert TOKEN not in info.value.url


async def test_schema_drift_error_carries_redacted_url(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(SCALAR, Reply(json={"sensorData": [{"sensorCode": "c", "data": {"values": 3}}]}))
    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        with pytest.raises(OncSchemaError) as info:
            _ = [p async for p in onc.scalar_pages(scalar_query())]
    assert "sensorData[0].data" in str(info.value)
    assert info.value.url is not None
    assert "token=REDACTED" in info.value.url


async def test_discovery_404_is_empty_and_string_booleans_normalised(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add("/api/locations", Reply(json=sample("locations_NC89_raw_string_booleans.json")))
    server.add(
        "/api/devices", Reply(status=404, json=sample("error_404_no_data_reconstructed.json"))
    )
    server.add("/api/deployments", Reply(json=sample("deployments_NC89_BPR_tutorial.json")))
    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        (loc,) = await onc.locations(location_code="NC89")
        assert await onc.devices(location_code="NOPE") == []
        deps = await onc.deployments(location_code="NC89", device_category_code="BPR")
    assert loc.has_device_data is True
    assert [d.device_code for d in deps] == ["BPR_889", "RBRQUARTZ3BPR203659"]
    assert server.seen[0].query["locationCode"] == "NC89"


async def test_data_availability_follows_next(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    # No public answer shows a `next` here, but the client must not drop a second page if
    # ONC ever sends one: the sample as page 1 with a `next`, then the sample again.
    page = sample("dataAvailability_NCBC_BPR_docstring.json")
    first = {**page, "next": {"parameters": {"deviceCode": "X", "token": "leak"}, "url": "u"}}
    server.add(AVAILABILITY, Reply(json=first), Reply(json=page))
    query = AvailabilityQuery(DataSource(device_code="BPR-Folger-59"), "2019-11-23")
    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        rows = [r async for r in onc.data_availability(query)]
    assert [r.total_file_size for r in rows] == [8_707_618, 8_707_618]
    assert rows[0].total_uncompressed_file_size == 33_868_912
    assert rows[0].average_file_coverage == 0.875
    assert server.seen[0].query["dateFrom"] == "2019-11-23"
    assert server.seen[1].query["deviceCode"] == "X"
    assert server.seen[1].query["token"] == TOKEN


async def test_data_availability_refuses_a_coverage_outside_zero_one(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    page = sample("dataAvailability_NCBC_BPR_docstring.json")
    page["availableDataProducts"][0]["averageFileCoverage"] = 87.5  # a percentage: drift
    server.add(AVAILABILITY, Reply(json=page))
    query = AvailabilityQuery(DataSource(device_code="BPR-Folger-59"))
    async with OncClient(options_factory(base_url=server.url), transport=server.transport) as onc:
        with pytest.raises(OncSchemaError) as caught:
            _ = [r async for r in onc.data_availability(query)]
    assert "averageFileCoverage" in str(caught.value)


class _Decoded:
    """A decoded reply body (weakly referenceable, unlike a dict)."""

    def __init__(self, number: int) -> None:
        self.number = number


class _Page:
    def __init__(self, decoded: _Decoded) -> None:
        self.next = None if decoded.number == 2 else _Next()


class _Next:
    def __init__(self) -> None:
        self.parameters = {"dateFrom": "2026-11-20T00:00:00.000Z"}


class _TwoReplies:
    """The part of OncHttp paging uses: two replies, the first with a `next`."""

    def __init__(self) -> None:
        self.decoded: list[weakref.ref[_Decoded]] = []

    async def get_json(self, endpoint: str, params: Mapping[str, str], **_: Any) -> JsonReply:
        data = _Decoded(len(self.decoded) + 1)
        self.decoded.append(weakref.ref(data))
        return JsonReply(status=200, data=data, url=endpoint)


async def test_a_suspended_pager_holds_neither_the_page_nor_its_reply() -> None:
    # A series waiting (for room in the page budget, for its queue) keeps the pager suspended
    # at its page: the caller's page and the decoded reply must be freed when the caller
    # drops them, not when the next page is asked for.
    http = _TwoReplies()
    pages = iter_pages(cast(OncHttp, http), "/api/x", {}, cast(Any, _Page))
    page = await anext(pages)
    held = weakref.ref(page)
    del page
    gc.collect()
    assert held() is None
    assert http.decoded[0]() is None
    last = await anext(pages)
    assert last.next is None
    with pytest.raises(StopAsyncIteration):
        await anext(pages)
