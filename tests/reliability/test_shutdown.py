"""SIGTERM during each phase of work: exit 0 within the grace period, consistent state, and
the next start resumes with nothing lost or doubled.

Phases: paging a long scalar backfill, writing a NetCDF partition, downloading a large
archive file (a drip fault keeps it in progress), polling a data product whose processing
takes long. The daemon runs as a subprocess; the phase is detected from the emulator's
request log or from the temporary files on disk, then SIGTERM is sent.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.state.sqlite import SqliteStateStore
from tests.inotify import CreationWatch
from tests.reliability.conftest import (
    TOKEN,
    Harness,
    assert_no_product_ordered_twice,
    assert_no_temporaries,
    assert_state_consistent,
    check_archive,
    check_scalar_jsonl,
    check_scalar_netcdf,
    cursors,
    measure,
    product_start,
    small_workload,
    wait_exit,
)

GRACE = 3.0
SLACK = 5.0  # process start-up and interpreter exit on a loaded 2-core machine


@pytest.fixture
async def slow_products_emulator() -> AsyncIterator[Emulator]:
    """Like the acceptance emulator, but a product run takes a minute of emulator time."""
    config = EmulatorConfig(
        token=TOKEN,
        seed=5,
        onc_port=0,
        registry_port=0,
        auth_delay=(0.0, 0.0),
        product_processing_s=60.0,
        archive_file_sizes={"ICLISTENHF1560.wav": 4_000_000},
        latency_s=1.0,
    )
    async with Emulator(config) as emulator:
        yield emulator


def only(harness: Harness, name: str, **changes: object) -> None:
    """Keep one stream of the harness config, with `changes` applied to it."""
    config = yaml.safe_load(harness.config.read_text())
    config["streams"] = [{**s, **changes} for s in config["streams"] if s["name"] == name]
    config["daemon"]["shutdown_grace"] = f"{GRACE:g}s"
    harness.config.write_text(yaml.safe_dump(config))


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll quickly (phases can be short) without blocking the emulator's loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"never saw {what}")


Terminate = Callable[[subprocess.Popen[bytes]], Awaitable[None]]


def when(phase: Callable[[], bool], what: str) -> Terminate:
    """SIGTERM once `phase` is seen by polling."""

    async def terminate(proc: subprocess.Popen[bytes]) -> None:
        await until(phase, 40, what)
        proc.send_signal(signal.SIGTERM)

    return terminate


def on_creation(folders: list[Path], suffix: str, what: str) -> Terminate:
    """SIGTERM the moment a file ending with `suffix` is created in one of `folders`: the
    kernel reports it, so a file that exists for a millisecond is not missed."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    created = CreationWatch(folders)  # before the daemon starts: no creation goes unseen

    async def terminate(proc: subprocess.Popen[bytes]) -> None:
        def watch() -> str | None:
            if (name := created.wait_for(suffix, 40)) is not None:
                proc.send_signal(signal.SIGTERM)  # from this thread: no loop turn in between
            return name

        with created:
            if await asyncio.to_thread(watch) is None:
                pytest.fail(f"never saw {what}")

    return terminate


async def term_and_restart(
    harness: Harness,
    reap: list[object],
    terminate: Terminate,
    *,
    before_restart: Callable[[], None] | None = None,
) -> None:
    """Run the daemon, SIGTERM it with `terminate`, check a clean exit, then `once` to catch
    up."""
    proc = harness.spawn()
    reap.append(proc)
    await terminate(proc)
    code = await wait_exit(proc, GRACE + SLACK)
    log = (harness.root / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert '"daemon_stopped"' in log
    assert "Traceback" not in log
    if (harness.root / "state.db").exists() and any(harness.out.rglob("manifest.tsv")):
        await assert_state_consistent(harness.root / "state.db", harness.out)
    if before_restart is not None:
        before_restart()
    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 90) == 0, (harness.root / "once.log").read_text()[-3000:]
    assert_no_temporaries(harness.out)
    await assert_state_consistent(harness.root / "state.db", harness.out)
    measure("shutdown.sigterms", 1)


def tmp_files(root: Path, suffix: str) -> bool:
    return any(p.name.endswith(suffix) for p in root.rglob("*"))


