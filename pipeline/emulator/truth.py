"""Ground truth of any stream and window: exactly what a correct harvester must end up with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Required, TypedDict, Unpack

from pipeline.emulator import availability
from pipeline.emulator.catalogue import Deployment, Segment, iso_ms
from pipeline.emulator.params import ApiError, Query, parse_instant
from pipeline.emulator.synthetic import iso_times
from pipeline.emulator.timeseries import raw_page

if TYPE_CHECKING:
    from pipeline.emulator.app import OncContext

_MAX_ROWS = 5_000_000
Instant = datetime | str | int


@dataclass(frozen=True, slots=True)
class ScalarRecord:
    """One row of one sensor; value is NaN with flag 9 on gap-fill rows."""

    time: str
    value: float
    flag: int


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One raw instrument line."""

    time: str
    reading: str


@dataclass(frozen=True, slots=True)
class ArchiveTruth:
    """One archived file with its size and (optionally) its SHA-256."""

    filename: str
    size: int
    sha256: str | None
    date_from: str
    date_to: str
    data_product_code: str


class Selection(TypedDict, total=False):
    """What a truth query reads, over [date_from, date_to): one device's data, or that of a
    location's devices of one category (the endpoints' two ways to name a source)."""

    date_from: Required[Instant]
    date_to: Required[Instant]
    device_code: str | None
    location_code: str | None
    device_category_code: str | None


def _ms(value: Instant) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return parse_instant(value, "date")


