"""The backends the StateStore contract runs against, and the fixtures that build them.

Every test in tests/contract/ takes `backend` (or `store`) and so runs once per backend.
Backends that persist beyond the process (`durable_backend`) also run the durability tests;
their hooks reach around the store to the database itself (stamp a future schema version,
install a fault mid-commit). PostgreSQL runs in a throwaway schema per test (see
tests/integration/postgres/server.py for when it may skip: never in CI).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.coordination import coordination_for
from pipeline.state import (
    CoordinationStore,
    InMemoryStateStore,
    PostgresStateStore,
    SqliteStateStore,
    StateStore,
)
from tests.clocks import FakeClock
from tests.integration.postgres import server

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


@dataclass
class Backend:
    """Builds stores of one kind; `make()` again reaches the same data (a "restart")."""

    name: str
    clock: FakeClock[datetime] = field(default_factory=lambda: FakeClock(T0))

    def make(self) -> StateStore:
        raise NotImplementedError


@dataclass
class MemoryBackend(Backend):
    """The in-memory store: the same object is handed out again, data and all."""

    _store: InMemoryStateStore | None = None

    def make(self) -> StateStore:
        if self._store is None:
            self._store = InMemoryStateStore(clock=self.clock)
        return self._store


@dataclass
class DurableBackend(Backend):
    """A backend whose data outlives the process, with hooks into the database itself."""

    def stamp_schema_version(self, version: int) -> None:
        """Pretend a newer pipeline migrated the database."""
        raise NotImplementedError

    def fail_when_deleting_inflight(self, key: str) -> None:
        """Make deleting in-flight `key` fail: the LAST step of commit_publish, after the
        manifest upsert and the cursor update have already run inside the transaction."""
        raise NotImplementedError


@dataclass
class SqliteBackend(DurableBackend):
    """A fresh SQLite file per test; `make()` opens a new store on the same file."""

    path: Path = Path("unset")

    def make(self) -> StateStore:
        return SqliteStateStore(self.path, clock=self.clock, busy_timeout=2.0)

    def stamp_schema_version(self, version: int) -> None:
        with _RawConnection(self.path) as conn:
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', '')",
                (version,),
            )

    def fail_when_deleting_inflight(self, key: str) -> None:
        with _RawConnection(self.path) as conn:
            conn.execute(
                "CREATE TRIGGER injected_fault BEFORE DELETE ON inflight"
                " WHEN OLD.key = '" + key.replace("'", "''") + "'"
                " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )


@dataclass
class PostgresBackend(DurableBackend):
    """A fresh schema per test on the shared server; `make()` opens a new pool on it."""

    url: str = ""
    schema: str = ""

    def make(self) -> StateStore:
        return PostgresStateStore(
            self.url, schema=self.schema, clock=self.clock, pool_size=3, command_timeout=10.0
        )

    def stamp_schema_version(self, version: int) -> None:
        sql = "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, 'future', now())"
        server.run_sync(lambda: server.execute(sql, version, schema=self.schema))

    def fail_when_deleting_inflight(self, key: str) -> None:
        literal = "'" + key.replace("'", "''") + "'"
        function = (
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF OLD.key = " + literal + " THEN RAISE EXCEPTION 'injected fault'; END IF;"
            " RETURN OLD; END $$"
        )
        trigger = (
            "CREATE TRIGGER injected_fault BEFORE DELETE ON inflight"
            " FOR EACH ROW EXECUTE FUNCTION injected_fault()"
        )
        server.run_sync(lambda: server.execute(function, schema=self.schema))
        server.run_sync(lambda: server.execute(trigger, schema=self.schema))

    def drop(self) -> None:
        server.run_sync(lambda: server.drop_schema(self.schema))


class _RawConnection:
    """A plain sqlite3 connection that commits and closes on exit."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
ALL_BACKENDS = ["memory", "sqlite", POSTGRES]
DURABLE_BACKENDS = ["sqlite", POSTGRES]


def _build(name: str, tmp_path: Path) -> Backend:
    if name == "memory":
        return MemoryBackend(name)
    if name == "sqlite":
        return SqliteBackend(name, path=tmp_path / "state" / "pipeline.db")
    if name == "postgres":
        url = server.postgres_url_or_skip()
        return PostgresBackend(name, url=url, schema=server.unique_schema())
    raise AssertionError(f"unknown backend {name}")


def _built(name: str, tmp_path: Path) -> Iterator[Backend]:
    built = _build(name, tmp_path)
    try:
        yield built
    finally:
        if isinstance(built, PostgresBackend):
            built.drop()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend, one at a time."""
    yield from _built(request.param, tmp_path)


@pytest.fixture(params=DURABLE_BACKENDS)
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DurableBackend]:
    """Backends whose state outlives the process."""
    for built in _built(request.param, tmp_path):
        assert isinstance(built, DurableBackend)
        yield built


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> SqliteBackend:
    """SQLite alone, for what only a database file has: corruption, the flock."""
    return SqliteBackend("sqlite", path=tmp_path / "state" / "pipeline.db")


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    """An open store of each backend, closed afterwards."""
    async with backend.make() as opened:
        yield opened


@pytest.fixture
def coordination(store: StateStore) -> CoordinationStore:
    """The lease and compare-and-set API of each backend (native or in-process)."""
    return coordination_for(store)
