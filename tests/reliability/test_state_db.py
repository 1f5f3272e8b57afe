"""A state database that is locked or corrupt: a clear error, a non-zero exit from `once` and
`run`, and never a silent reset (the file is left byte for byte as it was)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pipeline.emulator import Emulator
from pipeline.state.sqlite import SqliteStateStore
from tests.reliability.conftest import Harness, measure, small_workload, wait_exit


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def run_cli(harness: Harness, command: str) -> tuple[int, str]:
    """`onc-pipeline COMMAND` as a subprocess; (exit code, what it printed)."""
    log = f"{command}.log"
    proc = harness.spawn(command, log)
    code = await wait_exit(proc, 60)
    return code, (harness.root / log).read_text()


async def make_store(path: Path) -> None:
    """A real, migrated state database with a stream and a manifest row in it."""
    async with SqliteStateStore(path) as store:
        await store.record_success("ctd", datetime.now(UTC))


def corrupt_pages(path: Path) -> None:
    """Overwrite every page after the header page with garbage (the header stays valid)."""
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    for offset in range(page, len(data), page):
        data[offset : offset + page] = bytes((offset // page + i) % 251 for i in range(page))
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "not-a-database": ("file is not a database",),
    "damaged-pages": ("corrupt", "malformed"),
    "foreign-sqlite": ("not an onc-pipeline state store",),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
async def test_corrupt_state_is_reported_and_left_untouched(
    live_emulator: Emulator, tmp_path: Path, kind: str
) -> None:
    harness = small_workload(tmp_path, live_emulator)
    db = tmp_path / "state.db"
    if kind == "not-a-database":
        db.write_bytes(b"this is not SQLite\n" * 512)
    elif kind == "damaged-pages":
        await make_store(db)
        with sqlite3.connect(db) as conn:  # fold the WAL in, so the damage is in the file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        corrupt_pages(db)
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("INSERT INTO photos (name) VALUES ('holiday')")
    before = digest(db)

    for command in ("once", "run", "status"):
        code, text = await run_cli(harness, command)
        assert code == 1, (command, text[-2000:])
        assert "Traceback" not in text, command
        assert "onc-pipeline: StateError: " in text, (command, text[-2000:])
        assert str(db) in text, "the message names the file"
        assert any(word in text for word in CORRUPTIONS[kind]), (command, text[-2000:])
        assert digest(db) == before, f"{command} changed the state database"
    assert not any(harness.out.rglob("*.jsonl")), "nothing harvested on a state it cannot trust"
    measure("state_db.corrupt_cases", 1)


async def test_state_in_use_by_another_pipeline_is_refused(
    live_emulator: Emulator, tmp_path: Path
) -> None:
    harness = small_workload(tmp_path, live_emulator)
    db = tmp_path / "state.db"
    await make_store(db)
    before = digest(db)
    # Another pipeline holds the store: its flock on <db>.lock, with its pid inside.
    fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, b"424242\n")
        for command in ("once", "run"):
            code, text = await run_cli(harness, command)
            assert code == 1, (command, text[-2000:])
            assert "Traceback" not in text
            assert f"state database {db} is in use by process 424242" in text, text[-2000:]
    finally:
        os.close(fd)
    assert digest(db) == before
    assert not any(harness.out.rglob("*.jsonl"))


@pytest.mark.slow  # waits out the 10 s busy timeout twice
async def test_sqlite_write_lock_held_elsewhere_fails_the_run_clearly(
    live_emulator: Emulator, tmp_path: Path
) -> None:
    """A foreign process (a backup, an `sqlite3` shell) holds the write lock past the busy
    timeout: the commit fails with a clear error, the cursor is not moved, exit 1."""
    harness = small_workload(tmp_path, live_emulator)
    # One stream: every store call waits out the 10 s busy timeout, so keep them few.
    config = yaml.safe_load(harness.config.read_text())
    config["streams"] = [s for s in config["streams"] if s["name"] == "ctd"]
    harness.config.write_text(yaml.safe_dump(config))
    db = tmp_path / "state.db"
    await make_store(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        code, text = await run_cli(harness, "once")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1, text[-2000:]
    assert "Traceback" not in text
    assert "database is locked" in text, text[-2000:]
    assert str(db) in text
    async with SqliteStateStore(db, read_only=True) as store:
        streams = {s.name: s.cursor_time for s in await store.list_streams()}
        manifest = await store.list_manifest()
    assert all(cursor is None for cursor in streams.values()), streams
    assert manifest == []
    # With the lock gone the next run completes.
    code, text = await run_cli(harness, "once")
    assert code == 0, text[-2000:]
