"""open_state_store: which backend a state URL builds, and the URLs it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.exceptions import StateError
from pipeline.state import InMemoryStateStore, SqliteStateStore, open_state_store


def test_memory_url() -> None:
    assert isinstance(open_state_store("memory://"), InMemoryStateStore)
    assert open_state_store("memory://") is not open_state_store("memory://")


def test_sqlite_relative_and_absolute_paths(tmp_path: Path) -> None:
    relative = open_state_store("sqlite:///state/pipeline.db")
    assert isinstance(relative, SqliteStateStore)
    assert relative.path == Path("state/pipeline.db")
    assert relative.lock_path == Path("state/pipeline.db.lock")

    absolute = open_state_store("sqlite:////var/lib/onc/pipeline.db")
    assert isinstance(absolute, SqliteStateStore)
    assert absolute.path == Path("/var/lib/onc/pipeline.db")

    based = open_state_store("sqlite:///state/p.db", base_dir=tmp_path)
    assert isinstance(based, SqliteStateStore)
    assert based.path == tmp_path / "state" / "p.db"

    reader = open_state_store("sqlite:///state/p.db", read_only=True)
    assert isinstance(reader, SqliteStateStore)
    assert reader.read_only
    assert not relative.read_only

    ignored_base = open_state_store("sqlite:////abs/p.db", base_dir=tmp_path)
    assert isinstance(ignored_base, SqliteStateStore)
    assert ignored_base.path == Path("/abs/p.db")


async def test_sqlite_url_opens_a_working_store(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    async with open_state_store("sqlite:///" + str(path)) as store:
        await store.put_meta("ns", "k", {"v": 1})
    assert path.is_file()


@pytest.mark.parametrize(
    "url",
    [
        "pipeline.db",
        "mysql://host/db",
        "memory://somewhere",
        "sqlite://relative.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///state/",
        "sqlite:///state.db?mode=ro",
    ],
)
def test_unusable_urls_raise_state_error(url: str) -> None:
    with pytest.raises(StateError):
        open_state_store(url)
