"""Connecting to PostgreSQL, shared by the state store and the request limiter.

URL parsing (a `schema` query parameter, a password-free display form), the pool with its
timeouts, and the one place driver, socket and timeout errors become StateError. The
password never reaches a message: errors name the database by its display form, and any
driver text is scrubbed of the password before it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import asyncpg.pool

from pipeline.exceptions import StateError
from pipeline.state.sql import postgres_queries as q

# String aliases: asyncpg's classes are generic only in its stubs, not at run time.
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

DEFAULT_POOL_SIZE = 4
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_COMMAND_TIMEOUT = 15.0
_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where to connect: the DSN for the driver, the schema to use, and a safe display form."""

    dsn: str
    schema: str | None
    display: str
    secret: str | None

    def redact(self, text: str) -> str:
        """`text` with the password replaced, for the odd driver message that echoes it."""
        if self.secret:
            text = text.replace(self.secret, "***").replace(quote(self.secret, safe=""), "***")
        return text


def parse_postgres_url(url: str, *, schema: str | None = None) -> PostgresTarget:
    """Split a `postgresql://` URL into the driver's DSN, a schema and a password-free display.

    `?schema=name` (or the `schema` argument) puts every table in that schema, created on
    open; other query parameters go to the driver (sslmode, ...). StateError for a URL that
    is not PostgreSQL's, without echoing the URL (it may hold a password).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in _SCHEMES:
        raise StateError("a PostgreSQL state URL must start with postgresql://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    named = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    schema = schema or (named[-1] if named else None)
    if schema is not None and not schema:
        raise StateError("the schema query parameter of the state URL is empty")
    host = parts.hostname or "localhost"
    user = unquote(parts.username) if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    display = f"postgresql://{quote(user) + '@' if user else ''}{host}{port}{parts.path}"
    secret = unquote(parts.password) if parts.password else None
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    return PostgresTarget(dsn=dsn, schema=schema, display=display, secret=secret)


def quote_ident(name: str) -> str:
    """A SQL identifier, double-quoted so any schema name is taken literally."""
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def translate_errors(target: PostgresTarget, action: str) -> Iterator[None]:
    """Turn driver, socket and timeout errors raised inside into StateError (cause kept)."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise StateError(target.redact(f"{action} on {target.display}: {detail}")) from exc
    except (asyncpg.InterfaceError, OSError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise StateError(
            target.redact(f"{action} on {target.display}: connection lost or refused ({detail})")
        ) from exc
    except TimeoutError as exc:
        raise StateError(
            f"{action} on {target.display}: no answer in time (server down or overloaded?)"
        ) from exc


async def create_pool(
    target: PostgresTarget,
    *,
    min_size: int = 1,
    max_size: int = DEFAULT_POOL_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    read_only: bool = False,
    application_name: str = "onc-pipeline",
) -> Pool:
    """An open pool whose sessions use `target.schema` (created if needed); StateError if not."""
    settings = {"application_name": application_name}
    if target.schema is not None:
        # pg_temp last keeps temporary objects from shadowing ours.
        settings["search_path"] = f"{quote_ident(target.schema)}, pg_temp"
    if read_only:
        settings["default_transaction_read_only"] = "on"
    with translate_errors(target, "cannot connect to the state database"):
        if target.schema is not None and not read_only:
            conn = await asyncpg.connect(target.dsn, timeout=connect_timeout)
            try:
                sql = q.CREATE_SCHEMA.format(schema=quote_ident(target.schema))
                with contextlib.suppress(asyncpg.UniqueViolationError):  # a racing creator
                    await conn.execute(sql, timeout=command_timeout)
            finally:
                await conn.close(timeout=connect_timeout)
        pool = await asyncpg.create_pool(
            target.dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            command_timeout=command_timeout,
            server_settings=settings,
        )
    return pool


async def close_pool(pool: Pool, grace: float) -> None:
    """Close gracefully, or cut the connections when the server does not answer in time."""
    try:
        async with asyncio.timeout(grace):
            await asyncio.shield(pool.close())
    except (TimeoutError, asyncpg.InterfaceError, OSError):
        pool.terminate()
