"""Lossless JSON Lines: every record exactly as harvested, one file per (dataset, window).

Scalar lines use the Oceans API's own object-format names
(`{"sampleTime": ..., "sensorCode": ..., "value": ..., "qaqcFlag": ...}`), raw lines
`{"time": ..., "reading": ..., "lineType": ...}`. Values keep ONC's bare `NaN`, so the file
round-trips through the same parser as the API. Lines are sorted by time (then sensor).

Two ways to build a window. When the window has no file yet and pages arrive in time order
(a backfill, the common case), each page's lines go straight to the temporary file: memory
holds one page, whatever the window size. Otherwise (the file exists, pages overlap, a page's
times are out of order, sensors disagree on times) records are merged in a dict keyed by
(time, sensor) and written sorted. A streaming window that meets such a page switches to
merging, reading back what it wrote.

A window whose file exists (a near-real-time poll of the current window) appends the lines
that sort after the file's last one in place; a revision, or a record between existing ones,
rewrites the file whole and atomically (`growth.py` has the rule).
"""

from __future__ import annotations

import contextlib
import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from operator import itemgetter, lt
from pathlib import Path

import orjson
import ujson

from pipeline.durable import NewFile, rename_durably
from pipeline.exceptions import OutputError
from pipeline.outputs import native_lines
from pipeline.outputs.base import iso_bounds
from pipeline.outputs.growth import (
    Digests,
    KeyedGrowth,
    append_lines,
    open_partition,
    rewrite,
    unchanged,
)
from pipeline.outputs.publish import HashingSink, temp_path_for
from pipeline.records import BatchKind, PageBatch, PublishedFile, RawBatch, SensorInfo, Window

SUFFIX = ".jsonl"
_TIME_PREFIX = '{"sampleTime":"'


def _number(value: float) -> str:
    # ujson writes the shortest exact form, and NaN/Infinity as ONC's own JSON dialect does.
    return ujson.dumps(float(value))


# Rows of one page rendered and written at a time: bounds the text held in memory (a day's
# page of many sensors is tens of MB of lines) without a Python call per reading. A block
# small enough for its pieces to stay in the CPU's caches is faster and lighter than a large
# one; BENCHMARKS.md has the figures behind this size.
_BLOCK_ROWS = 2_048
# `,"qaqcFlag":F}` + newline for the flags ONC uses (0-9), looked up instead of rendered.
_FLAG_TAILS = tuple(f',"qaqcFlag":{flag}}}\n' for flag in range(10))
_FLAG_BYTES = bytes(range(len(_FLAG_TAILS)))


def _doubles(values: Sequence[float]) -> array[float]:
    # A packed array: ints become floats (the spelling `_number` gives) in C.
    return values if isinstance(values, array) and values.typecode == "d" else array("d", values)


def _value_body(doubles: array[float]) -> bytes:
    """`_number(v)` of every value, comma-separated, in one call: a JSON array's inside.

    orjson writes the column in one call, a third faster than ujson, with the same shortest
    digits and, from 1e-4 up to 1e16, the same layout (`pipeline/outputs/numtext.py`). Where
    they may differ, its text shows it: NaN and infinities are `null` (left for the caller to
    respell from the value), an exponent has an `e` and a magnitude under 1e-4 starts
    `0.0000` (the column then goes to ujson whole; a reading such as `10.00001` does too,
    which costs only time).
    """
    floats = doubles.tolist()
    body = orjson.dumps(floats)
    if b"e" in body or b"0.0000" in body:
        return ujson.dumps(floats)[1:-1].encode("ascii")
    return body[1:-1]


def _value_texts(values: Sequence[float]) -> list[str]:
    """`_number(v)` for every value, without a Python call per value (`_value_body`)."""
    doubles = _doubles(values)
    if not doubles:
        return []
    texts = _value_body(doubles).decode("ascii").split(",")
    at = -1
    with contextlib.suppress(ValueError):  # no `null` left
        while True:
            at = texts.index("null", at + 1)
            texts[at] = _number(doubles[at])
    return texts


def _flag_marks(flags: Sequence[int]) -> array[int] | None:
    """The flags as a packed array of int8 (`b`, the parser's packing) or int64 (`q`), for
    the C lines; None for flags no int64 holds (never ONC's: the Python lines spell them)."""
    if isinstance(flags, array) and flags.typecode in "bq":
        return flags
    try:
        return array("q", flags)
    except TypeError:
        return array("q", [int(f) for f in flags])  # integral floats (1.0), lax sources
    except OverflowError:
        return None


