"""Streaming a response body into a file: bounded memory, verified, durable, atomic, resumable.

The body goes to `<dest>/.<name>.part` (hidden: ERDDAP's regexes never match it), chunk by
chunk, hashed with sha256 on the way. Only a complete, verified file is fsynced and renamed to
its final name, then the directory is fsynced. A partial `.part` file is resumed with
`Range: bytes=N-` when the server answers 206, and started over when it answers 200.

Two phases: `FileDownload.receive` reads the response into the verified temp file (it runs
while the request holds its concurrency slot); `StagedFile.publish` makes it durable and
renames it (no request involved, so callers run it after the slot is free). On Linux the
kernel is asked to start writing each batch that goes through the page cache out as soon as
it is written (sync_file_range), so the final fsync waits for the last batch only and dirty
memory stays bounded.

Two ways to move the body. Files of unknown or small size go through the event loop: it
receives aiohttp's pieces and batches them, one thread writes and another hashes
(`_BodySink`). Files the listing announces as big (`BULK_MIN_BYTES`) are sent as `bulk`
requests and poured by a worker thread (`_Pour`): it reads the body straight into a few
reusable page-aligned buffers and hashes each one, a second thread writes it, whole blocks
around the page cache (O_DIRECT), and the event loop only waits
(docs/dev/archive-downloads.md has the measurements).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import mmap
import os
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from pipeline.durable import (
    DIO_ALIGN,
    aligned_buffer,
    fsync_file,
    release_buffer,
    rename_durably,
    set_direct,
    write_all,
    write_direct,
)
from pipeline.exceptions import OutputError
from pipeline.onc.errors import OncIntegrityError, OncSchemaError
from pipeline.onc.http import Exchange
from pipeline.onc.names import safe_path, temp_path
from pipeline.onc.transport import BlockingBody

log = structlog.get_logger(__name__)

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)
_REHASH_CHUNK = 1 << 20
#: Files announced at least this big are `bulk` downloads (read in a worker thread). Smaller
#: ones stay on the aiohttp path, which reuses its connections: a bulk request opens its own
#: (TCP and TLS handshakes), a cost a file of a few MB would notice and a big one would not.
BULK_MIN_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class DownloadedFile:
    """A file now durable at `path` under its final name."""

    path: Path
    size: int
    sha256: str
    resumed_from: int = 0  # bytes of an earlier partial file that were kept


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A complete, verified temp file waiting to be made durable and renamed into place."""

    part: Path
    final: Path
    size: int
    sha256: str
    resumed_from: int
    started: float  # monotonic time the body started to arrive
    transfer_s: float  # first body byte to last, hashed and written

    async def publish(self) -> DownloadedFile:
        """fsync the temp file, rename it to its final name, fsync the folder."""
        try:
            await asyncio.to_thread(fsync_file, self.part)
        except OSError as exc:
            raise _disk_error(exc, self.part, "fsync") from exc
        try:
            await asyncio.to_thread(rename_durably, self.part, self.final)
        except OSError as exc:
            raise _disk_error(exc, self.final, "rename into") from exc
        log.info(
            "onc_file_downloaded",
            file=self.final.name,
            bytes=self.size,
            resumed_from=self.resumed_from,
            sha256=self.sha256,
            transfer_ms=round(self.transfer_s * 1000, 1),
            # With fsync and rename (and any wait for a thread between them).
            elapsed_ms=round((time.monotonic() - self.started) * 1000, 1),
        )
        return DownloadedFile(
            path=self.final, size=self.size, sha256=self.sha256, resumed_from=self.resumed_from
        )


def _disk_error(exc: OSError, path: Path, action: str) -> OutputError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    kind = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system"}.get(
        exc.errno or 0, reason
    )
    return OutputError(f"cannot {action} {path}: {kind}", path=str(path))


