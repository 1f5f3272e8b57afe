"""The request log (for politeness and debouncing assertions) and the /_emulator/ routes."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipeline.emulator.faults import ENDPOINT_KEY, QUERY_KEY
from pipeline.emulator.params import ApiError, Query
from pipeline.emulator.responses import dumps
from pipeline.exceptions import ConfigError

if TYPE_CHECKING:
    from pipeline.emulator.app import OncContext

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Resolver = Callable[[web.Request], str | None]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the emulator saw it; the token's value is replaced by REDACTED."""

    method: str
    endpoint: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int | None
    started_monotonic: float
    ended_monotonic: float
    started_wall: datetime
    ended_wall: datetime
    peer: str | None

    def as_json(self) -> dict[str, Any]:
        """JSON-friendly form (ISO wall times, query as a list of pairs)."""
        out = asdict(self)
        out["query"] = [list(p) for p in self.query]
        out["started_wall"] = self.started_wall.isoformat()
        out["ended_wall"] = self.ended_wall.isoformat()
        return out


class RequestLog:
    """Bounded, append-only log of requests plus in-flight accounting."""

    def __init__(self, limit: int) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> RequestRecord:
        return list(self._records)[index]

    def of(self, endpoint: str) -> list[RequestRecord]:
        """Records of one endpoint name, oldest first."""
        return [r for r in self._records if r.endpoint == endpoint]

    def clear(self) -> None:
        """Forget everything, including counts and the in-flight peak."""
        self._records.clear()
        self.counts.clear()
        self.peak_in_flight = self.in_flight

    def add(self, record: RequestRecord) -> None:
        """Append one finished request."""
        self._records.append(record)
        self.counts[record.endpoint] += 1

    def middleware(self, resolve: Resolver) -> Any:
        """aiohttp middleware: names the endpoint, tracks concurrency, records the outcome."""

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            endpoint = resolve(request)
            if endpoint is None:
                return await handler(request)
            query = Query.parse(request.query_string)
            request[ENDPOINT_KEY] = endpoint
            request[QUERY_KEY] = "&".join(f"{k}={v}" for k, v in query.without_token())
            started, started_wall = time.monotonic(), datetime.now(UTC)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            status: int | None = None
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.in_flight -= 1
                self.add(
                    RequestRecord(
                        request.method,
                        endpoint,
                        request.path,
                        tuple(query.without_token()),
                        status,
                        started,
                        time.monotonic(),
                        started_wall,
                        datetime.now(UTC),
                        request.remote,
                    )
                )

        return record


def add_routes(app: web.Application, ctx: OncContext) -> None:
    """Mount the /_emulator/ introspection and control routes on the ONC app."""

    async def requests(request: web.Request) -> web.Response:
        endpoint = request.query.get("endpoint")
        rows = ctx.log.of(endpoint) if endpoint else list(ctx.log)
        return _json([r.as_json() for r in rows])

    async def clear(request: web.Request) -> web.Response:
        ctx.log.clear()
        return _json({"cleared": True})

    async def counts(request: web.Request) -> web.Response:
        return _json(
            {
                "counts": dict(ctx.log.counts),
                "in_flight": ctx.log.in_flight,
                "peak_in_flight": ctx.log.peak_in_flight,
                "total": len(ctx.log),
            }
        )

    async def clock(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            if "pin" in body:
                ctx.clock.pin(datetime.fromisoformat(str(body["pin"]).replace("Z", "+00:00")))
            if "advance" in body:
                ctx.clock.advance(float(body["advance"]))
            if body.get("real"):
                ctx.clock.resume_real()
        return _json({"now": ctx.clock.now().isoformat(), "pinned": ctx.clock.pinned})

    async def faults(request: web.Request) -> web.Response:
        if request.method in ("PUT", "POST"):
            body = await request.json()
            spec = (
                body.get("profile")
                if isinstance(body, dict) and "profile" in body and len(body) == 1
                else body
            )
            ctx.faults.set(spec or None)
        plan = ctx.faults.plan
        return _json(
            {"name": plan.name, "seed": plan.seed, "rules": [_rule_json(r) for r in plan.rules]}
        )

    async def truth(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        query = Query.parse(request.query_string)
        try:
            if kind == "scalar":
                body: Any = ctx.truth.scalar_json(query)
            elif kind == "raw":
                body = ctx.truth.raw_json(query)
            elif kind == "archive":
                body = ctx.truth.archive_json(query)
            elif kind == "availability":
                body = ctx.truth.availability_json(query)
            else:
                raise web.HTTPNotFound()
        except ApiError as exc:
            return web.Response(
                status=exc.status, body=dumps(exc.body), content_type="application/json"
            )
        return web.Response(body=dumps(body), content_type="application/json")

    async def gaps(request: web.Request) -> web.Response:
        if request.method == "PUT":
            try:
                ctx.set_gaps(await request.json() or None)
            except ConfigError as exc:
                problems = [{"path": path, "message": msg} for path, msg in exc.problems]
                return web.Response(
                    status=400, body=dumps({"problems": problems}), content_type="application/json"
                )
        return _json(ctx.gaps.as_json())

    async def triggers(request: web.Request) -> web.Response:
        return _json(ctx.registry.trigger_history() if ctx.registry is not None else [])

    app.router.add_get("/_emulator/requests", requests)
    app.router.add_delete("/_emulator/requests", clear)
    app.router.add_get("/_emulator/counts", counts)
    app.router.add_get("/_emulator/clock", clock)
    app.router.add_post("/_emulator/clock", clock)
    app.router.add_get("/_emulator/faults", faults)
    app.router.add_put("/_emulator/faults", faults)
    app.router.add_get("/_emulator/truth/{kind}", truth)
    app.router.add_get("/_emulator/gaps", gaps)
    app.router.add_put("/_emulator/gaps", gaps)
    app.router.add_get("/_emulator/registry/triggers", triggers)


def _rule_json(rule: Any) -> dict[str, Any]:
    out = {k: getattr(rule, k) for k in rule.__slots__}
    for key in ("start", "end"):
        if out[key] is not None:
            out[key] = out[key].isoformat()
    return out


def _json(body: Any) -> web.Response:
    return web.Response(body=dumps(body), content_type="application/json")
