"""Bulk downloads write whole blocks around the page cache (O_DIRECT), against the emulator's
socket. `FakeDirect` keeps the flag out of the kernel and refuses what the kernel would (a
write that is not whole blocks, at a block offset, from aligned memory), so these run on any
file system; tests/unit/onc/test_download.py runs the same path on the real one."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import durable
from pipeline.durable import DIO_ALIGN
from pipeline.exceptions import OutputError
from pipeline.onc import download as download_module
from tests.diskwrites import FakeDirect, Write
from tests.downloads import download
from tests.integration.onc.conftest import client, running_emulator
from tests.integration.onc.test_archive_bulk import CAMERA, truth_of
from tests.unit.onc.recording import RecordingMetrics

SIZE = 6_000_000  # 1,464 blocks and 3,456 bytes
WHOLE = SIZE - SIZE % DIO_ALIGN


class Disk:
    """What reached the part file: each write (size, direct or not) and each writeback asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kernel: FakeDirect) -> None:
        self.writes: list[Write] = []
        self.writebacks: list[tuple[int, int]] = []
        self._kernel = kernel
        self._passthrough = kernel.write
        self.fail: Callable[[int, memoryview], int | None] = lambda fd, data: None
        self.syncs: list[int] = []  # at each fdatasync, how many writes came before it
        real_sync = os.fdatasync

        def sync(fd: int) -> None:
            self.syncs.append(len(self.writes))
            real_sync(fd)

        monkeypatch.setattr(durable.os, "write", self.write)
        monkeypatch.setattr(os, "fdatasync", sync)
        monkeypatch.setattr(
            download_module,
            "start_writeback",
            lambda fd, offset, n: self.writebacks.append((offset, n)),
        )

    def write(self, fd: int, data: memoryview) -> int:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return self._passthrough(fd, data)
        direct = self._kernel.direct(fd)
        done = self.fail(fd, data)
        if done is None:
            done = self._passthrough(fd, data)
        self.writes.append(Write(done, direct))
        return done

    def direct_bytes(self) -> int:
        return sum(w.size for w in self.writes if w.direct)

    def buffered(self) -> list[int]:
        return [w.size for w in self.writes if not w.direct]


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch, FakeDirect(monkeypatch))


