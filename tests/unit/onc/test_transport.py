"""The bulk path of `AiohttpTransport` (http.client in worker threads): what it sends, how it
verifies TLS, and that closing the transport lets its threads go."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
from yarl import URL

from pipeline.onc.options import ClientOptions
from pipeline.onc.transport import AiohttpTransport
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


async def test_an_aiohttp_body_can_be_read_from_a_worker_thread(
    options_factory: Callable[..., ClientOptions], server: ScriptedServer
) -> None:
    content = bytes(range(256)) * 300
    server.add(DOWNLOAD, Reply(body=content))
    transport = AiohttpTransport(options_factory(base_url=server.url))
    async with transport.send("GET", URL(server.url + DOWNLOAD), {}, streaming=True) as reply:
        body = reply.blocking_body()

        def read_all() -> bytes:
            buffer = bytearray(10_000)
            parts = []
            while got := body.readinto(memoryview(buffer)):
                parts.append(bytes(buffer[:got]))
            return b"".join(parts)

        assert await asyncio.to_thread(read_all) == content
    await transport.close()
