"""Composition root: builds, owns and closes every component of a harvesting process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pipeline.allocator import trim_periodically, tune_allocator
from pipeline.coordination.leases import coordination_for, instance_owner
from pipeline.engine.context import EventFanout, HarvestContext
from pipeline.engine.describe import OutputFormats
from pipeline.engine.readahead import FIRST_PAGE_GUESS, ReadAhead
from pipeline.engine.runner import Runner, leased_pass
from pipeline.engine.streams.base import PassOutcome
from pipeline.erddap.flags import open_flagger
from pipeline.onc import OncClient, RequestLimiter
from pipeline.outputs import native_lines
from pipeline.outputs.pool import InlineWindowBuilder, ProcessWindowBuilder, default_window_workers
from pipeline.outputs.publish import remove_stale_temporaries
from pipeline.settings import Settings, TimeSeriesStream, client_options
from pipeline.state import open_state_store
from pipeline.state.base import StateStore
from pipeline.timeaxis import columns_compiled
from pipeline.times import utc_now

# What only some processes use is imported where it is used, so that `once` and `backfill`
# start without them: the ops server (aiohttp.web, prometheus_client) and the coverage mender
# serve `run` only, the registry client a configured registry, asyncpg PostgreSQL state.
if TYPE_CHECKING:
    from pipeline.ops import PipelineMetrics
    from pipeline.registry.notifier import RegistryNotifier

log = structlog.get_logger(__name__)

# What a warning about a C module that was not built tells the operator to do.
_COMPILER_FIX = (
    "install a C compiler and the Python headers (Debian: gcc python3-dev), then reinstall"
    " onc-pipeline"
)


def window_builder(
    settings: Settings, root: Path, formats: OutputFormats
) -> ProcessWindowBuilder | None:
    """Worker processes for building windows, as `daemon.window_workers` says (None: inline)."""
    wanted = settings.daemon.window_workers
    workers = default_window_workers(os.cpu_count()) if wanted == "auto" else wanted
    timeseries = [s for s in settings.streams if isinstance(s, TimeSeriesStream) and s.enabled]
    used = sorted({fmt for stream in timeseries for fmt in stream.formats})
    if {"jsonl", "csv"} & set(used) and not native_lines.COMPILED:
        log.warning(
            "lines_rendered_in_python",
            detail="the C module that renders JSON Lines and CSV was not compiled at"
            " install: the same lines are rendered in Python (JSON Lines about three times"
            " slower, CSV about 1.5 times)",
            fix=_COMPILER_FIX,
        )
    if timeseries and not columns_compiled():
        log.warning(
            "pages_cut_with_numpy",
            detail="the C module that parses and cuts a backfill's pages was not compiled at"
            " install: simdjson and numpy do it, slower and with about 15 MB more memory in"
            " this process",
            fix=_COMPILER_FIX,
        )
    if workers == 0:
        return None
    builder = ProcessWindowBuilder(
        workers, settings.output.partition, root, formats.metas, formats=used
    )
    if timeseries:
        builder.prestart()  # otherwise started by the first window, if a reload adds one
    return builder


def window_slot_count(max_concurrency: int, workers: int) -> int:
    """Windows in the making at once, all streams together: enough to keep every allowed
    request busy and every window worker fed (one window building, one waiting), no more.

    Each slot can hold a window's pages (`page_queue_size`) while it waits: this bounds the
    daemon's memory during backfills. Measured on 2 cores with 2 workers (BENCHMARKS.md):
    8 slots backfill 10 streams about 10 % faster than 4, for about the same memory.
    """
    return max(4, max_concurrency + 1 + 2 * workers)


def read_ahead_bytes(max_concurrency: int, workers: int) -> int:
    """Bytes of parsed pages fetched ahead of the builds, all streams together: a page for
    each allowed request and one merging on each window worker (or in the daemon, with no
    workers), at the size of a full page of an 8-sensor instrument. Requests wait when the
    builds fall behind, so the daemon's memory does not grow with the backlog or the stream
    count. A page for every window slot (then 64 MiB at the defaults instead of 40) was faster
    while pages were decoded whole after they arrived; since they are decoded as they arrive
    it is no faster, and holds 13-20 MB more where the workers are the limit (JSON Lines,
    CSV; docs/dev/memory.md). Counted in pages of a day (8 MiB) it held 4 full pages, not
    5: at 10 MiB (50 at the defaults) backfills took 4-8 % less time (JSON Lines, CSV,
    Parquet; NetCDF within noise) for the same peaks (BENCHMARKS.md, "Session 29")."""
    return (max_concurrency + max(workers, 1)) * FIRST_PAGE_GUESS


@asynccontextmanager
async def shared_limiter(settings: Settings) -> AsyncIterator[RequestLimiter | None]:
    """With PostgreSQL state, one politeness budget shared by every instance; else None
    (the client builds its own in-process limiter)."""
    if not settings.state.url.startswith(("postgresql://", "postgres://")):
        yield None
        return
    from pipeline.coordination.limiter import PostgresLimiter

    async with PostgresLimiter(
        settings.state.url,
        max_concurrency=settings.onc.max_concurrency,
        max_rate_per_s=settings.onc.max_rate_per_s,
    ) as limiter:
        yield limiter


@dataclass
class Components:
    """What a running process holds."""

    settings: Settings
    store: StateStore
    client: OncClient
    ctx: HarvestContext
    events: EventFanout
    notifier: RegistryNotifier | None = None


class _BackgroundSweep:
    """What crashes left under the output root (`remove_stale_temporaries`), removed by a
    thread beside the harvest, not before it: the walk takes as long as the output tree is
    big (millions of files after years), and systemd waits for READY=1 only
    `TimeoutStartSec`. `finish` ends it: a stop (now or while waiting) or a failure cuts the
    walk short at its next folder; a clean end of `once` or `backfill` waits for the walk.

    A crash leftover older than an hour whose name a restarted window writes again may be
    unlinked just as that window opens it (a race of microseconds, after a crash): the
    window's publish then fails, loudly, and the window is retried.
    """

    def __init__(self, root: Path, stop: asyncio.Event) -> None:
        self._stop = stop
        self._cut = threading.Event()
        self._task = asyncio.create_task(self._run(root), name="stale-sweep")

    async def _run(self, root: Path) -> None:
        try:
            sweep = await asyncio.to_thread(remove_stale_temporaries, root, stop=self._cut)
        except Exception as exc:  # a failed walk (or a bug) must not fail the harvest
            log.warning("stale_temporaries_not_removed", root=str(root), error=str(exc))
            return
        if sweep.removed:
            log.info("stale_temporaries_removed", count=len(sweep.removed))
        for path, reason in sweep.kept:
            log.warning("stale_temporary_kept", path=str(path), error=reason)

    async def finish(self, failed: bool) -> None:
        """Wait for the walk to end (cut short by a stop, now or meanwhile, or `failed`)."""
        if failed or self._stop.is_set():
            self._cut.set()
        else:
            stopping = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({self._task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not self._task.done():
                    self._cut.set()  # stopped meanwhile, or this wait was cancelled
        await asyncio.shield(self._task)


@asynccontextmanager
async def components(
    settings: Settings,
    *,
    stop: asyncio.Event,
    clock: Callable[[], datetime] | None = None,
    metrics: PipelineMetrics | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> AsyncIterator[Components]:
    """Open the state store and the client, clean leftovers, close everything on exit."""
    tune_allocator()  # before the first reply is read (pipeline/allocator.py says why)
    trim_periodically()  # what a finished backfill freed goes back within 10 s
    async with AsyncExitStack() as stack:
        store = open_state_store(settings.state.url)
        await stack.enter_async_context(store)
        # One coordination object per store: leases and registry claims must see each other.
        coordination = coordination_for(store)
        limiter = await stack.enter_async_context(shared_limiter(settings))
        client = await stack.enter_async_context(
            OncClient(
                client_options(settings),
                limiter=limiter,
                metrics=metrics.onc if metrics else None,
            )
        )
        root = await asyncio.to_thread(Path(settings.output.root).resolve)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        sweep = _BackgroundSweep(root, stop)

        async def end_sweep(failure: type[BaseException] | None, *_: object) -> bool:
            await sweep.finish(failed=failure is not None)
            return False  # an error raised in the block goes on

        stack.push_async_exit(end_sweep)
        events = EventFanout()
        if metrics is not None:
            events.subscribe(metrics.events)
        # ERDDAP first: the registry is told about new data only after ERDDAP was flagged.
        flagger = await stack.enter_async_context(
            open_flagger(settings, metrics.erddap if metrics else None)
        )
        if flagger is not None:
            events.subscribe(flagger)
        notifier: RegistryNotifier | None = None
        if settings.registry.enabled:
            from pipeline.registry.notifier import open_notifier

            notifier = await stack.enter_async_context(
                open_notifier(
                    settings.registry,
                    store,
                    metrics=metrics.registry_hook if metrics else None,
                    claims=coordination,
                )
            )
        if notifier is not None:
            events.subscribe(notifier)
        formats = OutputFormats(settings.output, client)
        builder = window_builder(settings, root, formats)
        if builder is not None:
            # Closed after the runner drained (the stack unwinds in reverse order).
            stack.push_async_callback(builder.close)
        ctx = HarvestContext(
            client=client,
            store=store,
            output_root=root,
            inline=InlineWindowBuilder(formats.writers, root),
            prepare=formats.prepare,
            events=events,
            stop=stop,
            coordination=coordination,
            owner=instance_owner(),
            lease_ttl=settings.daemon.lease_ttl,
            window_slots=asyncio.Semaphore(
                window_slot_count(settings.onc.max_concurrency, builder.workers if builder else 0)
            ),
            read_ahead=ReadAhead(
                read_ahead_bytes(settings.onc.max_concurrency, builder.workers if builder else 0)
            ),
            builder=builder,
            partition=settings.output.partition,
            clock=clock or utc_now,
            progress=progress,
        )
        yield Components(
            settings=settings,
            store=store,
            client=client,
            ctx=ctx,
            events=events,
            notifier=notifier,
        )


async def run_daemon(
    settings: Settings,
    stop: asyncio.Event,
    *,
    reload: Callable[[], Settings] | None = None,
    reload_requested: asyncio.Event | None = None,
    grace: float | None = None,
    clock: Callable[[], datetime] | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """`onc-pipeline run`: harvest until `stop`, reloading streams when asked; returns 0.

    `environ` carries systemd's NOTIFY_SOCKET and WATCHDOG_USEC, read by the CLI.
    """
    from pipeline.coverage.mend import Mender
    from pipeline.ops import OpsRuntime, OpsSources

    grace = settings.daemon.shutdown_grace.total_seconds() if grace is None else grace
    ops = OpsRuntime(settings.ops, environ=environ or {})
    async with components(settings, stop=stop, clock=clock, metrics=ops.metrics) as parts:
        runner = Runner(
            parts.ctx,
            settings.streams,
            bulk_slots=settings.onc.max_concurrency - 1,
            max_passes=settings.daemon.max_concurrent_passes,
        )
        loop_task = asyncio.create_task(runner.run(), name="runner")
        mender = Mender(
            parts.ctx,
            lambda: runner.streams,
            metrics=ops.metrics.coverage,
            busy=lambda: runner.running,
            grace=grace,
        )
        mender_task = asyncio.create_task(mender.run(), name="coverage-mender")
        sources = OpsSources(
            store=parts.store,
            streams=lambda: runner.streams,
            scheduler_running=lambda: not loop_task.done(),
            running=lambda: runner.running,
            coverage=mender,
        )
        # The ops server, heartbeat and watchdog keep answering during the drain.
        async with ops.serving(sources):
            log.info("daemon_started", streams=len(runner.streams))
            await ops.ready()
            notifier_task = (
                asyncio.create_task(parts.notifier.run(stop), name="registry-notifier")
                if parts.notifier is not None
                else None
            )
            reload_task = (
                asyncio.create_task(
                    _reloads(runner, settings, reload, reload_requested, stop), name="reloads"
                )
                if reload is not None and reload_requested is not None
                else None
            )
            try:
                # The runner only ends on stop; if it ends before, it crashed: stop the rest
                # (its exception is raised by `await loop_task` below).
                await _wait_first(stop, loop_task)
            finally:
                log.info("daemon_stopping", grace_s=grace)
                ops.stopping()
                if reload_task is not None:
                    reload_task.cancel()
                await runner.drain(grace)
                await _join(loop_task, mender_task, notifier_task, reload_task)
        log.info("daemon_stopped")
    return 0


async def _join(runner: asyncio.Task[None], *others: asyncio.Task[None] | None) -> None:
    """Wait for every task of the daemon, then raise the runner's error if it crashed.

    Every task is awaited even when one failed: a task left running would still use the
    store and the client while they close. Errors of the others are logged (they were
    theirs to handle; one that escaped is a bug worth a line, not a traceback at exit).
    """
    tasks = [runner, *(task for task in others if task is not None)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks[1:], results[1:], strict=True):
        if isinstance(result, Exception):
            log.error(
                "task_failed", task=task.get_name(), error=f"{type(result).__name__}: {result}"
            )
    if isinstance(results[0], BaseException) and not isinstance(results[0], asyncio.CancelledError):
        raise results[0]


async def _wait_first(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Return when `stop` is set or `task` has ended, whichever comes first."""
    waiter = asyncio.create_task(stop.wait(), name="stop-wait")
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done() and not stop.is_set():
        log.error("runner_crashed")
        stop.set()


