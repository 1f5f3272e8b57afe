"""Held spans from the state rows and the files; the status page drawn from a check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.coverage.check import StreamCoverage
from pipeline.coverage.held import held_of, quarantined_span
from pipeline.coverage.model import Facts, Quarantined, Span, classify
from pipeline.coverage.page import render_page
from pipeline.settings import ArchiveFileStream, TimeSeriesStream
from pipeline.state.base import ManifestEntry, QuarantineRecord, StreamRecord

T0 = datetime(2024, 1, 9, 12, tzinfo=UTC)
SERIES = TimeSeriesStream(name="ctd", kind="scalardata", device_code="X", formats=["jsonl"])
ARCHIVE = ArchiveFileStream(name="wav", kind="archivefile", device_code="Y")


def entry(path: str, start: datetime, end: datetime) -> ManifestEntry:
    return ManifestEntry(
        path=path,
        stream="ctd",
        dataset_id="d",
        size=1,
        sha256="0" * 64,
        time_start=start,
        time_end=end,
        records=1,
        source="scalardata",
        published_at=T0,
    )


def record(cursor: datetime, error: str | None = None) -> StreamRecord:
    return StreamRecord(
        name="ctd",
        cursor_time=cursor,
        cursor_file=None,
        last_success=cursor,
        last_error=error,
        last_error_at=cursor if error else None,
        updated_at=cursor,
    )


def test_held_counts_only_files_on_disk(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("x")
    entries = [
        entry("a.jsonl", T0, T0 + timedelta(hours=1)),
        entry("b.jsonl", T0 + timedelta(hours=1), T0 + timedelta(hours=2)),  # deleted
    ]
    held = held_of(SERIES, record(T0 + timedelta(hours=2)), entries, [], tmp_path)
    assert held.held == [Span(T0, T0 + timedelta(hours=1))]
    assert (held.files, held.files_absent) == (2, 1)


def test_archive_cursor_is_archive_time_less_safety_lag(tmp_path: Path) -> None:
    held = held_of(ARCHIVE, record(T0), [], [], tmp_path)
    assert held.cursor == T0 - ARCHIVE.safety_lag


def test_quarantine_keys_read_back_into_spans() -> None:
    def q(key: str) -> QuarantineRecord:
        return QuarantineRecord(
            stream="s", item_key=key, reason="R", detail=None, attempts=3, at=T0
        )

    window = quarantined_span(q("window:20240109T120000Z_20240109T130000Z"), [])
    assert window == Quarantined(Span(T0, T0 + timedelta(hours=1)), "R")
    mend = quarantined_span(q("mend:20240109T120000Z_20240109T121000Z"), [])
    assert mend is not None
    assert mend.span == Span(T0, T0 + timedelta(minutes=10))
    # An archive file spans to the next held file.
    held = [Span(T0 + timedelta(minutes=5), T0 + timedelta(minutes=10))]
    named = quarantined_span(q("out/ICLISTENHF1560_20240109T120000.000Z.wav"), held)
    assert named is not None
    assert named.span == Span(T0, T0 + timedelta(minutes=5))
    assert quarantined_span(q("unsafe-name:'x'"), held) is None


def test_page_draws_every_stream_and_gap_and_escapes_errors(tmp_path: Path) -> None:
    rows = []
    for name in ("a<b", "c"):
        held = held_of(
            SERIES, record(T0 + timedelta(hours=2), "<script>x</script>"), [], [], tmp_path
        )
        facts = Facts(
            window=Span(T0, T0 + timedelta(hours=3)),
            held=[Span(T0, T0 + timedelta(hours=1))],
            cursor=T0 + timedelta(hours=2),
            quarantined=[
                Quarantined(Span(T0 + timedelta(hours=1), T0 + timedelta(minutes=90)), "R")
            ],
            upstream=[Span(T0 + timedelta(minutes=90), T0 + timedelta(minutes=100))],
        )
        coverage = classify(facts, T0 + timedelta(hours=3))
        rows.append(StreamCoverage(name, "scalardata", held, coverage, upstream_asked=False))
    page = render_page(rows, {("c", Span(T0, T0))})
    assert page.count("<svg") == 2
    assert "data-stream='a&lt;b'" in page
    assert "<script>" not in page
    for css in ("held", "quarantined", "upstream_gap", "missing", "not_yet"):
        assert f"<rect class='{css}'" in page
    assert "(mending)" in page
