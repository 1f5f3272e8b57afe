"""The C module `pipeline/_columns.c` against its references: arrays of numbers packed
(`pack_doubles`) as simdjson and ujson parse them, time arrays joined (`joined_times`) as
the Python code joins them, and, against numpy, a big array's holes parsed as a sentinel
(`sentinel_holes`) and put back as NaN (`fill_nan`), a packed time axis cut at window bounds
(`fixed_cuts`)."""

from __future__ import annotations

import math
import random
import struct
import subprocess
import sys
from array import array
from pathlib import Path
from types import ModuleType

import pytest

from pipeline import timeaxis
from pipeline.onc import parsing
from pipeline.timeaxis import TIME_WIDTH
from tests.unit.c_modules import built, required

ROOT = Path(__file__).resolve().parents[2]
# Imported, not skipped when missing: `native` fails where a compiler is (or in CI).
c_columns = built("pipeline._columns")


@pytest.fixture
def native() -> ModuleType:
    """The C module; a test fails without it wherever it should have been built."""
    return required(c_columns, "pipeline._columns", "simdjson and numpy do its work here")


def test_the_module_is_the_one_the_parser_and_the_axis_use(native: ModuleType) -> None:
    assert parsing.fill_nan is native.fill_nan
    assert parsing.sentinel_holes is native.sentinel_holes
    assert parsing.pack_doubles is native.pack_doubles
    assert parsing.one_digit_flags is native.one_digit_flags
    assert parsing.joined_times is native.joined_times
    assert timeaxis._columns is native


# -- pack_doubles -----------------------------------------------------------------------------


def _number(rng: random.Random) -> bytes:
    """One element as ONC, a JSON encoder or a hand might spell it: every path of the parser
    (the exact fast path, strtod, integers, holes) and the edges between them."""
    kind = rng.randrange(12)
    x = rng.choice([rng.uniform(-1, 1), rng.uniform(-1e6, 1e6), rng.gauss(0, 1e-3)])
    if kind == 0:
        return repr(x).encode()  # up to 17 digits: strtod's
    if kind == 1:
        return f"{x:.{rng.randrange(0, 12)}f}".encode()
    if kind == 2:
        return f"{x:.{rng.randrange(0, 17)}{rng.choice('eE')}}".encode()
    if kind == 3:
        low, high = 10 ** rng.randrange(1, 21), 10 ** rng.randrange(1, 21)
        return str(rng.randrange(-low, high)).encode()
    if kind == 4:
        return rng.choice([b"NaN", b"null"])
    if kind == 5:  # around 2^53 and the powers of ten a double holds exactly
        return rng.choice(
            [
                b"9007199254740992",
                b"9007199254740993",
                b"9007199254740992.5",
                b"900719925474099.3",
                b"1e22",
                b"1e23",
                b"1.5e-22",
                b"1.5e-23",
                b"123456789012345678",
                b"1234567890123456789",
                b"9999999999999999999",
                b"-9999999999999999999",
                b"0.1000000000000000055511151231257827",
            ]
        )
    if kind == 6:  # zeros, signs, exponent spellings
        return rng.choice(
            [
                b"0",
                b"-0",
                b"0.0",
                b"-0.0",
                b"0e0",
                b"-0e-0",
                b"1E5",
                b"1e+5",
                b"2.5E-3",
                b"0.000000000000000000000123",
                b"100e-2",
            ]
        )
    if kind == 7:  # a double's range and beyond it (left to simdjson and ujson)
        return rng.choice(
            [
                b"1e308",
                b"1.7976931348623157e308",
                b"1e309",
                b"2.2250738585072014e-308",
                b"4.9e-324",
                b"1e-400",
                b"-1e400",
            ]
        )
    if kind == 8:
        return b"0." + b"0" * rng.randrange(0, 30) + str(rng.randrange(1, 10**9)).encode()
    if kind == 9:  # long mantissas, some beyond strtod's token
        return str(rng.randrange(1, 10)).encode() + b"." + b"1" * rng.randrange(15, 80)
    return f"{x:.{rng.randrange(1, 8)}f}".encode()


def _bits(values: array[float] | None) -> bytes | None:
    # NaNs compared by their bits: every path spells the one quiet NaN.
    return None if values is None else values.tobytes()


