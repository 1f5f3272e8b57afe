"""New files go to the disk around the page cache where they can (whole aligned blocks, O_DIRECT),
their tail and every other bulk write through it in slices of `WRITE_SLICE`."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import durable
from pipeline.durable import DIO_ALIGN, DIRECT_CHUNK, WRITE_SLICE, NewFile, write_all
from tests.diskwrites import FakeDirect, Write, check_writes

# Not a multiple of the slice, and no period of it: a misplaced slice changes the bytes.
DATA = bytes(range(251)) * 1000 + b"tail"


# Pieces of every kind of size: under a block, across blocks, over a whole chunk.
PIECES = [100, 5000, DIO_ALIGN, 3 * DIRECT_CHUNK + 17, 1, DIRECT_CHUNK - 1, 70_000]


@pytest.mark.parametrize("behind", [False, True])
def test_a_new_file_gets_every_byte_around_the_page_cache_but_its_tail(
    tmp_path: Path,
    writes: list[Write],
    kernel_direct: bool,
    behind: bool,
) -> None:
    direct = kernel_direct
    writes.clear()
    data = os.urandom(sum(PIECES))
    path = tmp_path / "file"
    with NewFile(path, behind=behind) as f:
        offset = 0
        for size in PIECES:
            assert f.write(memoryview(data)[offset : offset + size]) == size
            offset += size
        # 8-byte items are counted as bytes.
        assert f.write(memoryview(bytes(range(8)) * 10).cast("Q")) == 80
        f.finish()
    assert path.read_bytes() == data + bytes(range(8)) * 10
    assert f.size == len(data) + 80
    check_writes(writes, len(data) + 80, direct=direct)


def test_a_file_system_refusing_o_direct_gets_page_cache_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writes: list[Write]
) -> None:
    real = fcntl.fcntl

    def no_direct(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & durable._O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return int(real(fd, cmd, arg))

    monkeypatch.setattr(durable.fcntl, "fcntl", no_direct)
    with NewFile(tmp_path / "file") as f:
        f.write(DATA)
        f.finish()
    assert not f.direct
    assert (tmp_path / "file").read_bytes() == DATA
    check_writes(writes, len(DATA), direct=False)


@pytest.mark.parametrize("kind", [0x6969, 0x01021994, 0x65735546, None])
def test_o_direct_is_used_on_local_block_file_systems_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: int | None
) -> None:
    # NFS, tmpfs, FUSE, or a type that cannot be known: the page cache, even though the
    # kernel would take O_DIRECT (FakeDirect takes it anywhere).
    FakeDirect(monkeypatch)
    monkeypatch.setattr(durable, "file_system_type", lambda fd: kind)
    with NewFile(tmp_path / "file") as f:
        f.write(DATA)
        f.finish()
    assert not f.direct
    assert (tmp_path / "file").read_bytes() == DATA


def test_the_file_system_type_is_what_statfs_says(tmp_path: Path) -> None:
    shown = subprocess.run(
        ["stat", "-f", "-c", "%t", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert durable.file_system_type(fd) == int(shown, 16)
    finally:
        os.close(fd)


@pytest.mark.parametrize("behind", [False, True])
@pytest.mark.parametrize("failure", ["refused", "short-unaligned", "short-aligned"])
def test_a_direct_write_refused_or_short_goes_on_through_the_page_cache(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    kernel_direct: bool,
    behind: bool,
) -> None:
    if not kernel_direct:
        # The kernel refuses O_DIRECT here: what this test breaks never happens.
        monkeypatch.setattr(durable, "_O_DIRECT", 0)
    real = os.write
    calls = 0
    failed = threading.Event()

    def second_fails(fd: int, data: memoryview) -> int:
        nonlocal calls
        if durable._O_DIRECT and fcntl.fcntl(fd, fcntl.F_GETFL) & durable._O_DIRECT:
            calls += 1
            if calls == 2:
                failed.set()
                if failure == "refused":
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
                if failure == "short-aligned":
                    return real(fd, data[:DIO_ALIGN])
                # Short and unaligned (the disk filled up mid-write): as the kernel would
                # write it, around O_DIRECT's rules.
                flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~durable._O_DIRECT)
                try:
                    return real(fd, data[:1000])
                finally:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        return real(fd, data)

    monkeypatch.setattr(durable.os, "write", second_fails)
    data = os.urandom(3 * DIRECT_CHUNK + 123)
    with NewFile(tmp_path / "file", behind=behind) as f:
        f.write(data)
        if kernel_direct and failure != "short-aligned":  # (that one goes on directly)
            # Writing behind, the refusal is met by the writer thread, chunks still queued
            # behind it: the writes below follow them, through the page cache.
            assert failed.wait(timeout=30)
            _until(lambda: not f.direct)
        f.write(data[:10])
        f.write(data[10:5000])
        f.finish()
    assert (tmp_path / "file").read_bytes() == data + data[:5000]


@pytest.mark.parametrize("behind", [False, True])
def test_flush_makes_every_byte_readable_and_writing_goes_on(tmp_path: Path, behind: bool) -> None:
    path = tmp_path / "file"
    with NewFile(path, behind=behind) as f:
        f.write(DATA)
        f.flush()
        assert path.read_bytes() == DATA  # the tail is in the file, not only in memory
        f.write(DATA)
        f.finish()
    assert path.read_bytes() == DATA + DATA


def test_a_full_disk_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable.os, "write", full)
    f = NewFile(tmp_path / "file")
    try:
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as info:
            f.write(DATA)  # whole blocks are written at once, the disk is full
    finally:
        f.close()
    assert info.value.errno == errno.ENOSPC


class _GatedDisk:
    """`os.write` for `FakeDirect` files that waits for `open` before each direct write, and
    counts them: what a file writing behind has queued stays queued until the test says."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kernel: FakeDirect) -> None:
        self.open = threading.Event()
        self.started = threading.Semaphore(0)
        self.direct_writes = 0
        self._kernel = kernel
        monkeypatch.setattr(durable.os, "write", self.write)

    def write(self, fd: int, data: memoryview) -> int:
        if self._kernel.direct(fd):
            self.started.release()
            assert self.open.wait(timeout=30)
            self.direct_writes += 1
        return self._kernel.write(fd, data)


