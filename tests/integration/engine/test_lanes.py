"""Near-real-time polls keep their cadence while bulk work (slow archive downloads) runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from pipeline.daemon import components
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.engine.runner import Runner
from pipeline.settings import load_settings

TOKEN = "lanes-token-4d2e"


@pytest.fixture
async def live() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        token=TOKEN,
        seed=3,
        onc_port=0,
        registry_port=0,
        archive_file_sizes={"ICLISTENHF1560.wav": 1_500_000},
        latency_s=0.5,
        faults={
            "rules": [
                {
                    "kind": "drip",
                    "endpoint": "archivefile.download",
                    "chunk_bytes": 32768,
                    "interval_s": 0.05,
                }
            ]
        },
    )
    async with Emulator(config) as emulator:
        yield emulator


@pytest.mark.slow
async def test_realtime_stream_is_not_starved_by_bulk_downloads(
    live: Emulator, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    archive = {
        "kind": "archivefile",
        "location_code": "SEVIP",
        "device_category_code": "HYDROPHONE",
        "file_extensions": ["wav"],
        "start": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "safety_lag": "1m",
        "parallel_downloads": 1,
    }
    streams = [{**archive, "name": f"bulk-{i}", "dataset_id": f"bulk_{i}"} for i in range(3)] + [
        {
            "name": "nrt",
            "kind": "scalardata",
            "location_code": "BACAX",
            "device_category_code": "CTD",
            "start": (now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cadence": "1s",
            "safety_lag": "1s",
            "formats": ["jsonl"],
        },
    ]
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "onc": {"base_url": live.onc_url, "token": TOKEN, "max_rate_per_s": 50},
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "output": {"root": str(tmp_path / "out")},
                "streams": streams,
            }
        )
    )
    settings = load_settings(path, environ={}, secrets_dirs=[])
    stop = asyncio.Event()
    bulk_running: list[int] = []
    with capture_logs() as logs:
        async with components(settings, stop=stop) as parts:
            runner = Runner(parts.ctx, settings.streams, bulk_slots=2)
            task = asyncio.create_task(runner.run())
            for _ in range(60):
                await asyncio.sleep(0.1)
                bulk_running.append(sum(1 for n in runner.running if n.startswith("bulk")))
            stop.set()
            await runner.drain(5)
            await task
    finished = [e for e in logs if e["event"] == "stream_pass_finished"]
    nrt = [e for e in finished if e["stream"] == "nrt" and e["ok"]]
    bulk_done = [
        e for e in finished if e["stream"].startswith("bulk") and e["ok"] and e["caught_up"]
    ]
    assert max(bulk_running) == 2, "the bulk lane holds at most bulk_slots passes"
    assert not bulk_done, "the downloads are slow enough to outlast the test"
    assert len(nrt) >= 3, f"near-real-time passes starved: {len(nrt)} in 6 s"
