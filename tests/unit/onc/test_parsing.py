"""`decode_scalardata` packs each sensor's `values` as it parses the page: every number, NaN
and error exactly as parsing the whole page with ujson gives them."""

from __future__ import annotations

import math
import random
import re
import struct
import subprocess
import sys
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import ujson

from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.onc.models import ScalarPage
from pipeline.onc.parsing import (
    _BIG_ARRAY_BYTES,
    TimeAxis,
    _filled_holes,
    _packed_values,
    _simd_values,
    decode_scalardata,
)
from tests.unit.onc.conftest import sample_bytes

_T = b'"2024-01-01T00:00:00.000Z"'


def _page(*values: bytes, name: bytes = b"s", extra: bytes = b"") -> bytes:
    """A scalardata body of one sensor per `values` text, each as long as its array."""
    sensors = []
    for i, text in enumerate(values):
        try:
            rows = len(ujson.loads(text))
        except ValueError:
            rows = 1
        sensors.append(
            b'{"sensorCode":"s%d","sensorName":"%s","data":{"qaqcFlags":[%s],'
            b'"sampleTimes":[%s],"values":%s}}'
            % (i, name, b",".join([b"1"] * rows), b",".join([_T] * rows), text)
        )
    return b'{"next":null%s,"sensorData":[%s]}' % (extra, b",".join(sensors))


def _today(body: bytes) -> list[bytes]:
    """Each sensor's values as the plain ujson parse packs them (bytes, so NaN compares)."""
    return [s.values.tobytes() for s in ScalarPage.from_api(ujson.loads(body)).series]


def _decoded(body: bytes) -> tuple[list[Any], list[bytes]]:
    """What `decode_scalardata` hands each sensor as `values`, and the parsed columns."""
    data = decode_scalardata(body, url="u")
    given = [item["data"]["values"] for item in data["sensorData"]]
    return given, [s.values.tobytes() for s in ScalarPage.from_api(data).series]


# Every JSON number form, ONC's bare NaN, and null (no reading).
_EDGES = [
    b"[NaN,1.5,NaN]",
    b"[null,2,null]",
    b"[-0.0,0.0,-0,0,-0e0]",
    b"[1e-300,5e-324,2e-324,1.7976931348623157e308,-1.7976931348623157e308]",
    b"[1,-7,12345678901234567890,9007199254740993,123456789012345678901234567890]",
    b"[0.1,0.30000000000000004,2.2250738585072014e-308,4.9406564584124654e-324]",
    b"[1E5,1e+5,1.5E-3,-2.5e-0,26.829144194686,1033.187341684082]",
    b"[ 1.5 ,\n NaN,\r\n\t-2 ]",
    b"[\n]",
    b"[]",
]


@pytest.mark.parametrize("values", _EDGES)
def test_values_come_packed_and_bit_identical(values: bytes) -> None:
    body = _page(values, values)
    given, parsed = _decoded(body)
    assert all(isinstance(v, array) and v.typecode == "d" for v in given)
    assert parsed == _today(body)


@pytest.mark.parametrize(
    "values",
    [
        b"[1,2,Infinity,-Infinity]",  # ujson's extension, kept as it parses it
        b"[1e400,-1e400]",
        b"[true,false]",  # what the old path did: 1.0 and 0.0
        b"[1.,01]",  # not JSON, but ujson takes them: as it did
    ],
)
def test_what_ujson_takes_beyond_json_is_what_it_was(values: bytes) -> None:
    body = _page(values)
    assert _decoded(body)[1] == _today(body)


def test_a_real_nan_page_is_bit_identical() -> None:
    body = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json")
    given, parsed = _decoded(body)
    assert all(isinstance(v, array) and v.typecode == "d" for v in given)
    assert parsed == _today(body)


