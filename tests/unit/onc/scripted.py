"""A scripted Oceans API stand-in: replies queued per path, requests logged.

`ScriptedTransport` answers through `OncHttp`'s transport seam, without a socket: status,
headers and body are all most tests need. `ScriptedServer` serves the same scripts on a
loopback socket for what only a socket shows (a dropped connection, a truncated body, a custom
aiohttp handler). aioresponses 0.7.9 cannot build responses with aiohttp 3.14
(ClientResponse gained a required argument), hence our own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ujson
from aiohttp import web
from multidict import MultiDict

from pipeline.onc.transport import HandlerTransport, SentRequest, StaticResponse

Custom = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Reply:
    """One scripted reply. `cut_after` sends only that many body bytes then drops the socket."""

    status: int = 200
    body: bytes | str | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    custom: Custom | None = None


@dataclass
class Seen:
    """A request the server received."""

    path: str
    query: MultiDict[str]
    headers: Mapping[str, str]


def _body(reply: Reply) -> bytes:
    if reply.json is not None:
        return ujson.dumps(reply.json).encode()
    if isinstance(reply.body, str):
        return reply.body.encode()
    return reply.body or b""


class _Scripts:
    """Queued replies per path; the last reply of a path repeats once the queue is empty."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []

    def add(self, path: str, *replies: Reply) -> None:
        self.scripts.setdefault(path, []).extend(replies)

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    def next_reply(self, path: str) -> Reply | None:
        queue = self.scripts.get(path)
        if not queue:
            return None
        return queue.pop(0) if len(queue) > 1 else queue[0]


class ScriptedTransport(_Scripts):
    """Answers `OncHttp` through its transport seam: no socket, no server to start."""

    url = "http://onc.test"

    def __init__(self) -> None:
        super().__init__()
        self.transport = HandlerTransport(self._handle)

    async def _handle(self, request: SentRequest) -> StaticResponse:
        path = request.url.path
        self.seen.append(Seen(path, MultiDict(request.url.query), dict(request.headers)))
        reply = self.next_reply(path)
        if reply is None:
            return StaticResponse(599, body=b'{"message": "unscripted"}')
        if reply.custom is not None or reply.cut_after is not None:
            raise AssertionError("custom handlers and cut bodies need ScriptedServer's socket")
        return StaticResponse(reply.status, dict(reply.headers), _body(reply))


class ScriptedServer(_Scripts):
    """Serves the scripts on a loopback socket, for what only a socket shows."""

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.path, MultiDict(request.query), dict(request.headers)))
        reply = self.next_reply(request.path)
        if reply is None:
            return web.json_response({"message": f"unscripted {request.path}"}, status=599)
        if reply.custom is not None:
            return await reply.custom(request)
        body = _body(reply)
        if reply.cut_after is None:
            return web.Response(status=reply.status, body=body, headers=reply.headers)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: reply.cut_after])
        await asyncio.sleep(0.01)
        assert request.transport is not None
        request.transport.close()
        return response
