"""The HTTP layer: one session, timeouts, politeness, retries, error typing, redaction, metrics.

Every request to the Oceans API goes through `OncHttp.request`. It is the only place that
knows the token: the token is appended to the query string sent on the wire and nowhere else;
every URL it hands out (errors, logs, metrics) is redacted.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, TypeVar, Unpack, runtime_checkable

import aiohttp
import structlog
from yarl import URL

from pipeline.backoff import parse_retry_after
from pipeline.exceptions import OncAuthError, OncError, OncRequestError, OncUnavailable
from pipeline.lifecycle import Facade
from pipeline.onc.buffers import BodyBuffers
from pipeline.onc.errors import OncIntegrityError, OncMalformedReply, OncNetworkError
from pipeline.onc.metrics import NoopMetrics, OncMetrics
from pipeline.onc.options import ClientOptions
from pipeline.onc.parsing import decode_json, error_details, error_message
from pipeline.onc.politeness import LocalLimiter, RequestLimiter
from pipeline.onc.retry import RetryState
from pipeline.onc.transport import AiohttpTransport, Transport, TransportResponse
from pipeline.redaction import REDACTED, redact_text

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Error bodies are small; never read more than this of one into memory.
_MAX_ERROR_BODY = 1 << 20
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# The official clients follow redirects (`requests`' default); nothing shows ONC sending one
# today. Followed by hand, so the token never leaves the configured origin.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass(slots=True)
class Exchange:
    """One HTTP attempt handed to a response handler: the response plus redacted context."""

    response: TransportResponse
    endpoint: str
    url: str  # redacted
    chunk_size: int
    buffers: BodyBuffers
    nbytes: int = 0

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self.response.status

    async def read_body(self, limit: int | None = None) -> bytes:
        """The whole body (bounded by `limit` if given); network failures become OncUnavailable.

        Chunks are copied into one buffer as they arrive and dropped, and the buffer becomes
        the returned bytes without another copy (`BytesIO.getvalue` hands over its buffer when
        it is exactly full): a reply is in memory once, not as chunks plus their join. The
        buffer grows as bytes arrive rather than being sized from Content-Length up front:
        filling it ahead would make each reply in flight resident at its full size from its
        first byte, and the header is only a hint anyway (a compressed reply decodes to more
        bytes than it announces). Growing a big block is a remap, not a copy, with the mmap
        threshold `pipeline.allocator` sets.
        """
        buffer = io.BytesIO()
        async for chunk in self.iter_chunks():
            buffer.write(chunk)
            if limit is not None and self.nbytes > limit:
                break
        return buffer.getvalue()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body in chunks of at most `chunk_size` bytes."""
        while True:
            try:
                chunk = await self.response.read(self.chunk_size)
            except _NETWORK_ERRORS as exc:
                raise _network_error(exc, self.url, self.status) from None
            if not chunk:
                return
            self.nbytes += len(chunk)
            yield chunk

    async def json(self, decode: Decoder = decode_json) -> Any:
        """The body decoded as (non-strict) JSON, by `decode`.

        A `StreamingDecoder` (scalardata pages) is fed the body chunk by chunk and decodes
        it as it arrives: the page is never in memory whole. Any other decoder gets the whole
        body, read into a buffer used again for the next reply (`BodyBuffers`): a big
        reply written into fresh memory costs a page fault every 4 KiB, several times the
        copy itself. Chunks overwrite what the buffer held and it is cut to the body's size,
        which keeps its memory unless the body is under half of it. A body of one chunk (a
        discovery answer, an error, a near-real-time poll) is decoded from that chunk: it
        would otherwise take the buffer and cut it to its own size, giving back the memory
        the next page needs.

        The buffer is given back only after a decode that returned: one that raised may
        leave a view of it in its traceback, and a buffer with a view cannot be resized.
        """
        chunks = self.iter_chunks()
        first = await anext(chunks, b"")
        second = await anext(chunks, None)
        if second is None:
            return decode(first, url=self.url, status=self.status)
        if isinstance(decode, StreamingDecoder):
            stream = decode.stream(url=self.url, status=self.status)
            stream.feed(first)
            stream.feed(second)
            del first, second
            async for chunk in chunks:
                stream.feed(chunk)
            return stream.finish()
        buffer = self.buffers.take()
        size = 0
        for chunk in (first, second):
            buffer[size : size + len(chunk)] = chunk
            size += len(chunk)
        del first, second
        async for chunk in chunks:
            buffer[size : size + len(chunk)] = chunk
            size += len(chunk)
        del buffer[size:]
        decoded = decode(buffer, url=self.url, status=self.status)
        self.buffers.give(buffer)
        return decoded


@dataclass(frozen=True, slots=True)
class JsonReply:
    """A decoded JSON reply with the status it came with (202 vs 200 matters to products)."""

    status: int
    data: Any
    url: str  # redacted


Handler = Callable[[Exchange], Awaitable[T]]


