"""The ops layer as one component the daemon opens and closes: monitor, server, sd_notify.

The daemon builds an `OpsRuntime` first (the client needs `ops.metrics.onc`), then, once the
store is open and the runner exists, enters `ops.serving(sources)`. Inside that block the loop
heartbeat runs, the HTTP server listens (when `ops.enabled`), and systemd gets WATCHDOG=1 and
STATUS= updates; `ready()` and `stopping()` send READY=1 and STOPPING=1. Leaving the block
stops all of it, after the daemon's drain, so probes keep answering while work finishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import structlog

from pipeline.ops.health import LoopMonitor
from pipeline.ops.metrics import PipelineMetrics
from pipeline.ops.readiness import (
    DEFAULT_AUTH_GRACE,
    DEFAULT_FAILING_AFTER,
    OpsSources,
    status_line,
    take_snapshot,
)
from pipeline.ops.server import OpsServer
from pipeline.ops.systemd import SystemdNotifier
from pipeline.settings import OpsSettings
from pipeline.times import utc_now

log = structlog.get_logger(__name__)


class OpsRuntime:
    """Loop monitor, ops HTTP server and systemd notifications of one daemon process."""

    def __init__(
        self,
        settings: OpsSettings,
        *,
        environ: Mapping[str, str] | None = None,
        metrics: PipelineMetrics | None = None,
        monitor: LoopMonitor | None = None,
        notifier: SystemdNotifier | None = None,
        failing_after: timedelta = DEFAULT_FAILING_AFTER,
        auth_grace: timedelta = DEFAULT_AUTH_GRACE,
        status_every: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or PipelineMetrics(clock=clock)
        self.monitor = monitor or LoopMonitor()
        self.systemd = notifier or SystemdNotifier.from_environ(environ or {})
        self.server: OpsServer | None = None
        self._failing_after = failing_after
        self._auth_grace = auth_grace
        self._status_every = status_every
        self._clock = clock
        self._started_at = clock()
        self._sources: OpsSources | None = None

    @asynccontextmanager
    async def serving(self, sources: OpsSources) -> AsyncIterator[OpsRuntime]:
        """Run the heartbeat, the server and the watchdog for the duration of the block."""
        self._sources = sources
        # The block's own stop, not the daemon's: probes and pings go on during the drain.
        done = asyncio.Event()
        tasks = [asyncio.create_task(self.monitor.run(done), name="ops-loop-monitor")]
        try:
            if self.settings.enabled:
                self.server = OpsServer(
                    self.settings.bind,
                    sources=sources,
                    metrics=self.metrics,
                    monitor=self.monitor,
                    started_at=self._started_at,
                    failing_after=self._failing_after,
                    auth_grace=self._auth_grace,
                    clock=self._clock,
                )
                await self.server.start()
            tasks.append(
                asyncio.create_task(
                    self.systemd.run(
                        done,
                        healthy=self.monitor.healthy,
                        status=self.status,
                        status_every=self._status_every,
                    ),
                    name="ops-systemd",
                )
            )
            yield self
        finally:
            done.set()
            # Both tasks wake on `done` at once; gather also surfaces a crash of either.
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.server is not None:
                await self.server.close()
                self.server = None
            self.systemd.close()

    async def status(self) -> str:
        """The one-line summary for STATUS= (also used by `ready`)."""
        if self._sources is None:
            return "starting"
        snap = (
            await self.server.snapshot()
            if self.server is not None
            else await take_snapshot(self._sources, self._clock())
        )
        return status_line(snap, self._clock())

    async def ready(self) -> None:
        """READY=1 with a first STATUS=; call once the daemon has started harvesting."""
        if self.systemd.ready(await self.status()):
            log.info("sd_notify_ready")

    def stopping(self) -> None:
        """STOPPING=1; call as soon as shutdown begins, before the drain."""
        if self.systemd.stopping("draining in-flight work"):
            log.info("sd_notify_stopping")
