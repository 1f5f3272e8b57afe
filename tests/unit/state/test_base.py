"""Row types normalise to UTC and validate; the cursor rule; strict JSON payloads."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.state.base import (
    ManifestEntry,
    QuarantineRecord,
    StreamRecord,
    advance_cursor,
    check_entries,
    dump_payload,
    load_payload,
)

T0 = datetime(2026, 11, 24, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def _entry(**changes: object) -> ManifestEntry:
    fields: dict[str, object] = {
        "path": "s1/a.jsonl",
        "stream": "s1",
        "dataset_id": "ds",
        "size": 1,
        "sha256": "0" * 64,
        "time_start": T0,
        "time_end": T0,
        "records": 1,
        "source": None,
        "published_at": T0,
    }
    fields.update(changes)
    return ManifestEntry(**fields)  # type: ignore[arg-type]


def test_rows_convert_offsets_to_utc() -> None:
    at = datetime(2026, 11, 24, 9, 0, tzinfo=TOKYO)
    record = StreamRecord(name="s", cursor_time=at, last_success=at, updated_at=at)
    assert record.cursor_time == T0
    assert record.cursor_time is not None
    assert record.cursor_time.tzinfo == UTC
    assert record.updated_at.tzinfo == UTC
    assert _entry(time_start=at).time_start == T0
    assert QuarantineRecord("s", "k", "r", None, 0, at).at.tzinfo == UTC


@pytest.mark.parametrize("field", ["time_start", "time_end", "published_at"])
def test_naive_datetimes_are_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        _entry(**{field: datetime(2026, 1, 1)})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"path": "/abs/file"}, "relative"),
        ({"path": ""}, "relative"),
        ({"size": -1}, "size"),
        ({"records": -5}, "records"),
    ],
)
def test_manifest_entry_validates(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _entry(**changes)


@pytest.mark.parametrize(
    ("stored", "given", "expected"),
    [
        ((None, None), (T0, "f"), (T0, "f")),
        ((T0, "f"), (T0 + timedelta(seconds=1), "g"), (T0 + timedelta(seconds=1), "g")),
        ((T0, "f"), (T0, "g"), (T0, "g")),
        ((T0, "f"), (T0 - timedelta(microseconds=1), "g"), (T0, "f")),
        ((T0, "f"), (None, "g"), (T0, "g")),
        ((T0, "f"), (T0 + timedelta(days=1), None), (T0 + timedelta(days=1), "f")),
        ((T0, "f"), (None, None), (T0, "f")),
    ],
)
def test_cursor_only_moves_forward(
    stored: tuple[datetime | None, str | None],
    given: tuple[datetime | None, str | None],
    expected: tuple[datetime | None, str | None],
) -> None:
    assert advance_cursor(*stored, *given) == expected


def test_check_entries() -> None:
    check_entries("s1", [_entry(), _entry(path="s1/b")])
    with pytest.raises(ValueError, match="belongs to 's2'"):
        check_entries("s1", [_entry(stream="s2")])
    with pytest.raises(ValueError, match="twice"):
        check_entries("s1", [_entry(), _entry()])


def test_payloads_are_strict_json() -> None:
    text = dump_payload({"b": [1, 2.5, None], "a": "ü"})
    # ASCII escapes: a lone surrogate in a string can't break the UTF-8 a database stores.
    assert text == '{"a":"\\u00fc","b":[1,2.5,null]}'
    assert load_payload(text) == {"a": "ü", "b": [1, 2.5, None]}
    with pytest.raises(ValueError, match="JSON"):
        dump_payload({"x": math.inf})
    with pytest.raises(TypeError):
        dump_payload({"x": T0})
    with pytest.raises(TypeError, match="dict"):
        dump_payload([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON object"):
        load_payload("[1]")