def _flag_tails(flags: Sequence[int]) -> list[str]:
    try:
        integral = isinstance(flags, array) and flags.typecode in "bBhHiIlLqQ"
        marks = flags if integral else array("q", flags)
    except TypeError:
        marks = array("q", [int(f) for f in flags])  # integral floats (1.0), lax sources
    if _all_known_flags(marks):
        if isinstance(marks, array) and marks.typecode == "b" and marks:
            # One flag for a whole block (the common case): one tail, no lookup per reading.
            packed = marks.tobytes()
            if packed.count(packed[:1]) == len(packed):
                return [_FLAG_TAILS[marks[0]]] * len(packed)
        if len(marks) > 1:
            # One C call for the whole column: half the cost of a lookup a flag by `map`.
            return list(itemgetter(*marks)(_FLAG_TAILS))
        return [_FLAG_TAILS[mark] for mark in marks]
    return [f',"qaqcFlag":{flag}}}\n' for flag in marks]


def _all_known_flags(marks: Sequence[int]) -> bool:
    """True when every flag has a tail in `_FLAG_TAILS` (0-9)."""
    if isinstance(marks, array) and marks.typecode == "b":
        # One byte a flag (the parser's packing): checked by one C pass, no int objects.
        return not marks.tobytes().translate(None, _FLAG_BYTES)
    return not marks or (min(marks) >= 0 and max(marks) < len(_FLAG_TAILS))


def _sensor_head(info: SensorInfo) -> str:
    return f'","sensorCode":{ujson.dumps(info.code)},"value":'


def _scalar_block(
    times: Sequence[str],
    series: Sequence[tuple[SensorInfo, Sequence[str], Sequence[float], Sequence[int]]],
    start: int,
    end: int,
) -> bytes:
    """Rows [start, end) of sensors sharing `times`, as lines in time-then-sensor order.

    Woven in C (`native_lines`) when the extension is built: one copy of the text into the
    result, no object per line. `_scalar_block_py` is the same in Python, and the reference.
    """
    if native_lines.COMPILED and isinstance(times, list):
        sensors = []
        for info, _, values, flags in series:
            marks = _flag_marks(flags[start:end])
            if marks is None:
                break
            doubles = _doubles(values[start:end])
            body = (native_lines.value_body(doubles) or _value_body(doubles)) if doubles else b""
            sensors.append((_sensor_head(info).encode("utf-8"), body, doubles, marks))
        else:
            return native_lines.scalar_lines(times, start, end, sensors)
    return _scalar_block_py(times, series, start, end).encode("utf-8")


def _scalar_block_py(
    times: Sequence[str],
    series: Sequence[tuple[SensorInfo, Sequence[str], Sequence[float], Sequence[int]]],
    start: int,
    end: int,
) -> str:
    """Rows [start, end) as `_scalar_block` makes them, in Python: without a call per reading.

    Each time's `{"sampleTime":"...` head is made once for all sensors, numbers are rendered
    by one call per column (`_value_texts`: the spelling of `_number`) and split, flags are
    looked up, and the four pieces of every line are placed into one list by strided slice
    assignments (C loops) for a single `str.join`.
    """
    rows = end - start
    # A line's pieces: its time's head, the sensor's code, the value, the flag's tail.
    stride = 4 * len(series)
    pieces = [""] * (rows * stride)
    heads = list(map(_TIME_PREFIX.__add__, times[start:end]))
    for at, (info, _, values, flags) in zip(range(0, stride, 4), series, strict=False):
        pieces[at::stride] = heads
        pieces[at + 1 :: stride] = [_sensor_head(info)] * rows
        pieces[at + 2 :: stride] = _value_texts(values[start:end])
        pieces[at + 3 :: stride] = _flag_tails(flags[start:end])
    return "".join(pieces)