def _old_path(text: bytes) -> array[float] | None:
    """What parsed arrays before `pack_doubles`: simdjson, then ujson."""
    simd = parsing._simd_values(text)
    if simd is not None:
        return simd
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "pack_doubles", parsing._no_packed_doubles)
        patch.setattr(parsing, "_simd_values", lambda text: None)
        return parsing._packed_values(text)


@pytest.mark.parametrize("seed", range(60))
def test_pack_doubles_are_the_doubles_simdjson_and_ujson_give(
    native: ModuleType, seed: int
) -> None:
    rng = random.Random(seed)
    items = [_number(rng) for _ in range(rng.choice([1, 3, 40, 3_000]))]
    if seed % 2:  # only what it parses itself
        items = [item for item in items if not _number_left(item)] or [b"1"]
    text = b"[" + b",".join(items) + b"]"
    packed = native.pack_doubles(text)
    expected = _old_path(text)
    # What it leaves to the parsers before it, exactly: an array holding such a number.
    assert (packed is None) == any(_number_left(item) for item in items), text[:300]
    if packed is not None:
        values = array("d")
        values.frombytes(packed)
        assert _bits(values) == _bits(expected)
    assert _bits(parsing._packed_values(text)) == _bits(expected)
    assert native.pack_doubles(bytearray(text)) == packed


def _number_left(item: bytes) -> bool:
    """Whether `pack_doubles` leaves an array holding `item` to simdjson: an integer beyond
    18 digits, a result outside a double's normal range, a number for strtod longer than 64
    bytes (here only long mantissas are that long)."""
    if item in (b"NaN", b"null"):
        return False
    value = float(item)
    integral = not any(c in item for c in b".eE")
    return (
        (integral and len(item.lstrip(b"-")) > 18)
        or math.isinf(value)
        or (value != 0 and abs(value) < sys.float_info.min)
        or (value == 0 and any(c in b"123456789" for c in item.split(b"e")[0].split(b"E")[0]))
        or len(item) > 64
    )


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"[",
        b"]",
        b"[1",
        b"1]",
        b"[1,]",
        b"[,1]",
        b"[1,,2]",
        b"[1.]",
        b"[.5]",
        b"[-.5]",
        b"[01]",
        b"[-01]",
        b"[+1]",
        b"[-]",
        b"[1e]",
        b"[1e+]",
        b"[1.5e-]",
        b"[Infinity]",
        b"[-NaN]",
        b"[NaNx]",
        b"[nulll]",
        b"[nul]",
        b"[ 1]",
        b"[1 ]",
        b"[1, 2]",
        b"[1,[2]]",
        b'["1"]',
        b"[true]",
        b"[1]x",
        b"x[1]",
        b"[1e400]",
        b"[4.9e-324]",
        b"[0x10]",
        b"[1_000]",
    ],
)
def test_pack_doubles_leaves_what_is_not_a_compact_array_of_json_numbers(
    native: ModuleType, text: bytes
) -> None:
    assert native.pack_doubles(text) is None


@pytest.mark.parametrize("digits", [b"123456789012345678", b"999999999999999999"])
def test_pack_doubles_takes_integers_of_up_to_18_digits(native: ModuleType, digits: bytes) -> None:
    for sign in (b"", b"-"):
        assert native.pack_doubles(b"[" + sign + digits + b"]") == struct.pack(
            "d", float(int(sign + digits))
        )
        # 19 digits may be beyond int64: left to simdjson, which reads up to 64 bits.
        assert native.pack_doubles(b"[" + sign + digits + b"9]") is None


@pytest.mark.parametrize("text", [b"[", b"[1,", b"[1,2,", b"[NaN,", b"[1", b"[1.5e", b"[-"])
def test_pack_doubles_reads_nothing_past_a_buffer_that_ends_short(
    native: ModuleType, text: bytes
) -> None:
    # Exactly the text's bytes (no NUL after them, as bytes and bytearray have), cut out of
    # a longer text whose next bytes would parse (ASan builds catch a read past the end).
    assert native.pack_doubles(array("B", text)) is None
    assert native.pack_doubles(memoryview(text + b"NaN]")[: len(text)]) is None


