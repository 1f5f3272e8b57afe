"""The transport seam: how `OncHttp` sends one request and gets one response back.

`OncHttp` owns everything above the wire (politeness, retries, redirects, error typing,
redaction); a `Transport` only sends one request (method, URL, headers) and hands back the
status, the headers and a body to read in chunks. Production uses `AiohttpTransport`; tests
use `HandlerTransport`, which answers from a plain async function without a socket (the
model is httpx's MockTransport). Failures only a socket shows (resets, truncated bodies,
timeouts) stay tested against a loopback server.

Big files (`bulk=True`) leave aiohttp: `AiohttpTransport` sends those requests with the
standard library's blocking `http.client` in a worker thread, and the body is read with
`readinto` straight into the caller's buffers from that thread (`BlockingBody`). aiohttp's
path copies every body byte once more on the event loop (its parser makes a new `bytes` of
each piece) and wakes the loop for every piece: CPU time that a download on few cores
cannot spare (docs/dev/archive-downloads.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from yarl import URL

from pipeline.onc.options import ClientOptions


class TransportResponse(Protocol):
    """One response: status and headers at once, the body read in chunks."""

    @property
    def status(self) -> int:
        """The HTTP status code."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers (case-insensitive lookup in both implementations)."""
        ...

    async def read(self, n: int) -> bytes:
        """Up to `n` body bytes; `b""` at the end of the body."""
        ...

    def blocking_body(self) -> BlockingBody:
        """The body to read from a worker thread (`bulk` requests read it this way)."""
        ...


class BlockingBody(Protocol):
    """A body read from a worker thread, into the caller's buffers.

    Network failures are raised as `read` raises them (aiohttp, OS and timeout errors); a
    body that fails to decode (a corrupt gzip or deflate coding) as aiohttp raises it, an
    `aiohttp.ClientPayloadError`.
    """

    def readinto(self, buffer: memoryview) -> int:
        """Fill a prefix of `buffer` with the next body bytes (blocking); 0 at the end."""
        ...

    def interrupt(self) -> None:
        """From the event loop: make a `readinto` blocked in another thread fail soon."""
        ...


class Transport(Protocol):
    """Sends one HTTP request; network failures are raised as aiohttp/OS/timeout errors."""

    def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        *,
        streaming: bool,
        bulk: bool = False,
    ) -> AbstractAsyncContextManager[TransportResponse]:
        """The response to one request, open for reading inside the `async with`.

        `streaming`: a body read in pieces, without a total timeout. `bulk`: a big body to be
        read through `blocking_body()` (implies streaming).
        """
        ...

    async def open(self) -> None:
        """Get ready inside the running loop (aiohttp makes its session there)."""
        ...

    async def close(self) -> None:
        """Release connections (a no-op where there are none)."""
        ...


