"""Numbers and times rendered a column at a time: the very text Python's per-value spelling
gives (`repr`, ujson), for edge values and for random doubles of every magnitude."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import ujson

from pipeline.outputs import numtext
from pipeline.outputs.numtext import float_texts, int_texts, iso_times, lines_bytes
from pipeline.outputs.table import ABSENT_FLAG

EDGES = [
    0.0,
    -0.0,
    1.0,
    -7.0,
    12.5,
    0.1 + 0.2,
    1e-300,
    5e-324,
    -5e-324,
    1e-4,
    1e-5,
    2.5e-7,
    123456789012345.6,
    9007199254740992.0,
    9999999999999998.0,
    1e15,
    1e16,
    1e22,
    1.7976931348623157e308,
    math.nan,
    math.inf,
    -math.inf,
]


def csv_spelling(value: float) -> str:
    return "NaN" if value != value else repr(value)


def random_doubles() -> np.ndarray:
    rng = np.random.default_rng(20261205)
    bits = rng.integers(-(2**63), 2**63 - 1, 200_000, dtype=np.int64).view(np.float64)
    magnitudes = np.exp(rng.uniform(np.log(5e-324), np.log(1e300), 200_000))
    rounded = np.round(rng.normal(10.0, 30.0, 50_000), 4)  # sensor-like readings
    integral = rng.integers(-(10**15), 10**15, 20_000).astype(np.float64)
    near = [
        np.nextafter(np.full(200, b), t) for b in (1e-4, 1e15, 1e16, 2.0**53) for t in (0, 1e300)
    ]
    signs = rng.choice([-1.0, 1.0], 200_000)
    return np.concatenate([bits, magnitudes * signs, rounded, integral, *near, EDGES])


@pytest.mark.parametrize("spell", [csv_spelling, ujson.dumps], ids=["repr", "ujson"])
def test_float_texts_spell_every_value_as_the_per_value_function_does(spell: object) -> None:
    values = random_doubles()
    assert callable(spell)
    assert float_texts(values, spell).to_pylist() == [spell(v) for v in values.tolist()]


def test_edge_values_are_spelled_as_python_does() -> None:
    got = float_texts(np.array(EDGES), csv_spelling).to_pylist()
    assert got == [csv_spelling(v) for v in EDGES]
    # What the cast alone would get wrong, spelled out.
    assert got[:3] == ["0.0", "-0.0", "1.0"]
    assert got[9:12] == ["0.0001", "1e-05", "2.5e-07"]
    assert got[12] == "123456789012345.6"
    assert got[-3:] == ["NaN", "inf", "-inf"]


def test_absent_values_are_null_and_never_spelled() -> None:
    values = np.array([1.0, math.nan, 1e-5, 2.0])
    absent = np.array([False, True, True, False])
    spelled: list[float] = []

    def spell(value: float) -> str:
        spelled.append(value)
        return repr(value)

    assert float_texts(values, spell, absent=absent).to_pylist() == ["1.0", None, None, "2.0"]
    assert spelled == []


def test_empty_columns() -> None:
    empty = np.empty(0, dtype=np.float64)
    assert float_texts(empty, repr).to_pylist() == []
    assert iso_times(np.empty(0, dtype=np.int64)).to_pylist() == []
    assert lines_bytes([pa.array([], type=pa.string())], ",") == b""


def test_single_digits_are_laid_out_as_the_cast_would_render_them() -> None:
    flags = np.array([0, 1, 9, ABSENT_FLAG, 4, 7], dtype=np.int8)
    absent = flags == ABSENT_FLAG
    want = ["0", "1", "9", None, "4", "7"]
    assert int_texts(flags, absent=absent).to_pylist() == want
    assert int_texts(flags[1:3]).to_pylist() == ["1", "9"]
    # A column wholly absent, and one digit beside a two-digit flag (the cast's way).
    assert int_texts(flags[3:4], absent=absent[3:4]).to_pylist() == [None]
    assert int_texts(np.array([3, 10], dtype=np.int8)).to_pylist() == ["3", "10"]
    assert int_texts(np.array([-1, 3], dtype=np.int8)).to_pylist() == ["-1", "3"]
    # Not integers, or not one column: Arrow's own rendering (or refusal), as before.
    assert int_texts(np.array([1.5, 9.0])).to_pylist() == ["1.5", "9"]  # type: ignore[arg-type]
    with pytest.raises(pa.ArrowInvalid):
        int_texts(np.array([[1, 2], [3, 4]], dtype=np.int8))


def test_flags_with_absent_slots_take_the_digit_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    # The common CSV column: flags 0 - 9 beside absent slots; no cast is asked for.
    def no_cast(*args: object, **kwargs: object) -> None:
        raise AssertionError("cast")

    monkeypatch.setattr(numtext.pc, "cast", no_cast)
    flags = np.array([ABSENT_FLAG, 1, ABSENT_FLAG, 0], dtype=np.int8)
    texts = int_texts(flags, absent=flags == ABSENT_FLAG)
    assert texts.to_pylist() == [None, "1", None, "0"]
    texts.validate(full=True)


def test_int_texts_keep_large_and_negative_flags() -> None:
    flags = np.array([0, 9, 127, -128, -127], dtype=np.int8)
    absent = np.array([False, False, False, False, True])
    assert int_texts(flags, absent=absent).to_pylist() == ["0", "9", "127", "-128", None]


def test_iso_times_match_numpy_for_any_millisecond() -> None:
    rng = np.random.default_rng(7)
    ms = np.concatenate(
        [
            rng.integers(-(2 * 10**12), 4 * 10**12, 20_000),
            [0, -1, 86_399_999, 86_400_000, 951_782_400_000],  # 2000-02-29
        ]
    ).astype(np.int64)
    want = [t + "Z" for t in np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").tolist()]
    assert iso_times(ms).to_pylist() == want


def test_times_outside_four_digit_years_take_numpy_rendering() -> None:
    ms = np.array([-(10**14), 4 * 10**14], dtype=np.int64)  # years -1199 and 14645
    want = [t + "Z" for t in np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").tolist()]
    assert iso_times(ms).to_pylist() == want


def test_lines_join_cells_with_null_as_nothing() -> None:
    columns = [pa.array(["a", "b"]), pa.array([None, "x"]), pa.array(["1", None])]
    assert lines_bytes(columns, ",") == b"a,,1\nb,x,\n"
    # A slice of an array (a block of a table) starts at its own offset.
    assert lines_bytes([pa.array(["skip", "é", "z"])[1:]], ",") == "é\nz\n".encode()


def lines_by_hand(columns: list[list[str | None]], separator: str) -> bytes:
    rows = zip(*columns, strict=True)
    return "".join(separator.join(c or "" for c in row) + "\n" for row in rows).encode()


@pytest.mark.parametrize("nulls", [False, True], ids=["full", "with-nulls"])
@pytest.mark.parametrize("widths", [(1, 1), (0, 4)], ids=["one-width", "varied"])
def test_lines_end_whatever_the_last_column_holds(nulls: bool, widths: tuple[int, int]) -> None:
    # The last column takes the newline first: texts of one width (flags) or of many, with
    # and without nulls, and sliced from a longer array (a block of a table).
    rng = np.random.default_rng(11)
    count = 3_000

    def column() -> list[str | None]:
        cells: list[str | None] = [
            "".join(rng.choice(list("0123456789é,x"), int(rng.integers(*widths, endpoint=True))))
            for _ in range(count)
        ]
        if nulls:
            for at in rng.choice(count, count // 10, replace=False).tolist():
                cells[at] = None
        return cells

    columns = [column(), column()]
    arrays = [pa.array(c, type=pa.string()) for c in columns]
    assert lines_bytes(arrays, ",") == lines_by_hand(columns, ",")
    sliced = [pa.array([None, "skip", *c], type=pa.string())[2:] for c in columns]
    assert lines_bytes(sliced, ";") == lines_by_hand(columns, ";")
    assert lines_bytes([a[5:9] for a in sliced], ",") == lines_by_hand(
        [c[5:9] for c in columns], ","
    )


def test_a_null_cell_ends_its_line_empty_whatever_its_slot_holds() -> None:
    # A flag or a value marked absent keeps its rendered bytes behind the null.
    flags = np.array([1, ABSENT_FLAG, 2, ABSENT_FLAG], dtype=np.int8)
    absent = flags == ABSENT_FLAG
    values = np.array([1.5, 99.0, 2.5, 98.0])
    texts = [float_texts(values, repr, absent=absent), int_texts(flags, absent=absent)]
    assert lines_bytes(texts, ",") == b"1.5,1\n,\n2.5,2\n,\n"
    assert lines_bytes(texts[::-1], ",") == b"1,1.5\n,\n2,2.5\n,\n"


def test_a_column_of_counts_gets_its_point_zero() -> None:
    counts = np.arange(-3.0, 1e6, 9973.0)
    assert float_texts(counts, repr).to_pylist() == [repr(v) for v in counts.tolist()]
    with_absent = float_texts(counts[:3], repr, absent=np.array([False, True, False]))
    assert with_absent.to_pylist() == ["-3.0", None, "19943.0"]


def test_a_column_too_long_for_int32_offsets_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrow's string offsets are int32; numpy would wrap a bigger one into a corrupt array.
    monkeypatch.setattr(numtext, "_MAX_OFFSET", 10)
    with pytest.raises(ValueError, match="too long"):
        float_texts(np.array([1.5, 2.5, 3.5, 4.5]), repr)
    # Lines: the newline added to the last column's texts, of one width or of many.
    for last in (["ab", "cd", "ef", "gh"], ["a", "bcd", "", "efgh"]):
        lines_bytes([pa.array(["x"] * 3), pa.array(last[:3])], ",")  # fits
        with pytest.raises(ValueError, match="too long"):
            lines_bytes([pa.array(["x"] * 4), pa.array(last)], ",")


def test_lines_of_other_text_types_are_left_to_arrow() -> None:
    # Offsets of 64 bits (large_string) are not the int32 the numpy layout reads: Arrow's
    # join refuses the mix, as it did before the layout, where reading them would corrupt.
    columns = [pa.array(["x", "y"]), pa.array(["ab", None], type=pa.large_string())]
    with pytest.raises(pa.ArrowNotImplementedError):
        lines_bytes(columns, ",")
