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
writes each line about once, not the whole file at every pass.

Nor does a pass read the dataset's history (`refresh_manifest`): while the file is as this
process left it, the store path of its last line is kept, and a refresh reads only the
dataset's entries after it (the store's `list_dataset_manifest`, a range of its primary key)
and appends their lines: 0.6 ms instead of 1.7 s of CPU and 62 MB read from the store at
105,000 entries. The file is rendered whole from every entry of the dataset instead, whatever
stream published them (`write_manifest`), after anything that may have changed a line at or
before the last one: a commit of this process at or before it (`note_committed`, told of
every commit), a commit overlapping the refresh, a file changed by another writer or cut
after a crash, a new process, and the first refresh a day (`WHOLE_EVERY_S`) after the last
whole rendering, which bounds how long a line changed where no commit of this process saw it
(another instance's, sharing the store) can stay stale. A dataset holding an `undated/` file
gains nothing: every dated file sorts before that last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    a second through pathlib, when rendered at every pass that added a file."""
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
# How long a manifest may grow by appends alone before its next refresh renders it whole
# and compares: the bound on a line gone stale where no commit of this process said so
# (another instance's, sharing the store). Counted on CLOCK_BOOTTIME, which runs on while
# the machine is suspended (the monotonic clock stops).
WHOLE_EVERY_S = 86_400.0


def _uptime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True, slots=True)
class ManifestTail:
    """Where a manifest file this process wrote ends: the store path of its last line ("" for
    none), and when (`_uptime`) the file was last compared with the whole text."""

    path: str
    whole_at: float


# Per manifest file, its tail, kept while the file is as this process left it (`StatCache`)
# and no commit since changed a line at or before it (`note_committed` forgets it then).
_TAILS = StatCache[ManifestTail]()
# Per manifest file, the commits noted: a refresh a commit overlapped keeps no tail.
_NOTED: dict[Path, int] = {}

# The dataset's entries whose store paths sort after the given one ("" for all), by path.
ManifestReader = Callable[[str], Awaitable[Sequence["ManifestEntry"]]]


def _target(root: Path, dataset_id: str) -> Path:
    return ensure_inside(root, Path(dataset_id) / MANIFEST_NAME)


def note_committed(root: Path, dataset_id: str, paths: Sequence[str]) -> None:
    """Tell the dataset's manifest that entries of `paths` (store paths) were committed, once
    the commit is in the store (or may be: also after a failed one). A path at or before the
    file's last line changes or adds a line inside the file, which its next refresh then
    renders whole; a later one is what it appends."""
    if not paths:
        return
    # The path `_target` gives, without its checks: every commit of every stream comes here.
    target = root / dataset_id / MANIFEST_NAME
    _NOTED[target] = _NOTED.get(target, 0) + 1
    # What is kept, whether or not the file still matches it: a file changed meanwhile is
    # rendered whole anyway, and a tail forgotten is only work.
    tail = _TAILS.peek(target)
    if tail is not None and any(path <= tail.path for path in paths):
        _TAILS.forget(target)


async def refresh_manifest(root: Path, dataset_id: str, read: ManifestReader) -> PublishedFile:
    """Bring `<root>/<dataset>/manifest.tsv` to the dataset's entries in the store (`read`).

    While the file is as this process left it, no commit noted since changed a line at or
    before its last one, and it was rendered whole within `WHOLE_EVERY_S`, only the entries
    after its last line are read and their lines appended; otherwise every entry is read and
    the file brought to the whole text (`write_manifest`)."""
    target = _target(root, dataset_id)
    noted = _NOTED.get(target, 0)
    tail = _TAILS.get(target)
    if tail is not None and _uptime() - tail.whole_at < WHOLE_EVERY_S:
        later = await read(tail.path)
        appended = await asyncio.to_thread(_append_after, target, dataset_id, tail, later)
        if appended is not None:
            published, last = appended
            _remember(target, ManifestTail(last, tail.whole_at), noted, published.size)
            return published
    whole_at = _uptime()
    entries = await read("")
    published = await asyncio.to_thread(write_manifest, root, dataset_id, entries)
    last = max((e.path for e in entries if e.dataset_id == dataset_id), default="")
    _remember(target, ManifestTail(last, whole_at), noted, published.size)
    return published


def _remember(target: Path, tail: ManifestTail, noted: int, size: int) -> None:
    """Keep the tail of the file as just written, unless a commit was noted since the refresh
    began (what it read may lack its entries) or the file is no longer `size` long. On the
    event loop, as `note_committed` is: nothing runs between the check and the keeping."""
    if _NOTED.get(target, 0) == noted:
        with contextlib.suppress(OSError):  # the file gone meanwhile: nothing kept
            _TAILS.put(target, tail, size=size)


def _append_after(
    target: Path, dataset_id: str, tail: ManifestTail, later: Sequence[ManifestEntry]
) -> tuple[PublishedFile, str] | None:
    """Append the lines of `later` (the entries after `tail`) and return the file and its new
    last path; None when the file is no longer as the tail was taken (changed by another
    writer, a torn line cut, not to be written in place): then it is rendered whole."""
    later = [e for e in later if e.dataset_id == dataset_id]
    try:
        read = _open_in_place(target)
        # After the open: cutting a torn line changes the file, and so its identity.
        if read is None or _TAILS.get(target) != tail:
            return None
        lines = _rows(dataset_id, later).encode("utf-8")
        if lines:
            published = append_lines(target, lines, read, _DIGESTS)
        else:
            published = unchanged(target, _DIGESTS)
    except OutputError as exc:
        raise _manifest_error(target, exc) from exc
    return published, max((e.path for e in later), default=tail.path)


def _open_in_place(target: Path) -> FileAsRead | None:
    """The file as read for writing in place, or None: absent, or one we may not read and
    write in place (made read-only, left by another user), which a rename replaces."""
    return open_partition(target) if os.access(target, os.R_OK | os.W_OK) else None


def write_manifest(root: Path, dataset_id: str, entries: Iterable[ManifestEntry]) -> PublishedFile:
    """Bring `<root>/<dataset>/manifest.tsv` to the store's manifest entries: the lines after
    the file's end appended when the file holds the rest already, else the file rewritten
    atomically; left alone when it holds them all. A file we may not read and write in
    place is rewritten: the rename replaces it, as every write of the manifest did before
    appends."""
    text = render_manifest(dataset_id, entries).encode("utf-8")
    target = _target(root, dataset_id)
    try:
        read = _open_in_place(target)
        if read is not None and _holds_start_of(target, read, text):
            if read.size == len(text):
                return unchanged(target, _DIGESTS)
            return append_lines(target, text[read.size :], read, _DIGESTS)

        def write(sink: HashingSink) -> None:
            sink.write(text)

        return rewrite(target, read, write, _DIGESTS)
    except OutputError as exc:
        raise _manifest_error(target, exc) from exc


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
