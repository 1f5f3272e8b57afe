"""The C lines of JSON Lines and CSV (`pipeline/outputs/_lines.c`) against their Python and
Arrow references."""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import ujson

from pipeline.outputs import csv as csv_module
from pipeline.outputs import jsonl, native_lines
from pipeline.outputs.csv import CsvWriter
from pipeline.outputs.jsonl import JsonlWindowWriter
from pipeline.outputs.numtext import ISO_TIME_WIDTH, iso_time_record, iso_times
from pipeline.outputs.table import ABSENT_FLAG, WideTable
from pipeline.records import SensorInfo
from tests.unit.c_modules import built, required
from tests.unit.outputs.helpers import TEMP, ctd_meta
from tests.unit.outputs.test_csv import WINDOW as CSV_WINDOW
from tests.unit.outputs.test_jsonl_streaming import WINDOW, page
from tests.unit.outputs.test_numtext import random_doubles

ROOT = Path(__file__).resolve().parents[3]

# Imported, not skipped when missing: `native` fails where a compiler is (or in CI).
c_lines = built("pipeline.outputs._lines")


@pytest.fixture
def native() -> ModuleType:
    """The C module; a test fails without it wherever it should have been built."""
    return required(c_lines, "pipeline.outputs._lines", "JSON Lines is rendered in Python here")


def test_the_module_is_built_wherever_a_compiler_is(native: ModuleType) -> None:
    """The install compiles it (hatch_build.py); the writer uses it."""
    assert native_lines.COMPILED
    assert native.__file__.endswith(sysconfig.get_config_var("EXT_SUFFIX"))


def _series(
    rng: random.Random, rows: int, spare: int
) -> tuple[list[str], list[tuple[SensorInfo, list[str], Sequence[float], Sequence[int]]]]:
    pool = [*random_doubles()[::97].tolist(), math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-5]
    times = [
        f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.{i % 1000:03d}Z" for i in range(rows + spare)
    ]
    series: list[tuple[SensorInfo, list[str], Sequence[float], Sequence[int]]] = []
    for s in range(rng.choice([1, 3, 8])):
        if rng.random() < 0.5:
            values: Sequence[float] = array("d", (rng.choice(pool) for _ in times))
        else:  # sensor-like readings: a few decimals, now and then a gap-fill NaN
            digits = rng.randint(0, 7)
            values = [
                math.nan if rng.random() < 0.05 else round(rng.uniform(-90, 90), digits)
                for _ in times
            ]
        flags: Sequence[int] = rng.choice(
            [
                array("b", (rng.choice([0, 1, 2, 9]) for _ in times)),
                array("b", [1] * len(times)),
                array("b", (rng.choice([-3, 0, 12, 127]) for _ in times)),
                array("q", (rng.choice([0, 4, 2**40, -(2**63)]) for _ in times)),
                array("h", (rng.choice([0, 300]) for _ in times)),
                [float(rng.choice([0, 1])) for _ in times],
            ]
        )
        code = rng.choice(["temperature", 'odd"code\\', "température", "x"]) + str(s)
        series.append((SensorInfo(code), times, values, flags))
    return times, series


def _one_by_one(
    times: list[str],
    series: Sequence[tuple[SensorInfo, list[str], Sequence[float], Sequence[int]]],
    start: int,
    end: int,
) -> bytes:
    """The lines as the merging path writes them, a record at a time (`_number` per value)."""
    return "".join(
        f'{{"sampleTime":"{times[row]}","sensorCode":{ujson.dumps(info.code)},'
        f'"value":{jsonl._number(values[row])},"qaqcFlag":{int(flags[row])}}}\n'
        for row in range(start, end)
        for info, _, values, flags in series
    ).encode("utf-8")


