"""The ops server over a real loopback socket: /healthz, /readyz, /metrics, and OpsRuntime."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.ops import LoopMonitor, OpsRuntime, OpsServer, OpsSources, PipelineMetrics
from pipeline.ops.systemd import SystemdNotifier
from pipeline.records import NewDataEvent
from pipeline.settings import OpsSettings
from pipeline.state.base import Commit
from pipeline.state.memory import InMemoryStateStore
from tests.clocks import FakeClock

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Scheduler:
    """Stands in for the runner: streams, a running flag, passes in flight."""

    def __init__(self) -> None:
        self.streams = ["ctd", "hydrophone"]
        self.alive = True
        self.running = ["hydrophone"]


@pytest.fixture
async def store() -> AsyncIterator[InMemoryStateStore]:
    async with InMemoryStateStore(clock=lambda: T0) as opened:
        yield opened


@pytest.fixture
async def monitor() -> AsyncIterator[LoopMonitor]:
    mon = LoopMonitor(interval=0.02, threshold=5)
    stop = asyncio.Event()
    task = asyncio.create_task(mon.run(stop))
    yield mon
    stop.set()
    await task


def sources(store: InMemoryStateStore, sched: Scheduler) -> OpsSources:
    return OpsSources(
        store=store,
        streams=lambda: sched.streams,
        scheduler_running=lambda: sched.alive,
        running=lambda: sched.running,
    )


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthz_readyz_and_metrics(store: InMemoryStateStore, monitor: LoopMonitor) -> None:
    clock = FakeClock(T0)
    sched = Scheduler()
    metrics = PipelineMetrics(clock=clock)
    await store.commit_publish(Commit("ctd", [], cursor_time=T0 - timedelta(minutes=10)))
    await store.record_success("ctd", T0 - timedelta(minutes=1))
    await store.put_inflight("hydrophone", "p1", {"dp_request_id": 1})
    metrics.onc.request_finished("/api/scalardata/location", 200, 0.2, 4096)
    await metrics.events.publish(
        NewDataEvent("ctd", "onc_bacax_ctd", T0 - timedelta(hours=1), T0, (Path("f"),), 60)
    )
    server = OpsServer(
        "127.0.0.1:0",
        sources=sources(store, sched),
        metrics=metrics,
        monitor=monitor,
        started_at=T0 - timedelta(hours=1),
        clock=clock,
    )
    async with server:
        base = f"http://{server.address}"
        assert server.address.startswith("127.0.0.1:")
        status, ctype, body = await get(f"{base}/healthz")
        assert status == 200
        assert ctype.startswith("application/json")
        assert '"status": "ok"' in body

        status, _, body = await get(f"{base}/readyz")
        assert status == 200, body
        assert '"status": "ready"' in body

        status, ctype, body = await get(f"{base}/metrics")
        assert status == 200
        assert ctype.startswith("text/plain; version=")
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }
        assert values[("onc_pipeline_stream_lag_seconds", (("stream", "ctd"),))] == 600
        assert values[("onc_pipeline_inflight_products", (("stream", "hydrophone"),))] == 1
        assert values[("onc_pipeline_stream_pass_running", (("stream", "hydrophone"),))] == 1
        assert values[("onc_pipeline_published_records_total", (("stream", "ctd"),))] == 60
        key = ("onc_pipeline_onc_response_bytes_total", (("endpoint", "/api/scalardata/location"),))
        assert values[key] == 4096
        assert values[("onc_pipeline_ready", ())] == 1
        assert values[("onc_pipeline_healthy", ())] == 1
        assert values[("onc_pipeline_event_loop_lag_seconds", ())] >= 0

        # The scheduler stops: not ready, and the metric follows.
        sched.alive = False
        status, _, body = await get(f"{base}/readyz")
        assert status == 503
        assert '"status": "not_ready"' in body
        assert "scheduler task has stopped" in body
        _, _, body = await get(f"{base}/metrics")
        assert "onc_pipeline_ready 0.0" in body
        assert "onc_pipeline_scheduler_running 0.0" in body


async def test_readyz_not_ready_when_every_stream_keeps_failing(
    store: InMemoryStateStore, monitor: LoopMonitor
) -> None:
    clock = FakeClock(T0)
    sched = Scheduler()
    for name in sched.streams:
        await store.record_failure(name, T0 - timedelta(minutes=1), "OncUnavailable: 503")
    server = OpsServer(
        "127.0.0.1:0",
        sources=sources(store, sched),
        metrics=PipelineMetrics(clock=clock),
        monitor=monitor,
        started_at=T0 - timedelta(minutes=10),
        failing_after=timedelta(minutes=15),
        clock=clock,
    )
    async with server:
        status, _, _ = await get(f"http://{server.address}/readyz")
        assert status == 200  # failing for 10 minutes only
        clock.now += timedelta(minutes=6)
        status, _, body = await get(f"http://{server.address}/readyz")
        assert status == 503
        assert "every stream (2) has failed" in body


async def test_readyz_not_ready_when_the_store_is_closed(monitor: LoopMonitor) -> None:
    closed = InMemoryStateStore()
    server = OpsServer(
        "127.0.0.1:0",
        sources=sources(closed, Scheduler()),
        metrics=PipelineMetrics(),
        monitor=monitor,
    )
    async with server:
        status, _, body = await get(f"http://{server.address}/readyz")
        assert status == 503
        assert "StateError" in body
        _, _, body = await get(f"http://{server.address}/metrics")
        assert "onc_pipeline_state_store_up 0.0" in body


async def test_healthz_unhealthy_before_the_heartbeat_runs(store: InMemoryStateStore) -> None:
    server = OpsServer(
        "127.0.0.1:0",
        sources=sources(store, Scheduler()),
        metrics=PipelineMetrics(),
        monitor=LoopMonitor(),
    )
    async with server:
        status, _, body = await get(f"http://{server.address}/healthz")
    assert status == 503
    assert "heartbeat not started" in body


async def test_runtime_serves_and_notifies_systemd(store: InMemoryStateStore) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    address = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    async def receive() -> str:
        async with asyncio.timeout(10):
            return (await loop.sock_recv(sock, 4096)).decode()

    try:
        sched = Scheduler()
        ops = OpsRuntime(
            OpsSettings(bind="127.0.0.1:0"),
            environ={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "40000"},
            monitor=LoopMonitor(interval=0.01, threshold=5),
        )
        assert isinstance(ops.systemd, SystemdNotifier)
        assert ops.systemd.enabled
        async with ops.serving(sources(store, sched)):
            assert ops.server is not None
            await ops.ready()
            ready = await receive()
            assert ready.startswith("READY=1\nSTATUS=harvesting: 2 streams, 1 running")
            while (message := await receive()) != "WATCHDOG=1":
                assert message.startswith("STATUS=")
            status, _, _ = await get(f"http://{ops.server.address}/healthz")
            assert status == 200
            ops.stopping()
            while not (message := await receive()).startswith("STOPPING=1"):
                assert message == "WATCHDOG=1" or message.startswith("STATUS=")
        assert ops.server is None
    finally:
        sock.close()
        await asyncio.to_thread(shutil.rmtree, folder)


async def test_runtime_without_server_when_disabled(store: InMemoryStateStore) -> None:
    ops = OpsRuntime(OpsSettings(enabled=False), environ={})
    async with ops.serving(sources(store, Scheduler())):
        assert ops.server is None
        assert (await ops.status()).startswith("harvesting: 2 streams")
        await ops.ready()  # no NOTIFY_SOCKET: a no-op
