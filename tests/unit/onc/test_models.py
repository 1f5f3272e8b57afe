"""The models parse every real payload of tests/fixtures/onc-samples and reject drifted ones."""

from __future__ import annotations

import math
from array import array
from datetime import UTC, datetime
from typing import Any

import pytest
import ujson

from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.onc.models import (
    ArchiveListPage,
    Deployment,
    Device,
    DeviceCategory,
    Location,
    NextPage,
    ProductRequest,
    ProductRun,
    Property,
    RawPage,
    RunState,
    ScalarPage,
    ScalarSeries,
    parse_processing_time,
)
from pipeline.onc.parsing import TimeAxis, decode_json, decode_scalardata, error_details
from tests.unit.onc.conftest import sample, sample_bytes


def test_nan_page_keeps_nan_and_gap_fill_flags() -> None:
    raw = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json")
    page = ScalarPage.from_api(decode_json(raw, url="u"))
    assert len(page.series) == 6
    cond = page.series[0]
    assert cond.sensor_code == "cond"
    assert cond.unit == "S/m"
    assert cond.property_code == "conductivity"
    assert cond.values[:4].tolist() == [3.35513, 3.35514, 3.35505, 3.35503]
    assert all(math.isnan(v) for v in cond.values[4:])
    assert list(cond.qaqc_flags) == [0, 0, 0, 0, 9, 9, 9, 9, 9, 9]
    assert cond.sample_times.text.startswith("2009-08-27T00:53:29.800Z\n")
    assert cond.actual_samples == 3
    assert page.rows == 60
    assert page.next is not None
    assert page.next.parameters["dateFrom"] == "2009-08-27T00:53:32.289Z"
    assert "token" not in page.next.parameters


def test_method_style_page_with_old_query_url_key() -> None:
    page = ScalarPage.from_api(sample("scalardata_device_SBECTD19p7027_wiki_methodstyle.json"))
    assert [s.sensor_code for s in page.series] == ["cond", "density"]
    assert list(page.series[1].values) == [1033.216417644338, 1033.216285819126]
    assert page.series[0].property_code is None  # missing optional key tolerated
    assert page.query_url is not None
    assert "ffffffff-ffff" not in page.query_url
    assert "token=REDACTED" in page.query_url
    assert page.next is not None
    assert page.next.parameters["rowLimit"] == "2"
    assert page.next.url is not None
    assert "ffffffff-ffff" not in page.next.url


def test_tutorial_scalar_page_is_last_page() -> None:
    page = ScalarPage.from_api(sample("scalardata_location_NC89_BPR_tutorial.json"))
    assert page.next is None
    assert page.series[0].sensor_code == "dart_pressure_residual"
    assert len(page.series[0]) == 5


def test_exclude_scalar_data_series_have_metadata_only() -> None:
    items = sample("scalardata_excludeScalarData_sensorData_NCBC_BPR_docstring.json")
    page = ScalarPage.from_api({"sensorData": items, "next": None})
    assert [s.unit for s in page.series] == ["decibar", "C", "C", "C"]
    assert all(len(s) == 0 for s in page.series)


def test_qaqc_flag_info_is_kept() -> None:
    info = sample("scalardata_qaqcFlagInfo_reconstructed.json")
    page = ScalarPage.from_api({"sensorData": None, "qaqcFlagInfo": info, "next": None})
    assert page.series == []
    assert page.qaqc_flag_info["9"] == "Missing Data"
    assert "5" not in page.qaqc_flag_info


def test_object_output_format_becomes_columns_with_null_as_nan() -> None:
    item = {
        "sensorCode": "temp",
        "unitOfMeasure": "C",
        "data": [
            {"sampleTime": "2020-01-01T00:00:00.000Z", "value": 1.5, "qaqcFlag": 1},
            {"sampleTime": "2020-01-01T00:00:01.000Z", "value": None, "qaqcFlag": 9},
        ],
    }
    series = ScalarSeries.from_api(item, "sensorData[0]")
    assert list(series.sample_times) == ["2020-01-01T00:00:00.000Z", "2020-01-01T00:00:01.000Z"]
    assert series.values[0] == 1.5
    assert math.isnan(series.values[1])
    assert list(series.qaqc_flags) == [1, 9]


def test_null_values_in_array_format_become_nan() -> None:
    item = {
        "sensorCode": "t",
        "data": {"sampleTimes": ["a", "b"], "values": [None, 2], "qaqcFlags": [9, 1]},
    }
    series = ScalarSeries.from_api(item, "x")
    assert math.isnan(series.values[0])
    assert series.values[1] == 2


