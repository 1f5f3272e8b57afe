"""Dataset metadata for self-describing outputs: where the platform is, what it is, who says so.

`DatasetMeta` is what the NetCDF and CSV writers are handed to describe a dataset. The engine
builds it once per dataset from the discovery endpoints (pipeline.engine.describe); the
outputs only read it, and never talk to the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pipeline
from pipeline.exceptions import OutputError
from pipeline.outputs.cf_names import STANDARD_NAME_VOCABULARY
from pipeline.records import SensorInfo
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
class PropertyInfo:
    """A measured property as the files describe it (discovery's `/api/properties`)."""

    name: str | None
    uom: str | None


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
    properties: Mapping[str, PropertyInfo] = field(default_factory=dict)
    qaqc_flag_info: Mapping[str, str] = field(default_factory=lambda: dict(ONC_QAQC_FLAG_INFO))
    stations: Mapping[str, Station] = field(default_factory=dict)

    def stations_of(self, times_ms: Any) -> tuple[list[Station], Any]:
        """The stations of records at `times_ms` (sorted epoch ms, a numpy array), in order
        of first record, and each record's index into them."""
        import numpy as np

        found: dict[str, int] = {}
        stations: list[Station] = []
        rows = np.zeros(len(times_ms), dtype=np.intp)
        # Stations change only where a deployment begins or ends (one inside another's span
        # hands back to the outer one at its end): look at the first record after each such
        # instant, not at every record.
        bounds = [b for p in self.positions for b in (p.begin, p.end) if b is not None]
        starts = sorted({0} | {int(np.searchsorted(times_ms, epoch_ms(b))) for b in bounds})
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


def require_meta(metas: Mapping[str, DatasetMeta], dataset_id: str, fmt: str) -> DatasetMeta:
    """The dataset's metadata, or an OutputError saying the format needs discovery first."""
    meta = metas.get(dataset_id)
    if meta is None:
        raise OutputError(
            f"no discovery metadata for dataset {dataset_id}; the {fmt} format needs "
            "the platform's position (the engine describes it with discover_dataset_meta)"
        )
    return meta


def onc_sensor_attributes(sensor: SensorInfo) -> dict[str, str]:
    """What ONC says of a sensor, kept on its variable or column (`onc_sensor_name`,
    `onc_unit`, `onc_property_code`, each when known): read back to merge the next window."""
    named = (
        ("onc_sensor_name", sensor.name),
        ("onc_unit", sensor.unit),
        ("onc_property_code", sensor.property_code),
    )
    return {key: value for key, value in named if value is not None}
