"""Discovery services (locations, deployments, devices, ...) with ONC's real shapes and quirks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from pipeline.emulator.catalogue import (
    CATEGORIES,
    DATA_PRODUCTS,
    PROPERTIES,
    Deployment,
    Device,
    Location,
    ms,
)
from pipeline.emulator.params import ApiError, Query, parse_instant
from pipeline.emulator.responses import send_json

if TYPE_CHECKING:
    from pipeline.emulator.app import Call, OncContext

_Named = TypeVar("_Named", Location, Device)

_FILTERS = (
    "locationCode",
    "deviceCategoryCode",
    "deviceCode",
    "propertyCode",
    "dataProductCode",
    "dateFrom",
    "dateTo",
)
ALLOWED: dict[str, tuple[str, ...]] = {
    "locations": (*_FILTERS, "locationName", "includeChildren", "aggregateDeployments"),
    "deployments": _FILTERS,
    "devices": (*_FILTERS, "deviceName", "deviceId", "includeChildren"),
    "deviceCategories": (*_FILTERS, "deviceCategoryName", "description"),
    "properties": (*_FILTERS, "propertyName", "description"),
    "dataProducts": (*_FILTERS, "extension", "dataProductName"),
}
_DEVICE_VOCAB = "SeaVoX Device Catalogue"
_DEVICE_URI = "http://vocab.nerc.ac.uk/collection/L22/current/"


async def handle(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """Answer one discovery call; 404 with ONC's message when nothing matches."""
    query.check_known(ALLOWED[call.name])
    deployments = _matching_deployments(ctx, query)
    body: Any = {
        "locations": _locations,
        "deployments": _deployments,
        "devices": _devices,
        "deviceCategories": _categories,
        "properties": _properties,
        "dataProducts": _products,
    }[call.name](ctx, query, deployments)
    if not body:
        raise ApiError.not_found()
    return await send_json(request, body)


def _matching_deployments(ctx: OncContext, query: Query) -> list[Deployment]:
    start = parse_instant(query.get("dateFrom") or "1970-01-01", "dateFrom")
    end = parse_instant(query.get("dateTo") or "2999-01-01", "dateTo")
    props = {p for p in (query.get("propertyCode") or "").split(",") if p}
    product = query.get("dataProductCode")
    out = []
    for dep in ctx.catalogue.deployments_of(
        location=query.get("locationCode"),
        category=query.get("deviceCategoryCode"),
        device=query.get("deviceCode"),
    ):
        device = ctx.catalogue.devices[dep.device]
        if props and not props & {s.property_code for s in device.sensors}:
            continue
        if product and not _offers(device, product):
            continue
        if dep.begin_ms < end and (dep.end_ms is None or dep.end_ms > start):
            out.append(dep)
    return out


def _offers(device: Device, product: str) -> bool:
    if product in ("TSSD", "TSSP"):
        return bool(device.sensors)
    return any(spec.data_product_code == product for spec in device.archive)


def _named(
    table: Mapping[str, _Named], codes: Iterable[str], wanted: str | None
) -> Iterator[tuple[str, _Named]]:
    """Each distinct code (in order) with its entry, if its name contains `wanted` (any case)."""
    for code in dict.fromkeys(codes):
        entry = table[code]
        if not wanted or wanted.lower() in entry.name.lower():
            yield code, entry


def _locations(ctx: OncContext, query: Query, deps: list[Deployment]) -> list[dict[str, Any]]:
    out = []
    named = _named(ctx.catalogue.locations, (d.location for d in deps), query.get("locationName"))
    for code, loc in named:
        here = [d for d in ctx.catalogue.deployments if d.location == code]
        has_props = any(ctx.catalogue.devices[d.device].sensors for d in here)
        out.append(
            {
                "bbox": {
                    "maxDepth": max(d.depth for d in here),
                    "maxLat": max(d.lat for d in here),
                    "maxLon": max(d.lon for d in here),
                    "minDepth": min(d.depth for d in here),
                    "minLat": min(d.lat for d in here),
                    "minLon": min(d.lon for d in here),
                },
                "dataSearchURL": f"https://data.oceannetworks.ca/DataSearch?location={code}",
                "deployments": len(here),
                "depth": loc.depth,
                "description": loc.description,
                # The quirk: /locations answers booleans as the strings "true" / "false".
                "hasDeviceData": "true",
                "hasPropertyData": "true" if has_props else "false",
                "lat": loc.lat,
                "locationCode": code,
                "locationName": loc.name,
                "lon": loc.lon,
            }
        )
    return out


