"""The window pool: where a window's pages are merged into files and published.

Rendering and writing output files is the CPU-heavy half of a harvest (a 24 h page of an
8-sensor CTD is 690,000 readings and 66 MB of JSON Lines). `InlineWindowBuilder` does it in the
daemon's own process, as a plain library call. `ProcessWindowBuilder` does it in worker
processes, so a backfill uses every core: the daemon keeps fetching, parsing and paging (it
needs `next` to go on) and sends each parsed page, packed as a `PageBatch`, to the worker that
holds the window (a large one through shared memory: pipeline/outputs/handoff.py). A window
stays with one worker from open to publish; its writers, temporaries and partial digests live
there. Calls to one worker run in the order they were made, which is what makes `discard` after
a failed `add` safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from itertools import count
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pipeline.allocator import WORKER_TRIM_THRESHOLD, trim_periodically, tune_allocator
from pipeline.exceptions import OutputError
from pipeline.outputs.assembly import BuiltWindow, WindowAssembly
from pipeline.outputs.base import Writer
from pipeline.outputs.handoff import (
    SHARED_MIN_BYTES,
    PageHandoff,
    SegmentMapError,
    SharedBatch,
    attach,
    receive,
)
from pipeline.outputs.metadata import DatasetMeta
from pipeline.outputs.partition import PartitionKind
from pipeline.outputs.writers import WRITER_MODULES, LazyWriters
from pipeline.records import PageBatch, Window

T = TypeVar("T")


class WindowBuild(Protocol):
    """One window being built: pages in, files out."""

    @property
    def records_before(self) -> int:
        """Records the first format's file held when the window was opened."""
        ...

    async def add(self, batch: PageBatch) -> None:
        """Merge one page into every format."""
        ...

    async def publish(self) -> BuiltWindow:
        """Make every format's file final and durable (appended in place, or rewritten
        atomically)."""
        ...

    async def discard(self) -> None:
        """Drop what a failed window wrote; final files stay as they were."""
        ...


class WindowBuilder(Protocol):
    """Opens window builds; owns whatever runs them."""

    async def open(
        self,
        formats: Sequence[str],
        dataset_id: str,
        window: Window,
        members: Sequence[Window] = (),
        *,
        continued: bool = False,
    ) -> WindowBuild:
        """Start a window, reading what its files already hold; with `members`, the windows
        gathered in the covering `window` (see `WindowAssembly.open`). `continued`: the
        dataset's last build published this window's files up to a page's end, and this one
        goes on from there (a builder with several workers keeps it on the same one)."""
        ...

    async def close(self) -> None:
        """Release workers; builds still open are abandoned (their temporaries stay)."""
        ...


# --------------------------------------------------------------------------- in this process


class _InlineBuild:
    def __init__(self, assembly: WindowAssembly, records_before: int) -> None:
        self._assembly = assembly
        self._before = records_before
        self._publishing = False

    @property
    def records_before(self) -> int:
        return self._before

    async def add(self, batch: PageBatch) -> None:
        # Merging is CPU work in C-backed dict/str operations; it stays on the loop because
        # handing 100k-row pages to a thread costs more than it saves (the GIL).
        self._assembly.add(batch)

    async def publish(self) -> BuiltWindow:
        self._publishing = True
        return await asyncio.to_thread(self._assembly.publish)

    async def discard(self) -> None:
        # Once publishing started, its thread owns the files (cancelling the await does not
        # stop it) and discards them itself if it fails; closing them under it would pull
        # them from under its writes. Leftover temporaries are removed at the next start.
        if not self._publishing:
            self._assembly.discard()


class InlineWindowBuilder:
    """Builds windows in the daemon's process: no workers, nothing to pickle."""

    def __init__(self, writers: Mapping[str, Writer], root: Path) -> None:
        self._writers = writers
        self._root = root

    async def open(
        self,
        formats: Sequence[str],
        dataset_id: str,
        window: Window,
        members: Sequence[Window] = (),
        *,
        continued: bool = False,
    ) -> WindowBuild:
        """Open the window's writers in a thread (they read existing files)."""
        assembly = WindowAssembly(self._writers, formats, self._root, dataset_id)
        before = await asyncio.to_thread(assembly.open, window, members)
        return _InlineBuild(assembly, before)

    async def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------- worker processes