def _plain(value: object) -> object:
    """A parsed page with packed arrays and time axes as lists and NaN as a string, to compare
    with `==`."""
    if isinstance(value, array | TimeAxis):
        value = list(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        # The key inside a string: nothing of that key is cut, ujson parses it all.
        _page(b"[1.5,NaN]", b"[2,3]", name=b'x \\"values\\":[9]'),
        # A key the byte search cannot see (a unicode escape, a space before the colon).
        _page(b"[1.5,NaN]", b"[2,3]").replace(b'"values":[1.5', b'"\\u0076alues":[1.5'),
        _page(b"[1.5,NaN]", b"[2,3]").replace(b'"values":[2', b'"values" :[2'),
        # A `values` array outside the sensors while one inside is hidden from the search:
        # the counts agree, the places do not.
        _page(b"[1.5,NaN]", extra=b',"meta":{"values":[7]}').replace(
            b'"values":[1.5', b'"values" :[1.5'
        ),
        _page(b"[1.5,NaN]", extra=b',"meta":{"values":[7]}'),
    ],
)
def test_a_values_array_is_only_given_back_where_it_was_cut(body: bytes) -> None:
    assert _plain(decode_scalardata(body, url="u")) == _plain(ujson.loads(body))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (b'[1.5,"oops"]', "non-numeric value 'oops'"),
        (b"[1.5,[2]]", "non-numeric value"),
        (b'[1.5,{"a":1}]', "non-numeric value"),
    ],
)
def test_non_numbers_are_the_same_schema_error(values: bytes, message: str) -> None:
    body = _page(b"[1,2]", values)
    with pytest.raises(OncSchemaError, match=message) as new:
        ScalarPage.from_api(decode_scalardata(body, url="u"))
    with pytest.raises(OncSchemaError) as old:
        ScalarPage.from_api(ujson.loads(body))
    assert (new.value.where, str(new.value)) == (old.value.where, str(old.value))
    assert new.value.where == "sensorData[1].data.values"


@pytest.mark.parametrize(
    "values", [b"[1 2]", b"[1,,2]", b"[1,2,]", b"[,1]", b"[-NaN]", b"[nan]", b"[.5]", b"[+1]"]
)
def test_values_that_are_not_json_are_a_malformed_reply(values: bytes) -> None:
    with pytest.raises(ujson.JSONDecodeError):
        ujson.loads(values)
    with pytest.raises(OncMalformedReply, match="invalid JSON"):
        decode_scalardata(_page(b"[1]", values), url="u")


@pytest.mark.parametrize("cut", [1, 5, 30, 90])
def test_a_truncated_page_is_still_a_malformed_reply(cut: int) -> None:
    body = _page(b"[1.5,NaN,2]", b"[3,4,5]")
    with pytest.raises(OncMalformedReply, match="truncated"):
        decode_scalardata(body[:-cut], url="u")


def test_a_packed_nan_is_the_nan_ujson_gives() -> None:
    given, _ = _decoded(_page(b"[NaN,null]"))
    assert [math.isnan(v) for v in given[0]] == [True, True]
    assert given[0].tobytes() == array("d", [math.nan, math.nan]).tobytes()


@pytest.mark.parametrize("values", [b"[1,1" + b"0" * 400 + b"]", b"[null,-1" + b"0" * 400 + b"]"])
def test_an_integer_beyond_a_double_is_a_schema_error(values: bytes) -> None:
    # It once escaped as OverflowError, which the streams do not treat as a bad page.
    for data in (ujson.loads(_page(values)), decode_scalardata(_page(values), url="u")):
        with pytest.raises(OncSchemaError, match="beyond a double") as info:
            ScalarPage.from_api(data)
        assert info.value.where == "sensorData[0].data.values"


def test_an_array_in_the_body_cannot_pose_as_a_cut_marker() -> None:
    # A key the byte search cannot see (unicode-escaped, and a duplicate ujson keeps the last
    # of) holding what looks like a cut's marker must not take another sensor's column.
    def sensor(code: str, values: str) -> str:
        times = '["2020-01-01T00:00:00.000Z","2020-01-01T00:00:01.000Z"]'
        return (
            f'{{"sensorCode":"{code}","data":{{"sampleTimes":{times},"qaqcFlags":[1,1],{values}}}}}'
        )

    body = (
        '{"sensorData":['
        + sensor("A", '"values":[1.5,2.5],"val\\u0075es":[7,8]')
        + ","
        + sensor("B", '"val\\u0075es":[-2,2]')
        + '],"next":null}'
    ).encode()
    plain = ujson.loads(body)["sensorData"]
    got = decode_scalardata(body, url="u")["sensorData"]
    for expected, decoded in zip(plain, got, strict=True):
        assert _plain(decoded["data"]["values"]) == expected["data"]["values"]


