"""Page batches: packed compactly, shared time axes, exact round trip through pickle."""

from __future__ import annotations

import math
import pickle
from array import array

import pytest

from pipeline.engine.batches import batch_of
from pipeline.onc.models.data import RawPage, ScalarPage
from pipeline.records import RawBatch, SensorInfo, scalar_batch

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
