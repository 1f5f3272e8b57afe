"""`/coverage` (JSON) and `/status` (HTML): the daemon's last coverage check, served as is.

Nothing is computed per request beyond formatting: the mender's last round holds the result,
so the page costs string building only (benchmarks/coverage_bench.py measures it on 1,000
streams). The timeline is inline SVG, one per stream and one per sensor with a gap (scalardata,
a row under its stream), with a `<title>` on every gap (a browser's tooltip); no script.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from html import escape
from typing import Protocol

from aiohttp import web

from pipeline.coverage.check import StreamCoverage
from pipeline.coverage.model import Coverage, GapClass, Span
from pipeline.times import short_duration

COLOURS = {
    "held": "#3a9d5d",
    GapClass.NOT_YET.value: "#c8c8c8",
    GapClass.QUARANTINED.value: "#e69f00",
    GapClass.UPSTREAM_GAP.value: "#5b7fbf",
    GapClass.MISSING.value: "#d7263d",
}
LABELS = {
    "held": "held",
    GapClass.NOT_YET.value: "not yet harvested (ahead of the cursor)",
    GapClass.QUARANTINED.value: "quarantined",
    GapClass.UPSTREAM_GAP.value: "upstream gap (ONC has nothing)",
    GapClass.MISSING.value: "missing (being mended)",
}
WIDTH, HEIGHT = 440, 16


class CoverageSource(Protocol):
    """What the pages read: the last check and the chunks being mended."""

    @property
    def last(self) -> list[StreamCoverage]: ...

    @property
    def mending(self) -> Collection[tuple[str, Span]]: ...


def add_coverage_routes(app: web.Application, source: CoverageSource) -> None:
    """Register `/coverage` and `/status` on the ops application."""

    async def coverage(request: web.Request) -> web.Response:
        return web.Response(text=render_json(source), content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        return web.Response(text=render_page(source.last, source.mending), content_type="text/html")

    app.router.add_get("/coverage", coverage)
    app.router.add_get("/status", status)


def render_json(source: CoverageSource) -> str:
    """The last check, and what is being mended."""
    return json.dumps(
        {
            "streams": [row.as_json() for row in source.last],
            "mending": [
                {"stream": name, "from": span.start.isoformat(), "to": span.end.isoformat()}
                for name, span in sorted(source.mending)
            ],
        }
    )


def render_page(rows: Sequence[StreamCoverage], mending: Collection[tuple[str, Span]]) -> str:
    """The status page: a legend, then one table row per stream with its timeline, and under
    a scalardata stream one row per sensor with a gap."""
    checked = max((r.coverage.checked_at for r in rows), default=None)
    busy = {name for name, _ in mending}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>onc-pipeline status</title><style>",
        "body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}",
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}",
        ".err{color:#b00;max-width:22em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}",
        ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;",
        "vertical-align:middle}.num{text-align:right}.axis{font-size:11px;color:#666}",
        "</style></head><body><h1>onc-pipeline status</h1>",
        f"<p>{len(rows)} streams; coverage checked {_when(checked)}; "
        f"{len(mending)} ranges being mended.</p><p class='legend'>",
    ]
    parts += [
        f"<span style='background:{colour}'></span>{escape(LABELS[name])}"
        for name, colour in COLOURS.items()
    ]
    parts.append(
        "</p><table><thead><tr><th>stream</th><th>kind</th><th>lag</th><th>last success</th>"
        "<th>last error</th><th class='num'>coverage</th><th>timeline</th></tr></thead><tbody>"
    )
    for row in rows:
        held = row.held
        mend_note = " (mending)" if row.stream in busy else ""
        error = escape(held.last_error or "")
        parts.append(
            f"<tr id='stream-{escape(row.stream)}' data-stream='{escape(row.stream)}'>"
            f"<td>{escape(row.stream)}</td><td>{row.kind}</td>"
            f"<td>{short_duration(row.lag_seconds)}</td><td>{_when(held.last_success)}</td>"
            f"<td class='err' title='{error}'>{error}</td>"
            f"<td class='num'>{row.coverage.ratio:.1%}{mend_note}</td>"
            f"<td>{timeline(row.stream, row.coverage)}</td></tr>"
        )
        for code, sensor in row.sensors.items():
            parts.append(
                f"<tr class='sensor' data-stream='{escape(row.stream)}' "
                f"data-sensor='{escape(code)}'><td>&nbsp;&nbsp;{escape(code)}</td>"
                f"<td>sensor</td><td></td><td></td><td></td>"
                f"<td class='num'>{sensor.ratio:.1%}</td>"
                f"<td>{timeline(f'{row.stream} {code}', sensor)}</td></tr>"
            )
    parts.append("</tbody></table></body></html>")
    return "".join(parts)


def timeline(name: str, coverage: Coverage) -> str:
    """One stream's (or sensor's) window as an SVG bar: held green, each gap in its class's
    colour."""
    window = coverage.window
    total = window.seconds or 1.0

    def rect(span: Span, name: str, title: str) -> str:
        x = (span.start - window.start).total_seconds() / total * WIDTH
        w = max(1.0, span.seconds / total * WIDTH)
        return (
            f"<rect class='{name}' x='{x:.1f}' y='0' width='{w:.1f}' height='{HEIGHT}' "
            f"fill='{COLOURS[name]}'><title>{escape(title)}</title></rect>"
        )

    shapes = [rect(s, "held", f"held {_range(s)}") for s in coverage.held]
    for gap in coverage.gaps:
        reason = f": {gap.reason}" if gap.reason else ""
        shapes.append(
            rect(gap.span, gap.gap_class.value, f"{gap.gap_class}{reason} {_range(gap.span)}")
        )
    return (
        f"<svg width='{WIDTH}' height='{HEIGHT + 12}' role='img' "
        f"aria-label='coverage of {escape(name)}'>"
        f"<rect width='{WIDTH}' height='{HEIGHT}' fill='#f4f4f4'/>{''.join(shapes)}"
        f"<text class='axis' x='0' y='{HEIGHT + 11}' font-size='10'>{_when(window.start)}</text>"
        f"<text class='axis' x='{WIDTH}' y='{HEIGHT + 11}' font-size='10' text-anchor='end'>"
        f"{_when(window.end)}</text></svg>"
    )


def _range(span: Span) -> str:
    return f"{_when(span.start)} - {_when(span.end)}"


def _when(value: datetime | None) -> str:
    return "never" if value is None else f"{value:%Y-%m-%d %H:%M:%SZ}"