class Decoder(Protocol):
    """Bytes to JSON data, raising OncMalformedReply on a body that is not usable JSON.

    A bytearray body is a reused buffer (`BodyBuffers`): the data returned must not hold it
    or a view of it.
    """

    def __call__(self, body: bytes | bytearray, *, url: str, status: int | None = None) -> Any: ...


class BodyStream(Protocol):
    """A body decoded as its chunks arrive: `feed` each, then `finish` for the data (raising
    OncMalformedReply as a `Decoder` would)."""

    def feed(self, chunk: bytes | bytearray) -> None: ...

    def finish(self) -> Any: ...


@runtime_checkable
class StreamingDecoder(Decoder, Protocol):
    """A `Decoder` that can also take a body chunk by chunk: a reply of more than one chunk
    is then never held whole (`ScalarDataDecoder`)."""

    def stream(self, *, url: str, status: int | None = None) -> BodyStream: ...


def _network_error(exc: BaseException, url: str, status: int | None = None) -> OncNetworkError:
    # The original exception is summarised (redacted), not chained: aiohttp exceptions may
    # embed the request URL, token included, and chained causes end up in tracebacks.
    detail = redact_text(str(exc)) or type(exc).__name__
    return OncNetworkError(
        f"network failure: {type(exc).__name__}: {detail}", url=url, status=status
    )


def _retry_reason(exc: OncUnavailable) -> str:
    """A short, bounded label for metrics: `network`, `malformed`, `integrity` or `status_N`."""
    if isinstance(exc, OncNetworkError):
        return "network"
    if isinstance(exc, OncMalformedReply):
        return "malformed"
    if isinstance(exc, OncIntegrityError):
        return "integrity"
    return f"status_{exc.status}" if exc.status else "unavailable"


class HttpParts(TypedDict, total=False):
    """What the HTTP layer is built from besides its options, each with a default: the
    request `limiter` (a local one from the options), `metrics` (none), the aiohttp `session`
    (made in the loop on open; one passed in stays open on close) and the `transport` (aiohttp
    on that session; tests pass their own)."""

    limiter: RequestLimiter | None
    metrics: OncMetrics | None
    session: aiohttp.ClientSession | None
    transport: Transport | None