def tiled(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether `ranges` cover [start, end) in order, without gaps or overlaps."""
    position = start
    for offset, n in ranges:
        if offset != position:
            return False
        position += n
    return position == end


@pytest.mark.parametrize("chunk_size", [1 << 20, 5000])
async def test_whole_blocks_go_around_the_page_cache_and_the_last_one_through_it(
    tmp_path: Path, disk: Disk, chunk_size: int
) -> None:
    # A chunk size that is not whole blocks is rounded down to them (5000 -> one block): a
    # buffer ending inside a block would send every later one through the page cache.
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}) as emu:
        name, sha256, content = truth_of(emu)
        async with client(emu, chunk_size=chunk_size) as onc:
            got = await download(onc, name, tmp_path, expected_sha256=sha256, bulk=True)
    assert got.path.read_bytes() == content
    assert disk.direct_bytes() == WHOLE
    assert disk.buffered() == [SIZE - WHOLE]
    assert not disk.writes[-1].direct  # the partial block last
    assert disk.writebacks == [(WHOLE, SIZE - WHOLE)]  # direct blocks need none
    assert disk.syncs == []  # nothing waited in the page cache before a direct write


async def test_a_resumed_file_reaches_a_block_boundary_through_the_page_cache_first(
    tmp_path: Path, disk: Disk
) -> None:
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}) as emu:
        name, sha256, content = truth_of(emu)
        (tmp_path / f".{name}.part").write_bytes(content[:10_000])
        disk.writes.clear()
        async with client(emu) as onc:
            got = await download(onc, name, tmp_path, expected_sha256=sha256, bulk=True)
    assert got.resumed_from == 10_000
    assert got.path.read_bytes() == content
    first = -10_000 % DIO_ALIGN  # 2,288 bytes to the block boundary at 12,288
    assert disk.writes[0] == Write(first, direct=False)
    assert disk.direct_bytes() == WHOLE - 10_000 - first
    assert disk.buffered() == [first, SIZE - WHOLE]
    assert disk.writebacks == [(10_000, first), (WHOLE, SIZE - WHOLE)]
    # That first block is on disk before a direct write makes the file longer than it.
    assert disk.syncs == [1]


@pytest.mark.parametrize("why", ["refused", "a network file system"])
async def test_without_o_direct_every_byte_goes_through_the_page_cache(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    if why == "refused":
        kernel_fcntl = durable.fcntl.fcntl

        def refusing(fd: int, cmd: int, arg: int = 0) -> int:
            if cmd == durable.fcntl.F_SETFL and arg & durable._O_DIRECT:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return int(kernel_fcntl(fd, cmd, arg))

        monkeypatch.setattr(durable.fcntl, "fcntl", refusing)
    else:
        monkeypatch.setattr(durable, "file_system_type", lambda fd: 0x6969)  # NFS
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}) as emu:
        name, sha256, content = truth_of(emu)
        async with client(emu) as onc:
            got = await download(onc, name, tmp_path, expected_sha256=sha256, bulk=True)
    assert got.path.read_bytes() == content
    assert disk.direct_bytes() == 0
    assert max(disk.buffered()) <= durable.WRITE_SLICE
    assert tiled(disk.writebacks, 0, SIZE)


@pytest.mark.parametrize("how", ["refused", "short"])
async def test_a_direct_write_refused_or_cut_short_goes_on_through_the_page_cache(
    tmp_path: Path, disk: Disk, how: str
) -> None:
    # The third direct write is refused (a device wanting another alignment), or writes
    # half a block (a disk filling up): every byte after it goes through the page cache.
    direct_writes = 0

    def third(fd: int, data: memoryview) -> int | None:
        nonlocal direct_writes
        if not disk._kernel.direct(fd):
            return None
        direct_writes += 1
        if direct_writes != 3:
            return None
        if how == "refused":
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        flags = disk._kernel.flags[fd]
        disk._kernel.flags[fd] = 0  # the kernel writes the half block it had room for
        try:
            return disk._passthrough(fd, data[: DIO_ALIGN // 2])
        finally:
            disk._kernel.flags[fd] = flags

    disk.fail = third
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}) as emu:
        name, sha256, content = truth_of(emu)
        async with client(emu) as onc:
            got = await download(onc, name, tmp_path, expected_sha256=sha256, bulk=True)
    assert got.path.read_bytes() == content
    directs = [w.direct for w in disk.writes]
    assert directs == sorted(directs, reverse=True)  # none direct after the failure
    # The first two buffers, and the half block of a short write (with O_DIRECT set).
    page_cache_from = 2 << 20 if how == "refused" else (2 << 20) + DIO_ALIGN // 2
    assert disk.direct_bytes() == page_cache_from
    assert tiled(disk.writebacks, page_cache_from, SIZE)


def test_the_appender_writes_directly_only_at_block_offsets(tmp_path: Path, disk: Disk) -> None:
    # Whole blocks at an unaligned offset take the page cache (the kernel would refuse them
    # and O_DIRECT would be given up for the rest of the file); back on a boundary, the next
    # ones go directly again.
    data = os.urandom(3 * DIO_ALIGN)
    buffer = durable.aligned_buffer(len(data))
    buffer[:] = data
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        appender = download_module._Appender(fd, 0)
        with memoryview(buffer) as view:
            for size in (100, 2 * DIO_ALIGN, DIO_ALIGN - 100, DIO_ALIGN):
                appender.append(view[:size])
    finally:
        os.close(fd)
        durable.release_buffer(buffer)
    assert disk.writes == [
        Write(100, direct=False),
        Write(2 * DIO_ALIGN, direct=False),
        Write(DIO_ALIGN - 100, direct=False),
        Write(DIO_ALIGN, direct=True),
    ]
    assert (tmp_path / "file").read_bytes() == (
        data[:100] + data[: 2 * DIO_ALIGN] + data[: DIO_ALIGN - 100] + data[:DIO_ALIGN]
    )


async def test_a_failed_write_stops_the_reading(tmp_path: Path, disk: Disk) -> None:
    # The first direct write fails (EIO) after the reader has filled every buffer: it reads
    # at most one more, not the rest of the body.
    def first_fails(fd: int, data: memoryview) -> int | None:
        if disk._kernel.direct(fd):
            time.sleep(0.1)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return None

    disk.fail = first_fails
    metrics = RecordingMetrics()
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}) as emu:
        name, _, _ = truth_of(emu)
        async with client(emu, metrics=metrics) as onc:
            with pytest.raises(OutputError, match="Input/output error"):
                await download(onc, name, tmp_path, bulk=True)
    (received,) = [r[3] for r in metrics.requests]
    assert 0 < received <= 5 << 20 < SIZE  # 4 buffers on their way, and the one read after
    assert (tmp_path / f".{name}.part").stat().st_size == 0
