"""Members shared by several Oceans API replies: citations, `next`, query URLs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.onc.parsing import (
    as_list,
    as_object,
    opt_int,
    opt_str,
)
from pipeline.redaction import redact_url

# --------------------------------------------------------------------------- shared members


@dataclass(frozen=True, slots=True)
class Citation:
    """A DOI citation attached to data or a deployment."""

    citation: str
    doi: str | None = None
    landing_page_url: str | None = None
    query_pid: int | None = None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> Citation:
        """Parse a citation object (or a bare citation string)."""
        if isinstance(raw, str):
            return cls(citation=raw)
        obj = as_object(raw, where)
        return cls(
            citation=opt_str(obj, "citation", where) or "",
            doi=opt_str(obj, "doi", where),
            landing_page_url=opt_str(obj, "landingPageUrl", where),
            query_pid=opt_int(obj, "queryPid", where),
        )


def citations_of(raw: Any, where: str) -> tuple[Citation, ...]:
    if isinstance(raw, Mapping | str):
        return (Citation.from_api(raw, where),)
    return tuple(Citation.from_api(c, f"{where}[{i}]") for i, c in enumerate(as_list(raw, where)))


def query_url_of(obj: Mapping[str, Any]) -> str | None:
    # Spelling drift: `queryUrl` today, `queryURL` on older endpoints and products.
    raw = obj.get("queryUrl", obj.get("queryURL"))
    return redact_url(raw) if isinstance(raw, str) else None


@dataclass(frozen=True, slots=True)
class NextPage:
    """The `next` member: the parameters of the following request, with the token removed.

    The client rebuilds the request from `parameters` against its own base URL (never follows
    `url` blindly), so the token is added only by the HTTP layer.
    """

    parameters: Mapping[str, str]
    url: str | None = None  # redacted, for diagnostics only

    @classmethod
    def from_api(cls, raw: Any, where: str = "next") -> NextPage | None:
        """Parse `next` (null on the last page)."""
        if raw is None:
            return None
        obj = as_object(raw, where)
        params = as_object(obj.get("parameters"), f"{where}.parameters")
        cleaned = {
            str(k): param_text(v)
            for k, v in params.items()
            if str(k).lower() != "token" and v is not None
        }
        url = obj.get("url")
        return cls(parameters=cleaned, url=redact_url(url) if isinstance(url, str) else None)


def add_given(params: dict[str, str], optional: Mapping[str, str | None]) -> dict[str, str]:
    """`params` with each optional parameter that has a value (None: left out)."""
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def messages_of(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(m if isinstance(m, str) else str(m) for m in raw)
