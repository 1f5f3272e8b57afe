"""dataProductDelivery driver: request → run → poll → download every index and `meta` of every run.

`run` answers a list: a request can have several runs (both official clients, api-python-client
`_OncDelivery.orderDataProduct` and api-matlab-client `OncDelivery.m`, download every `dpRunId`
in it), each with its own files. Each step is a public call taking only ids, so the engine can
persist `dp_request_id` and the run ids and, after a restart, resume polling (`wait_for_runs`)
or downloading (`download_runs(..., skip=...)`) without ordering the product again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from pipeline.onc.download import DownloadedFile, FileDownload, StagedFile
from pipeline.onc.errors import (
    OncMalformedReply,
    OncProductFailedError,
    OncProductGoneError,
    OncProductTimeout,
    OncSchemaError,
)
from pipeline.onc.http import Exchange, OncHttp
from pipeline.onc.models import ProductOrder, ProductRequest, ProductRun, RunState
from pipeline.onc.names import disposition_file_name
from pipeline.onc.parsing import decode_json

log = structlog.get_logger(__name__)

_BASE = "/api/dataProductDelivery"
META_INDEX = "meta"


@dataclass(frozen=True, slots=True)
class ProductFile:
    """One downloaded product file: its run, its index (`1`, `2`, … or `meta`), where it is."""

    dp_run_id: int
    index: str
    file: DownloadedFile


@dataclass(frozen=True, slots=True)
class ProductResult:
    """The outcome of a whole order; `files` is empty when the server had no data (204)."""

    dp_request_id: int
    dp_run_ids: tuple[int, ...]
    files: tuple[ProductFile, ...]
    no_data: bool = False


FileDone = Callable[[ProductFile], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """Download answered 202: the file is still being prepared (or, `failed`, never will be)."""

    status: str = ""
    message: str = ""

    @property
    def failed(self) -> bool:
        """True when the 202 body says `"status": "error"`: polling again cannot help."""
        return RunState.parse(self.status) is RunState.ERROR

    @classmethod
    def from_body(cls, body: bytes, url: str) -> _Waiting:
        """Read `{"status", "message"}`; a body that is not that object is plain waiting."""
        try:
            data = decode_json(body, url=url, status=202)
        except OncMalformedReply:
            return cls()
        if not isinstance(data, dict):
            return cls()
        status, message = data.get("status"), data.get("message")
        return cls(
            status if isinstance(status, str) else "",
            message if isinstance(message, str) else "",
        )


@dataclass(frozen=True, slots=True)
class _Absent:
    """Download answered 204 (no data) or 404 (index past the last one)."""

    status: int


class ProductDriver:
    """Drives data product orders through the dataProductDelivery service."""

    def __init__(
        self,
        http: OncHttp,
        *,
        poll_min: float | None = None,
        poll_max: float | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        opts = http.options
        self.http = http
        self.poll_min = opts.product_poll_min if poll_min is None else poll_min
        self.poll_max = opts.product_poll_max if poll_max is None else poll_max
        self.deadline = opts.product_deadline if deadline is None else deadline
        self._clock = clock

    def poll_interval(self, estimated_seconds: float | None) -> float:
        """clamp(0.02 x estimate, min, max), the official client's rule; min when unknown."""
        if estimated_seconds is None:
            return self.poll_min
        return min(max(0.02 * estimated_seconds, self.poll_min), self.poll_max)

    async def request(self, order: ProductOrder) -> ProductRequest:
        """Order a product; persist the returned `dp_request_id` before anything else."""
        reply = await self.http.get_json(f"{_BASE}/request", order.to_params())
        try:
            request = ProductRequest.from_api(reply.data)
        except OncSchemaError as exc:
            raise exc.at(url=reply.url, status=reply.status) from None
        log.info(
            "onc_product_requested",
            dp_request_id=request.dp_request_id,
            product=order.data_product_code,
            estimated_processing_time=request.estimated_processing_time,
        )
        return request

    async def run(self, dp_request_id: int) -> list[ProductRun]:
        """Start (or look at) the runs of a request; 202 = not complete yet, 200 = complete."""
        return await self._runs("run", dp_request_id)

    async def cancel(self, dp_request_id: int) -> list[ProductRun]:
        """Cancel the runs of a request."""
        return await self._runs("cancel", dp_request_id)

    async def restart(self, dp_request_id: int) -> list[ProductRun]:
        """Restart cancelled or gone runs; the dpRunIds stay the same."""
        return await self._runs("restart", dp_request_id)

    async def _runs(self, step: str, dp_request_id: int) -> list[ProductRun]:
        reply = await self.http.get_json(
            f"{_BASE}/{step}", {"dpRequestId": str(dp_request_id)}, passthrough=frozenset({202})
        )
        try:
            runs = ProductRun.list_from_api(reply.data)
        except OncSchemaError as exc:
            raise exc.at(url=reply.url, status=reply.status) from None
        if not runs:
            raise OncSchemaError("empty run list", where="$", url=reply.url, status=reply.status)
        log.debug(
            "onc_product_run",
            step=step,
            dp_request_id=dp_request_id,
            runs=[(run.dp_run_id, run.status) for run in runs],
            http_status=reply.status,
        )
        return runs

    async def wait_for_runs(
        self, dp_request_id: int, *, estimated_seconds: float | None = None
    ) -> list[ProductRun]:
        """Poll `run` until every run is complete; `error`/`cancelled` raise, the deadline too.

        A run's own status decides, not the HTTP status or the first run alone: runs of one
        request may finish at different times.
        """
        interval = self.poll_interval(estimated_seconds)
        give_up = self._clock() + self.deadline
        while True:
            runs = await self.run(dp_request_id)
            failed = next((run for run in runs if run.is_failed), None)
            if failed is not None:
                raise OncProductFailedError(
                    f"data product run ended with status {failed.status!r}",
                    dp_request_id=dp_request_id,
                    dp_run_id=failed.dp_run_id,
                    run_status=failed.status,
                )
            waiting = next((run for run in runs if not run.is_complete), None)
            if waiting is None:
                return runs
            if self._clock() + interval > give_up:
                raise OncProductTimeout(
                    f"data product not complete after {self.deadline:.0f} s "
                    f"(run {waiting.dp_run_id} status {waiting.status!r})",
                    dp_request_id=dp_request_id,
                    dp_run_id=waiting.dp_run_id,
                )
            await asyncio.sleep(interval)

    async def download_runs(
        self,
        runs: Sequence[ProductRun],
        dest_dir: Path,
        *,
        skip: Collection[tuple[int, str]] = (),
        on_file: FileDone | None = None,
        estimated_seconds: float | None = None,
    ) -> list[ProductFile]:
        """Download every file of every run (see `download_run`); `skip` holds (run, index)."""
        files: list[ProductFile] = []
        for run in runs:
            files += await self.download_run(
                run.dp_run_id,
                dest_dir,
                skip={index for run_id, index in skip if run_id == run.dp_run_id},
                file_count=run.file_count or None,
                on_file=on_file,
                estimated_seconds=estimated_seconds,
            )
        return files

    async def download_run(
        self,
        dp_run_id: int,
        dest_dir: Path,
        *,
        skip: Collection[str] = (),
        file_count: int | None = None,
        include_meta: bool = True,
        on_file: FileDone | None = None,
        estimated_seconds: float | None = None,
    ) -> list[ProductFile]:
        """Download indexes 1, 2, … until 404 (or `file_count`), then `meta`; skip done ones.

        `on_file` is awaited after each file is published, before the next is asked for, so
        a caller can record it durably. A 202 is polled again until the deadline (a 202 body
        with status `error` raises OncProductFailedError); 204 on index 1 means no data; 410
        raises OncProductGoneError (answer it with `restart` or a new request).
        """
        interval = self.poll_interval(estimated_seconds)
        files: list[ProductFile] = []

        async def fetch(key: str) -> bool:
            got = await self._download_index(dp_run_id, key, dest_dir, interval)
            if got is None:
                return False
            files.append(got)
            if on_file is not None:
                await on_file(got)
            return True

        index = 1
        while file_count is None or index <= file_count:
            key = str(index)
            if key not in skip and not await fetch(key):
                break
            index += 1
        if include_meta and META_INDEX not in skip:
            await fetch(META_INDEX)
        return files

    async def _download_index(
        self, dp_run_id: int, index: str, dest_dir: Path, interval: float
    ) -> ProductFile | None:
        give_up = self._clock() + self.deadline
        params = {"dpRunId": str(dp_run_id), "index": index}
        while True:
            download = FileDownload(dest_dir, name_from=_disposition_name, resume=False)

            async def handle(
                exchange: Exchange, download: FileDownload = download
            ) -> StagedFile | _Waiting | _Absent:
                if exchange.status == 202:
                    return _Waiting.from_body(await exchange.read_body(limit=1 << 16), exchange.url)
                if exchange.status in (204, 404):
                    return _Absent(exchange.status)
                if exchange.status == 410:
                    raise OncProductGoneError(
                        "product file is gone from the download area; restart or re-request",
                        dp_run_id=dp_run_id,
                        index=index,
                        url=exchange.url,
                    )
                return await download.receive(exchange)

            outcome = await self.http.request(
                f"{_BASE}/download",
                params,
                handle,
                passthrough=frozenset({404, 410}),
                streaming=True,
            )
            if isinstance(outcome, StagedFile):
                # Made durable after the request's slot is free: it needs the disk only.
                downloaded = await outcome.publish()
                log.info(
                    "onc_product_file",
                    dp_run_id=dp_run_id,
                    index=index,
                    file=downloaded.path.name,
                    bytes=downloaded.size,
                )
                return ProductFile(dp_run_id=dp_run_id, index=index, file=downloaded)
            if isinstance(outcome, _Absent):
                return None
            if outcome.failed:
                # ONC's dataProductDelivery page lists "error" among a 202 body's statuses:
                # the product failed server-side and will never be ready.
                raise OncProductFailedError(
                    f"data product file {index} failed on the server: "
                    f"{outcome.message or 'no message'}",
                    dp_request_id=None,
                    dp_run_id=dp_run_id,
                    run_status=outcome.status,
                )
            if self._clock() + interval > give_up:
                raise OncProductTimeout(
                    f"product file {index} still not ready after {self.deadline:.0f} s",
                    dp_request_id=None,
                    dp_run_id=dp_run_id,
                )
            await asyncio.sleep(interval)

    async def order(
        self, order: ProductOrder, dest_dir: Path, *, restarts_on_gone: int = 1
    ) -> ProductResult:
        """The whole flow for a fresh order; a 410 during download restarts the runs once."""
        request = await self.request(order)
        estimate = request.estimated_seconds
        runs = await self.wait_for_runs(request.dp_request_id, estimated_seconds=estimate)
        done: dict[tuple[int, str], ProductFile] = {}

        async def keep(file: ProductFile) -> None:
            done[(file.dp_run_id, file.index)] = file

        restarts = 0
        while True:
            try:
                await self.download_runs(
                    runs, dest_dir, skip=done.keys(), on_file=keep, estimated_seconds=estimate
                )
                break
            except OncProductGoneError as exc:
                if restarts >= restarts_on_gone:
                    raise
                restarts += 1
                log.warning(
                    "onc_product_gone_restart",
                    dp_request_id=request.dp_request_id,
                    dp_run_id=exc.dp_run_id,
                )
                await self.restart(request.dp_request_id)
                runs = await self.wait_for_runs(request.dp_request_id, estimated_seconds=estimate)
        ordered = in_run_order(done.values(), runs)
        return ProductResult(
            dp_request_id=request.dp_request_id,
            dp_run_ids=tuple(run.dp_run_id for run in runs),
            files=tuple(ordered),
            no_data=not any(f.index != META_INDEX for f in ordered),
        )


def in_run_order(files: Iterable[ProductFile], runs: Sequence[ProductRun]) -> list[ProductFile]:
    """Files by run (as `run` listed them), then index 1, 2, …, with each run's `meta` last."""
    position = {run.dp_run_id: i for i, run in enumerate(runs)}

    def key(file: ProductFile) -> tuple[int, bool, int]:
        number = int(file.index) if file.index.isdigit() else 0
        return position.get(file.dp_run_id, len(position)), file.index == META_INDEX, number

    return sorted(files, key=key)


def _disposition_name(exchange: Exchange) -> str:
    name = disposition_file_name(exchange.response.headers.get("Content-Disposition"))
    if name is None:
        raise OncSchemaError(
            "product download without a Content-Disposition file name",
            url=exchange.url,
            status=exchange.status,
        )
    return name
