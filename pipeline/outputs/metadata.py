"""Dataset metadata for self-describing outputs: where the platform is, what it is, who says so.

`DatasetMeta` is built once per dataset at start-up from the discovery endpoints (location,
deployments with lat/lon/depth and DOI citations, device category, properties) plus the
operator's `output.attributes`, and handed to the NetCDF and CSV writers. Building it is a pure
function (`build_dataset_meta`) so it is tested without a server; `discover_dataset_meta` only
fetches the inputs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pipeline
from pipeline.exceptions import OutputError
from pipeline.onc import OncClient
from pipeline.onc.models import Deployment, DeviceCategory, Location, Property
from pipeline.outputs.cf_names import STANDARD_NAME_VOCABULARY
from pipeline.settings import OutputSettings, TimeSeriesStream
from pipeline.times import epoch_ms, from_epoch_ms

# ONC's QAQC flag table, as `qaqcFlagInfo` answers it (there is no flag 5). Used when a page's
# own `qaqcFlagInfo` is not available to the writer.
ONC_QAQC_FLAG_INFO: Mapping[str, str] = {
    "0": "No Quality Control",
    "1": "Data Passed All Tests",
    "2": "Data Probably Good",
    "3": "Data Probably Bad",
    "4": "Data Bad",
    "6": "Insufficient Valid Data for Reliable Down-Sampling (ONC-defined flag)",
    "7": "Averaged Value (ONC defined flag)",
    "8": "Interpolated Value",
    "9": "Missing Data",
}

ONC_NAME = "Ocean Networks Canada"
ONC_URL = "https://www.oceannetworks.ca"
ONC_LICENSE = (
    "Creative Commons Attribution 4.0 International (CC BY 4.0), "
    "https://creativecommons.org/licenses/by/4.0/ ; ONC data policy: "
    "https://www.oceannetworks.ca/data/data-policy"
)

# Global attributes every file gets unless `output.attributes` overrides them. Publisher
# defaults to ONC because the data are ONC's; an operator republishing them sets their own.
DEFAULT_ATTRIBUTES: Mapping[str, str] = {
    "Conventions": "CF-1.8, ACDD-1.3, IOOS-1.2",
    "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
    "naming_authority": "ca.oceannetworks",
    "institution": ONC_NAME,
    "creator_name": ONC_NAME,
    "creator_institution": ONC_NAME,
    "creator_email": "info@oceannetworks.ca",
    "creator_url": ONC_URL,
    "creator_type": "institution",
    "creator_country": "Canada",
    "creator_sector": "academic",
    "creator_address": "2474 Arbutus Road",
    "creator_city": "Victoria",
    "creator_state": "BC",
    "creator_postalcode": "V8N 1V8",
    "creator_phone": "+1 250 472 5400",
    "contributor_name": ONC_NAME,
    "contributor_email": "info@oceannetworks.ca",
    "contributor_url": ONC_URL,
    "contributor_role": "originator",
    "contributor_role_vocabulary": "https://vocab.nerc.ac.uk/collection/G04/current/",
    "license": ONC_LICENSE,
    "project": ONC_NAME,
    "infoUrl": ONC_URL,
    "references": "https://data.oceannetworks.ca",
    "platform": "fixed",
    "platform_vocabulary": "https://mmisw.org/ont/ioos/platform",
    "acknowledgement": f"Data from {ONC_NAME}, an initiative of the University of Victoria.",
    "source": "in situ observations from the Ocean Networks Canada cabled observatories",
    "processing_level": "ONC automated QAQC flags (qaqcFlag) as delivered by the Oceans API",
}

# The publisher is ONC unless the operator names any publisher_* attribute: then none of
# ONC's publisher details are mixed into theirs.
DEFAULT_PUBLISHER: Mapping[str, str] = {
    key.replace("creator_", "publisher_"): value
    for key, value in DEFAULT_ATTRIBUTES.items()
    if key.startswith("creator_")
}


@dataclass(frozen=True, slots=True)
class Position:
    """One deployment of the dataset's platform: where it stood and from when to when."""

    device_code: str
    begin: datetime | None
    end: datetime | None
    latitude: float
    longitude: float
    depth: float
    citation: str | None = None
    doi: str | None = None
    landing_page_url: str | None = None
    location_code: str | None = None

    def covers(self, instant: datetime) -> bool:
        """True when the device was deployed at `instant`."""
        return (self.begin is None or self.begin <= instant) and (
            self.end is None or instant < self.end
        )


@dataclass(frozen=True, slots=True)
class Station:
    """A `cf_role=timeseries_id` station: an ONC location, at the position ONC lists for it.

    ERDDAP requires a TimeSeries station's variables (latitude, longitude, depth) to be
    constant per station (erddap.github.io docs/server-admin/datasets.md, cdm_data_type
    TimeSeries: "...MUST NOT change..., some requests will return incorrect data"). A
    redeployment moves the instrument, not the location: the station is the location code and
    its position is the location's nominal one, so it never changes; where each deployment
    really stood is kept in the files' `onc_deployment_*` attributes.
    """

    code: str
    name: str
    latitude: float
    longitude: float
    depth: float


