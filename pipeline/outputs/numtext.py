"""Columns of numbers and times as text, rendered a column at a time, no Python object per value.

CSV spells each float as Python's `repr` does: the shortest text that reads back as the same
double. orjson writes a whole numpy column at once with the same shortest digits and, from
1e-4 up to 1e16, in the same layout as `repr` (`12.0`, `0.0001`, `0.30000000000000004`); its
commas give the offsets of an Arrow string array. It differs outside that range (`1e-05` is
`0.00001`, `1e-07` is `1e-7`, and before orjson 3.11.7 `1e+16` is `1e16`) and writes NaN and
infinities as `null`. So the values whose layout may differ (NaN, infinities, magnitudes
below 1e-4 or from 1e16, and any text with an exponent) are spelled by the caller's own
function, one by one. The result is byte for byte the text a per-value `spell` would give
(tests compare 470,000 doubles of every magnitude), at about 40 ns a value against 110 for
Arrow's cast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

# Python's `repr` of a finite non-zero float is positional (`0.0001`, `123.5`) from 1e-4 up
# to 1e16, and in exponent form outside (`1e-05`, `1e+16`).
_POSITIONAL_LOW = 1e-4
_POSITIONAL_HIGH = 1e16
_COMMA = ord(",")
_ZERO = ord("0")
_NEWLINE = ord("\n")
# Arrow's `string` offsets are int32 (numpy would wrap a bigger one silently).
_MAX_OFFSET = 2**31 - 1

# A column of texts (Arrow's `string` type: UTF-8 with int32 offsets).
Texts: TypeAlias = "pa.Array[Any]"


def float_texts(
    values: npt.NDArray[np.float64],
    spell: Callable[[float], str],
    *,
    absent: npt.NDArray[np.bool_] | None = None,
) -> Texts:
    """`spell(v)` for every value, as an Arrow string array; null where `absent` is true.

    `spell` must agree with `repr` on zeros and on finite values from 1e-4 up to 1e16 (both
    `repr` and ujson do); it is called only for the other values."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    count = len(values)
    if not count:
        return pa.array([], type=pa.string())
    text = _shortest_texts(values, absent)
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        positional = ((magnitude >= _POSITIONAL_LOW) & (magnitude < _POSITIONAL_HIGH)) | (
            values == 0
        )
    odd = ~positional
    if b"e" in _data(text):  # never seen in the positional range; checked all the same
        has_exponent: pa.Array[Any] = pc.match_substring(text, "e")
        odd |= has_exponent.fill_null(False).to_numpy(zero_copy_only=False)
    if absent is not None:
        odd &= ~absent
    if bool(odd.any()):
        spelled = [spell(v) for v in values[odd].tolist()]
        replacements = pa.array(spelled, type=pa.string())
        text = pc.replace_with_mask(text, pa.array(odd), replacements)
    return text


def _shortest_texts(values: npt.NDArray[np.float64], absent: npt.NDArray[np.bool_] | None) -> Texts:
    """Every value's shortest round-trip digits as orjson writes them (`12.0`, `0.1`,
    `1e+16`, NaN and infinities as `null`), as Arrow strings; null where `absent` is true.

    orjson renders the whole column in one call, at a third of the cost of Arrow's cast or
    ujson; its commas become the string array's offsets."""
    count = len(values)
    body = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    commas = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == _COMMA)
    if len(commas) != count - 1:
        raise ValueError(f"{count} values rendered as {len(commas) + 1} texts")
    data = body.translate(None, b",")  # the commas dropped
    if len(data) > _MAX_OFFSET:
        raise ValueError(f"a column of {count} values is too long for one string array")
    offsets = np.empty(count + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:count] = commas - np.arange(count - 1)  # each comma removed shifts one left
    offsets[count] = len(data)
    return _string_array(count, offsets, data, absent)


def int_texts(
    values: npt.NDArray[np.integer], *, absent: npt.NDArray[np.bool_] | None = None
) -> Texts:
    """Integers in decimal, as Arrow strings; null where `absent` is true.

    A column of single digits (QC flags, 0 - 9, nearly always) is laid out by numpy, a byte
    a value, at a sixth of the cost of Arrow's cast (a third with half the slots absent),
    which every other column takes."""
    if _single_digits(values, absent):
        # An absent slot holds an arbitrary byte (its value wrapped), hidden by the validity
        # bits: never read as text.
        digits = (values.astype(np.uint8) + _ZERO).tobytes()  # uint8: wraps, never widens
        offsets = np.arange(len(values) + 1, dtype=np.int32)
        return _string_array(len(values), offsets, digits, absent)
    array = pa.array(values, mask=absent)
    texts: Texts = pc.cast(array, pa.string())
    return texts


