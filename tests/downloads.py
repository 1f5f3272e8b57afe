"""One archive file downloaded to the end, in one call: what the archive stream does in two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.onc import OncClient
from pipeline.onc.download import DownloadedFile


async def download(onc: OncClient, filename: str, dest_dir: Path, **options: Any) -> DownloadedFile:
    """`receive_archive_file` (the request), then `publish` (fsync and rename)."""
    staged = await onc.receive_archive_file(filename, dest_dir, **options)
    return await staged.publish()