class GroundTruth:
    """Accessors over the same generator the endpoints use, without paging."""

    def __init__(self, ctx: OncContext) -> None:
        self._ctx = ctx

    def _deployments(self, sel: Selection) -> list[Deployment]:
        cat = self._ctx.catalogue
        if sel.get("device_code"):
            return cat.deployments_of(device=sel.get("device_code"))
        return cat.deployments_of(
            location=sel.get("location_code"), category=sel.get("device_category_code")
        )

    def _segments(self, sel: Selection) -> list[Segment]:
        end = min(_ms(sel["date_to"]), self._ctx.horizon_ms())
        return self._ctx.catalogue.segments(self._deployments(sel), _ms(sel["date_from"]), end)

    def scalar(
        self, *, gap_fill: bool = True, **sel: Unpack[Selection]
    ) -> dict[str, list[ScalarRecord]]:
        """Every scalar row in [date_from, date_to), per sensorCode."""
        segs = self._segments(sel)
        rows = self._ctx.synth.rows(segs, _MAX_ROWS, gap_fill=gap_fill)
        if not segs:
            return {}
        times = iso_times(rows.times)
        out: dict[str, list[ScalarRecord]] = {}
        for i, sensor in enumerate(segs[0].device.sensors):
            out[sensor.code] = [
                ScalarRecord(t, v, f)
                for t, v, f in zip(
                    times, rows.values[i].tolist(), rows.flags[i].tolist(), strict=True
                )
            ]
        return out

    def raw(self, **sel: Unpack[Selection]) -> list[RawRecord]:
        """Every raw line in [date_from, date_to)."""
        times, lines, _ = raw_page(self._ctx, self._segments(sel), _MAX_ROWS)
        return [RawRecord(t, r) for t, r in zip(times, lines, strict=True)]

    def archive_files(
        self,
        *,
        extension: str | None = None,
        with_sha256: bool = True,
        archived_before: Instant | None = None,
        **sel: Unpack[Selection],
    ) -> list[ArchiveTruth]:
        """Every file beginning in [date_from, date_to) and archived by now (or before
        `archived_before`), with sizes and digests: what a listing would show."""
        pairs = [("fileExtension", extension)] if extension else []
        if archived_before is not None:
            pairs.append(("dateArchivedTo", iso_ms(_ms(archived_before))))
        store = self._ctx.archive
        start, end = _ms(sel["date_from"]), _ms(sel["date_to"])
        files = store.listing(self._deployments(sel), start, end, Query(tuple(pairs)))
        return [
            ArchiveTruth(
                f.filename,
                f.size,
                store.sha256(f) if with_sha256 else None,
                iso_ms(f.begin),
                iso_ms(f.end),
                f.spec.data_product_code,
            )
            for f in files
        ]

    # -- JSON forms for /_emulator/truth/{kind} ---------------------------------------------

    def _selection(self, query: Query) -> Selection:
        return {
            "date_from": query.require("dateFrom"),
            "date_to": query.require("dateTo"),
            "device_code": query.get("deviceCode"),
            "location_code": query.get("locationCode"),
            "device_category_code": query.get("deviceCategoryCode"),
        }

    def scalar_json(self, query: Query) -> dict[str, Any]:
        """{sensorCode: [[time, value, flag], ...]} (values may be NaN)."""
        found = self.scalar(
            **self._selection(query), gap_fill=(query.get("fillGaps") or "true") != "false"
        )
        return {k: [[r.time, r.value, r.flag] for r in v] for k, v in found.items()}

    def raw_json(self, query: Query) -> list[list[str]]:
        """[[time, reading], ...]."""
        return [[r.time, r.reading] for r in self.raw(**self._selection(query))]

    def availability_json(self, query: Query) -> dict[str, Any]:
        """What exists for one device over [dateFrom, dateTo): deployments, injected outages,
        every file period (its file, archive time and coverage) and dataAvailability's rows."""
        device = query.require("deviceCode")
        if device not in self._ctx.catalogue.devices:
            raise ApiError.code(127, "deviceCode")
        start, end = _ms(query.require("dateFrom")), _ms(query.require("dateTo"))
        deps = self._ctx.catalogue.deployments_of(device=device)
        segments = self._ctx.catalogue.segments(deps, start, end)
        periods = [
            {
                "dataProductCode": spec.data_product_code,
                "extension": spec.extension,
                "dateFrom": iso_ms(slot.begin),
                "dateTo": iso_ms(slot.end),
                "filename": slot.file.filename if slot.file else None,
                "archivedDate": iso_ms(slot.file.archived) if slot.file else None,
                "coverage": slot.coverage,
            }
            for dep in deps
            for spec in self._ctx.catalogue.devices[device].archive
            for slot in availability.slots(self._ctx, dep, spec, start, end)
        ]
        outages = [
            {"dateFrom": iso_ms(max(lo, start)), "dateTo": iso_ms(min(hi, end))}
            for lo, hi in self._ctx.gaps.outages_of(device)
            if lo < end and hi > start
        ]
        return {
            "deviceCode": device,
            "dateFrom": iso_ms(start),
            "dateTo": iso_ms(end),
            "samplePeriodMs": self._ctx.catalogue.devices[device].sample_period_ms,
            "deployments": [
                {
                    "locationCode": seg.deployment.location,
                    "dateFrom": iso_ms(seg.start),
                    "dateTo": iso_ms(seg.end),
                }
                for seg in segments
            ],
            "outages": outages,
            "files": periods,
            "availableDataProducts": availability.rows(self._ctx, deps, start, end),
        }

    def archive_json(self, query: Query) -> list[dict[str, Any]]:
        """[{filename, size, sha256, dateFrom, dateTo, dataProductCode}, ...]."""
        sel = self._selection(query)
        if not sel.get("device_code") and not sel.get("location_code"):
            raise ApiError.code(128, "deviceCode")
        files = self.archive_files(
            **sel,
            extension=query.get("fileExtension"),
            with_sha256=(query.get("sha256") or "true") != "false",
        )
        return [
            {
                "filename": f.filename,
                "size": f.size,
                "sha256": f.sha256,
                "dateFrom": f.date_from,
                "dateTo": f.date_to,
                "dataProductCode": f.data_product_code,
            }
            for f in files
        ]
