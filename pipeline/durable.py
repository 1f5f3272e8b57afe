"""Durable files: fsync a file, fsync a folder, rename a finished file into place.

The last step of every atomic publish in the pipeline (output files, downloaded archive files,
product files): a complete temporary file is flushed to disk, renamed over its final name, and
the folder is flushed so the rename itself survives a power cut. A reader only ever sees a
final name holding a complete file.
"""

from __future__ import annotations

import os
from pathlib import Path


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
