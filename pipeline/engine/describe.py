"""Describing datasets from discovery: the metadata NetCDF and CSV files carry.

The engine asks ONC's discovery endpoints (deployments, locations, device categories,
properties) about a stream's platform and hands the writers a `DatasetMeta`: the outputs
only read records and never talk to the network. Building the metadata is a pure function
(`build_dataset_meta`), tested without a server; `discover_dataset_meta` only fetches its
inputs; `OutputFormats` does it lazily, once per dataset, datasets independently of each
other (a daemon that starts with hundreds of streams describes them all in its first minute,
and a stream's first poll waits for its own description only), and `SharedDiscovery` asks
each question once for the datasets that share it (streams of one device).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import structlog

from pipeline.onc import OncClient
from pipeline.onc.models import Deployment, DeviceCategory, Location, Property
from pipeline.onc.options import ClientOptions
from pipeline.outputs.metadata import (
    DEFAULT_ATTRIBUTES,
    DEFAULT_PUBLISHER,
    ONC_NAME,
    DatasetMeta,
    Position,
    PropertyInfo,
    Station,
)
from pipeline.outputs.writers import LazyWriters
from pipeline.settings import OutputSettings, StreamSettings, TimeSeriesStream

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Discovery(Protocol):
    """The discovery questions a description asks (`OncClient` answers them)."""

    options: ClientOptions

    async def deployments(self, **filters: object) -> list[Deployment]:
        """`/api/deployments`."""
        ...

    async def locations(self, **filters: object) -> list[Location]:
        """`/api/locations`."""
        ...

    async def device_categories(self, **filters: object) -> list[DeviceCategory]:
        """`/api/deviceCategories`."""
        ...

    async def properties(self, **filters: object) -> list[Property]:
        """`/api/properties`."""
        ...


def _alnum(text: str) -> str:
    # IOOS 1.2 wants `platform_id` alphanumeric only.
    return re.sub(r"[^A-Za-z0-9]", "", text)


def build_dataset_meta(
    stream: TimeSeriesStream,
    output: OutputSettings,
    *,
    base_url: str,
    locations: Sequence[Location] = (),
    deployments: Sequence[Deployment] = (),
    categories: Sequence[DeviceCategory] = (),
    properties: Sequence[Property] = (),
) -> DatasetMeta:
    """Combine discovery answers, defaults and `output.attributes` into a DatasetMeta."""
    location = next(
        (loc for loc in locations if loc.location_code == stream.location_code), None
    ) or (locations[0] if locations else None)
    category_code = stream.device_category_code or next(
        (d.device_category_code for d in deployments if d.device_category_code), None
    )
    category = next((c for c in categories if c.device_category_code == category_code), None) or (
        categories[0] if categories else None
    )
    positions = tuple(
        Position(
            device_code=d.device_code,
            begin=d.begin,
            end=d.end,
            latitude=d.lat,
            longitude=d.lon,
            depth=d.depth if d.depth is not None else 0.0,
            citation=d.citation.citation if d.citation else None,
            doi=d.citation.doi if d.citation else None,
            landing_page_url=d.citation.landing_page_url if d.citation else None,
            location_code=d.location_code,
        )
        for d in sorted(deployments, key=lambda d: (d.begin is not None, d.begin))
        if d.lat is not None and d.lon is not None
    )
    if not positions and location and location.lat is not None and location.lon is not None:
        positions = (
            Position(
                device_code=stream.device_code or "",
                begin=None,
                end=None,
                latitude=location.lat,
                longitude=location.lon,
                depth=location.depth or 0.0,
            ),
        )
    stations = {
        loc.location_code: Station(
            code=loc.location_code,
            name=loc.location_name or loc.location_code,
            latitude=loc.lat,
            longitude=loc.lon,
            depth=loc.depth if loc.depth is not None else _first_depth(positions, loc),
        )
        for loc in locations
        if loc.lat is not None and loc.lon is not None
    }
    platform_code = stream.location_code or (location.location_code if location else None)
    platform_code = platform_code or stream.device_code or stream.resolved_dataset_id
    platform_name = (location.location_name if location else None) or platform_code
    instrument = (
        (category.device_category_name if category else None)
        or category_code
        or stream.device_code
        or "instrument"
    )
    what = "scalar sensor data" if stream.kind == "scalardata" else "raw instrument data"
    summary = (
        f"{instrument} {what} from {platform_name} ({platform_code}), harvested from the "
        f"{ONC_NAME} Oceans 3.0 API."
    )
    if location and location.description:
        summary += " " + location.description
    attributes = dict(DEFAULT_ATTRIBUTES)
    if not any(key.startswith("publisher_") for key in output.attributes):
        attributes.update(DEFAULT_PUBLISHER)
    attributes.update(
        {
            "title": f"{ONC_NAME} {platform_name} {instrument}",
            "summary": summary,
            "id": stream.resolved_dataset_id,
            "platform_name": platform_name,
            "platform_id": _alnum(platform_code) or "platform",
            "instrument": instrument,
            "keywords": ", ".join(
                dict.fromkeys(
                    [ONC_NAME, platform_name, instrument]
                    + [p.property_name for p in properties if p.property_name]
                )
            ),
        }
    )
    citations = [p for p in positions if p.citation]
    if citations:
        attributes["citation"] = " ".join(dict.fromkeys(p.citation or "" for p in citations))
        attributes["doi"] = " ".join(dict.fromkeys(p.doi for p in citations if p.doi))
        attributes["references"] = " ".join(
            dict.fromkeys(p.landing_page_url for p in citations if p.landing_page_url)
        )
    attributes.update(output.attributes)
    source_params = (
        {"deviceCode": stream.device_code}
        if stream.device_code
        else {
            "locationCode": stream.location_code or "",
            "deviceCategoryCode": stream.device_category_code or "",
        }
    )
    return DatasetMeta(
        dataset_id=stream.resolved_dataset_id,
        kind=stream.kind,
        endpoint=f"/api/{stream.kind}/{'device' if stream.device_code else 'location'}",
        source_params=source_params,
        base_url=base_url.rstrip("/"),
        platform_code=platform_code,
        platform_name=platform_name,
        instrument=instrument,
        positions=positions,
        attributes=attributes,
        properties={
            p.property_code.lower(): PropertyInfo(p.property_name, p.uom) for p in properties
        },
        stations=stations,
    )


def _first_depth(positions: Sequence[Position], location: Location) -> float:
    """The depth of the earliest deployment at `location` (0 when there is none)."""
    here = [p.depth for p in positions if p.location_code == location.location_code]
    return here[0] if here else 0.0


# Orders deployments ONC gives no begin for before every dated one.
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


async def discover_dataset_meta(
    client: Discovery, stream: TimeSeriesStream, output: OutputSettings
) -> DatasetMeta:
    """Ask the discovery endpoints about a stream's platform and build its DatasetMeta."""
    if stream.device_code:
        deployments = await client.deployments(device_code=stream.device_code)
        # Where the device stands now first: build_dataset_meta describes the platform by the
        # first location (a device moved since stood elsewhere; each place stays a station).
        latest: dict[str, datetime] = {}
        for d in deployments:
            begin = d.begin or _LONG_AGO
            latest[d.location_code] = max(begin, latest.get(d.location_code, _LONG_AGO))
        location_codes = sorted(latest, key=lambda code: (latest[code], code), reverse=True)
        category_codes = sorted(
            {d.device_category_code for d in deployments if d.device_category_code}
        )
        # Every location the device stood at: each is a station of the dataset.
        station_codes = location_codes
        category_filter: dict[str, object] = (
            {"device_category_code": category_codes[0]} if category_codes else {}
        )
        property_filter: dict[str, object] = {"device_code": stream.device_code}
    else:
        deployments = await client.deployments(
            location_code=stream.location_code, device_category_code=stream.device_category_code
        )
        station_codes = [stream.location_code] if stream.location_code else []
        category_filter = {"device_category_code": stream.device_category_code}
        property_filter = {
            "location_code": stream.location_code,
            "device_category_code": stream.device_category_code,
        }
    found, categories, properties = await asyncio.gather(
        asyncio.gather(*(client.locations(location_code=code) for code in station_codes)),
        client.device_categories(**category_filter) if category_filter else _nothing_cat(),
        client.properties(**property_filter),
    )
    locations = [loc for answer in found for loc in answer]
    return build_dataset_meta(
        stream,
        output,
        base_url=client.options.base_url,
        locations=locations,
        deployments=deployments,
        categories=categories,
        properties=properties,
    )