def test_flags_pack_into_one_byte_when_they_fit() -> None:
    def flags(*values: int) -> ScalarSeries:
        n = len(values)
        data = {"sampleTimes": ["a"] * n, "values": [1.0] * n, "qaqcFlags": list(values)}
        return ScalarSeries.from_api({"sensorCode": "t", "data": data}, "x")

    onc = flags(0, 1, 9, 3)
    assert onc.qaqc_flags.typecode == "b"
    assert list(onc.qaqc_flags) == [0, 1, 9, 3]
    wide = flags(1, 300, -5)
    assert wide.qaqc_flags.typecode == "q"
    assert list(wide.qaqc_flags) == [1, 300, -5]
    with pytest.raises(OncSchemaError, match="beyond 64 bits"):
        flags(1, 2**70)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"sampleTimes": ["a"], "values": ["oops"], "qaqcFlags": [1]}, "values"),
        ({"sampleTimes": ["a"], "values": [1.0], "qaqcFlags": [1.5]}, "qaqcFlags"),
        ({"sampleTimes": ["a", "b"], "values": [1.0], "qaqcFlags": [1]}, "data"),
        ({"sampleTimes": [1], "values": [1.0], "qaqcFlags": [1]}, "sampleTimes"),
        ({"sampleTimes": "a", "values": [1.0], "qaqcFlags": [1]}, "sampleTimes"),
    ],
)
def test_wrong_types_name_the_member(data: object, where: str) -> None:
    with pytest.raises(OncSchemaError) as info:
        ScalarPage.from_api({"sensorData": [{"sensorCode": "c", "data": data}]})
    assert where in info.value.where


def test_raw_pages_parse() -> None:
    page = RawPage.from_api(sample("rawdata_location_NC89_BPR_tutorial.json"))
    assert len(page) == 5
    assert page.readings[0] == "3C5496E288C0BA7A759558AE00"
    assert page.line_types == [" "] * 5
    assert page.next is None
    device = RawPage.from_api(sample("rawdata_device_BPR_889_tutorial.json"))
    assert device.times == page.times


def test_raw_next_objects_drop_token_and_keep_spelling() -> None:
    for item in sample("rawdata_location_NC89_CTD_next_pages.json"):
        following = NextPage.from_api(item["next"])
        assert following is not None
        assert "token" not in following.parameters
        assert following.parameters["dateTo"] == "2017-01-21T00:00:00.000Z"
        assert following.url is not None
        assert "YOUR_TOKEN" not in following.url
    page1 = sample("rawdata_location_NC89_CTD_next_pages.json")[0]
    assert page1["next"]["parameters"]["dateFrom"] == "2017-01-20T06:56:40.016Z"


def test_archive_lists_names_and_objects() -> None:
    page = ArchiveListPage.from_api(sample("archivefile_location_RISS_VIDEOCAM_files.json"))
    assert [f.filename for f in page.files] == [
        "AXISQ6044PTZACCC8E334C53_20161201T000000.000Z.mp4",
        "AXISQ6044PTZACCC8E334C53_20161201T000001.000Z.jpg",
    ]
    rich = ArchiveListPage.from_api(
        {
            "files": [
                {
                    "filename": "X_20200101T000000.000Z.wav",
                    "dateFrom": "2020-01-01T00:00:00.000Z",
                    "dateTo": "2020-01-01T00:05:00.000Z",
                    "uncompressedFileSize": 1234,
                    "dataProductCode": "AD",
                }
            ],
            "next": None,
        }
    )
    info = rich.files[0]
    assert info.date_from == datetime(2020, 1, 1, tzinfo=UTC)
    assert info.size == 1234
    assert info.data_product_code == "AD"


def test_an_archive_row_expects_the_uncompressed_size() -> None:
    """Downloads deliver the uncompressed bytes; the stored sizes are information only, and
    a row with `fileSize` alone gives no expected size (it may be the stored one)."""
    page = ArchiveListPage.from_api(
        {
            "files": [
                {
                    "filename": "A_20200101T000000.000Z.txt",
                    "fileSize": 870,
                    "compressedFileSize": 870,
                    "uncompressedFileSize": 3386,
                },
                {"filename": "B_20200101T000000.000Z.txt", "fileSize": 870},
            ],
            "next": None,
        }
    )
    compressed, unclear = page.files
    assert (compressed.size, compressed.stored_size) == (3386, 870)
    assert (unclear.size, unclear.stored_size) == (None, 870)