@pytest.mark.parametrize("seed", range(40))
def test_woven_blocks_are_the_python_blocks_byte_for_byte(native: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    rows = rng.choice([0, 1, 2, 7, 300, 2048])
    times, series = _series(rng, rows, spare=9)
    if seed % 5 == 0:  # never ONC's, but text all the same
        times[:] = [t.replace("T", "é") for t in times]
    start = rng.randint(0, 9)
    woven = jsonl._scalar_block(times, series, start, start + rows)
    assert woven == jsonl._scalar_block_py(times, series, start, start + rows).encode("utf-8")
    assert woven == _one_by_one(times, series, start, start + rows)
    assert woven.count(b"\n") == rows * len(series)


def test_flags_no_int64_holds_are_spelled_by_the_python_lines(native: ModuleType) -> None:
    times = ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z"]
    series = [(SensorInfo("t"), times, array("d", [1.5, 2.5]), array("Q", [2**64 - 1, 1]))]
    woven = jsonl._scalar_block(times, series, 0, 2)
    assert woven == _one_by_one(times, series, 0, 2)
    assert b'"qaqcFlag":18446744073709551615}' in woven


def _digits(value: float) -> int:
    """Significant digits of the shortest decimal that reads back as `value` (repr's)."""
    if not math.isfinite(value):
        return 0
    text = repr(abs(value)).removesuffix(".0")
    return len(text.replace(".", "").lstrip("0"))


def test_value_body_spells_what_it_takes_as_ujson_does_and_declines_the_rest(
    native: ModuleType,
) -> None:
    c_lines = native
    values = random_doubles()
    spelled = declined = 0
    for block in np.array_split(values, 4_000):
        body = c_lines.value_body(array("d", block.tolist()))
        if body is None:
            declined += 1
            assert any(0 < abs(v) < 1e-4 or _digits(v) > 15 for v in block.tolist()), block
        else:
            spelled += 1
            assert body == ujson.dumps(block.tolist())[1:-1].encode("ascii")
    assert spelled > 500  # both ways taken by the random doubles
    assert declined > 500
    sensor_like = array("d", np.round(np.random.default_rng(7).normal(10, 30, 50_000), 4))
    assert c_lines.value_body(sensor_like) == ujson.dumps(sensor_like.tolist())[1:-1].encode()
    edges = [0.0, -0.0, 1e-4, -1e-4, 5.0, 0.3, 999999999999999.0, 123.456, math.nan]
    for value in [*edges, math.inf, -math.inf]:
        assert c_lines.value_body(array("d", [value])) == ujson.dumps(value).encode()
    for value in [9.9e-5, 1e15, 1e300, 0.1 + 0.2, 1 / 3, 5e-324, 999999999999999.9]:
        assert c_lines.value_body(array("d", [value])) is None, value
    assert c_lines.value_body(array("d")) == b""


def test_value_body_keeps_each_values_own_decimals_whatever_came_before(
    native: ModuleType,
) -> None:
    """Each value's decimals are searched from the previous one's: down and up both work."""
    c_lines = native
    values = [1.25, 3.0, 0.000125, 70.5, 12345.678901, 2.0, 0.1, 99999999999999.9]
    for order in (values, values[::-1]):
        assert c_lines.value_body(array("d", order)) == ujson.dumps(order)[1:-1].encode()


def test_scalar_lines_refuses_inputs_that_do_not_line_up(native: ModuleType) -> None:
    c_lines = native
    times = ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z"]
    good = (b'","sensorCode":"t","value":', b"1.0,2.0", array("d", [1, 2]), array("b", [0, 1]))
    assert c_lines.scalar_lines(times, 0, 2, [good]).count(b"\n") == 2
    bad_bodies = [b"1.0", b"1.0,2.0,3.0", b"1.0,", b",2.0", b"1.0,,2.0", b""]
    for body in bad_bodies:
        with pytest.raises(ValueError, match="one number a row"):
            c_lines.scalar_lines(times, 0, 2, [(good[0], body, good[2], good[3])])
    with pytest.raises(ValueError, match="one double a row"):
        c_lines.scalar_lines(times, 0, 2, [(good[0], good[1], array("f", [1, 2]), good[3])])
    with pytest.raises(ValueError, match="one double a row"):
        c_lines.scalar_lines(times, 0, 2, [(good[0], good[1], array("d", [1]), good[3])])
    with pytest.raises(ValueError, match="int8 or int64"):
        c_lines.scalar_lines(times, 0, 2, [(good[0], good[1], good[2], array("h", [0, 1]))])
    with pytest.raises(ValueError, match="one flag a row"):
        c_lines.scalar_lines(times, 0, 2, [(good[0], good[1], good[2], array("b", [0]))])
    with pytest.raises(IndexError):
        c_lines.scalar_lines(times, 1, 3, [good])
    with pytest.raises(TypeError, match="a time is a str"):
        c_lines.scalar_lines([b"x", b"y"], 0, 2, [good])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        c_lines.scalar_lines(times, 0, 2, [good[:3]])  # type: ignore[list-item]


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_a_streamed_window_is_the_same_file_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(native_lines, "COMPILED", native)
    path = tmp_path / "w.jsonl"
    writer = JsonlWindowWriter(path, WINDOW)
    assert writer.add_scalar_page(page(0, 3_000)) == 9_000
    published = writer.publish()
    assert published is not None
    lines = path.read_bytes().splitlines()
    assert len(lines) == 9_000
    # The same lines the merging path writes, one record at a time.
    merged = JsonlWindowWriter(tmp_path / "m.jsonl", WINDOW)
    for column in page(0, 3_000):
        merged.add_scalar(*column)
    assert merged.publish() is not None
    assert (tmp_path / "m.jsonl").read_bytes() == path.read_bytes()


def _wheel(tree: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(tree)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.timeout(300)
def test_the_wheel_carries_the_module_and_without_a_compiler_is_pure_python(
    tmp_path: Path, native: ModuleType
) -> None:
    """hatch_build.py: the module in the wheel where it compiles; no compiler means the
    Python lines and a message why; under CI=true, an error (CI never runs without it)."""
    tree = tmp_path / "src"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".*", "tests", "benchmarks", "docs", "build", "*.so", "__pycache__"
        ),
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    built = _wheel(tree, tmp_path / "w", env)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "w").glob("*.whl")
    assert "-cp3" in wheel.name
    assert not wheel.name.endswith("-none-any.whl")
    for module in ("pipeline/outputs/_lines", "pipeline/_columns"):
        assert module + sysconfig.get_config_var("EXT_SUFFIX") in zipfile.ZipFile(wheel).namelist()

    env["CC"] = "no-such-cc"
    pure = _wheel(tree, tmp_path / "p", env)
    assert pure.returncode == 0, pure.stderr
    (wheel,) = (tmp_path / "p").glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".so")]
    for source in ("_lines.c", "_columns.c"):
        assert f"{source} not compiled (no C compiler (no-such-cc) on PATH)" in (
            pure.stdout + pure.stderr
        )

    failed = _wheel(tree, tmp_path / "f", env | {"CI": "true"})
    assert failed.returncode != 0
    assert "no-such-cc" in failed.stdout + failed.stderr


