"""Page batches: packed compactly, shared time axes, exact round trip through pickle."""

from __future__ import annotations

import math
import pickle
from array import array
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.engine.batches import batch_of, continuation, split_batch
from pipeline.onc.errors import OncSchemaError
from pipeline.onc.models.common import NextPage
from pipeline.onc.models.data import RawPage, ScalarPage
from pipeline.records import RawBatch, ScalarBatch, SensorInfo, scalar_batch

TIMES = ["2026-11-20T00:00:00.000Z", "2026-11-20T00:00:01.000Z", "2026-11-20T00:00:02.000Z"]


def _page(series: list[dict[str, object]]) -> ScalarPage:
    return ScalarPage.from_api({"sensorData": series, "next": None, "qaqcFlagInfo": {"1": "ok"}})


def _sensor(
    code: str, times: list[str], values: list[float], flags: list[int]
) -> dict[str, object]:
    return {
        "sensorCode": code,
        "sensorName": code.title(),
        "unitOfMeasure": "C",
        "data": {"sampleTimes": times, "values": values, "qaqcFlags": flags},
    }


def test_sensors_with_equal_times_share_one_axis_and_keep_their_values() -> None:
    page = _page(
        [
            _sensor("temp", list(TIMES), [1.5, math.nan, -2.0], [1, 9, 1]),
            _sensor("cond", list(TIMES), [3.0, 3.1, 3.2], [1, 1, 4]),
            _sensor("odd", TIMES[:2], [7.0, 8.0], [0, 0]),
        ]
    )
    batch = batch_of(page)
    assert not isinstance(batch, RawBatch)
    assert len(batch.axes) == 2, "temp and cond share one axis, odd has its own"
    assert batch.rows == 8
    columns = batch.columns()
    assert columns[0][1] is columns[1][1]
    assert list(columns[2][1]) == TIMES[:2]
    sensor, times, values, flags = columns[0]
    assert (sensor.code, sensor.name, sensor.unit) == ("temp", "Temp", "C")
    assert list(times) == TIMES
    assert values[0] == 1.5
    assert math.isnan(values[1])
    assert values[2] == -2.0
    assert list(flags) == [1, 9, 1]
    assert batch.qaqc_flag_info == {"1": "ok"}


def test_split_times_kept_with_a_batch_serve_its_columns_and_are_never_pickled() -> None:
    batch = scalar_batch([(SensorInfo("a"), TIMES, [1.0, 2.0, 3.0], [1, 1, 1])], {})
    split = [list(TIMES)]
    cut = ScalarBatch(batch.axes, batch.packed, batch.qaqc_flag_info, split_axes=split)
    assert cut.columns()[0][1] is split[0]  # taken as they are, not split again
    back = pickle.loads(pickle.dumps(cut, protocol=pickle.HIGHEST_PROTOCOL))
    assert back.split_axes is None
    assert back == batch
    # `ScalarBatch.__reduce__` names every field but the split times: one added must be too.
    assert [f.name for f in fields(ScalarBatch)] == [
        "axes",
        "packed",
        "qaqc_flag_info",
        "split_axes",
    ]
    assert back.columns()[0][1] == TIMES


def test_pickle_round_trip_is_exact_and_about_twelve_bytes_a_reading() -> None:
    n = 5000
    times = [f"2026-11-20T01:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z" for i in range(n)]
    page = _page(
        [_sensor(f"s{k}", list(times), [k + i / 7 for i in range(n)], [1] * n) for k in range(8)]
    )
    batch = batch_of(page)
    wire = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    # 8 bytes a value, 1 a flag, one 25-byte time shared by 8 sensors: about 12.2 a reading
    # (a list of floats and a list of times per sensor pickle to about 40).
    assert len(wire) < 13 * batch.rows
    back = pickle.loads(wire)
    for (s1, t1, v1, f1), (s2, t2, v2, f2) in zip(batch.columns(), back.columns(), strict=True):
        assert s1 == s2
        assert list(t1) == list(t2)
        assert v1.tobytes() == v2.tobytes()
        assert list(f1) == list(f2)


def test_flags_outside_one_byte_stay_wide() -> None:
    batch = scalar_batch([(_info("x"), TIMES, [1.0, 2.0, 3.0], [1, 300, -5])], qaqc_flag_info={})
    flags = batch.columns()[0][3]
    assert isinstance(flags, array)
    assert list(flags) == [1, 300, -5]


def test_a_time_holding_a_newline_is_refused_not_misaligned() -> None:
    batch = scalar_batch([(_info("x"), ["a\nb", "c"], [1.0, 2.0], [1, 1])], qaqc_flag_info={})
    with pytest.raises(ValueError, match="did not survive packing"):
        batch.columns()


def test_raw_pages_pass_through() -> None:
    page = RawPage.from_api(
        {"data": {"times": TIMES[:1], "readings": ["$A,1"], "lineTypes": [" "]}, "next": None}
    )
    batch = batch_of(page)
    assert isinstance(batch, RawBatch)
    assert (batch.times, batch.readings, batch.rows) == (TIMES[:1], ["$A,1"], 1)


def _info(code: str) -> SensorInfo:
    return SensorInfo(code=code)


# --------------------------------------------------------------- split_page, continuation

DAY = datetime(2026, 11, 20, tzinfo=UTC)
SPLIT_TIMES = [
    "2026-11-19T23:59:59.000Z",
    "2026-11-20T00:00:00.000Z",  # on a bound: the later part
    "2026-11-20T11:00:00.500Z",
    "2026-11-20T23:59:59.999Z",
    "2026-11-21T00:00:00Z",  # no fraction: sorts like 00:00:00.000
    "2026-11-21T06:00:00.000Z",
]
BOUNDS = [DAY, DAY + timedelta(days=1)]