def test_discovery_models() -> None:
    (loc,) = [
        Location.from_api(x, "[0]") for x in sample("locations_NC89_raw_string_booleans.json")
    ]
    assert loc.has_device_data is True
    assert loc.has_property_data is False
    assert loc.depth == pytest.approx(1256.830769)
    deps = [Deployment.from_api(x, "d") for x in sample("deployments_NC89_BPR_tutorial.json")]
    assert deps[0].end == datetime(2022, 8, 4, 19, 16, 37, tzinfo=UTC)
    assert deps[1].end is None
    assert (deps[1].lat, deps[1].lon, deps[1].depth) == (48.670826, -126.847987, 1257.0)
    (bacax,) = [Deployment.from_api(x, "d") for x in sample("deployments_BACAX_CTD_docstring.json")]
    assert bacax.citation is not None
    assert bacax.citation.doi == "10.80242/14d156f2-0146-40e5-a77e-f3637fb6b517"
    (dev,) = [Device.from_api(x, "d") for x in sample("devices_NC89_BPR_tutorial.json")]
    assert (dev.device_code, dev.device_id) == ("BPR_889", 22503)
    (prop,) = [
        Property.from_api(x, "p")
        for x in sample("properties_BACAX_CTD_conductivity_docstring.json")
    ]
    assert prop.uom == "S/m"
    (cat,) = [
        DeviceCategory.from_api(x, "c") for x in sample("deviceCategories_CTD_docstring.json")
    ]
    assert cat.device_category_code == "CTD"


def test_string_boolean_garbage_is_a_schema_error() -> None:
    with pytest.raises(OncSchemaError, match="hasDeviceData"):
        Location.from_api({"locationCode": "X", "hasDeviceData": "maybe"}, "[0]")


def test_product_models() -> None:
    request = ProductRequest.from_api(sample("dpd_request_response_NC89_CTD_TSSP.json"))
    assert request.dp_request_id == 28892274
    assert request.estimated_seconds == 20.0
    assert request.query_url is not None
    assert "YOUR_TOKEN" not in request.query_url
    (run,) = ProductRun.list_from_api(sample("dpd_run_response_running.json"))
    assert (run.dp_run_id, run.file_count, run.is_complete) == (56070469, 0, False)
    (cancelled,) = ProductRun.list_from_api(sample("dpd_cancel_response_wiki.json"))
    assert cancelled.is_failed
    assert cancelled.state is RunState.CANCELLED
    assert run.state is RunState.RUNNING
    assert ProductRun(1, "metadata product running", 0).state is RunState.RUNNING
    assert ProductRun(1, "brand new wording", 0).state is RunState.UNKNOWN
    assert parse_processing_time("2 min") == 120.0
    assert parse_processing_time("soon") is None


def test_error_bodies() -> None:
    (detail,) = error_details(sample("error_400_errorCode127_reconstructed.json"))
    assert detail.code == 127
    assert detail.parameter == "locationCode, deviceCategoryCode, dateFrom, dateTo"
    (auth,) = error_details(sample("error_401_invalid_token_wiki.json"))
    assert auth.parameter == "token"
    assert error_details(sample("error_404_no_data_reconstructed.json")) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty reply"),
        (b"   \n", "empty reply"),
        (b"<html><body>Service Unavailable</body></html>", "HTML"),
        (b'{"sensorData": [{"sensorCode": "c", "data": {"values": [1.0, 2', "truncated"),
    ],
)
def test_unusable_bodies_are_transient_malformed_replies(body: bytes, fragment: str) -> None:
    with pytest.raises(OncMalformedReply, match=fragment) as info:
        decode_json(body, url="http://x/api?token=REDACTED", status=200)
    assert info.value.url == "http://x/api?token=REDACTED"


