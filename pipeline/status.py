"""`onc-pipeline status`: what the state store says about every configured stream."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pipeline.registry.journal import META_NAMESPACE
from pipeline.settings import Settings
from pipeline.state import open_state_store
from pipeline.times import short_duration, utc_now


@dataclass
class StreamStatus:
    """One row of the status report."""

    name: str
    kind: str
    enabled: bool
    cursor: datetime | None = None
    lag_s: float | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    files: int = 0
    bytes: int = 0
    quarantined: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)


@dataclass
class HarvestStatus:
    """What the registry notifier last did for one IOOS Catalog harvest id."""

    harvest_id: str
    datasets: list[str]
    pending: bool = False
    last_trigger: str | None = None
    last_outcome: str | None = None
    last_error: str | None = None


@dataclass
class StatusReport:
    """Streams and registry harvests, as the state store knows them."""

    streams: list[StreamStatus]
    harvests: list[HarvestStatus] = field(default_factory=list)


async def collect_status(settings: Settings, *, now: datetime | None = None) -> StatusReport:
    """Read the state store once: one row per stream, one per registry harvest id."""
    now = now or utc_now()
    async with open_state_store(settings.state.url, read_only=True) as store:
        harvests = []
        for harvest_id in sorted(set(settings.registry.harvests.values())):
            meta = await store.get_meta(META_NAMESPACE, harvest_id) or {}
            outcome = meta.get("last_outcome") or {}
            harvests.append(
                HarvestStatus(
                    harvest_id=harvest_id,
                    datasets=sorted(
                        d for d, h in settings.registry.harvests.items() if h == harvest_id
                    ),
                    pending=bool(meta.get("pending")),
                    last_trigger=meta.get("last_trigger"),
                    last_outcome=(
                        f"{outcome.get('status')} at {outcome.get('finished_at')}"
                        f" ({outcome.get('good_count')}/{outcome.get('record_count')} good)"
                        if outcome
                        else None
                    ),
                    last_error=meta.get("last_error"),
                )
            )
        records = {r.name: r for r in await store.list_streams()}
        manifest = await store.list_manifest()
        quarantine = await store.list_quarantine()
        rows: list[StreamStatus] = []
        configured = {s.name: s for s in settings.streams}
        for name in sorted(set(configured) | set(records)):
            stream = configured.get(name)
            row = StreamStatus(
                name=name,
                kind=stream.kind if stream else "(not configured)",
                enabled=bool(stream and stream.enabled),
            )
            if record := records.get(name):
                row.cursor = record.cursor_time
                row.lag_s = (
                    (now - record.cursor_time).total_seconds() if record.cursor_time else None
                )
                row.last_success = record.last_success
                row.last_error = record.last_error
                row.last_error_at = record.last_error_at
            mine = [m for m in manifest if m.stream == name]
            row.files = len(mine)
            row.bytes = sum(m.size for m in mine)
            row.quarantined = [f"{q.item_key}: {q.reason}" for q in quarantine if q.stream == name]
            row.in_flight = sorted(await store.get_inflight(name))
            rows.append(row)
    return StatusReport(streams=rows, harvests=harvests)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


# What a stream asks the upstream for, beside its location/device codes.
_ASKS = {
    "scalardata": "its codes and property_codes",
    "rawdata": "its codes",
    "archivefile": "its codes and file_extensions",
    "dataproduct": "its codes, data_product_code and extension",
}


def render_status(report: StatusReport, *, as_json: bool = False) -> str:
    """A table for people, or JSON for scripts."""
    rows = report.streams
    if as_json:

        def encode(value: Any) -> Any:
            return value.isoformat() if isinstance(value, datetime) else value

        return json.dumps(
            {
                "streams": [{k: encode(v) for k, v in asdict(row).items()} for row in rows],
                "registry": [asdict(h) for h in report.harvests],
            },
            indent=2,
        )
    if not rows:
        return "no streams configured and none in the state store"
    header = ("STREAM", "KIND", "CURSOR", "LAG", "LAST SUCCESS", "FILES", "QUAR", "LAST ERROR")
    table = [header]
    for row in rows:
        table.append(
            (
                row.name + ("" if row.enabled else " (disabled)"),
                row.kind,
                _when(row.cursor),
                short_duration(row.lag_s),
                _when(row.last_success),
                str(row.files),
                str(len(row.quarantined)),
                (row.last_error or "-")[:80],
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + "  " + line[-1]
        for line in table
    ]
    for row in rows:
        if row.enabled and row.cursor is not None and not row.files:
            lines.append(
                f"nothing yet  {row.name}  the cursor is at {_when(row.cursor)} but no file was "
                f"published: the upstream returned nothing this stream asks for; "
                f"check {_ASKS.get(row.kind, 'its codes')}"
            )
        for item in row.quarantined:
            lines.append(f"quarantined  {row.name}  {item}")
        for item in row.in_flight:
            lines.append(f"in flight    {row.name}  {item}")
    for harvest in report.harvests:
        lines.append(
            f"registry     {harvest.harvest_id}  datasets={','.join(harvest.datasets)}"
            f"  pending={'yes' if harvest.pending else 'no'}"
            f"  last trigger={harvest.last_trigger or '-'}"
            f"  last outcome={harvest.last_outcome or '-'}"
            + (f"  last error={harvest.last_error}" if harvest.last_error else "")
        )
    return "\n".join(lines)