@pytest.mark.slow
async def test_sigterm_while_paging_a_long_backfill(
    live_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = live_emulator
    harness = small_workload(tmp_path, emu, ctd_hours=6)
    only(harness, "ctd", row_limit=300, formats=["jsonl", "netcdf"])
    await term_and_restart(
        harness,
        reap,
        when(lambda: len(emu.requests.of("scalardata.location")) >= 5, "a backfill being paged"),
    )
    marks = await cursors(tmp_path / "state.db")
    ctd = {"location_code": "BACAX", "device_category_code": "CTD"}
    folder = harness.out / "onc_bacax_ctd"
    n = check_scalar_jsonl(emu, folder, harness.starts["ctd"], marks["ctd"], **ctd)
    assert n == check_scalar_netcdf(emu, folder, harness.starts["ctd"], marks["ctd"], **ctd)
    measure("shutdown.records_compared", n)


@pytest.mark.slow
async def test_sigterm_while_writing_netcdf(
    live_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = live_emulator
    harness = small_workload(tmp_path, emu, ctd_hours=4)
    # Big windows and pages: a partition's first window writes it whole, as `<name>.nc.tmp`.
    only(harness, "ctd", window="2h", row_limit=100_000, formats=["netcdf", "csv", "jsonl"])
    # Partitions live in `<dataset>/<yyyy>/`; watch every year the harvest spans.
    folder = harness.out / "onc_bacax_ctd"
    years = {harness.starts["ctd"].year, datetime.now(UTC).year}
    writing = on_creation([folder / f"{y:04d}" for y in years], ".nc.tmp", "a NetCDF being written")
    await term_and_restart(harness, reap, writing)
    marks = await cursors(tmp_path / "state.db")
    ctd = {"location_code": "BACAX", "device_category_code": "CTD"}
    n = check_scalar_netcdf(emu, folder, harness.starts["ctd"], marks["ctd"], **ctd)
    assert n == check_scalar_jsonl(emu, folder, harness.starts["ctd"], marks["ctd"], **ctd)
    measure("shutdown.records_compared", n)


@pytest.mark.slow
async def test_sigterm_while_downloading_a_large_file(
    slow_products_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = slow_products_emulator
    harness = small_workload(tmp_path, emu)
    only(harness, "wav")
    # 4 MB files dripped at ~1 MB/s: a download is in progress for seconds, past the grace.
    emu.faults = {
        "rules": [
            {
                "kind": "drip",
                "endpoint": "archivefile.download",
                "chunk_bytes": 64 * 1024,
                "interval_s": 0.06,
            }
        ]
    }

    def heal() -> None:
        emu.faults = None

    await term_and_restart(
        harness,
        reap,
        when(lambda: tmp_files(harness.out, ".part"), "a download in progress"),
        before_restart=heal,
    )
    marks = await cursors(tmp_path / "state.db")
    files = check_archive(emu, harness, marks["wav"])  # type: ignore[arg-type]
    ranged = [r for r in emu.requests.of("archivefile.download") if r.status == 206]
    assert ranged, "the interrupted download was resumed with Range, not restarted"
    measure("shutdown.archive_files_compared", files)


@pytest.mark.slow
async def test_sigterm_starts_no_new_download(
    slow_products_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    """Hundreds of listed files dripped slowly: after SIGTERM no download starts, not even
    one whose task was already waiting for a download slot; running ones end within the
    grace and the next start fetches the rest."""
    emu = slow_products_emulator
    harness = small_workload(tmp_path, emu)
    start = (datetime.now(UTC) - timedelta(hours=16)).replace(microsecond=0)
    only(harness, "wav", start=start.strftime("%Y-%m-%dT%H:%M:%SZ"), parallel_downloads=2)
    harness.starts["wav"] = start
    emu.faults = {
        "rules": [
            {
                "kind": "drip",
                "endpoint": "archivefile.download",
                "chunk_bytes": 16 * 1024,
                "interval_s": 0.05,
            }
        ]
    }
    emu.config.archive_file_sizes["ICLISTENHF1560.wav"] = 64 * 1024
    downloads = emu.requests.of
    proc = harness.spawn()
    reap.append(proc)
    await until(lambda: len(downloads("archivefile.download")) >= 4, 60, "downloads under way")
    proc.send_signal(signal.SIGTERM)
    at_signal = len(downloads("archivefile.download"))
    assert await wait_exit(proc, GRACE + SLACK) == 0
    started_after = len(downloads("archivefile.download")) - at_signal
    # At most the downloads whose request was already on its way when the signal came.
    assert started_after <= 2, f"{started_after} downloads started after SIGTERM"
    log = (harness.root / "daemon.log").read_text()
    assert '"daemon_stopped"' in log
    assert "Traceback" not in log
    emu.faults = None
    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 120) == 0, (harness.root / "once.log").read_text()[-3000:]
    assert_no_temporaries(harness.out)
    await assert_state_consistent(harness.root / "state.db", harness.out)
    marks = await cursors(tmp_path / "state.db")
    files = check_archive(emu, harness, marks["wav"])  # type: ignore[arg-type]
    assert files > 150
    measure("shutdown.archive_files_compared", files)


@pytest.mark.slow
async def test_sigterm_while_polling_a_product(
    slow_products_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = slow_products_emulator
    harness = small_workload(tmp_path, emu)
    start = product_start(datetime.now(UTC), 1)  # one period to order
    harness.starts["tssd"] = start
    only(harness, "tssd", start=start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    proc = harness.spawn()
    reap.append(proc)
    await until(lambda: bool(emu.requests.of("dataProductDelivery.run")), 30, "a product run")
    await asyncio.sleep(0.5)  # now polling status
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, GRACE + SLACK) == 0
    async with SqliteStateStore(tmp_path / "state.db", read_only=True) as store:
        inflight = await store.get_inflight("tssd")
    assert len(inflight) == 1, "the run's ids were kept for the next start"
    [saved] = inflight.values()
    # The server finishes the run while the daemon is down; the next start resumes it.
    emu.clock.advance(61)
    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 60) == 0, (tmp_path / "once.log").read_text()[-3000:]
    assert len(emu.requests.of("dataProductDelivery.request")) == 1, "ordered once"
    assert assert_no_product_ordered_twice(emu) == 1
    # Polling resumed on the saved request (the run is polled with its dpRequestId).
    polled = {dict(r.query).get("dpRequestId") for r in emu.requests.of("dataProductDelivery.run")}
    assert polled == {str(saved["dp_request_id"])}
    assert any((harness.out / "onc_bacax_ctd_tssd" / "products").rglob("*.csv"))
    assert_no_temporaries(harness.out)
    await assert_state_consistent(tmp_path / "state.db", harness.out)
    measure("shutdown.sigterms", 1)
