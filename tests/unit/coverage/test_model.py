"""The pure coverage model: span arithmetic and the classification of each gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.coverage.model import (
    Facts,
    GapClass,
    Quarantined,
    Span,
    chunks,
    classify,
    intersect,
    merge,
    subtract,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def s(a: float, b: float) -> Span:
    return Span(h(a), h(b))


def test_merge_joins_overlapping_and_touching_and_drops_empty() -> None:
    assert merge([s(3, 4), s(0, 1), s(1, 2), s(5, 5), s(3.5, 6)]) == [s(0, 2), s(3, 6)]


def test_subtract_and_intersect() -> None:
    spans = [s(0, 10)]
    holes = [s(1, 2), s(4, 5), s(9, 12)]
    assert subtract(spans, holes) == [s(0, 1), s(2, 4), s(5, 9)]
    assert intersect(spans, holes) == [s(1, 2), s(4, 5), s(9, 10)]
    assert subtract([s(0, 1), s(2, 3)], [s(0, 3)]) == []


def test_everything_held_is_full_coverage() -> None:
    cov = classify(Facts(window=s(0, 10), held=[s(0, 10)], cursor=h(10)), now=h(20))
    assert cov.gaps == []
    assert cov.ratio == 1.0


def test_each_class_with_precedence_and_reason() -> None:
    facts = Facts(
        window=s(0, 24),
        held=[s(0, 2), s(3, 5), s(6, 8), s(9, 12)],
        cursor=h(12),
        quarantined=[Quarantined(s(5, 6), "OncMalformedReply")],
        upstream=[s(8, 9), s(10, 11)],
    )
    cov = classify(facts, now=h(20))
    got = [(g.span, g.gap_class, g.reason) for g in cov.gaps]
    assert got == [
        (s(2, 3), GapClass.MISSING, None),
        (s(5, 6), GapClass.QUARANTINED, "OncMalformedReply"),
        (s(8, 9), GapClass.UPSTREAM_GAP, None),
        # the window is clipped to now
        (s(12, 20), GapClass.NOT_YET, None),
    ]
    assert cov.seconds_by_class["missing"] == 3600
    # held 0-2, 3-5, 6-8, 9-12 = 9 h (a file held inside a reported outage is data: a late
    # file); owed: 1 h missing + 1 h quarantined
    assert abs(cov.ratio - 9 / 11) < 1e-9


def test_no_cursor_means_nothing_harvested_yet() -> None:
    cov = classify(Facts(window=s(0, 4), held=[], cursor=None), now=h(10))
    assert [(g.span, g.gap_class) for g in cov.gaps] == [(s(0, 4), GapClass.NOT_YET)]
    assert cov.ratio == 1.0


def test_expected_limits_what_is_owed() -> None:
    # deployed only 2-6: nothing is owed outside it
    facts = Facts(window=s(0, 10), held=[s(2, 4)], cursor=h(10), expected=[s(2, 6)])
    cov = classify(facts, now=h(10))
    assert [(g.span, g.gap_class) for g in cov.gaps] == [(s(4, 6), GapClass.MISSING)]
    assert cov.ratio == 0.5


def test_quarantine_ahead_of_cursor_is_not_yet() -> None:
    facts = Facts(window=s(0, 4), held=[], cursor=h(0), quarantined=[Quarantined(s(1, 2), "x")])
    assert {g.gap_class for g in classify(facts, now=h(4)).gaps} == {GapClass.NOT_YET}


def test_chunks_are_bounded() -> None:
    assert chunks(s(0, 2.5), timedelta(hours=1)) == [s(0, 1), s(1, 2), s(2, 2.5)]
