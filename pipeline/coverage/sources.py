"""What ONC says exists, for the spans we do not hold (the only part that needs the API).

ONC's account is `dataAvailability/dataproducts` (docs/dev/emulator.md, "dataAvailability";
api-python-client 2.6.0 `getDataAvailability`): per device, product and extension, how many
archive files have data in a range (`fileCount` counts files with coverage > 0). A hole we do
not hold is asked about in chunks, halved while ONC counts files in them: a piece where ONC
counts no file with data is an `upstream_gap`, the rest stays `missing`.

Only archive-file streams are asked. A time series (scalardata, rawdata) is held as ONC serves
it, gap-fill rows (NaN, flag 9) included, and its device's archive logs are daily files that
dataAvailability counts only once the day is archived: asking it about the last hours would
call every recent hole an upstream gap. Its holes behind the cursor are therefore `missing`
(a re-harvest fetches whatever ONC serves there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from pipeline.coverage.model import Span, chunks, merge
from pipeline.onc.api import OncApi
from pipeline.onc.models.availability import AvailabilityQuery
from pipeline.onc.models.queries import DataSource
from pipeline.settings import ArchiveFileStream, StreamSettings

log = structlog.get_logger(__name__)

# Chunks a hole is asked about in, the finest span told apart, and how many requests one
# stream's check may make.
CHUNK = timedelta(hours=1)
RESOLUTION = timedelta(minutes=1)
MAX_QUERIES = 64


# A hole may still fill with a late archive file (hours, a day): an upstream answer about a
# span younger than LATE_FILES is trusted for RECHECK only, an older one for good.
LATE_FILES = timedelta(days=2)
RECHECK = timedelta(minutes=10)


@dataclass
class UpstreamMemory:
    """Spans ONC had nothing for, and spans asked about at all, remembered between the
    daemon's checks (fewer requests)."""

    entries: dict[str, list[tuple[Span, datetime]]] = field(default_factory=dict)
    # Spans asked about, whatever the answer: not asked again for RECHECK. Where ONC has
    # files we lack the answer stays `missing` either way (the mender fetches them); asking
    # again every check would only spend the request budget on the same answer.
    asked: dict[str, list[tuple[Span, datetime]]] = field(default_factory=dict)

    def recall(self, stream: str, now: datetime) -> list[Span]:
        """What is still trusted for `stream` at `now` (expired answers are dropped)."""
        kept = [
            (span, asked)
            for span, asked in self.entries.get(stream, [])
            if span.end <= now - LATE_FILES or asked > now - RECHECK
        ]
        self.entries[stream] = kept
        return merge(span for span, _ in kept)

    def remember(self, stream: str, spans: list[Span], now: datetime) -> None:
        """Keep ONC's answer about `spans`, asked at `now`."""
        self.entries.setdefault(stream, []).extend((span, now) for span in spans)

    def asked_recently(self, stream: str, now: datetime) -> list[Span]:
        """Spans asked about less than RECHECK ago (expired ones are dropped)."""
        kept = [(span, at) for span, at in self.asked.get(stream, []) if at > now - RECHECK]
        self.asked[stream] = kept
        return merge(span for span, _ in kept)

    def note_asked(self, stream: str, spans: list[Span], now: datetime) -> None:
        """`spans` were asked about at `now`."""
        self.asked.setdefault(stream, []).extend((span, now) for span in spans)


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """What ONC's availability said about holes: where it has nothing (`empty`), and which
    spans were asked about at all (`asked`; the request cap may leave some unasked)."""

    empty: list[Span]
    asked: list[Span]


def asks_upstream(stream: StreamSettings) -> bool:
    """Whether ONC's availability tells this stream's upstream gaps (archive files only)."""
    return isinstance(stream, ArchiveFileStream)


async def upstream_gaps(
    client: OncApi, stream: StreamSettings, holes: list[Span], *, max_queries: int = MAX_QUERIES
) -> UpstreamAnswer:
    """The parts of `holes` where ONC has no archive file with data (newest holes first,
    at most `max_queries` requests; holes beyond that stay unasked, hence `missing`)."""
    if not isinstance(stream, ArchiveFileStream):
        return UpstreamAnswer([], [])
    source = DataSource(
        location_code=stream.location_code,
        device_category_code=stream.device_category_code,
        device_code=stream.device_code,
    )
    extensions: list[str | None] = list(stream.file_extensions) or [None]
    empty: list[Span] = []
    asked = 0

    async def files_in(span: Span) -> int:
        nonlocal asked
        count = 0
        for extension in extensions:
            asked += 1
            query = AvailabilityQuery(
                source=source,
                date_from=span.start,
                date_to=span.end,
                data_product_code=stream.data_product_code,
                extension=extension,
            )
            count += sum([row.file_count async for row in client.data_availability(query)])
        return count

    done: list[Span] = []

    async def probe(span: Span) -> bool:
        # A span with files is halved until the halves are shorter than RESOLUTION, so a
        # hole next to an outage is told apart from it. An hour ONC holds files for and we
        # do not costs up to ~2 x 60 requests (every half has files): the cap bounds it, and
        # the memory keeps the next checks from asking again. False: the cap stopped it.
        if asked + len(extensions) > max_queries:
            return False
        if await files_in(span) == 0:
            empty.append(span)
            return True
        if span.seconds >= 2 * RESOLUTION.total_seconds():
            middle = span.start + (span.end - span.start) / 2
            first = await probe(Span(span.start, middle))
            return await probe(Span(middle, span.end)) and first
        return True

    for hole in sorted(holes, reverse=True):
        for chunk in chunks(hole, CHUNK):
            if await probe(chunk):
                done.append(chunk)
    if asked + len(extensions) > max_queries:
        log.info("coverage_queries_capped", stream=stream.name, asked=asked)
    return UpstreamAnswer(merge(empty), merge(done))
