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

from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS, Span, StreamLedger
from pipeline.engine.streams.base import PassOutcome, source_of
from pipeline.exceptions import OncRequestError, OutputError
from pipeline.onc import ArchiveFileInfo, ArchiveQuery
from pipeline.onc.errors import OncIntegrityError
from pipeline.onc.names import check_file_name
from pipeline.outputs.paths import archive_folder
from pipeline.outputs.publish import ensure_folder
from pipeline.settings import ArchiveFileStream

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
    source = source_of(stream)
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


async def _already_published(ledger: StreamLedger, relative: str, info: ArchiveFileInfo) -> bool:
    """True when the manifest has the file and it is on disk with the recorded size."""
    entry = await ledger.published(relative)
    if entry is None:
        return False
    path = ledger.output_root / relative
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    return size == entry.size and (info.size is None or info.size == entry.size)


async def harvest_archive(
    ctx: HarvestContext, ledger: StreamLedger, stream: ArchiveFileStream, span: Span
) -> None:
    """One pass: download every listed file not yet published; move the cursor when all are."""
    outcome = ledger.outcome
    start, horizon, now = span.start, span.horizon, span.now
    archived: tuple[datetime | None, datetime] | None = None
    if span.backfill:
        pass
    elif span.cursor is None:
        # First pass: the initial range by data time, whatever was archived by now.
        archived = (None, now)
    else:
        # Everything archived since the cursor (less the overlap), whenever its data is
        # from. The overlap is at least `safety_lag`: a file the last pass left out
        # because its data began after that pass's horizon was archived after it.
        start = stream.start or ARCHIVE_EPOCH
        archived = (span.cursor - max(stream.lookback, stream.safety_lag), now)
    if start >= horizon:
        return
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
            ledger.report(handled, len(listing))

    def stopping() -> bool:
        """True once a stop was asked for: this file is left for the next pass."""
        nonlocal unfinished
        if ledger.stopping:
            unfinished += 1
            outcome.caught_up = False
        return ledger.stopping

    async def fetch(info: ArchiveFileInfo) -> None:
        nonlocal unfinished
        if stopping():
            return
        try:
            name = check_file_name(info.filename)
        except OutputError as exc:
            # An unsafe server-given name can never succeed: set it aside at once.
            key = f"unsafe-name:{info.filename!r}"
            if not await ledger.is_quarantined(key):
                await ledger.quarantine(key, "unsafe_filename", str(exc))
                log.warning(
                    "archive_file_quarantined", stream=stream.name, reason="unsafe_filename"
                )
            return
        folder = ctx.output_root / archive_folder(dataset, info.date_from)
        relative = str((folder / name).relative_to(ctx.output_root))
        if await ledger.is_quarantined(relative) or await _already_published(
            ledger, relative, info
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
                reason = type(exc).__name__
                attempts = await ledger.failed(relative, exc)
                if attempts >= POISON_ATTEMPTS:
                    log.warning(
                        "archive_file_quarantined", stream=stream.name, file=relative, reason=reason
                    )
                    return
                log.warning(
                    "archive_file_failed",
                    stream=stream.name,
                    file=relative,
                    reason=reason,
                    attempt=attempts,
                )
                unfinished += 1
                outcome.errors.append(f"{info.filename}: {exc}")
                return
        # fsync and rename outside `limit`: the next download's request is already on its way.
        downloaded = await staged.publish()
        entry = ledger.entry(
            folder / name,
            size=downloaded.size,
            sha256=downloaded.sha256,
            time_start=info.date_from,
            time_end=info.date_to,
            records=None,
            source=f"archivefile:{info.filename}",
        )
        # Shielded: the file is final on disk now; a sibling's failure cancelling this task
        # must not leave it there unrecorded (the next pass would download it again).
        await asyncio.shield(ledger.commit([entry]))
        await ledger.done(relative, files=1, size=downloaded.size)
        log.info(
            "archive_file_published",
            stream=stream.name,
            file=relative,
            bytes=downloaded.size,
            resumed_from=downloaded.resumed_from,
        )
        await ledger.announce(
            time_start=info.date_from or start,
            time_end=info.date_to or horizon,
            files=[downloaded.path],
        )

    try:
        async with asyncio.TaskGroup() as group:
            for info in listing:
                group.create_task(one(info), name=f"download:{info.filename}")
    except* Exception as group_error:
        # The first failure is the one worth reporting (auth, outage, full disk).
        raise group_error.exceptions[0] from None
    await ledger.refresh_manifest()
    if unfinished == 0 and archived is not None:
        await ledger.commit([], cursor_time=archived[1])
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
