"""A per-dataset manifest file next to archive and product files: size, sha256, source, times.

The state store's manifest is the source of truth; this tab-separated copy at
`<root>/<dataset>/manifest.tsv` lets people and ERDDAP (EDDTableFromFileNames serves the files,
this file says what they are) check a file without the pipeline. One line per file, sorted by
path; rewritten atomically whenever the dataset's file list changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipeline.exceptions import OutputError
from pipeline.outputs.publish import HashingSink, ensure_inside, publish_atomically
from pipeline.records import PublishedFile

if TYPE_CHECKING:
    # Only the type: importing pipeline.state at run time would load every store backend.
    from pipeline.state.base import ManifestEntry

MANIFEST_NAME = "manifest.tsv"
COLUMNS = (
    "path",
    "size",
    "sha256",
    "source",
    "time_start",
    "time_end",
    "records",
    "published_at",
)


def _time(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _cell(value: str) -> str:
    # Paths come from ONC file names (checked upstream); a tab or newline would break the row.
    if any(ch in value for ch in "\t\r\n"):
        raise OutputError(f"manifest value {value!r} contains a tab or newline", path=value)
    return value


def render_manifest(dataset_id: str, entries: Iterable[ManifestEntry]) -> str:
    """The manifest text of one dataset; paths relative to the dataset's folder."""
    rows = ["\t".join(COLUMNS)]
    prefix = PurePosixPath(dataset_id)
    for entry in sorted((e for e in entries if e.dataset_id == dataset_id), key=lambda e: e.path):
        path = PurePosixPath(entry.path)
        relative = path.relative_to(prefix) if path.is_relative_to(prefix) else path
        rows.append(
            "\t".join(
                (
                    _cell(str(relative)),
                    str(entry.size),
                    entry.sha256,
                    _cell(entry.source or ""),
                    _time(entry.time_start),
                    _time(entry.time_end),
                    "" if entry.records is None else str(entry.records),
                    _time(entry.published_at),
                )
            )
        )
    return "\n".join(rows) + "\n"


def parse_manifest(text: str) -> list[dict[str, str]]:
    """Rows of a manifest as dicts keyed by column name."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise OutputError("not a manifest: unexpected header")
    return [dict(zip(COLUMNS, line.split("\t"), strict=True)) for line in lines[1:] if line]


def write_manifest(root: Path, dataset_id: str, entries: Iterable[ManifestEntry]) -> PublishedFile:
    """Write `<root>/<dataset>/manifest.tsv` atomically from the store's manifest entries."""
    text = render_manifest(dataset_id, entries).encode("utf-8")
    target = ensure_inside(root, Path(dataset_id) / MANIFEST_NAME)

    def write(sink: HashingSink) -> None:
        sink.write(text)

    return publish_atomically(target, write)