def _single_digits(values: npt.NDArray[Any], absent: npt.NDArray[np.bool_] | None) -> bool:
    """Whether `values` is a column of integers whose present ones are all 0 - 9."""
    if values.ndim != 1 or values.dtype.kind not in "iu" or not 0 < len(values) <= _MAX_OFFSET:
        return False
    if absent is not None and (absent.dtype != np.bool_ or absent.shape != values.shape):
        return False
    present = values if absent is None else values[~absent]
    return not len(present) or (int(present.min()) >= 0 and int(present.max()) <= 9)


def _string_array(
    count: int,
    offsets: npt.NDArray[np.int32],
    data: bytes,
    absent: npt.NDArray[np.bool_] | None,
) -> Texts:
    """An Arrow string array over `offsets` into `data`; null where `absent` is true."""
    validity = None
    nulls = 0
    if absent is not None and absent.any():
        validity = pa.py_buffer(np.packbits(~absent, bitorder="little").tobytes())
        nulls = int(absent.sum())
    texts: Texts = pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data), validity, nulls
    )
    return texts


_DAY_MS = 86_400_000
_DATE_WIDTH = len("yyyy-MM-dd")
# One ONC time, `yyyy-MM-ddTHH:mm:ss.SSSZ`, as a record of fixed-width byte fields.
_TIME = np.dtype(
    [("date", "S10"), ("t", "S1"), ("clock", "S8"), ("dot", "S1"), ("millis", "S3"), ("z", "S1")]
)