class _AiohttpResponse:
    """Adapts `aiohttp.ClientResponse` to `TransportResponse`.

    `read` hands over the pieces aiohttp buffered as they are (`readchunk`), not
    `StreamReader.read(n)`, which joins every piece it holds (up to n bytes) into a new
    buffer: on a fast download that copied most of the body once more, on the event loop.
    A piece longer than n is handed over in parts.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._rest = b""  # what is left of the last piece when it was longer than n

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self, n: int) -> bytes:
        if not self._rest:
            while True:
                piece, end_of_http_chunk = await self._response.content.readchunk()
                # (b"", True) only marks the end of a chunk of a chunked body; (b"", False)
                # is the end of the body.
                if piece or not end_of_http_chunk:
                    break
            self._rest = piece
        # Slicing a bytes object whole returns it as it is: no copy unless it is split.
        piece, self._rest = self._rest[:n], self._rest[n:]
        return piece

    def blocking_body(self) -> BlockingBody:
        # Only a `bulk` request's body is read from a thread (`_ThreadedResponse`): aiohttp's
        # reads belong to the loop, and handing them to a thread would add a copy and a trip
        # to the loop per read.
        raise TypeError("send the request with bulk=True to read its body from a thread")


class _ThreadedResponse:
    """A response of `http.client` on its own connection (`bulk` requests); closed after use.

    `blocking_body().readinto` is called from one worker thread; `read` (an error body) runs
    there too, and `aclose` interrupts and waits for a `read` still running (a cancelled
    caller) before it closes the connection. Its failures are raised as the aiohttp path
    raises them, so `OncHttp` types them the same way: a body cut short of its
    Content-Length (or whose coding does not decode) is `aiohttp.ClientPayloadError`,
    anything else the socket raises (resets, timeouts, TLS errors) a `ConnectionError` or
    `TimeoutError` carrying no URL. A gzip or deflate Content-Encoding is decoded, as aiohttp
    decodes it (`_Decoded`), although the request asks for none (`Accept-Encoding: identity`).
    """

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._connection = connection
        self._response = response
        self._executor = executor
        self._headers = _Caseless(dict(response.getheaders()))
        self._interrupted = threading.Event()
        self._reading: asyncio.Future[int] | None = None  # the last `read`'s worker-thread part
        # Body bytes still due by Content-Length: http.client's `readinto` returns 0, not
        # an error, when the connection closes before them.
        length = self._headers.get("Content-Length") or ""
        chunked = "chunked" in (self._headers.get("Transfer-Encoding") or "").lower()
        self._due = int(length) if length.isdigit() and not chunked else None
        coding = (self._headers.get("Content-Encoding") or "").strip().lower()
        self._body: BlockingBody = self
        if coding in ("gzip", "x-gzip", "deflate"):
            self._body = _Decoded(self, coding)

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def read(self, n: int) -> bytes:
        buffer = bytearray(n)
        loop = asyncio.get_running_loop()
        self._reading = loop.run_in_executor(
            self._executor, self._body.readinto, memoryview(buffer)
        )
        # Shielded: a cancelled caller leaves the thread's read running; `aclose` ends it.
        got = await asyncio.shield(self._reading)
        return bytes(buffer[:got])

    def blocking_body(self) -> BlockingBody:
        return self._body

    def readinto(self, buffer: memoryview) -> int:
        try:
            got = self._response.readinto(buffer)
        except http.client.IncompleteRead as exc:
            raise aiohttp.ClientPayloadError(
                f"body ended {exc.expected} bytes short of its Content-Length"
            ) from None
        except TimeoutError:
            raise TimeoutError("no body bytes within the read timeout") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: http.client reading from a connection closed under it (interrupt).
            if self._interrupted.is_set():
                raise ConnectionAbortedError("body read interrupted") from None
            raise _connection_error(exc) from None
        if not got and self._interrupted.is_set():
            raise ConnectionAbortedError("body read interrupted")
        if self._due is not None:
            if not got and self._due and len(buffer):
                raise aiohttp.ClientPayloadError(
                    f"body ended {self._due} bytes short of its Content-Length"
                )
            self._due -= got
        return got

    def interrupt(self) -> None:
        self._interrupted.set()
        sock = self._connection.sock
        if sock is not None:
            # shutdown, not close: the reading thread still holds the descriptor, and a
            # closed one could be reused meanwhile. The plain socket method, so TLS does not
            # try to send a close_notify from this thread.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    async def aclose(self) -> None:
        """Close the connection, after ending a `read` that a cancelled caller left running.

        Closing under a running read would not stop it: `close` waits for the lock the
        reading thread holds in `recv`, blocking the event loop up to `read_timeout`.
        """
        reading = self._reading
        try:
            if reading is not None and not reading.done():
                self.interrupt()
                await _wait_out(reading)
        finally:
            if reading is not None and reading.done() and not reading.cancelled():
                reading.exception()  # retrieved: its caller has gone, and so has its error
            self._connection.close()


async def _wait_out(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done, even when cancelled meanwhile (then raise the cancel).

    For a thread's future whose thread still uses something the caller is about to release.
    """
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])  # never raises the future's own error
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class _Decoded:
    """A gzip- or zlib-coded body decoded on the way (`zlib` sizes each output to the buffer,
    so a highly compressed body cannot blow up memory).

    A coding that does not decode is `aiohttp.ClientPayloadError`, as aiohttp raises it
    (its `ContentEncodingError`, "Can not decode content-encoding", is one): OncHttp retries
    it like a truncated body.
    """

    def __init__(self, raw: BlockingBody, coding: str) -> None:
        self._raw = raw
        self._coding = coding
        self._decoder = zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)  # gzip or zlib header
        self._input = memoryview(bytearray(1 << 18))
        self._tail = b""  # coded input the last call left undecoded

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._decode_into(buffer)
        except zlib.error:
            raise aiohttp.ClientPayloadError(
                f"Can not decode content-encoding: {self._coding}"
            ) from None

    def _decode_into(self, buffer: memoryview) -> int:
        while True:
            if self._tail:
                data = self._decoder.decompress(self._tail, len(buffer))
            elif self._decoder.eof:
                return 0
            else:
                got = self._raw.readinto(self._input)
                if not got:
                    raise aiohttp.ClientPayloadError("coded body ended before its end")
                data = self._decoder.decompress(self._input[:got], len(buffer))
            self._tail = self._decoder.unconsumed_tail
            if data:
                buffer[: len(data)] = data
                return len(data)

    def interrupt(self) -> None:
        self._raw.interrupt()


