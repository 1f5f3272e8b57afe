"""Reading a reply body over a real socket: Content-Length present, absent or lying, the size
limit, a connection cut mid-body, and the body held in memory once.

The server writes every reply byte for byte (`RawServer`), so headers can announce what the
body does not bring, which aiohttp's own server refuses to send.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import ujson

from pipeline.onc.errors import OncNetworkError
from pipeline.onc.http import Exchange, OncHttp
from pipeline.onc.options import ClientOptions

PATH = "/api/scalardata/location"
Write = Callable[[asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback HTTP/1.1 server answering every request with `write`, then closing."""

    def __init__(self, write: Write) -> None:
        self.write = write
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await self.write(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def head(status: int = 200, *, close: bool = True, **headers: str | int) -> bytes:
    """A status line and headers (`Content_Length` -> `Content-Length`); with `close`, the
    connection ends with the reply (without, aiohttp keeps it, bytes past the body too)."""
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
    lines += ["Connection: close"] if close else []
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def write_slowly(writer: asyncio.StreamWriter, data: bytes, piece: int = 1 << 16) -> None:
    """`data` in pieces, each sent before the next: the server holds no copy of it."""
    view = memoryview(data)
    for start in range(0, len(data), piece):
        writer.write(view[start : start + piece])
        await writer.drain()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Write], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(write: Write) -> RawServer:
        server = RawServer(write)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def big_page(size: int) -> bytes:
    """A JSON document of about `size` bytes."""
    values = ",".join(["12.3456"] * (size // 8))
    return b'{"values": [' + values.encode() + b"]}"


async def read_raw(
    http: OncHttp, limit: int | None = None, *, traced: bool = False
) -> tuple[bytes, int]:
    """The body as `read_body` returns it, and the peak of Python memory while it was read."""

    async def handle(exchange: Exchange) -> tuple[bytes, int]:
        if traced:
            tracemalloc.start()
        try:
            body = await exchange.read_body(limit)
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
        finally:
            if traced:
                tracemalloc.stop()
        return body, peak

    return await http.request(PATH, {}, handle)


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_a_big_body_is_held_once_whatever_its_framing(
    options_factory: Callable[..., ClientOptions],
    serve: Callable[[Write], Awaitable[RawServer]],
    framing: str,
) -> None:
    body = big_page(16 << 20)

    async def write(writer: asyncio.StreamWriter) -> None:
        if framing == "content-length":
            writer.write(head(Content_Length=len(body)))
            await write_slowly(writer, body)
        elif framing == "chunked":
            writer.write(head(Transfer_Encoding="chunked"))
            for start in range(0, len(body), 1 << 18):
                piece = body[start : start + (1 << 18)]
                writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(head())
            await write_slowly(writer, body)

    server = await serve(write)
    options = options_factory(base_url=server.url, max_attempts=1, chunk_size=1 << 20)
    async with OncHttp(options) as http:
        received, peak = await read_raw(http, traced=True)
    assert received == body
    # Chunks plus their join held the body twice at the end of the read; one buffer filled
    # as chunks arrive holds it once, plus what aiohttp buffers ahead (a few MB).
    assert peak < 1.4 * len(body)


async def test_the_limit_bounds_what_is_read_even_when_more_is_announced(
    options_factory: Callable[..., ClientOptions],
    serve: Callable[[Write], Awaitable[RawServer]],
) -> None:
    body = big_page(1 << 20)

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=len(body)))
        await write_slowly(writer, body)

    server = await serve(write)
    options = options_factory(base_url=server.url, max_attempts=1, chunk_size=4096)
    async with OncHttp(options) as http:
        received, _ = await read_raw(http, limit=10_000)
    # Reading stops at the first chunk past the limit; what came is the body's start.
    assert 10_000 < len(received) <= 10_000 + 4096
    assert body.startswith(received)


async def test_a_body_shorter_than_announced_is_a_retried_network_failure(
    options_factory: Callable[..., ClientOptions],
    serve: Callable[[Write], Awaitable[RawServer]],
) -> None:
    body = ujson.dumps({"values": list(range(1000))}).encode()

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=len(body) + 100) + body)
        await writer.drain()

    server = await serve(write)
    async with OncHttp(options_factory(base_url=server.url, max_attempts=2)) as http:
        with pytest.raises(OncNetworkError, match="network failure"):
            await http.get_json(PATH, {})
    assert server.requests == 2


@pytest.mark.parametrize("announced", [21, 10])
async def test_a_body_longer_than_announced_is_a_retried_network_failure(
    options_factory: Callable[..., ClientOptions],
    serve: Callable[[Write], Awaitable[RawServer]],
    announced: int,
) -> None:
    """aiohttp reads the bytes past the announced length as the next reply's status line and
    fails the exchange: the reply is tried again, never decoded from a part of itself."""
    body = b'{"values": [1, 2, 3]}  and more'

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(head(close=False, Content_Length=announced) + body)
        await writer.drain()

    server = await serve(write)
    async with OncHttp(options_factory(base_url=server.url, max_attempts=2)) as http:
        with pytest.raises(OncNetworkError, match="network failure"):
            await http.get_json(PATH, {})
    assert server.requests == 2


async def test_a_compressed_body_decodes_past_its_announced_length(
    options_factory: Callable[..., ClientOptions],
    serve: Callable[[Write], Awaitable[RawServer]],
) -> None:
    data = {"values": [1.5] * 50_000}
    packed = gzip.compress(ujson.dumps(data).encode())

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=len(packed), Content_Encoding="gzip") + packed)
        await writer.drain()

    server = await serve(write)
    async with OncHttp(options_factory(base_url=server.url, max_attempts=1)) as http:
        reply = await http.get_json(PATH, {})
    assert reply.data == data


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_connection_reset_mid_body_is_a_retried_network_failure(
    options_factory: Callable[..., ClientOptions],
    serve: Callable[[Write], Awaitable[RawServer]],
    framing: str,
) -> None:
    body = big_page(4 << 20)

    async def write(writer: asyncio.StreamWriter) -> None:
        if framing == "content-length":
            writer.write(head(Content_Length=len(body)))
            await write_slowly(writer, body[: 1 << 20])
        else:
            writer.write(head(Transfer_Encoding="chunked"))
            writer.write(b"%x\r\n" % len(body) + body[: 1 << 20])
            await writer.drain()
        writer.transport.abort()

    server = await serve(write)
    async with OncHttp(options_factory(base_url=server.url, max_attempts=2)) as http:
        with pytest.raises(OncNetworkError, match="network failure") as info:
            await http.get_json(PATH, {})
    assert server.requests == 2
    assert info.value.__cause__ is None