def test_pack_doubles_takes_any_buffer_and_allocates_no_more_than_its_text_holds(
    native: ModuleType,
) -> None:
    assert native.pack_doubles(array("B", b"[1.5,-2]")) == struct.pack("2d", 1.5, -2.0)
    assert native.pack_doubles(memoryview(b"x[1.5]x")[1:-1]) == struct.pack("d", 1.5)
    assert native.pack_doubles(b"[" + b"," * 1_000_000 + b"]") is None  # no 8 MB for nothing


def test_pack_doubles_reads_the_empty_array_and_holes(native: ModuleType) -> None:
    assert native.pack_doubles(b"[]") == b""
    packed = array("d")
    packed.frombytes(native.pack_doubles(b"[NaN,-0,-0.0,null,2.5e1]"))
    assert [math.isnan(v) for v in packed] == [True, False, False, True, False]
    assert [math.copysign(1, v) for v in packed[1:3]] == [1.0, -1.0]  # `-0` is simdjson's 0
    assert packed[4] == 25.0
    with pytest.raises(TypeError):
        native.pack_doubles("[1]")


# -- joined_times -----------------------------------------------------------------------------


def _joined_py(text: bytes) -> tuple[str, int] | None:
    axis = parsing._joined_times_py(text)
    return None if axis is None else (axis.text, axis.length)


