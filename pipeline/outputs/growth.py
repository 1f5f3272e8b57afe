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
last whole line are cut when the file is next opened (`open_partition`); whole lines written
before a crash but never committed are the records the window's retry fetches again, and the
merge keyed by time (and sensor) finds them already there, so none is written twice. Appends,
rewrites and cuts of a partition (NetCDF's too) hold the file's `flock` and go ahead only while
the file is the one the window read (`locked`), so two processes never interleave on it.
docs/dev/text-appends.md has what ERDDAP does with a file that grows under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, Protocol, TypeVar

from pipeline.exceptions import OutputError
from pipeline.outputs.publish import HashingSink, file_sha256, publish_atomically
from pipeline.records import PublishedFile

if TYPE_CHECKING:
    from hashlib import _Hash  # noqa: F401 (named in `Digests` below, as text)

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
    """The rows `merged` (`base`, the file's rows, all or those from the window's first time
    on, with a window merged into them) adds after the file's last time, with the file's
    columns, when they are all the window adds or changes; None otherwise, or when it adds
    nothing."""
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


class KeyedGrowth(Generic[K]):
    """Over an existing keyed line file (JSON Lines, raw text, JSON Lines CSV): the keys a
    window adds after the file's last key (`last`; None for a file without records), which are
    appended, and whether it brings a new or changed line at or before it (a revision, a gap
    filled), which rewrites the file."""

    def __init__(self, last: K | None) -> None:
        self.last = last
        self._added: set[K] = set()
        self.revised = False

    def note(self, key: K, line: str, lines: Mapping[K, str]) -> None:
        """A line the window brings for `key`, before it is merged into `lines`."""
        if self.last is None or key > self.last:
            self._added.add(key)
        elif lines.get(key) != line:
            self.revised = True

    def appended(self) -> list[K] | None:
        """The keys to append, sorted (none: nothing new); None when the file is rewritten."""
        return None if self.revised else sorted(self._added)


class AsRead(Protocol):
    """What a window knew of its partition file when it read it: `locked` lets the window's
    append or rewrite go ahead only while the file (open at `fd`, `stat` its fstat) `still`
    is that file."""

    def still(self, fd: int, stat: os.stat_result) -> bool:
        """True when the file open at `fd` is the one the window read."""
        ...


@dataclass(frozen=True, slots=True)
class FileAsRead:
    """A text partition as a window read it: its inode and length (lines only ever go after
    the end, so a file of that inode and length holds what the window read)."""

    inode: int
    size: int

    def still(self, fd: int, stat: os.stat_result) -> bool:
        """Same inode, same length."""
        return (stat.st_ino, stat.st_size) == (self.inode, self.size)


def open_partition(path: Path) -> FileAsRead | None:
    """The partition file a window is about to read, after cutting bytes past its last
    newline (a partial line a crash left mid-append), under the file's lock; None when there
    is no file."""
    try:
        fd = _open_to_lock(path, os.O_RDWR)
    except (FileNotFoundError, NotADirectoryError):
        return None  # writing it says what is wrong with the folder
    except OSError as exc:
        raise file_error(path, "cannot open", exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cut = _cut_torn_tail(fd)
        if cut:
            os.fsync(fd)
        stat = os.fstat(fd)
        return FileAsRead(stat.st_ino, stat.st_size)
    except OSError as exc:
        raise file_error(
            path, "cannot cut the partial last line (left by a crash) of", exc
        ) from exc
    finally:
        os.close(fd)  # releases the lock


def _open_to_lock(path: Path, flags: int) -> int:
    """`path` opened with `flags`, or read-only when the file may not be written (a file
    made read-only can still be read, and replaced by a rename): the lock needs only a
    descriptor."""
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _cut_torn_tail(fd: int) -> int:
    """Cut bytes after the last newline of the file open at `fd`; returns the bytes cut.
    Every line this pipeline writes ends with a newline, so a complete file ends with one."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    keep = 0
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            keep = start + at + 1
            break
        end = start
    os.ftruncate(fd, keep)
    return size - keep


def file_error(path: Path, doing: str, exc: OSError) -> OutputError:
    """An OutputError naming the file, the step and the cause; the window is retried."""
    return OutputError(
        f"{doing} {path}: {exc.strerror or exc}; the window is retried (check the disk's "
        "free space and the file's permissions)",
        path=str(path),
    )


@contextlib.contextmanager
def locked(path: Path, read: AsRead, *, write: bool) -> Iterator[int]:
    """Hold the lock of `path` (an exclusive `flock` of the file) while it is still the file a
    window read (`read.still`); yields its descriptor, open for reading and writing with
    `write` (else read-only if the file may not be written: a rename still replaces it).
    Appends and rewrites of every partition that grows in place take it (`open_partition`'s
    cut takes the same flock), so two processes (an instance that lost its lease still
    publishing) never interleave on one file: the later one finds the file changed and its
    window is retried."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC) if write else _open_to_lock(path, os.O_RDWR)
    except FileNotFoundError:
        raise _changed(path) from None
    except OSError as exc:
        raise file_error(path, "cannot open", exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            named = os.stat(path)  # a rename over it while we waited: `path` names another
            same = named.st_ino == held.st_ino and read.still(fd, held)
        except FileNotFoundError:
            raise _changed(path) from None
        except OSError as exc:
            raise file_error(path, "cannot lock", exc) from exc
        if not same:
            raise _changed(path)
        yield fd
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def opened_as_read(path: Path, read: FileAsRead) -> Iterator[BinaryIO]:
    """`path` open for reading while it is still the text file a window read (same inode,
    at least its length); its first `read.size` bytes are what the window read. A file
    replaced meanwhile is refused: the window is retried."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the check)
    except FileNotFoundError:
        raise _changed(path) from None
    except OSError as exc:
        raise file_error(path, "cannot read", exc) from exc
    with handle:
        stat = os.fstat(handle.fileno())
        if stat.st_ino != read.inode or stat.st_size < read.size:
            raise _changed(path)
        yield handle


def _changed(path: Path) -> OutputError:
    return OutputError(
        f"{path} changed while its window was built; the window is retried", path=str(path)
    )


def rewrite(
    path: Path,
    read: AsRead | None,
    write: Callable[[HashingSink], None],
    digests: Digests | None = None,
) -> PublishedFile:
    """Publish the partition whole (`publish.publish_atomically`), under the lock of the file
    the window read, if there was one, so no append lands in the file being replaced. The
    digest of what was written is kept (`digests`) for the next append or unchanged poll."""
    sinks: list[HashingSink] = []

    def kept(sink: HashingSink) -> None:
        write(sink)
        sinks.append(sink)

    if read is None:
        published = publish_atomically(path, kept)
    else:
        with locked(path, read, write=False):
            published = publish_atomically(path, kept)
    if digests is not None:
        # After the rename, outside the replaced file's lock: kept only if the file is still
        # what was written (a gone or grown file is hashed at the next poll).
        with contextlib.suppress(OSError):
            digests.put(path, sinks[0].digest_state(), size=published.size)
    return published


class Lru(Generic[K, T]):
    """A mapping that forgets its least recently used keys (got or kept) past `limit` (None:
    never). Safe to share between threads (a window's publish runs in one)."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._entries: dict[K, T] = {}

    def get(self, key: K) -> T | None:
        """The value kept for `key`, now the most recently used."""
        with self._lock:
            value = self._entries.pop(key, None)
            if value is not None:
                self._entries[key] = value
            return value

    def keep(self, key: K, value: T) -> None:
        """Keep `value` for `key`, the most recently used; the least recently used go past
        the limit."""
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = value
            while self._limit is not None and len(self._entries) > self._limit:
                del self._entries[next(iter(self._entries))]

    def forget(self, key: K, when: Callable[[T], bool] = lambda value: True) -> None:
        """Drop what is kept for `key`, if `when` holds for it."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None and when(value):
                del self._entries[key]


class StatCache(Generic[T]):
    """What was last known of a file (its digest, a manifest's last line), kept while the
    file's inode, size and modification time are what they were then, so an outside change
    (an append, a rewrite renamed over it) is never missed. One entry per folder (a
    dataset's year, a dataset's manifest) bounds it to the file a dataset is growing; with
    `limit`, the folders least recently used past it are forgotten too (`Lru`)."""

    def __init__(self, limit: int | None = None) -> None:
        self._entries = Lru[Path, tuple[Path, tuple[int, int, int], T]](limit)

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

    def put(
        self,
        path: Path,
        value: T,
        *,
        size: int | None = None,
        inode: int | None = None,
        seen: os.stat_result | None = None,
    ) -> None:
        """Remember `value` for the file as it stands now; with `size` (and `inode`), only if
        the file is that long (and that file): not grown, or replaced, by another writer
        meanwhile. With `seen`, for the file as it stood then (its stat taken before `value`
        was read from it): a change since makes the value stale at once, never kept as
        current."""
        stat = seen if seen is not None else path.stat()
        if (size is None or stat.st_size == size) and (inode is None or stat.st_ino == inode):
            self._entries.keep(path.parent, (path, _identity(stat), value))

    def peek(self, path: Path) -> T | None:
        """The value stored for `path`, whether or not the file is still as it was then."""
        entry = self._entries.get(path.parent)
        return entry[2] if entry is not None and entry[0] == path else None

    def forget(self, path: Path) -> None:
        """Drop what is known of `path`."""
        self._entries.forget(path.parent, lambda entry: entry[0] == path)


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


Digests = StatCache["_Hash"]


def append_lines(
    path: Path, data: bytes, read: FileAsRead, digests: Digests | None = None
) -> PublishedFile:
    """Write `data` (whole lines) after the end of `path` as the window read it (`read`), in
    one write, then flush it to disk, under the file's lock. A failed write is cut back to
    `read.size`, so no partial line stays; a file that is no longer the one read (changed
    since) is refused.

    The manifest records the SHA-256 of the whole file: with the digest of the file as it was
    (`digests`, still valid), only `data` is hashed; otherwise the file is read and hashed
    (from the page cache, writing nothing)."""
    before = digests.get(path) if digests is not None else None
    with locked(path, read, write=True) as fd:
        try:
            done = 0
            view = memoryview(data)
            while done < len(data):
                # One call writes it all on a local disk; a short write (a full disk, a
                # signal) continues where it stopped.
                done += os.pwrite(fd, view[done:], read.size + done)
            os.fdatasync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # else the next open cuts the partial line
                os.ftruncate(fd, read.size)
            raise file_error(path, "cannot append to", exc) from exc
        # Still under the lock, so the digest kept is of this file, not of a later append.
        try:
            if before is not None:
                digest = before.copy()
                digest.update(data)
            else:
                digest = file_sha256(path)[1]
            if digests is not None:
                digests.put(path, digest)
        except OSError as exc:
            raise file_error(path, "cannot read", exc) from exc
    return PublishedFile(path, read.size + len(data), digest.hexdigest(), replaced=False)


def unchanged(path: Path, digests: Digests | None = None) -> PublishedFile:
    """The file as it stands, left alone (a window that brought nothing new)."""
    digest = digests.get(path) if digests is not None else None
    if digest is not None:
        return PublishedFile(path, path.stat().st_size, digest.hexdigest(), replaced=False)
    # The size the digest was read at: a file grown meanwhile keeps no digest, never one of
    # fewer bytes than it holds.
    size, digest = file_sha256(path)
    if digests is not None:
        digests.put(path, digest, size=size)
    return PublishedFile(path, size, digest.hexdigest(), replaced=False)
