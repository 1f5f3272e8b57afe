"""Writing response bodies, the one place where body-level faults (reset, truncate, drip) act."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ujson
from aiohttp import web


@dataclass(frozen=True, slots=True)
class BodyFault:
    """How to spoil one response body.

    kind "reset": send `after_bytes` then reset the connection (RST);
    kind "truncate": send `after_bytes` then close cleanly, short of Content-Length;
    kind "drip": send `chunk_bytes` every `interval_s` seconds.
    """

    kind: str
    after_bytes: int = 0
    fraction: float | None = None
    chunk_bytes: int = 1024
    interval_s: float = 0.05

    def cut_at(self, total: int) -> int:
        """Byte offset where a reset or truncation happens for a body of `total` bytes."""
        if self.fraction is not None:
            return max(0, min(total - 1, int(total * self.fraction)))
        return max(0, min(total - 1, self.after_bytes))


BODY_FAULT_KEY = web.RequestKey("emulator_body_fault", BodyFault)

# Bodies are handed to the socket this much at a time. asyncio's transport (Python 3.11)
# sends what the socket takes and copies the rest of a write into its buffer, slicing the
# bytes first: one write of a 30 MB page cost two 30 MB copies into fresh memory per
# response, about a third of the emulator's CPU in a backfill benchmark, taken from the
# cores the client under test runs on. Views of the body, written a piece at a time with
# aiohttp's drain in between, copy at most one piece.
WRITE_PIECE = 256 * 1024


def dumps(body: Any) -> bytes:
    """JSON as ONC writes it: bare NaN allowed, slashes unescaped."""
    return ujson.dumps(body, escape_forward_slashes=False, ensure_ascii=False).encode()


async def send_json(
    request: web.Request,
    body: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Send a JSON body (already-rendered bytes are sent as they are)."""
    data = body if isinstance(body, bytes) else dumps(body)
    return await send_bytes(
        request, data, status=status, headers=headers, content_type="application/json"
    )


async def send_bytes(
    request: web.Request,
    data: bytes,
    *,
    status: int = 200,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Send an in-memory body, through the body-fault path."""

    async def one() -> AsyncIterator[bytes]:
        yield data

    return await send_stream(
        request, len(data), one(), status=status, content_type=content_type, headers=headers
    )


async def send_stream(
    request: web.Request,
    total: int,
    chunks: AsyncIterator[bytes] | Iterable[bytes],
    *,
    status: int = 200,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Stream `total` bytes from `chunks` with a Content-Length, applying any body fault."""
    fault: BodyFault | None = request.get(BODY_FAULT_KEY)
    resp = web.StreamResponse(status=status, headers=dict(headers or {}))
    resp.content_type = content_type
    resp.content_length = total
    await resp.prepare(request)
    if request.method == "HEAD" or total == 0:
        await resp.write_eof()
        return resp
    cut = fault.cut_at(total) if fault and fault.kind in ("reset", "truncate") else None
    sent = 0
    async for chunk in _aiter(chunks):
        if cut is not None and sent + len(chunk) >= cut:
            await resp.write(chunk[: cut - sent])
            assert fault is not None
            _break_connection(request, reset=fault.kind == "reset")
            return resp
        if fault is not None and fault.kind == "drip":
            for i in range(0, len(chunk), fault.chunk_bytes):
                await resp.write(chunk[i : i + fault.chunk_bytes])
                await asyncio.sleep(fault.interval_s)
        else:
            view = memoryview(chunk)
            for i in range(0, len(view), WRITE_PIECE):
                await resp.write(view[i : i + WRITE_PIECE])
        sent += len(chunk)
    await resp.write_eof()
    return resp


async def _aiter(chunks: AsyncIterator[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterator):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


def _break_connection(request: web.Request, *, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        # SO_LINGER with a zero timeout turns close() into a TCP RST: the client sees
        # "connection reset by peer" mid-body, like a dropped load balancer connection.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        # A clean FIN before Content-Length is reached: a truncated body.
        transport.close()
