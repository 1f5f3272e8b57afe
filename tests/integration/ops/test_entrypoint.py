"""The image's ENTRYPOINT + CMD outside a container: starts, serves /healthz, exits 0 on SIGTERM.

No Docker engine runs here, so this runs `onc-pipeline run --config config/compose-demo.yaml`
as the image would, with the environment overrides a deployment uses (state and data paths,
ops bind, JSON logs) and $NOTIFY_SOCKET as systemd sets it, against an in-process emulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipeline.emulator import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config" / "compose-demo.yaml"
BINARY = Path(sys.executable).parent / "onc-pipeline"
TOKEN = "demo-token"  # the token config/compose-demo.yaml carries


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        token=TOKEN, onc_port=0, registry_port=0, auth_delay=(0.0, 0.0), product_processing_s=0.2
    )
    async with Emulator(config) as emu:
        yield emu


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # AF_UNIX paths are short
    address = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    yield sock, address
    sock.close()
    Path(address).unlink()
    folder.rmdir()


async def read_events(stream: asyncio.StreamReader, until: set[str]) -> dict[str, Any]:
    """JSON log lines until one whose event is in `until`; returns that line."""
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"the daemon exited before logging any of {sorted(until)}")
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        if event.get("event") in until:
            return event


async def test_image_command_starts_serves_healthz_and_stops_cleanly(
    emulator: Emulator, notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, address = notify_socket
    env = {
        **os.environ,
        "ONC_PIPELINE_ONC__BASE_URL": emulator.onc_url,
        "ONC_PIPELINE_REGISTRY__BASE_URL": emulator.registry_url,
        "ONC_PIPELINE_STATE__URL": f"sqlite:///{tmp_path / 'state' / 'onc-pipeline.db'}",
        "ONC_PIPELINE_OUTPUT__ROOT": str(tmp_path / "data"),
        "ONC_PIPELINE_OUTPUT__ERDDAP_FLAG_DIR": str(tmp_path / "data" / "erddap-flag"),
        "ONC_PIPELINE_OPS__BIND": "127.0.0.1:0",
        "ONC_PIPELINE_LOGGING__FORMAT": "json",
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "2000000",
    }
    for name in ("ONC_TOKEN", "CREDENTIALS_DIRECTORY", "ONC_PIPELINE_CONFIG"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        str(BINARY),
        "run",
        "--config",
        str(CONFIG),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()

    async def notification(prefix: str) -> str:
        while True:
            message = (await loop.sock_recv(sock, 4096)).decode()
            if message.startswith(prefix):
                return message

    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            # The ops server starts before `daemon_started`; seeing the latter first means
            # the daemon runs without its ops layer.
            first = await read_events(proc.stdout, {"ops_server_started", "daemon_started"})
            assert first["event"] == "ops_server_started", "ops server not wired into run_daemon"
            ready = await notification("READY=1")
            assert "STATUS=harvesting: 4 streams" in ready
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://{first['bind']}/healthz") as response,
            ):
                assert response.status == 200
                assert (await response.json())["status"] == "ok"
            proc.send_signal(signal.SIGTERM)
            stopping = await notification("STOPPING=1")
            assert stopping.startswith("STOPPING=1")
            # Drain the remaining log lines so the pipe never blocks the exiting daemon.
            rest = await proc.stdout.read()
            code = await proc.wait()
        assert code == 0, (await proc.stderr.read()).decode() if proc.stderr else ""
        lines = [json.loads(line) for line in rest.decode().splitlines() if line.strip()]
        assert any(line.get("event") == "daemon_stopped" for line in lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