def _in_thread(call: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _until(condition: Callable[[], bool]) -> None:
    """Wait (up to 30 s) for something another thread does."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_writing_behind_holds_at_most_behind_chunks_of_all_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _GatedDisk(monkeypatch, FakeDirect(monkeypatch))
    data = os.urandom((durable.BEHIND_CHUNKS + 2) * DIRECT_CHUNK)
    first = NewFile(tmp_path / "first", behind=True)
    second = NewFile(tmp_path / "second", behind=True)
    try:
        # The first chunk is being written (held at the gate), the others wait behind it:
        # the write returns without the disk.
        first.write(data[: durable.BEHIND_CHUNKS * DIRECT_CHUNK])
        assert disk.started.acquire(timeout=30)
        assert disk.direct_writes == 0
        # A chunk more, of another file, waits for the disk.
        more = _in_thread(lambda: second.write(data[durable.BEHIND_CHUNKS * DIRECT_CHUNK :]))
        more.join(timeout=0.5)
        assert more.is_alive()
        disk.open.set()
        more.join(timeout=30)
        assert not more.is_alive()
        first.finish()
        second.finish()
    finally:
        disk.open.set()
        first.close()
        second.close()
    assert disk.direct_writes == durable.BEHIND_CHUNKS + 2
    assert (tmp_path / "first").read_bytes() == data[: durable.BEHIND_CHUNKS * DIRECT_CHUNK]
    assert (tmp_path / "second").read_bytes() == data[durable.BEHIND_CHUNKS * DIRECT_CHUNK :]


def test_a_write_after_a_refusal_behind_follows_what_the_thread_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = FakeDirect(monkeypatch)
    refused, gate = threading.Event(), threading.Event()

    def refuse_then_hold(fd: int, data: memoryview) -> int:
        if kernel.direct(fd):  # the first chunk's direct write: refused
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if not refused.is_set():  # its bytes, through the page cache: held at the gate
            refused.set()
            assert gate.wait(timeout=30)
        return kernel.write(fd, data)

    monkeypatch.setattr(durable.os, "write", refuse_then_hold)
    data = os.urandom(2 * DIRECT_CHUNK)
    path = tmp_path / "file"
    f = NewFile(path, behind=True)
    try:
        f.write(data)
        assert refused.wait(timeout=30)
        assert not f.direct
        # Not direct any more, the file writes in place, after what the thread holds.
        later = _in_thread(lambda: f.write(b"later"))
        later.join(timeout=0.2)
        assert later.is_alive()
    finally:
        gate.set()
    later.join(timeout=30)
    f.finish()
    f.close()
    assert path.read_bytes() == data + b"later"


def test_closing_a_file_writing_behind_waits_for_its_write_and_drops_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = FakeDirect(monkeypatch)
    disk = _GatedDisk(monkeypatch, kernel)
    f = NewFile(tmp_path / "file", behind=True)
    try:
        f.write(os.urandom(3 * DIRECT_CHUNK))
        assert disk.started.acquire(timeout=30)  # the first chunk is at the disk
        closing = _in_thread(f.close)
        _until(lambda: f._closing)
        closing.join(timeout=0.2)
        assert closing.is_alive()  # the descriptor stays while its write runs
        fd = f.fileno()
        assert fd in kernel.flags
        os.fstat(fd)  # still open
    finally:
        disk.open.set()
    closing.join(timeout=30)
    assert not closing.is_alive()
    assert disk.direct_writes == 1  # a discarded file's queued chunks are not written
    with pytest.raises(OSError, match=os.strerror(errno.EBADF)):
        os.fstat(fd)


def test_a_failed_write_behind_is_raised_and_nothing_after_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = FakeDirect(monkeypatch)
    attempts = 0

    def full_at_the_second(fd: int, data: memoryview) -> int:
        nonlocal attempts
        if kernel.direct(fd):
            attempts += 1
            if attempts == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return kernel.write(fd, data)

    monkeypatch.setattr(durable.os, "write", full_at_the_second)
    path = tmp_path / "file"
    f = NewFile(path, behind=True)

    def write_and_finish() -> None:
        # Raised by a later write once the writer thread met it, else by `finish`.
        for _ in range(4):
            f.write(os.urandom(DIRECT_CHUNK))
        f.finish()

    try:
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as info:
            write_and_finish()
        # Raised once, still failed: no write is taken, the file never finishes without
        # its lost chunk.
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
            f.write(b"x")
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
            f.finish()
    finally:
        f.close()
    assert info.value.errno == errno.ENOSPC
    assert attempts == 2
    assert path.stat().st_size == DIRECT_CHUNK


def test_write_all_writes_everything_to_a_file_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    sizes: list[int] = []

    def short_writes(fd: int, data: memoryview) -> int:
        # At most 40,000 bytes a call, as os.write may do: the rest must follow.
        sizes.append(len(data))
        return real(fd, data[:40_000])

    monkeypatch.setattr(durable.os, "write", short_writes)
    path = tmp_path / "file"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, DATA)
    finally:
        os.close(fd)
    assert path.read_bytes() == DATA
    assert max(sizes) == WRITE_SLICE
    # A slice of 65,536 bytes takes two calls (40,000 + 25,536), never a third.
    assert sizes[:2] == [WRITE_SLICE, WRITE_SLICE - 40_000]


def test_write_all_raises_the_disk_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable.os, "write", full)
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as info:
            write_all(fd, DATA)
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC


@pytest.mark.parametrize("behind", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_random_writes_flushes_and_failures_keep_every_byte_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, behind: bool
) -> None:
    # The direct path on any file system (`FakeDirect`), with failures injected at random:
    # refused (EINVAL), short and aligned, short and unaligned. A file that went on with
    # O_DIRECT set after a failure, or wrote a partial block directly, fails on EINVAL.
    rng = random.Random(seed)
    # The faults' own: writing behind, they are drawn in the writer thread.
    faults = random.Random(seed + 1)
    kernel = FakeDirect(monkeypatch)
    passthrough = kernel.write

    attempts = 0

    def failing(fd: int, data: memoryview) -> int:
        nonlocal attempts
        if kernel.direct(fd):
            attempts += 1
            roll = faults.random()
            if roll < 0.05:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            if roll < 0.10:
                return passthrough(
                    fd, data[: DIO_ALIGN * faults.randrange(0, len(data) // DIO_ALIGN + 1)]
                )
            if roll < 0.15:
                size = faults.randrange(1, len(data) + 1)
                flags = kernel.flags[fd]
                kernel.flags[fd] = 0  # as a kernel cutting a write short at a full disk
                try:
                    return passthrough(fd, data[:size])
                finally:
                    kernel.flags[fd] = flags
        return passthrough(fd, data)

    monkeypatch.setattr(durable.os, "write", failing)
    sizes = [0, 1, DIO_ALIGN - 1, DIO_ALIGN, DIO_ALIGN + 1, WRITE_SLICE - 1, WRITE_SLICE]
    sizes += [DIRECT_CHUNK - 1, DIRECT_CHUNK, DIRECT_CHUNK + 1, 2 * DIRECT_CHUNK + 3]
    expected = bytearray()
    path = tmp_path / "file"
    with NewFile(path, behind=behind) as target:
        for i in range(40):
            piece = os.urandom(rng.choice(sizes) if rng.random() < 0.5 else rng.randrange(70_000))
            assert target.write(piece) == len(piece)
            expected += piece
            if i > 20 and rng.random() < 0.1:  # flushing ends O_DIRECT: not too early
                target.flush()
                assert path.read_bytes() == expected
        target.finish()
    assert target.size == len(expected)
    assert path.read_bytes() == expected
    assert attempts  # the direct path ran


def test_a_disk_error_after_a_short_direct_write_is_raised_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lent buffer is still viewed by the failed write's traceback when it goes back: with
    # the spare buffers full, closing it would raise BufferError over the disk's error.
    kernel = FakeDirect(monkeypatch)
    # Full once the file has taken its buffer: the one it gives back is closed.
    spares = [durable._take_buffer() for _ in range(durable._MAX_SPARE_BUFFERS + 1)]
    monkeypatch.setattr(durable, "_SPARE_BUFFERS", spares)
    calls = 0

    def short_then_full(fd: int, data: memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first direct write stops unaligned: the disk is filling up
            kernel.flags[fd] = 0
            return kernel.write(fd, data[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable.os, "write", short_then_full)
    f = NewFile(tmp_path / "file")
    try:
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
            f.write(DATA)
    finally:
        f.close()


def _flushed_folders(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    flushed: list[Path] = []
    real = durable.fsync_dir

    def counting(directory: Path) -> None:
        flushed.append(directory)
        real(directory)

    monkeypatch.setattr(durable, "fsync_dir", counting)
    return flushed


def test_renames_gathered_flush_each_folder_once_after_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed = _flushed_folders(monkeypatch)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with durable.folder_flushes_gathered():
        for name in ("a/1", "a/2", "b/1", "a/3"):
            (tmp_path / f"{name}.tmp").write_text(name)
            durable.rename_durably(tmp_path / f"{name}.tmp", tmp_path / name)
            assert (tmp_path / name).read_text() == name  # renamed at once
        assert flushed == []
    assert flushed == [tmp_path / "a", tmp_path / "b"]
    # Outside the block, each rename flushes its folder again.
    (tmp_path / "a/4.tmp").write_text("4")
    durable.rename_durably(tmp_path / "a/4.tmp", tmp_path / "a/4")
    assert flushed[2:] == [tmp_path / "a"]


def test_every_gathered_folder_is_flushed_before_the_first_failure_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[Path] = []

    def first_fails(directory: Path) -> None:
        flushed.append(directory)
        if len(flushed) == 1:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(durable, "fsync_dir", first_fails)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.tmp").write_text(name)

    def publish_both() -> None:
        with durable.folder_flushes_gathered():
            for name in ("a", "b"):
                durable.rename_durably(tmp_path / name / "1.tmp", tmp_path / name / "1")

    with pytest.raises(durable.FolderFlushError) as raised:
        publish_both()
    assert flushed == [tmp_path / "a", tmp_path / "b"]
    assert raised.value.folder == tmp_path / "a"
    assert raised.value.errno == errno.EIO


def test_renames_gathered_are_flushed_when_the_block_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed = _flushed_folders(monkeypatch)
    (tmp_path / "1.tmp").write_text("1")

    def publish_then_fail() -> None:
        with durable.folder_flushes_gathered():
            durable.rename_durably(tmp_path / "1.tmp", tmp_path / "1")
            raise RuntimeError("a later file failed")

    with pytest.raises(RuntimeError, match="later file"):
        publish_then_fail()
    assert flushed == [tmp_path]  # the file renamed before the failure is published
