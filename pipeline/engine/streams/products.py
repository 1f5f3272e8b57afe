"""`dataproduct` streams: one server-side product per period, ordered once, resumed after restarts.

The ids ONC hands out are persisted the moment they exist (`dpRequestId` before the runs are
started, the `dpRunId`s once they are known), so a restart resumes polling the same runs and
never orders the same period twice. A product may have several runs; every file of every run
is recorded in the period's in-flight state as soon as it is published, so a restart
downloads only what is missing. Files land under `<root>/<dataset>/products/<period>/`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS, Span, StreamLedger
from pipeline.engine.streams.base import source_of
from pipeline.engine.windows import WindowPlan, plan_windows
from pipeline.onc import ProductOrder, ProductRun
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
from pipeline.settings import DataProductStream
from pipeline.state.base import ManifestEntry

log = structlog.get_logger(__name__)


def _order(stream: DataProductStream, plan: WindowPlan) -> ProductOrder:
    return ProductOrder(
        source=source_of(stream),
        data_product_code=stream.data_product_code,
        extension=stream.extension,
        date_from=plan.window.start,
        date_to=plan.window.end,
        options={key: str(value) for key, value in stream.options.items()},
    )


async def _ensure_runs(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: DataProductStream,
    key: str,
    plan: WindowPlan,
) -> tuple[dict[str, Any], list[ProductRun]]:
    """Request (once) and wait for the runs of one period, persisting ids as they appear."""
    driver = ctx.client.products
    inflight = await ledger.inflight(key)
    if inflight is None:
        request = await driver.request(_order(stream, plan))
        inflight = {
            "dp_request_id": request.dp_request_id,
            "estimated_seconds": request.estimated_seconds,
            "restarts": 0,
            "files": [],
        }
        await ledger.keep_inflight(key, inflight)
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
        await ledger.keep_inflight(key, inflight)
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
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: DataProductStream,
    key: str,
    plan: WindowPlan,
) -> list[ProductFile]:
    """Download every file of every run of the period; a 410 restarts the runs once, then
    re-orders. Each file is recorded in the period's in-flight state as soon as it is
    published, so a restart downloads only the files not yet recorded."""
    driver = ctx.client.products
    folder = ctx.output_root / product_folder(stream.resolved_dataset_id, plan.window)
    await asyncio.to_thread(ensure_folder, folder)
    while True:
        inflight, runs = await _ensure_runs(ctx, ledger, stream, key, plan)
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
            await ledger.keep_inflight(key, inflight)

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
                await ledger.drop_inflight(key)
                log.warning("product_gone_reordering", stream=stream.name, period=key)
                raise
            log.warning("product_gone_restarting", stream=stream.name, period=key)
            await driver.restart(int(inflight["dp_request_id"]))
            await ledger.keep_inflight(
                key, {**inflight, "restarts": int(inflight.get("restarts", 0)) + 1}
            )
            continue
        return in_run_order(done.values(), runs)


async def harvest_period(
    ctx: HarvestContext, ledger: StreamLedger, stream: DataProductStream, plan: WindowPlan
) -> list[ManifestEntry]:
    """Order (or resume), download and commit one period; returns the files published."""
    key = f"product:{plan.window.label()}"
    files = await _download(ctx, ledger, stream, key, plan)
    entries = [
        ledger.entry(
            f.file.path,
            size=f.file.size,
            sha256=f.file.sha256,
            time_start=plan.window.start,
            time_end=plan.window.end,
            records=None,
            source=f"dataproduct:{stream.data_product_code}:{f.dp_run_id}:{f.index}",
        )
        for f in files
    ]
    await ledger.commit(
        entries, cursor_time=ledger.cursor_to(plan.window.end), clear_inflight=[key]
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
        await ledger.announce(
            time_start=plan.window.start,
            time_end=plan.window.end,
            files=[f.file.path for f in files],
        )
    return entries


async def harvest_products(
    ctx: HarvestContext, ledger: StreamLedger, stream: DataProductStream, span: Span
) -> None:
    """One pass: every complete period from the cursor (or a backfill range) not yet harvested."""
    outcome = ledger.outcome
    plans = [
        p
        for p in plan_windows(
            cursor=span.cursor, start=span.start, horizon=span.horizon, size=stream.period
        )
        if p.complete
    ]
    for plan in ledger.each(plans):
        key = f"product:{plan.window.label()}"
        if await ledger.is_quarantined(key):
            continue
        cursor_time = ledger.cursor_to(plan.window.end)
        try:
            published = await harvest_period(ctx, ledger, stream, plan)
        except OncProductTimeout:
            # Still running server-side: the ids are saved, the next pass polls the same run.
            outcome.caught_up = False
            log.info("product_still_running", stream=stream.name, period=key)
            break
        except UnsafeFileNameError as exc:
            # A name that tries to leave the output root can never succeed: set the period
            # aside at once, like an unsafe archive file name, and move on.
            await ledger.drop_inflight(key)
            await ledger.quarantine(
                key, "unsafe_filename", str(exc), move_past=True, cursor_time=cursor_time
            )
            log.warning(
                "product_period_quarantined",
                stream=stream.name,
                period=key,
                reason="unsafe_filename",
            )
            continue
        except (OncProductFailedError, OncProductGoneError) as exc:
            await ledger.drop_inflight(key)
            attempts = await ledger.failed(key, exc, move_past=True, cursor_time=cursor_time)
            if attempts >= POISON_ATTEMPTS:
                log.warning("product_period_quarantined", stream=stream.name, period=key)
                continue
            outcome.errors.append(f"{key}: {exc}")
            break
        await ledger.done(key, files=len(published), size=sum(e.size for e in published))
    await ledger.refresh_manifest()
    ledger.report(len(plans), len(plans))
