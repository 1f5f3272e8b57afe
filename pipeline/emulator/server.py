"""Starting and stopping both servers: `Emulator` for tests, `serve()` for the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from pipeline.emulator.app import OncContext, build_onc_app
from pipeline.emulator.clock import EmulatorClock
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.faults import ENDPOINT_KEY, FaultInjector, FaultPlan, fault_middleware
from pipeline.emulator.introspection import RequestLog
from pipeline.emulator.registry import RegistryState, build_registry_app, default_registry_state
from pipeline.emulator.truth import GroundTruth
from pipeline.exceptions import PortInUseError, port_in_use
from pipeline.lifecycle import AsyncResource

log = structlog.get_logger(__name__)
_SERVES = {"onc": "the Oceans API emulator", "registry": "the IOOS registry emulator"}


def _registry_endpoint(request: web.Request) -> str | None:
    # Named after the route template, so /api/v2/harvests/X/harvest counts as one endpoint.
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    if path.startswith("/_emulator/"):
        return None
    return f"registry:{path}"


class Emulator(AsyncResource):
    """Both emulated services on real loopback sockets; use as `async with Emulator(cfg)`."""

    def __init__(
        self, config: EmulatorConfig | None = None, registry: RegistryState | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        self.clock = EmulatorClock(self.config.clock_start)
        self.registry = registry or default_registry_state(clock=self.clock.now)
        self._ctx = OncContext(self.config, self.clock, self.registry)
        self._runners: list[web.AppRunner] = []
        self.onc_url = ""
        self.registry_url = ""

    @property
    def requests(self) -> RequestLog:
        """The request log of both services (records, counts, peak in-flight)."""
        return self._ctx.log

    @property
    def truth(self) -> GroundTruth:
        """Ground-truth accessors (scalar rows, raw lines, archive files with sha256)."""
        return self._ctx.truth

    @property
    def faults(self) -> FaultInjector:
        """The fault injector; assign a profile name, file path, mapping or None to change it."""
        return self._ctx.faults

    @faults.setter
    def faults(self, spec: str | Mapping[str, Any] | FaultPlan | None) -> None:
        self._ctx.faults.set(spec)

    @property
    def context(self) -> OncContext:
        """Shared state of the Oceans API side (catalogue, products, cache)."""
        return self._ctx

    async def start(self) -> None:
        """Bind both servers (port 0 picks a free port) and record their base URLs."""
        cfg = self.config
        onc_app = build_onc_app(self._ctx)
        reg_app = build_registry_app(
            self.registry,
            auth_delay=cfg.auth_delay,
            middlewares=[
                self._ctx.log.middleware(_registry_endpoint),
                fault_middleware(self._ctx.faults),
            ],
        )
        try:
            self.onc_url = await self._serve(onc_app, cfg.onc_port, "onc")
            self.registry_url = await self._serve(reg_app, cfg.registry_port, "registry")
        except BaseException:
            await self.close()
            raise
        log.info(
            "emulator_started",
            onc_url=self.onc_url,
            registry_url=self.registry_url,
            seed=cfg.seed,
            faults=self._ctx.faults.plan.name,
        )

    async def _serve(self, app: web.Application, port: int, role: str) -> str:
        # No access log: the request log is the record, and aiohttp's would print URLs with
        # the token in them.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.config.host, port)
        try:
            await site.start()
        except OSError as exc:
            if not port_in_use(exc):
                raise
            raise PortInUseError(self.config.host, port, role=role, what=_SERVES[role]) from None
        sockets = runner.addresses
        bound = sockets[-1][1] if sockets else port
        return f"http://{self.config.host}:{bound}"

    async def close(self) -> None:
        """Stop both servers."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def open(self) -> None:
        """`async with emulator:` starts both servers."""
        await self.start()


async def serve(config: EmulatorConfig, stop: asyncio.Event) -> None:
    """Run both servers until `stop` is set (the CLI's entry point); prints nothing."""
    async with Emulator(config):
        await stop.wait()
    log.info("emulator_stopped")


__all__ = ["ENDPOINT_KEY", "Emulator", "serve"]
