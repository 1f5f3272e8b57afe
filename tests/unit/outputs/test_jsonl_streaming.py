"""JSON Lines: the streamed fast path writes exactly what the merging path writes."""

from __future__ import annotations

import errno
import math
import os
import stat
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import ujson

from pipeline.exceptions import OutputError
from pipeline.outputs import jsonl
from pipeline.outputs.jsonl import JsonlWindowWriter
from pipeline.records import ScalarColumn, SensorInfo, Window
from tests.diskwrites import FakeDirect, Write, check_writes
from tests.unit.outputs.test_numtext import random_doubles

WINDOW = Window(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 20, 1, tzinfo=UTC))
SENSORS = [SensorInfo("temperature"), SensorInfo("cond"), SensorInfo("depth")]


def stamp(second: int) -> str:
    when = WINDOW.start + timedelta(seconds=second)
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def page(first: int, count: int) -> list[tuple[SensorInfo, list[str], list[float], list[int]]]:
    times = [stamp(s) for s in range(first, first + count)]
    columns = []
    for k, sensor in enumerate(SENSORS):
        values = [s * 0.1 + k for s in range(first, first + count)]
        values[::7] = [math.nan] * len(values[::7])
        if k == 1:
            values[3] = math.inf
            values[4] = -math.inf
        flags = [9 if math.isnan(v) else 1 for v in values]
        columns.append((sensor, times, values, flags))
    return columns


def build(
    path: Path,
    pages: list[list[tuple[SensorInfo, list[str], list[float], list[int]]]],
    *,
    streamed: bool,
) -> bytes:
    writer = JsonlWindowWriter(path, WINDOW)
    for columns in pages:
        if streamed:
            writer.add_scalar_page(columns)
        else:
            for column in columns:
                writer.add_scalar(*column)
    published = writer.publish()
    assert published is not None
    assert published.size == path.stat().st_size
    return path.read_bytes()


def test_streamed_file_is_byte_identical_to_the_merged_one(tmp_path: Path) -> None:
    pages = [page(0, 500), page(500, 500), page(1000, 250)]
    streamed = build(tmp_path / "a.jsonl", pages, streamed=True)
    merged = build(tmp_path / "b.jsonl", pages, streamed=False)
    assert streamed == merged
    lines = [ujson.loads(line) for line in streamed.splitlines()]
    assert len(lines) == 1250 * 3
    assert math.isnan(lines[0]["value"])
    assert {line["value"] for line in lines if math.isinf(line["value"])} == {math.inf, -math.inf}
    assert b"NaN" in streamed
    assert b"nan" not in streamed


def test_an_overlapping_page_switches_to_merging_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)
    writer.add_scalar_page(page(0, 100))
    writer.add_scalar_page(page(50, 100))  # re-sends 50..99: no longer in time order
    writer.publish()
    keys = [
        (r["sampleTime"], r["sensorCode"]) for r in map(ujson.loads, path.read_text().splitlines())
    ]
    assert len(keys) == len(set(keys)) == 150 * 3
    assert keys == sorted(keys)
    assert not list(tmp_path.glob("*.tmp"))


def test_records_outside_the_window_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)
    kept = writer.add_scalar_page(page(3590, 20))  # 10 s inside, 10 s in the next window
    assert kept == 10 * 3
    assert writer.record_count == 30
    writer.publish()
    last = ujson.loads(path.read_text().splitlines()[-1])
    assert last["sampleTime"] == stamp(3599)


