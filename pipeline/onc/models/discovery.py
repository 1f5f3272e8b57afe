"""Discovery models: locations, deployments, devices, properties, device categories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.onc.models.common import (
    Citation,
)
from pipeline.onc.parsing import (
    as_object,
    opt_bool,
    opt_float,
    opt_int,
    opt_str,
    opt_time,
    req_str,
)

# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True, slots=True)
class Location:
    """A location from `/api/locations` (string booleans normalised)."""

    location_code: str
    location_name: str | None
    lat: float | None
    lon: float | None
    depth: float | None
    description: str | None
    has_device_data: bool | None
    has_property_data: bool | None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> Location:
        """Parse one location."""
        obj = as_object(raw, where)
        return cls(
            location_code=req_str(obj, "locationCode", where),
            location_name=opt_str(obj, "locationName", where),
            lat=opt_float(obj, "lat", where),
            lon=opt_float(obj, "lon", where),
            depth=opt_float(obj, "depth", where),
            description=_strip(opt_str(obj, "description", where)),
            has_device_data=opt_bool(obj, "hasDeviceData", where),
            has_property_data=opt_bool(obj, "hasPropertyData", where),
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    """A device deployment: where (lat/lon/depth) and when (`end` None = still deployed)."""

    device_code: str
    location_code: str
    device_category_code: str | None
    begin: datetime | None
    end: datetime | None
    lat: float | None
    lon: float | None
    depth: float | None
    heading: float | None
    pitch: float | None
    roll: float | None
    has_device_data: bool | None
    citation: Citation | None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> Deployment:
        """Parse one deployment."""
        obj = as_object(raw, where)
        citation = obj.get("citation")
        return cls(
            device_code=req_str(obj, "deviceCode", where),
            location_code=req_str(obj, "locationCode", where),
            device_category_code=opt_str(obj, "deviceCategoryCode", where),
            begin=opt_time(obj, "begin", where),
            end=opt_time(obj, "end", where),
            lat=opt_float(obj, "lat", where),
            lon=opt_float(obj, "lon", where),
            depth=opt_float(obj, "depth", where),
            heading=opt_float(obj, "heading", where),
            pitch=opt_float(obj, "pitch", where),
            roll=opt_float(obj, "roll", where),
            has_device_data=opt_bool(obj, "hasDeviceData", where),
            citation=Citation.from_api(citation, f"{where}.citation") if citation else None,
        )


@dataclass(frozen=True, slots=True)
class Device:
    """A device from `/api/devices`."""

    device_code: str
    device_id: int | None
    device_name: str | None
    device_category_code: str | None
    device_link: str | None
    has_device_data: bool | None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> Device:
        """Parse one device."""
        obj = as_object(raw, where)
        return cls(
            device_code=req_str(obj, "deviceCode", where),
            device_id=opt_int(obj, "deviceId", where),
            device_name=opt_str(obj, "deviceName", where),
            device_category_code=opt_str(obj, "deviceCategoryCode", where),
            device_link=opt_str(obj, "deviceLink", where),
            has_device_data=opt_bool(obj, "hasDeviceData", where),
        )


@dataclass(frozen=True, slots=True)
class Property:
    """A measured property from `/api/properties`, with its unit (`uom`)."""

    property_code: str
    property_name: str | None
    description: str | None
    uom: str | None
    has_device_data: bool | None
    has_property_data: bool | None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> Property:
        """Parse one property."""
        obj = as_object(raw, where)
        return cls(
            property_code=req_str(obj, "propertyCode", where),
            property_name=opt_str(obj, "propertyName", where),
            description=_strip(opt_str(obj, "description", where)),
            uom=opt_str(obj, "uom", where),
            has_device_data=opt_bool(obj, "hasDeviceData", where),
            has_property_data=opt_bool(obj, "hasPropertyData", where),
        )


@dataclass(frozen=True, slots=True)
class DeviceCategory:
    """A device category from `/api/deviceCategories`."""

    device_category_code: str
    device_category_name: str | None
    description: str | None
    has_device_data: bool | None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> DeviceCategory:
        """Parse one device category."""
        obj = as_object(raw, where)
        return cls(
            device_category_code=req_str(obj, "deviceCategoryCode", where),
            device_category_name=opt_str(obj, "deviceCategoryName", where),
            description=_strip(opt_str(obj, "description", where)),
            has_device_data=opt_bool(obj, "hasDeviceData", where),
        )


def _strip(text: str | None) -> str | None:
    return text.strip() if text is not None else None
