"""Query parsing: durations, windows, rowLimit, and the order of `next` parameters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.emulator.archive import parse_range
from pipeline.emulator.catalogue import iso_ms, ms
from pipeline.emulator.params import (
    ApiError,
    Query,
    next_object,
    parse_duration,
    resolve_window,
    row_limit,
)

NOW = ms("2024-01-10T00:00:00.000Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT5S", timedelta(seconds=5)),
        ("-P1DT1H", timedelta(days=1, hours=1)),
        ("P2D", timedelta(days=2)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("PT", None),
        ("2024-01-01", None),
    ],
)
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


def test_windows_in_every_documented_form() -> None:
    def window(qs: str) -> tuple[str, str]:
        start, end = resolve_window(Query.parse(qs), NOW)
        return iso_ms(start), iso_ms(end)

    assert window("dateFrom=2023-01-01&dateTo=2023-01-02T00:00:00.000Z") == (
        "2023-01-01T00:00:00.000Z",
        "2023-01-02T00:00:00.000Z",
    )
    assert window("dateFrom=-P1DT1H&dateTo=2023-01-02") == (
        "2022-12-31T23:00:00.000Z",
        "2023-01-02T00:00:00.000Z",
    )
    assert window("dateFrom=2023-01-01T00:00:00Z&dateTo=PT5S") == (
        "2023-01-01T00:00:00.000Z",
        "2023-01-01T00:00:05.000Z",
    )
    assert window("") == ("2024-01-09T00:00:00.000Z", "2024-01-10T00:00:00.000Z")


@pytest.mark.parametrize(
    ("qs", "code"),
    [
        ("dateFrom=2023-01-02&dateTo=2023-01-01", 23),
        ("dateFrom=2025-01-01", 25),
        ("dateFrom=01/02/2023", 127),
        ("dateFrom=-PT1S&dateTo=PT1S", 127),
        ("dateTo=PT1S", 128),
    ],
)
def test_window_errors(qs: str, code: int) -> None:
    with pytest.raises(ApiError) as info:
        resolve_window(Query.parse(qs), NOW)
    assert info.value.body["errors"][0]["errorCode"] == code


def test_row_limit_rules() -> None:
    assert row_limit(Query.parse("rowLimit=0"), clamp_bad=True) == 100_000
    assert row_limit(Query.parse("rowLimit=-1"), clamp_bad=True) == 100_000
    assert row_limit(Query.parse("rowLimit=100001"), clamp_bad=False) == 100_000
    assert row_limit(Query.parse("rowLimit=7"), clamp_bad=False) == 7
    with pytest.raises(ApiError):
        row_limit(Query.parse("rowLimit=0"), clamp_bad=False)


def test_next_object_moves_date_from_and_token_to_the_end() -> None:
    query = Query.parse(
        "method=getByLocation&token=T&dateFrom=2009-08-27&dateTo=2009-08-29"
        "&rowLimit=10&locationCode=BACVP"
    )
    nxt = next_object(
        "http://h", "/api/scalardata", query, replace={"dateFrom": "2009-08-27T00:53:32.289Z"}
    )
    assert list(nxt["parameters"].items()) == [
        ("method", "getByLocation"),
        ("dateTo", "2009-08-29"),
        ("rowLimit", "10"),
        ("locationCode", "BACVP"),
        ("dateFrom", "2009-08-27T00:53:32.289Z"),
        ("token", "T"),
    ]
    assert nxt["url"] == (
        "http://h/api/scalardata?method=getByLocation&dateTo=2009-08-29"
        "&rowLimit=10&locationCode=BACVP&dateFrom=2009-08-27T00%3A53%3A32.289Z"
        "&token=T"
    )


def test_query_redaction_and_unknown_names() -> None:
    query = Query.parse("token=secret&a=1&dpo_x=2")
    assert ("token", "REDACTED") in query.without_token()
    query.check_known(["a"])  # dpo_* and token are always known
    with pytest.raises(ApiError) as info:
        Query.parse("b=1&c=2").check_known(["a"])
    assert info.value.body["errors"][0] == {
        "errorCode": 129,
        "errorMessage": "Invalid parameter name",
        "parameter": "b, c",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=90-200", (90, 100)),
        ("bytes=100-", "unsatisfiable"),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
    ],
)
def test_parse_range(header: str, expected: object) -> None:
    assert parse_range(header, 100) == expected
