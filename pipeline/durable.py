"""Durable files: fsync a file, fsync a folder, rename a finished file into place.

The last step of every atomic publish in the pipeline (output files, downloaded archive files,
product files): a complete temporary file is flushed to disk, renamed over its final name, and
the folder is flushed so the rename itself survives a power cut. A reader only ever sees a
final name holding a complete file.

Where many files are published together (a backfill's day of hourly JSON Lines files), their
folders are flushed once, after the last rename (`folder_flushes_gathered`).

A new file that is published whole (`NewFile`: output files, JSON Lines' streamed windows)
goes to the disk around the page cache (O_DIRECT) on a local block file system
(`set_direct`: never NFS, FUSE, tmpfs or a container's overlay layer), the last of it (under
64 KiB) through it; big archive downloads write their whole blocks the same way
(`set_direct`, `write_direct`). Other writes (small downloads, partial blocks, everything
where O_DIRECT is refused) go through the page cache by `write_all`: 64 KiB per `write()`
whatever the caller hands over (docs/dev/archive-downloads.md, "Page-cache writes: 64 KiB at
a time").
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import fcntl
import mmap
import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

# Bytes per write() into the page cache. Since Linux 6.16, ext4 sizes the page-cache
# folios a buffered write allocates by the write's length: one write of a whole socket buffer
# or a rendered block (256 KiB to a few MB) asks for high-order pages. Where those are dear (a
# VM whose host backs guest memory lazily, as on the benchmark machine) such writes often cost
# several times the kernel CPU of 64 KiB ones (docs/dev/archive-downloads.md). 64 KiB keeps
# the syscalls few (16 per MiB) where large folios are cheap.
WRITE_SLICE = 64 * 1024


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to `fd`, `WRITE_SLICE` bytes per write() (os.write may
    also write less than asked)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_SLICE):
        piece = view[start : start + WRITE_SLICE]
        while piece:
            written = os.write(fd, piece)
            if written <= 0:  # never for a regular file; a loop forever if it were
                raise OSError(errno.EIO, "write() wrote nothing")
            piece = piece[written:]


# O_DIRECT writes whole blocks of the device at block offsets, from memory aligned the same
# way. 4096 covers devices of 512- and 4096-byte blocks; a device that wants more refuses
# the write, and the file goes on through the page cache (`write_direct`).
DIO_ALIGN = 4096
# Bytes per direct write() of a `NewFile`: the size of the aligned buffers the data is copied
# into. (Bulk downloads write their own buffers, of the client's `chunk_size`.)
DIRECT_CHUNK = 1024 * 1024
# `O_DIRECT` where the platform has it (Linux); 0 elsewhere: every write is buffered.
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
# File systems on local block devices (their magic numbers, Linux's include/uapi/linux/magic.h),
# where O_DIRECT moves whole blocks between our buffer and the disk. Anywhere else the page
# cache stays: a network file system takes a direct write as a synchronous round trip the
# server is asked to make stable (open(2), NOTES: "Some servers will perform poorly under
# these circumstances"), FUSE passes it to a daemon, and tmpfs keeps its files in the page
# cache anyway. Only ext4 was measured (docs/dev/archive-downloads.md).
_DIRECT_FILE_SYSTEMS = frozenset(
    {
        0xEF53,  # ext2, ext3, ext4
        0x58465342,  # xfs
        0x9123683E,  # btrfs
        0xF2F52010,  # f2fs
        0x2FC12FC1,  # zfs
        0xCA451A4E,  # bcachefs
    }
)
# What a file system or device says when it does not do O_DIRECT (or not this way).
_REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})
# Direct writes at a process's writer thread (the one being written and those queued),
# every file writing behind together, before the next one waits for a place: a JSON Lines
# block of lines (2,048 rows of 8 sensors, 2.8 MB) fits, so rendering the next block
# overlaps its writes.
BEHIND_CHUNKS = 4
# Aligned buffers, lent to a file for one write() (or one queued write) and kept for the
# next: a fresh mapping is faulted in page by page, which costs what the page cache would
# have. Files hold none between calls (a window's JSON Lines files are open by the dozen at
# once); as many are kept as the writer thread holds, and the one being filled.
_SPARE_BUFFERS: list[mmap.mmap] = []
_SPARE_LOCK = threading.Lock()
_MAX_SPARE_BUFFERS = BEHIND_CHUNKS + 1


class NewFile:
    """A new file written front to back, then made durable (`finish`) and published.

    Whole blocks go to the disk with O_DIRECT, through a page-aligned buffer lent for each
    call: no page-cache pages are allocated for them. A published file is fsync'd before its
    rename, so its bytes reach the disk before it is published either way; through the page
    cache they were copied there first, into pages that must be allocated (and, on a VM
    whose host backs guest memory lazily, faulted in from the host: on the benchmark
    machine 1.3 GB took 2.5 s of kernel time through the page cache, 0.1 s around it;
    docs/dev/archive-downloads.md). Data waits in memory until there is at least
    `WRITE_SLICE` of it (many small writes, Arrow's, make few direct ones), and what waits
    at the end (under `WRITE_SLICE` bytes) is written through the page cache by `flush` or
    `finish`.

    Where O_DIRECT is refused or does not suit (`set_direct`: a file system not on a local
    block device, a platform without it) the file is written without it, and a direct write
    refused or cut short later (a device wanting another alignment, a disk filling up) turns
    it off for the rest of the file: every byte then goes through the page cache,
    `WRITE_SLICE` bytes per write().

    With `behind=True` the direct writes go to a writer thread (one per process, shared by
    every such file, in order): `write` returns once the data is copied into aligned
    buffers, and waits only while `BEHIND_CHUNKS` of them (the process's) are at the
    thread. A write that failed there (a full disk) raises from every later `write`,
    `flush` and `finish` of the file; `close` drops what is queued and waits for the write
    in progress before the descriptor goes. Only JSON Lines' streamed windows use it: 1.3 GB
    for a 10-stream, 2-day backfill, whose block-by-block waits on the disk the next block's
    rendering and hashing now overlap (BENCHMARKS.md, "Session 29").
    """

    def __init__(self, path: Path | str, *, behind: bool = False) -> None:
        # Writing behind: the direct writes handed to the writer thread, oldest first; the
        # first that failed (raised again by every later call); set by `close`: the queued
        # ones are dropped.
        self._queued: deque[Future[None]] | None = deque() if behind else None
        self._error: Exception | None = None
        self._closing = False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._fd = fd
        # A writer dropped without `close` (a bug) must not keep its descriptor.
        self._closer = weakref.finalize(self, os.close, fd)
        try:
            self._direct = set_direct(fd, on=True)
        except OSError:
            self.close()
            raise
        # Bytes not written yet: under `WRITE_SLICE` while direct, after its whole blocks.
        self._tail = bytearray()
        self.size = 0

    @property
    def direct(self) -> bool:
        """Whether whole blocks still bypass the page cache."""
        return self._direct

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of `data` (any buffer; counted in bytes); returns its length."""
        view = memoryview(data).cast("B")
        self._raise_failed()
        if not self._direct:
            # Direct writes were refused, perhaps in the writer thread: what it still holds
            # and the tail go first.
            self._drain()
            self._raise_failed()
            self._write_tail()
            write_all(self._fd, view)
        elif len(self._tail) + len(view) < WRITE_SLICE:
            self._tail += view
        else:
            self._write_blocks(view)
        self.size += len(view)
        return len(view)

    def _write_blocks(self, view: memoryview) -> None:
        """The tail, then `view`, through lent buffers: whole blocks written directly
        (`_put`), what is left of the last one kept as the new tail."""
        taken = 0
        while True:
            buffer = _take_buffer()
            filled = len(self._tail)
            buffer[:filled] = self._tail
            n = min(DIRECT_CHUNK - filled, len(view) - taken)
            buffer[filled : filled + n] = view[taken : taken + n]
            filled += n
            taken += n
            # A full buffer is whole blocks; the last one may end in a partial block.
            whole = filled - filled % DIO_ALIGN
            self._tail = bytearray(buffer[whole:filled])
            self._put(buffer, whole)
            if taken == len(view):
                return

    def _put(self, buffer: mmap.mmap, size: int) -> None:
        """Write `buffer[:size]` now, or hand it to the writer thread (`behind`)."""
        if self._queued is None or not size:
            self._write_chunk(buffer, size)
            return
        _behind_slots.acquire()
        try:
            self._queued.append(_writer().submit(self._write_chunk, buffer, size, True))
        except RuntimeError:  # no thread: the interpreter is shutting down, or none starts
            _behind_slots.release()
            self._drain()  # what the thread holds still goes first
            self._write_chunk(buffer, size)
            self._raise_failed()
            return
        except BaseException:
            _behind_slots.release()
            raise
        while self._queued and self._queued[0].done():
            self._queued.popleft()
        self._raise_failed()

    def _write_chunk(self, buffer: mmap.mmap, size: int, slot: bool = False) -> None:
        """Whole blocks from `buffer`, directly, or through the page cache once direct writes
        were refused; the buffer goes back to the spares. (The writer thread's work when
        writing behind: it holds the file, so the descriptor outlives what is queued. A
        failure is kept for the file's next call, its traceback dropped: it would hold this
        frame, and the file with it.)"""
        try:
            if self._closing or self._error is not None:
                return
            with memoryview(buffer) as lent:
                left = write_direct(self._fd, lent[:size]) if self._direct else size
                if left:
                    self._direct = False
                    write_all(self._fd, lent[size - left : size])
        except Exception as exc:
            if self._queued is None:
                raise
            self._error = exc.with_traceback(None)
        finally:
            _give_buffer(buffer)
            if slot:  # its place at the writer thread, taken by `_put`
                _behind_slots.release()

    def _drain(self) -> None:
        """Wait for what the writer thread holds of this file."""
        if self._queued:
            futures.wait(self._queued)
            self._queued.clear()

    def _raise_failed(self) -> None:
        if self._error is not None:
            # Raised afresh each time: a traceback kept would grow, and hold the file.
            raise self._error.with_traceback(None)

    def _write_tail(self) -> None:
        if self._tail:
            write_all(self._fd, self._tail)
            self._tail = bytearray()

    def flush(self) -> None:
        """Write what waits in memory (through the page cache), so the file holds every byte
        written: to read it back, or to finish it. Later writes go through the page cache."""
        self._drain()
        self._raise_failed()
        if self._direct:
            set_direct(self._fd, on=False)
            self._direct = False
        self._write_tail()

    def finish(self) -> None:
        """Write what waits in memory and flush the file to disk."""
        self.flush()
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file, finished or not: writes still queued behind are dropped, the one
        in progress is waited for (interrupted meanwhile, the descriptor goes with the file
        once the writer thread lets go of it)."""
        self._closing = True
        self._drain()
        self._closer()
        self._fd = -1  # a later call fails (EBADF), never writes into a reused descriptor

    def __enter__(self) -> NewFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def set_direct(fd: int, *, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; whether it is on afterwards. It is never turned on
    where the platform has no O_DIRECT, where the file system refuses it, or where it is not
    one of `_DIRECT_FILE_SYSTEMS`. Turning it off does not fail quietly: a descriptor left in
    O_DIRECT would refuse the unaligned writes that follow."""
    if not _O_DIRECT or (on and file_system_type(fd) not in _DIRECT_FILE_SYSTEMS):
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError:
        if not on:
            raise
        return False  # refused (EINVAL), or anything else: the page cache serves
    return on


def file_system_type(fd: int) -> int | None:
    """The magic number of the file system holding `fd` (statfs's `f_type`); None where it
    cannot be known (not Linux, or the call failed)."""
    if _FSTATFS is None:
        return None
    # The whole struct is 120 bytes on 64-bit ABIs, less on 32-bit ones.
    answer = ctypes.create_string_buffer(256)
    if _FSTATFS(fd, answer) != 0:
        return None
    return _F_TYPE.from_buffer(answer).value & 0xFFFFFFFF


def _fstatfs() -> Callable[[int, ctypes.Array[ctypes.c_char]], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # fstatfs64 where glibc has it: on 32-bit ABIs plain fstatfs fails (EOVERFLOW) on a
        # file system of more than 2**32 blocks. musl's fstatfs is the 64-bit one.
        function = getattr(libc, "fstatfs64", None) or libc.fstatfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p]
    function.restype = ctypes.c_int
    return function


_FSTATFS = _fstatfs()
# struct statfs(64) begins with f_type: a long on every Linux ABI but s390x's, where it is an
# unsigned int.
_F_TYPE: type[ctypes.c_uint32] | type[ctypes.c_ulong] = (
    ctypes.c_uint32 if os.uname().machine == "s390x" else ctypes.c_ulong
)


def write_direct(fd: int, view: memoryview) -> int:
    """Write all of `view` to `fd`, open with O_DIRECT at a block offset: whole blocks from
    memory aligned to `DIO_ALIGN` (`aligned_buffer`). Returns the bytes not written, from
    the end of `view`: all that remained when a write was refused or cut short (a device
    wanting another alignment, a disk filling up). O_DIRECT is then turned off for `fd`, and
    the caller writes them through the page cache (an unaligned file end takes buffered
    writes only)."""
    done = 0
    while done < len(view):
        try:
            written = os.write(fd, view[done:])
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise
            written = 0
        if written <= 0 or written % DIO_ALIGN:
            set_direct(fd, on=False)
            return len(view) - done - max(written, 0)
        done += written
    return 0


def aligned_buffer(size: int) -> mmap.mmap:
    """`size` bytes of page-aligned memory (aligned for `write_direct`)."""
    # Private: a process forked meanwhile gets its own copy, not the same pages.
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def release_buffer(buffer: mmap.mmap) -> None:
    """Unmap `buffer` now, or when the last view of it goes."""
    # A failed write's traceback may still hold a view of it: the mapping then goes when
    # the view does, and the write's own error is the one raised.
    with contextlib.suppress(BufferError):
        buffer.close()


def _writer() -> ThreadPoolExecutor:
    """The process's writer thread, started by the first file writing behind. Started here,
    not by its first chunk: a thread that cannot start (RuntimeError) would leave that chunk
    queued in the pool, to be written again, from a reused buffer, by the next start."""
    global _writer_pool
    with _SPARE_LOCK:
        if _writer_pool is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="direct-writes")
            pool.submit(int).result()  # what a failed start leaves queued is a no-op
            _writer_pool = pool
        return _writer_pool


_writer_pool: ThreadPoolExecutor | None = None
# Places at the writer thread, for every file writing behind (`BEHIND_CHUNKS`).
_behind_slots = threading.BoundedSemaphore(BEHIND_CHUNKS)


def _after_fork_in_child() -> None:
    """A forked process has none of its parent's threads: its own writer thread, locks and
    places (the parent's may have been held by the writer thread as it forked)."""
    global _writer_pool, _behind_slots, _SPARE_LOCK
    _writer_pool = None
    _behind_slots = threading.BoundedSemaphore(BEHIND_CHUNKS)
    _SPARE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _take_buffer() -> mmap.mmap:
    with _SPARE_LOCK:
        if _SPARE_BUFFERS:
            return _SPARE_BUFFERS.pop()
    return aligned_buffer(DIRECT_CHUNK)


def _give_buffer(buffer: mmap.mmap) -> None:
    with _SPARE_LOCK:
        if len(_SPARE_BUFFERS) < _MAX_SPARE_BUFFERS:
            _SPARE_BUFFERS.append(buffer)
            return
    release_buffer(buffer)


def fsync_file(path: Path) -> None:
    """Flush a closed (or still open) file's data to disk; a symlink is refused, not followed."""
    _fsync(path, os.O_NOFOLLOW)


def fsync_dir(directory: Path) -> None:
    """Flush a folder, so a rename or unlink inside it survives a power cut."""
    _fsync(directory, getattr(os, "O_DIRECTORY", 0))


def rename_durably(temporary: Path, final: Path) -> None:
    """Rename `temporary` over `final` (atomic on POSIX) and flush the folder holding it (at
    the end of the enclosing `folder_flushes_gathered`, if any)."""
    os.replace(temporary, final)
    gathered = _gathered_folders.get()
    if gathered is None:
        fsync_dir(final.parent)
    else:
        gathered.add(final.parent)


# The folders whose flush `folder_flushes_gathered` owes, in the context that opened it.
_gathered_folders: contextvars.ContextVar[set[Path] | None] = contextvars.ContextVar(
    "gathered_folders", default=None
)


class FolderFlushError(OSError):
    """A folder `folder_flushes_gathered` renamed files in could not be flushed: those renames
    may not survive a power cut."""

    def __init__(self, folder: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(folder))
        self.folder = folder


@contextlib.contextmanager
def folder_flushes_gathered() -> Iterator[None]:
    """Within: `rename_durably` renames at once, and each folder it renamed in is flushed
    once, on the way out, whether the block ended or raised (what it renamed before a
    failure is published too). A build publishing a day of hourly files into one folder
    flushes it once, not 24 times: each flush is a journal commit the other writers wait on.

    Until the block ends, a file renamed in it is not durable: callers record the files only
    after it. Every folder is flushed even when one fails; the first failure is then raised
    as a `FolderFlushError` (an error the block raised stays its `__context__`). The block
    must be synchronous: a task or thread it starts that renames after it ends would add to
    a set no one flushes.
    """
    gathered: set[Path] = set()
    token = _gathered_folders.set(gathered)
    try:
        yield
    finally:
        _gathered_folders.reset(token)
        failed: FolderFlushError | None = None
        for folder in sorted(gathered):
            try:
                fsync_dir(folder)
            except OSError as exc:
                failed = failed or FolderFlushError(folder, exc)
        if failed is not None:
            raise failed


def _fsync(path: Path, flags: int) -> None:
    # fsync flushes the file whichever descriptor names it: a fresh read-only one will do.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