class FileDownload:
    """One file to download, across retry attempts; `headers` and `receive` plug into OncHttp.

    `name` may be None when the server names the file (Content-Disposition): `name_from` then
    extracts it from the response, and resuming is not possible across processes.
    """

    def __init__(
        self,
        dest_dir: Path,
        *,
        name: str | None = None,
        name_from: Callable[[Exchange], str] | None = None,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        resume: bool = True,
        bulk: bool | None = None,
    ) -> None:
        if name is None and name_from is None:
            raise ValueError("give name or name_from")
        #: Whether to send the request as `bulk` (None: when `expected_size` is big).
        self.bulk = (
            bulk
            if bulk is not None
            else expected_size is not None and expected_size >= BULK_MIN_BYTES
        )
        self.dest_dir = dest_dir
        self.final = safe_path(dest_dir, name) if name is not None else None
        self._name_from = name_from
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self.resume = resume and name is not None
        # The running hash of the bytes already in the temp file, kept across attempts so a
        # resume in the same process need not re-read the prefix from disk.
        self._hasher = hashlib.sha256()
        self._hashed = 0

    def headers(self) -> Mapping[str, str]:
        """Request headers for the next attempt: a Range when a partial file can be resumed."""
        if not self.resume or self.final is None:
            return {}
        try:
            have = temp_path(self.final).stat().st_size
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise _disk_error(exc, temp_path(self.final), "inspect") from exc
        return {"Range": f"bytes={have}-"} if have > 0 else {}

    async def receive(self, exchange: Exchange) -> StagedFile:
        """Stream the response into the temp file and verify it; `publish` the result."""
        if self.final is None:
            assert self._name_from is not None
            self.final = safe_path(self.dest_dir, self._name_from(exchange))
        final = self.final
        part = temp_path(final)
        status = exchange.status
        if status == 416:
            whole = await self._already_whole(exchange, part, final)
            if whole is not None:
                return whole
            # Our partial file is not a prefix the server recognises: start over.
            await asyncio.to_thread(_unlink, part)
            self._reset()
            raise OncIntegrityError("range not satisfiable; restarting download", url=exchange.url)
        offset, total = self._plan(exchange, part)
        started = time.monotonic()
        fd = await _open_part(part, offset)
        try:
            if offset and self._hashed != offset:
                await asyncio.to_thread(self._rehash, fd, offset)
            elif not offset:
                self._reset()
            if self.bulk:
                await self._pour(exchange, fd, part)
            else:
                await self._stream(exchange, fd, part)
            transfer = time.monotonic() - started
            await self._verify(self._hashed, total, part, exchange.url)
        finally:
            await asyncio.to_thread(os.close, fd)
        return StagedFile(
            part=part,
            final=final,
            size=self._hashed,
            sha256=self._hasher.hexdigest(),
            resumed_from=offset,
            started=started,
            transfer_s=transfer,
        )

    async def _already_whole(
        self, exchange: Exchange, part: Path, final: Path
    ) -> StagedFile | None:
        """The temp file, when an earlier attempt received all of it but stopped before
        publishing: the server's 416 names the full size (`Content-Range: bytes */N`, as
        RFC 9110 asks) and the file holds exactly N bytes. Verified as a download would be."""
        match = _UNSATISFIED_RANGE.match(exchange.response.headers.get("Content-Range", ""))
        if match is None:
            return None
        total = int(match.group(1))
        try:
            size = (await asyncio.to_thread(part.stat)).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _disk_error(exc, part, "inspect") from exc
        if size != total or size == 0:
            return None
        started = time.monotonic()
        fd = await _open_part(part, size)
        try:
            await asyncio.to_thread(self._rehash, fd, size)
        finally:
            await asyncio.to_thread(os.close, fd)
        await self._verify(self._hashed, total, part, exchange.url)
        return StagedFile(
            part=part,
            final=final,
            size=size,
            sha256=self._hasher.hexdigest(),
            resumed_from=size,
            started=started,
            transfer_s=0.0,
        )

    async def _stream(self, exchange: Exchange, fd: int, part: Path) -> None:
        # Socket reads return whatever is buffered (often 16-256 KiB); batching them up to
        # `chunk_size` keeps thread hand-offs few. Chunks are handed over as they are.
        sink = _BodySink(fd, part, self._hashed, self._hash_batch)
        batch: list[bytes] = []
        size = 0
        try:
            async for chunk in exchange.iter_chunks():
                batch.append(chunk)
                size += len(chunk)
                if size >= exchange.chunk_size:
                    full, batch, size = batch, [], 0
                    await sink.add(full)
        finally:
            try:
                # Whatever arrived before a failure is kept: a resume then starts after it.
                if batch:
                    sink.submit(batch)
                await sink.drain()
            finally:
                if sink.failed.is_set():
                    # The temp file stays for a later resume, but what it holds is unknown:
                    # the next attempt re-reads its prefix (headers() asks for the rest).
                    self._hashed = -1

    async def _pour(self, exchange: Exchange, fd: int, part: Path) -> None:
        """The body into the file by a `_Pour` in a worker thread; the loop only waits."""
        body = exchange.response.blocking_body()
        pour = _Pour(body, fd, part, self._hashed, exchange.chunk_size, self._hash_buffer)
        reader = ThreadPoolExecutor(1, thread_name_prefix="onc-download-pour")
        running = asyncio.get_running_loop().run_in_executor(reader, pour.run)
        cancelled = False
        try:
            while not running.done():
                try:
                    await asyncio.wait([running])  # never raises the pour's own error
                except asyncio.CancelledError:
                    # The thread still writes the file: stop its read, wait for it to end.
                    cancelled = True
                    body.interrupt()
        finally:
            reader.shutdown(wait=False)
            exchange.nbytes += pour.received
            if pour.failed:
                # What the file holds after a failed write is unknown (see `_stream`).
                self._hashed = -1
        if cancelled:
            # Retrieved, or asyncio logs "Future exception was never retrieved": the error
            # is only the interrupted read, and the file keeps what came before it.
            running.exception()
            raise asyncio.CancelledError
        running.result()  # the read or write error, if any

    def _hash_buffer(self, view: memoryview) -> None:
        self._hasher.update(view)
        self._hashed += len(view)

    def _hash_batch(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self._hasher.update(chunk)
            self._hashed += len(chunk)

    def _plan(self, exchange: Exchange, part: Path) -> tuple[int, int | None]:
        """(offset to write at, total size announced by the server or None)."""
        headers = exchange.response.headers
        if exchange.status == 206:
            match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
            have = part.stat().st_size if part.exists() else 0
            if not match or int(match.group(1)) != have:
                # Not the range we asked for: the safest answer is to start over.
                _unlink(part)
                self._reset()
                raise OncIntegrityError(
                    f"unexpected Content-Range {headers.get('Content-Range')!r} for {have} bytes",
                    url=exchange.url,
                )
            total = None if match.group(3) == "*" else int(match.group(3))
            return have, total
        if exchange.status != 200:
            raise OncSchemaError(
                f"unexpected HTTP {exchange.status} for a file download",
                url=exchange.url,
                status=exchange.status,
            )
        length = headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None

    def _reset(self) -> None:
        self._hasher = hashlib.sha256()
        self._hashed = 0

    def _rehash(self, fd: int, offset: int) -> None:
        # A partial file from an earlier process (or attempt): hash its prefix from disk.
        self._reset()
        os.lseek(fd, 0, os.SEEK_SET)
        while self._hashed < offset:
            block = os.read(fd, min(_REHASH_CHUNK, offset - self._hashed))
            if not block:
                break
            self._hasher.update(block)
            self._hashed += len(block)
        os.lseek(fd, offset, os.SEEK_SET)

    async def _verify(self, size: int, total: int | None, part: Path, url: str) -> None:
        problem = None
        if total is not None and size != total:
            problem = f"got {size} bytes, server announced {total}"
        elif self.expected_size is not None and size != self.expected_size:
            problem = f"got {size} bytes, expected {self.expected_size}"
        elif self.expected_sha256 and self._hasher.hexdigest() != self.expected_sha256:
            problem = f"sha256 {self._hasher.hexdigest()} != expected {self.expected_sha256}"
        if problem is None:
            return
        announced = total if total is not None else self.expected_size
        if announced is not None and size < announced and self._hashed >= 0:
            # Short but a correct prefix so far: keep it and resume.
            raise OncIntegrityError(f"incomplete download: {problem}", url=url)
        # A wrong size or checksum means the temp file is corrupt: remove it, start over.
        await asyncio.to_thread(_unlink, part)
        self._reset()
        raise OncIntegrityError(f"download failed verification: {problem}", url=url)


class _BodySink:
    """Appends a download's batches to its file and to its hash, in order, off the event loop.

    One thread writes (then starts the kernel's writeback), another hashes; each takes the
    batches in the order they came. Up to `depth` batches are on their way at once, so the
    network does not wait for any one write. After a failed write every later one is
    skipped: the file stays a prefix of the body. `drain` waits for every queued write,
    even when the caller is cancelled meanwhile: the file is never closed under a writer.
    """

    def __init__(
        self,
        fd: int,
        part: Path,
        position: int,
        hash_batch: Callable[[list[bytes]], None],
        depth: int = 4,
    ) -> None:
        self._fd = fd
        self._part = part
        self._position = position
        self._hash_batch = hash_batch
        self._depth = depth
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="onc-download-write")
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="onc-download-hash")
        self._pending: deque[tuple[asyncio.Future[None], asyncio.Future[None]]] = deque()
        self.failed = threading.Event()  # set by the first failed write

    def submit(self, batch: list[bytes]) -> None:
        """Queue `batch` for writing and hashing."""
        loop = asyncio.get_running_loop()
        size = sum(map(len, batch))
        write = loop.run_in_executor(self._writer, self._write, batch, self._position)
        hashing = loop.run_in_executor(self._hasher, self._hash_batch, batch)
        self._position += size
        self._pending.append((write, hashing))

    async def add(self, batch: list[bytes]) -> None:
        """Queue `batch`; wait while more than `depth` batches are on their way."""
        self.submit(batch)
        while len(self._pending) > self._depth:
            oldest = self._pending[0]
            # Shielded: a cancelled download still lets its queued writes finish (drain).
            await asyncio.shield(asyncio.gather(*oldest))  # a failed write raises here
            self._pending.popleft()

    async def drain(self) -> None:
        """Wait for every queued write and hash; then raise the first error, if any."""
        futures = [future for pair in self._pending for future in pair]
        everything = asyncio.gather(*futures, return_exceptions=True)
        cancelled = False
        while not everything.done():
            try:
                await asyncio.shield(everything)
            except asyncio.CancelledError:
                cancelled = True  # the threads still use the file: wait for them first
        self._pending.clear()
        self._writer.shutdown(wait=False)
        self._hasher.shutdown(wait=False)
        if cancelled:
            raise asyncio.CancelledError
        for result in everything.result():
            if isinstance(result, BaseException):
                raise result

    def _write(self, batch: list[bytes], position: int) -> None:
        if self.failed.is_set():
            return
        try:
            _write_batch(self._fd, batch, self._part, position)
        except BaseException:
            self.failed.set()
            raise


