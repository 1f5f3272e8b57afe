"""Decoding of Oceans API bodies: tolerant of bare NaN, strict about shape, clear when wrong.

Helpers here take the member name as an argument so that the upstream's camelCase spelling
stays in models.py, where each model reads its own members.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import simdjson
import ujson

from pipeline.exceptions import OncErrorDetail
from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.times import format_onc_time

_PREVIEW = 60
# What `bytes.lstrip` strips: ASCII whitespace.
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")
_LESS_THAN = ord("<")


def decode_json(body: bytes | bytearray, *, url: str, status: int | None = None) -> Any:
    """Parse `body` with ujson (bare NaN allowed); unusable bodies raise OncMalformedReply.

    Every `sampleTimes` array byte for byte the first one is parsed once, and each holder of
    one gets that list (ONC repeats the axis for every sensor of a device)."""
    return _decode(body, url, status, pack=False)


class ScalarDataDecoder:
    """`decode_json` for a scalardata page, with each `qaqcFlags` array of one-digit flags
    (ONC's 0-9) already packed as `array("b")`, each numeric `values` array as
    `array("d")` and each `sampleTimes` array as a `TimeAxis` (when its times need no
    unescaping; copies of the first one share it), which `int_values`, `float_values` and
    `time_axis` take as they are. Called with a whole body, or fed a body chunk by chunk
    (`stream`), which decodes each column as soon as it has arrived.

    Parsed by ujson, a page's flags are a Python int and a list slot each, its values a
    24-byte float and a list slot each, its times a string each, all alive until the page is
    converted. Cut from the body instead (`ColumnCutter`), flags are turned into bytes in C,
    values parsed into doubles (`_packed_values`) and times joined as text, one column at a
    time; the rest of the page, a few kB, is what ujson parses.
    """

    def __call__(self, body: bytes | bytearray, *, url: str, status: int | None = None) -> Any:
        return _decode(body, url, status, pack=True)

    def stream(self, *, url: str, status: int | None = None) -> ColumnCutter:
        """A decoder fed the body in chunks (`ColumnCutter.feed`), then `finish`ed."""
        return ColumnCutter(url=url, status=status, pack=True)


decode_scalardata = ScalarDataDecoder()


def _decode(body: bytes | bytearray, url: str, status: int | None, *, pack: bool) -> Any:
    cutter = ColumnCutter(url=url, status=status, pack=pack)
    if not any(_find_key(body, key) >= 0 for key in cutter.keys):
        return cutter.parse(body)  # nothing to cut: no skeleton, a copy of the body, to make
    cutter.feed(body)
    return cutter.finish()


_TIMES_KEY = b'"sampleTimes":'
_FLAGS_KEY = b'"qaqcFlags":'
_VALUES_KEY = b'"values":'
_BACKSLASH = ord("\\")
# What a JSON string cannot hold as it is written: a backslash (an escape) and control characters.
_NOT_AS_WRITTEN = bytes(range(0x20)) + b"\\\x7f"
# One-digit flags as bytes: b"0".."9" -> 0..9, which array("b", ...) takes as they are.
_DIGIT_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))


def _find_key(body: bytes | bytearray, key: bytes, start: int = 0) -> int:
    """`body.find(key, start)`, fast on a page of numbers and time strings.

    `bytes.find` with a long needle skips along on the needle's last byte, here `:`, which
    every time string holds twice: it crawls through the time arrays. A key's first letter
    (`s`, `q`) appears in no number or time, so `find` on that one byte (memchr) jumps from
    key to key.
    """
    anchor = key[1:2]
    at = body.find(anchor, start + 1)
    while at >= 0 and not body.startswith(key, at - 1):
        at = body.find(anchor, at + 1)
    return at - 1 if at >= 0 else -1


def _one_digit_flags_py(text: bytes | bytearray) -> array[int] | None:
    """`[1,1,9]` as array("b", [1, 1, 9]); None unless every flag is one digit. The reference
    of `_columns.one_digit_flags`, which does it in one pass (eight bytes at a time)."""
    # JSON's whitespace goes first; two digits that only whitespace parted (invalid JSON)
    # then fail the check below, and the body goes to ujson, which rejects it.
    inner = text[1:-1].translate(None, b" \t\n\r")
    digits = inner[0::2]
    # n digits at the even places and n - 1 commas among 2n - 1 bytes: the commas are
    # exactly the odd places, so this is a flat array of one-digit integers.
    if len(inner) % 2 == 0 or not digits.isdigit() or inner.count(b",") != len(digits) - 1:
        return None if inner else array("b")
    return array("b", digits.translate(_DIGIT_VALUES))


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """A column of sample times as one text, the times joined by newlines (the form
    `ScalarBatch.axes` and the writers take), and how many times it holds.

    The count is kept rather than derived: an axis of one empty time and an empty axis have
    the same text.
    """

    text: str
    length: int

    @classmethod
    def of(cls, times: list[str]) -> TimeAxis:
        """The axis of `times` (strings holding no newline, as every ONC time)."""
        return cls("\n".join(times), len(times))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[str]:
        return iter(self.text.split("\n") if self.length else ())


def _joined_times_py(text: bytes | bytearray) -> TimeAxis | None:
    """`["a","b"]` as TimeAxis("a\nb", 2) straight from the bytes, without a string per time;
    None unless it is a flat, compact array of strings that JSON reads as they are written
    (printable ASCII, no quote, no backslash), which is then parsed by ujson instead. The
    reference of `_columns.joined_times`, which checks eight bytes at a time and copies once
    (1.9 ms for a page's 2.7 MB axis where this takes 8).

    Under those conditions the text is exactly what ujson's strings joined by newlines would
    be: every `","` parts two times, and nothing inside a time needs decoding.
    """
    if text == b"[]":
        return TimeAxis("", 0)
    if len(text) < 4 or not (text.startswith(b'["') and text.endswith(b'"]')):
        return None
    inner = text[2:-2]
    # Escapes, control characters (JSON allows none inside a string; a newline would split a
    # time in two) and UTF-8 are left to ujson.
    if not inner.isascii() or len(inner.translate(None, _NOT_AS_WRITTEN)) != len(inner):
        return None
    joined = inner.replace(b'","', b"\n")
    # A quote not in a `","` (inside a time, around whitespace, between two strings with
    # no comma) is not an array of plain strings.
    if joined.find(b'"') >= 0:
        return None
    # Each `","` became one byte shorter by two.
    return TimeAxis(joined.decode("ascii"), (len(inner) - len(joined)) // 2 + 1)


def _packed_values(text: bytes | bytearray) -> array[float] | None:
    """`[1.5,NaN,null]` as array("d", [1.5, nan, nan]); None unless it is a flat array of
    numbers, NaN and null, which is left in the body for the page's parse to judge.

    Three parsers, each taking what the one before leaves, all giving the same doubles where
    two take the same text: `pack_doubles` (`pipeline/_columns.c`, where it was compiled) a
    compact array of JSON numbers, `NaN` and null in one pass (the GIL released for big ones);
    `_simd_values` any flat array of numbers without a Python float per value; what neither
    takes, ujson parses as it would inside the page: the same bare `NaN`, the same rounding,
    `-0` the integer 0, `true` 1.0 (as `float_values` has always packed it), its floats alive
    only until they are packed here. On a backfill's page (8 sensors, 100,000 rows) the first
    takes 1.5 ms a sensor where simdjson took 2.5 (tests/unit/test_columns.py compares them).
    """
    packed = pack_doubles(text)
    if packed is not None:
        values = array("d")
        values.frombytes(packed)
        return values
    simd = _simd_values(text)
    if simd is not None:
        return simd
    try:
        values = ujson.loads(text)
    except (ValueError, OverflowError):
        return None  # not JSON by itself: the whole page's parse decides what it is
    if not isinstance(values, list):
        return None
    try:
        return array("d", values)
    except TypeError:
        pass
    except OverflowError:
        return None  # an integer beyond a double: left to `float_values`, which names it
    # A null (no reading: NaN), or something that is no number, which `float_values`
    # rejects with the sensor's path when it meets the array uncut.
    try:
        return array("d", [math.nan if v is None else v for v in values])
    except (TypeError, OverflowError):
        return None


# ONC's gap-fill readings (`NaN`, `tests/fixtures/onc-samples/README.md`) and null, which
# strict JSON parsers refuse; `_simd_values` parses a zero of the same length in their place.
_HOLES = {ord("N"): (b"NaN", b"0e0"), ord("n"): (b"null", b"0e00")}
# A hole found and filled one by one costs about 2.5 µs of Python steps, a value about 25 ns
# of simdjson against ujson's 90-110 (2 shared cores): past one hole in about 50 values (8
# bytes a value), ujson is cheaper. In a big array (a backfill's page: a day of a CTD with
# gap-filled outages holds thousands of holes) more than a few are filled with `_SENTINEL`
# and found again after parsing (`sentinel_holes`, `fill_nan`: in C where `pipeline._columns`
# was built, else by numpy), each a pass or a few over the array whatever the number of holes.
# Small arrays keep the other two ways: a daemon that polls, or catches up a few hours of a
# 1 Hz sensor (an array of 75 - 200 KB for 3 hours of the emulator's CTD), never loads numpy.
_BYTES_PER_HOLE = 400
_FEW_HOLES = 16
_BIG_ARRAY_BYTES = 512 * 1024
# What many holes are parsed as. A reading of this value itself makes more of it than there
# were holes, and the array goes to ujson: never a reading taken for a hole.
_SENTINEL = 9e9
_SENTINEL_FILLS = ((b"NaN", b"9e9"), (b"null", b"9e9 "))  # same lengths; JSON allows the space
_SEPARATORS = b"[,"
_AFTER_HOLE = b",]"

_simd = threading.local()  # one simdjson parser per thread, its buffers reused page to page


def _filled_holes(text: bytes | bytearray) -> tuple[bytearray, list[int] | int] | None:
    """`text` with each `NaN` and null replaced by a number of the same length, and where
    they were: their element indices (each now a zero), or, when a big array holds many,
    their number (each now `_SENTINEL`). None when one is not a whole element (`NaNx`,
    `-NaN`, spaced), or when a small array holds so many that ujson parses it faster."""
    big = len(text) >= _BIG_ARRAY_BYTES
    most = _FEW_HOLES if big else max(_FEW_HOLES, len(text) // _BYTES_PER_HOLE)
    places: list[int] = []
    for first, (hole, _) in _HOLES.items():
        # Found by their first byte (memchr) rather than as a word: several times faster.
        at = text.find(first)
        while at >= 0:
            end = at + len(hole)
            if (
                not text.startswith(hole, at)
                or text[at - 1] not in _SEPARATORS
                or text[end : end + 1] not in (b",", b"]")  # b"" (the end) is in b",]"
            ):
                return None
            places.append(at)
            if len(places) > most:
                return sentinel_holes(text) if big else None
            at = text.find(first, end)
    places.sort()
    filled = bytearray(text)
    holes: list[int] = []
    index, counted = 0, 0  # `index` commas in text[:counted]
    for at in places:
        index += text.count(b",", counted, at)
        counted = at
        holes.append(index)
        hole, zero = _HOLES[text[at]]
        filled[at : at + len(hole)] = zero
    return filled, holes


def _filled_many_numpy(text: bytes | bytearray) -> tuple[bytearray, int] | None:
    """`pipeline._columns.sentinel_holes` by numpy: every `NaN` and null replaced by
    `_SENTINEL` (a copy of `text`), and how many there were; None when a `N` or `n` is in
    neither word, or a word is not a whole element (after `[` or `,`, before `,` or `]`)."""
    import numpy as np

    filled = bytearray(text)
    raw = np.frombuffer(filled, dtype=np.uint8)
    holes = 0
    for (hole, fill), letter in zip(_SENTINEL_FILLS, _HOLES, strict=True):
        seen = np.flatnonzero(raw == letter)
        if not len(seen):
            continue
        # When every letter is in a word, the words start at every letter that follows the
        # previous word's letters (`NaN` holds two N), each followed by the rest of its word.
        at = seen[:: hole.count(letter)]
        if at[0] == 0 or at[-1] + len(hole) >= len(raw):
            return None  # no byte before the first, or none after the last
        for offset in range(1, len(hole)):
            if not np.all(raw[at + offset] == hole[offset]):
                return None
        before, after = raw[at - 1], raw[at + len(hole)]
        if not (
            np.all((before == _SEPARATORS[0]) | (before == _SEPARATORS[1]))
            and np.all((after == _AFTER_HOLE[0]) | (after == _AFTER_HOLE[1]))
        ):
            return None
        for offset, byte in enumerate(fill):
            raw[at + offset] = byte
        holes += len(at)
    return filled, holes


def _fill_nan_numpy(values: array[float], sentinel: float, /) -> int:
    """`pipeline._columns.fill_nan` by numpy: each value equal to `sentinel` set to NaN; how
    many."""
    import numpy as np

    column = np.frombuffer(values, dtype=np.float64)
    found = column == sentinel
    column[found] = math.nan
    return int(np.count_nonzero(found))


def _no_packed_doubles(text: bytes | bytearray, /) -> None:
    """Where `pipeline._columns` is not compiled: `_simd_values` and ujson parse every array."""
    return None


try:
    from pipeline._columns import (
        fill_nan,
        joined_times,
        one_digit_flags,
        pack_doubles,
        sentinel_holes,
    )
except ImportError:  # not compiled where it was installed
    fill_nan, sentinel_holes = _fill_nan_numpy, _filled_many_numpy
    pack_doubles = _no_packed_doubles
    _joined_times, _one_digit_flags = _joined_times_py, _one_digit_flags_py
else:

    def _joined_times(text: bytes | bytearray) -> TimeAxis | None:
        """`_joined_times_py` in one pass over the bytes (`_columns.joined_times`)."""
        joined = joined_times(text)
        return None if joined is None else TimeAxis(*joined)

    def _one_digit_flags(text: bytes | bytearray) -> array[int] | None:
        """`_one_digit_flags_py` in one pass over the bytes (`_columns.one_digit_flags`)."""
        digits = one_digit_flags(text)
        if digits is None:
            return None
        flags = array("b")
        flags.frombytes(digits)
        return flags


def _simd_values(text: bytes | bytearray) -> array[float] | None:
    """A compact, flat array of JSON numbers, bare `NaN` and null as array("d"), parsed by
    simdjson into doubles without a Python object per value; None for anything else (the
    caller's ujson parse then decides).

    Where both parse a number, the double is the same bit for bit: both round correctly,
    and simdjson's integers (up to 64 bits) become doubles as `array("d")` turns ujson's
    Python ints into them. What simdjson refuses (`Infinity`, `1.`, integers beyond 64 bits,
    exponents past a double, a string, `true`) returns None, so ujson's reading of it stands.
    Each `NaN` and null (a whole element between `[`/`,` and `,`/`]`) is parsed as a zero
    and set to NaN after, by the commas before it; many in a big array, as `_SENTINEL`, and
    set to NaN where it stands (`_filled_holes`). `as_buffer` flattens nested arrays, so
    any `[` after the first sends the text to ujson, which keeps them as lists.
    """
    if text.find(b"[", 1) >= 0:
        return None
    holes: list[int] | int = []
    if text.find(b"N") >= 0 or text.find(b"n") >= 0:
        filled = _filled_holes(text)
        if filled is None:
            return None
        text, holes = filled
    parser = getattr(_simd, "parser", None)
    if parser is None:
        parser = _simd.parser = simdjson.Parser()
    document = None
    try:
        document = parser.parse(text)
        if not isinstance(document, simdjson.Array):
            return None
        buffer = document.as_buffer(of_type="d")
    except (ValueError, RuntimeError, TypeError):
        return None
    finally:
        # The parser refuses the next body while a proxy of this one lives.
        del document
    values = array("d")
    values.frombytes(buffer)
    if isinstance(holes, int):
        if fill_nan(values, _SENTINEL) != holes:
            return None  # a reading of 9e9 among them: ujson's parse stands
    else:
        for index in holes:
            values[index] = math.nan
    return values


_OPEN = ord("[")
_NOT_SPACE = re.compile(rb"[^ \t\n\r]")  # JSON's whitespace
# A key may arrive split across two chunks: this many bytes wait for the next one.
_KEY_TAIL = max(len(_TIMES_KEY), len(_FLAGS_KEY), len(_VALUES_KEY)) - 1
_MARKER = -2
# A piece of an open array smaller than this is copied into a part of ours, which the next
# small pieces are added to, rather than kept as a view of its own.
_SMALL_PART = 4096


def _same_bytes(text: bytes, parts: list[bytes | bytearray | memoryview]) -> bool:
    """Whether `parts`, one after the other, are `text` (compared where they lie, by memcmp)."""
    offset = 0
    for part in parts:
        if not text.startswith(part, offset):
            return False
        offset += len(part)
    return offset == len(text)


class ColumnCutter:
    """A JSON body, fed in chunks as they arrive, with its big columns cut out and converted
    as soon as each is complete, so that a page is never held whole.

    Each array after a `sampleTimes` key (and, with `pack`, `qaqcFlags` and `values`) is
    converted when its `]` arrives: an axis to a `TimeAxis` (`_joined_times`; else ujson's
    list), copies of the first axis to that same object, flags to `array("b")`
    (`_one_digit_flags`), values to `array("d")` (`_packed_values`). What converts is
    replaced in the rest of the body (the skeleton) by a marker `[-2,<n>,<nonce>]`; what
    does not (a string among values, two-digit flags, an escape, an array cut short by a `]`
    inside a string) stays in the skeleton as it was written, for ujson to judge at `finish`.

    The skeleton is valid JSON exactly when the body is: a cut starts at a `[` right after
    its key (whitespace allowed), outside any string (a key's quote inside a string is
    escaped: a key after a backslash is not cut), and replaces an array that is valid JSON on
    its own (balanced quotes) with another. `finish` parses the skeleton and gives each
    marker's place its column: the packed column in a sensor's `data` under the key it was
    cut from, and anywhere else (a key outside the sensors) the plain list ujson would have
    made (`values` as floats, where ujson keeps integers as ints). The nonce, random per
    body, keeps an array the body itself holds from posing as a marker.
    """

    def __init__(self, *, url: str, status: int | None, pack: bool) -> None:
        self.url = url
        self.status = status
        self.keys = (_TIMES_KEY, _FLAGS_KEY, _VALUES_KEY) if pack else (_TIMES_KEY,)
        self._pack = pack
        self._pending = bytearray()  # fed, not yet judged: what may be a key's first bytes
        # An open array (its `[` first) as views of the chunks it arrived in, joined once its
        # `]` is in (unless it is the first axis again, `_close_parts`): appended to a buffer
        # instead, its bytes were copied again at each chunk.
        self._parts: list[bytes | bytearray | memoryview] = []
        self._skeleton = bytearray()
        self._size = 0
        self._after: bytes | None = None  # a key judged last, its array not yet begun
        self._open: bytes | None = None  # the key of the array begun last, until its `]`
        self._columns: list[tuple[bytes, Any]] = []  # (key, column) by marker number
        self._first_axis: tuple[bytes, TimeAxis | list[Any]] | None = None
        self._nonce = secrets.randbits(62)

    def feed(self, chunk: bytes | bytearray) -> None:
        """The body's next bytes. What an open array keeps of them after the call is a view
        of a `bytes` chunk (or of our copy, after a key's first bytes), or a copy of a
        bytearray's (a caller may reuse its buffer)."""
        self._size += len(chunk)
        data = chunk
        start = 0
        if self._parts:  # an open array: its `]` is the first one to come
            end = data.find(b"]")
            if end < 0:
                self._keep(data, 0)
                return
            self._parts.append(memoryview(data)[: end + 1])
            parts, self._parts = self._parts, []
            self._close_parts(parts)
            start = end + 1
        elif self._pending:  # a few bytes, and rarely: chunks mostly end inside an array
            data, self._pending = bytes(self._pending) + data, bytearray()
        done = self._scan(data, start)
        if done == len(data):
            return
        if self._open is not None:  # its `[` at `done`
            self._keep(data, done)
        else:
            self._pending = bytearray(memoryview(data)[done:])

    def _keep(self, data: bytes | bytearray, start: int) -> None:
        """`data[start:]` into the open array's parts: a view of bytes, a copy of a
        bytearray, and a small piece added to the last one when that is ours (a part costs
        about 350 bytes of objects: fed a few bytes at a time, they would outweigh the
        array)."""
        piece = memoryview(data)[start:]
        last = self._parts[-1] if self._parts else None
        if isinstance(last, bytearray) and len(piece) < _SMALL_PART:
            last += piece
        elif isinstance(data, bytes) and len(piece) >= _SMALL_PART:
            self._parts.append(piece)
        else:
            self._parts.append(bytearray(piece))

    def finish(self) -> Any:
        """The decoded body; OncMalformedReply when it is empty, HTML or not JSON."""
        for part in self._parts:  # an array never closed
            self._skeleton += part
        self._skeleton += self._pending  # or a last few bytes
        self._parts, self._pending = [], bytearray()
        data = self.parse(self._skeleton)
        if self._columns:
            self._place_columns(data)
        return data

    def parse(self, text: bytes | bytearray) -> Any:
        """`text` (the skeleton, or a body with nothing to cut) parsed by ujson;
        OncMalformedReply when it is empty, HTML or not JSON."""
        # Where the text starts, found without stripping: `lstrip` copies a bytearray whole.
        first = _NOT_BLANK.search(text)
        if first is None:
            raise OncMalformedReply(
                "empty reply body where JSON was expected", url=self.url, status=self.status
            )
        if text[first.start()] == _LESS_THAN:
            head = bytes(text[first.start() : first.start() + _PREVIEW])
            raise OncMalformedReply(
                f"reply is HTML/XML, not JSON (starts {head.decode('utf-8', 'replace')!r})",
                url=self.url,
                status=self.status,
            )
        try:
            return ujson.loads(text)
        except (ValueError, OverflowError) as exc:
            # A body cut short (reset, proxy timeout) is the common case: treat it as transient.
            raise OncMalformedReply(
                f"truncated or invalid JSON ({self._size or len(text)} bytes): {exc}",
                url=self.url,
                status=self.status,
            ) from None

    def _scan(self, data: bytes | bytearray, pos: int) -> int:
        """Judge what can be judged of `data` from `pos` on: cut each complete array, copy the
        bytes between into the skeleton. How many bytes of `data` are done with (the rest,
        a key's tail or an open array from its `[`, waits for more)."""
        # Where each key occurs next at or after `pos` (-1: nowhere in `data`): found once,
        # not again after every cut, which would search the columns that follow each time.
        ahead = {key: -2 for key in self.keys}
        while True:
            if self._after is not None:  # a key was the last thing judged
                pos = self._array_start(data, pos)
                if pos == len(data):
                    return pos
            if self._open is not None:  # an array starts at `pos`
                end = data.find(b"]", pos + 1)
                if end < 0:
                    return pos
                self._close_parts([data[pos : end + 1]])
                pos = end + 1
                continue
            for key, at in ahead.items():
                if -1 != at < pos:
                    ahead[key] = _find_key(data, key, pos)
            found = [(at, key) for key, at in ahead.items() if at >= 0]
            if not found:
                done = max(pos, len(data) - _KEY_TAIL)
                self._skeleton += data[pos:done]
                return done
            at, key = min(found)
            before = data[at - 1] if at else (self._skeleton[-1] if self._skeleton else 0)
            self._skeleton += data[pos : at + len(key)]
            pos = at + len(key)
            if before != _BACKSLASH:  # after a backslash, the key is inside a string
                self._after = key

    def _array_start(self, data: bytes | bytearray, pos: int) -> int:
        """Past the whitespace after a key (`_after`): where its array opens (the key's state
        moves to `_open`), or where something else starts (no array: the state is dropped);
        `len(data)` when only whitespace has arrived, which the skeleton takes."""
        found = _NOT_SPACE.search(data, pos)
        start = found.start() if found else len(data)
        self._skeleton += data[pos:start]
        if start < len(data):
            if data[start] == _OPEN:
                self._open = self._after
            self._after = None
        return start

    def _close(self, text: bytes | bytearray) -> None:
        """The open array is complete: `text`, from its `[` to its `]`."""
        assert self._open is not None
        key, self._open = self._open, None
        self._cut(key, text)

    def _close_parts(self, parts: list[bytes | bytearray | memoryview]) -> None:
        """The open array is complete, in the pieces it arrived in (one, when a chunk held
        it whole). An axis equal to the page's first one is that axis, found without joining
        its pieces: a page's sensors mostly share their times (for a day of an 8-sensor CTD,
        7 arrays of 2.7 MB each that a join would copy, into fresh memory, only to compare)."""
        first = self._first_axis
        if self._open == _TIMES_KEY and first is not None and _same_bytes(first[0], parts):
            self._open = None
            self._place(_TIMES_KEY, first[1])
            return
        text = b"".join(parts)
        parts.clear()  # the chunks go while the text is converted
        self._close(text)

    def _cut(self, key: bytes, text: bytes | bytearray) -> None:
        column = self._convert(key, text)
        if column is None:
            self._skeleton += text
            return
        self._place(key, column)

    def _place(self, key: bytes, column: Any) -> None:
        """A marker in the skeleton where `column` goes back (`_place_columns`)."""
        self._skeleton += b"[%d,%d,%d]" % (_MARKER, len(self._columns), self._nonce)
        self._columns.append((key, column))

    def _convert(self, key: bytes, text: bytes | bytearray) -> Any:
        if key == _FLAGS_KEY:
            return _one_digit_flags(text)
        if key == _VALUES_KEY:
            return _packed_values(text)
        axis: TimeAxis | list[Any] | None = _joined_times(text) if self._pack else None
        if axis is None:
            try:
                parsed = ujson.loads(text)
            except (ValueError, OverflowError):
                return None  # not JSON by itself: the skeleton's parse decides what it is
            if not isinstance(parsed, list):
                return None
            axis = parsed
        if self._first_axis is None:
            self._first_axis = (bytes(text), axis)
        return axis

    def _place_columns(self, data: Any) -> None:
        """Each marker in `data` replaced by its column (see the class)."""
        placed = 0
        items = data.get("sensorData") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else ():
            holder = item.get("data") if isinstance(item, dict) else None
            if not isinstance(holder, dict):
                continue
            for name in ("sampleTimes", "qaqcFlags", "values"):
                number = self._marker(holder.get(name))
                if number is not None and self._columns[number][0][1:-2] == name.encode():
                    holder[name] = self._columns[number][1]
                    placed += 1
        if placed < len(self._columns):
            # A marker elsewhere (a key outside the sensors), or lost to a repeated key.
            self._place_plain(data)

    def _marker(self, value: Any) -> int | None:
        if (
            isinstance(value, list)
            and len(value) == 3
            and value[0] == _MARKER
            and value[2] == self._nonce
            and isinstance(value[1], int)
            and 0 <= value[1] < len(self._columns)
        ):
            return value[1]
        return None

    def _place_plain(self, data: Any) -> None:
        # A stack, not recursion: ujson parses nesting deeper than Python's recursion limit.
        nodes = [data]
        while nodes:
            node = nodes.pop()
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for place, value in list(children):
                if not isinstance(value, dict | list):
                    continue
                number = self._marker(value)
                if number is None:
                    nodes.append(value)
                else:
                    node[place] = list(self._columns[number][1])


def error_details(data: Any) -> list[OncErrorDetail]:
    """The `errors` list of an error body as OncErrorDetail; empty when absent or malformed."""
    if not isinstance(data, Mapping):
        return []
    raw = data.get("errors")
    if not isinstance(raw, list):
        return []
    details = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        code = item.get("errorCode")
        try:
            code_int = int(code) if code is not None else None
        except (TypeError, ValueError):
            code_int = None
        message = item.get("errorMessage")
        parameter = item.get("parameter")
        details.append(
            OncErrorDetail(
                code=code_int,
                message=str(message) if message is not None else "",
                parameter=str(parameter) if parameter is not None else None,
            )
        )
    return details


def error_message(data: Any, fallback: str) -> str:
    """A one-line summary of an error body (`errors` list or a bare `message`)."""
    details = error_details(data)
    if details:
        return "; ".join(
            f"{d.code}: {d.message}" + (f" [{d.parameter}]" if d.parameter else "") for d in details
        )
    if isinstance(data, Mapping) and isinstance(data.get("message"), str):
        return str(data["message"])
    return fallback


def as_object(value: Any, where: str) -> Mapping[str, Any]:
    """`value` as a JSON object, else OncSchemaError naming `where`."""
    if not isinstance(value, Mapping):
        raise OncSchemaError(f"expected an object, got {type(value).__name__}", where=where)
    return value


def as_list(value: Any, where: str, *, null_is_empty: bool = True) -> list[Any]:
    """`value` as a JSON array (null → [] when allowed), else OncSchemaError."""
    if value is None and null_is_empty:
        return []
    if not isinstance(value, list):
        raise OncSchemaError(f"expected an array, got {type(value).__name__}", where=where)
    return value


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    """A required string member."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise OncSchemaError(
            f"expected a string, got {type(value).__name__}", where=f"{where}.{key}"
        )
    return value


def opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    """An optional string member (missing or null → None); numbers are stringified."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise OncSchemaError(f"expected a string, got {type(value).__name__}", where=f"{where}.{key}")


def req_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    """A required integer member (a numeric string is accepted)."""
    value = opt_int(obj, key, where)
    if value is None:
        raise OncSchemaError("missing integer", where=f"{where}.{key}")
    return value


def opt_int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    """An optional integer member; numeric strings are accepted."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise OncSchemaError("expected an integer, got bool", where=f"{where}.{key}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise OncSchemaError(f"expected an integer, got {value!r:.40}", where=f"{where}.{key}")


def opt_float(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """An optional number member; numeric strings are accepted, null → None."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise OncSchemaError(f"expected a number, got {value!r:.40}", where=f"{where}.{key}")


def opt_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    """An optional boolean member; the strings "true"/"false" (locations service) are accepted."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise OncSchemaError(f"expected a boolean, got {value!r:.40}", where=f"{where}.{key}")


def parse_time(text: str, where: str) -> datetime:
    """An ONC timestamp (`2019-02-16T00:40:37.316Z` or a date) as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise OncSchemaError(f"bad timestamp {text!r:.40}", where=where) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def opt_time(obj: Mapping[str, Any], key: str, where: str) -> datetime | None:
    """An optional timestamp member (null → None, e.g. a deployment still in the water)."""
    text = opt_str(obj, key, where)
    return None if text is None else parse_time(text, f"{where}.{key}")


def format_time(value: datetime | str) -> str:
    """A datetime as `yyyy-MM-ddTHH:mm:ss.SSSZ` (UTC); strings (durations, dates) pass through."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
    return format_onc_time(value)


def float_values(raw: Any, where: str) -> array[float]:
    """A `values` array as packed doubles: bare NaN kept, null → NaN, non-numbers rejected.

    Packed, the column takes 8 bytes a value instead of a 32-byte float object and its list
    slot, and converting validates it in one C pass.
    """
    if isinstance(raw, array) and raw.typecode == "d":  # packed by `decode_scalardata`
        return raw
    values = as_list(raw, where)
    try:
        return array("d", values)
    except TypeError:
        pass
    except OverflowError:
        raise _beyond_a_double(where) from None
    # A null (no reading: NaN) or something that is no number: the slow path, once.
    cleaned = [math.nan if v is None else v for v in values]
    try:
        return array("d", cleaned)
    except TypeError:
        bad = next(v for v in cleaned if not isinstance(v, int | float) or isinstance(v, bool))
        raise OncSchemaError(f"non-numeric value {bad!r:.40}", where=where) from None
    except OverflowError:
        raise _beyond_a_double(where) from None


def _beyond_a_double(where: str) -> OncSchemaError:
    # JSON allows an integer of any length; one no double holds is schema drift, like a
    # string, not an arithmetic error for the caller to meet.
    return OncSchemaError("an integer beyond a double", where=where)


def int_values(raw: Any, where: str) -> array[int]:
    """A `qaqcFlags` array packed: one byte a flag when all fit (ONC's 0-9), else 64 bits."""
    if isinstance(raw, array):  # packed by `decode_scalardata`
        return raw
    values = as_list(raw, where)
    for typecode in ("b", "q"):
        try:
            return array(typecode, values)
        except OverflowError:
            continue  # a flag beyond one byte: the wide array
        except TypeError:
            break
    bad = next((v for v in values if not isinstance(v, int) or isinstance(v, bool)), None)
    problem = "a flag beyond 64 bits" if bad is None else f"non-integer flag {bad!r:.40}"
    raise OncSchemaError(problem, where=where)


def time_axis(raw: Any, where: str) -> TimeAxis:
    """A `sampleTimes` array as a `TimeAxis`: as `decode_scalardata` joined it, or joined here."""
    if isinstance(raw, TimeAxis):  # joined by `decode_scalardata`
        return raw
    times = str_values(raw, where)
    try:
        return TimeAxis.of(times)
    except TypeError:  # `str_values` checks the ends only: a non-string inside
        bad = next(t for t in times if not isinstance(t, str))
        raise OncSchemaError(f"expected strings, got {type(bad).__name__}", where=where) from None


def str_values(raw: Any, where: str) -> list[str]:
    """An array of strings (times, readings); the ends are type-checked, not every element."""
    values = as_list(raw, where)
    # Checking both ends catches a wrong type of array without a Python loop over 100k items;
    # a mixed array is not something ONC has ever produced.
    for probe in (values[:1], values[-1:]):
        if probe and not isinstance(probe[0], str):
            raise OncSchemaError(f"expected strings, got {type(probe[0]).__name__}", where=where)
    return values
