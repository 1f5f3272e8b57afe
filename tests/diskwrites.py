"""What a test sees of writes to regular files: sizes, and whether they bypassed the page cache
(O_DIRECT); the `writes` fixture (tests/unit/conftest.py) records them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.durable import DIO_ALIGN, DIRECT_CHUNK, WRITE_SLICE, NewFile


@dataclass
class Write:
    """One write() to a regular file: its size, and whether the file was in O_DIRECT."""

    size: int
    direct: bool


def direct_supported(folder: Path) -> bool:
    """Whether `folder`'s file system takes O_DIRECT (ext4, xfs, btrfs do; tmpfs before Linux
    6.6 does not)."""
    probe = NewFile(folder / "probe")
    probe.close()
    (folder / "probe").unlink()
    return probe.direct


def check_writes(seen: list[Write], total: int, *, direct: bool) -> None:
    """Whole aligned blocks directly (at most a chunk each), then what waited in memory
    through the page cache; or every byte through the page cache, in slices."""
    assert sum(w.size for w in seen) == total
    buffered = [w.size for w in seen if not w.direct]
    assert all(size <= WRITE_SLICE for size in buffered)
    if direct:
        direct_sizes = [w.size for w in seen if w.direct]
        assert direct_sizes
        assert all(size % DIO_ALIGN == 0 and size <= DIRECT_CHUNK for size in direct_sizes)
        assert sum(buffered) < WRITE_SLICE  # what waited in memory at the end only
        firsts = [w.direct for w in seen]
        assert firsts == sorted(firsts, reverse=True)  # direct ones first, the tail last
    else:
        assert len(buffered) == len(seen)
