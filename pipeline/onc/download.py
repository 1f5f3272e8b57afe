"""Streaming a response body into a file: bounded memory, verified, durable, atomic, resumable.

The body goes to `<dest>/.<name>.part` (hidden: ERDDAP's regexes never match it), chunk by
chunk, hashed with sha256 on the way. Only a complete, verified file is fsynced and renamed to
its final name, then the directory is fsynced. A partial `.part` file is resumed with
`Range: bytes=N-` when the server answers 206, and started over when it answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from pipeline.exceptions import OutputError
from pipeline.onc.errors import OncIntegrityError, OncSchemaError
from pipeline.onc.http import Exchange
from pipeline.onc.names import safe_path, temp_path

log = structlog.get_logger(__name__)

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_REHASH_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class DownloadedFile:
    """A file now durable at `path` under its final name."""

    path: Path
    size: int
    sha256: str
    resumed_from: int = 0  # bytes of an earlier partial file that were kept


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_error(exc: OSError, path: Path, action: str) -> OutputError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    kind = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system"}.get(
        exc.errno or 0, reason
    )
    return OutputError(f"cannot {action} {path}: {kind}", path=str(path))


class FileDownload:
    """One file to download, across retry attempts; `headers` and `handle` plug into OncHttp.

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
    ) -> None:
        if name is None and name_from is None:
            raise ValueError("give name or name_from")
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

    async def handle(self, exchange: Exchange) -> DownloadedFile:
        """Stream the response into the temp file, verify it and move it into place."""
        if self.final is None:
            assert self._name_from is not None
            self.final = safe_path(self.dest_dir, self._name_from(exchange))
        final = self.final
        part = temp_path(final)
        status = exchange.status
        if status == 416:
            # Our partial file is not a prefix the server recognises: start over.
            await asyncio.to_thread(_unlink, part)
            self._reset()
            raise OncIntegrityError("range not satisfiable; restarting download", url=exchange.url)
        offset, total = self._plan(exchange, part)
        started = time.monotonic()
        try:
            fd = await asyncio.to_thread(_open, part, offset)
        except OSError as exc:
            raise _disk_error(exc, part, "open") from exc
        try:
            if offset and self._hashed != offset:
                await asyncio.to_thread(self._rehash, fd, offset)
            elif not offset:
                self._reset()
            await self._stream(exchange, fd, part)
            transfer = time.monotonic() - started  # first body byte to last, hashed, written
            size = self._hashed
            await self._verify(size, total, part, exchange.url)
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                raise _disk_error(exc, part, "fsync") from exc
        finally:
            await asyncio.to_thread(os.close, fd)
        digest = self._hasher.hexdigest()
        try:
            await asyncio.to_thread(os.replace, part, final)
            await asyncio.to_thread(fsync_dir, final.parent)
        except OSError as exc:
            raise _disk_error(exc, final, "rename into") from exc
        log.info(
            "onc_file_downloaded",
            file=final.name,
            bytes=size,
            resumed_from=offset,
            sha256=digest,
            transfer_ms=round(transfer * 1000, 1),
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),  # with fsync and rename
        )
        return DownloadedFile(path=final, size=size, sha256=digest, resumed_from=offset)

    async def _stream(self, exchange: Exchange, fd: int, part: Path) -> None:
        # Socket reads return whatever is buffered (often 16-64 KiB); batching them up to
        # `chunk_size` keeps thread hand-offs few. While one batch is hashed and written in a
        # worker thread the next one is received: network and disk overlap. Memory holds at
        # most two batches; the chunks are handed over as they are, never copied.
        batch: list[bytes] = []
        size = 0
        pending: asyncio.Future[None] | None = None
        try:
            async for chunk in exchange.iter_chunks():
                batch.append(chunk)
                size += len(chunk)
                if size >= exchange.chunk_size:
                    if pending is not None:
                        # Shielded: a cancelled download must not close the file while a
                        # worker thread still writes to it.
                        await asyncio.shield(pending)
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(self._append_all, fd, batch, part)
                    )
                    batch, size = [], 0
        finally:
            # Whatever arrived before a failure is kept: a resume then starts after it.
            if pending is not None:
                await asyncio.shield(pending)
            if batch:
                await asyncio.shield(asyncio.to_thread(self._append_all, fd, batch, part))

    def _append_all(self, fd: int, chunks: list[bytes], part: Path) -> None:
        for chunk in chunks:
            self._append(fd, chunk, part)

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

    def _append(self, fd: int, chunk: bytes, part: Path) -> None:
        try:
            write_all(fd, chunk)
        except OSError as exc:
            # The temp file stays for a later resume: its hash state is now unknown, so the
            # next attempt re-reads the prefix (headers() asks for the bytes after it).
            self._hashed = -1
            raise _disk_error(exc, part, "write") from exc
        self._hasher.update(chunk)
        self._hashed += len(chunk)

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