@cache
def _clock_texts() -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.bytes_]]:
    """`HH:mm:ss` of every second of a day and `SSS` of every millisecond, built once."""
    second = np.arange(86_400)
    grid = np.empty((86_400, 8), dtype=np.uint8)
    for at, number in ((0, second // 3600), (3, second // 60 % 60), (6, second % 60)):
        grid[:, at] = number // 10 + ord("0")
        grid[:, at + 1] = number % 10 + ord("0")
    grid[:, 2] = grid[:, 5] = ord(":")
    millis = np.arange(1000)
    digits = np.stack([millis // 100, millis // 10 % 10, millis % 10], axis=1) + ord("0")
    return grid.view("S8").ravel(), digits.astype(np.uint8).view("S3").ravel()


def iso_times(ms: npt.NDArray[np.int64]) -> Texts:
    """int64 epoch ms -> ONC's `yyyy-MM-ddTHH:mm:ss.SSSZ` strings.

    Dates are rendered by numpy once per distinct day, the time of day looked up in tables of
    every second and every millisecond: a column of times costs a few numpy passes."""
    count = len(ms)
    record = iso_time_record(ms)
    if record is None:
        # Years before 0 or after 9999 (never from ONC): numpy's own, slower rendering.
        text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
        return pa.array([t + "Z" for t in text.tolist()], type=pa.string())
    width = ISO_TIME_WIDTH
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    texts: Texts = pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(record)
    )
    return texts


# The width of one ONC time's text.
ISO_TIME_WIDTH = _TIME.itemsize


def iso_time_record(ms: npt.NDArray[np.int64]) -> bytes | None:
    """`iso_times`' texts one after another, `ISO_TIME_WIDTH` bytes each; None for an empty
    column or a year outside 0 - 9999 (their texts have another width)."""
    count = len(ms)
    days, of_day = np.divmod(ms.astype(np.int64), _DAY_MS)
    distinct, which = np.unique(days, return_inverse=True)
    dates = np.datetime_as_string(distinct.astype("datetime64[D]"), unit="D")
    if count == 0 or int(np.strings.str_len(dates).max()) != _DATE_WIDTH:
        return None
    clock, millis = _clock_texts()
    seconds, fraction = np.divmod(of_day, 1000)
    record = np.empty(count, dtype=_TIME)
    record["date"] = dates.astype(f"S{_DATE_WIDTH}")[which]
    record["t"], record["dot"], record["z"] = b"T", b".", b"Z"
    record["clock"] = clock[seconds]
    record["millis"] = millis[fraction]
    return record.tobytes()


def lines_bytes(columns: Sequence[Texts], separator: str) -> bytes:
    """Rows of equal-length text columns as UTF-8 lines: each row's cells joined by
    `separator` (a null cell as nothing), then a newline.

    The newline goes onto the last column's cells first, by numpy (an Arrow join of that
    column with the newline cost 190 us a block of 8,192 rows, numpy 20), so the rows are
    built by one join, not by a join of the joined rows again."""
    last = columns[-1]
    if isinstance(last, pa.StringArray):
        return string_bytes(_join([*columns[:-1], _ended(last, _NEWLINE)], separator))
    return string_bytes(_join([_join(columns, separator), _text("")], "\n"))


def _ended(texts: pa.StringArray, end: int) -> Texts:
    """Each text followed by the byte `end`; a null text as `end` alone. The result holds
    no null."""
    count = len(texts)
    if not count:
        return texts
    _, offsets_buffer, data_buffer = texts.buffers()
    if offsets_buffer is None:
        raise ValueError("a string array without offsets")
    offsets = np.frombuffer(
        memoryview(offsets_buffer), dtype=np.int32, count=count + 1, offset=4 * texts.offset
    ).astype(np.int64)
    lengths = np.diff(offsets)
    data = np.frombuffer(memoryview(data_buffer or b""), dtype=np.uint8)
    width = int(lengths[0])
    if not texts.null_count and bool((lengths == width).all()):
        # Texts of one width (a column of flags): a row each, the end byte a column after.
        steps = np.arange(0, (count + 1) * (width + 1), width + 1, dtype=np.int64)
        _check_offsets(steps, count)
        rows = np.empty((count, width + 1), dtype=np.uint8)
        rows[:, :width] = data[offsets[0] : offsets[-1]].reshape(count, width)
        rows[:, width] = end
        return _string_array(count, steps.astype(np.int32), rows.tobytes(), None)
    if texts.null_count:
        present = texts.is_valid().to_numpy(zero_copy_only=False)
        lengths = np.where(present, lengths, 0)
    placed = np.zeros(count + 1, dtype=np.int64)  # where each text starts in the result
    np.cumsum(lengths + 1, out=placed[1:])
    _check_offsets(placed, count)
    result = np.full(int(placed[-1]), end, dtype=np.uint8)
    kept = int(lengths.sum())
    if kept:
        # The j-th byte kept, of text i, moves from offsets[i] + (j - before[i]) to
        # placed[i] + (j - before[i]), `before[i]` being the bytes kept ahead of text i.
        before = np.cumsum(lengths) - lengths
        step = np.arange(kept, dtype=np.int64)
        result[step + np.repeat(placed[:-1] - before, lengths)] = data[
            step + np.repeat(offsets[:-1] - before, lengths)
        ]
    return _string_array(count, placed.astype(np.int32), result.tobytes(), None)


def _check_offsets(offsets: npt.NDArray[np.int64], count: int) -> None:
    """Refuse offsets that would not fit a string array's int32, before allocating for them."""
    if offsets[-1] > _MAX_OFFSET:
        raise ValueError(f"a column of {count} texts is too long for one string array")


def _text(value: str) -> pa.Scalar[Any]:
    return pa.scalar(value, type=pa.string())


def _join(parts: Sequence[Texts | pa.Scalar[Any]], separator: str) -> Texts:
    """`binary_join_element_wise`: each row's parts joined by `separator`, a null as nothing."""
    # The stubs type the variadic parts as arrays of one kind; Arrow takes arrays and scalars.
    joined: Texts = pc.binary_join_element_wise(  # type: ignore[call-overload]
        *parts,
        _text(separator),
        null_handling="replace",
        null_replacement="",
    )
    return joined


def _data(strings: Texts) -> bytes:
    """A string array's data buffer between its first and its last offset: its texts one
    after another (what a null slot holds is unspecified)."""
    if not len(strings):
        return b""
    _, offsets, data = strings.buffers()
    if offsets is None or data is None:
        return b""
    bounds = np.frombuffer(
        memoryview(offsets), dtype=np.int32, count=len(strings) + 1, offset=4 * strings.offset
    )
    return bytes(memoryview(data)[int(bounds[0]) : int(bounds[-1])])


def string_bytes(strings: Texts) -> bytes:
    """The UTF-8 texts of a string array, concatenated (a null as nothing), without a Python
    object per string."""
    if strings.null_count:
        # The stubs want an array here; Arrow takes the scalar (filled in every null slot).
        strings = pc.coalesce(strings, _text(""))  # type: ignore[arg-type]
    return _data(strings)
