"""Durable files: fsync a file, fsync a folder, rename a finished file into place.

The last step of every atomic publish in the pipeline (output files, downloaded archive files,
product files): a complete temporary file is flushed to disk, renamed over its final name, and
the folder is flushed so the rename itself survives a power cut. A reader only ever sees a
final name holding a complete file.

Bulk writes go through `write_all`/`write_sliced`: 64 KiB per `write()` whatever the caller
hands over (docs/dev/archive-downloads.md, "Page-cache writes: 64 KiB at a time").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

# Bytes per write() into the page cache. Since Linux 6.16, ext4 sizes the page-cache
# folios a buffered write allocates by the write's length: one write of a whole socket buffer
# or a rendered block (256 KiB to a few MB) asks for high-order pages. Where those are dear (a
# VM whose host backs guest memory lazily, as on the benchmark machine) such writes often cost
# several times the kernel CPU of 64 KiB ones (docs/dev/archive-downloads.md). 64 KiB keeps
# the syscalls few (16 per MiB) where large folios are cheap.
WRITE_SLICE = 64 * 1024


class _Writable(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to `fd`, `WRITE_SLICE` bytes per write() (os.write may
    also write less than asked)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_SLICE):
        piece = view[start : start + WRITE_SLICE]
        while piece:
            piece = piece[os.write(fd, piece) :]


def write_sliced(stream: _Writable, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to `stream`, `WRITE_SLICE` bytes per `write` call; a short
    write (a raw stream's) is followed by the rest. A buffered file should have a buffer of
    at most `WRITE_SLICE` bytes, or it gathers the slices into bigger writes again."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_SLICE):
        piece = view[start : start + WRITE_SLICE]
        while piece:
            written = stream.write(piece)
            # None: a non-blocking raw stream that took nothing; a buffered stream takes all.
            if written is None:
                raise BlockingIOError("the stream took nothing (non-blocking)")
            piece = piece[written:]


def fsync_file(path: Path) -> None:
    """Flush a closed (or still open) file's data to disk; a symlink is refused, not followed."""
    _fsync(path, os.O_NOFOLLOW)


def fsync_dir(directory: Path) -> None:
    """Flush a folder, so a rename or unlink inside it survives a power cut."""
    _fsync(directory, getattr(os, "O_DIRECTORY", 0))


def rename_durably(temporary: Path, final: Path) -> None:
    """Rename `temporary` over `final` (atomic on POSIX) and flush the folder holding it."""
    os.replace(temporary, final)
    fsync_dir(final.parent)


def _fsync(path: Path, flags: int) -> None:
    # fsync flushes the file whichever descriptor names it: a fresh read-only one will do.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
