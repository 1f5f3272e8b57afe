"""Under every fault profile the client still ends with exactly the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.onc.conftest import client, running_emulator
from tests.integration.onc.workload import harvest_and_verify
from tests.unit.onc.recording import RecordingMetrics

# Each case: a profile name of pipeline.emulator.faults.PROFILES or a plan mapping. The
# maintenance window and the drip are shortened so the suite stays fast.
CASES: dict[str, Any] = {
    "flaky": "flaky",
    "throttled": "throttled",
    "hostile": "hostile",
    "slow": {
        "rules": [
            {"kind": "latency", "endpoint": "*", "seconds": 0.05, "jitter": 0.05},
            {"kind": "drip", "endpoint": "*", "chunk_bytes": 256 * 1024, "interval_s": 0.005},
        ]
    },
    "maintenance": {
        "rules": [
            {
                "kind": "maintenance",
                "endpoint": "*",
                "start_after": 0,
                "duration": 2.5,
                "retry_after": 1,
            },
        ]
    },
    "reset-mid-body": {
        "rules": [
            {"kind": "reset", "endpoint": "*", "rate": 0.3, "fraction": 0.5},
        ]
    },
    "truncated-body": {
        "rules": [
            {"kind": "truncate", "endpoint": "*", "rate": 0.3, "fraction": 0.6},
        ]
    },
    "5xx-rate": {
        "rules": [
            {"kind": "status", "endpoint": "*", "rate": 0.3, "statuses": [500, 502, 503, 504]},
        ]
    },
    "503-retry-after": {
        "rules": [
            {"kind": "status", "endpoint": "*", "rate": 0.1, "status": 503, "retry_after": 1},
        ]
    },
    "n-failures-then-success": {
        "rules": [
            {"kind": "status", "endpoint": "*", "times": 3, "per_query": True, "status": 502},
        ]
    },
}


# Plans that only slow replies down cause no retry; every other plan must have fired.
NO_RETRY_EXPECTED = {"slow"}


@pytest.mark.parametrize("name", list(CASES))
async def test_harvest_is_exact_under_faults(name: str, tmp_path: Path) -> None:
    metrics = RecordingMetrics()
    # Seed 3: with it every probabilistic plan fires within this small workload.
    emulator = running_emulator(faults=CASES[name], seed=3)
    async with emulator as emu, client(emu, metrics=metrics) as onc:
        await harvest_and_verify(emu, onc, tmp_path)
    if name not in NO_RETRY_EXPECTED:
        assert metrics.retries, "the fault plan never fired: the test proves nothing"


async def test_no_faults_baseline(tmp_path: Path) -> None:
    async with running_emulator() as emu, client(emu) as onc:
        await harvest_and_verify(emu, onc, tmp_path)
        statuses = {r.status for r in emu.requests}
    assert statuses <= {200, 206}
