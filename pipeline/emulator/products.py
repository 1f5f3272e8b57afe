"""dataProductDelivery: request, run, status, download, cancel, restart over the emulator clock.

A run goes `queued` -> `data product running` -> `complete` over `product_processing_s` of
emulator time (so a pinned clock holds a product running until a test advances it), and its
files expire `product_expiry_s` after completion (410).
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from pipeline.emulator.catalogue import CATEGORIES, DATA_PRODUCTS, Deployment, Segment, iso_ms
from pipeline.emulator.params import ApiError, Query, query_url, resolve_window
from pipeline.emulator.responses import send_bytes, send_json
from pipeline.emulator.synthetic import iso_times, stream_key
from pipeline.emulator.timeseries import no_deployment_error

if TYPE_CHECKING:
    from pipeline.emulator.app import Call, OncContext

_DAY_MS = 86_400_000
_MAX_GENERIC_BYTES = 50_000_000
DISCLAIMER = (
    "Software Developers are implementing estimates of processing times and file sizes for "
    "data requests. These are extremely rough to begin with, but bear with us. We expect these "
    "estimates will gradually improve."
)
REQUEST_PARAMS = (
    "dataProductCode",
    "extension",
    "dateFrom",
    "dateTo",
    "locationCode",
    "deviceCategoryCode",
    "deviceCode",
    "propertyCode",
    "sensorCategoryCodes",
)


@dataclass(slots=True)
class ProductRequest:
    """An accepted `request`: what to build, and its run once `run` was called."""

    request_id: int
    product: str
    extension: str
    start: int
    end: int
    segments: list[Segment]
    name_prefix: str
    clean: bool
    estimated_bytes: int
    run_id: int | None = None
    started: datetime | None = None
    cancelled: bool = False
    pieces: list[tuple[int, int]] = field(default_factory=list)


class ProductStore:
    """Every product request and run of this emulator instance."""

    def __init__(self, ctx: OncContext) -> None:
        self._ctx = ctx
        self.requests: dict[int, ProductRequest] = {}
        self.runs: dict[int, ProductRequest] = {}
        self._next_request = 28_892_274 + ctx.config.seed % 1000
        self._next_run = 56_070_464 + ctx.config.seed % 1000
        self._files: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def cached_file(self, req: ProductRequest, lo: int) -> bytes | None:
        """A product file built earlier (clients HEAD, GET and retry the same index)."""
        return self._files.get((req.request_id, lo))

    def keep_file(self, req: ProductRequest, lo: int, data: bytes) -> None:
        """Remember a built product file; the four most recent are kept."""
        self._files[(req.request_id, lo)] = data
        while len(self._files) > 4:
            self._files.popitem(last=False)

    def status_of(self, req: ProductRequest) -> str:
        """queued, data product running, complete or cancelled, from the emulator clock."""
        if req.cancelled:
            return "cancelled"
        assert req.started is not None
        elapsed = (self._ctx.clock.now() - req.started).total_seconds()
        total = self._ctx.config.product_processing_s
        if elapsed >= total:
            return "complete"
        return "queued" if elapsed < total / 3 else "data product running"

    def expired(self, req: ProductRequest) -> bool:
        """True once the files are past their expiry (deleted from the FTP area)."""
        assert req.started is not None
        age = (self._ctx.clock.now() - req.started).total_seconds()
        return age >= self._ctx.config.product_processing_s + self._ctx.config.product_expiry_s

    def new_request(self, req_kwargs: dict[str, Any]) -> ProductRequest:
        """Register a request and give it the next id."""
        req = ProductRequest(request_id=self._next_request, **req_kwargs)
        self._next_request += 1
        self.requests[req.request_id] = req
        return req

    def start_run(self, req: ProductRequest) -> None:
        """Start (or restart) the run of `req`; a restart keeps the dpRunId."""
        if req.run_id is None:
            req.run_id = self._next_run
            self._next_run += 1
            self.runs[req.run_id] = req
        req.started = self._ctx.clock.now()
        req.cancelled = False


async def handle(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """Dispatch one dataProductDelivery call."""
    action = call.name.split(".", 1)[1]
    if action == "request":
        return await _request(ctx, request, query, call)
    if action == "download":
        return await _download(ctx, request, query)
    query.check_known(("dpRequestId",))
    req = _request_of(ctx, query)
    store = ctx.products
    if action == "run":
        if req.run_id is None:
            store.start_run(req)
        return await _run_answer(ctx, request, req)
    if action == "status":
        status = store.status_of(req) if req.started else "not run"
        return await send_json(
            request,
            {
                "dpRequestId": req.request_id,
                "searchHdrStatus": "COMPLETED" if status == "complete" else "OPEN",
                "status": status,
                "dpRunIds": [req.run_id] if req.run_id else [],
            },
        )
    if action == "cancel":
        if req.run_id is None or store.status_of(req) in ("complete", "cancelled"):
            # The real service answers this 400 without an `errors` list.
            return await send_json(
                request, {"message": "Request cannot be cancelled: it is not running."}, status=400
            )
        req.cancelled = True
        return await send_json(request, [{"dpRunId": req.run_id, "status": "cancelled"}])
    # restart
    store.start_run(req)
    return await send_json(request, [{"dpRunId": req.run_id, "status": store.status_of(req)}])


def _request_of(ctx: OncContext, query: Query) -> ProductRequest:
    raw = query.require("dpRequestId")
    try:
        req = ctx.products.requests.get(int(raw))
    except ValueError:
        req = None
    if req is None:
        raise ApiError.code(127, "dpRequestId")
    return req


async def _run_answer(
    ctx: OncContext, request: web.Request, req: ProductRequest
) -> web.StreamResponse:
    status = ctx.products.status_of(req)
    files = len(_pieces(req)) if status == "complete" else 0
    body = [{"dpRunId": req.run_id, "fileCount": files, "status": status}]
    return await send_json(
        request, body, status=200 if status in ("complete", "cancelled") else 202
    )


async def _request(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    query.check_known(REQUEST_PARAMS)
    code = query.require("dataProductCode")
    extension = query.require("extension")
    product = DATA_PRODUCTS.get(code)
    if product is None:
        raise ApiError.code(127, "dataProductCode")
    if extension not in product.extensions:
        raise ApiError.code(127, "extension")
    start, end = resolve_window(query, ctx.clock.now_ms(), require_from=True, require_to=True)
    deployments, prefix = _address(ctx, query)
    if query.get("locationCode") and not ctx.catalogue.segments(deployments, start, end):
        raise no_deployment_error(call, query, start, end)
    segments = ctx.catalogue.segments(deployments, start, min(end, ctx.horizon_ms()))
    days = max((end - start) / _DAY_MS, 1 / 96)
    estimate = int(product.bytes_per_day * days)
    req = ctx.products.new_request(
        {
            "product": code,
            "extension": extension,
            "start": start,
            "end": end,
            "segments": segments,
            "name_prefix": prefix,
            "clean": query.get("dpo_qualityControl") == "1",
            "estimated_bytes": estimate,
        }
    )
    pid = 33_282_795 + req.request_id % 100_000
    doi = next(
        (s.deployment.doi for s in segments if s.deployment.doi),
        "10.34943/e4166edb-4ce0-4b57-9856-acf4198fad53",
    )
    body = {
        "citations": [
            {
                "citation": f"Ocean Networks Canada Society. {iso_ms(start)[:4]}. {prefix}. "
                f"Ocean Networks Canada Society. https://doi.org/{doi}. "
                f"Subset Query: {pid}. Accessed {ctx.clock.now().date().isoformat()}.",
                "doi": doi,
                "landingPageUrl": f"https://doi.org/{doi}",
                "queryPid": pid,
            }
        ],
        "disclaimer": DISCLAIMER,
        "dpRequestId": req.request_id,
        "estimatedFileSize": human_size(estimate),
        "estimatedProcessingTime": human_duration(ctx.config.product_processing_s),
        "messages": [],
        "queryPids": [pid],
        "queryURL": query_url(call.base_url, "/api/dataProductDelivery/request", query.pairs),
    }
    return await send_json(request, body)


def _address(ctx: OncContext, query: Query) -> tuple[list[Deployment], str]:
    device = query.get("deviceCode")
    if device:
        if device not in ctx.catalogue.devices:
            raise ApiError.code(127, "deviceCode")
        return ctx.catalogue.deployments_of(device=device), device
    location = query.require("locationCode")
    category = query.require("deviceCategoryCode")
    loc = ctx.catalogue.locations.get(location)
    if loc is None or category not in CATEGORIES:
        raise ApiError.code(127, "locationCode, deviceCategoryCode")
    deps = ctx.catalogue.deployments_of(location=location, category=category)
    return deps, f"{loc.file_prefix}_{CATEGORIES[category].file_name}"


def human_size(size: int) -> str:
    """Bytes as ONC writes estimates: "151 kB", "2 MB"."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{round(size / factor)} {unit}"
    return f"{size} B"