class _Pour:
    """Moves a `bulk` body into its file, run by one worker thread (`run`).

    That thread fills a buffer from the body (`readinto`, no other copy), hashes it while
    it is still in the CPU's caches, and hands it to a writing thread (through an
    `_Appender`), which gives it back once written. `depth` buffers of about `size` bytes go
    round, so receiving overlaps writing, and memory stays bounded. Bytes that arrived
    before a failed read are hashed and written too (a resume starts after them). After a
    failed write no later buffer is written and no new one is read (the one being read is
    finished and hashed), so the file stays a prefix of the body; `failed` says the hash no
    longer matches it. `run` returns when the writing thread is done with every buffer.

    The buffers are page-aligned and hold whole blocks, so the writing thread can send them
    to the disk around the page cache (docs/dev/archive-downloads.md, "Around the page
    cache"). Where the file does not end at a block boundary (a resumed `.part` file), the
    first fill stops at the next one.
    """

    def __init__(
        self,
        body: BlockingBody,
        fd: int,
        part: Path,
        position: int,
        size: int,
        hash_view: Callable[[memoryview], None],
        depth: int = 4,
    ) -> None:
        self._body = body
        self._part = part
        self._appender = _Appender(fd, position)
        # Whole blocks per buffer: a buffer ending inside a block would leave the next one
        # at an offset only the page cache can write at.
        self._size = max(DIO_ALIGN, size - size % DIO_ALIGN)
        self._hash_view = hash_view
        self._depth = depth
        self.received = 0
        self._write_error: BaseException | None = None

    @property
    def failed(self) -> bool:
        """Whether a write failed."""
        return self._write_error is not None

    def run(self) -> None:
        """Read, hash and write the whole body (blocking); raise the first error (a failed
        write before a failed read)."""
        buffers = [aligned_buffer(self._size) for _ in range(self._depth)]
        free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        for buffer in buffers:
            free.put(buffer)
        writing = ThreadPoolExecutor(1, thread_name_prefix="onc-download-write")

        def write(buffer: mmap.mmap, length: int) -> None:
            try:
                if self._write_error is None:
                    with memoryview(buffer) as view:
                        self._appender.append(view[:length])
            except OSError as exc:
                # Not chained (`from exc`): the OSError's traceback holds a view of the
                # buffer, which could then not be unmapped; its reason is in the message.
                self._write_error = _disk_error(exc, self._part, "write")
            except BaseException as exc:
                self._write_error = exc
            finally:
                free.put(buffer)  # even after a failure: the reader must never wait forever

        read_error: BaseException | None = None
        position = self._appender.position
        try:
            while read_error is None and self._write_error is None:
                buffer = free.get()
                # Up to the next block boundary first, where the file does not end at one.
                want = -position % DIO_ALIGN or self._size
                length, read_error = self._fill(buffer, want)
                if length:
                    with memoryview(buffer) as view:
                        self._hash_view(view[:length])
                    writing.submit(write, buffer, length)
                else:
                    free.put(buffer)
                position += length
                if length < want:
                    break  # the end of the body
        finally:
            writing.shutdown(wait=True)
            for buffer in buffers:
                release_buffer(buffer)
        if self._write_error is not None:
            raise self._write_error
        if read_error is not None:
            raise read_error

    def _fill(self, buffer: mmap.mmap, want: int) -> tuple[int, BaseException | None]:
        """Fill `buffer` with up to `want` bytes of the body: (bytes in it, the read's error
        if any)."""
        length = 0
        with memoryview(buffer) as view:
            while length < want:
                try:
                    got = self._body.readinto(view[length:want])
                except Exception as exc:  # a network error: keep what came before it
                    return length, exc
                if not got:
                    break
                length += got
                self.received += got
        return length, None


