"""A per-dataset manifest file next to archive and product files: size, sha256, source, times.

The state store's manifest is the source of truth; this tab-separated copy at
`<root>/<dataset>/manifest.tsv` lets people and ERDDAP (EDDTableFromFileNames serves the files,
this file says what they are) check a file without the pipeline. One line per file, sorted by
path; written whenever the dataset's file list changes. Archive files arrive in time order and
their paths sort by time (`<yyyy>/<mm>/<dd>/<name>`), so a new file's line nearly always goes
after every line the file holds: such lines are appended in place (`growth.append_lines`:
under the file's lock, flushed, a crash's partial line cut on the next write). The whole file
is rewritten atomically when a line changes or one sorts between existing ones: every pass of
a dataset holding an `undated/` file (it sorts after every dated path), and of one whose file
names sort by device before time (a location stream across a device swap). A dataset polled
every few minutes for years (a hydrophone's 288 files a day, 100,000 lines after a year) then
writes each line about once, not the whole file at every pass; what each pass still does in
proportion to the dataset's history is read its entries from the store and render them
(about 1.3 s of CPU at 100,000 entries).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipeline.exceptions import OutputError
from pipeline.outputs.growth import (
    Digests,
    FileAsRead,
    StatCache,
    append_lines,
    file_error,
    open_partition,
    opened_as_read,
    rewrite,
    unchanged,
)
from pipeline.outputs.publish import HashingSink, ensure_inside
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
    if "\t" in value or "\n" in value or "\r" in value:
        raise OutputError(f"manifest value {value!r} contains a tab or newline", path=value)
    return value


def render_manifest(dataset_id: str, entries: Iterable[ManifestEntry]) -> str:
    """The manifest text of one dataset; paths relative to the dataset's folder.

    Store paths are POSIX paths below the output root, normalised when recorded, so the
    dataset's folder is cut off as text: a year of a hydrophone's files (100,000 lines) took
    a second through pathlib, rendered at every pass that adds a file."""
    return "\t".join(COLUMNS) + "\n" + _rows(dataset_id, entries)


def _rows(dataset_id: str, entries: Iterable[ManifestEntry]) -> str:
    """The lines of the dataset's entries among `entries`, by path."""
    rows = []
    folder = str(PurePosixPath(dataset_id)) + "/"
    for entry in sorted((e for e in entries if e.dataset_id == dataset_id), key=lambda e: e.path):
        path = entry.path
        relative = path[len(folder) :] if path.startswith(folder) else path
        rows.append(
            "\t".join(
                (
                    _cell(relative),
                    str(entry.size),
                    entry.sha256,
                    _cell(entry.source or ""),
                    _time(entry.time_start),
                    _time(entry.time_end),
                    "" if entry.records is None else str(entry.records),
                    _time(entry.published_at),
                )
            )
            + "\n"
        )
    return "".join(rows)