def _axis_page(times: bytes, copies: int = 2) -> bytes:
    """A scalardata body of `copies` sensors sharing the time axis `times` (one row if it is
    not JSON by itself)."""
    try:
        rows = len(ujson.loads(times))
    except ValueError:
        rows = 1
    sensor = b'{"sensorCode":"s","data":{"sampleTimes":%s,"values":[%s],"qaqcFlags":[%s]}}' % (
        times,
        b",".join([b"1.5"] * rows),
        b",".join([b"0"] * rows),
    )
    return b'{"next":null,"sensorData":[%s]}' % b",".join([sensor] * copies)


# Axes taken as text straight from the body: compact arrays of printable ASCII strings.
_TEXT_AXES = [
    b'["2024-01-01T00:00:00.000Z","2024-01-01T00:00:01.000Z","2024-01-01T00:00:02.5Z"]',
    b'["2024-01-01T00:00:00.000Z"]',
    b'["a","","b"]',  # an empty time between two
    b'["",""]',
    b'[""]',  # one empty time: a row, unlike []
    b"[]",
    b'["a b","{y}","a,b","[x"]',  # anything printable but a quote or a backslash
]
# Axes ujson must read: what the text would get wrong, or JSON that is not compact.
_PARSED_AXES = [
    b'[ "a" , "b" ]',
    b'["a",\n"b"]',
    b'["a"\n]',
    b'["\\u0032024-01-01T00:00:00.000Z","b"]',  # an escape
    b'["a\\"b","c"]',
    b'["a\\\\","b"]',
    b'["a\\/b"]',
    '["2024-01-01T00:00:00.000Z","\u00fc"]'.encode(),  # UTF-8
    b'["a\tb","c"]',  # control characters, which ujson takes inside a string
    b'["a\nb","c"]',  # a newline inside a time: one row, not two
    b'["a\x7fb"]',
    b'["[x]","y"]',  # a `]` ends the byte search's cut early
    b'["a"]]',  # not JSON: the whole body fails as it did
    b'["a""b"]',
    b'["a",5,"b"]',  # a number inside: a schema error now, not a TypeError later
]


@pytest.mark.parametrize("times", _TEXT_AXES)
@pytest.mark.parametrize("copies", [1, 2, 3])
def test_a_plain_axis_is_joined_from_the_text(times: bytes, copies: int) -> None:
    body = _axis_page(times, copies)
    data = decode_scalardata(body, url="u")
    axes = [item["data"]["sampleTimes"] for item in data["sensorData"]]
    assert all(isinstance(axis, TimeAxis) for axis in axes)
    assert len({id(axis) for axis in axes}) == 1  # one text for every copy
    expected = ujson.loads(times)
    assert axes[0] == TimeAxis("\n".join(expected), len(expected))
    got = ScalarPage.from_api(data).series
    assert [s.sample_times for s in got] == [
        s.sample_times for s in ScalarPage.from_api(ujson.loads(body)).series
    ]


@pytest.mark.parametrize("times", _PARSED_AXES)
def test_any_other_axis_is_what_ujson_gives(times: bytes) -> None:
    body = _axis_page(times)

    def series(decode: Any) -> list[TimeAxis] | str:
        try:
            return [s.sample_times for s in ScalarPage.from_api(decode(body)).series]
        except OncSchemaError:
            return "OncSchemaError"
        except (OncMalformedReply, ValueError):  # ujson's own error, unwrapped
            return "not JSON"

    got = series(lambda body: decode_scalardata(body, url="u"))
    assert got == series(ujson.loads) or (
        # Parsed whole, the page once passed a non-string time on to fail in the engine.
        times == b'["a",5,"b"]' and got == "OncSchemaError"
    )


def test_a_non_string_time_is_a_schema_error() -> None:
    with pytest.raises(OncSchemaError, match="expected strings, got int") as info:
        ScalarPage.from_api(decode_scalardata(_axis_page(b'["a",5,"b"]'), url="u"))
    assert info.value.where == "sensorData[0].data.sampleTimes"