class OncHttp(Facade):
    """Sends every request politely, with retries, through one `Transport`.

    One instance per process (per `OncClient`). The limiter is shared by every caller; the
    concurrency slot is held for one attempt only and released while sleeping before a retry.
    `async with http:` opens the transport, and closes it.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        rng: random.Random | None = None,
        **parts: Unpack[HttpParts],
    ) -> None:
        self.options = options
        self.limiter: RequestLimiter = parts.get("limiter") or LocalLimiter(
            options.max_concurrency, options.max_rate_per_s, burst=options.rate_burst
        )
        self.metrics: OncMetrics = parts.get("metrics") or NoopMetrics()
        self.transport: Transport = parts.get("transport") or AiohttpTransport(
            options, session=parts.get("session")
        )
        super().__init__(self.transport)
        self._rng = rng or random.Random()
        self._base = URL(options.base_url.rstrip("/"))
        # One spare buffer: replies are decoded one at a time on the loop, and the biggest
        # buffer given back serves the next reply of more than one chunk. Keeping one per
        # concurrent request saved few more faults and held each one's full size between
        # pages, which raised a backfill's peak memory (docs/dev/memory.md).
        self.buffers = BodyBuffers(keep=1)

    def __repr__(self) -> str:
        return f"OncHttp(base_url={self.options.base_url!r}, limiter={self.limiter!r})"

    # ------------------------------------------------------------------ URLs

    def wire_url(self, endpoint: str, params: Mapping[str, str]) -> URL:
        """The URL actually sent: our base, `endpoint`, `params` and the token."""
        query = [(k, v) for k, v in params.items() if k.lower() != "token"]
        query.append(("token", self.options.token))
        return self._base.with_path(self._base.path.rstrip("/") + endpoint).with_query(query)

    def display_url(self, endpoint: str, params: Mapping[str, str]) -> str:
        """The same URL with `token=REDACTED`: the only form that may be logged or stored."""
        query = [(k, v) for k, v in params.items() if k.lower() != "token"]
        query.append(("token", REDACTED))
        url = self._base.with_path(self._base.path.rstrip("/") + endpoint).with_query(query)
        return str(url)

    def redirect_target(self, current: URL, location: str) -> URL:
        """Where a redirect leads: the token only ever goes to the configured origin.

        Another scheme, host or port gets the Location without any `token` parameter (a
        careless server may copy the whole query into it); our own origin gets our token.
        """
        target = current.join(URL(location))
        query = [(k, v) for k, v in target.query.items() if k.lower() != "token"]
        base = self._base
        if (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port):
            query.append(("token", self.options.token))
        return target.with_query(query)

    # ------------------------------------------------------------------ requests

    async def get_json(
        self,
        endpoint: str,
        params: Mapping[str, str],
        *,
        passthrough: frozenset[int] = frozenset(),
        decode: Decoder = decode_json,
        urgent: bool = False,
    ) -> JsonReply:
        """GET `endpoint` and decode its JSON body with `decode` (inside the attempt, so a
        body that does not decode is retried); statuses in `passthrough` are not errors;
        `urgent` asks the limiter for the next free slot (`RequestLimiter.slot`)."""

        async def handle(exchange: Exchange) -> JsonReply:
            if exchange.status == 204:
                return JsonReply(204, None, exchange.url)
            return JsonReply(exchange.status, await exchange.json(decode), exchange.url)

        return await self.request(endpoint, params, handle, passthrough=passthrough, urgent=urgent)

    async def request(
        self,
        endpoint: str,
        params: Mapping[str, str],
        handler: Handler[T],
        *,
        passthrough: frozenset[int] = frozenset(),
        headers: Callable[[], Mapping[str, str]] | None = None,
        streaming: bool = False,
        bulk: bool = False,
        urgent: bool = False,
    ) -> T:
        """Send GET `endpoint` with retries; `handler` reads each successful response.

        2xx replies and statuses in `passthrough` go to `handler`; others become typed errors.
        `OncUnavailable` from the send, the status or the handler (truncated body, reset)
        triggers a retry: `headers` is called again per attempt (e.g. to send `Range`).
        `streaming` and `bulk` are passed to the transport (`Transport.send`), `urgent` to
        the limiter (`RequestLimiter.slot`).
        """
        state = RetryState(self.options, rng=self._rng)
        url = self.display_url(endpoint, params)
        while True:
            try:
                async with self.limiter.slot(urgent=urgent):
                    return await self._attempt(
                        endpoint, params, handler, passthrough, headers, (streaming, bulk), url
                    )
            except OncUnavailable as exc:
                delay = state.next_delay(exc)
                reason = _retry_reason(exc)
                if delay is None:
                    log.warning(
                        "onc_request_gave_up",
                        endpoint=endpoint,
                        url=url,
                        attempts=state.attempts + state.maintenance_waits,
                        reason=reason,
                        error=str(exc),
                    )
                    raise
                self.metrics.retry(endpoint, reason)
                log.info(
                    "onc_request_retry",
                    endpoint=endpoint,
                    url=url,
                    reason=reason,
                    status=exc.status,
                    delay_s=round(delay, 3),
                    attempt=state.attempts,
                    error=str(exc),
                )
                # Sleeping outside `limiter.slot()`: a waiting retry holds no concurrency slot.
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        endpoint: str,
        params: Mapping[str, str],
        handler: Handler[T],
        passthrough: frozenset[int],
        headers: Callable[[], Mapping[str, str]] | None,
        body: tuple[bool, bool],  # (streaming, bulk)
        url: str,
    ) -> T:
        started = time.monotonic()
        status: int | None = None
        exchange: Exchange | None = None
        target = self.wire_url(endpoint, params)
        try:
            try:
                for _ in range(_MAX_REDIRECTS + 1):
                    async with self.transport.send(
                        "GET",
                        target,
                        dict(headers()) if headers else {},
                        streaming=body[0],
                        bulk=body[1],
                    ) as response:
                        status = response.status
                        location = response.headers.get("Location")
                        if status in _REDIRECTS and location:
                            target = self.redirect_target(target, location)
                            continue
                        exchange = Exchange(
                            response, endpoint, url, self.options.chunk_size, self.buffers
                        )
                        if not (200 <= status < 300 or status in passthrough):
                            raise await self._status_error(exchange)
                        return await handler(exchange)
            except _NETWORK_ERRORS as exc:
                raise _network_error(exc, url, status) from None
            raise OncRequestError(
                f"more than {_MAX_REDIRECTS} redirects", errors=[], url=url, status=status
            )
        finally:
            elapsed = time.monotonic() - started
            nbytes = exchange.nbytes if exchange else 0
            self.metrics.request_finished(endpoint, status, elapsed, nbytes)
            log.debug(
                "onc_request",
                endpoint=endpoint,
                status=status,
                elapsed_ms=round(elapsed * 1000, 1),
                bytes=nbytes,
            )

    async def _status_error(self, exchange: Exchange) -> OncError:
        status = exchange.status
        body = await exchange.read_body(limit=_MAX_ERROR_BODY)
        data: Any = None
        try:
            data = decode_json(body, url=exchange.url, status=status)
        except OncError:
            data = None
        text = redact_text(error_message(data, f"HTTP {status}"), self.options.token)
        url = exchange.url
        if status in _TRANSIENT_STATUSES or status >= 500:
            retry_after = parse_retry_after(exchange.response.headers.get("Retry-After"))
            return OncUnavailable(text, url=url, status=status, retry_after=retry_after)
        if status in (401, 403):
            return OncAuthError(text, url=url, status=status)
        details = [
            type(d)(
                code=d.code,
                message=redact_text(d.message, self.options.token),
                parameter=d.parameter,
            )
            for d in error_details(data)
        ]
        if status == 400 and not details:
            text = f"bad request without an errors list: {text}"
        return OncRequestError(text, errors=details, url=url, status=status)