class _Appender:
    """Appends a bulk download's buffers to its file, in order, from one thread.

    Whole blocks at block offsets go to the disk directly (O_DIRECT), where the file system
    allows it: no page-cache pages are allocated for them, and they need no writeback of
    their own. The rest (the file's last partial block, a resumed file's first one,
    everything once O_DIRECT is refused or a direct write falls short) goes through the
    page cache, and its writeback is started at once, as `_BodySink` does.

    Bytes waiting in the page cache are flushed before a direct write follows them: a
    direct write that grows the file makes its new size durable with it, and after a power
    cut the file would otherwise be that long with a block before the new data never
    written (zeros a resume would take for the body).
    """

    def __init__(self, fd: int, position: int) -> None:
        self._fd = fd
        self.position = position  # the file offset of the next byte
        self._direct = False  # whether O_DIRECT is on for fd now
        self._refused = False  # O_DIRECT refused, or cut short: page cache from then on
        self._unflushed = False  # page-cache bytes written and not yet flushed

    def append(self, view: memoryview) -> None:
        """Write all of `view` (page-aligned memory) at `position`."""
        whole = 0 if self.position % DIO_ALIGN else len(view) - len(view) % DIO_ALIGN
        written = self._append_direct(view[:whole]) if whole and not self._refused else 0
        if written < len(view):
            if self._direct:
                self._direct = set_direct(self._fd, on=False)
            write_all(self._fd, view[written:])
            start_writeback(self._fd, self.position + written, len(view) - written)
            self._unflushed = True
        self.position += len(view)

    def _append_direct(self, view: memoryview) -> int:
        """Write `view` directly; the bytes written (0 where O_DIRECT is refused)."""
        if not self._direct:
            self._direct = set_direct(self._fd, on=True)
            self._refused = not self._direct
            if self._refused:
                return 0
        if self._unflushed:  # a resumed file's first partial block
            os.fdatasync(self._fd)
            self._unflushed = False
        left = write_direct(self._fd, view)
        if left:  # O_DIRECT is off now
            self._direct, self._refused = False, True
        return len(view) - left


