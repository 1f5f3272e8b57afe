"""The daemon's own wiring: joining its tasks, SIGHUP reloads, a backfill beside live passes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from pipeline import daemon
from pipeline.engine.streams.base import PassOutcome
from pipeline.exceptions import ConfigError
from pipeline.settings import Settings, load_settings

STREAM = {"name": "ctd", "kind": "scalardata", "location_code": "BACAX",
          "device_category_code": "CTD"}  # fmt: skip


def settings(tmp_path: Path, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "onc": {"token": "unit-test-token-9f2c"},
        "state": {"url": "memory://"},
        "output": {"root": str(tmp_path / "out")},
        "streams": [STREAM],
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path, environ={}, secrets_dirs=[])


async def test_every_task_is_awaited_and_the_runner_error_raised(tmp_path: Path) -> None:
    finished: list[str] = []

    async def crash() -> None:
        raise RuntimeError("runner bug")

    async def slow(name: str) -> None:
        await asyncio.sleep(0.01)
        finished.append(name)

    async def mender_bug() -> None:
        raise ValueError("mender bug")

    runner = asyncio.create_task(crash(), name="runner")
    others = [
        asyncio.create_task(slow("notifier"), name="notifier"),
        asyncio.create_task(mender_bug(), name="coverage-mender"),
        None,
    ]
    with capture_logs() as logs, pytest.raises(RuntimeError, match="runner bug"):
        await daemon._join(runner, *others)
    # The runner's crash did not leave the notifier running while the store closes.
    assert finished == ["notifier"]
    [failed] = [e for e in logs if e["event"] == "task_failed"]
    assert failed["task"] == "coverage-mender"
    assert "mender bug" in failed["error"]


def test_a_reload_names_the_sections_it_does_not_apply(tmp_path: Path) -> None:
    before = settings(tmp_path)
    same = settings(tmp_path, streams=[{**STREAM, "cadence": "2m"}])
    assert daemon.restart_sections(before, same) == []
    moved = settings(tmp_path, output={"root": str(tmp_path / "elsewhere")})
    assert daemon.restart_sections(before, moved) == ["output"]


async def test_a_failing_reload_is_logged_and_the_next_one_applies(tmp_path: Path) -> None:
    class Runner:
        def __init__(self) -> None:
            self.streams: dict[str, object] = {}

        def reload(self, streams: list[object]) -> None:
            self.streams = {"reloaded": streams}

    answers: list[Exception | Settings] = [
        PermissionError("config.yaml: permission denied"),
        ConfigError([("streams[0].window", "must divide a day")]),
        settings(tmp_path, output={"root": str(tmp_path / "elsewhere")}),
    ]

    def reload() -> Settings:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    requested, stop = asyncio.Event(), asyncio.Event()
    runner = Runner()
    with capture_logs() as logs:
        task = asyncio.create_task(
            daemon._reloads(runner, settings(tmp_path), reload, requested, stop)  # type: ignore[arg-type]
        )
        for _ in range(3):
            requested.set()
            for _ in range(5):  # let the task take the request and handle it
                await asyncio.sleep(0)
        stop.set()
        requested.set()
        await asyncio.wait_for(task, 5)
    events = [e["event"] for e in logs]
    assert events[:2] == ["config_reload_failed", "config_reload_rejected"]
    assert "config_reloaded" in events
    [restart] = [e for e in logs if e["event"] == "config_reload_needs_restart"]
    assert restart["sections"] == ["output"]
    assert runner.streams


async def test_a_backfill_waits_while_a_live_pass_holds_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    async def leased_pass(ctx: object, stream: Any, **limits: Any) -> PassOutcome:
        calls.append(limits)
        return PassOutcome(stream=stream.name, held_elsewhere=len(calls) < 3, units=1)

    monkeypatch.setattr(daemon, "leased_pass", leased_pass)
    monkeypatch.setattr(daemon, "BACKFILL_RETRY_S", 0.01)
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    outcome = await daemon.run_backfill(settings(tmp_path), asyncio.Event(), "ctd", start, end)
    assert not outcome.held_elsewhere
    assert outcome.units == 1
    assert len(calls) == 3
    assert calls[0] == {"date_from": start, "date_to": end, "max_pages": None}
