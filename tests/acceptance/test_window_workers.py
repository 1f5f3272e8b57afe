"""Window worker processes never outlive their daemon, however it ends."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.harness import descendants
from pipeline.emulator import Emulator
from tests.acceptance.conftest import wait_exit, write_config


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _workers_of(pid: int, log: Path) -> list[int]:
    """The daemon's descendants once it has published a window (its workers are up)."""
    for _ in range(300):
        if "window_harvested" in await asyncio.to_thread(log.read_text, errors="replace"):
            found = [child for child, _ in descendants(pid)]
            if len(found) >= 3:  # the fork server and two workers
                return found
        await asyncio.sleep(0.1)
    text = await asyncio.to_thread(log.read_text, errors="replace")
    raise AssertionError(f"no workers after 30 s: {text[-2000:]}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
async def test_workers_exit_with_the_daemon(
    live_emulator: Emulator, tmp_path: Path, reap: list[object], how: signal.Signals
) -> None:
    harness = write_config(tmp_path, live_emulator, datetime.now(UTC), window_workers=2)
    proc = harness.spawn()
    reap.append(proc)
    workers = await _workers_of(proc.pid, tmp_path / "daemon.log")
    proc.send_signal(how)
    code = await wait_exit(proc, 30)
    assert code == (-9 if how is signal.SIGKILL else 0)
    for _ in range(50):  # a worker checks on its daemon every 0.2 s
        left = [pid for pid in workers if _alive(pid)]
        if not left:
            break
        await asyncio.sleep(0.1)
    assert left == [], f"workers outlived the daemon ({how.name}): {left}"
