"""The one backoff rule: capped doubling, minus a drawn share of at most `jitter`."""

from __future__ import annotations

import pytest

from pipeline.backoff import EQUAL_JITTER, FULL_JITTER, backoff_delay


def test_doubling_is_capped_and_survives_huge_failure_counts() -> None:
    delays = [backoff_delay(n, base=1.0, cap=10.0, jitter=0.0, draw=0.5) for n in range(1, 6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff_delay(100_000, base=1.0, cap=10.0, jitter=0.0, draw=0.0) == 10.0


@pytest.mark.parametrize(("jitter", "floor"), [(FULL_JITTER, 0.0), (EQUAL_JITTER, 4.0)])
def test_jitter_takes_off_at_most_its_share(jitter: float, floor: float) -> None:
    assert backoff_delay(4, base=1.0, cap=8.0, jitter=jitter, draw=0.0) == 8.0
    assert backoff_delay(4, base=1.0, cap=8.0, jitter=jitter, draw=1.0) == floor


@pytest.mark.parametrize(
    ("failures", "jitter", "draw", "word"),
    [(0, 0.0, 0.0, "failures"), (1, 1.5, 0.0, "jitter"), (1, 0.5, -0.1, "draw")],
)
def test_out_of_range_arguments_are_refused(
    failures: int, jitter: float, draw: float, word: str
) -> None:
    with pytest.raises(ValueError, match=word):
        backoff_delay(failures, base=1.0, cap=8.0, jitter=jitter, draw=draw)
