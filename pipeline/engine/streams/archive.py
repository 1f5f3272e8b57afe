"""`archivefile` streams: list files archived since the cursor, download each byte-for-byte.

Files land under `<root>/<dataset>/<yyyy>/<mm>/<dd>/<filename>` (ERDDAP EDDTableFromFileNames
walks it recursively). Each file is recorded in the manifest the moment it is durable, so a
restart skips it; the cursor moves only once every listed file is published or quarantined.

The live cursor is on *archive* time: ONC lists a file only once it is archived, which may be
hours after its data ends (the delay is undocumented), so a cursor on data time would leave
late files behind for good. Each pass lists what was archived in [cursor - overlap, now)
(`dateArchivedFrom`/`dateArchivedTo`); the overlap covers clock skew and files the archive
indexes a little after their archive time; the manifest skips what is already published.
A backfill lists by data time: every file of its range archived by then.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pipeline.engine.context import POISON_ATTEMPTS, HarvestContext
from pipeline.engine.streams.base import PassOutcome, refresh_manifest
from pipeline.exceptions import OncRequestError, OutputError
from pipeline.onc import ArchiveFileInfo, ArchiveQuery, DataSource
from pipeline.onc.errors import OncIntegrityError
from pipeline.onc.names import check_file_name
from pipeline.outputs.paths import archive_folder
from pipeline.outputs.publish import ensure_folder
from pipeline.records import NewDataEvent
from pipeline.settings import ArchiveFileStream
from pipeline.state.base import ManifestEntry

log = structlog.get_logger(__name__)


#: The data-time floor of a live listing without a configured `start`: before any ONC
#: archive file, so a file is taken however late it is archived (the archive-time window
#: keeps the listing short).
ARCHIVE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def _list(
    ctx: HarvestContext,
    stream: ArchiveFileStream,
    date_from: datetime,
    date_to: datetime,
    archived: tuple[datetime | None, datetime] | None = None,
    *,
    any_extension: bool = False,
) -> list[ArchiveFileInfo]:
    source = DataSource(
        location_code=stream.location_code,
        device_category_code=stream.device_category_code,
        device_code=stream.device_code,
    )
    extensions: list[str | None] = [None]
    if stream.file_extensions and not any_extension:
        extensions = list(stream.file_extensions)
    files: dict[str, ArchiveFileInfo] = {}
    for extension in extensions:
        query = ArchiveQuery(
            source=source,
            date_from=date_from,
            date_to=date_to,
            file_extension=extension,
            data_product_code=stream.data_product_code,
            archived_from=archived[0] if archived else None,
            archived_to=archived[1] if archived else None,
        )
        async for info in ctx.client.archive_files(query):
            files[info.filename] = info
    return sorted(files.values(), key=lambda f: (f.date_from or date_from, f.filename))


async def _already_published(ctx: HarvestContext, relative: str, info: ArchiveFileInfo) -> bool:
    """True when the manifest has the file and it is on disk with the recorded size."""
    entry = await ctx.store.get_manifest(relative)
    if entry is None:
        return False
    path = ctx.output_root / relative
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    return size == entry.size and (info.size is None or info.size == entry.size)


async def harvest_archive(
    ctx: HarvestContext,
    stream: ArchiveFileStream,
    *,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> PassOutcome:
    """One pass: download every listed file not yet published; move the cursor when all are."""
    outcome = PassOutcome(stream=stream.name)
    now = ctx.clock()
    horizon = now - stream.safety_lag
    backfill = date_from is not None
    archived: tuple[datetime | None, datetime] | None = None
    if backfill:
        assert date_from is not None
        start = date_from
        horizon = min(horizon, date_to) if date_to is not None else horizon
    else:
        record = await ctx.store.get_stream(stream.name)
        cursor = record.cursor_time if record else None
        if cursor is None:
            # First pass: the initial range by data time, whatever was archived by now.
            start = stream.start or (now - stream.initial_backfill)
            archived = (None, now)
        else:
            # Everything archived since the cursor (less the overlap), whenever its data is
            # from. The overlap is at least `safety_lag`: a file the last pass left out
            # because its data began after that pass's horizon was archived after it.
            start = stream.start or ARCHIVE_EPOCH
            archived = (cursor - max(stream.lookback, stream.safety_lag), now)
    if start >= horizon:
        return outcome
    dataset = stream.resolved_dataset_id
    listing = await _list(ctx, stream, start, horizon, archived)
    if not listing and stream.file_extensions:
        await _unmatched_extensions(ctx, stream, start, horizon, archived, outcome)
    limit = asyncio.Semaphore(stream.parallel_downloads)
    unfinished = 0
    handled = 0

    async def one(info: ArchiveFileInfo) -> None:
        nonlocal handled
        try:
            await fetch(info)
        finally:
            handled += 1
            ctx.report(stream.name, handled, len(listing))

    def stopping() -> bool:
        """True once a stop was asked for: this file is left for the next pass."""
        nonlocal unfinished
        if ctx.stop.is_set():
            unfinished += 1
            outcome.caught_up = False
        return ctx.stop.is_set()

    async def fetch(info: ArchiveFileInfo) -> None:
        nonlocal unfinished
        if stopping():
            return
        try:
            name = check_file_name(info.filename)
        except OutputError as exc:
            # An unsafe server-given name can never succeed: set it aside at once.
            key = f"unsafe-name:{info.filename!r}"
            if not await ctx.store.is_quarantined(stream.name, key):
                await ctx.store.quarantine(stream.name, key, "unsafe_filename", str(exc))
                outcome.quarantined += 1
                log.warning(
                    "archive_file_quarantined", stream=stream.name, reason="unsafe_filename"
                )
            return
        folder = ctx.output_root / archive_folder(dataset, info.date_from)
        relative = str((folder / name).relative_to(ctx.output_root))
        if await ctx.store.is_quarantined(stream.name, relative) or await _already_published(
            ctx, relative, info
        ):
            return
        async with limit:
            # Checked again once a slot is free: every listed file's task waits here, and a
            # stop asked for meanwhile must start no new download.
            if stopping():
                return
            await asyncio.to_thread(ensure_folder, folder)
            try:
                staged = await ctx.client.receive_archive_file(
                    info.filename, folder, expected_size=info.size
                )
            except (OncRequestError, OncIntegrityError) as exc:
                if not await _poisoned(ctx, stream.name, relative, exc):
                    unfinished += 1
                    outcome.errors.append(f"{info.filename}: {exc}")
                else:
                    outcome.quarantined += 1
                return
        # fsync and rename outside `limit`: the next download's request is already on its way.
        downloaded = await staged.publish()
        entry = ManifestEntry(
            path=relative,
            stream=stream.name,
            dataset_id=dataset,
            size=downloaded.size,
            sha256=downloaded.sha256,
            time_start=info.date_from,
            time_end=info.date_to,
            records=None,
            source=f"archivefile:{info.filename}",
            published_at=ctx.clock(),
        )
        # Shielded: the file is final on disk now; a sibling's failure cancelling this task
        # must not leave it there unrecorded (the next pass would download it again).
        await asyncio.shield(ctx.commit(stream.name, [entry]))
        await ctx.store.clear_attempts(stream.name, relative)
        outcome.units += 1
        outcome.files += 1
        outcome.bytes += downloaded.size
        log.info(
            "archive_file_published",
            stream=stream.name,
            file=relative,
            bytes=downloaded.size,
            resumed_from=downloaded.resumed_from,
        )
        await ctx.events.publish(
            NewDataEvent(
                stream=stream.name,
                dataset_id=dataset,
                time_start=info.date_from or start,
                time_end=info.date_to or horizon,
                files=(downloaded.path,),
                records=0,
                replaced=False,
            )
        )

    try:
        async with asyncio.TaskGroup() as group:
            for info in listing:
                group.create_task(one(info), name=f"download:{info.filename}")
    except* Exception as group_error:
        # The first failure is the one worth reporting (auth, outage, full disk).
        raise group_error.exceptions[0] from None
    if outcome.files:
        await refresh_manifest(ctx, stream.name, dataset)
    if unfinished == 0 and archived is not None:
        await ctx.commit(stream.name, [], cursor_time=archived[1])
    outcome.caught_up = outcome.caught_up and unfinished == 0
    log.info(
        "archive_listing_harvested",
        stream=stream.name,
        listed=len(listing),
        downloaded=outcome.files,
        bytes=outcome.bytes,
        unfinished=unfinished,
        quarantined=outcome.quarantined,
    )
    return outcome


async def _unmatched_extensions(
    ctx: HarvestContext,
    stream: ArchiveFileStream,
    date_from: datetime,
    date_to: datetime,
    archived: tuple[datetime | None, datetime] | None,
    outcome: PassOutcome,
) -> None:
    """Nothing matched `file_extensions`: when the archive lists other files over the same
    span, the filter is most likely misspelled; say so instead of a silent "0 files"."""
    others = await _list(ctx, stream, date_from, date_to, archived, any_extension=True)
    if not others:
        return
    # A live pass lists by archive time from a far-back data start: the span to backfill is
    # the data the listed files cover, not the listing's data bounds.
    begins = [f.date_from for f in others if f.date_from is not None]
    since = min(begins) if begins else date_from
    found = sorted({Path(f.filename).suffix.lstrip(".").lower() or "(none)" for f in others})
    message = (
        f"the archive lists {len(others)} files here ({', '.join(found)}) but none with "
        f"extension {', '.join(stream.file_extensions)}; check file_extensions, then "
        f"backfill from {since:%Y-%m-%dT%H:%M:%SZ} (the cursor moves on)"
    )
    outcome.warnings.append(message)
    log.warning(
        "archive_extensions_unmatched",
        stream=stream.name,
        wanted=list(stream.file_extensions),
        listed=len(others),
        extensions=found,
    )


async def _poisoned(ctx: HarvestContext, stream: str, key: str, exc: Exception) -> bool:
    """Count a failed attempt; past the limit, quarantine the file."""
    reason = type(exc).__name__
    attempts = await ctx.store.note_attempt(stream, key, reason)
    if attempts < POISON_ATTEMPTS:
        log.warning("archive_file_failed", stream=stream, file=key, reason=reason, attempt=attempts)
        return False
    await ctx.store.quarantine(stream, key, reason, str(exc))
    log.warning("archive_file_quarantined", stream=stream, file=key, reason=reason)
    return True
