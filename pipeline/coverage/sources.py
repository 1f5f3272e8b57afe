"""What ONC says exists, for the spans we do not hold (the only part that needs the API).

ONC's account is `dataAvailability/dataproducts` (docs/dev/emulator.md, "dataAvailability";
api-python-client 2.6.0 `getDataAvailability`): per device, product and extension, how many
archive files have data in a range (`fileCount` counts files with coverage > 0). A hole we do
not hold is asked about in chunks: a chunk where ONC counts no file with data is an
`upstream_gap`, the rest stays `missing`.

Only archive-file streams are asked. A time series (scalardata, rawdata) is held as ONC serves
it, gap-fill rows (NaN, flag 9) included, and its device's archive logs are daily files that
dataAvailability counts only once the day is archived: asking it about the last hours would
call every recent hole an upstream gap. Its holes behind the cursor are therefore `missing`
(a re-harvest fetches whatever ONC serves there).
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from pipeline.coverage.model import Span, chunks, merge
from pipeline.onc.client import OncClient
from pipeline.onc.models.availability import AvailabilityQuery
from pipeline.onc.models.queries import DataSource
from pipeline.settings import ArchiveFileStream, StreamSettings

log = structlog.get_logger(__name__)

# Chunks a hole is asked about in, and how many requests one stream's check may make.
CHUNK = timedelta(hours=1)
MAX_QUERIES = 48


def asks_upstream(stream: StreamSettings) -> bool:
    """Whether ONC's availability tells this stream's upstream gaps (archive files only)."""
    return isinstance(stream, ArchiveFileStream)


async def upstream_gaps(
    client: OncClient, stream: StreamSettings, holes: list[Span], *, max_queries: int = MAX_QUERIES
) -> list[Span]:
    """The parts of `holes` where ONC has no archive file with data (newest holes first,
    at most `max_queries` requests; holes beyond that stay unasked, hence `missing`)."""
    if not isinstance(stream, ArchiveFileStream):
        return []
    source = DataSource(
        location_code=stream.location_code,
        device_category_code=stream.device_category_code,
        device_code=stream.device_code,
    )
    extensions: list[str | None] = list(stream.file_extensions) or [None]
    empty: list[Span] = []
    asked = 0
    for hole in sorted(holes, reverse=True):
        for chunk in chunks(hole, CHUNK):
            if asked + len(extensions) > max_queries:
                log.info("coverage_queries_capped", stream=stream.name, asked=asked)
                return merge(empty)
            files = 0
            for extension in extensions:
                asked += 1
                query = AvailabilityQuery(
                    source=source,
                    date_from=chunk.start,
                    date_to=chunk.end,
                    data_product_code=stream.data_product_code,
                    extension=extension,
                )
                files += sum([row.file_count async for row in client.data_availability(query)])
            if files == 0:
                empty.append(chunk)
    return merge(empty)