def human_duration(seconds: float) -> str:
    """Seconds as ONC writes estimates: "20 s", "3 min", "2 hour"."""
    if seconds >= 3600:
        return f"{math.ceil(seconds / 3600)} hour"
    if seconds >= 60:
        return f"{math.ceil(seconds / 60)} min"
    return f"{math.ceil(seconds)} s"


def _pieces(req: ProductRequest) -> list[tuple[int, int]]:
    # One file per UTC day that has data; an empty list is a product with no data (204).
    if not req.pieces:
        for seg in req.segments:
            day = seg.start - seg.start % _DAY_MS
            while day < seg.end:
                lo, hi = max(day, seg.start), min(day + _DAY_MS, seg.end)
                if lo < hi:
                    req.pieces.append((lo, hi))
                day += _DAY_MS
    return req.pieces


def _file_name(req: ProductRequest, lo: int, hi: int, *, meta: bool = False) -> str:
    def stamp(ms: int) -> str:
        return iso_ms(ms)[:19].replace("-", "").replace(":", "") + "Z"

    clean = "-clean" if req.clean else ""
    base = f"{req.name_prefix}_{stamp(lo)}_{stamp(hi)}{clean}"
    return f"{base}_{req.extension.upper()}_META.xml" if meta else f"{base}.{req.extension}"


