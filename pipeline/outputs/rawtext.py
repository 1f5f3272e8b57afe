"""Raw instrument text: one line per reading with its time, one file per (dataset, partition).

Each line is `<time>\\t<lineType>\\t<reading>`, time in ONC's `yyyy-MM-ddTHH:mm:ss.SSSZ`, so
`cut -f3` gives back the instrument's own output and `sort` keeps time order. Backslash, tab,
CR and LF inside a reading are escaped (`\\\\`, `\\t`, `\\r`, `\\n`) so one reading is always one
line; everything else is kept byte for byte (UTF-8). Records are keyed by time: a re-fetched
reading replaces the earlier one. Each window merges into its partition's file, rewritten whole
and atomically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.engine.windows import Window
from pipeline.exceptions import OutputError
from pipeline.outputs.base import SensorInfo
from pipeline.outputs.partition import Partition, PartitionFile, PartitionKind
from pipeline.outputs.publish import HashingSink, PublishedFile, publish_atomically, sha256_of
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


def read_rawtext(path: Path) -> dict[str, str]:
    """time -> rendered line (with its newline) of a file this writer made."""
    lines: dict[str, str] = {}
    number = 0
    try:
        with open(path, encoding="utf-8", newline="\n") as handle:
            for line in handle:
                number += 1
                time, tab, _ = line.partition("\t")
                if not tab:
                    raise ValueError("no tab after the time")
                lines[time] = line if line.endswith("\n") else line + "\n"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise OutputError(
            f"existing output {path} is unreadable at line {number}: {exc}", path=str(path)
        ) from exc
    return lines


def parse_line(line: str) -> tuple[str, str, str]:
    """(time, lineType, reading) of one line of a raw text file."""
    time, _, rest = line.rstrip("\n").partition("\t")
    line_type, _, reading = rest.partition("\t")
    return time, line_type, unescape(reading)


class RawTextWindowWriter(PartitionFile):
    """Merges one window's raw lines into its partition's text file."""

    def __init__(self, path: Path, window: Window, partition: Partition) -> None:
        self._path = path
        self._partition = partition
        self._low, self._high = format_onc_time(window.start), format_onc_time(window.end)
        self._base: dict[str, str] = read_rawtext(path) if path.exists() else {}
        self._lines = dict(self._base)
        self._changed = False

    def add_scalar(
        self,
        sensor: SensorInfo,
        times: Sequence[str],
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """Raw text holds rawdata only; scalar readings are refused loudly, not dropped."""
        if not times:
            return 0
        raise OutputError(
            "the rawtext format holds rawdata; use netcdf, csv or jsonl for scalardata",
            path=str(self._path),
        )

    def add_raw(
        self, times: Sequence[str], readings: Sequence[str], line_types: Sequence[str]
    ) -> int:
        """Add raw lines that fall inside the window (ONC's fixed-width times sort as text)."""
        low, high = self._low, self._high
        lines = self._lines
        base = self._base
        kept = 0
        changed = self._changed
        for time, reading, line_type in zip(times, readings, line_types, strict=True):
            if low <= time < high:
                line = f"{time}\t{escape(line_type)}\t{escape(reading)}\n"
                lines[time] = line
                changed = changed or base.get(time) != line
                kept += 1
        self._changed = changed
        return kept

    @property
    def record_count(self) -> int:
        """Distinct readings (by time) the file will hold."""
        return len(self._lines)

    @property
    def changed(self) -> bool:
        """True when this run added or replaced at least one line."""
        return self._changed

    def publish(self) -> PublishedFile | None:
        """Rewrite the partition file, sorted by time, atomically; unchanged is left alone."""
        if not self._lines:
            return None
        if self._path.exists() and not self._changed:
            size, digest = sha256_of(self._path)
            return PublishedFile(self._path, size, digest, replaced=False)
        text = "".join(self._lines[key] for key in sorted(self._lines))

        def write(sink: HashingSink) -> None:
            sink.write(text.encode("utf-8"))

        return publish_atomically(self._path, write)


class RawTextWriter:
    """The raw text output format for `rawdata` streams."""

    name = "rawtext"

    def __init__(self, *, partition: PartitionKind = "daily") -> None:
        self._partition = partition

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """`<dataset>/<yyyy>/<dataset>_<partition label>.txt`."""
        return Partition.of_window(window, self._partition).relative_path(dataset_id, SUFFIX)

    def open_window(self, root: Path, dataset_id: str, window: Window) -> RawTextWindowWriter:
        """Start merging one window into its partition file."""
        partition = Partition.of_window(window, self._partition)
        return RawTextWindowWriter(
            root / partition.relative_path(dataset_id, SUFFIX), window, partition
        )
