"""A product with three runs: every file of every run published once, across a kill -9.

The emulator splits a three-day product one file per run (`product_files_per_run=1`), and
each product download takes 0.4 s, so the daemon is killed with SIGKILL after the first file
is recorded and long before the last. The next `once` must publish the remaining files,
download no recorded file again, and record every file in the manifest exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.records import align_down
from pipeline.state.sqlite import SqliteStateStore
from tests.acceptance.conftest import TOKEN, Harness, wait_exit, wait_for

PERIOD = timedelta(days=3)
DATASET = "onc_bacax_ctd_tssp"


def product_config(root: Path, emu: Emulator, start: datetime) -> Harness:
    data = {
        "onc": {
            "base_url": emu.onc_url,
            "token": TOKEN,
            "backoff_base": "20ms",
            "backoff_max": "300ms",
            "product_poll_min": "100ms",
            "product_poll_max": "200ms",
        },
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": False},
        "logging": {"format": "json", "level": "info"},
        "streams": [
            {
                "name": "tssp",
                "kind": "dataproduct",
                "location_code": "BACAX",
                "device_category_code": "CTD",
                "data_product_code": "TSSP",
                "extension": "png",
                "period": "3d",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "safety_lag": "10m",
            }
        ],
    }
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return Harness(root=root, config=config, starts={"tssp": start})


def published(harness: Harness) -> set[str]:
    """Names of the product files under their final names (temporaries left out)."""
    folder = harness.out / DATASET / "products"
    return {
        p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith((".tmp", ".part"))
    }


async def recorded(harness: Harness) -> set[str]:
    """Names of the files the daemon has recorded as published in its in-flight state."""
    async with SqliteStateStore(harness.root / "state.db", read_only=True) as store:
        inflight = await store.get_inflight("tssp")
    return {Path(f["path"]).name for item in inflight.values() for f in item.get("files", [])}


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_three_run_product_publishes_every_file_once_across_a_kill(
    tmp_path: Path, reap: list[object]
) -> None:
    config = EmulatorConfig(
        token=TOKEN,
        seed=5,
        onc_port=0,
        registry_port=0,
        auth_delay=(0.0, 0.0),
        latency_s=1.0,
        product_processing_s=0.3,
        product_files_per_run=1,
        faults={
            "rules": [
                {"kind": "latency", "endpoint": "dataProductDelivery.download", "seconds": 0.4}
            ]
        },
    )
    async with Emulator(config) as emu:
        start = align_down(datetime.now(UTC) - 2 * PERIOD, PERIOD)
        harness = product_config(tmp_path, emu, start)
        proc = harness.spawn("once", "first.log")
        reap.append(proc)
        await wait_for(lambda: published(harness), 60, "the first product file")
        # Let the daemon record it (the next download takes 0.4 s), then kill it mid-product.
        for _ in range(100):  # up to 2 s
            if await recorded(harness):
                break
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        await wait_exit(proc, 10)
        published_before = published(harness)
        recorded_before = await recorded(harness)

        final = harness.spawn("once", "once.log")
        reap.append(final)
        assert await wait_exit(final, 120) == 0, (tmp_path / "once.log").read_text()[-3000:]

        requests = list(emu.context.products.requests.values())
        expected = {
            name: (part.run_id, index)
            for req in requests
            for part in req.runs
            for index, name in zip(
                [*map(str, range(1, len(part.pieces) + 1)), "meta"],
                emu.context.products.file_names(part),
                strict=True,
            )
        }
        downloads = Counter(
            (int(dict(r.query)["dpRunId"]), dict(r.query)["index"])
            for r in emu.requests.of("dataProductDelivery.download")
            if r.status == 200
        )

    assert len({req.start for req in requests}) == len(requests), "a period was ordered twice"
    assert any(len(req.runs) == 3 for req in requests), [len(r.runs) for r in requests]
    assert len(published_before) < len(expected), "the kill came after the last file"
    # Every file of every run is on disk, nothing else is.
    assert sorted(published(harness)) == sorted(expected)
    # Published once: no file recorded before the kill was downloaded again, and no file was
    # downloaded twice but one published in the instant before the kill, unrecorded.
    assert recorded_before, "the kill came before any file was recorded"
    assert all(downloads[expected[name]] == 1 for name in recorded_before), downloads
    assert sum(n - 1 for n in downloads.values()) <= len(published_before - recorded_before)
    assert set(downloads) == set(expected.values())
    # Recorded once: one manifest entry per file, matching the bytes on disk.
    async with SqliteStateStore(harness.root / "state.db", read_only=True) as store:
        entries = await store.list_manifest("tssp")
        assert await store.get_inflight("tssp") == {}
    paths = Counter(Path(e.path).name for e in entries)
    assert paths == Counter(set(expected))
    for entry in entries:
        data = (harness.out / entry.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256
