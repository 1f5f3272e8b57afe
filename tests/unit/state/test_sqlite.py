"""SqliteStateStore specifics: time encoding, pragmas, migrations, busy timeout, cancellation."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.exceptions import StateError
from pipeline.state import Commit, ManifestEntry, SqliteStateStore
from pipeline.state.sql.shared_queries import MANIFEST_FIELDS
from pipeline.state.sql.sqlite_queries import UPDATE_MANIFEST_OF_STREAM
from pipeline.state.sql.sqlite_schema import MIGRATIONS, Migration, check_migrations
from pipeline.state.sqlite import decode_time, encode_time

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def _entry(path: str) -> ManifestEntry:
    return ManifestEntry(path, "s1", "ds", 1, "0" * 64, T0, T0, 1, None, T0)


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 24, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 8, 2, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
def test_times_round_trip_exactly(value: datetime) -> None:
    text = encode_time(value)
    assert len(text) == len("2026-11-24T00:00:00.000000Z")
    assert text.endswith("Z")
    assert decode_time(text) == value
    assert decode_time(text).tzinfo == UTC


def test_encoded_text_sorts_like_time() -> None:
    times = [T0 + timedelta(microseconds=n * 7919) for n in range(-50, 50)]
    times += [datetime(999, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)]
    assert sorted(times, key=encode_time) == sorted(times)


async def test_durability_pragmas_are_in_effect(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    async with store:
        # Per-connection settings can only be read on the store's own connection.
        def pragmas() -> tuple[int, int, str]:
            conn = store._connection()
            return (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
                conn.execute("PRAGMA journal_mode").fetchone()[0],
            )

        assert await store._submit(pragmas) == (2, 1, "wal")  # 2 = FULL


def test_the_manifest_update_takes_a_row_as_path_and_stream_then_the_rest() -> None:
    # commit_publish passes (*row[2:], *row[:2]) to UPDATE_MANIFEST_OF_STREAM.
    assert MANIFEST_FIELDS[:2] == ("path", "stream")
    sql = " ".join(UPDATE_MANIFEST_OF_STREAM.split())
    assigned = re.findall(r"(\w+) = \?", sql.split(" WHERE ")[0])
    assert assigned == list(MANIFEST_FIELDS[2:])
    assert re.findall(r"(\w+) = \?", sql.split(" WHERE ")[1]) == ["path", "stream"]


def _wal_frames(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return (wal.stat().st_size - 32) // (24 + 1024) if wal.exists() else 0


async def test_a_poll_commit_writes_two_pages(tmp_path: Path) -> None:
    """A near-real-time commit (the stream's file grew, the cursor moves) changes the stream's
    row and the file's manifest row: two 1 kB pages in the WAL, no index page, and its
    success needs no write of its own."""
    db = tmp_path / "s.db"
    async with SqliteStateStore(db) as store:
        for n in range(20):  # enough rows for the manifest and its indexes to span pages
            await store.commit_publish(Commit("s1", [_entry(f"ds/{n:03d}.nc")], cursor_time=T0))
        grown = replace(_entry("ds/007.nc"), size=2, sha256="1" * 64)
        before = _wal_frames(db)
        await store.commit_publish(Commit("s1", [grown], cursor_time=T0 + timedelta(seconds=30)))
        assert _wal_frames(db) - before == 2
        assert await store.get_manifest("ds/007.nc") == grown
        record = await store.get_stream("s1")
        assert record is not None
        assert record.last_success is not None


async def test_a_new_database_has_small_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    # Every commit writes each changed page to the WAL: 1 kB pages cut a near-real-time
    # poll's commit from 12.5 kB to 3.2 kB (issue 21). Page size is fixed at creation.
    async with SqliteStateStore(tmp_path / "new.db"):
        pass
    with sqlite3.connect(tmp_path / "new.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 1024
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("VACUUM")
    async with SqliteStateStore(tmp_path / "old.db") as store:
        await store.commit_publish(Commit("s1", cursor_time=datetime(2026, 1, 1, tzinfo=UTC)))
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096


async def test_an_extra_migration_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStateStore(path) as store:
        await store.commit_publish(Commit("s1", [_entry("s1/a")], cursor_time=T0))
        assert await store.schema_version() == 1
    v2 = Migration(2, "manifest_note", ("ALTER TABLE manifest ADD COLUMN note TEXT",))
    async with SqliteStateStore(path, migrations=(*MIGRATIONS, v2)) as store:
        assert await store.schema_version() == 2
        assert [e.path for e in await store.list_manifest()] == ["s1/a"]
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(manifest)")]
    versions = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
    conn.close()
    assert "note" in columns
    assert versions == [(1, "initial"), (2, "manifest_note")]


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStateStore(path) as store:
        await store.record_success("s1", T0)
    broken = Migration(
        2, "broken", ("CREATE TABLE extra (x INTEGER)", "ALTER TABLE nowhere ADD COLUMN y")
    )
    with pytest.raises(StateError, match="no such table: nowhere"):
        await SqliteStateStore(path, migrations=(*MIGRATIONS, broken)).open()
    async with SqliteStateStore(path) as store:
        assert await store.schema_version() == 1
        assert await store.get_stream("s1") is not None
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "extra" not in tables  # the first statement was rolled back with the second


def test_migrations_must_be_numbered_in_order() -> None:
    check_migrations(MIGRATIONS)
    with pytest.raises(ValueError, match="expected 2"):
        check_migrations((*MIGRATIONS, Migration(3, "skips", ())))
    with pytest.raises(ValueError, match="expected 2"):
        SqliteStateStore("x.db", migrations=(*MIGRATIONS, Migration(3, "skips", ())))


async def test_a_write_lock_held_too_long_raises_state_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStateStore(path, busy_timeout=0.05) as store:
        intruder = sqlite3.connect(path, isolation_level=None)
        try:
            intruder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StateError, match="locked") as caught:
                await store.commit_publish(Commit("s1", [_entry("s1/a")], cursor_time=T0))
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        finally:
            intruder.close()
        # Once the intruder is gone the same store works again.
        await store.commit_publish(Commit("s1", [_entry("s1/a")], cursor_time=T0))
        assert len(await store.list_manifest()) == 1


async def _state(path: Path) -> tuple[object, ...]:
    async with SqliteStateStore(path) as store:
        record = await store.get_stream("s1")
        return (
            record.cursor_time if record else None,
            await store.get_inflight("s1"),
            [e.path for e in await store.list_manifest()],
        )


async def test_a_commit_cancelled_while_queued_is_withdrawn_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.open()
    await store.put_inflight("s1", "w", {"n": 1})
    gate = threading.Event()
    blocker = asyncio.create_task(store._submit(gate.wait))  # occupies the store's thread
    await asyncio.sleep(0)
    task = asyncio.create_task(
        store.commit_publish(Commit("s1", [_entry("s1/a")], cursor_time=T0, clear_inflight=["w"]))
    )
    await asyncio.sleep(0)
    task.cancel()
    # Wait for the cancellation before opening the gate: asyncio withdraws the queued job
    # from a loop callback, and the thread must not pick the job up before that runs.
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    assert await blocker is True
    await store.close()
    assert await _state(path) == (None, {"w": {"n": 1}}, [])


async def test_a_commit_cancelled_while_running_lands_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.open()
    await store.put_inflight("s1", "w", {"n": 1})
    began, gate = threading.Event(), threading.Event()

    def hold_at_begin(statement: str) -> None:
        # Runs on the store's thread as each statement starts: park the commit inside it.
        if statement.startswith("BEGIN") and not began.is_set():
            began.set()
            gate.wait()

    await store._submit(lambda: store._connection().set_trace_callback(hold_at_begin))
    task = asyncio.create_task(
        store.commit_publish(Commit("s1", [_entry("s1/a")], cursor_time=T0, clear_inflight=["w"]))
    )
    await asyncio.get_running_loop().run_in_executor(None, began.wait)
    task.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # queued behind the running commit, so it waits for its COMMIT
    assert await _state(path) == (T0, {}, ["s1/a"])


async def test_opening_twice_is_an_error(tmp_path: Path) -> None:
    async with SqliteStateStore(tmp_path / "s.db") as store:
        with pytest.raises(StateError, match="already open"):
            await store.open()
        await store.record_success("s1", T0)  # the first open is unharmed


async def test_lock_file_holds_our_pid(tmp_path: Path) -> None:
    import os

    async with SqliteStateStore(tmp_path / "s.db") as store:
        assert store.lock_path.read_text() == f"{os.getpid()}\n"


async def test_read_only_reads_a_running_daemons_state(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStateStore(path) as daemon:
        await daemon.commit_publish(Commit("s1", [_entry("s1/a")], cursor_time=T0))
        async with SqliteStateStore(path, read_only=True) as status:
            assert [e.path for e in await status.list_manifest()] == ["s1/a"]
            await daemon.commit_publish(Commit("s1", [_entry("s1/b")]))  # the daemon keeps writing
            assert len(await status.list_manifest()) == 2
            with pytest.raises(StateError, match="read-only"):
                await status.record_success("s1", T0)
            with pytest.raises(StateError, match="read-only"):
                await status.commit_publish(Commit("s1", []))
    # And with no daemon running (no -wal/-shm left behind).
    async with SqliteStateStore(path, read_only=True) as status:
        assert len(await status.list_manifest()) == 2


async def test_read_only_refuses_missing_and_unmigrated_databases(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state database"):
        await SqliteStateStore(tmp_path / "missing.db", read_only=True).open()
    assert not (tmp_path / "missing.db").exists()
    async with SqliteStateStore(tmp_path / "s.db"):
        pass
    v2 = Migration(2, "later", ("CREATE TABLE later (x INTEGER)",))
    with pytest.raises(StateError, match="start the daemon once to migrate"):
        await SqliteStateStore(
            tmp_path / "s.db", read_only=True, migrations=(*MIGRATIONS, v2)
        ).open()


async def test_a_cancelled_close_still_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.open()
    executor = store._executor
    assert executor is not None
    gate = threading.Event()
    blocker = asyncio.create_task(store._submit(gate.wait))  # the close queues behind this
    await asyncio.sleep(0)
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    gate.set()
    assert await blocker is True
    # Join the store's thread: every job queued on it, the close included, has run.
    await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
    async with SqliteStateStore(path) as again:  # so the file lock is free again
        await again.record_success("s1", T0)