# How often a worker checks that the daemon is still there.
_WATCH_INTERVAL_S = 0.2
# Imported once by the fork server, so a new worker starts in milliseconds without importing
# anything again. "__main__" is the daemon's entry script (`onc-pipeline`; nothing for
# `python -m pipeline`): loaded there once, a worker does not run it again. It imports only
# `pipeline.cli`, which leaves settings, logging and the HTTP client to the commands. The
# writers of the formats the daemon's streams use are added (`ProcessWindowBuilder`): what
# importing their libraries (numpy, netCDF4, pyarrow) builds in memory (module objects,
# relocated library data) is then one copy-on-write copy for every worker instead of one
# private copy per worker. Library code is shared through the page cache either way.
# First (after `__main__`, which the fork server always imports first): limits malloc's arenas
# before a library starts threads (pyarrow's allocator starts one at import), so the workers
# forked from it start with one arena (`pipeline/allocator.py`).
_PRELOAD = ["__main__", "pipeline.outputs.forkserver_first", "pipeline.outputs.pool"]
# Imported after all of them: unmaps the library pages those imports touched (40 - 70 MB with
# pyarrow) from the fork server, which only forks from then on (pipeline/library_pages.py).
_PRELOAD_LAST = "pipeline.outputs.forkserver_hook"

# The worker process's own state: its writers (for the partitioning it was started with,
# describing datasets from the metadata the daemon sends) and the windows it holds, by key.
_worker_writers: Mapping[str, Writer] | None = None
_worker_metas: dict[str, DatasetMeta] = {}
_worker_builds: dict[int, WindowAssembly] = {}


def _worker_init(partition: PartitionKind, daemon_pid: int) -> None:
    """Runs first in each worker: signals are the daemon's to handle, writers are built."""
    # Ctrl-C reaches the whole process group and systemd's SIGTERM the whole cgroup; the
    # daemon drains and then closes its workers, so a worker must outlive both signals.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A window's columns and file buffers are big blocks too, and each build frees a few MB.
    # (The arenas were limited in the fork server, before any library started a thread.)
    tune_allocator(trim_threshold=WORKER_TRIM_THRESHOLD)
    threading.Thread(
        target=_exit_with_daemon, args=(daemon_pid, os.getppid()), name="daemon-watch", daemon=True
    ).start()
    trim_periodically()  # what its builds freed goes back within 10 s once they stop
    global _worker_writers
    _worker_writers = LazyWriters(_worker_metas, partition)


def _exit_with_daemon(daemon_pid: int, parent: int) -> None:
    """Exit when the daemon is gone (SIGKILL, a crash): nothing else would end a worker.

    Its queue never reports end-of-file (the worker holds both ends of its pipe), and a
    worker left behind would finish a half-built window next to the restarted daemon's.
    Temporaries it leaves are removed when the daemon starts again.
    """
    while True:
        time.sleep(_WATCH_INTERVAL_S)
        try:
            os.kill(daemon_pid, 0)
        except ProcessLookupError:
            os._exit(70)
        except PermissionError:
            pass  # alive, under another user (a recycled pid): the parent check decides
        if os.getppid() != parent:  # the fork server exits with the daemon
            os._exit(70)


def _worker_open(
    key: int,
    formats: Sequence[str],
    root: Path,
    dataset: str,
    window: Window,
    members: Sequence[Window],
    meta: DatasetMeta | None,
) -> int:
    assert _worker_writers is not None, "worker not initialised"
    if meta is not None:  # discovery metadata for NetCDF/CSV, described by the daemon
        _worker_metas[dataset] = meta
    assembly = WindowAssembly(_worker_writers, formats, root, dataset)
    before = assembly.open(window, members)
    _worker_builds[key] = assembly
    return before


def _worker_add(key: int, batch: PageBatch | SharedBatch) -> None:
    if isinstance(batch, SharedBatch):
        batch = receive(batch)
    _worker_builds[key].add(batch)


def _worker_publish(key: int) -> BuiltWindow:
    assembly = _worker_builds.pop(key)
    return assembly.publish()


def _worker_discard(key: int) -> None:
    assembly = _worker_builds.pop(key, None)
    if assembly is not None:
        assembly.discard()


def _worker_pid() -> int:
    return os.getpid()


def _worker_open_windows() -> int:
    return len(_worker_builds)


