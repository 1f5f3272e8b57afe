"""The ops HTTP server: /healthz (loop responsive), /readyz (able to harvest), /metrics, and,
when the daemon checks coverage, /status (the page) and /coverage (its JSON).

It reads, never writes: every answer is computed from the loop monitor, a fresh snapshot of
the state store and runner, and the metrics registry. It binds to loopback by default
(`ops.bind`); in a container the image sets 0.0.0.0 so the orchestrator can probe it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.exceptions import PortInUseError, port_in_use
from pipeline.lifecycle import AsyncResource
from pipeline.ops.health import LoopMonitor
from pipeline.ops.metrics import PipelineMetrics
from pipeline.ops.readiness import (
    DEFAULT_AUTH_GRACE,
    DEFAULT_FAILING_AFTER,
    OpsSources,
    Readiness,
    Snapshot,
    evaluate,
    take_snapshot,
)
from pipeline.times import utc_now

log = structlog.get_logger(__name__)


def parse_bind(bind: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:9108") into host and port."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f'expected "host:port", got {bind!r}')
    return host.strip("[]"), int(port)


class OpsServer(AsyncResource):
    """aiohttp server for the probes and the metrics; use as `async with OpsServer(...)`."""

    def __init__(
        self,
        bind: str,
        *,
        sources: OpsSources,
        metrics: PipelineMetrics,
        monitor: LoopMonitor,
        started_at: datetime | None = None,
        failing_after: timedelta = DEFAULT_FAILING_AFTER,
        auth_grace: timedelta = DEFAULT_AUTH_GRACE,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._host, self._port = parse_bind(bind)
        self._sources = sources
        self._metrics = metrics
        self._monitor = monitor
        self._clock = clock
        self._started_at = started_at or clock()
        self._failing_after = failing_after
        self._auth_grace = auth_grace
        self._runner: web.AppRunner | None = None
        # Concurrent scrapes share one store read instead of queueing several.
        self._lock = asyncio.Lock()
        self._last_ready = True
        self.address = ""
        metrics.monitor = monitor
        metrics.ready = lambda: self._last_ready

    def app(self) -> web.Application:
        """The aiohttp application (also usable with aiohttp's test client)."""
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        if self._sources.coverage is not None:
            from pipeline.coverage.page import add_coverage_routes

            add_coverage_routes(app, self._sources.coverage)
        return app

    async def start(self) -> str:
        """Listen on the bind address; returns "host:port" as bound (port 0 picks one)."""
        # No access log: probes every few seconds would drown the canonical log lines.
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException as exc:
            await runner.cleanup()
            if isinstance(exc, OSError) and port_in_use(exc):
                raise PortInUseError(
                    self._host,
                    self._port,
                    role="ops",
                    what="the health and metrics server",
                    option="ops.bind (ONC_PIPELINE_OPS__BIND=127.0.0.1:PORT) or ops.enabled: false",
                ) from None
            raise
        self._runner = runner
        sockets = runner.addresses
        port = sockets[0][1] if sockets else self._port
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.address = f"{host}:{port}"
        log.info("ops_server_started", bind=self.address)
        return self.address

    async def close(self) -> None:
        """Stop listening; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("ops_server_stopped")

    async def open(self) -> None:
        """`async with server:` starts listening."""
        await self.start()

    async def snapshot(self) -> Snapshot:
        """Take a fresh snapshot and hand it to the metrics."""
        async with self._lock:
            snap = await take_snapshot(self._sources, self._clock())
            self._metrics.update(snap)
            return snap

    async def readiness(self) -> Readiness:
        """Evaluate /readyz now."""
        snap = await self.snapshot()
        verdict = evaluate(
            snap,
            self._clock(),
            started_at=self._started_at,
            auth_failing_since=self._metrics.onc.auth_failing_since,
            failing_after=self._failing_after,
            auth_grace=self._auth_grace,
        )
        if verdict.ready != self._last_ready:
            failed = [c.name for c in verdict.checks if not c.ok]
            log.warning("ops_readiness_changed", ready=verdict.ready, failed_checks=failed)
        self._last_ready = verdict.ready
        return verdict

    async def _index(self, request: web.Request) -> web.Response:
        if self._sources.coverage is not None:
            raise web.HTTPFound("/status")
        return web.Response(text="onc-pipeline ops: /healthz /readyz /metrics\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        report = self._monitor.report()
        return web.json_response(report.as_json(), status=200 if report.healthy else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        verdict = await self.readiness()
        return web.json_response(verdict.as_json(), status=200 if verdict.ready else 503)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        # Readiness is re-evaluated so `onc_pipeline_ready` is as fresh as the lag gauges.
        await self.readiness()
        body = self._metrics.render()
        response = web.Response(body=body)
        # CONTENT_TYPE_LATEST carries its own charset parameter, which aiohttp's
        # `content_type=` argument refuses, hence the raw header.
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
