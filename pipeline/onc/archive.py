"""Archive files: the listing, page by page, and where one file is downloaded from."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pipeline.onc.http import OncHttp
from pipeline.onc.models import ArchiveFileInfo, ArchiveListPage, ArchiveQuery
from pipeline.onc.paging import iter_pages

DOWNLOAD_ENDPOINT = "/api/archivefile/download"
#: ONC's own tests list archive files with rowLimit=80000 (api-python-client
#: tests/archive_file/conftest.py); the service's maximum is undocumented: never ask for more.
LIST_ROW_LIMIT = 80_000


def iter_archive_pages(http: OncHttp, query: ArchiveQuery) -> AsyncIterator[ArchiveListPage]:
    """Pages of the archive file list of `query` (400/127 "no data" → no pages)."""
    return iter_pages(
        http, query.endpoint, query.to_params(LIST_ROW_LIMIT), ArchiveListPage.from_api
    )


async def iter_archive_files(http: OncHttp, query: ArchiveQuery) -> AsyncIterator[ArchiveFileInfo]:
    """Every file of the archive list of `query`, across pages."""
    async for page in iter_archive_pages(http, query):
        for info in page.files:
            yield info
