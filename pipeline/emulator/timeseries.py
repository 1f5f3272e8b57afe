"""scalardata and rawdata: pages of synthetic readings with ONC's exact paging and shapes."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from pipeline.emulator.catalogue import QAQC_FLAG_INFO, Device, Segment, Sensor, iso_ms
from pipeline.emulator.params import (
    ApiError,
    Query,
    next_object,
    query_url,
    resolve_window,
    row_limit,
)
from pipeline.emulator.responses import dumps, send_json
from pipeline.emulator.synthetic import READING, Rows, iso_times, raw_lines

if TYPE_CHECKING:
    from pipeline.emulator.app import Call, OncContext

_COMMON = ("dateFrom", "dateTo", "rowLimit", "outputFormat", "getLatest")
SCALAR_PARAMS = (
    *_COMMON,
    "propertyCode",
    "sensorCategoryCodes",
    "metadata",
    "metaData",
    "returnOptions",
    "qualityControl",
    "resampleType",
    "resamplePeriod",
    "fillGaps",
    "sensorsToInclude",
    "byDeployment",
)
RAW_PARAMS = (*_COMMON, "sizeLimit", "convertHexToDecimal", "skipErrors")
_ASYNC_RENDER_ROWS = 5_000  # render bigger pages in a thread so the loop keeps serving


@dataclass(frozen=True, slots=True)
class Selection:
    """What a data request addresses: its deployment segments within the window."""

    segments: list[Segment]
    start: int
    end: int
    by_location: bool
    location: str | None


def select(ctx: OncContext, query: Query, call: Call, allowed: tuple[str, ...]) -> Selection:
    """Validate addressing and dates; 400/127 when a location had nothing deployed in range."""
    by_location = call.name.endswith(".location")
    if by_location:
        query.check_known((*allowed, "locationCode", "deviceCategoryCode"))
        location = query.require("locationCode")
        category = query.require("deviceCategoryCode")
        if location not in ctx.catalogue.locations:
            raise ApiError.code(127, "locationCode")
        deployments = ctx.catalogue.deployments_of(location=location, category=category)
        if not deployments:
            raise ApiError.code(
                127,
                "locationCode, deviceCategoryCode",
                f"No device with category {category} was ever deployed at location {location}",
            )
    else:
        # `propertyCode` is documented for /scalardata/location only (api-python-client
        # src/onc/onc.py getScalardataByDevice lists deviceCode, sensorCategoryCodes, dateFrom,
        # dateTo, rowLimit, outputFormat, returnOptions, getLatest, qualityControl,
        # resampleType, resamplePeriod, fillGaps, sensorsToInclude): 129 here.
        query.check_known((*(p for p in allowed if p != "propertyCode"), "deviceCode"))
        device = query.require("deviceCode")
        if device not in ctx.catalogue.devices:
            raise ApiError.code(127, "deviceCode")
        location = None
        deployments = ctx.catalogue.deployments_of(device=device)
    start, end = resolve_window(query, ctx.clock.now_ms())
    if by_location and not ctx.catalogue.segments(deployments, start, end):
        raise no_deployment_error(call, query, start, end)
    segments = ctx.catalogue.segments(deployments, start, min(end, ctx.horizon_ms()))
    return Selection(segments, start, end, by_location, location)


def no_deployment_error(call: Call, query: Query, start: int, end: int) -> ApiError:
    """The 400/127 a location answers when nothing was deployed during the window."""
    loc, cat = query.get("locationCode"), query.get("deviceCategoryCode")

    def compact(ms: int) -> str:
        return iso_ms(ms).replace("-", "").replace(":", "")

    message = (
        f"A device with category {cat} was deployed at location {loc} but not during the "
        f"provided time range ({compact(start)} to {compact(end - 1)}). The deployment service "
        f"can be used to determine a valid time range: {call.base_url}/api/deployments?"
        f"locationCode={loc}&deviceCategoryCode={cat}&token={query.get('token')}"
    )
    return ApiError.code(127, "locationCode, deviceCategoryCode, dateFrom, dateTo", message)


def _cache_key(call: Call, request: web.Request, sel: Selection, horizon: int) -> tuple[Any, ...]:
    # Closed windows never change; open ones change with the data horizon.
    return (
        call.name,
        call.style,
        call.base_url,
        request.query_string,
        sel.start,
        min(sel.end, horizon),
    )


@dataclass(slots=True)
class Rendering:
    """A page being rendered: those asking for it meanwhile wait for `page`."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    page: tuple[int, bytes] | None = None  # None until rendered, and if rendering failed