async def _download(ctx: OncContext, request: web.Request, query: Query) -> web.StreamResponse:
    query.check_known(("dpRunId", "index"))
    raw = query.require("dpRunId")
    req = ctx.products.runs.get(int(raw)) if raw.isdigit() else None
    if req is None:
        raise ApiError.code(127, "dpRunId")
    status = ctx.products.status_of(req)
    if status == "cancelled":
        raise ApiError.code(127, "dpRunId", "The data product run was cancelled")
    pieces = _pieces(req)
    if status != "complete":
        name = _file_name(req, *(pieces[0] if pieces else (req.start, req.end)))
        message = (
            f"Transferring ({name}) to the FTP server"
            if status != "queued"
            else "Data product is queued"
        )
        return await send_json(request, {"message": message, "status": "running"}, status=202)
    if ctx.products.expired(req):
        return await send_json(
            request,
            {"message": "The data product files have expired. Please run the request again."},
            status=410,
        )
    index = query.get("index") or "1"
    if index == "meta":
        lo, hi = pieces[0] if pieces else (req.start, req.end)
        name = _file_name(req, lo, hi, meta=True)
        return await _file(request, name, _meta_xml(req).encode(), "application/xml")
    if not index.isdigit() or int(index) < 1:
        raise ApiError.code(127, "index")
    if not pieces:
        return web.Response(status=204)
    if int(index) > len(pieces):
        return await send_json(request, {"message": "File index out of range"}, status=404)
    lo, hi = pieces[int(index) - 1]
    data = ctx.products.cached_file(req, lo)
    if data is None:
        # A day of 1 Hz CSV takes a moment to build: keep the event loop serving meanwhile.
        data = await asyncio.to_thread(product_bytes, ctx, req, lo, hi)
        ctx.products.keep_file(req, lo, data)
    return await _file(
        request,
        _file_name(req, lo, hi),
        data,
        "text/csv" if req.extension == "csv" else "application/octet-stream",
    )


async def _file(
    request: web.Request, name: str, data: bytes, content_type: str
) -> web.StreamResponse:
    # Unquoted filename: the official client splits the header on "filename=".
    headers = {"Content-Disposition": f"attachment; filename={name}"}
    return await send_bytes(request, data, content_type=content_type, headers=headers)


def product_bytes(ctx: OncContext, req: ProductRequest, lo: int, hi: int) -> bytes:
    """The bytes of one product file: real CSV for TSSD csv, seeded bytes otherwise."""
    if req.product == "TSSD" and req.extension == "csv":
        return _tssd_csv(ctx, req, lo, hi)
    size = min(_MAX_GENERIC_BYTES, max(10_000, int(req.estimated_bytes / max(len(req.pieces), 1))))
    rng = np.random.default_rng(stream_key(ctx.config.seed, f"{req.request_id}:{lo}"))
    return rng.bytes(size)


def _tssd_csv(ctx: OncContext, req: ProductRequest, lo: int, hi: int) -> bytes:
    seg = next(s for s in req.segments if s.start <= lo < s.end)
    device = seg.device
    rows = ctx.synth.signal(device).rows(lo, hi, 10_000_000, gap_fill=True)
    header = [
        '#"Ocean Networks Canada Data Archive"',
        f'#"Device: {device.name} ({device.code})"',
        '#"Time UTC (yyyy-mm-ddThh:mm:ss.fffZ)",'
        + ",".join(f'"{s.name} ({s.unit})","{s.name} QC Flag"' for s in device.sensors),
        "## END HEADER",
    ]
    if not device.sensors:
        return ("\n".join(header) + "\n").encode()
    columns: list[list[Any]] = [iso_times(rows.times)]
    for i in range(len(device.sensors)):
        columns.append(rows.values[i].tolist())
        columns.append(rows.flags[i].tolist())
    lines = [", ".join(map(str, row)) for row in zip(*columns, strict=True)]
    return ("\n".join(header + lines) + "\n").encode()


def _meta_xml(req: ProductRequest) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<metadata>\n"
        f"  <dataProductCode>{req.product}</dataProductCode>\n"
        f"  <extension>{req.extension}</extension>\n"
        f"  <dateFrom>{iso_ms(req.start)}</dateFrom>\n"
        f"  <dateTo>{iso_ms(req.end)}</dateTo>\n"
        f"  <dpRequestId>{req.request_id}</dpRequestId>\n"
        "</metadata>\n"
    )
