"""dataProductDelivery replies: the request answer and the run list."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.onc.models.common import (
    Citation,
    citations_of,
    query_url_of,
)
from pipeline.onc.parsing import (
    as_list,
    as_object,
    opt_int,
    opt_str,
    req_int,
)

# --------------------------------------------------------------------------- data products

_DURATION = re.compile(r"^\s*([\d.]+)\s*(ms|s|sec|min|m|h|hr|hour|hours|d|day|days)?\s*$", re.I)
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "min": 60,
    "m": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}


def parse_processing_time(text: str | None) -> float | None:
    """`"20 s"` → 20.0, `"2 min"` → 120.0; None when absent or not understood."""
    if not text:
        return None
    match = _DURATION.match(text)
    if not match:
        return None
    unit = (match.group(2) or "s").lower()
    try:
        return float(match.group(1)) * _UNIT_SECONDS[unit]
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ProductRequest:
    """The answer to `dataProductDelivery/request`: the id to persist and the estimates."""

    dp_request_id: int
    estimated_file_size: str | None
    estimated_processing_time: str | None
    file_size: int | None
    citations: tuple[Citation, ...]
    query_url: str | None

    @property
    def estimated_seconds(self) -> float | None:
        """`estimatedProcessingTime` in seconds, when it can be read."""
        return parse_processing_time(self.estimated_processing_time)

    @classmethod
    def from_api(cls, raw: Any) -> ProductRequest:
        """Parse a request answer."""
        obj = as_object(raw, "$")
        return cls(
            dp_request_id=req_int(obj, "dpRequestId", "$"),
            estimated_file_size=opt_str(obj, "estimatedFileSize", "$"),
            estimated_processing_time=opt_str(obj, "estimatedProcessingTime", "$"),
            file_size=opt_int(obj, "fileSize", "$")
            if isinstance(obj.get("fileSize"), int)
            else None,
            citations=citations_of(obj.get("citations"), "citations"),
            query_url=query_url_of(obj),
        )


class RunState(enum.Enum):
    """What a product run is doing; statuses seen in production and documented ones."""

    QUEUED = "queued"
    RUNNING = "running"  # also "data product running", "metadata product running"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    ERROR = "error"
    UNKNOWN = "unknown"  # any new wording: treated as still in progress, bounded by deadline

    @classmethod
    def parse(cls, text: str) -> RunState:
        """Map the API's free-text status onto a state."""
        words = text.strip().lower()
        if words in ("complete", "completed"):
            return cls.COMPLETE
        if words in ("cancelled", "canceled"):
            return cls.CANCELLED
        if words in ("error", "failed"):
            return cls.ERROR
        if words == "queued":
            return cls.QUEUED
        if words.endswith("running"):
            return cls.RUNNING
        return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class ProductRun:
    """One run of a product request (`run`, `cancel` and `restart` answers)."""

    dp_run_id: int
    status: str
    file_count: int | None

    @property
    def state(self) -> RunState:
        """The status as a RunState (the raw text stays in `status` for diagnostics)."""
        return RunState.parse(self.status)

    @property
    def is_complete(self) -> bool:
        """True once the run's files can be downloaded."""
        return self.state is RunState.COMPLETE

    @property
    def is_failed(self) -> bool:
        """True for the terminal failure states `error` and `cancelled`."""
        return self.state in (RunState.ERROR, RunState.CANCELLED)

    @classmethod
    def list_from_api(cls, raw: Any) -> list[ProductRun]:
        """Parse a run list (a single object is accepted too)."""
        items = [raw] if isinstance(raw, Mapping) else as_list(raw, "$", null_is_empty=False)
        runs = []
        for i, item in enumerate(items):
            obj = as_object(item, f"[{i}]")
            runs.append(
                cls(
                    dp_run_id=req_int(obj, "dpRunId", f"[{i}]"),
                    status=opt_str(obj, "status", f"[{i}]") or "",
                    file_count=opt_int(obj, "fileCount", f"[{i}]"),
                )
            )
        return runs