def test_a_page_out_of_time_order_keeps_every_row_of_the_window(tmp_path: Path) -> None:
    # Bisected, 00:10, 00:20, 23:00 (the day before), 00:30 give the window 00:30 alone.
    order = [600, 1200, -3600, 1800]
    columns = [
        (sensor, [stamp(s) for s in order], [float(s) for s in order], [1] * len(order))
        for sensor in SENSORS[:2]
    ]
    writer = JsonlWindowWriter(tmp_path / "w.jsonl", WINDOW)
    assert writer.add_scalar_page(columns) == 3 * 2
    writer.publish()
    kept = [ujson.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert [r["value"] for r in kept[::2]] == [600.0, 1200.0, 1800.0]


def test_an_existing_file_is_merged_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    first = JsonlWindowWriter(path, WINDOW)
    first.add_scalar_page(page(0, 100))
    first.publish()
    again = JsonlWindowWriter(path, WINDOW)
    again.add_scalar_page(page(100, 100))
    again.publish()
    assert len(path.read_text().splitlines()) == 200 * 3


def test_discard_leaves_no_temporary_and_no_file(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)
    writer.add_scalar_page(page(0, 100))
    assert list(tmp_path.glob("*.tmp"))
    writer.discard()
    assert not list(tmp_path.iterdir())


def test_flags_outside_0_to_9_are_written_as_they_are(tmp_path: Path) -> None:
    times = [stamp(s) for s in range(6)]
    narrow = array("b", [1, -1, 9, 10, 127, 0])
    wide = array("q", [1, 2**40, 9, -(2**40), 3, 4])
    for flags in (narrow, wide):
        path = tmp_path / f"{flags.typecode}.jsonl"
        writer = JsonlWindowWriter(path, WINDOW)
        assert writer.add_scalar_page([(SENSORS[0], times, [0.5] * 6, flags)]) == 6
        assert writer.publish() is not None
        lines = [ujson.loads(line) for line in path.read_bytes().splitlines()]
        assert [line["qaqcFlag"] for line in lines] == list(flags)


def packed_page(first: int, count: int, flag_of: list[int]) -> list[ScalarColumn]:
    """A page as the parser packs it: doubles and one byte a flag (`flag_of[k]` for sensor k,
    -1 for a flag that changes along the column)."""
    times = [stamp(s) for s in range(first, first + count)]
    columns: list[ScalarColumn] = []
    for k, sensor in enumerate(SENSORS):
        values = array("d", [s / 7 + k for s in range(first, first + count)])
        flags = array("b", [s % 10 for s in range(first, first + count)])
        if flag_of[k] >= 0:
            flags = array("b", [flag_of[k]] * count)
        columns.append((sensor, times, values, flags))
    return columns


def test_packed_pages_stream_what_merging_writes(tmp_path: Path) -> None:
    # More rows than one rendered block, so blocks of one flag and of many flags alternate
    # with their ends; one sensor all 0, one all 9, one changing.
    pages = [packed_page(0, 2500, [0, 9, -1]), packed_page(2500, 1000, [4, -1, 4])]
    streamed = build(tmp_path / "a.jsonl", pages, streamed=True)
    merged = build(tmp_path / "b.jsonl", pages, streamed=False)
    assert streamed == merged
    lines = [ujson.loads(line) for line in streamed.splitlines()]
    assert len(lines) == 3500 * 3
    # Sorted by sensor code: cond (all 9), depth (changing), temperature (all 0).
    assert [line["qaqcFlag"] for line in lines[:6]] == [9, 0, 0, 9, 1, 0]
    assert {line["qaqcFlag"] for line in lines[7500:] if line["sensorCode"] == "temperature"} == {4}


def test_streamed_blocks_reach_the_file_around_the_page_cache(
    tmp_path: Path,
    writes: list[Write],
    kernel_direct: bool,
) -> None:
    direct = kernel_direct
    writes.clear()
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)
    writer.add_scalar_page(packed_page(0, 3000, [1, 1, 1]))  # two blocks of ~200 kB
    published = writer.publish()
    assert published is not None
    assert published.size == path.stat().st_size
    check_writes(writes, published.size, direct=direct)


def test_a_full_disk_while_streaming_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    calls = 0

    def full_after_three(fd: int, data: memoryview) -> int:
        nonlocal calls
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls += 1
            if calls > 1:  # the first block's whole blocks go in, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", full_after_three)
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)

    def add_and_publish() -> None:
        writer.add_scalar_page(packed_page(0, 3000, [1, 1, 1]))
        # Written behind: the failure may be learnt by the next write or the publish.
        writer.publish()

    with pytest.raises(OutputError, match="No space left"):
        add_and_publish()
    assert not list(tmp_path.iterdir())  # neither the temporary nor a final file


def test_a_full_disk_while_switching_to_merging_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switching writes out what waits in memory before reading the file back: a full disk
    # there is an OutputError, and the window's temporary goes. (Bytes wait in memory where
    # the file is written directly: FakeDirect makes it so on any file system.)
    FakeDirect(monkeypatch)
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)
    writer.add_scalar_page(packed_page(0, 3000, [1, 1, 1]))
    assert list(tmp_path.iterdir())  # streaming: the temporary exists

    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OutputError, match="No space left"):
        writer.add_scalar_page(packed_page(100, 50, [1, 1, 1]))  # overlaps: merging
    assert not list(tmp_path.iterdir())


def test_value_texts_spell_every_double_as_ujson_does() -> None:
    # The doubles numtext is tested on (every magnitude, edges, NaN, infinities), cut into
    # blocks, plus readings whose text holds `0.0000` and whole numbers given as ints.
    doubles = random_doubles().tolist()
    blocks = [doubles[i : i + 2_048] for i in range(0, len(doubles), 2_048)]
    blocks += [[10.00001, 1.5], [1e-5, 2.0], [math.nan, 3.25, math.inf, -math.inf], [], [7.0]]
    for block in blocks:
        expected = [ujson.dumps(float(v)) for v in block]
        assert jsonl._value_texts(array("d", block)) == expected
        assert jsonl._value_texts(block) == expected
    assert jsonl._value_texts([1, 2, -3]) == ["1.0", "2.0", "-3.0"]


def test_value_texts_respell_an_exponent_orjson_writes_its_own_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # orjson before 3.11.7 wrote `1e16` where ujson writes `1e+16`: the `e` sends the column
    # to ujson, whichever way this orjson writes it.
    real = jsonl.orjson.dumps

    class OldOrjson:
        @staticmethod
        def dumps(value: object) -> bytes:
            return real(value).replace(b"e+", b"e")

    monkeypatch.setattr(jsonl, "orjson", OldOrjson)
    block = [1.5, 1e16, 2.5e22, -3e300, 7.0]
    assert jsonl._value_texts(block) == [ujson.dumps(v) for v in block]


@pytest.mark.parametrize(
    "flags",
    [[], [3], [1, 2], [1] * 5, [0, 9, 4, 4, 1], [1, 12], [-1]],
    ids=["none", "one", "two", "one-flag", "mixed", "two-digit", "negative"],
)
def test_flag_tails_spell_every_flag_as_a_line_does(flags: list[int]) -> None:
    want = [f',"qaqcFlag":{flag}}}\n' for flag in flags]
    assert jsonl._flag_tails(array("b", flags)) == want
    assert jsonl._flag_tails(flags) == want