# -- CSV --------------------------------------------------------------------------------------


def _csv_table(rng: random.Random, rows: int) -> tuple[WideTable, bool]:
    """A random table, and whether every column's values have a repr spelling at hand."""
    sensors = [SensorInfo(f"s{i}", unit="m") for i in range(rng.choice([1, 3, 8]))]
    times = np.sort(rng.sample(range(0, 86_400_000 * 2, 250), rows)).astype(np.int64)
    times += int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1000)
    values = np.empty((len(sensors), rows))
    flags = np.empty((len(sensors), rows), dtype=np.int8)
    spellable = True
    for s in range(len(sensors)):
        kind = rng.random()
        if kind < 0.4:  # sensor-like readings with a few decimals
            column = np.round(np.random.default_rng(rng.randrange(99)).normal(10, 30, rows), 4)
        elif kind < 0.6:  # a derived quantity at full precision (16 - 17 digits)
            column = np.random.default_rng(rng.randrange(99)).normal(1033, 1, rows)
        elif kind < 0.8:
            column = np.round(np.random.default_rng(rng.randrange(99)).uniform(-1e6, 1e6, rows), 2)
        else:  # now and then values no fast spelling has: tiny, huge, exponents
            column = np.array([rng.choice([1e-5, 1e16, 5e-324, 12.5, -0.0]) for _ in range(rows)])
            spellable = False
        holes = np.random.default_rng(rng.randrange(99)).random(rows)
        column[holes < 0.05] = math.nan
        column[(holes > 0.05) & (holes < 0.06)] = rng.choice([math.inf, -math.inf])
        values[s] = column
        flags[s] = np.random.default_rng(rng.randrange(99)).choice([0, 1, 9, -1, 12, 127], rows)
        flags[s, holes > 0.9] = ABSENT_FLAG  # no record at that time: both cells empty
    return WideTable(times, sensors, values, flags), spellable


