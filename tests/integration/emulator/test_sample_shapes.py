"""Every real API payload in onc-samples has an emulator answer of the same shape.

Same shape: same keys (keys starting with `_` are annotations and ignored), same JSON types,
recursively. A list matches when every emulator element matches some sample element and every
sample element is matched by some emulator element. An empty object or list in a sample was
emptied by whoever recorded it and matches any object or list. Samples that are a part of a
response (the README says which) are compared with that part only.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import ujson

from pipeline.emulator import Emulator
from tests.integration.emulator.conftest import TOKEN, get

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "onc-samples"
SHARED = REPO.parent / "shared" / "reference" / "onc-samples"
NOT_API = {"client_orderDataProduct_result_NOT_API.json"}

Fetch = Callable[[Emulator, aiohttp.ClientSession], Awaitable[Any]]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_problems(sample: Any, actual: Any, path: str = "$") -> list[str]:
    """Differences in shape between a real payload and an emulator payload."""
    if _json_type(sample) != _json_type(actual):
        return [f"{path}: {_json_type(actual)} where the sample has {_json_type(sample)}"]
    if isinstance(sample, dict):
        keys = {k for k in sample if not k.startswith("_")}
        if not keys:
            return []
        problems = []
        if keys != set(actual):
            problems.append(
                f"{path}: missing {sorted(keys - set(actual))}, extra {sorted(set(actual) - keys)}"
            )
        for key in sorted(keys & set(actual)):
            problems += shape_problems(sample[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(sample, list) and sample and actual:
        problems = []
        for i, item in enumerate(actual):
            found = [shape_problems(s, item, f"{path}[{i}]") for s in sample]
            if all(found):
                problems += min(found, key=len)
        for j, s in enumerate(sample):
            if all(shape_problems(s, item) for item in actual):
                problems.append(f"{path}: no emulator element has the shape of sample[{j}]")
        return problems
    return []


def _api(path: str, **params: str) -> Fetch:
    async def fetch(emu: Emulator, http: aiohttp.ClientSession) -> Any:
        _, body = await get(http, emu.onc_url + path, **params)
        return body

    return fetch


async def _product(emu: Emulator, http: aiohttp.ClientSession, action: str) -> Any:
    base = emu.onc_url + "/api/dataProductDelivery"
    _, req = await get(
        http,
        base + "/request",
        locationCode="NC89",
        deviceCategoryCode="CTD",
        dataProductCode="TSSP",
        extension="png",
        dateFrom="2017-01-19T00:00:00.000Z",
        dateTo="2017-01-19T00:30:00.000Z",
        dpo_resample="none",
        dpo_qualityControl="1",
    )
    if action == "request":
        return req
    _, run = await get(http, base + "/run", dpRequestId=str(req["dpRequestId"]))
    if action == "run":
        emu.clock.advance(emu.config.product_processing_s / 2)
        status, run = await get(http, base + "/run", dpRequestId=str(req["dpRequestId"]))
        assert status == 202
        assert run[0]["status"] == "data product running"
        return run
    if action == "download":
        emu.clock.advance(emu.config.product_processing_s / 2)
        status, body = await get(http, base + "/download", dpRunId=str(run[0]["dpRunId"]))
        assert status == 202
        return body
    status, body = await get(http, base + "/cancel", dpRequestId=str(req["dpRequestId"]))
    return body


async def _raw_next_pages(emu: Emulator, http: aiohttp.ClientSession) -> Any:
    _, page1 = await get(
        http,
        emu.onc_url + "/api/rawdata/location",
        dateTo="2017-01-24T00:00:00.000Z",
        locationCode="NC89",
        deviceCategoryCode="CTD",
        dateFrom="2017-01-20T00:00:00.000Z",
    )
    async with http.get(page1["next"]["url"]) as resp:
        page2 = ujson.loads(await resp.read())
    return [{"next": page1["next"]}, {"next": page2["next"]}]


CASES: dict[str, tuple[Fetch, str | None]] = {
    "archivefile_location_RISS_VIDEOCAM_files.json": (
        _api(
            "/api/archivefile/location",
            locationCode="RISS",
            deviceCategoryCode="VIDEOCAM",
            dateFrom="2023-12-01",
            dateTo="2023-12-01T00:00:02.000Z",
        ),
        None,
    ),
    "dataAvailability_NCBC_BPR_docstring.json": (
        _api(
            "/api/dataAvailability/dataproducts",
            locationCode="NCBC",
            deviceCategoryCode="BPR",
            dateFrom="2023-11-23",
            dateTo="2023-11-30",
        ),
        None,
    ),
    "deployments_BACAX_CTD_docstring.json": (
        _api(
            "/api/deployments", locationCode="BACAX", deviceCategoryCode="CTD", dateTo="2015-09-17"
        ),
        None,
    ),
    "deployments_NC89_BPR_tutorial.json": (
        _api("/api/deployments", locationCode="NC89", deviceCategoryCode="BPR"),
        None,
    ),
    "deviceCategories_CTD_docstring.json": (
        _api("/api/deviceCategories", deviceCategoryCode="CTD"),
        None,
    ),
    "devices_NC89_BPR_tutorial.json": (
        _api("/api/devices", locationCode="NC89", deviceCategoryCode="BPR"),
        None,
    ),
    "dpd_cancel_response_wiki.json": (lambda e, h: _product(e, h, "cancel"), None),
    "dpd_download_202_running_wiki.json": (lambda e, h: _product(e, h, "download"), None),
    "dpd_request_response_NC89_CTD_TSSP.json": (lambda e, h: _product(e, h, "request"), None),
    "dpd_run_response_running.json": (lambda e, h: _product(e, h, "run"), None),
    "error_400_errorCode127_reconstructed.json": (
        _api(
            "/api/scalardata/location",
            locationCode="BACVP",
            deviceCategoryCode="CTD",
            dateFrom="2009-08-15",
            dateTo="2009-08-18",
        ),
        None,
    ),
    "error_401_invalid_token_wiki.json": (_api("/api/locations", token="wrong"), None),
    "error_404_no_data_reconstructed.json": (_api("/api/locations", locationCode="XX"), None),
    "locations_NC89_raw_string_booleans.json": (_api("/api/locations", locationCode="NC89"), None),
    "properties_BACAX_CTD_conductivity_docstring.json": (
        _api(
            "/api/properties",
            locationCode="BACAX",
            deviceCategoryCode="CTD",
            propertyCode="conductivity",
        ),
        None,
    ),
    "rawdata_device_BPR_889_tutorial.json": (
        _api(
            "/api/rawdata/device",
            deviceCode="BPR_889",
            dateFrom="2020-01-28T00:00:00.000Z",
            dateTo="2020-01-28T00:00:05.000Z",
        ),
        None,
    ),
    "rawdata_location_NC89_BPR_tutorial.json": (
        _api(
            "/api/rawdata/location",
            locationCode="NC89",
            deviceCategoryCode="BPR",
            dateFrom="2020-01-28T00:00:00.000Z",
            dateTo="2020-01-28T00:00:05.000Z",
        ),
        None,
    ),
    "rawdata_location_NC89_CTD_next_pages.json": (_raw_next_pages, None),
    "scalardata_device_SBECTD19p7027_wiki_methodstyle.json": (
        _api(
            "/api/scalardata",
            method="getByDevice",
            deviceCode="SBECTD19p7027",
            dateFrom="2019-02-16T00:06:26.028Z",
            dateTo="2019-02-16T02:00:00.010Z",
            rowLimit="2",
        ),
        None,
    ),
    "scalardata_excludeScalarData_sensorData_NCBC_BPR_docstring.json": (
        _api(
            "/api/scalardata/location",
            locationCode="NCBC",
            deviceCategoryCode="BPR",
            returnOptions="excludeScalarData",
            dateFrom="2023-01-01",
            dateTo="PT1M",
        ),
        "sensorData",
    ),
    "scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json": (
        _api(
            "/api/scalardata",
            method="getByLocation",
            locationCode="BACVP",
            deviceCategoryCode="CTD",
            dateFrom="2023-08-27",
            dateTo="2023-08-29T23:59:59.999Z",
            rowLimit="10",
        ),
        "next,sensorData",
    ),
    "scalardata_location_NC89_BPR_tutorial.json": (
        _api(
            "/api/scalardata/location",
            locationCode="NC89",
            deviceCategoryCode="BPR",
            dateFrom="2021-01-28T00:00:00.000Z",
            dateTo="2021-01-28T00:00:05.000Z",
            sensorCategoryCodes="dart_pressure_residual",
        ),
        None,
    ),
    "scalardata_qaqcFlagInfo_reconstructed.json": (
        _api(
            "/api/scalardata/device",
            deviceCode="SBECTD16p7128",
            dateFrom="2023-01-01",
            dateTo="PT1S",
            metadata="full",
        ),
        "qaqcFlagInfo",
    ),
}


def test_every_api_sample_has_a_case() -> None:
    names = {p.name for p in FIXTURES.glob("*.json")} - NOT_API
    assert names == set(CASES)


def test_fixtures_are_verbatim_copies_of_the_shared_samples() -> None:
    if not SHARED.is_dir():
        # CI checks out the repository beside shared/: there the copies must be compared.
        message = f"shared reference folder not present at {SHARED}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the fixtures must be compared)")
        pytest.skip(message)
    for path in SHARED.glob("*.json"):
        if path.name in NOT_API:
            continue
        assert (FIXTURES / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("name", sorted(CASES))
async def test_emulator_answer_has_the_sample_shape(
    emu: Emulator, http: aiohttp.ClientSession, name: str
) -> None:
    fetch, part = CASES[name]
    sample = ujson.loads((FIXTURES / name).read_text())
    actual = await fetch(emu, http)
    if part is not None:
        keys = part.split(",")
        actual = actual[keys[0]] if len(keys) == 1 else {k: actual[k] for k in keys}
    assert shape_problems(sample, actual) == []


def test_the_comparison_itself_catches_differences() -> None:
    assert shape_problems({"a": 1}, {"a": "1"})
    assert shape_problems({"a": 1}, {"a": 1, "b": 2})
    assert shape_problems([{"end": None}, {"end": "x"}], [{"end": "x"}])
    assert not shape_problems({"_note": 1, "a": [1.5, 2]}, {"a": [3]})
    assert not shape_problems({"parameters": {}}, {"parameters": {"x": "1"}})
    assert TOKEN  # the fixtures use placeholders; the emulator uses the test token
