"""The transport seam: how `OncHttp` sends one request and gets one response back.

`OncHttp` owns everything above the wire (politeness, retries, redirects, error typing,
redaction); a `Transport` only sends one request (method, URL, headers) and hands back the
status, the headers and a body to read in chunks. Production uses `AiohttpTransport`; tests
use `HandlerTransport`, which answers from a plain async function without a socket (the
model is httpx's MockTransport). Failures only a socket shows (resets, truncated bodies,
timeouts) stay tested against a loopback server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

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


class Transport(Protocol):
    """Sends one HTTP request; network failures are raised as aiohttp/OS/timeout errors."""

    def send(
        self, method: str, url: URL, headers: Mapping[str, str], *, streaming: bool
    ) -> AbstractAsyncContextManager[TransportResponse]:
        """The response to one request, open for reading inside the `async with`."""
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


class AiohttpTransport:
    """The production transport: one aiohttp session, created inside the running loop."""

    def __init__(
        self, options: ClientOptions, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.options = options
        self._session = session
        self._owns_session = session is None

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
        self, method: str, url: URL, headers: Mapping[str, str], *, streaming: bool
    ) -> AsyncIterator[TransportResponse]:
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
        self, method: str, url: URL, headers: Mapping[str, str], *, streaming: bool
    ) -> AsyncIterator[TransportResponse]:
        yield await self.handler(SentRequest(method, url, dict(headers)))

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""
