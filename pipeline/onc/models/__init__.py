"""Typed models of Oceans API requests and replies; the upstream camelCase lives only here.

Data pages keep whole columns as plain lists (`values: list[float]`) instead of one object per
reading: a page of 8 sensors x 100,000 rows stays a handful of lists.
"""

from pipeline.onc.models.availability import (
    AvailabilityPage,
    AvailabilityQuery,
    ProductAvailability,
)
from pipeline.onc.models.common import Citation, NextPage
from pipeline.onc.models.data import (
    ArchiveFileInfo,
    ArchiveListPage,
    RawPage,
    ScalarPage,
    ScalarSeries,
)
from pipeline.onc.models.discovery import Deployment, Device, DeviceCategory, Location, Property
from pipeline.onc.models.products import (
    ProductRequest,
    ProductRun,
    RunState,
    parse_processing_time,
)
from pipeline.onc.models.queries import (
    ArchiveQuery,
    DataSource,
    ProductOrder,
    RawQuery,
    ScalarQuery,
    discovery_params,
)
from pipeline.onc.parsing import TimeAxis

__all__ = [
    "ArchiveFileInfo",
    "ArchiveListPage",
    "ArchiveQuery",
    "AvailabilityPage",
    "AvailabilityQuery",
    "Citation",
    "DataSource",
    "Deployment",
    "Device",
    "DeviceCategory",
    "Location",
    "NextPage",
    "ProductAvailability",
    "ProductOrder",
    "ProductRequest",
    "ProductRun",
    "Property",
    "RawPage",
    "RawQuery",
    "RunState",
    "ScalarPage",
    "ScalarQuery",
    "ScalarSeries",
    "TimeAxis",
    "discovery_params",
    "parse_processing_time",
]