def _same(a: object, b: object) -> bool:
    """Deep equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _page(axes: list[object]) -> bytes:
    sensors = [
        {
            "sensorCode": f"s{i}",
            "data": None if axis is None else {"sampleTimes": axis, "values": [1.5] * 2},
        }
        for i, axis in enumerate(axes)
    ]
    return ujson.dumps({"next": None, "sensorData": sensors}).encode()


def test_equal_time_axes_are_parsed_once_and_shared() -> None:
    body = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json")
    data = decode_json(body, url="u")
    assert _same(data, ujson.loads(body))  # NaN, nesting, order: all as ujson gives them
    axes = [item["data"]["sampleTimes"] for item in data["sensorData"]]
    assert len(axes) == 6
    assert len(axes[0]) == 10
    assert all(axis is axes[0] for axis in axes)  # one list, not six equal copies


@pytest.mark.parametrize(
    "body",
    [
        _page([["a", "b"], ["a", "c"], ["a", "b"]]),  # one sensor on another clock
        _page([["a", "b"], None, ["a", "b"]]),  # a sensor without data
        # The key elsewhere than in a sensor's data (not in ONC's pages, but possible JSON).
        b'{"parameters": {"sampleTimes": ["a"]}, "sensorData": [{"data": {"sampleTimes": ["b"]}},'
        b' {"data": {"sampleTimes": ["a"]}}]}',
        _page([None, ["a", "b"], ["a", "b"]]),
        b'{"sensorData": [{"data": {"sampleTimes": null, "values": []}},'
        b' {"data": {"sampleTimes": ["a"], "values": [1]}}, {"data": {"sampleTimes": ["a"]}}]}',
        b'{"sensorData": [{"data": {"sampleTimes":\n  ["a"]}}, {"data": {"sampleTimes":["a"]}}]}',
    ],
)
def test_time_axis_sharing_never_changes_what_is_parsed(body: bytes) -> None:
    assert _same(decode_json(body, url="u"), ujson.loads(body))


def test_only_byte_identical_axes_are_shared() -> None:
    data = decode_json(_page([["a", "b"], ["a", "c"], ["a", "b"]]), url="u")
    first, other, same = (item["data"]["sampleTimes"] for item in data["sensorData"])
    assert same is first
    assert other is not first
    assert other == ["a", "c"]


def test_a_truncated_page_with_shared_axes_is_still_a_malformed_reply() -> None:
    body = _page([["a", "b"], ["a", "b"], ["a", "b"]])
    with pytest.raises(OncMalformedReply, match="truncated"):
        decode_json(body[:-5], url="u")


def _columns(page: ScalarPage) -> list[tuple[object, ...]]:
    """Every column of every series as plain lists (NaN as the string 'nan', flags typed)."""
    return [
        (
            s.sensor_code,
            list(s.sample_times),
            [repr(v) for v in s.values],
            list(s.qaqc_flags),
            s.qaqc_flags.typecode,
        )
        for s in page.series
    ]


def _doubles(values: list[Any]) -> array[float]:
    """A `values` list as ujson gives it, packed as today's path packs it (null as NaN)."""
    return array("d", [math.nan if v is None else v for v in values])


def _flag_page(*flag_texts: bytes, name: bytes = b"s") -> bytes:
    sensors = b",".join(
        b'{"sensorCode":"s%d","sensorName":"%s","data":{"qaqcFlags":%s,'
        b'"sampleTimes":["a","b","c"],"values":[1.5,NaN,null]}}' % (i, name, flags)
        for i, flags in enumerate(flag_texts)
    )
    return b'{"next":null,"sensorData":[' + sensors + b"]}"


def test_scalardata_flags_and_values_come_packed_and_the_page_is_what_ujson_gives() -> None:
    body = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json")
    data = decode_scalardata(body, url="u")
    flags = [item["data"]["qaqcFlags"] for item in data["sensorData"]]
    assert all(isinstance(f, array) and f.typecode == "b" for f in flags)
    values = [item["data"]["values"] for item in data["sensorData"]]
    assert all(isinstance(v, array) and v.typecode == "d" for v in values)
    plain = ujson.loads(body)
    assert [list(f) for f in flags] == [i["data"]["qaqcFlags"] for i in plain["sensorData"]]
    assert [v.tobytes() for v in values] == [
        _doubles(i["data"]["values"]).tobytes() for i in plain["sensorData"]
    ]
    for item, raw in zip(data["sensorData"], plain["sensorData"], strict=True):
        item["data"]["qaqcFlags"] = raw["data"]["qaqcFlags"]
        item["data"]["values"] = raw["data"]["values"]
    assert _same(data, plain)  # everything else as ujson gives it
    assert _columns(ScalarPage.from_api(decode_scalardata(body, url="u"))) == _columns(
        ScalarPage.from_api(plain)
    )