def parse_manifest(text: str) -> list[dict[str, str]]:
    """Rows of a manifest as dicts keyed by column name."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise OutputError("not a manifest: unexpected header")
    return [dict(zip(COLUMNS, line.split("\t"), strict=True)) for line in lines[1:] if line]


# The manifests' SHA-256 states, kept while each file is as it was written: an append hashes
# only its new lines. One entry per dataset folder (`StatCache`).
_DIGESTS = Digests()
# Bytes compared at a time against the file on disk.
_COMPARE_CHUNK = 1 << 20
# How long a manifest may grow by appends alone before the next refresh renders it whole
# and compares: the bound on a line gone stale where no commit of this process said so
# (another instance's, a crash's between its commit and its manifest).
WHOLE_EVERY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ManifestTail:
    """Where a manifest file this process wrote ends: the store path of its last line ("" for
    none), and when (monotonic seconds) the file was last compared with the whole text."""

    path: str
    whole_at: float


@dataclass(frozen=True, slots=True)
class RefreshStart:
    """What a refresh of one manifest starts from: the file's tail when lines may only be
    added after it (else None: render it whole), and the count of commits noted by then."""

    tail: ManifestTail | None
    noted: int


# Per manifest file, its tail, kept while the file is as this process left it (`StatCache`)
# and no commit since changed a line at or before it (`note_committed` forgets it then).
_TAILS = StatCache[ManifestTail]()
# Per manifest file, commits noted: a refresh that a commit overlapped keeps no tail.
_NOTED: dict[Path, int] = {}


def _target(root: Path, dataset_id: str) -> Path:
    return root / dataset_id / MANIFEST_NAME


def note_committed(root: Path, dataset_id: str, paths: Iterable[str]) -> None:
    """Tell the manifests that entries of `paths` (store paths) were committed: a path at or
    before the file's last line changes or adds a line inside the file, which then is
    rendered whole at its next refresh; later paths are what the next refresh appends."""
    target = _target(root, dataset_id)
    _NOTED[target] = _NOTED.get(target, 0) + 1
    tail = _TAILS.get(target)
    if tail is not None and any(path <= tail.path for path in paths):
        _TAILS.forget(target)


def start_refresh(root: Path, dataset_id: str) -> RefreshStart:
    """Where the next refresh of the dataset's manifest starts (`append_manifest`, else
    `write_manifest`)."""
    target = _target(root, dataset_id)
    tail = _TAILS.get(target)
    if tail is not None and time.monotonic() - tail.whole_at >= WHOLE_EVERY_S:
        tail = None
    return RefreshStart(tail, _NOTED.get(target, 0))


def _remember(target: Path, tail: ManifestTail, start: RefreshStart, size: int) -> None:
    """Keep the tail of the file as just written, unless a commit was noted meanwhile (its
    entries may be missing from what was written) or the file is no longer `size` long."""
    if _NOTED.get(target, 0) == start.noted:
        _TAILS.put(target, tail, size=size)


def append_manifest(
    root: Path, dataset_id: str, start: RefreshStart, later: Iterable[ManifestEntry]
) -> PublishedFile | None:
    """Append the lines of `later` (the store's entries after `start.tail`) to the manifest;
    None, touching nothing, when the file is no longer as the tail was taken (changed by
    another writer, cut after a crash): then `write_manifest` renders it whole."""
    tail = start.tail
    if tail is None:
        return None
    target = ensure_inside(root, Path(dataset_id) / MANIFEST_NAME)
    later = [e for e in later if e.dataset_id == dataset_id]
    try:
        read = open_partition(target) if os.access(target, os.R_OK | os.W_OK) else None
        # After the open: cutting a torn line changes the file, and so forgets its tail.
        if read is None or _TAILS.get(target) != tail:
            return None
        lines = _rows(dataset_id, later).encode("utf-8")
        if lines:
            result = append_lines(target, lines, read, _DIGESTS)
        else:
            result = unchanged(target, _DIGESTS)
    except OutputError as exc:
        raise _manifest_error(target, exc) from exc
    last = max((e.path for e in later), default=tail.path)
    _remember(target, ManifestTail(last, tail.whole_at), start, result.size)
    return result


def write_manifest(
    root: Path,
    dataset_id: str,
    entries: Iterable[ManifestEntry],
    start: RefreshStart | None = None,
) -> PublishedFile:
    """Bring `<root>/<dataset>/manifest.tsv` to the store's manifest entries: the lines after
    the file's end appended when the file holds the rest already, else the file rewritten
    atomically; left alone when it holds them all. A file we may not read and write in
    place (made read-only, left by another user) is rewritten: the rename replaces it, as
    every write of the manifest did before appends. With `start` (taken before the entries
    were read), the file's tail is kept for `append_manifest`."""
    entries = [e for e in entries if e.dataset_id == dataset_id]
    text = render_manifest(dataset_id, entries).encode("utf-8")
    target = ensure_inside(root, Path(dataset_id) / MANIFEST_NAME)
    whole_at = time.monotonic()
    try:
        read = open_partition(target) if os.access(target, os.R_OK | os.W_OK) else None
        if read is not None and _holds_start_of(target, read, text):
            if read.size == len(text):
                result = unchanged(target, _DIGESTS)
            else:
                result = append_lines(target, text[read.size :], read, _DIGESTS)
        else:

            def write(sink: HashingSink) -> None:
                sink.write(text)

            result = rewrite(target, read, write, _DIGESTS)
    except OutputError as exc:
        raise _manifest_error(target, exc) from exc
    if start is not None:
        last = max((e.path for e in entries), default="")
        _remember(target, ManifestTail(last, whole_at), start, result.size)
    return result


def _manifest_error(target: Path, exc: OutputError) -> OutputError:
    # growth's messages speak of windows; a manifest is written again by the stream's next
    # pass that publishes a file.
    return OutputError(
        f"cannot bring the manifest up to date: {exc}".replace(
            "the window is retried", "it is written again at the next pass that publishes"
        ),
        path=str(target),
    )


def _holds_start_of(path: Path, read: FileAsRead, text: bytes) -> bool:
    """Whether the file (as `read`) is the first `read.size` bytes of `text`."""
    expected = memoryview(text)
    try:
        with opened_as_read(path, read) as handle:
            done = 0
            while done < read.size:
                chunk = handle.read(min(_COMPARE_CHUNK, read.size - done))
                if not chunk or chunk != expected[done : done + len(chunk)]:
                    return False
                done += len(chunk)
    except OSError as exc:
        raise file_error(path, "cannot read", exc) from exc
    return True
