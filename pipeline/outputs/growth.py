"""How a partition file grows: in place when a window only adds records after the file's last
one, by an atomic rewrite otherwise; and the in-place append of whole text lines.

The rule, shared by every format that grows in place (NetCDF, CSV, JSON Lines, JSON Lines
CSV, raw text): a window is appended when every record it brings either is already in the
file, unchanged, or sorts after the file's last record, and the file's layout (columns, header,
attributes) stays what a rewrite would write. Anything else (a revision, a record between
existing ones, a new column or sensor, a changed header) rewrites the file whole, under a
temporary name, renamed into place. An append writes exactly the bytes a rewrite of the merged
records would put after the file's existing ones.

A text append is one `write` of whole lines at the end of the file, then `fdatasync`; the
engine commits the window (cursor and manifest) only after that. Bytes a crash leaves past the
last whole line are cut when the file is next opened (`cut_torn_tail`); whole lines written
before a crash but never committed are the records the window's retry fetches again, and the
merge keyed by time (and sensor) finds them already there, so none is written twice.
docs/dev/text-appends.md has what ERDDAP does with a file that grows under it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pipeline.exceptions import OutputError
from pipeline.records import PublishedFile

if TYPE_CHECKING:
    from hashlib import _Hash

    # numpy is imported where it is used: the line formats (JSON Lines, raw text) use this
    # module too, and a process writing only those never imports numpy (writers.py).
    import numpy as np
    import numpy.typing as npt

    from pipeline.outputs.table import WideTable

K = TypeVar("K", bound=Any)
T = TypeVar("T")

# How far back from the end a torn tail is looked for at a time.
_TAIL_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a window's sorted times fall against a file's sorted times."""

    index: npt.NDArray[np.intp]  # each window time's insertion point in the file's times
    equal: npt.NDArray[np.bool_]  # the file has this time already
    later: npt.NDArray[np.bool_]  # after the file's last time: appended


def place(known: npt.NDArray[np.int64], times: npt.NDArray[np.int64]) -> Placement | None:
    """Each window time (sorted) either one of the file's times (sorted) or after its last;
    None when one falls before or between the file's times without being one of them: the
    file must be rewritten."""
    import numpy as np

    n = len(known)
    index = np.searchsorted(known, times)
    if n:
        equal = (index < n) & (known[np.minimum(index, n - 1)] == times)
        later = times > known[-1]
    else:
        equal = np.zeros(len(times), dtype=bool)
        later = np.ones(len(times), dtype=bool)
    if not np.all(equal | later):
        return None
    return Placement(index, equal, later)


def later_rows(base: WideTable, merged: WideTable) -> WideTable | None:
    """The rows `merged` (`base`, the file's table, with a window merged into it) adds after
    the file's last time, with the file's columns, when they are all the window adds or
    changes; None otherwise, or when it adds nothing."""
    import numpy as np

    from pipeline.outputs.table import WideTable

    n = len(base.times)
    if n == 0 or len(merged.times) <= n:
        return None
    if [s.code for s in merged.sensors] != [s.code for s in base.sensors]:
        return None  # a new sensor: a new column
    placement = place(base.times, merged.times)
    if placement is None:
        return None
    if not (
        np.array_equal(merged.flags[:, :n], base.flags)
        and np.array_equal(merged.values[:, :n], base.values, equal_nan=True)
    ):
        return None  # a revision, or a reading for a time the file has without it
    return WideTable(merged.times[n:], merged.sensors, merged.values[:, n:], merged.flags[:, n:])


def later_keys(last: K | None, added: Iterable[K]) -> list[K] | None:
    """The keys a window adds to a keyed line file, sorted, when every one sorts after the
    file's last key (`last`; None for an empty file); None when one does not: rewrite."""
    ordered = sorted(added)
    if ordered and last is not None and not ordered[0] > last:
        return None
    return ordered


def cut_torn_tail(path: Path) -> int:
    """Cut bytes after the last newline of a line file (a partial line a crash left mid-
    append), durably; returns the bytes cut. Every line this pipeline writes ends with a
    newline, so a complete file ends with one."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        keep = 0
        end = size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            handle.seek(start)
            at = handle.read(end - start).rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, keep)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(
            f"cannot repair {path} (a partial last line): {exc.strerror or exc}", path=str(path)
        ) from exc
    return size - keep


class StatCache(Generic[T]):
    """What was last known of a file (its digest), kept while the file's inode, size and
    modification time are what they were then, so an outside change (an append, a rewrite
    renamed over it) is never missed. One entry per folder (a dataset's year) bounds it to
    the file a dataset is growing."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[Path, tuple[int, int, int], T]] = {}

    def get(self, path: Path) -> T | None:
        """The value stored for `path`, if the file is still as it was then."""
        entry = self._entries.get(path.parent)
        if entry is None or entry[0] != path:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        return entry[2] if _identity(stat) == entry[1] else None

    def put(self, path: Path, value: T) -> None:
        """Remember `value` for the file as it stands now."""
        stat = path.stat()
        self._entries[path.parent] = (path, _identity(stat), value)


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


Digests = StatCache["_Hash"]


def _hash_file(path: Path) -> _Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest


def append_lines(
    path: Path, data: bytes, size: int, digests: Digests | None = None
) -> PublishedFile:
    """Write `data` (whole lines) after the first `size` bytes of `path`, the file's length
    when it was read, in one write, then flush it to disk. A failed write is cut back to
    `size`, so no partial line stays; a file that is no longer `size` bytes long (changed
    since it was read) is refused.

    The manifest records the SHA-256 of the whole file: with the digest of the file as it was
    (`digests`, still valid), only `data` is hashed; otherwise the file is read and hashed
    (from the page cache, writing nothing)."""
    before = digests.get(path) if digests is not None else None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(
            f"cannot append to {path}: {exc.strerror or exc}", path=str(path)
        ) from exc
    try:
        if os.fstat(fd).st_size != size:
            raise OutputError(
                f"{path} changed while its window was built; the window is retried",
                path=str(path),
            )
        try:
            done = 0
            view = memoryview(data)
            while done < len(data):
                # One call writes it all on a local disk; a short write (a full disk, a
                # signal) continues where it stopped.
                done += os.pwrite(fd, view[done:], size + done)
            os.fdatasync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # else the next open cuts the partial line
                os.ftruncate(fd, size)
            raise OutputError(
                f"cannot append to {path}: {exc.strerror or exc}", path=str(path)
            ) from exc
    finally:
        os.close(fd)
    try:
        if before is not None:
            digest = before.copy()
            digest.update(data)
        else:
            digest = _hash_file(path)
        if digests is not None:
            digests.put(path, digest)
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}", path=str(path)) from exc
    return PublishedFile(path, size + len(data), digest.hexdigest(), replaced=False)


def unchanged(path: Path, digests: Digests | None = None) -> PublishedFile:
    """The file as it stands, left alone (a window that brought nothing new)."""
    digest = digests.get(path) if digests is not None else None
    if digest is None:
        digest = _hash_file(path)
        if digests is not None:
            digests.put(path, digest)
    return PublishedFile(path, path.stat().st_size, digest.hexdigest(), replaced=False)