def _write_batch(fd: int, batch: list[bytes], part: Path, position: int) -> None:
    """Write every chunk of `batch` at the end of `fd` (at `position`), then start writing it
    out to disk."""
    size = 0
    for chunk in batch:
        try:
            write_all(fd, chunk)
        except OSError as exc:
            raise _disk_error(exc, part, "write") from exc
        size += len(chunk)
    start_writeback(fd, position, size)


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range (Linux), or None where it does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writing dirty pages of the range out; do not wait


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing bytes [offset, offset + length) of `fd` to disk now.

    A hint, without waiting: the data is durable only after fsync, which then has little left
    to do. Does nothing where sync_file_range is missing; its errors (a file system that does
    not support it) are ignored, because fsync reports any real write error.
    """
    if _SYNC_FILE_RANGE is not None and length > 0:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


async def _open_part(part: Path, offset: int) -> int:
    """`_open` off the event loop; a failure is an OutputError naming the file and why."""
    try:
        return await asyncio.to_thread(_open, part, offset)
    except OSError as exc:
        raise _disk_error(exc, part, "open") from exc


def _open(part: Path, offset: int) -> int:
    # O_NOFOLLOW: a symlink planted under the temporary name is refused, never written through.
    if offset:
        # Read-write: the prefix may need re-hashing before we append to it.
        fd = os.open(part, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        os.lseek(fd, offset, os.SEEK_SET)
        return fd
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    return os.open(part, flags, 0o644)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