class JsonlWindowWriter:
    """Builds one window's file: streamed in time order when it can, merged when it must."""

    def __init__(self, path: Path, window: Window, digests: Digests | None = None) -> None:
        self._path = path
        self._digests = digests
        self._low, self._high = iso_bounds(window)
        # Merge mode: key -> rendered line; a later fetch of the same key replaces it.
        self._lines: dict[tuple[str, str], str] | None = None
        # Stream mode: the open temporary file, its digest, size and the last time written.
        # Whole blocks go around the page cache, the last bytes through it (`NewFile`).
        self._tmp: NewFile | None = None
        self._digest = hashlib.sha256()
        self._streamed = 0
        self._last_time = ""
        self._changed = False
        # Over an existing file: the file as read; keys added after its last one are appended,
        # a new or changed line at or before it (a revision) rewrites the file.
        self._read = open_partition(path)
        self._growth: KeyedGrowth[tuple[str, str]] | None = None
        if self._read is not None:
            self._lines = {}
            self._load(path)
            self._growth = KeyedGrowth(max(self._lines) if self._lines else None)

    # -- reading -------------------------------------------------------------------------

    def _load(self, source: Path) -> None:
        assert self._lines is not None
        number = 0
        try:
            with open(source, encoding="utf-8") as handle:
                for line in handle:
                    number += 1
                    record = ujson.loads(line)
                    if "sensorCode" in record:
                        key = (record["sampleTime"], record["sensorCode"])
                    else:
                        key = (record["time"], "")
                    self._lines[key] = line if line.endswith("\n") else line + "\n"
        except (ValueError, KeyError, TypeError) as exc:
            raise OutputError(
                f"output {source} is unreadable at line {number}: {exc}", path=str(source)
            ) from exc

    def _to_merge_mode(self) -> dict[tuple[str, str], str]:
        """Switch to merging, taking back every line streamed so far."""
        if self._lines is None:
            if self._tmp is not None:
                tmp = temp_path_for(self._path)
                try:
                    self._tmp.flush()  # what waits in memory, before it is read back
                except OSError as exc:
                    self.discard()
                    raise OutputError(
                        f"cannot write {self._path}: {exc.strerror}", path=str(self._path)
                    ) from exc
                self._tmp.close()
                self._tmp = None
                self._lines = {}
                self._load(tmp)
                tmp.unlink(missing_ok=True)
            else:
                self._lines = {}
        return self._lines

    # -- adding --------------------------------------------------------------------------

    def add(self, batch: PageBatch) -> int:
        """JSON Lines holds both kinds: a scalar page whole (to stream it), raw lines as such."""
        if isinstance(batch, RawBatch):
            return self.add_raw(batch.times, batch.readings, batch.line_types)
        return self.add_scalar_page(batch.columns())

    def add_scalar_page(
        self, series: Sequence[tuple[SensorInfo, Sequence[str], Sequence[float], Sequence[int]]]
    ) -> int:
        """Add a whole scalar page at once: streamed when every sensor shares one time axis
        that starts after what was written; merged otherwise. Returns records kept."""
        if not series:
            return 0
        times = series[0][1]
        if self._lines is not None or any(s[1] != times for s in series[1:]):
            return sum(self.add_scalar(*s) for s in series)
        # Bisecting finds the window's rows only in times in order: a page out of order (or
        # repeating a time) is merged, each sensor's rows filtered one by one.
        if not all(map(lt, times, times[1:])):
            return sum(self.add_scalar(*s) for s in series)
        lo, hi = bisect_left(times, self._low), bisect_left(times, self._high)
        if lo >= hi:
            return 0
        if times[lo] <= self._last_time:
            return sum(self.add_scalar(*s) for s in series)
        ordered = sorted(series, key=lambda s: s[0].code)
        for start in range(lo, hi, _BLOCK_ROWS):
            self._write(_scalar_block(times, ordered, start, min(start + _BLOCK_ROWS, hi)))
        self._last_time = times[hi - 1]
        kept = (hi - lo) * len(ordered)
        self._streamed += kept
        self._changed = True
        return kept

    def _write(self, data: bytes) -> None:
        if self._tmp is None:
            tmp = temp_path_for(self._path)
            try:
                tmp.parent.mkdir(parents=True, exist_ok=True)
                self._tmp = NewFile(tmp, behind=True)
            except OSError as exc:
                raise OutputError(f"cannot write {tmp}: {exc.strerror}", path=str(tmp)) from exc
        try:
            self._tmp.write(data)
        except OSError as exc:
            self.discard()
            raise OutputError(
                f"cannot write {self._path}: {exc.strerror}", path=str(self._path)
            ) from exc
        self._digest.update(data)

    def add_scalar(
        self,
        sensor: SensorInfo,
        times: Sequence[str],
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """Add one sensor's readings that fall inside the window (merge mode)."""
        lines = self._to_merge_mode()
        code = ujson.dumps(sensor.code)
        low, high = self._low, self._high
        growth = self._growth
        kept = 0
        for time, value, flag in zip(times, values, flags, strict=True):
            if low <= time < high:
                key = (time, sensor.code)
                line = (
                    f'{{"sampleTime":"{time}","sensorCode":{code},'
                    f'"value":{_number(value)},"qaqcFlag":{int(flag)}}}\n'
                )
                if growth is not None:
                    growth.note(key, line, lines)
                lines[key] = line
                kept += 1
        self._changed = self._changed or kept > 0
        return kept

    def add_raw(
        self, times: Sequence[str], readings: Sequence[str], line_types: Sequence[str]
    ) -> int:
        """Add raw lines that fall inside the window."""
        lines = self._to_merge_mode()
        low, high = self._low, self._high
        growth = self._growth
        kept = 0
        for time, reading, line_type in zip(times, readings, line_types, strict=True):
            if low <= time < high:
                key = (time, "")
                line = (
                    ujson.dumps(
                        {"time": time, "reading": reading, "lineType": line_type},
                        ensure_ascii=False,
                        escape_forward_slashes=False,
                    )
                    + "\n"
                )
                if growth is not None:
                    growth.note(key, line, lines)
                lines[key] = line
                kept += 1
        self._changed = self._changed or kept > 0
        return kept

    # -- finishing -----------------------------------------------------------------------

    @property
    def record_count(self) -> int:
        """Distinct records the published file holds."""
        return self._streamed if self._lines is None else len(self._lines)

    @property
    def changed(self) -> bool:
        """True when this run added or replaced at least one record."""
        return self._changed

    @property
    def covers(self) -> None:
        """The file holds its window alone."""
        return None

    def discard(self) -> None:
        """Drop what a failed window wrote; the final file stays as it was."""
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None
            temp_path_for(self._path).unlink(missing_ok=True)

    def publish(self) -> PublishedFile | None:
        """Make the window's file final and durable: lines after an existing file's last one
        appended in place, otherwise the file written whole under a temporary name and renamed."""
        if self._lines is None:
            return self._publish_streamed()
        if not self._lines:
            return None
        keys = self._growth.appended() if self._growth is not None else None
        if keys is not None and self._read is not None:
            if not keys:
                return unchanged(self._path, self._digests)
            data = "".join(self._lines[key] for key in keys).encode("utf-8")
            return append_lines(self._path, data, self._read, self._digests)
        ordered = [self._lines[key] for key in sorted(self._lines)]

        def write(sink: HashingSink) -> None:
            sink.write("".join(ordered).encode("utf-8"))

        return rewrite(self._path, self._read, write, self._digests)

    def _publish_streamed(self) -> PublishedFile | None:
        if self._tmp is None:
            return None
        tmp = temp_path_for(self._path)
        size = self._tmp.size
        try:
            self._tmp.finish()
            self._tmp.close()
            self._tmp = None
            rename_durably(tmp, self._path)
            if self._digests is not None:
                self._digests.put(self._path, self._digest.copy())
        except OSError as exc:
            self.discard()
            raise OutputError(
                f"cannot write {self._path}: {exc.strerror}", path=str(self._path)
            ) from exc
        return PublishedFile(
            path=self._path,
            size=size,
            sha256=self._digest.hexdigest(),
            replaced=False,
        )


class JsonlWriter:
    """The JSON Lines output format."""

    name = "jsonl"
    kinds: frozenset[BatchKind] = frozenset({"scalardata", "rawdata"})

    def __init__(self) -> None:
        # The digest of each dataset's current window file, so an append hashes its lines.
        self._digests = Digests()

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """`<dataset>/<yyyy>/<dataset>_<window start>.jsonl`: a pure function of its inputs."""
        label = window.label()
        return Path(dataset_id) / label[:4] / f"{dataset_id}_{label}{SUFFIX}"

    def open_window(self, root: Path, dataset_id: str, window: Window) -> JsonlWindowWriter:
        """Start collecting one window, merging with the file already there."""
        return JsonlWindowWriter(
            root / self.relative_path(dataset_id, window), window, self._digests
        )