def test_an_axis_unlike_the_first_is_parsed_on_its_own() -> None:
    first = b'["2024-01-01T00:00:00.000Z","2024-01-01T00:00:01.000Z"]'
    other = b'["2024-01-01T00:00:00.500Z","2024-01-01T00:00:01.500Z"]'
    body = _axis_page(first, 2).replace(first, other, 1)
    got = ScalarPage.from_api(decode_scalardata(body, url="u")).series
    assert [list(s.sample_times) for s in got] == [ujson.loads(other), ujson.loads(first)]


@pytest.mark.parametrize(
    "body",
    [
        _page(*_EDGES),
        _axis_page(b'["a","","b"]'),
        _axis_page(b'["\\u0061","b"]'),
        sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json"),
        b' \n\t{"sensorData":[],"next":null}',
    ],
)
def test_a_bytearray_body_decodes_as_its_bytes(body: bytes) -> None:
    # The HTTP layer hands the decoder its reused buffer, a bytearray.
    assert _plain(decode_scalardata(bytearray(body), url="u")) == _plain(
        decode_scalardata(body, url="u")
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty reply"), (b" \r\n\x0b\x0c", "empty reply"), (b"\n <html>x", "HTML")],
)
def test_a_bytearray_body_is_refused_as_its_bytes(body: bytes, message: str) -> None:
    for given in (body, bytearray(body)):
        with pytest.raises(OncMalformedReply, match=message) as info:
            decode_scalardata(given, url="u")
        assert "'<html>x'" in str(info.value) or message != "HTML"


def _sensor_page(times: bytes, values: bytes, flags: bytes) -> bytes:
    """Two sensors, each with these three columns as written."""
    sensor = b'{"sensorCode":"s","data":{"sampleTimes":%s,"values":%s,"qaqcFlags":%s}}' % (
        times,
        values,
        flags,
    )
    return b'{"next":null,"sensorData":[%s,%s]}' % (sensor, sensor)


@pytest.mark.parametrize(
    ("times", "values", "flags"),
    [
        # A `]` inside a string ends the byte search's cut inside that string.
        (b'["a]","b"]', b"[1,2]", b"[0,0]"),
        (b'["a","]","b"]', b"[1,2,3]", b"[0,0,0]"),
        (b'["a]b"]', b"[1]", b"[0]"),
        (b'["a","b"]', b'[1,"]"]', b"[0,0]"),
        (b'["a","b"]', b'[1,"x]y"]', b"[0,0]"),
        (b'["a","b"]', b"[1,2]", b'[0,"]"]'),
        (b'["a","b"]', b"[1,2]", b'["]",0]'),
    ],
)
def test_a_bracket_inside_a_string_decodes_as_ujson_reads_it(
    times: bytes, values: bytes, flags: bytes
) -> None:
    body = _sensor_page(times, values, flags)

    def parsed(decode: Any) -> object:
        try:
            return _columns(ScalarPage.from_api(decode(body)))
        except OncSchemaError as exc:
            return (exc.where, str(exc))

    assert parsed(lambda body: decode_scalardata(body, url="u")) == parsed(ujson.loads)


def _columns(page: ScalarPage) -> list[tuple[object, ...]]:
    return [
        (list(s.sample_times), [repr(v) for v in s.values], list(s.qaqc_flags)) for s in page.series
    ]


# ---------------------------------------------------------------- simdjson's reading of `values`


def _ujson_doubles(text: bytes) -> bytes:
    """What the ujson path packs for a values array (null as NaN), as bytes."""
    return array("d", [math.nan if v is None else v for v in ujson.loads(text)]).tobytes()


