"""SIGKILL at seeded random moments with every output format on; nothing lost, nothing doubled.

The acceptance scenario (tests/acceptance/test_crash_restart.py) extended to NetCDF, CSV and
raw text outputs besides JSON Lines. CI runs a bounded number of kills; `ONC_PIPELINE_SOAK=1`
runs at least 50 (or `ONC_PIPELINE_TEST_KILLS`).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.emulator import Emulator
from tests.reliability.conftest import (
    SEED,
    SOAK,
    check_everything,
    measure,
    wait_exit,
    with_formats,
    write_config,
)

KILLS = int(os.environ.get("ONC_PIPELINE_TEST_KILLS", "60" if SOAK else "10"))


@pytest.mark.slow
@pytest.mark.timeout(1800 if SOAK else 120)
async def test_sigkill_with_every_format_loses_and_doubles_nothing(
    live_emulator: Emulator, tmp_path: Path, reap: list[object]
) -> None:
    emu = live_emulator
    harness = with_formats(write_config(tmp_path, emu, datetime.now(UTC)))
    rng = random.Random(SEED)
    kills = 0
    for _ in range(KILLS):
        proc = harness.spawn()
        reap.append(proc)
        # Early kills land in start-up and the first pages; later ones in writes and polls.
        await asyncio.sleep(rng.uniform(0.3, 1.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        await wait_exit(proc, 10)
    assert kills == KILLS

    final = harness.spawn("once", "once.log")
    assert await wait_exit(final, 90) == 0, (tmp_path / "once.log").read_text()[-3000:]

    counts = await check_everything(emu, harness)
    assert counts["scalar"] > 10_000
    assert counts["raw"] > 1_000
    assert counts["archive"] >= 5
    measure("crash.kills", kills)
    measure("crash.scalar_records_compared_jsonl", counts["scalar"])
    measure("crash.scalar_values_compared_netcdf", counts["netcdf"])
    measure("crash.raw_lines_compared_jsonl_and_text", counts["raw"] + counts["rawtext"])
    measure("crash.archive_files_byte_identical", counts["archive"])
    measure("crash.product_periods_run_once", counts["periods"])
    measure("crash.manifest_entries_verified", counts["manifest"])