async def _reloads(
    runner: Runner,
    settings: Settings,
    reload: Callable[[], Settings],
    requested: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """Apply SIGHUP reloads: the streams at once; other sections need a restart (said so)."""
    from pipeline.exceptions import ConfigError

    current = settings
    while not stop.is_set():
        await requested.wait()
        requested.clear()
        try:
            fresh = reload()
        except ConfigError as exc:
            log.error("config_reload_rejected", problems=[f"{p}: {m}" for p, m in exc.problems])
            continue
        except Exception as exc:  # an unreadable file, a secret gone: keep serving, say why
            log.error("config_reload_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        runner.reload(fresh.streams)
        log.info("config_reloaded", streams=len(runner.streams))
        ignored = restart_sections(current, fresh)
        if ignored:
            log.warning(
                "config_reload_needs_restart",
                sections=ignored,
                hint="only `streams` changes apply on SIGHUP; restart the daemon for these",
            )
        current = fresh


def restart_sections(before: Settings, after: Settings) -> list[str]:
    """The top-level sections besides `streams` that differ (a reload does not apply them)."""
    return [
        name
        for name in type(before).model_fields
        if name != "streams" and getattr(before, name) != getattr(after, name)
    ]


async def run_once(
    settings: Settings, stop: asyncio.Event, *, clock: Callable[[], datetime] | None = None
) -> dict[str, PassOutcome | Exception]:
    """`onc-pipeline once`: every stream up to now."""
    async with components(settings, stop=stop, clock=clock) as parts:
        since = parts.ctx.clock()
        # The daemon's loop in burst mode, every stream at once (no lane holds one back).
        runner = Runner(parts.ctx, settings.streams, bulk_slots=len(settings.streams), burst=True)
        await runner.run()
        results = runner.results
        for result in results.values():
            if isinstance(result, PassOutcome):
                await count_published(parts.store, result, since)
        if parts.notifier is not None:
            # No loop runs to debounce: announce what this pass published, once, now.
            await parts.notifier.flush()
        return results


async def run_backfill(
    settings: Settings,
    stop: asyncio.Event,
    stream_name: str,
    date_from: datetime,
    date_to: datetime,
    *,
    clock: Callable[[], datetime] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> PassOutcome:
    """`onc-pipeline backfill`: one stream over [date_from, date_to), cursor untouched.

    Under the stream's lease, like the daemon's passes: beside instances sharing a
    PostgreSQL state it waits for the stream's live pass to end, and the daemon's next
    passes over the stream wait for the backfill (both would build the same files).
    """
    stream = settings.stream(stream_name)
    async with components(settings, stop=stop, clock=clock, progress=progress) as parts:
        since = parts.ctx.clock()
        while True:
            outcome = await leased_pass(
                parts.ctx, stream, date_from=date_from, date_to=date_to, max_pages=None
            )
            if not outcome.held_elsewhere or stop.is_set():
                break
            log.info("backfill_waiting", stream=stream.name, reason="a pass holds the stream")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BACKFILL_RETRY_S)
        await count_published(parts.store, outcome, since)
        return outcome


# How often a backfill asks again for a stream another pass holds.
BACKFILL_RETRY_S = 5.0


async def count_published(store: StateStore, outcome: PassOutcome, since: datetime) -> None:
    """Set the outcome's files and bytes as `status` and the disk count them: each file once
    at its final size, although every window of a partition rewrote it."""
    entries = [e for e in await store.list_manifest(outcome.stream) if e.published_at >= since]
    outcome.files = len(entries)
    outcome.bytes = sum(e.size for e in entries)
