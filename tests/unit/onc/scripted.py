"""A scripted Oceans API stand-in on a loopback socket: replies queued per path, requests logged.

aioresponses 0.7.9 cannot build responses with aiohttp 3.14 (ClientResponse gained a required
argument), so odd replies are served by a real aiohttp server on 127.0.0.1 instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ujson
from aiohttp import web
from multidict import MultiDict

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


class ScriptedServer:
    """Serves queued replies per path; the last reply of a path repeats once the queue is empty."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def add(self, path: str, *replies: Reply) -> None:
        self.scripts.setdefault(path, []).extend(replies)

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

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
        queue = self.scripts.get(request.path)
        if not queue:
            return web.json_response({"message": f"unscripted {request.path}"}, status=599)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply.custom is not None:
            return await reply.custom(request)
        if reply.json is not None:
            body = ujson.dumps(reply.json).encode()
        elif isinstance(reply.body, str):
            body = reply.body.encode()
        else:
            body = reply.body or b""
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
