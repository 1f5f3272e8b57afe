"""Raw instrument lines, one file per (dataset, partition): raw text and JSON Lines CSV.

`rawtext`: each line is `<time>\\t<lineType>\\t<reading>`, time in ONC's
`yyyy-MM-ddTHH:mm:ss.SSSZ`, so
`cut -f3` gives back the instrument's own output and `sort` keeps time order. Backslash, tab,
CR and LF inside a reading are escaped (`\\\\`, `\\t`, `\\r`, `\\n`) so one reading is always one
line; everything else is kept byte for byte (UTF-8). Records are keyed by time: a re-fetched
reading replaces the earlier one. Each window merges into its partition's file: readings after
the file's last one are appended in place, anything else rewrites the file whole and atomically
(`growth.py` has the rule).

`jsonlcsv` (ERDDAP's EDDTableFromJsonlCSVFiles): a first line of column names
`["time","lineType","reading"]`, then one JSON array of strings per reading. JSON's string
escapes keep any reading on one line and exactly as received, and ERDDAP reads the file
unchanged; it is the raw format ERDDAP serves (our `rawtext` escapes are our own, so no ERDDAP
reader undoes them). Same merging, same partitions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.exceptions import OutputError
from pipeline.outputs.growth import (
    Digests,
    KeyedGrowth,
    append_lines,
    open_partition,
    rewrite,
    unchanged,
)
from pipeline.outputs.partition import Partition, PartitionFile, PartitionKind
from pipeline.outputs.publish import HashingSink
from pipeline.records import BatchKind, PublishedFile, RawBatch, Window
from pipeline.times import format_onc_time

SUFFIX = ".txt"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"})
_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"\\": "\\", "t": "\t", "r": "\r", "n": "\n"}
_SPECIAL = re.compile(r"[\\\t\r\n]")


def escape(reading: str) -> str:
    """A reading as one tab-free line."""
    return reading.translate(_ESCAPES) if _SPECIAL.search(reading) else reading


def unescape(text: str) -> str:
    """The inverse of `escape`."""
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), text)


def _rawtext_time(line: str) -> str:
    time, tab, _ = line.partition("\t")
    if not tab:
        raise ValueError("no tab after the time")
    return time


def parse_line(line: str) -> tuple[str, str, str]:
    """(time, lineType, reading) of one line of a raw text file."""
    time, _, rest = line.rstrip("\n").partition("\t")
    line_type, _, reading = rest.partition("\t")
    return time, line_type, unescape(reading)


JSONL_CSV_SUFFIX = ".csv.jsonl"
JSONL_CSV_COLUMNS = ("time", "lineType", "reading")
_JSONL_CSV_HEADER = json.dumps(list(JSONL_CSV_COLUMNS)) + "\n"


def jsonl_csv_line(time: str, line_type: str, reading: str) -> str:
    """One JSON Lines CSV row: a JSON array of the three strings, on one line."""
    return json.dumps([time, line_type, reading], ensure_ascii=False) + "\n"


def _jsonl_csv_time(line: str) -> str:
    row = json.loads(line)
    if not (isinstance(row, list) and len(row) == 3):
        raise ValueError("not an array of three strings")
    return str(row[0])


@dataclass(frozen=True, slots=True)
class _Tail:
    """The part of a partition file a window can touch: the lines at or after the window's
    start (time -> line), the bytes before them (the header included), how many readings
    those bytes hold, and the file's last time."""

    lines: dict[str, str]
    prefix: bytes
    before: int
    last: str | None


