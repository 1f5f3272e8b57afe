"""Durable pipeline state behind the StateStore Protocol; `open_state_store` picks the backend.

URLs: `memory://` (nothing persists), `sqlite:///relative/path.db` and
`sqlite:////absolute/path.db` (SQLAlchemy's convention: the path is whatever follows
`sqlite:///`), and `postgresql://user:password@host:port/db?schema=name` (several instances
sharing one database; `schema` is optional and defaults to the server's search_path).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.exceptions import LeaseLostError, StateError
from pipeline.state.base import (
    Commit,
    CoordinationStore,
    Lease,
    ManifestEntry,
    QuarantineRecord,
    StateStore,
    StreamRecord,
)
from pipeline.state.memory import InMemoryStateStore
from pipeline.state.sqlite import SqliteStateStore

if TYPE_CHECKING:
    from pipeline.state.postgres import PostgresStateStore

__all__ = [
    "Commit",
    "CoordinationStore",
    "InMemoryStateStore",
    "Lease",
    "LeaseLostError",
    "ManifestEntry",
    "PostgresStateStore",
    "QuarantineRecord",
    "SqliteStateStore",
    "StateStore",
    "StreamRecord",
    "open_state_store",
]

_SQLITE_PREFIX = "sqlite:///"


def __getattr__(name: str) -> Any:
    # The PostgreSQL backend (and asyncpg under it) is imported on first use: a process on
    # SQLite or memory state never loads it.
    if name == "PostgresStateStore":
        from pipeline.state.postgres import PostgresStateStore

        return PostgresStateStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_state_store(
    url: str, *, base_dir: Path | None = None, read_only: bool = False
) -> StateStore:
    """Build (not yet open) the store a state URL names.

    A relative SQLite path is resolved against `base_dir` when given (e.g. the directory of
    the config file), otherwise against the working directory. `read_only` is for
    inspecting the state of a running daemon (`status`); it means nothing for memory://.
    Raises StateError for a URL no backend understands.
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StateError("the state URL has no scheme (memory://, sqlite:///path, postgresql://)")
    scheme = scheme.lower()
    if scheme == "memory":
        if url.lower() != "memory://":
            raise StateError(f"state URL {url!r}: memory:// takes no path")
        return InMemoryStateStore()
    if scheme == "sqlite":
        return SqliteStateStore(_sqlite_path(url, base_dir), read_only=read_only)
    if scheme in ("postgresql", "postgres"):
        from pipeline.state.postgres import PostgresStateStore

        # The URL may hold a password: PostgresStateStore never echoes it back.
        return PostgresStateStore(url, read_only=read_only)
    raise StateError(
        f"unknown state store scheme {scheme!r} (use memory://, sqlite:///path or postgresql://)"
    )


def _sqlite_path(url: str, base_dir: Path | None) -> Path:
    if not url.lower().startswith(_SQLITE_PREFIX):
        raise StateError(f"state URL {url!r}: write sqlite:///relative.db or sqlite:////abs.db")
    raw = url[len(_SQLITE_PREFIX) :]
    if not raw or raw.endswith("/") or raw == ":memory:" or "?" in raw:
        raise StateError(f"state URL {url!r} must name a database file (no query, no :memory:)")
    path = Path(raw)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path
