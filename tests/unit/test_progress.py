"""Backfill progress: the bar on a terminal and the log lines elsewhere."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from pipeline.progress import ProgressReporter, format_eta
from tests.clocks import FakeClock


def test_eta_formats() -> None:
    assert format_eta(None) == "?"
    assert format_eta(45.4) == "45s"
    assert format_eta(192) == "3m12s"
    assert format_eta(3720) == "1h02m"


def test_tty_bar_with_eta_from_average_pace() -> None:
    out, clock = io.StringIO(), FakeClock(100.0)
    report = ProgressReporter(out, tty=True, clock=clock)
    report("ctd", 0, 4)
    clock.now += 30
    report("ctd", 1, 4)
    clock.now += 30
    report("ctd", 4, 4)
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("ctd [")
    assert "0/4" in frames[0]
    assert "ETA ?" in frames[0]
    assert "1/4" in frames[1]
    assert "25%" in frames[1]
    assert "ETA 1m30s" in frames[1]
    assert frames[2].endswith("4/4 100% ETA 0s\n")


def test_plain_log_lines_off_a_tty_are_rate_limited() -> None:
    clock = FakeClock(100.0)
    report = ProgressReporter(io.StringIO(), tty=False, log_every=5, clock=clock)
    with capture_logs() as logs:
        report("ctd", 1, 10)
        clock.now += 1
        report("ctd", 2, 10)  # too soon: no line
        clock.now += 5
        report("ctd", 3, 10)
        report("ctd", 10, 10)  # the end is always said
    assert [entry["done"] for entry in logs] == [1, 3, 10]
    assert logs[-1]["percent"] == 100.0
    assert all(entry["event"] == "backfill_progress" for entry in logs)


def test_log_lines_clear_the_bar_and_it_is_drawn_again_below() -> None:
    """Issue 19 item 6: a log line written while the bar is up used to continue its line."""
    out = io.StringIO()
    report = ProgressReporter(out, tty=True, clock=FakeClock(100.0))
    logs = report.log_stream()
    report("ctd", 1, 4)
    logs.write("window_harvested stream=ctd\n")
    report("ctd", 4, 4)
    logs.write("after the bar\n")
    text = out.getvalue()
    lines = text.split("\n")
    # The log line starts on a cleared line, then the bar comes back under it.
    assert lines[0].endswith("\r\x1b[Kwindow_harvested stream=ctd")
    assert lines[1].startswith("ctd [") and "1/4" in lines[1]  # noqa: PT018
    assert "\r" in lines[1]
    assert "4/4 100%" in lines[1].rsplit("\r", 1)[1]
    assert lines[2] == "after the bar"  # a finished bar is left alone


def test_close_ends_an_unfinished_bar_line() -> None:
    out = io.StringIO()
    report = ProgressReporter(out, tty=True, clock=FakeClock(100.0))
    report("ctd", 1, 4)
    report.close()
    assert out.getvalue().endswith("\n")
