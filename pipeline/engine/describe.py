"""Describing datasets from discovery: the metadata NetCDF and CSV files carry.

The engine asks ONC's discovery endpoints (deployments, locations, device categories,
properties) about a stream's platform and hands the writers a `DatasetMeta`: the outputs
only read records and never talk to the network. Building the metadata is a pure function
(`build_dataset_meta`), tested without a server; `discover_dataset_meta` only fetches its
inputs; `OutputFormats` does it lazily, once per dataset.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import structlog

from pipeline.onc import OncClient
from pipeline.onc.models import Deployment, DeviceCategory, Location, Property
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

R = TypeVar("R")


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


class Discovery(Protocol):
    """The discovery calls a description makes (`OncClient`'s, or `SharedDiscovery`'s)."""

    @property
    def options(self) -> Any:
        """The client's options (`base_url`)."""
        ...

    async def deployments(self, **filters: object) -> list[Deployment]: ...
    async def locations(self, **filters: object) -> list[Location]: ...
    async def device_categories(self, **filters: object) -> list[DeviceCategory]: ...
    async def properties(self, **filters: object) -> list[Property]: ...


#: How long a discovery answer serves other descriptions: long enough for every stream of a
#: start-up or a reload, short enough that a dataset described later asks afresh.
SHARED_ANSWER_S = 300.0


@dataclass(slots=True)
class _Answer:
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    rows: list[Any] | None = None  # None until fetched, and when the fetch failed
    at: float = 0.0
    # The asker's failure, for those waiting on it: during an outage N streams asking one
    # question get one failure (after the client's retries), not N failures in a row.
    error: Exception | None = None


class SharedDiscovery:
    """`OncClient`'s discovery calls, with one request for the same question asked by several
    descriptions at once or within `SHARED_ANSWER_S` (streams of one device or location).

    The first caller asks; the others wait on an event (cancelling one of them cancels
    nothing else) and take a copy of its answer, or its error if it failed (a failure is not
    kept for later callers); if the asker was cancelled, they ask themselves.
    """

    def __init__(self, client: OncClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._answers: dict[tuple[str, frozenset[tuple[str, object]]], _Answer] = {}

    @property
    def options(self) -> Any:
        """The client's options."""
        return self._client.options

    async def deployments(self, **filters: object) -> list[Deployment]:
        """`OncClient.deployments`, shared."""
        return await self._ask("deployments", filters, self._client.deployments)

    async def locations(self, **filters: object) -> list[Location]:
        """`OncClient.locations`, shared."""
        return await self._ask("locations", filters, self._client.locations)

    async def device_categories(self, **filters: object) -> list[DeviceCategory]:
        """`OncClient.device_categories`, shared."""
        return await self._ask("device_categories", filters, self._client.device_categories)

    async def properties(self, **filters: object) -> list[Property]:
        """`OncClient.properties`, shared."""
        return await self._ask("properties", filters, self._client.properties)

    async def _ask(
        self, name: str, filters: dict[str, object], call: Callable[..., Awaitable[list[R]]]
    ) -> list[R]:
        key = (name, frozenset(filters.items()))
        while (held := self._answers.get(key)) is not None:
            if not held.ready.is_set():
                await held.ready.wait()
                if held.error is not None:
                    raise held.error
                continue
            if held.rows is not None and self._clock() - held.at < SHARED_ANSWER_S:
                return list(held.rows)
            del self._answers[key]
        entry = self._answers[key] = _Answer()
        try:
            rows = await call(**filters)
        except Exception as exc:
            entry.error = exc  # those waiting now share it; later callers ask again
            del self._answers[key]
            raise
        except BaseException:
            del self._answers[key]  # a cancelled asker: waiters find no answer and ask
            raise
        finally:
            entry.ready.set()
        entry.rows, entry.at = list(rows), self._clock()
        return rows


async def discover_dataset_meta(
    client: Discovery, stream: TimeSeriesStream, output: OutputSettings
) -> DatasetMeta:
    """Ask the discovery endpoints about a stream's platform and build its DatasetMeta.

    Every question that does not need another's answer is asked at once: describing costs
    round trips before a stream's first page reaches a writer, and its requests wait for the
    same request slots as the data pages.
    """
    if stream.device_code:
        # Only the locations and the category depend on the deployments' answer; the
        # properties are asked by device code, beside the deployments.
        deployments, properties = await asyncio.gather(
            client.deployments(device_code=stream.device_code),
            client.properties(device_code=stream.device_code),
        )
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
        found, categories = await asyncio.gather(
            asyncio.gather(*(client.locations(location_code=code) for code in location_codes)),
            client.device_categories(device_category_code=category_codes[0])
            if category_codes
            else _nothing_cat(),
        )
    else:
        # A location stream names everything it asks about: all four questions at once.
        station_codes = [stream.location_code] if stream.location_code else []
        deployments, found, categories, properties = await asyncio.gather(
            client.deployments(
                location_code=stream.location_code,
                device_category_code=stream.device_category_code,
            ),
            asyncio.gather(*(client.locations(location_code=code) for code in station_codes)),
            client.device_categories(device_category_code=stream.device_category_code),
            client.properties(
                location_code=stream.location_code,
                device_category_code=stream.device_category_code,
            ),
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


# Formats that describe their dataset (position, units, attributes) from discovery.
DESCRIBED = frozenset({"netcdf", "csv", "parquet"})


class OutputFormats:
    """Every writer by format name, plus the discovery metadata they share by reference.

    Metadata is fetched lazily, the first time a stream that needs it runs, so a daemon
    whose upstream is down at start-up still starts, and a stream added by a reload is
    described on its first pass.
    """

    def __init__(self, output: OutputSettings, client: OncClient) -> None:
        self._output = output
        self._discovery = SharedDiscovery(client)
        # One lock per dataset: a dataset is described once, and datasets are described side
        # by side (a lock for all of them made every stream of a backfill wait for the
        # descriptions of the streams before it, two round trips each).
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
