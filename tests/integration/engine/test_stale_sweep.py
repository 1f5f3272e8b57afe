"""What crashes left under the output root is removed beside the harvest, not before it: a
start does not wait for a walk of the whole output tree (systemd waits `TimeoutStartSec` for
READY=1), a clean end of `once` waits for it, and a stop (before or during that wait) or a
failure cuts it short."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pipeline import daemon
from pipeline.daemon import components
from pipeline.outputs.publish import StaleSweep
from pipeline.settings import Settings
from tests.integration.engine.conftest import SettingsFactory

STREAM = {
    "name": "ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
    "formats": ["jsonl"],
}


class SlowSweep:
    """A walk that runs until `release` is set, or its `stop` is."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.stopped = False
        self.finished = threading.Event()

    def __call__(self, root: Path, *, stop: threading.Event) -> StaleSweep:
        self.started.set()
        while not self.release.is_set():
            if stop.is_set():
                self.stopped = True
                break
            self.release.wait(0.01)
        self.finished.set()
        return StaleSweep(removed=[root / "x.nc.tmp"], kept=[(root / "y.nc.tmp", "denied")])


@pytest.fixture
async def walk(monkeypatch: pytest.MonkeyPatch) -> SlowSweep:
    """The daemon's sweep, slow. A safety net: a start that waited for the walk, or a stop
    not passed on to it, ends (and fails its test) instead of hanging."""
    slow = SlowSweep()
    monkeypatch.setattr(daemon, "remove_stale_temporaries", slow)
    asyncio.get_running_loop().call_later(30, slow.release.set)
    return slow


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings([STREAM], daemon={"window_workers": 0})


@pytest.mark.parametrize("stopping", [False, True])
async def test_components_start_while_the_sweep_walks_and_end_after_it(
    walk: SlowSweep, settings: Settings, stopping: bool
) -> None:
    stop = asyncio.Event()
    with capture_logs() as logs:
        async with components(settings, stop=stop):
            assert await asyncio.to_thread(walk.started.wait, 5)
            assert not walk.finished.is_set()  # inside, while the walk goes on
            if stopping:
                stop.set()  # a shutdown: the walk is told to end
            else:
                asyncio.get_running_loop().call_later(0.1, walk.release.set)
        # Left only once the walk ended: `once` waits for it; a stop cut it short.
        assert walk.finished.is_set()
    assert walk.stopped is stopping
    assert [e["count"] for e in logs if e["event"] == "stale_temporaries_removed"] == [1]
    [kept] = [e for e in logs if e["event"] == "stale_temporary_kept"]
    assert kept["error"] == "denied"


@pytest.mark.parametrize("how", ["stopped while waiting", "failed"])
async def test_a_stop_while_waiting_or_a_failure_cuts_the_walk_short(
    walk: SlowSweep, settings: Settings, how: str
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with pytest.raises(RuntimeError) if how == "failed" else contextlib.nullcontext():
        async with components(settings, stop=stop):
            assert await asyncio.to_thread(walk.started.wait, 5)
            if how == "failed":
                raise RuntimeError("the harvest failed")  # not held up by a long walk
            # `once` ended cleanly and waits for the walk; a SIGTERM comes meanwhile.
            loop.call_later(0.2, stop.set)
    assert walk.finished.is_set()
    assert walk.stopped


async def test_a_failed_sweep_is_a_warning_not_a_failed_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(root: Path, *, stop: threading.Event) -> StaleSweep:
        raise PermissionError(13, "Permission denied", str(root))

    monkeypatch.setattr(daemon, "remove_stale_temporaries", broken)
    with capture_logs() as logs:
        async with components(settings, stop=asyncio.Event()):
            await asyncio.sleep(0.05)
    [warning] = [e for e in logs if e["event"] == "stale_temporaries_not_removed"]
    assert "Permission denied" in warning["error"]
