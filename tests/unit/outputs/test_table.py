"""The merge table: last value wins per (time, sensor), NaN survives, the window bounds hold."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs.table import (
    ABSENT_FLAG,
    ScalarMerger,
    TimeParser,
    format_times,
    parse_axis,
    parse_times,
)
from pipeline.times import epoch_ms
from tests.unit.outputs.helpers import COND, DAY, TEMP, times

LOW, HIGH = epoch_ms(DAY), epoch_ms(DAY) + 3_600_000


def test_a_packed_axis_parses_to_what_its_strings_parse_to() -> None:
    text = ["2026-11-20T00:00:00.000Z", "2026-11-20T00:00:00.999Z", "1969-12-31T23:59:59.001Z"]
    ms = parse_axis("\n".join(text))
    assert ms is not None
    assert ms.tolist() == parse_times(text).tolist()
    empty = parse_axis("")
    assert empty is not None
    assert len(empty) == 0


@pytest.mark.parametrize(
    "axis",
    [
        "2026-11-20T00:00:00Z",  # another ISO form: the caller splits and parses each
        "2026-11-20T00:00:00.000+00:00",
        "2026-11-20T00:00:00.000Z\n2026-11-20T00:00:01.000",
        "2026-11-20T00:00:00.000Z 2026-11-20T00:00:01.000Z",
        "2026-11-20T00:00:00.000\u00e9",
    ],
)
def test_an_axis_not_in_oncs_fixed_width_form_is_left_to_the_slow_path(axis: str) -> None:
    assert parse_axis(axis) is None


def test_an_impossible_time_in_an_axis_is_an_output_error() -> None:
    with pytest.raises(OutputError, match="unparseable"):
        parse_axis("2026-13-20T00:00:00.000Z")


def test_times_round_trip_through_milliseconds() -> None:
    text = ["2026-11-20T00:00:00.000Z", "2026-11-20T00:00:00.999Z", "1969-12-31T23:59:59.001Z"]
    ms = parse_times(text)
    assert ms.tolist() == [1795132800000, 1795132800999, -999]
    assert format_times(ms) == text


def test_other_iso_forms_take_the_slow_path() -> None:
    assert parse_times(["2026-11-20T00:00:01Z"]).tolist() == [1795132801000]
    with pytest.raises(OutputError, match="unparseable"):
        parse_times(["yesterday"])


def test_parser_reuses_an_equal_column() -> None:
    parser = TimeParser()
    first = parser.parse(times(DAY, 3))
    assert parser.parse(times(DAY, 3)) is first  # equal list, new object: not parsed again
    assert parser.parse(times(DAY, 4)) is not first


def test_later_values_replace_earlier_ones_and_nan_is_kept() -> None:
    merger = ScalarMerger(LOW, HIGH)
    assert merger.add(TEMP, times(DAY, 3), [1.0, 2.0, 3.0], [1, 1, 1]) == 3
    assert merger.add(TEMP, times(DAY, 2, 1.0)[1:], [math.nan], [9]) == 1
    table = merger.merged()
    assert table.values[0].tolist()[0] == 1.0
    assert math.isnan(table.values[0][1])
    assert table.flags[0].tolist() == [1, 9, 1]
    assert table.record_count == 3


def test_readings_outside_the_window_are_dropped() -> None:
    merger = ScalarMerger(LOW + 1000, LOW + 2000)
    assert merger.add(TEMP, times(DAY, 3), [1.0, 2.0, 3.0], [1, 1, 1]) == 1
    assert merger.merged().times.tolist() == [LOW + 1000]


def test_sensors_with_different_times_share_one_axis() -> None:
    merger = ScalarMerger(LOW, HIGH)
    merger.add(TEMP, times(DAY, 2), [1.0, 2.0], [1, 1])
    merger.add(COND, times(DAY, 3)[1:], [3.0, 4.0], [2, 2])
    table = merger.merged()
    assert [s.code for s in table.sensors] == ["Temperature", "cond"]
    assert table.flags.tolist() == [[1, 1, ABSENT_FLAG], [ABSENT_FLAG, 2, 2]]
    assert table.record_count == 4


def test_merging_onto_a_base_keeps_it_and_detects_no_change() -> None:
    first = ScalarMerger(LOW, HIGH)
    first.add(TEMP, times(DAY, 3), [1.0, math.nan, 3.0], [1, 9, 1])
    base = first.merged()
    again = ScalarMerger(LOW, HIGH, base)
    again.add(TEMP, times(DAY, 2), [1.0, math.nan], [1, 9])  # the same records re-fetched
    assert again.merged().same_as(base)
    grown = ScalarMerger(LOW, HIGH, base)
    grown.add(TEMP, times(DAY, 4)[3:], [4.0], [1])
    assert grown.merged().record_count == 4
    assert not grown.merged().same_as(base)


def test_length_mismatch_is_an_output_error() -> None:
    with pytest.raises(OutputError, match="2 times, 1 values"):
        ScalarMerger(LOW, HIGH).add(TEMP, times(DAY, 2), [1.0], [1, 1])


def test_out_of_order_pages_merge_sorted() -> None:
    merger = ScalarMerger(LOW, HIGH)
    t = times(DAY, 4)
    merger.add(TEMP, t[2:], [3.0, 4.0], [1, 1])
    merger.add(TEMP, t[:3], [1.0, 2.0, 30.0], [1, 1, 4])
    table = merger.merged()
    assert np.all(np.diff(table.times) > 0)
    assert table.values[0].tolist() == [1.0, 2.0, 30.0, 4.0]
    assert table.flags[0].tolist() == [1, 1, 4, 1]


def test_sensors_on_one_axis_merge_as_the_general_merge_does() -> None:
    # Two consecutive pages, both sensors on each page's one parsed axis: nothing to sort.
    pages = [parse_times(times(DAY, 3)), parse_times(times(DAY + timedelta(seconds=3), 2))]
    aligned = ScalarMerger(LOW, HIGH)
    general = ScalarMerger(LOW, HIGH)
    for page, (temp, cond) in zip(
        pages, [([1.0, math.nan, 3.0], [7.0, 8.0, 9.0]), ([4.0, 5.0], [10.0, 11.0])], strict=True
    ):
        aligned.add_ms(TEMP, page, temp, [1] * len(temp))
        aligned.add_ms(COND, page, cond, [2] * len(cond))
        general.add_ms(TEMP, page, temp, [1] * len(temp))
        general.add_ms(COND, page.copy(), cond, [2] * len(cond))  # equal, not the same array
    assert aligned._aligned() is not None
    assert general._aligned() is None
    table = aligned.merged()
    assert table.same_as(general.merged())
    assert table.times.tolist() == [LOW + 1000 * i for i in range(5)]
    assert table.flags.tolist() == [[1] * 5, [2] * 5]
    assert table.values[1].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]


def test_one_axis_out_of_order_takes_the_general_merge() -> None:
    later, earlier = parse_times(times(DAY + timedelta(seconds=2), 2)), parse_times(times(DAY, 2))
    merger = ScalarMerger(LOW, HIGH)
    merger.add_ms(TEMP, later, [3.0, 4.0], [1, 1])
    merger.add_ms(TEMP, earlier, [1.0, 2.0], [1, 1])
    assert merger._aligned() is None
    assert merger.merged().values[0].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_merged_aligned_build_holds_its_readings_once() -> None:
    """The pages' arrays are freed once merged (the table holds every reading), and what is
    merged afterwards (more readings, another base) is what it would have been."""
    import weakref

    merger = ScalarMerger(LOW, HIGH)
    axis = np.array([LOW, LOW + 1000, LOW + 2000], dtype=np.int64)
    pages = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])]
    gone = [weakref.ref(values) for values in pages]
    merger.add_ms(TEMP, axis, pages[0], np.ones(3, dtype=np.int8))
    merger.add_ms(COND, axis, pages[1], np.full(3, 2, dtype=np.int8))
    del pages
    table = merger.merged()
    assert [ref() for ref in gone] == [None, None]
    assert table.values.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    later = np.array([LOW + 3000], dtype=np.int64)
    merger.add_ms(TEMP, later, [7.0], [1])
    merger.add_ms(COND, later, [8.0], [2])
    assert merger._aligned() is not None  # still one axis for every sensor: no sort, no copies
    assert merger.merged().values.tolist() == [[1.0, 2.0, 3.0, 7.0], [4.0, 5.0, 6.0, 8.0]]
    assert merger.rebased(table).merged().values.tolist() == merger.merged().values.tolist()
