"""The one debounce rule both new-data consumers use (registry triggers, ERDDAP flags)."""

from __future__ import annotations

from pipeline.debounce import DebounceRule, due_at


def test_a_burst_is_due_after_a_quiet_spell() -> None:
    assert due_at(first_event=0.0, last_event=30.0, quiet=60.0, max_wait=600.0) == 90.0


def test_a_burst_that_never_goes_quiet_is_due_after_max_wait() -> None:
    assert due_at(first_event=0.0, last_event=590.0, quiet=60.0, max_wait=600.0) == 600.0


def test_not_before_holds_a_due_burst_back() -> None:
    assert due_at(first_event=0.0, last_event=0.0, quiet=0.0, not_before=300.0) == 300.0
    assert due_at(first_event=500.0, last_event=500.0, quiet=0.0, not_before=300.0) == 500.0


def test_a_rule_holds_both_durations_and_applies_not_before() -> None:
    rule = DebounceRule(quiet=60.0, max_wait=600.0)
    assert rule.due_at(first_event=0.0, last_event=30.0) == 90.0
    assert rule.due_at(first_event=0.0, last_event=590.0) == 600.0
    assert rule.due_at(first_event=0.0, last_event=0.0, not_before=300.0) == 300.0
    assert DebounceRule(quiet=0.0).due_at(first_event=5.0, last_event=5.0) == 5.0