@pytest.mark.parametrize("seed", range(16))
def test_csv_blocks_from_c_are_arrows_byte_for_byte(
    native: ModuleType, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(csv_module, "BLOCK_ROWS", rng.choice([1, 7, 8_192]))
    table, spellable = _csv_table(rng, rng.choice([1, 50, 3_000]))
    meta = ctd_meta()
    writer = CsvWriter({meta.dataset_id: meta}, partition="daily")
    window = writer.open_window(Path("/nonexistent"), meta.dataset_id, CSV_WINDOW)
    calls: list[int] = []
    real = native_lines.csv_lines

    def counted(*args: object) -> bytes:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(native_lines, "csv_lines", counted)
    woven = b"".join(window.render_blocks(table))
    monkeypatch.setattr(native_lines, "COMPILED", False)
    assert woven == b"".join(window.render_blocks(table))
    if spellable:
        assert len(calls) == -(-len(table.times) // csv_module.BLOCK_ROWS)  # every block
    assert woven.count(b"\n") == len(table.times) + 2


def test_csv_lines_refuses_inputs_that_do_not_line_up(native: ModuleType) -> None:
    good = (b"", b"1.0,2.0", array("d", [1, 2]), array("b", [0, 1]))
    times = b"2026-01-01T00:00:00.000Z2026-01-01T00:00:01.000Z"
    rows = array("q", [0, 0])
    assert native.csv_lines(times, 24, [b"S,1.0,2.0,3.0"], rows, [good]).count(b"\n") == 2
    with pytest.raises(ValueError, match="one time of `width` bytes a row"):
        native.csv_lines(times[:-1], 24, [b"S"], rows, [good])
    with pytest.raises(IndexError, match="not one of the stations"):
        native.csv_lines(times, 24, [b"S"], array("q", [0, 1]), [good])
    with pytest.raises(ValueError, match="64-bit integers"):
        native.csv_lines(times, 24, [b"S"], array("i", [0, 0]), [good])
    with pytest.raises(TypeError, match="bytes"):
        native.csv_lines(times, 24, ["S"], rows, [good])
    with pytest.raises(ValueError, match="one number a row"):
        native.csv_lines(times, 24, [b"S"], rows, [(b"", b"1.0", good[2], good[3])])


def test_a_csv_file_written_by_arrow_grows_by_c_appends_as_a_rewrite_writes_it(
    native: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files published before the C rows (or where the module is missing) keep growing in
    place, to the bytes one rewrite of every record gives."""
    start = CSV_WINDOW.start
    stamps = [start + timedelta(seconds=s) for s in range(40)]
    values = [1.25, math.nan, -0.0, 985.5, 1033.216417644338, math.inf] * 7
    meta = ctd_meta()
    grown = CsvWriter({meta.dataset_id: meta}, partition="daily", clock=lambda: start)
    for step, first in enumerate(range(0, 40, 10)):
        monkeypatch.setattr(native_lines, "COMPILED", step % 2 == 1)  # Arrow, C, Arrow, C
        window = grown.open_window(tmp_path / "grown", meta.dataset_id, CSV_WINDOW)
        chunk = [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in stamps[first : first + 10]]
        window.add_scalar(TEMP, chunk, values[first : first + 10], [1, 9] * 5)
        published = window.publish()
        assert published is not None
        assert not published.replaced  # appended in place
    monkeypatch.setattr(native_lines, "COMPILED", True)
    whole = CsvWriter({meta.dataset_id: meta}, partition="daily").open_window(
        tmp_path / "whole", meta.dataset_id, CSV_WINDOW
    )
    every = [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in stamps]
    whole.add_scalar(TEMP, every, values[:40], [1, 9] * 20)
    rewritten = whole.publish()
    assert rewritten is not None
    assert published.path.read_bytes() == rewritten.path.read_bytes()


def test_the_iso_time_record_is_the_iso_times_one_after_another() -> None:
    ms = np.array([0, 1, 86_399_999, 1_795_000_000_123, -1], dtype=np.int64)
    record = iso_time_record(ms)
    assert record == "".join(iso_times(ms).to_pylist()).encode()
    assert len(record) == len(ms) * ISO_TIME_WIDTH
    assert iso_time_record(np.array([], dtype=np.int64)) is None
    year_10000 = np.array([253_402_300_800_000], dtype=np.int64)
    assert iso_time_record(year_10000) is None
    assert iso_times(year_10000).to_pylist() == ["10000-01-01T00:00:00.000Z"]  # numpy's own
