"""SIGHUP reloads the configuration: streams are added, changed and removed without a restart."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pipeline.emulator import Emulator
from tests.acceptance.conftest import wait_exit, wait_for, write_config


def log_has(path: Path, event: str) -> bool:
    return path.exists() and f'"event": "{event}"' in path.read_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sighup_adds_and_removes_streams_and_survives_a_bad_config(
    live_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    harness = write_config(tmp_path, live_emulator, datetime.now(UTC))
    config = yaml.safe_load(harness.config.read_text())
    streams = {s["name"]: s for s in config["streams"]}
    config["streams"] = [streams["ctd"]]
    harness.config.write_text(yaml.safe_dump(config))
    log = tmp_path / "daemon.log"

    proc = harness.spawn()
    reap.append(proc)
    await wait_for(lambda: any(harness.out.rglob("onc_bacax_ctd/**/*.jsonl")), 30, "ctd output")
    assert not (harness.out / "onc_rbrquartz3bpr203659").exists()

    # A broken file is refused; the daemon keeps its current streams and goes on.
    harness.config.write_text("streams: [{name: x, kind: wat}]\n")
    proc.send_signal(signal.SIGHUP)
    await wait_for(lambda: log_has(log, "config_reload_rejected"), 15, "the rejection")
    assert proc.poll() is None

    # Swap ctd for bpr.
    config["streams"] = [streams["bpr"]]
    harness.config.write_text(yaml.safe_dump(config))
    proc.send_signal(signal.SIGHUP)
    await wait_for(
        lambda: any(harness.out.rglob("onc_rbrquartz3bpr203659/**/*.jsonl")), 30, "bpr output"
    )
    await wait_for(lambda: log_has(log, "stream_removed"), 10, "ctd removal")
    text = log.read_text()
    assert '"stream": "bpr"' in text
    assert '"event": "stream_added"' in text
    ctd_files = {p: p.stat().st_mtime for p in (harness.out / "onc_bacax_ctd").rglob("*.jsonl")}
    await asyncio.sleep(3)  # ctd's cadence is 2 s: a live stream would have rewritten a file
    assert {p: p.stat().st_mtime for p in ctd_files} == ctd_files

    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 15) == 0
