"""What `once` loads in its own process: only what a SQLite-state, NetCDF harvest with window
workers uses (a subprocess against the emulator, which reports its modules at the end)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from pipeline.emulator import Emulator, EmulatorConfig
from tests.acceptance.conftest import REPO

TOKEN = "startup-token-5d21"

# Loaded by other commands, other state backends or other formats, never by this harvest's
# own process (its window workers import the NetCDF writer, numpy and netCDF4).
NOT_FOR_THIS_HARVEST = {
    "asyncpg",
    "pipeline.state.postgres",
    "prometheus_client",
    "aiohttp.web",
    "pipeline.ops",
    "pipeline.coverage.mend",
    "pipeline.registry",
    "pipeline.emulator",
    "pyarrow",
    "numpy",
    "netCDF4",
    "pipeline.outputs.netcdf",
    "rich",
}


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        token=TOKEN, seed=3, onc_port=0, registry_port=0, auth_delay=(0.0, 0.0), latency_s=0.0
    )
    async with Emulator(config) as emu:
        yield emu


@pytest.mark.timeout(120)
async def test_once_loads_only_what_its_harvest_uses(emulator: Emulator, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    shift = timedelta(0)
    if now - now.replace(hour=0, minute=0, second=0, microsecond=0) < timedelta(hours=1):
        # Early in the UTC day a harvest within today is short: under `BULK_SPAN` (15
        # minutes) it is a near-real-time poll, built in the daemon's own process, which
        # then loads the NetCDF writer. Both clocks run two hours ahead instead.
        shift = timedelta(hours=2)
        emulator.clock.advance(shift.total_seconds())
        now += shift
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Within today: a page cut at a partition's bound loads numpy in the daemon where the C
    # module `pipeline._columns` is missing (pipeline/timeaxis.py), which a harvest inside one
    # partition never does. At most 3 hours: arrays of up to about 200 KB, holes and all, below
    # the size from which the parser fills many holes with a sentinel (pipeline/onc/parsing.py,
    # `_BIG_ARRAY_BYTES`; numpy puts the NaNs back where the module is missing).
    start = max(midnight, now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "onc": {"base_url": emulator.onc_url, "token": TOKEN},
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "output": {"root": str(tmp_path / "out")},
                "ops": {"enabled": False},
                "daemon": {"window_workers": 1},
                "logging": {"format": "json"},
                "streams": [
                    {
                        "name": "ctd",
                        "kind": "scalardata",
                        "location_code": "BACAX",
                        "device_category_code": "CTD",
                        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "window": "1h",
                        "safety_lag": "5s",
                        "formats": ["netcdf"],
                    }
                ],
            }
        )
    )
    script = (
        "import json, sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "import pipeline.times\n"
        # The pipeline reads the time through `utc_now` only (benchmarks/shifted_clock.py).
        f"shift = timedelta(seconds={shift.total_seconds()!r})\n"
        "pipeline.times.utc_now = lambda: datetime.now(UTC) + shift\n"
        "from pipeline.cli import main\n"
        f"code = main(['once', '--config', {str(config)!r}])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
    # Not subprocess.run: the emulator answers from this test's event loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, err.decode()[-3000:]
    lines = out.decode().splitlines()
    assert any(line.startswith("ok      ctd:") for line in lines), lines
    report = json.loads(lines[-1])
    assert report["code"] == 0
    loaded = set(report["modules"])
    assert "pipeline.outputs.pool" in loaded  # the harvest did use window workers
    assert list((tmp_path / "out").rglob("*.nc")), "no NetCDF file was written"
    assert sorted(NOT_FOR_THIS_HARVEST & loaded) == []
