"""The gap plan file format: parsed from YAML, every problem reported with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.emulator.gaps import GapPlan
from pipeline.exceptions import ConfigError

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def test_yaml_file_and_overlapping_outages(tmp_path: Path) -> None:
    path = tmp_path / "gaps.yaml"
    path.write_text(
        "outages:\n"
        "  - {device: D, from: 2024-01-01T00:00:00Z, to: 2024-01-01T02:00:00Z}\n"
        "  - {device: D, from: 2024-01-01T01:00:00Z, to: 2024-01-01T03:00:00Z}\n"
        "  - {device: E, from: 2024-01-01T00:00:00Z, to: 2024-01-02T00:00:00Z}\n"
        "late_files:\n"
        "  - {device: D, at: 2024-01-01T12:00:00Z, delay_s: 60}\n"
    )
    plan = GapPlan.load(str(path))
    # Overlaps are counted once: 00:00-03:00 within the day.
    assert plan.outage_ms("D", T0, T0 + 24 * H) == 3 * H
    assert plan.outage_ms("D", T0 + 2 * H + H // 2, T0 + 24 * H) == H // 2
    assert plan.outage_ms("F", T0, T0 + 24 * H) == 0
    assert plan.late_delay_ms("D", "txt", T0, T0 + 24 * H) == 60_000
    assert plan.late_delay_ms("D", "txt", T0 + 24 * H, T0 + 48 * H) is None


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        GapPlan.load(
            {
                "outages": [
                    {"device": "D", "from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
                    {"device": "D", "from": "yesterday", "to": "2024-01-01T00:00:00Z"},
                    {"device": "D", "from": "2024-01-01T00:00:00"},
                ],
                "late_files": [{"device": "D", "at": "2024-01-01T00:00:00Z", "delay_s": "soon"}],
                "outage": [],
            }
        )
    paths = [path for path, _ in caught.value.problems]
    assert paths == [
        "gaps",
        "gaps.outages[0]",
        "gaps.outages[1]",
        "gaps.outages[2]",
        "gaps.late_files[0].delay_s",
    ]
