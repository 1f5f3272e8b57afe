"""dataProductDelivery driver: request → run → poll → download every index and `meta`.

Each step is a public call taking only ids, so the engine can persist `dp_request_id` and
`dp_run_id` and, after a restart, resume polling (`wait_for_run`) or downloading
(`download_run(..., skip=...)`) without ordering the product again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
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
    """One downloaded product file: its index (`1`, `2`, … or `meta`) and where it is."""

    index: str
    file: DownloadedFile


@dataclass(frozen=True, slots=True)
class ProductResult:
    """The outcome of a whole order; `files` is empty when the server had no data (204)."""

    dp_request_id: int
    dp_run_id: int
    files: tuple[ProductFile, ...]
    no_data: bool = False


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

    async def run(self, dp_request_id: int) -> ProductRun:
        """Start (or look at) the run of a request; 202 = not complete yet, 200 = complete."""
        return await self._runs("run", dp_request_id)

    async def cancel(self, dp_request_id: int) -> ProductRun:
        """Cancel the run of a request."""
        return await self._runs("cancel", dp_request_id)

    async def restart(self, dp_request_id: int) -> ProductRun:
        """Restart a cancelled or gone run; the dpRunId stays the same."""
        return await self._runs("restart", dp_request_id)

    async def _runs(self, step: str, dp_request_id: int) -> ProductRun:
        reply = await self.http.get_json(
            f"{_BASE}/{step}", {"dpRequestId": str(dp_request_id)}, passthrough=frozenset({202})
        )
        try:
            runs = ProductRun.list_from_api(reply.data)
        except OncSchemaError as exc:
            raise exc.at(url=reply.url, status=reply.status) from None
        if not runs:
            raise OncSchemaError("empty run list", where="$", url=reply.url, status=reply.status)
        run = runs[0]
        log.debug(
            "onc_product_run",
            step=step,
            dp_request_id=dp_request_id,
            dp_run_id=run.dp_run_id,
            status=run.status,
            http_status=reply.status,
        )
        return run

    async def wait_for_run(
        self, dp_request_id: int, *, estimated_seconds: float | None = None
    ) -> ProductRun:
        """Poll `run` until the run is complete; `error`/`cancelled` raise, the deadline too."""
        interval = self.poll_interval(estimated_seconds)
        give_up = self._clock() + self.deadline
        while True:
            run = await self.run(dp_request_id)
            if run.is_complete:
                return run
            if run.is_failed:
                raise OncProductFailedError(
                    f"data product run ended with status {run.status!r}",
                    dp_request_id=dp_request_id,
                    dp_run_id=run.dp_run_id,
                    run_status=run.status,
                )
            if self._clock() + interval > give_up:
                raise OncProductTimeout(
                    f"data product not complete after {self.deadline:.0f} s "
                    f"(status {run.status!r})",
                    dp_request_id=dp_request_id,
                    dp_run_id=run.dp_run_id,
                )
            await asyncio.sleep(interval)

    async def download_run(
        self,
        dp_run_id: int,
        dest_dir: Path,
        *,
        skip: Collection[str] = (),
        file_count: int | None = None,
        include_meta: bool = True,
        estimated_seconds: float | None = None,
    ) -> list[ProductFile]:
        """Download indexes 1, 2, … until 404 (or `file_count`), then `meta`; skip done ones.

        A 202 is polled again until the deadline; 204 on index 1 means no data; 410 raises
        OncProductGoneError (answer it with `restart` or a new request).
        """
        interval = self.poll_interval(estimated_seconds)
        files: list[ProductFile] = []
        index = 1
        while file_count is None or index <= file_count:
            key = str(index)
            if key not in skip:
                got = await self._download_index(dp_run_id, key, dest_dir, interval)
                if got is None:
                    break
                files.append(got)
            index += 1
        if include_meta and META_INDEX not in skip:
            meta = await self._download_index(dp_run_id, META_INDEX, dest_dir, interval)
            if meta is not None:
                files.append(meta)
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
                return ProductFile(index=index, file=downloaded)
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
        """The whole flow for a fresh order; a 410 during download restarts the run once."""
        request = await self.request(order)
        estimate = request.estimated_seconds
        run = await self.wait_for_run(request.dp_request_id, estimated_seconds=estimate)
        done: dict[str, ProductFile] = {}
        restarts = 0
        while True:
            try:
                files = await self.download_run(
                    run.dp_run_id, dest_dir, skip=done.keys(), estimated_seconds=estimate
                )
            except OncProductGoneError:
                if restarts >= restarts_on_gone:
                    raise
                restarts += 1
                log.warning(
                    "onc_product_gone_restart",
                    dp_request_id=request.dp_request_id,
                    dp_run_id=run.dp_run_id,
                )
                await self.restart(request.dp_request_id)
                run = await self.wait_for_run(request.dp_request_id, estimated_seconds=estimate)
                continue
            done.update((f.index, f) for f in files)
            break
        ordered = sorted(done.values(), key=lambda f: (f.index == META_INDEX, _index_key(f)))
        return ProductResult(
            dp_request_id=request.dp_request_id,
            dp_run_id=run.dp_run_id,
            files=tuple(ordered),
            no_data=not any(f.index != META_INDEX for f in ordered),
        )


def _index_key(file: ProductFile) -> int:
    return int(file.index) if file.index.isdigit() else 0


def _disposition_name(exchange: Exchange) -> str:
    name = disposition_file_name(exchange.response.headers.get("Content-Disposition"))
    if name is None:
        raise OncSchemaError(
            "product download without a Content-Disposition file name",
            url=exchange.url,
            status=exchange.status,
        )
    return name
