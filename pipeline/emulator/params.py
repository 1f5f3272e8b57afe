"""Query parsing the way the Oceans API does it: dates, durations, errors and the `next` object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pipeline.emulator.catalogue import iso_ms
from pipeline.times import epoch_ms

ROW_LIMIT_MAX = 100_000

MESSAGES = {
    23: "Invalid time range: dateFrom must be before dateTo",
    25: "Invalid time range: dateFrom cannot be in the future",
    96: "Invalid filename",
    127: "Invalid parameter value",
    128: "Missing parameter",
    129: "Invalid parameter name",
}


class ApiError(Exception):
    """An error answer of the API: HTTP status and the exact JSON body to send."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(status)

    @classmethod
    def code(cls, code: int, parameter: str, message: str | None = None) -> ApiError:
        """A 400 with one `errors` entry."""
        entry = {
            "errorCode": code,
            "errorMessage": message or MESSAGES[code],
            "parameter": parameter,
        }
        return cls(400, {"errors": [entry]})

    @classmethod
    def not_found(cls) -> ApiError:
        """The discovery services' 404 for a query that matches nothing."""
        return cls(
            404,
            {
                "message": "No metadata/data found for the given query parameters. "
                "Check if parameter input is valid."
            },
        )


@dataclass(frozen=True, slots=True)
class Query:
    """The query string as sent: pairs in their original order and spelling."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, query_string: str) -> Query:
        """Parse a raw query string, keeping blanks and order."""
        return cls(tuple(parse_qsl(query_string, keep_blank_values=True)))

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of `name` (the API ignores repeats)."""
        for key, value in self.pairs:
            if key == name:
                return value
        return default

    def require(self, name: str) -> str:
        """Value of `name`, or error 128 when absent or blank."""
        value = self.get(name)
        if value is None or value == "":
            raise ApiError.code(128, name, f"Missing parameter: {name}")
        return value

    def names(self) -> list[str]:
        """Parameter names in order."""
        return [k for k, _ in self.pairs]

    def check_known(self, allowed: Iterable[str]) -> None:
        """Error 129 for any parameter the endpoint does not know."""
        known = set(allowed) | {"token", "method"}
        unknown = [k for k in self.names() if k not in known and not k.startswith("dpo_")]
        if unknown:
            raise ApiError.code(129, ", ".join(unknown))

    def flag(self, name: str) -> bool:
        """A boolean parameter: `true` in any case."""
        return (self.get(name) or "").lower() == "true"

    def without_token(self) -> list[tuple[str, str]]:
        """Pairs with the token's value redacted (for logs and cache keys)."""
        return [(k, "REDACTED" if k == "token" else v) for k, v in self.pairs]


_DURATION = re.compile(
    r"^-?P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_DATE_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d")


def parse_duration(text: str) -> timedelta | None:
    """ISO 8601 duration (days and time parts) or None when `text` is not one."""
    match = _DURATION.match(text)
    if not match or text.rstrip("-") in ("P", "PT"):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def parse_instant(text: str, name: str) -> int:
    """An absolute date in one of the accepted forms -> epoch ms; error 127 otherwise."""
    for fmt in _DATE_FORMATS:
        try:
            dt = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return epoch_ms(dt)
    raise ApiError.code(127, name, f"Invalid date format for {name}: {text}")


def resolve_window(
    query: Query,
    now_ms: int,
    *,
    default_span_ms: int = 86_400_000,
    require_from: bool = False,
    require_to: bool = False,
) -> tuple[int, int]:
    """(dateFrom, dateTo) in epoch ms with the API's defaults and errors 23/25/127/128."""
    raw_from, raw_to = query.get("dateFrom"), query.get("dateTo")
    if require_from and not raw_from:
        raise ApiError.code(128, "dateFrom", "Missing parameter: dateFrom")
    if require_to and not raw_to:
        raise ApiError.code(128, "dateTo", "Missing parameter: dateTo")
    dur_from = parse_duration(raw_from) if raw_from else None
    dur_to = parse_duration(raw_to) if raw_to else None
    if dur_from is not None and dur_to is not None:
        raise ApiError.code(127, "dateFrom, dateTo", "dateFrom and dateTo cannot both be durations")
    if dur_to is not None:
        if not raw_from:
            raise ApiError.code(128, "dateFrom", "A dateTo duration needs a dateFrom")
        start = parse_instant(raw_from, "dateFrom")
        end = start + _ms(dur_to)
    else:
        end = parse_instant(raw_to, "dateTo") if raw_to else now_ms
        if dur_from is not None:
            start = end - _ms(dur_from)
        elif raw_from:
            start = parse_instant(raw_from, "dateFrom")
        else:
            start = end - default_span_ms
    if start > now_ms:
        raise ApiError.code(25, "dateFrom")
    if start > end:
        raise ApiError.code(23, "dateFrom, dateTo")
    return start, end


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def row_limit(query: Query, *, clamp_bad: bool) -> int:
    """`rowLimit` per sensor, at most 100,000.

    rawdata maps 0, negative and too large values to 100,000 (`clamp_bad`); scalardata caps
    large values the same way but rejects what is not a positive integer.
    """
    raw = query.get("rowLimit")
    if raw is None or raw == "":
        return ROW_LIMIT_MAX
    try:
        value = int(raw)
    except ValueError:
        raise ApiError.code(127, "rowLimit") from None
    if value <= 0:
        if clamp_bad:
            return ROW_LIMIT_MAX
        raise ApiError.code(127, "rowLimit")
    return min(value, ROW_LIMIT_MAX)


def next_object(
    base_url: str, path: str, query: Query, *, replace: dict[str, str]
) -> dict[str, Any]:
    """The `next` member, built the way the real service builds it.

    Every original parameter keeps its spelling and relative order; the moved ones
    (`dateFrom`, or `page` when paging by page) are taken out and re-appended, followed by the
    token, which is how ONC's recorded `next` objects are ordered.
    """
    params: dict[str, str] = {}
    token = query.get("token")
    for key, value in query.pairs:
        if key in replace or key == "token" or key in params:
            continue
        params[key] = value
    params.update(replace)
    if token is not None:
        params["token"] = token
    return {"parameters": params, "url": f"{base_url}{path}?{urlencode(params)}"}


def query_url(base_url: str, path: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The `queryUrl` echo: the request as received, token included (as ONC does)."""
    return f"{base_url}{path}?{urlencode(list(pairs))}" if pairs else f"{base_url}{path}"


__all__ = [
    "ApiError",
    "Query",
    "iso_ms",
    "next_object",
    "parse_duration",
    "parse_instant",
    "query_url",
    "resolve_window",
    "row_limit",
]
