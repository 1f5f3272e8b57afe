"""Decoding of Oceans API bodies: tolerant of bare NaN, strict about shape, clear when wrong.

Helpers here take the member name as an argument so that the upstream's camelCase spelling
stays in models.py, where each model reads its own members.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import ujson

from pipeline.exceptions import OncErrorDetail
from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.times import format_onc_time

_PREVIEW = 60


def decode_json(body: bytes, *, url: str, status: int | None = None) -> Any:
    """Parse `body` with ujson (bare NaN allowed); unusable bodies raise OncMalformedReply."""
    stripped = body.lstrip()
    if not stripped:
        raise OncMalformedReply("empty reply body where JSON was expected", url=url, status=status)
    if stripped[:1] == b"<":
        preview = stripped[:_PREVIEW].decode("utf-8", "replace")
        raise OncMalformedReply(
            f"reply is HTML/XML, not JSON (starts {preview!r})", url=url, status=status
        )
    shared = _with_shared_time_axes(body)
    if shared is not None:
        return shared
    try:
        return ujson.loads(body)
    except (ValueError, OverflowError) as exc:
        # A body cut short (reset, proxy timeout) is the common case: treat it as transient.
        raise OncMalformedReply(
            f"truncated or invalid JSON ({len(body)} bytes): {exc}", url=url, status=status
        ) from None


_TIMES_KEY = b'"sampleTimes":'


def _with_shared_time_axes(body: bytes) -> Any:
    """A scalardata page parsed with one list for all sensors' equal `sampleTimes`, or None.

    ONC repeats the time axis for every sensor of a device: 8 copies of 86,400 strings in a
    day of a CTD, over half of what ujson builds and of the time it takes. Every
    `sampleTimes` array that is byte for byte the first one is cut to `[]` before parsing
    and given the first one's list after. None (parse the body as it is) whenever anything
    does not line up exactly: an array not right after its key, a count of arrays unequal to
    the sensors holding one, a cut array that does not parse as empty, a body that no longer
    parses.
    """
    first_key = body.find(_TIMES_KEY)
    if first_key < 0 or body.find(_TIMES_KEY, first_key + 1) < 0:
        return None
    view = memoryview(body)  # slices of it are not copies; join copies each byte once
    pieces: list[bytes | memoryview] = []
    cut: list[int] = []
    first = b""
    done = 0  # body[:done] is in pieces
    key = first_key
    index = 0
    while key >= 0:
        start = body.find(b"[", key + len(_TIMES_KEY))
        end = body.find(b"]", start) + 1
        if start < 0 or end <= 0 or body[key + len(_TIMES_KEY) : start].strip():
            return None
        if index == 0:
            first = body[start:end]
        elif end - start == len(first) and body.startswith(first, start):
            pieces += (view[done:start], b"[]")
            done = end
            cut.append(index)
        index += 1
        key = body.find(_TIMES_KEY, end)
    if not cut:
        return None
    pieces.append(view[done:])
    try:
        data = ujson.loads(b"".join(pieces))
    except (ValueError, OverflowError):
        return None
    holders = [
        item["data"]
        for item in (data.get("sensorData") or [] if isinstance(data, dict) else [])
        if isinstance(item, dict)
        and isinstance(item.get("data"), dict)
        and "sampleTimes" in item["data"]
    ]
    if len(holders) != index or not isinstance(holders[0]["sampleTimes"], list):
        return None
    times = holders[0]["sampleTimes"]
    for position in cut:
        if holders[position]["sampleTimes"] != []:
            return None
        holders[position]["sampleTimes"] = times
    return data


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
    values = as_list(raw, where)
    try:
        return array("d", values)
    except TypeError:
        pass
    # A null (no reading: NaN) or something that is no number: the slow path, once.
    cleaned = [math.nan if v is None else v for v in values]
    try:
        return array("d", cleaned)
    except TypeError:
        bad = next(v for v in cleaned if not isinstance(v, int | float) or isinstance(v, bool))
        raise OncSchemaError(f"non-numeric value {bad!r:.40}", where=where) from None


def int_values(raw: Any, where: str) -> array[int]:
    """A `qaqcFlags` array packed: one byte a flag when all fit (ONC's 0-9), else 64 bits."""
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


def str_values(raw: Any, where: str) -> list[str]:
    """An array of strings (times, readings); the ends are type-checked, not every element."""
    values = as_list(raw, where)
    # Checking both ends catches a wrong type of array without a Python loop over 100k items;
    # a mixed array is not something ONC has ever produced.
    for probe in (values[:1], values[-1:]):
        if probe and not isinstance(probe[0], str):
            raise OncSchemaError(f"expected strings, got {type(probe[0]).__name__}", where=where)
    return values
