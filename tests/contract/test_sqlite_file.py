"""Contract for what only a database file has: corruption is reported (never reset) and one
file belongs to one pipeline at a time. PostgreSQL has neither; its leases get their own."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from pipeline.exceptions import StateError
from pipeline.state import Commit, SqliteStateStore
from tests.contract.conftest import T0, SqliteBackend
from tests.contract.helpers import entry


async def _filled(backend: SqliteBackend, rows: int) -> None:
    async with backend.make() as store:
        entries = [entry(f"s1/{i:05d}.jsonl") for i in range(rows)]
        await store.commit_publish(Commit("s1", entries, cursor_time=T0))


async def test_garbage_file_is_refused_and_left_alone(sqlite_backend: SqliteBackend) -> None:
    sqlite_backend.path.parent.mkdir(parents=True)
    garbage = b"this is not a database, it is a text file that got in the way\n" * 100
    sqlite_backend.path.write_bytes(garbage)
    with pytest.raises(StateError, match="not a database") as caught:
        await sqlite_backend.make().open()
    assert str(sqlite_backend.path) in str(caught.value)
    assert sqlite_backend.path.read_bytes() == garbage


async def test_damaged_pages_fail_quick_check_and_are_left_alone(
    sqlite_backend: SqliteBackend,
) -> None:
    await _filled(sqlite_backend, 400)
    data = bytearray(sqlite_backend.path.read_bytes())
    page = 4096
    assert len(data) > 8 * page  # enough b-tree pages to damage one in the middle
    data[3 * page : 3 * page + 600] = b"\x5a" * 600
    sqlite_backend.path.write_bytes(bytes(data))

    with pytest.raises(StateError, match="corrupt") as caught:
        await sqlite_backend.make().open()
    assert str(sqlite_backend.path) in str(caught.value)
    assert sqlite_backend.path.read_bytes() == bytes(data)  # never a silent reset


async def test_an_sqlite_file_of_another_application_is_refused(
    sqlite_backend: SqliteBackend,
) -> None:
    import sqlite3

    sqlite_backend.path.parent.mkdir(parents=True)
    conn = sqlite3.connect(sqlite_backend.path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="not an onc-pipeline state store"):
        await sqlite_backend.make().open()


async def test_second_instance_in_this_process_is_refused(sqlite_backend: SqliteBackend) -> None:
    async with sqlite_backend.make() as first:
        with pytest.raises(StateError, match=f"in use by process {os.getpid()}"):
            await sqlite_backend.make().open()
        await first.record_success("s1", T0)  # the holder is unaffected
    async with sqlite_backend.make() as second:  # released on close
        assert await second.get_stream("s1") is not None


HOLDER = """
import asyncio, sys
from pipeline.state import SqliteStateStore

async def main():
    async with SqliteStateStore(sys.argv[1]):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


async def test_lock_names_the_holding_process_and_dies_with_it(
    sqlite_backend: SqliteBackend,
) -> None:
    await _filled(sqlite_backend, 1)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(sqlite_backend.path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout is not None
        # Unconfigured structlog logs to stdout too; wait for our own line.
        line = await holder.stdout.readline()
        while line not in (b"ready\n", b""):
            line = await holder.stdout.readline()
        assert line == b"ready\n"
        with pytest.raises(StateError, match=f"in use by process {holder.pid}"):
            await sqlite_backend.make().open()
        # A crash (SIGKILL) releases the flock with the process: restart needs no cleanup.
        holder.send_signal(signal.SIGKILL)
        assert await holder.wait() == -signal.SIGKILL
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    async with sqlite_backend.make() as store:
        assert len(await store.list_manifest()) == 1


async def test_open_failures_release_the_lock(sqlite_backend: SqliteBackend) -> None:
    sqlite_backend.path.parent.mkdir(parents=True)
    sqlite_backend.path.write_bytes(b"garbage" * 1000)
    for _ in range(2):  # the second attempt would say "in use" if the first kept the lock
        with pytest.raises(StateError, match="not a database"):
            await SqliteStateStore(sqlite_backend.path).open()
