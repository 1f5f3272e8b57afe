"""Malformed and schema-drifted replies during a harvest: a clear error, bounded attempts,
quarantine, and the other streams unaffected.

The emulator's `malformed` fault answers 200 with a body that is not the API's JSON: an HTML
error page, an empty body, truncated JSON, wrong types, missing keys.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.streams.base import PassOutcome
from pipeline.settings import load_settings
from pipeline.state.sqlite import SqliteStateStore
from tests.reliability.conftest import (
    TOKEN,
    assert_no_temporaries,
    check_archive,
    check_raw_jsonl,
    check_scalar_jsonl,
    cursors,
    measure,
    small_workload,
)

BODIES = {
    # body kind -> words the stream's recorded error must contain
    "html": ("OncMalformedReply", "JSON"),
    "empty": ("OncMalformedReply", "empty"),
    "truncated-json": ("OncMalformedReply", "JSON"),
    "wrong-types": ("OncSchemaError", "sensorData"),
    "missing-keys": ("OncSchemaError",),
}


@pytest.mark.parametrize("body", sorted(BODIES))
async def test_malformed_scalar_pages_are_quarantined_and_other_streams_go_on(
    live_emulator: Emulator, tmp_path: Path, body: str
) -> None:
    emu = live_emulator
    harness = small_workload(tmp_path, emu, ctd_hours=1, onc={"max_attempts": 3})
    settings = load_settings(harness.config, environ={}, secrets_dirs=[])
    emu.faults = {"rules": [{"kind": "malformed", "endpoint": "scalardata.*", "body": body}]}
    # Each window is tried POISON_ATTEMPTS times (one try per pass), then quarantined; the
    # stream moves on window by window. Bounded: windows x attempts passes at most.
    windows = 3  # an hour of 30-minute windows, plus the open one
    # Windows of one daily partition are gathered into one fetch; an hour that crosses
    # midnight (the test runs on the real clock) is two partitions, two fetches.
    partitions = 1 + (harness.starts["ctd"].date() != datetime.now(UTC).date())
    passes = 0
    errors: list[str] = []
    while passes < (windows + 1) * POISON_ATTEMPTS:
        passes += 1
        before = len(emu.requests.of("scalardata.location"))
        results = await run_once(settings, asyncio.Event())
        pages = len(emu.requests.of("scalardata.location")) - before
        # At most the complete windows gathered into one fetch per partition, then two
        # windows alone (one quarantined, the next failing), each fetched at most
        # max_attempts times: bounded, never a retry storm.
        bound = (partitions + 2) * settings.onc.max_attempts
        assert 0 < pages <= bound, "a malformed page is retried, boundedly"
        for name in ("bpr", "wav", "tssd"):
            outcome = results[name]
            assert isinstance(outcome, PassOutcome), f"{name}: {outcome!r}"
            assert outcome.ok, (name, outcome.errors)
        ctd = results["ctd"]
        if isinstance(ctd, PassOutcome) and ctd.ok:
            break
        errors.append(str(ctd))
        async with SqliteStateStore(tmp_path / "state.db", read_only=True) as store:
            record = await store.get_stream("ctd")
        assert record is not None
        assert record.last_error is not None
        for word in BODIES[body]:
            assert word.lower() in record.last_error.lower(), record.last_error
        assert TOKEN not in record.last_error
    assert errors, "the failures were reported, not swallowed"
    assert passes < (windows + 1) * POISON_ATTEMPTS, "the stream got past the bad windows"

    async with SqliteStateStore(tmp_path / "state.db", read_only=True) as store:
        quarantined = await store.list_quarantine("ctd")
    assert len(quarantined) >= windows - 1
    assert {q.reason for q in quarantined} == {BODIES[body][0]}
    assert {q.attempts for q in quarantined} == {POISON_ATTEMPTS}
    assert all(q.detail and TOKEN not in q.detail for q in quarantined)
    # Every window is quarantined (every page is malformed): no scalar file, nothing invented.
    assert not list((harness.out / "onc_bacax_ctd").rglob("*.jsonl"))

    marks = await cursors(tmp_path / "state.db")
    start = harness.starts
    raw = check_raw_jsonl(
        emu, harness.out / "onc_rbrquartz3bpr203659", start["bpr"], marks["bpr"],
        "RBRQUARTZ3BPR203659",
    )  # fmt: skip
    files = check_archive(emu, harness, marks["wav"])  # type: ignore[arg-type]
    assert raw > 0
    assert files > 0
    assert_no_temporaries(harness.out)

    # Healed upstream: the scalar stream goes on past the quarantined span and stays correct.
    emu.faults = None
    results = await run_once(settings, asyncio.Event())
    assert all(isinstance(r, PassOutcome) and r.ok for r in results.values()), results
    measure("bad_replies.malformed_kinds_scalar", 1)
    measure("bad_replies.harvest_passes", passes)
    measure("bad_replies.windows_quarantined", len(quarantined))


@pytest.mark.parametrize("body", ["html", "missing-keys"])
async def test_malformed_listings_and_polls_fail_clearly_then_lose_nothing(
    live_emulator: Emulator, tmp_path: Path, body: str
) -> None:
    """A malformed archive listing or product status cannot be skipped (files would be lost):
    the stream fails with a clear error, its cursor stays, and once healed nothing is missing."""
    emu = live_emulator
    harness = small_workload(tmp_path, emu)
    settings = load_settings(harness.config, environ={}, secrets_dirs=[])
    emu.faults = {
        "rules": [
            {"kind": "malformed", "endpoint": "archivefile.location", "body": body},
            {"kind": "malformed", "endpoint": "rawdata.*", "body": body},
        ]
    }
    results = await run_once(settings, asyncio.Event())
    for name in ("wav", "bpr"):
        failed = results[name]
        failure = (
            str(failed) if isinstance(failed, Exception) else "; ".join(failed.errors)
        )  # a failed pass may come back as an exception or as errors
        assert failure, name
        assert TOKEN not in failure
    for name in ("ctd", "tssd"):
        outcome = results[name]
        assert isinstance(outcome, PassOutcome), f"{name}: {outcome!r}"
        assert outcome.ok, (name, outcome.errors)
    marks = await cursors(tmp_path / "state.db")
    assert marks.get("wav") is None
    assert not list((harness.out / "onc_sevip_hydrophone").rglob("*.wav"))

    emu.faults = None
    results = await run_once(settings, asyncio.Event())
    assert all(isinstance(r, PassOutcome) and r.ok for r in results.values()), results
    marks = await cursors(tmp_path / "state.db")
    start = harness.starts
    ctd = {"location_code": "BACAX", "device_category_code": "CTD"}
    check_scalar_jsonl(emu, harness.out / "onc_bacax_ctd", start["ctd"], marks["ctd"], **ctd)
    check_archive(emu, harness, marks["wav"])  # type: ignore[arg-type]
