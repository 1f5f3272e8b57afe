"""dataProductDelivery: request, run, status, download, cancel, restart over the emulator clock.

A request has one run per device it covers, split further when `product_files_per_run` is set
(`run` answers a list: both official clients download every `dpRunId` in it). Run k goes
`queued` -> `data product running` -> `complete` over (k + 1) x `product_processing_s` of
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
class RunPart:
    """One run of a request: its id, its place among the request's runs and its files."""

    run_id: int
    order: int
    request: ProductRequest
    pieces: list[tuple[int, int]]


@dataclass(slots=True)
class ProductRequest:
    """An accepted `request`: what to build, and its runs once `run` was called."""

    request_id: int
    product: str
    extension: str
    start: int
    end: int
    segments: list[Segment]
    name_prefix: str
    clean: bool
    estimated_bytes: int
    runs: list[RunPart] = field(default_factory=list)
    started: datetime | None = None
    cancelled: bool = False
    pieces: list[tuple[int, int]] = field(default_factory=list)

    @property
    def run_ids(self) -> list[int]:
        """The dpRunIds of this request, in the order `run` lists them."""
        return [part.run_id for part in self.runs]


class ProductStore:
    """Every product request and run of this emulator instance."""

    def __init__(self, ctx: OncContext) -> None:
        self._ctx = ctx
        self.requests: dict[int, ProductRequest] = {}
        self.runs: dict[int, RunPart] = {}
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

    def status_of(self, part: RunPart) -> str:
        """queued, data product running, complete or cancelled, from the emulator clock."""
        req = part.request
        if req.cancelled:
            return "cancelled"
        assert req.started is not None
        elapsed = (self._ctx.clock.now() - req.started).total_seconds()
        total = self._ctx.config.product_processing_s * (part.order + 1)
        if elapsed >= total:
            return "complete"
        return "queued" if elapsed < total / 3 else "data product running"

    def request_status(self, req: ProductRequest) -> str:
        """The request as a whole: cancelled, complete once every run is, else running."""
        statuses = {self.status_of(part) for part in req.runs}
        if statuses <= {"complete", "cancelled"} and len(statuses) == 1:
            return statuses.pop()
        return "queued" if statuses == {"queued"} else "data product running"

    def expired(self, part: RunPart) -> bool:
        """True once the run's files are past their expiry (deleted from the FTP area)."""
        assert part.request.started is not None
        age = (self._ctx.clock.now() - part.request.started).total_seconds()
        done = self._ctx.config.product_processing_s * (part.order + 1)
        return age >= done + self._ctx.config.product_expiry_s

    def new_request(self, req_kwargs: dict[str, Any]) -> ProductRequest:
        """Register a request and give it the next id."""
        req = ProductRequest(request_id=self._next_request, **req_kwargs)
        self._next_request += 1
        self.requests[req.request_id] = req
        return req

    def file_names(self, part: RunPart) -> list[str]:
        """The names a run's downloads carry: index 1, 2, … then `meta` (ground truth)."""
        req = part.request
        names = [_file_name(req, lo, hi) for lo, hi in part.pieces]
        first = part.pieces[0] if part.pieces else (req.start, req.end)
        return [*names, _file_name(req, *first, meta=True)]

    def start_run(self, req: ProductRequest) -> None:
        """Start (or restart) the runs of `req`; a restart keeps the dpRunIds."""
        if not req.runs:
            for order, pieces in enumerate(_split(req, self._ctx.config.product_files_per_run)):
                part = RunPart(self._next_run, order, req, pieces)
                self._next_run += 1
                req.runs.append(part)
                self.runs[part.run_id] = part
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
        if not req.runs:
            store.start_run(req)
        return await _run_answer(ctx, request, req)
    if action == "status":
        status = store.request_status(req) if req.runs else "not run"
        return await send_json(
            request,
            {
                "dpRequestId": req.request_id,
                "searchHdrStatus": "COMPLETED" if status == "complete" else "OPEN",
                "status": status,
                "dpRunIds": req.run_ids,
            },
        )
    if action == "cancel":
        if not req.runs or store.request_status(req) in ("complete", "cancelled"):
            # The real service answers this 400 without an `errors` list.
            return await send_json(
                request, {"message": "Request cannot be cancelled: it is not running."}, status=400
            )
        req.cancelled = True
        return await send_json(
            request, [{"dpRunId": run_id, "status": "cancelled"} for run_id in req.run_ids]
        )
    # restart
    store.start_run(req)
    return await send_json(
        request, [{"dpRunId": p.run_id, "status": store.status_of(p)} for p in req.runs]
    )


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
    body = []
    for part in req.runs:
        status = ctx.products.status_of(part)
        files = len(part.pieces) if status == "complete" else 0
        body.append({"dpRunId": part.run_id, "fileCount": files, "status": status})
    # 200 once every run is finished (a guess: ONC documents 202 "while not complete" for a
    # single run; a client must look at every run's status, as ours does).
    finished = ctx.products.request_status(req) in ("complete", "cancelled")
    return await send_json(request, body, status=200 if finished else 202)


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


def _split(req: ProductRequest, files_per_run: int | None) -> list[list[tuple[int, int]]]:
    """The files of each run: one file per UTC day and device with data, one run per device
    (then at most `files_per_run` files a run); a product with no data has one empty run."""
    by_device: dict[str, list[tuple[int, int]]] = {}
    for seg in req.segments:
        pieces = by_device.setdefault(seg.device.code, [])
        day = seg.start - seg.start % _DAY_MS
        while day < seg.end:
            lo, hi = max(day, seg.start), min(day + _DAY_MS, seg.end)
            if lo < hi:
                pieces.append((lo, hi))
            day += _DAY_MS
    runs: list[list[tuple[int, int]]] = []
    for pieces in by_device.values():
        step = files_per_run or max(len(pieces), 1)
        runs.extend(pieces[i : i + step] for i in range(0, len(pieces), step))
    req.pieces = [piece for run in runs for piece in run]
    return runs or [[]]


def _file_name(req: ProductRequest, lo: int, hi: int, *, meta: bool = False) -> str:
    def stamp(ms: int) -> str:
        return iso_ms(ms)[:19].replace("-", "").replace(":", "") + "Z"

    clean = "-clean" if req.clean else ""
    base = f"{req.name_prefix}_{stamp(lo)}_{stamp(hi)}{clean}"
    return f"{base}_{req.extension.upper()}_META.xml" if meta else f"{base}.{req.extension}"


async def _download(ctx: OncContext, request: web.Request, query: Query) -> web.StreamResponse:
    query.check_known(("dpRunId", "index"))
    raw = query.require("dpRunId")
    part = ctx.products.runs.get(int(raw)) if raw.isdigit() else None
    if part is None:
        raise ApiError.code(127, "dpRunId")
    req = part.request
    status = ctx.products.status_of(part)
    if status == "cancelled":
        raise ApiError.code(127, "dpRunId", "The data product run was cancelled")
    pieces = part.pieces
    if status != "complete":
        name = _file_name(req, *(pieces[0] if pieces else (req.start, req.end)))
        message = (
            f"Transferring ({name}) to the FTP server"
            if status != "queued"
            else "Data product is queued"
        )
        return await send_json(request, {"message": message, "status": "running"}, status=202)
    if ctx.products.expired(part):
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
