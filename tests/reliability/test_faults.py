"""Every emulator fault profile, alone and mixed, while `once` harvests every stream kind.

The harvest runs in-process (`run_once`) against the emulator on real time, with every
output format on. Afterwards the output equals the ground truth, and the emulator's request
log proves the politeness caps held: never more than `max_concurrency` requests in flight,
never more than `max_rate_per_s` + burst starts in any one-second window.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.streams.base import PassOutcome
from pipeline.settings import load_settings
from pipeline.state.sqlite import SqliteStateStore
from tests.reliability.conftest import (
    PRODUCT_DATASET,
    SCALAR_DATASET,
    SOAK,
    assert_no_temporaries,
    assert_polite,
    check_everything,
    check_scalar_jsonl,
    check_scalar_netcdf,
    complete_product_days,
    cursors,
    measure,
    small_workload,
)

MAX_CONCURRENCY = 3
MAX_RATE = 40  # the acceptance config's cap
# The maintenance window: two minutes in the soak run, seconds in CI.
MAINTENANCE_S = 120.0 if SOAK else 2.0

MIX: dict[str, Any] = {
    "seed": 11,
    "rules": [
        {"kind": "latency", "endpoint": "*", "seconds": 0.005, "jitter": 0.01},
        {"kind": "status", "endpoint": "*", "rate": 0.05, "statuses": [500, 502, 503, 504]},
        {"kind": "reset", "endpoint": "*", "rate": 0.03, "fraction": 0.5},
        {"kind": "truncate", "endpoint": "*", "rate": 0.03, "fraction": 0.7},
        {"kind": "status", "endpoint": "*", "rate": 0.04, "status": 429, "retry_after": 1},
        {
            "kind": "maintenance",
            "endpoint": "*",
            "start_after": 1.0,
            "duration": MAINTENANCE_S,
            "retry_after": 1,
        },
        {"kind": "gone", "endpoint": "dataProductDelivery.download", "times": 1},
        {
            "kind": "drip",
            "endpoint": "archivefile.download",
            "chunk_bytes": 128 * 1024,
            "interval_s": 0.01,
        },
    ],
}

CASES: dict[str, Any] = {
    "flaky": "flaky",
    "throttled": "throttled",
    "hostile": "hostile",
    # The profiles' own timings, shortened so CI stays fast (the soak run keeps them).
    "slow": "slow"
    if SOAK
    else {
        "rules": [
            {"kind": "latency", "endpoint": "*", "seconds": 0.02, "jitter": 0.02},
            {
                "kind": "drip",
                "endpoint": "*download*",
                "chunk_bytes": 128 * 1024,
                "interval_s": 0.01,
            },
        ]
    },
    "maintenance": {
        "rules": [
            {
                "kind": "maintenance",
                "endpoint": "*",
                "start_after": 0.5,
                "duration": MAINTENANCE_S,
                "retry_after": 1,
            }
        ]
    },
    # 410 on a product download: the run is restarted (same dpRunId), not ordered again.
    "gone-products": {
        "rules": [{"kind": "gone", "endpoint": "dataProductDelivery.download", "times": 1}]
    },
    "mix": MIX,
}


async def harvest_under(emu: Emulator, tmp_path: Path, faults: Any) -> tuple[dict[str, int], int]:
    """`once` over every stream kind under `faults`; returns (checked counts, faults fired)."""
    harness = small_workload(tmp_path, emu)
    settings = load_settings(harness.config, environ={}, secrets_dirs=[])
    emu.faults = faults
    with structlog.testing.capture_logs() as logs:
        results = await run_once(settings, asyncio.Event())
    for name, result in results.items():
        assert isinstance(result, PassOutcome), f"{name}: {result!r}"
        assert result.ok, (name, result.errors)
        assert result.quarantined == 0, name
    # Latency is not a fault worth counting: it fires on every request.
    fired = sum(
        1
        for e in logs
        if e["event"] == "emulator_fault"
        for kind in e.get("kinds", ())
        if kind != "latency"
    )
    emu.faults = None
    counts = await check_everything(emu, harness)
    return counts, fired


@pytest.mark.slow
@pytest.mark.timeout(900 if SOAK else 90)
@pytest.mark.parametrize("case", sorted(CASES))
async def test_output_equals_truth_and_caps_hold_under_faults(
    live_emulator: Emulator, tmp_path: Path, case: str
) -> None:
    emu = live_emulator
    counts, fired = await harvest_under(emu, tmp_path, CASES[case])
    assert fired > 0, "the faults must have fired for the case to prove anything"
    assert_polite(emu, max_concurrency=MAX_CONCURRENCY, rate=MAX_RATE)
    if case in ("maintenance", "mix"):
        answered_503 = [r for r in emu.requests if r.status == 503]
        assert answered_503, "the maintenance window was hit"
    if case in ("gone-products", "mix"):
        assert [r for r in emu.requests.of("dataProductDelivery.download") if r.status == 410]
    measure("faults.cases", 1)
    measure("faults.injected", fired)
    measure("faults.requests_logged", len(emu.requests))
    measure("faults.scalar_records_compared", counts["scalar"] + counts["netcdf"])
    measure("faults.raw_lines_compared", counts["raw"] + counts["rawtext"])
    measure("faults.archive_files_compared", counts["archive"])


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_expired_downloads_quarantine_the_periods_and_spare_other_streams(
    live_emulator: Emulator, tmp_path: Path
) -> None:
    """Profile `expired-downloads` (every product download 410): after restarting the run and
    re-ordering, each period is quarantined with its reason; the other streams are whole."""
    emu = live_emulator
    harness = small_workload(tmp_path, emu)
    settings = load_settings(harness.config, environ={}, secrets_dirs=[])
    emu.faults = "expired-downloads"
    quarantined = 0
    for _ in range(POISON_ATTEMPTS * 3):
        # The periods the pass may order are the days complete when it starts.
        days = complete_product_days(harness.starts["tssd"], datetime.now(UTC))
        results = await run_once(settings, asyncio.Event())
        for name in ("ctd", "bpr", "wav"):
            outcome = results[name]
            assert isinstance(outcome, PassOutcome), f"{name}: {outcome!r}"
            assert outcome.ok, (name, outcome.errors)
        tssd = results["tssd"]
        assert isinstance(tssd, PassOutcome)
        if not tssd.ok:
            assert all("gone" in e for e in tssd.errors), tssd.errors
        quarantined += tssd.quarantined
        if tssd.ok and tssd.caught_up:
            break
    async with SqliteStateStore(tmp_path / "state.db", read_only=True) as store:
        records = await store.list_quarantine("tssd")
    assert len(records) == quarantined == days
    assert {r.reason for r in records} == {"OncProductGoneError"}
    assert all("410" in r.detail for r in records if r.detail)
    # Nothing of a gone product was published; the other streams equal the ground truth.
    products = harness.out / PRODUCT_DATASET / "products"
    assert [p for p in products.rglob("*") if p.is_file()] == []
    marks = await cursors(tmp_path / "state.db")
    ctd = {"location_code": "BACAX", "device_category_code": "CTD"}
    start = harness.starts
    check_scalar_jsonl(emu, harness.out / SCALAR_DATASET, start["ctd"], marks["ctd"], **ctd)
    check_scalar_netcdf(emu, harness.out / SCALAR_DATASET, start["ctd"], marks["ctd"], **ctd)
    assert_no_temporaries(harness.out)
    measure("faults.expired_product_periods_quarantined", len(records))