@dataclass(frozen=True, slots=True)
class DatasetMeta:
    """Everything a writer needs to make a dataset's files self-describing."""

    dataset_id: str
    kind: str  # "scalardata" | "rawdata"
    endpoint: str  # e.g. "/api/scalardata/location", for `history`
    source_params: Mapping[str, str]  # addressing parameters, e.g. locationCode, deviceCategoryCode
    base_url: str
    platform_code: str
    platform_name: str
    instrument: str
    positions: tuple[Position, ...]
    attributes: Mapping[str, str]  # global attributes, defaults already merged
    properties: Mapping[str, Property] = field(default_factory=dict)
    qaqc_flag_info: Mapping[str, str] = field(default_factory=lambda: dict(ONC_QAQC_FLAG_INFO))
    stations: Mapping[str, Station] = field(default_factory=dict)

    def stations_of(self, times_ms: Any) -> tuple[list[Station], Any]:
        """The stations of records at `times_ms` (sorted epoch ms, a numpy array), in order
        of first record, and each record's index into them."""
        import numpy as np

        found: dict[str, int] = {}
        stations: list[Station] = []
        rows = np.zeros(len(times_ms), dtype=np.intp)
        # Stations change only at deployments: look at each deployment's first record, not
        # at every record.
        starts = sorted(
            {0}
            | {
                int(np.searchsorted(times_ms, epoch_ms(p.begin)))
                for p in self.positions
                if p.begin is not None
            }
        )
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(times_ms)
            if start >= end:
                continue
            station = self.station_at(from_epoch_ms(int(times_ms[start])))
            if station.code not in found:
                found[station.code] = len(stations)
                stations.append(station)
            rows[start:end] = found[station.code]
        return stations, rows

    def station_at(self, instant: datetime) -> Station:
        """The station of the deployment at `instant` (see `position_at`)."""
        position = self.position_at(instant)
        code = position.location_code or self.platform_code
        station = self.stations.get(code)
        if station is not None:
            return station
        # A location ONC gives no position for: its earliest deployment's position, which
        # later deployments cannot change.
        first = next(p for p in self.positions if (p.location_code or self.platform_code) == code)
        return Station(code, code, first.latitude, first.longitude, first.depth)

    def position_at(self, instant: datetime) -> Position:
        """The deployment covering `instant`, else the latest one begun before it, else the
        first; ValueError when the dataset has no position at all."""
        if not self.positions:
            raise ValueError(f"dataset {self.dataset_id} has no deployment with a position")
        for position in reversed(self.positions):
            if position.covers(instant):
                return position
        begun = [p for p in self.positions if p.begin is None or p.begin <= instant]
        return begun[-1] if begun else self.positions[0]

    def history_line(self, when: datetime, date_from: datetime, date_to: datetime) -> str:
        """One `history` entry: when, the harvester and version, and the request (no token)."""
        pairs = [*self.source_params.items(), ("dateFrom", _iso(date_from))]
        params = "&".join(f"{k}={v}" for k, v in [*pairs, ("dateTo", _iso(date_to))])
        return (
            f"{_iso(when)} onc-pipeline {pipeline.__version__}: harvested "
            f"{self.base_url}{self.endpoint}?{params}"
        )


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


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
        properties={p.property_code.lower(): p for p in properties},
        stations=stations,
    )


def _first_depth(positions: Sequence[Position], location: Location) -> float:
    """The depth of the earliest deployment at `location` (0 when there is none)."""
    here = [p.depth for p in positions if p.location_code == location.location_code]
    return here[0] if here else 0.0


async def discover_dataset_meta(
    client: OncClient, stream: TimeSeriesStream, output: OutputSettings
) -> DatasetMeta:
    """Ask the discovery endpoints about a stream's platform and build its DatasetMeta."""
    if stream.device_code:
        deployments = await client.deployments(device_code=stream.device_code)
        location_codes = sorted({d.location_code for d in deployments})
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
    # The platform's location first: build_dataset_meta describes the dataset by it.
    locations = [loc for answer in reversed(found) for loc in answer]
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


def require_meta(metas: Mapping[str, DatasetMeta], dataset_id: str, fmt: str) -> DatasetMeta:
    """The dataset's metadata, or an OutputError saying the format needs discovery first."""
    meta = metas.get(dataset_id)
    if meta is None:
        raise OutputError(
            f"no discovery metadata for dataset {dataset_id}; the {fmt} format needs "
            "the platform's position (build it with discover_dataset_meta)"
        )
    return meta