class _Worker:
    """One worker process (a one-process pool: calls run in order) and its open windows.

    Starting the process waits for the fork server (its start and its imports), so it is
    done in a thread, never on the event loop: `ensure_started` is thread-safe, and `call`
    runs it in a thread until the worker is up.
    """

    def __init__(
        self, index: int, start: Callable[[], Executor], handoff: PageHandoff | None = None
    ) -> None:
        self.index = index
        self._start = start
        self.handoff = handoff if handoff is not None else PageHandoff()
        self._executor: Executor | None = None
        self._lock = threading.Lock()  # one start at a time (the prestart thread, calls)
        self._running = False  # the process is up: submitting no longer waits
        self.open_builds = 0

    def ensure_started(self) -> Executor:
        """The executor, its process started (blocks while the fork server gets ready)."""
        with self._lock:
            if self._executor is None:
                self._executor = self._start()
            if not self._running:
                # A one-process pool forks its process at the first submit. If that fails
                # (no memory, no processes left), the pool is dropped so the next call
                # starts afresh instead of retrying a broken one.
                try:
                    self._executor.submit(_worker_pid)
                except Exception as exc:
                    executor, self._executor = self._executor, None
                    executor.shutdown(wait=False, cancel_futures=True)
                    raise OutputError(
                        f"window worker {self.index} could not start: {exc}; the window is "
                        "retried (check memory and process limits)"
                    ) from exc
                self._running = True
            return self._executor

    async def _ready(self) -> Executor:
        executor = self._executor
        if executor is None or not self._running:
            executor = await asyncio.to_thread(self.ensure_started)
        return executor

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        executor = await self._ready()
        return await self._wait(executor, self._send(executor, fn, *args))

    async def add(self, key: int, batch: PageBatch) -> None:
        """`_worker_add` for the window `key`; a large page goes through shared memory
        (pipeline/outputs/handoff.py), its segment reused once the worker ran the call."""
        executor = await self._ready()
        lease = await self.handoff.lease(batch, executor)
        if lease is not None and lease.attach is not None:
            try:
                await self._wait(executor, self._send(executor, attach, lease.attach))
            except SegmentMapError as exc:
                self.handoff.unmappable(exc)
                self.handoff.release(lease)
                lease = None
            except BaseException:
                self.handoff.release(lease)  # the page was not sent: nobody reads it
                raise
            else:
                self.handoff.mapped(lease, executor)
        if lease is None:
            return await self._wait(executor, self._send(executor, _worker_add, key, batch))
        done = self.handoff.done_callback(lease, asyncio.get_running_loop())
        future = self._send(executor, _worker_add, key, lease.shared, done=done)
        return await self._wait(executor, future)

    def _send(
        self,
        executor: Executor,
        fn: Callable[..., T],
        *args: object,
        done: Callable[[Future[Any] | None], None] | None = None,
    ) -> Future[T]:
        """Submit `fn(*args)` to the worker; `done(future)` once it ran, or `done(None)` now
        when it could not be submitted."""
        try:
            future = executor.submit(fn, *args)
        except BaseException as exc:
            if done is not None:
                done(None)
            if isinstance(exc, BrokenProcessPool):
                raise self._lost(executor) from None
            raise
        if done is not None:
            future.add_done_callback(done)
        return future

    async def _wait(self, executor: Executor, future: Future[T]) -> T:
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            raise self._lost(executor) from None

    def _lost(self, executor: Executor) -> OutputError:
        # Killed (OOM killer, an operator) or crashed: its windows are lost, not their data.
        # The next window starts a fresh worker; this one is retried by its stream.
        with self._lock:
            if self._executor is executor:
                self._executor = None
                self._running = False
        executor.shutdown(wait=False, cancel_futures=True)
        return OutputError(
            f"window worker {self.index} exited unexpectedly (killed or out of memory)"
        )

    def queue_nowait(self, fn: Callable[..., object], *args: object) -> None:
        """Queue a call on the running worker without waiting for it (none when it is not
        running or broken: its windows are gone with it)."""
        executor = self._executor
        if executor is not None and self._running:
            with contextlib.suppress(BrokenProcessPool, RuntimeError):
                executor.submit(fn, *args)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor, self._running = self._executor, None, False
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class _ProcessBuild:
    def __init__(self, worker: _Worker, key: int, records_before: int) -> None:
        self._worker = worker
        self._key = key
        self._before = records_before
        self._open = True

    @property
    def records_before(self) -> int:
        return self._before

    @property
    def worker_index(self) -> int:
        """Which worker holds the window (diagnostics and tests)."""
        return self._worker.index

    def _release(self) -> None:
        if self._open:
            self._open = False
            self._worker.open_builds -= 1

    async def add(self, batch: PageBatch) -> None:
        await self._worker.add(self._key, batch)

    async def publish(self) -> BuiltWindow:
        try:
            return await self._worker.call(_worker_publish, self._key)
        finally:
            self._release()

    async def discard(self) -> None:
        try:
            await self._worker.call(_worker_discard, self._key)
        except OutputError:
            pass  # the worker died: nothing of this window is open any more
        finally:
            self._release()


