"""`onc-pipeline demo`: the bundled emulator and the daemon in one process, offline."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from pipeline.daemon import run_daemon
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.exceptions import ConfigError, PortInUseError
from pipeline.settings import Settings

log = structlog.get_logger(__name__)


def _port(url: str, what: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        raise ConfigError(
            [(what, f"the demo serves the emulator on a loopback host:port; got {url!r}")]
        )
    return parts.hostname, parts.port


def emulator_config(settings: Settings) -> EmulatorConfig:
    """An emulator listening where the demo settings point the client and the registry."""
    host, onc_port = _port(settings.onc.base_url, "onc.base_url")
    _, registry_port = _port(settings.registry.base_url, "registry.base_url")
    token = settings.onc.token.get_secret_value() if settings.onc.token else "demo-token"
    return EmulatorConfig(
        token=token,
        seed=1,
        host=host,
        onc_port=onc_port,
        registry_port=registry_port,
        product_processing_s=5.0,
        archive_file_sizes={"ICLISTENHF1560.wav": 2_000_000},
    )


# How to move the emulator off a taken port: the demo reads its ports from these settings.
_PORT_OPTIONS = {
    "onc": "onc.base_url (e.g. ONC_PIPELINE_ONC__BASE_URL=http://127.0.0.1:18080)",
    "registry": "registry.base_url (e.g. ONC_PIPELINE_REGISTRY__BASE_URL=http://127.0.0.1:18081)",
}


def this_program() -> str:
    """How to run this very program again from the current directory: the `onc-pipeline`
    script beside the running interpreter (a virtual environment's bin/, not on PATH after
    `python3 dev.py run`), else `python -m pipeline`."""
    python = Path(sys.executable)
    script = python.with_name("onc-pipeline")
    if script.exists():
        return shlex.quote(_relative(script))
    return f"{shlex.quote(_relative(python))} -m pipeline"


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def banner(settings: Settings, emulator: Emulator, config: Path | None = None) -> str:
    """What the demo prints once everything runs: where to look."""
    root = settings.output.root.resolve()
    status = f"{this_program()} status --config {shlex.quote(str(config or 'config/demo.yaml'))}"
    lines = [
        "",
        "onc-pipeline demo: harvesting from the bundled emulator (Ctrl-C stops)",
        f"  Oceans API emulator   {emulator.onc_url}/api/...",
        f"  IOOS registry         {emulator.registry_url}/api/v1/Harvests",
        f"  output files          {root}",
        f"  state                 {settings.state.url}",
    ]
    if settings.ops.enabled:
        lines.append(f"  health and metrics    http://{settings.ops.bind}/metrics")
    lines += [
        "  look at it:",
        f"    find {root} -type f | head",
        f"    {status}",
        f"    curl -s {emulator.onc_url}/_emulator/registry/triggers",
        "",
    ]
    return "\n".join(lines)


async def run_demo(
    settings: Settings,
    stop: asyncio.Event,
    *,
    environ: Mapping[str, str] | None = None,
    config: Path | None = None,
) -> int:
    """Serve the emulator, run the daemon against it, stop both on SIGINT/SIGTERM."""
    emulator = Emulator(emulator_config(settings))
    try:
        await emulator.start()  # closes what it opened when it fails
    except PortInUseError as exc:
        exc.option = _PORT_OPTIONS[exc.role]
        raise
    try:
        print(banner(settings, emulator, config), file=sys.stderr, flush=True)
        code = await run_daemon(settings, stop, environ=environ)
    finally:
        await emulator.close()
    log.info("demo_stopped")
    return code
