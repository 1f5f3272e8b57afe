"""A window appended to its partition files whose commit then fails: nothing moves, nothing is
written twice, and the retry commits what the files hold."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.engine.streams.base import PassOutcome
from pipeline.exceptions import StateError
from pipeline.outputs.csv import read_csv_table
from pipeline.outputs.publish import sha256_of
from pipeline.state import open_state_store
from pipeline.state.sqlite import SqliteStateStore
from tests.integration.engine.conftest import SettingsFactory, read_scalar_jsonl

STREAM = {
    "name": "bacax-ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
    "window": "1h",
    "safety_lag": "30s",
    "start": "2026-11-20T06:00:00Z",
    "formats": ["jsonl", "csv"],
}


async def _once(settings: Any, emu: Emulator) -> PassOutcome | Exception:
    results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)
    return results["bacax-ctd"]


async def _state(settings: Any) -> tuple[Any, dict[str, tuple[int, str]]]:
    async with open_state_store(settings.state.url) as store:
        record = await store.get_stream("bacax-ctd")
        manifest = {e.path: (e.size, e.sha256) for e in await store.list_manifest("bacax-ctd")}
    return record.cursor_time if record else None, manifest


def _files(out: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(out)): sha256_of(p)
        for p in out.rglob("*")
        if p.suffix in (".csv", ".jsonl")
    }


async def test_a_commit_that_fails_after_the_append_is_retried_without_doubling(
    emu: Emulator,
    make_settings: SettingsFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    settings = make_settings([STREAM])
    assert isinstance(outcome := await _once(settings, emu), PassOutcome)
    assert outcome.ok
    cursor, manifest = await _state(settings)
    assert manifest == _files(out)
    sizes = {path: size for path, (size, _) in manifest.items()}

    # The next poll appends to the open window's files, then the state store fails.
    emu.clock.advance(5 * 60)
    real = SqliteStateStore.commit_publish

    async def failing(self: SqliteStateStore, commit: Any) -> None:
        raise StateError("injected fault: database is locked")

    monkeypatch.setattr(SqliteStateStore, "commit_publish", failing)
    failed = await _once(settings, emu)
    assert not (isinstance(failed, PassOutcome) and failed.ok)
    grown = _files(out)
    assert any(grown[path][0] > size for path, size in sizes.items()), "nothing was appended"
    assert await _state(settings) == (cursor, manifest)  # cursor and manifest unmoved

    # The retry fetches the appended readings again and finds them in the files.
    monkeypatch.setattr(SqliteStateStore, "commit_publish", real)
    assert isinstance(outcome := await _once(settings, emu), PassOutcome)
    assert outcome.ok
    new_cursor, new_manifest = await _state(settings)
    assert new_cursor is not None
    assert cursor is not None
    assert new_cursor > cursor
    assert new_manifest == _files(out)
    assert _files(out) == grown  # the retry had nothing to add

    rows = read_scalar_jsonl(out)
    doubled = [k for k, n in Counter((t, s) for t, s, _, _ in rows).items() if n > 1]
    assert not doubled
    (csv,) = out.rglob("*.csv")
    times = read_csv_table(csv).times
    assert len(set(times.tolist())) == len(times)
    assert times[-1] // 1000 == int((emu.clock.now() - timedelta(seconds=31)).timestamp())