async def _nothing_cat() -> list[DeviceCategory]:
    return []


# How long a discovery answer serves other datasets that ask the same question: long enough
# for a start-up's burst of first passes, short enough that a stream added by a later reload
# sees deployments as they are then.
DISCOVERY_TTL_S = 600.0


class SharedDiscovery:
    """`Discovery` over an `OncClient`, each distinct question asked once per `ttl_s`.

    Streams of one device (several datasets, property subsets, scalar and raw data) ask the
    same four questions: the first asks, the others wait for its answer (a lock per
    question), so a start-up with many such streams does not spend the politeness budget
    that their polls need on identical requests. A failed question is not remembered.
    """

    def __init__(
        self,
        client: OncClient,
        *,
        ttl_s: float = DISCOVERY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.options = client.options
        self._ttl = ttl_s
        self._clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._answers: dict[tuple[str, str], tuple[float, list[Any]]] = {}

    async def deployments(self, **filters: object) -> list[Deployment]:
        """`/api/deployments`, shared."""
        return await self._ask("deployments", filters, self._client.deployments)

    async def locations(self, **filters: object) -> list[Location]:
        """`/api/locations`, shared."""
        return await self._ask("locations", filters, self._client.locations)

    async def device_categories(self, **filters: object) -> list[DeviceCategory]:
        """`/api/deviceCategories`, shared."""
        return await self._ask("device_categories", filters, self._client.device_categories)

    async def properties(self, **filters: object) -> list[Property]:
        """`/api/properties`, shared."""
        return await self._ask("properties", filters, self._client.properties)

    async def _ask(
        self, name: str, filters: dict[str, object], call: Callable[..., Awaitable[list[T]]]
    ) -> list[T]:
        key = (name, repr(sorted(filters.items())))
        async with self._locks.setdefault(key, asyncio.Lock()):
            held = self._answers.get(key)
            if held is not None and self._clock() - held[0] < self._ttl:
                return list(held[1])
            answer = await call(**filters)
            self._answers[key] = (self._clock(), answer)
            return list(answer)


# Formats that describe their dataset (position, units, attributes) from discovery.
DESCRIBED = frozenset({"netcdf", "csv", "parquet"})


class OutputFormats:
    """Every writer by format name, plus the discovery metadata they share by reference.

    Metadata is fetched lazily, the first time a stream that needs it runs, so a daemon
    whose upstream is down at start-up still starts, and a stream added by a reload is
    described on its first pass. Each dataset is described under its own lock: streams of
    one dataset wait for one description, other datasets go on at once.
    """

    def __init__(self, output: OutputSettings, client: OncClient) -> None:
        self._output = output
        self._discovery = SharedDiscovery(client)
        self._locks: dict[str, asyncio.Lock] = {}
        self.metas: dict[str, DatasetMeta] = {}
        self.writers = LazyWriters(self.metas, output.partition)

    async def prepare(self, stream: StreamSettings) -> None:
        """Make sure the writers `stream` uses can describe its dataset."""
        if not isinstance(stream, TimeSeriesStream) or not DESCRIBED & set(stream.formats):
            return
        dataset = stream.resolved_dataset_id
        if dataset in self.metas:
            return
        async with self._locks.setdefault(dataset, asyncio.Lock()):
            if dataset not in self.metas:
                self.metas[dataset] = await discover_dataset_meta(
                    self._discovery, stream, self._output
                )
                log.info("dataset_described", stream=stream.name, dataset=dataset)
