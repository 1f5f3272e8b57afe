"""Lossless JSON Lines: every record exactly as harvested, one file per (dataset, window).

Scalar lines use the Oceans API's own object-format names
(`{"sampleTime": ..., "sensorCode": ..., "value": ..., "qaqcFlag": ...}`), raw lines
`{"time": ..., "reading": ..., "lineType": ...}`. Values keep ONC's bare `NaN`, so the file
round-trips through the same parser as the API. Lines are sorted by time (then sensor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import ujson

from pipeline.engine.windows import Window
from pipeline.exceptions import OutputError
from pipeline.outputs.base import SensorInfo, iso_bounds
from pipeline.outputs.publish import HashingSink, PublishedFile, publish_atomically

SUFFIX = ".jsonl"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


class JsonlWindowWriter:
    """Merges existing lines of a window file with newly fetched records, keyed by time."""

    def __init__(self, path: Path, window: Window) -> None:
        self._path = path
        self._low, self._high = iso_bounds(window)
        # key -> rendered line; a later fetch of the same key replaces the earlier value.
        self._lines: dict[tuple[str, str], str] = {}
        self._changed = False
        if path.exists():
            self._load_existing()

    def _load_existing(self) -> None:
        number = 0
        try:
            with open(self._path, encoding="utf-8") as handle:
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
                f"existing output {self._path} is unreadable at line {number}: {exc}",
                path=str(self._path),
            ) from exc

    def add_scalar(
        self,
        sensor: SensorInfo,
        times: Sequence[str],
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """Add one sensor's readings that fall inside the window."""
        code = ujson.dumps(sensor.code)
        low, high = self._low, self._high
        kept = 0
        lines = self._lines
        for time, value, flag in zip(times, values, flags, strict=True):
            if low <= time < high:
                lines[(time, sensor.code)] = (
                    f'{{"sampleTime":"{time}","sensorCode":{code},'
                    f'"value":{_number(value)},"qaqcFlag":{int(flag)}}}\n'
                )
                kept += 1
        self._changed = self._changed or kept > 0
        return kept

    def add_raw(
        self, times: Sequence[str], readings: Sequence[str], line_types: Sequence[str]
    ) -> int:
        """Add raw lines that fall inside the window."""
        low, high = self._low, self._high
        kept = 0
        for time, reading, line_type in zip(times, readings, line_types, strict=True):
            if low <= time < high:
                self._lines[(time, "")] = (
                    ujson.dumps(
                        {"time": time, "reading": reading, "lineType": line_type},
                        ensure_ascii=False,
                        escape_forward_slashes=False,
                    )
                    + "\n"
                )
                kept += 1
        self._changed = self._changed or kept > 0
        return kept

    @property
    def record_count(self) -> int:
        """Distinct records the published file holds."""
        return len(self._lines)

    @property
    def changed(self) -> bool:
        """True when this run added or replaced at least one record."""
        return self._changed

    def publish(self) -> PublishedFile | None:
        """Write every record, sorted, to the window's file atomically."""
        if not self._lines:
            return None
        ordered = [self._lines[key] for key in sorted(self._lines)]

        def write(sink: HashingSink) -> None:
            sink.write("".join(ordered).encode("utf-8"))

        return publish_atomically(self._path, write)


class JsonlWriter:
    """The JSON Lines output format."""

    name = "jsonl"

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """`<dataset>/<yyyy>/<dataset>_<window start>.jsonl`: a pure function of its inputs."""
        label = window.label()
        return Path(dataset_id) / label[:4] / f"{dataset_id}_{label}{SUFFIX}"

    def open_window(self, root: Path, dataset_id: str, window: Window) -> JsonlWindowWriter:
        """Start collecting one window, merging with the file already there."""
        return JsonlWindowWriter(root / self.relative_path(dataset_id, window), window)