def columns_of(batch: object) -> dict[str, tuple[list[str], list[float], list[int]]]:
    assert isinstance(batch, ScalarBatch)
    return {
        sensor.code: (list(times), list(values), list(flags))
        for sensor, times, values, flags in batch.columns()
    }


def test_a_page_spanning_three_partitions_is_cut_at_each_bound() -> None:
    page = _page(
        [
            _sensor("temp", list(SPLIT_TIMES), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1] * 6),
            _sensor("cond", list(SPLIT_TIMES), [7.0, 8.0, 9.0, 10.0, 11.0, 12.0], [3] * 6),
            _sensor("odd", SPLIT_TIMES[2:], [30.0, 40.0, 50.0, 60.0], [2] * 4),
        ]
    )
    parts = split_batch(batch_of(page), BOUNDS)
    assert [index for index, _ in parts] == [0, 1, 2]
    by_index = {index: columns_of(part) for index, part in parts}
    assert by_index[0] == {
        "temp": (SPLIT_TIMES[:1], [1.0], [1]),
        "cond": (SPLIT_TIMES[:1], [7.0], [3]),
    }
    assert by_index[1] == {
        "temp": (SPLIT_TIMES[1:4], [2.0, 3.0, 4.0], [1, 1, 1]),
        "cond": (SPLIT_TIMES[1:4], [8.0, 9.0, 10.0], [3, 3, 3]),
        "odd": (SPLIT_TIMES[2:4], [30.0, 40.0], [2, 2]),
    }
    assert by_index[2] == {
        "temp": (SPLIT_TIMES[4:], [5.0, 6.0], [1, 1]),
        "cond": (SPLIT_TIMES[4:], [11.0, 12.0], [3, 3]),
        "odd": (SPLIT_TIMES[4:], [50.0, 60.0], [2, 2]),
    }
    for _, part in parts:  # the page's own members travel with each part
        assert isinstance(part, ScalarBatch)
        assert part.qaqc_flag_info == {"1": "ok"}


def test_onc_fixed_width_times_are_cut_like_any_other() -> None:
    # ONC's one format takes the packed path (no string per time): the same cuts.
    fixed = [t for t in SPLIT_TIMES if len(t) == 24]
    page = _page([_sensor("temp", fixed, [1.0, 2.0, 3.0, 4.0, 5.0], [1] * 5)])
    parts = split_batch(batch_of(page), BOUNDS)
    assert [(i, columns_of(p)["temp"][0]) for i, p in parts] == [
        (0, fixed[:1]),
        (1, fixed[1:4]),
        (2, fixed[4:]),
    ]


def test_a_page_whose_rows_all_fall_in_one_partition_is_passed_whole() -> None:
    batch = batch_of(_page([_sensor("temp", SPLIT_TIMES[1:4], [1.0, 2.0, 3.0], [1, 1, 1])]))
    assert split_batch(batch, BOUNDS) == [(1, batch)]
    assert split_batch(batch, []) == [(0, batch)]
    raw = batch_of(RawPage(SPLIT_TIMES[4:], ["a", "b"], [" ", " "]))
    [(index, part)] = split_batch(raw, BOUNDS)
    assert index == 2
    assert part is raw


def test_a_raw_page_is_cut_by_line_time() -> None:
    raw = batch_of(RawPage(list(SPLIT_TIMES), list("abcdef"), list("123456")))
    parts = split_batch(raw, BOUNDS)
    assert (
        [(i, p.times, p.readings, p.line_types) for i, p in parts]
        == [  # type: ignore[union-attr]
            (0, SPLIT_TIMES[:1], ["a"], ["1"]),
            (1, SPLIT_TIMES[1:4], ["b", "c", "d"], ["2", "3", "4"]),
            (2, SPLIT_TIMES[4:], ["e", "f"], ["5", "6"]),
        ]
    )


@pytest.mark.parametrize("fixed_width", [True, False])
def test_a_page_out_of_time_order_across_a_bound_is_refused(fixed_width: bool) -> None:
    late = SPLIT_TIMES[5] if fixed_width else SPLIT_TIMES[4]
    # In order at both ends, one row of the next day among the first day's.
    shuffled = [SPLIT_TIMES[0], late, SPLIT_TIMES[1], SPLIT_TIMES[2], SPLIT_TIMES[5]]
    page = _page([_sensor("temp", shuffled, [1.0, 2.0, 3.0, 4.0, 5.0], [1] * 5)])
    with pytest.raises(OncSchemaError, match="time order"):
        split_batch(batch_of(page), BOUNDS)
    lines = batch_of(RawPage(shuffled, list("abcde"), list("     ")))
    with pytest.raises(OncSchemaError, match="time order"):
        split_batch(lines, BOUNDS)


def test_a_page_without_rows_has_no_parts() -> None:
    assert split_batch(batch_of(_page([_sensor("temp", [], [], [])])), BOUNDS) == []
    assert split_batch(batch_of(RawPage([], [], [])), BOUNDS) == []


def test_the_continuation_is_next_date_from() -> None:
    def with_next(parameters: dict[str, str] | None) -> RawPage:
        following = None if parameters is None else NextPage(parameters)
        return RawPage([], [], [], next=following)

    assert continuation(with_next({"dateFrom": "2026-11-20T01:23:20.411Z"})) == datetime(
        2026, 11, 20, 1, 23, 20, 411_000, tzinfo=UTC
    )
    assert continuation(with_next({"dateFrom": "2026-11-20T01:00:00"})) == DAY + timedelta(hours=1)
    assert continuation(with_next(None)) is None
    assert continuation(with_next({"rowLimit": "5"})) is None  # no dateFrom: no resume point
    assert continuation(with_next({"dateFrom": "yesterday"})) is None
