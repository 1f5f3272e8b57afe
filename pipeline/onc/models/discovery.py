"""Discovery models: locations, deployments, devices, properties, device categories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

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

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_R = TypeVar("_R", bound="DataclassInstance")


class _Discovered:
    """A discovery model read field by field from its member (see `_record`)."""

    __slots__ = ()

    @classmethod
    def from_api(cls, raw: Any, where: str) -> Self:
        """Parse one member."""
        return _record(cls, raw, where)  # type: ignore[type-var]  # every subclass is a dataclass


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True, slots=True)
class Location(_Discovered):
    """A location from `/api/locations` (string booleans normalised)."""

    location_code: str
    location_name: str | None
    lat: float | None
    lon: float | None
    depth: float | None
    description: str | None
    has_device_data: bool | None
    has_property_data: bool | None


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
        citation = as_object(raw, where).get("citation")
        return _record(
            cls,
            raw,
            where,
            citation=Citation.from_api(citation, f"{where}.citation") if citation else None,
        )


@dataclass(frozen=True, slots=True)
class Device(_Discovered):
    """A device from `/api/devices`."""

    device_code: str
    device_id: int | None
    device_name: str | None
    device_category_code: str | None
    device_link: str | None
    has_device_data: bool | None


@dataclass(frozen=True, slots=True)
class Property(_Discovered):
    """A measured property from `/api/properties`, with its unit (`uom`)."""

    property_code: str
    property_name: str | None
    description: str | None
    uom: str | None
    has_device_data: bool | None
    has_property_data: bool | None


@dataclass(frozen=True, slots=True)
class DeviceCategory(_Discovered):
    """A device category from `/api/deviceCategories`."""

    device_category_code: str
    device_category_name: str | None
    description: str | None
    has_device_data: bool | None


# How a field's annotation is read from its member. Discovery members are named like the
# fields, in camelCase (`has_device_data` <- `hasDeviceData`), so each model lists its fields
# once and this table reads them all.
_READERS: dict[str, Callable[[Mapping[str, Any], str, str], Any]] = {
    "str": req_str,
    "str | None": opt_str,
    "int | None": opt_int,
    "float | None": opt_float,
    "bool | None": opt_bool,
    "datetime | None": opt_time,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _record(cls: type[_R], raw: Any, where: str, **given: Any) -> _R:
    """A discovery model from its member: each field (but `given`) read by its annotation
    from the camelCase member of its name. Descriptions are stripped: ONC pads some."""
    obj = as_object(raw, where)
    values = dict(given)
    for spec in fields(cls):
        if spec.name not in values:
            values[spec.name] = _READERS[str(spec.type)](obj, _camel(spec.name), where)
    if values.get("description") is not None:
        values["description"] = values["description"].strip()
    return cls(**values)