@pytest.mark.parametrize(
    "body",
    [
        _flag_page(b"[1,9,3]", b"[0,0,1]"),  # packed
        _flag_page(b"[1,10,3]", b"[1,1,1]"),  # a two-digit flag: that column as ujson parses it
        _flag_page(b"[1, 9,\n 3 ]", b"[-1,2,3]"),  # whitespace, a negative flag
        _flag_page(b"[]", b"[1,1,1]"),  # no flags: "no QC" zeros, as before
        _flag_page(b"[1,1,1]", b"[1,1,1]", name=b'x\\"qaqcFlags\\":[7]'),  # the key in a name
        _flag_page(b"[1,1,1]", b"[1,1,1]", name=b"x\\\\"),  # a name ending in a backslash
    ],
)
def test_packing_flags_never_changes_the_parsed_page(body: bytes) -> None:
    expected = ScalarPage.from_api(ujson.loads(body))
    assert _columns(ScalarPage.from_api(decode_scalardata(body, url="u"))) == _columns(expected)
    names = [s.sensor_name for s in ScalarPage.from_api(decode_scalardata(body, url="u")).series]
    assert names == [s.sensor_name for s in expected.series]


def test_only_one_digit_flag_arrays_are_packed() -> None:
    data = decode_scalardata(_flag_page(b"[1,9,3]", b"[1,10,3]", b"[1, 2,3]"), url="u")
    packed, wide, spaced = (item["data"]["qaqcFlags"] for item in data["sensorData"])
    assert packed == array("b", [1, 9, 3])
    assert wide == [1, 10, 3]
    assert spaced == array("b", [1, 2, 3])


@pytest.mark.parametrize("flags", [b"[1 2,3]", b"[1,2 3]", b"[1,,2]", b"[1,2,]", b"[,1]"])
def test_flags_that_are_not_json_are_a_malformed_reply(flags: bytes) -> None:
    with pytest.raises(OncMalformedReply, match="invalid JSON"):
        decode_scalardata(_flag_page(flags), url="u")


def test_decode_json_leaves_flags_as_lists() -> None:
    data = decode_json(_flag_page(b"[1,9,3]"), url="u")
    assert data["sensorData"][0]["data"]["qaqcFlags"] == [1, 9, 3]


@pytest.mark.parametrize("cut", [5, 60, 120])
def test_a_truncated_scalardata_page_is_still_a_malformed_reply(cut: int) -> None:
    body = _flag_page(b"[1,9,3]", b"[0,0,1]")
    with pytest.raises(OncMalformedReply, match="truncated"):
        decode_scalardata(body[:-cut], url="u")


def _plain(value: object) -> object:
    """A parsed page with packed columns (flags, values, time axes) as lists."""
    if isinstance(value, array | TimeAxis):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_T = b'"2024-01-01T00:00:00.000Z"'


@pytest.mark.parametrize(
    "body",
    [
        # A flags array outside the sensors, and a sensor's key the byte search cannot see
        # (a space before the colon, or a unicode escape): the counts agree, the places not.
        b'{"meta":{"qaqcFlags":[7]},"sensorData":[{"data":{"sampleTimes":[' + _T + b"],"
        b'"values":[1.0],"qaqcFlags" : []}}],"next":null}',
        b'{"meta":{"qaqcFlags":[7]},"sensorData":[{"data":{"sampleTimes":[' + _T + b"],"
        b'"values":[1.0],"qaqc\\u0046lags":[]}}],"next":null}',
        b'{"sensorData":[{"data":[{"qaqcFlags":[1]}]},{"data":{"qaqcFlags" :[]}}]}',
        # A time axis outside the sensors equal to one inside.
        b'{"x":{"sampleTimes":["a"]},"sensorData":[{"data":{"sampleTimes":["a"]}},'
        b'{"data":{"sampleTimes" :["a"]}}]}',
    ],
)
def test_a_cut_array_is_only_ever_given_back_where_it_was_cut(body: bytes) -> None:
    assert _plain(decode_scalardata(body, url="u")) == ujson.loads(body)


def test_a_bracket_inside_a_time_string_does_not_make_an_invalid_page_parse() -> None:
    # Invalid JSON (the second string is never closed); cutting at the first `]` once made
    # it parse, with the first sensor's axis given to the second.
    body = (
        b'{"sensorData":[{"data":{"sampleTimes":["a]"],"values":[1]}},'
        b'{"data":{"sampleTimes":["a],"values":[2]}}],"next":null}'
    )
    with pytest.raises(OncMalformedReply):
        decode_scalardata(body, url="u")
    with pytest.raises(OncMalformedReply):
        decode_json(body, url="u")