def _spelled(rng: random.Random) -> bytes:
    """One array element in one of the ways a JSON writer spells a number, or a hole."""
    if rng.random() < 0.01:  # as rare as gap-fill rows: more go to ujson
        return rng.choice([b"NaN", b"null"])
    kind = rng.randrange(1, 10)
    if kind == 1:  # any finite double, by its bits, shortest round trip
        while not math.isfinite(x := struct.unpack("<d", rng.randbytes(8))[0]):
            pass
        return repr(x).encode()
    if kind == 2:  # 17 significant digits, and more than a double holds
        return b"%.17g" % rng.uniform(-1e4, 1e4)
    if kind == 3:
        return b"%.25f" % rng.uniform(-1, 1)
    if kind == 4:  # integers around 2**53 and up to 64 bits, both signs
        bits = rng.choice([10, 52, 53, 54, 62, 63])
        return b"%d" % (rng.choice([-1, 1]) * rng.getrandbits(bits))
    if kind == 5:
        return rng.choice([b"-0", b"0", b"-0.0", b"0e0", b"-0e0", b"0.0E-5"])
    if kind == 6:  # subnormals and the ends of the range
        return b"%.6e" % rng.choice([5e-324, 2.2250738585072014e-308, 1.7976931348623157e308])
    if kind == 7:
        return b"%.3E" % rng.uniform(-1e30, 1e30)
    return b"%.5f" % rng.gauss(10, 2)  # what a CTD sends


@pytest.mark.parametrize("seed", range(12))
def test_simdjson_reads_each_number_as_ujson_does(seed: int) -> None:
    rng = random.Random(seed)
    text = b"[" + b",".join(_spelled(rng) for _ in range(3000)) + b"]"
    packed = _simd_values(text)
    assert packed is not None  # the fast path took it, not ujson
    assert packed.tobytes() == _ujson_doubles(text)


@pytest.mark.parametrize(
    "text",
    [
        b"[NaN]",
        b"[null]",
        b"[NaN,NaN,null,NaN]",
        b"[NaN,1.5]",
        b"[1.5,null]",
        b"[1,NaN,2,null,3]",
        b"[]",
    ],
)
def test_holes_are_nan_in_their_places(text: bytes) -> None:
    packed = _simd_values(text)
    assert packed is not None
    assert packed.tobytes() == _ujson_doubles(text)


@pytest.mark.parametrize(
    "text",
    [
        b"[1,2,Infinity]",
        b"[1e400]",
        b"[1.]",
        b"[01]",
        b"[true]",
        b'[1,"2"]',
        b"[1,{}]",
        b"[18446744073709551616]",
        b"[123456789012345678901234567890]",
        b"[-NaN]",  # `-0e0` once the hole is filled: a number ujson refuses
        b"[1NaN]",  # `10e0`
        b"[NaN1]",  # `0e01`
        b"[NaNa]",
        b"[ NaN]",
        b"[nul,1]",
        b"[1,2",
    ],
)
def test_what_simdjson_refuses_is_left_to_ujson(text: bytes) -> None:
    assert _simd_values(text) is None
    try:
        expected = _ujson_doubles(text)
    except (ValueError, TypeError, OverflowError):
        assert _packed_values(text) is None or text == b"[1,2,Infinity]"
    else:
        packed = _packed_values(text)
        assert packed is not None
        assert packed.tobytes() == expected


def test_a_nested_array_is_not_flattened() -> None:
    # simdjson's `as_buffer` would read `[1,[2,3]]` as three doubles.
    assert _simd_values(b"[1,[2,3]]") is None
    assert _packed_values(b"[1,[2,3]]") is None  # left in the body: a schema error there


