"""Injected data gaps: upstream outages and late archive files, the ground truth of coverage.

A gap plan changes what the archive *holds*, not how requests are answered (that is
`faults.py`): every endpoint (scalardata, rawdata, archivefile, dataAvailability) and the
ground truth read the same plan, so they always agree. File format (YAML or JSON):

```
outages:      # the device recorded nothing over [from, to)
  - {device: BPR-Folger-59, from: 2019-11-30T00:00:00Z, to: 2019-12-01T00:00:00Z}
late_files:   # the file of `device` covering `at` is archived `delay_s` after it ends
  - {device: ICLISTENHF1560, at: 2024-01-09T12:02:00Z, delay_s: 86400, extension: wav}
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.exceptions import ConfigError
from pipeline.times import epoch_ms, format_onc_time, from_epoch_ms

_OUTAGE_KEYS = frozenset({"device", "from", "to"})
_LATE_KEYS = frozenset({"device", "at", "delay_s", "extension"})
_LATE_REQUIRED = _LATE_KEYS - {"extension"}


@dataclass(frozen=True, slots=True)
class Outage:
    """A device recorded nothing over [start, end) (epoch ms)."""

    device: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class LateFile:
    """The file of `device` (of `extension`, or every extension) covering `at` is late."""

    device: str
    at: int
    delay_s: float
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class GapPlan:
    """The gaps in force; empty by default."""

    outages: tuple[Outage, ...] = ()
    late_files: tuple[LateFile, ...] = ()

    @classmethod
    def load(cls, spec: str | Path | Mapping[str, Any] | GapPlan | None) -> GapPlan:
        """A mapping, inline JSON text, a path to a YAML/JSON file, a plan, or None."""
        if spec is None:
            return cls()
        if isinstance(spec, GapPlan):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_mapping(spec)
        text = str(spec)
        if text.lstrip().startswith("{"):
            return cls.from_mapping(json.loads(text))
        path = Path(text)
        if not path.is_file():
            raise ConfigError([("gaps", f"not a file nor inline JSON: {text}")])
        raw = path.read_text()
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        if not isinstance(data, Mapping):
            raise ConfigError([("gaps", f"{text}: top level must be a mapping")])
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GapPlan:
        """Parse the file format; every problem is reported at once with its path."""
        problems: list[tuple[str, str]] = []
        unknown = sorted(set(data) - {"outages", "late_files"})
        if unknown:
            problems.append(("gaps", f"unknown keys: {', '.join(unknown)}"))
        outages: list[Outage] = []
        for i, raw in enumerate(data.get("outages") or []):
            where = f"gaps.outages[{i}]"
            if not _check(raw, _OUTAGE_KEYS, _OUTAGE_KEYS, where, problems):
                continue
            start, end = (
                _instant(raw["from"], where, problems),
                _instant(raw["to"], where, problems),
            )
            if start is not None and end is not None:
                if start >= end:
                    problems.append((where, "`from` must be before `to`"))
                else:
                    outages.append(Outage(str(raw["device"]), start, end))
        late: list[LateFile] = []
        for i, raw in enumerate(data.get("late_files") or []):
            where = f"gaps.late_files[{i}]"
            if not _check(raw, _LATE_KEYS, _LATE_REQUIRED, where, problems):
                continue
            at = _instant(raw["at"], where, problems)
            try:
                delay = float(raw["delay_s"])
            except (TypeError, ValueError):
                problems.append((f"{where}.delay_s", "must be a number of seconds"))
                continue
            if at is not None:
                ext = raw.get("extension")
                late.append(LateFile(str(raw["device"]), at, delay, str(ext) if ext else None))
        if problems:
            raise ConfigError(problems)
        return cls(tuple(outages), tuple(late))

    def outages_of(self, device: str) -> list[tuple[int, int]]:
        """[start, end) ranges of `device`'s outages, oldest first."""
        return sorted((o.start, o.end) for o in self.outages if o.device == device)

    def outage_ms(self, device: str, start: int, end: int) -> int:
        """Milliseconds of [start, end) inside an outage of `device` (overlaps counted once)."""
        if not self.outages:  # the common case, asked once per archive file listed
            return 0
        covered, cursor = 0, start
        for lo, hi in self.outages_of(device):
            lo, hi = max(lo, cursor), min(hi, end)
            if lo < hi:
                covered += hi - lo
                cursor = hi
        return covered

    def late_delay_ms(self, device: str, extension: str, begin: int, end: int) -> int | None:
        """Archive delay of the file [begin, end) when a late-file rule picks it."""
        for rule in self.late_files:
            if (
                rule.device == device
                and (rule.extension is None or rule.extension == extension)
                and begin <= rule.at < end
            ):
                return int(rule.delay_s * 1000)
        return None

    def as_json(self) -> dict[str, Any]:
        """The plan in the API's camelCase and date format (for /_emulator/gaps)."""
        return {
            "outages": [
                {"deviceCode": o.device, "dateFrom": _iso(o.start), "dateTo": _iso(o.end)}
                for o in self.outages
            ],
            "lateFiles": [
                {
                    "deviceCode": f.device,
                    "at": _iso(f.at),
                    "delaySeconds": f.delay_s,
                    "extension": f.extension,
                }
                for f in self.late_files
            ],
        }


def _check(
    raw: Any,
    allowed: frozenset[str],
    required: frozenset[str],
    where: str,
    problems: list[tuple[str, str]],
) -> bool:
    if not isinstance(raw, Mapping):
        problems.append((where, "must be a mapping"))
        return False
    extra = sorted(set(raw) - allowed)
    missing = sorted(set(required) - set(raw))
    if extra:
        problems.append((where, f"unknown keys: {', '.join(extra)}"))
    if missing:
        problems.append((where, f"missing keys: {', '.join(missing)}"))
    return not extra and not missing


def _instant(value: Any, where: str, problems: list[tuple[str, str]]) -> int | None:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            problems.append((where, f"not an ISO 8601 instant: {value!r}"))
            return None
    if moment.tzinfo is None:
        problems.append((where, f"instant needs a time zone (Z): {value!r}"))
        return None
    return epoch_ms(moment)


def _iso(ms: int) -> str:
    return format_onc_time(from_epoch_ms(ms))