def _connection_error(exc: BaseException) -> ConnectionError:
    """A ConnectionError for any failure of the threaded client (OncHttp retries those)."""
    if isinstance(exc, ConnectionError):
        return type(exc)(exc.errno, exc.strerror) if exc.errno else type(exc)(str(exc))
    return ConnectionError(f"{type(exc).__name__}: {exc}")


class _ThreadedClient:
    """Sends `bulk` requests with `http.client`, each on a new connection, in worker threads.

    TLS is verified as aiohttp verifies it (the default context: system CAs, host name).
    `connect_timeout` bounds connecting (TCP, then TLS), `read_timeout` every socket read
    after that (the headers, then each `readinto`): the same bounds as aiohttp's
    `sock_connect` and `sock_read`, and no total timeout. Neither bounds the DNS look-up
    before connecting (`getaddrinfo`, as long as the system resolver takes; aiohttp bounds
    it only by its `connect` and total timeouts, which streamed requests do not set), and a
    cancelled request waits for it. No proxy, as the aiohttp session (`trust_env=False`).
    """

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._tls: ssl.SSLContext | None = None
        self._executor: ThreadPoolExecutor | None = None  # made on first use, dropped on close

    @asynccontextmanager
    async def send(
        self, method: str, url: URL, headers: Mapping[str, str]
    ) -> AsyncIterator[TransportResponse]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max(4, 2 * self.options.max_concurrency), thread_name_prefix="onc-bulk-http"
            )
        executor = self._executor
        connection = self._connection(url)
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(
            executor, self._request, connection, method, url, dict(headers)
        )
        try:
            response = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Wake the thread and wait for it, so no request is left running behind a
            # cancelled caller. Once connected, shutting the socket down ends a blocked send
            # or wait for the headers at once. Before (no socket yet) the wait is longer: a
            # connect ends within connect_timeout, but the DNS look-up before it
            # (getaddrinfo) has no bound of ours and lasts until the system resolver gives
            # up (resolv.conf's timeout and attempts).
            with contextlib.suppress(OSError):
                if connection.sock is not None:
                    socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)
            try:
                await _wait_out(opening)
            finally:
                if not opening.cancelled():
                    opening.exception()  # retrieved: the caller has gone, and so has its error
                connection.close()
            raise
        except BaseException:
            connection.close()
            raise
        reply = _ThreadedResponse(connection, response, executor)
        try:
            yield reply
        finally:
            await reply.aclose()

    def _connection(self, url: URL) -> http.client.HTTPConnection:
        host, port = url.raw_host or "", url.port
        timeout = self.options.connect_timeout
        if url.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _request(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        url: URL,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self.options.read_timeout)
            headers.setdefault("User-Agent", self.options.user_agent)
            # http.client asks for Accept-Encoding: identity: the bytes as stored.
            connection.request(method, url.raw_path_qs, headers=headers)
            return connection.getresponse()
        except TimeoutError:
            raise TimeoutError("no answer within the connect or read timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _connection_error(exc) from None

    def close(self) -> None:
        """Let the worker threads end once idle (the requests using them are over)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class AiohttpTransport:
    """The production transport: one aiohttp session, created inside the running loop.

    `bulk` requests go through `_ThreadedClient` instead, never through the session (nor a
    session passed in): same options, timeouts and TLS verification, own connections.
    """

    def __init__(
        self, options: ClientOptions, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.options = options
        self._session = session
        self._owns_session = session is None
        self._threaded = _ThreadedClient(options)

    async def open(self) -> None:
        """Create the session inside the running loop."""
        self.session()

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use (it must be created inside a running loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=max(4, 2 * self.options.max_concurrency),
                ttl_dns_cache=300,
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.options.user_agent},
                raise_for_status=False,
                trust_env=False,
                # Bigger socket reads: fewer wake-ups per MB on GB downloads and 30 MB pages.
                read_bufsize=1 << 20,
            )
            self._owns_session = True
        return self._session

    @asynccontextmanager
    async def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        *,
        streaming: bool,
        bulk: bool = False,
    ) -> AsyncIterator[TransportResponse]:
        if bulk:
            async with self._threaded.send(method, url, headers) as reply:
                yield reply
            return
        opts = self.options
        timeout = aiohttp.ClientTimeout(
            # A streamed file of several GB must not hit a total timeout; a stalled one still
            # fails through sock_read.
            total=None if streaming else opts.total_timeout,
            sock_connect=opts.connect_timeout,
            sock_read=opts.read_timeout,
        )
        async with self.session().request(
            method, url, headers=dict(headers) or None, timeout=timeout, allow_redirects=False
        ) as response:
            yield _AiohttpResponse(response)

    async def close(self) -> None:
        """Close the session if this object created it."""
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._session = None
        self._threaded.close()


@dataclass(frozen=True, slots=True)
class SentRequest:
    """What a `HandlerTransport` handler is given: the request as it would go on the wire."""

    method: str
    url: URL
    headers: Mapping[str, str]


@dataclass(slots=True)
class StaticResponse:
    """A whole response held in memory, read back in chunks like a streamed one."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    _offset: int = 0

    def __post_init__(self) -> None:
        # Header names are case-insensitive on the wire; look-ups here must be too.
        self.headers = _Caseless(self.headers)

    async def read(self, n: int) -> bytes:
        return self._take(n)

    def blocking_body(self) -> BlockingBody:
        return self

    def readinto(self, buffer: memoryview) -> int:
        """`read` into `buffer`, for a worker thread."""
        chunk = self._take(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def interrupt(self) -> None:
        """Nothing blocks."""

    def _take(self, n: int) -> bytes:
        chunk = self.body[self._offset : self._offset + n]
        self._offset += len(chunk)
        return chunk


class _Caseless(dict[str, str]):
    """A header map with case-insensitive `get` and `[]`."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__((k.lower(), v) for k, v in headers.items())

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


RequestHandler = Callable[[SentRequest], Awaitable[StaticResponse]]


class HandlerTransport:
    """A transport that answers every request from `handler`, without any socket.

    The handler may raise what a network would (`aiohttp.ClientError`, `TimeoutError`,
    `ConnectionError`) to stand for a failed send.
    """

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    @asynccontextmanager
    async def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        *,
        streaming: bool,
        bulk: bool = False,
    ) -> AsyncIterator[TransportResponse]:
        yield await self.handler(SentRequest(method, url, dict(headers)))

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""
