"""dataAvailability/dataproducts: ONC's account of the archive files that exist, per product.

Evidence (docs/dev/emulator.md, "dataAvailability"): the verbatim answer in
onc-samples/dataAvailability_NCBC_BPR_docstring.json, and api-python-client 2.6.0
tests/discover_data_availability/test_data_availability.py (the key types; `next` is None;
an unknown locationCode is API error 127). The answer is computed from the same archive the
archivefile endpoints list, so the two always agree, injected gaps included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipeline.emulator.archive import ArchiveFile
from pipeline.emulator.catalogue import ArchiveSpec, Deployment, iso_ms
from pipeline.emulator.params import ApiError, Query, parse_instant, query_url
from pipeline.emulator.responses import send_json

if TYPE_CHECKING:
    from pipeline.emulator.app import Call, OncContext

# The sample's query (locationCode, deviceCategoryCode, dateFrom, dateTo) and the official
# client's documented example (deviceCode, extension); dataProductCode is a field of every
# row and a filter of the sibling /dataProducts service (a guess that it filters here too).
# Anything else is refused with 129, so a client cannot come to rely on an undocumented one.
PARAMS = (
    "locationCode",
    "deviceCategoryCode",
    "deviceCode",
    "dataProductCode",
    "extension",
    "dateFrom",
    "dateTo",
)


@dataclass(frozen=True, slots=True)
class Slot:
    """One file period of a device: the archived file, if any, and the share of it with data."""

    begin: int
    end: int
    file: ArchiveFile | None
    coverage: float


def slots(
    ctx: OncContext, dep: Deployment, spec: ArchiveSpec, start: int, end: int
) -> Iterator[Slot]:
    """File periods of `spec` overlapping [start, end] while `dep` lasts, up to now.

    A period's coverage is the share of it inside [start, end) and outside injected
    outages, or 0.0 when no file is archived for it (not written yet, archived late, or wholly
    inside an outage). The period beginning exactly at `end` is included with coverage 0.0:
    the sample's answer to dateTo=2019-11-30 reaches 2019-12-01 with minFileCoverage 0.0 on
    2019-11-30 and counts 7 files for 8 periods (a reading of the sample: a guess).
    """
    period, offset = spec.period_s * 1000, spec.offset_s * 1000
    lo = max(start, dep.begin_ms)
    hi = min(end + 1, dep.end_ms if dep.end_ms is not None else end + 1, ctx.clock.now_ms())
    first = (lo - offset) // period * period + offset  # the period holding `lo`
    files = {f.begin: f for f in ctx.archive.files_of(dep, spec, first, hi)}
    now = ctx.clock.now_ms()
    begin = first
    while begin < hi:
        found = files.get(begin)
        inside_lo, inside_hi = max(begin, start), min(begin + period, end)
        if found is not None and found.archived <= now:
            inside = max(0, inside_hi - inside_lo)
            outage = ctx.gaps.outage_ms(dep.device, inside_lo, inside_hi) if inside else 0
            yield Slot(begin, begin + period, found, (inside - outage) / period)
        else:
            yield Slot(begin, begin + period, None, 0.0)
        begin += period


def summarise(device: str, spec: ArchiveSpec, found: list[Slot]) -> dict[str, Any] | None:
    """One row of `availableDataProducts`, or None when no file has data in the periods.

    Field set, types and units follow the sample: sizes in bytes (stored and uncompressed) of
    the files counted, coverages as fractions in [0, 1] averaged over the periods, dates in
    the API's format; the min/max dates name the first period reaching them (a guess).
    """
    files = [s.file for s in found if s.file is not None and s.coverage > 0]
    if not files:
        return None
    coverages = [s.coverage for s in found]
    best, worst = max(coverages), min(coverages)
    return {
        "averageFileCoverage": sum(coverages) / len(coverages),
        "dataProductCode": spec.data_product_code,
        "dateFrom": iso_ms(found[0].begin),
        "dateTo": iso_ms(found[-1].end),
        "deviceCode": device,
        "extension": spec.extension,
        "fileCount": len(files),
        "maxFileCoverage": float(best),
        "maxFileCoverageDate": iso_ms(next(s.begin for s in found if s.coverage == best)),
        "minFileCoverage": float(worst),
        "minFileCoverageDate": iso_ms(next(s.begin for s in found if s.coverage == worst)),
        "totalFileSize": sum(f.stored_size for f in files),
        "totalUncompressedFileSize": sum(f.size for f in files),
    }


def rows(
    ctx: OncContext,
    deps: list[Deployment],
    start: int,
    end: int,
    *,
    product: str | None = None,
    extension: str | None = None,
) -> list[dict[str, Any]]:
    """Rows per (device, product, extension) over the deployments, in catalogue order."""
    out: list[dict[str, Any]] = []
    for device_code in dict.fromkeys(d.device for d in deps):
        device = ctx.catalogue.devices[device_code]
        for spec in device.archive:
            if (product and spec.data_product_code != product) or (
                extension and spec.extension != extension
            ):
                continue
            found = [
                s
                for dep in deps
                if dep.device == device_code
                for s in slots(ctx, dep, spec, start, end)
            ]
            row = summarise(device_code, spec, found)
            if row is not None:
                out.append(row)
    return out


async def handle(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """GET dataAvailability/dataproducts."""
    query.check_known(PARAMS)
    location, device = query.get("locationCode"), query.get("deviceCode")
    category = query.get("deviceCategoryCode")
    if location is not None and location not in ctx.catalogue.locations:
        raise ApiError.code(127, "locationCode")
    if device is not None and device not in ctx.catalogue.devices:
        raise ApiError.code(127, "deviceCode")
    if category is not None and not any(
        d.category == category for d in ctx.catalogue.devices.values()
    ):
        raise ApiError.code(127, "deviceCategoryCode")
    deps = ctx.catalogue.deployments_of(location=location, category=category, device=device)
    start = parse_instant(query.get("dateFrom") or "1970-01-01", "dateFrom")
    raw_to = query.get("dateTo")
    end = parse_instant(raw_to, "dateTo") if raw_to else ctx.clock.now_ms()
    if start >= end:
        raise ApiError.code(23, "dateFrom, dateTo")
    found = rows(
        ctx,
        deps,
        start,
        end,
        product=query.get("dataProductCode"),
        extension=query.get("extension"),
    )
    if not found:
        raise ApiError.not_found()
    body = {
        "availableDataProducts": found,
        "messages": [],
        # The sample and the official client's test both have `next` null: no paging seen.
        "next": None,
        "queryUrl": query_url(call.base_url, call.path, query.pairs),
    }
    return await send_json(request, body)
