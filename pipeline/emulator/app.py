"""The Oceans API web app: both URL styles resolved to one endpoint table, token check, cache."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aiohttp import web

from pipeline.emulator import archive, availability, discovery, products, timeseries
from pipeline.emulator.catalogue import Catalogue
from pipeline.emulator.clock import EmulatorClock
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.faults import FaultInjector, fault_middleware
from pipeline.emulator.gaps import GapPlan
from pipeline.emulator.introspection import RequestLog, add_routes
from pipeline.emulator.params import ApiError, Query
from pipeline.emulator.responses import send_json
from pipeline.emulator.synthetic import Synthesizer

if TYPE_CHECKING:
    from pipeline.emulator.registry import RegistryState
    from pipeline.emulator.truth import GroundTruth

V = TypeVar("V")
# Rendered `sensorData` arrays kept (a day of an 8-sensor 1 Hz device is about 30 MB).
SENSOR_DATA_ENTRIES = 4

# The exact body ONC answers for a wrong token (onc-samples/error_401_invalid_token_wiki.json).
UNAUTHORIZED_BODY = {
    "errors": [{"errorCode": 127, "errorMessage": "Invalid parameter value", "parameter": "token"}]
}


@dataclass(frozen=True, slots=True)
class Call:
    """One resolved API call: canonical endpoint name, URL style and where to send `next`."""

    name: str
    style: str  # "path" or "method"
    path: str
    base_url: str

    @property
    def url_key(self) -> str:
        """`queryUrl` for the current path style, `queryURL` for the older method style."""
        return "queryUrl" if self.style == "path" else "queryURL"


Endpoint = Callable[["OncContext", web.Request, Query, Call], Awaitable[web.StreamResponse]]

# Path style: /api/<path> -> endpoint name.
PATHS: dict[str, str] = {
    "locations": "locations",
    "deployments": "deployments",
    "devices": "devices",
    "deviceCategories": "deviceCategories",
    "properties": "properties",
    "dataProducts": "dataProducts",
    "dataAvailability/dataproducts": "dataAvailability.dataproducts",
    "scalardata/location": "scalardata.location",
    "scalardata/device": "scalardata.device",
    "rawdata/location": "rawdata.location",
    "rawdata/device": "rawdata.device",
    "archivefile/location": "archivefile.location",
    "archivefile/device": "archivefile.device",
    "archivefile/download": "archivefile.download",
    **{
        f"dataProductDelivery/{m}": f"dataProductDelivery.{m}"
        for m in ("request", "run", "status", "download", "cancel", "restart")
    },
}

# The discovery services: one `get` method each, all answered by discovery.handle.
DISCOVERY_SERVICES = (
    "locations",
    "deployments",
    "devices",
    "deviceCategories",
    "properties",
    "dataProducts",
)
# Method style: (/api/<service>, method=<m>) -> endpoint name.
METHODS: dict[str, dict[str, str]] = {
    **{svc: {"get": svc} for svc in DISCOVERY_SERVICES},
    "scalardata": {"getByLocation": "scalardata.location", "getByDevice": "scalardata.device"},
    "rawdata": {"getByLocation": "rawdata.location", "getByDevice": "rawdata.device"},
    "archivefiles": {
        "getListByLocation": "archivefile.location",
        "getListByDevice": "archivefile.device",
        "getFile": "archivefile.download",
    },
    "dataProductDelivery": {
        m: f"dataProductDelivery.{m}"
        for m in ("request", "run", "status", "download", "cancel", "restart")
    },
}
METHODS["archivefile"] = METHODS["archivefiles"]

HANDLERS: dict[str, Endpoint] = {
    **{name: discovery.handle for name in DISCOVERY_SERVICES},
    "dataAvailability.dataproducts": availability.handle,
    "scalardata.location": timeseries.scalardata,
    "scalardata.device": timeseries.scalardata,
    "rawdata.location": timeseries.rawdata,
    "rawdata.device": timeseries.rawdata,
    "archivefile.location": archive.listing,
    "archivefile.device": archive.listing,
    "archivefile.download": archive.download,
    **{
        f"dataProductDelivery.{m}": products.handle
        for m in ("request", "run", "status", "download", "cancel", "restart")
    },
}


def resolve(request: web.Request) -> str | None:
    """Canonical endpoint name of a request (None outside /api/: not logged, no faults)."""
    if not request.path.startswith("/api/"):
        return None
    tail = request.path[len("/api/") :].rstrip("/")
    if tail in PATHS:
        return PATHS[tail]
    methods = METHODS.get(tail)
    if methods is not None:
        return methods.get(request.query.get("method", ""), f"{tail}.?")
    return "api.unknown"


class PageCache(Generic[V]):
    """Rendered response bodies (or parts of them) keyed by normalized query; least recently
    used dropped first. Safe to use from the render threads as well as the loop."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._pages: OrderedDict[tuple[Any, ...], V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> V | None:
        """A cached value, refreshed as most recent."""
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._pages.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: V) -> None:
        """Store a rendered value."""
        if self._entries <= 0:
            return
        with self._lock:
            self._pages[key] = value
            self._pages.move_to_end(key)
            while len(self._pages) > self._entries:
                self._pages.popitem(last=False)