@pytest.mark.parametrize("seed", range(40))
def test_joined_times_are_the_python_join(native: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    # Time characters mostly; separators, quotes, escapes, control and non-ASCII bytes
    # (0x7F, 0xFF: the edges of the eight-byte check), brackets and spaces now and then.
    alphabet = [bytes([c]) for c in b'20-:TZ.",\\\n\x7f\x1f\xff[] '] + [b'","', "\u00fc".encode()]
    weights = [30, 30, 8, 8, 4, 4, 4, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1]
    for _ in range(300):
        inner = b"".join(rng.choices(alphabet, weights, k=rng.randrange(0, 60)))
        text = rng.choice([b'["' + inner + b'"]', b"[" + inner + b"]", inner])
        assert native.joined_times(text) == _joined_py(text), text
        assert native.joined_times(bytearray(text)) == _joined_py(text)


# -- one_digit_flags --------------------------------------------------------------------------


def _flags_py(text: bytes) -> bytes | None:
    flags = parsing._one_digit_flags_py(text)
    return None if flags is None else flags.tobytes()


@pytest.mark.parametrize("seed", range(20))
def test_one_digit_flags_are_the_python_packing(native: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    # Digits and commas mostly; JSON's whitespace, other bytes, two digits now and then.
    alphabet = [bytes([c]) for c in b"019 \n\t\ra/:-.[]\xff\xb9"] + [b",", b"00"]
    weights = [20, 10, 5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 30, 1]
    for _ in range(500):
        if rng.random() < 0.5:  # compact, eight bytes at a time, maybe one byte changed
            inner = b",".join(rng.choices([b"0", b"1", b"9"], k=rng.randrange(1, 40)))
            if rng.random() < 0.5:
                at = rng.randrange(len(inner))
                inner = inner[:at] + rng.choice(alphabet) + inner[at + 1 :]
        else:
            inner = b"".join(rng.choices(alphabet, weights, k=rng.randrange(0, 40)))
        text = rng.choice([b"[" + inner + b"]", inner])
        assert native.one_digit_flags(text) == _flags_py(text), text
        assert native.one_digit_flags(array("B", text)) == _flags_py(text)


def test_one_digit_flags_of_a_page(native: ModuleType) -> None:
    flags = [random.Random(3).choice([0, 1, 9]) for _ in range(100_003)]
    text = ("[" + ",".join(map(str, flags)) + "]").encode()
    assert native.one_digit_flags(text) == bytes(flags)
    assert native.one_digit_flags(b"[]") == b""
    assert native.one_digit_flags(b"[1,1,1,1,10]") is None


def test_joined_times_of_onc_times(native: ModuleType) -> None:
    times = [_time(ms) for ms in range(0, 5_000, 1_000)]
    text = ("[" + ",".join(f'"{t}"' for t in times) + "]").encode()
    assert native.joined_times(text) == ("\n".join(times), 5)
    assert native.joined_times(b"[]") == ("", 0)
    assert native.joined_times(b'[""]') == ("", 1)


# -- sentinel_holes ---------------------------------------------------------------------------

# Elements of an array's text: numbers, the two holes, and what looks like one but is not.
_GOOD = [b"1.5", b"-2", b"0e0", b"NaN", b"null", b"12.25"]
_BAD = [b"NaNx", b"-NaN", b" NaN", b"NaN ", b"NNaN", b"NaNaN", b"nul", b"nulll", b"Na", b"N"]


@pytest.mark.parametrize("seed", range(40))
def test_sentinel_holes_are_numpys(native: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    items = [rng.choice(_GOOD) for _ in range(rng.choice([1, 2, 30, 2_000]))]
    if seed % 2:  # one element that is no whole hole, somewhere
        items[rng.randrange(len(items))] = rng.choice(_BAD)
    text = b"[" + b",".join(items) + b"]"
    if seed % 5 == 3:  # a hole against the brackets, or a text cut short
        text = rng.choice([b"NaN" + text[1:], text[:-1], text + b"NaN", b"[NaN]"])
    found = native.sentinel_holes(text)
    assert found == parsing._filled_many_numpy(text)
    assert native.sentinel_holes(bytearray(text)) == found
    if found is not None:
        filled, holes = found
        assert holes == text.count(b"NaN") + text.count(b"null")
        assert b"N" not in filled
        assert b"n" not in filled
        assert len(filled) == len(text)


def test_sentinel_holes_leave_their_input_alone(native: ModuleType) -> None:
    text = bytearray(b"[1,NaN,null]")
    assert native.sentinel_holes(text) == (bytearray(b"[1,9e9,9e9 ]"), 2)
    assert text == b"[1,NaN,null]"
    with pytest.raises(TypeError):
        native.sentinel_holes("[NaN]")


# -- fill_nan ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_fill_nan_sets_what_numpy_sets(native: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    pool = [9e9, 9e9, 1.5, -0.0, 0.0, math.inf, -math.inf, math.nan, 9e9 + 1, -9e9, 5e-324]
    values = array("d", [rng.choice(pool) for _ in range(rng.choice([0, 1, 7, 5_000]))])
    sentinels = sum(1 for v in values if v == 9e9)
    expected = array("d", values)
    assert parsing._fill_nan_numpy(expected, 9e9) == sentinels
    assert native.fill_nan(values, 9e9) == sentinels
    # NaN never equals NaN: the bits are compared (both write the one quiet NaN).
    assert values.tobytes() == expected.tobytes()


def test_fill_nan_refuses_what_is_not_a_writable_aligned_buffer_of_doubles(
    native: ModuleType,
) -> None:
    with pytest.raises(TypeError):
        native.fill_nan(struct.pack("d", 9e9), 9e9)  # read-only
    with pytest.raises(ValueError, match="aligned buffer of doubles"):
        native.fill_nan(bytearray(12), 9e9)  # not whole doubles
    with pytest.raises(ValueError, match="aligned buffer of doubles"):
        native.fill_nan(memoryview(bytearray(17))[1:], 9e9)  # misaligned
    assert native.fill_nan(array("d"), 9e9) == 0


# -- fixed_cuts -------------------------------------------------------------------------------


def _time(ms: int) -> str:
    seconds, milli = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"2026-12-{1 + hours // 24:02d}T{hours % 24:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


def _numpy_cuts(monkeypatch: pytest.MonkeyPatch, axis: str, marks: list[str]) -> list[int] | None:
    with monkeypatch.context() as patch:
        patch.setattr(timeaxis, "_columns", None)
        return timeaxis.fixed_cuts(axis, marks)


@pytest.mark.parametrize("seed", range(24))
def test_fixed_cuts_are_numpys(
    native: ModuleType, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    stamps = sorted(rng.sample(range(0, 3 * 86_400_000, 250), rng.choice([1, 2, 50, 3_000])))
    if seed % 3 == 1:  # out of order: swapped within a part, or across a bound
        i, j = rng.randrange(len(stamps)), rng.randrange(len(stamps))
        stamps[i], stamps[j] = stamps[j], stamps[i]
    bounds = rng.choice([0, 1, 3, 24])
    marks = sorted({rng.randrange(-1000, 3 * 86_400_000 + 1000) for _ in range(bounds)})
    if seed % 4 == 2 and stamps:  # a mark equal to a time: the time opens the next part
        marks = sorted({*marks, stamps[len(stamps) // 2]})
    axis = "\n".join(_time(max(ms, 0)) for ms in stamps)
    texts = [_time(max(ms, 0)) for ms in marks]
    assert timeaxis.fixed_width(axis)
    found = native.fixed_cuts(axis, tuple(texts))
    assert found == _numpy_cuts(monkeypatch, axis, texts)
    assert timeaxis.fixed_cuts(axis, texts) == found
    if found is not None:
        times = axis.split("\n")
        assert found[0] == 0
        assert found[-1] == len(times)
        for index, mark in enumerate(texts):
            assert all(t < mark for t in times[found[index] : found[index + 1]])
            assert all(t >= mark for t in times[found[index + 1] : found[index + 2]])


def test_fixed_cuts_refuse_what_is_not_an_axis_or_marks_of_onc_times(native: ModuleType) -> None:
    axis = "\n".join(_time(ms) for ms in (0, 1000, 2000))
    with pytest.raises(ValueError, match="fixed-width ASCII"):
        native.fixed_cuts(axis[:-1], ())
    with pytest.raises(ValueError, match="fixed-width ASCII"):
        native.fixed_cuts(axis.replace("Z", "é"), ())
    with pytest.raises(ValueError, match="fixed-width ASCII"):
        native.fixed_cuts("", ())
    with pytest.raises(ValueError, match="24 ASCII"):
        native.fixed_cuts(axis, (_time(500)[:-1],))
    with pytest.raises(ValueError, match="increasing"):
        native.fixed_cuts(axis, (_time(1500), _time(500)))
    with pytest.raises(TypeError):
        native.fixed_cuts(axis, [_time(500)])
    assert native.fixed_cuts(axis, ()) == [0, 3]
    assert native.fixed_cuts(axis, (_time(1000),)) == [0, 1, 3]


@pytest.mark.parametrize(
    ("stamps", "mark", "cuts"),
    [
        ((0, 1000, 2000), 1000, [0, 1, 3]),  # a time at the mark opens the next part
        ((1000, 0), 1000, None),  # out of order: a time at the mark left before it
        ((1000, 0, 2000), 500, None),  # out of order: a time before the mark left after it
        ((0, 2000, 1000), 1500, None),
        ((2000, 1000, 3000), 2500, [0, 2, 3]),  # disorder inside a part is not checked
    ],
)
def test_fixed_cuts_check_each_part_against_its_marks(
    native: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    stamps: tuple[int, ...],
    mark: int,
    cuts: list[int] | None,
) -> None:
    axis = "\n".join(_time(ms) for ms in stamps)
    assert native.fixed_cuts(axis, (_time(mark),)) == cuts
    assert _numpy_cuts(monkeypatch, axis, [_time(mark)]) == cuts
    assert len(_time(0)) == TIME_WIDTH


# -- no numpy in the daemon -------------------------------------------------------------------

_BACKFILL_PAGE = """
import sys
{block}
from array import array
import ujson
from pipeline.onc.parsing import _packed_values
from pipeline.engine.batches import _axis_cuts
text = b"[" + b",".join([b"NaN", b"12.3456", b"null"] * 60_000) + b"]"
packed = _packed_values(text)
assert packed is not None
assert packed.tobytes() == array("d", [float("nan") if v is None else v
    for v in ujson.loads(text.replace(b"NaN", b"null"))]).tobytes()
axis = "\\n".join(f"2026-12-01T{{h:02d}}:{{m:02d}}:00.000Z" for h in range(24) for m in range(60))
cuts, fixed = _axis_cuts(axis, ["2026-12-01T06:00:00.000Z", "2026-12-01T12:00:00.000Z"], "x")
assert fixed and cuts == [0, 360, 720, 1440], cuts
print("numpy" in sys.modules)
"""


@pytest.mark.parametrize("compiled", [True, False])
def test_a_backfills_page_is_parsed_and_cut_without_numpy_where_the_module_is(
    compiled: bool, request: pytest.FixtureRequest
) -> None:
    # A backfill's pages (big arrays with many holes, cut at window bounds) in the daemon:
    # numpy's 15 MB (its own memory and library pages) only where the module is missing.
    if compiled:
        request.getfixturevalue("native")
    block = "" if compiled else "sys.modules['pipeline._columns'] = None  # not compiled"
    run = subprocess.run(
        [sys.executable, "-c", _BACKFILL_PAGE.format(block=block)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [str(not compiled)]
