"""The daemon as a subprocess against an in-process emulator on real time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.emulator import Emulator, EmulatorConfig

REPO = Path(__file__).resolve().parents[2]
TOKEN = "acceptance-token-77c1"


@pytest.fixture
async def live_emulator() -> AsyncIterator[Emulator]:
    """An emulator following real time, so the daemon's clock and the data agree."""
    config = EmulatorConfig(
        token=TOKEN,
        seed=5,
        onc_port=0,
        registry_port=0,
        auth_delay=(0.0, 0.0),
        product_processing_s=0.6,
        archive_file_sizes={"ICLISTENHF1560.wav": 1_500_000},
        latency_s=1.0,
    )
    async with Emulator(config) as emulator:
        yield emulator


def hour_floor(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


# The product stream's `safety_lag` in these configs: a day's period is ordered once its end
# is this far behind.
PRODUCT_LAG = timedelta(minutes=10)


def product_start(now: datetime, days: int) -> datetime:
    """The start of the last `days` daily periods a product stream may order at `now`: `days`
    days before the end of the last one complete (past `PRODUCT_LAG`). Within the lag after
    midnight the day just ended is not complete yet, so counting from today's midnight would
    expect a period that cannot exist."""
    last_end = (now - PRODUCT_LAG).replace(hour=0, minute=0, second=0, microsecond=0)
    return last_end - timedelta(days=days)


def complete_product_days(start: datetime, now: datetime) -> int:
    """The periods (days) from `start` a product stream may have ordered by `now`."""
    return (now - PRODUCT_LAG - start).days


@dataclass
class Harness:
    """Paths and settings of one acceptance scenario."""

    root: Path
    config: Path
    starts: dict[str, datetime]

    @property
    def out(self) -> Path:
        return self.root / "out"

    def archive_window(self, cursor: datetime, stream: str = "wav") -> tuple[datetime, datetime]:
        """(data end, archive end) an archive stream's last pass covered, from its cursor.

        The cursor is the archive time of that pass; it took the files archived before it
        whose data began before the cursor minus the stream's `safety_lag`.
        """
        config = yaml.safe_load(self.config.read_text())
        (lag,) = [s["safety_lag"] for s in config["streams"] if s["name"] == stream]
        seconds = int(lag[:-1]) * {"s": 1, "m": 60, "h": 3600}[lag[-1]]
        return cursor - timedelta(seconds=seconds), cursor

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'state.db'}"

    def spawn(self, command: str = "run", log_name: str = "daemon.log") -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
        env["PYTHONUNBUFFERED"] = "1"
        # The child gets its own copy of the descriptor; ours can close at once.
        with open(self.root / log_name, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "pipeline", command, "--config", str(self.config)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def write_config(root: Path, emu: Emulator, now: datetime, **daemon: Any) -> Harness:
    """Every stream kind, small enough to finish in seconds, paged hard to create many steps."""
    starts = {
        "ctd": hour_floor(now) - timedelta(hours=5),
        "bpr": hour_floor(now) - timedelta(hours=2),
        "wav": (now - timedelta(minutes=50)).replace(microsecond=0),  # as the config spells it
        "tssd": product_start(now, 3),
    }
    iso = {k: v.strftime("%Y-%m-%dT%H:%M:%SZ") for k, v in starts.items()}
    data = {
        "onc": {
            "base_url": emu.onc_url,
            "token": TOKEN,
            "max_concurrency": 3,
            "max_rate_per_s": 40,
            "backoff_base": "20ms",
            "backoff_max": "300ms",
            "product_poll_min": "100ms",
            "product_poll_max": "200ms",
        },
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": False},
        "logging": {"format": "json", "level": "info"},
        "daemon": {"shutdown_grace": "10s", **daemon},
        "streams": [
            {
                "name": "ctd",
                "kind": "scalardata",
                "location_code": "BACAX",
                "device_category_code": "CTD",
                "start": iso["ctd"],
                "window": "30m",
                "row_limit": 600,
                "cadence": "2s",
                "safety_lag": "5s",
                "formats": ["jsonl"],
            },
            {
                "name": "bpr",
                "kind": "rawdata",
                "device_code": "RBRQUARTZ3BPR203659",
                "start": iso["bpr"],
                "window": "30m",
                "row_limit": 500,
                "cadence": "2s",
                "safety_lag": "5s",
                "formats": ["jsonl"],
            },
            {
                "name": "wav",
                "kind": "archivefile",
                "location_code": "SEVIP",
                "device_category_code": "HYDROPHONE",
                "file_extensions": ["wav"],
                "start": iso["wav"],
                "cadence": "3s",
                "safety_lag": "1m",
            },
            {
                "name": "tssd",
                "kind": "dataproduct",
                "location_code": "BACAX",
                "device_category_code": "CTD",
                "data_product_code": "TSSD",
                "extension": "csv",
                "period": "1d",
                "start": iso["tssd"],
                "cadence": "3s",
                "safety_lag": f"{int(PRODUCT_LAG.total_seconds())}s",
            },
        ],
    }
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return Harness(root=root, config=config, starts=starts)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:  # noqa: ASYNC109
    """The exit code, or fail the test if the process outlives `timeout`.

    Waits in a thread: the emulator serves from this very event loop, which must not block.
    """
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)
        pytest.fail(f"process did not exit within {timeout} s")


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; any still alive at the end are killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


async def wait_for(predicate: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll `predicate` without blocking the loop the emulator serves from."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")