class ProcessWindowBuilder:
    """Builds windows in `workers` processes, started on first use, one window on one worker.

    A new window goes to the worker with the fewest open windows, preferring the one that
    built the dataset's previous window (its caches, e.g. what the CSV writer knows of the
    dataset's file, are warm there); a continued one always goes there (elsewhere, the CSV
    writer would scan the file its last build just wrote).
    `formats` are the output formats expected: their writers are loaded by the fork server
    (a format not named still works; each worker then imports it alone).
    """

    def __init__(
        self,
        workers: int,
        partition: PartitionKind,
        root: Path,
        metas: Mapping[str, DatasetMeta],
        formats: Collection[str] = (),
        *,
        shared_min_bytes: int = SHARED_MIN_BYTES,
    ) -> None:
        if workers < 1:
            raise ValueError("a process builder needs at least one worker")
        self._root = root
        self._metas = metas
        # Workers are forked from a fork server: a small process started once, with no event
        # loop or sockets (its only threads are libraries' own, e.g. an allocator's). Forking
        # the daemon itself (threads, an event loop, sockets) is unsafe; spawning re-imports
        # everything for every worker.
        context = get_context("forkserver")
        # The writers of `formats` (the formats streams write) are imported there too, once:
        # netCDF4 and numpy took each worker about 0.4 CPU s to import at its first window,
        # and what the imports build is shared copy-on-write instead of each worker
        # building its own.
        self.preload = preload_modules(sorted(formats))
        context.set_forkserver_preload(self.preload)
        start = partial(
            ProcessPoolExecutor,
            max_workers=1,
            mp_context=context,
            initializer=_worker_init,
            initargs=(partition, os.getpid()),
        )
        self._workers = [_Worker(i, start, PageHandoff(shared_min_bytes)) for i in range(workers)]
        self._keys = count(1)
        self._last_worker: dict[str, _Worker] = {}

    @property
    def workers(self) -> int:
        """How many worker processes build windows."""
        return len(self._workers)

    def _choose(self, dataset_id: str, *, continued: bool = False) -> _Worker:
        fewest = min(worker.open_builds for worker in self._workers)
        previous = self._last_worker.get(dataset_id)
        if previous is not None and (continued or previous.open_builds == fewest):
            return previous
        return next(worker for worker in self._workers if worker.open_builds == fewest)

    async def open(
        self,
        formats: Sequence[str],
        dataset_id: str,
        window: Window,
        members: Sequence[Window] = (),
        *,
        continued: bool = False,
    ) -> WindowBuild:
        """Open the window on a worker, with the dataset's discovery metadata if any."""
        worker = self._choose(dataset_id, continued=continued)
        self._last_worker[dataset_id] = worker
        key = next(self._keys)
        worker.open_builds += 1
        try:
            before = await worker.call(
                _worker_open,
                key,
                tuple(formats),
                self._root,
                dataset_id,
                window,
                tuple(members),
                self._metas.get(dataset_id),
            )
        except BaseException:
            worker.open_builds -= 1
            # Cancelled (the window's fetch failed while it opened, a shutdown), the open may
            # still run on the worker and keep the window there: a discard queued behind it
            # (a worker runs its calls in order) drops it. Nothing to await: it is a no-op
            # when the open failed.
            worker.queue_nowait(_worker_discard, key)
            raise
        return _ProcessBuild(worker, key, before)

    def prestart(self) -> None:
        """Start the fork server and every worker now, in a thread, without waiting for
        them: they get ready while the first requests are on the network, not when the first
        page is in, and the event loop never waits for the fork server's imports."""

        def start_all() -> None:
            for worker in self._workers:
                # A failed start is retried, and reported, by the first call that needs it.
                with contextlib.suppress(Exception):
                    worker.ensure_started()

        threading.Thread(target=start_all, name="window-workers-start", daemon=True).start()

    async def worker_pids(self) -> list[int]:
        """The worker processes' ids, starting any not yet running (tests, diagnostics)."""
        return [await worker.call(_worker_pid) for worker in self._workers]

    async def open_windows(self) -> int:
        """Windows the workers hold open, summed (tests, diagnostics)."""
        return sum([await worker.call(_worker_open_windows) for worker in self._workers])

    async def close(self) -> None:
        """Stop every worker after the calls already queued (in a thread: it joins them)."""
        await asyncio.to_thread(self._shutdown)
        for worker in self._workers:
            worker.handoff.close()

    def _shutdown(self) -> None:
        for worker in self._workers:
            worker.shutdown()


def preload_modules(formats: Sequence[str]) -> list[str]:
    """What the fork server imports before forking workers for `formats`."""
    modules = list(_PRELOAD)
    for fmt in formats:
        module = WRITER_MODULES.get(fmt)
        if module is not None and module not in modules:
            modules.append(module)
    return [*modules, _PRELOAD_LAST]


def default_window_workers(cpu_count: int | None) -> int:
    """`auto`: none on one core (a second process would only add copying); otherwise a worker
    per core beside the daemon's own, at least two (the daemon mostly waits on the network
    and parses), at most four."""
    cores = cpu_count or 1
    return 0 if cores < 2 else min(4, max(2, cores - 1))
