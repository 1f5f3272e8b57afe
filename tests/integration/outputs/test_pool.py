"""Window builders: worker processes write exactly what the in-process builder writes, keep a
window on one worker, survive a killed worker, and carry typed errors back."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from pipeline.daemon import window_builder, window_slot_count
from pipeline.exceptions import ConfigError, LeaseLostError, OutputError
from pipeline.onc.errors import OncSchemaError, UnsafeFileNameError
from pipeline.outputs.assembly import BuiltWindow
from pipeline.outputs.handoff import PageHandoff
from pipeline.outputs.pool import (
    InlineWindowBuilder,
    ProcessWindowBuilder,
    WindowBuilder,
    _worker_add,
    default_window_workers,
    preload_modules,
)
from pipeline.outputs.writers import LazyWriters
from pipeline.records import PageBatch, RawBatch, SensorInfo, Window, scalar_batch
from pipeline.settings import Settings, load_settings

DAY = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = Window(DAY, DAY + timedelta(hours=1))


def _times(start: int, n: int) -> list[str]:
    base = DAY + timedelta(seconds=start)
    return [(base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for i in range(n)]


def _scalar(start: int, n: int) -> PageBatch:
    times = _times(start, n)
    columns = [
        (
            SensorInfo(code=code),
            times,
            [float("nan") if i % 97 == 0 else k * 1000 + i / 8 for i in range(start, start + n)],
            [9 if i % 97 == 0 else 1 for i in range(start, start + n)],
        )
        for k, code in enumerate(("temperature", "conductivity", "pressure"))
    ]
    return scalar_batch(columns, qaqc_flag_info={"1": "good", "9": "missing"})


def _raw(start: int, n: int) -> PageBatch:
    times = _times(start, n)
    return RawBatch(times, [f"$PRS,{i},ok" for i in range(n)], [" "] * n)


@pytest.fixture(params=["pipe", "shared"])
async def pool(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ProcessWindowBuilder]:
    # "shared": every scalar page goes through shared memory (pipeline/outputs/handoff.py),
    # not only the large ones.
    shared_min_bytes = 0 if request.param == "shared" else 1 << 40
    builder = ProcessWindowBuilder(
        2, "daily", tmp_path / "procs", {}, shared_min_bytes=shared_min_bytes
    )
    try:
        yield builder
    finally:
        await builder.close()


async def _build(
    builder: WindowBuilder, formats: list[str], dataset: str, batches: list[PageBatch]
) -> BuiltWindow:
    build = await builder.open(formats, dataset, HOUR)
    for batch in batches:
        await build.add(batch)
    return await build.publish()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_workers_write_byte_for_byte_what_the_inline_builder_writes(
    tmp_path: Path, pool: ProcessWindowBuilder
) -> None:
    inline = InlineWindowBuilder(LazyWriters({}, "daily"), tmp_path / "inline")
    # In order, then a page that overlaps what was written (the merge path), twice over.
    scalar = [_scalar(0, 1200), _scalar(1200, 1200), _scalar(600, 1000)]
    raw = [_raw(0, 500), _raw(400, 300)]
    for builder in (inline, pool):
        first = await _build(builder, ["jsonl"], "ctd", scalar)
        again = await _build(builder, ["jsonl"], "ctd", [_scalar(2400, 600)])
        lines = await _build(builder, ["jsonl", "rawtext"], "bpr", raw)
        assert first.records == 2400 * 3
        assert again.records == 3000 * 3
        assert lines.records == 700
        assert lines.files[1].time_start == DAY  # rawtext covers its daily partition
        # JSON Lines: the window itself (each file carries the range the manifest records).
        assert (lines.files[0].time_start, lines.files[0].time_end) == (HOUR.start, HOUR.end)
    inline_files = _tree(tmp_path / "inline")
    assert inline_files, "the inline builder wrote nothing"
    assert _tree(tmp_path / "procs") == inline_files
    # The scalar pages went through shared memory, or through the pipe, as asked.
    segments = sum(worker.handoff.segments for worker in pool._workers)
    assert (segments > 0) == (pool._workers[0].handoff._min_bytes == 0)


async def test_concurrent_windows_spread_over_workers_and_stay_on_theirs(
    pool: ProcessWindowBuilder,
) -> None:
    pids = await pool.worker_pids()
    assert len(set(pids)) == 2
    assert os.getpid() not in pids
    a = await pool.open(["jsonl"], "a", HOUR)
    b = await pool.open(["jsonl"], "b", HOUR)
    await asyncio.gather(a.add(_scalar(0, 3000)), b.add(_scalar(0, 3000)))
    built = await asyncio.gather(a.publish(), b.publish())
    assert [w.records for w in built] == [9000, 9000]
    # Both workers held a window at once: they ran on different workers.
    assert {a.worker_index, b.worker_index} == {0, 1}


def test_a_continued_window_stays_on_the_worker_that_published_its_files(tmp_path: Path) -> None:
    builder = ProcessWindowBuilder(2, "daily", tmp_path, {})  # no worker starts before a call
    first, second = builder._workers
    builder._last_worker["a"] = second
    second.open_builds = 3
    # A new window goes to the least loaded worker; a continued one (the CSV writer's facts of
    # the file its last build wrote are warm there) to the one that built the dataset's last.
    assert builder._choose("a") is first
    assert builder._choose("a", continued=True) is second
    assert builder._choose("b", continued=True) is first  # no last build: the least loaded


async def test_a_killed_worker_fails_its_window_and_the_next_window_gets_a_fresh_one(
    tmp_path: Path, pool: ProcessWindowBuilder
) -> None:
    pids = await pool.worker_pids()
    build = await pool.open(["jsonl"], "ctd", HOUR)
    await build.add(_scalar(0, 100))
    os.kill(pids[build.worker_index], signal.SIGKILL)
    with pytest.raises(OutputError, match="exited unexpectedly"):
        await build.add(_scalar(100, 100))
    await build.discard()  # nothing to discard any more; must not raise
    again = await _build(pool, ["jsonl"], "ctd", [_scalar(0, 200)])
    assert again.records == 600
    assert len(set(await pool.worker_pids())) == 2
    assert not list((tmp_path / "procs").rglob("*.tmp"))


async def test_errors_inside_a_worker_arrive_typed_with_their_details(
    tmp_path: Path, pool: ProcessWindowBuilder
) -> None:
    (tmp_path / "procs").mkdir()
    (tmp_path / "procs" / "blocked").write_text("a file where the dataset folder should be")
    build = await pool.open(["jsonl"], "blocked", HOUR)
    with pytest.raises(OutputError) as caught:
        await build.add(_scalar(0, 10))
    assert caught.value.path is not None
    assert "blocked" in caught.value.path
    await build.discard()


@pytest.mark.parametrize(
    "error",
    [
        OutputError("disk full", path="/data/x.nc"),
        UnsafeFileNameError("not a file name", name="../etc/passwd"),
        OncSchemaError("expected an array", where="sensorData[2].data.values", status=200),
        ConfigError([("streams[0].window", "must divide a day")]),
        LeaseLostError("taken over", resource="stream:a", token=7),
    ],
)
def test_pipeline_errors_survive_pickling(error: Exception) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__


def test_auto_worker_count() -> None:
    assert default_window_workers(1) == 0
    assert default_window_workers(None) == 0
    assert default_window_workers(2) == 2
    assert default_window_workers(4) == 3
    assert default_window_workers(64) == 4


def test_the_fork_server_loads_the_writers_of_the_formats_in_use() -> None:
    # Loaded once before forking, their libraries are shared by every worker.
    assert preload_modules(["parquet", "netcdf", "jsonl"])[-4:] == [
        "pipeline.outputs.parquet",
        "pipeline.outputs.netcdf",
        "pipeline.outputs.jsonl",
        "pipeline.outputs.forkserver_hook",  # last: it releases what the imports touched
    ]
    # Two formats of one module load it once; an unknown name loads nothing.
    modules = preload_modules(["rawtext", "jsonlcsv", "nosuch"])
    assert modules.count("pipeline.outputs.rawtext") == 1
    assert not any("nosuch" in module for module in modules)
    assert "pipeline.outputs.parquet" not in preload_modules(["jsonl"])


# In a fresh interpreter: the fork server is started once per process, with the preload of
# the first builder that needed it.
_FORK_SERVER_PROBE = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from pipeline.outputs.pool import ProcessWindowBuilder
from pipeline.records import SensorInfo, Window, scalar_batch
from benchmarks.harness import parent_pid
from tests.procfs import rss_file_mb
from tests.unit.outputs.helpers import ctd_meta

async def main():
    meta = ctd_meta()
    builder = ProcessWindowBuilder(
        1, "daily", Path(sys.argv[1]), {meta.dataset_id: meta}, formats=["csv"]
    )
    try:
        day = datetime(2026, 11, 20, tzinfo=UTC)
        window = Window(day, day + timedelta(hours=1))
        build = await builder.open(["csv"], meta.dataset_id, window)
        times = [f"2026-11-20T00:00:{s:02d}.000Z" for s in range(60)]
        columns = [(SensorInfo(code="t"), times, [s / 4 for s in range(60)], [1] * 60)]
        await build.add(scalar_batch(columns, qaqc_flag_info={"1": "good"}))
        built = await build.publish()
        (worker,) = await builder.worker_pids()
        print(rss_file_mb(parent_pid(worker)), built.records)
    finally:
        await builder.close()

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise and /proc")
def test_the_fork_server_unmaps_its_library_pages(tmp_path: Path) -> None:
    # pyarrow's libraries, loaded for CSV, leave 40 - 70 MB of their pages mapped in the
    # process that imported them (44 MB in this probe without the release); the fork
    # server only forks once its imports are done.
    run = subprocess.run(
        [sys.executable, "-c", _FORK_SERVER_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    fork_server_file_mb, records = (int(word) for word in run.stdout.split())
    assert fork_server_file_mb < 25, fork_server_file_mb
    assert records == 60  # and its worker, forked after, writes CSV as before


def test_window_slots_feed_every_request_and_worker() -> None:
    # One process: one window per allowed request plus one being written, at least 4.
    assert window_slot_count(3, 0) == 4
    assert window_slot_count(1, 0) == 4
    assert window_slot_count(12, 0) == 13
    # With workers: two windows each on top (one building, one waiting for it).
    assert window_slot_count(3, 2) == 8
    assert window_slot_count(12, 4) == 21


async def test_builder_reports_its_worker_count(tmp_path: Path) -> None:
    builder = ProcessWindowBuilder(3, "daily", tmp_path, {})
    try:
        assert builder.workers == 3
    finally:
        await builder.close()


class _FullDiskWriter:
    """A format whose every publish fails as a full disk would."""

    name = "full"
    kinds = frozenset({"rawdata"})

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        return Path(dataset_id) / "never"

    def open_window(self, root: Path, dataset_id: str, window: Window) -> _FullDiskWindow:
        return _FullDiskWindow()


class _FullDiskWindow:
    record_count = 0
    covers = None

    def add(self, batch: RawBatch) -> int:
        return batch.rows

    def publish(self) -> None:
        raise OutputError("cannot write x: no space left on device", path="x")

    def discard(self) -> None:
        pass


async def test_a_format_failing_after_another_was_published_reports_both(tmp_path: Path) -> None:
    writers = {"rawtext": LazyWriters({}, "daily")["rawtext"], "full": _FullDiskWriter()}
    inline = InlineWindowBuilder(writers, tmp_path)  # type: ignore[arg-type]
    built = await _build(inline, ["rawtext", "full"], "bpr", [_raw(0, 50)])
    assert isinstance(built.error, OutputError)
    # Only the file on disk is reported (the engine must record it); the failed one is not.
    assert [item.file.path.name for item in built.files] == ["bpr_20261120.txt"]
    assert built.files[0].file.path.exists()
    # Failing first, nothing is on disk: the error is raised as it is.
    with pytest.raises(OutputError):
        await _build(inline, ["full", "rawtext"], "bpr", [_raw(0, 50)])


async def test_a_gathered_build_on_a_worker_writes_what_the_inline_builder_writes(
    tmp_path: Path, pool: ProcessWindowBuilder
) -> None:
    inline = InlineWindowBuilder(LazyWriters({}, "daily"), tmp_path / "inline")
    hours = [
        Window(DAY + h * timedelta(hours=1), DAY + (h + 1) * timedelta(hours=1)) for h in (0, 1)
    ]
    for builder in (inline, pool):
        build = await builder.open(
            ["jsonl", "rawtext"], "bpr", Window(DAY, DAY + timedelta(days=1)), hours
        )
        await build.add(_raw(3000, 1200))  # 00:50 to 01:10: across the two hours
        built = await build.publish()
        # A JSON Lines file per hour, one raw-text file for the day.
        assert [(f.file.path.suffix, f.records) for f in built.files] == [
            (".jsonl", 600),
            (".jsonl", 600),
            (".txt", 1200),
        ]
    inline_files = _tree(tmp_path / "inline")
    assert len(inline_files) == 3
    assert _tree(tmp_path / "procs") == inline_files


async def test_a_cancelled_open_leaves_no_window_on_the_worker(
    pool: ProcessWindowBuilder, tmp_path: Path
) -> None:
    await _build(pool, ["jsonl"], "ds", [_scalar(0, 10)])  # a window exists to be read
    worker = pool._last_worker["ds"]  # where the dataset's next window goes
    with multiprocessing.Manager() as manager:
        gate = manager.Event()
        # The worker waits on the gate, so the open queued behind it cannot have run when it
        # is cancelled; once handed to the worker's queue it runs when the gate opens.
        blocked = asyncio.create_task(worker.call(gate.wait))
        opening = asyncio.create_task(pool.open(["jsonl"], "ds", HOUR))
        await asyncio.sleep(0.2)  # the executor's thread hands the open to the worker's queue
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        gate.set()
        await blocked
    assert await pool.open_windows() == 0
    build = await pool.open(["jsonl"], "ds", HOUR)  # the window opens again as usual
    await build.add(_scalar(10, 10))
    assert (await build.publish()).records == 60  # 20 times x 3 sensors
    assert await pool.open_windows() == 0


async def _handed_over(worker: Any, fn: Any) -> None:
    """Wait until the worker's pending call of `fn` left the executor for the process's queue
    (from there it is run whatever happens to its future: it cannot be cancelled).

    The executor moves calls into that queue when a call is submitted or a result comes back:
    a no-op is submitted meanwhile to have it look again."""
    executor = worker._executor
    for _ in range(500):
        items = [item for item in list(executor._pending_work_items.values()) if item.fn is fn]
        if items and all(item.future.running() for item in items):
            return
        executor.submit(os.getpid)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{fn} never reached the worker's queue")


async def test_a_cancelled_page_keeps_its_segment_until_the_worker_is_done_with_it(
    tmp_path: Path,
) -> None:
    builder = ProcessWindowBuilder(1, "daily", tmp_path, {}, shared_min_bytes=0)
    try:
        worker = builder._workers[0]
        worker.handoff = PageHandoff(0, max_segments=3)  # a third page needs not wait
        build = await builder.open(["jsonl"], "ds", HOUR)
        other = await builder.open(["jsonl"], "other", HOUR)
        third = await builder.open(["jsonl"], "third", HOUR)
        await build.add(_scalar(0, 600))  # the worker maps the segment: no call needed below
        with multiprocessing.Manager() as manager:
            gate = manager.Event()
            blocked = asyncio.create_task(worker.call(gate.wait))
            adding = asyncio.create_task(build.add(_scalar(0, 600)))
            await _handed_over(worker, _worker_add)  # in the worker's queue: it will run
            adding.cancel()
            with pytest.raises(asyncio.CancelledError):
                await adding
            (segment,) = worker.handoff._segments
            assert segment.busy, "freed while the worker has yet to read it"
            # Another page meanwhile takes another segment.
            later = asyncio.create_task(other.add(_scalar(0, 600)))
            await asyncio.sleep(0.2)
            assert worker.handoff.segments == 2
            # A page cancelled while its segment is being mapped was never sent: its segment
            # is free at once.
            dropped = asyncio.create_task(third.add(_scalar(0, 600)))
            await asyncio.sleep(0.2)
            assert worker.handoff.segments == 3
            dropped.cancel()
            with pytest.raises(asyncio.CancelledError):
                await dropped
            assert not worker.handoff._segments[2].busy
            gate.set()
            await blocked
            await later
        assert (await other.publish()).records == 1800
        await asyncio.sleep(0.1)  # the release reaches the loop
        assert not any(segment.busy for segment in worker.handoff._segments)
        # The page cancelled after it was handed over was merged: it is in the window.
        assert (await build.publish()).records == 1800
        await third.discard()
    finally:
        await builder.close()


async def test_segments_go_back_once_read_and_with_the_builder(tmp_path: Path) -> None:
    builder = ProcessWindowBuilder(1, "daily", tmp_path, {}, shared_min_bytes=0)
    worker = builder._workers[0]
    try:
        build = await builder.open(["jsonl"], "ds", HOUR)
        await build.add(_scalar(0, 600))
        await asyncio.sleep(0.1)  # the release reaches the loop
        assert worker.handoff.segments == 1
        assert worker.handoff.resident() == 0
        assert (await build.publish()).records == 1800
    finally:
        await builder.close()
    assert worker.handoff.segments == 0  # closed with the builder


async def test_a_page_that_cannot_be_submitted_gives_its_segment_back(tmp_path: Path) -> None:
    builder = ProcessWindowBuilder(1, "daily", tmp_path, {}, shared_min_bytes=0)
    worker = builder._workers[0]
    try:
        build = await builder.open(["jsonl"], "ds", HOUR)
        await build.add(_scalar(0, 600))  # mapped: the next page is one call
        executor: Any = worker._executor
        submit = executor.submit

        def refusing(fn: Any, *args: Any) -> Any:
            if fn is _worker_add:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return submit(fn, *args)

        executor.submit = refusing
        with pytest.raises(RuntimeError, match="cannot schedule"):
            await build.add(_scalar(600, 600))
        assert not any(segment.busy for segment in worker.handoff._segments)
        executor.submit = submit
    finally:
        await builder.close()


async def test_where_workers_cannot_map_segments_pages_take_the_pipe(tmp_path: Path) -> None:
    # The worker opens the daemon's descriptor under /proc; a pid with no entry there stands
    # for a host whose /proc the workers may not read.
    builder = ProcessWindowBuilder(1, "daily", tmp_path / "procs", {}, shared_min_bytes=0)
    inline = InlineWindowBuilder(LazyWriters({}, "daily"), tmp_path / "inline")
    builder._workers[0].handoff._pid = 2**22 + 7
    try:
        for each in (inline, builder):
            built = await _build(each, ["jsonl"], "ctd", [_scalar(0, 600), _scalar(600, 600)])
            assert built.records == 3600
    finally:
        await builder.close()
    assert builder._workers[0].handoff.refused is not None
    assert _tree(tmp_path / "procs") == _tree(tmp_path / "inline")


def _settings(tmp_path: Path, window_workers: int, streams: list[dict[str, object]]) -> Settings:
    """Settings of a config file naming `streams` (scalardata of one device)."""
    config = tmp_path / "config.yaml"
    stream = {"kind": "scalardata", "device_code": "CTD1"}
    config.write_text(
        yaml.safe_dump(
            {
                "onc": {"token": "t" * 36},
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "output": {"root": str(tmp_path / "out")},
                "daemon": {"window_workers": window_workers},
                "streams": [{**stream, **each} for each in streams],
            }
        )
    )
    return load_settings(config, environ={}, secrets_dirs=[])


async def test_the_fork_server_preloads_the_writers_streams_use(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        1,
        [
            {"name": "a", "formats": ["netcdf", "jsonl"]},
            {"name": "b", "dataset_id": "b", "formats": ["parquet"], "enabled": False},
        ],
    )
    metas = SimpleNamespace(metas={})
    builder = window_builder(settings, tmp_path / "out", metas)  # type: ignore[arg-type]
    assert builder is not None
    try:
        assert builder.preload == [
            "__main__",
            "pipeline.outputs.forkserver_first",
            "pipeline.outputs.pool",
            "pipeline.outputs.jsonl",
            "pipeline.outputs.netcdf",
            "pipeline.outputs.forkserver_hook",
        ]  # not parquet: its only stream is disabled
    finally:
        await builder.close()


async def test_the_event_loop_runs_while_a_worker_starts() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.outputs.pool import _Worker

    gate = threading.Event()
    started_in: list[threading.Thread] = []

    def start() -> ThreadPoolExecutor:
        started_in.append(threading.current_thread())
        gate.wait(5)  # the fork server still importing (bounded: a blocked loop fails, not hangs)
        return ThreadPoolExecutor(1)

    worker = _Worker(0, start)
    calling = asyncio.create_task(worker.call(pow, 2, 10))
    for _ in range(20):  # the loop keeps running while the worker cannot start
        await asyncio.sleep(0)
    assert not calling.done()
    gate.set()
    assert await calling == 1024
    assert started_in
    assert started_in[0] is not threading.main_thread()
    worker.shutdown()


async def test_a_worker_that_cannot_start_is_an_output_error_and_starts_afresh() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.outputs.pool import _Worker

    class _NoProcess(ThreadPoolExecutor):
        def submit(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise OSError(11, "Resource temporarily unavailable")

    pools: list[ThreadPoolExecutor] = []

    def start() -> ThreadPoolExecutor:
        pools.append(_NoProcess(1) if not pools else ThreadPoolExecutor(1))
        return pools[-1]

    worker = _Worker(0, start)
    with pytest.raises(OutputError, match="could not start"):
        await worker.call(pow, 2, 10)
    assert await worker.call(pow, 2, 10) == 1024  # a new pool, not the broken one again
    assert len(pools) == 2
    worker.shutdown()


async def test_prestart_returns_before_the_workers_are_up(tmp_path: Path) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.outputs.pool import _Worker

    gate = threading.Event()

    def start() -> ThreadPoolExecutor:
        gate.wait()
        return ThreadPoolExecutor(1)

    builder = ProcessWindowBuilder(1, "daily", tmp_path, {})
    builder._workers = [_Worker(0, start)]
    builder.prestart()  # returns at once: the start waits in a thread
    assert not builder._workers[0]._running  # still starting
    gate.set()
    assert await builder.worker_pids() == [os.getpid()]  # a thread pool stands in here
    await builder.close()


def _start_up_warnings(tmp_path: Path, fmt: str, event: str) -> list[dict[str, Any]]:
    """The `event` warnings `window_builder` logs at start for one stream writing `fmt`."""
    from structlog.testing import capture_logs

    settings = _settings(tmp_path, 0, [{"name": "a", "dataset_id": "a", "formats": [fmt]}])
    with capture_logs() as logs:
        assert window_builder(settings, tmp_path / "out", SimpleNamespace(metas={})) is None  # type: ignore[arg-type]
    return [e for e in logs if e["event"] == event]


@pytest.mark.parametrize("compiled", [True, False])
def test_lines_rendered_in_python_are_logged_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    from pipeline.outputs import native_lines

    monkeypatch.setattr(native_lines, "COMPILED", compiled)
    warned = _start_up_warnings(tmp_path, "jsonl", "lines_rendered_in_python")
    assert len(warned) == (0 if compiled else 1)
    if warned:
        assert "gcc python3-dev" in warned[0]["fix"]


@pytest.mark.parametrize("compiled", [True, False])
def test_pages_cut_with_numpy_are_logged_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    from pipeline import timeaxis
    from tests.unit.c_modules import required

    if compiled:  # fails where it should have been built (a compiler here, or CI)
        required(timeaxis._columns, "pipeline._columns", "simdjson and numpy do its work here")
    else:
        monkeypatch.setattr(timeaxis, "_columns", None)
    warned = _start_up_warnings(tmp_path, "netcdf", "pages_cut_with_numpy")
    assert len(warned) == (0 if compiled else 1)
    if warned:
        assert "15 MB" in warned[0]["detail"]
        assert "gcc python3-dev" in warned[0]["fix"]