# Readings that make an array big enough for its holes, when many, to be filled with the sentinel.
_BIG = [b"1.5"] * (_BIG_ARRAY_BYTES // len(b"1.5,") + 1)


def _padded(text: bytes) -> bytes:
    """`text` (an array) made big enough for numpy to fill its holes when they are many."""
    return text[:-1] + b"," + b",".join(_BIG) + b"]"


def test_many_holes_in_a_big_array_are_nan_in_their_places() -> None:
    # Past a few, a big array's holes are filled with a sentinel and found again by numpy.
    for text in (
        b"[" + b",".join([b"NaN", b"1.5"] * (_BIG_ARRAY_BYTES // 7)) + b"]",
        _padded(b"[" + b",".join([b"null", b"NaN", b"-2", b"NaN"] * 5000) + b"]"),
        _padded(b"[" + b",".join([b"NaN"] * 40) + b"]"),
    ):
        packed = _simd_values(text)
        assert packed is not None
        assert packed.tobytes() == _ujson_doubles(text)


def test_many_holes_in_a_small_array_go_to_ujson_and_are_still_nan() -> None:
    text = b"[" + b",".join([b"NaN", b"1.5"] * 3000) + b"]"
    assert _simd_values(text) is None
    few = b"[" + b",".join([b"NaN"] + [b"1.5"] * 3000) + b"]"
    assert _simd_values(few) is not None
    packed = _packed_values(text)
    assert packed is not None
    assert packed.tobytes() == _ujson_doubles(text)


_IMPORTS_NUMPY = """
import sys, ujson
from array import array
from pipeline.onc.parsing import _packed_values
text = b"[" + b",".join([b"NaN", b"12.3456"] * {pairs})
text += b" " * ({size} - 1 - len(text)) + b"]"
assert len(text) == {size}
packed = _packed_values(text)
assert packed is not None
assert packed.tobytes() == array("d", [float("nan") if v is None else v
    for v in ujson.loads(text.replace(b"NaN", b"null"))]).tobytes()
print("numpy" in sys.modules)
"""


@pytest.mark.parametrize(
    "size",
    [
        # Three hours of a 1 Hz sensor whose readings take up to 20 bytes, as a daemon
        # catching up after an outage fetches them (tests/acceptance/test_startup_imports.py).
        3 * 3600 * 20,
        _BIG_ARRAY_BYTES - 1,
    ],
)
def test_a_polls_arrays_with_many_holes_never_import_numpy(size: int) -> None:
    # numpy's 15 MB in the daemon are not for polls: smaller arrays, holes and
    # all, are parsed without it (a backfill's big ones too where the C module was built:
    # tests/unit/test_columns.py). Each array is `size` bytes exactly (spaces before its `]`).
    pairs = (size - 30) // len(b"NaN,12.3456,")
    run = subprocess.run(
        [sys.executable, "-c", _IMPORTS_NUMPY.format(pairs=pairs, size=size)],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False"]


def test_many_holes_take_the_sentinel_from_the_big_array_size_on() -> None:
    # Many holes: by index in no array, by sentinel from `_BIG_ARRAY_BYTES` bytes on, ujson's
    # parse below that size.
    for size, holes in ((_BIG_ARRAY_BYTES - 1, None), (_BIG_ARRAY_BYTES, 2_000)):
        text = b"[" + b",".join([b"NaN"] * 2_000 + [b"1.5"] * ((size - 8_010) // 4)) + b"]"
        text = text[:-1] + b" " * (size - len(text)) + b"]"
        assert len(text) == size
        filled = _filled_holes(text)
        assert (filled if filled is None else filled[1]) == holes


@pytest.mark.parametrize("reading", [b"9e9", b"9000000000", b"9.0E9", b"9e+9", b"90e8"])
def test_a_reading_equal_to_the_sentinel_is_never_taken_for_a_hole(reading: bytes) -> None:
    text = _padded(b"[" + b",".join([b"NaN"] * 20 + [reading, b"1"]) + b"]")
    assert _simd_values(text) is None  # more 9e9 than holes: ujson parses it
    packed = _packed_values(text)
    assert packed is not None
    assert packed.tobytes() == _ujson_doubles(text)
    assert packed[20] == 9e9


@pytest.mark.parametrize(
    "tail",
    [
        *(b"-NaN]", b"1NaN]", b"NaN1]", b"NaNa]", b" NaN]", b"nul,1]", b"NaN", b"NaNNaN]"),
        *(b"NNaN]", b"NaN.5]", b"0NaN]", b"nulll]", b"lnull]", b'"NaN"]', b"NaN e1]"),
        *(b" null ]", b"N1N]", b"nu1l]", b"NaNN]", b"nul", b"nu", b"Na", b"-null]"),
    ],
)
@pytest.mark.parametrize("reading", [b"1", b"9e9"])
def test_many_holes_with_one_not_whole_read_as_ujson_reads_them(
    tail: bytes, reading: bytes
) -> None:
    # A reading of 9e9 beside a broken hole (`1NaN` filled as 19e9) must not pass for it.
    text = b"[" + b",".join(_BIG) + b"," + reading + b"," + b"NaN," * 20 + tail
    try:
        expected = _ujson_doubles(text)
    except (ValueError, TypeError, OverflowError):
        assert _packed_values(text) is None
    else:
        packed = _packed_values(text)
        assert packed is not None
        assert packed.tobytes() == expected


def test_the_parser_is_reused_after_a_refusal() -> None:
    # simdjson refuses a new body while a proxy of the last one lives; a refusal must not
    # leave one behind.
    for text in (b"[1,true]", b"[1e400]", b"[1,{}]", b"[1,2]"):
        _simd_values(text)
    packed = _simd_values(b"[3,4]")
    assert packed is not None
    assert list(packed) == [3.0, 4.0]


def test_threads_each_parse_with_their_own_parser() -> None:
    texts = [
        b"[" + b",".join(b"%d.5" % (i * 1000 + j) for j in range(5000)) + b"]" for i in range(8)
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_simd_values, texts * 4))
    assert [r.tobytes() if r else None for r in results] == [_ujson_doubles(t) for t in texts * 4]


# ---------------------------------------------------------------- a body fed chunk by chunk


def _fed(body: bytes, size: int) -> Any:
    """`body` decoded from chunks of `size` bytes (the last one shorter)."""
    stream = decode_scalardata.stream(url="u")
    for at in range(0, len(body), size):
        stream.feed(body[at : at + size])
    return stream.finish()


def _outcome(decode: Any) -> object:
    try:
        return _plain(decode())
    except OncMalformedReply as exc:
        return ("malformed", str(exc))


_FED_BODIES = [
    _page(*_EDGES),
    _page(b"[1.5,NaN]", b"[2,3]", name=b'x \\"values\\":[9]'),
    _page(b"[1.5,NaN]", b"[2,3]").replace(b'"values":[2', b'"values" :\n [2'),
    _page(b"[1.5,NaN]", extra=b',"meta":{"values":[7],"qaqcFlags":[1],"sampleTimes":["t"]}'),
    _page(b'[1,"x]y"]', b"[2]"),
    _axis_page(b'["a]","b"]'),
    _axis_page(b'["a","b"]', 3),
    _axis_page(b'["\\u0061","b"]'),
    _sensor_page(b'["a","b"]', b"[1,2]", b'[0,"]"]'),
    sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json"),
    b' \n\t{"sensorData":[],"next":null}',
    _page(b"[1.5,2]")[:-40],  # cut short
    _page(b"[1.5,2]")[:-3],
    b"",
    b"  \r\n",
    b"\n <html><body>502 Bad Gateway</body></html>",
]


@pytest.mark.parametrize("body", _FED_BODIES)
@pytest.mark.parametrize("size", [1, 2, 5, 13, 64, 1 << 20])
def test_a_body_fed_in_chunks_decodes_as_it_does_whole(body: bytes, size: int) -> None:
    # Keys, arrays, markers and a `]` inside a string split at every place a chunk can end.
    assert _outcome(lambda: _fed(body, size)) == _outcome(lambda: decode_scalardata(body, url="u"))


@pytest.mark.parametrize("size", [3, 64, 4096])
def test_an_axis_fed_in_chunks_is_the_first_one_only_where_every_byte_is(size: int) -> None:
    # Arrays spanning chunks are compared with the page's first axis piece by piece.
    times = b"[" + b",".join(b'"2024-01-01T00:%02d:00.000Z"' % m for m in range(60)) + b"]"
    shifted = times[:-4] + b'1Z"]'  # the last time differs
    shorter = times[: times.rindex(b",")] + b"]"
    longer = times[:-1] + b',"2024-01-01T01:00:00.000Z"]'
    sensor = b'{"sensorCode":"s%d","data":{"sampleTimes":%s,"values":[%s],"qaqcFlags":[%s]}}'
    axes = [times, times, shifted, shorter, longer, times]
    body = b'{"next":null,"sensorData":[%s]}' % b",".join(
        sensor % (i, axis, b",".join([b"1.5"] * n), b",".join([b"0"] * n))
        for i, axis in enumerate(axes)
        for n in [axis.count(b"Z")]
    )
    got = [item["data"]["sampleTimes"] for item in _fed(body, size)["sensorData"]]
    assert [axis.text.split("\n") for axis in got] == [ujson.loads(axis) for axis in axes]
    assert got[1] is got[0]
    assert got[5] is got[0]
    assert all(got[i] is not got[0] for i in (2, 3, 4))


# One column of 5,000 readings (45 kB): it spans many of the chunks fed below.
_LONG_VALUES = b"[" + b",".join(b"%.5f" % (i / 7) for i in range(5000)) + b"]"


@pytest.mark.parametrize("size", [5, 64, 4096, 5000])
def test_a_chunk_the_caller_reuses_is_not_read_again(size: int) -> None:
    # An open array keeps the chunks it arrived in until its `]`; a bytearray the caller
    # overwrites after `feed` returns must not change what was fed (pieces big enough to be
    # kept as views of a bytes chunk included).
    body = _page(_LONG_VALUES)
    stream = decode_scalardata.stream(url="u")
    for at in range(0, len(body), size):
        chunk = bytearray(body[at : at + size])
        stream.feed(chunk)
        chunk[:] = b"]" * len(chunk)
    assert _plain(stream.finish()) == _plain(decode_scalardata(body, url="u"))


def test_empty_chunks_change_nothing() -> None:
    body = sample_bytes("scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json")
    stream = decode_scalardata.stream(url="u")
    for at in range(0, len(body), 97):
        stream.feed(b"")
        stream.feed(body[at : at + 97])
    stream.feed(b"")
    assert _plain(stream.finish()) == _plain(decode_scalardata(body, url="u"))


def test_an_array_fed_a_few_bytes_at_a_time_is_held_in_few_parts() -> None:
    # Each part costs a few hundred bytes of objects: small pieces go into one of ours.
    values = _LONG_VALUES
    body = _page(values)
    stream = decode_scalardata.stream(url="u")
    most = 0
    for at in range(0, len(body), 16):
        stream.feed(body[at : at + 16])
        most = max(most, len(stream._parts))
    assert _plain(stream.finish()) == _plain(decode_scalardata(body, url="u"))
    assert most <= 2


def test_a_fed_page_is_never_held_whole() -> None:
    # What waits between chunks is an open column or a key's last bytes, not the page.
    values = _LONG_VALUES
    body = _page(*[values] * 8)
    stream = decode_scalardata.stream(url="u")
    longest = max(len(m) for m in re.findall(rb"\[[^\]]*\]", body))
    held = 0
    for at in range(0, len(body), 4096):
        stream.feed(body[at : at + 4096])
        held = max(held, len(stream._pending) + sum(len(part) for part in stream._parts))
    stream.finish()
    assert held <= longest + 4096
    assert len(stream._skeleton) < len(body) / 1000


def test_a_marker_outside_the_sensors_in_a_deep_body_is_placed() -> None:
    # Markers outside the sensors are looked for through the whole parsed body; nesting as
    # deep as ujson parses (beyond Python's recursion limit) once raised RecursionError.
    depth = 1015  # ujson refuses more than 1024 levels
    body = (
        b'{"sensorData":[],"meta":{"values":[1]},"deep":'
        + b"[" * depth
        + b'{"values":[2]}'
        + b"]" * depth
        + b"}"
    )
    for decoded in (decode_scalardata(body, url="u"), _fed(body, 64)):
        assert decoded["meta"]["values"] == [1.0]
        inner = decoded["deep"]
        for _ in range(depth):
            (inner,) = inner
        assert inner == {"values": [2.0]}


def test_whitespace_after_a_key_is_not_held_back() -> None:
    # Whitespace after a key went back into the pending bytes and was searched again with
    # every chunk: fed a byte at a time, a long run made the decode quadratic.
    stream = decode_scalardata.stream(url="u")
    head = b'{"next":null,"sensorData":[{"sensorCode":"s","data":{"values":'
    for byte in head + b" \n" * 4000:
        stream.feed(bytes([byte]))
        assert len(stream._pending) <= len(b'"sampleTimes":')
    for byte in b'[1.5],"qaqcFlags":[1],"sampleTimes":["t"]}}]}':
        stream.feed(bytes([byte]))
    page = ScalarPage.from_api(stream.finish())
    assert list(page.series[0].values) == [1.5]


@pytest.mark.parametrize("text", [b"[1,NaN", b"[NaN", b"[1,null"])
def test_a_hole_at_the_very_end_is_refused_not_raised(text: bytes) -> None:
    assert _filled_holes(text) is None  # not a whole element: nothing after it
    assert _simd_values(text) is None
