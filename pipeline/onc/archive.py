"""Archive files: list them page by page and download them safely into a destination folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from pipeline.onc.download import FileDownload, StagedFile
from pipeline.onc.http import OncHttp
from pipeline.onc.models import ArchiveFileInfo, ArchiveListPage, ArchiveQuery
from pipeline.onc.paging import iter_pages

log = structlog.get_logger(__name__)

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


async def receive_archive_file(
    http: OncHttp,
    filename: str,
    dest_dir: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    resume: bool = True,
) -> StagedFile:
    """Download archive file `filename` into its verified temp file in `dest_dir`.

    `filename` is checked first (OutputError if unsafe), so nothing is written outside
    `dest_dir`. A `.filename.part` left by an interrupted run is resumed with `Range`. The
    caller makes the file final with `publish()` (fsync, rename) once it has given back
    whatever limits how many downloads run at once: that work needs the disk, not the server.
    """
    download = FileDownload(
        dest_dir,
        name=filename,
        expected_size=expected_size,
        expected_sha256=expected_sha256,
        resume=resume,
    )
    return await http.request(
        DOWNLOAD_ENDPOINT,
        {"filename": filename},
        download.receive,
        passthrough=frozenset({416}),
        headers=download.headers,
        streaming=True,
    )