async def _cached(
    ctx: OncContext, request: web.Request, call: Call, sel: Selection, render: Any
) -> web.StreamResponse:
    key = _cache_key(call, request, sel, ctx.horizon_ms())
    # A page being rendered for another request is waited for, not rendered again: clients
    # that ask for the same range at once (the benchmarks' streams share a device) would
    # otherwise each cost a render, which the page cache exists to spare. The page is taken
    # from the renderer itself, so this holds with the cache off too.
    hit = ctx.cache.get(key)
    while hit is None and (busy := ctx.rendering.get(key)) is not None:
        await busy.done.wait()
        hit = busy.page  # None if its render failed: this request renders it
    if hit is None:
        # Held for this render: `set_gaps` replaces both, and a page rendered under the old
        # gap plan must not land in the new cache.
        cache, rendering = ctx.cache, ctx.rendering
        mine = rendering[key] = Rendering()
        try:
            status, body, _ = render(cheap_only=True)
            if body is None:
                status, body, _ = await asyncio.to_thread(render, cheap_only=False)
            assert body is not None
            hit = mine.page = (status, body)
            cache.put(key, (status, body))
        finally:
            if rendering.get(key) is mine:
                del rendering[key]
            mine.done.set()
    return await send_json(request, hit[1], status=hit[0])


def _sensors(device: Device, query: Query) -> list[int]:
    props = {p for p in (query.get("propertyCode") or "").split(",") if p}
    cats = {c for c in (query.get("sensorCategoryCodes") or "").split(",") if c}
    return [
        i
        for i, s in enumerate(device.sensors)
        if (not props or s.property_code in props) and (not cats or s.category in cats)
    ]


def _sensor_head(sensor: Sensor, output_format: str, legacy: bool) -> dict[str, Any]:
    head: dict[str, Any] = {}
    if not legacy:
        head["outputFormat"] = output_format
        if sensor.property_code is not None:
            head["propertyCode"] = sensor.property_code
    head.update(
        sensorCategoryCode=sensor.category,
        sensorCode=sensor.code,
        sensorName=sensor.name,
        unitOfMeasure=sensor.unit,
    )
    return head


def _choice(query: Query, name: str, allowed: tuple[str, ...]) -> str:
    """A parameter taking one of `allowed` (the first when absent or empty); error 127 else."""
    value = query.get(name) or allowed[0]
    if value not in allowed:
        raise ApiError.code(127, name)
    return value


def _paging(
    ctx: OncContext, query: Query, call: Call, params: tuple[str, ...], *, clamp_bad: bool
) -> tuple[Selection, int, str]:
    """What both time-series endpoints read first, in the order ONC reports errors: the
    selection, the page's row limit and the output format."""
    sel = select(ctx, query, call, params)
    limit = row_limit(query, clamp_bad=clamp_bad)
    return sel, limit, _choice(query, "outputFormat", ("array", "object"))


def _next_page(call: Call, query: Query, more: int | None) -> dict[str, Any] | None:
    """A page's `next`: the same request from `more` (epoch ms) on; None on the last page."""
    if more is None:
        return None
    return next_object(call.base_url, call.path, query, replace={"dateFrom": iso_ms(more)})