def _read_tail(path: Path, low: str, header: str, key_of: Callable[[str], str]) -> _Tail:
    """Read a file this module wrote (its header, then lines sorted by time), parsing only
    its lines at or after `low`: a near-real-time poll touches the last minutes of a day's
    file, and parsing every line was most of what a poll cost. The lines before are kept as
    bytes, for a rewrite. `key_of(line)` names a line's time, or raises ValueError for a
    line this module could not have written."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}", path=str(path)) from exc
    head = header.encode("utf-8")
    if not data.startswith(head):
        first = data.split(b"\n", 1)[0][:80].decode("utf-8", "replace")
        raise OutputError(
            f"existing output {path} is unreadable: unexpected header {first!r}", path=str(path)
        )
    start = len(data)
    last = None
    at = start  # where the line being read starts, for the error message
    try:
        # Backwards, one line at a time, to the first line before `low`.
        while start > len(head):
            at = data.rfind(b"\n", 0, start - 1) + 1
            key = key_of(data[at:start].decode("utf-8"))
            last = last or key
            if key < low:
                break
            start = at
        lines: dict[str, str] = {}
        at = start
        # Split on newlines only: a raw reading may hold other line breaks (U+2028, form feed),
        # which str.splitlines would split on.
        for raw in data[start:].split(b"\n")[:-1]:
            line = raw.decode("utf-8") + "\n"
            lines[key_of(line)] = line
            at += len(raw) + 1
    except (ValueError, UnicodeDecodeError) as exc:
        number = data.count(b"\n", 0, at) + 1
        raise OutputError(
            f"existing output {path} is unreadable at line {number}: {exc}", path=str(path)
        ) from exc
    before = data.count(b"\n", len(head), start)
    return _Tail(lines, data[:start], before, last)


class RawTextWindowWriter(PartitionFile):
    """Merges one window's raw lines into its partition's text file."""

    _header = ""

    def __init__(
        self, path: Path, window: Window, partition: Partition, digests: Digests | None = None
    ) -> None:
        self._path = path
        self._digests = digests
        self._partition = partition
        self._low, self._high = format_onc_time(window.start), format_onc_time(window.end)
        self._read = open_partition(path)
        # A file cut to nothing (a torn first line) holds no records, not even the header:
        # it is rewritten whole.
        self._exists = self._read is not None and self._read.size > 0
        if self._exists:
            tail = _read_tail(path, self._low, self._header, self._key)
        else:
            tail = _Tail({}, self._header.encode("utf-8"), 0, None)
        # The window merges with the file's lines it can touch (those from its start on);
        # the readings before stay as they are, as bytes.
        self._base = tail.lines
        self._prefix = tail.prefix
        self._before = tail.before
        self._lines = dict(self._base)
        # Over an existing file: readings after its last time are appended; a new or changed
        # one at or before it (a revision, a gap filled) rewrites the file.
        self._growth = KeyedGrowth(tail.last) if self._exists else None
        self._changed = False

    def add(self, batch: RawBatch) -> int:
        """Merge a page of raw lines."""
        return self.add_raw(batch.times, batch.readings, batch.line_types)

    def add_raw(
        self, times: Sequence[str], readings: Sequence[str], line_types: Sequence[str]
    ) -> int:
        """Add raw lines that fall inside the window (ONC's fixed-width times sort as text)."""
        low, high = self._low, self._high
        lines = self._lines
        base = self._base
        growth = self._growth
        kept = 0
        changed = self._changed
        for time, reading, line_type in zip(times, readings, line_types, strict=True):
            if low <= time < high:
                line = self._render(time, line_type, reading)
                if growth is not None:
                    growth.note(time, line, lines)
                lines[time] = line
                changed = changed or base.get(time) != line
                kept += 1
        self._changed = changed
        return kept

    @staticmethod
    def _key(line: str) -> str:
        return _rawtext_time(line)

    @staticmethod
    def _render(time: str, line_type: str, reading: str) -> str:
        return f"{time}\t{escape(line_type)}\t{escape(reading)}\n"

    @property
    def record_count(self) -> int:
        """Distinct readings (by time) the file will hold."""
        return self._before + len(self._lines)

    @property
    def changed(self) -> bool:
        """True when this run added or replaced at least one line."""
        return self._changed

    def publish(self) -> PublishedFile | None:
        """Append readings after the file's last one in place; otherwise rewrite the partition
        file, sorted by time, atomically. An unchanged file is left alone."""
        if self.record_count == 0:
            return None
        if self._exists and not self._changed:
            return unchanged(self._path, self._digests)
        keys = self._growth.appended() if self._growth is not None else None
        if keys is not None and self._read is not None:  # keys: changed, not revised
            data = "".join(self._lines[key] for key in keys).encode("utf-8")
            return append_lines(self._path, data, self._read, self._digests)
        text = "".join(self._lines[key] for key in sorted(self._lines))

        def write(sink: HashingSink) -> None:
            sink.write(self._prefix)
            sink.write(text.encode("utf-8"))

        return rewrite(self._path, self._read, write, self._digests)


class RawTextWriter:
    """The raw text output format for `rawdata` streams."""

    name = "rawtext"
    kinds: frozenset[BatchKind] = frozenset({"rawdata"})
    _suffix = SUFFIX
    _window_writer = RawTextWindowWriter

    def __init__(self, *, partition: PartitionKind = "daily") -> None:
        self._partition = partition
        self._digests = Digests()

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """`<dataset>/<yyyy>/<dataset>_<partition label>.txt`."""
        return Partition.of_window(window, self._partition).relative_path(dataset_id, self._suffix)

    def open_window(self, root: Path, dataset_id: str, window: Window) -> RawTextWindowWriter:
        """Start merging one window into its partition file."""
        partition = Partition.of_window(window, self._partition)
        path = root / partition.relative_path(dataset_id, self._suffix)
        return self._window_writer(path, window, partition, self._digests)


class JsonlCsvWindowWriter(RawTextWindowWriter):
    """Merges one window's raw lines into its partition's JSON Lines CSV file."""

    _header = _JSONL_CSV_HEADER

    @staticmethod
    def _key(line: str) -> str:
        return _jsonl_csv_time(line)

    @staticmethod
    def _render(time: str, line_type: str, reading: str) -> str:
        return jsonl_csv_line(time, line_type, reading)


class JsonlCsvWriter(RawTextWriter):
    """The JSON Lines CSV output format for `rawdata` streams (ERDDAP-readable): raw text's
    partitions and merging, in `<dataset>/<yyyy>/<dataset>_<partition label>.csv.jsonl`."""

    name = "jsonlcsv"
    _suffix = JSONL_CSV_SUFFIX
    _window_writer = JsonlCsvWindowWriter