def _deployments(ctx: OncContext, query: Query, deps: list[Deployment]) -> list[dict[str, Any]]:
    out = []
    for dep in deps:
        row: dict[str, Any] = {"begin": dep.begin}
        if dep.doi:
            # Only deployments with a DOI carry a citation (the NC89 tutorial rows have none).
            device = ctx.catalogue.devices[dep.device]
            row["citation"] = {
                "citation": f"Ocean Networks Canada Society. {dep.begin[:4]}. "
                f"{ctx.catalogue.locations[dep.location].name} "
                f"{CATEGORIES[device.category].name} Deployed {dep.begin[:10]}. "
                f"Ocean Networks Canada Society. https://doi.org/{dep.doi}.",
                "doi": dep.doi,
                "landingPageUrl": f"https://doi.org/{dep.doi}",
                "queryPid": None,
            }
        row.update(
            {
                "depth": dep.depth,
                "deviceCategoryCode": ctx.catalogue.devices[dep.device].category,
                "deviceCode": dep.device,
                "end": dep.end,
                "hasDeviceData": True,
                "heading": None,
                "lat": dep.lat,
                "locationCode": dep.location,
                "lon": dep.lon,
                "pitch": None,
                "roll": None,
            }
        )
        out.append(row)
    return out


def _devices(ctx: OncContext, query: Query, deps: list[Deployment]) -> list[dict[str, Any]]:
    out = []
    named = _named(ctx.catalogue.devices, (d.device for d in deps), query.get("deviceName"))
    for code, device in named:
        first = min(d.begin for d in ctx.catalogue.deployments if d.device == code)
        out.append(
            {
                "cvTerm": {
                    "device": [
                        {
                            "uri": f"{_DEVICE_URI}TOOL{device.device_id % 2000}/",
                            "vocabulary": _DEVICE_VOCAB,
                        }
                    ]
                },
                "dataRating": [
                    {
                        "dateFrom": first,
                        "dateTo": None,
                        "samplePeriod": device.sample_period_ms / 1000,
                        "sampleSize": 1,
                    }
                ],
                "deviceCategoryCode": device.category,
                "deviceCode": code,
                "deviceId": device.device_id,
                "deviceLink": f"https://data.oceannetworks.ca/DeviceListing?DeviceId={device.device_id}",
                "deviceName": device.name,
                "hasDeviceData": True,
            }
        )
    return out


def _categories(ctx: OncContext, query: Query, deps: list[Deployment]) -> list[dict[str, Any]]:
    codes = dict.fromkeys(ctx.catalogue.devices[d.device].category for d in deps)
    return [
        {
            "cvTerm": {
                "deviceCategory": [
                    {"uri": CATEGORIES[c].nerc_uri, "vocabulary": "SeaDataNet device categories"}
                ]
            },
            "description": CATEGORIES[c].description,
            "deviceCategoryCode": c,
            "deviceCategoryName": CATEGORIES[c].name,
            "hasDeviceData": True,
            "longDescription": f" {CATEGORIES[c].name} ({c}).",
        }
        for c in codes
    ]


def _properties(ctx: OncContext, query: Query, deps: list[Deployment]) -> list[dict[str, Any]]:
    wanted = {p for p in (query.get("propertyCode") or "").split(",") if p}
    codes: dict[str, None] = {}
    for dep in deps:
        for sensor in ctx.catalogue.devices[dep.device].sensors:
            if sensor.property_code and (not wanted or sensor.property_code in wanted):
                codes[sensor.property_code] = None
    return [
        {
            "cvTerm": {
                "property": [],
                "uom": [
                    {
                        "uri": f"http://vocab.nerc.ac.uk/collection/P06/current/{PROPERTIES[p].uom}/",
                        "vocabulary": "BODC data storage units",
                    }
                ],
            },
            "description": PROPERTIES[p].description,
            "hasDeviceData": True,
            "hasPropertyData": True,
            "propertyCode": p,
            "propertyName": PROPERTIES[p].name,
            "uom": PROPERTIES[p].uom,
        }
        for p in codes
    ]


def _products(ctx: OncContext, query: Query, deps: list[Deployment]) -> list[dict[str, Any]]:
    devices = [ctx.catalogue.devices[d.device] for d in deps]
    ext = query.get("extension")
    wanted = query.get("dataProductCode")
    out = []
    for product in DATA_PRODUCTS.values():
        if wanted and product.code != wanted:
            continue
        if not any(_offers(d, product.code) for d in devices):
            continue
        for extension in product.extensions:
            if ext and extension != ext:
                continue
            out.append(
                {
                    "dataProductCode": product.code,
                    "dataProductName": product.name,
                    "extension": extension,
                    "hasDeviceData": True,
                    "hasPropertyData": product.code in ("TSSD", "TSSP"),
                    "helpDocument": f"https://wiki.oceannetworks.ca/display/DP/{product.code}",
                }
            )
    return out


__all__ = ["ALLOWED", "handle", "ms"]
