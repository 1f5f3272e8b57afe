"""The bulk path of `AiohttpTransport` (http.client in worker threads): what it sends, how it
verifies TLS, and that closing the transport lets its threads go."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from yarl import URL

from pipeline.onc.options import ClientOptions
from pipeline.onc.transport import AiohttpTransport
from tests.unit.onc.recording import loop_errors
from tests.unit.onc.scripted import Reply, ScriptedServer

DOWNLOAD = "/api/archivefile/download"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


async def test_a_bulk_request_sends_our_headers_and_asks_for_the_bytes_as_stored(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    server.add(DOWNLOAD, Reply(body=b"x" * 10_000))
    options = options_factory(base_url=server.url, user_agent="test-agent/1")
    transport = AiohttpTransport(options)
    url = URL(server.url + DOWNLOAD).with_query({"filename": "f.mp4", "token": "secret"})
    async with transport.send("GET", url, {"Range": "bytes=5-"}, streaming=True, bulk=True) as r:
        assert r.status == 200
        assert r.headers["content-length"] == "10000"
        assert await r.read(1 << 20) == b"x" * 10_000
        assert await r.read(1 << 20) == b""
    await transport.close()
    (seen,) = server.seen
    assert seen.headers["User-Agent"] == "test-agent/1"
    assert seen.headers["Range"] == "bytes=5-"
    assert seen.headers["Accept-Encoding"] == "identity"
    assert seen.query["filename"] == "f.mp4"


def test_bulk_requests_verify_tls_like_aiohttp(
    options_factory: Callable[..., ClientOptions],
) -> None:
    transport = AiohttpTransport(options_factory(base_url="https://data.oceannetworks.ca"))
    connection = transport._threaded._connection(URL("https://data.oceannetworks.ca/api/x"))
    context: ssl.SSLContext = connection._context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert connection.port == 443


async def test_only_a_bulk_body_is_read_from_a_thread(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    server.add(DOWNLOAD, Reply(body=b"x" * 100))
    transport = AiohttpTransport(options_factory(base_url=server.url))
    async with transport.send("GET", URL(server.url + DOWNLOAD), {}, streaming=True) as reply:
        with pytest.raises(TypeError, match="bulk=True"):
            reply.blocking_body()
    await transport.close()


def stalled(status: int, sent: bytes, release: asyncio.Event) -> Reply:
    """A reply that sends its headers and `sent` of a 1,000-byte body, then stalls until
    `release` is set (the server runs in the test's loop)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(sent)
        await release.wait()
        return response

    return Reply(custom=handle)


async def cancel_and_count_ticks(task: asyncio.Task[object]) -> int:
    """Cancel `task` and count how often another task ran until it ended: 0 when the cancel
    was handled in one blocking step (the loop could run nothing else meanwhile)."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while not task.done():
            ticks += 1
            await asyncio.sleep(0)

    task.cancel()
    beat = asyncio.create_task(heartbeat())  # runs right after the task's first step
    await ends_cancelled(task)
    await beat
    return ticks


async def cancel(task: asyncio.Task[object]) -> None:
    """Cancel `task` and wait for it to end cancelled."""
    task.cancel()
    await ends_cancelled(task)


async def ends_cancelled(task: asyncio.Task[object]) -> None:
    """Wait for `task` to end cancelled (without keeping its traceback: that would keep its
    futures alive past `loop_errors`'s look)."""
    try:
        await task
    except asyncio.CancelledError:
        return
    raise AssertionError("the task was not cancelled")


async def test_cancelling_a_bulk_read_of_an_error_body_leaves_the_loop_free(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    # The worker thread blocks in recv, holding the socket file's lock. Closing the
    # connection under it used to wait for that lock on the loop, until read_timeout.
    release = asyncio.Event()
    server.add(DOWNLOAD, stalled(500, b'{"message": ', release))
    transport = AiohttpTransport(options_factory(base_url=server.url, read_timeout=3.0))
    read_started = asyncio.Event()

    async def read_error_body() -> object:
        url = URL(server.url + DOWNLOAD)
        async with transport.send("GET", url, {}, streaming=True, bulk=True) as reply:
            assert reply.status == 500
            read_started.set()
            return await reply.read(1 << 20)  # blocks: 12 of 1,000 bytes came

    async with loop_errors() as errors:
        task = asyncio.create_task(read_error_body())
        await read_started.wait()
        await asyncio.sleep(0.2)  # the thread is in recv by now (not a measurement)
        ticks = await cancel_and_count_ticks(task)
        del task
    release.set()
    await transport.close()
    assert ticks > 0
    assert errors == []  # the interrupted read's error was retrieved


async def test_cancelling_a_bulk_request_waiting_for_its_headers_logs_nothing(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.Response(body=b"late")

    server.add(DOWNLOAD, Reply(custom=silent))
    transport = AiohttpTransport(options_factory(base_url=server.url))

    async def request() -> object:
        url = URL(server.url + DOWNLOAD)
        async with transport.send("GET", url, {}, streaming=True, bulk=True) as reply:
            return reply.status

    async with loop_errors() as errors:
        task = asyncio.create_task(request())
        await arrived.wait()
        await cancel(task)
        del task  # with it, the last reference to the request's thread future
    release.set()
    await transport.close()
    # The request's thread failed once its socket was shut down; that error was retrieved.
    assert errors == []
