"""What a test sees of writes to regular files: sizes, and whether they bypassed the page cache
(O_DIRECT); the `writes` fixture (tests/unit/conftest.py) records them."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import durable
from pipeline.durable import DIO_ALIGN, DIRECT_CHUNK, WRITE_SLICE


@dataclass
class Write:
    """One write() to a regular file: its size, and whether the file was in O_DIRECT."""

    size: int
    direct: bool


def kernel_takes_direct(folder: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the kernel takes O_DIRECT for files in `folder` (ext4, xfs, btrfs do; tmpfs
    since Linux 6.6). Where it does, the pipeline's own rule (O_DIRECT on local block file
    systems only, `durable.set_direct`) is set aside for the test, its file system taken for
    ext4's: the real kernel path is what the test runs wherever the kernel allows it."""
    probe = folder / ".direct-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | durable._O_DIRECT)
        takes = bool(durable._O_DIRECT)
    except OSError:
        takes = False
    finally:
        os.close(fd)
        probe.unlink()
    if takes:
        monkeypatch.setattr(durable, "file_system_type", lambda fd: 0xEF53)
    return takes


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


class FakeDirect:
    """O_DIRECT as the kernel enforces it, on any file system (taken for ext4's): the flag is
    kept here, per descriptor (open, F_GETFL, F_SETFL), never given to the kernel, and a
    write while it is set that is not whole blocks, at a block offset, from block-aligned
    memory is refused (EINVAL)."""

    FLAG = 1 << 40

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.flags: dict[int, int] = {}
        self.direct_writes = 0
        self._open, self._write, self._fcntl = os.open, os.write, fcntl.fcntl
        monkeypatch.setattr(durable, "_O_DIRECT", self.FLAG)
        monkeypatch.setattr(durable, "file_system_type", lambda fd: 0xEF53)
        monkeypatch.setattr(durable.os, "open", self.open)
        monkeypatch.setattr(durable.fcntl, "fcntl", self.fcntl)
        monkeypatch.setattr(durable.os, "write", self.write)

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        fd = self._open(path, flags & ~self.FLAG, mode)
        self.flags[fd] = flags & self.FLAG
        return fd

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_GETFL:
            return int(self._fcntl(fd, cmd)) | self.flags.get(fd, 0)
        if cmd == fcntl.F_SETFL:
            self.flags[fd] = arg & self.FLAG
            return int(self._fcntl(fd, cmd, arg & ~self.FLAG))
        return int(self._fcntl(fd, cmd, arg))

    def direct(self, fd: int) -> bool:
        return bool(self.flags.get(fd))

    def write(self, fd: int, data: memoryview) -> int:
        if self.direct(fd):
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            if len(data) % DIO_ALIGN or offset % DIO_ALIGN or _address(data) % DIO_ALIGN:
                raise OSError(errno.EINVAL, "unaligned O_DIRECT write")
            self.direct_writes += 1
        return self._write(fd, data)


def _address(data: memoryview) -> int:
    """Where `data` starts in memory; 1 (unaligned) for read-only memory, whose address
    ctypes does not give (the pipeline writes directly only from its own buffers)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(data))
    except (TypeError, ValueError):  # read-only, or empty
        return 1
