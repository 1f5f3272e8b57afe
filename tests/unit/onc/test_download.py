"""Archive downloads: atomic, verified, resumable with Range, safe names, disk errors typed."""

from __future__ import annotations

import asyncio
import errno
import functools
import gzip
import hashlib
import itertools
import os
import random
import stat
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from pipeline.durable import DIO_ALIGN
from pipeline.exceptions import OutputError
from pipeline.onc import OncClient
from pipeline.onc import download as download_module
from pipeline.onc.download import BULK_MIN_BYTES, FileDownload
from pipeline.onc.errors import OncIntegrityError
from pipeline.onc.options import ClientOptions
from tests.diskwrites import Write
from tests.downloads import download
from tests.unit.onc.scripted import Reply, ScriptedServer, ScriptedTransport

DOWNLOAD = "/api/archivefile/download"
NAME = "ICLISTENHF1560_20181005T000403.000Z-spect.mat"
# 102,400 bytes (25 blocks) with no period: a block written twice, dropped or out of order
# changes them.
CONTENT = random.Random(21).randbytes(102_400)


@pytest.fixture(autouse=True, params=[False, True], ids=["loop", "bulk"])
def bulk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test twice: the body read on the event loop (aiohttp), and as a bulk download
    (`http.client` in a worker thread; `HandlerTransport` bodies through
    `StaticResponse.readinto`)."""
    chosen: bool = request.param
    monkeypatch.setattr(sys.modules[__name__], "download", functools.partial(download, bulk=chosen))
    return chosen


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


def file_server(content: bytes, *, honour_range: bool = True, cut_at: int | None = None) -> Reply:
    """A reply serving `content`, optionally honouring Range, optionally dropping mid-body."""

    async def handle(request: web.Request) -> web.StreamResponse:
        start = 0
        header = request.headers.get("Range")
        status = 200
        headers = {}
        if header and honour_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(content) - start
        await response.prepare(request)
        body = content[start:]
        if cut_at is not None and start == 0:
            await response.write(body[:cut_at])
            await asyncio.sleep(0.05)  # let the client consume what was sent before the cut
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(body)
        await response.write_eof()
        return response

    return Reply(custom=handle)


def file_writes(
    monkeypatch: pytest.MonkeyPatch, hook: Callable[[memoryview, Callable[[memoryview], int]], int]
) -> Callable[[int, memoryview], int]:
    """Route every write() to a regular file through `hook(data, write)` (the disk as a test
    wants it), on both body paths; returns the real `os.write`."""
    real = os.write

    def routed(fd: int, data: memoryview) -> int:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return real(fd, data)
        return hook(data, lambda piece: real(fd, piece))

    monkeypatch.setattr(os, "write", routed)
    return real


def names(directory: Path) -> list[str]:
    """Every path below `directory`, relative, sorted."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def resolved(directory: Path, name: str) -> Path:
    return directory.resolve() / name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_plain_download_is_atomic_and_verified(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(DOWNLOAD, file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(
            onc, NAME, tmp_path, expected_size=len(CONTENT), expected_sha256=sha(CONTENT)
        )
    assert got.path == resolved(tmp_path, NAME)
    assert got.path.read_bytes() == CONTENT
    assert got.sha256 == sha(CONTENT)
    assert got.resumed_from == 0
    assert names(tmp_path) == [NAME]
    assert server.seen[0].query["filename"] == NAME


async def test_interrupted_download_resumes_with_range(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(DOWNLOAD, file_server(CONTENT, cut_at=40_000), file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert got.path.read_bytes() == CONTENT
    assert got.resumed_from > 0
    assert "Range" not in server.seen[0].headers
    assert server.seen[1].headers["Range"] == f"bytes={got.resumed_from}-"


async def test_partial_file_from_an_earlier_process_is_rehashed_and_resumed(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / f".{NAME}.part").write_bytes(CONTENT[:12_345])
    server.add(DOWNLOAD, file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert got.resumed_from == 12_345
    assert got.sha256 == sha(CONTENT)
    assert server.seen[0].headers["Range"] == "bytes=12345-"


async def test_server_ignoring_range_restarts_cleanly(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / f".{NAME}.part").write_bytes(b"garbage that is not a prefix")
    server.add(DOWNLOAD, file_server(CONTENT, honour_range=False))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path)
    assert got.resumed_from == 0
    assert got.path.read_bytes() == CONTENT


async def test_checksum_mismatch_never_leaves_a_final_file(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(DOWNLOAD, file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url, max_attempts=2)) as onc:
        with pytest.raises(OncIntegrityError, match="sha256"):
            await download(onc, NAME, tmp_path, expected_sha256="0" * 64)
    assert names(tmp_path) == []  # corrupt temp file removed, no final file
    assert server.count(DOWNLOAD) == 2


@pytest.mark.parametrize("bad", ["../escape.mat", "/etc/passwd", "a/b.mat", "x\x00.mat", ".."])
async def test_unsafe_names_write_nothing_and_send_nothing(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    bad: str,
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OutputError) as info:
            await download(onc, bad, dest)
    assert repr(bad) in str(info.value)
    assert server.seen == []
    assert names(tmp_path) == ["dest"]


async def test_disk_full_is_an_output_error_and_keeps_the_part_file(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = 0

    def full_after_two_blocks(data: memoryview, write: Callable[[memoryview], int]) -> int:
        # A disk with room for 8 KiB: the write that fills it is cut short, as the kernel
        # does (page cache or direct), and the next one fails.
        nonlocal written
        if written >= 8192:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done = write(data[: 8192 - written])
        written += done
        return done

    real = file_writes(monkeypatch, full_after_two_blocks)
    server.add(DOWNLOAD, file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        with pytest.raises(OutputError, match="disk full") as info:
            await download(onc, NAME, tmp_path)
    part = resolved(tmp_path, f".{NAME}.part")
    assert info.value.path == str(part)
    assert part.read_bytes() == CONTENT[:written]
    assert not (tmp_path / NAME).exists()
    # Space comes back: the next call resumes from the kept prefix.
    monkeypatch.setattr(os, "write", real)
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert got.resumed_from == written
    assert got.path.read_bytes() == CONTENT


async def test_a_write_failing_once_leaves_a_prefix_that_resumes_to_the_body(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The second write to the file fails (EIO), slowly, while later batches queue up behind
    # it: none of them may be written after it, or the file would have a hole that a resume
    # (archive files are checked by size only) would publish.
    writes = 0

    def failing_once(data: memoryview, write: Callable[[memoryview], int]) -> int:
        nonlocal writes
        writes += 1
        if writes == 2:
            time.sleep(0.1)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return write(data)

    file_writes(monkeypatch, failing_once)
    server.add(DOWNLOAD, file_server(CONTENT), file_server(CONTENT))
    options = options_factory(base_url=server.url, chunk_size=16_384)
    async with OncClient(options) as onc:
        with pytest.raises(OutputError, match="Input/output error"):
            await download(onc, NAME, tmp_path)
    held = resolved(tmp_path, f".{NAME}.part").read_bytes()
    assert held == CONTENT[: len(held)]
    assert len(held) < len(CONTENT)
    async with OncClient(options) as onc:
        got = await download(onc, NAME, tmp_path, expected_size=len(CONTENT))
    assert got.resumed_from == len(held)
    assert got.path.read_bytes() == CONTENT


async def test_wrong_content_range_restarts_from_zero(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / f".{NAME}.part").write_bytes(CONTENT[:100])

    async def wrong_range(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=206,
            body=CONTENT[50:],
            headers={"Content-Range": f"bytes 50-{len(CONTENT) - 1}/*"},
        )

    server.add(DOWNLOAD, Reply(custom=wrong_range), file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path)
    assert got.path.read_bytes() == CONTENT
    assert "Range" not in server.seen[1].headers


async def test_fsync_and_rename_happen_after_the_request_slot_is_free(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = "ICLISTENHF1560_20181005T000903.000Z-spect.mat"
    server.add(DOWNLOAD, file_server(CONTENT), file_server(CONTENT[::-1]))
    real_fsync = download_module.fsync_file
    entered, release = threading.Event(), threading.Event()

    def slow_fsync(path: Path) -> None:
        if path.name == f".{NAME}.part":
            entered.set()
            assert release.wait(10)
        real_fsync(path)

    monkeypatch.setattr(download_module, "fsync_file", slow_fsync)
    async with OncClient(options_factory(base_url=server.url, max_concurrency=1)) as onc:
        first = asyncio.create_task(download(onc, NAME, tmp_path))
        assert await asyncio.to_thread(entered.wait, 10)
        # The first file waits for its fsync, yet the only request slot is already free.
        second = await asyncio.wait_for(download(onc, other, tmp_path), 10)
        assert not first.done()
        assert (tmp_path / f".{NAME}.part").read_bytes() == CONTENT
        assert not (tmp_path / NAME).exists()
        release.set()
        got = await first
    assert got.path.read_bytes() == CONTENT
    assert second.path.read_bytes() == CONTENT[::-1]
    assert names(tmp_path) == sorted([NAME, other])


async def test_writeback_is_started_for_every_byte_written_through_the_page_cache_once(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bulk: bool,
    writes: list[Write],
    kernel_direct: bool,
) -> None:
    direct = bulk and kernel_direct
    (tmp_path / f".{NAME}.part").write_bytes(CONTENT[:10_000])
    ranges: list[tuple[int, int]] = []
    monkeypatch.setattr(
        download_module, "start_writeback", lambda fd, offset, n: ranges.append((offset, n))
    )
    server.add(DOWNLOAD, file_server(CONTENT))
    writes.clear()
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert got.resumed_from == 10_000
    # The ranges tile the bytes this download wrote through the page cache, in order, from
    # where it resumed.
    assert ranges[0][0] == 10_000
    for (offset, n), (after, _) in itertools.pairwise(ranges):
        assert offset + n == after
    assert sum(n for _, n in ranges) == sum(w.size for w in writes if not w.direct)
    if direct:
        # A bulk download: up to the block boundary through the page cache, then whole
        # blocks around it (CONTENT ends on a block boundary), which need no writeback.
        assert ranges == [(10_000, -10_000 % DIO_ALIGN)]
        assert [w.direct for w in writes] == [False] + [True] * (len(writes) - 1)
    else:
        assert len(ranges) > 1  # batch by batch, not once at the end
        assert ranges[-1][0] + ranges[-1][1] == len(CONTENT)


async def test_big_chunks_are_written_in_slices_of_64_kib_or_in_blocks_directly(
    options_factory: Callable[..., ClientOptions],
    tmp_path: Path,
    bulk: bool,
    writes: list[Write],
    kernel_direct: bool,
) -> None:
    # One 1 MiB read of a body held in memory: a single chunk far bigger than a slice.
    content = bytes(range(251)) * 4000  # 1,004,000 bytes, no period of 64 KiB
    direct = bulk and kernel_direct
    scripted = ScriptedTransport()
    scripted.add(DOWNLOAD, Reply(body=content))
    options = options_factory(base_url=scripted.url, chunk_size=1 << 20)
    writes.clear()
    async with OncClient(options, transport=scripted.transport) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(content))
    assert got.path.read_bytes() == content
    sizes = [w.size for w in writes]
    if direct:
        # A bulk download's whole blocks in one direct write, the partial last block after.
        tail = len(content) % DIO_ALIGN
        assert writes == [Write(len(content) - tail, True), Write(tail, False)]
    else:
        slices = [64 * 1024] * (len(content) // (64 * 1024))
        assert sizes == [*slices, len(content) % (64 * 1024)]


async def test_a_chunked_body_arrives_whole_through_every_read_size(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    # HTTP chunks of every size, empty writes among them: aiohttp marks each chunk's end,
    # and pieces longer than a read are split across reads.
    sizes = [1, 4095, 4096, 4097, 70_000, 0, 23_211]
    content = bytes(range(256)) * (sum(sizes) // 256) + bytes(sum(sizes) % 256)
    assert len(content) == sum(sizes)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        offset = 0
        for size in sizes:
            await response.write(content[offset : offset + size])
            offset += size
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    for chunk_size in (1024, 4096, 1 << 20):
        server.add(DOWNLOAD, Reply(custom=chunked))
        dest = tmp_path / str(chunk_size)
        dest.mkdir()
        options = options_factory(base_url=server.url, chunk_size=chunk_size)
        async with OncClient(options) as onc:
            got = await download(onc, NAME, dest, expected_sha256=sha(content))
        assert got.path.read_bytes() == content
    assert server.count(DOWNLOAD) == 3  # one attempt each: no short body was retried


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_coded_body_is_stored_decoded(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    coding: str,
) -> None:
    # A server that codes the body although the request did not ask for it (the bulk path
    # asks for identity): both paths store the bytes, not their coding. Chunked, without a
    # Content-Length (which would be the coded size, and fail the size check on both paths).
    content = os.urandom(50_000) + bytes(400_000)  # compresses ~8x: several coded reads
    coded = gzip.compress(content) if coding == "gzip" else zlib.compress(content)

    async def coded_reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": coding})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(coded), 7_000):
            await response.write(coded[start : start + 7_000])
        await response.write_eof()
        return response

    server.add(DOWNLOAD, Reply(custom=coded_reply))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(content))
    assert got.path.read_bytes() == content
    assert server.count(DOWNLOAD) == 1


async def test_a_coded_body_that_does_not_decode_is_retried(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
) -> None:
    # A gzip header, then bytes no decoder accepts: on both paths a retried network error
    # (aiohttp's ClientPayloadError), not a raw zlib.error that fails the download at once.
    corrupt = b"\x1f\x8b" + b"x" * 18

    async def corrupt_reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(corrupt)
        await response.write_eof()
        return response

    server.add(DOWNLOAD, Reply(custom=corrupt_reply), Reply(body=CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert got.path.read_bytes() == CONTENT
    assert server.count(DOWNLOAD) == 2


def test_start_writeback_is_a_harmless_hint(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    read_end, write_end = os.pipe()
    try:
        os.write(fd, CONTENT)
        download_module.start_writeback(fd, 0, len(CONTENT))
        download_module.start_writeback(fd, 0, 0)
        download_module.start_writeback(write_end, 0, 10)  # a pipe: ESPIPE, ignored
        os.fsync(fd)
    finally:
        for each in (fd, read_end, write_end):
            os.close(each)
    assert path.read_bytes() == CONTENT


async def test_a_cancelled_download_waits_for_its_queued_writes(
    options_factory: Callable[..., ClientOptions],
    server: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = threading.Event()
    events: list[str] = []

    def slow_write(data: memoryview, write: Callable[[memoryview], int]) -> int:
        started.set()
        time.sleep(0.02)  # a slow disk: several batches queue up behind this one
        try:
            done = write(data)
        except OSError as exc:  # EBADF if the file were closed under the writer
            events.append(f"error {exc}")
            raise
        events.append("write")
        return done

    file_writes(monkeypatch, slow_write)
    server.add(DOWNLOAD, file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        task = asyncio.create_task(download(onc, NAME, tmp_path))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        await asyncio.sleep(0.01)
        task.cancel()  # again, while it waits for its writes (a shutdown's second cancel)
        with pytest.raises(asyncio.CancelledError):
            await task
        events.append("cancelled")
        await asyncio.sleep(0.3)  # time for any write still running to show up
    # Every write queued before the cancel finished before the download gave up its file.
    assert events[-1] == "cancelled"
    assert not [e for e in events if e.startswith("error")]
    assert events.count("write") >= 1
    part = resolved(tmp_path, f".{NAME}.part")
    kept = part.read_bytes()
    assert kept == CONTENT[: len(kept)]
    assert not (tmp_path / NAME).exists()


async def test_a_whole_part_file_answered_416_is_verified_not_refetched(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / f".{NAME}.part").write_bytes(CONTENT)

    async def unsatisfiable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(CONTENT)}"})

    server.add(DOWNLOAD, Reply(custom=unsatisfiable))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert server.seen[0].headers["Range"] == f"bytes={len(CONTENT)}-"
    assert server.count(DOWNLOAD) == 1
    assert got.path.read_bytes() == CONTENT
    assert got.resumed_from == len(CONTENT)
    assert names(tmp_path) == [NAME]


async def test_a_whole_part_file_that_fails_its_checksum_is_downloaded_again(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / f".{NAME}.part").write_bytes(CONTENT[::-1])  # the right size, wrong bytes

    async def unsatisfiable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(CONTENT)}"})

    server.add(DOWNLOAD, Reply(custom=unsatisfiable), file_server(CONTENT))
    async with OncClient(options_factory(base_url=server.url)) as onc:
        got = await download(onc, NAME, tmp_path, expected_sha256=sha(CONTENT))
    assert got.path.read_bytes() == CONTENT
    assert got.resumed_from == 0
    assert "Range" not in server.seen[1].headers


def test_files_announced_as_big_are_bulk_downloads(tmp_path: Path) -> None:
    assert FileDownload(tmp_path, name=NAME, expected_size=BULK_MIN_BYTES).bulk
    assert not FileDownload(tmp_path, name=NAME, expected_size=BULK_MIN_BYTES - 1).bulk
    assert not FileDownload(tmp_path, name=NAME).bulk  # size unknown
    assert not FileDownload(tmp_path, name=NAME, expected_size=1 << 40, bulk=False).bulk
    assert FileDownload(tmp_path, name=NAME, expected_size=1, bulk=True).bulk
