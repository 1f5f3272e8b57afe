"""Paging: async iterators that follow `next` one page at a time and never hold a whole range.

The next request is rebuilt from `next.parameters` (token stripped at parse time) against our
own base URL, so a `next.url` pointing elsewhere can neither redirect us nor leak the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import structlog

from pipeline.exceptions import OncRequestError
from pipeline.onc.errors import OncSchemaError
from pipeline.onc.http import Decoder, OncHttp
from pipeline.onc.models import ArchiveListPage, AvailabilityPage, NextPage, RawPage, ScalarPage
from pipeline.onc.parsing import decode_json

log = structlog.get_logger(__name__)

P = TypeVar("P", ScalarPage, RawPage, ArchiveListPage, AvailabilityPage)

#: Hard stop against a server whose `next` never ends (years unattended: fail, do not spin).
MAX_PAGES = 100_000

# ONC error 127 is "invalid value", used for "no deployment during the provided time range";
# with a date parameter named (or a time range mentioned) it means "no data", not a mistake.
_NO_DATA_CODE = 127


def is_no_data(exc: OncRequestError) -> bool:
    """True when a 400 means "no data in this range" rather than a malformed request."""
    for detail in exc.errors:
        if detail.code != _NO_DATA_CODE:
            continue
        parameter = (detail.parameter or "").lower()
        message = detail.message.lower()
        if "datefrom" in parameter or "dateto" in parameter or "time range" in message:
            return True
    return False


async def iter_pages(
    http: OncHttp,
    endpoint: str,
    params: Mapping[str, str],
    parse: Callable[[Any], P],
    decode: Decoder = decode_json,
) -> AsyncIterator[P]:
    """Yield parsed pages of `endpoint` (bodies decoded by `decode`, then given to `parse`),
    following `next` until it is null.

    A 400/127 "no data in range" on the first page yields nothing. The previous page is
    released before the next one is fetched (only the caller may keep references).
    """
    current: dict[str, str] = dict(params)
    seen: set[tuple[tuple[str, str], ...]] = set()
    for number in range(1, MAX_PAGES + 1):
        key = tuple(sorted(current.items()))
        if key in seen:
            raise OncSchemaError(
                "`next` repeats an earlier request; refusing to loop",
                where="next.parameters",
                url=http.display_url(endpoint, current),
            )
        seen.add(key)
        try:
            reply = await http.get_json(endpoint, current, decode=decode)
        except OncRequestError as exc:
            if exc.status == 400 and is_no_data(exc):
                log.debug("onc_no_data", endpoint=endpoint, page=number)
                return
            raise
        try:
            page = parse(reply.data)
        except OncSchemaError as exc:
            # Re-raise with the (redacted) URL so the report says which request drifted.
            raise exc.at(url=reply.url, status=reply.status) from None
        log.debug("onc_page_fetched", endpoint=endpoint, page=number, has_next=bool(page.next))
        following = page.next
        # Suspended at `yield`, this frame would keep the decoded reply (tens of MB of
        # objects for a day of a 1 Hz instrument) and the page while the caller waits, e.g.
        # for room to queue it or for its next request: only the caller holds the page.
        del reply
        handed = [page]
        del page
        yield handed.pop()
        if following is None:
            return
        current = _next_params(following)
    raise OncSchemaError(f"more than {MAX_PAGES} pages; refusing to continue", where="next")


def _next_params(following: NextPage) -> dict[str, str]:
    # `method` belongs to the old method-style URLs; we always call path-style endpoints.
    return {k: v for k, v in following.parameters.items() if k != "method"}
