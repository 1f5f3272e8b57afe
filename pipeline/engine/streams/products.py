"""`dataproduct` streams: one server-side product per period, ordered once, resumed after restarts.

The ids ONC hands out are persisted the moment they exist (`dpRequestId` before the runs are
started, the `dpRunId`s once they are known), so a restart resumes polling the same runs and
never orders the same period twice. A product may have several runs; every file of every run
is recorded in the period's in-flight state as soon as it is published, so a restart
downloads only what is missing. Files land under `<root>/<dataset>/products/<period>/`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import structlog

from pipeline.engine.context import POISON_ATTEMPTS, HarvestContext
from pipeline.engine.streams.base import PassOutcome, refresh_manifest
from pipeline.engine.windows import WindowPlan, plan_windows
from pipeline.onc import DataSource, ProductOrder, ProductRun
from pipeline.onc.download import DownloadedFile
from pipeline.onc.errors import (
    OncProductFailedError,
    OncProductGoneError,
    OncProductTimeout,
    UnsafeFileNameError,
)
from pipeline.onc.products import META_INDEX, ProductFile, in_run_order
from pipeline.outputs.paths import product_folder
from pipeline.outputs.publish import ensure_folder
from pipeline.records import NewDataEvent
from pipeline.settings import DataProductStream
from pipeline.state.base import ManifestEntry

log = structlog.get_logger(__name__)


def _order(stream: DataProductStream, plan: WindowPlan) -> ProductOrder:
    return ProductOrder(
        source=DataSource(
            location_code=stream.location_code,
            device_category_code=stream.device_category_code,
            device_code=stream.device_code,
        ),
        data_product_code=stream.data_product_code,
        extension=stream.extension,
        date_from=plan.window.start,
        date_to=plan.window.end,
        options={key: str(value) for key, value in stream.options.items()},
    )


async def _ensure_runs(
    ctx: HarvestContext, stream: DataProductStream, key: str, plan: WindowPlan
) -> tuple[dict[str, Any], list[ProductRun]]:
    """Request (once) and wait for the runs of one period, persisting ids as they appear."""
    driver = ctx.client.products
    inflight = (await ctx.store.get_inflight(stream.name)).get(key)
    if inflight is None:
        request = await driver.request(_order(stream, plan))
        inflight = {
            "dp_request_id": request.dp_request_id,
            "estimated_seconds": request.estimated_seconds,
            "restarts": 0,
            "files": [],
        }
        await ctx.store.put_inflight(stream.name, key, inflight)
    else:
        log.info(
            "product_resumed",
            stream=stream.name,
            period=key,
            dp_request_id=inflight["dp_request_id"],
            runs=inflight.get("runs"),
            files_done=len(inflight.get("files", [])),
        )
    runs = await driver.wait_for_runs(
        int(inflight["dp_request_id"]), estimated_seconds=inflight.get("estimated_seconds")
    )
    known = [[run.dp_run_id, run.file_count] for run in runs]
    changed = inflight.get("runs") != known
    # A copy: `_download` adds to it file by file, and a store may hand out its own dict.
    inflight = {**inflight, "runs": known, "files": list(inflight.get("files", []))}
    if changed:
        await ctx.store.put_inflight(stream.name, key, inflight)
    return inflight, runs


def _recorded(ctx: HarvestContext, inflight: dict[str, Any]) -> dict[tuple[int, str], ProductFile]:
    """Files of this period published before a restart, still on disk as recorded."""
    files: dict[tuple[int, str], ProductFile] = {}
    for item in inflight.get("files", []):
        path = ctx.output_root / item["path"]
        if path.is_file() and path.stat().st_size == item["size"]:
            file = DownloadedFile(path=path, size=item["size"], sha256=item["sha256"])
            files[(item["run"], item["index"])] = ProductFile(item["run"], item["index"], file)
    return files


async def _download(
    ctx: HarvestContext, stream: DataProductStream, key: str, plan: WindowPlan
) -> list[ProductFile]:
    """Download every file of every run of the period; a 410 restarts the runs once, then
    re-orders. Each file is recorded in the period's in-flight state as soon as it is
    published, so a restart downloads only the files not yet recorded."""
    driver = ctx.client.products
    folder = ctx.output_root / product_folder(stream.resolved_dataset_id, plan.window)
    await asyncio.to_thread(ensure_folder, folder)
    while True:
        inflight, runs = await _ensure_runs(ctx, stream, key, plan)
        done = await asyncio.to_thread(_recorded, ctx, inflight)

        async def record(
            file: ProductFile,
            inflight: dict[str, Any] = inflight,
            done: dict[tuple[int, str], ProductFile] = done,
        ) -> None:
            done[(file.dp_run_id, file.index)] = file
            inflight["files"] = [
                *inflight.get("files", []),
                {
                    "run": file.dp_run_id,
                    "index": file.index,
                    "path": str(file.file.path.relative_to(ctx.output_root)),
                    "size": file.file.size,
                    "sha256": file.file.sha256,
                },
            ]
            await ctx.store.put_inflight(stream.name, key, inflight)

        try:
            await driver.download_runs(
                runs,
                folder,
                skip=done.keys(),
                on_file=record,
                estimated_seconds=inflight.get("estimated_seconds"),
            )
        except OncProductGoneError:
            if int(inflight.get("restarts", 0)) >= 1:
                # Restarting did not bring the files back: order the period afresh.
                await ctx.store.delete_inflight(stream.name, key)
                log.warning("product_gone_reordering", stream=stream.name, period=key)
                raise
            log.warning("product_gone_restarting", stream=stream.name, period=key)
            await driver.restart(int(inflight["dp_request_id"]))
            await ctx.store.put_inflight(
                stream.name, key, {**inflight, "restarts": int(inflight.get("restarts", 0)) + 1}
            )
            continue
        return in_run_order(done.values(), runs)


async def harvest_period(
    ctx: HarvestContext, stream: DataProductStream, plan: WindowPlan, *, move_cursor: bool = True
) -> list[ManifestEntry]:
    """Order (or resume), download and commit one period; returns the files published."""
    key = f"product:{plan.window.label()}"
    files = await _download(ctx, stream, key, plan)
    dataset = stream.resolved_dataset_id
    now = ctx.clock()
    entries = [
        ManifestEntry(
            path=str(f.file.path.relative_to(ctx.output_root)),
            stream=stream.name,
            dataset_id=dataset,
            size=f.file.size,
            sha256=f.file.sha256,
            time_start=plan.window.start,
            time_end=plan.window.end,
            records=None,
            source=f"dataproduct:{stream.data_product_code}:{f.dp_run_id}:{f.index}",
            published_at=now,
        )
        for f in files
    ]
    await ctx.commit(
        stream.name,
        entries,
        cursor_time=plan.window.end if move_cursor else None,
        clear_inflight=[key],
    )
    log.info(
        "product_period_harvested",
        stream=stream.name,
        period=plan.window.label(),
        files=len(entries),
        bytes=sum(e.size for e in entries),
        no_data=not any(f.index != META_INDEX for f in files),
    )
    if entries:
        await ctx.events.publish(
            NewDataEvent(
                stream=stream.name,
                dataset_id=dataset,
                time_start=plan.window.start,
                time_end=plan.window.end,
                files=tuple(f.file.path for f in files),
            )
        )
    return entries


async def harvest_products(
    ctx: HarvestContext,
    stream: DataProductStream,
    *,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> PassOutcome:
    """One pass: every complete period from the cursor (or a backfill range) not yet harvested."""
    outcome = PassOutcome(stream=stream.name)
    now = ctx.clock()
    horizon = now - stream.safety_lag
    if date_from is not None:
        cursor, start = None, date_from
        horizon = min(horizon, date_to) if date_to is not None else horizon
    else:
        record = await ctx.store.get_stream(stream.name)
        cursor = record.cursor_time if record else None
        start = stream.start or (now - stream.initial_backfill)
    plans = [
        p
        for p in plan_windows(cursor=cursor, start=start, horizon=horizon, size=stream.period)
        if p.complete
    ]
    for done, plan in enumerate(plans):
        ctx.report(stream.name, done, len(plans))
        if ctx.stop.is_set():
            outcome.caught_up = False
            break
        key = f"product:{plan.window.label()}"
        if await ctx.store.is_quarantined(stream.name, key):
            continue
        try:
            published = await harvest_period(ctx, stream, plan, move_cursor=date_from is None)
        except OncProductTimeout:
            # Still running server-side: the ids are saved, the next pass polls the same run.
            outcome.caught_up = False
            log.info("product_still_running", stream=stream.name, period=key)
            break
        except UnsafeFileNameError as exc:
            # A name that tries to leave the output root can never succeed: set the period
            # aside at once, like an unsafe archive file name, and move on.
            await ctx.store.delete_inflight(stream.name, key)
            await ctx.store.quarantine(stream.name, key, "unsafe_filename", str(exc))
            await ctx.commit(
                stream.name, [], cursor_time=plan.window.end if date_from is None else None
            )
            outcome.quarantined += 1
            log.warning(
                "product_period_quarantined",
                stream=stream.name,
                period=key,
                reason="unsafe_filename",
            )
            continue
        except (OncProductFailedError, OncProductGoneError) as exc:
            await ctx.store.delete_inflight(stream.name, key)
            attempts = await ctx.store.note_attempt(stream.name, key, type(exc).__name__)
            if attempts >= POISON_ATTEMPTS:
                await ctx.store.quarantine(stream.name, key, type(exc).__name__, str(exc))
                await ctx.commit(
                    stream.name, [], cursor_time=plan.window.end if date_from is None else None
                )
                outcome.quarantined += 1
                log.warning("product_period_quarantined", stream=stream.name, period=key)
                continue
            outcome.errors.append(f"{key}: {exc}")
            break
        await ctx.store.clear_attempts(stream.name, key)
        outcome.units += 1
        outcome.files += len(published)
        outcome.bytes += sum(e.size for e in published)
    if outcome.files:
        await refresh_manifest(ctx, stream.name, stream.resolved_dataset_id)
    ctx.report(stream.name, len(plans), len(plans))
    return outcome
