"""`onc-pipeline coverage`: the check over the configured streams, as a table or JSON.

From the state store and the output folder alone it knows every class but `upstream_gap`;
with the token it also asks ONC's dataAvailability about the unheld spans of archive-file
streams (see `sources.py`), which tells an upstream outage from a missing file.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

from pipeline.coverage.check import StreamCoverage, check_streams
from pipeline.coverage.model import Gap, Span
from pipeline.onc.client import OncClient
from pipeline.settings import Settings, client_options
from pipeline.state import open_state_store
from pipeline.times import short_duration, utc_now


async def collect_coverage(
    settings: Settings,
    *,
    stream: str | None = None,
    span: Span | None = None,
    ask_onc: bool = True,
    now: datetime | None = None,
) -> list[StreamCoverage]:
    """Open the store read-only (and the client when asked and a token is set), check."""
    now = now or utc_now()
    streams = [s for s in settings.streams if stream is None or s.name == stream]
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            open_state_store(settings.state.url, read_only=True)
        )
        client = None
        if ask_onc and settings.onc.token is not None:
            client = await stack.enter_async_context(OncClient(client_options(settings)))
        root = Path(settings.output.root)
        return await check_streams(streams, store, root, now, client=client, span=span)


def render_json(report: list[StreamCoverage]) -> str:
    """The JSON answer (also served on /coverage)."""
    return json.dumps({"streams": [r.as_json() for r in report]}, indent=2)


def render_table(report: list[StreamCoverage]) -> str:
    """One line per stream, then one indented line per gap; then, per sensor with a gap
    (scalardata), a line with its coverage and one further indented line per gap."""
    lines = [
        f"{'STREAM':<16} {'KIND':<12} {'COVERAGE':>8} {'LAG':>8}  "
        f"{'NOT_YET':>8} {'QUARANT':>8} {'UPSTREAM':>8} {'MISSING':>8}"
    ]
    for row in report:
        by = row.coverage.seconds_by_class
        lines.append(
            f"{row.stream:<16} {row.kind:<12} {row.coverage.ratio:>8.1%} "
            f"{short_duration(row.lag_seconds):>8}  "
            + " ".join(
                f"{short_duration(by.get(c, 0.0)):>8}"
                for c in ("not_yet", "quarantined", "upstream_gap", "missing")
            )
        )
        lines += [_gap_line("  ", gap) for gap in row.coverage.gaps]
        for code, sensor in row.sensors.items():
            lines.append(f"  sensor {code}: {sensor.ratio:.1%}")
            lines += [_gap_line("    ", gap) for gap in sensor.gaps]
    if any(not r.upstream_asked for r in report if r.kind == "archivefile"):
        lines.append(
            "note: ONC was not asked (no token or --state-only): upstream gaps show as missing"
        )
    return "\n".join(lines)


def _gap_line(indent: str, gap: Gap) -> str:
    reason = f" ({gap.reason})" if gap.reason else ""
    return (
        f"{indent}{gap.gap_class.value:<13} {gap.span.start:%Y-%m-%dT%H:%M:%SZ} -> "
        f"{gap.span.end:%Y-%m-%dT%H:%M:%SZ}  {short_duration(gap.span.seconds)}{reason}"
    )
