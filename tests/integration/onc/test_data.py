"""Scalar, raw and archive-list paging against the emulator: exactly the ground truth."""

from __future__ import annotations

import math

import pytest

from pipeline.exceptions import OncAuthError, OncRequestError
from pipeline.onc import ArchiveQuery, ClientOptions, DataSource, OncClient, RawQuery, ScalarQuery
from tests.integration.onc.conftest import (
    assert_same_columns,
    client,
    merge_scalar,
    running_emulator,
    truth_columns,
)

BACAX_CTD = DataSource(location_code="BACAX", device_category_code="CTD")
DAY_FROM = "2020-01-01T00:00:00.000Z"
HALF_DAY_TO = "2020-01-01T12:00:00.000Z"


async def test_multi_page_scalar_8_sensors_over_300k_rows() -> None:
    async with running_emulator() as emu, client(emu) as onc:
        query = ScalarQuery(BACAX_CTD, DAY_FROM, HALF_DAY_TO)
        pages = [p async for p in onc.scalar_pages(query, row_limit=15_000)]
        truth = emu.truth.scalar(
            date_from=DAY_FROM,
            date_to=HALF_DAY_TO,
            location_code="BACAX",
            device_category_code="CTD",
        )
    got = merge_scalar(pages)
    assert len(pages) >= 3
    assert len(got) == 8
    assert sum(len(t) for t, _, _ in got.values()) > 300_000
    assert all(len(s) <= 15_000 for p in pages for s in p.series)
    assert_same_columns(got, truth_columns(truth))
    units = {s.sensor_code: s.unit for s in pages[0].series}
    assert units["Temperature"] == "C"


async def test_object_output_format_gives_the_same_columns() -> None:
    date_to = "2020-01-01T01:00:00.000Z"
    async with running_emulator() as emu, client(emu) as onc:
        query = ScalarQuery(BACAX_CTD, DAY_FROM, date_to, output_format="object")
        pages = [p async for p in onc.scalar_pages(query, row_limit=1_000)]
        truth = emu.truth.scalar(
            date_from=DAY_FROM, date_to=date_to, location_code="BACAX", device_category_code="CTD"
        )
    assert len(pages) > 1
    assert_same_columns(merge_scalar(pages), truth_columns(truth))


async def test_nan_gap_fill_rows_survive_paging() -> None:
    # Look for a window whose truth holds gap-fill rows (NaN, flag 9); the synthetic outages
    # are per hour; with seed 7 these six hours of the BACAX CTD hold some.
    date_to = "2020-01-01T06:00:00.000Z"
    source = DataSource(device_code="SBECTD16p7128")
    async with running_emulator() as emu, client(emu) as onc:
        truth = emu.truth.scalar(date_from=DAY_FROM, date_to=date_to, device_code="SBECTD16p7128")
        nan_rows = sum(1 for r in truth["cond"] if math.isnan(r.value))
        pages = [
            p
            async for p in onc.scalar_pages(ScalarQuery(source, DAY_FROM, date_to), row_limit=5_000)
        ]
    assert nan_rows > 0
    assert len(pages) > 1
    got = merge_scalar(pages)
    assert sum(1 for v in got["cond"][1] if math.isnan(v)) == nan_rows
    assert_same_columns(got, truth_columns(truth))


async def test_multi_page_raw_by_device_and_location() -> None:
    date_to = "2020-01-01T03:00:00.000Z"
    async with running_emulator() as emu, client(emu) as onc:
        for source, kwargs in (
            (DataSource(device_code="BPR_889"), {"device_code": "BPR_889"}),
            (
                DataSource(location_code="NC89", device_category_code="BPR"),
                {"location_code": "NC89", "device_category_code": "BPR"},
            ),
        ):
            times: list[str] = []
            readings: list[str] = []
            pages = 0
            async for page in onc.raw_pages(RawQuery(source, DAY_FROM, date_to), row_limit=2_000):
                pages += 1
                times.extend(page.times)
                readings.extend(page.readings)
            truth = emu.truth.raw(date_from=DAY_FROM, date_to=date_to, **kwargs)
            assert pages > 2
            assert times == [r.time for r in truth]
            assert readings == [r.reading for r in truth]


async def test_archive_list_matches_truth() -> None:
    date_to = "2020-01-01T06:00:00.000Z"
    async with running_emulator() as emu, client(emu) as onc:
        source = DataSource(location_code="SEVIP", device_category_code="HYDROPHONE")
        files = [f async for f in onc.archive_files(ArchiveQuery(source, DAY_FROM, date_to))]
        truth = emu.truth.archive_files(
            date_from=DAY_FROM,
            date_to=date_to,
            location_code="SEVIP",
            device_category_code="HYDROPHONE",
            with_sha256=False,
        )
    assert [f.filename for f in files] == [t.filename for t in truth]
    assert [f.size for f in files] == [t.size for t in truth]


async def test_no_deployment_in_range_is_empty_not_an_error() -> None:
    async with running_emulator() as emu, client(emu) as onc:
        query = ScalarQuery(BACAX_CTD, "2001-01-01T00:00:00.000Z", "2001-01-02T00:00:00.000Z")
        pages = [p async for p in onc.scalar_pages(query)]
        raw = [
            p
            async for p in onc.raw_pages(
                RawQuery(BACAX_CTD, "2001-01-01T00:00:00.000Z", "2001-01-02T00:00:00.000Z")
            )
        ]
    assert pages == []
    assert raw == []


async def test_bad_token_is_a_typed_auth_error_and_not_retried() -> None:
    async with running_emulator() as emu:
        options = ClientOptions(token="wrong-token", base_url=emu.onc_url, max_attempts=5)
        async with OncClient(options) as onc:
            with pytest.raises(OncAuthError) as info:
                await onc.locations()
        assert info.value.status == 401
        assert sum(1 for r in emu.requests if r.endpoint == "locations") == 1


async def test_bad_request_is_a_typed_request_error_with_details() -> None:
    async with running_emulator() as emu, client(emu) as onc:
        # dateFrom after dateTo: ONC error 23
        query = ScalarQuery(BACAX_CTD, "2020-01-02T00:00:00.000Z", DAY_FROM)
        with pytest.raises(OncRequestError) as info:
            _ = [p async for p in onc.scalar_pages(query)]
        assert info.value.status == 400
        assert info.value.errors
        assert info.value.errors[0].code is not None
        assert sum(1 for r in emu.requests if r.endpoint == "scalardata.location") == 1


async def test_discovery_models_from_the_emulator() -> None:
    async with running_emulator() as emu, client(emu) as onc:
        (nc89,) = await onc.locations(location_code="NC89")
        deployments = await onc.deployments(location_code="NC89", device_category_code="BPR")
        (conductivity,) = await onc.properties(property_code="conductivity")
        categories = await onc.device_categories()
        devices = await onc.devices(device_code="BPR_889")
        assert await onc.deployments(location_code="NOWHERE") == []
    assert nc89.has_device_data is True
    assert [d.device_code for d in deployments] == ["BPR_889", "RBRQUARTZ3BPR203659"]
    assert deployments[1].end is None
    assert deployments[0].depth == 1258.0
    assert conductivity.uom == "S/m"
    assert "CTD" in {c.device_category_code for c in categories}
    assert devices[0].device_id == 22503
