"""Atomic publishing: write under a temporary name, fsync, rename into place, fsync the folder.

A reader (ERDDAP, a person, the next run) only ever sees a final name holding a complete file.
Temporary names end in `.tmp`, a suffix no ERDDAP file regex for our outputs matches.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.durable import NewFile, fsync_dir, rename_durably
from pipeline.exceptions import OutputError
from pipeline.records import PublishedFile

if TYPE_CHECKING:
    from hashlib import _Hash

TMP_SUFFIX = ".tmp"


def temp_path_for(final: Path) -> Path:
    """The temporary name used while `final` is being written."""
    return final.with_name(final.name + TMP_SUFFIX)


class HashingSink:
    """A binary sink that hashes and counts what passes through it."""

    def __init__(self, raw: NewFile) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Hash, count and write all of `data` (any buffer: its size is counted in bytes)."""
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self.size += len(view)
        self._raw.write(view)
        return len(view)

    @property
    def closed(self) -> bool:
        """Never closed while a writer has it (file-like wrappers, e.g. Arrow's, ask)."""
        return False

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def digest_state(self) -> _Hash:
        """A copy of the SHA-256 state of what was written, to hash later appends only."""
        return self._hash.copy()


def ensure_inside(root: Path, relative: Path | str) -> Path:
    """`root / relative`, refusing anything that would land outside `root`."""
    rel = Path(relative)
    if rel.is_absolute() or any(part in ("..", "") for part in rel.parts):
        raise OutputError(f"refusing unsafe output path {str(relative)!r}", path=str(relative))
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise OutputError(f"refusing output path outside {root}: {relative!r}", path=str(relative))
    return root / rel


@contextmanager
def _translate_os_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        reason = {
            errno.ENOSPC: "no space left on device",
            errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise OutputError(f"cannot write {path}: {reason}", path=str(path)) from exc


def ensure_folder(path: Path) -> None:
    """`mkdir -p path`; a full, read-only or forbidden disk is an OutputError naming `path`."""
    with _translate_os_errors(path):
        path.mkdir(parents=True, exist_ok=True)


class AtomicFile:
    """`publish_atomically` in steps: a temporary next to `final`, written over several calls
    (`writing`), then made `final` durably (`publish`) or dropped (`abort`)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self._tmp = temp_path_for(final)
        with _translate_os_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            # Whole blocks around the page cache, the last bytes through it (`NewFile`).
            self._raw = NewFile(self._tmp)
        self.sink = HashingSink(self._raw)
        self._dropped = False

    @contextmanager
    def writing(self) -> Iterator[HashingSink]:
        """The sink for a round of writes: an OSError is an OutputError naming the file, and
        any failure drops the temporary (after which every round fails)."""
        if self._dropped:
            raise OutputError(
                f"cannot write {self.final}: its temporary was dropped after an earlier failure",
                path=str(self.final),
            )
        try:
            with _translate_os_errors(self.final):
                yield self.sink
        except BaseException:
            self.abort()
            raise

    def written(self) -> Path:
        """The temporary, holding every byte written so far (to read it back)."""
        with self.writing():
            self._raw.flush()
        return self._tmp

    def publish(self) -> PublishedFile:
        """Flush the temporary to disk and rename it to `final` durably."""
        with self.writing():
            replaced = self.final.exists()
            self._raw.finish()
            self._raw.close()
            rename_durably(self._tmp, self.final)
        return PublishedFile(
            path=self.final, size=self.sink.size, sha256=self.sink.hexdigest(), replaced=replaced
        )

    def abort(self) -> None:
        """Close and remove the temporary; `final` is left exactly as it was."""
        self._dropped = True
        self._raw.close()
        self._tmp.unlink(missing_ok=True)


def publish_atomically(final: Path, write: Callable[[HashingSink], None]) -> PublishedFile:
    """Run `write` into a temporary file next to `final`, then make it `final` durably.

    On any failure the temporary file is removed and `final` is left exactly as it was.
    """
    file = AtomicFile(final)
    with file.writing() as sink:
        write(sink)
    return file.publish()


def file_sha256(path: Path) -> tuple[int, _Hash]:
    """Size and SHA-256 state of a file (to hash later appends only), read into one reused
    buffer (`hashlib.file_digest`), not into a new bytes object per chunk."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return handle.tell(), digest


def sha256_of(path: Path) -> tuple[int, str]:
    """Size and SHA-256 (hex) of a file."""
    size, digest = file_sha256(path)
    return size, digest.hexdigest()


# A temporary is written and renamed within seconds, or written to as a backfill's pages come
# (a new Parquet partition: once a page); one untouched this long was left by a crash. Younger
# ones may be another instance's publish in progress (instances share the output root when
# they scale out), so they stay.
STALE_TEMPORARY_S = 3600.0


@dataclass
class StaleSweep:
    """What `remove_stale_temporaries` did: the temporaries removed, and those it could not
    remove with the reason (a permission, a read-only file system)."""

    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def remove_stale_temporaries(
    root: Path,
    *,
    older_than: float = STALE_TEMPORARY_S,
    now: float | None = None,
    stop: threading.Event | None = None,
) -> StaleSweep:
    """Delete `*.tmp` files a crash left under `root` (untouched for `older_than` seconds).
    The walk follows no symbolic link, passes over folders it cannot read and files it
    cannot remove (both in `kept`, with the reason), and ends early once `stop` is set
    (looked at before each folder): an output tree of years holds millions of files."""
    sweep = StaleSweep()
    cutoff = (time.time() if now is None else now) - older_than

    def unreadable(exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # a folder gone meanwhile is no matter
            sweep.kept.append((Path(exc.filename or root), exc.strerror or str(exc)))

    for folder, _, names in os.walk(root, onerror=unreadable):
        if stop is not None and stop.is_set():
            break
        for name in names:
            if not name.endswith(TMP_SUFFIX):
                continue
            path = Path(folder, name)
            try:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                    path.unlink()
                    sweep.removed.append(path)
            except FileNotFoundError:
                continue  # renamed into place by its writer meanwhile
            except OSError as exc:
                sweep.kept.append((path, exc.strerror or str(exc)))
    for parent in sorted({p.parent for p in sweep.removed}):
        try:
            fsync_dir(parent)
        except OSError as exc:  # the removals may not survive a power cut: said, not fatal
            sweep.kept.append((parent, f"folder not flushed: {exc.strerror or exc}"))
    return sweep
