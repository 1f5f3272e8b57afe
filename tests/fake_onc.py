"""An Oceans API twin in memory for the engine's unit tests: the `OncApi` seam
(pipeline/onc/api.py) without a socket, as procrastinate's InMemoryConnector stands in for
PostgreSQL. It serves archive listings and downloads from files a test puts in it, fails a
download as often as told, and records every call; socket-level behaviour (paging, retries,
HTTP errors) stays with the client's own tests and the emulator."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.onc import ArchiveFileInfo, ArchiveQuery
from pipeline.onc.download import StagedFile


@dataclass
class ArchivedFile:
    """One file of the twin's archive: its content, its data span, when it was archived."""

    content: bytes
    date_from: datetime
    date_to: datetime
    archived: datetime


@dataclass
class FakeOnc:
    """The archive calls of `OncApi`, answered from `files` (by name)."""

    files: dict[str, ArchivedFile] = field(default_factory=dict)
    # Download failures still to raise, by file name, in order.
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    listings: list[ArchiveQuery] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)

    async def archive_files(self, query: ArchiveQuery) -> AsyncIterator[ArchiveFileInfo]:
        """The files whose data overlaps the query (and, if asked, archived in its range)."""
        self.listings.append(query)
        for name, item in sorted(self.files.items()):
            if item.date_to <= query.date_from or item.date_from >= query.date_to:
                continue
            if query.archived_from is not None and item.archived < query.archived_from:
                continue
            if query.archived_to is not None and item.archived >= query.archived_to:
                continue
            yield ArchiveFileInfo(
                filename=name,
                date_from=item.date_from,
                date_to=item.date_to,
                size=len(item.content),
            )

    async def receive_archive_file(
        self, filename: str, dest_dir: Path, *, expected_size: int | None = None
    ) -> StagedFile:
        """Write the file as a temporary beside its final name, as the real download does."""
        self.downloads.append(filename)
        pending = self.failures.get(filename)
        if pending:
            raise pending.pop(0)
        content = self.files[filename].content
        assert expected_size in (None, len(content))
        final = dest_dir / filename
        part = final.with_name(final.name + ".part")
        part.write_bytes(content)
        return StagedFile(
            part=part,
            final=final,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            resumed_from=0,
            started=time.monotonic(),
            transfer_s=0.0,
        )