class OncContext:
    """Everything the Oceans API handlers share: config, clock, data, state, log, faults."""

    def __init__(
        self, config: EmulatorConfig, clock: EmulatorClock, registry: RegistryState | None = None
    ) -> None:
        from pipeline.emulator.truth import GroundTruth  # truth imports the handlers' helpers

        self.config = config
        self.clock = clock
        self.catalogue = Catalogue().redeployed(config.redeployments)
        self.gaps = GapPlan.load(config.gaps)
        self.synth = Synthesizer(config.seed, self.gaps)
        self.log = RequestLog(config.request_log_limit)
        self.faults = FaultInjector(config.seed, clock, _fault_spec(config.faults))
        self.cache: PageCache[tuple[int, bytes]] = PageCache(config.page_cache_entries)
        # The `sensorData` of scalardata pages by the rows they hold (timeseries.py): requests
        # that differ only where no sample falls (a `dateTo` a millisecond later) share it.
        self.sensor_data: PageCache[bytes] = PageCache(SENSOR_DATA_ENTRIES)
        self.rendering: dict[tuple[Any, ...], timeseries.Rendering] = {}  # pages being rendered
        self.archive = archive.ArchiveStore(self)
        self.products = products.ProductStore(self)
        self.truth: GroundTruth = GroundTruth(self)
        self.registry = registry

    def set_gaps(self, spec: Any) -> None:
        """Install a new gap plan; rendered pages made under the old one are dropped."""
        self.gaps = GapPlan.load(spec)
        self.synth = Synthesizer(self.config.seed, self.gaps)
        self.cache = PageCache(self.config.page_cache_entries)
        self.sensor_data = PageCache(SENSOR_DATA_ENTRIES)
        self.rendering = {}  # renders under the old plan finish into the old cache

    def horizon_ms(self) -> int:
        """Data exists up to this instant (now minus the configured latency)."""
        return self.clock.now_ms() - int(self.config.latency_s * 1000)


def _fault_spec(spec: Any) -> Any:
    # A path to a JSON file may also be given inline as JSON text by the CLI.
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        return json.loads(spec)
    if isinstance(spec, Path):
        return str(spec)
    return spec


async def _dispatch(ctx: OncContext, request: web.Request) -> web.StreamResponse:
    query = Query.parse(request.query_string)
    if query.get("token") != ctx.config.token:
        return await send_json(request, UNAUTHORIZED_BODY, status=401)
    tail = request.path[len("/api/") :].rstrip("/")
    base_url = f"{request.scheme}://{request.host}"
    if tail in PATHS:
        name, style, path = PATHS[tail], "path", f"/api/{tail}"
    elif tail in METHODS:
        method = query.get("method")
        if not method:
            return await send_json(request, ApiError.code(128, "method").body, status=400)
        if method not in METHODS[tail]:
            return await send_json(request, ApiError.code(127, "method").body, status=400)
        name, style, path = METHODS[tail][method], "method", f"/api/{tail}"
    else:
        return await send_json(request, ApiError.not_found().body, status=404)
    try:
        return await HANDLERS[name](ctx, request, query, Call(name, style, path, base_url))
    except ApiError as exc:
        return await send_json(request, exc.body, status=exc.status)


def build_onc_app(ctx: OncContext) -> web.Application:
    """The Oceans API app with its log and fault middlewares and the /_emulator/ routes."""
    app = web.Application(middlewares=[ctx.log.middleware(resolve), fault_middleware(ctx.faults)])

    async def api(request: web.Request) -> web.StreamResponse:
        return await _dispatch(ctx, request)

    app.router.add_get("/api/{tail:.*}", api)
    add_routes(app, ctx)
    return app