async def scalardata(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """GET scalardata by location or device, in either URL style."""
    sel, limit, output_format = _paging(ctx, query, call, SCALAR_PARAMS, clamp_bad=False)
    quality = _choice(query, "qualityControl", ("raw", "clean"))
    metadata = (query.get("metadata") or query.get("metaData") or "minimum").lower()
    # The legacy getByDevice shape (wiki sample): queryURL, no actualSamples/outputFormat.
    legacy = call.style == "method" and call.name == "scalardata.device"
    gap_fill = (query.get("fillGaps") or "true").lower() != "false"
    exclude = "excludeScalarData" in (query.get("returnOptions") or "")

    def render(*, cheap_only: bool) -> tuple[int, bytes | None, int]:
        segs = sel.segments
        device = segs[0].device if segs else _first_device(ctx, query, call)
        chosen = _sensors(device, query) if device is not None else []
        if query.flag("getLatest"):
            rows = ctx.synth.latest(segs, gap_fill=gap_fill)
            more = None
        else:
            if cheap_only and limit > _ASYNC_RENDER_ROWS:
                return 0, None, 0
            rows = ctx.synth.rows(segs, limit + 1, gap_fill=gap_fill)
            more = int(rows.times[limit]) if len(rows) > limit else None
            rows = _head(rows, limit)
        body: dict[str, Any] = {}
        if not legacy:
            body["messages"] = []
        body["next"] = _next_page(call, query, more)
        if not legacy:
            body["parameters"] = _echo(query)
        body[call.url_key] = query_url(call.base_url, call.path, query.pairs)
        if device is None or not chosen or (not len(rows) and not exclude):
            data = b"null"
        else:
            shape = (output_format, legacy, exclude, quality)
            data = _sensor_data_json(ctx, segs, device, chosen, rows, shape)
        after: dict[str, Any] = {}
        if metadata == "full" and not legacy:
            after["citations"] = [_citation(s) for s in segs[:1]]
            after["qaqcFlagInfo"] = QAQC_FLAG_INFO
            after["metadata"] = _metadata(ctx, sel, device)
        return 200, _with_member(body, "sensorData", data, after), len(rows)

    return await _cached(ctx, request, call, sel, render)


def _first_device(ctx: OncContext, query: Query, call: Call) -> Device | None:
    code = query.get("deviceCode")
    if code:
        return ctx.catalogue.devices[code]
    deps = ctx.catalogue.deployments_of(
        location=query.get("locationCode"), category=query.get("deviceCategoryCode")
    )
    return ctx.catalogue.devices[deps[0].device] if deps else None


def _with_member(before: dict[str, Any], name: str, raw: bytes, after: dict[str, Any]) -> bytes:
    """`dumps(before | {name: value} | after)`, the value given as its JSON text `raw`."""
    assert before, "the member is spliced in after the last one of `before`"
    tail = b"," + dumps(after)[1:] if after else b"}"
    return b"".join((dumps(before)[:-1], b',"', name.encode(), b'":', raw, tail))


def _sensor_data_json(
    ctx: OncContext,
    segs: list[Segment],
    device: Device,
    chosen: list[int],
    rows: Rows,
    shape: tuple[str, bool, bool, str],
) -> bytes:
    """The `sensorData` JSON of `rows`, rendered once for every request whose rows are these.

    Two requests that differ only where no sample falls (streams asking a millisecond apart
    for the same device) select the same rows; their text is most of a render's cost. The
    rows are named by their devices (the one whose sensors head the text, and each segment's:
    none when the window holds no deployment), the sensors asked for, the shape options and a
    digest of their times and kinds: the synthetic values follow from those (synthetic.py),
    and a new gap plan empties the cache (`OncContext.set_gaps`).
    """
    digest = hashlib.blake2b(rows.times.tobytes(), digest_size=16)
    digest.update(rows.kinds.tobytes())
    devices = (device.code, *(s.device.code for s in segs))
    key = (devices, tuple(chosen), shape, digest.digest())
    found = ctx.sensor_data.get(key)
    if found is None:
        output_format, legacy, exclude, quality = shape
        items = _sensor_data(device, chosen, rows, output_format, legacy, exclude, quality)
        found = dumps(items)
        ctx.sensor_data.put(key, found)
    return found


def _head(rows: Rows, n: int) -> Rows:
    if len(rows) <= n:
        return rows
    return Rows(rows.times[:n], rows.values[:, :n], rows.flags[:, :n], rows.kinds[:n])


def _sensor_data(
    device: Device,
    chosen: list[int],
    rows: Rows,
    output_format: str,
    legacy: bool,
    exclude: bool,
    quality: str,
) -> list[dict[str, Any]]:
    times = iso_times(rows.times)
    actual = int(np.count_nonzero(rows.kinds == READING))
    out = []
    for i in chosen:
        item = _sensor_head(device.sensors[i], output_format, legacy)
        if not exclude:
            values = rows.values[i]
            if quality == "clean":
                # Clean data: values failing QC (flags 3, 4) are replaced by NaN.
                values = np.where((rows.flags[i] == 3) | (rows.flags[i] == 4), np.nan, values)
            flags = rows.flags[i].tolist()
            if output_format == "array":
                data: Any = {"qaqcFlags": flags, "sampleTimes": times, "values": values.tolist()}
            else:
                data = [
                    {"qaqcFlag": f, "sampleTime": t, "value": v}
                    for t, v, f in zip(times, values.tolist(), flags, strict=True)
                ]
            if not legacy:
                item["actualSamples"] = actual
            item["data"] = data
        out.append(dict(sorted(item.items())))
    return out


def _echo(query: Query) -> dict[str, str]:
    # ONC echoes the parameters it understood; `metadata` comes back spelled `metaData`.
    out: dict[str, str] = {}
    for key, value in query.pairs:
        if key in ("token", "method"):
            continue
        out["metaData" if key == "metadata" else key] = value
    return out


def _citation(seg: Segment) -> dict[str, Any]:
    doi = seg.deployment.doi or "10.80242/00000000-0000-0000-0000-000000000000"
    return {
        "citation": f"Ocean Networks Canada Society. {seg.deployment.begin[:4]}. "
        f"{seg.device.name} Deployed {seg.deployment.begin[:10]}. "
        f"Ocean Networks Canada Society. https://doi.org/{doi}.",
        "doi": doi,
        "landingPageUrl": f"https://doi.org/{doi}",
        "queryPid": None,
    }


def _metadata(ctx: OncContext, sel: Selection, device: Device | None) -> dict[str, Any]:
    seg = sel.segments[0] if sel.segments else None
    loc = ctx.catalogue.locations.get(seg.deployment.location if seg else sel.location or "")
    return {
        "deviceCategoryCode": device.category if device else None,
        "locationName": loc.name if loc else None,
        "depth": seg.deployment.depth if seg else None,
        "latitude": seg.deployment.lat if seg else None,
        "longitude": seg.deployment.lon if seg else None,
    }


async def rawdata(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """GET rawdata by location or device, in either URL style."""
    sel, limit, output_format = _paging(ctx, query, call, RAW_PARAMS, clamp_bad=True)
    to_decimal = query.flag("convertHexToDecimal")

    def render(*, cheap_only: bool) -> tuple[int, bytes | None, int]:
        if cheap_only and limit > _ASYNC_RENDER_ROWS and not query.flag("getLatest"):
            return 0, None, 0
        times, lines, more = raw_page(ctx, sel.segments, limit, latest=query.flag("getLatest"))
        if to_decimal:
            lines = [str(int(x, 16)) if _is_hex(x) else x for x in lines]
        body: dict[str, Any] = {}
        if output_format == "array":
            body["data"] = {"lineTypes": [" "] * len(lines), "readings": lines, "times": times}
        else:
            body["data"] = [
                {"lineType": " ", "rawData": r, "sampleTime": t}
                for t, r in zip(times, lines, strict=True)
            ]
        if sel.by_location:
            loc = ctx.catalogue.locations[str(sel.location)]
            body["metadata"] = {"locationName": loc.name}
        body["next"] = _next_page(call, query, more)
        body["outputFormat"] = output_format
        body[call.url_key] = query_url(call.base_url, call.path, query.pairs)
        return 200, dumps(body), len(lines)

    return await _cached(ctx, request, call, sel, render)


def raw_page(
    ctx: OncContext, segments: list[Segment], limit: int, *, latest: bool = False
) -> tuple[list[str], list[str], int | None]:
    """(times, lines, next dateFrom) for one rawdata page: next = last returned + 1 ms."""
    times: list[str] = []
    lines: list[str] = []
    if latest:
        for seg in reversed(segments):
            if seg.device.raw_kind is None:
                continue
            rows = ctx.synth.signal(seg.device).latest(seg.start, seg.end, gap_fill=False)
            if len(rows):
                return iso_times(rows.times), raw_lines(seg.device, rows), None
        return times, lines, None
    stamps: list[int] = []
    for seg in segments:
        if seg.device.raw_kind is None:
            continue
        want = limit + 1 - len(times)
        if want <= 0:
            break
        rows = ctx.synth.signal(seg.device).rows(seg.start, seg.end, want, gap_fill=False)
        if not len(rows):
            continue
        stamps.extend(rows.times.tolist())
        times.extend(iso_times(rows.times))
        lines.extend(raw_lines(seg.device, rows))
    if len(times) > limit:
        del times[limit:], lines[limit:]
        return times, lines, stamps[limit - 1] + 1
    return times, lines, None


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789ABCDEFabcdef" for c in text)
